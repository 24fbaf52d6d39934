#!/usr/bin/env bash
# Soak: a release geosteer-relay for MINUTES (30) under churning
# allocations over UDP, TCP and TLS (TLS through the one-port auto
# listener) plus a trickle of hostile input, sampled every minute.
#
# Churn: per transport, geosteer-turn-load runs back to back, each run
# making ALLOCS (20) new allocations, relaying RATE (1000) packets/s of
# 200-byte ChannelData for RUN (20) s, then (UDP) refreshing each one and
# deleting it; TCP/TLS allocations end with their connection.
# Hostile input (benches/relay/hostile.py), all the time: junk datagrams
# to the UDP port, TLS connections trickling a ClientHello one byte a
# second, connections sending garbage to the auto port, PROXY listener
# connections with malformed headers and without any.
#
# Each minute: RSS and open fds of the relay, active allocations,
# handshaking and open connections. Pass: after WARMUP (5) minutes RSS stays
# within 5 % of its post-warm-up minimum, the fd count does not grow (the
# last third's peak is at most the first post-warm-up third's peak + 2), and
# no churn run lost a relayed packet (the offered rate is far below
# saturation). Only 127.0.0.1 is contacted.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.bench/relay-soak}
MINUTES=${MINUTES:-30}
WARMUP=${WARMUP:-5}
ALLOCS=${ALLOCS:-20}
RATE=${RATE:-1000}
RUN=${RUN:-20}
PORT=35480
TLS_PORT=35481
AUTO_PORT=35482
PROXY_PORT=35483
HTTP_PORT=35490
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
rm -rf "$OUT"
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release -q -p geosteer-relay --bins)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

cat >"$OUT/relay.toml" <<TOML
region = "soak"
realm = "geosteer.test"
[listen]
udp = ["127.0.0.1:$PORT"]
tcp = ["127.0.0.1:$PORT"]
tls = ["127.0.0.1:$TLS_PORT"]
auto = ["127.0.0.1:$AUTO_PORT",
        { address = "127.0.0.1:$PROXY_PORT", proxy_protocol = "v2", trusted_proxies = ["127.0.0.1/32"] }]
tls_cert = "$OUT/cert.pem"
tls_key = "$OUT/key.pem"
http = "127.0.0.1:$HTTP_PORT"
[relay]
loops = 1
[auth]
users = { alice = "wonderland" }
[lifetimes]
default = 60
[peer_policy]
allow_loopback_peers = true
[limits]
allocations_per_user = 0
allocations_per_ip = 0
connections_per_ip = 0
handshake_timeout_ms = 5000
TOML

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$BIN/geosteer-relay" serve --config "$OUT/relay.toml" >"$OUT/relay.log" 2>&1 &
RELAY=$!
PIDS+=("$RELAY")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/livez" >/dev/null && break
  sleep 0.1
done

STOP_AT=$(($(date +%s) + MINUTES * 60))
churn() { # transport server
  local n=0
  while (($(date +%s) < STOP_AT - RUN - 5)); do
    n=$((n + 1))
    "$BIN/geosteer-turn-load" --server "$2" --transport "$1" --allocs "$ALLOCS" \
      --rate "$RATE" --duration "$RUN" --size 200 --refresh \
      >>"$OUT/load-$1.log" 2>>"$OUT/load-$1.err" || echo "run $n failed" >>"$OUT/load-$1.err"
  done
}
churn udp "127.0.0.1:$PORT" &
PIDS+=($!)
churn tcp "127.0.0.1:$PORT" &
PIDS+=($!)
churn tls "127.0.0.1:$AUTO_PORT" &
PIDS+=($!)
python3 "$ROOT/benches/relay/hostile.py" 127.0.0.1 "$PORT" "$TLS_PORT" "$AUTO_PORT" "$PROXY_PORT" \
  >"$OUT/hostile.log" 2>&1 &
PIDS+=($!)

metric() { awk -v n="$1" '$1 == n { print $2 }' "$OUT/metrics.txt"; }
echo "minute rss_kib fds threads allocations handshaking connections_open load1" | tee "$OUT/samples.txt"
for m in $(seq 1 "$MINUTES"); do
  sleep 60
  curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" >"$OUT/metrics.txt"
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$RELAY/status")
  fds=$(find "/proc/$RELAY/fd" -mindepth 1 -maxdepth 1 | wc -l)
  thr=$(awk '/^Threads/ { print $2 }' "/proc/$RELAY/status")
  echo "$m $rss $fds $thr $(metric turn_sessions_active) $(metric turn_connections_handshaking) \
$(metric turn_connections_open) $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/samples.txt"
done
cleanup
PIDS=()
grep -v '^turn_relay\|^#' "$OUT/metrics.txt" | grep -E 'rejected|established|malformed|sessions_total' >"$OUT/final-metrics.txt" || true

python3 - "$OUT" "$WARMUP" <<'PY'
import re, sys, pathlib
out, warm = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = [l.split() for l in (out / "samples.txt").read_text().splitlines()[1:]]
post = [r for r in rows if int(r[0]) > warm]
rss = [int(r[1]) for r in post]
fds = [int(r[2]) for r in post]
third = max(1, len(post) // 3)
ok = True
rss_spread = max(rss) / min(rss) - 1
print(f"rss after warm-up: min {min(rss)} KiB max {max(rss)} KiB (+{rss_spread*100:.1f} %)")
if rss_spread > 0.05:
    ok = False; print("FAIL: RSS grew more than 5 % after warm-up")
print(f"fds after warm-up: first third peak {max(fds[:third])}, last third peak {max(fds[-third:])}")
if max(fds[-third:]) > max(fds[:third]) + 2:
    ok = False; print("FAIL: open fds grew")
for t in ("udp", "tcp", "tls"):
    runs = [dict(kv.split("=", 1) for kv in l.split()) for l in (out / f"load-{t}.log").read_text().splitlines() if "loss_pct=" in l]
    sent = sum(int(r["sent"]) for r in runs)
    back = sum(int(r["client_rx"]) for r in runs)
    lossy = [r for r in runs if float(r["loss_pct"]) != 0.0]
    err = (out / f"load-{t}.err").read_text()
    refreshed = sum(int(m) for m in re.findall(r"refreshed=(\d+)", err))
    failed = err.count("failed")
    print(f"{t}: {len(runs)} runs, {sent} sent, {back} back, {len(lossy)} runs with loss, {failed} failed runs, {refreshed} refreshed")
    if lossy or failed or sent == 0 or sent != back:
        ok = False; print(f"FAIL: {t} lost packets or runs")
print((out / "final-metrics.txt").read_text())
print(out / "hostile.log", (out / "hostile.log").read_text().strip().splitlines()[-1:] )
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
