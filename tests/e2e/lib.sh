# shellcheck shell=bash
# Helpers for end-to-end tests: a private Postfix instance that sends to
# mxsim (build/mxsim, the simulated providers) over loopback.
#
# Source it from a test script, then:
#   e2e_init                            # root, packages, temp dir, trap
#   mx_start --persona gmail:127.0.10.1-127.0.10.20:2525:limit=50
#   pf_create queue_run_delay=1s        # main.cf overrides as name=value
#   pf_route_range gmail 20 127.0.10 1 20 2525
#   pf_start [CGROUP]
#   pf_inject 100 "${PF_DOMAINS[@]}"
#   pf_wait_empty 30 || fail "queue not empty"
# Everything started here is recorded by PID and ended by e2e_cleanup, which
# e2e_init installs as the EXIT trap. Network traffic stays on loopback.
#
# What Postfix does under smtpgov was learned on this machine
# (docs/design.md, "How Postfix reacts"); this file follows it.

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MXSIM=${MXSIM:-$E2E_ROOT/build/mxsim}
E2E_DIR=          # per-test temporary directory (Postfix instance, mxsim files)
PF_DIR=           # Postfix instance: $PF_DIR/etc config, spool, data, maillog
PF_CONF=          # its config directory, for postfix -c / sendmail -C
PF_LOG=           # its maillog_file
PF_DOMAINS=()     # every domain routed with pf_route*
MX_PID=           # the running mxsim
MX_CTL=           # its control socket
MX_STATS=         # its --stats file
MX_LOG=           # its --log file
MX_TLS=()         # mxsim's STARTTLS options, set by mx_tls_cert
SMTPGOV=${SMTPGOV:-$E2E_ROOT/build/smtpgov}
SG_PIN=           # smtpgov pin dir (/sys/fs/bpf/smtpgov-test-...), set by sg_init
SG_CG=            # the MTA's test cgroup (Postfix runs in it, smtpgov governs it)
SG_DCG=           # the daemon's test cgroup (its waiting room cgroup goes below)
SG_PID=           # the running smtpgov daemon
SG_TARGET=()      # how sg_start names the MTA's cgroup (default: --cgroup "$SG_CG")
SG_CONF=          # its config file
SG_DLOG=          # its stdout/stderr
SG_STATE=         # its state file
MX_NETNS=         # when set, mx_start runs mxsim in this network namespace
PF_NETNS=         # when set, pf_start starts Postfix in this network namespace
SG_NETNS=         # when set, sg_start runs the daemon in this network namespace
E2E_NETNS=()      # network namespaces made by ns_add (deleted by e2e_cleanup)
E2E_PIDS=()       # other processes a test started (ended by e2e_cleanup)
SG_HOLD_PID=      # tests/tools/fdhold running the daemon (sg_fdstore_start)
FDHOLD=${FDHOLD:-$E2E_ROOT/build/fdhold}

# note MSG...: progress line on stderr, with the seconds since e2e_init.
note() {
	echo "[$(( SECONDS - ${E2E_T0:-0} ))s] $*" >&2
}

# fail MSG...: print "FAIL: MSG" with context (mxsim stats, maillog tail)
# and exit 1; the EXIT trap cleans up.
fail() {
	echo "FAIL: $*" >&2
	if [ -n "$PF_LOG" ] && [ -f "$PF_LOG" ]; then
		echo "--- last maillog lines ($PF_LOG)" >&2
		tail -n 15 "$PF_LOG" >&2
	fi
	exit 1
}

# skip MSG...: exit 77 (tests/run counts a skip; under CI=true a failure).
skip() {
	echo "SKIP: $*" >&2
	exit 77
}

# e2e_init: checks root, installs postfix if missing, checks build/mxsim,
# makes E2E_DIR (/var/tmp/smtpgov-test-XXXXXX, 0755 so the postfix user can
# traverse it) and installs e2e_cleanup as the EXIT trap.
e2e_init() {
	E2E_T0=$SECONDS
	[ "$(id -u)" = 0 ] || skip "needs root"
	if ! command -v postfix >/dev/null || [ ! -x /usr/sbin/postdrop ]; then
		note "installing postfix"
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null ||
			skip "postfix is not installed and apt-get failed"
	fi
	command -v python3 >/dev/null || skip "python3 is needed to read mxsim stats"
	[ -x "$MXSIM" ] || fail "$MXSIM missing: run make first"
	E2E_DIR=$(mktemp -d /var/tmp/smtpgov-test-XXXXXX) || fail "mktemp"
	chmod 0755 "$E2E_DIR"
	trap e2e_cleanup EXIT
	trap 'exit 130' INT TERM
}

# e2e_cleanup: stops Postfix and mxsim (only the processes started here)
# and removes E2E_DIR. Set E2E_KEEP=1 to keep the directory for debugging.
# Safe to call twice; it is the EXIT trap.
e2e_cleanup() {
	local rc=$? pid ns

	sg_stop
	pf_stop
	mx_stop
	for pid in "${E2E_PIDS[@]}"; do
		stop_pid "$pid"
	done
	E2E_PIDS=()
	for ns in "${E2E_NETNS[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	E2E_NETNS=()
	sg_cleanup
	if [ -n "$E2E_DIR" ] && [ -d "$E2E_DIR" ]; then
		if [ "${E2E_KEEP:-0}" = 1 ]; then
			echo "kept $E2E_DIR" >&2
		else
			rm -rf -- "$E2E_DIR"
		fi
	fi
	E2E_DIR=
	return $rc
}

# ---------------------------------------------------------------- mxsim

# mx_start ARGS...: starts mxsim with ARGS (--persona ...) plus its control
# socket, --stats and --log in E2E_DIR (in network namespace MX_NETNS when set); waits until it is listening (the
# control socket appears after every listener is bound). Sets MX_PID.
mx_start() {
	local i

	MX_CTL=$E2E_DIR/mxsim.ctl MX_STATS=$E2E_DIR/mxsim-stats.json MX_LOG=$E2E_DIR/mxsim-events.log
	rm -f "$MX_CTL"
	${MX_NETNS:+nsenter --net=/var/run/netns/$MX_NETNS} \
		"$MXSIM" --control "$MX_CTL" --stats "$MX_STATS" --log "$MX_LOG" "$@" \
		2>>"$E2E_DIR/mxsim.stderr" &
	MX_PID=$!
	for i in $(seq 100); do
		[ -S "$MX_CTL" ] && return 0
		kill -0 "$MX_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$E2E_DIR/mxsim.stderr" >&2
	MX_PID=
	fail "mxsim did not start: $*"
}

# mx_tls_cert: makes a self-signed certificate and key in E2E_DIR and sets
# MX_TLS (--tls-cert FILE --tls-key FILE) for mx_start "${MX_TLS[@]}" ...:
# mxsim then offers STARTTLS (Postfix: smtp_tls_security_level = may).
mx_tls_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=mx.sim -keyout "$E2E_DIR/mx-key.pem" -out "$E2E_DIR/mx-cert.pem" \
		2>>"$E2E_DIR/openssl.log" || fail "openssl req: $(tail -n 1 "$E2E_DIR/openssl.log")"
	MX_TLS=(--tls-cert "$E2E_DIR/mx-cert.pem" --tls-key "$E2E_DIR/mx-key.pem")
}

# mx_sessions [LIMIT]: from mxsim's event log, prints "SESSIONS TLS EXPIRED
# FULL": sessions opened, how many went on inside TLS, and how much the
# idle sessions that nobody ended cost: the slot-seconds (3 decimals) that
# sessions ended by a bare close after more than 0.5 s without a delivery
# (Postfix's connection cache expiring them; smtpgov's idle close and
# Postfix's own ending send QUIT) spent idle while the provider had LIMIT
# (default 3) or more sessions open, and FULL, the seconds it had them.
mx_sessions() {
	python3 - "$MX_LOG" "${1:-3}" <<'PY'
import re, sys
from datetime import datetime
ev = []
for l in open(sys.argv[1]):
    m = re.match(r"(\S+)Z \S+ \S+ s=(\d+) (\S+)(.*)", l)
    if m:
        t = datetime.fromisoformat(m.group(1)).timestamp()
        ev.append((t, int(m.group(2)), m.group(3), m.group(4).strip()))
ev.sort(key=lambda e: e[0])
limit = int(sys.argv[2])
last, tls, ends, full = {}, set(), [], []
cur, since = 0, None
for t, s, kind, rest in ev:
    if kind == "connect":
        last[s] = t
        cur += 1
        if cur >= limit and since is None:
            since = t
    elif kind == "accept" and s in last:
        last[s] = t
    elif kind == "tls":
        tls.add(s)
    elif kind == "close" and s in last:
        cur -= 1
        if cur < limit and since is not None:
            full.append((since, t))
            since = None
        if rest == "client closed" and t - last[s] > 0.5:
            ends.append((last[s], t))
if since is not None and ev:
    full.append((since, ev[-1][0]))
idle = sum(max(0.0, min(b, y) - max(a, x)) for a, b in ends for x, y in full)
print(len(last), len(tls), "%.3f" % idle, "%.3f" % sum(y - x for x, y in full))
PY
}

# mx_stop: SIGTERM to mxsim (it writes MX_STATS on the way out), waits up to
# 5 s, then SIGKILL. Only the PID mx_start recorded.
mx_stop() {
	[ -n "$MX_PID" ] || return 0
	stop_pid "$MX_PID"
	MX_PID=
}

# stop_pid PID: SIGTERM to a process this script started, up to 5 s to go,
# then SIGKILL; reaps it.
stop_pid() {
	local i

	kill -TERM "$1" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# mx_ctl COMMAND...: sends one line to the control socket, prints the reply
# ("ok", "error: ...", or the stats JSON for "stats").
mx_ctl() {
	python3 - "$MX_CTL" "$*" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
EOF
}

# mx_limit PERSONA N|none: changes a persona's limit while mxsim runs.
mx_limit() {
	local r

	r=$(mx_ctl limit "$1" "$2")
	[ "$r" = ok ] || fail "mx_limit $1 $2: $r"
}

# mx_stat EXPR: prints a Python expression over the live stats, where `s` is
# the stats object, e.g. mx_stat "s['personas']['gmail']['throttled']".
mx_stat() {
	mx_ctl stats | python3 -c "import json, sys; s = json.load(sys.stdin); print($1)"
}

# mx_wait_idle PERSONA SECONDS: waits until PERSONA has no open session
# (Postfix keeps delivered-to sessions in its connection cache for
# smtp_connection_cache_time_limit, 2 s by default); returns 1 on timeout.
mx_wait_idle() {
	local deadline=$((SECONDS + $2))

	until [ "$(mx_stat "s['personas']['$1']['current']")" = 0 ]; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# mx_check_ids FILE: compares the Message-IDs mxsim accepted with FILE (one
# id per line, as pf_inject writes it). Prints a one-line summary; returns 0
# only if every id was accepted exactly once and nothing else arrived.
mx_check_ids() {
	mx_ctl stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
sent = set(l.strip() for l in open(sys.argv[1]) if l.strip())
got = s["message_ids"]
missing = sent - set(got)
extra = set(got) - sent
print("sent %d, accepted messages %d, unique ids %d, duplicates %d, missing %d, unexpected %d"
      % (len(sent), s["messages"], s["unique_ids"], s["duplicates"], len(missing), len(extra)))
for m in sorted(missing)[:5]:
    print("  missing", m)
for d in s["duplicate_ids"][:5]:
    print("  duplicate", d)
sys.exit(0 if not missing and not extra and s["duplicates"] == 0 and s["no_message_id"] == 0 else 1)
' "$1"
}

# -------------------------------------------------------------- Postfix

# pf_create [NAME=VALUE...]: makes a private Postfix instance in
# $E2E_DIR/postfix: etc/ (main.cf, master.cf, transport), spool/ (queue),
# data/ (owned by postfix), maillog (maillog_file, under /var which is in
# maillog_file_prefixes). Every service runs unchrooted; the smtp inet
# listener is commented out, so nothing comes in. myhostname is sender.test.
# Defaults for fast tests: queue_run_delay=1s, minimal_backoff_time=2s,
# maximal_backoff_time=10s, smtp_connection_cache_on_demand=yes,
# default_destination_concurrency_limit=20 (Postfix's own); NAME=VALUE
# arguments override or add main.cf parameters. Sets PF_DIR, PF_CONF, PF_LOG.
pf_create() {
	local kv

	PF_DIR=$E2E_DIR/postfix PF_CONF=$E2E_DIR/postfix/etc PF_LOG=$E2E_DIR/postfix/maillog
	mkdir -p "$PF_CONF" "$PF_DIR/spool" "$PF_DIR/data"
	chmod 0755 "$PF_DIR" "$PF_CONF" "$PF_DIR/spool"
	chown postfix: "$PF_DIR/data"
	: >"$PF_CONF/transport"
	PF_DOMAINS=()
	cat >"$PF_CONF/main.cf" <<EOF
# private test instance made by tests/e2e/lib.sh
compatibility_level = 3.6
queue_directory = $PF_DIR/spool
data_directory = $PF_DIR/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = sender.test
mydomain = sender.test
myorigin = \$myhostname
mydestination =
relayhost =
inet_interfaces = loopback-only
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
smtp_tls_security_level = none
transport_maps = texthash:$PF_CONF/transport
maillog_file = $PF_LOG
queue_run_delay = 1s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
smtp_connection_cache_on_demand = yes
default_destination_concurrency_limit = 20
maximal_queue_lifetime = 1d
bounce_queue_lifetime = 1d
delay_warning_time = 0
EOF
	# Debian's master.cf with chroot off (a chroot needs copies of /etc
	# files in the spool), the smtp inet listener commented out and the
	# tlsproxy service on (smtp_tls_connection_reuse = yes needs it).
	awk '
		/^smtp[ \t]+inet[ \t]/ { print "#" $0; next }
		/^#tlsproxy[ \t]/ { sub(/^#/, "") }
		/^[a-z]/ && NF >= 8 && $5 == "y" { $5 = "n"; print; next }
		{ print }' /etc/postfix/master.cf >"$PF_CONF/master.cf"
	for kv in "$@"; do
		postconf -c "$PF_CONF" -e "$kv" || fail "pf_create: bad parameter $kv"
	done
	postfix -c "$PF_CONF" check 2>>"$PF_DIR/check.log" ||
		{ cat "$PF_DIR/check.log" >&2; fail "postfix -c $PF_CONF check"; }
}

# pf_set NAME=VALUE...: changes main.cf parameters (before pf_start, or
# follow with pf_reload).
pf_set() {
	local kv

	for kv in "$@"; do
		postconf -c "$PF_CONF" -e "$kv" || fail "pf_set: bad parameter $kv"
	done
}

# pf_route DOMAIN NEXTHOP: routes DOMAIN to NEXTHOP (e.g. smtp:[127.0.10.1]:2525)
# through transport_maps (texthash: needs no postmap; read when Postfix
# starts, so route before pf_start or pf_reload after).
pf_route() {
	printf '%s\t%s\n' "$1" "$2" >>"$PF_CONF/transport"
	PF_DOMAINS+=("$1")
}

# pf_route_range NAME COUNT NET FIRST LAST PORT: routes COUNT domains
# NAME-1.test .. NAME-COUNT.test, domain i to its own nexthop
# smtp:[NET.(FIRST + (i-1) mod (LAST-FIRST+1))]:PORT: many domains hosted on
# one provider's servers, as Workspace-hosted domains are. Appends them to
# PF_DOMAINS.
pf_route_range() {
	local name=$1 count=$2 net=$3 first=$4 last=$5 port=$6 i

	for ((i = 1; i <= count; i++)); do
		pf_route "$name-$i.test" "smtp:[$net.$((first + (i - 1) % (last - first + 1)))]:$port"
	done
}

# pf_start [CGROUP]: starts the instance; with CGROUP (a cgroup v2
# directory) the starting shell joins it first, so master and every child
# it forks live in CGROUP (and in network namespace PF_NETNS when set).
# Waits until master.pid exists.
pf_start() {
	local cg=${1:-} i

	if [ -n "$cg" ]; then
		[ -w "$cg/cgroup.procs" ] || fail "pf_start: $cg is not a cgroup v2 directory"
		(echo "$BASHPID" >"$cg/cgroup.procs" &&
			exec ${PF_NETNS:+nsenter --net=/var/run/netns/$PF_NETNS} postfix -c "$PF_CONF" start) \
			>>"$PF_DIR/start.log" 2>&1 || { cat "$PF_DIR/start.log" >&2; fail "postfix start in $cg"; }
	else
		postfix -c "$PF_CONF" start >>"$PF_DIR/start.log" 2>&1 ||
			{ cat "$PF_DIR/start.log" >&2; fail "postfix start"; }
	fi
	for i in $(seq 100); do
		pf_master_pid >/dev/null && return 0
		sleep 0.05
	done
	fail "postfix master did not start"
}

# pf_master_pid: prints the running master's PID (from spool/pid/master.pid,
# checked against /proc); fails if it is not running.
pf_master_pid() {
	local pid

	[ -n "$PF_DIR" ] && [ -f "$PF_DIR/spool/pid/master.pid" ] || return 1
	pid=$(awk '{ print $1; exit }' "$PF_DIR/spool/pid/master.pid")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] &&
		grep -q master "/proc/$pid/comm" 2>/dev/null || return 1
	echo "$pid"
}

# pf_reload: rereads main.cf and the transport table.
pf_reload() {
	postfix -c "$PF_CONF" reload >>"$PF_DIR/start.log" 2>&1 || fail "postfix reload"
}

# pf_stop: postfix stop (SIGTERM to master, which ends its children); if the
# master is still there after 10 s, SIGKILL to its process group (master runs
# in its own session) and to the pids in spool/pid/. Touches nothing else.
pf_stop() {
	local pid i f

	pid=$(pf_master_pid) || return 0
	timeout 10 postfix -c "$PF_CONF" stop >>"$PF_DIR/start.log" 2>&1
	for i in $(seq 100); do
		[ -d "/proc/$pid" ] || return 0
		sleep 0.1
	done
	echo "postfix stop hung; killing process group $pid" >&2
	kill -KILL -- "-$pid" 2>/dev/null
	for f in "$PF_DIR"/spool/pid/*.pid; do
		[ -f "$f" ] || continue
		pid=$(awk '{ print $1; exit }' "$f")
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

# pf_inject COUNT DOMAIN...: submits COUNT messages with sendmail -C, one
# recipient each, domains taken round-robin (user N at DOMAIN), each with a
# unique Message-ID that is appended to $PF_DIR/sent-ids. Runs up to 16
# sendmail processes at once.
pf_inject() {
	local count=$1 i dom id tag pid pids=()
	shift
	[ $# -gt 0 ] || fail "pf_inject: no domains"
	tag="$(date +%s%N).$$"
	for ((i = 1; i <= count; i++)); do
		dom=${*:$(( (i - 1) % $# + 1 )):1}
		id="<t$i.$tag@sender.test>"
		echo "$id" >>"$PF_DIR/sent-ids"
		printf 'From: sender@sender.test\nTo: user%d@%s\nSubject: test %d\nMessage-ID: %s\n\nbody %d\n' \
			"$i" "$dom" "$i" "$id" "$i" |
			sendmail -C "$PF_CONF" -f sender@sender.test "user$i@$dom" &
		pids+=($!)
		if ((${#pids[@]} == 16 || i == count)); then
			for pid in "${pids[@]}"; do
				wait "$pid" || fail "sendmail -C $PF_CONF failed"
			done
			pids=()
		fi
	done
}

# pf_queue_count: prints how many messages the instance holds (files in
# maildrop, incoming, active, deferred and hold).
pf_queue_count() {
	find "$PF_DIR/spool/maildrop" "$PF_DIR/spool/incoming" "$PF_DIR/spool/active" \
		"$PF_DIR/spool/deferred" "$PF_DIR/spool/hold" -type f 2>/dev/null | wc -l
}

# pf_wait_empty SECONDS: waits until the queue is empty; returns 1 if it is
# not empty by then.
pf_wait_empty() {
	local deadline=$((SECONDS + $1))

	while ((SECONDS < deadline)); do
		[ "$(pf_queue_count)" = 0 ] && return 0
		sleep 0.2
	done
	[ "$(pf_queue_count)" = 0 ]
}

# pf_flush: asks the queue manager to retry deferred mail now.
pf_flush() {
	postqueue -c "$PF_CONF" -f
}

# pf_log_count REGEX: prints how many maillog lines match (grep -E).
pf_log_count() {
	grep -cE -- "$1" "$PF_LOG" 2>/dev/null || true
}

# ------------------------------------------------------------- smtpgov
# sg_init: makes two cgroups under the cgroup2 mount, smtpgov-test-NAME-PID
# (for the MTA: pass "$SG_CG" to pf_start) and smtpgov-test-NAME-PID-d (the
# daemon runs there; its waiting room creates smtpgov-room.PID below it),
# and picks the pin dir /sys/fs/bpf/smtpgov-test-NAME-PID. e2e_cleanup
# stops the daemon, unloads and removes them all. Call after e2e_init.
sg_init() {
	local name=${1:-e2e} root

	[ -x "$SMTPGOV" ] || fail "$SMTPGOV missing: run make first"
	root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
	[ -n "$root" ] || skip "no cgroup2 mount"
	[ -d /sys/fs/bpf ] || skip "no bpffs"
	SG_CG=$root/smtpgov-test-$name-$$
	SG_DCG=$root/smtpgov-test-$name-$$-d
	SG_PIN=/sys/fs/bpf/smtpgov-test-$name-$$
	SG_CONF=$E2E_DIR/smtpgov.conf SG_DLOG=$E2E_DIR/smtpgov.log SG_STATE=$E2E_DIR/smtpgov.state
	mkdir "$SG_CG" || { SG_CG=; fail "mkdir cgroup"; }
	mkdir "$SG_DCG" || { SG_DCG=; fail "mkdir cgroup"; }
}

# sg_start [OPTIONS...]: runs `smtpgov load --cgroup SG_CG --config SG_CONF
# --log SG_LOG` (SG_TARGET, when set, replaces `--cgroup SG_CG`) in SG_DCG
# (output appended to SG_DLOG), in network namespace SG_NETNS when set;
# waits until it says it follows SG_FOLLOWS. SG_LOG defaults to PF_LOG; set
# it empty for no --log (log = auto, or the config's). SG_FOLLOWS defaults
# to SG_LOG (set it to what auto should choose). Sets SG_PID.
sg_start() {
	local n target=(--cgroup "$SG_CG") log=${SG_LOG-$PF_LOG}
	local follows=${SG_FOLLOWS:-$log}

	[ ${#SG_TARGET[@]} -gt 0 ] && target=("${SG_TARGET[@]}")
	[ -z "$PF_LOG" ] || [ -f "$PF_LOG" ] || : >"$PF_LOG"
	echo "--- start $(date +%T)" >>"$SG_DLOG"
	n=$(grep -cF "following $follows:" "$SG_DLOG")
	(echo "$BASHPID" >"$SG_DCG/cgroup.procs" &&
		exec ${SG_NETNS:+nsenter --net=/var/run/netns/$SG_NETNS} \
			"$SMTPGOV" --pin-dir "$SG_PIN" load "${target[@]}" --config "$SG_CONF" \
			${log:+--log "$log"} "$@") >>"$SG_DLOG" 2>&1 &
	SG_PID=$!
	sg_wait_following "$n" "$SG_PID" "$follows"
}

# sg_wait_following N PID [WHAT]: waits until SG_DLOG says more than N times
# that the daemon follows WHAT (default PF_LOG); PID, which runs it, must
# stay alive.
sg_wait_following() {
	local i what=${3:-$PF_LOG}

	for i in $(seq 200); do
		[ "$(grep -cF "following $what:" "$SG_DLOG")" -gt "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.05
	done
	tail -n 20 "$SG_DLOG" >&2
	SG_PID=
	fail "smtpgov load did not start following $what"
}

# sg_dlog_last: what the daemon printed since the last sg_start.
sg_dlog_last() {
	sed -n '/^--- start/h; /^--- start/!H; ${x;p}' "$SG_DLOG"
}

# sg_fdstore_start [OPTIONS...]: like sg_start, but under tests/tools/fdhold,
# the stand-in for systemd's file descriptor store with Restart=always: a
# daemon that ends is started again with the fds it stored. Sets SG_PID
# (the daemon) and SG_HOLD_PID.
sg_fdstore_start() {
	[ -f "$PF_LOG" ] || : >"$PF_LOG"
	echo "--- start under fdhold $(date +%T)" >>"$SG_DLOG"
	rm -f "$E2E_DIR/smtpgov.pid"
	(echo "$BASHPID" >"$SG_DCG/cgroup.procs" &&
		exec "$FDHOLD" --pid-file "$E2E_DIR/smtpgov.pid" --socket "$E2E_DIR/notify.sock" -- \
			"$SMTPGOV" --pin-dir "$SG_PIN" load --cgroup "$SG_CG" --config "$SG_CONF" \
			--log "$PF_LOG" "$@") >>"$SG_DLOG" 2>&1 &
	SG_HOLD_PID=$!
	sg_wait_following "$(grep -cF "following $PF_LOG:" "$SG_DLOG")" "$SG_HOLD_PID"
	SG_PID=$(cat "$E2E_DIR/smtpgov.pid")
}

# sg_fdstore_restart SIGNAL: sends SIGNAL (TERM, KILL) to the daemon that
# runs under fdhold and waits until the next one follows the log.
sg_fdstore_restart() {
	local n

	n=$(grep -cF "following $PF_LOG:" "$SG_DLOG")
	kill -"$1" "$SG_PID"
	sg_wait_following "$n" "$SG_HOLD_PID"
	SG_PID=$(cat "$E2E_DIR/smtpgov.pid")
}

# sg_stop: SIGTERM to the daemon sg_start started (it removes its waiting
# room cgroup), SIGKILL after 5 s. Enforcement stays pinned.
sg_stop() {
	if [ -n "$SG_HOLD_PID" ]; then   # fdhold passes SIGTERM on and ends
		stop_pid "$SG_HOLD_PID"
		SG_HOLD_PID= SG_PID=
		sg_rm_rooms
	fi
	[ -n "$SG_PID" ] || return 0
	stop_pid "$SG_PID"
	SG_PID=
	sg_rm_rooms
}

# sg_wait_log REGEX SECONDS: waits until the daemon's output (SG_DLOG) has a
# line matching REGEX (grep); returns 1 on timeout.
sg_wait_log() {
	local deadline=$((SECONDS + $2))

	until grep -q -- "$1" "$SG_DLOG"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# sg_kill: SIGKILL to the daemon (a crash); removes its waiting room cgroup,
# which a killed daemon leaves behind.
sg_kill() {
	[ -n "$SG_PID" ] || return 0
	kill -KILL "$SG_PID" 2>/dev/null
	wait "$SG_PID" 2>/dev/null
	SG_PID=
	sg_rm_rooms
}

# sg_rm_rooms: removes SG_DCG/smtpgov-room.* (empty once the daemon is gone).
sg_rm_rooms() {
	local d i

	[ -n "$SG_DCG" ] || return 0
	for d in "$SG_DCG"/smtpgov-room.*; do
		[ -d "$d" ] || continue
		for i in $(seq 50); do
			rmdir "$d" 2>/dev/null && break
			sleep 0.1
		done
	done
}

# sg_cleanup: unload (every program and pin), remove the test cgroups and
# any cgroups a test made below them (retrying while exiting processes leave them). Part of e2e_cleanup.
sg_cleanup() {
	local cg i

	[ -n "$SG_PIN" ] && [ -d "$SG_PIN" ] && "$SMTPGOV" --pin-dir "$SG_PIN" unload >/dev/null 2>&1
	[ -n "$SG_PIN" ] && [ -d "$SG_PIN" ] && echo "warning: $SG_PIN left behind" >&2
	sg_rm_rooms
	for cg in "$SG_CG" "$SG_DCG"; do
		[ -n "$cg" ] && [ -d "$cg" ] || continue
		# a test's own layout below it (deepest first)
		find "$cg" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
		for i in $(seq 100); do
			rmdir "$cg" 2>/dev/null && break
			sleep 0.1
		done
		[ -d "$cg" ] && echo "warning: cgroup $cg not removed: $(cat "$cg/cgroup.procs" | tr '\n' ' ')" >&2
	done
	SG_PIN= SG_CG= SG_DCG=
}

# sg_log_stat FIELD: one field of the log source in status --json (source,
# reason, state, since, lines, deliveries, last_delivery).
sg_log_stat() {
	sg_status_json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("" if s["log"] is None else s["log"].get(sys.argv[1], ""))
' "$1"
}

# journal_add FILE IDENT MESSAGE...: appends one entry per MESSAGE to the
# journal file FILE (its name ends in .journal; made if missing), as
# journald stores a syslog line of program IDENT (SYSLOG_IDENTIFIER,
# SYSLOG_FACILITY=2 (mail), _HOSTNAME, the time now): export-format input
# through systemd-journal-remote, the journal's own writer.
journal_add() {
	local file=$1 ident=$2 msg us
	shift 2
	for msg in "$@"; do
		us=$(date +%s%6N)
		printf '__REALTIME_TIMESTAMP=%s\n__MONOTONIC_TIMESTAMP=%s\n_BOOT_ID=5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5\n' "$us" "$us"
		printf '_SOURCE_REALTIME_TIMESTAMP=%s\n_HOSTNAME=mx.test\n_PID=%s\nSYSLOG_PID=%s\n' "$us" "$$" "$$"
		printf 'SYSLOG_IDENTIFIER=%s\nSYSLOG_FACILITY=2\nPRIORITY=6\nMESSAGE=%s\n\n' "$ident" "$msg"
	done | "$JOURNAL_REMOTE" --output="$file" - 2>>"$E2E_DIR/journal-remote.log" ||
		{ cat "$E2E_DIR/journal-remote.log" >&2; fail "systemd-journal-remote --output=$file"; }
}
JOURNAL_REMOTE=${JOURNAL_REMOTE:-/lib/systemd/systemd-journal-remote}

# sg_status_json: prints `smtpgov status --json`.
sg_status_json() {
	"$SMTPGOV" --pin-dir "$SG_PIN" status --json
}

# sg_stat GROUP FIELD: prints one field of GROUP from status --json (cap,
# live, admitted, refused, waiting, queued, queue_timeouts, wait_p50_ms...).
sg_stat() {
	sg_status_json | python3 -c '
import json, sys
s = json.load(sys.stdin)
for g in s["groups"]:
    if g["name"] == sys.argv[1]:
        print(g.get(sys.argv[2], ""))
        break
' "$1" "$2"
}

# sg_wait_cap GROUP MAX SECONDS: waits until GROUP's cap is <= MAX (MAX given
# as ">=N": until it is >= N); returns 1 on timeout.
sg_wait_cap() {
	local g=$1 want=$2 deadline=$((SECONDS + $3)) c

	while :; do
		c=$(sg_stat "$g" cap)
		case $want in
		'>='*) [ -n "$c" ] && [ "$c" -ge "${want#>=}" ] && return 0 ;;
		*) [ -n "$c" ] && [ "$c" -le "$want" ] && return 0 ;;
		esac
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# sg_cap_changes GROUP: the daemon's cap changes of GROUP so far, "a>b ..."
sg_cap_changes() {
	grep -o "$1: cap [0-9]* -> [0-9]*" "$SG_DLOG" | sed 's/.*cap \([0-9]*\) -> \([0-9]*\)/\1>\2/' | tr '\n' ' '
}

# pf_queued_ids: prints the Message-ID of every message still in the queue.
pf_queued_ids() {
	local f

	find "$PF_DIR/spool/incoming" "$PF_DIR/spool/active" "$PF_DIR/spool/deferred" \
		"$PF_DIR/spool/hold" -type f 2>/dev/null | while read -r f; do
		postcat -c "$PF_CONF" -h -q "$(basename "$f")" 2>/dev/null | sed -n 's/^Message-ID: //Ip'
	done
}

# e2e_check_ids: the campaign's accounting from mxsim's event log (survives
# `mx_ctl reset`) and the queue: every id in $PF_DIR/sent-ids accepted
# exactly once or still queued (not both), nothing unexpected. Prints a
# one-line summary; returns 1 if anything is lost, duplicated or unexpected.
# E2E_MAX_DUP (default 0) allows that many duplicates: only for a session cut
# by a crash between the provider's acceptance and Postfix seeing it.
e2e_check_ids() {
	pf_queued_ids >"$E2E_DIR/queued-ids"
	python3 - "$PF_DIR/sent-ids" "$E2E_DIR/queued-ids" "$MX_LOG" "${E2E_MAX_DUP:-0}" <<'PY'
import re, sys
from collections import Counter
sent = set(l.strip() for l in open(sys.argv[1]) if l.strip())
queued = set(l.strip() for l in open(sys.argv[2]) if l.strip())
got = Counter(m.group(1) for m in (re.search(r" accept .* message_id=(\S+)", l) for l in open(sys.argv[3])) if m)
dup = [m for m, n in got.items() if n > 1]
lost = sent - set(got) - queued
extra = set(got) - sent
both = set(got) & queued
print("sent %d, accepted %d, still queued %d, duplicates %d, lost %d, unexpected %d, accepted and queued %d"
      % (len(sent), len(got), len(queued), len(dup), len(lost), len(extra), len(both)))
for m in sorted(lost)[:3]: print("  lost", m)
for m in dup[:3]: print("  duplicate", m)
sys.exit(0 if len(dup) <= int(sys.argv[4]) and not lost and not extra and not both else 1)
PY
}

# sim_providers: the two simulated providers of the campaigns (mxsim):
#   gmail   127.0.10.1-40:2525, 3 sessions per client IP, 421-4.4.5 at RCPT
#   outlook 127.0.20.1-40:2525, 2 sessions per client IP, 451 4.7.652
# (GMAIL_LIMIT / OUTLOOK_LIMIT override the limits), and Postfix routes for
# 40 domains of each: PF_DOMAINS[0..39] gmail, [40..79] outlook. Call after
# pf_create.
sim_providers() {
	mx_start --persona "gmail:127.0.10.1-127.0.10.40:2525:limit=${GMAIL_LIMIT:-3}:stage=rcpt:greet_delay=150:data_delay=100" \
		--persona "outlook:127.0.20.1-127.0.20.40:2525:limit=${OUTLOOK_LIMIT:-2}:style=outlook:greet_delay=150:data_delay=100"
	pf_route_range gmail 40 127.0.10 1 40 2525
	pf_route_range outlook 40 127.0.20 1 40 2525
}

# sg_sim_conf VERDICT "GMAIL_KEYS" "OUTLOOK_KEYS" [GLOBAL_LINE...]: writes
# $SG_CONF for sim_providers' world: groups gmail and outlook with their
# ranges and the given keys ("key = value" lines), and the rules that make
# the simulator's replies concurrency signals (its groups are not the
# built-in google/microsoft ones, whose signatures are keyed on those).
sg_sim_conf() {
	local verdict=$1 gmail=$2 outlook=$3
	shift 3
	{
		printf '[global]\nports = 2525\nbuiltin = no\nverdict = %s\nstate = %s\n' "$verdict" "$SG_STATE"
		[ $# -gt 0 ] && printf '%s\n' "$@"
		printf '\n[group gmail]\nranges = 127.0.10.0/24\n%s\n' "$gmail"
		printf '\n[group outlook]\nranges = 127.0.20.0/24\n%s\n' "$outlook"
		printf '\n[rule gmail-busy]\ngroup = gmail\ndsn = 4.4.5\nmatch = Server busy\n'
		printf 'class = concurrency\naction = decrease\n'
		printf '\n[rule outlook-connections]\ngroup = outlook\ndsn = 4.7.652\n'
		printf 'match = exceeded the maximum number of connections\nclass = concurrency\naction = decrease\n'
	} >"$SG_CONF"
}

# ------------------------------------------------- network namespaces
# Always entered with nsenter --net (ip netns exec would remount /sys and
# hide bpffs and the cgroup tree). Addresses come from 198.18.0.0/15, which
# exists only inside these namespaces.

# ns_add NAME: makes network namespace NAME with its loopback up (as a
# container's is); e2e_cleanup deletes it.
ns_add() {
	ip netns add "$1" || fail "ip netns add $1"
	E2E_NETNS+=("$1")
	ns_exec "$1" ip link set lo up || fail "lo up in $1"
}

# ns_exec NAME COMMAND...: runs COMMAND in network namespace NAME.
ns_exec() {
	local ns=$1
	shift
	nsenter --net="/var/run/netns/$ns" "$@"
}

# ns_link A ADDR_A B ADDR_B: a veth pair between namespaces A and B, with
# ADDR_A (CIDR) on A's end and ADDR_B on B's, both up.
ns_link() {
	local a=$1 aa=$2 b=$3 ba=$4 ia="v-$3" ib="v-$1"

	ip link add "${ia:0:15}" netns "$a" type veth peer name "${ib:0:15}" netns "$b" ||
		fail "veth $a-$b"
	ns_exec "$a" ip addr add "$aa" dev "${ia:0:15}" && ns_exec "$a" ip link set "${ia:0:15}" up &&
		ns_exec "$b" ip addr add "$ba" dev "${ib:0:15}" && ns_exec "$b" ip link set "${ib:0:15}" up ||
		fail "addresses on veth $a-$b"
}

# greeting_provider [LIMIT]: a provider smtpgov has never heard of (mxsim's
# generic persona "corp", 127.0.30.1-40, port 25): LIMIT (2) sessions per
# client address, the rest answered AT THE GREETING with "421 4.7.0 Too many
# concurrent connections from IP"; and Postfix routes for 40 domains of it
# (each its own nexthop). Call after pf_create.
greeting_provider() {
	mx_start --persona "corp:127.0.30.1-127.0.30.40:25:limit=${1:-2}:style=generic:stage=greeting:greet_delay=50:data_delay=50"
	pf_route_range corp 40 127.0.30 1 40 25
}

# sg_user_conf CAP: writes $SG_CONF as a new user would for greeting_provider:
# one [group] with its range and a guessed cap, nothing else (defaults), but
# the test's own state file.
sg_user_conf() {
	cat >"$SG_CONF" <<EOF
[global]
state = $SG_STATE   ; the test's own state file, not /var/lib/smtpgov

[group corp]
ranges = 127.0.30.0/24
cap = $1
EOF
}
