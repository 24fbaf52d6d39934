//! `geosteer geoip build`: compile a text source into a MaxMind-format database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::geo::build::{parse_source, write_mmdb};

/// Build epoch of the bundled demo database, fixed so rebuilds are byte-identical.
pub const DEMO_EPOCH: u64 = 1_767_225_600;

#[derive(Debug, Subcommand)]
pub(super) enum GeoipCommand {
    /// Build a .mmdb from `CIDR,CONTINENT,COUNTRY,LAT,LON[,CITY]` lines.
    Build {
        /// Text source.
        source: PathBuf,
        /// Output database.
        #[arg(long, short)]
        output: PathBuf,
        /// Build timestamp written into the metadata (fixed for reproducibility).
        #[arg(long, default_value_t = DEMO_EPOCH)]
        epoch: u64,
    },
}

pub(super) fn run(c: GeoipCommand) -> ExitCode {
    let GeoipCommand::Build {
        source,
        output,
        epoch,
    } = c;
    let text = match std::fs::read_to_string(&source) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", source.display());
            return ExitCode::FAILURE;
        }
    };
    let entries = match parse_source(&text, &source.display().to_string()) {
        Ok(e) => e,
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let bytes = match write_mmdb(
        &entries,
        "geosteer-demo-City",
        "geosteer demo database built from IANA registries",
        epoch,
    ) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Write then rename, so a running server never maps a half-written file.
    let tmp = output.with_extension("mmdb.tmp");
    if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &output)) {
        eprintln!("{}: {e}", output.display());
        return ExitCode::FAILURE;
    }
    println!(
        "{}: {} networks, {} bytes",
        output.display(),
        entries.len(),
        bytes.len()
    );
    ExitCode::SUCCESS
}
