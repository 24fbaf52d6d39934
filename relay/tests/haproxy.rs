//! The relay behind Debian's HAProxy (`mode tcp`, `send-proxy-v2`): the
//! client address in the PROXY header is the client for everything —
//! XOR-MAPPED-ADDRESS and per-address quotas — over TCP and TLS on one auto
//! port; `balance leastconn` spreads connections over two relays; untrusted
//! sources and missing headers are closed and counted without affecting
//! anyone else. All on loopback: clients on 127.0.0.2 and 127.0.0.3, HAProxy
//! and the relays on 127.0.0.1.

mod common;
mod edge;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use edge::{tls_connect_from, Client, Stream};
use geosteer_relay::config::{ProxyProtocol, StreamListener};
use geosteer_relay::RelayHandle;

/// A relay whose auto port expects PROXY v2 headers from 127.0.0.1, with
/// one allocation per client address.
fn relay(cert: &Path, key: &Path) -> RelayHandle {
    start(|p| {
        let mut c = config(p, Some((free_port(), cert, key)));
        c.listen.auto = vec![StreamListener {
            address: SocketAddr::from(([127, 0, 0, 1], free_port())),
            proxy_protocol: ProxyProtocol::V2,
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        }];
        c.limits.allocations_per_ip = 1;
        c
    })
    .0
}

/// HAProxy in the foreground: `both` balances over the two relays,
/// `first` sends everything to the first one.
fn haproxy(
    dir: &Path,
    bin: &Path,
    both: u16,
    first: u16,
    r1: SocketAddr,
    r2: SocketAddr,
) -> ChildGuard {
    let cfg = format!(
        "global\n  maxconn 1000\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend both\n  bind 127.0.0.1:{both}\n  default_backend relays\n\
         frontend first\n  bind 127.0.0.1:{first}\n  default_backend relay1\n\
         backend relays\n  balance leastconn\n  server r1 {r1} send-proxy-v2\n  server r2 {r2} send-proxy-v2\n\
         backend relay1\n  server r1 {r1} send-proxy-v2\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = Command::new(bin)
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", first)).is_err() {
        assert!(
            Instant::now() < deadline,
            "haproxy did not start: see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

fn established(r: &RelayHandle) -> f64 {
    let m = metrics(r);
    metric(&m, "turn_connections_established_total{transport=\"tcp\"}").unwrap()
        + metric(&m, "turn_connections_established_total{transport=\"tls\"}").unwrap()
}

#[test]
fn clients_behind_haproxy_keep_their_addresses() {
    let Some(bin) = tool("haproxy") else {
        return;
    };
    let dir = temp_dir("haproxy");
    let (cert, key) = self_signed(&dir);
    let r1 = relay(&cert, &key);
    let r2 = relay(&cert, &key);
    let (both, first) = (free_port(), free_port());
    let _haproxy = haproxy(&dir, &bin, both, first, r1.auto[0], r2.auto[0]);
    let via = |port: u16, src: &str| connect_from(src, SocketAddr::from(([127, 0, 0, 1], port)));

    // TURN over TCP and over TLS through the balancer: the relay sees the
    // client's own address and port, not HAProxy's.
    let tcp = via(both, "127.0.0.2");
    let me = tcp.local_addr().unwrap();
    let mut a = Client::alice(Stream(tcp));
    let reply = a.allocate();
    assert_eq!(
        (reply.code, reply.mapped),
        (200, Some(me)),
        "TCP through HAProxy"
    );
    let tls = via(both, "127.0.0.3");
    let me = tls.local_addr().unwrap();
    let mut b = Client::alice(Stream(tls_connect_from(tls, &[b"stun.turn"])));
    let reply = b.allocate();
    assert_eq!(
        (reply.code, reply.mapped),
        (200, Some(me)),
        "TLS through HAProxy"
    );
    // leastconn: the second connection went to the other relay.
    assert_eq!((established(&r1), established(&r2)), (1.0, 1.0));

    // Per-address quotas count the client, not the balancer: through the
    // single-relay frontend, a second client address gets its own
    // allocation and a second allocation from 127.0.0.2 hits its quota.
    let tcp_on = |r: &RelayHandle| {
        metric(
            &metrics(r),
            "turn_connections_established_total{transport=\"tcp\"}",
        )
    };
    let a_on_r1 = tcp_on(&r1) == Some(1.0);
    let mut quota = Vec::new();
    let mut open = Vec::new(); // allocations stay while their connection does
    for src in ["127.0.0.2", "127.0.0.3", "127.0.0.2"] {
        let mut c = Client::alice(Stream(via(first, src)));
        quota.push((src, c.allocate().code));
        open.push(c);
    }
    let expected = if a_on_r1 {
        // The first relay already holds 127.0.0.2's TCP allocation.
        [("127.0.0.2", 486), ("127.0.0.3", 200), ("127.0.0.2", 486)]
    } else {
        [("127.0.0.2", 200), ("127.0.0.3", 486), ("127.0.0.2", 486)]
    };
    assert_eq!(quota, expected);

    // A source outside trusted_proxies, and a trusted source that sends no
    // header: both closed and counted; the clients above are unaffected.
    let closed = |mut s: TcpStream, send: &[u8]| {
        use std::io::Write;
        let _ = s.write_all(send);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(0) | Err(_))
    };
    let binding = [
        0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    assert!(closed(connect_from("127.0.0.5", r1.auto[0]), &binding));
    assert!(closed(connect_from("127.0.0.1", r1.auto[0]), &binding));
    let m = metrics(&r1);
    for reason in ["proxy_untrusted", "proxy_malformed"] {
        let name = format!("turn_connections_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&m, &name), Some(1.0), "{name}\n{m}");
    }
    assert_eq!(
        a.allocate().code,
        437,
        "the first TCP client's connection still works"
    );
    assert_eq!(
        b.allocate().code,
        437,
        "the TLS client's connection still works"
    );
}
