#!/usr/bin/env bash
# Benchmark: geosteer-relay vs coturn under our own load generator
# (geosteer-turn-load, relay/src/bin/geosteer-turn-load/), side by side,
# alternating servers in one run. Server pinned to SERVER_CPU (one loop;
# coturn --relay-threads=1), generator pinned to CLIENT_CPU.
#
# Servers: COTURN=/path/to/turnserver (e.g. coturn 4.17.1 built from source
# outside the repo; nothing of coturn is committed) and Debian's turnserver
# (4.6.1) as a second column when present. Only 127.0.0.1 is contacted.
#
# Phases (each bounded in time):
#   sat     : rate steps up to the highest offered rate with loss <= 0.1 %
#             (UDP and TCP ChannelData, 100-byte payloads), then latency at
#             50 % and 90 % of that rate;
#   size    : as-fast-as-possible runs with 100/500/1200-byte payloads (Gbit/s).
# Each line printed is the generator's key=value report plus server name,
# phase and the load average at the time.
# Knobs: SERVERS ("geosteer coturn coturn46"), COTURN, DUR (3 s), ALLOCS (100),
#        RATES ("20000 40000 60000 80000 100000 140000 180000"), PHASES ("sat size").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.bench/relay-load}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
DUR=${DUR:-3}
ALLOCS=${ALLOCS:-100}
RATES=${RATES:-"20000 40000 60000 80000 100000 140000 180000"}
PHASES=${PHASES:-"sat size"}
COTURN=${COTURN:-}
SERVERS=${SERVERS:-"geosteer ${COTURN:+coturn} coturn46"}
PORT=34880
HTTP_PORT=34890
export RUST_BACKTRACE=0
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release -q -p geosteer-relay --bins)

PID=""
cleanup() { [[ -n "$PID" ]] && kill -9 "$PID" 2>/dev/null || true; }
trap cleanup EXIT

cat >"$OUT/relay.toml" <<TOML
region = "bench"
realm = "geosteer.test"
[listen]
udp = ["127.0.0.1:$PORT"]
tcp = ["127.0.0.1:$PORT"]
http = "127.0.0.1:$HTTP_PORT"
[relay]
port_min = 20000
port_max = 65000
[auth]
users = { alice = "wonderland" }
[peer_policy]
allow_loopback_peers = true
[limits]
capacity = 1000000
max_bps = 10000000000
total_bps = 1000000000000
unauthorized_per_ip = 0
bindings_per_ip = 0
allocations_per_user = 0
allocations_per_ip = 0
[operations]
drain_timeout = 1
TOML

start() { # $1 server
  local ts
  case $1 in
    geosteer) taskset -c "$SERVER_CPU" "$BIN/geosteer-relay" serve --config "$OUT/relay.toml" >"$OUT/geosteer.log" 2>&1 & ;;
    coturn|coturn46)
      ts=$COTURN; [[ $1 == coturn46 ]] && ts=$(command -v turnserver)
      taskset -c "$SERVER_CPU" "$ts" -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
        --listening-port=$PORT --min-port=20000 --max-port=65000 --allow-loopback-peers \
        --lt-cred-mech --user=alice:wonderland --realm=geosteer.test --no-tls --no-dtls --no-cli \
        --relay-threads=1 --total-quota=0 --user-quota=0 --log-file="$OUT/$1.log" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 50); do # up to 10 s: coturn 4.17 takes ~3 s to open its listeners
    ss -lnu | grep -q "127.0.0.1:$PORT " && ss -lnt | grep -q "127.0.0.1:$PORT " && break
    sleep 0.2
  done
  sleep 0.3
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; sleep 0.5; }
load() { # server phase args...
  local s=$1 ph=$2; shift 2
  local la; la=$(cut -d' ' -f1 /proc/loadavg)
  local line
  line=$(timeout $((DUR + 60)) taskset -c "$CLIENT_CPU" "$BIN/geosteer-turn-load" --server 127.0.0.1:$PORT \
    --allocs "$ALLOCS" --duration "$DUR" "$@" 2>>"$OUT/load.err") || line="failed"
  echo "server=$s phase=$ph load1=$la $line" | tee -a "$OUT/results.txt"
}

: >"$OUT/results.txt"
for s in $SERVERS; do
  [[ $s == coturn && -z "$COTURN" ]] && continue
  [[ $s == coturn46 ]] && ! command -v turnserver >/dev/null && continue
  for t in udp tcp; do
    if [[ " $PHASES " == *" sat "* ]]; then
      start "$s"; best=0
      for r in $RATES; do
        out=$(load "$s" sat --transport $t --rate "$r")
        loss=$(sed -n 's/.*loss_pct=\([0-9.]*\).*/\1/p' <<<"$out")
        if [[ -n "$loss" ]] && awk "BEGIN{exit !($loss <= 0.1)}"; then best=$r; else break; fi
      done
      echo "server=$s transport=$t max_rate_at_0.1pct_loss=$best (client->peer pkts/s offered; relayed = 2x)" | tee -a "$OUT/results.txt"
      if (( best > 0 )); then
        load "$s" lat50 --transport $t --rate $((best / 2)) >/dev/null
        load "$s" lat90 --transport $t --rate $((best * 9 / 10)) >/dev/null
      fi
      stop
    fi
    if [[ " $PHASES " == *" size "* ]]; then
      start "$s"
      for sz in 100 500 1200; do load "$s" "size$sz" --transport $t --rate 0 --size $sz >/dev/null; done
      stop
    fi
  done
done
echo "results: $OUT/results.txt"
