#!/usr/bin/env python3
"""A trickle of hostile input for benches/relay-soak.sh, until killed.

Every second: 50 junk datagrams (random bytes and truncated STUN headers) to
the UDP port; one new TLS connection that sends a ClientHello-looking record
one byte a second (up to 20 open); one connection sending an HTTP request to
the auto port; one connection to the PROXY listener with a malformed v2
header and one with no header at all. Prints a count line every minute.
Only the given loopback address is contacted.
"""
import os
import socket
import sys
import time

host, udp_port, tls_port, auto_port, proxy_port = sys.argv[1], *map(int, sys.argv[2:6])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hello = bytes([0x16, 0x03, 0x01, 0x00, 0xC8, 0x01, 0x00, 0x00, 0xC4, 0x03, 0x03]) + os.urandom(189)
slow = []  # (socket, bytes sent)
counts = {"junk_datagrams": 0, "slow_tls": 0, "garbage": 0, "bad_proxy": 0, "no_proxy": 0}
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect((host, port))
    s.setblocking(False)
    return s


def quiet_send(s, data):
    try:
        s.send(data)
        return True
    except OSError:
        return False


last = time.time()
while True:
    for i in range(50):
        junk = os.urandom(1 + i * 7 % 300)
        if i % 5 == 0:
            junk = b"\x00\x01\x00\x10\x21\x12\xa4\x42" + os.urandom(4)  # truncated STUN
        udp.sendto(junk, (host, udp_port))
        counts["junk_datagrams"] += 1
    try:
        if len(slow) < 20:
            slow.append([connect(tls_port), 0])
            counts["slow_tls"] += 1
        keep = []
        for s, n in slow:
            if n < len(hello) and quiet_send(s, hello[n:n + 1]):
                keep.append([s, n + 1])
            else:
                s.close()
        slow = keep
        g = connect(auto_port)
        quiet_send(g, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        g.close()
        counts["garbage"] += 1
        p = connect(proxy_port)
        quiet_send(p, V2_SIG + b"\x21\x11\x00\x04" + b"\x01\x02\x03\x04")  # addresses too short
        p.close()
        counts["bad_proxy"] += 1
        p = connect(proxy_port)
        quiet_send(p, b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12))  # STUN, no header
        p.close()
        counts["no_proxy"] += 1
    except OSError as e:
        print("connect failed:", e, flush=True)
    if time.time() - last >= 60:
        last = time.time()
        print(" ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    time.sleep(1)
