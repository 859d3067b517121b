# wobble: top-level entry points.
#   make demo    install dependencies, build, run the main job on ../shared
#   make check   install dependencies, build Release and ASan+UBSan, run all tests in both
#   make bench   benchmarks against Pillow / torchvision (installs python3-pil etc.)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SHARED ?= $(if $(WOBBLE_SHARED),$(WOBBLE_SHARED),$(abspath ../shared))
export WOBBLE_SHARED := $(SHARED)

.PHONY: all deps bench-deps release asan check test demo bench clean

all: release

deps:
	@.ci/install-deps .ci/packages.txt

bench-deps: deps
	@.ci/install-deps .ci/packages-bench.txt

build/release/Makefile: CMakeLists.txt tests/CMakeLists.txt
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release

build/asan/Makefile: CMakeLists.txt tests/CMakeLists.txt
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DWOBBLE_SANITIZE=ON

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
	/usr/bin/python3 bench/meb --bench build/release/bench_meb
	/usr/bin/python3 bench/eval --wobble build/release/wobble --shared "$(SHARED)"
	/usr/bin/python3 bench/probe --wobble build/release/wobble --bench build/release/bench_probe --shared "$(SHARED)"
	/usr/bin/python3 bench/finetune --bench build/release/bench_finetune --shared "$(SHARED)"

clean:
	rm -rf build demo-out
