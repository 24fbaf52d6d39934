//! The fuzz oracles of the DNS side, shared by the cargo-fuzz targets
//! (`fuzz/`) and `tests/fuzz_corpus.rs`, which replays the committed corpora
//! under stable `cargo test`.
//!
//! * [`Dns::check`]: a whole request through the handler (parse, cookies,
//!   ECS, steering, cache, encode), over UDP and TCP. Oracle: no panic; a
//!   reply parses (hickory-proto), is a response, carries the query's id,
//!   and — when our parser accepted the query — its question, byte for byte;
//!   a UDP reply fits the client's EDNS payload (512 without EDNS); a
//!   negative answer from the fast path is the one the engine gives
//!   ([`super::negative::check_against_engine`]).
//! * [`Dns::check_options`]: the same with `data` as the RDATA of the OPT
//!   record of a well-formed query, so that most inputs reach the EDNS
//!   option parsers (Client Subnet, Cookie) instead of failing earlier.
//! * [`zone_text`] and [`config_text`]: the RFC 1035 zone parser and the
//!   TOML configuration loader never panic, and their errors name the file.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinDecodable;

use super::handler::{Shared, Transport};
use super::state::ServeState;
use super::wire::{parse_query, HEADER_LEN};
use crate::config::{Config, ConfigErrors};
use crate::health::HealthSnapshot;

/// The serving state of the repository's `tests/data/<file>`.
pub fn test_state(file: &str) -> ServeState {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    ServeState::load(Config::load(&path).expect("test config"), 1).expect("test state")
}

/// A serving state (`tests/data/test.toml`: steered pools, static zones,
/// cookies on) and the handler around it.
pub struct Dns {
    shared: Arc<Shared>,
}

impl Default for Dns {
    fn default() -> Self {
        Self::new()
    }
}

impl Dns {
    /// Loads the test configuration of the repository.
    pub fn new() -> Dns {
        let st = test_state("test.toml");
        let h = HealthSnapshot::all_up(st.steering.members.len(), 1);
        Dns {
            shared: Shared::new(st, h),
        }
    }

    /// Runs `data` as a request over UDP and TCP; `Err` says what broke.
    pub fn check(&self, data: &[u8]) -> Result<(), String> {
        let (st, health) = self.shared.view();
        let src: IpAddr = [192, 0, 2, 1].into();
        for transport in [Transport::Udp, Transport::Tcp] {
            let mut out = Vec::new();
            let mut w = self.shared.worker(transport);
            let sent = self
                .shared
                .handle(&st, &health, data, src, transport, &mut w, &mut out);
            if sent {
                judge(data, &out, transport)?;
            }
        }
        match parse_query(data) {
            Ok(q) => super::negative::check_against_engine(&st, &health, &q),
            Err(_) => Ok(()),
        }
    }

    /// `data` as the OPT RDATA of a query for `turn.example.com` A.
    pub fn check_options(&self, data: &[u8]) -> Result<(), String> {
        let data = &data[..data.len().min(1024)];
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in ["turn", "example", "com"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, A, IN
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]); // OPT, 1232, TTL 0
        q.extend_from_slice(&(data.len() as u16).to_be_bytes());
        q.extend_from_slice(data);
        self.check(&q)
    }
}

/// Checks one reply to `query`.
fn judge(query: &[u8], reply: &[u8], transport: Transport) -> Result<(), String> {
    if query.len() < HEADER_LEN {
        return Err("answered a packet shorter than a DNS header".into());
    }
    let m = Message::from_bytes(reply)
        .map_err(|e| format!("{transport:?} reply does not parse: {e}"))?;
    if m.metadata.message_type != MessageType::Response {
        return Err(format!("{transport:?} reply is not a response"));
    }
    if reply[..2] != query[..2] {
        return Err(format!("{transport:?} reply id differs from the query's"));
    }
    if let Ok(q) = parse_query(query) {
        let Some(rq) = m.queries.first() else {
            return Err(format!(
                "{transport:?} reply to a valid query has no question"
            ));
        };
        let want = Name::from_bytes(&query[HEADER_LEN..q.question_end - 4])
            .map_err(|e| format!("accepted a query whose name hickory refuses: {e}"))?;
        if rq.name().to_string() != want.to_string()
            || u16::from(rq.query_type()) != q.qtype
            || u16::from(rq.query_class()) != q.qclass
        {
            return Err(format!(
                "{transport:?} reply question {rq} differs from the query's {want} {} {}",
                q.qtype, q.qclass
            ));
        }
        if matches!(transport, Transport::Udp) {
            let limit = q.edns.map_or(512, |e| (e.payload as usize).max(512));
            if reply.len() > limit {
                return Err(format!(
                    "UDP reply of {} bytes exceeds the client's {limit}",
                    reply.len()
                ));
            }
        }
    }
    Ok(())
}

/// A zone file's text parsed for origin `example.com.`: every problem is
/// located in the file (`fuzz.zone:LINE`).
pub fn zone_text(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let origin = Name::from_ascii("example.com.").expect("literal");
    match crate::zone::parse_str(&text, Path::new("fuzz.zone"), &origin) {
        Ok(_) => Ok(()),
        Err(e) => located(&e, |l| l.starts_with("fuzz.zone")),
    }
}

/// A configuration file's text loaded and validated: every problem has a
/// location (`fuzz.toml:LINE` for syntax, a key path for validation).
pub fn config_text(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    match Config::from_str(&text, Path::new("fuzz.toml")) {
        Ok(_) => Ok(()),
        Err(e) => located(&e, |l| !l.is_empty()),
    }
}

/// Errors must be a non-empty list, each with a message and a location.
fn located(errs: &ConfigErrors, ok: impl Fn(&str) -> bool) -> Result<(), String> {
    if errs.0.is_empty() {
        return Err("an error without any problem in it".into());
    }
    match errs
        .0
        .iter()
        .find(|e| e.message.is_empty() || !ok(&e.location))
    {
        None => Ok(()),
        Some(e) => Err(format!(
            "a problem without a proper location or message: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testkit::{query, Opts};
    use hickory_proto::rr::RecordType;

    /// The oracle can say no: doctored replies are caught.
    #[test]
    fn the_oracle_catches_wrong_replies() {
        let dns = Dns::new();
        let (st, health) = dns.shared.view();
        let q = query("TuRn.example.com.", RecordType::A, Opts::edns());
        let mut good = Vec::new();
        assert!(dns.shared.handle(
            &st,
            &health,
            &q,
            [192, 0, 2, 1].into(),
            Transport::Udp,
            &mut dns.shared.worker(Transport::Udp),
            &mut good
        ));
        judge(&q, &good, Transport::Udp).unwrap();
        let mut id = good.clone();
        id[1] ^= 1;
        assert!(judge(&q, &id, Transport::Udp).unwrap_err().contains("id"));
        let mut case = good.clone();
        case[HEADER_LEN + 1] = b't'; // "TuRn" echoed as "tuRn"
        assert!(judge(&q, &case, Transport::Udp)
            .unwrap_err()
            .contains("question"));
        let mut big = good.clone();
        big.resize(1300, 0);
        assert!(judge(&q, &big, Transport::Udp).is_err());
        assert!(judge(&q, &good[..5], Transport::Udp).is_err());
        assert!(judge(&q[..5], &good, Transport::Udp).is_err());
    }
}
