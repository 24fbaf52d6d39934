//! The answer engine: from a parsed query and a located client to the
//! records of the response. Protocol-agnostic (UDP fast path, TCP through
//! hickory-server and `explain` all use it) and free of I/O.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, HINFO, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::client::{Client, Dependence};
use super::state::{NameKind, ServeState, SteeredName};
use super::wire::Query;
use crate::health::HealthSnapshot;
use crate::steer::{decide_ranked, Decision};

/// The records and flags of a response, before encoding.
#[derive(Debug, Clone)]
pub struct Response {
    /// Response code (12 bits; values above 15 need EDNS).
    pub rcode: u16,
    /// Authoritative answer.
    pub aa: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section (without OPT).
    pub additional: Vec<Record>,
    /// How the answer depends on the client.
    pub dependence: Dependence,
    /// The steering decision, when one was made (for `explain` and metrics).
    pub decision: Option<Decision>,
    /// Cap on the negative-caching TTL: a steered name without records of
    /// the asked type (no IPv6 relays in the chosen region, say) must not be
    /// cached as "no data" longer than a steered answer would be.
    pub negative_cap: Option<u32>,
}

impl Response {
    /// An empty response.
    pub fn new(rcode: ResponseCode, aa: bool) -> Self {
        Response {
            rcode: u16::from(rcode),
            aa,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            dependence: Dependence::None,
            decision: None,
            negative_cap: None,
        }
    }

    /// Whether the response can be cached and replayed for the same key.
    pub fn cacheable(&self) -> bool {
        self.rcode != u16::from(ResponseCode::ServFail)
    }
}

const TYPE_AXFR: u16 = 252;
const TYPE_IXFR: u16 = 251;
const TYPE_ANY: u16 = 255;
/// CNAMEs followed for one answer (BIND and Knot stop at 16 too).
const MAX_CNAME_CHAIN: usize = 16;

/// Answers `q` for `client`. The caller has already handled EDNS version
/// negotiation; this only looks at the question.
pub fn respond(st: &ServeState, health: &HealthSnapshot, q: &Query, client: &Client) -> Response {
    if q.qclass != 1 && q.qclass != 255 {
        return Response::new(ResponseCode::Refused, false);
    }
    match q.qtype {
        TYPE_AXFR | TYPE_IXFR => return Response::new(ResponseCode::Refused, false),
        41 => return Response::new(ResponseCode::FormErr, false),
        249 | 250 | 253 | 254 => return Response::new(ResponseCode::NotImp, false),
        _ => {}
    }
    let Ok(name) = Name::from_bytes(q.qname_lower()) else {
        return Response::new(ResponseCode::FormErr, false);
    };
    let lower = LowerName::from(&name);
    if st.zone_for(&lower).is_none() {
        return Response::new(ResponseCode::Refused, false);
    }
    let mut r = Response::new(ResponseCode::NoError, true);
    let qtype = RecordType::from(q.qtype);
    let mut cur = name;
    for _ in 0..MAX_CNAME_CHAIN {
        match answer_at(st, health, &cur, qtype, client, &mut r) {
            Step::Done => return r,
            Step::Cname(target) => {
                let tl = LowerName::from(&target);
                if st.zone_for(&tl).is_none() {
                    return r; // out of our zones: the resolver follows it
                }
                if r.answers.iter().any(|a| a.name == target) {
                    return r; // a loop: the chain up to where it repeats (as NSD)
                }
                cur = target;
            }
            Step::NoData(zi) => {
                negative(st, zi, &mut r);
                return r;
            }
            Step::NxDomain(zi) => {
                // RFC 6604 §2.1: the rcode is that of the last name in the
                // chain, even when CNAMEs were followed to it.
                r.rcode = u16::from(ResponseCode::NXDomain);
                negative(st, zi, &mut r);
                return r;
            }
        }
    }
    // A chain longer than MAX_CNAME_CHAIN (a loop, or just long): what was
    // followed so far, for the resolver to continue or give up on.
    r
}

enum Step {
    Done,
    Cname(Name),
    NoData(u16),
    NxDomain(u16),
}

fn negative(st: &ServeState, zi: u16, r: &mut Response) {
    let z = &st.zones[zi as usize];
    let mut soa = z.soa().clone();
    soa.ttl = z.negative_ttl().min(r.negative_cap.unwrap_or(u32::MAX));
    r.authority.push(soa);
}

fn answer_at(
    st: &ServeState,
    health: &HealthSnapshot,
    name: &Name,
    qtype: RecordType,
    client: &Client,
    r: &mut Response,
) -> Step {
    let lower = LowerName::from(name);
    let Some((zi, zone)) = st.zone_for(&lower) else {
        return Step::Done;
    };
    let entry = st.names.get(&*super::wire::wire_name(name)).copied();
    let kind = entry.map(|e| e.kind).unwrap_or(NameKind::Static);
    let is_any = u16::from(qtype) == TYPE_ANY;
    match kind {
        NameKind::Steered(sid) if matches!(qtype, RecordType::A | RecordType::AAAA) || is_any => {
            let s = &st.steered[sid as usize];
            if is_any {
                return minimal_any(name, s.ttl, r);
            }
            steer_addresses(st, health, s, name, qtype, client, r);
            return if r.answers.is_empty() && r.rcode == 0 {
                Step::NoData(zi)
            } else {
                Step::Done
            };
        }
        NameKind::Srv(sid, k) => {
            let s = &st.steered[sid as usize];
            if is_any {
                return minimal_any(name, s.ttl, r);
            }
            if qtype != RecordType::SRV {
                return Step::NoData(zi);
            }
            steer_srv(st, health, s, k as usize, client, r);
            return if r.answers.is_empty() && r.rcode == 0 {
                Step::NoData(zi)
            } else {
                Step::Done
            };
        }
        NameKind::MemberHost(sid, m) => {
            let s = &st.steered[sid as usize];
            if is_any {
                return minimal_any(name, s.ttl, r);
            }
            let before = r.answers.len();
            push_addresses(st, m, name, s.ttl, qtype, &mut r.answers);
            return if r.answers.len() == before {
                Step::NoData(zi)
            } else {
                Step::Done
            };
        }
        _ => {}
    }
    let lookup = if qtype == RecordType::DS {
        zone.lookup_ds(&lower)
    } else {
        zone.lookup(&lower)
    };
    match lookup {
        crate::zone::Lookup::Found(node) => answer_node(st, name, node, qtype, is_any, zi, r),
        crate::zone::Lookup::Delegation(_, node) => {
            r.aa = false;
            let ns = node.rrset(RecordType::NS).unwrap_or_default();
            r.authority.extend(ns.iter().cloned());
            additional_for(st, ns, r);
            Step::Done
        }
        crate::zone::Lookup::EmptyNonTerminal => Step::NoData(zi),
        // Steering owns the name (other types than it answers) or a name below it.
        crate::zone::Lookup::NxDomain
            if entry.is_some() || st.steered_ents.contains(&*super::wire::wire_name(name)) =>
        {
            Step::NoData(zi)
        }
        crate::zone::Lookup::NxDomain => {
            let owned = |n: &LowerName| {
                let w = super::wire::wire_name(&Name::from(n.clone()));
                st.steered_ents.contains(&w) || st.names.contains_key(&w)
            };
            match zone.wildcard(&lower, owned) {
                // RFC 4592 §3.3.1: synthesized with the query name as owner.
                Some(node) => answer_node(st, name, node, qtype, is_any, zi, r),
                None => Step::NxDomain(zi),
            }
        }
    }
}

/// The answer from the data at one node, owned by `name` (the node's own
/// name, or the query name when the node is a wildcard).
fn answer_node(
    st: &ServeState,
    name: &Name,
    node: &crate::zone::Node,
    qtype: RecordType,
    is_any: bool,
    zi: u16,
    r: &mut Response,
) -> Step {
    if is_any {
        let ttl = node
            .rrsets()
            .next()
            .map(|(_, rs)| rs[0].ttl)
            .unwrap_or(3600);
        return minimal_any(name, ttl, r);
    }
    if let Some(rs) = node.rrset(qtype) {
        r.answers.extend(rs.iter().map(|rec| owned_by(rec, name)));
        additional_for(st, rs, r);
        return Step::Done;
    }
    if let Some(c) = node.rrset(RecordType::CNAME) {
        r.answers.push(owned_by(&c[0], name));
        if let RData::CNAME(t) = &c[0].data {
            return Step::Cname(t.0.to_lowercase());
        }
    }
    Step::NoData(zi)
}

/// `rec`, or for a wildcard's record the one synthesized from it with the
/// query name as owner.
fn owned_by(rec: &Record, name: &Name) -> Record {
    let mut r = rec.clone();
    if r.name.is_wildcard() {
        r.name = name.clone();
    }
    r
}

/// RFC 8482: answer ANY with one synthesized HINFO instead of every RRset.
fn minimal_any(name: &Name, ttl: u32, r: &mut Response) -> Step {
    r.answers.push(Record::from_rdata(
        name.clone(),
        ttl,
        RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
    ));
    Step::Done
}

/// In-zone A/AAAA for the targets of NS, MX and SRV records.
fn additional_for(st: &ServeState, rs: &[Record], r: &mut Response) {
    for rec in rs {
        let target = match &rec.data {
            RData::NS(n) => &n.0,
            RData::MX(mx) => &mx.exchange,
            RData::SRV(srv) => &srv.target,
            _ => continue,
        };
        if let Some((_, z)) = st.zone_for(&LowerName::from(target)) {
            for g in z.glue(target) {
                if !r.additional.contains(g) {
                    r.additional.push(g.clone());
                }
            }
        }
    }
}

/// Runs the steering decision for a steered name.
pub fn steer_decision(
    st: &ServeState,
    health: &HealthSnapshot,
    s: &SteeredName,
    client: &Client,
) -> Decision {
    let class = st.cells.class(client.cell(st).class);
    decide_ranked(
        &st.steering,
        health,
        s.pool,
        class.ranking.clone(),
        client.hash,
        s.count,
    )
}

/// The TTL of a steered answer: the name's TTL, capped at
/// `steering.degraded_ttl` when the answering region is degraded (a member
/// down or shedding) or the answer is a failover, so clients come back
/// sooner once things recover.
fn answer_ttl(st: &ServeState, health: &HealthSnapshot, s: &SteeredName, d: &Decision) -> u32 {
    let degraded = d.outcome != crate::steer::Outcome::Nearest
        || d.region.is_some_and(|r| {
            st.steering.pools[s.pool as usize].by_region[r as usize]
                .iter()
                .any(|&m| {
                    let h = health.get(m);
                    !h.usable || h.shed > 0.0
                })
        });
    if degraded {
        s.ttl.min(st.config.file.steering.degraded_ttl)
    } else {
        s.ttl
    }
}

fn note_decision(d: Decision, r: &mut Response) {
    r.dependence = if d.hashed {
        Dependence::Subnet
    } else {
        Dependence::Cell
    };
    if d.members.is_empty() {
        r.rcode = u16::from(ResponseCode::ServFail);
        r.aa = false;
    }
    r.decision = Some(d);
}

fn steer_addresses(
    st: &ServeState,
    health: &HealthSnapshot,
    s: &SteeredName,
    name: &Name,
    qtype: RecordType,
    client: &Client,
    r: &mut Response,
) {
    let d = steer_decision(st, health, s, client);
    let ttl = answer_ttl(st, health, s, &d);
    for &m in &d.members {
        push_addresses(st, m, name, ttl, qtype, &mut r.answers);
    }
    r.negative_cap = Some(ttl);
    note_decision(d, r);
}

fn steer_srv(
    st: &ServeState,
    health: &HealthSnapshot,
    s: &SteeredName,
    k: usize,
    client: &Client,
    r: &mut Response,
) {
    let (owner, port) = &s.srv[k];
    let d = steer_decision(st, health, s, client);
    let ttl = answer_ttl(st, health, s, &d);
    r.negative_cap = Some(ttl);
    for &m in &d.members {
        let member = &st.steering.members[m as usize];
        let Ok(target) = Name::from_ascii(&member.name).and_then(|n| n.append_domain(&s.name))
        else {
            continue;
        };
        let weight = member.weight.min(u16::MAX as u32) as u16;
        r.answers.push(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::SRV(SRV::new(10, weight, *port, target.clone())),
        ));
        push_addresses(st, m, &target, ttl, RecordType::A, &mut r.additional);
        push_addresses(st, m, &target, ttl, RecordType::AAAA, &mut r.additional);
    }
    note_decision(d, r);
}

fn push_addresses(
    st: &ServeState,
    m: u32,
    name: &Name,
    ttl: u32,
    t: RecordType,
    out: &mut Vec<Record>,
) {
    let member = &st.steering.members[m as usize];
    match t {
        RecordType::A => out.extend(
            member
                .v4
                .iter()
                .map(|a| Record::from_rdata(name.clone(), ttl, RData::A(A(*a)))),
        ),
        RecordType::AAAA => out.extend(
            member
                .v6
                .iter()
                .map(|a| Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(*a)))),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hickory_proto::rr::RecordType as T;

    use super::*;
    use crate::dns::testkit::{all_up, lines, query, state, Opts};
    use crate::dns::wire::parse_query;

    /// The engine's response for `name`/`t` from a documentation address.
    fn ask(st: &ServeState, name: &str, t: T) -> Response {
        let raw = query(name, t, Opts::default());
        let q = parse_query(&raw).unwrap();
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        respond(st, &all_up(st), &q, &Client::new(st, &q, src))
    }

    fn rcode(r: &Response) -> ResponseCode {
        ResponseCode::from_low(r.rcode as u8)
    }

    fn is_nodata(r: &Response) -> bool {
        r.rcode == 0
            && r.aa
            && r.answers.is_empty()
            && r.authority.len() == 1
            && r.authority[0].record_type() == T::SOA
    }

    #[test]
    fn wildcards_synthesize_with_the_query_name_as_owner() {
        let st = state("answers.toml");
        let r = ask(&st, "x.wild.example.org.", T::A);
        assert_eq!(lines(&r.answers), ["x.wild.example.org. A 192.0.2.80"]);
        assert!(r.aa && r.rcode == 0 && r.authority.is_empty());
        // More than one label below the closest encloser.
        let r = ask(&st, "a.b.wild.example.org.", T::AAAA);
        assert_eq!(
            lines(&r.answers),
            ["a.b.wild.example.org. AAAA 2001:db8::80"]
        );
        // Additional data for synthesized records, as for any other.
        let r = ask(&st, "x.wild.example.org.", T::MX);
        assert_eq!(lines(&r.additional), ["mail.example.org. A 192.0.2.25"]);
        // Asking for the wildcard itself is an ordinary lookup.
        let r = ask(&st, "*.wild.example.org.", T::A);
        assert_eq!(lines(&r.answers), ["*.wild.example.org. A 192.0.2.80"]);
        // The apex wildcard answers only its own type.
        let r = ask(&st, "anything.example.org.", T::TXT);
        assert_eq!(
            lines(&r.answers),
            ["anything.example.org. TXT apex wildcard"]
        );
    }

    #[test]
    fn wildcard_covered_names_without_the_type_are_nodata() {
        let st = state("answers.toml");
        assert!(is_nodata(&ask(&st, "x.wild.example.org.", T::TXT)));
        assert!(is_nodata(&ask(&st, "anything.example.org.", T::A)));
    }

    #[test]
    fn no_synthesis_at_or_below_an_existing_name() {
        let st = state("answers.toml");
        // host.wild exists: its other types are NODATA, not the wildcard's.
        assert!(is_nodata(&ask(&st, "host.wild.example.org.", T::MX)));
        // Below it the closest encloser is host.wild, which has no `*` child.
        let r = ask(&st, "a.host.wild.example.org.", T::A);
        assert_eq!(rcode(&r), ResponseCode::NXDomain);
        assert_eq!(r.authority[0].record_type(), T::SOA);
        // An empty non-terminal is an existing name too (RFC 4592 §2.2.2).
        assert!(is_nodata(&ask(&st, "ent.example.org.", T::TXT)));
        let r = ask(&st, "x.ent.example.org.", T::A);
        assert_eq!(rcode(&r), ResponseCode::NXDomain);
    }

    #[test]
    fn no_synthesis_across_a_delegation() {
        let st = state("answers.toml");
        let r = ask(&st, "x.sub2.example.org.", T::A);
        assert!(!r.aa && r.answers.is_empty() && r.rcode == 0);
        assert_eq!(
            lines(&r.authority),
            ["sub2.example.org. NS ns1.example.org."]
        );
    }

    #[test]
    fn steered_names_are_never_wildcard_shadowed() {
        let st = state("answers.toml");
        let r = ask(&st, "turn.example.org.", T::A);
        assert_eq!(r.answers.len(), 1);
        assert!(r.decision.is_some());
        // Other types at a steered name, its SRV names and member hosts.
        for name in [
            "turn.example.org.",
            "_turn._udp.turn.example.org.",
            "use1-a.turn.example.org.",
        ] {
            assert!(is_nodata(&ask(&st, name, T::TXT)), "{name}");
        }
        // Below a steered name the closest encloser is the steered name.
        let r = ask(&st, "x.turn.example.org.", T::TXT);
        assert_eq!(rcode(&r), ResponseCode::NXDomain);
        // The SRV name's parent exists only because of steering.
        let r = ask(&st, "_udp.turn.example.org.", T::TXT);
        assert!(is_nodata(&r));
    }

    #[test]
    fn cname_chains_end_with_the_final_rcode() {
        let st = state("answers.toml");
        let r = ask(&st, "chain1.example.org.", T::A);
        assert_eq!(r.answers.len(), 5);
        assert_eq!(lines(&r.answers[4..]), ["web.example.org. A 192.0.2.90"]);
        // A wildcard CNAME joins the chain with the query name as owner.
        let r = ask(&st, "x.alias.example.org.", T::A);
        assert_eq!(
            r.answers[0].to_string().split_whitespace().next(),
            Some("x.alias.example.org.")
        );
        assert_eq!(r.answers.len(), 3);
        // RFC 6604: a chain to a name that does not exist is NXDOMAIN.
        let r = ask(&st, "dangling.example.org.", T::A);
        assert_eq!(rcode(&r), ResponseCode::NXDomain);
        assert_eq!(r.answers.len(), 1);
        assert!(r.aa);
        assert_eq!(r.authority[0].record_type(), T::SOA);
        // A chain to a name that exists without the type is NODATA.
        let r = ask(&st, "chain1.example.org.", T::TXT);
        assert_eq!((r.rcode, r.answers.len()), (0, 4));
        assert_eq!(r.authority[0].record_type(), T::SOA);
        // Leaving the zone: returned as is, for the resolver to follow.
        let r = ask(&st, "out.example.org.", T::A);
        assert_eq!(
            lines(&r.answers),
            ["out.example.org. CNAME www.example.net."]
        );
        assert!(r.rcode == 0 && r.authority.is_empty());
        // A loop: the chain up to where it repeats.
        let r = ask(&st, "loop1.example.org.", T::A);
        assert_eq!(r.rcode, 0);
        assert_eq!(r.answers.len(), 2);
        // The CNAME itself is answered, not followed.
        let r = ask(&st, "www.example.org.", T::CNAME);
        assert_eq!(
            lines(&r.answers),
            ["www.example.org. CNAME web.example.org."]
        );
    }

    #[test]
    fn long_chains_are_followed_and_bounded() {
        let st = state("answers.toml");
        // 13 CNAMEs to an address: followed to the end, as NSD does.
        let r = ask(&st, "long0.example.org.", T::A);
        assert_eq!((r.rcode, r.answers.len()), (0, 14));
        // 20 CNAMEs: the first MAX_CNAME_CHAIN, NOERROR.
        let r = ask(&st, "huge0.example.org.", T::A);
        assert_eq!((r.rcode, r.answers.len()), (0, MAX_CNAME_CHAIN));
        assert!(r.answers.iter().all(|a| a.record_type() == T::CNAME));
    }

    #[test]
    fn ds_at_a_delegation_is_answered_from_the_parent_side() {
        let st = state("answers.toml");
        for name in ["sub.example.org.", "nods.example.org."] {
            let r = ask(&st, name, T::DS);
            assert!(is_nodata(&r), "{name}: {r:?}");
        }
        // Any other type there, or DS below the cut, is a referral.
        for (name, t) in [("sub.example.org.", T::A), ("x.sub.example.org.", T::DS)] {
            let r = ask(&st, name, t);
            assert!(!r.aa && r.answers.is_empty(), "{name}");
            assert_eq!(r.authority[0].record_type(), T::NS);
            assert_eq!(lines(&r.additional), ["ns.sub.example.org. A 192.0.2.54"]);
        }
    }

    #[test]
    fn rcode_paths() {
        let st = state("answers.toml");
        let cases = [
            ("www.example.net.", T::A, ResponseCode::Refused),
            ("example.org.", T::AXFR, ResponseCode::Refused),
            ("example.org.", T::IXFR, ResponseCode::Refused),
            ("example.org.", T::OPT, ResponseCode::FormErr),
            ("example.org.", T::Unknown(249), ResponseCode::NotImp),
            ("example.org.", T::SOA, ResponseCode::NoError),
            ("nothere.ent.example.org.", T::A, ResponseCode::NXDomain),
        ];
        for (name, t, want) in cases {
            assert_eq!(rcode(&ask(&st, name, t)), want, "{name} {t}");
        }
        // Class CHAOS is refused.
        let mut raw = query("example.org.", T::TXT, Opts::default());
        let n = raw.len();
        raw[n - 1] = 3;
        let q = parse_query(&raw).unwrap();
        let r = respond(
            &st,
            &all_up(&st),
            &q,
            &Client::new(&st, &q, "192.0.2.1".parse().unwrap()),
        );
        assert_eq!(rcode(&r), ResponseCode::Refused);
        // ANY gets one synthesized HINFO (RFC 8482).
        let r = ask(&st, "example.org.", T::ANY);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].record_type(), T::HINFO);
    }

    #[test]
    fn negative_ttl_is_the_soa_minimum() {
        let st = state("answers.toml");
        let r = ask(&st, "a.host.wild.example.org.", T::A);
        assert_eq!(r.authority[0].ttl, 300);
    }
}
