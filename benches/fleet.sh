#!/usr/bin/env bash
# benches/fleet.sh — how fast do etcd membership and the health quorum move
# answers, and does watching 1,000 registered members cost query throughput?
#
# Everything runs in network namespaces joined by one bridge (198.18.0.0/15
# only; needs root): a 3-member etcd (e1-e3), two geosteer DNS nodes (dna,
# dnb; probes every 250 ms, rise 2, fall 2, votes on a 3 s lease), a static
# relay in eu-central (rs), one in us-east (ru) and a relay that registers
# itself (rr, lease TTL 3 s).
#
# 1. Membership, TRIALS times (min/median/max): the registered relay's
#    process start → in dna's answers; SIGKILL → out of the answers (probes);
#    SIGKILL → its key gone (lease expiry).
# 2. Quorum, TRIALS times: nftables drops dna's packets to the eu relay —
#    dna's own verdict goes down, yet both nodes keep answering it (checked
#    for 1 s after the verdict flips); then the drop on both nodes — time
#    until both answer the us-east relay (failed over).
# 3. queries/s of a node watching MEMBERS registered members against one with
#    the same members in its config (dnsperf inside dna's namespace, same
#    query, alternating rounds). Target: watched >= 95 % of static.
# About 6 minutes with the defaults.
#
# Knobs: PROFILE=release TRIALS=20 ROUNDS=3 DURATION=10 MEMBERS=1000 SERVER_CPU=1 CLIENT_CPU=0
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRIALS=${TRIALS:-20} ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} MEMBERS=${MEMBERS:-1000}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
WORK=$ROOT/.bench/fleet
die() { printf 'fleet.sh: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for t in ip nft dnsperf etcd etcdctl dig curl python3 taskset; do
	command -v $t >/dev/null || die "$t missing (apt-get install iproute2 nftables dnsperf etcd-server etcd-client bind9-dnsutils curl)"
done
PROFILE=${PROFILE:-release}   # PROFILE=debug only to try the script out
if [[ $PROFILE == release ]]; then
	(cd "$ROOT" && cargo build --release -q -p geosteer -p geosteer-relay) || die "build failed"
fi
GS=$ROOT/target/$PROFILE/geosteer RELAY=$ROOT/target/$PROFILE/geosteer-relay
rm -rf "$WORK" && mkdir -p "$WORK"
P=gsbench-$$
ns() { echo "$P-$1"; }
inns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for n in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
		ip netns pids "$n" | xargs -r kill -9 2>/dev/null || true
		ip netns del "$n" 2>/dev/null || true
	done
	rm -rf "$WORK"/*.etcd   # etcd preallocates its WAL: ~120 MB a member
}
trap cleanup EXIT
trap 'exit 1' INT TERM   # so the EXIT trap runs on ^C / kill too
now_ms() { date +%s%3N; }

ip netns add "$(ns br)"
ip -n "$(ns br)" link add br0 type bridge
ip -n "$(ns br)" link set br0 up
host() { # short addr
	ip netns add "$(ns "$1")"
	ip -n "$(ns "$1")" link set lo up
	ip -n "$(ns br)" link add "v-$1" type veth peer name eth0 netns "$(ns "$1")"
	ip -n "$(ns br)" link set "v-$1" master br0 up
	ip -n "$(ns "$1")" addr add "$2/16" dev eth0
	ip -n "$(ns "$1")" link set eth0 up
}
E1=198.18.0.11 E2=198.18.0.12 E3=198.18.0.13 DNA=198.18.0.21 DNB=198.18.0.22
RS=198.18.1.10 RR=198.18.1.11 RU=198.18.1.20
for h in "e1 $E1" "e2 $E2" "e3 $E3" "dna $DNA" "dnb $DNB" "rs $RS" "rr $RR" "ru $RU"; do host $h; done
spawn() { # label ns argv... (ip netns exec execs: $! is the daemon)
	local label=$1 n=$2; shift 2
	ip netns exec "$(ns "$n")" "$@" >"$WORK/$label.log" 2>&1 &
	pids+=($!)
}
EPS="http://$E1:2379,http://$E2:2379,http://$E3:2379"
ctl() { inns e1 etcdctl --endpoints="$EPS" --command-timeout=5s "$@"; }

CLUSTER="e1=http://$E1:2380,e2=http://$E2:2380,e3=http://$E3:2380"
for e in "e1 $E1" "e2 $E2" "e3 $E3"; do
	set -- $e
	spawn "$1" "$1" etcd --name "$1" --data-dir "$WORK/$1.etcd" \
		--listen-peer-urls "http://$2:2380" --initial-advertise-peer-urls "http://$2:2380" \
		--listen-client-urls "http://$2:2379" --advertise-client-urls "http://$2:2379" \
		--initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "$P" \
		--heartbeat-interval 100 --election-timeout 1000
done
for _ in $(seq 200); do [[ $(ctl endpoint health 2>&1 | grep -c "is healthy") == 3 ]] && break; sleep 0.1; done
[[ $(ctl endpoint health 2>&1 | grep -c "is healthy") == 3 ]] || die "etcd cluster not healthy"

relay_conf() { # addr member-name|-
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
	[[ $2 == - ]] || printf '[membership]\nendpoints = ["http://%s:2379", "http://%s:2379", "http://%s:2379"]\ndeployment = "bench"\npool = "turn"\nname = "%s"\nlease_ttl_secs = 3\n' $E1 $E2 $E3 "$2"
}
dns_conf() { # listen deployment|- node members-toml
	cat <<EOG
[server]
listen = ["$1:${PORT:-53}"]
udp_workers = 1
[server.rrl]
# Rate limiting stays on; the load generator's prefix needs a raised limit,
# as an operator would give it.
responses_per_second = 1000000
[geoip]
database = "$ROOT/geoip/demo.mmdb"
[steering]
default_regions = ["eu-central", "us-east"]
answer_count = 4
ttl = 1
degraded_ttl = 1
[health]
interval_ms = ${INTERVAL:-250}
timeout_ms = ${TIMEOUT:-200}
rise = 2
fall = 2
# The quorum trials cut and restore a path 20 times a minute: flap damping
# (hold-down after 3 downs in 60 s) would hold the relay down by design.
flap_threshold = 1000
[api]
listen = "$1:${API:-8053}"
$([[ $2 == - ]] || printf '[membership]\nendpoints = ["http://%s:2379", "http://%s:2379", "http://%s:2379"]\ndeployment = "%s"\nnode_name = "%s"\nvote_ttl_secs = 3\n' $E1 $E2 $E3 "$2" "$3")
[regions.eu-central]
latitude = 50.11
longitude = 8.68
[regions.us-east]
latitude = 39.04
longitude = -77.49
[pools.turn]
members = [
  { name = "static1", region = "eu-central", addresses = ["$RS"], health_url = "http://$RS:8080/health" },
  { name = "static2", region = "us-east", addresses = ["$RU"], health_url = "http://$RU:8080/health" },
$4]
[[zones]]
origin = "example.com"
file = "$ROOT/zones/example.com.zone"
[[zones.steered]]
name = "turn"
pool = "turn"
EOG
}
relay_conf $RS - >"$WORK/relay-static.toml"
relay_conf $RU - >"$WORK/relay-us.toml"
relay_conf $RR reg1 >"$WORK/relay-reg.toml"
spawn relay-static rs "$RELAY" serve --config "$WORK/relay-static.toml"
spawn relay-us ru "$RELAY" serve --config "$WORK/relay-us.toml"
dns_conf $DNA bench dns-a "" >"$WORK/dns-a.toml"
dns_conf $DNB bench dns-b "" >"$WORK/dns-b.toml"
spawn dns-a dna "$GS" serve --config "$WORK/dns-a.toml"
PA=${pids[-1]}
spawn dns-b dnb "$GS" serve --config "$WORK/dns-b.toml"
PB=${pids[-1]}
answers() { # ns server → sorted addresses, one line
	inns "$1" dig @"$2" +time=1 +tries=1 +short turn.example.com A 2>/dev/null | grep -E '^[0-9.]+$' | sort | tr '\n' ' '
}
has() { [[ " $(answers dna $DNA)" == *" $1 "* ]]; }
for _ in $(seq 200); do has $RS && break; sleep 0.05; done
has $RS || die "static member never answered (see $WORK/dns-a.log)"

stats() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "min %6.0f  median %6.0f  max %6.0f ms (n=%d)", v[1], m, v[NR], NR }'; }
: >"$WORK/appear"; : >"$WORK/remove"; : >"$WORK/lease"
for t in $(seq "$TRIALS"); do
	t0=$(now_ms)
	spawn relay-reg rr "$RELAY" serve --config "$WORK/relay-reg.toml"
	rp=${pids[-1]}
	until has $RR; do (($(now_ms) - t0 < 20000)) || die "trial $t: registered relay not answered in 20 s"; sleep 0.02; done
	echo $(($(now_ms) - t0)) >>"$WORK/appear"
	kill -9 $rp; wait $rp 2>/dev/null || true
	t0=$(now_ms)
	while has $RR; do (($(now_ms) - t0 < 20000)) || die "trial $t: killed relay still answered after 20 s"; sleep 0.02; done
	echo $(($(now_ms) - t0)) >>"$WORK/remove"
	while [[ -n $(ctl get --prefix --keys-only /geosteer/bench/members/) ]]; do (($(now_ms) - t0 < 20000)) || die "trial $t: lease never expired"; sleep 0.05; done
	echo $(($(now_ms) - t0)) >>"$WORK/lease"
done
echo "== membership over $TRIALS trials (3-member etcd; probe 250 ms, rise 2, fall 2; lease TTL 3 s)"
echo "process start → in answers : $(stats <"$WORK/appear")"
echo "SIGKILL → out of answers   : $(stats <"$WORK/remove")"
echo "SIGKILL → lease expired    : $(stats <"$WORK/lease")"

# --- 2: the quorum
cut() { # ns on|off: drop what the node sends to the eu relay
	if [[ $2 == on ]]; then
		inns "$1" nft add table inet gscut
		inns "$1" nft add chain inet gscut out '{ type filter hook output priority 0 ; }'
		inns "$1" nft add rule inet gscut out ip daddr $RS drop
	else
		inns "$1" nft delete table inet gscut
	fi
}
verdict() { # own verdict of dna for static1
	inns dna curl -s -m 2 "http://$DNA:8053/v1/state" | python3 -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    if m["member"] == "turn/static1": print(m["verdict"])'
}
: >"$WORK/own-down"; : >"$WORK/failover"; kept=0
for t in $(seq "$TRIALS"); do
	t0=$(now_ms)
	cut dna on
	until [[ $(verdict) == down ]]; do (($(now_ms) - t0 < 10000)) || die "trial $t: dna never saw static1 down"; sleep 0.02; done
	echo $(($(now_ms) - t0)) >>"$WORK/own-down"
	ok=1 t1=$(now_ms)
	while (($(now_ms) - t1 < 1000)); do
		[[ $(answers dna $DNA) == "$RS " && $(answers dnb $DNB) == "$RS " ]] || ok=0
		sleep 0.05
	done
	kept=$((kept + ok))
	t0=$(now_ms)
	cut dnb on
	until [[ $(answers dna $DNA) == "$RU " && $(answers dnb $DNB) == "$RU " ]]; do
		(($(now_ms) - t0 < 10000)) || die "trial $t: the all-node cut never failed over"; sleep 0.02
	done
	echo $(($(now_ms) - t0)) >>"$WORK/failover"
	cut dna off; cut dnb off
	t0=$(now_ms)
	until [[ $(answers dna $DNA) == "$RS " && $(answers dnb $DNB) == "$RS " ]]; do
		(($(now_ms) - t0 < 10000)) || die "trial $t: static1 never came back"; sleep 0.05
	done
	until [[ $(verdict) == up ]]; do sleep 0.05; done
done
echo "== quorum over $TRIALS trials (2 DNS nodes, down_quorum 0.5: both must see it down)"
echo "one-node cut → own verdict down : $(stats <"$WORK/own-down")"
echo "one-node cut → not failed over  : $kept of $TRIALS trials kept static1 in both nodes' answers for 1 s after that"
echo "all-node cut → failed over      : $(stats <"$WORK/failover")"
# Stop the two nodes (quiet for part 3); etcd and the relays keep running.
kill -9 $PA $PB 2>/dev/null || true

# --- 3: MEMBERS watched members against MEMBERS static ones. Every member's
# health URL is the eu relay's, so all are probed up (2 s interval, 1.5 s
# timeout: MEMBERS probes per interval hit that one relay).
members=""
for i in $(seq 0 $((MEMBERS - 1))); do
	a=198.19.$((i / 250)).$((i % 250 + 1))
	members+="  { name = \"m$i\", region = \"eu-central\", addresses = [\"$a\"], health_url = \"http://$RS:8080/health\" },"$'\n'
	printf '/geosteer/watched/members/turn/m%d {"region":"eu-central","addresses":["%s"],"health_url":"http://%s:8080/health"}\n' "$i" "$a" $RS
done >"$WORK/puts"
while read -r k v; do ctl put "$k" "$v" >/dev/null; done <"$WORK/puts"
n=$(ctl get --prefix --keys-only /geosteer/watched/members/ | grep -c . || true)
[[ $n == "$MEMBERS" ]] || die "only $n of $MEMBERS keys in etcd"
INTERVAL=2000 TIMEOUT=1500 PORT=5396 API=8396 dns_conf $DNA watched tw "" >"$WORK/watched.toml"
INTERVAL=2000 TIMEOUT=1500 PORT=5397 API=8397 dns_conf $DNA - - "$members" >"$WORK/static.toml"
spawn watched dna taskset -c "$SERVER_CPU" "$GS" serve --config "$WORK/watched.toml"
spawn static dna taskset -c "$SERVER_CPU" "$GS" serve --config "$WORK/static.toml"
usable() { inns dna curl -s "http://$DNA:$1/metrics" 2>/dev/null | grep -c '^geosteer_member_usable{.*} 1$' || true; }
want=$((MEMBERS + 2))
for _ in $(seq 600); do [[ $(usable 8396) == "$want" && $(usable 8397) == "$want" ]] && break; sleep 0.1; done
echo "usable members: watched $(usable 8396), static $(usable 8397) (want $want)"
[[ $(usable 8396) == "$want" && $(usable 8397) == "$want" ]] || die "not every member is up"
printf 'turn.example.com A\n' >"$WORK/q"
run() { # port → qps
	inns dna taskset -c "$CLIENT_CPU" dnsperf -s $DNA -p "$1" -d "$WORK/q" -l "$DURATION" -c 8 -q 128 2>&1 |
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
