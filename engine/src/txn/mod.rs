//! Transactions and locks: what sessions share across the tables of a database.
//!
//! A transaction collects its changes ([`Change`]) without touching the tables;
//! [`commit::commit`] applies them all at once, under the tables' write locks,
//! and — for logged tables — writes the changed pages to the log before anyone
//! can write them to the table files. So other sessions only ever see committed
//! data, a rollback is forgetting the changes, and recovery only has to redo.

pub mod commit;
pub mod locks;
pub mod registry;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::log::Wal;
use crate::schema::Value;
use crate::table::TableCore;

pub use locks::{LockInfo, LockKey, LockManager};
pub(crate) use registry::{Registry, TableHandle};

/// One change of a transaction, applied at commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new record at a recno reserved when it was appended.
    Append {
        /// The reserved recno.
        recno: u64,
        /// Its values.
        values: Vec<Value>,
    },
    /// New values for a record.
    Update {
        /// The record.
        recno: u64,
        /// Its new values.
        values: Vec<Value>,
    },
    /// Logical delete (true) or recall (false).
    SetDeleted {
        /// The record.
        recno: u64,
        /// The new flag.
        deleted: bool,
    },
    /// A reserved recno whose append was rolled back: stored as a deleted blank
    /// record, so recnos stay dense and are never reused.
    Blank {
        /// The reserved recno.
        recno: u64,
    },
    /// A record as another database committed it (a cache node's copy): see
    /// [`crate::table::TableCore::put`].
    Put {
        /// The record.
        recno: u64,
        /// Its values (None: kept).
        values: Option<Vec<Value>>,
        /// Its deleted flag (None: kept).
        deleted: Option<bool>,
    },
}

impl Change {
    /// The record the change concerns.
    pub fn recno(&self) -> u64 {
        match self {
            Change::Append { recno, .. }
            | Change::Update { recno, .. }
            | Change::SetDeleted { recno, .. }
            | Change::Blank { recno }
            | Change::Put { recno, .. } => *recno,
        }
    }
}

/// Settings of the log and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A checkpoint runs once this many bytes were logged since the last one.
    pub checkpoint_bytes: u64,
    /// … or this long after the last one (checked at commits).
    pub checkpoint_interval: Duration,
    /// Delayed-durability commits are synced within this delay.
    pub sync_delay: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            checkpoint_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(300),
            sync_delay: Duration::from_secs(1),
        }
    }
}

/// What the tables of one database share: the log, the locks, the open tables.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// The write-ahead log (None for a database of temporary tables).
    pub wal: Option<Arc<Wal>>,
    /// Record, file and named locks.
    pub locks: LockManager,
    /// Commits, table opens and closes hold it shared; a checkpoint holds it
    /// exclusively.
    pub gate: RwLock<()>,
    /// The open tables (see [`registry`]).
    pub tables: Registry,
    /// Transaction ids.
    pub next_txn: AtomicU64,
    /// Log settings.
    pub log: LogOptions,
    /// When the last checkpoint ran.
    pub last_checkpoint: Mutex<std::time::Instant>,
    /// The change feed (see [`crate::feed`]).
    pub feed: Arc<crate::feed::Feed>,
    /// Changes to the set of files of the rootpath — creating, dropping or
    /// rewriting a table, creating or dropping an index — hold it shared
    /// (recursively); a backup holds it exclusively while it copies, so the
    /// files it lists stay the files the log refers to. Taken before the gate.
    pub ddl: RwLock<()>,
    /// Counters for monitoring (see [`crate::stats`]).
    pub stats: crate::stats::Counters,
    /// On a cluster member, what orders its commits (see
    /// [`crate::db::replicated`]).
    /// (Set once: every write asks for it, so it is an atomic load.)
    pub replicator: std::sync::OnceLock<Arc<dyn crate::db::replicated::Replicator>>,
}

impl Runtime {
    /// The replicator, on a cluster member.
    pub fn replicator(&self) -> Option<Arc<dyn crate::db::replicated::Replicator>> {
        self.replicator.get().cloned()
    }
}

/// An open table shared by every handle on it (see [`registry`]: one per table
/// and process, closed when its last [`TableHandle`] goes).
#[derive(Debug)]
pub(crate) struct TableShared {
    /// The table.
    pub core: RwLock<TableCore>,
    /// The table's name (never changes while open).
    pub name: String,
    /// The same name, shared by the lock keys of the table's records (a
    /// record lock then costs no allocation for the name).
    pub lock_name: Arc<str>,
    /// What the database's tables share.
    pub rt: Arc<Runtime>,
    /// Handles on the table (counted by [`TableHandle`]).
    pub handles: AtomicUsize,
    /// Keeps the database (and its owner lock) alive while the table is open;
    /// dropped when a failed close leaves the table registered (see
    /// [`registry`]), so that table does not keep the database alive.
    pub keepalive: Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>>,
}

impl TableShared {
    /// A table just opened, not yet registered.
    pub fn new(
        core: TableCore,
        rt: Arc<Runtime>,
        keepalive: Arc<dyn std::any::Any + Send + Sync>,
    ) -> TableShared {
        TableShared {
            name: core.name.clone(),
            lock_name: core.name.as_str().into(),
            core: RwLock::new(core),
            rt,
            handles: AtomicUsize::new(0),
            keepalive: Mutex::new(Some(keepalive)),
        }
    }

    /// Flushes and marks the table cleanly closed (its registry entry is held
    /// `Busy` and the gate shared by the caller). If that fails for a logged
    /// table, its files may lag the log: the log refuses writes from then on,
    /// so nothing builds on stale pages until the rootpath is reopened and
    /// recovery brings the files up to date.
    fn close_core(&self) -> crate::Result<()> {
        let mut core = self.core.write();
        let r = core.close();
        if let Err(e) = &r {
            tracing::error!(table = %core.name, error = %e, "table not closed cleanly; it will be repaired at next open");
            if core.is_logged() {
                if let Some(w) = &self.rt.wal {
                    w.poison();
                }
            }
        }
        r
    }
}

/// Writes every open table's changed pages to its files and syncs them; with a
/// log, then starts a new log segment (the older ones are no longer needed for
/// recovery).
pub(crate) fn checkpoint(rt: &Runtime) -> crate::Result<()> {
    checkpoint_then(rt, |_| ()).map(|(_, ())| ())
}

/// A checkpoint that runs `then` before it lets commits go on (under the
/// gate, the log just rotated), returning how long it held the gate and what
/// `then` gave. A backup pins the new log segment this way.
pub(crate) fn checkpoint_then<R>(
    rt: &Runtime,
    then: impl FnOnce(Option<&Arc<Wal>>) -> R,
) -> crate::Result<(Duration, R)> {
    let gate = rt.gate.write();
    let started = std::time::Instant::now();
    let r = checkpoint_locked(rt, started)?;
    let out = then(rt.wal.as_ref());
    let held = started.elapsed();
    drop(gate);
    if r {
        rt.stats.checkpoint(held);
    }
    Ok((held, out))
}

/// The checkpoint proper, under the gate held exclusively. True when a log
/// was rotated.
fn checkpoint_locked(rt: &Runtime, started: std::time::Instant) -> crate::Result<bool> {
    if let Some(wal) = &rt.wal {
        wal.flush()?;
    }
    // Plain references, not handles: a checkpoint never closes a table (the
    // gate it holds keeps every listed table open until it is done).
    let open: Vec<Arc<TableShared>> = rt.tables.open_tables();
    for t in &open {
        let mut core = t.core.write();
        if let Err(e) = core.flush() {
            if let (true, Some(wal)) = (core.is_logged(), &rt.wal) {
                // The files may lag the log now; only recovery can be trusted.
                wal.poison();
            }
            return Err(e);
        }
    }
    let Some(wal) = &rt.wal else { return Ok(false) };
    let logged = wal.since_checkpoint();
    wal.rotate()?;
    // The new log holds no page images yet: each page's next change is logged whole.
    for t in &open {
        t.core.read().forget_logged();
    }
    *rt.last_checkpoint.lock() = std::time::Instant::now();
    tracing::info!(
        log_bytes = logged,
        secs = started.elapsed().as_secs_f64(),
        "checkpoint"
    );
    Ok(true)
}

/// Runs a checkpoint when the log grew past its bound or the interval passed.
pub(crate) fn maybe_checkpoint(rt: &Runtime) -> crate::Result<()> {
    let Some(wal) = &rt.wal else { return Ok(()) };
    let due = wal.since_checkpoint() >= rt.log.checkpoint_bytes
        || (wal.since_checkpoint() > 0
            && rt.last_checkpoint.lock().elapsed() >= rt.log.checkpoint_interval);
    if due {
        checkpoint(rt)?;
    }
    Ok(())
}

/// Syncs the log of delayed-durability commits every `sync_delay`, for as long
/// as the runtime lives.
pub(crate) fn spawn_log_syncer(rt: &Arc<Runtime>) {
    let weak = Arc::downgrade(rt);
    let delay = rt.log.sync_delay;
    let spawned = std::thread::Builder::new()
        .name("raiz-log-sync".into())
        .spawn(move || loop {
            std::thread::sleep(delay);
            let Some(rt) = weak.upgrade() else { return };
            if let Some(w) = &rt.wal {
                if w.durable() < w.end() && !w.is_poisoned() {
                    if let Err(e) = w.flush() {
                        tracing::error!(error = %e, "delayed log sync failed");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the log sync thread; delayed commits sync at the next durable commit");
    }
}
