//! `explain`: why a client gets the answer it gets. Runs the server's own
//! pipeline for a synthetic ECS query, so it cannot drift from what the
//! server does.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RData;
use serde::Serialize;

use super::client::{Client, Dependence};
use super::engine;
use super::state::ServeState;
use super::wire::{parse_query, Ecs};
use crate::geo::Location;
use crate::health::HealthSnapshot;
use crate::steer::Outcome;

/// The explanation for one client address and steered name.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The address asked about.
    pub ip: IpAddr,
    /// The subnet steering used (after the privacy cap).
    pub subnet: String,
    /// The steered name.
    pub name: String,
    /// What the GeoIP database says.
    pub geoip: Option<Location>,
    /// The database network of the address, or the override CIDR.
    pub network: String,
    /// The widest network with the same decision (what the ECS scope covers).
    pub scope_network: String,
    /// `geoip`, `override` or `unknown`.
    pub decided_by: &'static str,
    /// Regions best first.
    pub ranking: Vec<RankedOut>,
    /// How the decision went.
    pub outcome: Option<Outcome>,
    /// Region answering.
    pub region: Option<String>,
    /// Members answering.
    pub members: Vec<String>,
    /// The A/AAAA records that would be sent.
    pub answer: Vec<String>,
    /// Response code.
    pub rcode: String,
    /// ECS SCOPE PREFIX-LENGTH that would be returned.
    pub ecs_scope: u8,
    /// TTL of the answer.
    pub ttl: Option<u32>,
}

/// One ranked region.
#[derive(Debug, Serialize)]
pub struct RankedOut {
    /// Region name.
    pub region: String,
    /// Distance, km.
    pub distance_km: Option<f64>,
    /// Placed by an override.
    pub by_override: bool,
}

/// The steering decision for a client at `ip` on steered name number
/// `steered` (what `direct` ICE-server URLs use).
pub fn decide_for(
    st: &ServeState,
    health: &HealthSnapshot,
    ip: IpAddr,
    steered: usize,
) -> Option<crate::steer::Decision> {
    let s = st.steered.get(steered)?;
    let ip = ip.to_canonical();
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let mut pkt = Vec::new();
    build_query(&mut pkt, s, ip, bits);
    let q = parse_query(&pkt).ok()?;
    let client = Client::new(st, &q, ip);
    Some(engine::steer_decision(st, health, s, &client))
}

fn build_query(pkt: &mut Vec<u8>, s: &super::state::SteeredName, ip: IpAddr, bits: u8) {
    let qtype: u16 = if ip.is_ipv4() { 1 } else { 28 };
    pkt.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    pkt.extend_from_slice(&super::wire::wire_name(&s.name));
    pkt.extend_from_slice(&qtype.to_be_bytes());
    pkt.extend_from_slice(&[0, 1]);
    let mut ecs = Vec::new();
    super::wire::write_ecs(
        &mut ecs,
        &Ecs {
            addr: ip,
            source: bits,
        },
        0,
    );
    pkt.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    pkt.extend_from_slice(&(ecs.len() as u16).to_be_bytes());
    pkt.extend_from_slice(&ecs);
}

/// Explains the answer for `ip` on steered name number `steered` (A for
/// IPv4 clients, AAAA for IPv6).
pub fn explain(
    st: &ServeState,
    health: &HealthSnapshot,
    ip: IpAddr,
    steered: usize,
) -> Result<Explanation, String> {
    let s = st
        .steered
        .get(steered)
        .ok_or("no steered name configured")?;
    let ip = ip.to_canonical();
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    // The query a resolver would send for this client.
    let mut pkt = Vec::new();
    build_query(&mut pkt, s, ip, bits);
    let q = parse_query(&pkt).map_err(|e| format!("internal: {e:?}"))?;
    let client = Client::new(st, &q, ip);
    let cell = client.cell(st);
    let r = engine::respond(st, health, &q, &client);
    let class = st.cells.class(cell.class);
    let network = match (class.override_idx, st.steering.cidr_override(client.addr)) {
        (Some(_), Some((_, n))) => n.to_string(),
        _ => st.geo.lookup(client.addr).network.to_string(),
    };
    let scope_network = ipnet::IpNet::new(client.addr, cell.prefix)
        .map(|n| n.trunc().to_string())
        .unwrap_or_default();
    let d = r.decision.as_ref();
    let region_name = |r: u16| st.steering.regions[r as usize].name.clone();
    Ok(Explanation {
        ip,
        subnet: format!("{}/{}", client.addr, client.prefix),
        name: s.name.to_string(),
        geoip: client.location(st),
        network,
        scope_network,
        decided_by: match (class.override_idx, class.located) {
            (Some(_), _) => "override",
            (None, true) => "geoip",
            (None, false) => "unknown",
        },
        ranking: d
            .map(|d| {
                d.ranking
                    .iter()
                    .map(|x| RankedOut {
                        region: region_name(x.region),
                        distance_km: x.distance_km.map(|k| k.round()),
                        by_override: x.by_override,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        outcome: d.map(|d| d.outcome),
        region: d.and_then(|d| d.region).map(region_name),
        members: d
            .map(|d| {
                d.members
                    .iter()
                    .map(|&m| st.steering.members[m as usize].name.clone())
                    .collect()
            })
            .unwrap_or_default(),
        answer: r
            .answers
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::A(a) => Some(a.to_string()),
                RData::AAAA(a) => Some(a.to_string()),
                _ => None,
            })
            .collect(),
        rcode: ResponseCode::from((r.rcode >> 4) as u8, (r.rcode & 0xF) as u8).to_string(),
        ecs_scope: client.scope(
            r.dependence,
            (r.dependence != Dependence::None).then_some(cell),
        ),
        ttl: r.answers.first().map(|a| a.ttl),
    })
}
