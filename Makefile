# The two commands a fresh Debian machine needs (as root): `make demo` and `make test`.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
TSAN_BUILD_DIR ?= build-tsan
CMAKE_FLAGS ?= -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: deps build test test-unit test-asan test-tsan node-deps demo demo-dialects demo-fleet bench bench-pinned bench-dialects bench-cache bench-fleet bench-fleet-overhead bench-resilience bench-accounting bench-migration bench-answer-scan bench-quota bench-count bench-kernel-split bench-faults soak fuzz format clean

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR)

node-deps: deps
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

# The whole suite: unit and integration tests (C++ and the official Node SDK), then the same
# C++ tests once more under AddressSanitizer and UndefinedBehaviorSanitizer.
test: build node-deps
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j2
	$(MAKE) test-asan

test-unit: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j2 -R '^unit\.'

test-asan: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCUTOVER_SANITIZE=address,undefined -DCUTOVER_NODE_TESTS=OFF
	cmake --build $(ASAN_BUILD_DIR)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		ctest --test-dir $(ASAN_BUILD_DIR) --output-on-failure -j2

# The concurrent parts (breakers, budgets, workers) under ThreadSanitizer.
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCUTOVER_SANITIZE=thread -DCUTOVER_NODE_TESTS=OFF
	cmake --build $(TSAN_BUILD_DIR) --target unit_tests integration_tests
	ctest --test-dir $(TSAN_BUILD_DIR) --output-on-failure -j2 -R '^(unit|integration)\.'

demo: build
	CUTOVER_BINARY=$(BUILD_DIR)/cutover bash scripts/demo.sh

# The same migration across dialects: Anthropic clients, a native Anthropic primary, an
# OpenAI-compatible relay as the candidate.
demo-dialects: build
	CUTOVER_BINARY=$(BUILD_DIR)/cutover bash scripts/demo.sh --dialects

# The same two runs on three replicas sharing a throwaway redis-server (issue #12); in the first,
# the leader stops half way and another takes the gates over.
demo-fleet: build
	CUTOVER_BINARY=$(BUILD_DIR)/cutover bash scripts/demo.sh --fleet

bench: build
	bash bench/run.sh

# The reference for issue #14: the proxy alone on CPU 0, wrk and a fixed nginx upstream on CPU 1,
# nginx and haproxy beside cutover in the same run (BENCH_QUICK=1 for a short smoke run).
bench-pinned: build
	bash bench/pinned.sh

# CPU per request, throughput and streaming TTFB of each client/provider dialect path (issue #13).
bench-dialects: build
	bash bench/dialects.sh

# Three replicas sharing one Redis (issue #12): how long a committed change takes to reach every
# replica, and how long a SIGKILLed leader takes to be replaced; written to bench/out/fleet.md.
bench-fleet: build
	CUTOVER_BIN=$(BUILD_DIR)/cutover bash bench/fleet.sh

# CPU per request of the response cache (hits, misses) and of quota bookkeeping (issue #15).
bench-cache: build
	bash bench/cache.sh

# What fleet mode costs the request path (issue #12): CPU per request and throughput of one pinned
# gateway with its state in a throwaway Redis against SQLite, the same migration in both, runs
# alternating; written to bench/out/fleet_overhead.md.
bench-fleet-overhead: build
	CUTOVER_BIN=$(BUILD_DIR)/cutover bash bench/fleet_overhead.sh

bench-resilience: build
	bash bench/resilience.sh

bench-accounting: build
	bash bench/accounting.sh

bench-migration: build
	cmake --build $(BUILD_DIR) --target bench_breach_to_zero
	bash bench/shadow.sh
	$(BUILD_DIR)/bench_breach_to_zero

# Issue #14: a plain chat answer through the DOM path and through PlainAnswer's scan and splice.
bench-answer-scan: build
	cmake --build $(BUILD_DIR) --target bench_answer_scan
	$(BUILD_DIR)/bench_answer_scan --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

# Issue #15: quota bookkeeping per request, natively, against a control answer without it.
bench-quota: build
	cmake --build $(BUILD_DIR) --target bench_quota
	taskset -c 0 $(BUILD_DIR)/bench_quota --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

# The chat path's instructions per request, counted under callgrind (issue #14, on a noisy machine).
bench-count: build
	bash bench/count_instructions.sh

# Where the chat path's CPU goes, user space or kernel, for cutover and nginx side by side.
bench-kernel-split: build
	bash bench/kernel_split.sh

# The fault matrix's long form (about 20 minutes), written to docs/fault-matrix.md.
bench-faults: build node-deps
	bash bench/fault_matrix.sh

# Ten minutes of mixed traffic with reloads every 30 s and random provider faults.
soak: build node-deps
	bash bench/soak.sh

# libFuzzer runs of every fuzz target, FUZZ_SECONDS each (clang); the corpora replay in
# `make test` too.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(patsubst fuzz/%_fuzz.cc,%,$(wildcard fuzz/*_fuzz.cc))
fuzz: deps
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCUTOVER_FUZZ=ON -DCUTOVER_NODE_TESTS=OFF
	cmake --build build-fuzz --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	for target in $(FUZZ_TARGETS); do \
		mkdir -p build-fuzz/corpus/$$target && \
		./build-fuzz/fuzz_$$target -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/$$target fuzz/corpus/$$target || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(TSAN_BUILD_DIR)
