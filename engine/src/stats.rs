//! Counters for monitoring a database: commits, group-commit batches, log
//! syncs, checkpoints, lock waits and deadlocks, backups.
//!
//! Invariants:
//! - **Cheap.** Recording an event is one or two relaxed atomic adds on
//!   memory the event's code path already owns; nothing is allocated and no
//!   lock is taken. Readers ([`crate::Database::stats`]) get a snapshot whose
//!   fields are each exact but not read at one instant (a scrape may see a
//!   commit counted and its sync not yet).
//! - **Never read by the engine.** No decision depends on a counter, so a
//!   relaxed ordering cannot change behaviour.
//! - **Monotonic.** Every counter and histogram bucket only grows while the
//!   database is open; they start at zero at each open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the checkpoint-duration buckets.
pub const CHECKPOINT_BOUNDS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
/// Upper bounds of the group-commit batch buckets (commits covered by one sync).
pub const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A histogram with fixed buckets, recorded with relaxed atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the last for values above every bound.
    buckets: Vec<AtomicU64>,
    /// Sum of the observed values, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets, ascending.
    pub bounds: Vec<f64>,
    /// Values per bucket (not cumulative); one more than `bounds`, the last
    /// counting values above every bound.
    pub counts: Vec<u64>,
    /// Sum of the values.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// Values observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The counters a database keeps (see the module docs).
#[derive(Debug)]
pub(crate) struct Counters {
    /// Transactions committed (with at least one change).
    pub commits: AtomicU64,
    /// Checkpoint durations (gate held), seconds.
    pub checkpoints: Histogram,
    /// Backups taken.
    pub backups: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            commits: AtomicU64::new(0),
            checkpoints: Histogram::new(CHECKPOINT_BOUNDS),
            backups: AtomicU64::new(0),
        }
    }
}

impl Counters {
    pub fn checkpoint(&self, took: Duration) {
        self.checkpoints.observe(took.as_secs_f64());
    }
}

/// Lock-manager counters.
#[derive(Debug, Default)]
pub(crate) struct LockCounters {
    /// Lock requests that had to wait for another session.
    pub waits: AtomicU64,
    /// Microseconds spent waiting, in all.
    pub wait_micros: AtomicU64,
    /// Waits that ended in a timeout (or an immediate conflict).
    pub timeouts: AtomicU64,
    /// Requests refused because waiting would close a cycle.
    pub deadlocks: AtomicU64,
}

/// A database's counters at one moment ([`crate::Database::stats`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineStats {
    /// Transactions committed (with at least one change).
    pub commits: u64,
    /// Log syncs (each covers every commit written before it).
    pub log_syncs: u64,
    /// Bytes written to the log since the database was opened.
    pub log_bytes: u64,
    /// Commits covered per log sync (group commit).
    pub group_commit: HistogramSnapshot,
    /// How long each checkpoint held the commit gate, seconds.
    pub checkpoints: HistogramSnapshot,
    /// Lock requests that waited for another session.
    pub lock_waits: u64,
    /// Seconds spent waiting for locks, in all.
    pub lock_wait_seconds: f64,
    /// Lock waits that timed out (or conflicted with a zero timeout).
    pub lock_timeouts: u64,
    /// Deadlocks detected (a requester refused).
    pub deadlocks: u64,
    /// Buffer pool counters.
    pub pool: crate::page::PoolStats,
    /// Tables open now.
    pub open_tables: u64,
    /// Backups taken.
    pub backups: u64,
}
