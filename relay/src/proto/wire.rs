//! Hand-rolled framing for the hot path: ChannelData and Data indications are
//! written straight into a caller buffer (no allocation), and cheap header
//! checks run before the full STUN parser sees a packet.

use std::net::SocketAddr;

/// STUN magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Data indication message type (method 0x007, class indication).
const DATA_INDICATION: u16 = 0x0017;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_DATA: u16 = 0x0013;
const ATTR_FINGERPRINT: u16 = 0x8028;
/// Worst-case Data indication overhead: header, XOR-PEER-ADDRESS (IPv6), DATA
/// header, padding and FINGERPRINT.
pub const DATA_INDICATION_OVERHEAD: usize = 20 + 24 + 4 + 3 + 8;

/// Lowest channel number.
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest channel number accepted. RFC 8656 narrowed the range to 0x4FFF,
/// but RFC 5766 clients use up to 0x7FFE and coturn (server and test client)
/// treats 0x4000–0x7FFF as valid: its uclient picks channel numbers at random
/// from that whole range, so 0x7FFF is accepted too.
pub const CHANNEL_MAX: u16 = 0x7FFF;

/// What kind of frame a client packet starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// STUN message with its total length (header included).
    Stun(usize),
    /// ChannelData with channel number and total length (header included, unpadded).
    Channel(u16, usize),
    /// Neither.
    Invalid,
}

/// Classifies the start of a frame. Needs at least 4 bytes (else `Invalid`).
#[inline]
pub fn classify(data: &[u8]) -> FrameKind {
    if data.len() < 4 {
        return FrameKind::Invalid;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    match data[0] >> 6 {
        0 => {
            if len % 4 != 0 {
                return FrameKind::Invalid;
            }
            FrameKind::Stun(20 + len)
        }
        1 => {
            let ch = u16::from_be_bytes([data[0], data[1]]);
            if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&ch) {
                return FrameKind::Invalid;
            }
            FrameKind::Channel(ch, 4 + len)
        }
        _ => FrameKind::Invalid,
    }
}

/// Checks the fixed STUN header (cookie and length) of a complete message.
#[inline]
pub fn stun_header_ok(msg: &[u8]) -> bool {
    msg.len() >= 20
        && u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]) == MAGIC_COOKIE
        && u16::from_be_bytes([msg[2], msg[3]]) as usize + 20 == msg.len()
}

/// Writes a ChannelData frame; `pad` rounds it up to 4 bytes (TCP/TLS).
/// Returns the frame length, or `None` if `out` is too small.
#[inline]
pub fn write_channel_data(
    out: &mut [u8],
    channel: u16,
    payload: &[u8],
    pad: bool,
) -> Option<usize> {
    let len = 4 + payload.len();
    let total = if pad { (len + 3) & !3 } else { len };
    if out.len() < total || payload.len() > u16::MAX as usize {
        return None;
    }
    out[..2].copy_from_slice(&channel.to_be_bytes());
    out[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    out[4..len].copy_from_slice(payload);
    out[len..total].fill(0);
    Some(total)
}

fn write_xor_addr(out: &mut [u8], addr: SocketAddr, txid: &[u8; 12]) -> usize {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ 0x2112).to_be_bytes());
    match addr {
        SocketAddr::V4(a) => {
            out[1] = 1;
            for (i, b) in a.ip().octets().iter().enumerate() {
                out[4 + i] = b ^ cookie[i];
            }
            8
        }
        SocketAddr::V6(a) => {
            out[1] = 2;
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(txid);
            for (i, b) in a.ip().octets().iter().enumerate() {
                out[4 + i] = b ^ key[i];
            }
            20
        }
    }
}

/// Writes a Data indication carrying `payload` from `peer`, with FINGERPRINT
/// (coturn's client ignores indications without it).
/// Returns the message length, or `None` if `out` is too small.
pub fn write_data_indication(
    out: &mut [u8],
    txid: &[u8; 12],
    peer: SocketAddr,
    payload: &[u8],
) -> Option<usize> {
    let padded = (payload.len() + 3) & !3;
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let total = 20 + 4 + addr_len + 4 + padded + 8;
    if out.len() < total || total - 20 > u16::MAX as usize {
        return None;
    }
    out[..2].copy_from_slice(&DATA_INDICATION.to_be_bytes());
    out[2..4].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(txid);
    let mut o = 20;
    out[o..o + 2].copy_from_slice(&ATTR_XOR_PEER_ADDRESS.to_be_bytes());
    out[o + 2..o + 4].copy_from_slice(&(addr_len as u16).to_be_bytes());
    o += 4;
    o += write_xor_addr(&mut out[o..], peer, txid);
    out[o..o + 2].copy_from_slice(&ATTR_DATA.to_be_bytes());
    out[o + 2..o + 4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    o += 4;
    out[o..o + payload.len()].copy_from_slice(payload);
    out[o + payload.len()..o + padded].fill(0);
    o += padded;
    let crc = stun_types::attribute::Fingerprint::compute(&[&out[..o]]);
    let fp = u32::from_be_bytes(crc) ^ 0x5354_554e;
    out[o..o + 2].copy_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
    out[o + 2..o + 4].copy_from_slice(&4u16.to_be_bytes());
    out[o + 4..o + 8].copy_from_slice(&fp.to_be_bytes());
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_types::message::{Message, TransactionId};
    use turn_types::attribute::{Data, XorPeerAddress};

    #[test]
    fn data_indication_parses_with_stun_types() {
        for peer in ["198.51.100.7:4000", "[2001:db8::7]:4000"] {
            let peer: SocketAddr = peer.parse().unwrap();
            let txid = [7u8; 12];
            let mut buf = [0u8; 128];
            let n = write_data_indication(&mut buf, &txid, peer, b"hello").unwrap();
            let msg = Message::from_bytes(&buf[..n]).unwrap();
            assert_eq!(msg.method(), turn_types::message::DATA);
            assert_eq!(msg.class(), stun_types::message::MessageClass::Indication);
            let tid: TransactionId = msg.transaction_id();
            let addr = msg.attribute::<XorPeerAddress>().unwrap().addr(tid);
            assert_eq!(addr, peer);
            assert_eq!(msg.attribute::<Data>().unwrap().data(), b"hello");
        }
        assert!(write_data_indication(
            &mut [0u8; 20],
            &[0; 12],
            "1.2.3.4:5".parse().unwrap(),
            b"x"
        )
        .is_none());
    }

    #[test]
    fn channel_data_framing() {
        let mut buf = [0u8; 16];
        assert_eq!(
            write_channel_data(&mut buf, 0x4001, b"abcde", false),
            Some(9)
        );
        assert_eq!(classify(&buf), FrameKind::Channel(0x4001, 9));
        assert_eq!(
            write_channel_data(&mut buf, 0x4001, b"abcde", true),
            Some(12)
        );
        assert!(write_channel_data(&mut buf, 0x4001, &[0; 13], false).is_none());
        assert_eq!(classify(&[0x7f, 0xff, 0, 0]), FrameKind::Channel(0x7fff, 4));
        assert_eq!(classify(&[0x50, 0, 0, 0]), FrameKind::Channel(0x5000, 4));
        assert_eq!(classify(&[0x80, 0, 0, 0]), FrameKind::Invalid);
        assert_eq!(classify(&[0, 1, 0, 3]), FrameKind::Invalid);
        assert_eq!(classify(&[0, 1, 0, 8]), FrameKind::Stun(28));
        assert_eq!(classify(&[0, 1]), FrameKind::Invalid);
    }
}
