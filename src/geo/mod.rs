//! Client location from a MaxMind-format database.
//!
//! The hot path only walks the search tree ([`Locate::lookup`]): it yields the
//! matched network and the data record's offset, which together identify the
//! "decision cell" a cached answer is valid for. Decoding the record into a
//! [`Location`] ([`Locate::locate`]) happens only on cache misses.

pub mod build;
mod distance;
mod maxmind;
mod stamp;

pub use distance::great_circle_km;
pub use maxmind::MaxMind;
pub use stamp::FileStamp;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// What the database says about an address, decoded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Location {
    /// Latitude, degrees.
    pub latitude: Option<f64>,
    /// Longitude, degrees.
    pub longitude: Option<f64>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Two-letter continent code.
    pub continent: Option<String>,
    /// City name (English), if the database has one.
    pub city: Option<String>,
}

impl Location {
    /// Coordinates when both are known.
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }
}

/// The tree walk's result: cheap, no decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeoLookup {
    /// The most specific database network containing the address.
    pub network: IpNet,
    /// Identity of the data record (its offset), `None` when the address is unknown.
    pub record: Option<u32>,
}

/// A database that can be enumerated: what [`crate::steer::CellMap`] compiles.
pub trait NetworkSource {
    /// Calls `f` for every network of the family that has data, with the
    /// identity of its data record.
    fn for_each_network(&self, v6: bool, f: &mut dyn FnMut(IpNet, Option<u32>));
    /// Decodes the location of the record at `ip`.
    fn location_at(&self, ip: IpAddr) -> Option<Location>;
}

/// A source of client locations. Implemented by [`MaxMind`]; tests may supply their own.
pub trait Locate: NetworkSource + Send + Sync {
    /// Walks the tree for `ip` (hot path: no allocation, no decoding).
    fn lookup(&self, ip: IpAddr) -> GeoLookup;
    /// Decodes the location of `ip`, if the database knows it.
    fn locate(&self, ip: IpAddr) -> Option<Location>;
    /// One line describing the database (type, build date, node count).
    fn describe(&self) -> String;
}
