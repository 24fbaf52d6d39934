#!/usr/bin/env python3
"""Asks two DNS servers on 127.0.0.1 the same questions and compares answers.

Used by benches/dns.sh before measuring: for the plain query, the single ECS
subnet and every subnet of the mixed file (or the first --limit), it sends
turn.example.com A to each server (UDP, 127.0.0.1 only) and compares the A
records. Prints a sample table, the agreement count, the ECS scopes each
server returned, and the disagreements (up to --show). Exit status 0 when every
query got a NOERROR answer from both servers, 1 otherwise (disagreements on the
region alone do not fail: they are reported).

Usage: compare.py --ports 5391,5392 --names geosteer,gdnsd --subnets FILE
                  [--one 81.2.69.0/24] [--limit N] [--sample 8] [--show 10]
"""
import argparse
import collections
import ipaddress
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_queries import query  # noqa: E402

SERVER = "127.0.0.1"  # the only address this script ever sends to


def skip_name(b, i):
    while True:
        n = b[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def parse(b):
    """(rcode, [A addresses], ecs scope or None)."""
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", b[:12])
    i = 12
    for _ in range(qd):
        i = skip_name(b, i) + 4
    addrs, scope = [], None
    rcode = flags & 0xF
    for sec, count in enumerate((an, ns, ar)):
        for _ in range(count):
            i = skip_name(b, i)
            rtype, rclass, ttl, rdlen = struct.unpack(">HHIH", b[i:i + 10])
            i += 10
            rd = b[i:i + rdlen]
            i += rdlen
            if sec == 0 and rtype == 1:
                addrs.append(socket.inet_ntoa(rd))
            if rtype == 41:
                j = 0
                while j + 4 <= len(rd):
                    code, olen = struct.unpack(">HH", rd[j:j + 4])
                    if code == 8:
                        scope = rd[j + 7]
                    j += 4 + olen
    return rcode, addrs, scope


def ask(sock, port, msg, tries=3):
    for _ in range(tries):
        sock.sendto(msg, (SERVER, port))
        try:
            while True:
                data, _ = sock.recvfrom(4096)
                if data[:2] == msg[:2]:
                    return parse(data)
        except socket.timeout:
            continue
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ap.add_argument("--names", required=True)
    ap.add_argument("--subnets", required=True)
    ap.add_argument("--one", default="81.2.69.0/24")
    ap.add_argument("--name", default="turn.example.com")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--sample", type=int, default=8)
    ap.add_argument("--show", type=int, default=10)
    a = ap.parse_args()
    ports = [int(p) for p in a.ports.split(",")]
    names = a.names.split(",")
    with open(a.subnets, encoding="utf-8") as f:
        subs = [ipaddress.ip_network(line.strip()) for line in f if line.strip()]
    if a.limit:
        subs = subs[: a.limit]
    cases = [("plain (no ECS)", None), (str(a.one), ipaddress.ip_network(a.one))]
    cases += [(str(s), s) for s in subs]

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    agree = failed = 0
    diffs = []
    scopes = [collections.Counter() for _ in ports]
    per_region = collections.Counter()
    rows = []
    for n, (label, net) in enumerate(cases):
        qid = (n * 7 + 1) & 0xFFFF
        msg = query(qid, a.name, ecs=net) if net else query(qid, a.name)
        res = [ask(sock, p, msg) for p in ports]
        if any(r is None or r[0] != 0 or not r[1] for r in res):
            failed += 1
            diffs.append((label, res))
            continue
        for k, r in enumerate(res):
            if net is not None:
                scopes[k][r[2]] += 1
        if all(sorted(r[1]) == sorted(res[0][1]) for r in res):
            agree += 1
            per_region[res[0][1][0]] += 1
        else:
            diffs.append((label, res))
        if n < a.sample + 2:
            rows.append((label, res))

    def fmt(r):
        if r is None:
            return "no answer"
        rc, addrs, scope = r
        s = ",".join(addrs) if rc == 0 else f"rcode {rc}"
        return s + (f" /{scope}" if scope is not None else "")

    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"  {'client subnet':<{w}}  " + "  ".join(f"{n:<22}" for n in names))
    for label, res in rows:
        print(f"  {label:<{w}}  " + "  ".join(f"{fmt(r):<22}" for r in res))
    print(f"  answers agree for {agree}/{len(cases)} queries "
          f"(first address: {', '.join(f'{k} x{v}' for k, v in sorted(per_region.items()))})")
    for k, n in enumerate(names):
        top = ", ".join(f"/{s} x{c}" for s, c in scopes[k].most_common(6))
        longer = sum(c for s, c in scopes[k].items() if s is not None and s > 24)
        print(f"  {n} ECS scopes returned (most common): {top}; "
              f"longer than the /24 source: {longer}")
    if diffs:
        print(f"  {len(diffs)} disagreement(s) or failure(s); first {min(a.show, len(diffs))}:")
        for label, res in diffs[: a.show]:
            print(f"    {label:<{w}}  " + "  ".join(f"{n}={fmt(r)}" for n, r in zip(names, res)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
