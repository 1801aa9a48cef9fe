#!/usr/bin/env bash
# sudo make demo: a real Postfix (a private instance in a test cgroup)
# sends a campaign to two simulated providers on loopback, governed by
# smtpgov (queue verdict, learning from the Postfix log):
#   gmail   127.0.10.1-40:2525  allows 3 sessions per client IP (421-4.4.5)
#   outlook 127.0.20.1-40:2525  allows 2 sessions per client IP (451 4.7.652)
# smtpgov starts both caps at 10, learns the limits from the throttle
# replies Postfix logs, then holds the extra connections in its waiting room
# so mail flows without more throttling. Halfway, gmail tightens to 2.
# A live view every second, a summary at the end; everything started here is
# stopped and removed on exit (also on Ctrl-C).
#   DEMO_SECONDS=75   how long to run
set -u
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo make demo)" >&2; exit 1; }
DURATION=${DEMO_SECONDS:-75}
e2e_init
sg_init demo

echo "Starting the world: mxsim (simulated providers), a private Postfix, smtpgov..."
pf_create queue_run_delay=2s minimal_backoff_time=2s maximal_backoff_time=10s \
	smtp_connection_cache_on_demand=no
sim_providers
# both groups start at cap 10 and learn the limits
LEARN="cap = 10
min_cap = 1
max_cap = 10
decrease = 0.5
cooldown = 3s
increase_after = 30
increase_interval = 15s"
sg_sim_conf queue "$LEARN" "$LEARN" "retry_command = postqueue -c $PF_CONF -i %q"
sg_start
pf_start "$SG_CG"
GMAIL=("${PF_DOMAINS[@]:0:40}") OUTLOOK=("${PF_DOMAINS[@]:40:40}")

# view TITLE: one screen from smtpgov's status and mxsim's stats
view() {
	python3 -c '
import json, sys
st, mx = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(sys.argv[3])
print("%-8s %5s %5s %9s %8s %8s %10s %10s" % ("group", "live", "cap", "refused", "waiting", "queued", "throttled", "delivered"))
for g in st["groups"]:
    p = mx["personas"].get(g["name"], {})
    print("%-8s %5d %5d %9d %8d %8d %10d %10d" % (g["name"], g["live"], g["cap"], g["refused"],
          g.get("waiting", 0), g.get("queued", 0), p.get("throttled", 0), p.get("accepted", 0)))
print("(live/cap: connections smtpgov lets out now / allows; waiting: held in its waiting room,")
print(" queued: held so far; throttled: 421/451 replies the simulator sent; delivered: accepted)")
' "$(sg_status_json)" "$(mx_ctl stats)" "$1"
}

echo "Injecting 320 messages (200 to 40 gmail-hosted domains, 120 to 40 outlook-hosted ones)..."
pf_inject 200 "${GMAIL[@]}" &
p1=$!
pf_inject 120 "${OUTLOOK[@]}"
wait $p1
T0=$SECONDS injector= wave2=0 tightened=0 clear=
[ -t 1 ] && clear=$(printf '\033[H\033[2J')
while ((SECONDS - T0 < DURATION)); do
	t=$((SECONDS - T0))
	if ((!wave2 && t >= DURATION / 3)); then
		(pf_inject 150 "${GMAIL[@]}"; pf_inject 100 "${OUTLOOK[@]}") &
		injector=$!
		wave2=1 event="t=${t}s: 250 more messages injected"
	fi
	if ((!tightened && t >= DURATION / 2)); then
		mx_limit gmail 2
		tightened=1 event="t=${t}s: gmail tightens to 2 sessions per IP: watch its cap follow"
	fi
	out=$(view "smtpgov demo  t=${t}s/${DURATION}s  Postfix queue: $(pf_queue_count) messages  ${event:-}")
	changes=$(grep -o '[a-z]*: cap [0-9]* -> [0-9]* ([^,)]*' "$SG_DLOG" | tail -n 4 | sed 's/^/  /; s/$/)/')
	printf '%s%s\nlast cap changes (from the Postfix log):\n%s\n\n' "$clear" "$out" "$changes"
	sleep 1
done
[ -n "$injector" ] && wait "$injector"
echo "=== summary after ${DURATION}s"
view "final"
echo "sent $(wc -l <"$PF_DIR/sent-ids"), delivered $(pf_log_count 'status=sent'), still queued $(pf_queue_count), bounced $(pf_log_count 'status=bounced')"
echo "throttle replies: gmail $(mx_stat "s['personas']['gmail']['throttled']"), outlook $(mx_stat "s['personas']['outlook']['throttled']") (all while smtpgov was learning; Postfix alone gets hundreds)"
echo "most sessions the providers saw at once: gmail $(mx_stat "s['personas']['gmail']['peak']"), outlook $(mx_stat "s['personas']['outlook']['peak']")"
echo "every cap change smtpgov made:"
grep -o '[a-z]*: cap [0-9]* -> [0-9]* (.*' "$SG_DLOG" | sed 's/^/  /'
echo "waiting room: gmail wait p50 $(sg_stat gmail wait_p50_ms) ms, p99 $(sg_stat gmail wait_p99_ms) ms; outlook p50 $(sg_stat outlook wait_p50_ms) ms, p99 $(sg_stat outlook wait_p99_ms) ms"
echo "(cleaning up: Postfix, mxsim, smtpgov, its pins and cgroups)"
