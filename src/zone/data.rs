//! The in-memory form of a zone and its lookups.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use crate::config::{ConfigError, ConfigErrors};

/// The RRsets of one owner name, sorted by type.
#[derive(Debug, Clone, Default)]
pub struct Node {
    rrsets: Vec<(RecordType, Vec<Record>)>,
}

impl Node {
    /// The records of one type, if any.
    pub fn rrset(&self, t: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(rt, _)| *rt == t)
            .map(|(_, r)| r.as_slice())
    }

    /// Every RRset at this name.
    pub fn rrsets(&self) -> impl Iterator<Item = (RecordType, &[Record])> {
        self.rrsets.iter().map(|(t, r)| (*t, r.as_slice()))
    }

    fn add(&mut self, r: Record) {
        let t = r.record_type();
        match self.rrsets.iter_mut().find(|(rt, _)| *rt == t) {
            Some((_, v)) => {
                if !v.iter().any(|x| x.data == r.data) {
                    v.push(r)
                }
            }
            None => {
                self.rrsets.push((t, vec![r]));
                self.rrsets.sort_by_key(|(t, _)| u16::from(*t));
            }
        }
    }
}

/// Result of looking a name up in a zone.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The name owns data.
    Found(&'a Node),
    /// The name is at or below a delegation point; the referral's NS are at `cut`.
    Delegation(&'a LowerName, &'a Node),
    /// The name exists only because names below it do (NODATA for every type).
    EmptyNonTerminal,
    /// The name does not exist.
    NxDomain,
}

/// An immutable, validated zone.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    nodes: HashMap<LowerName, Node>,
    cuts: HashSet<LowerName>,
    ents: HashSet<LowerName>,
    soa: Record,
}

impl Zone {
    /// Builds a zone from parsed records (with their line numbers) and checks
    /// it: names inside the zone, one SOA and some NS at the apex, class IN,
    /// CNAME alone at its name.
    pub fn build(
        origin: Name,
        records: Vec<(usize, Record)>,
        file: &Path,
    ) -> Result<Zone, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let lower_origin = LowerName::from(&origin);
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        let mut first_line: HashMap<LowerName, usize> = HashMap::new();
        for (line, r) in records {
            let err = |m: String| ConfigError::file(file, Some(line), m);
            if r.dns_class != DNSClass::IN {
                errors.0.push(err(format!(
                    "class {} is not supported, only IN",
                    r.dns_class
                )));
                continue;
            }
            if !origin.zone_of(&r.name) {
                errors
                    .0
                    .push(err(format!("{} is outside the zone {origin}", r.name)));
                continue;
            }
            let t = r.record_type();
            if t == RecordType::SOA && r.name != origin {
                errors.0.push(err(format!(
                    "SOA must be at the zone apex {origin}, not {}",
                    r.name
                )));
                continue;
            }
            let key = LowerName::from(&r.name);
            first_line.entry(key.clone()).or_insert(line);
            nodes.entry(key).or_default().add(r);
        }
        let soa = match nodes
            .get(&lower_origin)
            .and_then(|n| n.rrset(RecordType::SOA))
        {
            Some([soa]) => Some(soa.clone()),
            Some(_) => {
                errors.0.push(ConfigError::file(
                    file,
                    None,
                    "more than one SOA record at the apex",
                ));
                None
            }
            None => {
                errors.0.push(ConfigError::file(
                    file,
                    None,
                    format!("no SOA record at the apex {origin}"),
                ));
                None
            }
        };
        if nodes
            .get(&lower_origin)
            .and_then(|n| n.rrset(RecordType::NS))
            .is_none()
        {
            errors.0.push(ConfigError::file(
                file,
                None,
                format!("no NS records at the apex {origin}"),
            ));
        }
        let mut names: Vec<_> = nodes.keys().cloned().collect();
        names.sort();
        for name in &names {
            let node = &nodes[name];
            let line = first_line.get(name).copied();
            if node.rrset(RecordType::CNAME).is_some() {
                if node.rrsets.len() > 1 {
                    errors.0.push(ConfigError::file(
                        file,
                        line,
                        format!("{name} has a CNAME and other data"),
                    ));
                }
                if node.rrset(RecordType::CNAME).is_some_and(|r| r.len() > 1) {
                    errors.0.push(ConfigError::file(
                        file,
                        line,
                        format!("{name} has more than one CNAME"),
                    ));
                }
                if *name == lower_origin {
                    errors.0.push(ConfigError::file(
                        file,
                        line,
                        "a CNAME cannot be at the zone apex",
                    ));
                }
            }
        }
        errors.clone().into_result()?;
        let cuts: HashSet<LowerName> = nodes
            .iter()
            .filter(|(n, node)| **n != lower_origin && node.rrset(RecordType::NS).is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let mut ents = HashSet::new();
        for name in nodes.keys() {
            let mut n = Name::from(name.clone());
            while n.num_labels() > origin.num_labels() + 1 {
                n = n.base_name();
                let l = LowerName::from(&n);
                if !nodes.contains_key(&l) {
                    ents.insert(l);
                }
            }
        }
        Ok(Zone {
            origin,
            lower_origin,
            nodes,
            cuts,
            ents,
            soa: soa.expect("checked above"),
        })
    }

    /// The apex name.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The apex name, lower-cased.
    pub fn lower_origin(&self) -> &LowerName {
        &self.lower_origin
    }

    /// The SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// TTL for negative answers: min(SOA TTL, SOA MINIMUM) (RFC 2308 §5).
    pub fn negative_ttl(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(s) => self.soa.ttl.min(s.minimum),
            _ => self.soa.ttl,
        }
    }

    /// The data at exactly `name`, ignoring delegations.
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every owner name in the zone.
    pub fn names(&self) -> impl Iterator<Item = &LowerName> {
        self.nodes.keys()
    }

    /// Looks `name` (inside this zone) up, honouring delegation cuts.
    pub fn lookup(&self, name: &LowerName) -> Lookup<'_> {
        if !self.cuts.is_empty() {
            let full = Name::from(name.clone());
            let mut n = full.clone();
            let depth = self.origin.num_labels();
            // Walk from just below the apex down to the name itself.
            let mut chain = Vec::new();
            while n.num_labels() > depth {
                chain.push(LowerName::from(&n));
                n = n.base_name();
            }
            for cand in chain.iter().rev() {
                if let Some(cut) = self.cuts.get(cand) {
                    return Lookup::Delegation(cut, &self.nodes[cut]);
                }
            }
        }
        match self.nodes.get(name) {
            Some(n) => Lookup::Found(n),
            None if self.ents.contains(name) => Lookup::EmptyNonTerminal,
            None => Lookup::NxDomain,
        }
    }

    /// A/AAAA records for `target` if it is in this zone and not delegated
    /// (for the additional section).
    pub fn glue(&self, target: &Name) -> impl Iterator<Item = &Record> {
        let node = if self.origin.zone_of(target) {
            self.nodes.get(&LowerName::from(target))
        } else {
            None
        };
        node.into_iter().flat_map(|n| {
            n.rrset(RecordType::A)
                .unwrap_or_default()
                .iter()
                .chain(n.rrset(RecordType::AAAA).unwrap_or_default())
        })
    }
}
