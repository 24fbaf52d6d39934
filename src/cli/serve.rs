//! `geosteer serve`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::dns::ServeState;
use crate::node::Node;

pub(super) fn run(path: &Path) -> ExitCode {
    let st = match Config::load(path).and_then(|c| ServeState::load(c, 1)) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!(
                "{}: not starting, {} problem(s):",
                path.display(),
                errors.0.len()
            );
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    super::init_logging(st.config.file.log.format, &st.config.file.log.level);
    serve(st)
}

/// Runs a node on a loaded state until a signal stops it.
pub(super) fn serve(st: ServeState) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let node = match Node::start(st).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(listen = ?node.dns.addrs, geoip = %node.shared().state.load().geo.describe(), "serving DNS");
        node.run_until_signal().await;
        ExitCode::SUCCESS
    })
}
