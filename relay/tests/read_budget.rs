//! Relay (peer-side) sockets are read under the same per-turn budget as the
//! client listeners: a peer whose relay socket always has data waiting cannot
//! hold the loop while another allocation's packets wait.
//!
//! The relay binary runs with one loop and two UDP listeners (127.0.0.1 and
//! 127.0.0.2), and one client socket holds an allocation on each (two
//! 5-tuples), so everything relayed back arrives in one socket in the order
//! the loop sent it. While the relay is stopped (SIGSTOP) one peer queues
//! more than a turn's budget in both relay sockets; after SIGCONT the loop
//! must alternate between them instead of emptying one first.
//! Traffic stays on 127.0.0.1/8.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::turn::TurnClient;
use common::*;
use stun_types::message::{Message, MessageWriteExt};
use turn_types::attribute::{RequestedTransport, XorPeerAddress, XorRelayedAddress};
use turn_types::message::{ALLOCATE, CREATE_PERMISSION};

/// Packets the peer queues in each relay socket: few enough for a default
/// receive buffer, and more than one turn's budget plus one send batch —
/// the loop hands datagrams to the kernel 32 at a time, so a socket read to
/// the end shows up as one run of 192, a budgeted one as runs of at most 128.
const QUEUED: u32 = 200;
/// The per-turn budget of one UDP socket, in datagrams.
const BUDGET: usize = 4 * 32;

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Allocates on `client` and permits `peer`; returns the relayed address.
fn allocate(client: &mut TurnClient, peer: SocketAddr) -> SocketAddr {
    let r = client.request_raw(ALLOCATE, |w, _| {
        w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
            .unwrap();
    });
    let m = Message::from_bytes(&r).unwrap();
    let relayed = m
        .attribute::<XorRelayedAddress>()
        .expect("XOR-RELAYED-ADDRESS in the Allocate response")
        .addr(m.transaction_id());
    let code = client.request(CREATE_PERMISSION, |w, tid| {
        w.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
    });
    assert_eq!(code, 200, "CreatePermission");
    relayed
}

/// Whether every thread of `pid` is stopped (state T).
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    })
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn a_peer_with_data_always_waiting_does_not_hold_the_loop() {
    let dir = temp_dir("read-budget");
    let port = free_port();
    let http_port = free_port();
    let mut cfg = config(port, None);
    let first = SocketAddr::from(([127, 0, 0, 1], port));
    let second = SocketAddr::from(([127, 0, 0, 2], port));
    cfg.listen.udp = vec![first, second];
    cfg.relay.loops = Some(1);
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    cfg.listen.http = http_addr;
    let path = dir.join("relay.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let relay = serve_binary(&path);
    let pid = relay.0.id();
    wait_until("the relay binary", || {
        std::net::TcpStream::connect(http_addr).is_ok()
            && http(http_addr, "GET", "/livez", &[]).0 == 200
    });

    // One client socket, an allocation through each listener.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for everything relayed back (beyond rmem_max needs root; without
    // it the reader thread below drains while the relay sends).
    force_recv_buffer(&sock, 4 << 20);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let relayed_a = allocate(
        &mut TurnClient::udp_on(sock.try_clone().unwrap(), first),
        peer_addr,
    );
    let relayed_b = allocate(
        &mut TurnClient::udp_on(sock.try_clone().unwrap(), second),
        peer_addr,
    );

    // The reader records, for each Data indication, which listener sent it.
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut from = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((_, src)) = sock.recv_from(&mut buf) {
            from.push(src);
        }
        from
    });

    signal(pid, libc::SIGSTOP);
    wait_until("the relay to stop", || all_stopped(pid));
    for relayed in [relayed_a, relayed_b] {
        for seq in 0..QUEUED {
            peer.send_to(&seq.to_be_bytes(), relayed).unwrap();
        }
    }
    signal(pid, libc::SIGCONT);
    let from = reader.join().unwrap();

    let count = |a: SocketAddr| from.iter().filter(|&&s| s == a).count();
    assert_eq!(
        (count(first), count(second)),
        (QUEUED as usize, QUEUED as usize),
        "every queued packet relayed, through the listener of its allocation"
    );
    let runs: Vec<usize> = from.chunk_by(|x, y| x == y).map(|run| run.len()).collect();
    assert!(
        runs.iter().all(|&n| n <= BUDGET),
        "a relay socket was read beyond one turn's budget ({BUDGET}) while the other \
         waited: runs {runs:?}"
    );
}
