//! Minimal TURN client for control-plane checks: long-term credentials
//! (alice / wonderland, realm geosteer.test) over UDP or TCP (RFC 8656 stream
//! framing). Traffic stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use turn_types::attribute::{Lifetime, RequestedTransport};
use turn_types::message::ALLOCATE;

enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

/// A TURN client signing its requests as alice.
pub struct TurnClient {
    link: Link,
    nonce: String,
}

impl TurnClient {
    /// A client on its own UDP socket.
    pub fn udp(server: SocketAddr) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Self::with(Link::Udp(sock, server))
    }

    /// A client on a given UDP socket (several clients may share one socket,
    /// each to another server address: one allocation per 5-tuple).
    pub fn udp_on(sock: UdpSocket, server: SocketAddr) -> Self {
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Self::with(Link::Udp(sock, server))
    }

    /// A client on one TCP connection.
    pub fn tcp(server: SocketAddr) -> Self {
        Self::on_stream(TcpStream::connect(server).unwrap())
    }

    /// A client on a connected TCP stream.
    pub fn on_stream(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self::with(Link::Tcp(stream))
    }

    fn with(link: Link) -> Self {
        Self {
            link,
            nonce: String::new(),
        }
    }

    /// The TCP connection (panics for a UDP client).
    pub fn stream(&mut self) -> &mut TcpStream {
        match &mut self.link {
            Link::Tcp(s) => s,
            Link::Udp(..) => panic!("not a TCP client"),
        }
    }

    /// Sends one STUN message and returns the one response.
    pub fn roundtrip(&mut self, req: &[u8]) -> Vec<u8> {
        match &mut self.link {
            Link::Udp(sock, server) => {
                sock.send_to(req, *server).unwrap();
                let mut buf = [0u8; 2048];
                let (n, _) = sock.recv_from(&mut buf).expect("reply");
                buf[..n].to_vec()
            }
            Link::Tcp(stream) => {
                stream.write_all(req).unwrap();
                let mut msg = vec![0u8; 20];
                stream.read_exact(&mut msg).expect("response header");
                let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
                msg.resize(20 + len, 0);
                stream.read_exact(&mut msg[20..]).expect("response body");
                msg
            }
        }
    }

    /// Sends a request signed as alice (fetching a nonce first), with the
    /// attributes `add` writes; returns the response code (200 for success).
    pub fn request(
        &mut self,
        method: Method,
        add: impl FnOnce(&mut MessageWriteVec, TransactionId),
    ) -> u16 {
        let r = self.request_raw(method, add);
        let m = Message::from_bytes(&r).unwrap();
        match m.class() {
            MessageClass::Success => 200,
            _ => m.attribute::<ErrorCode>().unwrap().code(),
        }
    }

    /// As [`Self::request`], returning the response message's bytes.
    pub fn request_raw(
        &mut self,
        method: Method,
        add: impl FnOnce(&mut MessageWriteVec, TransactionId),
    ) -> Vec<u8> {
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
        self.roundtrip(&w.finish())
    }

    /// Allocate (REQUESTED-TRANSPORT UDP) or Refresh, with an optional LIFETIME.
    pub fn lifetime_request(&mut self, method: Method, lifetime: Option<u32>) -> u16 {
        self.request(method, |w, _| {
            if method == ALLOCATE {
                w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
                    .unwrap();
            }
            if let Some(l) = lifetime {
                w.add_attribute(&Lifetime::new(l)).unwrap();
            }
        })
    }
}
