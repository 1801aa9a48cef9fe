# smtpgov build: clang -target bpf -> bpftool skeleton -> the smtpgov binary,
# plus tests, benchmarks and packaging. `make V=1` shows every command.

PREFIX   ?= /usr/local
DESTDIR  ?=
OUT      := build
CC       ?= cc
CLANG    ?= clang
BPFTOOL  ?= bpftool
ARCH     := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror
# snprintf truncation is checked where it matters; the warning is noise here.
# Only GCC knows it (clang 14 rejects the flag under -Werror): ask the compiler.
cc_has = $(shell $(CC) -Werror $(1) -E -x c /dev/null >/dev/null 2>&1 && echo $(1))
USER_WARN := $(WARN) $(call cc_has,-Wno-format-truncation)
DEPFLAGS  = -MMD -MP
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -I. -Iinclude $(WARN)

# The layers of user/, each seeing only itself and the ones below it
# (README: Layout). The include path is the rule: core sees core and
# include/; kernel adds libbpf and the skeleton; daemon adds kernel; the
# CLI sees everything.
CORE_INC   := -Iinclude -Iuser/core
KERNEL_INC := $(CORE_INC) -Iuser/kernel -I$(OUT)
DAEMON_INC := $(KERNEL_INC) -Iuser/daemon
CLI_INC    := $(DAEMON_INC) -Iuser/cli
TEST_INC   := $(CLI_INC) -Itests/lib
BASE_CPPFLAGS := -D_GNU_SOURCE

CORE_LIBS   := -linih -lpcre2-8
KERNEL_LIBS := -lbpf -lelf -lz
LDLIBS      := $(KERNEL_LIBS) $(CORE_LIBS) -lsystemd

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

CORE_OBJS   := $(patsubst %.c,$(OUT)/%.o,$(wildcard user/core/*.c))
KERNEL_OBJS := $(patsubst %.c,$(OUT)/%.o,$(wildcard user/kernel/*.c))
DAEMON_OBJS := $(patsubst %.c,$(OUT)/%.o,$(wildcard user/daemon/*.c))
CLI_OBJS    := $(patsubst %.c,$(OUT)/%.o,$(wildcard user/cli/*.c))
CORE_LIB    := $(OUT)/libsmtpgov-core.a
# Everything but main(): what root tests and benchmarks link.
RUNTIME_OBJS := $(KERNEL_OBJS) $(DAEMON_OBJS) $(filter-out $(OUT)/user/cli/main.o,$(CLI_OBJS))
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUT)/tests/unit/%,$(wildcard tests/unit/test_*.c))
BPF_TESTS := $(patsubst tests/bpf/%.c,$(OUT)/tests/bpf/%,$(wildcard tests/bpf/test_*.c))
TEST_HELPERS := $(patsubst %.c,$(OUT)/%.o,$(wildcard tests/lib/*.c))
TOOL_BINS := $(patsubst tests/tools/%.c,$(OUT)/%,$(wildcard tests/tools/*.c))
BENCH_BINS := $(patsubst bench/%.c,$(OUT)/bench/%,$(wildcard bench/*.c))

.PHONY: all clean deps check check-source check-unit check-bpf check-e2e bench bench-campaign install demo \
	fuzz fuzz-build check-fuzz san-build check-san
.DELETE_ON_ERROR:

all: $(OUT)/smtpgov $(TOOL_BINS)

$(OUT)/smtpgov.bpf.o: bpf/smtpgov.bpf.c vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(OUT)/smtpgov.skel.h: $(OUT)/smtpgov.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name smtpgov_bpf > $@

define compile
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(USER_WARN) $(BASE_CPPFLAGS) $(1) $(DEPFLAGS) -c $< -o $@
endef

# Only the kernel module waits for the skeleton; the rest builds without
# clang and bpftool (make check-unit).
$(OUT)/user/core/%.o: user/core/%.c
	$(call compile,$(CORE_INC))
$(OUT)/user/kernel/%.o: user/kernel/%.c $(OUT)/smtpgov.skel.h
	$(call compile,$(KERNEL_INC))
$(OUT)/user/daemon/%.o: user/daemon/%.c
	$(call compile,$(DAEMON_INC))
$(OUT)/user/cli/%.o: user/cli/%.c
	$(call compile,$(CLI_INC))
$(OUT)/tests/unit/%.o: tests/unit/%.c
	$(call compile,$(CORE_INC) -Iuser/daemon)
$(OUT)/tests/fuzz/%.o: tests/fuzz/%.c
	$(call compile,$(CORE_INC))
$(OUT)/tests/%.o: tests/%.c $(OUT)/smtpgov.skel.h
	$(call compile,$(TEST_INC))
$(OUT)/bench/%.o: bench/%.c $(OUT)/smtpgov.skel.h
	$(call compile,$(TEST_INC))

$(CORE_LIB): $(CORE_OBJS)
	$(call msg,AR,$@)
	$(Q)$(AR) rcs $@ $^

$(OUT)/smtpgov: $(OUT)/user/cli/main.o $(RUNTIME_OBJS) $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# Unit tests: the core archive only (test_follow adds the follower, which
# needs no libsystemd: the journal is its own source, user/daemon/journal.c).
$(OUT)/tests/unit/test_follow: $(OUT)/tests/unit/test_follow.o $(OUT)/user/daemon/follow.o $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(CORE_LIBS) -lcmocka -o $@

# The epoll loop's own test adds the loop (no library of its own).
$(OUT)/tests/unit/test_loop: $(OUT)/tests/unit/test_loop.o $(OUT)/user/daemon/loop.o $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(CORE_LIBS) -lcmocka -o $@

$(OUT)/tests/unit/%: $(OUT)/tests/unit/%.o $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(CORE_LIBS) -lcmocka -o $@

# libFuzzer harnesses: the core archive only (see Fuzzing below).
$(OUT)/tests/fuzz/%: $(OUT)/tests/fuzz/%.o $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) -fsanitize=fuzzer $^ $(CORE_LIBS) -o $@

$(OUT)/tests/bpf/%: $(OUT)/tests/bpf/%.o $(TEST_HELPERS) $(RUNTIME_OBJS) $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lcmocka -lpthread -o $@

# mxsim speaks STARTTLS through OpenSSL.
$(OUT)/%: $(OUT)/tests/tools/%.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lssl -lcrypto -lpthread -o $@

$(OUT)/bench/%: $(OUT)/bench/%.o $(TEST_HELPERS) $(RUNTIME_OBJS) $(CORE_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lpthread -o $@

$(OUT):
	$(Q)mkdir -p $@

# Debian packages needed to build and test; installed only when missing.
DEB_PKGS := clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool libcmocka-dev libinih-dev \
	    libpcre2-dev libsystemd-dev pkg-config iproute2 postfix make gcc python3 nftables \
	    libclang-rt-14-dev swaks libssl-dev openssl systemd-journal-remote
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "  DEPS     installing:" $$missing; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Rules the compiler cannot check: only user/kernel reaches the maps, and
# comments cite files that exist (tests/check_source.py; it tests itself first).
check-source:
	$(Q)python3 tests/check_source.py --self-test && python3 tests/check_source.py

check: deps check-source
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BINS) $(BPF_TESTS)
	$(Q)$(MAKE) --no-print-directory check-fuzz check-san
	$(Q)tests/run $(UNIT_BINS) -- $(BPF_TESTS) -- $(wildcard tests/e2e/test_*.sh)

# --- Fuzzing (README: Fuzzing) ---------------------------------------------
# libFuzzer harnesses in tests/fuzz, built with clang into their own
# directory (the core archive rebuilt with the same sanitizers). Seeds and
# every input that ever found a bug are in tests/fuzz/corpus/NAME; what a
# run discovers goes to $(FUZZ_OUT)/corpus/NAME, never into the tree.
FUZZ_OUT     := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst %,$(FUZZ_OUT)/tests/fuzz/fuzz_%,$(FUZZ_NAMES))
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 5
FUZZ_OPTS    ?= -timeout=10 -rss_limit_mb=2048 -max_len=65536
SAN_OUT      := build-san
SAN_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

fuzz-build:
	$(Q)$(MAKE) --no-print-directory OUT=$(FUZZ_OUT) CC=$(CLANG) \
		CFLAGS="-g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
		$(FUZZ_BINS)

# Each harness for FUZZ_SECONDS (make fuzz FUZZ_SECONDS=3600 for an hour each).
fuzz: fuzz-build
	$(Q)for n in $(FUZZ_NAMES); do \
		mkdir -p $(FUZZ_OUT)/corpus/$$n $(FUZZ_OUT)/crashes; \
		echo "  FUZZ     $$n for $(FUZZ_SECONDS)s"; \
		$(FUZZ_OUT)/tests/fuzz/fuzz_$$n $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 -artifact_prefix=$(FUZZ_OUT)/crashes/$$n- \
			$(FUZZ_OUT)/corpus/$$n tests/fuzz/corpus/$$n 2>$(FUZZ_OUT)/$$n.log; rc=$$?; \
		grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss' $(FUZZ_OUT)/$$n.log; \
		[ $$rc = 0 ] || { tail -40 $(FUZZ_OUT)/$$n.log; exit 1; }; \
	done

# In make check: every corpus input replayed, then each harness a few seconds.
check-fuzz: fuzz-build
	$(Q)for n in $(FUZZ_NAMES); do \
		mkdir -p $(FUZZ_OUT)/corpus/$$n $(FUZZ_OUT)/crashes; \
		log=$(FUZZ_OUT)/$$n.check.log; \
		$(FUZZ_OUT)/tests/fuzz/fuzz_$$n $(FUZZ_OPTS) -runs=0 tests/fuzz/corpus/$$n >$$log 2>&1 && \
		$(FUZZ_OUT)/tests/fuzz/fuzz_$$n $(FUZZ_OPTS) -max_total_time=$(FUZZ_CHECK_SECONDS) \
			-artifact_prefix=$(FUZZ_OUT)/crashes/$$n- \
			$(FUZZ_OUT)/corpus/$$n tests/fuzz/corpus/$$n >>$$log 2>&1 || \
			{ echo "FAIL fuzz_$$n"; tail -40 $$log; exit 1; }; \
		echo "PASS fuzz_$$n: $$(ls tests/fuzz/corpus/$$n | wc -l) corpus inputs replayed;" \
			"$$(grep -oE '^#[0-9]+' $$log | tail -1 | tr -d '#') runs in $(FUZZ_CHECK_SECONDS)s"; \
	done

# --- Sanitizers ------------------------------------------------------------
# The unit tests and the root kernel tests again, built with ASan and UBSan
# in $(SAN_OUT) (smtpgov itself too: the kernel tests run it). Reports go to
# $(SAN_OUT)/reports; any report, or a failed test, fails the run.
san-build:
	$(Q)$(MAKE) --no-print-directory OUT=$(SAN_OUT) CFLAGS="-g -O1 $(SAN_SAN)" \
		$(SAN_OUT)/smtpgov $(patsubst $(OUT)/%,$(SAN_OUT)/%,$(UNIT_BINS) $(BPF_TESTS))

check-san: san-build
	$(Q)rm -rf $(SAN_OUT)/reports && mkdir -p $(SAN_OUT)/reports
	$(Q)ASAN_OPTIONS=log_path=$(CURDIR)/$(SAN_OUT)/reports/asan:detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=log_path=$(CURDIR)/$(SAN_OUT)/reports/ubsan:halt_on_error=1:print_stacktrace=1 \
	SMTPGOV_BIN=$(SAN_OUT)/smtpgov \
		tests/run $(patsubst $(OUT)/%,$(SAN_OUT)/%,$(UNIT_BINS)) -- \
		$(patsubst $(OUT)/%,$(SAN_OUT)/%,$(BPF_TESTS)); rc=$$?; \
	if [ -n "$$(ls $(SAN_OUT)/reports)" ]; then \
		echo "FAIL sanitizers: reports in $(SAN_OUT)/reports:"; cat $(SAN_OUT)/reports/*; exit 1; \
	fi; \
	[ $$rc = 0 ] && echo "PASS sanitizers: no ASan/UBSan report"

check-unit: $(UNIT_BINS)
	$(Q)tests/run $(UNIT_BINS)

check-bpf: all $(BPF_TESTS)
	$(Q)tests/run -- $(BPF_TESTS)

check-e2e: all
	$(Q)tests/run -- -- $(wildcard tests/e2e/test_*.sh)

bench: all $(BENCH_BINS)
	$(Q)for b in $(BENCH_BINS); do $$b || exit 1; done

# The campaign against simulated providers, run several ways (README: Benchmarks).
bench-campaign: deps all
	$(Q)bash bench/campaign.sh

# A newcomer's first command: a governed Postfix against throttling providers.
demo: deps all
	$(Q)bash tests/e2e/demo.sh

install: $(OUT)/smtpgov
	install -D -m 0755 $(OUT)/smtpgov $(DESTDIR)$(PREFIX)/sbin/smtpgov
	install -D -m 0644 packaging/smtpgov.service $(DESTDIR)$(PREFIX)/lib/systemd/system/smtpgov.service
	install -D -m 0644 packaging/smtpgov.conf $(DESTDIR)$(PREFIX)/share/doc/smtpgov/smtpgov.conf.example
	install -D -m 0644 man/smtpgov.8 $(DESTDIR)$(PREFIX)/share/man/man8/smtpgov.8

clean:
	rm -rf $(OUT) $(FUZZ_OUT) $(SAN_OUT)

-include $(shell find $(OUT) -name '*.d' 2>/dev/null)
