#!/usr/bin/env bash
# The campaign benchmark (make bench-campaign, as root): a private Postfix
# sends 200 messages to 40 domains (each its own nexthop) hosted by one
# simulated provider (mxsim's gmail persona on 127.0.10.1-40:2525) that
# allows 3 sessions per client IP and answers 421-4.4.5 at RCPT beyond that.
# The same campaign runs several ways, each in a fresh world (Postfix
# instance, simulator, cgroup, pins), for at most DEADLINE seconds; the
# results are printed as a markdown table.
#
#   BENCH_DEADLINE=150   seconds per run
#   BENCH_ONLY=REGEX     run only the rows whose name matches
#
# Rows: Postfix alone; smtpgov refuse learning from cap 10; smtpgov queue
# learning from cap 10; oracle static cap 3 (refuse, queue) - with short
# retry timings (queue_run_delay = minimal_backoff_time = 2s), then the key
# rows with Postfix's default retry timings (300s), the queue rows with
# smtp_connection_cache_on_demand = no and yes, then the oracle queue with
# Postfix's connection cache on, with and without smtpgov's idle_close, in
# plaintext and with STARTTLS to the simulator. Last, the "greeting" world
# (lib.sh greeting_provider): a provider allowing 2 sessions that answers
# the rest at the greeting, Postfix on its defaults but the short timings,
# smtpgov with one group on the defaults (cap 8), killed midway.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../tests/e2e/lib.sh"

DEADLINE=${BENCH_DEADLINE:-150}
MSGS=200 DOMAINS=40 LIMIT=3
SHORT="queue_run_delay=2s minimal_backoff_time=2s maximal_backoff_time=10s"
# Postfix 3.7's defaults, spelled out (pf_create's test defaults are short)
DEFAULT="queue_run_delay=300s minimal_backoff_time=300s maximal_backoff_time=4000s"
RESULTS=$(mktemp /tmp/smtpgov-bench.XXXXXX)
trap 'rm -f "$RESULTS"' EXIT

# sg_conf VERDICT CAP MIN MAX [retry]: the gmail group; "retry" has smtpgov
# ask Postfix to retry a message deferred by a concurrency reply at once
# (the outlook group of sg_sim_conf stays idle here)
sg_conf() {
	local extra=() more=

	[ "${5:-}" = retry ] && extra=("retry_command = postqueue -c $PF_CONF -i %q")
	[ -n "${6:-}" ] && more=$'\n'"${6%%=*} = ${6#*=}"
	sg_sim_conf "$1" "$(printf 'cap = %s\nmin_cap = %s\nmax_cap = %s\ndecrease = 0.5\ncooldown = 3s\nincrease_after = 20\nincrease_interval = 8s\nqueue_wait = 120s' "$2" "$3" "$4")$more" \
		"cap = 2" "${extra[@]}"
}

# run NAME GOVERNOR POSTFIX_SETTINGS...: GOVERNOR is none,
# VERDICT:CAP:MIN:MAX[:retry][:KEY=VALUE] (one more key of the group), or
# user:CAP[:kill] (sg_user_conf: one group on the defaults; kill: SIGKILL
# and a new load once half the mail arrived). WORLD=greeting runs against
# greeting_provider instead of the gmail persona. With
# smtp_tls_security_level=may among the settings the simulator offers
# STARTTLS. Appends one tab-separated result line to RESULTS.
run() {
	local name=$1 gov=$2 P=gmail
	shift 2
	[ "${WORLD:-}" = greeting ] && P=corp
	if [ -n "${BENCH_ONLY:-}" ] && ! [[ $name =~ $BENCH_ONLY ]]; then
		return 0
	fi
	(
		local t0 t_all=- delivered refused=- p50=- p99=- learned=- idle=- v cap min max rt kv killed=
		local sessions tls expired full
		e2e_init
		[[ " $* " == *" smtp_tls_security_level=may "* ]] && mx_tls_cert
		# shellcheck disable=SC2068
		pf_create $@
		if [ $P = corp ]; then
			greeting_provider
		else
			mx_start "${MX_TLS[@]}" --persona "gmail:127.0.10.1-127.0.10.40:2525:limit=$LIMIT:stage=rcpt:greet_delay=150:data_delay=100"
			pf_route_range gmail $DOMAINS 127.0.10 1 40 2525
		fi
		if [ "$gov" != none ]; then
			IFS=: read -r v cap min max rt kv <<<"$gov"
			sg_init bench
			if [ "$v" = user ]; then
				sg_user_conf "$cap"
				v=queue killed=$min
			elif [ $P = corp ]; then
				sg_user_conf "$cap"
				printf 'min_cap = %s\nmax_cap = %s\nverdict = %s\n' "$min" "$max" "$v" >>"$SG_CONF"
			else
				sg_conf "$v" "$cap" "$min" "$max" "$rt" "$kv"
			fi
			sg_start
			pf_start "$SG_CG"
		else
			pf_start
		fi
		note "$name: start"
		t0=$(date +%s%N)
		pf_inject $MSGS "${PF_DOMAINS[@]}"
		while :; do
			if [ "$(pf_queue_count)" = 0 ]; then
				t_all=$(( ($(date +%s%N) - t0) / 1000000 ))
				break
			fi
			(( ($(date +%s%N) - t0) / 1000000000 < DEADLINE )) || break
			if [ "$killed" = kill ] && [ "$(mx_stat "s['personas']['$P']['accepted']")" -ge $((MSGS / 2)) ]; then
				note "$name: SIGKILL to the daemon, then a new load"
				sg_kill
				sg_start
				killed=done
			fi
			sleep 0.2
		done
		delivered=$(mx_stat "s['personas']['$P']['accepted']")
		if [ "$gov" != none ]; then
			refused=$(sg_stat $P refused)
			learned=$(sg_stat $P cap)
			case $v in queue)
				p50=$(sg_stat $P wait_p50_ms) p99=$(sg_stat $P wait_p99_ms)
				idle=$(sg_stat $P idle_closed) ;;
			esac
		fi
		read -r sessions tls expired full < <(mx_sessions $LIMIT)
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" \
			"$(mx_stat "s['personas']['$P']['throttled']")" "$delivered" \
			"$([ "$t_all" = - ] && echo "- ($delivered by ${DEADLINE} s)" || awk -v t="$t_all" 'BEGIN { printf "%.1f s", t / 1000 }')" \
			"$refused" "$(pf_log_count 'delivery temporarily suspended')" \
			"$(pf_log_count 'status=deferred')" "$p50" "$p99" \
			"$(mx_stat "s['personas']['$P']['peak']")" "$learned" \
			"$sessions ($tls)" "$idle" "$expired / $full" >>"$RESULTS"
		note "$name: $(tail -n 1 "$RESULTS")"
	) || echo -e "$name\tFAILED (see above)" >>"$RESULTS"
}

[ "$(id -u)" = 0 ] || { echo "bench/campaign.sh: needs root" >&2; exit 77; }
T0=$SECONDS
run "Postfix alone" none $SHORT
run "smtpgov refuse, learning from cap 10" refuse:10:1:10 $SHORT
run "smtpgov queue, learning from cap 10" queue:10:1:10 $SHORT smtp_connection_cache_on_demand=no
run "oracle: static cap 3, refuse" refuse:3:3:3 $SHORT
run "oracle: static cap 3, queue" queue:3:3:3 $SHORT smtp_connection_cache_on_demand=no
run "default timings: Postfix alone" none $DEFAULT
run "default timings: smtpgov refuse, learning" refuse:10:1:10 $DEFAULT
run "default timings: smtpgov queue, learning, cache_on_demand=no" queue:10:1:10 $DEFAULT smtp_connection_cache_on_demand=no
run "default timings: smtpgov queue, learning, cache_on_demand=yes" queue:10:1:10 $DEFAULT smtp_connection_cache_on_demand=yes
run "default timings: smtpgov queue, learning, cache_on_demand=no, retry_command" queue:10:1:10:retry $DEFAULT smtp_connection_cache_on_demand=no
run "default timings: smtpgov queue, from cap 2, cache_on_demand=no, retry_command" queue:2:1:10:retry $DEFAULT smtp_connection_cache_on_demand=no
run "default timings: oracle queue, cache_on_demand=no" queue:3:3:3 $DEFAULT smtp_connection_cache_on_demand=no
run "default timings: oracle queue, cache_on_demand=yes" queue:3:3:3 $DEFAULT smtp_connection_cache_on_demand=yes
run "default timings: oracle queue, cache_on_demand=yes, idle_close=0" queue:3:3:3::idle_close=0 $DEFAULT smtp_connection_cache_on_demand=yes
run "default timings: oracle queue, TLS, cache_on_demand=no" queue:3:3:3 $DEFAULT smtp_tls_security_level=may smtp_connection_cache_on_demand=no
run "default timings: oracle queue, TLS, cache_on_demand=yes" queue:3:3:3 $DEFAULT smtp_tls_security_level=may smtp_connection_cache_on_demand=yes
run "default timings: oracle queue, TLS, cache_on_demand=yes, smtp_tls_connection_reuse=yes" queue:3:3:3 $DEFAULT smtp_tls_security_level=may smtp_connection_cache_on_demand=yes smtp_tls_connection_reuse=yes
run "default timings: oracle queue, TLS, cache_on_demand=yes, smtp_tls_connection_reuse=yes, idle_close=0" queue:3:3:3::idle_close=0 $DEFAULT smtp_tls_security_level=may smtp_connection_cache_on_demand=yes smtp_tls_connection_reuse=yes
WORLD=greeting run "greeting 421s (limit 2): Postfix alone" none $SHORT
WORLD=greeting run "greeting 421s (limit 2): smtpgov, one group on the defaults, cap 8, killed midway" user:8:kill $SHORT
WORLD=greeting run "greeting 421s (limit 2): oracle queue, static cap 2" queue:2:2:2 $SHORT

echo
echo "Campaign: $MSGS messages to $DOMAINS domains of one provider allowing $LIMIT sessions per client IP (mxsim gmail persona, 421-4.4.5 at RCPT; the greeting rows: 2 sessions, 421 4.7.0 at the greeting); deadline $DEADLINE s per run; short timings: $SHORT; default timings: $DEFAULT; Postfix $(postconf -d -h mail_version), kernel $(uname -r), $(nproc) CPUs; total $((SECONDS - T0)) s."
echo
echo "| run | throttle replies received | delivered | time to deliver all | refused by smtpgov | \"delivery temporarily suspended\" lines | deferred lines | wait p50 / p99 (ms) | peak sessions | cap at end | sessions (TLS) | idle sessions ended by smtpgov | idle slot-s left to the cache / s at the limit |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
while IFS=$'\t' read -r name thr del t ref susp defer p50 p99 peak cap sess idle expired; do
	if [ "$thr" = "FAILED (see above)" ]; then
		echo "| $name | FAILED ||||||||||||"
		continue
	fi
	w=-
	[ "$p50" != - ] && w="$p50 / $p99"
	echo "| $name | $thr | $del/$MSGS | $t | $ref | $susp | $defer | $w | $peak | $cap | $sess | $idle | $expired |"
done <"$RESULTS"
