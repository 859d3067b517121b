# wobble: top-level entry points.
#   make demo    install dependencies, build, run the main job on ../shared
#   make check   install dependencies, build Release and ASan+UBSan, run all tests in both
#   make bench   benchmarks against Pillow / torchvision (installs python3-pil etc.)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SHARED ?= $(if $(WOBBLE_SHARED),$(WOBBLE_SHARED),$(abspath ../shared))
export WOBBLE_SHARED := $(SHARED)

.PHONY: all deps bench-deps fuzz-deps release asan fuzz-build fuzz check test demo bench clean

all: release

deps:
	@.ci/install-deps .ci/packages.txt

bench-deps: deps
	@.ci/install-deps .ci/packages-bench.txt

fuzz-deps: deps
	@.ci/install-deps .ci/packages-fuzz.txt

build/release/Makefile: CMakeLists.txt tests/CMakeLists.txt
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release

build/asan/Makefile: CMakeLists.txt tests/CMakeLists.txt
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DWOBBLE_SANITIZE=ON

build/fuzz/Makefile: CMakeLists.txt tests/fuzz/CMakeLists.txt
	CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DWOBBLE_FUZZ=ON -DBUILD_TESTING=OFF

# libFuzzer harnesses under ASan+UBSan, FUZZ_TIME seconds each (docs/reliability.md)
FUZZ_TIME ?= 60
fuzz-build: fuzz-deps release build/fuzz/Makefile
	cmake --build build/fuzz -j $(JOBS) --target fuzz_image fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_npy fuzz_dataset fuzz_opspec fuzz_cache fuzz_embeddings fuzz_merge

fuzz: fuzz-build
	tests/fuzz/run.sh build/fuzz $(FUZZ_TIME) $(FUZZ_HARNESSES)

release: deps build/release/Makefile
	cmake --build build/release -j $(JOBS)

asan: deps build/asan/Makefile
	cmake --build build/asan -j $(JOBS)

test: release
	cd build/release && ctest --output-on-failure -j $(JOBS)

check: release asan
	cd build/release && ctest --output-on-failure -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

demo: release
	sh tools/demo.sh build/release/wobble "$(SHARED)" demo-out

bench: bench-deps release
	/usr/bin/python3 bench/perturb --wobble-bench build/release/bench_perturb --shared "$(SHARED)"
	/usr/bin/python3 bench/embed --bench build/release/bench_embed --shared "$(SHARED)"
	/usr/bin/python3 bench/embed_e2e --wobble build/release/wobble --shared "$(SHARED)"
	build/release/bench_gemm 2
	/usr/bin/python3 bench/meb --bench build/release/bench_meb
	/usr/bin/python3 bench/eval --wobble build/release/wobble --shared "$(SHARED)"
	/usr/bin/python3 bench/probe --wobble build/release/wobble --bench build/release/bench_probe --shared "$(SHARED)"
	/usr/bin/python3 bench/finetune --bench build/release/bench_finetune --shared "$(SHARED)"
	/usr/bin/python3 bench/corrupt --build build/release --shared "$(SHARED)"

clean:
	rm -rf build demo-out
