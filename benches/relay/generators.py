#!/usr/bin/env python3
"""Two load generators, one server, one meter: geosteer-turn-load vs
turnutils_uclient (Debian 4.6.1, and 4.17.1 when UCLIENT417 names one)
against the same geosteer-relay at the same offered rate.

Both are measured by the server, not by themselves: every 0.1 s the meter
reads the relay's CPU (utime + stime of all threads, /proc/PID/stat) and its
relayed-packet counters (turn_relay_packets_total in + out, /metrics, which
the relay publishes once a second). Two figures per run:

  whole run : server CPU from the generator's start to its exit over the
              packets relayed meanwhile (setup, allocations, the tail after
              the last message and idle wake-ups included) -- how the
              earlier cross-check was taken;
  steady    : server CPU over packets between counter updates at least 1 s
              after traffic started and before it stopped.

Usage (release binaries built; only 127.0.0.1 is contacted):
  benches/relay/generators.py [--rate 10000] [--sessions 50] [--seconds 8]
Server on SERVER_CPU (1), generators and turnutils_peer on CLIENT_CPU (0).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
HZ = os.sysconf("SC_CLK_TCK")
PORT, HTTP, PEER = 34980, 34990, 34982
SERVER_CPU = os.environ.get("SERVER_CPU", "1")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")

CONFIG = f"""
region = "bench"
realm = "geosteer.test"
[listen]
udp = ["127.0.0.1:{PORT}"]
tcp = ["127.0.0.1:{PORT}"]
http = "127.0.0.1:{HTTP}"
[relay]
loops = 1
port_min = 20000
port_max = 65000
"""
with open(os.path.join(ROOT, "benches", "relay", "unlimited.toml")) as f:
    CONFIG += f.read()

COUNTER = re.compile(r'^turn_relay_packets_total\{direction="(?:in|out)"\} (\d+)', re.M)


def relayed():
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP}/metrics", timeout=2) as r:
        return sum(int(x) for x in COUNTER.findall(r.read().decode()))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Meter(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], False

    def run(self):
        while not self.stop:
            self.samples.append((time.monotonic(), cpu_ticks(self.pid), relayed()))
            time.sleep(0.1)


def measure(server_pid, cmd):
    meter = Meter(server_pid)
    meter.start()
    time.sleep(0.3)
    t0, c0, p0 = time.monotonic(), cpu_ticks(server_pid), relayed()
    out = subprocess.run(["taskset", "-c", CLIENT_CPU] + cmd, capture_output=True, text=True)
    time.sleep(1.2)  # the counters are published once a second
    t1, c1, p1 = time.monotonic(), cpu_ticks(server_pid), relayed()
    meter.stop = True
    meter.join()
    # Counter updates (moments the published value changed).
    s = meter.samples
    changes = [s[i] for i in range(1, len(s)) if s[i][2] != s[i - 1][2]]
    steady, steady_rate = "-", 0.0
    if len(changes) >= 4:
        start, end = changes[0][0] + 1.0, changes[-1][0] - 1.0
        win = [c for c in changes if start <= c[0] <= end]
        if len(win) >= 2 and win[-1][2] > win[0][2]:
            a, b = win[0], win[-1]
            steady_rate = (b[2] - a[2]) / (b[0] - a[0])
            steady = "%.2f us/pkt at %.0f relayed/s over %.1f s" % (
                (b[1] - a[1]) / HZ * 1e6 / (b[2] - a[2]), (b[2] - a[2]) / (b[0] - a[0]), b[0] - a[0])
    whole = (c1 - c0) / HZ * 1e6 / max(p1 - p0, 1)
    return {
        "relayed": p1 - p0,
        "cpu_ms": (c1 - c0) * 1000 // HZ,
        "whole": whole,
        "steady": steady,
        "steady_rate": steady_rate,
        "wall": t1 - t0,
        "rc": out.returncode,
        "tail": (out.stdout + out.stderr).strip().splitlines()[-1:] or [""],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=10000, help="client -> peer messages/s offered")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    interval_ms = a.sessions * 1000 // a.rate
    if interval_ms * a.rate != a.sessions * 1000:
        sys.exit("sessions * 1000 / rate must be a whole number of ms (uclient's -z)")
    per_session = a.rate * a.seconds // a.sessions
    work = tempfile.mkdtemp(prefix="geosteer-generators-")
    conf = os.path.join(work, "relay.toml")
    with open(conf, "w") as f:
        f.write(CONFIG)
    server = subprocess.Popen(["taskset", "-c", SERVER_CPU, os.path.join(BIN, "geosteer-relay"),
                               "serve", "--config", conf],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "relay.log"), "w"))
    peer = subprocess.Popen(["taskset", "-c", CLIENT_CPU, "turnutils_peer", "-L", "127.0.0.1", "-p", str(PEER)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                relayed()
                break
            except OSError:
                time.sleep(0.1)
        uclient = lambda binary, extra: [binary, "-m", str(a.sessions), "-n", str(per_session),
                                         "-z", str(interval_ms), "-l", "100", "-e", "127.0.0.1",
                                         "-r", str(PEER), "-u", "alice", "-w", "wonderland",
                                         "-p", str(PORT)] + extra + ["127.0.0.1"]
        load = lambda rate: [os.path.join(BIN, "geosteer-turn-load"), "--server", f"127.0.0.1:{PORT}",
                             "--allocs", str(a.sessions), "--rate", str(rate),
                             "--duration", str(a.seconds), "--size", "100"]
        runs = [
            ("geosteer-turn-load", load(a.rate)),
            ("uclient 4.6.1 -c (one allocation per session)", uclient("turnutils_uclient", ["-c"])),
            ("uclient 4.6.1 (RTP/RTCP pairs, the default)", uclient("turnutils_uclient", [])),
        ]
        if os.environ.get("UCLIENT417"):
            runs.append(("uclient 4.17.1 -c", uclient(os.environ["UCLIENT417"], ["-c"])))
        print(f"server geosteer-relay (1 loop) on CPU {SERVER_CPU}; generators on CPU {CLIENT_CPU}; "
              f"{a.sessions} sessions, {a.rate} msgs/s offered, 100 B, {a.seconds} s; "
              f"load {open('/proc/loadavg').read().split()[0]}")
        matched = None
        while runs:
            name, cmd = runs.pop(0)
            r = measure(server.pid, cmd)
            if matched is None and name.startswith("uclient") and r["steady_rate"] > 0:
                # uclient's timer falls behind its -z: offer what it achieved.
                matched = int(r["steady_rate"] / 2 / 100) * 100
                runs.append((f"geosteer-turn-load at uclient's achieved rate ({matched} msgs/s)",
                             load(matched)))
            print(f"{name}: relayed={r['relayed']} server_cpu_ms={r['cpu_ms']} wall_s={r['wall']:.1f} "
                  f"whole_run={r['whole']:.2f} us/pkt steady={r['steady']} exit={r['rc']} "
                  f"last_line={r['tail'][0][:100]!r}", flush=True)
            time.sleep(1)
    finally:
        for p in (server, peer):
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
