#!/usr/bin/env bash
# End to end: smtpgov finds the MTA's log by itself, and says when it learns
# nothing (issue 13). A private Postfix (maillog_file, in the governed
# cgroup) sends to mxsim's gmail persona, which allows 2 sessions and
# answers 421-4.4.5 beyond that; smtpgov's gmail group starts at cap 6.
#
# Asserts:
#  1. a log file that does not exist (--log): `load` says so in one line at
#     start; with no connect governed no warning comes; once Postfix sends,
#     the "learning blind" warning names the file, once per interval
#     (blind_warning shortened to 2s); status --json shows state "waiting"
#     and 0 lines; the cap never moves although mxsim throttles
#  2. no --log, `--mta postfix:DIR`: `load` chooses Postfix's maillog_file
#     (postconf -c DIR) and says why; the gmail cap falls (it learns); status
#     --json counts exactly the maillog lines written since it started, the
#     delivery lines among them (as `smtpgov parse` counts them) and the
#     time of the last one
# Runtime ~30 s. Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

e2e_init
sg_init logauto
pf_create
mx_start --persona "gmail:127.0.10.1-127.0.10.10:2525:limit=2:stage=rcpt:greet_delay=100:data_delay=100"
pf_route_range gmail 10 127.0.10 1 10 2525
# cap 6 over the persona's 2: there is something to learn
GMAIL="cap = 6
min_cap = 1
max_cap = 6
cooldown = 2s"
# blind_warning: the default 15m shortened so the warning comes within the test
sg_sim_conf queue "$GMAIL" "" "blind_warning = 2s"

# ---- 1. a missing file, learning blind
MISSING=$E2E_DIR/nonexistent-mail.log
SG_LOG=$MISSING sg_start
pf_start "$SG_CG"
sg_dlog_last | grep -qxF "smtpgov: warning: log $MISSING does not exist yet; nothing is learned until it appears" ||
	fail "no notice that $MISSING does not exist: $(sg_dlog_last)"
[ "$(sg_log_stat state)" = waiting ] || fail "status: state '$(sg_log_stat state)', want waiting"
sleep 3   # more than one interval with nothing governed
sg_dlog_last | grep -q "learning blind" && fail "warned of learning blind with no connect governed: $(sg_dlog_last)"
pf_inject 10 "${PF_DOMAINS[@]}"
for _ in $(seq 100); do
	sg_dlog_last | grep -q "learning blind" && break
	sleep 0.1
done
blind=$(sg_dlog_last | grep "learning blind" | head -1) || fail "no learning-blind warning 10 s after Postfix began sending"
note "$blind"
echo "$blind" | grep -qE "^smtpgov: warning: learning blind: [0-9]+ connects governed in the last 2s, no delivery line read from $MISSING for [0-9]+s \(it does not exist\); caps are enforced but nothing is learned$" ||
	fail "the warning does not say what it should: $blind"
sleep 4
n=$(sg_dlog_last | grep -c "learning blind")
thr=$(mx_stat "s['personas']['gmail']['throttled']")
note "after 4 s more: $n warnings; mxsim throttled $thr; gmail cap $(sg_stat gmail cap)"
((n >= 2 && n <= 5)) || fail "$n learning-blind warnings in ~5 s at one per 2s"
[ "$(sg_stat gmail cap)" = 6 ] || fail "gmail's cap moved to $(sg_stat gmail cap) with no log to learn from"
[ "$(sg_log_stat lines)" = 0 ] || fail "status: $(sg_log_stat lines) lines read from a missing file"
sg_stop
pf_wait_empty 40 || fail "the first 10 messages were not delivered in 40 s"
sleep 2   # Postfix's cached sessions close; nothing more is logged

# ---- 2. auto: Postfix's maillog_file, found through postconf
sg_sim_conf queue "$GMAIL" ""
l0=$(wc -l <"$PF_LOG")
SG_TARGET=(--mta "postfix:$PF_CONF")   # the running instance: its cgroup, and postconf -c for its log
SG_LOG= SG_FOLLOWS=$PF_LOG sg_start
why=$(sg_dlog_last | grep -F "log auto: chose $PF_LOG:") || fail "no auto choice line: $(sg_dlog_last)"
note "$why"
[ "$why" = "smtpgov: log auto: chose $PF_LOG: Postfix's maillog_file (postconf -c $PF_CONF -h maillog_file)" ] ||
	fail "the reason does not say why: $why"
sg_dlog_last | grep -q "does not exist" && fail "the maillog_file was said not to exist"
[ "$(sg_stat gmail cap)" = 6 ] || fail "gmail starts at cap $(sg_stat gmail cap)"
pf_inject 30 "${PF_DOMAINS[@]}"
sg_wait_cap gmail 3 30 || fail "gmail's cap is $(sg_stat gmail cap) 30 s after sending began: nothing learned from $PF_LOG"
note "learned: gmail changes $(sg_cap_changes gmail)"
pf_wait_empty 40 || fail "$(pf_queue_count) messages still queued after 40 s"
sleep 3   # the last lines reach the daemon
total=$(( $(wc -l <"$PF_LOG") - l0 ))
deliv=$(tail -n +"$((l0 + 1))" "$PF_LOG" | "$SMTPGOV" parse --config "$SG_CONF" | wc -l)
sent=$(tail -n +"$((l0 + 1))" "$PF_LOG" | grep -c "status=sent")
st=$(sg_status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["log"])')
note "status: $st"
note "maillog since start: $total lines, $deliv delivery lines by smtpgov parse, $sent status=sent"
[ "$(sg_log_stat source)" = "$PF_LOG" ] || fail "status: source '$(sg_log_stat source)'"
[ "$(sg_log_stat lines)" = "$total" ] || fail "status: $(sg_log_stat lines) lines read, the maillog got $total"
[ "$(sg_log_stat deliveries)" = "$deliv" ] || fail "status: $(sg_log_stat deliveries) delivery lines, parse finds $deliv"
((deliv >= sent && sent >= 30)) || fail "$deliv delivery lines, $sent sent: fewer than the 30 messages"
last=$(sg_log_stat last_delivery)
[ "$last" != None ] && (( $(date +%s) - $(date -d "$last" +%s) < 60 )) || fail "status: last delivery '$last'"
"$SMTPGOV" --pin-dir "$SG_PIN" status | grep -qE "^log $PF_LOG \(auto: Postfix's maillog_file .*\): following since .*; $total lines read, $deliv delivery lines, last $last$" ||
	fail "status text: $("$SMTPGOV" --pin-dir "$SG_PIN" status | grep '^log')"
echo "PASS: a missing log said so and warned of learning blind; auto found maillog_file and learned ($((SECONDS - E2E_T0)) s)"
