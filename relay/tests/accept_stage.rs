//! The accept stage: connections that stay silent or trickle a ClientHello
//! cost the packet loops nothing and are closed at the handshake deadline;
//! TURN and TURNS share one port (`listen.auto`); per-address connection
//! limits. Real clients: coturn's `turnutils_uclient` and `openssl s_client`.

mod common;
mod edge;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use stun_types::message::{Message, MessageClass, MessageWrite, MessageWriteVec, BINDING};

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The bytes of a real TLS ClientHello (rustls, ALPN `stun.turn`).
fn client_hello() -> Vec<u8> {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(edge::tls_client(&[b"stun.turn"]), name).unwrap();
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16);
    out
}

/// Waits until every socket is closed by the server (EOF or reset: it never
/// sends them anything else); returns how long after its connect each was
/// closed, or None for one still open at `until`.
fn close_times(conns: &[(TcpStream, Instant)], until: Instant) -> Vec<Option<Duration>> {
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|(s, _)| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        })
        .collect();
    let mut out = vec![None; conns.len()];
    let mut left = conns.len();
    while left > 0 && Instant::now() < until {
        // SAFETY: `fds` is a valid array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        let now = Instant::now();
        for (i, f) in fds.iter_mut().enumerate() {
            if f.fd >= 0 && f.revents != 0 {
                out[i] = Some(now - conns[i].1);
                f.fd = -1; // ignored from now on
                left -= 1;
            }
        }
    }
    out
}

/// Waits until the relay counts `n` open connections.
fn wait_open(relay: &geosteer_relay::RelayHandle, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(relay);
        if metric(&m, "turn_connections_open") == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "open connections never {n}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn silent_and_slow_connections_do_not_stall_calls() {
    let (Some(uclient_bin), Some(peer_bin)) = (tool("turnutils_uclient"), tool("turnutils_peer"))
    else {
        return;
    };
    let dir = temp_dir("accept-flood");
    let (cert, key) = self_signed(&dir);
    let (relay, port) = start(|p| {
        let mut c = config(p, Some((free_port(), &cert, &key)));
        c.limits.connections_per_ip = 1000;
        c
    });
    let tls = relay.tls[0];
    let (_peer, peer_port) = start_peer(&peer_bin);

    // 500 silent connections and 200 that send a ClientHello one byte a
    // second, all from 127.0.0.2.
    let mut flood: Vec<(TcpStream, Instant)> = Vec::new();
    for _ in 0..700 {
        let s = connect_from("127.0.0.2", tls);
        flood.push((s, Instant::now()));
    }
    let hello = client_hello();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers: Vec<TcpStream> = flood[500..]
        .iter()
        .map(|(s, _)| s.try_clone().unwrap())
        .collect();
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && sent < hello.len() {
                for w in &mut writers {
                    // Fails once the relay closed it: that is the point.
                    let _ = w.write_all(&hello[sent..sent + 1]);
                }
                sent += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // All 700 wait in the accept stage (accepted soon after connecting).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(&relay);
        if metric(&m, "turn_connections_handshaking") == Some(700.0) {
            break;
        }
        assert!(Instant::now() < deadline, "not 700 handshaking:\n{m}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Watch for the relay closing them from now on.
    let watched: Vec<(TcpStream, Instant)> = flood
        .iter()
        .map(|(s, t)| (s.try_clone().unwrap(), *t))
        .collect();
    let watcher = std::thread::spawn(move || {
        close_times(
            &watched,
            Instant::now() + HANDSHAKE_DEADLINE + Duration::from_secs(5),
        )
    });

    // Calls over UDP and over TLS meanwhile: 2 clients each, 300 messages
    // 20 ms apart (6 s), every one relayed back.
    let lt = ["-u", "alice", "-w", "wonderland", "-n", "300", "-z", "20"];
    let calls: Vec<_> = [("udp", port, vec![]), ("tls", tls.port(), vec!["-t", "-S"])]
        .into_iter()
        .map(|(name, p, extra)| {
            let bin = uclient_bin.clone();
            let args: Vec<String> = lt
                .iter()
                .chain(extra.iter())
                .map(|s| s.to_string())
                .collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (name, uclient(&bin, p, peer_port, &args))
            })
        })
        .collect();
    for c in calls {
        let (name, r) = c.join().unwrap();
        assert!(r.sent >= 600, "{name}: {} sent\n{}", r.sent, r.text);
        assert_eq!(r.sent, r.recv, "{name}: lost messages\n{}", r.text);
        assert_eq!(r.lost, Some(0), "{name}: lost packets\n{}", r.text);
        eprintln!(
            "{name} call during the flood: {} sent, {} received",
            r.sent, r.recv
        );
    }

    // Every flooding connection is closed at its deadline: not before, and
    // within a second after.
    let closed = watcher.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    eprintln!(
        "closed after: min {:?} max {:?}",
        closed.iter().flatten().min(),
        closed.iter().flatten().max()
    );
    for (i, c) in closed.iter().enumerate() {
        let kind = if i < 500 { "silent" } else { "slow" };
        let c = c.unwrap_or_else(|| panic!("{kind} connection {i} never closed"));
        assert!(
            c >= HANDSHAKE_DEADLINE && c <= HANDSHAKE_DEADLINE + Duration::from_secs(1),
            "{kind} connection {i} closed {c:?} after connecting"
        );
    }
    let m = metrics(&relay);
    assert_eq!(
        metric(
            &m,
            "turn_connections_rejected_total{reason=\"handshake_timeout\"}"
        ),
        Some(700.0),
        "{m}"
    );
    // The TLS call's clients (uclient opens one more connection than it
    // has clients) were the only connections established.
    let tls_calls = metric(&m, "turn_connections_established_total{transport=\"tls\"}").unwrap();
    assert!((2.0..=3.0).contains(&tls_calls), "{m}");
    drop(flood);
    wait_open(&relay, 0.0);
    relay.stop();
}

#[test]
fn one_port_serves_turn_and_turns() {
    let (Some(uclient_bin), Some(peer_bin), Some(openssl)) = (
        tool("turnutils_uclient"),
        tool("turnutils_peer"),
        tool("openssl"),
    ) else {
        return;
    };
    let dir = temp_dir("accept-auto");
    let (cert, key) = self_signed(&dir);
    let (relay, _) = start(|p| {
        let mut c = config(p, Some((free_port(), &cert, &key)));
        c.listen.auto = vec![SocketAddr::from(([127, 0, 0, 1], free_port())).into()];
        c
    });
    let auto = relay.auto[0];
    let (_peer, peer_port) = start_peer(&peer_bin);
    let lt = ["-u", "alice", "-w", "wonderland"];
    for (name, extra) in [("tcp", vec!["-t"]), ("tls", vec!["-t", "-S"])] {
        let args: Vec<&str> = lt.iter().chain(extra.iter()).copied().collect();
        let r = uclient(&uclient_bin, auto.port(), peer_port, &args);
        assert!(
            r.sent >= 20,
            "{name} on the auto port: {} sent\n{}",
            r.sent,
            r.text
        );
        assert_eq!(r.sent, r.recv, "{name} on the auto port: lost\n{}", r.text);
        eprintln!(
            "{name} on the auto port: {} sent, {} received",
            r.sent, r.recv
        );
    }

    // RFC 7443 ALPN, seen by OpenSSL's client.
    let (out, _) = run_timeout(
        Command::new(&openssl)
            .args([
                "s_client",
                "-connect",
                &auto.to_string(),
                "-alpn",
                "stun.turn",
            ])
            .stdin(std::process::Stdio::null()),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ALPN protocol: stun.turn"),
        "no ALPN stun.turn:\n{text}"
    );

    // Neither TLS nor STUN: closed at once and counted.
    let mut s = TcpStream::connect(auto).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an HTTP request must be closed, not answered");

    // uclient's two clients per run over each transport, and OpenSSL.
    let m = metrics(&relay);
    for (name, least) in [
        ("turn_connections_established_total{transport=\"tcp\"}", 2.0),
        ("turn_connections_established_total{transport=\"tls\"}", 3.0),
    ] {
        assert!(metric(&m, name).unwrap() >= least, "{name}\n{m}");
    }
    assert_eq!(
        metric(
            &m,
            "turn_connections_rejected_total{reason=\"unknown_protocol\"}"
        ),
        Some(1.0),
        "{m}"
    );
    relay.stop();
}

#[test]
fn connections_per_address_are_capped() {
    let (relay, port) = start(|p| {
        let mut c = config(p, None);
        c.limits.connections_per_ip = 3;
        c
    });
    let tcp = SocketAddr::from(([127, 0, 0, 1], port));
    let held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.2", tcp)).collect();
    wait_open(&relay, 3.0);
    // The fourth from that address is closed at once...
    let mut extra = connect_from("127.0.0.2", tcp);
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut extra, &mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "a connection over the per-address limit must be closed"
    );
    // ... while another address is served: a STUN Binding over TCP.
    let mut c = common::turn::TurnClient::tcp(tcp);
    let r = c.roundtrip(&Message::builder_request(BINDING, MessageWriteVec::new()).finish());
    assert_eq!(
        Message::from_bytes(&r).unwrap().class(),
        MessageClass::Success,
        "binding from another address"
    );
    let m = metrics(&relay);
    assert_eq!(
        metric(
            &m,
            "turn_connections_rejected_total{reason=\"limit_per_ip\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "turn_connections_per_ip_limit"),
        Some(3.0),
        "{m}"
    );
    // A closed connection gives its slot back.
    drop(held);
    drop(c);
    wait_open(&relay, 0.0);
    let _again: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.2", tcp)).collect();
    wait_open(&relay, 3.0);
    relay.stop();
}
