//! TURN over TCP with a client that writes far more than the relay reads from
//! one connection per loop turn: every frame of a large burst must still be
//! relayed (the connection is revisited until its socket is empty, although
//! edge-triggered readiness never fires again for data already waiting).
//! Traffic stays on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use turn_types::attribute::{ChannelNumber, RequestedTransport, XorPeerAddress};
use turn_types::message::{ALLOCATE, CHANNEL_BIND};

/// Frames in the burst: 1,500 × 104 bytes ≈ 152 KiB in one write, many times
/// the relay's per-turn read budget for one connection.
const BURST: u32 = 1_500;
const CHANNEL: u16 = 0x4001;

/// Minimal TURN client over one TCP connection (RFC 8656 stream framing).
struct TcpClient {
    stream: TcpStream,
    nonce: String,
}

impl TcpClient {
    fn connect(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            nonce: String::new(),
        }
    }

    /// Sends a STUN request and reads one STUN response (header + body).
    fn roundtrip(&mut self, req: &[u8]) -> Vec<u8> {
        self.stream.write_all(req).unwrap();
        let mut head = [0u8; 20];
        self.stream.read_exact(&mut head).expect("response header");
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut msg = head.to_vec();
        msg.resize(20 + len, 0);
        self.stream
            .read_exact(&mut msg[20..])
            .expect("response body");
        msg
    }

    /// Sends a request signed as alice (fetching a nonce first); returns the
    /// response code (200 for success).
    fn request(
        &mut self,
        method: Method,
        add: impl FnOnce(&mut MessageWriteVec, TransactionId),
    ) -> u16 {
        if self.nonce.is_empty() {
            let r = self
                .roundtrip(&Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish());
            let m = Message::from_bytes(&r).unwrap();
            self.nonce = m.attribute::<Nonce>().unwrap().nonce().to_string();
        }
        let mut w = Message::builder_request(method, MessageWriteVec::new());
        let tid = w.transaction_id();
        add(&mut w, tid);
        w.add_attribute(&Username::new("alice").unwrap()).unwrap();
        w.add_attribute(&Realm::new("geosteer.test").unwrap())
            .unwrap();
        w.add_attribute(&Nonce::new(&self.nonce).unwrap()).unwrap();
        let creds = LongTermKeyCredentials::new(
            "alice".into(),
            "wonderland".into(),
            "geosteer.test".into(),
        )
        .into();
        w.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
            .unwrap();
        w.add_fingerprint().unwrap();
        let r = self.roundtrip(&w.finish());
        let m = Message::from_bytes(&r).unwrap();
        match m.class() {
            MessageClass::Success => 200,
            _ => m.attribute::<ErrorCode>().unwrap().code(),
        }
    }
}

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
    let peer_addr = peer.local_addr().unwrap();

    let mut client = TcpClient::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    let code = client.request(ALLOCATE, |w, _| {
        w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
            .unwrap();
    });
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
    client.stream.write_all(&burst).unwrap();

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
    assert_eq!(
        last,
        Some(BURST - 1),
        "the last frame reached the peer ({count} seen)"
    );
    relay.stop();
}
