//! `geosteer anycast`: the BGP anycast node agent.

use std::path::Path;
use std::process::ExitCode;

use crate::anycast::AnycastConfig;
use crate::config::LogFormat;

pub(super) fn run(path: &Path) -> ExitCode {
    // Logs go to stderr: under ExaBGP, stdout is the API channel.
    super::init_logging(LogFormat::Text, "info");
    let cfg = match AnycastConfig::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: {} problem(s):", path.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match crate::anycast::agent::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
