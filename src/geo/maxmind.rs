//! The memory-mapped MaxMind reader behind [`Locate`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use maxminddb::{Mmap, Reader};
use serde::Deserialize;

use super::{GeoLookup, Locate, Location, NetworkSource};

/// A GeoIP2/GeoLite2 City or Country database (or any database in that layout).
pub struct MaxMind {
    reader: Reader<Mmap>,
    path: PathBuf,
}

/// The subset of the GeoIP2 record we use; other fields are skipped.
#[derive(Deserialize)]
struct Record<'a> {
    location: Option<Loc>,
    #[serde(borrow)]
    country: Option<Code<'a>>,
    #[serde(borrow)]
    registered_country: Option<Code<'a>>,
    #[serde(borrow)]
    continent: Option<Code<'a>>,
    #[serde(borrow)]
    city: Option<City<'a>>,
}

#[derive(Deserialize)]
struct Loc {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct Code<'a> {
    iso_code: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct City<'a> {
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    en: Option<&'a str>,
}

impl MaxMind {
    /// Opens (memory-maps) and sanity-checks a database. Replace the file by
    /// renaming a new one over it, never by rewriting it in place.
    pub fn open(path: &Path) -> Result<MaxMind, String> {
        // SAFETY: the mapping is read-only; operators replace the file by
        // rename (documented), so the mapped inode is never modified.
        let reader = unsafe { Reader::open_mmap(path) }
            .map_err(|e| format!("{}: not a usable MaxMind database: {e}", path.display()))?;
        let m = reader.metadata();
        if m.ip_version != 4 && m.ip_version != 6 {
            return Err(format!(
                "{}: unsupported ip_version {}",
                path.display(),
                m.ip_version
            ));
        }
        Ok(MaxMind {
            reader,
            path: path.to_path_buf(),
        })
    }

    /// Path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Locate for MaxMind {
    fn lookup(&self, ip: IpAddr) -> GeoLookup {
        match self.reader.lookup(ip) {
            Ok(r) => {
                let network = r
                    .network()
                    .ok()
                    .and_then(|n| IpNet::new(n.network(), n.prefix()).ok())
                    .unwrap_or_else(|| host_net(ip));
                GeoLookup {
                    network,
                    record: r.offset().map(|o| o as u32),
                }
            }
            // An IPv6 address in an IPv4-only database, for instance.
            Err(_) => GeoLookup {
                network: host_net(ip),
                record: None,
            },
        }
    }

    fn locate(&self, ip: IpAddr) -> Option<Location> {
        let rec: Record = self.reader.lookup(ip).ok()?.decode().ok()??;
        let (latitude, longitude) = rec
            .location
            .map(|l| (l.latitude, l.longitude))
            .unwrap_or_default();
        let country = rec
            .country
            .and_then(|c| c.iso_code)
            .or(rec.registered_country.and_then(|c| c.iso_code))
            .map(str::to_string);
        Some(Location {
            latitude,
            longitude,
            country,
            continent: rec.continent.and_then(|c| c.code).map(str::to_string),
            city: rec
                .city
                .and_then(|c| c.names)
                .and_then(|n| n.en)
                .map(str::to_string),
        })
    }

    fn describe(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "{} ({}, IPv{}, {} nodes, built {})",
            self.path.display(),
            m.database_type,
            m.ip_version,
            m.node_count,
            m.build_epoch
        )
    }
}

impl NetworkSource for MaxMind {
    fn for_each_network(&self, v6: bool, f: &mut dyn FnMut(IpNet, Option<u32>)) {
        let cidr: ipnetwork::IpNetwork = if v6 {
            "::/0".parse().expect("literal")
        } else {
            "0.0.0.0/0".parse().expect("literal")
        };
        if v6 && self.reader.metadata().ip_version == 4 {
            return;
        }
        let Ok(iter) = self.reader.within(cidr, Default::default()) else {
            return;
        };
        for r in iter.flatten() {
            if let Ok(n) = r.network() {
                if let Ok(net) = IpNet::new(n.network(), n.prefix()) {
                    f(net, r.offset().map(|o| o as u32));
                }
            }
        }
    }

    fn location_at(&self, ip: IpAddr) -> Option<Location> {
        self.locate(ip)
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}
