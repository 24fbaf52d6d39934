//! The serving snapshot: everything a query needs, built once per (re)load
//! and swapped whole.

/// The name table's map: ahash, since it is probed on every query.
pub type NameMap = std::collections::HashMap<Box<[u8]>, NameEntry, ahash::RandomState>;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::wire::{wire_name, NameSet};
use super::zone_index::NegativeZone;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::geo::{FileStamp, Locate, MaxMind};
use crate::steer::{CellMap, MemberId, PoolId, Steering};
use crate::zone::{self, Zone};

/// A steered name and its settings.
#[derive(Debug, Clone)]
pub struct SteeredName {
    /// Fully qualified, lower case.
    pub name: Name,
    /// Zone index.
    pub zone: u16,
    /// Pool answered from.
    pub pool: PoolId,
    /// TTL of answers.
    pub ttl: u32,
    /// Addresses per answer.
    pub count: usize,
    /// SRV services: (owner name, port).
    pub srv: Vec<(Name, u16)>,
    /// The answer may depend on the client hash (a region has more members than `count`).
    pub hash_sensitive: bool,
}

/// What a known name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Zone data only.
    Static,
    /// A steered name (A/AAAA steered; other types from zone data).
    Steered(u16),
    /// An SRV name of steered name `.0`, service `.1`.
    Srv(u16, u8),
    /// `<member>.<steered name>`: the SRV target of one member.
    MemberHost(u16, MemberId),
}

/// A name the server owns data for.
#[derive(Debug, Clone, Copy)]
pub struct NameEntry {
    /// Dense id, used in cache keys.
    pub id: u32,
    /// Zone index.
    pub zone: u16,
    /// Kind.
    pub kind: NameKind,
}

/// One consistent view of config, zones and GeoIP.
pub struct ServeState {
    /// Loaded configuration.
    pub config: Config,
    /// Compiled steering model.
    pub steering: Steering,
    /// Zones, in config order (shared by snapshots that differ only in members).
    pub zones: Arc<Vec<Zone>>,
    /// Steered names.
    pub steered: Vec<SteeredName>,
    /// Every owned name by lower-case wire form.
    pub names: NameMap,
    /// Names that exist only as ancestors of steering-owned names
    /// (lower-case wire form).
    pub steered_ents: NameSet,
    /// Each zone's structure for negative answers on the fast path, in the
    /// order of `zones` (built with them, shared like them).
    pub negative: Arc<Vec<NegativeZone>>,
    /// The GeoIP database.
    pub geo: Arc<dyn Locate>,
    /// The address space compiled into placement classes (hot-path lookup);
    /// depends on regions and overrides only, so member changes reuse it.
    pub cells: Arc<CellMap>,
    /// TURN REST secrets for the ICE-servers API (first signs).
    pub ice_secrets: Arc<[String]>,
    /// Bearer keys of the ICE-servers API (`ice.api_keys`, or the lines of
    /// `ice.api_keys_file`, read at load and on every reload).
    pub ice_api_keys: Arc<[String]>,
    /// Identifies this snapshot in cached answers.
    pub generation: u64,
    /// The GeoIP file as it was just before it was opened (`None` when the
    /// locator did not come from a file): the watcher reloads when the file
    /// on disk no longer matches it.
    pub geo_stamp: Option<FileStamp>,
}

impl ServeState {
    /// Loads zone files and the GeoIP database named by `config`, and checks
    /// how they fit together. Every problem is reported.
    pub fn load(config: Config, generation: u64) -> Result<ServeState, ConfigErrors> {
        let geo_path = config.resolve(&config.file.geoip.database);
        // Stamped before opening: a replacement after this point differs
        // from the stamp, so the watcher reloads again rather than miss it.
        let geo_stamp = FileStamp::of(&geo_path);
        let geo: Result<Arc<dyn Locate>, ConfigErrors> = MaxMind::open(&geo_path)
            .map(|m| Arc::new(m) as Arc<dyn Locate>)
            .map_err(|e| ConfigErrors::single(ConfigError::at("geoip.database", e)));
        let mut st = Self::load_with_geo(config, geo, generation)?;
        st.geo_stamp = geo_stamp;
        Ok(st)
    }

    /// Like [`ServeState::load`] with a given locator (or the error opening it).
    pub fn load_with_geo(
        config: Config,
        geo: Result<Arc<dyn Locate>, ConfigErrors>,
        generation: u64,
    ) -> Result<ServeState, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let geo = match geo {
            Ok(g) => Some(g),
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        };
        let mut zones = Vec::new();
        for (zi, zc) in config.file.zones.iter().enumerate() {
            let origin = match Name::from_ascii(&zc.origin) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    n.to_lowercase()
                }
                Err(e) => {
                    errors.push(format!("zones[{zi}].origin"), e.to_string());
                    zones.push(None);
                    continue;
                }
            };
            match zone::load(&config.resolve(&zc.file), &origin) {
                Ok(z) => zones.push(Some(z)),
                Err(e) => {
                    errors.0.extend(e.0);
                    zones.push(None);
                }
            }
        }
        let (ice_secrets, ice_api_keys) = ice_keys(&config, &mut errors);
        let steering = Steering::from_config(&config.file);
        let names = name_table(
            &config,
            &steering,
            zones.iter().map(Option::as_ref),
            &mut errors,
        );
        errors.into_result()?;
        let geo = geo.expect("no errors means the database opened");
        let started = std::time::Instant::now();
        let cells = CellMap::build(&steering, geo.as_ref());
        let (classes, r4, r6) = cells.sizes();
        tracing::info!(
            classes,
            ipv4_ranges = r4,
            ipv6_ranges = r6,
            ms = started.elapsed().as_millis() as u64,
            "compiled the GeoIP database into placement classes"
        );
        let zones: Vec<Zone> = zones.into_iter().flatten().collect();
        Ok(ServeState {
            ice_secrets: ice_secrets.into(),
            ice_api_keys: ice_api_keys.into(),
            cells: Arc::new(cells),
            config,
            steering,
            negative: Arc::new(zones.iter().map(NegativeZone::new).collect()),
            zones: Arc::new(zones),
            steered: names.steered,
            names: names.names,
            steered_ents: names.steered_ents,
            geo,
            generation,
            geo_stamp: None,
        })
    }

    /// This snapshot with the pool members of `config` (a membership
    /// change): zone data, GeoIP, the compiled placement classes, the ICE
    /// keys and the GeoIP file stamp are shared, not re-read; only the
    /// steering model and the names it owns are rebuilt. `config` must differ
    /// from this snapshot's only in pool members.
    pub fn with_members(&self, config: Config) -> Result<ServeState, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let steering = Steering::from_config(&config.file);
        let names = name_table(&config, &steering, self.zones.iter().map(Some), &mut errors);
        errors.into_result()?;
        Ok(ServeState {
            config,
            steering,
            zones: self.zones.clone(),
            negative: self.negative.clone(),
            steered: names.steered,
            names: names.names,
            steered_ents: names.steered_ents,
            geo: self.geo.clone(),
            cells: self.cells.clone(),
            ice_secrets: self.ice_secrets.clone(),
            ice_api_keys: self.ice_api_keys.clone(),
            generation: self.generation + 1,
            geo_stamp: self.geo_stamp,
        })
    }

    /// The index of steered name `name` (the first when `None`).
    pub fn steered_index(&self, name: Option<&str>) -> Result<usize, String> {
        let Some(n) = name else { return Ok(0) };
        let want = n.trim_end_matches('.').to_ascii_lowercase();
        self.steered
            .iter()
            .position(|s| s.name.to_string().trim_end_matches('.') == want)
            .ok_or_else(|| format!("{n} is not a steered name"))
    }

    /// The zone `name` falls in (longest origin match).
    pub fn zone_for(&self, name: &LowerName) -> Option<(u16, &Zone)> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.lower_origin().zone_of(name))
            .max_by_key(|(_, z)| z.origin().num_labels())
            .map(|(i, z)| (i as u16, z))
    }
}

/// The names steering owns, beside the zones' own.
struct NameTable {
    names: NameMap,
    steered: Vec<SteeredName>,
    steered_ents: NameSet,
}

/// Builds the name table of `zones` (one per configured zone, `None` where
/// loading failed) and the steered names of `config` in them.
fn name_table<'z>(
    config: &Config,
    steering: &Steering,
    zones: impl Iterator<Item = Option<&'z Zone>>,
    errors: &mut ConfigErrors,
) -> NameTable {
    let mut steered = Vec::new();
    let mut names = NameMap::default();
    let mut steered_ents = NameSet::default();
    let mut origins: Vec<usize> = Vec::new();
    for (zc, zone) in config.file.zones.iter().zip(zones) {
        let Some(zone) = zone else { continue };
        let origin = zone.origin().clone();
        let path = config.resolve(&zc.file);
        let zi = origins.len() as u16;
        origins.push(origin.num_labels() as usize);
        for n in zone.names() {
            let id = names.len() as u32;
            names.insert(
                wire_name(&Name::from(n.clone())),
                NameEntry {
                    id,
                    zone: zi,
                    kind: NameKind::Static,
                },
            );
        }
        for (si, sc) in zc.steered.iter().enumerate() {
            let at = format!("zones[{}].steered[{si}]", zi);
            let name = if sc.name == "@" {
                origin.clone()
            } else {
                match Name::from_ascii(&sc.name).and_then(|n| n.append_domain(&origin)) {
                    Ok(n) => n.to_lowercase(),
                    Err(e) => {
                        errors.push(format!("{at}.name"), e.to_string());
                        continue;
                    }
                }
            };
            let Some(pool) = steering.pool_id(&sc.pool) else {
                continue; // reported by config validation
            };
            let count = sc.answer_count.unwrap_or(config.file.steering.answer_count);
            let sid = steered.len() as u16;
            claim(
                &mut names,
                zone,
                &name,
                NameKind::Steered(sid),
                zi,
                &at,
                &path,
                errors,
            );
            let mut srv = Vec::new();
            for (k, s) in sc.srv.iter().enumerate() {
                match Name::from_ascii(&s.service).and_then(|n| n.append_domain(&name)) {
                    Ok(n) => {
                        let n = n.to_lowercase();
                        claim(
                            &mut names,
                            zone,
                            &n,
                            NameKind::Srv(sid, k as u8),
                            zi,
                            &at,
                            &path,
                            errors,
                        );
                        srv.push((n, s.port));
                    }
                    Err(e) => errors.push(format!("{at}.srv[{k}].service"), e.to_string()),
                }
            }
            let p = &steering.pools[pool as usize];
            for &m in p.by_region.iter().flatten().chain(&p.backups) {
                let label = &steering.members[m as usize].name;
                match Name::from_ascii(label).and_then(|n| n.append_domain(&name)) {
                    Ok(n) => claim(
                        &mut names,
                        zone,
                        &n.to_lowercase(),
                        NameKind::MemberHost(sid, m),
                        zi,
                        &at,
                        &path,
                        errors,
                    ),
                    Err(e) => errors.push(format!("{at}: member {label}"), e.to_string()),
                }
            }
            let backups_per_region = (0..steering.regions.len())
                .map(|r| {
                    p.backups
                        .iter()
                        .filter(|&&m| steering.members[m as usize].region as usize == r)
                        .count()
                })
                .max()
                .unwrap_or(0);
            steered.push(SteeredName {
                name,
                zone: zi,
                pool,
                ttl: sc.ttl.unwrap_or(config.file.steering.ttl),
                count,
                srv,
                hash_sensitive: p.max_region_size.max(backups_per_region) > count,
            });
        }
    }
    for (key, e) in &names {
        if e.kind == NameKind::Static {
            continue;
        }
        let origin = origins[e.zone as usize];
        if let Ok(mut n) = Name::from_bytes(key) {
            while n.num_labels() as usize > origin + 1 {
                n = n.base_name();
                let w = wire_name(&n);
                if !names.contains_key(&w) {
                    steered_ents.insert(w);
                }
            }
        }
    }
    NameTable {
        names,
        steered,
        steered_ents,
    }
}

/// The ICE secrets and API keys (files read now).
fn ice_keys(config: &Config, errors: &mut ConfigErrors) -> (Vec<String>, Vec<String>) {
    let Some(i) = &config.file.ice else {
        return (Vec::new(), Vec::new());
    };
    let secrets = match &i.secrets_file {
        Some(f) => lines_of(&config.resolve(f), "ice.secrets_file", "secret", errors),
        None => i.secrets.clone(),
    };
    let keys = match &i.api_keys_file {
        Some(f) => {
            let keys = lines_of(&config.resolve(f), "ice.api_keys_file", "key", errors);
            if keys.iter().any(|k| k.len() < 16) {
                errors.push(
                    "ice.api_keys_file",
                    "every key must be at least 16 characters",
                );
            }
            keys
        }
        None => i.api_keys.clone(),
    };
    (secrets, keys)
}

/// Registers a steering-owned name, refusing conflicts with zone data that
/// would make answers ambiguous.
#[allow(clippy::too_many_arguments)]
fn claim(
    names: &mut NameMap,
    zone: &Zone,
    name: &Name,
    kind: NameKind,
    zi: u16,
    at: &str,
    file: &Path,
    errors: &mut ConfigErrors,
) {
    let lower = LowerName::from(name);
    if let Some(node) = zone.node(&lower) {
        let conflict: &[RecordType] = match kind {
            NameKind::Steered(_) => &[RecordType::A, RecordType::AAAA, RecordType::CNAME],
            NameKind::Srv(..) => &[RecordType::SRV, RecordType::CNAME],
            _ => &[
                RecordType::A,
                RecordType::AAAA,
                RecordType::CNAME,
                RecordType::SRV,
            ],
        };
        for (t, _) in node.rrsets() {
            if conflict.contains(&t) {
                errors.push(
                    at.to_string(),
                    format!(
                        "{name} is steered but {} also has {t} records for it",
                        file.display()
                    ),
                );
            }
        }
    }
    let key = wire_name(name);
    let id = names.get(&key).map(|e| e.id).unwrap_or(names.len() as u32);
    if let Some(prev) = names.get(&key) {
        if prev.kind != NameKind::Static {
            errors.push(
                at.to_string(),
                format!("{name} is claimed twice by steering"),
            );
            return;
        }
    }
    names.insert(key, NameEntry { id, zone: zi, kind });
}

/// The non-empty, non-comment lines of a secrets file (one `what` per line);
/// a missing, unreadable or empty file is an error at `key`.
fn lines_of(path: &Path, key: &str, what: &str, errors: &mut ConfigErrors) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let v: Vec<String> = t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if v.is_empty() {
                errors.push(key, format!("{}: no {what} in the file", path.display()));
            }
            v
        }
        Err(e) => {
            errors.push(key, format!("{}: {e}", path.display()));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemberConfig;

    fn same<T: ?Sized>(a: &Arc<T>, b: &Arc<T>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
    }

    #[test]
    fn a_membership_update_shares_zones_geoip_and_placement() {
        let st = crate::dns::testkit::state("test.toml");
        assert!(st.geo_stamp.is_some());
        let mut config = st.config.clone();
        config
            .file
            .pools
            .get_mut("turn")
            .unwrap()
            .members
            .push(MemberConfig {
                name: "euc1-b".into(),
                region: "eu-central".into(),
                addresses: vec!["127.0.2.2".parse().unwrap()],
                weight: 100,
                backup: false,
                health_url: None,
                registered: true,
            });
        let next = st.with_members(config).unwrap();
        assert!(same(&st.zones, &next.zones), "zone data re-read");
        assert!(same(&st.geo, &next.geo), "GeoIP reopened");
        assert!(same(&st.cells, &next.cells), "placement recompiled");
        assert!(same(&st.ice_api_keys, &next.ice_api_keys));
        assert_eq!(next.geo_stamp, st.geo_stamp, "the file watch would fire");
        assert_eq!(next.generation, st.generation + 1);
        assert_eq!(next.steering.members.len(), st.steering.members.len() + 1);
        let host = Name::from_ascii("euc1-b.turn.example.com.").unwrap();
        let e = next.names[&wire_name(&host)];
        assert!(matches!(e.kind, NameKind::MemberHost(_, m)
            if next.steering.members[m as usize].name == "euc1-b"));
        assert!(!st.names.contains_key(&wire_name(&host)));
        // The pool is also steered at the apex of turn.example.net; nothing
        // else changes.
        let apex_host = Name::from_ascii("euc1-b.turn.example.net.").unwrap();
        assert!(next.names.contains_key(&wire_name(&apex_host)));
        assert_eq!(next.names.len(), st.names.len() + 2);
        assert_eq!(next.steered.len(), st.steered.len());
    }
}
