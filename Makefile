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
CPPFLAGS := -Iinclude -Iuser -Itests/lib -I$(OUT) -D_GNU_SOURCE
# snprintf truncation is checked where it matters; the warning is noise here.
USER_WARN := $(WARN) -Wno-format-truncation
DEPFLAGS  = -MMD -MP
LDLIBS   := -lbpf -lelf -lz -linih -lpcre2-8 -lsystemd
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -I. -Iinclude $(WARN)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

USER_SRCS := $(wildcard user/*.c)
USER_OBJS := $(USER_SRCS:%.c=$(OUT)/%.o)
LIB_OBJS  := $(filter-out $(OUT)/user/main.o,$(USER_OBJS))
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUT)/tests/unit/%,$(wildcard tests/unit/test_*.c))
BPF_TESTS := $(patsubst tests/bpf/%.c,$(OUT)/tests/bpf/%,$(wildcard tests/bpf/test_*.c))
TEST_HELPERS := $(patsubst %.c,$(OUT)/%.o,$(wildcard tests/lib/*.c))
TOOL_BINS := $(patsubst tests/tools/%.c,$(OUT)/%,$(wildcard tests/tools/*.c))
BENCH_BINS := $(patsubst bench/%.c,$(OUT)/bench/%,$(wildcard bench/*.c))

.PHONY: all clean deps check check-unit check-bpf check-e2e bench bench-campaign install demo
.DELETE_ON_ERROR:

all: $(OUT)/smtpgov $(TOOL_BINS)

$(OUT)/smtpgov.bpf.o: bpf/smtpgov.bpf.c vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(OUT)/smtpgov.skel.h: $(OUT)/smtpgov.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name smtpgov_bpf > $@

$(OUT)/%.o: %.c $(OUT)/smtpgov.skel.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(USER_WARN) $(CPPFLAGS) $(DEPFLAGS) -c $< -o $@

$(OUT)/smtpgov: $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUT)/tests/unit/%: $(OUT)/tests/unit/%.o $(LIB_OBJS) $(TEST_HELPERS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lcmocka -o $@

$(OUT)/tests/bpf/%: $(OUT)/tests/bpf/%.o $(LIB_OBJS) $(TEST_HELPERS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lcmocka -lpthread -o $@

$(OUT)/%: $(OUT)/tests/tools/%.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lpthread -o $@

$(OUT)/bench/%: $(OUT)/bench/%.o $(LIB_OBJS) $(TEST_HELPERS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lpthread -o $@

$(OUT):
	$(Q)mkdir -p $@

# Debian packages needed to build and test; installed only when missing.
DEB_PKGS := clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool libcmocka-dev libinih-dev \
	    libpcre2-dev libsystemd-dev pkg-config iproute2 postfix make gcc python3 nftables
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "  DEPS     installing:" $$missing; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

check: deps
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BINS) $(BPF_TESTS)
	$(Q)tests/run $(UNIT_BINS) -- $(BPF_TESTS) -- $(wildcard tests/e2e/test_*.sh)

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
	rm -rf $(OUT)

-include $(shell find $(OUT) -name '*.d' 2>/dev/null)
