#!/usr/bin/env bash
# End to end, queue verdict: the world of test_campaign.sh (mxsim's gmail on
# 127.0.10.1-40:2525 allowing 3 sessions per client IP, outlook on
# 127.0.20.1-40:2525 allowing 2; 40 domains each, each its own nexthop), but
# smtpgov holds over-cap connects in its waiting room instead of refusing
# them, with static caps equal to the true limits (3 and 2), and Postfix
# with smtp_connection_cache_on_demand = no.
# Asserts: all 320 messages delivered, each Message-ID exactly once; the
# simulator sent 0 throttle replies and admitted at most 3 (gmail) / 2
# (outlook) sessions at once; the waiting room did hold connections
# (status queued > 0) and none timed out; no "Operation not permitted" and no
# deferral in the maillog. Runtime ~30-60 s. Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

e2e_init
sg_init queue

pf_create queue_run_delay=1s minimal_backoff_time=2s maximal_backoff_time=4s \
	smtp_connection_cache_on_demand=no
sim_providers
# static caps at the providers' limits: the queue must keep every message in
sg_sim_conf queue "$(printf 'cap = 3\nmin_cap = 3\nmax_cap = 3\nqueue_wait = 120s')" \
	"$(printf 'cap = 2\nmin_cap = 2\nmax_cap = 2\nqueue_wait = 120s')"

sg_start
pf_start "$SG_CG"
note "smtpgov (pid $SG_PID) queues for $SG_CG; postfix and mxsim running"
t0=$SECONDS
pf_inject 200 "${PF_DOMAINS[@]:0:40}"
pf_inject 120 "${PF_DOMAINS[@]:40:40}"
note "320 messages injected"
while ! pf_wait_empty 5; do
	note "gmail live $(sg_stat gmail live) waiting $(sg_stat gmail waiting) | outlook live $(sg_stat outlook live) waiting $(sg_stat outlook waiting) | queued $(pf_queue_count)"
	((SECONDS - t0 < 75)) || fail "$(pf_queue_count) messages still queued after 75 s"
done
note "queue empty after $((SECONDS - t0)) s"

summary=$(mx_check_ids "$PF_DIR/sent-ids") || fail "Message-IDs: $summary"
note "ids: $summary"
for p in gmail:3 outlook:2; do
	g=${p%:*} lim=${p#*:}
	thr=$(mx_stat "s['personas']['$g']['throttled']")
	pa=$(mx_stat "s['personas']['$g']['peak_admitted']")
	pk=$(mx_stat "s['personas']['$g']['peak']")
	q=$(sg_stat "$g" queued) to=$(sg_stat "$g" queue_timeouts) ref=$(sg_stat "$g" refused)
	note "$g: throttle replies $thr, peak $pk, peak_admitted $pa (limit $lim), queued by smtpgov $q, timeouts $to, refused $ref, wait p50 $(sg_stat "$g" wait_p50_ms) ms p99 $(sg_stat "$g" wait_p99_ms) ms"
	[ "$thr" = 0 ] || fail "$g: $thr throttle replies, want 0"
	[ "$pa" -le "$lim" ] || fail "$g: peak_admitted $pa > $lim"
	[ "$pk" -le "$lim" ] || fail "$g: $pk concurrent attempts > $lim"
	[ "$q" -gt 0 ] || fail "$g: the waiting room never held a connection (queued 0): the test proves nothing"
	[ "$to" = 0 ] || fail "$g: $to waits timed out"
	[ "$ref" = 0 ] || fail "$g: smtpgov refused $ref connects"
done
[ "$(pf_log_count 'Operation not permitted')" = 0 ] || fail "$(pf_log_count 'Operation not permitted') 'Operation not permitted' lines in the maillog"
[ "$(pf_log_count 'status=deferred')" = 0 ] || fail "$(pf_log_count 'status=deferred') deferrals in the maillog"
[ "$(pf_log_count 'status=bounced')" = 0 ] || fail "bounces in the maillog"
[ "$(pf_log_count 'status=sent')" = 320 ] || fail "$(pf_log_count 'status=sent') status=sent lines, want 320"
echo "PASS: queue verdict with Postfix ($((SECONDS - E2E_T0)) s)"
