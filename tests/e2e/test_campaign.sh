#!/usr/bin/env bash
# End to end: a real Postfix governed by smtpgov (refuse verdict, learning
# from the maillog) delivers a campaign to mxsim's simulated providers:
#   gmail   127.0.10.1-40:2525, 3 sessions per client IP, 421-4.4.5 at RCPT
#   outlook 127.0.20.1-40:2525, 2 sessions per client IP, 451 4.7.652
# 40 recipient domains per provider, each its own Postfix nexthop.
# smtpgov starts both groups at cap 10 (max 10) and must learn the limits.
#
# Asserts, in order:
#  1. learn: each group's cap falls to <= the provider's limit (status --json)
#  2. crash: SIGKILL to the daemon mid-campaign keeps the caps in the pinned
#     maps, and a restarted daemon starts from them (not from the config's 10)
#  3. hold: with the caps learned (mxsim stats reset), the simulator sees at
#     most limit+1 concurrent attempts per client (its "peak")
#  4. climb: the providers raise their limits (gmail 6, outlook 4), more mail
#     is injected, and each cap climbs above the old limit+1, by +1 steps only
#  5. nothing lost: every Message-ID accepted exactly once, or still in the
#     queue at the end; no bounce; no unexpected message
# Runtime ~2-3 minutes. Exit 0 pass, 1 FAIL (with the reason), 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

GMAIL_LIMIT=3 OUTLOOK_LIMIT=2
e2e_init
sg_init camp

# Short retry timings; a refused connect must not mark a destination dead
# for long (failed_cohort_limit: see README, "How it behaves with Postfix").
pf_create queue_run_delay=1s minimal_backoff_time=1s maximal_backoff_time=2s \
	default_destination_concurrency_failed_cohort_limit=10
sim_providers
GMAIL_DOMAINS=("${PF_DOMAINS[@]:0:40}") OUTLOOK_DOMAINS=("${PF_DOMAINS[@]:40:40}")
# both groups start at cap 10 and learn the limits
LEARN="cap = 10
min_cap = 1
max_cap = 10
decrease = 0.5
cooldown = 3s
increase_after = 20
increase_interval = 8s"
sg_sim_conf refuse "$LEARN" "$LEARN"

sg_start
pf_start "$SG_CG"
note "smtpgov (pid $SG_PID, pins $SG_PIN) governs $SG_CG; postfix and mxsim running"

line() {
	echo "gmail cap $(sg_stat gmail cap) refused $(sg_stat gmail refused) | outlook cap $(sg_stat outlook cap) refused $(sg_stat outlook refused) | queued $(pf_queue_count) | throttled $(mx_stat "s['personas']['gmail']['throttled'], s['personas']['outlook']['throttled']")"
}

# ---- 1. learn
pf_inject 200 "${GMAIL_DOMAINS[@]}"
pf_inject 120 "${OUTLOOK_DOMAINS[@]}"
note "learn: 320 messages injected"
sg_wait_cap gmail $GMAIL_LIMIT 45 || fail "learn: gmail cap $(sg_stat gmail cap) > $GMAIL_LIMIT after 45 s; changes: $(sg_cap_changes gmail)"
sg_wait_cap outlook $OUTLOOK_LIMIT 45 || fail "learn: outlook cap $(sg_stat outlook cap) > $OUTLOOK_LIMIT after 45 s; changes: $(sg_cap_changes outlook)"
note "learn: $(line)"
note "learn: gmail changes: $(sg_cap_changes gmail)| outlook changes: $(sg_cap_changes outlook)"

# ---- 2. crash and restart mid-campaign
g0=$(sg_stat gmail cap) o0=$(sg_stat outlook cap)
sg_kill
g1=$(sg_stat gmail cap) o1=$(sg_stat outlook cap)
note "crash: daemon SIGKILLed with caps gmail $g0 outlook $o0; pinned caps now gmail $g1 outlook $o1"
[ "$g1" = "$g0" ] && [ "$o1" = "$o0" ] || fail "crash: pinned caps changed by the kill: gmail $g0->$g1 outlook $o0->$o1"
sleep 3   # Postfix goes on, enforced by the pinned programs alone
refused_before=$(sg_stat gmail refused)
g1=$(sg_stat gmail cap) o1=$(sg_stat outlook cap)
sg_start
g2=$(sg_stat gmail cap) o2=$(sg_stat outlook cap)
note "crash: restarted (pid $SG_PID): caps gmail $g2 outlook $o2 (config says 10)"
[ "$g2" = "$g1" ] && [ "$o2" = "$o1" ] || fail "crash: restart did not keep the caps: gmail $g1->$g2 outlook $o1->$o2"
[ "$(sg_stat gmail refused)" -ge "$refused_before" ] || fail "crash: counters were reset by the restart"

# ---- 3. hold the learned limit
mx_ctl reset >/dev/null
maxcap_g=0 maxcap_o=0
end=$((SECONDS + 20))
while ((SECONDS < end)); do
	c=$(sg_stat gmail cap); ((c > maxcap_g)) && maxcap_g=$c
	c=$(sg_stat outlook cap); ((c > maxcap_o)) && maxcap_o=$c
	sleep 0.5
done
peak_g=$(mx_stat "s['personas']['gmail']['peak']") peak_o=$(mx_stat "s['personas']['outlook']['peak']")
thr_g=$(mx_stat "s['personas']['gmail']['throttled']") thr_o=$(mx_stat "s['personas']['outlook']['throttled']")
note "hold (20 s): gmail peak $peak_g (limit $GMAIL_LIMIT, highest cap $maxcap_g, throttle replies $thr_g); outlook peak $peak_o (limit $OUTLOOK_LIMIT, highest cap $maxcap_o, throttle replies $thr_o); queued $(pf_queue_count)"
[ "$(pf_queue_count)" -gt 0 ] || fail "hold: the queue ran dry during the window, the peak proves nothing"
[ "$peak_g" -le $((GMAIL_LIMIT + 1)) ] || fail "hold: gmail peak $peak_g > limit+1 (cap changes: $(sg_cap_changes gmail))"
[ "$peak_o" -le $((OUTLOOK_LIMIT + 1)) ] || fail "hold: outlook peak $peak_o > limit+1 (cap changes: $(sg_cap_changes outlook))"

# ---- 4. the providers relent: the caps climb back by +1 steps
mx_limit gmail 6
mx_limit outlook 4
pf_inject 80 "${GMAIL_DOMAINS[@]}"
pf_inject 40 "${OUTLOOK_DOMAINS[@]}"
note "climb: limits gmail 6, outlook 4; 120 more messages; $(line)"
sg_wait_cap gmail '>=5' 60 || fail "climb: gmail cap $(sg_stat gmail cap) did not reach 5 in 60 s; changes: $(sg_cap_changes gmail)"
sg_wait_cap outlook '>=4' 60 || fail "climb: outlook cap $(sg_stat outlook cap) did not reach 4 in 60 s; changes: $(sg_cap_changes outlook)"
note "climb: $(line)"
for g in gmail outlook; do
	ch=$(sg_cap_changes $g)
	note "climb: $g changes: $ch"
	for c in $ch; do
		from=${c%>*} to=${c#*>}
		((to <= from || to == from + 1)) || fail "climb: $g rose by more than 1 ($c): $ch"
	done
done

# ---- 5. nothing lost
pf_wait_empty 60 || note "drain: $(pf_queue_count) messages still queued after 60 s"
note "drain: $(line)"
[ "$(pf_log_count 'status=bounced')" = 0 ] || fail "bounces in the maillog"
summary=$(e2e_check_ids) || fail "Message-IDs: $summary"
note "ids: $summary"
echo "PASS: campaign governed by smtpgov ($((SECONDS - E2E_T0)) s)"
