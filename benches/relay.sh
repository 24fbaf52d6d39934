#!/usr/bin/env bash
# Benchmark: geosteer-relay vs coturn under the same turnutils_uclient load.
#
# Runs coturn and then geosteer-relay (same machine, equivalent configuration:
# one UDP+TCP listener on 127.0.0.1, long-term user, loopback peers allowed, no
# quotas) with the server pinned to one core and the load (turnutils_uclient +
# turnutils_peer) pinned to the other, ROUNDS times, alternating. For each
# server it reports (medians over the rounds):
#   * relayed packets/s under UDP and TCP channel load (fixed and maximum),
#     taken from uclient's once-a-second counters over the seconds in which it
#     was sending (see "Why not uclient's transmit time" below),
#   * server CPU per relayed packet (utime+stime from /proc, µs),
#   * resident memory per allocation at ~10,000 allocations,
#   * the same packets/s with the server capped at CAP % of its core (cgroup
#     CPU quota): one core of uclient cannot saturate either server, so this
#     is the run where the server, not the load generator, is the limit.
# Debian's coturn 4.6 uclient has no -Y load mode: load comes from many
# clients (-m) with -z (ms between messages).
#
# Why not uclient's "Total transmit time": after any loss uclient waits ~10 s
# for the missing messages, so one packet dropped at turnutils_peer's socket
# (the load generator's own loss) doubles it. benches/relay/uclient.py
# explains the window used instead and prints the tables.
#
# Only 127.0.0.1 is contacted. Needs: coturn (turnserver, turnutils_*),
# taskset, curl, python3. Results go to $OUT (default .bench/relay, ignored
# by git) and a Markdown table is printed at the end.
#
# Environment knobs: ROUNDS (3), SERVER_CPU (1), CLIENT_CPU (0), QUICK=1
# (smaller runs), CAP (25; 0 skips the capped runs), SKIP_MEMORY=1, MEM_ALLOCS (10000), SERVERS ("coturn geosteer").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.bench/relay}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
MEM_ALLOCS=${MEM_ALLOCS:-10000}
ROUNDS=${ROUNDS:-3}
CAP=${CAP:-25}
CGROUP=""
PORT=34780
HTTP_PORT=34790
PEER_PORT=34800
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-relay}
RELAY_BIN=$CARGO_TARGET_DIR/release/geosteer-relay

if [[ "${QUICK:-0}" == 1 ]]; then
  FIXED=(-m 50 -n 400 -z 5)     # 50 clients x 200 msg/s
  SAT=(-m 100 -n 1000 -z 1)
else
  FIXED=(-m 100 -n 2000 -z 5)   # 100 clients x 200 msg/s = 20k msg/s offered
  SAT=(-m 200 -n 3000 -z 1)     # 200 clients x up to 1000 msg/s: as fast as uclient goes
fi

for t in turnserver turnutils_uclient turnutils_peer taskset curl python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install -y coturn util-linux curl python3)" >&2; exit 1; }
done
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release -q -p geosteer-relay)

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill -9 "$p" 2>/dev/null || true; done
  if [[ -n "$CGROUP" ]]; then sleep 0.5; rmdir "$CGROUP" 2>/dev/null || true; fi
}
trap cleanup EXIT

cat >"$OUT/relay.toml" <<TOML
region = "bench"
realm = "geosteer.test"
[listen]
udp = ["127.0.0.1:$PORT"]
tcp = ["127.0.0.1:$PORT"]
http = "127.0.0.1:$HTTP_PORT"
[relay]
port_min = 40000
port_max = 65000
TOML
cat "$ROOT/benches/relay/unlimited.toml" >>"$OUT/relay.toml"

start_server() { # $1 = coturn|geosteer ; prints pid
  if [[ $1 == coturn ]]; then
    taskset -c "$SERVER_CPU" turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
      --listening-port=$PORT --min-port=40000 --max-port=65000 --allow-loopback-peers \
      --lt-cred-mech --user=alice:wonderland --realm=geosteer.test --no-tls --no-dtls --no-cli \
      --total-quota=0 --user-quota=0 --log-file="$OUT/coturn.log" >/dev/null 2>&1 &
  else
    taskset -c "$SERVER_CPU" "$RELAY_BIN" serve --config "$OUT/relay.toml" >"$OUT/geosteer.log" 2>&1 &
  fi
  echo $!
}

# A cgroup with a CPU quota of CAP % of one core (10 ms period): cgroup v1
# "cpu" controller or cgroup v2 "cpu.max". Needs root; empty if unavailable.
make_cgroup() {
  local g
  if [[ -d /sys/fs/cgroup/cpu && -w /sys/fs/cgroup/cpu ]]; then
    g=/sys/fs/cgroup/cpu/geosteer-relay-bench
    mkdir -p "$g" && echo 10000 >"$g/cpu.cfs_period_us" && echo $((CAP * 100)) >"$g/cpu.cfs_quota_us" && echo "$g"
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    g=/sys/fs/cgroup/geosteer-relay-bench
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    mkdir -p "$g" && echo "$((CAP * 100)) 10000" >"$g/cpu.max" && echo "$g"
  fi 2>/dev/null || true
}

stop_server() { kill -TERM "$1" 2>/dev/null || true; sleep 0.3; kill -TERM "$1" 2>/dev/null || true; sleep 1; kill -9 "$1" 2>/dev/null || true; }

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Kernel drop counter of turnutils_peer's socket: loss that happens in the load
# generator (peer and uclient share one core), not in the server.
peer_drops() { awk -v p=":$(printf '%04X' $PEER_PORT)" 'substr($2, length($2) - 4) == p {d += $NF} END {print d + 0}' /proc/net/udp; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
sockets() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }
hz=$(getconf CLK_TCK)

# run_load ROUND NAME PID ARGS... -> appends to $OUT/results:
#   round name sent recv lost transmit_s cpu_s peer_drops window_s window_relayed peak_pps
run_load() {
  local round=$1 name=$2 pid=$3; shift 3
  local t0 t1 d0 d1 log="$OUT/$name-r$round.log"
  t0=$(ticks "$pid"); d0=$(peer_drops)
  taskset -c "$CLIENT_CPU" turnutils_uclient -c -X -l 100 -e 127.0.0.1 -r $PEER_PORT -p $PORT \
    -u alice -w wonderland "$@" 127.0.0.1 >"$log" 2>&1 || true
  t1=$(ticks "$pid"); d1=$(peer_drops)
  # Other work on the machine distorts the figures: record the load average.
  echo "$round $name $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg"
  python3 "$ROOT/benches/relay/uclient.py" run "$round" "$name" "$log" "$((t1 - t0))" "$hz" "$((d1 - d0))" >>"$OUT/results"
  tail -1 "$OUT/results"
}

measure_memory() { # NAME PID -> appends "name allocs rss_delta_kb" to $OUT/memory
  local name=$1 pid=$2 base_rss base_sock allocs=0 rss clients ucs=()
  base_rss=$(rss_kb "$pid"); base_sock=$(sockets "$pid")
  clients=$(( (MEM_ALLOCS / 2 + 9) / 10 + 10 ))   # uclient makes 2 allocations per client
  for _ in $(seq 1 10); do
    taskset -c "$CLIENT_CPU" turnutils_uclient -c -X -m "$clients" -n 1 -l 100 -z 1000 -h \
      -e 127.0.0.1 -r $PEER_PORT -p $PORT -u alice -w wonderland 127.0.0.1 >/dev/null 2>&1 &
    ucs+=($!); PIDS+=($!)
  done
  local last=-1 stable=0
  for _ in $(seq 1 200); do
    sleep 3
    allocs=$(( $(sockets "$pid") - base_sock ))   # one relay socket per allocation
    if (( allocs >= MEM_ALLOCS )); then break; fi
    if (( allocs == last )); then stable=$((stable + 1)); else stable=0; fi
    (( stable >= 5 )) && break
    last=$allocs
  done
  sleep 2
  allocs=$(( $(sockets "$pid") - base_sock )); rss=$(rss_kb "$pid")
  echo "$name $allocs $((rss - base_rss)) $base_rss $rss" >>"$OUT/memory"
  tail -1 "$OUT/memory"
  for p in "${ucs[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}

: >"$OUT/results"; : >"$OUT/memory"; : >"$OUT/loadavg"
taskset -c "$CLIENT_CPU" turnutils_peer -L 127.0.0.1 -p $PEER_PORT >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

if (( CAP > 0 )); then
  CGROUP=$(make_cgroup)
  [[ -n "$CGROUP" ]] || echo "cannot create a CPU-quota cgroup (needs root and the cgroup cpu controller): skipping the capped runs" >&2
fi

for round in $(seq 1 "$ROUNDS"); do
  for server in ${SERVERS:-coturn geosteer}; do
    echo "== round $round: $server"
    pid=$(start_server $server); PIDS+=("$pid"); sleep 1.5
    run_load "$round" "$server-udp-fixed" "$pid" "${FIXED[@]}"
    run_load "$round" "$server-tcp-fixed" "$pid" -t "${FIXED[@]}"
    run_load "$round" "$server-udp-max" "$pid" "${SAT[@]}"
    run_load "$round" "$server-tcp-max" "$pid" -t "${SAT[@]}"
    stop_server "$pid"
    if [[ -n "$CGROUP" ]]; then
      pid=$(start_server $server); PIDS+=("$pid"); sleep 1.5
      echo "$pid" >"$CGROUP/cgroup.procs"
      run_load "$round" "$server-udp-capped" "$pid" "${SAT[@]}"
      run_load "$round" "$server-tcp-capped" "$pid" -t "${SAT[@]}"
      stop_server "$pid"
    fi
  done
done
if [[ "${SKIP_MEMORY:-0}" != 1 ]]; then
  for server in ${SERVERS:-coturn geosteer}; do
    echo "== memory: $server"
    pid=$(start_server $server); PIDS+=("$pid"); sleep 1.5
    measure_memory "$server" "$pid"
    stop_server "$pid"
  done
fi

echo; echo "load average (1/5/15 min) after each run — should be ≈ 2 (server + load) on a quiet 2-core machine:"
cat "$OUT/loadavg"
python3 "$ROOT/benches/relay/uclient.py" report "$OUT/results" "$OUT/memory"
