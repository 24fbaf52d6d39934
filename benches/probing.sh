#!/usr/bin/env bash
# benches/probing.sh — does health probing cost query throughput?
#
# Runs two geosteer servers with the same steering config (benches/dns/
# geosteer.toml.in): one without probing, one that also probes 30 real relays
# (geosteer-relay, started here on 127.0.20.1-30) every 500 ms. dnsperf sends
# the same 10,000-subnet mixed-ECS query file to each, alternating, at peak
# and at a fixed 40 k/s; prints queries/s and server CPU per query, and the
# ratio. Target: with probing no more than 5 % below without.
# Traffic goes only to 127.0.0.0/8. About 2 minutes.
#
# Knobs: ROUNDS=3 DURATION=10 RELAYS=30 RATE=40000 SERVER_CPU=1 CLIENT_CPU=0
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} RELAYS=${RELAYS:-30} RATE=${RATE:-40000}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
WORK=$ROOT/.bench/probing
PRIO=()
if [[ $(id -u) == 0 ]] && chrt -f 10 true 2>/dev/null; then PRIO=(chrt -f 10); fi
die() { printf 'probing.sh: %s\n' "$*" >&2; exit 1; }
command -v dnsperf >/dev/null || die "dnsperf missing (apt-get install dnsperf)"
(cd "$ROOT" && cargo build --release -q -p geosteer -p geosteer-relay) || die "build failed"
GS=$ROOT/target/release/geosteer RELAY=$ROOT/target/release/geosteer-relay
rm -rf "$WORK" && mkdir -p "$WORK"
DB=$ROOT/.bench/GeoLite2-City.mmdb
[[ -s $DB ]] || DB=$ROOT/geoip/demo.mmdb
python3 "$ROOT/benches/dns/gen_queries.py" --networks "$ROOT/geoip/demo-networks.txt" --out "$WORK/q" --subnets 10000 --seed 20261128 >/dev/null
cp "$ROOT/zones/example.com.zone" "$WORK/"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

members=""
for i in $(seq "$RELAYS"); do
	ip=127.0.20.$i
	cat >"$WORK/relay$i.toml" <<EOR
region = "r$i"
[listen]
udp = ["$ip:3478"]
tcp = ["$ip:3478"]
http = "$ip:8080"
[relay]
ips = ["$ip"]
[auth]
secrets = ["bench-secret"]
EOR
	"$RELAY" serve --config "$WORK/relay$i.toml" >"$WORK/relay$i.log" 2>&1 &
	pids+=($!)
	members+="  { name = \"p$i\", region = \"us-east\", addresses = [\"$ip\"], health_url = \"http://$ip:8080/health\" },"$'\n'
done
for port in 5393 5394; do
	sed -e "s|@LISTEN@|127.0.0.1:$port|" -e "s|@GEOIP@|$DB|" -e "s|@ZONE@|$WORK/example.com.zone|" \
		"$ROOT/benches/dns/geosteer.toml.in" >"$WORK/g$port.toml"
done
# The probing server: 30 more members (in a pool no name steers to, so the
# answers stay identical) probed every 500 ms.
printf '\n[health]\ninterval_ms = 500\ntimeout_ms = 400\n[pools.probed]\nmembers = [\n%s]\n' "$members" >>"$WORK/g5394.toml"
"${PRIO[@]}" taskset -c "$SERVER_CPU" "$GS" serve --config "$WORK/g5393.toml" >"$WORK/plain.log" 2>&1 &
P0=$!; pids+=("$P0")
"${PRIO[@]}" taskset -c "$SERVER_CPU" "$GS" serve --config "$WORK/g5394.toml" >"$WORK/probing.log" 2>&1 &
P1=$!; pids+=("$P1")
sleep 3
ok=0
for i in $(seq "$RELAYS"); do curl -sf "http://127.0.20.$i:8080/health" >/dev/null && ok=$((ok + 1)); done
echo "relays answering /health: $ok of $RELAYS; GeoIP: $DB"
[[ $ok == "$RELAYS" ]] || die "not every relay is up"
HZ=$(getconf CLK_TCK)
ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13})); }
run() { # pid port mode
	local a b t0 t1 out args=(-B -s 127.0.0.1 -p "$2" -d "$WORK/q/mixed-ecs.bin" -l "$DURATION")
	if [[ $3 == rate ]]; then args+=(-Q "$RATE" -c 8 -q 128); else args+=(-c 8 -q 128); fi
	a=$(ticks "$1"); t0=$(date +%s.%N)
	out=$("${PRIO[@]}" taskset -c "$CLIENT_CPU" dnsperf "${args[@]}" 2>&1)
	t1=$(date +%s.%N); b=$(ticks "$1")
	awk -v a="$a" -v b="$b" -v hz="$HZ" -v t0="$t0" -v t1="$t1" '
		/Queries completed:/ { done_ = $3 } /Queries lost:/ { lost = $3 } /Queries per second:/ { qps = $4 }
		END { cpu = (b - a) / hz; printf "%.0f %d %.1f %.2f\n", qps, lost, 100 * cpu / (t1 - t0), 1e6 * cpu / done_ }' <<<"$out"
}
for p in "$P0" "$P1"; do run "$p" $([[ $p == "$P0" ]] && echo 5393 || echo 5394) peak >/dev/null; done
printf '%-6s %-5s %-16s %10s %6s %7s %7s\n' round mode server "queries/s" lost "CPU %" "µs/q"
: >"$WORK/results.txt"
for r in $(seq "$ROUNDS"); do
	for mode in peak rate; do
		order=("$P0:5393:no-probing" "$P1:5394:probing-$RELAYS")
		((r % 2)) || order=("${order[1]}" "${order[0]}")
		for o in "${order[@]}"; do
			IFS=: read -r pid port name <<<"$o"
			res=$(run "$pid" "$port" "$mode")
			echo "$r $mode $name $res" >>"$WORK/results.txt"
			printf '%-6s %-5s %-16s %10s %6s %7s %7s\n' "$r" "$mode" "$name" $res
		done
	done
done
python3 - "$WORK/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(mode, server, i):
    return statistics.median(float(r[i]) for r in rows if r[1] == mode and r[2].startswith(server))
print("\nmedian                      no probing     probing   ratio")
for mode in ("peak", "rate"):
    q0, q1 = med(mode, "no-", 3), med(mode, "probing", 3)
    c0, c1 = med(mode, "no-", 6), med(mode, "probing", 6)
    print(f"{mode:<5} queries/s          {q0:>12,.0f} {q1:>11,.0f}   {q1 / q0:6.1%}")
    print(f"{mode:<5} CPU µs/query       {c0:>12.2f} {c1:>11.2f}   {c1 / c0:6.1%}")
PY
