//! HTTP endpoints for the steering layer and operators:
//! `GET /livez`, `GET /readyz`, `GET /health` (JSON), `GET /metrics`
//! (Prometheus text), `POST /admin/drain` and `POST /admin/reload` (bearer token).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::config::LimitsConfig;
use crate::control::Control;
use crate::edge::{Edge, Reject};
use crate::reload::Reloader;
use crate::stats::{AllocError, Stats};

/// Shared state of the HTTP handlers.
/// Settings come from the reloadable snapshot, so a reload changes them too.
#[derive(Clone)]
pub struct HttpState {
    control: Arc<Control>,
    reloader: Arc<Reloader>,
    edge: Arc<Edge>,
}

impl HttpState {
    /// Builds the state from shared handles.
    pub fn new(control: Arc<Control>, reloader: Arc<Reloader>, edge: Arc<Edge>) -> Self {
        Self {
            control,
            reloader,
            edge,
        }
    }

    /// Every loop's statistics, summed (read per request, not per packet).
    fn stats(&self) -> Stats {
        self.control.stats()
    }
}

/// The `/health` document parsed by the steering layer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Health {
    /// `ok`, `draining` or `overloaded`.
    pub status: String,
    /// Region name.
    pub region: String,
    /// Active allocations.
    pub allocations: u64,
    /// Allocation capacity.
    pub capacity: u64,
    /// Relayed bits/s client → peer.
    pub bps_in: u64,
    /// Relayed bits/s peer → client.
    pub bps_out: u64,
    /// max(allocations/capacity, (bps_in+bps_out)/total_bps), clamped to 0..1.
    pub utilization: f64,
}

/// Computes the health document.
#[allow(clippy::too_many_arguments)]
pub fn health_of(
    region: &str,
    allocations: u64,
    capacity: u64,
    bps_in: u64,
    bps_out: u64,
    total_bps: u64,
    draining: bool,
    high_watermark: f64,
) -> Health {
    let by_allocs = allocations as f64 / capacity.max(1) as f64;
    let by_bw = (bps_in + bps_out) as f64 / total_bps.max(1) as f64;
    let utilization = by_allocs.max(by_bw).clamp(0.0, 1.0);
    let status = if draining {
        "draining"
    } else if utilization >= high_watermark {
        "overloaded"
    } else {
        "ok"
    };
    Health {
        status: status.into(),
        region: region.into(),
        allocations,
        capacity,
        bps_in,
        bps_out,
        utilization: (utilization * 10_000.0).round() / 10_000.0,
    }
}

impl HttpState {
    fn health(&self) -> Health {
        let s = &self.stats();
        let live = self.reloader.live();
        let c = &live.config;
        health_of(
            &c.region,
            s.allocations.load(Relaxed),
            c.limits.capacity as u64,
            s.bps_in.load(Relaxed),
            s.bps_out.load(Relaxed),
            c.limits.total_bps,
            s.draining.load(Relaxed) || s.stopped.load(Relaxed),
            c.operations.high_watermark,
        )
    }

    fn alive(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let s = self.stats();
        !s.stopped.load(Relaxed) && now.saturating_sub(s.last_tick_unix.load(Relaxed)) <= 5
    }
}

async fn livez(State(s): State<HttpState>) -> Response {
    if s.alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "event loop not running\n").into_response()
    }
}

async fn readyz(State(s): State<HttpState>) -> Response {
    let h = s.health();
    if s.alive() && h.status == "ok" {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", h.status)).into_response()
    }
}

async fn health(State(s): State<HttpState>) -> Json<Health> {
    Json(s.health())
}

/// Prometheus text being written: one `# HELP`/`# TYPE` header per family.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(self.0, "{name}{labels} {v}");
        }
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, "gauge", help, &[("", v)]);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, "counter", help, &[("", v)]);
    }

    /// A family with `direction="in"` and `direction="out"` samples.
    fn in_out(&mut self, name: &str, kind: &str, help: &str, (i, o): (u64, u64)) {
        let samples = [("{direction=\"in\"}", i), ("{direction=\"out\"}", o)];
        self.family(name, kind, help, &samples);
    }
}

/// Renders Prometheus text exposition.
pub fn render_metrics(stats: &Stats, capacity: u64, total_bps: u64) -> String {
    let c = stats.counters();
    let mut e = Exposition(String::with_capacity(2048));
    let active = stats.allocations.load(Relaxed);
    e.gauge("turn_sessions_active", "Active TURN allocations.", active);
    e.gauge("turn_sessions_capacity", "Allocation capacity.", capacity);
    e.gauge(
        "turn_relay_bandwidth_capacity_bits_per_second",
        "Relayed bits per second the relay is sized for, both directions together (limits.total_bps).",
        total_bps,
    );
    e.counter(
        "turn_sessions_total",
        "TURN allocations created.",
        c.sessions_total,
    );
    e.in_out(
        "turn_relay_bytes_total",
        "counter",
        "Relayed payload bytes (in: client to peer, out: peer to client).",
        (c.bytes_in, c.bytes_out),
    );
    e.in_out(
        "turn_relay_packets_total",
        "counter",
        "Relayed packets (in: client to peer, out: peer to client).",
        (c.packets_in, c.packets_out),
    );
    e.in_out(
        "turn_relay_bits_per_second",
        "gauge",
        "Relayed bits per second over the last second.",
        (stats.bps_in.load(Relaxed), stats.bps_out.load(Relaxed)),
    );
    let labels: Vec<String> = AllocError::ALL
        .iter()
        .map(|r| format!("{{reason=\"{}\"}}", r.label()))
        .collect();
    let samples: Vec<(&str, u64)> = labels
        .iter()
        .zip(AllocError::ALL)
        .map(|(l, r)| (l.as_str(), c.alloc_errors[r as usize]))
        .collect();
    e.family(
        "turn_allocation_errors_total",
        "counter",
        "Refused Allocate requests by reason.",
        &samples,
    );
    e.counter(
        "stun_binding_requests_total",
        "STUN Binding requests answered.",
        c.binding_requests,
    );
    e.counter(
        "turn_auth_failures_total",
        "Requests with wrong, unknown or expired credentials.",
        c.auth_failures,
    );
    e.counter(
        "turn_unauthorized_rate_limited_total",
        "401 replies suppressed by the per-IP rate limit.",
        c.unauthorized_limited,
    );
    e.counter(
        "turn_peer_denied_total",
        "Permissions or channels refused by the peer policy.",
        c.peer_denied,
    );
    e.counter(
        "turn_bandwidth_drops_total",
        "Packets dropped by bandwidth limits.",
        c.bandwidth_drops,
    );
    e.counter(
        "turn_tcp_backlog_drops_total",
        "Frames to TCP/TLS clients dropped because the client did not read.",
        stats.tcp_backlog_drops.load(Relaxed),
    );
    e.counter(
        "turn_malformed_packets_total",
        "Malformed packets dropped or answered with 400/420.",
        c.malformed,
    );
    let draining = stats.draining.load(Relaxed) as u64;
    e.gauge("turn_draining", "1 while draining.", draining);
    e.0
}

/// Renders the accept stage's metrics: connections open, being
/// established, established and closed before that, and the limits.
pub fn render_edge_metrics(edge: &Edge, limits: &LimitsConfig) -> String {
    let st = &edge.stats;
    let mut e = Exposition(String::with_capacity(1024));
    e.gauge(
        "turn_connections_open",
        "Open TCP/TLS connections (being established or established).",
        edge.open_connections() as u64,
    );
    e.gauge(
        "turn_connections_handshaking",
        "TCP/TLS connections still showing their protocol or in their TLS handshake.",
        st.handshaking.load(Relaxed),
    );
    e.gauge(
        "turn_connections_limit",
        "limits.max_connections.",
        limits.max_connections() as u64,
    );
    e.gauge(
        "turn_connections_per_ip_limit",
        "limits.connections_per_ip (0: unlimited).",
        limits.connections_per_ip as u64,
    );
    e.family(
        "turn_connections_established_total",
        "counter",
        "Connections handed to an event loop, by transport.",
        &[
            ("{transport=\"tcp\"}", st.established_tcp.load(Relaxed)),
            ("{transport=\"tls\"}", st.established_tls.load(Relaxed)),
        ],
    );
    let labels: Vec<String> = Reject::ALL
        .iter()
        .map(|r| format!("{{reason=\"{}\"}}", r.label()))
        .collect();
    let samples: Vec<(&str, u64)> = labels
        .iter()
        .zip(Reject::ALL)
        .map(|(l, r)| (l.as_str(), st.rejected(r)))
        .collect();
    e.family(
        "turn_connections_rejected_total",
        "counter",
        "Connections closed before they were established, by reason.",
        &samples,
    );
    e.0
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let live = s.reloader.live();
    let lim = &live.config.limits;
    let mut text = render_metrics(&s.stats(), lim.capacity as u64, lim.total_bps);
    text.push_str(&render_edge_metrics(&s.edge, &live.config.limits));
    // How the kernel's 5-tuple hash spread the allocations over the loops.
    let per_loop = s.control.loop_allocations();
    let _ = writeln!(
        text,
        "# HELP turn_loop_sessions_active Active TURN allocations per event loop.\n# TYPE turn_loop_sessions_active gauge"
    );
    for (i, n) in per_loop.iter().enumerate() {
        let _ = writeln!(text, "turn_loop_sessions_active{{loop=\"{i}\"}} {n}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token; `Some(response)` refuses the request.
fn admin_refusal(s: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let live = s.reloader.live();
    let Some(token) = &live.config.operations.admin_token else {
        return Some(
            (
                StatusCode::NOT_FOUND,
                "admin endpoint disabled (no operations.admin_token)\n",
            )
                .into_response(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !ct_eq(given.as_bytes(), token.as_bytes()) {
        return Some((StatusCode::UNAUTHORIZED, "bad token\n").into_response());
    }
    None
}

/// `POST /admin/reload`: re-reads the configuration file (like SIGHUP).
/// 200 with `{generation, changed}`; 422 with `{errors}` when the new file is
/// rejected (the running configuration stays); 409 without a file.
async fn admin_reload(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(r) = admin_refusal(&s, &headers) {
        return r;
    }
    let r = s.reloader.clone();
    match tokio::task::spawn_blocking(move || r.reload_file()).await {
        Ok(Ok(report)) => (StatusCode::OK, Json(report)).into_response(),
        Ok(Err(e)) => {
            let code = match e {
                crate::reload::ReloadError::NoFile => StatusCode::CONFLICT,
                crate::reload::ReloadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                crate::reload::ReloadError::NotApplied => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!("{e}");
            let body = serde_json::json!({ "errors": e.messages() });
            (code, Json(body)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn admin_drain(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(r) = admin_refusal(&s, &headers) {
        return r;
    }
    tracing::info!("drain requested via admin endpoint");
    s.control.drain();
    (StatusCode::ACCEPTED, Json(s.health())).into_response()
}

/// Builds the router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/drain", post(admin_drain))
        .route("/admin/reload", post(admin_reload))
        .with_state(state)
}

/// Serves HTTP on `listener` until `stop` fires.
pub async fn serve(
    listener: std::net::TcpListener,
    state: HttpState,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_status_and_utilization() {
        let h = health_of("eu", 50, 100, 0, 0, 1000, false, 0.9);
        assert_eq!(h.status, "ok");
        assert_eq!(h.utilization, 0.5);
        let h = health_of("eu", 10, 100, 600, 300, 1000, false, 0.9);
        assert_eq!(h.status, "overloaded");
        assert_eq!(h.utilization, 0.9);
        let h = health_of("eu", 10, 100, 0, 0, 1000, true, 0.9);
        assert_eq!(h.status, "draining");
        let h = health_of("eu", 500, 100, 0, 0, 1000, false, 0.9);
        assert_eq!(h.utilization, 1.0);
        let json = serde_json::to_value(&h).unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        for k in [
            "status",
            "region",
            "allocations",
            "capacity",
            "bps_in",
            "bps_out",
            "utilization",
        ] {
            assert!(keys.contains(&k.to_string()), "{k}");
        }
        assert_eq!(keys.len(), 7);
    }

    #[test]
    fn metrics_have_required_names_and_no_user_labels() {
        let s = Stats::default();
        let text = render_metrics(&s, 10, 1_000_000);
        for name in [
            "turn_sessions_active 0",
            "turn_relay_bandwidth_capacity_bits_per_second 1000000",
            "turn_sessions_total 0",
            "turn_relay_bytes_total{direction=\"in\"} 0",
            "turn_relay_packets_total{direction=\"out\"} 0",
            "turn_allocation_errors_total{reason=\"capacity\"} 0",
            "stun_binding_requests_total 0",
            "turn_auth_failures_total 0",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(!text.contains("user=") && !text.contains("username"));
    }
}
