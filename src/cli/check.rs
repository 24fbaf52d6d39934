//! `geosteer check`: validate without serving.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::dns::ServeState;

pub(super) fn run(path: &Path) -> ExitCode {
    if std::fs::read_to_string(path).is_ok_and(|t| crate::anycast::config::looks_like_anycast(&t)) {
        return check_anycast(path);
    }
    match Config::load(path).and_then(|c| ServeState::load(c, 0)) {
        Ok(st) => {
            println!(
                "{}: OK — {} zone(s), {} steered name(s), {} region(s), {} member(s); GeoIP {}",
                path.display(),
                st.zones.len(),
                st.steered.len(),
                st.steering.regions.len(),
                st.steering.members.len(),
                st.geo.describe()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} problem(s):", path.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An anycast agent file (it has `speaker` and `[[vip]]`).
fn check_anycast(path: &Path) -> ExitCode {
    match crate::anycast::AnycastConfig::load(path) {
        Ok(c) => {
            println!(
                "{}: OK — anycast agent, {} VIP(s)",
                path.display(),
                c.vips.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} problem(s):", path.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            ExitCode::FAILURE
        }
    }
}
