//! Wire encoding of responses as reusable templates, and the per-query
//! finishing touches (id, flags, question case, ECS echo, truncation) done
//! with a copy and a few byte patches.

use hickory_proto::op::Query as HQuery;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable, BinEncoder};

use super::engine::{Dependence, Response};
use super::wire::{write_ecs, Ecs, Query, HEADER_LEN, TYPE_OPT};

/// An encoded response with id 0 and a lower-case question, ready to be
/// finished for any query with the same key.
#[derive(Debug, Clone)]
pub struct Template {
    /// The bytes.
    pub bytes: Box<[u8]>,
    /// End of the question section.
    pub question_end: u16,
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
    for rec in r.answers.iter().chain(&r.authority).chain(&r.additional) {
        emit_record(&mut e, rec);
    }
    let opt_at = opt.map(|o| {
        let at = e.offset() as u16;
        let _ = e.emit(0);
        let _ = e.emit_u16(TYPE_OPT);
        let _ = e.emit_u16(o.payload);
        let _ = e.emit((r.rcode >> 4) as u8);
        let _ = e.emit(0); // version 0
        let _ = e.emit_u16(if o.dnssec_ok { 0x8000 } else { 0 });
        let _ = e.emit_u16(0); // RDLEN, patched when ECS is appended
        at
    });
    drop(e);
    Template {
        bytes: buf.into_boxed_slice(),
        question_end,
        opt_at,
        dependence: r.dependence,
    }
}

fn emit_record(e: &mut BinEncoder<'_>, rec: &Record) {
    let _ = rec.emit(e);
}

/// Finishes `t` for the query in `raw` (parsed as `q`) into `out`:
/// id, RD/CD, the question's original case, the ECS echo with `scope`, and
/// truncation (TC, answer sections dropped) when it exceeds `limit` bytes.
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
        (Some((e, _)), Some(_)) => 8 + (e.source as usize).div_ceil(8),
        _ => 0,
    };
    let qe = t.question_end as usize;
    if t.bytes.len() + ecs_len <= limit {
        out.extend_from_slice(&t.bytes);
    } else {
        out.extend_from_slice(&t.bytes[..qe]);
        out[2] |= 0x02; // TC
        out[6..10].fill(0);
        out[10..12].copy_from_slice(&(t.opt_at.is_some() as u16).to_be_bytes());
        if let Some(at) = t.opt_at {
            out.extend_from_slice(&t.bytes[at as usize..]);
        }
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
        let rdlen_at = out.len() - 2;
        let before = out.len();
        write_ecs(out, e, scope);
        let added = (out.len() - before) as u16;
        out[rdlen_at..rdlen_at + 2].copy_from_slice(&added.to_be_bytes());
    }
}

/// A header-only error response (FORMERR, NOTIMP) for a query whose body
/// could not be used.
pub fn header_only(id: u16, opcode: u8, rd: bool, rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | ((opcode & 0xF) << 3) | rd as u8);
    out.push(rcode & 0xF);
    out.extend_from_slice(&[0; 8]);
}
