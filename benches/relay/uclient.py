#!/usr/bin/env python3
"""Figures from turnutils_uclient logs for benches/relay.sh.

  uclient.py run ROUND NAME LOG CPU_TICKS HZ PEER_DROPS  -> one results row
  uclient.py report RESULTS MEMORY                       -> Markdown tables

A results row is: round name sent recv lost transmit_s cpu_s peer_drops
window_s window_relayed peak_pps window_recv.

Relayed packets/s come from uclient's once-a-second progress lines
("N: : start_mclient: msz=…, tot_send_msgs=S, tot_recv_msgs=R, …"), not from
its "Total transmit time": after any loss uclient waits ~10 s for the missing
messages once everything is sent, so a single packet dropped at
turnutils_peer's socket (the load generator's own loss) would double that
time. The window runs from the first second with traffic to the last second
in which uclient was still sending; both ends are whole-second ticks taken
while sending, so the rate is what was relayed while load was offered.
"""
import re
import statistics
import sys

PROGRESS = re.compile(
    r"^(\d+): : start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", re.M)


def window(ticks, total):
    """(seconds, relayed, peak 1-s rate, received) while sending, from progress ticks."""
    active = [i for i, (_, s, _r) in enumerate(ticks) if 0 < s < total]
    if not active:
        return 0, 0, 0, 0
    a, b = active[0], active[-1]
    if b == a and a > 0:
        a -= 1  # one tick only: measure from the second before
    relayed = lambda i: ticks[i][1] + ticks[i][2]
    peak = 0
    # Peak: every second of the window, plus the one in which sending ended.
    for i in range(a + 1, min(b + 2, len(ticks))):
        dt = ticks[i][0] - ticks[i - 1][0]
        if dt > 0:
            peak = max(peak, (relayed(i) - relayed(i - 1)) // dt)
    return ticks[b][0] - ticks[a][0], relayed(b) - relayed(a), peak, ticks[b][2] - ticks[a][2]


def run(rnd, name, log, ticks, hz, drops):
    text = open(log, errors="replace").read()
    m = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
    sent, recv = (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)
    t = re.findall(r"Total transmit time is (\d+)", text)
    secs = max(int(t[-1]), 1) if t else 1
    lost = re.findall(r"Total lost packets (\d+)", text)
    progress = [tuple(map(int, x)) for x in PROGRESS.findall(text)]
    w_secs, w_relayed, peak, w_recv = window(progress, sent)
    print(rnd, name, sent, recv, lost[-1] if lost else "?", secs,
          int(ticks) / int(hz), drops, w_secs, w_relayed, peak, w_recv)


def report(results, memory):
    rows = [l.split() for l in open(results) if l.strip()]
    print("\nEvery run (relayed = client→peer + peer→client messages; "
          "'while sending' = uclient's per-second counters over the seconds it was sending):\n")
    print("| round | load | server | sent | received | lost (at turnutils_peer's socket) "
          "| uclient transmit s | relayed pkt/s while sending | peak 1-s pkt/s | server CPU µs/pkt |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    agg = {}
    for rnd, name, sent, recv, lost, secs, cpu, drops, wsecs, wrel, peak, wrecv in rows:
        server, load = name.split("-", 1)
        relayed = int(sent) + int(recv)
        pps = int(wrel) / int(wsecs) if int(wsecs) else float("nan")
        us = float(cpu) * 1e6 / relayed if relayed else float("nan")
        print(f"| {rnd} | {load} | {server} | {sent} | {recv} | {lost} ({drops}) | {secs} "
              f"| {pps:,.0f} | {int(peak):,} | {us:.2f} |")
        a = agg.setdefault((load, server), {"pps": [], "peak": [], "us": [], "lost": [],
                                            "recv": [], "rtps": []})
        a["recv"].append(int(recv))
        a["rtps"].append(int(wrecv) / int(wsecs) if int(wsecs) else float("nan"))
        a["pps"].append(pps)
        a["peak"].append(int(peak))
        a["us"].append(us)
        a["lost"].append(int(lost) if lost.isdigit() else 0)
    rounds = max((int(r[0]) for r in rows), default=0)
    print(f"\nMedians over {rounds} round(s):\n")
    print("| load | server | relayed pkt/s while sending | peak 1-s pkt/s | server CPU µs/pkt "
          "| one core at that CPU cost, pkt/s | lost |")
    print("|---|---|---:|---:|---:|---:|---:|")
    med = statistics.median
    for (load, server), a in sorted(agg.items()):
        if load.endswith("capped"):
            continue
        us = med(a["us"])
        print(f"| {load} | {server} | {med(a['pps']):,.0f} | {med(a['peak']):,.0f} | {us:.2f} "
              f"| {1e6 / us:,.0f} | {med(a['lost']):.0f} |")
    capped = sorted(k for k in agg if k[0].endswith("capped"))
    if capped:
        print("\nServer capped by a cgroup CPU quota (the server is the limit; every "
              "uclient message that comes back was relayed twice):\n")
        print("| load | server | messages back (of each run's sent) | round trips/s while sending "
              "| relayed pkt/s (2 × round trips) | lost |")
        print("|---|---|---:|---:|---:|---:|")
        for load, server in capped:
            a = agg[(load, server)]
            rt = med(a["rtps"])
            print(f"| {load} | {server} | {med(a['recv']):,.0f} | {rt:,.0f} | {2 * rt:,.0f} "
                  f"| {med(a['lost']):,.0f} |")
    mem = [l.split() for l in open(memory) if l.strip()]
    if mem:
        print("\n| server | allocations | RSS growth (kB) | RSS per allocation (kB) |")
        print("|---|---:|---:|---:|")
        for name, allocs, delta, _base, _rss in mem:
            print(f"| {name} | {allocs} | {delta} | {int(delta) / max(int(allocs), 1):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "run":
        run(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
