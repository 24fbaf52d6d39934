//! `geosteer anycast`: the BGP anycast node agent.

use std::path::Path;
use std::process::ExitCode;

use crate::anycast::config::SpeakerConfig;
use crate::anycast::AnycastConfig;
use crate::config::LogFormat;

/// Runs the agent, or with `withdraw` withdraws every VIP and exits, or with
/// `print_speaker` prints the speaker's kind (for the unit's start helper).
pub(super) fn run(path: &Path, withdraw: bool, print_speaker: bool) -> ExitCode {
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
    if print_speaker {
        println!(
            "{}",
            match cfg.speaker {
                SpeakerConfig::Exabgp => "exabgp",
                SpeakerConfig::Bird { .. } => "bird",
            }
        );
        return ExitCode::SUCCESS;
    }
    if withdraw {
        return match crate::anycast::agent::withdraw_all(&cfg) {
            Ok(lines) => {
                for l in lines {
                    tracing::info!("withdraw: {l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("withdraw failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match crate::anycast::agent::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
