//! Great-circle distance.

/// Mean Earth radius, km (IUGG).
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Haversine distance in km between two (latitude, longitude) points in degrees.
pub fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        // Frankfurt – Singapore ≈ 10,260 km; London – Frankfurt ≈ 640 km.
        let fra = (50.11, 8.68);
        let d = great_circle_km(fra, (1.29, 103.85));
        assert!((d - 10_260.0).abs() < 60.0, "{d}");
        let d = great_circle_km((51.51, -0.13), fra);
        assert!((d - 638.0).abs() < 10.0, "{d}");
        assert_eq!(great_circle_km(fra, fra), 0.0);
        // Antipodes: half the circumference.
        let d = great_circle_km((0.0, 0.0), (0.0, 180.0));
        assert!((d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }
}
