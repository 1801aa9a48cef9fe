#!/usr/bin/env bash
# End to end, finding the MTA's cgroup: a private Postfix in a Debian-like
# layout, all under this test's own cgroup: an empty system.slice/postfix.service
# (Debian's oneshot wrapper) next to system.slice/system-postfix.slice/
# postfix@-.service, which holds the master.
# Asserts:
#  - `load --cgroup .../postfix.service` attaches but warns, in one line, that
#    it holds no process and names postfix@-.service where the master runs;
#    `status` says 0 processes are governed;
#  - `load --mta postfix:DIR` finds the master from its pid file, attaches to
#    postfix@-.service (status: processes > 0) and its connects are capped: cap
#    2 with the queue verdict, 40 messages to 20 domains all delivered, the
#    simulator never sees more than 2 sessions (Postfix alone opens ~20), and
#    the waiting room did hold connections;
#  - the unit restarted (Postfix stopped, its cgroup removed and made again,
#    Postfix started there): the daemon attaches to the new cgroup by itself
#    within 6 s and the next 20 messages are capped again;
#  - `load --mta exim:PID_FILE` attaches to the cgroup of the process it names
#    (a stand-in called exim4);
#  - one-line errors, exit 1: no pid file, a stale pid file (a dead pid, or a
#    live one of another program), --pid of no process.
# Runtime ~20 s. Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

e2e_init
sg_init mta
EMPTY=$SG_CG/system.slice/postfix.service
REAL=$SG_CG/system.slice/system-postfix.slice/postfix@-.service
mkdir -p "$EMPTY" "$REAL" || fail "mkdir the Debian-like layout"

mx_start --persona gmail:127.0.10.1-127.0.10.20:2525:limit=none:greet_delay=150:data_delay=100
pf_create smtp_connection_cache_on_demand=no
pf_route_range gmail 20 127.0.10 1 20 2525
{
	printf '[global]\nports = 2525\nbuiltin = no\nverdict = queue\nstate = %s\n' "$SG_STATE"
	# a static cap of 2 (no learning): what the test checks is where it applies
	printf '[group gmail]\nranges = 127.0.10.0/24\ncap = 2\nmin_cap = 2\nmax_cap = 2\n'
} >"$SG_CONF"
pf_start "$REAL"
master=$(pf_master_pid) || fail "no master"
note "postfix master $master in $REAL"

# ---- the empty wrapper unit: attached, with a warning naming the right place
out=$("$SMTPGOV" --pin-dir "$SG_PIN" load --cgroup "$EMPTY" --config "$SG_CONF" --no-follow 2>&1) ||
	fail "load --cgroup $EMPTY: $out"
echo "$out" | sed 's/^/    /' >&2
warn=$(echo "$out" | grep "hold no process") || fail "load --cgroup on an empty cgroup did not warn"
[ "$(echo "$warn" | wc -l)" = 1 ] || fail "the warning is not one line"
case $warn in *"pid $master"*"runs in $REAL"*) ;; *) fail "the warning does not name $REAL: $warn" ;; esac
"$SMTPGOV" --pin-dir "$SG_PIN" status | grep -q "^0 processes governed" ||
	fail "status does not say 0 processes are governed: $("$SMTPGOV" --pin-dir "$SG_PIN" status | head -2)"
"$SMTPGOV" --pin-dir "$SG_PIN" unload >/dev/null 2>&1 || fail "unload"

# ---- one-line errors
expect_err() {   # EXPECTED-TEXT ARGS...
	local want=$1 out rc
	shift
	out=$("$SMTPGOV" --pin-dir "$SG_PIN" load "$@" --config "$SG_CONF" --no-follow 2>&1)
	rc=$?
	[ "$rc" = 1 ] && [ "$(echo "$out" | wc -l)" = 1 ] && [[ $out == *"$want"* ]] ||
		fail "load $*: want one line with '$want' and exit 1, got exit $rc: $out"
	note "load $*: $out"
}
expect_err "postconf -c $E2E_DIR/fake -h queue_directory\` failed" --mta "postfix:$E2E_DIR/fake"
mkdir -p "$E2E_DIR/fake/q/pid"
printf 'queue_directory = %s/fake/q\n' "$E2E_DIR" >"$E2E_DIR/fake/main.cf"
expect_err "pid file $E2E_DIR/fake/q/pid/master.pid: No such file or directory" --mta "postfix:$E2E_DIR/fake"
sleep 0 & dead=$!
wait "$dead"
printf '%10d\n' "$dead" >"$E2E_DIR/fake/q/pid/master.pid"
expect_err "names pid $dead, which is not running (stale pid file)" --mta "postfix:$E2E_DIR/fake"
expect_err "pid $dead: no such process" --pid "$dead"
expect_err "not a cgroup v2 directory" --cgroup "$E2E_DIR"
[ ! -e "$SG_PIN/link_connect4" ] || fail "a failed load left pins behind"

# ---- --mta exim:PID_FILE: the cgroup of the process its pid file names
# (a stand-in named exim4, as Debian's daemon is: no Exim is installed here)
mkdir -p "$SG_CG/system.slice/exim4.service"
cp /bin/sleep "$E2E_DIR/exim4"
(echo "$BASHPID" >"$SG_CG/system.slice/exim4.service/cgroup.procs" && exec "$E2E_DIR/exim4" 300) &
exim=$!
E2E_PIDS+=("$exim")
echo "$exim" >"$E2E_DIR/exim.pid"
for i in $(seq 50); do
	[ "$(cat "/proc/$exim/comm" 2>/dev/null)" = exim4 ] && break
	sleep 0.05
done
out=$("$SMTPGOV" --pin-dir "$SG_PIN" load --mta "exim:$E2E_DIR/exim.pid" --config "$SG_CONF" --no-follow 2>&1) ||
	fail "load --mta exim: $out"
case $out in
*"the Exim daemon (pid $exim) is in cgroup $SG_CG/system.slice/exim4.service"*"attached to cgroup $SG_CG/system.slice/exim4.service,"*) ;;
*) fail "load --mta exim did not attach to the daemon's cgroup: $out" ;;
esac
note "load --mta exim:PID_FILE: $(echo "$out" | head -n 1)"
"$SMTPGOV" --pin-dir "$SG_PIN" unload >/dev/null 2>&1 || fail "unload"
stop_pid "$exim"
echo "$master" >"$E2E_DIR/exim.pid"
expect_err "names pid $master, which is 'master', not the Exim daemon (stale pid file)" --mta "exim:$E2E_DIR/exim.pid"

# ---- --mta postfix:DIR: the master's cgroup, and its connects capped
SG_TARGET=(--mta "postfix:$PF_CONF")
sg_start
grep -q "the Postfix master (pid $master) is in cgroup $REAL" "$SG_DLOG" ||
	fail "load --mta did not report the master's cgroup: $(tail -n 5 "$SG_DLOG")"
grep -q "attached to cgroup $REAL," "$SG_DLOG" || fail "not attached to $REAL: $(tail -n 5 "$SG_DLOG")"
! grep -q "hold no process" "$SG_DLOG" || fail "warned although the master is there"
n=$("$SMTPGOV" --pin-dir "$SG_PIN" status | sed -n 's/^\([0-9]*\) processes governed.*/\1/p')
[ -n "$n" ] && [ "$n" -ge 3 ] || fail "status: '$n' processes governed, want the master and its children"
note "status: $n processes governed"
pf_inject 40 "${PF_DOMAINS[@]}"
pf_wait_empty 60 || fail "$(pf_queue_count) messages still queued after 60 s"
summary=$(mx_check_ids "$PF_DIR/sent-ids") || fail "Message-IDs: $summary"
pk=$(mx_stat "s['personas']['gmail']['peak']") q=$(sg_stat gmail queued)
note "$summary; peak sessions $pk, queued by smtpgov $q"
[ "$pk" -le 2 ] || fail "the simulator saw $pk sessions at once, cap 2"
[ "$q" -gt 0 ] || fail "the waiting room never held a connection: the test proves nothing"
# ---- systemd restarts the unit: a new cgroup at the same path (the old
# one, and the programs on it, gone); the daemon attaches there by itself
q0=$(sg_stat gmail queued)
pf_stop
rmdir "$REAL" || fail "rmdir $REAL"
mkdir "$REAL" || fail "mkdir $REAL"
pf_start "$REAL"
master=$(pf_master_pid) || fail "no master after the restart"
sg_wait_log "now attached to $REAL" 6 ||
	fail "the daemon did not follow Postfix into its new cgroup: $(tail -n 3 "$SG_DLOG")"
note "restart: $(grep -o "the governed cgroup was removed.*" "$SG_DLOG" | tail -n 1)"
mx_ctl reset >/dev/null
pf_inject 20 "${PF_DOMAINS[@]}"
pf_wait_empty 60 || fail "after the restart: $(pf_queue_count) messages still queued after 60 s"
pk=$(mx_stat "s['personas']['gmail']['peak']") q=$(( $(sg_stat gmail queued) - q0 ))
note "after the restart: peak sessions $pk, queued by smtpgov $q"
[ "$pk" -le 2 ] || fail "after the restart the simulator saw $pk sessions at once, cap 2"
[ "$q" -gt 0 ] || fail "after the restart the waiting room held nothing: not governed"
echo "PASS: --mta finds Postfix's cgroup; an empty cgroup warns ($((SECONDS - E2E_T0)) s)"
