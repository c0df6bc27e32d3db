#!/usr/bin/env bash
# Runs CTest in each build tree given (normal, then ASan+UBSan, then the
# libFuzzer tree whose only tests are the fuzz harnesses) and fails if any
# tree fails. Each tree prints CTest's own summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
rc=0
for dir in "$@"; do
    echo "== ctest in $dir =="
    (cd "$dir" && ctest --output-on-failure -j "${VIGIL_TEST_JOBS:-2}") || rc=1
done
exit $rc
