#!/usr/bin/env bash
# End to end, on the defaults: a provider smtpgov has never heard of, which
# allows 2 sessions per client address and answers the rest AT THE GREETING
# with "421 4.7.0 Too many concurrent connections from IP" (mxsim's generic
# persona, 127.0.30.1-40, port 25). A private Postfix with short retry
# timings sends 200 messages to its 40 domains (each its own nexthop):
#   1. Postfix alone: the throttle replies the provider sent;
#   2. the same campaign in a fresh instance governed by smtpgov with ONE
#      [group] (the provider's range, a starting cap of 8, four times the
#      limit) and nothing else: default verdict (queue), default controller
#      settings; midway the daemon is SIGKILLed and a new `load` started;
#   3. the same again from scratch (unloaded, no learned state), the daemon
#      under tests/tools/fdhold (lib.sh sg_fdstore_start), the stand-in for
#      systemd's fd store, and SIGKILLed midway: the next daemon takes over
#      the waiting room.
# Postfix alone needs minutes to deliver this campaign (destinations marked
# dead, backoffs), so run 1 stops after ALONE_S (20) seconds: its throttle
# count then is a lower bound of what the whole campaign costs it.
# Asserts: runs 2 and 3 each deliver every message exactly once, within
# 90 s, with at least 10x fewer throttle replies than run 1 got in its first
# ALONE_S s; run 3 also that no connect was refused (EPERM), no session lost,
# and no "delivery temporarily suspended" line appeared but those repeating
# a throttle reply. SG_RESTART=kill or fdstore runs only that one of 2 and 3.
# Runtime ~170 s. Exit 0 pass, 1 FAIL (with the reason), 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

MSGS=${MSGS:-200} LIMIT=2 CAP=8 GOV_S=${GOV_S:-90}
e2e_init
sg_init greet

# campaign NAME [CGROUP]: a fresh Postfix instance and simulator (then
# $BEFORE, if set), MSGS messages to the 40 domains, $MIDWAY once half of
# them arrived, waits until the queue is empty (90 s at most; with $STOP_S,
# just that long); leaves mxsim running for the counts. Sets T_ALL (s).
campaign() {
	local name=$1 cg=${2:-} t0 left

	pf_stop
	mx_stop
	rm -rf "$E2E_DIR/postfix" "$E2E_DIR/mxsim-events.log"
	pf_create   # short retry timings (lib.sh), Postfix's defaults otherwise
	greeting_provider $LIMIT
	[ -n "${BEFORE:-}" ] && "$BEFORE"
	pf_start $cg
	t0=$SECONDS
	pf_inject "$MSGS" "${PF_DOMAINS[@]}"
	note "$name: $MSGS messages injected"
	if [ -n "${MIDWAY:-}" ]; then
		until [ "$(mx_stat "s['personas']['corp']['accepted']")" -ge $((MSGS / 2)) ]; do
			((SECONDS - t0 < GOV_S)) || fail "$name: half the campaign not delivered in $GOV_S s"
			sleep 0.1
		done
		"$MIDWAY"
	fi
	if [ -n "${STOP_S:-}" ]; then
		pf_wait_empty $((STOP_S - (SECONDS - t0))) || note "$name: $(pf_queue_count) messages still queued after $STOP_S s"
		T_ALL=$((SECONDS - t0))
		return
	fi
	pf_wait_empty $((GOV_S - (SECONDS - t0))) || fail "$name: $(pf_queue_count) messages still queued after $GOV_S s"
	T_ALL=$((SECONDS - t0))
}

result() {
	local thr acc
	thr=$(mx_stat "s['personas']['corp']['throttled']") acc=$(mx_stat "s['personas']['corp']['accepted']")
	echo "$thr"
	note "$1: throttle replies $thr, accepted $acc/$MSGS in ${T_ALL}s, peak $(mx_stat "s['personas']['corp']['peak']"), refused (EPERM) lines $(pf_log_count 'Operation not permitted'), suspended lines $(pf_log_count 'delivery temporarily suspended')"
}

# ---- 1. Postfix alone
STOP_S=${ALONE_S:-20} campaign "Postfix alone"
alone=$(result "Postfix alone")   # still sending: its counts only
[ "$alone" -ge 50 ] || fail "Postfix alone got only $alone throttle replies: the world is not throttling"

# ---- 2. and 3. smtpgov on the defaults: one group, a cap four times too
# high, restarted midway (MODE kill: SIGKILL and a new load; fdstore: SIGKILL
# under the fd store stand-in, which starts the next daemon with the fds)
sg_user_conf $CAP
KILL_LIVE=0   # sessions live when a bare SIGKILL cut them (set by restart)
restart() {
	note "midway: SIGKILL to the daemon (pid $SG_PID) ($MODE)"
	case $MODE in
	kill)
		# A bare SIGKILL cuts the relays it holds: a message whose final
		# dot reached the provider but whose 250 did not reach Postfix is
		# sent again (the classic duplicate of a lost connection after
		# DATA). At most one per session live at the kill; the fd store
		# run below must have none.
		KILL_LIVE=$(sg_stat corp live)
		sg_kill; sg_start ;;
	fdstore) KILL_LIVE=0; sg_fdstore_restart KILL ;;
	esac
}
sg_start_governed() {
	case $MODE in
	kill) sg_start ;;
	fdstore) sg_fdstore_start ;;
	esac
}
# governed MODE: one governed campaign and its assertions; sets GOV (its
# throttle replies).
governed() {
	local gov ids n

	MODE=$1
	BEFORE=sg_start_governed MIDWAY=restart campaign "smtpgov ($MODE)" "$SG_CG"
	gov=$(result "smtpgov ($MODE)")
	ids=$(E2E_MAX_DUP=$KILL_LIVE e2e_check_ids) || fail "smtpgov ($MODE): $ids (sessions live at the kill: $KILL_LIVE)"
	note "ids: $ids"
	note "cap changes: $(sg_cap_changes corp)"
	note "throttle replies: Postfix alone $alone, smtpgov ($MODE) $gov ($(awk -v a="$alone" -v g="$gov" 'BEGIN { printf "%.1fx", g ? a / g : a }') fewer); cap at end $(sg_stat corp cap)"
	[ "$((gov * 10))" -le "$alone" ] || fail "smtpgov ($MODE) got $gov throttle replies, Postfix alone $alone: less than 10x fewer"
	[ "$(pf_log_count 'status=bounced')" = 0 ] || fail "smtpgov ($MODE): bounces in the maillog"
	if [ "$MODE" = fdstore ]; then
		[ "$(pf_log_count 'Operation not permitted')" = 0 ] || fail "connects refused (EPERM) across the fd-store restart"
		# a "suspended" line that repeats a throttle reply is the throttling's,
		# not the restart's; any other (a refusal, a lost connection) fails
		n=$(grep 'delivery temporarily suspended' "$PF_LOG" | grep -cv 'refused to talk to me: 421 4.7.0 Too many')
		[ "$n" = 0 ] || fail "$n \"suspended\" lines not caused by a throttle reply across the fd-store restart"
		n=$(pf_log_count 'lost connection|Connection reset')
		[ "$n" = 0 ] || fail "$n sessions lost or reset across the fd-store restart"
	fi
	GOV=$gov
}
# Each run starts as a new user's would: nothing pinned, nothing learned.
from_scratch() {
	sg_stop
	"$SMTPGOV" --pin-dir "$SG_PIN" unload >/dev/null || fail "unload between the runs"
	rm -f "$SG_STATE"
	: >"$SG_DLOG"
}
out=
for mode in ${SG_RESTART:-kill fdstore}; do
	[ -n "$out" ] && from_scratch
	governed "$mode"
	out+="${out:+, }$GOV with a $mode restart"
done
echo "PASS: greeting-time throttling, one group on the defaults: Postfix alone $alone throttle replies, smtpgov $out ($((SECONDS - E2E_T0)) s)"
