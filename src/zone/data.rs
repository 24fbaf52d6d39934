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

/// The number of labels of `n` (hickory's `num_labels` does not count a
/// leading `*`).
fn label_count(n: &Name) -> usize {
    n.iter().count()
}

/// An immutable, validated zone.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    nodes: HashMap<LowerName, Node>,
    cuts: HashSet<LowerName>,
    ents: HashSet<LowerName>,
    /// Whether any owner name starts with the `*` label (RFC 4592).
    has_wildcards: bool,
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
            if name.is_wildcard() && node.rrset(RecordType::NS).is_some() {
                errors.0.push(ConfigError::file(
                    file,
                    line,
                    format!("{name}: NS records at a wildcard are not supported (RFC 4592 §4.2)"),
                ));
            }
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
            while label_count(&n) > label_count(&origin) + 1 {
                n = n.base_name();
                let l = LowerName::from(&n);
                if !nodes.contains_key(&l) {
                    ents.insert(l);
                }
            }
        }
        let has_wildcards = nodes.keys().any(|n| n.is_wildcard());
        Ok(Zone {
            origin,
            lower_origin,
            nodes,
            cuts,
            ents,
            has_wildcards,
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

    /// The delegation points (names below the apex with NS records).
    pub fn cuts(&self) -> impl Iterator<Item = &LowerName> {
        self.cuts.iter()
    }

    /// The empty non-terminals: names that own no data but have names below them.
    pub fn ents(&self) -> impl Iterator<Item = &LowerName> {
        self.ents.iter()
    }

    /// Every owner name in the zone.
    pub fn names(&self) -> impl Iterator<Item = &LowerName> {
        self.nodes.keys()
    }

    /// Looks `name` (inside this zone) up, honouring delegation cuts.
    pub fn lookup(&self, name: &LowerName) -> Lookup<'_> {
        self.lookup_side(name, false)
    }

    /// Looks `name` up for a DS query: a cut exactly at `name` is answered
    /// from this (the parent) side, so only cuts above it refer.
    pub fn lookup_ds(&self, name: &LowerName) -> Lookup<'_> {
        self.lookup_side(name, true)
    }

    fn lookup_side(&self, name: &LowerName, parent_side: bool) -> Lookup<'_> {
        if !self.cuts.is_empty() {
            let full = Name::from(name.clone());
            let mut n = full.clone();
            let depth = label_count(&self.origin);
            // Walk from just below the apex down to the name itself.
            let mut chain = Vec::new();
            while label_count(&n) > depth {
                chain.push(LowerName::from(&n));
                n = n.base_name();
            }
            let skip = usize::from(parent_side);
            for cand in chain.iter().skip(skip).rev() {
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

    /// Whether `name` exists in the zone data (owns records or is an empty
    /// non-terminal).
    pub fn exists(&self, name: &LowerName) -> bool {
        self.nodes.contains_key(name) || self.ents.contains(name)
    }

    /// The source of synthesis for `name`, a name this zone's data does not
    /// hold, below no delegation (RFC 4592 §3.3.1): the `*` child of its
    /// closest encloser, if there is one. The closest encloser is the
    /// nearest ancestor that exists, in the zone data or by `exists_also`
    /// (names the zone owns outside its data, such as steered names), so no
    /// wildcard synthesizes below an existing name.
    pub fn wildcard(
        &self,
        name: &LowerName,
        exists_also: impl Fn(&LowerName) -> bool,
    ) -> Option<&Node> {
        if !self.has_wildcards {
            return None;
        }
        let mut n = Name::from(name.clone());
        let depth = label_count(&self.origin);
        while label_count(&n) > depth {
            n = n.base_name();
            let l = LowerName::from(&n);
            if self.exists(&l) || exists_also(&l) {
                let star = Name::from_ascii("*").ok()?.append_domain(&n).ok()?;
                return self.nodes.get(&LowerName::from(&star));
            }
        }
        None
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
