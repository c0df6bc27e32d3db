#!/usr/bin/env bash
# Runs every libFuzzer harness of a VIGIL_FUZZ=ON build tree for SECONDS each
# (FUZZ_JOBS at a time), then prints one line per harness and the totals:
# executions and crashes. Exits 1 if any harness crashed (its input is under
# BUILD/fuzz-crashes/, its log under BUILD/fuzz-logs/).
#   scripts/fuzz.sh BUILD [SECONDS]      (`make fuzz` passes FUZZ_SECONDS)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz.sh BUILD [SECONDS]}
seconds=${2:-300}
jobs=${FUZZ_JOBS:-$(nproc)}
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
mkdir -p "$build/fuzz-logs" "$build/fuzz-crashes"

run_one() { # name
    local name=$1 dirs=("$build/fuzz-work/$1" "fuzz/corpus/$1")
    mkdir -p "$build/fuzz-work/$name"
    [ -d "fuzz/regressions/$name" ] && dirs+=("fuzz/regressions/$name")
    "$build/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$build/fuzz-crashes/$name-" "${dirs[@]}" \
        >"$build/fuzz-logs/$name.log" 2>&1
    echo $? >"$build/fuzz-logs/$name.rc"
}

names=()
for f in fuzz/fuzz_*.c; do
    n=${f#fuzz/fuzz_}
    names+=("${n%.c}")
done
echo "fuzz: ${#names[@]} harnesses, ${seconds} s each, $jobs at a time (logs: $build/fuzz-logs)"
running=0
for n in "${names[@]}"; do
    run_one "$n" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

total=0 crashed=0
for n in "${names[@]}"; do
    log="$build/fuzz-logs/$n.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    rc=$(cat "$build/fuzz-logs/$n.rc")
    status=ok
    if [ "$rc" -ne 0 ]; then
        status="CRASH (exit $rc, see $log)"
        crashed=$((crashed + 1))
    fi
    printf '  %-14s %12s executions  %-10s %s\n' "$n" "${execs:-?}" "${cov:-}" "$status"
    total=$((total + ${execs:-0}))
done
echo "fuzz: $total executions in total, $crashed harnesses crashed"
[ "$crashed" -eq 0 ]
