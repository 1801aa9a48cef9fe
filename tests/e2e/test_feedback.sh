#!/usr/bin/env bash
# End-to-end test of the log feedback (issue 3), as root on the real kernel:
# `smtpgov load --log FILE` must lower google's cap in the kernel map within
# 100 ms of a Gmail 421-4.4.5 deferral appended to FILE, raise it again by +1
# steps after clean deliveries, and leave the learned cap in the state file.
# Exit 0 = pass, 77 = skip (no root / no cgroup2 / no bpffs).
set -u
export LC_ALL=C   # syslog month names
cd "$(dirname "$0")/../.."
SMTPGOV=$PWD/build/smtpgov

fail() { echo "FAIL: $*"; [ -n "${TMP:-}" ] && [ -f "$TMP/daemon.log" ] && sed 's/^/  daemon: /' "$TMP/daemon.log"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root"
[ -x "$SMTPGOV" ] || fail "$SMTPGOV not built (run make)"
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
[ -n "$CGROOT" ] || skip "no cgroup2 mount"

CG=$CGROOT/smtpgov-test-fb-$$
PIN=/sys/fs/bpf/smtpgov-test-$$
TMP=$(mktemp -d /tmp/smtpgov-fb.XXXXXX)
PID=

cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	[ -d "$PIN" ] && "$SMTPGOV" --pin-dir "$PIN" unload >/dev/null 2>&1
	[ -d "$CG" ] && rmdir "$CG" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

mkdir "$CG" || fail "mkdir $CG"
LOG=$TMP/mail.log
STATE=$TMP/state
: >"$LOG"
cat >"$TMP/smtpgov.conf" <<EOF
[global]
builtin = yes
state = $STATE
log = $LOG

[group google]
cap = 4
min_cap = 1
max_cap = 5
cooldown = 60s
increase_after = 3
increase_interval = 1d
EOF

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

status_json() { "$SMTPGOV" --pin-dir "$PIN" status --json 2>/dev/null; }

# google's cap from `status --json`, without spawning an interpreter per poll
cap_of() {
	status_json | grep -o "\"name\":\"$1\",\"active\":[a-z]*,\"cap\":[0-9]*" | sed 's/.*"cap"://'
}

# wait_cap GROUP WANT TIMEOUT_MS: poll until the cap is WANT
wait_cap() {
	local end=$(( $(now_ms) + $3 )) c
	while :; do
		c=$(cap_of "$1")
		[ "$c" = "$2" ] && return 0
		[ "$(now_ms)" -ge "$end" ] && { echo "cap of $1 is '$c', want $2"; return 1; }
	done
}

stamp() { date '+%b %e %H:%M:%S'; }

"$SMTPGOV" --pin-dir "$PIN" load --cgroup "$CG" --config "$TMP/smtpgov.conf" --log "$LOG" \
	>"$TMP/daemon.log" 2>&1 &
PID=$!

# The daemon is up when it says it follows the log.
for _ in $(seq 100); do
	grep -q "following $LOG" "$TMP/daemon.log" && break
	kill -0 "$PID" 2>/dev/null || fail "daemon exited"
	sleep 0.05
done
grep -q "following $LOG" "$TMP/daemon.log" || fail "daemon did not start following $LOG"
[ "$(cap_of google)" = 4 ] || fail "google starts at cap $(cap_of google), want 4"

# 1. A Gmail concurrency deferral from an address in Google's range. The
#    latency is measured from the append to the new cap in the kernel's
#    `groups` map, read with the bpf() syscall every 0.1 ms (a `status` per
#    poll would measure process start-up instead).
DEFER="$(stamp) mail postfix/smtp[4242]: ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.102.27]:25, delay=1.2, delays=0.1/0/0.6/0.5, dsn=4.4.5, status=deferred (host gmail-smtp-in.l.google.com[142.250.102.27] said: 421-4.4.5 Server busy, try again later. 421 4.4.5 Server busy, try again later. a1si123 - gsmtp (in reply to end of DATA command))"
latency=$(python3 - "$PIN/groups" "$LOG" "$DEFER" <<'PY'
import ctypes, os, platform, struct, sys, time
NR_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    if r < 0:
        raise OSError(ctypes.get_errno(), "bpf cmd %d" % cmd)
    return r
path = ctypes.create_string_buffer(sys.argv[1].encode())
fd = bpf(7, struct.pack("QII", ctypes.addressof(path), 0, 0))       # BPF_OBJ_GET
key = ctypes.c_uint32(0)
val = ctypes.create_string_buffer(4096)
def group(slot):
    key.value = slot
    bpf(1, struct.pack("IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0))
    return val.raw[:32].rstrip(b"\0").decode(), struct.unpack_from("I", val.raw, 32)[0]
slot = next(i for i in range(64) if group(i)[0] == "google")
before = group(slot)[1]
with open(sys.argv[2], "a") as f:
    t0 = time.monotonic()
    f.write(sys.argv[3] + "\n")
while group(slot)[1] == before:
    if time.monotonic() - t0 > 2:
        print("timeout"); sys.exit(1)
    time.sleep(0.0001)
print("%.2f" % ((time.monotonic() - t0) * 1000))
PY
) || fail "google's cap did not change within 2 s of the deferral ($latency)"
echo "cap drop latency: ${latency} ms (append to new cap in the kernel map)"
awk -v l="$latency" 'BEGIN { exit !(l <= 100) }' || fail "cap changed after ${latency} ms, want <= 100 ms"
[ "$(cap_of google)" = 2 ] || fail "google's cap is $(cap_of google) after the deferral, want 2"

js=$(status_json)
echo "$js" | grep -q '"name":"google".*"signals":1,"last_change":{"time":"[^"]*","from":4,"to":2,"reason":"rule gmail-421-4.4.5, queue id ABC123"}' ||
	fail "status lacks signals/last_change for google: $js"

# 2. The same burst again (another recipient, another connection), lines
#    without delays= (the sessions' start unknown): within the echo window
#    after the decrease, echoes, no second decrease.
for i in 1 2 3 4 5; do
	echo "$(stamp) mail postfix/smtp[4243]: ABD12$i: host gmail-smtp-in.l.google.com[142.250.102.26] said: 421-4.4.5 Server busy, try again later. 421 4.4.5 Server busy. - gsmtp (in reply to MAIL FROM command)" >>"$LOG"
done
sleep 0.2
[ "$(cap_of google)" = 2 ] || fail "a burst within the echo window changed the cap to $(cap_of google)"

# 3. smtpgov's own refusals never feed the controller.
echo "$(stamp) mail postfix/smtp[4244]: connect to gmail-smtp-in.l.google.com[142.250.102.27]:25: Operation not permitted" >>"$LOG"
echo "$(stamp) mail postfix/smtp[4244]: ABE123: to=<b@gmail.com>, relay=none, delay=0.1, delays=0/0/0.1/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to gmail-smtp-in.l.google.com[142.250.102.27]:25: Operation not permitted)" >>"$LOG"

# 4. Clean deliveries: +1 after every 3 (increase_after), one step at a time.
sent() {
	echo "$(stamp) mail postfix/smtp[4245]: $1: to=<c@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.102.27]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK  1700000000 x1si1 - gsmtp)" >>"$LOG"
}
sent C00001; sent C00002
sleep 0.2
[ "$(cap_of google)" = 2 ] || fail "cap rose before increase_after deliveries: $(cap_of google)"
sent C00003
wait_cap google 3 1000 || fail "google did not climb to 3 after 3 clean deliveries"
sent C00004; sent C00005; sent C00006
wait_cap google 4 1000 || fail "google did not climb to 4 after 3 more"
steps=$(grep -o 'google: cap [0-9]* -> [0-9]*' "$TMP/daemon.log" | tr '\n' ';')
echo "changes: $steps"
[ "$steps" = "google: cap 4 -> 2;google: cap 2 -> 3;google: cap 3 -> 4;" ] ||
	fail "unexpected cap changes: $steps"
grep -q "google: cap 4 -> 2 (rule gmail-421-4.4.5, queue id ABC123)" "$TMP/daemon.log" ||
	fail "the decrease is not logged with its rule and queue id"

# 5. Stop: the learned cap is in the state file.
kill "$PID"
wait "$PID"
rc=$?
PID=
[ "$rc" = 0 ] || fail "daemon exited with $rc on SIGTERM"
head -1 "$STATE" | grep -qx "smtpgov-state 1" || fail "state file header: $(head -1 "$STATE")"
grep -q "^group google cap 4 .* signals 6 " "$STATE" || fail "state file: $(cat "$STATE")"
echo "state: $(grep '^group google' "$STATE")"

# 6. A restart restores the learned cap from the state file (lower it by
#    hand in the state first), and a clean interval raises it by the
#    daemon's timer with no further log line: one delivery, then silence.
sed -i 's/^group google cap 4 /group google cap 1 /' "$STATE"
sed 's/^increase_interval = 1d/increase_interval = 2s/' "$TMP/smtpgov.conf" >"$TMP/smtpgov2.conf"
"$SMTPGOV" --pin-dir "$PIN" load --cgroup "$CG" --config "$TMP/smtpgov2.conf" --log "$LOG" \
	>"$TMP/daemon2.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	grep -q "following $LOG" "$TMP/daemon2.log" && break
	sleep 0.05
done
wait_cap google 1 1000 || fail "restart did not restore google's cap 1 from the state file"
grep -q "restored learned caps from $STATE" "$TMP/daemon2.log" || fail "no restore message"
sent D00001
sleep 0.5
[ "$(cap_of google)" = 1 ] || fail "cap rose before the clean interval: $(cap_of google)"
wait_cap google 2 4000 || fail "the clean interval did not raise google's cap (timer)"
grep -q "google: cap 1 -> 2 (clean for 2s)" "$TMP/daemon2.log" || fail "clean-interval step not logged"
sleep 3
[ "$(cap_of google)" = 2 ] || fail "cap climbed to $(cap_of google) without deliveries"
echo "PASS"
