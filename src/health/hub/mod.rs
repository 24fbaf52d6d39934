//! The health hub: one prober task per member, the trackers, operator
//! overrides (persisted), and publication of [`HealthSnapshot`]s.
//!
//! Members are identified by `pool/member`, so trackers and overrides survive
//! reloads that reorder or add members.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

mod view;
mod votes;

pub use view::{LastProbe, MemberState};
pub use votes::{QuorumView, VoteIdentity};

use super::probe;
use super::quorum::{Vote, VoteBook};
use super::tracker::{ProbeResult, RelayStatus, State, Tracker, TrackerParams};
use super::{HealthSnapshot, MemberHealth};
use crate::dns::{ServeState, Shared};

/// An operator's instruction for a member or region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorAction {
    /// Stop steering new clients to it (existing sessions continue).
    Drain,
    /// Treat as down whatever the probes say.
    Down,
    /// Treat as up whatever the probes say.
    Up,
    /// Remove the override; probes decide again.
    Release,
}

/// Overrides, persisted to the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Overrides {
    #[serde(default)]
    members: BTreeMap<String, OperatorAction>,
    #[serde(default)]
    regions: BTreeMap<String, OperatorAction>,
}

/// A state change, kept for the API and status page.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Wall-clock time, seconds since the epoch.
    pub at_unix: u64,
    /// `pool/member`.
    pub member: String,
    /// What happened.
    pub change: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    ok: u64,
    failed: u64,
}

const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

struct Inner {
    /// Generation of the serving state the vectors below are indexed for.
    generation: u64,
    /// `pool/member` of each member, indexed like `Steering::members`.
    keys: Vec<String>,
    /// Registered through etcd (not in the configuration).
    registered: Vec<bool>,
    pools: Vec<u16>,
    regions: Vec<String>,
    probed: Vec<bool>,
    trackers: HashMap<String, Tracker>,
    counters: HashMap<String, Counters>,
    overrides: Overrides,
    published: Vec<MemberHealth>,
    epoch: u64,
    pool_epochs: Vec<u64>,
    events: VecDeque<Event>,
    latency: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum: f64,
    /// With `[membership]`: the other DNS nodes' votes and the link to etcd.
    quorum: Option<votes::Quorum>,
    /// When each member's own verdict last formed (unix ms).
    verdict_at: HashMap<String, u64>,
}

/// Runs probes and publishes health to a [`Shared`] DNS pipeline.
pub struct HealthHub {
    shared: Arc<Shared>,
    inner: Mutex<Inner>,
    state_file: Option<PathBuf>,
    /// One prober per member, by `pool/member`, with what it probes.
    tasks: Mutex<HashMap<String, (ProbeSpec, JoinHandle<()>)>>,
    client: reqwest::Client,
    /// This node's own verdicts, for the vote publisher.
    verdicts: tokio::sync::watch::Sender<BTreeMap<String, Vote>>,
}

/// What one member's prober does; a prober whose spec is unchanged by a
/// reload or membership change keeps running.
#[derive(Debug, Clone, PartialEq)]
struct ProbeSpec {
    url: Option<String>,
    stun: Option<SocketAddr>,
    interval: Duration,
    timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HealthHub {
    /// Creates the hub for the state currently published on `shared`,
    /// loading persisted overrides, and starts probing. Must run inside a
    /// tokio runtime.
    pub fn start(shared: Arc<Shared>) -> Result<Arc<HealthHub>, String> {
        let st = shared.state.load_full();
        let c = &st.config;
        let state_file = c.file.api.state_file.as_ref().map(|p| c.resolve(p));
        let overrides = match &state_file {
            Some(p) if p.exists() => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not a geosteer state file: {e}", p.display()))?
            }
            _ => Overrides::default(),
        };
        let client = probe::http_client(c.file.health.tls_insecure)?;
        let quorum = match &c.file.membership {
            Some(m) => {
                let prefix = geosteer_etcd::votes_prefix(&m.etcd.deployment);
                let node = m.node()?;
                Some(votes::Quorum {
                    book: VoteBook::new(&prefix, &node),
                    node,
                    prefix,
                    vote_ttl_secs: m.vote_ttl_secs,
                    rule: m.down_quorum,
                    lease_ok: false,
                    watch_ok: false,
                    overruled: HashSet::new(),
                    disagreements_total: 0,
                    unlinked_total: 0,
                })
            }
            None => None,
        };
        let hub = Arc::new(HealthHub {
            shared,
            inner: Mutex::new(Inner {
                generation: 0,
                keys: Vec::new(),
                registered: Vec::new(),
                pools: Vec::new(),
                regions: Vec::new(),
                probed: Vec::new(),
                trackers: HashMap::new(),
                counters: HashMap::new(),
                overrides,
                published: Vec::new(),
                epoch: 1,
                pool_epochs: Vec::new(),
                events: VecDeque::new(),
                latency: [0; LATENCY_BUCKETS.len() + 1],
                latency_sum: 0.0,
                quorum,
                verdict_at: HashMap::new(),
            }),
            state_file,
            tasks: Mutex::new(HashMap::new()),
            client,
            verdicts: tokio::sync::watch::channel(BTreeMap::new()).0,
        });
        hub.install(st);
        Ok(hub)
    }

    /// Publishes `st` (a reload or a membership change) together with the
    /// health of its members, keeping the trackers and overrides of members
    /// that remain; probers start for new members and stop for removed ones,
    /// the others keep running undisturbed.
    pub fn install(self: &Arc<Self>, st: Arc<ServeState>) {
        let now = Instant::now();
        {
            let mut i = lock(&self.inner);
            i.generation = st.generation;
            i.keys = st
                .steering
                .members
                .iter()
                .map(|m| format!("{}/{}", st.steering.pools[m.pool as usize].name, m.name))
                .collect();
            i.pools = st.steering.members.iter().map(|m| m.pool).collect();
            i.registered = st.steering.members.iter().map(|m| m.registered).collect();
            i.regions = st
                .steering
                .members
                .iter()
                .map(|m| st.steering.regions[m.region as usize].name.clone())
                .collect();
            i.pool_epochs.resize(st.steering.pools.len(), 1);
            let mut trackers = HashMap::new();
            for (idx, m) in st.steering.members.iter().enumerate() {
                let key = i.keys[idx].clone();
                let mut p = params(&st, m.pool);
                if m.registered {
                    // Registration is not liveness: probed up before answered.
                    p.initial = crate::config::InitialState::Down;
                }
                let t = i
                    .trackers
                    .remove(&key)
                    .unwrap_or_else(|| Tracker::new(p, now));
                trackers.insert(key, t);
            }
            i.trackers = trackers;
            i.probed = st
                .steering
                .members
                .iter()
                .map(|m| m.health_url.is_none() && !probe_stun(&st, m.pool))
                .collect();
            let Inner { quorum, keys, .. } = &mut *i;
            if let Some(q) = quorum.as_mut() {
                if let Some(m) = &st.config.file.membership {
                    q.rule = m.down_quorum;
                }
                q.overruled.retain(|k| keys.contains(k));
            }
            i.published.clear();
            self.send_verdicts(&i);
            let snap = next_snapshot(&mut i, true).expect("forced");
            // Under the lock: no health of another generation interleaves.
            self.shared.publish_state(st.clone(), snap);
        }
        self.reconcile_probers(&st);
    }

    fn reconcile_probers(self: &Arc<Self>, st: &ServeState) {
        let h = &st.config.file.health;
        let keys = lock(&self.inner).keys.clone();
        let mut tasks = lock(&self.tasks);
        let mut keep = HashMap::new();
        for (idx, m) in st.steering.members.iter().enumerate() {
            let pool = &st.config.file.pools[&st.steering.pools[m.pool as usize].name].health;
            let interval = Duration::from_millis(pool.interval_ms.unwrap_or(h.interval_ms));
            let timeout =
                Duration::from_millis(pool.timeout_ms.unwrap_or(h.timeout_ms)).min(interval);
            let stun = probe_stun(st, m.pool)
                .then(|| {
                    m.v4.first()
                        .map(|a| SocketAddr::from((*a, h.stun_port)))
                        .or_else(|| m.v6.first().map(|a| SocketAddr::from((*a, h.stun_port))))
                })
                .flatten();
            if m.health_url.is_none() && stun.is_none() {
                continue;
            }
            let spec = ProbeSpec {
                url: m.health_url.clone(),
                stun,
                interval,
                timeout,
            };
            let key = &keys[idx];
            match tasks.remove(key) {
                Some((old, task)) if old == spec && !task.is_finished() => {
                    keep.insert(key.clone(), (old, task));
                }
                other => {
                    if let Some((_, task)) = other {
                        task.abort();
                    }
                    let task = self.spawn_prober(key.clone(), spec.clone());
                    keep.insert(key.clone(), (spec, task));
                }
            }
        }
        for (_, (_, task)) in tasks.drain() {
            task.abort();
        }
        *tasks = keep;
    }

    fn spawn_prober(self: &Arc<Self>, key: String, spec: ProbeSpec) -> JoinHandle<()> {
        let hub = Arc::downgrade(self);
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(spec.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut r = match &spec.url {
                    Some(u) => probe::http(&client, u, spec.timeout).await,
                    None => ProbeResult {
                        ok: true,
                        status: RelayStatus::Ok,
                        utilization: None,
                        latency: Duration::ZERO,
                        error: None,
                    },
                };
                if let (true, Some(addr)) = (r.ok, spec.stun) {
                    if let Err(e) = probe::stun(addr, spec.timeout).await {
                        r.ok = false;
                        r.error = Some(e);
                    }
                }
                let Some(hub) = hub.upgrade() else { return };
                hub.report(&key, r);
            }
        })
    }

    /// Feeds one probe result for `key` and publishes if anything changed.
    pub fn report(&self, key: &str, r: ProbeResult) {
        let now = Instant::now();
        let changed = {
            let mut i = lock(&self.inner);
            let secs = r.latency.as_secs_f64();
            let b = LATENCY_BUCKETS
                .iter()
                .position(|&x| secs <= x)
                .unwrap_or(LATENCY_BUCKETS.len());
            i.latency[b] += 1;
            i.latency_sum += secs;
            let c = i.counters.entry(key.to_string()).or_default();
            if r.ok {
                c.ok += 1
            } else {
                c.failed += 1
            }
            if let Some(idx) = i.keys.iter().position(|k| k == key) {
                i.probed[idx] = true;
            }
            let err = r.error.clone();
            let Some(t) = i.trackers.get_mut(key) else {
                return;
            };
            let first = !t.probed();
            let flipped = t.observe(r, now);
            if flipped || first {
                i.verdict_at.insert(key.to_string(), votes::now_unix_ms());
                self.send_verdicts(&i);
            }
            if flipped {
                let t = &i.trackers[key];
                let state = t.state();
                let change = match (state, err) {
                    (State::Down, Some(e)) => format!("down: {e}"),
                    (s, _) => format!("{s:?}").to_lowercase(),
                };
                push_event(&mut i, key, change);
                tracing::info!(member = key, state = ?state, "member state changed");
            }
            true
        };
        if changed {
            self.publish();
        }
    }

    /// Applies an operator action to a member (`pool/member`) or a region.
    pub fn apply(&self, target: Target<'_>, action: OperatorAction) -> Result<(), String> {
        {
            let mut i = lock(&self.inner);
            let (map, key, known) = match target {
                Target::Member(k) => {
                    let known = i.keys.iter().any(|x| x == k);
                    (&mut i.overrides.members, k.to_string(), known)
                }
                Target::Region(r) => {
                    let known = i.regions.iter().any(|x| x == r);
                    (&mut i.overrides.regions, r.to_string(), known)
                }
            };
            if !known {
                return Err(format!(
                    "no such {}: {key}",
                    match target {
                        Target::Member(_) => "member",
                        Target::Region(_) => "region",
                    }
                ));
            }
            match action {
                OperatorAction::Release => map.remove(&key),
                a => map.insert(key.clone(), a),
            };
            let what = format!("operator {}", format!("{action:?}").to_lowercase());
            push_event(&mut i, &key, what);
            self.persist(&i.overrides)?;
        }
        self.publish();
        Ok(())
    }

    fn persist(&self, o: &Overrides) -> Result<(), String> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(o).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Recomputes every member's effective health and publishes a snapshot
    /// when it differs from the last one.
    fn publish(&self) {
        let mut i = lock(&self.inner);
        if let Some(snap) = next_snapshot(&mut i, false) {
            self.shared.publish_health(snap);
        }
    }

    /// Waits until every probed member has a first result, at most `max`.
    pub async fn wait_first_round(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            if lock(&self.inner).probed.iter().all(|&p| p) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for HealthHub {
    fn drop(&mut self) {
        for (_, (_, task)) in lock(&self.tasks).drain() {
            task.abort();
        }
    }
}

/// The snapshot to publish when any member's effective health changed since
/// the last one, or when `force`d (a new serving state needs its own).
fn next_snapshot(i: &mut Inner, force: bool) -> Option<HealthSnapshot> {
    let ups: Vec<bool> = (0..i.keys.len()).map(|idx| votes::up(i, idx)).collect();
    let now: Vec<MemberHealth> = (0..i.keys.len())
        .map(|idx| effective(i, idx, ups[idx]))
        .collect();
    note_overruled(i, &ups);
    if now == i.published && !force {
        return None;
    }
    let changed_pools: Vec<u16> = (0..now.len())
        .filter(|&x| i.published.get(x) != Some(&now[x]))
        .map(|x| i.pools[x])
        .collect();
    i.epoch += 1;
    let epoch = i.epoch;
    for p in changed_pools {
        if let Some(e) = i.pool_epochs.get_mut(p as usize) {
            *e = epoch;
        }
    }
    i.published = now.clone();
    Some(HealthSnapshot {
        epoch,
        generation: i.generation,
        members: now,
        pool_epochs: i.pool_epochs.clone(),
    })
}

/// What an operator action applies to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// `pool/member`.
    Member(&'a str),
    /// A region name (all its members in every pool).
    Region(&'a str),
}

fn params(st: &ServeState, pool: u16) -> TrackerParams {
    let h = &st.config.file.health;
    let p = &st.config.file.pools[&st.steering.pools[pool as usize].name].health;
    TrackerParams {
        rise: p.rise.unwrap_or(h.rise),
        fall: p.fall.unwrap_or(h.fall),
        initial: h.initial,
        low_watermark: h.low_watermark,
        high_watermark: h.high_watermark,
        flap_threshold: h.flap_threshold,
        flap_window: Duration::from_secs(h.flap_window_secs),
        holddown: Duration::from_millis(h.holddown_ms),
        max_holddown: Duration::from_millis(h.max_holddown_ms),
    }
}

fn probe_stun(st: &ServeState, pool: u16) -> bool {
    let p = &st.config.file.pools[&st.steering.pools[pool as usize].name].health;
    p.stun.unwrap_or(st.config.file.health.stun)
}

fn override_of(i: &Inner, idx: usize) -> Option<OperatorAction> {
    i.overrides
        .members
        .get(&i.keys[idx])
        .or_else(|| i.overrides.regions.get(&i.regions[idx]))
        .copied()
}

/// The health steering sees for member `idx`, given whether it is up
/// ([`votes::up`]).
fn effective(i: &Inner, idx: usize, up: bool) -> MemberHealth {
    let t = &i.trackers[&i.keys[idx]];
    let fail_open = !i.registered[idx] || t.ever_up() || up;
    match override_of(i, idx) {
        Some(OperatorAction::Drain) | Some(OperatorAction::Down) => MemberHealth {
            usable: false,
            shed: 0.0,
            fail_open,
        },
        Some(OperatorAction::Up) => MemberHealth::UP,
        _ => {
            let usable = up && t.status() != RelayStatus::Draining;
            MemberHealth {
                usable,
                // Load comes from this node's probes; none when they fail.
                shed: if usable && t.state() == State::Up {
                    t.shed()
                } else {
                    0.0
                },
                fail_open,
            }
        }
    }
}

/// Tracks where the quorum decision (`ups`) differs from this node's own
/// verdict: an event and a count each time a member starts to differ.
fn note_overruled(i: &mut Inner, ups: &[bool]) {
    let Some(q) = i.quorum.as_mut() else { return };
    let mut started = Vec::new();
    for (key, &up) in i.keys.iter().zip(ups) {
        if (i.trackers[key].state() == State::Up) == up {
            q.overruled.remove(key);
        } else if q.overruled.insert(key.clone()) {
            q.disagreements_total += 1;
            started.push((key.clone(), up));
        }
    }
    for (key, up) in started {
        let what = if up {
            "quorum: up (this node's probes say down; the other nodes' votes keep it)"
        } else {
            "quorum: down (this node's probes say up; the other nodes' votes take it out)"
        };
        tracing::info!(member = key, "{what}");
        push_event(i, &key, what.to_string());
    }
}

fn push_event(i: &mut Inner, member: &str, change: String) {
    if i.events.len() >= 100 {
        i.events.pop_front();
    }
    i.events.push_back(Event {
        at_unix: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        member: member.to_string(),
        change,
    });
}
