//! Registered members: the raw etcd keys, their validation against the
//! static configuration, and publication as a new [`ServeState`].

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use geosteer_etcd::{is_label, members_prefix, Kv, Registration, Rejection, WatchEvent};

use crate::config::{Config, MemberConfig};
use crate::dns::Shared;
use crate::health::HealthHub;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Inner {
    /// Member keys → (mod revision, raw value).
    raw: BTreeMap<String, (i64, Vec<u8>)>,
    /// Keys rejected at the last merge, with why.
    rejected: BTreeMap<String, Rejection>,
    accepted: usize,
    rejected_total: BTreeMap<&'static str, u64>,
}

/// The registry of registered members of one deployment.
pub struct Members {
    prefix: String,
    inner: Mutex<Inner>,
    /// Static configuration the registered members are added to.
    base: Mutex<Option<Config>>,
    /// Serializes building and publishing snapshots (reloads and membership changes).
    build: Mutex<()>,
    etcd_up: AtomicBool,
    changes: AtomicU64,
    last_sync_unix: AtomicU64,
}

impl Members {
    /// A registry for `deployment`, on top of `base`.
    pub fn new(deployment: &str, base: Config) -> Arc<Members> {
        Arc::new(Members {
            prefix: members_prefix(deployment),
            inner: Mutex::default(),
            base: Mutex::new(Some(base)),
            build: Mutex::new(()),
            etcd_up: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            last_sync_unix: AtomicU64::new(0),
        })
    }

    /// The key prefix watched.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Holds off other snapshot builds while a reload runs.
    pub fn build_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.build)
    }

    /// Records the new static configuration after a successful reload.
    pub fn set_base(&self, c: Config) {
        *lock(&self.base) = Some(c);
    }

    /// Whether the last etcd call worked.
    pub fn set_etcd_up(&self, up: bool) {
        if up {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.last_sync_unix.store(now, Ordering::Relaxed);
        }
        self.etcd_up.store(up, Ordering::Relaxed);
    }

    /// Whether the last etcd call worked.
    pub fn etcd_up(&self) -> bool {
        self.etcd_up.load(Ordering::Relaxed)
    }

    /// Replaces everything with a full read. Returns whether anything changed.
    pub fn replace(&self, kvs: Vec<Kv>) -> bool {
        let raw: BTreeMap<_, _> = kvs
            .into_iter()
            .map(|kv| (kv.key, (kv.mod_revision, kv.value)))
            .collect();
        let mut i = lock(&self.inner);
        let changed = i.raw != raw;
        i.raw = raw;
        changed
    }

    /// Applies watch events. Returns whether anything changed.
    pub fn apply(&self, events: Vec<WatchEvent>) -> bool {
        let mut i = lock(&self.inner);
        let mut changed = false;
        for e in events {
            match e {
                WatchEvent::Put(kv) => {
                    changed |= i
                        .raw
                        .insert(kv.key, (kv.mod_revision, kv.value.clone()))
                        .map(|(_, v)| v != kv.value)
                        .unwrap_or(true);
                }
                WatchEvent::Delete(k) => changed |= i.raw.remove(&k).is_some(),
            }
        }
        changed
    }

    /// `base` with every valid registered member added; rejections are
    /// logged and counted once per key and reason.
    pub fn merged(&self, base: &Config) -> Config {
        let mut c = base.clone();
        let mut i = lock(&self.inner);
        let mut names: HashSet<(String, String)> = HashSet::new();
        let mut addrs: HashSet<IpAddr> = HashSet::new();
        for (pool, p) in &c.file.pools {
            for m in &p.members {
                names.insert((pool.clone(), m.name.clone()));
                addrs.extend(m.addresses.iter().copied());
            }
        }
        // Earlier registrations win an address or name clash.
        let mut order: Vec<(&String, &(i64, Vec<u8>))> = i.raw.iter().collect();
        order.sort_by_key(|(k, (rev, _))| (*rev, (*k).clone()));
        let mut accepted = Vec::new();
        let mut rejected = BTreeMap::new();
        for (key, (_, value)) in order {
            match self.check(key, value, &c, &names, &addrs) {
                Ok((pool, m)) => {
                    names.insert((pool.clone(), m.name.clone()));
                    addrs.extend(m.addresses.iter().copied());
                    accepted.push((pool, m));
                }
                Err(r) => {
                    rejected.insert(key.clone(), r);
                }
            }
        }
        for (key, r) in &rejected {
            if i.rejected.get(key) != Some(r) {
                tracing::warn!(key, reason = r.reason, error = %r.message, "etcd member key rejected");
                *i.rejected_total.entry(r.reason).or_default() += 1;
            }
        }
        i.rejected = rejected;
        i.accepted = accepted.len();
        drop(i);
        for (pool, m) in accepted {
            if let Some(p) = c.file.pools.get_mut(&pool) {
                p.members.push(m);
            }
        }
        c
    }

    fn check(
        &self,
        key: &str,
        value: &[u8],
        c: &Config,
        names: &HashSet<(String, String)>,
        addrs: &HashSet<IpAddr>,
    ) -> Result<(String, MemberConfig), Rejection> {
        let rej = |reason, message: String| Rejection { reason, message };
        let rest = key.strip_prefix(&self.prefix).unwrap_or(key);
        let Some((pool, name)) = rest.split_once('/') else {
            return Err(rej("key", format!("expected {}<pool>/<name>", self.prefix)));
        };
        if !is_label(name) {
            return Err(rej("name", format!("{name:?} is not a DNS label")));
        }
        if !c.file.pools.contains_key(pool) {
            return Err(rej("pool", format!("unknown pool {pool:?}")));
        }
        let r: Registration = serde_json::from_slice(value)
            .map_err(|e| rej("json", format!("not a member registration: {e}")))?;
        if !c.file.regions.contains_key(&r.region) {
            return Err(rej("region", format!("unknown region {:?}", r.region)));
        }
        if names.contains(&(pool.to_string(), name.to_string())) {
            return Err(rej("name", format!("member {pool}/{name} already exists")));
        }
        if r.addresses.is_empty() {
            return Err(rej("address", "no addresses".into()));
        }
        let mut own = HashSet::new();
        for a in &r.addresses {
            if addrs.contains(a) || !own.insert(*a) {
                return Err(rej("address", format!("duplicate address {a}")));
            }
            if a.is_unspecified() || a.is_multicast() {
                return Err(rej("address", format!("{a} cannot be handed out")));
            }
        }
        if r.weight == 0 || r.weight > 65535 {
            return Err(rej(
                "weight",
                format!("weight {} not in 1..=65535", r.weight),
            ));
        }
        if let Some(u) = &r.health_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(rej("health_url", format!("{u:?} is not an http(s) URL")));
            }
        }
        Ok((
            pool.to_string(),
            MemberConfig {
                name: name.to_string(),
                region: r.region,
                addresses: r.addresses,
                weight: r.weight,
                backup: false,
                health_url: r.health_url,
                registered: true,
            },
        ))
    }

    /// Publishes the serving snapshot with the current registered members:
    /// zone data, GeoIP, placement classes and file stamps are shared with
    /// the snapshot being served (nothing is read from disk, so an edited but
    /// unreloaded zone file stays unpublished and no file watch fires).
    pub fn publish(&self, shared: &Shared, hub: &Arc<HealthHub>) {
        let _g = self.build_lock();
        let Some(base) = lock(&self.base).clone() else {
            return;
        };
        let config = self.merged(&base);
        let old = shared.state.load_full();
        match old.with_members(config) {
            Ok(st) => {
                hub.install(Arc::new(st));
                self.changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    registered = lock(&self.inner).accepted,
                    "membership changed; new snapshot published"
                );
            }
            Err(e) => {
                tracing::error!(errors = %e, "membership change not published; previous snapshot keeps serving")
            }
        }
    }

    /// Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        let i = lock(&self.inner);
        let _ = writeln!(out, "# HELP geosteer_membership_etcd_up Whether the last etcd call worked (0: serving the last membership seen).\n# TYPE geosteer_membership_etcd_up gauge\ngeosteer_membership_etcd_up {}", self.etcd_up.load(Ordering::Relaxed) as u8);
        let _ = writeln!(out, "# HELP geosteer_membership_last_sync_seconds When etcd last answered (unix time).\n# TYPE geosteer_membership_last_sync_seconds gauge\ngeosteer_membership_last_sync_seconds {}", self.last_sync_unix.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP geosteer_membership_registered Registered members accepted.\n# TYPE geosteer_membership_registered gauge\ngeosteer_membership_registered {}", i.accepted);
        let _ = writeln!(out, "# HELP geosteer_membership_invalid Registered keys currently rejected.\n# TYPE geosteer_membership_invalid gauge\ngeosteer_membership_invalid {}", i.rejected.len());
        let _ = writeln!(out, "# HELP geosteer_membership_changes_total Snapshots published for membership changes.\n# TYPE geosteer_membership_changes_total counter\ngeosteer_membership_changes_total {}", self.changes.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP geosteer_membership_rejected_total etcd member keys rejected, by reason.\n# TYPE geosteer_membership_rejected_total counter");
        for (reason, n) in &i.rejected_total {
            let _ = writeln!(
                out,
                "geosteer_membership_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[geoip]
database = "db.mmdb"
[membership]
endpoints = ["http://127.0.0.1:2379"]
deployment = "t"
[regions.eu]
latitude = 50.1
longitude = 8.7
[pools.turn]
members = [{ name = "a", region = "eu", addresses = ["192.0.2.1"] }]
[[zones]]
origin = "example.com"
file = "example.com.zone"
[[zones.steered]]
name = "turn"
pool = "turn"
"#;

    fn kv(key: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: format!("/geosteer/t/members/{key}"),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
        }
    }

    #[test]
    fn bad_keys_are_rejected_one_by_one_and_good_ones_kept() {
        let base = Config::from_str(BASE, std::path::Path::new("/g.toml")).unwrap();
        let m = Members::new("t", base.clone());
        let good =
            r#"{"region":"eu","addresses":["192.0.2.10"],"health_url":"http://192.0.2.10/health"}"#;
        assert!(m.replace(vec![
            kv("turn/b", good, 1),
            kv("turn/c", "{oops", 2),
            kv(
                "turn/d",
                r#"{"region":"mars","addresses":["192.0.2.11"]}"#,
                3
            ),
            kv("turn/e", r#"{"region":"eu","addresses":["192.0.2.10"]}"#, 4),
            kv("turn/a", r#"{"region":"eu","addresses":["192.0.2.12"]}"#, 5),
            kv("other/f", good, 6),
            kv(
                "turn/g",
                r#"{"region":"eu","addresses":["192.0.2.13"],"extra":1}"#,
                7
            ),
        ]));
        let c = m.merged(&base);
        let names: Vec<&str> = c.file.pools["turn"]
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(c.file.pools["turn"].members[1].registered);
        let mut out = String::new();
        m.render_metrics(&mut out);
        for want in [
            "geosteer_membership_registered 1",
            "geosteer_membership_invalid 6",
            "reason=\"json\"} 2",
            "reason=\"region\"} 1",
            "reason=\"address\"} 1",
            "reason=\"name\"} 1",
            "reason=\"pool\"} 1",
        ] {
            assert!(out.contains(want), "{want} missing in\n{out}");
        }
        // A second merge counts nothing twice; a delete drops the member.
        m.merged(&base);
        assert!(m.apply(vec![WatchEvent::Delete(
            "/geosteer/t/members/turn/b".into()
        )]));
        // ... and frees its address for the clashing key, which is now taken.
        let c = m.merged(&base);
        let names: Vec<&str> = c.file.pools["turn"]
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["a", "e"]);
        let mut out2 = String::new();
        m.render_metrics(&mut out2);
        assert!(out2.contains("reason=\"json\"} 2"), "{out2}");
    }
}
