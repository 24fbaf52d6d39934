//! The query pipeline shared by every transport: parse, locate, look in the
//! answer cache, on a miss run the engine and encode, then finish the bytes
//! for this query.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::cache::{AnswerCache, CacheKey, Cached, LocalCache};
use super::client::{Cell, Client, Dependence};
use super::cookie::{self, CookieKeys};
use super::encode::{encode, finish, header_only, push_opt, OptOut, Template};
use super::engine::{self, Response};
use super::metrics::{Counters, Metrics, Writer};
use super::negative;
use super::state::{NameEntry, NameKind, ServeState};
use super::wire::{append_ecs, ecs_option_len, parse_query, scan_opt, Ecs, Query, WireError};
use crate::health::HealthSnapshot;

/// Largest DNS message over TCP.
pub const TCP_LIMIT: usize = 65_535;

/// Everything the transports share: the current snapshots, the answer cache
/// and the counters.
pub struct Shared {
    /// Config, zones and GeoIP.
    pub state: ArcSwap<ServeState>,
    /// Member health.
    pub health: ArcSwap<HealthSnapshot>,
    /// Pre-encoded answers.
    pub cache: AnswerCache,
    /// Counters.
    pub metrics: Metrics,
    /// DNS Cookie secrets in force (`None`: cookies off).
    pub cookies: ArcSwap<Option<CookieKeys>>,
    /// Drawn at start, used when the config names no cookie secret.
    random_secret: [u8; 16],
}

/// What [`Shared::handle_query`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// A response is in `out`.
    pub respond: bool,
    /// The query carried a valid server cookie (exempt from rate limiting).
    pub cookie_ok: bool,
}

/// The COOKIE option to add to one response.
#[derive(Clone, Copy)]
struct CookieOut {
    client: [u8; 8],
    server: [u8; 16],
}

fn cookie_keys(st: &ServeState, random: [u8; 16]) -> Option<CookieKeys> {
    let c = &st.config.file.server.cookies;
    if !c.enabled {
        return None;
    }
    // Validated at load: a present secret parses.
    let parse = |s: &Option<String>| s.as_deref().and_then(|s| cookie::parse_secret(s).ok());
    Some(CookieKeys {
        current: parse(&c.secret).unwrap_or(random),
        previous: parse(&c.previous_secret),
    })
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// What one worker (a UDP thread, a TCP connection) brings to every query
/// it answers: its own counter block and, on UDP, its own answer cache in
/// front of the shared one.
pub struct Worker {
    /// This worker's counters (it is their only writer).
    pub counters: Writer,
    /// Its answer cache (UDP workers only).
    pub local: Option<LocalCache>,
}

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: responses limited to the negotiated payload size.
    Udp,
    /// TCP: responses up to 64 KiB.
    Tcp,
}

impl Shared {
    /// Wraps initial snapshots (`health` is taken as indexed for `state`).
    pub fn new(state: ServeState, mut health: HealthSnapshot) -> Arc<Shared> {
        health.generation = state.generation;
        let cache = AnswerCache::new(state.config.file.server.cache_entries);
        let random_secret: [u8; 16] = rand::random();
        let c = &state.config.file.server.cookies;
        if c.enabled && c.secret.is_none() {
            tracing::warn!(
                "server.cookies.secret not set: using a random secret; every node of a \
                 deployment must share one secret or cookies from one node fail at another"
            );
        }
        let cookies = ArcSwap::from_pointee(cookie_keys(&state, random_secret));
        Arc::new(Shared {
            state: ArcSwap::from_pointee(state),
            health: ArcSwap::from_pointee(health),
            cache,
            metrics: Metrics::default(),
            cookies,
            random_secret,
        })
    }

    /// Publishes a new config/zones/GeoIP/members snapshot with the health
    /// indexed for its members; cached answers of the old one stop being used
    /// at once and are dropped. Publishers serialize (the health hub does):
    /// between the two stores readers of [`Shared::view`] wait.
    pub fn publish_state(&self, st: Arc<ServeState>, mut health: HealthSnapshot) {
        health.generation = st.generation;
        self.cookies
            .store(Arc::new(cookie_keys(&st, self.random_secret)));
        self.state.store(st);
        self.health.store(Arc::new(health));
        self.cache.clear();
    }

    /// Publishes a new health snapshot for the state being served (one built
    /// for another generation is refused: false). Cached answers of pools
    /// whose epoch moved stop being used; others (and static data) stay valid.
    pub fn publish_health(&self, h: HealthSnapshot) -> bool {
        if h.generation != self.state.load().generation {
            return false;
        }
        self.health.store(Arc::new(h));
        true
    }

    /// The serving state and the health indexed for it. Both are published
    /// back to back ([`Shared::publish_state`]); a reader that catches the
    /// moment between the two stores loads again.
    #[inline]
    pub fn view(&self) -> (Guard<Arc<ServeState>>, Guard<Arc<HealthSnapshot>>) {
        let mut tries = 0u32;
        loop {
            let st = self.state.load();
            let h = self.health.load();
            if h.generation == st.generation {
                return (st, h);
            }
            tries += 1;
            if tries < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// A new worker's counters and, for UDP, its answer cache.
    pub fn worker(&self, transport: Transport) -> Worker {
        Worker {
            counters: self.metrics.writer(),
            local: (transport == Transport::Udp).then(LocalCache::new),
        }
    }

    /// Answers one packet into `out` for worker `w`. Returns false when
    /// nothing must be sent.
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &self,
        st: &ServeState,
        health: &HealthSnapshot,
        raw: &[u8],
        src: IpAddr,
        transport: Transport,
        w: &mut Worker,
        out: &mut Vec<u8>,
    ) -> bool {
        self.handle_query(st, health, raw, src, transport, w, out)
            .respond
    }

    /// [`Shared::handle`], also saying whether the query's server cookie was valid.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_query(
        &self,
        st: &ServeState,
        health: &HealthSnapshot,
        raw: &[u8],
        src: IpAddr,
        transport: Transport,
        w: &mut Worker,
        out: &mut Vec<u8>,
    ) -> Handled {
        let Worker { counters: c, local } = w;
        let c: &Counters = c;
        match transport {
            Transport::Udp => c.count_udp_query(),
            Transport::Tcp => c.count_tcp_query(),
        }
        let sent = |respond| Handled {
            respond,
            cookie_ok: false,
        };
        match parse_query(raw) {
            Ok(q) => {
                let cookie_ok =
                    self.answer(st, health, &q, raw, src, transport, c, local.as_mut(), out);
                Handled {
                    respond: true,
                    cookie_ok,
                }
            }
            Err(WireError::Drop) => {
                c.count_dropped();
                sent(false)
            }
            Err(WireError::FormErr { id, opcode, rd }) => {
                c.count_rcode(1);
                header_only(id, opcode, rd, 1, error_opt(st, raw), out);
                sent(true)
            }
            Err(WireError::NotImp { id, opcode, rd }) => {
                c.count_rcode(4);
                header_only(id, opcode, rd, 4, error_opt(st, raw), out);
                sent(true)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        st: &ServeState,
        health: &HealthSnapshot,
        q: &Query,
        raw: &[u8],
        src: IpAddr,
        transport: Transport,
        c: &Counters,
        mut local: Option<&mut LocalCache>,
        out: &mut Vec<u8>,
    ) -> bool {
        let server_max = st.config.file.server.max_udp_payload as usize;
        let limit = match (transport, q.edns) {
            (Transport::Tcp, _) => TCP_LIMIT,
            (Transport::Udp, None) => 512,
            (Transport::Udp, Some(e)) => (e.payload as usize).clamp(512, server_max),
        };
        let opt = q.edns.map(|e| OptOut {
            payload: server_max as u16,
            dnssec_ok: e.dnssec_ok,
        });
        if let Some(e) = q.edns {
            if e.version > 0 {
                // RFC 6891 §6.1.3: BADVERS, answered with our version (0).
                let r = Response::new(ResponseCode::from(1, 0), false);
                let t = encode(q, &r, opt);
                finish(&t, q, raw, None, limit, out);
                c.count_rcode(16);
                return false;
            }
        }
        // DNS Cookies: a COOKIE option with a client cookie gets ours back.
        let mut cookie_ok = false;
        let mut cook = None;
        let mut limit = limit;
        if let Some((c, len)) = q.edns.and_then(|e| e.cookie) {
            if let Some(keys) = self.cookies.load().as_ref() {
                let now = unix_now();
                cookie_ok = keys.valid(&c[..len as usize], src, now);
                let mut client = [0u8; 8];
                client.copy_from_slice(&c[..8]);
                cook = Some(CookieOut {
                    client,
                    server: keys.server_cookie(&client, src, now),
                });
                limit -= cookie::OPTION_LEN;
            }
        }
        c.count_qtype(q.qtype);
        let ecs = q.edns.as_ref().and_then(|e| e.ecs);
        if ecs.is_some() {
            c.count_ecs();
        }
        let entry = match q.qclass {
            1 => st.names.get(q.qname_lower()),
            _ => None,
        };
        if entry.is_none()
            && negative::eligible(q)
            && self.negative(st, q, raw, opt, ecs.as_ref(), cook, limit, c, out)
        {
            return cookie_ok;
        }
        let client = Client::new(st, q, src);
        let (key, cell, pool) = self.cache_key(st, health, q, entry, &client);
        let generation = (st.generation, pool.map_or(0, |p| health.pool_epoch(p)));
        if let Some(k) = &key {
            if let Some(e) = local.as_deref().and_then(|l| l.get(k)) {
                if e.generation == generation {
                    self.served_from_cache(e, q, raw, &client, cell, st, limit, cook, c, out);
                    return cookie_ok;
                }
            }
            if let Some(e) = self.cache.get(k) {
                if e.generation == generation {
                    self.served_from_cache(&e, q, raw, &client, cell, st, limit, cook, c, out);
                    if let Some(l) = local.as_deref_mut() {
                        l.insert(*k, e);
                    }
                    return cookie_ok;
                }
            }
            c.count_cache(false);
        }
        let started = std::time::Instant::now();
        let r = engine::respond(st, health, q, &client);
        let t = encode(q, &r, opt);
        c.observe_generation(started.elapsed());
        c.count_rcode(r.rcode);
        let region = r.decision.as_ref().and_then(|d| d.region);
        if let Some(d) = &r.decision {
            c.count_outcome(d.outcome);
        }
        if let Some(reg) = region {
            c.count_region(reg);
        }
        self.finish(&t, q, raw, &client, cell, st, limit, cook, c, out);
        if let Some(k) = key {
            // Answers of names that are static by kind but turned out to
            // depend on the client (a CNAME to a steered name) are not cached
            // under a client-independent key.
            let kind_static = k.cell.is_none();
            if r.cacheable() && !(kind_static && t.dependence != Dependence::None) {
                let e = Arc::new(Cached {
                    generation,
                    region,
                    rcode: r.rcode,
                    template: t,
                });
                if let Some(l) = local {
                    l.insert(k, e.clone());
                }
                self.cache.insert(k, e);
            }
        }
        cookie_ok
    }

    /// A negative answer (or REFUSED) for a name that owns no data, built
    /// without the engine ([`negative`]); false when the engine must answer.
    /// Kept out of line: the positive path stays as small as it was.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn negative(
        &self,
        st: &ServeState,
        q: &Query,
        raw: &[u8],
        opt: Option<OptOut>,
        ecs: Option<&Ecs>,
        cook: Option<CookieOut>,
        limit: usize,
        c: &Counters,
        out: &mut Vec<u8>,
    ) -> bool {
        let v = negative::classify(st, q.qname_lower());
        let opt_len = opt.map_or(0, |_| 11 + ecs.map_or(0, ecs_option_len));
        if !negative::write(st, v, q, raw, opt.is_some(), limit - opt_len, out) {
            return false;
        }
        if let Some(o) = opt {
            append_opt(out, o, ecs, cook);
        }
        c.count_rcode(u16::from(out[3] & 0xF));
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn served_from_cache(
        &self,
        e: &Cached,
        q: &Query,
        raw: &[u8],
        client: &Client,
        cell: Option<Cell>,
        st: &ServeState,
        limit: usize,
        cook: Option<CookieOut>,
        c: &Counters,
        out: &mut Vec<u8>,
    ) {
        c.count_cache(true);
        c.count_rcode(e.rcode);
        if let Some(r) = e.region {
            c.count_region(r);
        }
        self.finish(&e.template, q, raw, client, cell, st, limit, cook, c, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        t: &Template,
        q: &Query,
        raw: &[u8],
        client: &Client,
        cell: Option<Cell>,
        st: &ServeState,
        limit: usize,
        cook: Option<CookieOut>,
        counters: &Counters,
        out: &mut Vec<u8>,
    ) {
        let ecs = client.ecs.as_ref().map(|e| {
            let cell = match (t.dependence, cell) {
                (Dependence::None, _) => None,
                (_, Some(c)) => Some(c),
                (_, None) => Some(client.cell(st)),
            };
            (e, client.scope(t.dependence, cell))
        });
        finish(t, q, raw, ecs, limit, out);
        if let (Some(ck), Some(_)) = (cook, t.opt_at) {
            // The OPT record is last; its RDLEN precedes the ECS echo, if any.
            let ecs_len = ecs.map_or(0, |(e, _)| ecs_option_len(e));
            let rdlen_at = out.len() - ecs_len - 2;
            cookie::append(out, rdlen_at, &ck.client, &ck.server);
        }
        if out.len() >= 3 && out[2] & 0x02 != 0 {
            counters.count_truncated();
        }
    }

    /// The cache key of a query, with the client's cell when the answer
    /// depends on it. `None` for names we hold no data for.
    /// `entry` is the query name's, in class IN.
    fn cache_key(
        &self,
        st: &ServeState,
        health: &HealthSnapshot,
        q: &Query,
        entry: Option<&NameEntry>,
        client: &Client,
    ) -> (Option<CacheKey>, Option<Cell>, Option<u16>) {
        let Some(entry) = entry else {
            return (None, None, None);
        };
        let qt = RecordType::from(q.qtype);
        let steered = match entry.kind {
            NameKind::Steered(sid) if matches!(qt, RecordType::A | RecordType::AAAA) => Some(sid),
            NameKind::Srv(sid, _) if qt == RecordType::SRV => Some(sid),
            _ => None,
        };
        let edns = match q.edns {
            None => 0,
            Some(e) => 1 + e.dnssec_ok as u8,
        };
        let mut key = CacheKey {
            name: entry.id,
            qtype: q.qtype,
            edns,
            cell: None,
            bucket: 0,
        };
        let Some(sid) = steered else {
            return (Some(key), None, None);
        };
        let cell = client.cell(st);
        key.cell = Some(cell.class);
        let s = &st.steered[sid as usize];
        if s.hash_sensitive || health.any_shedding() {
            key.bucket = client.hash;
        }
        (Some(key), Some(cell), Some(s.pool))
    }
}

/// Appends an OPT record carrying the ECS echo (scope 0: the answer holds
/// for everyone) and our cookie, for a response built without a template.
fn append_opt(out: &mut Vec<u8>, o: OptOut, ecs: Option<&Ecs>, cook: Option<CookieOut>) {
    push_opt(out, o, 0);
    let rdlen_at = out.len() - 2;
    if let Some(e) = ecs {
        append_ecs(out, rdlen_at, e, 0);
    }
    if let Some(c) = cook {
        cookie::append(out, rdlen_at, &c.client, &c.server);
    }
}

/// The OPT record of an error reply to `raw`, when it had one.
fn error_opt(st: &ServeState, raw: &[u8]) -> Option<OptOut> {
    scan_opt(raw).map(|dnssec_ok| OptOut {
        payload: st.config.file.server.max_udp_payload,
        dnssec_ok,
    })
}

/// The response code of a header-only reply (for tests and logs).
pub fn rcode_of(bytes: &[u8]) -> Option<ResponseCode> {
    bytes.get(3).map(|b| ResponseCode::from_low(b & 0xF))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType as T;
    use hickory_proto::serialize::binary::BinDecodable;

    use super::*;
    use crate::dns::testkit::{all_up, ask, handle_raw, query, state, Opts};

    fn shared(file: &str) -> Arc<Shared> {
        let st = state(file);
        let h = all_up(&st);
        Shared::new(st, h)
    }

    /// The reply to raw bytes, parsed.
    fn reply(s: &Shared, raw: &[u8]) -> Message {
        Message::from_bytes(&handle_raw(s, raw, "192.0.2.1", Transport::Udp).expect("a reply"))
            .unwrap()
    }

    /// A query for example.org SOA with the OPT record doubled.
    fn two_opts() -> Vec<u8> {
        let mut raw = query("example.org.", T::SOA, Opts::edns());
        let opt_at = raw.len() - 11;
        let opt = raw[opt_at..].to_vec();
        raw.extend_from_slice(&opt);
        raw[11] = 2;
        raw
    }

    #[test]
    fn error_replies_carry_an_opt_when_the_query_had_one() {
        let s = shared("answers.toml");
        // Two OPT records (RFC 6891 §6.1.1): FORMERR, with an OPT.
        let m = reply(&s, &two_opts());
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.edns.is_some());
        // A malformed ECS option inside a well-formed OPT: FORMERR, with an OPT.
        let mut raw = query("example.org.", T::SOA, Opts::ecs("81.2.69.0/24"));
        let n = raw.len();
        raw[n - 4] = 7; // SCOPE PREFIX-LENGTH must be 0 in a query
        let m = reply(&s, &raw);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.edns.is_some());
        // No OPT in the query: none in the reply.
        let mut raw = query("example.org.", T::SOA, Opts::default());
        raw[5] = 2; // two questions, one present
        let m = reply(&s, &raw);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.edns.is_none());
        // An opcode we do not implement (STATUS): NOTIMP, with an OPT.
        let mut raw = query("example.org.", T::SOA, Opts::edns());
        raw[2] = 0x10;
        let m = reply(&s, &raw);
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        assert!(m.edns.is_some());
        // Out of our zones: REFUSED, with an OPT.
        let m = ask(&s, "example.net.", T::A, Opts::edns());
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.edns.is_some());
        // EDNS version 1: BADVERS with our version, 0.
        let mut raw = query("example.org.", T::SOA, Opts::edns());
        let n = raw.len();
        raw[n - 5] = 1; // the OPT's VERSION
        let m = reply(&s, &raw);
        assert_eq!(
            u16::from(m.metadata.response_code),
            16,
            "BADVERS (shares 16 with BADSIG)"
        );
        assert_eq!(m.edns.unwrap().version(), 0);
    }

    #[test]
    fn responses_to_responses_are_never_sent() {
        let s = shared("answers.toml");
        let mut raw = query("example.org.", T::SOA, Opts::default());
        raw[2] |= 0x80;
        assert!(handle_raw(&s, &raw, "192.0.2.1", Transport::Udp).is_none());
    }

    /// The ECS SCOPE PREFIX-LENGTH of a reply.
    fn scope(m: &Message) -> u8 {
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
            Some(EdnsOption::Subnet(c)) => c.scope_prefix(),
            other => panic!("no ECS echo: {other:?}"),
        }
    }

    #[test]
    fn ecs_scope_says_how_far_the_answer_holds() {
        let s = shared("test.toml");
        // A steered answer holds for the deciding network.
        let m = ask(&s, "turn.example.com.", T::A, Opts::ecs("81.2.69.0/24"));
        assert!(scope(&m) > 0 && scope(&m) <= 24, "scope {}", scope(&m));
        // Static data holds for everyone.
        let m = ask(&s, "ns1.example.com.", T::A, Opts::ecs("81.2.69.0/24"));
        assert_eq!(scope(&m), 0);
        // A source prefix of 0 asks not to be located: scope 0.
        let m = ask(&s, "turn.example.com.", T::A, Opts::ecs("0.0.0.0/0"));
        assert_eq!(scope(&m), 0);
        // The same answer from the cache carries the same scope.
        let m2 = ask(&s, "turn.example.com.", T::A, Opts::ecs("81.2.69.0/24"));
        let m1 = ask(&s, "turn.example.com.", T::A, Opts::ecs("81.2.69.0/24"));
        assert_eq!(scope(&m1), scope(&m2));
    }

    fn key_of(s: &Shared, name: &str, t: T, o: Opts, src: &str) -> Option<CacheKey> {
        let raw = query(name, t, o);
        let q = parse_query(&raw).unwrap();
        let (st, h) = s.view();
        let src: IpAddr = src.parse().unwrap();
        let entry = st.names.get(q.qname_lower());
        s.cache_key(&st, &h, &q, entry, &Client::new(&st, &q, src))
            .0
    }

    #[test]
    fn the_cache_key_holds_what_decides_the_answer() {
        let s = shared("test.toml");
        let k = |n, t, o, src| key_of(&s, n, t, o, src);
        let base = k("turn.example.com.", T::A, Opts::default(), "81.2.69.1").unwrap();
        // Case does not matter; the source only through its cell.
        assert_eq!(
            k("TURN.example.COM.", T::A, Opts::default(), "81.2.69.9"),
            Some(base)
        );
        // Type, EDNS shape and cell do.
        assert_ne!(
            k("turn.example.com.", T::AAAA, Opts::default(), "81.2.69.1"),
            Some(base)
        );
        assert_ne!(
            k("turn.example.com.", T::A, Opts::edns(), "81.2.69.1"),
            Some(base)
        );
        let other_cell = k(
            "turn.example.com.",
            T::A,
            Opts::ecs("1.0.16.0/24"),
            "81.2.69.1",
        )
        .unwrap();
        assert_ne!(other_cell.cell, base.cell);
        assert!(base.cell.is_some());
        // Static data: no cell, whoever asks.
        let st1 = k(
            "ns1.example.com.",
            T::A,
            Opts::ecs("81.2.69.0/24"),
            "192.0.2.1",
        )
        .unwrap();
        let st2 = k(
            "ns1.example.com.",
            T::A,
            Opts::ecs("1.0.16.0/24"),
            "192.0.2.1",
        )
        .unwrap();
        assert_eq!(st1, st2);
        assert_eq!(st1.cell, None);
        // A steered name's other types are static too.
        assert_eq!(
            k("turn.example.com.", T::TXT, Opts::default(), "81.2.69.1")
                .unwrap()
                .cell,
            None
        );
        // Names we hold no data for are not cached.
        assert_eq!(
            k("nothere.example.com.", T::A, Opts::default(), "81.2.69.1"),
            None
        );
    }

    #[test]
    fn cached_answers_are_the_answers() {
        let s = shared("answers.toml");
        let raw = query("mx20.example.org.", T::MX, Opts::edns());
        let (st, h) = s.view();
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let mut w = s.worker(Transport::Udp);
        let answer = |w: &mut Worker| {
            let mut out = Vec::new();
            s.handle(&st, &h, &raw, src, Transport::Udp, w, &mut out);
            out
        };
        let first = answer(&mut w);
        let q = parse_query(&raw).unwrap();
        let entry = st.names.get(q.qname_lower());
        let key = s
            .cache_key(&st, &h, &q, entry, &Client::new(&st, &q, src))
            .0
            .unwrap();
        let local = w.local.as_ref().unwrap();
        assert!(local.get(&key).is_some(), "stored in the worker's cache");
        assert_eq!(first, answer(&mut w));
        // The same cached template, finished for a smaller limit (no EDNS):
        // truncated by the rules, not replayed whole.
        let plain = query("mx20.example.org.", T::MX, Opts::default());
        let m = reply(&s, &plain);
        assert!(!m.metadata.truncation && m.answers.len() == 20);
        let m = Message::from_bytes(&first).unwrap();
        assert_eq!(m.additionals.len(), 20);
    }
}
