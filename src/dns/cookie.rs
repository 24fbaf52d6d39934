//! DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018):
//! Version 1, three reserved bytes, a 32-bit timestamp and
//! SipHash-2-4(client cookie | version | reserved | timestamp | client IP)
//! under a 16-byte secret shared by every node of a deployment, so that a
//! cookie issued by one node is valid at all of them. A previous secret is
//! still accepted while a rotation rolls out.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// Server cookies older than this are not valid (RFC 9018 §4.3), seconds.
const MAX_AGE: u32 = 3600;
/// Server cookies from this far in the future are still valid (clock skew).
const MAX_AHEAD: u32 = 300;
/// Length of our COOKIE option data: client (8) + server (16).
pub const OPTION_DATA_LEN: usize = 24;
/// Bytes the COOKIE option adds to a response (code, length, data).
pub const OPTION_LEN: usize = 4 + OPTION_DATA_LEN;

/// The secrets in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieKeys {
    /// Signs new server cookies and validates.
    pub current: [u8; 16],
    /// Also validates (rotation).
    pub previous: Option<[u8; 16]>,
}

/// Parses a 32-hex-digit secret.
pub fn parse_secret(s: &str) -> Result<[u8; 16], String> {
    let s = s.trim();
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be 32 hexadecimal digits (16 bytes)".into());
    }
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(k)
}

fn hash(key: &[u8; 16], client: &[u8], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(key);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    h.finish().to_le_bytes()
}

impl CookieKeys {
    /// The server cookie for `client` (8 bytes) from `ip` at `now` (Unix seconds).
    pub fn server_cookie(&self, client: &[u8], ip: IpAddr, now: u32) -> [u8; 16] {
        let mut head = [1u8, 0, 0, 0, 0, 0, 0, 0];
        head[4..].copy_from_slice(&now.to_be_bytes());
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&head);
        out[8..].copy_from_slice(&hash(&self.current, client, &head, ip));
        out
    }

    /// Whether `cookie` (the whole option: client then server) carries a
    /// server cookie we issued to `ip`, still fresh at `now`.
    pub fn valid(&self, cookie: &[u8], ip: IpAddr, now: u32) -> bool {
        if cookie.len() != 24 || cookie[8] != 1 || cookie[9..12] != [0, 0, 0] {
            return false;
        }
        let ts = u32::from_be_bytes([cookie[12], cookie[13], cookie[14], cookie[15]]);
        let age = now.wrapping_sub(ts);
        let ahead = ts.wrapping_sub(now);
        if age > MAX_AGE && ahead > MAX_AHEAD {
            return false;
        }
        let head: [u8; 8] = cookie[8..16].try_into().expect("8 bytes");
        let (client, mac) = (&cookie[..8], &cookie[16..24]);
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|k| hash(k, client, &head, ip) == mac)
    }
}

/// Appends our COOKIE option for `client` to the response in `out`, whose
/// OPT record is last with its RDLEN at `rdlen_at`.
pub fn append(out: &mut Vec<u8>, rdlen_at: usize, client: &[u8], server: &[u8; 16]) {
    out.extend_from_slice(&super::wire::OPT_COOKIE.to_be_bytes());
    out.extend_from_slice(&(OPTION_DATA_LEN as u16).to_be_bytes());
    out.extend_from_slice(&client[..8]);
    out.extend_from_slice(server);
    let old = u16::from_be_bytes([out[rdlen_at], out[rdlen_at + 1]]);
    let new = old + OPTION_LEN as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&new.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CookieKeys {
        CookieKeys {
            current: parse_secret("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap(),
            previous: None,
        }
    }

    #[test]
    fn rfc9018_appendix_a1_test_vector() {
        // RFC 9018 A.1: client cookie 2464c4abcf10c957 from 198.51.100.100,
        // timestamp 1559731985, secret e5e973e5a6b2a43f48e7dc849e37bfcf.
        let client = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
        let sc = keys().server_cookie(&client, "198.51.100.100".parse().unwrap(), 1_559_731_985);
        let hex: String = sc.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "010000005cf79f111f8130c3eee29480");
    }

    #[test]
    fn validity_by_address_age_secret_and_rotation() {
        let k = keys();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let client = [7u8; 8];
        let mut opt = client.to_vec();
        opt.extend_from_slice(&k.server_cookie(&client, ip, 1_000_000));
        assert!(k.valid(&opt, ip, 1_000_000));
        assert!(k.valid(&opt, ip, 1_000_000 + 3600));
        assert!(!k.valid(&opt, ip, 1_000_000 + 3601), "too old");
        assert!(k.valid(&opt, ip, 1_000_000 - 300));
        assert!(!k.valid(&opt, ip, 1_000_000 - 301), "too far ahead");
        assert!(!k.valid(&opt, "2001:db8::2".parse().unwrap(), 1_000_000));
        assert!(!k.valid(&opt[..8], ip, 1_000_000), "client cookie only");
        let mut bad = opt.clone();
        bad[20] ^= 1;
        assert!(!k.valid(&bad, ip, 1_000_000));
        // Rotation: a new secret with the old one as previous still accepts it.
        let rotated = CookieKeys {
            current: [9; 16],
            previous: Some(k.current),
        };
        assert!(rotated.valid(&opt, ip, 1_000_000));
        let other = CookieKeys {
            current: [9; 16],
            previous: None,
        };
        assert!(!other.valid(&opt, ip, 1_000_000));
    }

    #[test]
    fn secrets_must_be_32_hex_digits() {
        assert!(parse_secret("00112233445566778899aabbccddeeff").is_ok());
        assert!(parse_secret("0011").is_err());
        assert!(parse_secret("zz112233445566778899aabbccddeeff").is_err());
    }
}
