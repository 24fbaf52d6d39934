//! A client of etcd's v3 JSON gRPC gateway (`/v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/deleterange`, `/v3/lease/grant`, `/v3/lease/keepalive`,
//! `/v3/lease/revoke`, `/v3/watch`) over HTTP(S) with reqwest, with endpoint
//! failover, password auth and TLS; see docs/decisions.md for why not the
//! gRPC crate.

use std::sync::Arc;
use std::time::Duration;

use data_encoding::BASE64;
use serde_json::{json, Value};

/// What [`Etcd::new`] needs (see [`crate::EtcdSettings::options`]).
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

    /// Follows every key under `prefix` for good: a full read handed to
    /// `on_read`, then a watch from the next revision whose batches go to
    /// `on_events`; when the watch ends it reads again. A failed read goes to
    /// `on_unreachable` and is retried after a backoff (250 ms doubling to
    /// 5 s, reset by a good read); a re-read after a watch ends waits 250 ms,
    /// so a watch that keeps failing at once cannot spin.
    pub async fn follow_prefix(
        &self,
        prefix: &str,
        mut on_read: impl FnMut(Vec<Kv>),
        mut on_events: impl FnMut(Vec<WatchEvent>),
        mut on_unreachable: impl FnMut(&str),
    ) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.range_prefix(prefix).await {
                Ok((rev, kvs)) => {
                    backoff = Duration::from_millis(250);
                    on_read(kvs);
                    if let Err(e) = self
                        .watch_prefix(prefix, rev + 1, |_, events| on_events(events))
                        .await
                    {
                        tracing::warn!(prefix, error = %e, "etcd watch ended; re-reading");
                    }
                }
                Err(e) => on_unreachable(&e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn rotate(&self) {
        self.current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("a"), b"b".to_vec());
    }
}
