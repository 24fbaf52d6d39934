//! Command-line interface: one module per subcommand.

mod anycast;
mod check;
mod demo;
mod explain;
mod geoip;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;

/// geosteer: steering DNS for a global TURN service.
#[derive(Debug, Parser)]
#[command(name = "geosteer", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the steering DNS server.
    Serve {
        /// TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the anycast agent: announce VIPs through ExaBGP or BIRD while healthy.
    Anycast {
        /// The agent's TOML file (see docs/anycast.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Withdraw every VIP through the speaker and exit (the unit's
        /// `ExecStopPost`).
        #[arg(long, conflicts_with = "print_speaker")]
        withdraw: bool,
        /// Print the configured speaker (`exabgp` or `bird`) and exit.
        #[arg(long)]
        print_speaker: bool,
    },
    /// Run the local multi-region demo on bundled defaults.
    Demo(demo::DemoArgs),
    /// Validate a node configuration (with its zone files and GeoIP database)
    /// or an anycast agent file, then exit.
    Check {
        /// TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show how a client address is located and steered.
    Explain(explain::ExplainArgs),
    /// GeoIP database tools.
    Geoip {
        #[command(subcommand)]
        command: geoip::GeoipCommand,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve::run(&config),
        Command::Anycast {
            config,
            withdraw,
            print_speaker,
        } => anycast::run(&config, withdraw, print_speaker),
        Command::Demo(args) => demo::run(args),
        Command::Check { config } => check::run(&config),
        Command::Explain(args) => explain::run(args),
        Command::Geoip { command } => geoip::run(command),
    }
}

/// Installs the tracing subscriber (text or JSON, filter from `RUST_LOG` or the config).
pub(crate) fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}
