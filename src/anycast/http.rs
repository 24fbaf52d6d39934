//! The agent's HTTP endpoint on `metrics_listen`: `/metrics`, `/v1/state`,
//! and the admin switch `POST /v1/drain` / `/v1/undrain`.
//!
//! The switch withdraws every VIP, so it is guarded: with `admin_token_file`
//! every change needs `Authorization: Bearer TOKEN`; without it only
//! loopback clients may change anything, whatever address the endpoint is
//! bound to (Prometheus may scrape from elsewhere).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;

use super::metrics::AgentStatus;
use crate::api::{bearer, constant_time_eq};

/// Where the admin switch goes (the decision loop): true = drain.
pub type Switch = Arc<dyn Fn(bool) + Send + Sync>;

#[derive(Clone)]
struct App {
    status: Arc<Mutex<AgentStatus>>,
    token: Option<Arc<str>>,
    switch: Switch,
}

/// Reads the admin token file: the first line, at least 16 characters.
pub fn read_token(path: &Path) -> Result<Arc<str>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("admin_token_file {}: {e}", path.display()))?;
    let t = text.lines().next().unwrap_or("").trim();
    if t.len() < 16 {
        return Err(format!(
            "admin_token_file {}: the token must be at least 16 characters",
            path.display()
        ));
    }
    Ok(t.into())
}

/// Serves until the runtime ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<Mutex<AgentStatus>>,
    token: Option<Arc<str>>,
    switch: Switch,
) {
    let app = App {
        status,
        token,
        switch,
    };
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(a): State<App>| async move { a.status.lock().expect("status").render() }),
        )
        .route(
            "/v1/state",
            get(|State(a): State<App>| async move {
                axum::Json(a.status.lock().expect("status").clone())
            }),
        )
        .route(
            "/v1/drain",
            post(|s, c, h| async move { admin(s, c, h, true) }),
        )
        .route(
            "/v1/undrain",
            post(|s, c, h| async move { admin(s, c, h, false) }),
        )
        .with_state(app)
        .into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

fn admin(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    drain: bool,
) -> (StatusCode, &'static str) {
    if let Err(refusal) = allowed(app.token.as_deref(), peer, &headers) {
        tracing::warn!(%peer, drain, "admin switch refused");
        return refusal;
    }
    (app.switch)(drain);
    tracing::info!(%peer, drain, "admin switch");
    let text = if drain {
        "draining: every VIP is withdrawn\n"
    } else {
        "drain released\n"
    };
    (StatusCode::OK, text)
}

/// Whether a change from `peer` with `headers` may go through.
fn allowed(
    token: Option<&str>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    match token {
        Some(t) => match bearer(headers) {
            Some(g) if constant_time_eq(g.as_bytes(), t.as_bytes()) => Ok(()),
            _ => Err((
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (admin_token_file)\n",
            )),
        },
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
        None if peer.ip().to_canonical().is_loopback() => Ok(()),
        None => Err((
            StatusCode::FORBIDDEN,
            "the admin switch answers loopback clients only; set admin_token_file to allow others\n",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::AUTHORIZATION;

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn without_a_token_only_loopback_may_switch() {
        let none = HeaderMap::new();
        for ok in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.2]:5000"] {
            assert!(allowed(None, ok.parse().unwrap(), &none).is_ok(), "{ok}");
        }
        let r = allowed(None, "198.18.200.1:5000".parse().unwrap(), &none);
        assert_eq!(r.unwrap_err().0, StatusCode::FORBIDDEN);
    }

    #[test]
    fn with_a_token_everyone_needs_it() {
        let t = Some("0123456789abcdef");
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let far: SocketAddr = "198.18.200.1:5000".parse().unwrap();
        assert_eq!(
            allowed(t, lo, &HeaderMap::new()).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            allowed(t, far, &with("0123456789abcdeX")).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert!(allowed(t, far, &with("0123456789abcdef")).is_ok());
    }

    #[test]
    fn short_or_missing_token_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("gs-anycast-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        assert!(read_token(&short).unwrap_err().contains("at least 16"));
        assert!(read_token(&dir.join("missing"))
            .unwrap_err()
            .contains("admin_token_file"));
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef\n").unwrap();
        assert_eq!(&*read_token(&good).unwrap(), "0123456789abcdef");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
