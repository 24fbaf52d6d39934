//! Zero-allocation parsing of DNS queries (RFC 1035 §4, EDNS RFC 6891,
//! Client Subnet RFC 7871).
//!
//! This is the first thing every packet meets, so it is strict and cheap:
//! one pass, no heap, every length checked. What it rejects is reported as
//! [`WireError`] so the shell can answer FORMERR (or drop what cannot be
//! answered at all).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;

/// A set of lower-case wire names, probed with query name bytes (ahash).
pub type NameSet = std::collections::HashSet<Box<[u8]>, ahash::RandomState>;

/// Lower-case wire form of a name.
pub fn wire_name(n: &Name) -> Box<[u8]> {
    let mut n = n.to_lowercase();
    n.set_fqdn(true);
    n.to_bytes().unwrap_or_default().into_boxed_slice()
}

/// Fixed header length.
pub const HEADER_LEN: usize = 12;
/// RR type of the EDNS pseudo-record.
pub const TYPE_OPT: u16 = 41;
/// EDNS option code of Client Subnet.
pub const OPT_ECS: u16 = 8;
/// EDNS option code of DNS COOKIE (RFC 7873).
pub const OPT_COOKIE: u16 = 10;

/// The Client Subnet option of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    /// Address with bits beyond `source` cleared.
    pub addr: IpAddr,
    /// SOURCE PREFIX-LENGTH.
    pub source: u8,
}

/// The EDNS part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub payload: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// Client Subnet, if sent.
    pub ecs: Option<Ecs>,
    /// DNS COOKIE option (RFC 7873), if sent: its bytes (client cookie, then
    /// the server cookie if any) and their length (8 or 16..=40).
    pub cookie: Option<([u8; 40], u8)>,
}

/// A parsed query. Names are kept as wire bytes; `qname_lower` is the
/// lower-cased copy used for lookups, the original (for case-preserving echo)
/// is at `query[HEADER_LEN..question_end]`.
#[derive(Clone)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// Opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired (copied back).
    pub rd: bool,
    /// Checking disabled (copied back).
    pub cd: bool,
    /// Lower-cased question name, wire format.
    qname: [u8; 255],
    qname_len: u8,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// Byte offset just past the question section.
    pub question_end: usize,
    /// EDNS, when an OPT record was present.
    pub edns: Option<Edns>,
}

impl Query {
    /// The question name, lower-cased, in wire format.
    #[inline]
    pub fn qname_lower(&self) -> &[u8] {
        &self.qname[..self.qname_len as usize]
    }
}

/// Why a packet is not an answerable query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Too short for a header, or a response: drop silently.
    Drop,
    /// Header readable but the rest malformed: answer FORMERR with this id.
    FormErr {
        /// The query's id.
        id: u16,
        /// Its opcode.
        opcode: u8,
        /// Its RD bit.
        rd: bool,
    },
    /// A well-formed message whose opcode we do not implement.
    NotImp {
        /// The query's id.
        id: u16,
        /// Its opcode.
        opcode: u8,
        /// Its RD bit.
        rd: bool,
    },
}

#[inline]
fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Parses a query. Accepts exactly one question, no answer/authority
/// records, and at most one OPT in the additional section (other additional
/// records are skipped).
pub fn parse_query(b: &[u8]) -> Result<Query, WireError> {
    if b.len() < HEADER_LEN {
        return Err(WireError::Drop);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let flags = u16::from_be_bytes([b[2], b[3]]);
    if flags & 0x8000 != 0 {
        return Err(WireError::Drop); // a response: never answer (reflection loops)
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let rd = flags & 0x0100 != 0;
    let formerr = WireError::FormErr { id, opcode, rd };
    if opcode != 0 {
        return Err(WireError::NotImp { id, opcode, rd });
    }
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let ns = u16::from_be_bytes([b[8], b[9]]);
    let ar = u16::from_be_bytes([b[10], b[11]]);
    if qd != 1 || an != 0 || ns != 0 {
        return Err(formerr);
    }
    let mut q = Query {
        id,
        opcode,
        rd,
        cd: flags & 0x0010 != 0,
        qname: [0; 255],
        qname_len: 0,
        qtype: 0,
        qclass: 0,
        question_end: 0,
        edns: None,
    };
    // Question name: uncompressed labels.
    let mut i = HEADER_LEN;
    let mut n = 0usize;
    loop {
        let len = *b.get(i).ok_or(formerr)? as usize;
        if len & 0xC0 != 0 {
            return Err(formerr); // compression or extended label types in a question
        }
        if n + len + 1 > 255 {
            return Err(formerr);
        }
        let label = b.get(i..i + 1 + len).ok_or(formerr)?;
        q.qname[n] = len as u8;
        for (d, s) in q.qname[n + 1..n + 1 + len].iter_mut().zip(&label[1..]) {
            *d = s.to_ascii_lowercase();
        }
        n += len + 1;
        i += len + 1;
        if len == 0 {
            break;
        }
    }
    q.qname_len = n as u8;
    q.qtype = u16_at(b, i).ok_or(formerr)?;
    q.qclass = u16_at(b, i + 2).ok_or(formerr)?;
    i += 4;
    q.question_end = i;
    for _ in 0..ar {
        let (next, edns) = parse_additional(b, i).ok_or(formerr)?;
        if let Some(e) = edns {
            if q.edns.is_some() {
                return Err(formerr); // RFC 6891 §6.1.1: more than one OPT
            }
            q.edns = Some(e.map_err(|_| formerr)?);
        }
        i = next;
    }
    Ok(q)
}

/// Skips one additional record; returns the parsed OPT if it is one.
#[allow(clippy::type_complexity)]
fn parse_additional(b: &[u8], mut i: usize) -> Option<(usize, Option<Result<Edns, ()>>)> {
    let name_start = i;
    // Owner name (may be compressed in non-OPT records).
    loop {
        let len = *b.get(i)?;
        if len & 0xC0 == 0xC0 {
            b.get(i + 1)?;
            i += 2;
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        i += 1 + len as usize;
        if len == 0 {
            break;
        }
    }
    let rtype = u16_at(b, i)?;
    let class = u16_at(b, i + 2)?;
    let ttl = [
        *b.get(i + 4)?,
        *b.get(i + 5)?,
        *b.get(i + 6)?,
        *b.get(i + 7)?,
    ];
    let rdlen = u16_at(b, i + 8)? as usize;
    let rdata = b.get(i + 10..i + 10 + rdlen)?;
    let next = i + 10 + rdlen;
    if rtype != TYPE_OPT {
        return Some((next, None));
    }
    if i - name_start != 1 || b[name_start] != 0 {
        return Some((next, Some(Err(())))); // OPT owner must be the root
    }
    Some((next, Some(parse_opt(class, ttl, rdata))))
}

fn parse_opt(payload: u16, ttl: [u8; 4], rdata: &[u8]) -> Result<Edns, ()> {
    let mut e = Edns {
        payload,
        version: ttl[1],
        dnssec_ok: ttl[2] & 0x80 != 0,
        ecs: None,
        cookie: None,
    };
    let mut j = 0;
    while j < rdata.len() {
        let code = u16_at(rdata, j).ok_or(())?;
        let len = u16_at(rdata, j + 2).ok_or(())? as usize;
        let data = rdata.get(j + 4..j + 4 + len).ok_or(())?;
        if code == OPT_ECS {
            if e.ecs.is_some() {
                return Err(());
            }
            e.ecs = Some(parse_ecs(data)?);
        } else if code == OPT_COOKIE {
            // RFC 7873 §5.2.2: 8 bytes, or 16..=40; anything else is FORMERR.
            if e.cookie.is_some() || !(len == 8 || (16..=40).contains(&len)) {
                return Err(());
            }
            let mut c = [0u8; 40];
            c[..len].copy_from_slice(data);
            e.cookie = Some((c, len as u8));
        }
        j += 4 + len;
    }
    Ok(e)
}

/// RFC 7871 §6: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH (0 in
/// queries), ADDRESS truncated to ceil(source/8) bytes with zero padding bits.
fn parse_ecs(d: &[u8]) -> Result<Ecs, ()> {
    if d.len() < 4 {
        return Err(());
    }
    let family = u16::from_be_bytes([d[0], d[1]]);
    let source = d[2];
    let scope = d[3];
    let addr = &d[4..];
    if scope != 0 || addr.len() != (source as usize).div_ceil(8) {
        return Err(());
    }
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return Err(()),
    };
    if source > max {
        return Err(());
    }
    if let Some(&last) = addr.last() {
        let used = source % 8;
        if used != 0 && last & (0xFF >> used) != 0 {
            return Err(()); // bits beyond the source prefix must be zero
        }
    }
    let addr = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(Ecs { addr, source })
}

/// The DO bit of the OPT record in a message that [`parse_query`] rejected,
/// when the message's sections can still be walked and one of its
/// additional records is an OPT owned by the root: error replies then carry
/// an OPT too (RFC 6891 §7). `None` when there is no usable OPT.
pub fn scan_opt(b: &[u8]) -> Option<bool> {
    let count = |i| u16_at(b, i).map(usize::from);
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut i = HEADER_LEN;
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
    }
    for k in 0..an + ns + ar {
        let start = i;
        i = skip_name(b, i)?;
        let rtype = u16_at(b, i)?;
        let ttl_flags = u16_at(b, i + 6)?;
        let rdlen = u16_at(b, i + 8)? as usize;
        b.get(i + 10..i + 10 + rdlen)?;
        if k >= an + ns && rtype == TYPE_OPT && i == start + 1 {
            return Some(ttl_flags & 0x8000 != 0);
        }
        i += 10 + rdlen;
    }
    None
}

/// The offset just past the (possibly compressed) name at `i`.
fn skip_name(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *b.get(i)?;
        match len & 0xC0 {
            0xC0 => {
                b.get(i + 1)?;
                return Some(i + 2);
            }
            0 if len == 0 => return Some(i + 1),
            0 => i += 1 + len as usize,
            _ => return None,
        }
    }
}

/// Bytes of the ECS option [`write_ecs`] writes for `e`.
pub fn ecs_option_len(e: &Ecs) -> usize {
    8 + (e.source as usize).div_ceil(8)
}

/// Appends the ECS option for `ecs` with `scope` to the OPT record that ends
/// `out`, adding its length to the RDLEN at `rdlen_at`.
pub fn append_ecs(out: &mut Vec<u8>, rdlen_at: usize, ecs: &Ecs, scope: u8) {
    write_ecs(out, ecs, scope);
    let old = u16::from_be_bytes([out[rdlen_at], out[rdlen_at + 1]]);
    let new = old + ecs_option_len(ecs) as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&new.to_be_bytes());
}

/// Writes an ECS option (code, length, family, source, scope, address) into `out`.
pub fn write_ecs(out: &mut Vec<u8>, ecs: &Ecs, scope: u8) {
    let (family, bytes): (u16, [u8; 16]) = match ecs.addr {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            (1, o)
        }
        IpAddr::V6(a) => (2, a.octets()),
    };
    let n = (ecs.source as usize).div_ceil(8);
    out.extend_from_slice(&OPT_ECS.to_be_bytes());
    out.extend_from_slice(&((4 + n) as u16).to_be_bytes());
    out.extend_from_slice(&family.to_be_bytes());
    out.push(ecs.source);
    out.push(scope);
    out.extend_from_slice(&bytes[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut v = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            opt.is_some() as u8,
        ];
        v.extend_from_slice(name);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&[0, 1]);
        if let Some(o) = opt {
            v.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0]);
            v.extend_from_slice(&(o.len() as u16).to_be_bytes());
            v.extend_from_slice(o);
        }
        v
    }

    const NAME: &[u8] = b"\x04TuRn\x07example\x03com\x00";

    #[test]
    fn parses_plain_query_lowercasing_the_name() {
        let q = parse_query(&query(NAME, 1, None)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.qname_lower(), b"\x04turn\x07example\x03com\x00");
        assert_eq!((q.qtype, q.qclass), (1, 1));
        assert_eq!(q.question_end, 12 + NAME.len() + 4);
        assert!(q.edns.is_none());
    }

    #[test]
    fn parses_edns_and_ecs() {
        let ecs = [0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69];
        let q = parse_query(&query(NAME, 28, Some(&ecs))).unwrap();
        let e = q.edns.unwrap();
        assert_eq!(e.payload, 1232);
        assert!(e.dnssec_ok);
        assert_eq!(
            e.ecs,
            Some(Ecs {
                addr: "81.2.69.0".parse().unwrap(),
                source: 24
            })
        );
    }

    #[test]
    fn rejects_bad_ecs() {
        // scope non-zero, wrong address length, dirty bits, bad family, prefix too long
        for ecs in [
            &[0, 8, 0, 7, 0, 1, 24, 5, 81, 2, 69][..],
            &[0, 8, 0, 6, 0, 1, 24, 0, 81, 2],
            &[0, 8, 0, 7, 0, 1, 20, 0, 81, 2, 69],
            &[0, 8, 0, 7, 0, 3, 24, 0, 81, 2, 69],
            &[0, 8, 0, 8, 0, 1, 33, 0, 81, 2, 69, 1],
        ] {
            let r = parse_query(&query(NAME, 1, Some(ecs)));
            assert!(
                matches!(r, Err(WireError::FormErr { id: 0x1234, .. })),
                "{ecs:?}"
            );
        }
    }

    #[test]
    fn ecs_round_trip() {
        let e = Ecs {
            addr: "2001:db8:1::".parse().unwrap(),
            source: 48,
        };
        let mut v = Vec::new();
        write_ecs(&mut v, &e, 32);
        assert_eq!(&v[..4], &[0, 8, 0, 10]);
        assert_eq!(parse_ecs(&v[4..]).map(|_| ()), Err(())); // scope set: not a valid query
        v[7] = 0;
        assert_eq!(parse_ecs(&v[4..]), Ok(e));
    }

    #[test]
    fn never_panics_on_truncations_or_garbage() {
        let full = query(NAME, 1, Some(&[0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69]));
        for n in 0..full.len() {
            let _ = parse_query(&full[..n]);
        }
        let mut x: u32 = 1;
        for _ in 0..20_000 {
            let mut p = full.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % p.len();
                p[i] = (x >> 8) as u8;
            }
            let _ = parse_query(&p);
        }
    }

    #[test]
    fn responses_are_dropped_and_other_opcodes_not_implemented() {
        let mut p = query(NAME, 1, None);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p).err(), Some(WireError::Drop));
        let mut p = query(NAME, 1, None);
        p[2] = 0x28; // UPDATE
        assert!(matches!(
            parse_query(&p),
            Err(WireError::NotImp { opcode: 5, .. })
        ));
        assert_eq!(parse_query(&[0; 5]).err(), Some(WireError::Drop));
    }
}
