# The two commands the README opens with. Each does all of its own set-up on a fresh Debian 12.
#   make demo   build, run the media-streaming use case (cascad, transcoder, meter, agent), plot it
#   make test   build (plain and ASan+UBSan) and run every unit and end-to-end test
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc)

.PHONY: all deps deps-build build build-asan test test-plain test-asan quiet-build demo \
	experiment bench fuzz clean

all: build

deps:
	@deploy/install-deps.sh

# Only what compiling needs: no root on a machine that has it (packages for tests, the demo and the
# experiment come with `make test`, `make demo`, `make experiment`).
deps-build:
	@deploy/install-deps.sh build

build: deps-build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps-build
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DCASCA_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j$(JOBS)

test-plain: deps build
	cd $(BUILD) && ctest --output-on-failure --timeout 600

test-asan: deps build-asan
	cd $(BUILD_ASAN) && ctest --output-on-failure --timeout 900

test: test-plain test-asan

# The build of `make demo` and `make experiment` is quiet: its output goes to $(BUILD)/build.log,
# shown (the tail) only on failure.
quiet-build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@printf '== building casca in %s (log: %s/build.log)... ' "$(BUILD)" "$(BUILD)"; \
	start=$$(date +%s); \
	if cmake --build $(BUILD) -j$(JOBS) >$(BUILD)/build.log 2>&1; then \
	  echo "done in $$(($$(date +%s) - start)) s"; \
	else \
	  echo "FAILED; the end of $(BUILD)/build.log:"; tail -n 40 $(BUILD)/build.log; exit 1; \
	fi

# make demo [AGENT=gds|rds|rlds] [SIMULATE=1] [DURATION=seconds]: see deploy/demo.sh
demo: quiet-build
	@AGENT="$(AGENT)" SIMULATE="$(SIMULATE)" DURATION="$(DURATION)" deploy/demo.sh $(BUILD)

# make experiment [REAL=1] [REPEATS=3] [AGENTS=rds,gds,cgds,rlds] [ZONE=ES] [DAY=2022-04-10]
# [SPEED=240] [DURATION=seconds a run, default one replayed day]: the paper's evaluation over a
# replayed day of a real grid (deploy/experiment.py); prints the table and writes it (Markdown,
# JSON) with a plot of the day into $(BUILD)/experiment/.
REPEATS ?= 3
AGENTS ?= rds,gds,cgds,rlds
experiment: quiet-build
	@deploy/experiment.py --build $(BUILD) --repeats $(REPEATS) --agents $(AGENTS) \
	  $(if $(REAL),--real) $(if $(ZONE),--zone $(ZONE)) $(if $(DAY),--day $(DAY)) \
	  $(if $(SPEED),--speed $(SPEED)) $(if $(DURATION),--duration $(DURATION))

# make fuzz [FUZZ_SECONDS=60]: builds the libFuzzer harnesses of test/fuzz with clang in
# $(BUILD_FUZZ) and runs each for FUZZ_SECONDS (see test/fuzz/run.sh). `make test` replays their
# committed corpus and crash inputs without clang.
fuzz: deps
	@cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCASCA_FUZZ=ON -DCASCA_WERROR=OFF >/dev/null
	@cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzz
	@test/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

bench: build
	@test/bench/unary.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
