//! The admin HTTP API (axum): health, metrics, state, explain, operator
//! overrides and reload. Changes need the bearer token; reads need
//! `api.read_token` (or the change token) when one is configured.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::dns::explain::explain;
use crate::health::hub::Target;
use crate::health::OperatorAction;
use crate::node::Reloader;

mod ice;
mod status;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    /// Node internals (pipeline, health hub, reload).
    pub node: Arc<Reloader>,
    /// Bearer token for POSTs; `None` disables changes.
    pub token: Option<Arc<str>>,
}

/// The router.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/state", get(state))
        .route("/v1/explain", get(explain_ip))
        .route("/v1/members/{pool}/{member}/{action}", post(member_action))
        .route("/v1/regions/{region}/{action}", post(region_action))
        .route("/v1/reload", post(reload))
        .route("/v1/ice-servers", post(ice::ice_servers))
        .route("/", get(status::page))
        .layer(axum::middleware::from_fn_with_state(api.clone(), read_gate))
        .with_state(api)
}

/// Requires `api.read_token` (read from the current config, so a reload
/// applies) on GET requests other than `/healthz`.
async fn read_gate(
    State(api): State<Api>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::GET && req.uri().path() != "/healthz" {
        let st = api.node.shared.state.load();
        if let Some(read) = st.config.file.api.read_token.as_deref() {
            let given = bearer(req.headers()).map(str::as_bytes);
            let ok = given.is_some_and(|g| {
                constant_time_eq(g, read.as_bytes())
                    || api
                        .token
                        .as_deref()
                        .is_some_and(|t| constant_time_eq(g, t.as_bytes()))
            });
            if !ok {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "reads need the bearer token api.read_token",
                );
            }
        }
    }
    next.run(req).await
}

/// Serves the API on `listener` until the future resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "admin API stopped");
    }
}

/// An error answer: status and message, as `{"error": "..."}`.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    ApiError(code, msg.into()).into_response()
}

fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &api.token else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "changes are disabled: configure api.token or api.token_file".into(),
        ));
    };
    match bearer(headers) {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        )),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    let mut out = String::with_capacity(8192);
    let shared = &api.node.shared;
    shared.metrics.render(&mut out);
    shared
        .metrics
        .tcp_conns
        .render(&shared.state.load().config.file.server.tcp, &mut out);
    let names: Vec<String> = shared
        .state
        .load()
        .steering
        .regions
        .iter()
        .map(|r| r.name.clone())
        .collect();
    shared.metrics.render_regions(&names, &mut out);
    out.push_str(&format!(
        "# HELP geosteer_cache_entries Answers in the cache.\n# TYPE geosteer_cache_entries gauge\ngeosteer_cache_entries {}\n",
        shared.cache.len()
    ));
    api.node.hub.render_metrics(&mut out);
    api.node.members.render_metrics(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn state(State(api): State<Api>) -> impl IntoResponse {
    let (st, h) = api.node.shared.view();
    Json(json!({
        "config": st.config.path.display().to_string(),
        "generation": st.generation,
        "health_epoch": h.epoch,
        "geoip": st.geo.describe(),
        "members": api.node.hub.state(),
        "events": api.node.hub.events(),
    }))
}

#[derive(Deserialize)]
struct ExplainQuery {
    ip: Option<String>,
    name: Option<String>,
}

async fn explain_ip(State(api): State<Api>, Query(q): Query<ExplainQuery>) -> Response {
    let Some(ip) = q.ip else {
        return error(StatusCode::BAD_REQUEST, "missing query parameter ip");
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("ip: {ip:?} is not an IP address"),
        );
    };
    let (st, h) = api.node.shared.view();
    let idx = match st.steered_index(q.name.as_deref()) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    match explain(&st, &h, ip, idx) {
        Ok(x) => {
            // The running node also knows why each member of the pool is
            // (un)usable: its own verdict, the other nodes' votes, the decision.
            let pool = &st.steering.pools[st.steered[idx].pool as usize].name;
            let prefix = format!("{pool}/");
            let health: Vec<_> = api
                .node
                .hub
                .state()
                .into_iter()
                .filter(|m| m.member.starts_with(&prefix))
                .collect();
            let mut v = serde_json::to_value(x).unwrap_or_default();
            v["health"] = serde_json::to_value(health).unwrap_or_default();
            Json(v).into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

fn parse_action(a: &str) -> Result<OperatorAction, ApiError> {
    match a {
        "drain" => Ok(OperatorAction::Drain),
        "down" => Ok(OperatorAction::Down),
        "up" => Ok(OperatorAction::Up),
        "release" => Ok(OperatorAction::Release),
        other => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("action {other:?}: expected drain, down, up or release"),
        )),
    }
}

async fn member_action(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((pool, member, action)): Path<(String, String, String)>,
) -> Response {
    let key = format!("{pool}/{}", member.to_ascii_lowercase());
    operator(&api, &headers, Target::Member(&key), &action)
}

async fn region_action(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((region, action)): Path<(String, String)>,
) -> Response {
    operator(&api, &headers, Target::Region(&region), &action)
}

/// Authorizes and applies an operator action.
fn operator(api: &Api, headers: &HeaderMap, target: Target<'_>, action: &str) -> Response {
    let action = match authorize(api, headers).and_then(|()| parse_action(action)) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let what = match target {
        Target::Member(m) => json!({ "member": m, "action": action }),
        Target::Region(r) => json!({ "region": r, "action": action }),
    };
    match api.node.hub.apply(target, action) {
        Ok(()) => Json(what).into_response(),
        Err(e) if e.starts_with("no such") => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn reload(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r.into_response();
    }
    let node = api.node.clone();
    match tokio::task::spawn_blocking(move || node.reload()).await {
        Ok(Ok(())) => Json(json!({ "reloaded": true })).into_response(),
        Ok(Err(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "reloaded": false, "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>() })),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Binds the API listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
