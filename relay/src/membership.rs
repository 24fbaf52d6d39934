//! Fleet membership through etcd: a relay registers itself under
//! `/geosteer/<deployment>/members/<pool>/<name>`, attached to a lease it keeps
//! alive; it deletes the key on drain and shutdown, and the lease expires it
//! after a crash. DNS nodes watch that prefix (see geosteer's `membership`).
//!
//! The client speaks etcd's official v3 JSON gRPC gateway (`/v3/kv/range`,
//! `/v3/kv/put`, `/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/watch`) over
//! HTTP(S) with reqwest; see docs/decisions.md for why not the gRPC crate.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use data_encoding::BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `[membership]`: where and how to register.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipConfig {
    /// etcd client URLs (`http://10.0.0.1:2379`); tried in turn.
    pub endpoints: Vec<String>,
    /// Deployment name: the key prefix `/geosteer/<deployment>/`.
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// Pool the relay joins.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Member name (a DNS label, unique in the pool); default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// Addresses DNS hands out; default: `relay.external_ip`/`external_ipv6`,
    /// else `relay.ips`.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Health URL DNS nodes probe; default: `http://<first address>:<listen.http port>/health`.
    #[serde(default)]
    pub health_url: Option<String>,
    /// Relative weight in the region.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Session capacity advertised (informational; load comes from `/health`).
    #[serde(default)]
    pub capacity: Option<u64>,
    /// Lease TTL, seconds (2..=300): how long a crashed relay stays registered.
    #[serde(default = "default_ttl")]
    pub lease_ttl_secs: u64,
    /// etcd user (auth enabled).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the etcd password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA bundle (PEM) to verify etcd's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (one PEM file) for etcd client-cert auth.
    #[serde(default)]
    pub client_identity_file: Option<PathBuf>,
}

fn default_deployment() -> String {
    "default".into()
}
fn default_pool() -> String {
    "turn".into()
}
fn default_weight() -> u32 {
    100
}
fn default_ttl() -> u64 {
    10
}

impl MembershipConfig {
    /// Problems as (path suffix, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = connection_problems(
            &self.endpoints,
            &self.deployment,
            self.username.is_some(),
            self.password_file.is_some(),
        );
        for (what, v) in [("pool", &self.pool)] {
            if !is_key_segment(v) {
                p.push((what.into(), format!("{v:?} must be [A-Za-z0-9_-]+")));
            }
        }
        if let Some(n) = &self.name {
            if !is_label(n) {
                p.push(("name".into(), format!("{n:?} is not a DNS label")));
            }
        }
        if !(2..=300).contains(&self.lease_ttl_secs) {
            p.push(("lease_ttl_secs".into(), "must be 2..=300".into()));
        }
        if self.weight == 0 || self.weight > 65535 {
            p.push(("weight".into(), "must be 1..=65535".into()));
        }
        p
    }
}

/// Problems of the etcd connection settings shared by relays and DNS nodes,
/// as (key under `membership.`, message).
pub fn connection_problems(
    endpoints: &[String],
    deployment: &str,
    has_user: bool,
    has_password: bool,
) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if endpoints.is_empty() {
        p.push(("endpoints".into(), "needs at least one etcd URL".into()));
    }
    for (i, e) in endpoints.iter().enumerate() {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            p.push((
                format!("endpoints[{i}]"),
                format!("{e:?} is not an http:// or https:// URL"),
            ));
        }
    }
    if !is_key_segment(deployment) {
        p.push((
            "deployment".into(),
            format!("{deployment:?} must be [A-Za-z0-9_-]+"),
        ));
    }
    if has_user != has_password {
        p.push((
            "username".into(),
            "username and password_file go together".into(),
        ));
    }
    p
}

/// `[A-Za-z0-9_-]+`: safe inside an etcd key path.
pub fn is_key_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A DNS label (letters, digits, hyphen; not at the ends).
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The value stored under a member key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Region name (must exist in the DNS nodes' config).
    pub region: String,
    /// Addresses handed out.
    pub addresses: Vec<IpAddr>,
    /// Health endpoint to probe.
    #[serde(default)]
    pub health_url: Option<String>,
    /// Relative weight in the region.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Advertised session capacity.
    #[serde(default)]
    pub capacity: Option<u64>,
}

/// Key prefix of a deployment's members: `/geosteer/<deployment>/members/`.
pub fn members_prefix(deployment: &str) -> String {
    format!("/geosteer/{deployment}/members/")
}

/// Key prefix of a deployment's health votes: `/geosteer/<deployment>/votes/`.
pub fn votes_prefix(deployment: &str) -> String {
    format!("/geosteer/{deployment}/votes/")
}

/// Connection settings shared by relays and DNS nodes.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// User and password, when auth is enabled.
    pub credentials: Option<(String, String)>,
    /// CA bundle PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// Client cert + key PEM.
    pub identity_pem: Option<Vec<u8>>,
}

impl EtcdOptions {
    /// Reads the files named by a `[membership]` section.
    pub fn from_files(
        endpoints: &[String],
        username: Option<&str>,
        password_file: Option<&std::path::Path>,
        ca_file: Option<&std::path::Path>,
        identity_file: Option<&std::path::Path>,
    ) -> Result<EtcdOptions, String> {
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let credentials = match (username, password_file) {
            (Some(u), Some(p)) => Some((
                u.to_string(),
                String::from_utf8_lossy(&read(p)?).trim().to_string(),
            )),
            _ => None,
        };
        Ok(EtcdOptions {
            endpoints: endpoints.to_vec(),
            credentials,
            ca_pem: ca_file.map(read).transpose()?,
            identity_pem: identity_file.map(read).transpose()?,
        })
    }
}

/// A key/value pair as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// Key.
    pub key: String,
    /// Raw value.
    pub value: Vec<u8>,
    /// Revision of the last change.
    pub mod_revision: i64,
}

/// One change from a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Key created or changed.
    Put(Kv),
    /// Key deleted (or its lease expired).
    Delete(String),
}

/// A client of etcd's v3 JSON gateway, with endpoint failover.
#[derive(Clone)]
pub struct Etcd {
    opts: Arc<EtcdOptions>,
    http: reqwest::Client,
    /// Long-lived client for watches (no overall timeout).
    stream_http: reqwest::Client,
    current: Arc<std::sync::atomic::AtomicUsize>,
    token: Arc<std::sync::Mutex<Option<String>>>,
}

fn b64(s: &[u8]) -> String {
    BASE64.encode(s)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| BASE64.decode(s.as_bytes()).ok())
        .unwrap_or_default()
}

/// The key just past every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn parse_kv(v: &Value) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&unb64(&v["key"])).into_owned(),
        value: unb64(&v["value"]),
        mod_revision: num(&v["mod_revision"]),
    }
}

impl Etcd {
    /// Builds the HTTP clients (TLS roots/identity from `opts`).
    pub fn new(opts: EtcdOptions) -> Result<Etcd, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let build = |timeout: Option<Duration>| -> Result<reqwest::Client, String> {
            let mut b = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .tcp_keepalive(Duration::from_secs(5));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            if let Some(pem) = &opts.ca_pem {
                for c in reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("etcd CA bundle: {e}"))?
                {
                    b = b.add_root_certificate(c);
                }
            }
            if let Some(pem) = &opts.identity_pem {
                b = b.identity(
                    reqwest::Identity::from_pem(pem)
                        .map_err(|e| format!("etcd client identity: {e}"))?,
                );
            }
            b.build().map_err(|e| format!("etcd HTTP client: {e}"))
        };
        if opts.endpoints.is_empty() {
            return Err("no etcd endpoints".into());
        }
        Ok(Etcd {
            http: build(Some(Duration::from_secs(3)))?,
            stream_http: build(None)?,
            opts: Arc::new(opts),
            current: Arc::default(),
            token: Arc::default(),
        })
    }

    fn endpoint(&self, offset: usize) -> &str {
        let n = self.opts.endpoints.len();
        let i = (self.current.load(std::sync::atomic::Ordering::Relaxed) + offset) % n;
        &self.opts.endpoints[i]
    }

    async fn authenticate(&self, base: &str) -> Result<Option<String>, String> {
        let Some((user, pass)) = &self.opts.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(Some(t));
        }
        let r: Value = self
            .http
            .post(format!("{base}/v3/auth/authenticate"))
            .json(&json!({"name": user, "password": pass}))
            .send()
            .await
            .map_err(|e| format!("{base}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{base}: authenticate: {e}"))?;
        let t = r["token"]
            .as_str()
            .ok_or_else(|| format!("{base}: authentication refused: {r}"))?
            .to_string();
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
        Ok(Some(t))
    }

    /// POSTs `body` to `path` on the first endpoint that answers; moves the
    /// preferred endpoint on failure.
    pub async fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let mut last = String::new();
        for off in 0..self.opts.endpoints.len() {
            let base = self.endpoint(off).to_string();
            let token = match self.authenticate(&base).await {
                Ok(t) => t,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut req = self.http.post(format!("{base}{path}")).json(&body);
            if let Some(t) = token {
                req = req.header("Authorization", t);
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status();
                    let v: Value = match r.json().await {
                        Ok(v) => v,
                        Err(e) => {
                            last = format!("{base}{path}: {e}");
                            continue;
                        }
                    };
                    if !status.is_success() || v.get("error").is_some() || v.get("code").is_some() {
                        if v.to_string().contains("token") {
                            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        }
                        last = format!("{base}{path}: {status}: {v}");
                        // A cluster-level refusal (e.g. no leader) may clear on another member.
                        continue;
                    }
                    if off != 0 {
                        self.current
                            .fetch_add(off, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(e) => last = format!("{base}{path}: {e}"),
            }
        }
        Err(last)
    }

    /// Every key under `prefix`, and the store revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), String> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
            )
            .await?;
        let rev = num(&v["header"]["revision"]);
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().map(parse_kv).collect())
            .unwrap_or_default();
        Ok((rev, kvs))
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, String> {
        let v = self.call("/v3/lease/grant", json!({"TTL": ttl})).await?;
        match num(&v["ID"]) {
            0 => Err(format!("lease grant: no ID in {v}")),
            id => Ok(id),
        }
    }

    /// Refreshes a lease; returns the remaining TTL (0: the lease is gone).
    pub async fn keepalive(&self, lease: i64) -> Result<i64, String> {
        let v = self
            .call("/v3/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(num(&v["result"]["TTL"]))
    }

    /// Revokes a lease (its keys go with it).
    pub async fn revoke(&self, lease: i64) -> Result<(), String> {
        self.call("/v3/lease/revoke", json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    /// Puts `key = value`, attached to `lease` when non-zero.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), String> {
        let mut body = json!({"key": b64(key.as_bytes()), "value": b64(value)});
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("/v3/kv/put", body).await.map(|_| ())
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.call("/v3/kv/deleterange", json!({"key": b64(key.as_bytes())}))
            .await
            .map(|_| ())
    }

    /// Watches `prefix` from revision `from`, calling `on_events` for each
    /// batch, until the stream ends or fails (an error either way: the caller
    /// re-reads and re-watches). `on_events` gets the batch's revision.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        from: i64,
        mut on_events: impl FnMut(i64, Vec<WatchEvent>),
    ) -> Result<(), String> {
        let base = self.endpoint(0).to_string();
        let token = self.authenticate(&base).await?;
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let mut req = self
            .stream_http
            .post(format!("{base}/v3/watch"))
            .json(&body);
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                self.rotate();
                return Err(format!("{base}/v3/watch: {}", r.status()));
            }
            Err(e) => {
                self.rotate();
                return Err(format!("{base}/v3/watch: {e}"));
            }
        };
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    self.rotate();
                    return Err(format!("{base}/v3/watch: stream ended"));
                }
                Err(e) => {
                    self.rotate();
                    return Err(format!("{base}/v3/watch: {e}"));
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let v: Value = match serde_json::from_slice(&line) {
                    Ok(v) => v,
                    Err(_) if line.iter().all(|b| b.is_ascii_whitespace()) => continue,
                    Err(e) => return Err(format!("{base}/v3/watch: bad frame: {e}")),
                };
                let r = &v["result"];
                if v.get("error").is_some() || r["canceled"].as_bool() == Some(true) {
                    return Err(format!("{base}/v3/watch: canceled: {v}"));
                }
                let rev = num(&r["header"]["revision"]);
                let events: Vec<WatchEvent> = r["events"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                let kv = parse_kv(&e["kv"]);
                                if e["type"].as_str() == Some("DELETE") {
                                    WatchEvent::Delete(kv.key)
                                } else {
                                    WatchEvent::Put(kv)
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                on_events(rev, events);
            }
        }
    }

    fn rotate(&self) {
        self.current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

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
    cfg: &crate::config::RelayConfig,
    m: &MembershipConfig,
) -> Result<(String, Registration), String> {
    let name = match &m.name {
        Some(n) => n.clone(),
        None => hostname()?,
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
    let key = format!("{}{}/{}", members_prefix(&m.deployment), m.pool, name);
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

fn hostname() -> Result<String, String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("membership.name unset and no host name: {e}"))?;
    let h = h
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if is_label(&h) {
        Ok(h)
    } else {
        Err(format!(
            "membership.name unset and host name {h:?} is not a DNS label"
        ))
    }
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
pub fn prepare(cfg: &crate::config::RelayConfig) -> Result<Option<Pending>, String> {
    let Some(m) = &cfg.membership else {
        return Ok(None);
    };
    let (key, value) = registration_of(cfg, m)?;
    let etcd = Etcd::new(EtcdOptions::from_files(
        &m.endpoints,
        m.username.as_deref(),
        m.password_file.as_deref(),
        m.ca_file.as_deref(),
        m.client_identity_file.as_deref(),
    )?)?;
    Ok(Some(Pending {
        etcd,
        key,
        value,
        ttl: m.lease_ttl_secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("a"), b"b".to_vec());
    }

    #[test]
    fn registration_round_trips_and_rejects_unknown_fields() {
        let r: Registration =
            serde_json::from_str(r#"{"region":"eu","addresses":["198.18.0.1"],"weight":5}"#)
                .unwrap();
        assert_eq!(r.weight, 5);
        assert!(
            serde_json::from_str::<Registration>(r#"{"region":"eu","addresses":[],"x":1}"#)
                .is_err()
        );
    }

    #[test]
    fn config_problems_name_fields() {
        let m: MembershipConfig =
            toml::from_str("endpoints = [\"etcd:2379\"]\ndeployment = \"a/b\"\nlease_ttl_secs = 1")
                .unwrap();
        let p: Vec<String> = m.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(p, ["endpoints[0]", "deployment", "lease_ttl_secs"]);
    }
}
