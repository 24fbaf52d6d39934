#!/usr/bin/env bash
# Benchmark: anycast failure -> route gone at the router, and recovery ->
# route back, TRIALS times (default 20) for each speaker (ExaBGP and BIRD),
# at a 250 ms check interval with fall 2 / rise 2 (the settings of
# tests/anycast.rs). Failure = the DNS node's packets dropped by nftables,
# recovery = the rule removed; times are measured at the router with
# `birdc show route`, polled every 20 ms. Prints min/median/max.
# Needs root, ip, bird2, exabgp, nftables, dig. Only namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
ANYCAST_TRIALS=${TRIALS:-20} CI=true cargo test --release -q --test anycast -- --nocapture 2>&1 \
  | grep -E '^BENCH|withdrawn in|test result' | sed 's/^BENCH //'
