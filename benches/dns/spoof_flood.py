#!/usr/bin/env python3
"""A spoofed-source random-subdomain flood for benches/dns.sh (root, stdlib).

Sends the queries of a dnsperf binary query file (nxdomain.bin) to
127.0.0.1:PORT through a raw socket, each from a source address drawn from
--nets /24s of 127.16.0.0/12 (loopback space: the packets never leave the
machine, and the replies, sent to addresses nobody listens on, are dropped
by the kernel — as the replies of a spoofed flood go to its victims). A
share --hot-share of the packets comes from only --hot of those /24s, so
that those prefixes exceed a response rate limit while the rest stay under.

Paced in 1 ms steps at --rate packets/s for --seconds; prints one line:
"sent N hot_prefixes H cold_prefixes C seconds S".

Usage: spoof_flood.py --port 5391 --file nxdomain.bin [--rate 40000]
       [--seconds 10] [--nets 4096] [--hot 16] [--hot-share 0.5] [--seed 1]
"""
import argparse
import random
import socket
import struct
import time


def read_bin(path):
    """The messages of a dnsperf -B file (2-byte length, message)."""
    data = open(path, "rb").read()
    out, i = [], 0
    while i + 2 <= len(data):
        (n,) = struct.unpack_from(">H", data, i)
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def packet(src, sport, dport, payload, qid):
    """IPv4 + UDP header (UDP checksum 0: optional over IPv4; the kernel
    fills the IP checksum and total length for IP_HDRINCL sockets)."""
    msg = struct.pack(">H", qid) + payload[2:]
    udp = struct.pack(">HHHH", sport, dport, 8 + len(msg), 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(msg), 0, 0, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton("127.0.0.1"))
    return ip + udp + msg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--rate", type=int, default=40000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--nets", type=int, default=4096)
    ap.add_argument("--hot", type=int, default=16)
    ap.add_argument("--hot-share", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    assert 0 < a.hot <= a.nets <= 4096, "at most 4096 /24s of 127.16.0.0/12"
    rng = random.Random(a.seed)
    queries = read_bin(a.file)
    nets = [(16 + i // 256, i % 256) for i in range(a.nets)]
    hot, cold = nets[:a.hot], nets[a.hot:] or nets[:a.hot]
    # 65,536 pre-built packets, replayed in order.
    pkts = []
    for i in range(65536):
        x, y = rng.choice(hot) if rng.random() < a.hot_share else rng.choice(cold)
        src = f"127.{x}.{y}.{rng.randrange(1, 255)}"
        pkts.append(packet(src, rng.randrange(1024, 65535), a.port, queries[i % len(queries)], i))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dst = ("127.0.0.1", 0)
    step = a.rate / 1000.0
    t0 = time.monotonic()
    sent, due, i, n = 0, 0.0, 0, len(pkts)
    send = s.sendto
    while True:
        now = time.monotonic() - t0
        if now >= a.seconds:
            break
        due = now * a.rate
        while sent < due:
            try:
                send(pkts[i], dst)
            except OSError:  # ENOBUFS: the socket's buffer is full; next step
                break
            sent += 1
            i = i + 1 if i + 1 < n else 0
            # Behind the asked rate, this loop could run on past the end.
            if sent & 1023 == 0 and time.monotonic() - t0 >= a.seconds:
                break
        time.sleep(max(0.0, (sent + step) / a.rate - (time.monotonic() - t0)))
    print(f"sent {sent} hot_prefixes {len(hot)} cold_prefixes {len(cold)} seconds {time.monotonic() - t0:.3f}")


if __name__ == "__main__":
    main()
