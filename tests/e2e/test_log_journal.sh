#!/usr/bin/env bash
# End to end: smtpgov learns from the systemd journal (issue 13), on a host
# where Postfix logs only there (Debian 12 without rsyslog): no maillog_file,
# no /var/log/mail.log. The journal is a real journal file written by
# systemd-journal-remote from export-format entries (what journald stores
# for Postfix's syslog lines); smtpgov opens it with sd_journal_open_files
# (`[global] journal = FILE`, `--log journal:FILE`). `[global] mta` names
# the test's Postfix instance, whose postconf auto asks for maillog_file.
#
# Asserts:
#  1. auto: with no --log, `load` chooses the journal and says why in one
#     line (no maillog_file in the instance's main.cf, no syslog file, the
#     journal has Postfix entries)
#  2. a Gmail 421-4.4.5 deferral entry appended to the journal lowers
#     google's cap in the kernel map (4 -> 2); a delivery and a non-delivery
#     entry follow, and status --json counts 3 lines read, 2 delivery lines
#  3. --log journal:FILE given explicitly: a Microsoft 4.7.652 entry pauses
#     microsoft (cap 0); no auto choice is printed
# Runtime ~10 s. Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

e2e_init
sg_init journal
[ -x "$JOURNAL_REMOTE" ] || fail "$JOURNAL_REMOTE missing: make deps installs systemd-journal-remote"
for f in /var/log/mail.log /var/log/maillog; do
	# auto prefers a syslog file that is being written: then this host
	# cannot show the journal case (the unit tests cover the rule itself)
	[ -n "$(find "$f" -mmin -1440 2>/dev/null)" ] &&
		fail "$f is being written on this host: log = auto rightly prefers it to the journal"
done

# A Postfix instance whose main.cf sets no maillog_file: it logs to syslog.
pf_create
pf_set maillog_file=
[ -z "$(postconf -c "$PF_CONF" -h maillog_file)" ] || fail "maillog_file still set in $PF_CONF"
PF_LOG=   # nothing to pre-create for sg_start
J=$E2E_DIR/mx.journal
journal_add "$J" postfix/master "daemon started -- version 3.7.11, configuration $PF_CONF"

cat >"$SG_CONF" <<EOF
[global]
builtin = yes
state = $SG_STATE
mta = postfix:$PF_CONF
journal = $J

[group google]
cap = 4
min_cap = 1
max_cap = 5

[group microsoft]
cap = 3
EOF

# ---- 1. auto chooses the journal
SG_LOG= SG_FOLLOWS="journal:$J" sg_start
why=$(grep -F "log auto: chose journal:$J:" "$SG_DLOG") || fail "no auto choice line: $(cat "$SG_DLOG")"
note "$why"
echo "$why" | grep -qF "no maillog_file (postconf -c $PF_CONF); no /var/log/mail.log or /var/log/maillog; $J has Postfix entries (newest" ||
	fail "the reason does not say why: $why"
[ "$(sg_log_stat source)" = "journal:$J" ] || fail "status shows source '$(sg_log_stat source)'"
[ "$(sg_stat google cap)" = 4 ] || fail "google starts at cap $(sg_stat google cap), want 4"

# ---- 2. a throttle entry in the journal moves a cap
journal_add "$J" postfix/smtp "ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.102.27]:25, delay=1.2, delays=0.1/0/0.6/0.5, dsn=4.4.5, status=deferred (host gmail-smtp-in.l.google.com[142.250.102.27] said: 421-4.4.5 Server busy, try again later. 421 4.4.5 Server busy, try again later. a1si123 - gsmtp (in reply to end of DATA command))"
sg_wait_cap google 2 5 || fail "google's cap is $(sg_stat google cap) 5 s after the deferral entry, want 2"
grep -qF "google: cap 4 -> 2 (rule gmail-421-4.4.5, queue id ABC123)" "$SG_DLOG" || fail "the decrease is not logged"
journal_add "$J" postfix/smtp "ABC124: to=<b@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.102.27]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK  1700000000 x1si1 - gsmtp)"
journal_add "$J" postfix/qmgr "ABC125: from=<sender@sender.test>, size=420, nrcpt=1 (queue active)"
for _ in $(seq 50); do
	[ "$(sg_log_stat lines)" = 3 ] && break
	sleep 0.1
done
note "status: $(sg_status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["log"])')"
[ "$(sg_log_stat lines)" = 3 ] || fail "status: lines read $(sg_log_stat lines), want 3 (the entries appended since start)"
[ "$(sg_log_stat deliveries)" = 2 ] || fail "status: delivery lines $(sg_log_stat deliveries), want 2"
[ "$(sg_log_stat state)" = following ] || fail "status: state $(sg_log_stat state)"
[ "$(sg_log_stat last_delivery)" != None ] || fail "status: no last delivery time"
"$SMTPGOV" --pin-dir "$SG_PIN" status | grep -qF "log journal:$J (auto: " || fail "status text lacks the log line"

# ---- 3. --log journal:FILE
sg_stop
SG_LOG="journal:$J" sg_start
sg_dlog_last | grep -q "log auto" &&
	fail "an explicit --log still ran the auto choice: $(cat "$SG_DLOG")"
r=$(sg_log_stat reason); [ "$r" = given ] || fail "status: reason '$r' for a given log"
journal_add "$J" postfix/smtp "DEF456: to=<c@contoso.com>, relay=contoso-com.mail.protection.outlook.com[40.92.1.1]:25, delay=0.5, delays=0.1/0/0.3/0.1, dsn=4.7.652, status=deferred (host contoso-com.mail.protection.outlook.com[40.92.1.1] said: 451 4.7.652 The mail server [198.51.100.7] has exceeded the maximum number of connections. (in reply to MAIL FROM command))"
sg_wait_cap microsoft 0 5 || fail "microsoft's cap is $(sg_stat microsoft cap) 5 s after the 4.7.652 entry, want 0 (paused)"
note "microsoft: $(grep -F 'microsoft: cap' "$SG_DLOG" | tail -1)"
echo "PASS: the journal chosen by log = auto and followed; its entries move caps ($((SECONDS - E2E_T0)) s)"
