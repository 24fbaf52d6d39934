//! DNS over TCP that cannot be exhausted: connection limits in all and per
//! client, the idle and I/O timeouts, pipelined queries answered in order,
//! and health probes and the admin API unaffected by a TCP flood (DNS over
//! TCP has its own runtime).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{build, get, repo, Q};
use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const IDLE_MS: u64 = 2_000;
const IO_MS: u64 = 300;

/// The test configuration with `tcp` as its `[server.tcp]` table, an admin
/// API and probes every 250 ms.
async fn node(tcp: &str) -> Node {
    let path = repo("tests/data/test.toml");
    let text = common::rewrite_listen(&std::fs::read_to_string(&path).unwrap());
    let text = format!(
        "{text}\n[server.tcp]\n{tcp}\n[api]\nlisten = \"127.0.0.1:0\"\n[health]\ninterval_ms = 250\ntimeout_ms = 100\n[pools.turn.health]\nstun = true\n"
    );
    let cfg = Config::from_str(&text, &path).unwrap();
    Node::start(ServeState::load(cfg, 1).unwrap())
        .await
        .unwrap()
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect(from: &str, server: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(server).await.unwrap()
}

/// Sends `names` as pipelined SOA/A queries in one write and reads the answers.
async fn ask(c: &mut TcpStream, names: &[(&str, u16)]) -> Vec<Message> {
    let mut wire = Vec::new();
    for (name, id) in names {
        let mut q = build(name, RecordType::A, Q::default());
        q[..2].copy_from_slice(&id.to_be_bytes());
        wire.extend_from_slice(&(q.len() as u16).to_be_bytes());
        wire.extend_from_slice(&q);
    }
    c.write_all(&wire).await.unwrap();
    let mut out = Vec::new();
    for _ in names {
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut len))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_bytes(&buf).unwrap());
    }
    out
}

/// Waits until the server closes `c`; returns when that happened.
async fn closed(mut c: TcpStream) -> Instant {
    let mut b = [0u8; 64];
    loop {
        match c.read(&mut b).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

async fn metrics(node: &Node) -> String {
    let c = reqwest::Client::new();
    get(&c, &format!("http://{}/metrics", node.api_addr.unwrap()))
        .await
        .body
}

/// Waits (at most 10 s) until the server has admitted `n` connections.
async fn wait_accepted(node: &Node, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics(node).await, "geosteer_dns_tcp_accepted_total") < f64::from(n) {
        assert!(Instant::now() < deadline, "the server accepts all {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_cannot_lock_out_a_new_client() {
    let node = node(&format!(
        "idle_timeout_ms = {IDLE_MS}\nio_timeout_ms = {IO_MS}\nmax_connections_per_client = 100"
    ))
    .await;
    let s = node.dns.addrs[0];
    let probes_before = metrics(&node).await;
    // 500 idle connections from one address and 300 from another.
    let mut idle = Vec::new();
    for (from, n) in [("127.0.0.1", 500), ("127.0.0.2", 300)] {
        for _ in 0..n {
            let opened = Instant::now();
            // Watched from the start, so each close is timed when it happens.
            idle.push((opened, tokio::spawn(closed(connect(from, s).await))));
        }
    }
    let idle_closes_from = Instant::now() + Duration::from_millis(IDLE_MS);
    wait_accepted(&node, 800).await;
    // Each address holds at most its limit: the rest were closed to make room.
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "geosteer_dns_tcp_connections"), 200.0);
    assert_eq!(
        metric(&m, "geosteer_dns_tcp_closed_total{reason=\"evicted\"}"),
        600.0
    );
    // A new client gets its answers, and so does a new connection from the
    // flooding address (it displaces that address's oldest idle connection).
    for from in ["127.0.0.3", "127.0.0.1"] {
        let mut c = connect(from, s).await;
        let a = ask(&mut c, &[("ns1.example.com.", 7)]).await;
        assert_eq!(a[0].answers.len(), 1, "{from}");
    }
    // The admin API and the health probes keep working on their runtime
    // while the connections are held.
    let probes = |t: &str| -> f64 {
        t.lines()
            .filter(|l| l.starts_with("geosteer_probes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while probes(&metrics(&node).await) <= probes(&probes_before) {
        assert!(Instant::now() < deadline, "no probe ran during the flood");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Instant::now() < idle_closes_from, "still during the flood");
    // Every idle connection is closed: the displaced ones at once, the
    // others by the idle timeout (plus a 1.5 s margin for timer and
    // scheduling slack), none before it.
    let mut early = 0;
    for (opened, c) in idle {
        let at = c.await.unwrap();
        let held = at - opened;
        assert!(
            held <= Duration::from_millis(IDLE_MS + 1_500),
            "closed after {held:?}"
        );
        if held < Duration::from_millis(IDLE_MS - 100) {
            early += 1;
        }
    }
    // 600 displaced by the flood itself, one more by the flooding address's
    // new connection.
    assert_eq!(early, 601, "only the displaced ones closed early");
    let m = metrics(&node).await;
    assert_eq!(
        metric(&m, "geosteer_dns_tcp_closed_total{reason=\"idle_timeout\"}"),
        199.0
    );
    assert_eq!(
        metric(&m, "geosteer_dns_tcp_closed_total{reason=\"evicted\"}"),
        601.0
    );
    assert_eq!(metric(&m, "geosteer_dns_tcp_connections"), 0.0);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_closes_its_oldest_idle_connection() {
    let node = node("max_connections = 150\nmax_connections_per_client = 100").await;
    let s = node.dns.addrs[0];
    let mut first = Vec::new();
    for _ in 0..100 {
        first.push(connect("127.0.0.1", s).await);
    }
    let mut second = Vec::new();
    for _ in 0..100 {
        second.push(connect("127.0.0.2", s).await);
    }
    wait_accepted(&node, 200).await;
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "geosteer_dns_tcp_connections"), 150.0);
    assert_eq!(
        metric(&m, "geosteer_dns_tcp_closed_total{reason=\"evicted\"}"),
        50.0
    );
    // The 50 displaced were the oldest: the first address's first 50.
    let kept = first.split_off(50);
    for (i, c) in first.into_iter().enumerate() {
        let gone = tokio::time::timeout(Duration::from_secs(5), closed(c)).await;
        assert!(
            gone.is_ok(),
            "connection {i} of the first address is closed"
        );
    }
    for (i, c) in kept.iter().enumerate() {
        let mut b = [0u8; 1];
        let open =
            matches!(c.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(open, "connection {} of the first address is open", i + 50);
    }
    let mut c = connect("127.0.0.3", s).await;
    assert_eq!(
        ask(&mut c, &[("ns1.example.com.", 1)]).await[0]
            .answers
            .len(),
        1
    );
    drop(second);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_are_answered_in_order() {
    let node = node("").await;
    let s = node.dns.addrs[0];
    let mut c = connect("127.0.0.1", s).await;
    let names = [
        ("ns1.example.com.", 1),
        ("nothere.example.com.", 2),
        ("mail.example.com.", 3),
        ("turn.example.com.", 4),
    ];
    let answers = ask(&mut c, &names).await;
    let got: Vec<(String, u16)> = answers
        .iter()
        .map(|m| (m.queries[0].name().to_string(), m.metadata.id))
        .collect();
    let want: Vec<(String, u16)> = names.iter().map(|(n, i)| (n.to_string(), *i)).collect();
    assert_eq!(got, want);
    // A query split across writes is answered once it is whole.
    let q = build("ns1.example.com.", RecordType::A, Q::default());
    let mut wire = (q.len() as u16).to_be_bytes().to_vec();
    wire.extend_from_slice(&q);
    c.write_all(&wire[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(&wire[5..]).await.unwrap();
    let mut len = [0u8; 2];
    c.read_exact(&mut len).await.unwrap();
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begun_query_must_arrive_within_the_io_timeout() {
    let node = node(&format!("io_timeout_ms = {IO_MS}")).await;
    let s = node.dns.addrs[0];
    // One byte of the length, then nothing.
    let mut stalled = connect("127.0.0.1", s).await;
    stalled.write_all(&[0]).await.unwrap();
    let sent = Instant::now();
    // A query trickled a byte every 100 ms: still bound by the deadline of
    // its first byte.
    let mut trickle = connect("127.0.0.2", s).await;
    let q = build("ns1.example.com.", RecordType::A, Q::default());
    let mut wire = (q.len() as u16).to_be_bytes().to_vec();
    wire.extend_from_slice(&q);
    let trickled = tokio::spawn(async move {
        for b in wire {
            if trickle.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        closed(trickle).await
    });
    let at = closed(stalled).await;
    // Closed by the I/O timeout, not the 10 s idle timeout (1.5 s margin
    // for scheduling slack).
    assert!(
        at - sent >= Duration::from_millis(IO_MS - 50),
        "{:?}",
        at - sent
    );
    assert!(
        at - sent <= Duration::from_millis(IO_MS + 1_500),
        "{:?}",
        at - sent
    );
    let at = trickled.await.unwrap();
    assert!(
        at - sent <= Duration::from_millis(IO_MS + 1_500),
        "{:?}",
        at - sent
    );
    let m = metrics(&node).await;
    assert_eq!(
        metric(&m, "geosteer_dns_tcp_closed_total{reason=\"io_timeout\"}"),
        2.0
    );
    node.dns.shutdown().await;
}
