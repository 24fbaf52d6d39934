#!/usr/bin/env bash
# benches/fleet.sh — how fast does etcd membership move answers, and does
# watching 1,000 registered members cost query throughput?
#
# 1. Registration → answer and kill → removal, TRIALS times (min/median/max):
#    a one-member etcd and a geosteer DNS node with [membership] (probe
#    interval 250 ms, rise 2, fall 2), one static relay and one relay that
#    registers itself (lease TTL 3 s); `dig` polls every 20 ms until the
#    registered relay's address appears after its start, and disappears after
#    SIGKILL (probes catch that before the lease expires; the lease time is
#    printed too).
# 2. queries/s of a node watching 1,000 registered members against one with
#    the same 1,000 members in its config (dnsperf, same query file,
#    alternating rounds). Target: watched ≥ 95 % of static.
# Traffic goes only to 127.0.0.0/8. About 3 minutes.
#
# Knobs: PROFILE=release TRIALS=20 ROUNDS=3 DURATION=10 MEMBERS=1000 SERVER_CPU=1 CLIENT_CPU=0
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRIALS=${TRIALS:-20} ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} MEMBERS=${MEMBERS:-1000}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
WORK=$ROOT/.bench/fleet
die() { printf 'fleet.sh: %s\n' "$*" >&2; exit 1; }
for t in dnsperf etcd etcdctl dig curl; do command -v $t >/dev/null || die "$t missing (apt-get install dnsperf etcd-server etcd-client bind9-dnsutils curl)"; done
PROFILE=${PROFILE:-release}   # PROFILE=debug only to try the script out
if [[ $PROFILE == release ]]; then
	(cd "$ROOT" && cargo build --release -q -p geosteer -p geosteer-relay) || die "build failed"
fi
GS=$ROOT/target/$PROFILE/geosteer RELAY=$ROOT/target/$PROFILE/geosteer-relay
rm -rf "$WORK" && mkdir -p "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 1' INT TERM   # so the EXIT trap runs on ^C / kill too
ETCD_EP=http://127.0.30.1:2379
ctl() { etcdctl --endpoints=$ETCD_EP --command-timeout=5s "$@"; }
now_ms() { date +%s%3N; }

etcd --name b1 --data-dir "$WORK/etcd" --listen-client-urls $ETCD_EP --advertise-client-urls $ETCD_EP \
	--listen-peer-urls http://127.0.30.1:2380 --initial-advertise-peer-urls http://127.0.30.1:2380 \
	--initial-cluster b1=http://127.0.30.1:2380 >"$WORK/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
ctl endpoint health >/dev/null 2>&1 || die "etcd did not start"

relay_conf() { # addr membership?
	cat <<EOR
region = "eu-central"
[listen]
udp = ["$1:3478"]
tcp = ["$1:3478"]
http = "$1:8080"
[relay]
ips = ["$1"]
[auth]
secrets = ["bench-secret"]
EOR
	if [[ $2 == yes ]]; then printf '[membership]\nendpoints = ["%s"]\ndeployment = "bench"\npool = "turn"\nname = "reg1"\nlease_ttl_secs = 3\n' $ETCD_EP; fi
}
dns_conf() { # port deployment members-toml
	cat <<EOG
[server]
listen = ["127.0.0.1:$1"]
udp_workers = 1
[geoip]
database = "$ROOT/geoip/demo.mmdb"
[steering]
default_regions = ["eu-central"]
answer_count = 4
ttl = 1
degraded_ttl = 1
[health]
interval_ms = ${INTERVAL:-250}
timeout_ms = ${TIMEOUT:-200}
rise = 2
fall = 2
[api]
listen = "127.0.0.1:${API:-8395}"
$([[ $2 == - ]] || printf '[membership]\nendpoints = ["%s"]\ndeployment = "%s"\n' "$ETCD_EP" "$2")
[regions.eu-central]
latitude = 50.11
longitude = 8.68
[pools.turn]
members = [
  { name = "static1", region = "eu-central", addresses = ["127.0.30.10"], health_url = "http://127.0.30.10:8080/health" },
$3]
[[zones]]
origin = "example.com"
file = "$ROOT/zones/example.com.zone"
[[zones.steered]]
name = "turn"
pool = "turn"
EOG
}
relay_conf 127.0.30.10 no >"$WORK/relay-static.toml"
relay_conf 127.0.30.11 yes >"$WORK/relay-reg.toml"
"$RELAY" serve --config "$WORK/relay-static.toml" >"$WORK/relay-static.log" 2>&1 &
pids+=($!)
dns_conf 5395 bench "" >"$WORK/dns.toml"
"$GS" serve --config "$WORK/dns.toml" >"$WORK/dns.log" 2>&1 &
pids+=($!)
has() { dig @127.0.0.1 -p 5395 +time=1 +tries=1 +short turn.example.com A | grep -qx "$1"; }
for _ in $(seq 200); do has 127.0.30.10 && break; sleep 0.05; done
has 127.0.30.10 || die "static member never answered (see $WORK/dns.log)"

stats() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "min %6.0f  median %6.0f  max %6.0f ms (n=%d)", v[1], m, v[NR], NR }'; }
: >"$WORK/appear" ; : >"$WORK/remove" ; : >"$WORK/lease"
for t in $(seq "$TRIALS"); do
	t0=$(now_ms)
	"$RELAY" serve --config "$WORK/relay-reg.toml" >"$WORK/relay-reg.log" 2>&1 &
	rp=$!; pids+=($rp)
	until has 127.0.30.11; do (($(now_ms) - t0 < 20000)) || die "trial $t: registered relay not answered in 20 s"; sleep 0.02; done
	echo $(($(now_ms) - t0)) >>"$WORK/appear"
	kill -9 $rp; wait $rp 2>/dev/null || true
	t0=$(now_ms)
	while has 127.0.30.11; do (($(now_ms) - t0 < 20000)) || die "trial $t: killed relay still answered after 20 s"; sleep 0.02; done
	echo $(($(now_ms) - t0)) >>"$WORK/remove"
	while [[ -n $(ctl get --prefix --keys-only /geosteer/bench/members/) ]]; do (($(now_ms) - t0 < 20000)) || die "trial $t: lease never expired"; sleep 0.05; done
	echo $(($(now_ms) - t0)) >>"$WORK/lease"
done
echo "== membership latency over $TRIALS trials (probe 250 ms, rise 2, fall 2, lease TTL 3 s)"
echo "process start → in answers : $(stats <"$WORK/appear")"
echo "SIGKILL → out of answers   : $(stats <"$WORK/remove")"
echo "SIGKILL → lease expired    : $(stats <"$WORK/lease")"
# Keep etcd and the static relay (pids 0 and 1); stop the DNS node.
for p in "${pids[@]:2}"; do kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
sleep 0.5

# --- 2: 1,000 watched members against 1,000 static ones. Every member's
# health URL is the one static relay's (still running), so all are probed up
# (2 s interval, 1.5 s timeout: 1,000 probes per interval hit that one relay).
members=""
for i in $(seq 0 $((MEMBERS - 1))); do
	a=127.31.$((i / 250)).$((i % 250 + 1))
	members+="  { name = \"m$i\", region = \"eu-central\", addresses = [\"$a\"], health_url = \"http://127.0.30.10:8080/health\" },"$'\n'
	printf 'put /geosteer/watched/members/turn/m%d {"region":"eu-central","addresses":["%s"],"health_url":"http://127.0.30.10:8080/health"}\n' "$i" "$a"
done >"$WORK/puts"
while read -r _ k v; do ctl put "$k" "$v" >/dev/null; done <"$WORK/puts"
n=$(ctl get --prefix --keys-only /geosteer/watched/members/ | grep -c . || true)
[[ $n == "$MEMBERS" ]] || die "only $n of $MEMBERS keys in etcd"
INTERVAL=2000 TIMEOUT=1500 API=8396 dns_conf 5396 watched "" >"$WORK/watched.toml"
INTERVAL=2000 TIMEOUT=1500 API=8397 dns_conf 5397 - "$members" >"$WORK/static.toml"
taskset -c "$SERVER_CPU" "$GS" serve --config "$WORK/watched.toml" >"$WORK/watched.log" 2>&1 &
PW=$!; pids+=($PW)
taskset -c "$SERVER_CPU" "$GS" serve --config "$WORK/static.toml" >"$WORK/static.log" 2>&1 &
PS=$!; pids+=($PS)
usable() { curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null | grep -c '^geosteer_member_usable{.*} 1$' || true; }
want=$((MEMBERS + 1))
for _ in $(seq 600); do [[ $(usable 8396) == "$want" && $(usable 8397) == "$want" ]] && break; sleep 0.1; done
echo "usable members: watched $(usable 8396), static $(usable 8397) (want $want)"
[[ $(usable 8396) == "$want" && $(usable 8397) == "$want" ]] || die "not every member is up"
printf 'turn.example.com A\n' >"$WORK/q"
run() { # port → qps
	taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/q" -l "$DURATION" -c 8 -q 128 2>&1 |
		awk '/Queries per second:/ { printf "%.0f\n", $4 }'
}
run 5396 >/dev/null; run 5397 >/dev/null
echo "== queries/s, $MEMBERS members watched from etcd vs in the config (dnsperf ${DURATION}s rounds)"
printf '%-6s %12s %12s %8s\n' round watched static ratio
: >"$WORK/ratios"
for r in $(seq "$ROUNDS"); do
	w=$(run 5396); s=$(run 5397)
	awk -v r="$r" -v w="$w" -v s="$s" 'BEGIN { printf "%-6s %12d %12d %7.1f%%\n", r, w, s, 100 * w / s }'
	echo "$w $s" >>"$WORK/ratios"
done
awk '{ w += $1; s += $2 } END { printf "total  %12d %12d %7.1f%%  (target >= 95%%)\n", w / NR, s / NR, 100 * w / s }' "$WORK/ratios"
