//! Allocation setup and release with long-term credentials.

use super::*;

pub(crate) struct Alloc {
    pub(crate) link: Link,
    pub(crate) relayed: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) channel: u16,
    pub(crate) nonce: String,
    pub(crate) sent: u64,
    pub(crate) received: u64,
}

pub(crate) struct Creds {
    pub(crate) user: String,
    pub(crate) realm: String,
    pub(crate) key: stun_types::message::MessageIntegrityCredentials,
}

/// Opens one allocation and binds its channel (or permission) to `peer`.
pub(crate) fn open(
    a: &Args,
    c: &Creds,
    tls: Option<&Arc<rustls::ClientConfig>>,
    ip: std::net::IpAddr,
    peer: SocketAddr,
    i: usize,
) -> Result<Alloc> {
    let mut link = connect(a, tls, ip)?;
    // Fetch a nonce with an unauthenticated Allocate. A 437 means the server
    // still holds an allocation for this 5-tuple: the kernel handed out a
    // client port an earlier run (or a server's late cleanup) still owns.
    // Take another port, keeping the old socket until then so it is not
    // handed out again.
    let mut stale = Vec::new();
    let nonce = loop {
        let r = roundtrip(
            &mut link,
            &Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish(),
        )?;
        let m = Message::from_bytes(&r).map_err(|e| anyhow!("bad response: {e:?}"))?;
        let code = m.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0);
        if code == 437 && matches!(link, Link::Udp(_)) && stale.len() < 8 {
            stale.push(std::mem::replace(&mut link, connect(a, tls, ip)?));
            continue;
        }
        match m.attribute::<Nonce>() {
            Ok(n) => break n.nonce().to_string(),
            Err(_) => bail!(
                "first Allocate answered {} (code {code}) without a NONCE",
                if m.class() == MessageClass::Success {
                    "success"
                } else {
                    "error"
                }
            ),
        }
    };
    drop(stale);
    let mut al = Alloc {
        link,
        relayed: peer,
        peer_addr: peer,
        nonce: String::new(),
        channel: wire::CHANNEL_MIN + (i % 0x0fff) as u16,
        sent: 0,
        received: 0,
    };
    let r = signed(&mut al.link, c, &nonce, ALLOCATE, |w, _| {
        w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))?;
        w.add_attribute(&Lifetime::new(3600))?;
        Ok(())
    })?;
    let m = Message::from_bytes(&r).map_err(|e| anyhow!("{e:?}"))?;
    al.relayed = m
        .attribute::<XorRelayedAddress>()
        .map_err(|_| anyhow!("no XOR-RELAYED-ADDRESS"))?
        .addr(m.transaction_id());
    al.nonce = nonce.clone();
    let ch = al.channel;
    match a.mode {
        Mode::Channel => signed(&mut al.link, c, &nonce, CHANNEL_BIND, |w, tid| {
            w.add_attribute(&ChannelNumber::new(ch))?;
            w.add_attribute(&XorPeerAddress::new(peer, tid))?;
            Ok(())
        })?,
        Mode::Send => signed(&mut al.link, c, &nonce, CREATE_PERMISSION, |w, tid| {
            w.add_attribute(&XorPeerAddress::new(peer, tid))?;
            Ok(())
        })?,
    };
    match &al.link {
        Link::Udp(s) => {
            s.set_nonblocking(true)?;
            enlarge_buffers(s.as_raw_fd());
        }
        Link::Tcp(s, _) => s.tcp().set_nonblocking(true)?,
    }
    Ok(al)
}

/// What a request's attribute writer returns.
pub(crate) type Written = std::result::Result<(), stun_types::message::StunWriteError>;

/// A signed request; the response whatever its class.
pub(crate) fn signed_raw(
    link: &mut Link,
    c: &Creds,
    nonce: &str,
    method: Method,
    add: impl FnOnce(&mut MessageWriteVec, TransactionId) -> Written,
) -> Result<Vec<u8>> {
    let mut w = Message::builder_request(method, MessageWriteVec::new());
    let tid = w.transaction_id();
    add(&mut w, tid).map_err(|e| anyhow!("{e:?}"))?;
    w.add_attribute(&Username::new(&c.user).map_err(|e| anyhow!("{e:?}"))?)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_attribute(&Realm::new(&c.realm).map_err(|e| anyhow!("{e:?}"))?)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_attribute(&Nonce::new(nonce).map_err(|e| anyhow!("{e:?}"))?)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_message_integrity(&c.key, IntegrityAlgorithm::Sha1)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_fingerprint().map_err(|e| anyhow!("{e:?}"))?;
    roundtrip(link, &w.finish())
}

/// A signed request that must succeed.
pub(crate) fn signed(
    link: &mut Link,
    c: &Creds,
    nonce: &str,
    method: Method,
    add: impl FnOnce(&mut MessageWriteVec, TransactionId) -> Written,
) -> Result<Vec<u8>> {
    let r = signed_raw(link, c, nonce, method, add)?;
    let m = Message::from_bytes(&r).map_err(|e| anyhow!("bad response: {e:?}"))?;
    if m.class() != MessageClass::Success {
        let code = m.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0);
        bail!("{method:?} failed with {code}");
    }
    Ok(r)
}

/// Ends an allocation (Refresh with LIFETIME 0) and waits for the answer, so
/// the next run reusing the same client port finds no stale allocation (a
/// 438 Stale Nonce is retried once with the new nonce). TCP allocations end
/// with their connection anyway.
pub(crate) fn release(al: &mut Alloc, c: &Creds) {
    refresh(al, c, 0);
}

/// Refreshes a UDP allocation to `lifetime` seconds (0 ends it); returns
/// whether the relay said yes. TCP/TLS allocations are left alone (false).
pub(crate) fn refresh(al: &mut Alloc, c: &Creds, lifetime: u32) -> bool {
    let Link::Udp(s) = &al.link else {
        return false;
    };
    if s.set_nonblocking(false).is_err() {
        return false;
    }
    let mut nonce = al.nonce.clone();
    for _ in 0..2 {
        let r = signed_raw(
            &mut al.link,
            c,
            &nonce,
            turn_types::message::REFRESH,
            |w, _| {
                w.add_attribute(&Lifetime::new(lifetime))?;
                Ok(())
            },
        );
        let Ok(r) = r else { return false };
        let Ok(m) = Message::from_bytes(&r) else {
            return false;
        };
        if m.class() == MessageClass::Success {
            al.nonce = nonce;
            return true;
        }
        match (
            m.attribute::<ErrorCode>().map(|e| e.code()),
            m.attribute::<Nonce>(),
        ) {
            (Ok(438), Ok(n)) => nonce = n.nonce().to_string(),
            _ => return false,
        }
    }
    false
}
