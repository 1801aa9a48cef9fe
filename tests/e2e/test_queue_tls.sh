#!/usr/bin/env bash
# End to end: TLS passes through the waiting room untouched. A group with
# cap 1 and the queue verdict; one client in the governed cgroup holds the
# only slot to an `openssl s_server -rev` (a TLS echo server that answers
# each line reversed) for two seconds; a second client, `openssl s_client`,
# is held in the waiting room meanwhile, then relayed: its handshake must
# complete and its line must come back reversed through the encrypted session.
# Exit 0 pass, 1 FAIL, 77 skip.
set -u
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || skip "openssl is not installed"
e2e_init
sg_init tls

D=$E2E_DIR
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=mx.tls.sim" -days 1 \
	-keyout "$D/key.pem" -out "$D/cert.pem" >/dev/null 2>&1 || fail "openssl req failed"
openssl s_server -accept 127.0.0.2:2526 -cert "$D/cert.pem" -key "$D/key.pem" -rev -naccept 3 \
	>"$D/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; e2e_cleanup' EXIT
cat >"$SG_CONF" <<EOF
[global]
ports = 2526
builtin = no
verdict = queue
state = $SG_STATE

[group tls]
ranges = 127.0.0.2/32
cap = 1
min_cap = 1
max_cap = 1
queue_wait = 30s
EOF
PF_LOG=$D/mail.log    # no Postfix here: the daemon follows an empty log
sg_start
for _ in $(seq 100); do
	grep -q "waiting room on" "$SG_DLOG" && break
	sleep 0.05
done
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.2/2526) 2>/dev/null && break
	sleep 0.1
done
# that probe was the server's first connection; it is from outside the cgroup

# the holder takes the only slot for 2 s (a bare TCP connection)
bash -c "echo \$\$ > '$SG_CG/cgroup.procs'; exec 3<>/dev/tcp/127.0.0.2/2526; sleep 2" &
HOLDER=$!
for _ in $(seq 50); do
	[ "$(sg_stat tls live)" = 1 ] && break
	sleep 0.1
done
[ "$(sg_stat tls live)" = 1 ] || fail "the holder did not take the slot"

# the TLS client, in the cgroup: held, then relayed
out=$(bash -c "echo \$\$ > '$SG_CG/cgroup.procs'; (echo 'hello through the waiting room'; sleep 4) |
	exec timeout 20 openssl s_client -connect 127.0.0.2:2526 -servername mx.tls.sim -quiet -no_ign_eof \
		-verify_quiet -CAfile '$D/cert.pem' -verify_return_error 2>&1")
wait "$HOLDER"
note "client said: $out"
[ "$(sg_stat tls queued)" -ge 1 ] || fail "the TLS client was not held in the waiting room (queued $(sg_stat tls queued))"
echo "$out" | grep -q "moor gnitiaw eht hguorht olleh" || fail "no reversed line through TLS: $out"
[ "$(sg_stat tls refused)" = 0 ] || fail "refused $(sg_stat tls refused)"
echo "PASS: TLS through the waiting room (queued $(sg_stat tls queued), wait p50 $(sg_stat tls wait_p50_ms) ms)"
