# The two commands a fresh Debian machine needs (as root): `make demo` and `make test`.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
TSAN_BUILD_DIR ?= build-tsan
CMAKE_FLAGS ?= -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: deps build test test-unit test-asan test-tsan node-deps demo demo-dialects bench bench-pinned bench-dialects bench-resilience bench-accounting bench-migration bench-faults soak fuzz format clean

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

bench: build
	bash bench/run.sh

# The reference for issue #14: the proxy alone on CPU 0, wrk and a fixed nginx upstream on CPU 1,
# nginx and haproxy beside cutover in the same run (BENCH_QUICK=1 for a short smoke run).
bench-pinned: build
	bash bench/pinned.sh

# CPU per request, throughput and streaming TTFB of each client/provider dialect path (issue #13).
bench-dialects: build
	bash bench/dialects.sh

bench-resilience: build
	bash bench/resilience.sh

bench-accounting: build
	bash bench/accounting.sh

bench-migration: build
	cmake --build $(BUILD_DIR) --target bench_breach_to_zero
	bash bench/shadow.sh
	$(BUILD_DIR)/bench_breach_to_zero

# The fault matrix's long form (about 20 minutes), written to docs/fault-matrix.md.
bench-faults: build node-deps
	bash bench/fault_matrix.sh

# Ten minutes of mixed traffic with reloads every 30 s and random provider faults.
soak: build node-deps
	bash bench/soak.sh

# libFuzzer runs of every fuzz target, FUZZ_SECONDS each (clang); the corpora replay in
# `make test` too.
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCUTOVER_FUZZ=ON -DCUTOVER_NODE_TESTS=OFF
	cmake --build build-fuzz --target fuzz_sse_parser fuzz_response_normalizer fuzz_config_loader
	for target in sse_parser response_normalizer config_loader; do \
		mkdir -p build-fuzz/corpus/$$target && \
		./build-fuzz/fuzz_$$target -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/$$target fuzz/corpus/$$target || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(TSAN_BUILD_DIR)
