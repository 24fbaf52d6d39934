//! The `geosteer` command: parses the command line and hands over to [`geosteer::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    geosteer::cli::run(geosteer::cli::Cli::parse())
}
