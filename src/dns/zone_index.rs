//! Each zone's structure in lower-case wire form — delegation cuts, empty
//! non-terminals, the parents of wildcards — and its SOA encoded once for
//! negative answers, built with the zones and shared by every snapshot that
//! keeps them. `dns::negative` reads it on the query path.

use hickory_proto::rr::{Name, RData};
use hickory_proto::serialize::binary::BinEncodable;

use super::wire::{wire_name, NameSet};
use crate::zone::Zone;

/// One zone's structure in lower-case wire form, and its SOA pre-encoded.
#[derive(Debug)]
pub struct NegativeZone {
    /// The apex.
    pub apex: Box<[u8]>,
    /// Delegation points.
    pub cuts: NameSet,
    /// Empty non-terminals.
    pub ents: NameSet,
    /// Names with a `*` child.
    pub wildcard_parents: NameSet,
    /// The SOA record for negative answers.
    pub soa: SoaTail,
}

/// The zone's SOA record after its owner name (TYPE to the end of RDATA),
/// with the negative TTL; `ptrs` are the offsets (from the record's start,
/// owner pointer included) of the 2-byte pointers to the apex to patch.
#[derive(Debug)]
pub struct SoaTail {
    /// TYPE to the end of RDATA, owner pointer first.
    pub bytes: Box<[u8]>,
    /// Offsets of the pointers to patch besides the owner's.
    pub ptrs: [u16; 2],
    /// How many of `ptrs` are used.
    pub nptrs: u8,
}

fn set(names: impl Iterator<Item = Box<[u8]>>) -> NameSet {
    names.collect()
}

impl NegativeZone {
    /// Indexes `zone` (built once per zone load; membership changes reuse it).
    pub fn new(zone: &Zone) -> NegativeZone {
        let wire = |n: &hickory_proto::rr::LowerName| wire_name(&Name::from(n.clone()));
        NegativeZone {
            apex: wire(zone.lower_origin()),
            cuts: set(zone.cuts().map(wire)),
            ents: set(zone.ents().map(wire)),
            wildcard_parents: set(zone
                .names()
                .filter(|n| n.is_wildcard())
                .map(|n| wire_name(&Name::from(n.clone()).base_name()))),
            soa: SoaTail::new(zone),
        }
    }
}

impl SoaTail {
    fn new(zone: &Zone) -> SoaTail {
        let apex = wire_name(zone.origin());
        let soa = zone.soa();
        // The owner: a pointer to the apex.
        let mut b = vec![0xC0, 0];
        let mut ptrs = [0u16; 2];
        let mut nptrs = 0;
        b.extend_from_slice(&6u16.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&zone.negative_ttl().to_be_bytes());
        let rdlen_at = b.len();
        b.extend_from_slice(&[0, 0]);
        if let RData::SOA(s) = &soa.data {
            for n in [&s.mname, &s.rname] {
                let bytes = n.to_bytes().unwrap_or_else(|_| vec![0]);
                let lower = wire_name(n);
                let cut = lower.len().checked_sub(apex.len());
                match cut.filter(|&c| lower[c..] == *apex && label_start(&lower, c)) {
                    Some(c) => {
                        b.extend_from_slice(&bytes[..c]);
                        ptrs[nptrs] = b.len() as u16;
                        nptrs += 1;
                        b.extend_from_slice(&[0xC0, 0]);
                    }
                    None => b.extend_from_slice(&bytes),
                }
            }
            for v in [
                s.serial,
                s.refresh as u32,
                s.retry as u32,
                s.expire as u32,
                s.minimum,
            ] {
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        let rdlen = (b.len() - rdlen_at - 2) as u16;
        b[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        SoaTail {
            bytes: b.into_boxed_slice(),
            ptrs,
            nptrs: nptrs as u8,
        }
    }
}

/// Whether a label starts at offset `at` of wire name `name`.
fn label_start(name: &[u8], at: usize) -> bool {
    let mut i = 0;
    while i < at {
        match name.get(i) {
            Some(&0) | None => return false,
            Some(&len) => i += 1 + len as usize,
        }
    }
    i == at
}
