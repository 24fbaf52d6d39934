//! Drain/stop flags and per-loop reports shared by the event loops, the
//! accept stage, the HTTP handlers and the signal handlers.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::limits::locked;
use crate::stats::Stats;

/// Drain/stop flags shared by the event loops, HTTP handlers and signal
/// handlers. Each loop has an index; what the loops report (applied
/// configuration, exit, statistics) is kept per loop.
#[derive(Debug)]
pub struct Control {
    /// Set to start draining.
    pub draining: AtomicBool,
    /// Set to stop at once.
    pub stop: AtomicBool,
    /// Wakers of the event loops and the accept-stage threads.
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
    /// Loops that have exited.
    done: Mutex<usize>,
    done_cv: Condvar,
    /// Configuration generation each loop has applied.
    applied: Mutex<Vec<u64>>,
    applied_cv: Condvar,
    /// One statistics shard per loop (each written by its loop only).
    shards: Vec<Arc<Stats>>,
}

impl Control {
    pub(crate) fn new(loops: usize) -> Self {
        Self {
            draining: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
            done: Mutex::new(0),
            done_cv: Condvar::new(),
            applied: Mutex::new(vec![0; loops]),
            applied_cv: Condvar::new(),
            shards: (0..loops).map(|_| Arc::new(Stats::default())).collect(),
        }
    }

    pub(crate) fn add_waker(&self, w: Arc<mio::Waker>) {
        locked(&self.wakers).push(w);
    }

    /// Called by event loop `i` once it runs with configuration `generation`.
    pub(crate) fn applied(&self, i: usize, generation: u64) {
        let mut a = locked(&self.applied);
        if let Some(g) = a.get_mut(i) {
            *g = generation;
        }
        self.applied_cv.notify_all();
    }

    /// Waits until every event loop applied `generation` (or one exited, or `timeout`).
    pub(crate) fn wait_applied(&self, generation: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut a = locked(&self.applied);
        while a.iter().any(|g| *g < generation) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.shards.iter().any(|s| s.stopped.load(Relaxed)) {
                return false;
            }
            a = self
                .applied_cv
                .wait_timeout(a, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    pub(crate) fn wake(&self) {
        for w in locked(&self.wakers).iter() {
            let _ = w.wake();
        }
    }

    /// Starts a graceful drain (every loop).
    pub fn drain(&self) {
        self.draining.store(true, Relaxed);
        for s in &self.shards {
            s.draining.store(true, Relaxed);
        }
        self.wake();
    }

    /// Whether a drain has started (admin endpoint or signal).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Stops immediately (every loop).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.wake();
    }

    /// Loop `i`'s statistics shard.
    pub(crate) fn shard(&self, i: usize) -> &Arc<Stats> {
        &self.shards[i]
    }

    /// The relay's statistics: the sum over every loop.
    pub fn stats(&self) -> Stats {
        Stats::sum(&self.shards)
    }

    /// Active allocations of each loop, by loop index.
    pub fn loop_allocations(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.allocations.load(Relaxed))
            .collect()
    }

    pub(crate) fn heartbeat(&self, i: usize) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.shards[i].last_tick_unix.store(now, Relaxed);
    }

    /// Called by event loop `i` when it exits.
    pub(crate) fn finished(&self, i: usize) {
        self.shards[i].stopped.store(true, Relaxed);
        let mut d = locked(&self.done);
        *d += 1;
        self.done_cv.notify_all();
        let last = *d >= self.shards.len();
        drop(d);
        if last {
            // The accept stage ends with the last loop.
            self.wake();
        }
    }

    /// Whether every event loop has exited.
    pub fn is_finished(&self) -> bool {
        *locked(&self.done) >= self.shards.len()
    }

    /// Blocks until every event loop exits or `timeout` passes; returns whether they did.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut d = locked(&self.done);
        while *d < self.shards.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            d = self
                .done_cv
                .wait_timeout(d, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}
