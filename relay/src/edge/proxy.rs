//! The PROXY protocol header (HAProxy's `send-proxy` / `send-proxy-v2`) at
//! the start of a connection from a trusted balancer: which client the
//! connection is for. Parsing is the `ppp` crate's (see docs/decisions.md);
//! this module decides what a header means for the relay.

use std::net::SocketAddr;

use ppp::PartialResult;

use crate::config::ProxyProtocol;

/// Most bytes a header may take (v2 with TLVs included). HAProxy's own
/// headers are far smaller; anything longer is treated as malformed.
pub const MAX_HEADER: usize = 1024;

/// What the start of a connection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of the header has arrived.
    Incomplete,
    /// Not a header of the expected version (or not a header at all).
    Malformed,
    /// A header of `len` bytes. `client` is the address it states, or None
    /// when it states none (v2 LOCAL, e.g. the balancer's own health check;
    /// v1 UNKNOWN; an unspecified or UNIX family): the connection then
    /// stands for its own source.
    Header {
        /// Bytes to consume.
        len: usize,
        /// The client's address.
        client: Option<SocketAddr>,
    },
}

/// Parses the `expected` header version from the first bytes of a
/// connection.
pub fn parse(expected: ProxyProtocol, buf: &[u8]) -> Parsed {
    match expected {
        ProxyProtocol::Off => Parsed::Header {
            len: 0,
            client: None,
        },
        ProxyProtocol::V1 => match ppp::v1::Header::try_from(buf) {
            Ok(h) => {
                let client = match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    ppp::v1::Addresses::Unknown => None,
                };
                Parsed::Header {
                    len: h.header.len(),
                    client,
                }
            }
            Err(e) if e.is_incomplete() && buf.len() < MAX_HEADER => Parsed::Incomplete,
            Err(_) => Parsed::Malformed,
        },
        ProxyProtocol::V2 => match ppp::v2::Header::try_from(buf) {
            Ok(h) => {
                let client = match (h.command, h.addresses) {
                    (ppp::v2::Command::Local, _) => None,
                    (_, ppp::v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (_, ppp::v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    _ => None,
                };
                if h.len() > MAX_HEADER {
                    return Parsed::Malformed;
                }
                Parsed::Header {
                    len: h.len(),
                    client,
                }
            }
            // The length field says how much is coming: too much is refused
            // before it arrives.
            Err(ppp::v2::ParseError::Partial(_, need)) if 16 + need > MAX_HEADER => {
                Parsed::Malformed
            }
            Err(e) if e.is_incomplete() => Parsed::Incomplete,
            Err(_) => Parsed::Malformed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    fn v2(command: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend(((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend(addrs);
        h.extend(tlvs);
        h
    }

    #[test]
    fn v2_tcp4_and_tcp6_give_the_client() {
        let mut h = v2(
            1,
            0x11,
            &[198, 51, 100, 7, 10, 0, 0, 1, 0x30, 0x39, 1, 187],
            &[],
        );
        let stun = [0u8, 1, 0, 0];
        h.extend(stun);
        assert_eq!(
            parse(ProxyProtocol::V2, &h),
            Parsed::Header {
                len: 28,
                client: Some("198.51.100.7:12345".parse().unwrap())
            }
        );
        let mut a6 = Vec::new();
        a6.extend(
            "2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a6.extend(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a6.extend([0x30, 0x39, 1, 187]);
        // A TLV (PP2_TYPE_UNIQUE_ID) after the addresses is skipped.
        let h = v2(1, 0x21, &a6, &[0x05, 0, 2, 0xab, 0xcd]);
        assert_eq!(
            parse(ProxyProtocol::V2, &h),
            Parsed::Header {
                len: 16 + 36 + 5,
                client: Some("[2001:db8::7]:12345".parse().unwrap())
            }
        );
    }

    #[test]
    fn v2_local_and_unspecified_state_no_client() {
        let h = v2(0, 0x00, &[], &[]);
        assert_eq!(
            parse(ProxyProtocol::V2, &h),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
    }

    #[test]
    fn partial_missing_and_oversized_headers() {
        let h = v2(
            1,
            0x11,
            &[198, 51, 100, 7, 10, 0, 0, 1, 0x30, 0x39, 1, 187],
            &[],
        );
        for cut in [1, 11, 12, 15, 16, 27] {
            assert_eq!(
                parse(ProxyProtocol::V2, &h[..cut]),
                Parsed::Incomplete,
                "{cut}"
            );
        }
        // No header at all: a STUN message, a TLS ClientHello, or v1 on a
        // v2 listener.
        assert_eq!(
            parse(
                ProxyProtocol::V2,
                &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0]
            ),
            Parsed::Malformed
        );
        assert_eq!(
            parse(
                ProxyProtocol::V2,
                &[0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3, 0, 0]
            ),
            Parsed::Malformed
        );
        assert_eq!(
            parse(
                ProxyProtocol::V2,
                b"PROXY TCP4 198.51.100.7 10.0.0.1 1 2\r\n"
            ),
            Parsed::Malformed
        );
        // Version 1 nibble, bad command, bad family.
        let mut bad = h.clone();
        bad[12] = 0x11;
        assert_eq!(parse(ProxyProtocol::V2, &bad), Parsed::Malformed);
        let mut bad = h.clone();
        bad[12] = 0x2f;
        assert_eq!(parse(ProxyProtocol::V2, &bad), Parsed::Malformed);
        let mut bad = h.clone();
        bad[13] = 0x51;
        assert_eq!(parse(ProxyProtocol::V2, &bad), Parsed::Malformed);
        // Addresses shorter than the family needs.
        let short = v2(1, 0x11, &[198, 51, 100, 7], &[]);
        assert_eq!(parse(ProxyProtocol::V2, &short), Parsed::Malformed);
        // A length field promising more than MAX_HEADER: refused at once.
        let mut big = v2(1, 0x11, &[0; 12], &[]);
        big[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse(ProxyProtocol::V2, &big[..20]), Parsed::Malformed);
    }

    #[test]
    fn v1_text_headers() {
        let h = b"PROXY TCP4 198.51.100.7 10.0.0.1 12345 443\r\n\x00\x01";
        assert_eq!(
            parse(ProxyProtocol::V1, h),
            Parsed::Header {
                len: h.len() - 2,
                client: Some("198.51.100.7:12345".parse().unwrap())
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 12345 443\r\n";
        assert_eq!(
            parse(ProxyProtocol::V1, h),
            Parsed::Header {
                len: h.len(),
                client: Some("[2001:db8::7]:12345".parse().unwrap())
            }
        );
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(ProxyProtocol::V1, h),
            Parsed::Header {
                len: h.len(),
                client: None
            }
        );
        assert_eq!(
            parse(ProxyProtocol::V1, b"PROXY TCP4 198.51"),
            Parsed::Incomplete
        );
        assert_eq!(parse(ProxyProtocol::V1, b"PRO"), Parsed::Incomplete);
        assert_eq!(
            parse(ProxyProtocol::V1, b"GET / HTTP/1.1\r\n"),
            Parsed::Malformed
        );
        assert_eq!(
            parse(ProxyProtocol::V1, b"PROXY TCP4 300.1.1.1 10.0.0.1 1 2\r\n"),
            Parsed::Malformed
        );
        assert_eq!(parse(ProxyProtocol::V1, &[b'P'; 200]), Parsed::Malformed);
        assert_eq!(
            parse(ProxyProtocol::V1, &v2(1, 0x11, &[0; 12], &[])),
            Parsed::Malformed
        );
    }
}
