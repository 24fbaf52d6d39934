//! Probes: the relay's `/health` JSON over HTTP(S), and optionally a STUN
//! Binding request over UDP (catches a relay whose HTTP side lives while its
//! UDP side is dead).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::tracker::{ProbeResult, RelayStatus};

/// The fields of the relay's `/health` JSON that steering uses.
#[derive(Debug, Deserialize)]
struct HealthJson {
    status: String,
    #[serde(default)]
    utilization: Option<f64>,
}

/// Builds the shared HTTP client (rustls with the ring provider).
pub fn http_client(insecure: bool) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(insecure)
        .pool_max_idle_per_host(1)
        .user_agent(concat!("geosteer/", env!("CARGO_PKG_VERSION"), " health"))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// GETs `url` and interprets the relay's health JSON.
pub async fn http(client: &reqwest::Client, url: &str, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let res = tokio::time::timeout(timeout, async {
        let resp = client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| short(&e))?;
        let code = resp.status();
        let body = resp.bytes().await.map_err(|e| short(&e))?;
        let json: HealthJson = serde_json::from_slice(&body)
            .map_err(|e| format!("HTTP {code}: body is not health JSON: {e}"))?;
        Ok::<_, String>((code, json))
    })
    .await;
    let latency = start.elapsed();
    let fail = |e: String| ProbeResult {
        ok: false,
        status: RelayStatus::Ok,
        utilization: None,
        latency,
        error: Some(e),
    };
    match res {
        Err(_) => fail(format!("timed out after {} ms", timeout.as_millis())),
        Ok(Err(e)) => fail(e),
        Ok(Ok((code, j))) => {
            let status = match j.status.as_str() {
                "ok" => RelayStatus::Ok,
                "draining" => RelayStatus::Draining,
                "overloaded" => RelayStatus::Overloaded,
                other => return fail(format!("unknown status {other:?}")),
            };
            // A draining relay may answer 503; its JSON still counts.
            if !code.is_success() && status == RelayStatus::Ok {
                return fail(format!("HTTP {code}"));
            }
            ProbeResult {
                ok: true,
                status,
                utilization: j
                    .utilization
                    .filter(|u| u.is_finite())
                    .map(|u| u.clamp(0.0, 1.0)),
                latency,
                error: None,
            }
        }
    }
}

fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Sends a STUN Binding request to `addr` and waits for the matching response.
pub async fn stun(addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    let txid: [u8; 12] = rand::random();
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    req.extend_from_slice(&txid);
    sock.send_to(&req, addr).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let r = tokio::time::timeout(timeout, async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.map_err(|e| e.to_string())?;
            // Binding success response (0x0101) with our transaction id.
            if from == addr && n >= 20 && buf[0..2] == [0x01, 0x01] && buf[8..20] == txid {
                return Ok::<_, String>(());
            }
        }
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(format!("STUN: {e}")),
        Err(_) => Err(format!(
            "STUN: no Binding response from {addr} in {} ms",
            timeout.as_millis()
        )),
    }
}
