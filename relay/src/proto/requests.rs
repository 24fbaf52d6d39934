//! STUN requests: Binding, and the authenticated TURN requests Allocate,
//! Refresh, CreatePermission and ChannelBind.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use stun_types::attribute::{
    AlternateServer, ErrorCode, MessageIntegrity, MessageIntegritySha256, Nonce, Realm, Software,
    UnknownAttributes, Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageHeader, MessageType,
    MessageWrite, MessageWriteExt, MessageWriteVec, BINDING,
};
use stun_types::prelude::*;
use stun_types::AddressFamily;
use turn_types::attribute::{
    AdditionalAddressFamily, AddressErrorCode, ChannelNumber, DontFragment, EvenPort, Lifetime,
    RequestedAddressFamily, RequestedTransport, ReservationToken, XorPeerAddress,
    XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};

use super::wire::{CHANNEL_MAX, CHANNEL_MIN};
use super::{
    secs, AllocId, Allocation, Channel, ClientId, Clock, Family, Io, RelayError, RelayRequest,
    Server,
};
use crate::auth::{AuthFailure, NonceCheck};
use crate::limits::{QuotaError, TokenBucket};
use crate::stats::AllocError;

/// Attribute types this server understands (comprehension-required range).
const KNOWN: &[u16] = &[
    0x0001, // MAPPED-ADDRESS
    0x0003, // CHANGE-REQUEST (RFC 5780; ignored, no alternate address)
    0x0006, // USERNAME
    0x0008, // MESSAGE-INTEGRITY
    0x0009, // ERROR-CODE
    0x000A, // UNKNOWN-ATTRIBUTES
    0x000C, // CHANNEL-NUMBER
    0x000D, // LIFETIME
    0x0012, // XOR-PEER-ADDRESS
    0x0013, // DATA
    0x0014, // REALM
    0x0015, // NONCE
    0x0016, // XOR-RELAYED-ADDRESS
    0x0017, // REQUESTED-ADDRESS-FAMILY
    0x0018, // EVEN-PORT
    0x0019, // REQUESTED-TRANSPORT
    0x001A, // DONT-FRAGMENT
    0x001C, // MESSAGE-INTEGRITY-SHA256
    0x001D, // PASSWORD-ALGORITHM
    0x0020, // XOR-MAPPED-ADDRESS
    0x0022, // RESERVATION-TOKEN
];

/// Why an Allocate was refused: the counted reason and the STUN error code.
type Refusal = (AllocError, u16);

/// Credentials that authenticated a request; responses are signed with them.
pub(super) struct Cred {
    username: Arc<str>,
    password: String,
    algorithm: IntegrityAlgorithm,
}

/// An authenticated TURN request: what its handler reads and answers with.
struct Req<'a> {
    client: ClientId,
    msg: &'a Message<'a>,
    cred: &'a Cred,
    now: Clock,
}

/// Answers an unparseable request with 400 when its header allows it.
pub(super) fn bad_request_raw(msg: &[u8], client: ClientId, io: &mut impl Io) {
    let Ok(h) = MessageHeader::from_bytes(msg) else {
        return;
    };
    let t = h.get_type();
    if t.class() != MessageClass::Request {
        return;
    }
    let mut w = Message::builder(
        MessageType::from_class_method(MessageClass::Error, t.method()),
        h.transaction_id(),
        MessageWriteVec::new(),
    );
    if let Ok(e) = ErrorCode::builder(ErrorCode::BAD_REQUEST).build() {
        let _ = w.add_attribute(&e);
    }
    let _ = w.add_fingerprint();
    io.send_to_client(&client, &w.finish());
}

fn error_code(code: u16) -> ErrorCode {
    ErrorCode::builder(code)
        .build()
        .unwrap_or_else(|_| ErrorCode::new(500, "Server Error").expect("valid error code"))
}

fn family_of(f: AddressFamily) -> Family {
    match f {
        AddressFamily::IPV4 => Family::V4,
        AddressFamily::IPV6 => Family::V6,
    }
}

impl Server {
    pub(super) fn stun(
        &mut self,
        client: ClientId,
        msg: &Message<'_>,
        now: Clock,
        io: &mut impl Io,
    ) {
        match msg.class() {
            MessageClass::Indication if msg.method() == SEND => {
                self.send_indication(client, msg, now, io)
            }
            MessageClass::Request => self.request(client, msg, now, io),
            _ => {}
        }
    }

    fn request(&mut self, client: ClientId, msg: &Message<'_>, now: Clock, io: &mut impl Io) {
        let unknown: Vec<_> = msg
            .iter_attributes()
            .map(|(_, a)| a.get_type())
            .filter(|t| t.comprehension_required() && !KNOWN.contains(&t.value()))
            .collect();
        if !unknown.is_empty() {
            self.counters.malformed += 1;
            self.reply_error(client, msg, ErrorCode::UNKNOWN_ATTRIBUTE, None, io, |w| {
                let _ = w.add_attribute(&UnknownAttributes::new(&unknown));
            });
            return;
        }
        let method = msg.method();
        if method == BINDING {
            // Over UDP the source may be spoofed: cap the answers per source.
            if client.transport == super::Transport::Udp
                && !self.bindings.allow(client.remote.ip(), now.mono)
            {
                self.counters.binding_limited += 1;
                return;
            }
            self.binding(client, msg, io);
            return;
        }
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&method) {
            self.reply_error(client, msg, ErrorCode::BAD_REQUEST, None, io, |_| {});
            return;
        }
        // A Refresh with LIFETIME 0 deletes; it is allowed with an expired REST username.
        let deleting =
            method == REFRESH && msg.attribute::<Lifetime>().map(|l| l.seconds()) == Ok(0);
        let Some(cred) = self.authenticate(client, msg, now, deleting, io) else {
            return;
        };
        let r = Req {
            client,
            msg,
            cred: &cred,
            now,
        };
        if method == ALLOCATE {
            if let Err(refusal) = self.allocate(&r, io) {
                self.alloc_error(&r, refusal, io);
            }
            return;
        }
        let done = if method == REFRESH {
            self.refresh(&r, io)
        } else if method == CREATE_PERMISSION {
            self.create_permission(&r, io)
        } else {
            self.channel_bind(&r, io)
        };
        if let Err(code) = done {
            self.reply_error(client, msg, code, Some(&cred), io, |_| {});
        }
    }

    fn binding(&mut self, client: ClientId, msg: &Message<'_>, io: &mut impl Io) {
        self.counters.binding_requests += 1;
        let mut w = Message::builder_success(msg, MessageWriteVec::new());
        // Only XOR-MAPPED-ADDRESS and FINGERPRINT: no SOFTWARE and no legacy
        // MAPPED-ADDRESS, so the answer is barely larger than the request and
        // Binding is no amplifier for spoofed sources.
        let _ = w.add_attribute(&XorMappedAddress::new(client.remote, msg.transaction_id()));
        let _ = w.add_fingerprint();
        io.send_to_client(&client, &w.finish());
    }

    fn add_software(&self, w: &mut MessageWriteVec) {
        if !self.cfg.software.is_empty() {
            if let Ok(s) = Software::new(&self.cfg.software) {
                let _ = w.add_attribute(&s);
            }
        }
    }

    fn finish_and_send(
        &self,
        client: ClientId,
        mut w: MessageWriteVec,
        cred: Option<&Cred>,
        io: &mut impl Io,
    ) {
        if let Some(c) = cred {
            let key = LongTermKeyCredentials::new(
                c.username.to_string(),
                c.password.clone(),
                self.auth.realm().to_string(),
            )
            .into();
            if w.add_message_integrity(&key, c.algorithm).is_err() {
                return;
            }
        }
        let _ = w.add_fingerprint();
        io.send_to_client(&client, &w.finish());
    }

    fn reply_error(
        &mut self,
        client: ClientId,
        msg: &Message<'_>,
        code: u16,
        cred: Option<&Cred>,
        io: &mut impl Io,
        extra: impl FnOnce(&mut MessageWriteVec),
    ) {
        tracing::debug!(code, method = %msg.method(), client = %client.remote, "error reply");
        let mut w = Message::builder_error(msg, MessageWriteVec::new());
        let _ = w.add_attribute(&error_code(code));
        extra(&mut w);
        self.finish_and_send(client, w, cred, io);
    }

    /// Sends a signed success response with the attributes `extra` adds.
    fn reply_success(
        &self,
        r: &Req<'_>,
        io: &mut impl Io,
        extra: impl FnOnce(&mut MessageWriteVec),
    ) {
        let mut w = Message::builder_success(r.msg, MessageWriteVec::new());
        extra(&mut w);
        self.finish_and_send(r.client, w, Some(r.cred), io);
    }

    /// Sends 401 (or 438) with REALM and a fresh NONCE, subject to the per-IP limit.
    fn challenge(
        &mut self,
        client: ClientId,
        msg: &Message<'_>,
        code: u16,
        now: Clock,
        io: &mut impl Io,
    ) {
        let ip = client.remote.ip();
        if !self.unauth.allow(ip, now.mono) {
            self.counters.unauthorized_limited += 1;
            return;
        }
        let nonce = self.auth.make_nonce(ip, now.unix);
        let realm = self.auth.realm().to_string();
        self.reply_error(client, msg, code, None, io, |w| {
            if let Ok(r) = Realm::new(&realm) {
                let _ = w.add_attribute(&r);
            }
            if let Ok(n) = Nonce::new(&nonce) {
                let _ = w.add_attribute(&n);
            }
        });
    }

    fn authenticate(
        &mut self,
        client: ClientId,
        msg: &Message<'_>,
        now: Clock,
        deleting: bool,
        io: &mut impl Io,
    ) -> Option<Cred> {
        if !msg.has_attribute(MessageIntegrity::TYPE)
            && !msg.has_attribute(MessageIntegritySha256::TYPE)
        {
            self.challenge(client, msg, ErrorCode::UNAUTHORIZED, now, io);
            return None;
        }
        let (Ok(user), Ok(_realm), Ok(nonce)) = (
            msg.attribute::<Username>(),
            msg.attribute::<Realm>(),
            msg.attribute::<Nonce>(),
        ) else {
            self.reply_error(client, msg, ErrorCode::BAD_REQUEST, None, io, |_| {});
            return None;
        };
        if self
            .auth
            .check_nonce(nonce.nonce(), client.remote.ip(), now.unix)
            != NonceCheck::Valid
        {
            self.challenge(client, msg, ErrorCode::STALE_NONCE, now, io);
            return None;
        }
        let username = user.username();
        if let Some(a) = self
            .by_client
            .get(&client)
            .and_then(|id| self.allocs.get(id))
        {
            // Requests on an existing allocation must use its credentials.
            // 441 is an authenticated answer: only sent once the request's own
            // MESSAGE-INTEGRITY checks out, and signed with those credentials,
            // so a forged request learns nothing and gets only a 401.
            if &*a.username != username {
                self.counters.auth_failures += 1;
                match self.auth.verify(msg, username, now.unix) {
                    Ok(v) => {
                        let cred = Cred {
                            username: Arc::from(username),
                            password: v.password,
                            algorithm: v.algorithm,
                        };
                        self.reply_error(
                            client,
                            msg,
                            ErrorCode::WRONG_CREDENTIALS,
                            Some(&cred),
                            io,
                            |_| {},
                        );
                    }
                    Err(_) => self.challenge(client, msg, ErrorCode::UNAUTHORIZED, now, io),
                }
                return None;
            }
            let (user, pw) = (a.username.clone(), a.password.clone());
            let valid = self.auth.verify_with(msg, &user, &pw);
            let fresh = deleting || self.auth.still_valid(&user, now.unix);
            return match valid {
                Some(v) if fresh => Some(Cred {
                    username: user,
                    password: v.password,
                    algorithm: v.algorithm,
                }),
                _ => {
                    self.counters.auth_failures += 1;
                    self.challenge(client, msg, ErrorCode::UNAUTHORIZED, now, io);
                    None
                }
            };
        }
        match self.auth.verify(msg, username, now.unix) {
            Ok(v) => Some(Cred {
                username: Arc::from(username),
                password: v.password,
                algorithm: v.algorithm,
            }),
            Err(AuthFailure::Expired | AuthFailure::UnknownUser | AuthFailure::BadIntegrity) => {
                self.counters.auth_failures += 1;
                self.challenge(client, msg, ErrorCode::UNAUTHORIZED, now, io);
                None
            }
        }
    }

    fn alloc_error(&mut self, r: &Req<'_>, (reason, code): Refusal, io: &mut impl Io) {
        self.counters.alloc_errors[reason as usize] += 1;
        let alt = if code == ErrorCode::TRY_ALTERNATE {
            self.cfg.alternate_server
        } else {
            None
        };
        self.reply_error(r.client, r.msg, code, Some(r.cred), io, |w| {
            if let Some(a) = alt {
                let _ = w.add_attribute(&AlternateServer::new(a));
            }
        });
    }

    /// Allocate; an `Err` is answered by [`Self::alloc_error`].
    fn allocate(&mut self, r: &Req<'_>, io: &mut impl Io) -> Result<(), Refusal> {
        const BAD: Refusal = (AllocError::BadRequest, ErrorCode::BAD_REQUEST);
        if let Some(&id) = self.by_client.get(&r.client) {
            if self.allocs.get(&id).map(|a| a.allocate_txid) != Some(r.msg.transaction_id()) {
                return Err((AllocError::Mismatch, ErrorCode::ALLOCATION_MISMATCH));
            }
            // Retransmission: answer again with the current state.
            self.allocate_success(r, id, io);
            return Ok(());
        }
        match r.msg.attribute::<RequestedTransport>() {
            Ok(t) if t.protocol() == RequestedTransport::UDP => {}
            Ok(_) => {
                return Err((
                    AllocError::Transport,
                    ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL,
                ))
            }
            Err(_) => return Err(BAD),
        }
        let alt_or_508 = if self.cfg.alternate_server.is_some() {
            ErrorCode::TRY_ALTERNATE
        } else {
            ErrorCode::INSUFFICIENT_CAPACITY
        };
        if self.draining {
            return Err((AllocError::Draining, alt_or_508));
        }
        let quota_user: Arc<str> = Arc::from(self.auth.quota_user(&r.cred.username));
        let ip = r.client.remote.ip();
        // Claiming a reserved port: its slot passes to this allocation.
        if let Ok(t) = r.msg.attribute::<ReservationToken>() {
            let claimed = crate::limits::locked(&self.reservations).remove(&t.token());
            if let Some(res) = claimed {
                self.quotas.release(&res.quota_user, res.ip);
            }
        }
        let reserving = r.msg.attribute::<EvenPort>().map(|e| e.requested()) == Ok(true);
        let quota = self.quotas.check_n(&quota_user, ip, 1 + reserving as u32);
        quota.map_err(|e| quota_refusal(e, alt_or_508))?;
        let even = r.msg.attribute::<EvenPort>().ok();
        let token = r.msg.has_attribute(ReservationToken::TYPE);
        let requested = r.msg.has_attribute(RequestedAddressFamily::TYPE);
        let additional = r.msg.has_attribute(AdditionalAddressFamily::TYPE);
        if (token && (even.is_some() || requested)) || (requested && additional) {
            return Err(BAD);
        }
        let no_family = (AllocError::Family, ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED);
        let family = if requested {
            let f = r.msg.attribute::<RequestedAddressFamily>();
            family_of(f.map_err(|_| no_family)?.family())
        } else {
            Family::V4
        };
        let mut ipv6_refused = false;
        if additional {
            match r.msg.attribute::<AdditionalAddressFamily>() {
                // Dual allocations are not offered: the IPv4 relay is granted and
                // the IPv6 part is refused with ADDRESS-ERROR-CODE (RFC 8656 §7.2).
                Ok(f) if f.family() == AddressFamily::IPV6 => ipv6_refused = true,
                _ => return Err(BAD),
            }
        }
        let reservation = if token {
            let t = r.msg.attribute::<ReservationToken>().map_err(|_| BAD)?;
            Some(t.token())
        } else {
            None
        };
        let available = match family {
            Family::V4 => self.cfg.has_v4,
            Family::V6 => self.cfg.has_v6,
        };
        if !available && reservation.is_none() {
            return Err(no_family);
        }
        let id = self.next_id;
        self.next_id += 1;
        let req = RelayRequest {
            family,
            even_port: even.is_some(),
            reserve_next: even.map(|e| e.requested()).unwrap_or(false),
            reservation,
            dont_fragment: r.msg.has_attribute(DontFragment::TYPE),
        };
        // Taken (checked again) under the quota lock only now, so that two
        // event loops cannot both fill the last slot; given back if no relay
        // socket comes of it.
        let slots = 1 + reserving as u32;
        self.quotas
            .try_take_n(&quota_user, ip, slots)
            .map_err(|e| quota_refusal(e, alt_or_508))?;
        let granted = match io.open_relay(id, &req) {
            Ok(g) => g,
            Err(RelayError::NoPorts | RelayError::BadToken) => {
                for _ in 0..slots {
                    self.quotas.release(&quota_user, ip);
                }
                return Err((AllocError::Ports, ErrorCode::INSUFFICIENT_CAPACITY));
            }
        };
        let lifetime = self.lifetime(r.msg.attribute::<Lifetime>().ok().map(|l| l.seconds()));
        if reserving && granted.reservation_token.is_none() {
            self.quotas.release(&quota_user, ip);
        }
        if let Some(t) = granted.reservation_token {
            // The reserved port counts against the same quotas until claimed
            // or expired (its slot was taken above: a token comes only with
            // EVEN-PORT R, i.e. `reserving`).
            crate::limits::locked(&self.reservations).insert(
                t,
                super::Reservation {
                    quota_user: quota_user.clone(),
                    ip,
                    expires: r.now.mono + super::RESERVATION_TTL,
                },
            );
        }
        self.allocs.insert(
            id,
            Allocation {
                client: r.client,
                username: r.cred.username.clone(),
                quota_user,
                password: r.cred.password.clone(),
                relay_local: granted.local,
                relay_public: self.public_addr(granted.local),
                expires: r.now.mono + secs(lifetime),
                permissions: Vec::new(),
                channels: Vec::new(),
                bucket: TokenBucket::new(self.cfg.max_bps, r.now.mono),
                allocate_txid: r.msg.transaction_id(),
                reservation_token: granted.reservation_token,
                ipv6_refused,
            },
        );
        self.by_client.insert(r.client, id);
        self.counters.sessions_total += 1;
        self.allocate_success(r, id, io);
        Ok(())
    }

    fn allocate_success(&self, r: &Req<'_>, id: AllocId, io: &mut impl Io) {
        let Some(a) = self.allocs.get(&id) else {
            return;
        };
        let txid = r.msg.transaction_id();
        let remaining = a.expires.saturating_duration_since(r.now.mono).as_secs() as u32;
        self.reply_success(r, io, |w| {
            let _ = w.add_attribute(&XorRelayedAddress::new(a.relay_public, txid));
            let _ = w.add_attribute(&Lifetime::new(remaining));
            let _ = w.add_attribute(&XorMappedAddress::new(r.client.remote, txid));
            if let Some(t) = a.reservation_token {
                let _ = w.add_attribute(&ReservationToken::new(t));
            }
            if a.ipv6_refused {
                let _ = w.add_attribute(&AddressErrorCode::new(
                    AddressFamily::IPV6,
                    error_code(ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED),
                ));
            }
            self.add_software(w);
        });
    }

    fn refresh(&mut self, r: &Req<'_>, io: &mut impl Io) -> Result<(), u16> {
        let id = self.alloc_of(&r.client)?;
        if let Ok(f) = r.msg.attribute::<RequestedAddressFamily>() {
            let ours = self.allocs.get(&id).map(|a| Family::of(&a.relay_local));
            if Some(family_of(f.family())) != ours {
                return Err(ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
            }
        }
        let requested = r.msg.attribute::<Lifetime>().ok().map(|l| l.seconds());
        let lifetime = if requested == Some(0) {
            self.remove(id, io);
            0
        } else {
            let lt = self.lifetime(requested);
            if let Some(a) = self.allocs.get_mut(&id) {
                a.expires = r.now.mono + secs(lt);
            }
            lt
        };
        self.reply_success(r, io, |w| {
            let _ = w.add_attribute(&Lifetime::new(lifetime));
        });
        Ok(())
    }

    /// The allocation of `client`, or 437 (Allocation Mismatch).
    fn alloc_of(&self, client: &ClientId) -> Result<AllocId, u16> {
        let id = self.by_client.get(client).copied();
        id.ok_or(ErrorCode::ALLOCATION_MISMATCH)
    }

    /// Checks a peer for an allocation; returns the STUN error code on refusal.
    fn check_peer(&mut self, id: u64, peer: SocketAddr) -> Result<(), u16> {
        let Some(a) = self.allocs.get(&id) else {
            return Err(ErrorCode::ALLOCATION_MISMATCH);
        };
        if Family::of(&peer) != Family::of(&a.relay_local) {
            return Err(ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
        }
        if self.policy.check(peer.ip()).is_err() || self.cfg.own.contains(peer) {
            self.counters.peer_denied += 1;
            return Err(ErrorCode::FORBIDDEN);
        }
        Ok(())
    }

    fn create_permission(&mut self, r: &Req<'_>, io: &mut impl Io) -> Result<(), u16> {
        let id = self.alloc_of(&r.client)?;
        let txid = r.msg.transaction_id();
        let mut peers: Vec<IpAddr> = Vec::new();
        let mut n = 0;
        while let Ok(p) = r.msg.nth_attribute::<XorPeerAddress>(n) {
            n += 1;
            let addr = p.addr(txid);
            self.check_peer(id, addr)?;
            if !peers.contains(&addr.ip()) {
                peers.push(addr.ip());
            }
        }
        if peers.is_empty() {
            return Err(ErrorCode::BAD_REQUEST);
        }
        let max = self.cfg.max_permissions;
        let expires = r.now.mono + secs(self.cfg.permission_lifetime);
        let Some(a) = self.allocs.get_mut(&id) else {
            return Err(ErrorCode::ALLOCATION_MISMATCH);
        };
        let new = peers
            .iter()
            .filter(|ip| !a.permissions.iter().any(|(p, _)| p == *ip))
            .count();
        if a.permissions.len() + new > max {
            return Err(ErrorCode::INSUFFICIENT_CAPACITY);
        }
        for ip in peers {
            install_permission(a, ip, expires);
        }
        self.reply_success(r, io, |_| {});
        Ok(())
    }

    fn channel_bind(&mut self, r: &Req<'_>, io: &mut impl Io) -> Result<(), u16> {
        let id = self.alloc_of(&r.client)?;
        let (Ok(ch), Ok(peer)) = (
            r.msg.attribute::<ChannelNumber>(),
            r.msg.attribute::<XorPeerAddress>(),
        ) else {
            return Err(ErrorCode::BAD_REQUEST);
        };
        let number = ch.channel();
        let peer = peer.addr(r.msg.transaction_id());
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
            return Err(ErrorCode::BAD_REQUEST);
        }
        self.check_peer(id, peer)?;
        let max = self.cfg.max_channels;
        let max_perms = self.cfg.max_permissions;
        let ch_exp = r.now.mono + secs(self.cfg.channel_lifetime);
        let perm_exp = r.now.mono + secs(self.cfg.permission_lifetime);
        let Some(a) = self.allocs.get_mut(&id) else {
            return Err(ErrorCode::ALLOCATION_MISMATCH);
        };
        let by_number = a.channels.iter().position(|c| c.number == number);
        let by_peer = a.channels.iter().position(|c| c.peer == peer);
        let new_perm = !a.permissions.iter().any(|(p, _)| *p == peer.ip());
        let code = match (by_number, by_peer) {
            (Some(i), Some(j)) if i == j => None,
            (None, None) if a.channels.len() >= max => Some(ErrorCode::INSUFFICIENT_CAPACITY),
            (None, None) if new_perm && a.permissions.len() >= max_perms => {
                Some(ErrorCode::INSUFFICIENT_CAPACITY)
            }
            (None, None) => None,
            _ => Some(ErrorCode::BAD_REQUEST),
        };
        if let Some(code) = code {
            return Err(code);
        }
        match by_number {
            Some(i) => a.channels[i].expires = ch_exp,
            None => a.channels.push(Channel {
                number,
                peer,
                expires: ch_exp,
            }),
        }
        install_permission(a, peer.ip(), perm_exp);
        self.reply_success(r, io, |_| {});
        Ok(())
    }
}

fn install_permission(a: &mut Allocation, ip: IpAddr, expires: std::time::Instant) {
    match a.permissions.iter_mut().find(|(p, _)| *p == ip) {
        Some(p) => p.1 = expires,
        None => a.permissions.push((ip, expires)),
    }
}

/// The answer to an Allocate the quotas refuse.
fn quota_refusal(e: QuotaError, alt_or_508: u16) -> (AllocError, u16) {
    match e {
        QuotaError::PerUser => (AllocError::QuotaUser, ErrorCode::ALLOCATION_QUOTA_REACHED),
        QuotaError::PerIp => (AllocError::QuotaIp, ErrorCode::ALLOCATION_QUOTA_REACHED),
        QuotaError::Capacity => (AllocError::Capacity, alt_or_508),
    }
}
