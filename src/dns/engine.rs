//! The answer engine: from a parsed query and a located client to the
//! records of the response. Protocol-agnostic (UDP fast path, TCP through
//! hickory-server and `explain` all use it) and free of I/O.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, HINFO, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::client::Client;
use super::state::{NameKind, ServeState, SteeredName};
use super::wire::Query;
use crate::health::HealthSnapshot;
use crate::steer::{decide_ranked, Decision};

/// How the answer depends on the client, for caching and the ECS scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependence {
    /// The same for every client (ECS scope 0).
    None,
    /// Depends on the client's decision cell (scope = cell network prefix).
    Cell,
    /// Depends on the client's subnet hash too (scope ≥ hashing prefix).
    Subnet,
}

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
const MAX_CNAME_CHAIN: usize = 8;

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
                cur = target;
            }
            Step::NoData(zi) => {
                negative(st, zi, &mut r);
                return r;
            }
            Step::NxDomain(zi) => {
                if r.answers.is_empty() {
                    r.rcode = u16::from(ResponseCode::NXDomain);
                }
                negative(st, zi, &mut r);
                return r;
            }
        }
    }
    r.rcode = u16::from(ResponseCode::ServFail); // CNAME loop
    r.answers.clear();
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
    let entry = st.names.get(&*super::state::wire_name(name)).copied();
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
    match zone.lookup(&lower) {
        crate::zone::Lookup::Found(node) => {
            if is_any {
                let ttl = node
                    .rrsets()
                    .next()
                    .map(|(_, rs)| rs[0].ttl)
                    .unwrap_or(3600);
                return minimal_any(name, ttl, r);
            }
            if let Some(rs) = node.rrset(qtype) {
                r.answers.extend(rs.iter().cloned());
                additional_for(st, rs, r);
                return Step::Done;
            }
            if let Some(c) = node.rrset(RecordType::CNAME) {
                r.answers.push(c[0].clone());
                if let RData::CNAME(t) = &c[0].data {
                    return Step::Cname(t.0.to_lowercase());
                }
            }
            Step::NoData(zi)
        }
        crate::zone::Lookup::Delegation(_, node) => {
            r.aa = false;
            let ns = node.rrset(RecordType::NS).unwrap_or_default();
            r.authority.extend(ns.iter().cloned());
            additional_for(st, ns, r);
            Step::Done
        }
        crate::zone::Lookup::EmptyNonTerminal => Step::NoData(zi),
        // Steering owns the name (other types than it answers) or a name below it.
        crate::zone::Lookup::NxDomain if entry.is_some() || st.steered_ents.contains(&lower) => {
            Step::NoData(zi)
        }
        crate::zone::Lookup::NxDomain => Step::NxDomain(zi),
    }
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
