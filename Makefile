# Relay build. `make` builds build/relay and build/relay-fake with warnings
# as errors; `make asan` builds the same under ASan+UBSan into build-asan/.
# `make help` lists every target.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -D_GNU_SOURCE -g $(OPT) $(SAN) -pthread -Isrc -MMD -MP
LDFLAGS := $(SAN) -pthread
LIBS    := -luv -lcurl -ljansson -lyaml -lhttp_parser -lcrypto -lpq -lsqlite3 \
           -lhiredis -lopenblas -lm

# Every source file of the gateway except the command line is a library
# object, so unit tests link against exactly what ships.
LIB_SRC  := $(shell find src -name '*.c' ! -path src/main.c | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
FAKE_SRC := $(shell find tools/fakeprov -name '*.c' | sort)
FAKE_OBJ := $(FAKE_SRC:%.c=$(BUILD)/obj/%.o)
# The fake provider shares only the leaf utilities, never the gateway core.
FAKE_LIB := $(filter $(BUILD)/obj/src/util/%,$(LIB_OBJ))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all asan asan-unit unit test test-unit test-integration test-reliability \
        test-e2e bench \
        bench-overhead bench-features bench-routing bench-cache bench-analytics \
        bench-cache-accuracy bench-metrics bench-instructions \
        bench-logwriter fuzz fuzz-build fuzz-bins soak \
        dashboard up down status logs \
        check clean help deps

all: $(BUILD)/relay $(BUILD)/relay-fake

$(BUILD)/relay: $(LIB_OBJ) $(BUILD)/obj/src/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/relay-fake: $(FAKE_OBJ) $(FAKE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS) -lcmocka

unit: $(UNIT_BIN)

ASAN_VARS := BUILD=build-asan OPT=-O1 \
    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

asan:
	$(MAKE) $(ASAN_VARS)

# libFuzzer targets (tests/fuzz/) against the real library objects, built
# by clang with ASan+UBSan into build-fuzz/; `make fuzz` builds them and runs
# each for FUZZ_SECONDS (scripts/fuzz.sh, docs/reliability.md).
FUZZ_CC    ?= $(shell command -v clang-14 || command -v clang || echo clang)
FUZZ_KINDS := openai anthropic gemini ollama
FUZZ_ONE   := http chat h1 redis journal config tokenizer
FUZZ_BIN   := $(FUZZ_ONE:%=$(BUILD)/fuzz/fuzz_%) \
              $(FUZZ_KINDS:%=$(BUILD)/fuzz/fuzz_stream_%) \
              $(FUZZ_KINDS:%=$(BUILD)/fuzz/fuzz_response_%)
FUZZ_LINK  := -fsanitize=fuzzer,address,undefined
FUZZ_VARS  := BUILD=build-fuzz CC=$(FUZZ_CC) OPT=-O1 \
    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUZZ_LINK) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

$(BUILD)/fuzz/fuzz_stream_%: tests/fuzz/fuzz_stream.c tests/fuzz/fuzz.h $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_KIND='"$*"' $(FUZZ_LINK) -o $@ $< $(LIB_OBJ) \
	    $(LDFLAGS) $(LIBS)

$(BUILD)/fuzz/fuzz_response_%: tests/fuzz/fuzz_response.c tests/fuzz/fuzz.h $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_KIND='"$*"' $(FUZZ_LINK) -o $@ $< $(LIB_OBJ) \
	    $(LDFLAGS) $(LIBS)

# Builds the fuzz targets only (in build-fuzz/fuzz/).
fuzz-build:
	$(MAKE) $(FUZZ_VARS) fuzz-bins

fuzz-bins: $(FUZZ_BIN)

fuzz: fuzz-build
	@bash scripts/fuzz.sh

# 1M+ mixed requests with injected faults against PostgreSQL + Redis; RSS,
# fds and request log rows (tests/soak/soak.sh; ~10-20 min; not in CI).
soak: all
	@bash tests/soak/soak.sh

# The unit tests under the sanitizers (built into build-asan/tests).
asan-unit:
	$(MAKE) $(ASAN_VARS) unit
	@UNIT_BUILD=build-asan bash scripts/test.sh unit

test: all unit
	@bash scripts/test.sh

test-unit: unit
	@bash scripts/test.sh unit

test-integration: all
	@bash scripts/test.sh integration

# Provider and store faults, bad input, security (docs/reliability.md).
test-reliability: all
	@bash scripts/test.sh reliability

test-e2e: all
	@bash scripts/test.sh e2e

bench: bench-overhead bench-features bench-routing bench-cache \
       bench-analytics bench-metrics bench-instructions

bench-overhead: all
	@bash bench/overhead.sh

bench-features: all
	@bash bench/features.sh

# Instructions per request under callgrind: exact on a busy machine too.
bench-instructions: all
	@bash bench/instructions.sh

# Throughput with and without a 10 Hz scraper of /metrics (a measurement).
bench-metrics: all
	@bash bench/metrics.sh

# /admin/analytics over 10 million synthetic rows, PostgreSQL and SQLite
# (BENCH_ROWS to change it); the filled logs are kept for the next run.
bench-analytics: all
	@python3 bench/analytics.py

# The dashboard's build (dashboard/dist), which the gateway serves: npm ci
# when node_modules is missing, then vite build. Needs the npm registry
# only for the first npm ci.
dashboard:
	@bash scripts/dashboard.sh build

# The semantic cache's precision/recall on tests/data/cache/ through
# `relay cache compare` (needs the encoder model: scripts/deps.sh).
bench-cache-accuracy: all
	@python3 bench/cache_accuracy.py

# The real routing engine (library objects) on a simulated workload.
$(BUILD)/bench/routing: bench/routing.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

bench-routing: $(BUILD)/bench/routing
	@$(BUILD)/bench/routing

# The semantic cache: the encoder and the index in process (bench/cache.c),
# then semantic hits through the real gateway (bench/cache_e2e.py), then
# the hit precision/recall part (bench/cache_accuracy.py).
$(BUILD)/bench/cache: bench/cache.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

# The encoder's kernels against each other (bench/encoder.c), alternating.
$(BUILD)/bench/encoder: bench/encoder.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

bench-cache: all $(BUILD)/bench/cache $(BUILD)/bench/encoder
	@bash bench/cache.sh

# The request log's insert path (COPY + rollup) against DATABASE_URL.
$(BUILD)/bench/logwriter: bench/logwriter.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

bench-logwriter: $(BUILD)/bench/logwriter
	@$(BUILD)/bench/logwriter

# up.sh installs what is missing first, then builds (a fresh machine lacks
# the -dev packages that `make` needs).
up:
	@bash scripts/up.sh

down:
	@bash scripts/down.sh

status:
	@bash scripts/status.sh

logs:
	@bash scripts/logs.sh

deps:
	@bash scripts/deps.sh

check:
	@bash scripts/check.sh

clean:
	rm -rf build build-asan build-fuzz

help:
	@echo "make              build build/relay and build/relay-fake"
	@echo "make up | down    start | stop the local stack (status, logs too)"
	@echo "make test         the whole suite: unit, integration, reliability, end-to-end"
	@echo "make test-reliability  faults, bad input, security (docs/reliability.md)"
	@echo "make asan         sanitizer build in build-asan/"
	@echo "make asan-unit    the unit tests under ASan+UBSan"
	@echo "make fuzz         build the libFuzzer targets, run each FUZZ_SECONDS (20)"
	@echo "make soak         1M+ mixed requests with faults; RSS, fds, log rows"
	@echo "make bench        every benchmark below, one after another"
	@echo "make bench-overhead  direct vs nginx vs relay, one run"
	@echo "make bench-features  keys + Redis limits + PostgreSQL log on vs off"
	@echo "make bench-analytics  /admin/analytics over 10M rows (PostgreSQL, SQLite)"
	@echo "make dashboard    build dashboard/dist (npm ci + vite build)"

	@echo "make bench-routing  the routing engine on a simulated workload"
	@echo "make bench-instructions  instructions per request (callgrind)"
	@echo "make bench-logwriter  request log COPY rows/s against DATABASE_URL"
	@echo "make bench-metrics  rps with and without a 10 Hz /metrics scraper"
	@echo "make bench-cache  semantic cache: embedding, index at 10k/100k, hits e2e"
	@echo "make bench-cache-accuracy  semantic cache precision/recall, near misses"
	@echo "make check        style checks"
	@echo "make deps         install system, Python and Node dependencies"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
