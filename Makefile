# Vigil — the two commands a user needs: `make run` and `make test`.
# Everything else (build trees, packages, servers) is derived from them.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build asan run test test-fast format clean chaos-soak

all: build

deps:
	@./scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVIGIL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	@./scripts/run.sh

# Every test, in the normal build and again under ASan+UBSan; then each
# libFuzzer harness for FUZZ_TEST_SECONDS (build-fuzz, clang).
test: build asan fuzz-build
	@./scripts/test.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# Only the normal build (quicker while developing).
test-fast: build
	@./scripts/test.sh $(BUILD)

# The chaos suite for 30 minutes (make test runs a 60 s bounded version).
chaos-soak: build
	@$(BUILD)/tests/chaos --soak

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# libFuzzer harnesses (fuzz/): a clang tree with ASan+UBSan that builds only
# them. `make fuzz` runs each for FUZZ_SECONDS and prints executions and
# crashes; `make test` runs each for FUZZ_TEST_SECONDS through CTest.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 30
.PHONY: fuzz fuzz-build
fuzz-build: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVIGIL_FUZZ=ON \
	    -DFUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	@./scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Benchmarks against this machine's limits (bench/bench.c); ONLY=N runs one
# (1 batch ingest, 2 single ingest, 3 publisher, 4 end-to-end latency, 5 SSE
# fan-out to 1,000 clients, 6 seed baseline + NATS outage, 7 peak RSS, 8 cost per
# event with a 1M- and 10M-row event_log; BENCH_HISTORY=0,1000000 makes 8
# shorter). Writes bench/RESULTS.md: the measured table, then the hand-written
# bench/ANALYSIS.md (causes of missed targets).
BENCH_BUILD ?= build-bench
.PHONY: bench
bench: deps
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@MAKEFLAGS= cmake --build $(BENCH_BUILD) -j $(JOBS) --target vigil bench_vigil >/dev/null
	@$(BENCH_BUILD)/bench/bench_vigil $(if $(ONLY),--only $(ONLY)) --out bench/RESULTS.md
	@cat bench/ANALYSIS.md >> bench/RESULTS.md
