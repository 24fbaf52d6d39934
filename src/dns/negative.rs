//! Negative answers on the fast path.
//!
//! A random-subdomain flood asks for names nobody holds, each once, so the
//! answer cache cannot help. For a name that owns no data
//! ([`ServeState::names`] has no entry), [`classify`] decides from the
//! lower-case wire bytes alone — no allocation, a few hash probes — what the
//! engine would answer: NXDOMAIN or NODATA with the zone's SOA, REFUSED when
//! no zone holds the name, or "ask the engine" below a delegation or where a
//! wildcard applies. [`write`] then builds the response from the query's own
//! question and the zone's pre-encoded SOA, whose owner (and the SOA's names
//! within the zone) are pointers into the question's apex labels, patched
//! per query because the question's length varies.

use super::state::ServeState;
use super::wire::{Query, HEADER_LEN};

/// What the zones say about a name that owns no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The name does not exist in zone `.0`: NXDOMAIN with its SOA.
    NxDomain(u16),
    /// The name exists in zone `.0` only as an ancestor of other names:
    /// NODATA (NOERROR, no answer) with its SOA.
    NoData(u16),
    /// No zone of ours holds the name.
    Refused,
    /// Below a delegation, or where a wildcard applies: the engine answers.
    Engine,
}

impl Verdict {
    /// The response code, the AA bit and the zone whose SOA goes in the
    /// authority section; `None` for [`Verdict::Engine`].
    fn reply(self) -> Option<(u8, bool, Option<u16>)> {
        match self {
            Verdict::NxDomain(z) => Some((3, true, Some(z))),
            Verdict::NoData(z) => Some((0, true, Some(z))),
            Verdict::Refused => Some((5, false, None)),
            Verdict::Engine => None,
        }
    }
}

/// Whether the fast path may answer `q` if its name owns no data: class IN,
/// and a type the engine answers from zone data (not OPT, a zone transfer
/// or a meta type it refuses or does not implement).
pub fn eligible(q: &Query) -> bool {
    q.qclass == 1 && !matches!(q.qtype, 41 | 249..=254)
}

/// The verdict for `name` (lower-case wire form, as [`Query::qname_lower`]),
/// a name with no entry in `st.names`, asked in class IN for a type the
/// engine answers from zone data.
pub fn classify(st: &ServeState, name: &[u8]) -> Verdict {
    // Offsets of every suffix: the name itself first, the root last.
    let mut starts = [0u8; 128];
    let mut n = 0;
    let mut i = 0;
    while let Some(&len) = name.get(i) {
        if n == starts.len() {
            return Verdict::Engine;
        }
        starts[n] = i as u8;
        n += 1;
        if len == 0 {
            break;
        }
        i += 1 + len as usize;
    }
    let starts = &starts[..n];
    // The zone with the longest origin that is a suffix of the name.
    let mut found: Option<(usize, usize)> = None;
    for (zi, z) in st.negative.iter().enumerate() {
        let Some(off) = name.len().checked_sub(z.apex.len()) else {
            continue;
        };
        if name[off..] != *z.apex {
            continue;
        }
        let Ok(k) = starts.binary_search(&(off as u8)) else {
            continue;
        };
        if found.is_none_or(|(_, best)| k <= best) {
            found = Some((zi, k));
        }
    }
    let Some((zi, apex_k)) = found else {
        return Verdict::Refused;
    };
    let z = &st.negative[zi];
    let suffix = |k: usize| &name[starts[k] as usize..];
    if !z.cuts.is_empty() && (0..apex_k).any(|k| z.cuts.contains(suffix(k))) {
        return Verdict::Engine;
    }
    if z.ents.contains(name) || st.steered_ents.contains(name) {
        return Verdict::NoData(zi as u16);
    }
    if !z.wildcard_parents.is_empty() {
        // RFC 4592: the closest encloser is the nearest existing ancestor.
        let exists = |s: &[u8]| {
            st.names.contains_key(s) || z.ents.contains(s) || st.steered_ents.contains(s)
        };
        if let Some(k) = (1..=apex_k).find(|&k| exists(suffix(k))) {
            if z.wildcard_parents.contains(suffix(k)) {
                return Verdict::Engine;
            }
        }
    }
    Verdict::NxDomain(zi as u16)
}

/// Writes the header, the question (as the client sent it) and, for
/// NXDOMAIN and NODATA, the zone's SOA into `out`, for `q` parsed from
/// `raw`; the caller appends the OPT record. `room` is what the response
/// may take before the OPT. Returns false, with `out` unspecified, when it
/// does not fit or the verdict is [`Verdict::Engine`].
pub fn write(
    st: &ServeState,
    v: Verdict,
    q: &Query,
    raw: &[u8],
    edns: bool,
    room: usize,
    out: &mut Vec<u8>,
) -> bool {
    let Some((rcode, aa, zone)) = v.reply() else {
        return false;
    };
    let zone = zone.map(|z| &st.negative[z as usize]);
    let question = match raw.get(HEADER_LEN..q.question_end) {
        Some(b) => b,
        None => return false,
    };
    let soa_len = zone.map_or(0, |z| z.soa.bytes.len());
    if HEADER_LEN + question.len() + soa_len > room {
        return false;
    }
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    out.push(0x80 | (aa as u8) << 2 | q.rd as u8);
    out.push((q.cd as u8) << 4 | rcode);
    out.extend_from_slice(&[0, 1, 0, 0, 0, zone.is_some() as u8, 0, edns as u8]);
    out.extend_from_slice(question);
    if let Some(z) = zone {
        // The apex is the question name's last labels.
        let qname_len = q.qname_lower().len();
        let apex_at = (HEADER_LEN + qname_len - z.apex.len()) as u16;
        let ptr = (0xC000 | apex_at).to_be_bytes();
        let at = out.len();
        out.extend_from_slice(&z.soa.bytes);
        out[at..at + 2].copy_from_slice(&ptr);
        for &p in &z.soa.ptrs[..z.soa.nptrs as usize] {
            out[at + p as usize..at + p as usize + 2].copy_from_slice(&ptr);
        }
    }
    true
}

/// Whether the fast path's verdict for `q` is what the engine answers (the
/// same rcode and AA bit, no answer, the SOA of the same zone or, for
/// REFUSED, nothing). For the unit tests and the fuzz oracle; queries the
/// fast path does not take pass.
pub fn check_against_engine(
    st: &ServeState,
    health: &crate::health::HealthSnapshot,
    q: &Query,
) -> Result<(), String> {
    if !eligible(q) || st.names.contains_key(q.qname_lower()) {
        return Ok(());
    }
    let v = classify(st, q.qname_lower());
    let Some((rcode, aa, zone)) = v.reply() else {
        return Ok(());
    };
    let client = super::client::Client::new(st, q, std::net::Ipv4Addr::LOCALHOST.into());
    let r = super::engine::respond(st, health, q, &client);
    let soa_zone = |rec: &hickory_proto::rr::Record| {
        st.zones.iter().position(|z| {
            rec.record_type() == hickory_proto::rr::RecordType::SOA && rec.name == *z.origin()
        })
    };
    let engine_zone = match r.authority.as_slice() {
        [] => None,
        [soa] => soa_zone(soa).map(|z| z as u16),
        _ => Some(u16::MAX),
    };
    if (r.rcode, r.aa, r.answers.len(), engine_zone) != (u16::from(rcode), aa, 0, zone)
        || !r.additional.is_empty()
    {
        return Err(format!(
            "fast path says {v:?}, the engine rcode {} aa {} with {} answers, authority {:?}",
            r.rcode,
            r.aa,
            r.answers.len(),
            r.authority
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{Name, RecordType as T};
    use hickory_proto::serialize::binary::BinDecodable;

    use super::*;
    use crate::dns::client::Client;
    use crate::dns::engine::respond;
    use crate::dns::testkit::{all_up, query, state, Opts};
    use crate::dns::wire::parse_query;

    fn verdict(st: &ServeState, name: &str) -> Verdict {
        let raw = query(name, T::A, Opts::default());
        let q = parse_query(&raw).unwrap();
        classify(st, q.qname_lower())
    }

    #[test]
    fn names_are_classified_as_the_zones_say() {
        let st = state("test.toml");
        let v = |n| verdict(&st, n);
        assert_eq!(v("nothere.example.com."), Verdict::NxDomain(0));
        assert_eq!(v("a.b.c.nothere.example.com."), Verdict::NxDomain(0));
        // Below a steered name: nothing there.
        assert_eq!(v("x.turn.example.com."), Verdict::NxDomain(0));
        assert_eq!(v("example.net."), Verdict::Refused);
        assert_eq!(v("com."), Verdict::Refused);
        assert_eq!(v("."), Verdict::Refused);
        // Below a delegation: a referral.
        assert_eq!(v("x.lab.example.com."), Verdict::Engine);
        // Empty non-terminals: NODATA.
        assert_eq!(v("ent.sub.example.com."), Verdict::NoData(0));
        assert_eq!(v("sub.example.com."), Verdict::NoData(0));
        // Under an apex wildcard every new name is synthesized...
        let st = state("answers.toml");
        let v = |n| verdict(&st, n);
        assert_eq!(v("nothere.example.org."), Verdict::Engine);
        // ...but not below an existing name without a `*` child.
        assert_eq!(v("x.deep.ent.example.org."), Verdict::NxDomain(0));
    }

    /// Every name of a zone file's neighbourhood, answered both ways.
    #[test]
    fn the_fast_verdict_is_what_the_engine_answers() {
        for file in ["answers.toml", "test.toml"] {
            let st = state(file);
            let h = all_up(&st);
            let mut names: Vec<String> = st
                .names
                .keys()
                .filter_map(|k| Name::from_bytes(k).ok())
                .map(|n| n.to_string())
                .collect();
            names.sort();
            let mut asked = Vec::new();
            for n in &names {
                for prefix in ["", "zz.", "a.b.", "*.", "x.*."] {
                    asked.push(format!("{prefix}{n}"));
                }
                // Ancestors of every name (empty non-terminals, apexes).
                let mut s = n.as_str();
                while let Some((_, rest)) = s.split_once('.') {
                    asked.push(rest.to_string());
                    asked.push(format!("q.{rest}"));
                    s = rest;
                }
            }
            let mut fast = 0;
            for name in asked {
                let raw = query(&name, T::A, Opts::edns());
                let q = parse_query(&raw).unwrap();
                check_against_engine(&st, &h, &q).unwrap();
                if !st.names.contains_key(q.qname_lower())
                    && classify(&st, q.qname_lower()) != Verdict::Engine
                {
                    fast += 1;
                }
            }
            assert!(fast > 20, "{file}: only {fast} names took the fast path");
        }
    }

    #[test]
    fn the_written_answer_parses_with_the_soa_owned_by_the_apex() {
        let st = state("test.toml");
        let mut raw = query("Random-Label.Example.COM.", T::AAAA, Opts::default());
        raw[2] |= 0x01; // RD, echoed
        let q = parse_query(&raw).unwrap();
        let v = classify(&st, q.qname_lower());
        let mut out = Vec::new();
        assert!(write(&st, v, &q, &raw, false, 512, &mut out));
        let m = Message::from_bytes(&out).expect("parses");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_string(), "Random-Label.Example.COM.");
        let soa = &m.authorities[0];
        assert_eq!(soa.name.to_lowercase(), *st.zones[0].origin());
        assert_eq!(soa.ttl, st.zones[0].negative_ttl());
        assert_eq!(
            soa.data,
            st.zones[0].soa().data,
            "the SOA's names and numbers"
        );
        // No room: nothing promised.
        assert!(!write(&st, v, &q, &raw, false, 40, &mut out));
    }

    /// The fast path's whole response (OPT, ECS echo included) against the
    /// engine's, encoded and finished as before the fast path existed.
    #[test]
    fn fast_negative_replies_equal_the_engines() {
        use crate::dns::encode::{encode, finish, OptOut};
        use crate::dns::handler::{Shared, Transport};
        use crate::dns::testkit::handle_raw;
        let mut compared = 0;
        for (file, zone) in [
            ("test.toml", "example.com."),
            ("answers.toml", "example.org."),
        ] {
            let st = state(file);
            let h = all_up(&st);
            let payload = st.config.file.server.max_udp_payload;
            let shared = Shared::new(state(file), all_up(&st));
            for name in [
                format!("NoThere.{zone}"),
                format!("a.b.nothere.{zone}"),
                format!("x.deep.ent.{zone}"),
                format!("ent.sub.{zone}"),
                format!("x.turn.{zone}"),
                "elsewhere.example.net.".to_string(),
            ] {
                for t in [T::A, T::AAAA, T::TXT, T::DS, T::ANY, T::MX] {
                    for o in [
                        Opts::default(),
                        Opts::edns(),
                        Opts::ecs("81.2.69.0/24"),
                        Opts::ecs("2001:db8:40::/48"),
                        Opts::ecs("0.0.0.0/0"),
                    ] {
                        let raw = query(&name, t, o);
                        let q = parse_query(&raw).unwrap();
                        if classify(&st, q.qname_lower()) == Verdict::Engine {
                            continue;
                        }
                        let fast = handle_raw(&shared, &raw, "192.0.2.1", Transport::Udp).unwrap();
                        let client = Client::new(&st, &q, "192.0.2.1".parse().unwrap());
                        let opt = q.edns.map(|e| OptOut {
                            payload,
                            dnssec_ok: e.dnssec_ok,
                        });
                        let t = encode(&q, &respond(&st, &h, &q, &client), opt);
                        let ecs = client.ecs.as_ref().map(|e| (e, 0));
                        let mut slow = Vec::new();
                        finish(&t, &q, &raw, ecs, 1232, &mut slow);
                        assert_eq!(
                            Message::from_bytes(&fast).unwrap(),
                            Message::from_bytes(&slow).unwrap(),
                            "{name} {t:?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 100, "only {compared} replies compared");
    }
}
