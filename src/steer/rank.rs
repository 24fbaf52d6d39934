//! Ordering regions for a client: overrides first, then great-circle distance.

use std::net::IpAddr;

use serde::Serialize;

use super::model::{RegionId, Steering};
use crate::geo::{great_circle_km, Location};

/// Where a client is, as far as steering is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// An override (index into [`Steering::overrides`]) applies; the location,
    /// if known, orders the regions the override does not list.
    Override(usize, Option<&'a Location>),
    /// Placed by the GeoIP database.
    Located(&'a Location),
    /// The database does not know the client (private, unallocated…).
    Unknown,
}

impl<'a> Placement<'a> {
    /// Places a client: CIDR override, then country, then continent override,
    /// then the location itself.
    pub fn of(s: &Steering, ip: IpAddr, loc: Option<&'a Location>) -> Placement<'a> {
        if let Some((idx, _)) = s.cidr_override(ip) {
            return Placement::Override(idx, loc);
        }
        match loc {
            Some(loc) => Placement::of_location(s, loc),
            None => Placement::Unknown,
        }
    }

    /// Places a located client: country, then continent override, then the
    /// location itself (no CIDR overrides: see [`super::CellMap`]).
    pub fn of_location(s: &Steering, loc: &'a Location) -> Placement<'a> {
        let by_country = loc
            .country
            .as_deref()
            .and_then(|c| s.country_overrides.get(c));
        let by_continent = loc
            .continent
            .as_deref()
            .and_then(|c| s.continent_overrides.get(c));
        if let Some(&i) = by_country.or(by_continent) {
            return Placement::Override(i, Some(loc));
        }
        if point_of(loc).is_some() {
            Placement::Located(loc)
        } else {
            Placement::Unknown
        }
    }
}

/// One region in a client's ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankedRegion {
    /// The region.
    pub region: RegionId,
    /// Distance from the client, when its location is known.
    pub distance_km: Option<f64>,
    /// Placed here by an override rather than by distance.
    pub by_override: bool,
}

/// A representative point per continent, for databases (Country editions)
/// that give a continent but no coordinates.
fn continent_point(code: &str) -> Option<(f64, f64)> {
    Some(match code {
        "AF" => (2.0, 21.0),
        "AN" => (-80.0, 0.0),
        "AS" => (34.0, 100.0),
        "EU" => (50.0, 10.0),
        "NA" => (40.0, -100.0),
        "OC" => (-25.0, 135.0),
        "SA" => (-15.0, -60.0),
        _ => return None,
    })
}

/// The point distances are measured from.
pub(crate) fn point_of(loc: &Location) -> Option<(f64, f64)> {
    loc.coordinates()
        .or_else(|| loc.continent.as_deref().and_then(continent_point))
}

/// All regions, best first, for a placement.
pub fn rank_regions(s: &Steering, placement: Placement<'_>) -> Vec<RankedRegion> {
    let mut out: Vec<RankedRegion> = Vec::with_capacity(s.regions.len());
    let (first, loc): (&[RegionId], Option<&Location>) = match placement {
        Placement::Override(i, loc) => (&s.overrides[i].regions, loc),
        Placement::Located(loc) => (&[], Some(loc)),
        Placement::Unknown => (&[], None),
    };
    let point = loc.and_then(point_of);
    let dist = |r: RegionId| point.map(|p| great_circle_km(p, s.regions[r as usize].coords));
    for &r in first {
        if !out.iter().any(|x| x.region == r) {
            out.push(RankedRegion {
                region: r,
                distance_km: dist(r),
                by_override: true,
            });
        }
    }
    let mut rest: Vec<RankedRegion> = match point {
        Some(_) => (0..s.regions.len() as RegionId)
            .filter(|r| !first.contains(r))
            .map(|r| RankedRegion {
                region: r,
                distance_km: dist(r),
                by_override: false,
            })
            .collect(),
        None => s
            .default_order
            .iter()
            .copied()
            .filter(|r| !first.contains(r))
            .map(|r| RankedRegion {
                region: r,
                distance_km: None,
                by_override: false,
            })
            .collect(),
    };
    if point.is_some() {
        rest.sort_by(|a, b| {
            a.distance_km
                .partial_cmp(&b.distance_km)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.region.cmp(&b.region))
        });
    }
    out.extend(rest);
    out
}
