//! Client links to the TURN server: UDP, TCP or TLS, and the STUN
//! request/response exchange used during setup (matched by transaction ID).

use super::*;

pub(crate) enum Link {
    Udp(UdpSocket),
    /// TCP or TLS, with the bytes read but not yet framed.
    Tcp(Stream, Vec<u8>),
}

/// A stream transport: plain TCP or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// Accepts any server certificate: the generator talks to loopback servers
/// it is benchmarking, with throwaway self-signed certificates.
#[derive(Debug)]
pub(crate) struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn tls_client() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

pub(crate) fn connect(
    a: &Args,
    tls: Option<&Arc<rustls::ClientConfig>>,
    ip: std::net::IpAddr,
) -> Result<Link> {
    Ok(match a.transport {
        Transport::Udp => {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            s.connect(a.server)?;
            Link::Udp(s)
        }
        Transport::Tcp | Transport::Tls => {
            let s = TcpStream::connect(a.server)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            let stream = match tls {
                None => Stream::Plain(s),
                Some(cfg) => {
                    let name = rustls_pki_types::ServerName::IpAddress(a.server.ip().into());
                    let mut conn = rustls::ClientConnection::new(cfg.clone(), name)
                        .map_err(|e| anyhow!("TLS: {e}"))?;
                    let mut s = s;
                    while conn.is_handshaking() {
                        conn.complete_io(&mut s).context("TLS handshake")?;
                    }
                    Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
                }
            };
            Link::Tcp(stream, Vec::new())
        }
    })
}

/// Sends a request and returns the response with its transaction ID.
/// Anything else that arrives meanwhile is dropped: a late answer to a
/// retransmission, or to a request of an earlier run on a reused port.
pub(crate) fn roundtrip(link: &mut Link, req: &[u8]) -> Result<Vec<u8>> {
    let tid = &req[8..20];
    let matches = |m: &[u8]| m.len() >= 20 && m[0] & 0xc0 == 0 && &m[8..20] == tid;
    match link {
        Link::Udp(s) => {
            // Retransmit like RFC 8489 (RTO 500 ms doubling, 4 tries).
            let mut buf = [0u8; BUF];
            let mut rto = Duration::from_millis(500);
            for _ in 0..4 {
                s.send(req)?;
                let deadline = Instant::now() + rto;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s.set_read_timeout(Some(left))?;
                    match s.recv(&mut buf) {
                        Ok(n) if matches(&buf[..n]) => return Ok(buf[..n].to_vec()),
                        Ok(_) => continue,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            break
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                rto *= 2;
            }
            bail!("no response after 4 tries")
        }
        Link::Tcp(s, _) => {
            s.write_all(req)?;
            loop {
                // A STUN message (top bits 00) or ChannelData (01): length
                // from the header, ChannelData padded to 4 over TCP.
                let mut msg = vec![0u8; 4];
                s.read_exact(&mut msg)?;
                let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
                let total = if msg[0] & 0xc0 == 0 {
                    20 + len
                } else {
                    4 + len.div_ceil(4) * 4
                };
                msg.resize(total.max(4), 0);
                s.read_exact(&mut msg[4..])?;
                if matches(&msg) {
                    return Ok(msg);
                }
            }
        }
    }
}

pub(crate) fn enlarge_buffers(fd: i32) {
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: valid fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response with the request's transaction ID and `class` bits.
    fn response(req: &[u8], tid_from: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 20];
        r[0] = 0x01; // success response class of the Binding/Allocate method
        r[1] = req[1];
        r[4..8].copy_from_slice(&req[4..8]);
        r[8..20].copy_from_slice(&tid_from[8..20]);
        r
    }

    #[test]
    fn udp_roundtrip_skips_late_answers_and_channel_data() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; BUF];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let req = buf[..n].to_vec();
            let mut other = req.clone();
            other[8] ^= 0xff; // an earlier transaction's answer
            server.send_to(&response(&req, &other), from).unwrap();
            server
                .send_to(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4], from)
                .unwrap(); // ChannelData
            server.send_to(&response(&req, &req), from).unwrap();
            req
        });
        let mut link = Link::Udp(client);
        let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
        let got = roundtrip(&mut link, &req).unwrap();
        let sent = t.join().unwrap();
        assert_eq!(&got[8..20], &sent[8..20]);
        assert_eq!(got, response(&sent, &sent));
    }

    #[test]
    fn tcp_roundtrip_skips_frames_of_other_transactions() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = vec![0u8; 20];
            c.read_exact(&mut req).unwrap();
            let len = u16::from_be_bytes([req[2], req[3]]) as usize;
            req.resize(20 + len, 0);
            c.read_exact(&mut req[20..]).unwrap();
            let mut other = req.clone();
            other[19] ^= 0x01;
            c.write_all(&response(&req, &other)).unwrap();
            // ChannelData of 5 bytes, padded to 8 over TCP.
            c.write_all(&[0x40, 0x01, 0x00, 0x05, 9, 9, 9, 9, 9, 0, 0, 0])
                .unwrap();
            c.write_all(&response(&req, &req)).unwrap();
            req
        });
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut link = Link::Tcp(Stream::Plain(s), Vec::new());
        let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
        let got = roundtrip(&mut link, &req).unwrap();
        let sent = t.join().unwrap();
        assert_eq!(got, response(&sent, &sent));
    }
}
