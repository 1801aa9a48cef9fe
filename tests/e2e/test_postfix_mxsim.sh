#!/usr/bin/env bash
# Smoke test of the end-to-end harness, without smtpgov: a private Postfix
# instance delivers to mxsim's simulated Gmail on 127.0.10.1-20:2525.
#
# Phase 1, generous limit (200 sessions per client IP): 100 messages to 20
#   domains all arrive, each Message-ID exactly once; the queue drains;
#   nothing bounces; no throttle reply is sent.
# Phase 2, limit 2 at RCPT with Postfix's default concurrency, 60 messages:
#   mxsim sends throttle replies, Postfix logs status=deferred with Google's
#   421 4.4.5 in reply to RCPT, mxsim admits at most 2 sessions while Postfix
#   tries more.
# Phase 3, the limit lifted at run time and the queue flushed: every deferred
#   message arrives exactly once, nothing bounces.
# Exit 0 on success, 1 with a FAIL line otherwise, 77 to skip (not root).
set -u
. "$(dirname "$0")/lib.sh"

e2e_init

# greet_delay: a real banner takes ~100-300 ms, which is what lets sessions
# overlap and concurrency build up.
mx_start --persona gmail:127.0.10.1-127.0.10.20:2525:limit=200:stage=rcpt:greet_delay=150
pf_create queue_run_delay=1s minimal_backoff_time=2s maximal_backoff_time=4s
pf_route_range gmail 20 127.0.10 1 20 2525
pf_start
note "postfix $PF_CONF and mxsim (pid $MX_PID) running"

# ---- phase 1: nothing throttles (up to 100 smtp processes, default_process_limit)
pf_inject 100 "${PF_DOMAINS[@]}"
note "phase 1: 100 messages injected"
pf_wait_empty 30 || fail "phase 1: $(pf_queue_count) messages still queued after 30 s"
note "phase 1: queue empty"
summary=$(mx_check_ids "$PF_DIR/sent-ids") || fail "phase 1: Message-IDs: $summary"
note "phase 1: $summary"
[ "$(mx_stat "s['personas']['gmail']['throttled']")" = 0 ] || fail "phase 1: throttle replies sent"
[ "$(pf_log_count 'status=sent')" = 100 ] || fail "phase 1: $(pf_log_count 'status=sent') status=sent lines, want 100"
[ "$(pf_log_count 'status=bounced')" = 0 ] || fail "phase 1: bounces in the maillog"

# ---- phase 2: 2 sessions per client IP, Google's reply at RCPT
# a lower limit applies to new sessions: let the cached ones from phase 1 go
mx_wait_idle gmail 10 || fail "phase 1 sessions still open after 10 s"
mx_ctl reset >/dev/null
mx_limit gmail 2
: >"$PF_DIR/sent-ids"
pf_inject 60 "${PF_DOMAINS[@]}"
note "phase 2: 60 messages injected, limit 2"
deadline=$((SECONDS + 20))
pattern='status=deferred .*said: 421-4\.4\.5 Server busy.* 421 4\.4\.5 .*\(in reply to RCPT TO command\)'
# Postfix alone needs minutes to deliver this through its retries
# (docs/design.md, "How Postfix reacts"):
# wait for the throttling to be seen, let it go on a few seconds more.
until [ "$(pf_log_count "$pattern")" -gt 0 ] || ((SECONDS > deadline)); do
	sleep 0.5
done
sleep 3
throttled=$(mx_stat "s['personas']['gmail']['throttled']")
peak=$(mx_stat "s['personas']['gmail']['peak']")
peak_admitted=$(mx_stat "s['personas']['gmail']['peak_admitted']")
deferred=$(pf_log_count "$pattern")
note "phase 2: throttle replies $throttled, peak sessions $peak (admitted $peak_admitted), deferrals logged $deferred, queued $(pf_queue_count)"
[ "$throttled" -gt 0 ] || fail "phase 2: mxsim sent no throttle reply"
[ "$deferred" -gt 0 ] || fail "phase 2: no status=deferred line with 421 4.4.5 at RCPT in the maillog"
[ "$peak_admitted" -le 2 ] || fail "phase 2: mxsim admitted $peak_admitted sessions, limit 2"
[ "$peak" -gt 2 ] || fail "phase 2: Postfix never tried more than 2 sessions (peak $peak)"

# ---- phase 3: the provider relents (limit changed at run time); every
# deferred message arrives exactly once.
mx_limit gmail none
pf_flush
pf_wait_empty 30 || fail "phase 3: $(pf_queue_count) messages still queued 30 s after lifting the limit"
summary=$(mx_check_ids "$PF_DIR/sent-ids") || fail "phase 3: Message-IDs: $summary"
note "phase 3: $summary"
[ "$(pf_log_count 'status=bounced')" = 0 ] || fail "phase 3: bounces in the maillog"
[ "$(pf_log_count 'status=sent')" = 160 ] || fail "phase 3: $(pf_log_count 'status=sent') status=sent lines in total, want 160"

echo "PASS: postfix + mxsim ($((SECONDS - E2E_T0)) s)"
