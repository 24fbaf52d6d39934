//! TURN over TCP with a client that writes far more than the relay reads from
//! one connection per loop turn: every frame of a large burst must still be
//! relayed (the connection is revisited until its socket is empty, although
//! edge-triggered readiness never fires again for data already waiting).
//! Traffic stays on 127.0.0.1.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::turn::TurnClient;
use common::*;
use stun_types::message::MessageWriteExt;
use turn_types::attribute::{ChannelNumber, XorPeerAddress};
use turn_types::message::{ALLOCATE, CHANNEL_BIND};

/// Frames in the burst: 1,500 × 104 bytes ≈ 152 KiB in one write, many times
/// the relay's per-turn read budget for one connection.
const BURST: u32 = 1_500;
const CHANNEL: u16 = 0x4001;

/// ChannelData frame carrying sequence number `seq` in a 100-byte payload.
fn frame(seq: u32) -> [u8; 104] {
    let mut f = [0u8; 104];
    f[..2].copy_from_slice(&CHANNEL.to_be_bytes());
    f[2..4].copy_from_slice(&100u16.to_be_bytes());
    f[4..8].copy_from_slice(&seq.to_be_bytes());
    f
}

fn relayed_in(http_addr: SocketAddr) -> f64 {
    let (_, body) = http(http_addr, "GET", "/metrics", &[]);
    metric(&body, "turn_relay_packets_total{direction=\"in\"}").unwrap_or(0.0)
}

#[test]
fn tcp_burst_larger_than_the_read_budget_is_relayed_in_full() {
    let (relay, port) = start(|p| config(p, None));
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The relay sends the burst faster than a test thread may drain it: give
    // the peer room for all of it (beyond rmem_max needs root).
    let roomy = force_recv_buffer(&peer, 8 << 20);
    let peer_addr = peer.local_addr().unwrap();

    let mut client = TurnClient::tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    let code = client.lifetime_request(ALLOCATE, None);
    assert_eq!(code, 200, "Allocate over TCP");
    let code = client.request(CHANNEL_BIND, |w, tid| {
        w.add_attribute(&ChannelNumber::new(CHANNEL)).unwrap();
        w.add_attribute(&XorPeerAddress::new(peer_addr, tid))
            .unwrap();
    });
    assert_eq!(code, 200, "ChannelBind over TCP");

    // The peer drains its socket in a thread: (frames, in order, last seq).
    let reader = std::thread::spawn(move || {
        let (mut count, mut ordered, mut last) = (0u32, true, None::<u32>);
        let mut buf = [0u8; 2048];
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        while let Ok((n, _)) = peer.recv_from(&mut buf) {
            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
            ordered &= n == 100 && last.is_none_or(|l| seq > l);
            last = Some(seq);
            count += 1;
        }
        (count, ordered, last)
    });

    // The whole burst in one write; the client then stays silent, so no new
    // readiness event will come for this connection.
    let mut burst = Vec::with_capacity(BURST as usize * 104);
    for seq in 0..BURST {
        burst.extend_from_slice(&frame(seq));
    }
    client.stream().write_all(&burst).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && relayed_in(relay.http) < f64::from(BURST) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        relayed_in(relay.http),
        f64::from(BURST),
        "the relay forwarded only part of the burst"
    );
    let (count, ordered, last) = reader.join().unwrap();
    assert!(ordered, "frames reached the peer out of order or resized");
    if roomy {
        assert_eq!(count, BURST, "frames that reached the peer");
        assert_eq!(last, Some(BURST - 1), "the last frame reached the peer");
    } else {
        assert!(count > 0, "no frame reached the peer");
        eprintln!(
            "not root: the peer's socket may drop; checked {count} frames and the relay's counter"
        );
    }
    relay.stop();
}
