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

# Every test, in the normal build and again under ASan+UBSan.
test: build asan
	@./scripts/test.sh $(BUILD) $(ASAN_BUILD)

# Only the normal build (quicker while developing).
test-fast: build
	@./scripts/test.sh $(BUILD)

# The chaos suite for 30 minutes (make test runs a 60 s bounded version).
chaos-soak: build
	@$(BUILD)/tests/chaos --soak

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Benchmarks against this machine's limits (bench/bench.c); ONLY=N runs one
# (1 batch ingest, 2 single ingest, 3 publisher, 4 end-to-end latency, 6 seed
# baseline + NATS outage, 7 peak RSS). Writes bench/RESULTS.md: the measured table,
# then the hand-written bench/ANALYSIS.md (causes of missed targets).
BENCH_BUILD ?= build-bench
.PHONY: bench
bench: deps
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@MAKEFLAGS= cmake --build $(BENCH_BUILD) -j $(JOBS) --target vigil bench_vigil >/dev/null
	@$(BENCH_BUILD)/bench/bench_vigil $(if $(ONLY),--only $(ONLY)) --out bench/RESULTS.md
	@cat bench/ANALYSIS.md >> bench/RESULTS.md
