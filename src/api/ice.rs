//! `POST /v1/ice-servers`: WebRTC `RTCIceServer` lists with TURN REST
//! credentials (coturn-compatible), like Cloudflare's generate-ice-servers
//! and Twilio's Tokens API, self-hosted.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError};
use crate::config::IceMode;
use crate::dns::explain::decide_for;
use crate::dns::ServeState;

/// The request body; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IceRequest {
    /// Credential lifetime, seconds.
    ttl: Option<u64>,
    /// Address of the end user (for `direct` mode); default: the caller's.
    client_ip: Option<String>,
    /// Free label appended to the username (`expiry:user`).
    user: Option<String>,
}

fn api_key_ok(st: &ServeState, headers: &HeaderMap) -> bool {
    super::bearer(headers).is_some_and(|g| {
        st.ice_api_keys
            .iter()
            .any(|k| super::constant_time_eq(g.as_bytes(), k.as_bytes()))
    })
}

pub(super) async fn ice_servers(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match build(&api, peer, &headers, &body) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn build(
    api: &Api,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let (st, health) = api.node.shared.view();
    let Some(ice) = &st.config.file.ice else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "the ICE-servers API is not configured ([ice])".into(),
        ));
    };
    if !api_key_ok(&st, headers) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer <key>)".into(),
        ));
    }
    let req: IceRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IceRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))?
    };
    let ttl = req.ttl.unwrap_or(ice.default_ttl);
    if ttl == 0 || ttl > ice.max_ttl {
        return Err(bad(format!(
            "ttl: must be within 1..={} seconds",
            ice.max_ttl
        )));
    }
    if let Some(u) = &req.user {
        if u.is_empty()
            || u.len() > 64
            || !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            return Err(bad(
                "user: 1 to 64 characters of letters, digits, '-', '_', '.', '@'",
            ));
        }
    }
    let client: IpAddr = match &req.client_ip {
        Some(s) => s
            .parse()
            .map_err(|_| bad(format!("client_ip: {s:?} is not an IP address")))?,
        None => peer.ip().to_canonical(),
    };
    let secret = st.ice_secrets.first().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no TURN secret configured".into(),
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (username, credential) =
        geosteer_relay::auth::mint(secret.as_bytes(), ttl, req.user.as_deref(), now);
    // The relays steering picks for this client: their addresses in
    // `direct` mode, and in both modes whether they serve TURN over TLS.
    let d = decide_for(&st, &health, client, 0).ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no steered name configured".into(),
        )
    })?;
    let members: Vec<&crate::steer::Member> = d
        .members
        .iter()
        .map(|&m| &st.steering.members[m as usize])
        .collect();
    let has_tls = |m: &crate::steer::Member| {
        st.steering
            .regions
            .get(m.region as usize)
            .and_then(|r| st.config.file.regions.get(&r.name))
            .is_none_or(|r| r.tls)
    };
    // (host, whether it gets a turns: URL)
    let hosts: Vec<(String, bool)> = match ice.mode {
        IceMode::Hostname => {
            let name = ice
                .hostname
                .clone()
                .or_else(|| st.steered.first().map(|s| s.name.to_string()))
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_string();
            // The name may resolve to any of them.
            vec![(name, members.iter().all(|m| has_tls(m)))]
        }
        IceMode::Direct => {
            let mut hosts = Vec::new();
            for m in &members {
                let tls = has_tls(m);
                hosts.extend(m.v4.iter().map(|a| (a.to_string(), tls)));
                hosts.extend(m.v6.iter().map(|a| (format!("[{a}]"), tls)));
            }
            if hosts.is_empty() {
                return Err(ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no relay available for this client".into(),
                ));
            }
            hosts
        }
    };
    let mut stun = Vec::new();
    let mut turn = Vec::new();
    for (h, tls) in &hosts {
        stun.push(format!("stun:{h}:{}", ice.port));
        turn.push(format!("turn:{h}:{}?transport=udp", ice.port));
        turn.push(format!("turn:{h}:{}?transport=tcp", ice.port));
        if ice.tls_port != 0 && *tls {
            turn.push(format!("turns:{h}:{}?transport=tcp", ice.tls_port));
        }
    }
    Ok(json!({
        "iceServers": [
            { "urls": stun },
            { "urls": turn, "username": username, "credential": credential },
        ],
        "ttl": ttl,
    }))
}
