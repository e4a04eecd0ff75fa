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
        bench-metrics bench-instructions \
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

# The real routing engine (library objects) on a simulated workload.
$(BUILD)/bench/routing: bench/routing.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

bench-routing: $(BUILD)/bench/routing
	@$(BUILD)/bench/routing

# The semantic cache: the encoder and the index in process (bench/cache.c),
# then semantic hits through the real gateway (bench/cache_e2e.py), then
# the hit precision/recall part (bench/cache_accuracy.sh).
$(BUILD)/bench/cache: bench/cache.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

# The encoder's kernels against each other (bench/encoder.c), alternating.
$(BUILD)/bench/encoder: bench/encoder.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS) $(LIBS)

bench-cache: all $(BUILD)/bench/cache $(BUILD)/bench/encoder
	@bash bench/cache.sh

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
	rm -rf build build-asan

help:
	@echo "make              build build/relay and build/relay-fake"
	@echo "make up | down    start | stop the local stack (status, logs too)"
	@echo "make test         the whole suite: unit, integration, reliability, end-to-end"
	@echo "make test-reliability  faults, bad input, security (docs/reliability.md)"
	@echo "make asan         sanitizer build in build-asan/"
	@echo "make asan-unit    the unit tests under ASan+UBSan"
	@echo "make bench        every benchmark below, one after another"
	@echo "make bench-overhead  direct vs nginx vs relay, one run"
	@echo "make bench-features  keys + Redis limits + PostgreSQL log on vs off"
	@echo "make bench-analytics  /admin/analytics over 10M rows (PostgreSQL, SQLite)"
	@echo "make dashboard    build dashboard/dist (npm ci + vite build)"

	@echo "make bench-routing  the routing engine on a simulated workload"
	@echo "make bench-instructions  instructions per request (callgrind)"
	@echo "make bench-metrics  rps with and without a 10 Hz /metrics scraper"
	@echo "make bench-cache  semantic cache: embedding, index at 10k/100k, hits e2e"
	@echo "make check        style checks"
	@echo "make deps         install system, Python and Node dependencies"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
