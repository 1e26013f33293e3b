# The two commands the README opens with. Each does all of its own set-up on a fresh Debian 12.
#   make demo   build, run the media-streaming use case (cascad, transcoder, meter, agent), plot it
#   make test   build (plain and ASan+UBSan) and run every unit and end-to-end test
BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc)

.PHONY: all deps build build-asan test test-plain test-asan demo bench clean

all: build

deps:
	@deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DCASCA_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j$(JOBS)

test-plain: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600

test-asan: build-asan
	cd $(BUILD_ASAN) && ctest --output-on-failure --timeout 900

test: test-plain test-asan

# make demo [AGENT=gds|rds|rlds] [SIMULATE=1] [DURATION=seconds]: see deploy/demo.sh
demo: build
	@AGENT="$(AGENT)" SIMULATE="$(SIMULATE)" DURATION="$(DURATION)" deploy/demo.sh $(BUILD)

bench: build
	@test/bench/unary.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
