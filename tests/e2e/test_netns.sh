#!/usr/bin/env bash
# End to end, MTAs in their own network namespace (a container's), inside the
# governed cgroup: namespaces C (the clients, 198.18.0.2) and P (the provider,
# mxsim on 198.18.0.1:2525) joined by a veth pair; group "prov" is
# 198.18.0.0/24 with cap 2 and the queue verdict.
#  1. 10 swaks clients in C: all delivered, the provider never sees more than
#     2 sessions, no "connection refused", and it saw them come from C's own
#     address (the upstream leg opened in C's namespace).
#  2. Namespace D (198.18.2.2, its own veth to P), made after `load`: once a
#     process of the cgroup lives there the daemon opens a door in it; 10
#     clients in C and 10 in D at once: all delivered, never more than 2
#     sessions at the provider across both namespaces (one count per group).
#     D has no IPv6 loopback: an IPv6 connect over the cap from it gets EPERM
#     (its door has no ::1 listener), not a rewrite to a dead ::1.
#     When D's last process goes, its door is closed.
#  3. A private Postfix in C: 20 messages all delivered, at most 2 sessions,
#     no "Connection refused" in its log.
#  4. The daemon stopped: the same 10 clients get EPERM ("Operation not
#     permitted"), never ECONNREFUSED.
# Runtime ~30 s. Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

e2e_init
command -v swaks >/dev/null || skip "swaks is not installed (make deps)"
command -v nsenter >/dev/null || skip "nsenter is not installed"
sg_init netns
C=sgc$$ D=sgd$$ P=sgp$$
ns_add "$C"
ns_add "$P"
ns_link "$C" 198.18.0.2/24 "$P" 198.18.0.1/24
# a banner and a DATA reply that take a while, so that sessions overlap
MX_NETNS=$P mx_start --persona prov:198.18.0.1:2525:limit=none:greet_delay=300:data_delay=100
pf_create smtp_connection_cache_on_demand=no
for i in $(seq 10); do
	pf_route "prov-$i.test" "smtp:[198.18.0.1]:2525"
done
{
	printf '[global]\nports = 2525\nbuiltin = no\nverdict = queue\nstate = %s\n' "$SG_STATE"
	# a static cap (no learning): the test is about where connections wait
	printf '[group prov]\nranges = 198.18.0.0/24 2001:db8:18::/48\ncap = 2\nmin_cap = 2\nmax_cap = 2\nqueue_wait = 60s\n'
} >"$SG_CONF"
# the container's own process, there before smtpgov starts
(echo "$BASHPID" >"$SG_CG/cgroup.procs" && exec nsenter --net="/var/run/netns/$C" sleep 300) &
E2E_PIDS+=($!)
sg_start
note "smtpgov (pid $SG_PID) governs $SG_CG; namespaces $C (clients) and $P (provider)"

# clients_start NS TAG N: N swaks at once in namespace NS, each in the governed
# cgroup; output in E2E_DIR/TAG-i.out, exit codes in E2E_DIR/TAG.rc.
clients_start() {
	local ns=$1 tag=$2 n=$3 i

	CLIENT_PIDS=()
	for ((i = 1; i <= n; i++)); do
		(echo "$BASHPID" >"$SG_CG/cgroup.procs" &&
			exec nsenter --net="/var/run/netns/$ns" swaks --server 198.18.0.1 --port 2525 \
				--from sender@sender.test --to "user$i@prov.test" --helo "$tag.test" \
				--timeout 60 --header "Subject: $tag $i") >"$E2E_DIR/$tag-$i.out" 2>&1 &
		CLIENT_PIDS+=($!)
	done
}
clients_wait() {   # sets FAILED: how many clients exited non-zero
	local pid

	FAILED=0
	for pid in "${CLIENT_PIDS[@]}"; do
		wait "$pid" || FAILED=$((FAILED + 1))
	done
}
count_in() {   # REGEX TAG: client outputs of TAG matching REGEX
	grep -liE -- "$1" "$E2E_DIR/$2"-*.out 2>/dev/null | wc -l
}
clients_ip() {  # the client addresses the provider saw
	mx_stat "' '.join(sorted(s['personas']['prov']['clients']))"
}

# ---- 1: clients in a container-like namespace
mx_ctl reset >/dev/null
clients_start "$C" one 10
clients_wait
failed=$FAILED
pk=$(mx_stat "s['personas']['prov']['peak_total']") acc=$(mx_stat "s['messages']")
note "1: $failed of 10 clients failed; provider accepted $acc, peak $pk sessions from $(clients_ip); queued by smtpgov $(sg_stat prov queued)"
[ "$(count_in 'connection refused' one)" = 0 ] || fail "1: 'connection refused': $(grep -hi refused "$E2E_DIR"/one-*.out | head -3)"
[ "$failed" = 0 ] || fail "1: $failed clients failed: $(grep -h '\*\*\*' "$E2E_DIR"/one-*.out | head -3)"
[ "$acc" = 10 ] || fail "1: the provider accepted $acc of 10 messages"
[ "$pk" -le 2 ] || fail "1: the provider saw $pk sessions at once, cap 2"
[ "$(sg_stat prov queued)" -gt 0 ] || fail "1: the waiting room never held a connection: the test proves nothing"
[ "$(clients_ip)" = 198.18.0.2 ] || fail "1: the provider saw clients $(clients_ip), want only C's 198.18.0.2"

# ---- 2: a namespace made after load, served together with the first
ns_add "$D"
# no IPv6 loopback in D (as in a container with IPv6 off): its door is 127.0.0.1 only
ns_exec "$D" sysctl -qw net.ipv6.conf.lo.disable_ipv6=1 || fail "IPv6 off in $D"
ns_link "$D" 198.18.2.2/24 "$P" 198.18.2.1/24
ns_exec "$D" ip route add 198.18.0.0/24 via 198.18.2.1 || fail "route in $D"
(echo "$BASHPID" >"$SG_CG/cgroup.procs" && exec nsenter --net="/var/run/netns/$D" sleep 300) &
holder=$!
E2E_PIDS+=("$holder")
sg_wait_log "door in network namespace [0-9]* (pid $holder)" 6 ||
	fail "2: no door opened in $D within 6 s: $(tail -n 3 "$SG_DLOG")"
note "2: $(grep -o "door in network namespace [0-9]* (pid $holder).*" "$SG_DLOG")"
n=$("$SMTPGOV" --pin-dir "$SG_PIN" status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["room_netns"])')
[ "$n" = 3 ] || fail "2: status counts $n network namespaces with a waiting room, want 3 (ours, $C, $D)"
mx_ctl reset >/dev/null
clients_start "$C" twoc 10
pids_c=("${CLIENT_PIDS[@]}")
clients_start "$D" twod 10
clients_wait
failed_d=$FAILED
CLIENT_PIDS=("${pids_c[@]}")
clients_wait
failed_c=$FAILED
pk=$(mx_stat "s['personas']['prov']['peak_total']") acc=$(mx_stat "s['messages']")
note "2: failed $failed_c in $C, $failed_d in $D; provider accepted $acc, peak $pk sessions from $(clients_ip)"
[ "$(count_in 'connection refused' 'two[cd]')" = 0 ] || fail "2: 'connection refused' seen"
[ "$failed_c$failed_d" = 00 ] || fail "2: clients failed: $(grep -h '\*\*\*' "$E2E_DIR"/two*-*.out | head -3)"
[ "$acc" = 20 ] || fail "2: the provider accepted $acc of 20 messages"
[ "$pk" -le 2 ] || fail "2: the provider saw $pk sessions at once across both namespaces, cap 2"
[ "$(clients_ip)" = "198.18.0.2 198.18.2.2" ] || fail "2: the provider saw clients $(clients_ip)"
# an IPv6 connect over the cap from D, whose door has no ::1 listener: EPERM
# (the refuse verdict), not a rewrite to a ::1 that is not there
(echo "$BASHPID" >"$SG_CG/cgroup.procs" && exec nsenter --net="/var/run/netns/$C" python3 -c '
import socket, sys, time
h = [socket.create_connection(("198.18.0.1", 2525)) for _ in range(2)]
sys.stdout.write("held\n"); sys.stdout.flush(); time.sleep(5)') >"$E2E_DIR/hold.out" 2>&1 &
hold=$!
E2E_PIDS+=("$hold")
for i in $(seq 50); do grep -q held "$E2E_DIR/hold.out" && break; sleep 0.1; done
v6=$( (echo "$BASHPID" >"$SG_CG/cgroup.procs" && exec nsenter --net="/var/run/netns/$D" python3 -c '
import errno, socket
s = socket.socket(socket.AF_INET6)
try:
    s.connect(("2001:db8:18::1", 2525)); print("connected")
except OSError as e:
    print(errno.errorcode[e.errno])') 2>&1)
stop_pid "$hold"
note "2: IPv6 connect over the cap from $D (no ::1 there): $v6"
[ "$v6" = EPERM ] || fail "2: an IPv6 connect over the cap from a namespace without ::1 got $v6, want EPERM"
stop_pid "$holder"
sg_wait_log "has no governed process left; its door" 6 || fail "2: the door of $D was not closed after its last process went"
note "2: $(grep -o "network namespace [0-9]* has no governed process left.*" "$SG_DLOG" | tail -n 1)"

# ---- 3: a private Postfix in C
mx_ctl reset >/dev/null
q0=$(sg_stat prov queued)
PF_NETNS=$C pf_start "$SG_CG"
pf_inject 20 "${PF_DOMAINS[@]}"
pf_wait_empty 40 || fail "3: $(pf_queue_count) messages still queued after 40 s"
summary=$(mx_check_ids "$PF_DIR/sent-ids") || fail "3: Message-IDs: $summary"
pk=$(mx_stat "s['personas']['prov']['peak_total']")
q=$(( $(sg_stat prov queued) - q0 ))
note "3: Postfix in $C: $summary; peak $pk sessions; $q connects held in the waiting room"
[ "$q" -gt 0 ] || fail "3: the waiting room never held a Postfix connect: the test proves nothing"
[ "$pk" -le 2 ] || fail "3: the provider saw $pk sessions at once, cap 2"
[ "$(pf_log_count 'Connection refused')" = 0 ] || fail "3: 'Connection refused' in the maillog"
[ "$(pf_log_count 'status=sent')" = 20 ] || fail "3: $(pf_log_count 'status=sent') status=sent lines, want 20"
pf_stop

# ---- 4: no daemon: EPERM, never ECONNREFUSED
sg_stop
clients_start "$C" four 10
clients_wait
failed=$FAILED
eperm=$(count_in 'Operation not permitted' four) refused=$(count_in 'connection refused' four)
note "4: daemon stopped: $failed of 10 clients failed, $eperm with EPERM, $refused with ECONNREFUSED"
[ "$refused" = 0 ] || fail "4: ECONNREFUSED with the daemon stopped: $(grep -hi refused "$E2E_DIR"/four-*.out | head -2)"
[ "$eperm" -ge 1 ] || fail "4: no client got EPERM over the cap"
[ "$eperm" = "$failed" ] || fail "4: $failed clients failed but $eperm with EPERM"
echo "PASS: a waiting room in each network namespace ($((SECONDS - E2E_T0)) s)"
