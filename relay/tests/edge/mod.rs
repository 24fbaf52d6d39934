//! Helpers of the transport/reload tests: a TURN client over any link (UDP,
//! TCP, TLS) with long-term or TURN REST credentials, a rustls client, and
//! config files for relays started from a file. All traffic on loopback.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use geosteer_relay::RelayConfig;
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username, XorMappedAddress};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use turn_types::attribute::{ChannelNumber, RequestedTransport, XorPeerAddress};
use turn_types::message::{ALLOCATE, CHANNEL_BIND};

pub const REALM: &str = "geosteer.test";

/// One request, one response.
pub trait Link {
    fn roundtrip(&mut self, req: &[u8]) -> Vec<u8>;
}

/// A UDP client socket and the relay's address.
pub struct Udp(pub UdpSocket, pub SocketAddr);

impl Link for Udp {
    fn roundtrip(&mut self, req: &[u8]) -> Vec<u8> {
        self.0.send_to(req, self.1).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = self.0.recv_from(&mut buf).expect("reply");
            // Skip ChannelData still in flight.
            if buf[0] < 0x40 {
                return buf[..n].to_vec();
            }
        }
    }
}

impl Udp {
    pub fn new(server: SocketAddr) -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Udp(s, server)
    }
}

/// Any byte stream (TCP, TLS): RFC 8656 framing, STUN messages only.
pub struct Stream<S: Read + Write>(pub S);

impl<S: Read + Write> Link for Stream<S> {
    fn roundtrip(&mut self, req: &[u8]) -> Vec<u8> {
        self.0.write_all(req).unwrap();
        self.0.flush().unwrap();
        let mut msg = vec![0u8; 20];
        self.0.read_exact(&mut msg).expect("response header");
        let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
        msg.resize(20 + len, 0);
        self.0.read_exact(&mut msg[20..]).expect("response body");
        msg
    }
}

pub fn tcp(server: SocketAddr) -> Stream<TcpStream> {
    let s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    Stream(s)
}

/// A TURN client with credentials.
pub struct Client<L: Link> {
    pub link: L,
    pub user: String,
    pub pass: String,
    nonce: String,
}

/// Outcome of a request: 200 or the error code, and the XOR-MAPPED-ADDRESS.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub mapped: Option<SocketAddr>,
}

impl<L: Link> Client<L> {
    pub fn new(link: L, user: &str, pass: &str) -> Self {
        Self {
            link,
            user: user.into(),
            pass: pass.into(),
            nonce: String::new(),
        }
    }

    pub fn alice(link: L) -> Self {
        Self::new(link, "alice", "wonderland")
    }

    pub fn rest(link: L, secret: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (u, p) = geosteer_relay::auth::mint(secret.as_bytes(), 3600, Some("bob"), now);
        Self::new(link, &u, &p)
    }

    pub fn request(
        &mut self,
        method: Method,
        add: impl FnOnce(&mut MessageWriteVec, TransactionId),
    ) -> Reply {
        if self.nonce.is_empty() {
            let r = self
                .link
                .roundtrip(&Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish());
            let m = Message::from_bytes(&r).unwrap();
            self.nonce = m.attribute::<Nonce>().unwrap().nonce().to_string();
        }
        let mut w = Message::builder_request(method, MessageWriteVec::new());
        let tid = w.transaction_id();
        add(&mut w, tid);
        w.add_attribute(&Username::new(&self.user).unwrap())
            .unwrap();
        w.add_attribute(&Realm::new(REALM).unwrap()).unwrap();
        w.add_attribute(&Nonce::new(&self.nonce).unwrap()).unwrap();
        let creds =
            LongTermKeyCredentials::new(self.user.clone(), self.pass.clone(), REALM.into()).into();
        w.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
            .unwrap();
        w.add_fingerprint().unwrap();
        let r = self.link.roundtrip(&w.finish());
        let m = Message::from_bytes(&r).unwrap();
        let mapped = m
            .attribute::<XorMappedAddress>()
            .ok()
            .map(|a| a.addr(m.transaction_id()));
        let code = match m.class() {
            MessageClass::Success => 200,
            _ => {
                let code = m.attribute::<ErrorCode>().unwrap().code();
                if code == 438 {
                    if let Ok(n) = m.attribute::<Nonce>() {
                        self.nonce = n.nonce().to_string();
                    }
                }
                code
            }
        };
        Reply { code, mapped }
    }

    pub fn allocate(&mut self) -> Reply {
        self.request(ALLOCATE, |w, _| {
            w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
                .unwrap();
        })
    }

    pub fn channel_bind(&mut self, ch: u16, peer: SocketAddr) -> u16 {
        self.request(CHANNEL_BIND, |w, tid| {
            w.add_attribute(&ChannelNumber::new(ch)).unwrap();
            w.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        })
        .code
    }
}

/// ChannelData frame.
pub fn channel_data(ch: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + payload.len() + 3);
    f.extend_from_slice(&ch.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() % 4 != 0 {
        f.push(0);
    }
    f
}

/// A UDP allocation (alice) bound to a local peer on channel 0x4000; each
/// `echo` sends one packet client → relay → peer and back peer → relay →
/// client, and reports whether both legs arrived.
pub struct Echo {
    pub client: Client<Udp>,
    pub peer: UdpSocket,
    pub relayed: SocketAddr,
    seq: u32,
}

impl Echo {
    pub fn new(server: SocketAddr) -> Self {
        Self::with(Client::alice(Udp::new(server)))
    }

    pub fn with(mut client: Client<Udp>) -> Self {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(client.allocate().code, 200, "Allocate");
        assert_eq!(
            client.channel_bind(0x4000, peer.local_addr().unwrap()),
            200,
            "ChannelBind"
        );
        Self {
            client,
            peer,
            relayed: SocketAddr::from(([0, 0, 0, 0], 0)),
            seq: 0,
        }
    }

    /// One round trip; false when a leg was lost (2 s without it).
    pub fn echo(&mut self) -> bool {
        self.seq += 1;
        let payload = self.seq.to_be_bytes();
        let sock = &self.client.link.0;
        sock.send_to(&channel_data(0x4000, &payload), self.client.link.1)
            .unwrap();
        let mut buf = [0u8; 2048];
        let from = loop {
            match self.peer.recv_from(&mut buf) {
                Ok((n, from)) if n == 4 && buf[..4] == payload => break from,
                Ok(_) => continue, // an earlier, late packet
                Err(_) => return false,
            }
        };
        self.relayed = from;
        self.peer.send_to(&payload, from).unwrap();
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 8 && buf[..2] == [0x40, 0x00] && buf[4..8] == payload => {
                    return true
                }
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Writes `cfg` as TOML to `path`.
pub fn write_config(path: &Path, cfg: &RelayConfig) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, toml::to_string(cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Starts a relay from a config file made by `make(port)`, retrying port races.
pub fn start_file(
    dir: &Path,
    mut make: impl FnMut(u16) -> RelayConfig,
) -> (geosteer_relay::RelayHandle, PathBuf, RelayConfig) {
    let path = dir.join("relay.toml");
    let mut last = None;
    for _ in 0..5 {
        let cfg = make(super::common::free_port());
        write_config(&path, &cfg);
        match geosteer_relay::server::start_file(&path) {
            Ok(h) => return (h, path, cfg),
            Err(e) => last = Some(e),
        }
    }
    panic!("relay did not start: {last:?}");
}

/// A self-signed certificate with its own common name (to tell two apart).
pub fn cert_pair(dir: &Path, tag: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("relay {tag}"));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = dir.join(format!("{tag}-cert.pem"));
    let k = dir.join(format!("{tag}-key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().to_vec())
}

/// A rustls client trusting any certificate (tests check which one they got).
pub fn tls_client(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct Any(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects with TLS and completes the handshake.
pub fn tls_connect(server: SocketAddr, alpn: &[&[u8]]) -> Tls {
    tls_connect_from(TcpStream::connect(server).unwrap(), alpn)
}

pub fn tls_connect_from(tcp: TcpStream, alpn: &[&[u8]]) -> Tls {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls_client(alpn), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// The leaf certificate a TLS server presented.
pub fn served_cert(s: &Tls) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}
