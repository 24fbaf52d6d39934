#!/usr/bin/env bash
# Benchmark: geosteer-relay vs coturn under our own load generator
# (geosteer-turn-load, relay/src/bin/geosteer-turn-load/), side by side,
# servers alternating within each phase of one run. Server pinned to
# SERVER_CPUS with LOOPS event loops (coturn --relay-threads=LOOPS), the
# generator pinned to CLIENT_CPU.
#
# Servers: COTURN=/path/to/turnserver (coturn 4.17.1 built from source
# outside the repo; nothing of coturn is committed) and Debian's turnserver
# (4.6.1) as a further column when present. Only 127.0.0.1 is contacted.
#
# Per transport (TRANSPORTS: udp tcp tls; ChannelData, 100-byte payloads):
#   sat   : rate steps up to the highest offered rate with loss <= 0.1 %;
#   fixed : FIXED_RATE offered (relayed = 2x): server CPU per relayed packet;
#   lat   : p50/p99 at 50 % and 90 % of the reference server's saturation
#           rate (REF, default coturn when COTURN is set), same rate for all;
#   size  : as fast as the generator goes, 100/500/1200-byte payloads.
# Every step prints the generator's key=value report plus server, phase,
# the load average before the step, and server_cpu_ms (utime + stime of all
# its threads, from /proc/PID/stat) and cpu_us_per_pkt (per relayed packet,
# both directions). A step that would start with the 1-minute load average
# above LOAD_MAX (default: the benchmark's own busy CPUs + 0.5) waits for
# the machine to calm down first (up to 4 x 15 s) and says so (waited=N).
# Knobs: SERVERS, COTURN, REF, TRANSPORTS, LOOPS (1), SERVER_CPUS (1),
#        CLIENT_CPU (0), DUR (3 s), ALLOCS (100), FIXED_RATE (100000),
#        RATES, PHASES ("sat fixed lat size"), LOAD_MAX.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.bench/relay-load}
SERVER_CPUS=${SERVER_CPUS:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
LOOPS=${LOOPS:-1}
DUR=${DUR:-3}
ALLOCS=${ALLOCS:-100}
FIXED_RATE=${FIXED_RATE:-100000}
RATES=${RATES:-"20000 40000 60000 80000 100000 120000 140000 160000 180000 200000"}
PHASES=${PHASES:-"sat fixed lat size"}
TRANSPORTS=${TRANSPORTS:-"udp tcp tls"}
COTURN=${COTURN:-}
SERVERS=${SERVERS:-"geosteer ${COTURN:+coturn} coturn46"}
REF=${REF:-$([[ -n $COTURN ]] && echo coturn || echo geosteer)}
busy=$(($(tr ',' '\n' <<<"$SERVER_CPUS,$CLIENT_CPU" | sort -u | wc -l)))
LOAD_MAX=${LOAD_MAX:-$(awk -v b="$busy" 'BEGIN { print b + 0.5 }')}
PORT=34880
TLS_PORT=34881
HTTP_PORT=34890
TCK=$(getconf CLK_TCK)
export RUST_BACKTRACE=0
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release -q -p geosteer-relay --bins)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

PID=""
cleanup() { [[ -n "$PID" ]] && kill -9 "$PID" 2>/dev/null || true; }
trap cleanup EXIT

cat >"$OUT/relay.toml" <<TOML
region = "bench"
realm = "geosteer.test"
[listen]
udp = ["127.0.0.1:$PORT"]
tcp = ["127.0.0.1:$PORT"]
tls = ["127.0.0.1:$TLS_PORT"]
tls_cert = "$OUT/cert.pem"
tls_key = "$OUT/key.pem"
http = "127.0.0.1:$HTTP_PORT"
[relay]
loops = $LOOPS
port_min = 20000
port_max = 65000
TOML
cat "$ROOT/benches/relay/unlimited.toml" >>"$OUT/relay.toml"

start() { # $1 server
  local ts
  case $1 in
    geosteer) taskset -c "$SERVER_CPUS" "$BIN/geosteer-relay" serve --config "$OUT/relay.toml" >"$OUT/geosteer.log" 2>&1 & ;;
    coturn|coturn46)
      ts=$COTURN; [[ $1 == coturn46 ]] && ts=$(command -v turnserver)
      taskset -c "$SERVER_CPUS" "$ts" -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
        --listening-port=$PORT --tls-listening-port=$TLS_PORT --cert="$OUT/cert.pem" --pkey="$OUT/key.pem" \
        --min-port=20000 --max-port=65000 --allow-loopback-peers \
        --lt-cred-mech --user=alice:wonderland --realm=geosteer.test --no-dtls --no-cli \
        --relay-threads="$LOOPS" --total-quota=0 --user-quota=0 --log-file="$OUT/$1.log" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 50); do # up to 10 s: coturn 4.17 takes ~3 s to open its listeners
    ss -lnu | grep -q "127.0.0.1:$PORT " && ss -lnt | grep -q "127.0.0.1:$TLS_PORT " && break
    sleep 0.2
  done
  sleep 0.3
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; sleep 0.5; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
calm() { # waits (bounded) until the load average is below LOAD_MAX; prints the waits
  local n=0
  while ((n < 4)) && awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }'; do
    sleep 15; n=$((n + 1))
  done
  echo "$n"
}
load() { # server phase transport args...
  local s=$1 ph=$2 t=$3; shift 3
  local port=$PORT; [[ $t == tls ]] && port=$TLS_PORT
  local waited la c0 c1 line
  waited=$(calm)
  la=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(cpu_ticks)
  line=$(timeout $((DUR + 60)) taskset -c "$CLIENT_CPU" "$BIN/geosteer-turn-load" --server 127.0.0.1:$port \
    --transport "$t" --allocs "$ALLOCS" --duration "$DUR" "$@" 2>>"$OUT/load.err") || line="failed"
  c1=$(cpu_ticks)
  local cpu_ms=$(((c1 - c0) * 1000 / TCK))
  local pkts; pkts=$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "client_rx" || kv[1] == "peer_rx") n += kv[2] } } END { print n + 0 }' <<<"$line")
  local per; per=$(awk -v c="$cpu_ms" -v p="$pkts" 'BEGIN { if (p > 0) printf "%.2f", c * 1000 / p; else print "-" }')
  echo "server=$s phase=$ph transport=$t loops=$LOOPS load1=$la waited=$waited server_cpu_ms=$cpu_ms cpu_us_per_pkt=$per $line" | tee -a "$OUT/results.txt"
}
loss_of() { sed -n 's/.*loss_pct=\([0-9.]*\).*/\1/p' <<<"$1"; }

: >"$OUT/results.txt"
active=()
for s in $SERVERS; do
  [[ $s == coturn && -z "$COTURN" ]] && continue
  [[ $s == coturn46 ]] && ! command -v turnserver >/dev/null && continue
  active+=("$s")
done
echo "servers: ${active[*]}; loops=$LOOPS server_cpus=$SERVER_CPUS client_cpu=$CLIENT_CPU; $(uptime)" | tee -a "$OUT/results.txt"
for t in $TRANSPORTS; do
  declare -A best=()
  if [[ " $PHASES " == *" sat "* ]]; then
    for s in "${active[@]}"; do
      start "$s"; best[$s]=0
      for r in $RATES; do
        out=$(load "$s" sat "$t" --rate "$r")
        loss=$(loss_of "$out")
        if [[ -n "$loss" ]] && awk "BEGIN{exit !($loss <= 0.1)}"; then best[$s]=$r; else break; fi
      done
      echo "server=$s transport=$t max_rate_at_0.1pct_loss=${best[$s]} (client->peer pkts/s offered; relayed = 2x)" | tee -a "$OUT/results.txt"
      stop
    done
  fi
  if [[ " $PHASES " == *" fixed "* ]]; then
    for s in "${active[@]}"; do start "$s"; load "$s" fixed "$t" --rate "$FIXED_RATE" >/dev/null; stop; done
  fi
  ref=${best[$REF]:-0}
  if [[ " $PHASES " == *" lat "* ]] && ((ref > 0)); then
    for s in "${active[@]}"; do
      start "$s"
      load "$s" lat50 "$t" --rate $((ref / 2)) >/dev/null
      load "$s" lat90 "$t" --rate $((ref * 9 / 10)) >/dev/null
      stop
    done
  fi
  if [[ " $PHASES " == *" size "* ]]; then
    for s in "${active[@]}"; do
      start "$s"
      for sz in 100 500 1200; do load "$s" "size$sz" "$t" --rate 0 --size $sz >/dev/null; done
      stop
    done
  fi
  unset best
done
echo "results: $OUT/results.txt"
