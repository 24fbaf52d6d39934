#!/usr/bin/env python3
"""Writes the dnsperf query files of benches/dns.sh (Python 3, stdlib only).

dnsperf sends a per-query EDNS Client Subnet only from a binary query file
(`dnsperf -B`): each record is a 2-byte big-endian length followed by a
complete DNS query message. This script writes three such files:

  plain.bin     turn.example.com A, no EDNS, no ECS (the server sees 127.0.0.1)
                (--subnets copies, like the other files)
  one-ecs.bin   turn.example.com A, EDNS0 + ECS 81.2.69.0/24 on every query
                (--subnets copies)
  mixed-ecs.bin turn.example.com A, EDNS0 + ECS, 10,000 distinct /24 subnets
                drawn with a fixed seed from the RIR-administered IPv4 space
                listed in geoip/demo-networks.txt (special-purpose ranges
                excluded), one query per subnet, in random order
  nxdomain.bin  a random-subdomain flood: <random label>.example.com A with
                EDNS0 (as a resolver forwards it), 10 x --subnets distinct
                labels of 8 to 16 characters, none of which exists

The subnets are data only: no packet is ever sent to them.

Usage: gen_queries.py --networks geoip/demo-networks.txt --out DIR
                      [--subnets 10000] [--seed 20261128] [--name turn.example.com]
"""
import argparse
import ipaddress
import os
import random
import struct
import sys

# Special-purpose IPv4 space (RFC 6890 and friends) never used as a subnet,
# even if a source row covered it.
SPECIAL = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
)]

RIRS = ("AFRINIC", "APNIC", "ARIN", "LACNIC", "RIPE NCC")


def encode_name(name):
    out = bytearray()
    for label in name.rstrip(".").split("."):
        b = label.encode("ascii")
        assert 0 < len(b) < 64
        out.append(len(b))
        out += b
    out.append(0)
    return bytes(out)


def query(qid, name, qtype=1, ecs=None, edns=False, payload=1232):
    """A DNS query message. ecs = (IPv4Network) adds OPT with an ECS option."""
    arcount = 1 if (edns or ecs is not None) else 0
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, arcount)  # RD set
    msg += encode_name(name) + struct.pack(">HH", qtype, 1)
    if arcount:
        rdata = b""
        if ecs is not None:
            plen = ecs.prefixlen
            addr = ecs.network_address.packed[: (plen + 7) // 8]
            opt = struct.pack(">HBB", 1, plen, 0) + addr  # family 1, source, scope 0
            rdata = struct.pack(">HH", 8, len(opt)) + opt
        # root name, type OPT, class = payload size, TTL = ext rcode/version/flags
        msg += b"\x00" + struct.pack(">HHIH", 41, payload, 0, len(rdata)) + rdata
    return msg


def write_bin(path, messages):
    with open(path, "wb") as f:
        for m in messages:
            f.write(struct.pack(">H", len(m)))
            f.write(m)


def source_networks(path):
    """IPv4 rows of the RIR section of demo-networks.txt."""
    nets = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "#" not in line:
                continue
            data, comment = line.split("#", 1)
            if comment.strip() not in RIRS:
                continue
            cidr = data.split(",")[0].strip()
            net = ipaddress.ip_network(cidr)
            if net.version == 4:
                nets.append(net)
    if not nets:
        sys.exit(f"{path}: no RIR IPv4 rows found")
    return nets


def draw_subnets(nets, count, seed):
    rng = random.Random(seed)
    weights = [n.num_addresses for n in nets]
    chosen = []
    seen = set()
    while len(chosen) < count:
        net = rng.choices(nets, weights=weights)[0]
        n24 = net.num_addresses // 256 if net.prefixlen <= 24 else 1
        base = int(net.network_address) & 0xFFFFFF00
        sub = ipaddress.ip_network((base + 256 * rng.randrange(n24), 24))
        if sub in seen or any(sub.overlaps(s) for s in SPECIAL):
            continue
        seen.add(sub)
        chosen.append(sub)
    return chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--subnets", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--name", default="turn.example.com")
    ap.add_argument("--one-subnet", default="81.2.69.0/24")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # dnsperf replaces the message ID; the files still carry distinct ones.
    # The single-question files hold as many records as the mixed one: dnsperf
    # rewinds its input at the end of the file, and rewinding after every
    # query would make dnsperf, not the server, the bottleneck of those runs.
    n = a.subnets
    write_bin(os.path.join(a.out, "plain.bin"), [query(i & 0xFFFF, a.name) for i in range(n)])
    one = ipaddress.ip_network(a.one_subnet)
    write_bin(os.path.join(a.out, "one-ecs.bin"),
              [query(i & 0xFFFF, a.name, ecs=one) for i in range(n)])
    subs = draw_subnets(source_networks(a.networks), a.subnets, a.seed)
    write_bin(os.path.join(a.out, "mixed-ecs.bin"),
              [query(i & 0xFFFF, a.name, ecs=s) for i, s in enumerate(subs)])
    rng = random.Random(a.seed)
    zone = a.name.split(".", 1)[1]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    labels = set()
    while len(labels) < 10 * n:
        labels.add("".join(rng.choice(alphabet) for _ in range(rng.randint(8, 16))))
    write_bin(os.path.join(a.out, "nxdomain.bin"),
              [query(i & 0xFFFF, f"{label}.{zone}", edns=True) for i, label in enumerate(sorted(labels))])
    with open(os.path.join(a.out, "mixed-ecs.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{s}\n" for s in subs))
    print(f"wrote plain.bin, one-ecs.bin ({one}) ({n} queries each), mixed-ecs.bin ({len(subs)} /24s, "
          f"seed {a.seed}), nxdomain.bin ({10 * n} random labels under {zone}) to {a.out}")


if __name__ == "__main__":
    main()
