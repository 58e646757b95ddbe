# Parley — one Makefile, no generators (STYLE.md).
#   make        build the four programs into build/
#   make test   install what is missing, build, run unit (plain + ASan/UBSan) and e2e tests
#   make run    install what is missing, build, start a complete server on localhost
CC      ?= cc
PKGS    := libzmq yajl libpq expat sqlite3 openssl libidn
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Icommon $(shell pkg-config --cflags $(PKGS))
override CFLAGS += -DPARLEY_MIGRATIONS_DIR='"$(CURDIR)/storage/migrations"'
LDLIBS  := $(shell pkg-config --libs $(PKGS)) -lev -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

B := build

COMMON_SRC  := $(wildcard common/*.c)
GATEWAY_SRC := $(wildcard gateway/*.c)
ROUTER_SRC  := $(wildcard router/*.c)
STORAGE_SRC := $(wildcard storage/*.c)
CTL_SRC     := tools/parleyctl.c
BENCH_SRC   := $(wildcard tools/bench/*.c)

COMMON_OBJ  := $(COMMON_SRC:%.c=$(B)/%.o)
PROGS := $(B)/parley-gateway $(B)/parley-router $(B)/parley-storage $(B)/parleyctl
TOOLS := $(B)/parley-bench

# Unit tests: tests/unit/test_X.c links the common library plus, for pure code
# that lives in a process directory, the files named in UNIT_EXTRA_test_X.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/unit/%)
UNIT_SAN := $(UNIT_SRC:tests/unit/%.c=$(B)/unit-san/%)
UNIT_EXTRA_test_sasl := gateway/sasl.c
UNIT_EXTRA_test_sm := gateway/sm_queue.c
UNIT_EXTRA_test_bench_histo := tools/bench/histo.c
UNIT_EXTRA_test_bench_stamp := tools/bench/stamp.c
UNIT_EXTRA_test_bench_scram := tools/bench/scram_client.c
UNIT_EXTRA_test_bench_opts  := tools/bench/opts.c
UNIT_EXTRA_test_bench_procmem := tools/bench/procmem.c
UNIT_EXTRA_test_router_jobs := router/jobs.c

.PHONY: all deps test unit e2e run clean bench install
all: $(PROGS) $(TOOLS)

$(B)/%.o: %.c $(wildcard common/*.h) $(wildcard $(dir %)*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(B) -name '*.d' 2>/dev/null)

$(B)/libparley-common.a: $(COMMON_OBJ)
	ar rcs $@ $^

$(B)/parley-gateway: $(GATEWAY_SRC:%.c=$(B)/%.o) $(B)/libparley-common.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(B)/parley-router: $(ROUTER_SRC:%.c=$(B)/%.o) $(B)/libparley-common.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(B)/parley-storage: $(STORAGE_SRC:%.c=$(B)/%.o) $(B)/libparley-common.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(B)/parleyctl: $(CTL_SRC:%.c=$(B)/%.o) $(B)/libparley-common.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
# The load generator: not in PROGS, so `make install` leaves it out.
$(B)/parley-bench: $(BENCH_SRC:%.c=$(B)/%.o) $(B)/libparley-common.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

.SECONDEXPANSION:
$(B)/unit/%: tests/unit/%.c $(COMMON_SRC) $$(UNIT_EXTRA_$$*) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Igateway -o $@ $< $(COMMON_SRC) $(UNIT_EXTRA_$*) $(LDLIBS) -lcmocka
$(B)/unit-san/%: tests/unit/%.c $(COMMON_SRC) $$(UNIT_EXTRA_$$*) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -Igateway -o $@ $< $(COMMON_SRC) $(UNIT_EXTRA_$*) $(LDLIBS) -lcmocka

deps:
	@deploy/install-deps.sh

unit: $(UNIT_BIN) $(UNIT_SAN)
	@set -e; for t in $(UNIT_BIN) $(UNIT_SAN); do echo "== $$t"; $$t; done

e2e: all
	/usr/bin/python3 -m pytest -v tests/e2e

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) e2e

run: deps
	$(MAKE) all
	deploy/parley-launch --config deploy/parley.conf.dev --state var --demo

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/usr/share/parley/migrations $(DESTDIR)/etc/systemd/system
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 storage/migrations/*.sql $(DESTDIR)/usr/share/parley/migrations/
	install -D -m 644 deploy/systemd/parley.sysusers $(DESTDIR)/usr/lib/sysusers.d/parley.conf
	install -m 644 deploy/systemd/parley-router.service deploy/systemd/parley-storage@.service \
	    deploy/systemd/parley-gateway@.service deploy/systemd/parley.target $(DESTDIR)/etc/systemd/system/
	install -D -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/parley/README.md

# Parley vs Prosody vs ejabberd under build/parley-bench (BENCHMARKS.md).
# Needs root and `apt-get install prosody ejabberd` (a missing peer is skipped).
# A quick look: make bench BENCH_ARGS="--runs 1 --users 2000 --messages 10000"
bench: all
	bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(B)
