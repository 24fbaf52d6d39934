//! `geosteer check`: validate without serving.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::dns::ServeState;

pub(super) fn run(path: &Path) -> ExitCode {
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
