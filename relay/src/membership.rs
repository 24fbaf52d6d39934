//! Fleet membership: a relay with `[membership]` registers itself under
//! `/geosteer/<deployment>/members/<pool>/<name>` (see `geosteer_etcd::keys`)
//! once its sockets are bound, attached to a lease it keeps alive; it
//! deletes the key when a drain starts, and the lease expires it after a
//! crash. DNS nodes watch that prefix (geosteer's `membership`).

use std::net::IpAddr;
use std::time::Duration;

use geosteer_etcd::{members_prefix, Etcd, Registration};

use crate::config::{MembershipConfig, RelayConfig};

/// A running registration: keeps the lease alive, re-registers if the lease
/// is lost (etcd was partitioned longer than the TTL).
pub struct Registrar {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Registrar {
    /// Starts registering `value` under `key` with a lease of `ttl` seconds.
    pub fn spawn(etcd: Etcd, key: String, value: Registration, ttl: u64) -> Registrar {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let body = serde_json::to_vec(&value).unwrap_or_default();
            let mut lease = 0i64;
            loop {
                if *rx.borrow() {
                    break;
                }
                if lease == 0 {
                    match register(&etcd, &key, &body, ttl).await {
                        Ok(id) => {
                            tracing::info!(key, lease = id, ttl, "registered in etcd");
                            lease = id;
                        }
                        Err(e) => {
                            tracing::warn!(key, error = %e, "etcd registration failed; retrying")
                        }
                    }
                } else {
                    match etcd.keepalive(lease).await {
                        Ok(t) if t > 0 => {}
                        Ok(_) => {
                            tracing::warn!(key, lease, "etcd lease expired; registering again");
                            lease = 0;
                            continue;
                        }
                        Err(e) => tracing::warn!(key, error = %e, "etcd keepalive failed"),
                    }
                }
                let pause = Duration::from_millis(if lease == 0 { 1000 } else { ttl * 1000 / 3 });
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = rx.changed() => {}
                }
            }
            if lease != 0 {
                let del = etcd.delete(&key).await;
                let rev = etcd.revoke(lease).await;
                match del.and(rev) {
                    Ok(()) => tracing::info!(key, "deregistered from etcd"),
                    Err(e) => {
                        tracing::warn!(key, error = %e, "deregistering failed; the lease will expire")
                    }
                }
            }
        });
        Registrar { stop, task }
    }

    /// Deletes the key and revokes the lease (drain or shutdown); waits at
    /// most 3 s.
    pub async fn deregister(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

async fn register(etcd: &Etcd, key: &str, body: &[u8], ttl: u64) -> Result<i64, String> {
    let id = etcd.grant(ttl).await?;
    etcd.put(key, body, id).await?;
    Ok(id)
}

/// The relay's registration from its config: key and value.
pub fn registration_of(
    cfg: &RelayConfig,
    m: &MembershipConfig,
) -> Result<(String, Registration), String> {
    let name = match &m.name {
        Some(n) => n.clone(),
        None => geosteer_etcd::keys::host_label()
            .map_err(|e| format!("membership.name unset and {e}"))?,
    };
    let mut addresses = m.addresses.clone();
    if addresses.is_empty() {
        addresses.extend(cfg.relay.external_ip);
        addresses.extend(cfg.relay.external_ipv6);
    }
    if addresses.is_empty() {
        addresses = cfg.relay.ips.clone();
    }
    if addresses.is_empty() {
        return Err(
            "membership.addresses: no address to register (set it or relay.external_ip)".into(),
        );
    }
    let health_url = m.health_url.clone().or_else(|| {
        let a = addresses[0];
        let port = cfg.listen.http.port();
        Some(match a {
            IpAddr::V4(v4) => format!("http://{v4}:{port}/health"),
            IpAddr::V6(v6) => format!("http://[{v6}]:{port}/health"),
        })
    });
    let key = format!("{}{}/{}", members_prefix(&m.etcd.deployment), m.pool, name);
    Ok((
        key,
        Registration {
            region: cfg.region.clone(),
            addresses,
            health_url,
            weight: m.weight,
            capacity: m.capacity,
        },
    ))
}

/// A registration ready to start: validated, the etcd client built, nothing
/// sent yet.
pub struct Pending {
    etcd: Etcd,
    key: String,
    value: Registration,
    ttl: u64,
}

impl Pending {
    /// Starts registering (call once the relay's sockets are bound: a relay
    /// that cannot serve never registers).
    pub fn spawn(self) -> Registrar {
        Registrar::spawn(self.etcd, self.key, self.value, self.ttl)
    }
}

/// The registration of a relay with a `[membership]` section, checked and
/// ready; `None` without one.
pub fn prepare(cfg: &RelayConfig) -> Result<Option<Pending>, String> {
    let Some(m) = &cfg.membership else {
        return Ok(None);
    };
    let (key, value) = registration_of(cfg, m)?;
    let etcd = Etcd::new(m.etcd.options(|p| p.to_path_buf())?)?;
    Ok(Some(Pending {
        etcd,
        key,
        value,
        ttl: m.lease_ttl_secs,
    }))
}
