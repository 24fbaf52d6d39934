//! The local checks: a real DNS query to the VIP, or a relay's `/health`
//! plus a STUN Binding to the VIP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::config::{CheckConfig, VipConfig};
use crate::health::probe;
use crate::health::tracker::RelayStatus;

/// A check ready to run repeatedly (parsed once).
pub enum Check {
    /// DNS query for `name`/`qtype` to `server`.
    Dns {
        /// VIP:port.
        server: SocketAddr,
        /// Query name.
        name: Name,
        /// Query type.
        qtype: RecordType,
    },
    /// Relay `/health` and STUN at the VIP.
    Relay {
        /// HTTP client.
        client: reqwest::Client,
        /// `/health` URL.
        url: String,
        /// VIP:STUN port.
        stun: SocketAddr,
    },
}

impl Check {
    /// Builds the check of a validated VIP.
    pub fn new(v: &VipConfig) -> Result<Check, String> {
        Ok(match &v.check {
            CheckConfig::Dns { name, qtype, port } => Check::Dns {
                server: SocketAddr::new(v.addr(), *port),
                name: Name::from_ascii(name).map_err(|e| e.to_string())?,
                qtype: qtype.parse().map_err(|e| format!("{e}"))?,
            },
            CheckConfig::Relay {
                health_url,
                stun_port,
            } => Check::Relay {
                client: probe::http_client(false)?,
                url: health_url.clone(),
                stun: SocketAddr::new(v.addr(), *stun_port),
            },
        })
    }

    /// Runs once; `Ok(latency)` when the service answered correctly.
    pub async fn run(&self, timeout: Duration) -> Result<Duration, String> {
        match self {
            Check::Dns {
                server,
                name,
                qtype,
            } => dns(*server, name, *qtype, timeout).await,
            Check::Relay { client, url, stun } => {
                let start = Instant::now();
                let r = probe::http(client, url, timeout).await;
                if !r.ok {
                    return Err(format!("health: {}", r.error.unwrap_or_default()));
                }
                if r.status == RelayStatus::Draining {
                    return Err("health: relay is draining".into());
                }
                let left = timeout.saturating_sub(start.elapsed());
                probe::stun(*stun, left.max(Duration::from_millis(1))).await?;
                Ok(start.elapsed())
            }
        }
    }
}

/// One UDP query; passes on an authoritative NOERROR answer with records.
async fn dns(
    server: SocketAddr,
    name: &Name,
    qtype: RecordType,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), qtype));
    let bytes = m
        .to_vec()
        .map_err(|e| format!("cannot encode query: {e}"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    let r = tokio::time::timeout(timeout, async {
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("cannot open socket: {e}"))?;
        sock.connect(server)
            .await
            .map_err(|e| format!("connect {server}: {e}"))?;
        sock.send(&bytes)
            .await
            .map_err(|e| format!("send to {server}: {e}"))?;
        let mut buf = [0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("{server}: {e}"))?;
            let Ok(resp) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if resp.metadata.id != id {
                continue;
            }
            return judge(&resp, server, name, qtype);
        }
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "DNS: no answer from {server} in {} ms",
            timeout.as_millis()
        )),
    }
}

fn judge(resp: &Message, server: SocketAddr, name: &Name, qtype: RecordType) -> Result<(), String> {
    if resp.metadata.response_code != ResponseCode::NoError {
        return Err(format!(
            "DNS: {server} answered {name} {qtype} with {}",
            resp.metadata.response_code
        ));
    }
    if !resp.metadata.authoritative {
        return Err(format!("DNS: {server} answered {name} {qtype} without AA"));
    }
    if resp.answers.is_empty() {
        return Err(format!(
            "DNS: {server} answered {name} {qtype} with no records"
        ));
    }
    Ok(())
}
