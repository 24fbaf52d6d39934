//! The compiled steering model: config turned into indexed, validated tables.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::hash::member_seed;
use crate::config::{AllDownPolicy, ConfigFile};

/// Index of a region in [`Steering::regions`].
pub type RegionId = u16;
/// Index of a member in [`Steering::members`].
pub type MemberId = u32;
/// Index of a pool in [`Steering::pools`].
pub type PoolId = u16;

/// A region and its coordinates.
#[derive(Debug, Clone)]
pub struct Region {
    /// Name from the config.
    pub name: String,
    /// (latitude, longitude), degrees.
    pub coords: (f64, f64),
}

/// A relay that can be handed out.
#[derive(Debug, Clone)]
pub struct Member {
    /// DNS label, unique within its pool.
    pub name: String,
    /// Pool it belongs to.
    pub pool: PoolId,
    /// Region it is in.
    pub region: RegionId,
    /// IPv4 addresses.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub v6: Vec<Ipv6Addr>,
    /// Relative weight within its region.
    pub weight: u32,
    /// Only used when no primary member is usable.
    pub backup: bool,
    /// Rendezvous seed derived from pool and member name.
    pub seed: u64,
    /// Health endpoint, if probed.
    pub health_url: Option<String>,
    /// Registered through etcd (see [`crate::membership`]).
    pub registered: bool,
}

/// A pool: members grouped by region.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Name from the config.
    pub name: String,
    /// Primary members of each region, indexed by [`RegionId`].
    pub by_region: Vec<Vec<MemberId>>,
    /// Backup members, in config order.
    pub backups: Vec<MemberId>,
    /// Whether some region has more primaries than a steered name answers with,
    /// so that the answer depends on the client hash (see [`super::Decision::hashed`]).
    pub max_region_size: usize,
}

/// A location override.
#[derive(Debug, Clone)]
pub struct Override {
    /// What it matches.
    pub matcher: OverrideMatch,
    /// Preferred regions in order.
    pub regions: Vec<RegionId>,
}

/// The match of an [`Override`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideMatch {
    /// Client network.
    Cidr(IpNet),
    /// Country code.
    Country(String),
    /// Continent code.
    Continent(String),
}

/// The immutable steering model built from a validated configuration.
#[derive(Debug, Clone)]
pub struct Steering {
    /// Regions in config (alphabetical) order.
    pub regions: Vec<Region>,
    /// All members of all pools.
    pub members: Vec<Member>,
    /// Pools.
    pub pools: Vec<Pool>,
    /// CIDR overrides (network, index into `overrides`), most specific first.
    pub cidr_overrides: Vec<(IpNet, usize)>,
    /// Country overrides by code.
    pub country_overrides: HashMap<String, usize>,
    /// Continent overrides by code.
    pub continent_overrides: HashMap<String, usize>,
    /// All overrides (indexes above point here).
    pub overrides: Vec<Override>,
    /// Region order for clients that cannot be placed.
    pub default_order: Vec<RegionId>,
    /// All-down behaviour.
    pub all_down: AllDownPolicy,
}

impl Steering {
    /// Compiles a validated configuration.
    pub fn from_config(c: &ConfigFile) -> Steering {
        let regions: Vec<Region> = c
            .regions
            .iter()
            .map(|(name, r)| Region {
                name: name.clone(),
                coords: (r.latitude, r.longitude),
            })
            .collect();
        let region_id = |name: &str| -> RegionId {
            regions
                .iter()
                .position(|r| r.name == name)
                .expect("validated region") as RegionId
        };
        let mut members = Vec::new();
        let mut pools = Vec::new();
        for (pi, (pname, p)) in c.pools.iter().enumerate() {
            let mut by_region = vec![Vec::new(); regions.len()];
            let mut backups = Vec::new();
            for m in &p.members {
                let id = members.len() as MemberId;
                let region = region_id(&m.region);
                if m.backup {
                    backups.push(id);
                } else {
                    by_region[region as usize].push(id);
                }
                members.push(Member {
                    name: m.name.to_ascii_lowercase(),
                    pool: pi as PoolId,
                    region,
                    v4: m
                        .addresses
                        .iter()
                        .filter_map(|a| match a {
                            IpAddr::V4(v) => Some(*v),
                            _ => None,
                        })
                        .collect(),
                    v6: m
                        .addresses
                        .iter()
                        .filter_map(|a| match a {
                            IpAddr::V6(v) => Some(*v),
                            _ => None,
                        })
                        .collect(),
                    weight: m.weight,
                    backup: m.backup,
                    seed: member_seed(pname, &m.name.to_ascii_lowercase()),
                    health_url: m.health_url.clone(),
                    registered: m.registered,
                });
            }
            let max_region_size = by_region.iter().map(Vec::len).max().unwrap_or(0);
            pools.push(Pool {
                name: pname.clone(),
                by_region,
                backups,
                max_region_size,
            });
        }
        let mut overrides = Vec::new();
        let mut cidr_overrides = Vec::new();
        let mut country_overrides = HashMap::new();
        let mut continent_overrides = HashMap::new();
        for o in &c.overrides {
            let regions = o.regions.iter().map(|r| region_id(r)).collect();
            let matcher = if let Some(n) = o.cidr {
                OverrideMatch::Cidr(n)
            } else if let Some(cc) = &o.country {
                OverrideMatch::Country(cc.clone())
            } else {
                OverrideMatch::Continent(o.continent.clone().unwrap_or_default())
            };
            let ov = Override { matcher, regions };
            match &ov.matcher {
                OverrideMatch::Cidr(n) => cidr_overrides.push((*n, overrides.len())),
                OverrideMatch::Country(cc) => {
                    country_overrides
                        .entry(cc.clone())
                        .or_insert(overrides.len());
                }
                OverrideMatch::Continent(ct) => {
                    continent_overrides
                        .entry(ct.clone())
                        .or_insert(overrides.len());
                }
            }
            overrides.push(ov);
        }
        cidr_overrides.sort_by_key(|(n, i)| (std::cmp::Reverse(n.prefix_len()), *i));
        let mut default_order: Vec<RegionId> = c
            .steering
            .default_regions
            .iter()
            .map(|r| region_id(r))
            .collect();
        for i in 0..regions.len() as RegionId {
            if !default_order.contains(&i) {
                default_order.push(i);
            }
        }
        Steering {
            regions,
            members,
            pools,
            cidr_overrides,
            country_overrides,
            continent_overrides,
            overrides,
            default_order,
            all_down: c.steering.all_down,
        }
    }

    /// The most specific CIDR override containing `ip`: (index, network).
    pub fn cidr_override(&self, ip: IpAddr) -> Option<(usize, IpNet)> {
        self.cidr_overrides
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(n, i)| (*i, *n))
    }

    /// Region id by name.
    pub fn region_id(&self, name: &str) -> Option<RegionId> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| i as RegionId)
    }

    /// Pool id by name.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as PoolId)
    }
}
