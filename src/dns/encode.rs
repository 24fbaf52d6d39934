//! Wire encoding of responses as reusable templates, and the per-query
//! finishing touches (id, flags, question case, ECS echo, truncation) done
//! with a copy and a few byte patches.

use hickory_proto::op::Query as HQuery;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable, BinEncoder};

use super::client::Dependence;
use super::engine::Response;
use super::wire::{append_ecs, ecs_option_len, Ecs, Query, HEADER_LEN, TYPE_OPT};

/// An encoded response with id 0 and a lower-case question, ready to be
/// finished for any query with the same key.
#[derive(Debug, Clone)]
pub struct Template {
    /// The bytes.
    pub bytes: Box<[u8]>,
    /// End of the question section.
    pub question_end: u16,
    /// End of the answer section.
    pub answer_end: u16,
    /// End of the authority section.
    pub authority_end: u16,
    /// End of each additional record (OPT excluded), for truncation.
    pub additional_ends: Box<[u16]>,
    /// A referral: the authority section is the answer and its glue is
    /// required (RFC 9471), so dropping any of it sets TC.
    pub referral: bool,
    /// Start of the OPT record (always last), if the query had EDNS.
    pub opt_at: Option<u16>,
    /// How the answer depends on the client.
    pub dependence: Dependence,
}

/// Whether the response carries an OPT record and with which settings.
#[derive(Debug, Clone, Copy)]
pub struct OptOut {
    /// Our UDP payload size.
    pub payload: u16,
    /// Echo of the DO bit.
    pub dnssec_ok: bool,
}

/// Encodes `r` as the answer to `q`. `opt` is `Some` when the query had EDNS.
pub fn encode(q: &Query, r: &Response, opt: Option<OptOut>) -> Template {
    let mut buf = Vec::with_capacity(512);
    let mut e = BinEncoder::new(&mut buf);
    let flags: u16 =
        0x8000 | ((q.opcode as u16 & 0xF) << 11) | if r.aa { 0x0400 } else { 0 } | (r.rcode & 0xF);
    let _ = e.emit_u16(0);
    let _ = e.emit_u16(flags);
    let _ = e.emit_u16(1);
    let _ = e.emit_u16(r.answers.len() as u16);
    let _ = e.emit_u16(r.authority.len() as u16);
    let _ = e.emit_u16(r.additional.len() as u16 + opt.is_some() as u16);
    let name = Name::from_bytes(q.qname_lower()).unwrap_or_else(|_| Name::root());
    let mut hq = HQuery::query(name, RecordType::from(q.qtype));
    hq.set_query_class(q.qclass.into());
    let _ = hq.emit(&mut e);
    let question_end = e.offset() as u16;
    for rec in &r.answers {
        emit_record(&mut e, rec);
    }
    let answer_end = e.offset() as u16;
    for rec in &r.authority {
        emit_record(&mut e, rec);
    }
    let authority_end = e.offset() as u16;
    let additional_ends = r
        .additional
        .iter()
        .map(|rec| {
            emit_record(&mut e, rec);
            e.offset() as u16
        })
        .collect();
    drop(e);
    let opt_at = opt.map(|o| {
        let at = buf.len() as u16;
        push_opt(&mut buf, o, (r.rcode >> 4) as u8);
        at
    });
    Template {
        bytes: buf.into_boxed_slice(),
        question_end,
        answer_end,
        authority_end,
        additional_ends,
        referral: !r.aa && r.answers.is_empty() && !r.authority.is_empty() && r.rcode == 0,
        opt_at,
        dependence: r.dependence,
    }
}

/// Appends an OPT record with no options (RDLEN 0, patched when options are
/// appended): our payload size, the extended rcode bits, version 0, DO.
pub fn push_opt(out: &mut Vec<u8>, o: OptOut, ext_rcode: u8) {
    out.push(0); // owner: the root
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&o.payload.to_be_bytes());
    out.extend_from_slice(&[ext_rcode, 0]);
    out.extend_from_slice(&(if o.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// The 16-bit count at header offset `at`.
fn header_count(t: &Template, at: usize) -> u16 {
    u16::from_be_bytes([t.bytes[at], t.bytes[at + 1]])
}

fn emit_record(e: &mut BinEncoder<'_>, rec: &Record) {
    let _ = rec.emit(e);
}

/// Finishes `t` for the query in `raw` (parsed as `q`) into `out`:
/// id, RD/CD, the question's original case, the ECS echo with `scope`, and
/// truncation when it exceeds `limit` bytes.
///
/// Truncation follows RFC 2181 §9: additional records are dropped first
/// (from the end, keeping as many as fit), then the authority section; TC
/// is set only when the answer itself does not fit, or when what was
/// dropped is the substance of the response (a referral's NS or glue, the
/// SOA of a negative answer). A truncated response keeps the OPT record.
/// Names are compressed only backwards, so every prefix of the sections is
/// a well-formed message.
pub fn finish(
    t: &Template,
    q: &Query,
    raw: &[u8],
    ecs: Option<(&Ecs, u8)>,
    limit: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    let ecs_len = match (ecs, t.opt_at) {
        (Some((e, _)), Some(_)) => ecs_option_len(e),
        _ => 0,
    };
    if t.bytes.len() + ecs_len <= limit {
        out.extend_from_slice(&t.bytes);
    } else {
        let opt = t.opt_at.map_or(&[][..], |at| &t.bytes[at as usize..]);
        let room = limit.saturating_sub(opt.len() + ecs_len);
        let (answer_end, authority_end) = (t.answer_end as usize, t.authority_end as usize);
        let kept_additional = t
            .additional_ends
            .iter()
            .take_while(|&&end| end as usize <= room)
            .count();
        let (end, ns, ar, tc) = if authority_end <= room {
            let end = match kept_additional {
                0 => authority_end,
                k => t.additional_ends[k - 1] as usize,
            };
            let dropped_glue = kept_additional < t.additional_ends.len();
            (
                end,
                header_count(t, 8),
                kept_additional,
                t.referral && dropped_glue,
            )
        } else if answer_end <= room && answer_end > t.question_end as usize {
            (answer_end, 0, 0, false)
        } else {
            (t.question_end as usize, 0, 0, true)
        };
        out.extend_from_slice(&t.bytes[..end]);
        if end == t.question_end as usize {
            out[6..8].fill(0);
        }
        out[8..10].copy_from_slice(&ns.to_be_bytes());
        out[10..12].copy_from_slice(&(ar as u16 + t.opt_at.is_some() as u16).to_be_bytes());
        if tc {
            out[2] |= 0x02;
        }
        out.extend_from_slice(opt);
    }
    out[0..2].copy_from_slice(&q.id.to_be_bytes());
    if q.rd {
        out[2] |= 0x01;
    }
    if q.cd {
        out[3] |= 0x10;
    }
    // Question name in the client's case (same length as the template's).
    let name_end = q.question_end - 4;
    if name_end <= raw.len() && name_end <= out.len() {
        out[HEADER_LEN..name_end].copy_from_slice(&raw[HEADER_LEN..name_end]);
    }
    if let (Some((e, scope)), Some(_)) = (ecs, t.opt_at) {
        // The OPT record is last, its RDLEN its last two bytes.
        append_ecs(out, out.len() - 2, e, scope);
    }
}

/// A header-only error response (FORMERR, NOTIMP) for a query whose body
/// could not be used; with an OPT record (extended rcode 0, version 0) when
/// `opt` is given, that is when the query had one (RFC 6891 §7).
pub fn header_only(
    id: u16,
    opcode: u8,
    rd: bool,
    rcode: u8,
    opt: Option<OptOut>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | ((opcode & 0xF) << 3) | rd as u8);
    out.push(rcode & 0xF);
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, opt.is_some() as u8]);
    if let Some(o) = opt {
        push_opt(out, o, 0);
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::rdata::NS;
    use hickory_proto::rr::{RData, RecordType as T};

    use super::*;
    use crate::dns::client::Client;
    use crate::dns::engine::respond;
    use crate::dns::state::ServeState;
    use crate::dns::testkit::{all_up, query, state, Opts};
    use crate::dns::wire::parse_query;

    /// Engine, encoder and finish for `name`/`t` with a `limit`.
    fn reply(st: &ServeState, name: &str, t: T, o: Opts, limit: usize) -> (Vec<u8>, Message) {
        let raw = query(name, t, o);
        let q = parse_query(&raw).unwrap();
        let r = respond(
            st,
            &all_up(st),
            &q,
            &Client::new(st, &q, "192.0.2.1".parse().unwrap()),
        );
        let opt = q.edns.map(|_| OptOut {
            payload: 1232,
            dnssec_ok: false,
        });
        let mut out = Vec::new();
        finish(&encode(&q, &r, opt), &q, &raw, None, limit, &mut out);
        let m = Message::from_bytes(&out).expect("a well-formed message");
        (out, m)
    }

    #[test]
    fn a_response_that_fits_is_sent_whole() {
        let st = state("answers.toml");
        let (out, m) = reply(&st, "mx20.example.org.", T::MX, Opts::default(), 65_535);
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (20, 20));
        assert!(out.len() > 512);
    }

    #[test]
    fn additional_records_go_first_and_without_tc() {
        let st = state("answers.toml");
        let (out, m) = reply(&st, "mx20.example.org.", T::MX, Opts::default(), 512);
        assert!(out.len() <= 512);
        assert!(
            !m.metadata.truncation,
            "RFC 2181 §9: no TC for dropped additional data"
        );
        assert_eq!(m.answers.len(), 20);
        assert!((1..20).contains(&m.additionals.len()), "as many as fit");
    }

    #[test]
    fn a_referral_that_loses_glue_is_truncated() {
        let st = state("answers.toml");
        let (out, m) = reply(&st, "x.bigref.example.org.", T::A, Opts::default(), 512);
        assert!(out.len() <= 512);
        assert!(m.metadata.truncation, "RFC 9471: glue is not optional");
        assert_eq!(m.authorities.len(), 24);
        // With room for everything, no TC.
        let (_, m) = reply(&st, "x.bigref.example.org.", T::A, Opts::default(), 1232);
        assert!(!m.metadata.truncation);
        assert_eq!(m.additionals.len(), 24);
    }

    #[test]
    fn authority_goes_before_the_answer() {
        let raw = query("a.example.org.", T::A, Opts::default());
        let q = parse_query(&raw).unwrap();
        let mut r = Response::new(ResponseCode::NoError, true);
        let owner = Name::from_ascii("a.example.org.").unwrap();
        r.answers.push(Record::from_rdata(
            owner.clone(),
            60,
            RData::A("192.0.2.1".parse().unwrap()),
        ));
        for i in 0..40 {
            let ns = Name::from_ascii(format!("ns{i}.elsewhere.example.")).unwrap();
            r.authority
                .push(Record::from_rdata(owner.clone(), 60, RData::NS(NS(ns))));
        }
        let mut out = Vec::new();
        finish(&encode(&q, &r, None), &q, &raw, None, 512, &mut out);
        let m = Message::from_bytes(&out).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.authorities.len()), (1, 0));
    }

    #[test]
    fn an_answer_that_does_not_fit_is_tc_with_the_opt_kept() {
        let st = state("answers.toml");
        let (out, m) = reply(&st, "big.example.org.", T::TXT, Opts::edns(), 1232);
        assert!(m.metadata.truncation && m.answers.is_empty());
        assert_eq!(m.queries.len(), 1);
        assert!(m.edns.is_some(), "OPT kept");
        assert_eq!(out.len(), 12 + "big.example.org.".len() + 1 + 4 + 11);
        // A negative answer whose SOA does not fit is truncated too.
        let (_, m) = reply(&st, "nothere.ent.example.org.", T::A, Opts::default(), 60);
        assert!(m.metadata.truncation && m.authorities.is_empty());
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn the_question_keeps_the_client_case() {
        let st = state("answers.toml");
        let (_, m) = reply(&st, "WwW.Example.ORG.", T::A, Opts::default(), 512);
        assert_eq!(m.queries[0].name().to_string(), "WwW.Example.ORG.");
        assert_eq!(m.metadata.id, 0x2a2a);
    }

    #[test]
    fn header_only_replies_carry_an_opt_when_asked() {
        let mut out = Vec::new();
        header_only(7, 0, true, 1, None, &mut out);
        let m = Message::from_bytes(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.edns.is_none() && m.metadata.recursion_desired);
        let opt = OptOut {
            payload: 1232,
            dnssec_ok: true,
        };
        header_only(7, 2, false, 4, Some(opt), &mut out);
        let m = Message::from_bytes(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        let e = m.edns.expect("OPT");
        assert_eq!((e.max_payload(), e.flags().dnssec_ok), (1232, true));
    }
}
