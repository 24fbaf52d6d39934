//! Fixtures for the DNS modules' unit tests: serving states loaded from the
//! repository's test configurations, queries built with hickory-proto, and
//! the whole pipeline run on bytes (no sockets).

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::handler::{Shared, Transport};
use super::state::ServeState;
use crate::health::HealthSnapshot;

/// The serving state of `tests/data/<file>`.
pub fn state(file: &str) -> ServeState {
    super::harness::test_state(file)
}

/// Every member up.
pub fn all_up(st: &ServeState) -> HealthSnapshot {
    HealthSnapshot::all_up(st.steering.members.len(), 1)
}

/// How a test query is built.
#[derive(Clone, Copy, Default)]
pub struct Opts {
    /// EDNS with this payload size.
    pub edns: Option<u16>,
    /// Client Subnet (address, source prefix); implies EDNS.
    pub ecs: Option<(IpAddr, u8)>,
}

impl Opts {
    /// EDNS with a 1232-byte payload.
    pub fn edns() -> Self {
        Opts {
            edns: Some(1232),
            ecs: None,
        }
    }

    /// EDNS with Client Subnet `subnet` (`addr/prefix`).
    pub fn ecs(subnet: &str) -> Self {
        let (a, p) = subnet.split_once('/').unwrap();
        Opts {
            edns: Some(1232),
            ecs: Some((a.parse().unwrap(), p.parse().unwrap())),
        }
    }
}

/// The wire bytes of a query for `name`/`t`.
pub fn query(name: &str, t: RecordType, o: Opts) -> Vec<u8> {
    let mut m = Message::new(0x2a2a, MessageType::Query, OpCode::Query);
    m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), t));
    if o.edns.is_some() || o.ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(o.edns.unwrap_or(1232));
        if let Some((a, p)) = o.ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(a, p, 0)));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// The whole pipeline on one packet from `src`: the raw reply, if any.
pub fn handle_raw(shared: &Shared, raw: &[u8], src: &str, transport: Transport) -> Option<Vec<u8>> {
    let (st, health) = shared.view();
    let mut out = Vec::new();
    shared
        .handle(
            &st,
            &health,
            raw,
            src.parse().unwrap(),
            transport,
            &mut shared.worker(transport),
            &mut out,
        )
        .then_some(out)
}

/// [`handle_raw`] over UDP from a documentation address, parsed.
pub fn ask(shared: &Shared, name: &str, t: RecordType, o: Opts) -> Message {
    let raw = handle_raw(shared, &query(name, t, o), "192.0.2.1", Transport::Udp).expect("a reply");
    Message::from_bytes(&raw).expect("the reply parses")
}

/// The records of a section as `owner TYPE rdata` lines, sorted.
pub fn lines(rs: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}
