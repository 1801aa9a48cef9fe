#!/usr/bin/env bash
# End to end, idle cached sessions: Postfix with its connection cache on
# (smtp_connection_cache_on_demand = yes, smtp_connection_cache_time_limit
# = 2s, its defaults) sends through smtpgov's waiting room at the provider's
# true limit (mxsim's gmail, 3 sessions per client IP, 20 domains each its
# own nexthop, 3 messages each, so Postfix caches sessions for reuse while
# other connections wait). smtpgov runs on its defaults (idle_close 200ms).
# Two rounds: plaintext, then STARTTLS with smtp_tls_connection_reuse = yes
# (Postfix caches TLS sessions only with it; tlsproxy holds the TLS).
# Asserts each round: the waiting room ended idle sessions while others
# waited (status idle_closed grows, and the provider saw sessions end with
# a QUIT long after their last message: Postfix quits at once or lets its
# cache close the socket without one; in TLS the room cannot say QUIT, so
# there the provider sees sessions closed idle for >= 0.5 s); every message
# delivered exactly once (Message-IDs at the provider); no deferral, bounce
# or throttle reply; never more than 3 sessions at the provider.
# Runtime ~30-45 s. Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

e2e_init
command -v openssl >/dev/null || skip "openssl is needed for the simulator's certificate (make deps)"
sg_init idle
mx_tls_cert
mx_start "${MX_TLS[@]}" --persona "gmail:127.0.10.1-127.0.10.20:2525:limit=3:stage=rcpt:greet_delay=150:data_delay=100"
# Postfix's caching defaults (pf_create keeps them); retry timings short so
# that a deferral, if any, shows within the test rather than after 300 s
pf_create queue_run_delay=1s minimal_backoff_time=2s maximal_backoff_time=4s debug_peer_list=127.0.10.0/24
pf_route_range gmail 20 127.0.10 1 20 2525
# the true limit as a static cap; idle_close left at its default
sg_sim_conf queue "$(printf 'cap = 3\nmin_cap = 3\nmax_cap = 3')" "cap = 2"
sg_start
pf_start "$SG_CG"

# quits_after_idle SINCE_LINE: sessions in mxsim's log (from line SINCE_LINE
# on) that ended with a QUIT at least 280 ms after their last message (the
# provider holds its reply to a message 100 ms; Postfix quits right after)
# or, for TLS sessions, closed at least 500 ms after it
ended_idle() {
	tail -n "+$1" "$MX_LOG" | python3 -c '
import re, sys
from datetime import datetime
last, tls, n = {}, set(), 0
for l in sys.stdin:
    m = re.match(r"(\S+)Z \S+ \S+ s=(\d+) (\S+)(.*)", l)
    if not m:
        continue
    t = datetime.fromisoformat(m.group(1)).timestamp()
    s, kind, rest = int(m.group(2)), m.group(3), m.group(4).strip()
    if kind in ("connect", "accept"):
        last[s] = t
    elif kind == "tls":
        tls.add(s)
    elif kind == "close" and s in last:
        if s in tls and t - last[s] >= 0.5 or rest == "done" and t - last[s] >= 0.28:
            n += 1
print(n)'
}

round() {
	local name=$1 n=$2 closed0 from t0 closed sessions tls
	closed0=$(sg_stat gmail idle_closed)
	from=$(($(wc -l <"$MX_LOG") + 1))
	t0=$SECONDS
	pf_inject "$n" "${PF_DOMAINS[@]:0:2}"
	pf_wait_empty 40 || fail "$name: $(pf_queue_count) messages still queued after 40 s"
	closed=$(($(sg_stat gmail idle_closed) - closed0))
	sessions=$(tail -n "+$from" "$MX_LOG" | grep -c ' connect ')
	tls=$(tail -n "+$from" "$MX_LOG" | grep -c ' tls TLS')
	note "$name: $n messages in $((SECONDS - t0)) s; $sessions sessions ($tls TLS), idle sessions ended by smtpgov $closed, seen ending idle at the provider $(ended_idle "$from"), wait p50 $(sg_stat gmail wait_p50_ms) ms"
	[ "$closed" -gt 0 ] || fail "$name: the waiting room ended no idle session (idle_closed did not grow)"
	[ "$(ended_idle "$from")" -gt 0 ] || fail "$name: the provider saw no session end idle"
	[ "$(sg_stat gmail queued)" -gt 0 ] || fail "$name: nothing waited: the test proves nothing"
	case $name in
	TLS) [ "$tls" = "$sessions" ] || fail "TLS: $tls of $sessions sessions went on in TLS" ;;
	*) [ "$tls" = 0 ] || fail "plaintext: $tls sessions in TLS" ;;
	esac
}

round plaintext 60
pf_set smtp_tls_security_level=may smtp_tls_connection_reuse=yes
pf_reload
round TLS 60

# What Postfix does with a cached session we ended, step by step with a
# cap of 1 and Postfix caching every session to A and B for 10 s (settings
# for this check only, so that the order of events is certain; on demand,
# Postfix caches only while a destination has a backlog): A's message leaves its session
# cached; B's waits for the slot, so we end A's session; A's next message
# finds that session in Postfix's cache: Postfix must send RSET, meet our
# 421 (plaintext) or the end of the connection (TLS, through tlsproxy),
# drop it, deliver on a new session and defer nothing. debug_peer_list
# shows Postfix's side of each dialogue.
pf_set smtp_tls_security_level=none smtp_connection_cache_time_limit=10s connection_cache_ttl_limit=10s \
	"smtp_connection_cache_destinations=127.0.10.1 127.0.10.2"
sg_cap() {
	"$SMTPGOV" --pin-dir "$SG_PIN" set gmail --cap "$1" --force >/dev/null || fail "smtpgov set gmail --cap $1"
}
reuse_check() {
	local name=$1 want=$2 closed0 mark d i
	pf_reload
	for i in $(seq 50); do   # the last round's cached sessions expire
		[ "$(sg_stat gmail live)" = 0 ] && break
		sleep 0.2
	done
	closed0=$(sg_stat gmail idle_closed)
	mark=$(($(wc -l <"$PF_LOG") + 1))
	# A's first session through the room (a session admitted directly,
	# while nobody waited, is out of the room's reach): hold it at cap 0
	sg_cap 0
	pf_inject 1 "${PF_DOMAINS[0]}"
	for i in $(seq 50); do
		[ "$(sg_stat gmail waiting)" = 1 ] && break
		sleep 0.1
	done
	sg_cap 1
	pf_wait_empty 15 || fail "reuse $name: A's first message still queued after 15 s"
	# B waits while A's session idles in Postfix's cache; then A again
	for d in 1 0; do
		pf_inject 1 "${PF_DOMAINS[$d]}"
		pf_wait_empty 15 || fail "reuse $name: a message still queued after 15 s"
	done
	tail -n "+$mark" "$PF_LOG" | grep -v 'name_mask\|dict_\|match_\|mail_conf\|stream_setup\|send attr\|vstream' >"$E2E_DIR/reuse-$name.log"
	note "reuse $name: idle sessions ended $(($(sg_stat gmail idle_closed) - closed0)); Postfix's RSET on a cached session was answered: $(grep -A1 ': RSET$' "$E2E_DIR/reuse-$name.log" | grep -v ': RSET$' | sed 's/.*postfix\/smtp\[[0-9]*\]: //' | tr '\n' '|')"
	[ "$(($(sg_stat gmail idle_closed) - closed0))" -ge 2 ] || fail "reuse $name: fewer than 2 idle sessions ended"
	grep -A1 ': RSET$' "$E2E_DIR/reuse-$name.log" | grep -q -- "$want" ||
		fail "reuse $name: no RSET on a cached session answered '$want' (see $E2E_DIR/reuse-$name.log)"
	[ "$(grep -c 'status=sent' "$E2E_DIR/reuse-$name.log")" = 3 ] || fail "reuse $name: not 3 messages sent"
}
reuse_check plaintext '421 4.4.2 smtpgov: idle session closed'
pf_set smtp_tls_security_level=may smtp_tls_connection_reuse=yes
reuse_check TLS 'smtp_get: EOF'

summary=$(mx_check_ids "$PF_DIR/sent-ids") || fail "Message-IDs: $summary"
note "ids: $summary"
[ "$(mx_stat "s['personas']['gmail']['throttled']")" = 0 ] || fail "throttle replies from the provider"
[ "$(mx_stat "s['personas']['gmail']['peak']")" -le 3 ] || fail "more than 3 sessions at the provider"
for what in status=deferred status=bounced 'lost connection' 'Operation not permitted'; do
	[ "$(pf_log_count "$what")" = 0 ] || fail "$(pf_log_count "$what") '$what' lines in the maillog"
done
[ "$(pf_log_count 'status=sent')" = 126 ] || fail "$(pf_log_count 'status=sent') status=sent lines, want 126"
[ "$(sg_stat gmail queue_timeouts)" = 0 ] || fail "waits timed out"
echo "PASS: idle cached sessions ended for waiting ones, plaintext and TLS ($((SECONDS - E2E_T0)) s)"
