//! Cache nodes: chosen tables of a server copied into this process's memory,
//! read with no network at all, kept current by the changes the server
//! pushes (see `raiz_server`'s change stream).
//!
//! A node holds its copy in an embedded rootpath of its own — `DIR/dbCache`
//! on disk (kept across restarts) or in memory — whose buffer pool holds the
//! whole copy. Its tables are the server's tables under local names (`t1`,
//! `t2`, …); the state table `raiz_node` records the server's epoch, the last
//! change applied and which local table holds which server table, committed
//! with the changes themselves, so a crash of the node leaves copy and
//! position in agreement.
//!
//! Invariants:
//! - **Applied in order, nothing twice, no gap.** Every stream message says
//!   where the previous one ended; a node applies it only when that is where
//!   it is, else it reconnects and catches up from its position.
//! - **A table is served only when consistent.** A table being loaded (a
//!   first load, a reload after the server rewrote or re-created it, a new
//!   epoch, a position the server's window no longer covers) is `Loading`:
//!   its reads go to the server. It is loaded by recno batches while the
//!   stream runs and the changes after the load began are applied on top;
//!   it becomes `Ready` (and gets its indexes) once the node has applied
//!   everything the server had committed when the last batch was read.
//! - **Staleness is bounded.** A ready table is read locally while the last
//!   message from the server (changes or heartbeat, every 250 ms) is younger
//!   than the node's limit (5 s by default); past it reads fail with
//!   `ErrorKind::Stale` until the server is back.
//! - **A session reads its own writes.** A session's writes through a node
//!   note the server's feed position after them; its reads of a cached table
//!   are local only once the node has applied up to there (they wait briefly,
//!   then go to the server).

mod follow;
pub(crate) mod route;
pub(crate) mod state;
pub mod stream;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use raiz_engine::storage::{FileStorage, LockAttempt, MemoryStorage, Storage, StorageLock};
use raiz_engine::{Database, LogOptions, Options};

use crate::error::{Error, Result};
use crate::url::{ConnectOptions, ConnectionString};
pub use state::Status;
pub use stream::{ChangeStream, Changes};

/// Staleness limit by default.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(5);

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The server (`raiz://user@host:port`, `raizs://…`, `raiz+unix://…`).
    pub server: ConnectionString,
    /// Password and TLS options for it.
    pub options: ConnectOptions,
    /// The tables to cache.
    pub tables: Vec<String>,
    /// Where `dbCache` lives (None: in memory only, loaded at every start).
    pub dir: Option<PathBuf>,
    /// Reads fail with `ErrorKind::Stale` once the server has been silent
    /// this long.
    pub stale_after: Duration,
    /// The copy's buffer pool: at least the size of the cached tables.
    pub pool_bytes: usize,
}

impl CacheConfig {
    /// A node of `server` caching `tables`, in memory, with the defaults.
    pub fn new(server: &str, tables: &[&str]) -> Result<CacheConfig> {
        CacheConfig::with_server(server.parse()?, tables)
    }

    /// [`CacheConfig::new`] with the server's address already parsed.
    pub fn with_server(server: ConnectionString, tables: &[&str]) -> Result<CacheConfig> {
        if matches!(
            server,
            ConnectionString::File(_) | ConnectionString::Cache { .. }
        ) {
            return Err(Error::Cache(
                "a cache node caches a server's tables: give raiz://, raizs:// or raiz+unix://"
                    .into(),
            ));
        }
        let mut names = Vec::new();
        for t in tables {
            let n = raiz_engine::validate_table_name(t)?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
        if names.is_empty() {
            return Err(Error::Cache("no table to cache".into()));
        }
        Ok(CacheConfig {
            server,
            options: ConnectOptions::default(),
            tables: names,
            dir: None,
            stale_after: DEFAULT_STALE_AFTER,
            pool_bytes: 1 << 30,
        })
    }

    /// Keeps the copy in `dir/dbCache` across restarts.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The staleness limit.
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d;
        self
    }

    /// Password and TLS options.
    pub fn options(mut self, options: ConnectOptions) -> Self {
        self.options = options;
        self
    }

    /// The copy's buffer pool in bytes.
    pub fn pool_bytes(mut self, bytes: usize) -> Self {
        self.pool_bytes = bytes;
        self
    }
}

/// A followed table now.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub row: u64,
    pub local: String,
    pub status: Status,
    /// Bumped whenever the table gets a new local copy: handles on the old
    /// one reopen.
    pub generation: u64,
    /// The table's size on the server's disk, as last loaded.
    pub disk_bytes: u64,
}

/// What a node knows, under its lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub epoch: u64,
    pub applied: u64,
    pub next_local: u64,
    /// The stream's end as the server last said.
    pub server_last: u64,
    pub tables: HashMap<String, Entry>,
    /// When the server last said anything, and its clock then.
    pub heard: Option<(Instant, u64)>,
    pub connected: bool,
    pub last_error: Option<String>,
    /// Reloads and catch-ups, with their reasons (the last 64).
    pub events: std::collections::VecDeque<String>,
}

impl State {
    pub fn event(&mut self, what: String) {
        tracing::info!(target: "raiz::cache", "{what}");
        if self.events.len() == 64 {
            self.events.pop_front();
        }
        self.events.push_back(what);
    }
}

/// Counters of a node.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub local_reads: AtomicU64,
    pub passed: AtomicU64,
    pub reloads: AtomicU64,
    pub catch_ups: AtomicU64,
    pub applied_changes: AtomicU64,
}

/// Where a read of a cached table goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// The local copy (its name and generation).
    Local(String, u64),
    /// The server.
    Server,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub config: CacheConfig,
    pub db: Database,
    pub state: Mutex<State>,
    pub changed: Condvar,
    pub stop: AtomicBool,
    pub counters: Counters,
    pub started: Instant,
    _lock: Option<Box<dyn StorageLock>>,
}

impl Node {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Where a read of `table` goes for a session that needs the node at
    /// `min_applied` (its own last write); waits up to `wait` for that.
    pub fn route(&self, table: &str, min_applied: u64, wait: Duration) -> Result<Route> {
        let deadline = Instant::now() + wait;
        let mut st = self.state();
        loop {
            let Some(e) = st.tables.get(table) else {
                return Ok(Route::Server);
            };
            if e.status != Status::Ready {
                self.counters.passed.fetch_add(1, Ordering::Relaxed);
                return Ok(Route::Server);
            }
            let silent = match st.heard {
                Some((at, _)) => at.elapsed(),
                None => self.started.elapsed(),
            };
            if st.heard.is_none() || silent > self.config.stale_after {
                return Err(Error::Stale {
                    table: table.to_owned(),
                    silent_ms: silent.as_millis() as u64,
                    limit_ms: self.config.stale_after.as_millis() as u64,
                });
            }
            if st.applied >= min_applied {
                self.counters.local_reads.fetch_add(1, Ordering::Relaxed);
                return Ok(Route::Local(e.local.clone(), e.generation));
            }
            let now = Instant::now();
            if now >= deadline {
                self.counters.passed.fetch_add(1, Ordering::Relaxed);
                return Ok(Route::Server);
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// True when `table` is one this node caches.
    pub fn caches(&self, table: &str) -> bool {
        let lower = table.to_ascii_lowercase();
        self.config.tables.contains(&lower)
    }
}

/// A cache node running in this process (see the module docs). Clones share
/// it; it stops when the last clone is dropped or [`CacheNode::stop`] is
/// called.
#[derive(Debug, Clone)]
pub struct CacheNode {
    inner: Arc<NodeHandle>,
}

#[derive(Debug)]
struct NodeHandle {
    node: Arc<Node>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.node.stop.store(true, Ordering::Relaxed);
        self.node.changed.notify_all();
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}

/// The name of the copy's directory inside a node's directory.
pub const DB_CACHE: &str = "dbCache";
/// The node's lock file, outside `dbCache` (never copied with it).
pub const NODE_LOCK: &str = "raiz-node.lock";

impl CacheNode {
    /// Starts a node: opens (or creates) its copy and follows the server on
    /// a thread of its own, loading what it lacks. Returns at once; see
    /// [`CacheNode::wait_ready`].
    pub fn start(config: CacheConfig) -> Result<CacheNode> {
        let (storage, root, lock): (Arc<dyn Storage>, PathBuf, _) = match &config.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Cache(format!("cannot create {}: {e}", dir.display())))?;
                let storage = Arc::new(FileStorage::new());
                let lock_path = dir.join(NODE_LOCK);
                let owner = format!("raiz cache node pid={}", std::process::id());
                let lock = match storage.try_lock(&lock_path, &owner) {
                    Ok(LockAttempt::Acquired { guard, .. }) => guard,
                    Ok(LockAttempt::Held { owner }) => {
                        return Err(Error::Cache(format!(
                            "{} is used by another node ({})",
                            dir.display(),
                            owner.trim()
                        )))
                    }
                    Err(e) => return Err(Error::Cache(format!("{}: {e}", lock_path.display()))),
                };
                (storage, dir.join(DB_CACHE), Some(lock))
            }
            None => (
                Arc::new(MemoryStorage::new()),
                PathBuf::from("/raiz-cache"),
                None,
            ),
        };
        let open = |storage: Arc<dyn Storage>| {
            Database::open_with(
                &root,
                Options::default()
                    .storage(storage)
                    .pool_bytes(config.pool_bytes)
                    .log(LogOptions {
                        // The copy can always be caught up again: group its
                        // syncs rather than sync every change.
                        sync_delay: Duration::from_millis(100),
                        ..LogOptions::default()
                    }),
            )
        };
        let (db, saved) = match open(storage.clone())
            .map_err(Error::from)
            .and_then(|db| state::load(&db).map(|s| (db, s)))
        {
            Ok(x) => x,
            Err(e) if config.dir.is_some() => {
                tracing::warn!(target: "raiz::cache", error = %e, "the cache's copy cannot be used: discarded, reloading");
                discard_copy(&root)?;
                let db = open(storage)?;
                let saved = state::load(&db)?;
                (db, saved)
            }
            Err(e) => return Err(e),
        };
        let node = Arc::new(Node {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            started: Instant::now(),
            db,
            config,
            _lock: lock,
        });
        follow::restore(&node, saved)?;
        let n = node.clone();
        let thread = std::thread::Builder::new()
            .name("raiz-cache".into())
            .spawn(move || follow::run(n))
            .map_err(|e| Error::Cache(format!("cannot start the node's thread: {e}")))?;
        Ok(CacheNode {
            inner: Arc::new(NodeHandle {
                node,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// The node of this process for `config` — the one already running for
    /// the same server, tables and directory, or a new one — waiting up to
    /// the staleness limit for it to be ready (a node that is not ready yet
    /// sends reads to the server). What `raiz+cache://` connections use, so
    /// the sessions of a process share one copy.
    pub fn shared(config: CacheConfig) -> Result<CacheNode> {
        use std::sync::{OnceLock, Weak};
        static NODES: OnceLock<Mutex<HashMap<String, Weak<NodeHandle>>>> = OnceLock::new();
        let key = format!("{}|{:?}|{:?}", config.server, config.tables, config.dir);
        let nodes = NODES.get_or_init(Default::default);
        let mut map = nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(inner) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(CacheNode { inner });
        }
        let wait = config.stale_after;
        let node = CacheNode::start(config)?;
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&node.inner));
        drop(map);
        if let Err(e) = node.wait_ready(wait) {
            tracing::warn!(target: "raiz::cache", error = %e, "the cache node is not ready yet: reads go to the server meanwhile");
        }
        Ok(node)
    }

    /// Waits until every cached table is ready (or absent on the server) and
    /// the node has applied what the server had committed when it last said.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let node = self.node();
        let deadline = Instant::now() + timeout;
        let mut st = node.state();
        loop {
            let ready = st.heard.is_some()
                && st.tables.len() == node.config.tables.len()
                && st.tables.values().all(|e| e.status != Status::Loading)
                && st.applied >= st.server_last;
            if ready {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Cache(format!(
                    "not ready after {} ms{}",
                    timeout.as_millis(),
                    st.last_error
                        .as_ref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                )));
            }
            st = node
                .changed
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the node has applied the server's change `seq`.
    pub fn wait_applied(&self, seq: u64, timeout: Duration) -> bool {
        let node = self.node();
        let deadline = Instant::now() + timeout;
        let mut st = node.state();
        while st.applied < seq {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = node
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// A connection whose sessions read the cached tables from this node and
    /// everything else — writes, locks, transactions, other tables — from
    /// the server.
    pub fn connection(&self) -> crate::Connection {
        crate::Connection::cached(self.clone())
    }

    /// How the node was set up.
    pub fn config(&self) -> &CacheConfig {
        &self.node().config
    }

    /// True when this node caches `table`.
    pub fn caches(&self, table: &str) -> bool {
        self.node().caches(table)
    }

    /// The node's copy: an embedded rootpath whose tables are the cached
    /// ones under local names (see [`CacheNode::serving`]).
    pub fn copy(&self) -> &Database {
        &self.node().db
    }

    /// Where a read of `table` goes for a reader that needs the node to have
    /// applied `min_applied` (its own last write; it waits up to 100 ms for
    /// that): `Some((local table, generation))` when the copy serves it,
    /// None when the server must. Fails with [`Error::Stale`] when the copy
    /// is ready but the server has been silent too long. For front-ends that
    /// serve bound clients from the copy.
    pub fn serving(&self, table: &str, min_applied: u64) -> Result<Option<(String, u64)>> {
        let lower = table.to_ascii_lowercase();
        Ok(
            match self
                .node()
                .route(&lower, min_applied, Duration::from_millis(100))?
            {
                Route::Local(local, generation) => Some((local, generation)),
                Route::Server => None,
            },
        )
    }

    /// What the node is doing.
    pub fn status(&self) -> CacheStatus {
        follow::status(self.node())
    }

    /// Stops following the server (reads then turn stale).
    pub fn stop(self) {
        drop(self);
    }

    /// Throws away the copy kept in `dir` (after a failover to a server whose
    /// data is behind what the node cached): the next start loads afresh.
    /// Refused while a node runs there.
    pub fn discard(dir: &Path) -> Result<()> {
        let storage = FileStorage::new();
        let lock_path = dir.join(NODE_LOCK);
        let _guard = match storage.try_lock(&lock_path, "raiz cache discard") {
            Ok(LockAttempt::Acquired { guard, .. }) => guard,
            Ok(LockAttempt::Held { owner }) => {
                return Err(Error::Cache(format!(
                    "{} is used by a running node ({}); stop it first",
                    dir.display(),
                    owner.trim()
                )))
            }
            Err(e) => return Err(Error::Cache(format!("{}: {e}", lock_path.display()))),
        };
        discard_copy(&dir.join(DB_CACHE))
    }
}

fn discard_copy(root: &Path) -> Result<()> {
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Cache(format!(
            "cannot remove {}: {e}",
            root.display()
        ))),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node's state as `raiz cache status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheStatus {
    /// The server.
    pub server: String,
    /// Connected to it now.
    pub connected: bool,
    /// The server's epoch (hex).
    pub epoch: String,
    /// The last change applied.
    pub applied: u64,
    /// The server's last change, as last heard.
    pub server_last: u64,
    /// Changes behind.
    pub lag_changes: u64,
    /// How old the server's last message was when it arrived (its clock
    /// against ours, ms).
    pub lag_ms: u64,
    /// Since the server last said anything, ms (None: never).
    pub silent_ms: Option<u64>,
    /// Reads served from the copy.
    pub local_reads: u64,
    /// Reads passed to the server.
    pub passed_reads: u64,
    /// Tables loaded (first loads and reloads).
    pub reloads: u64,
    /// Times the node caught up from its position.
    pub catch_ups: u64,
    /// Record changes applied.
    pub applied_changes: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Recent reloads and catch-ups, with their reasons.
    pub events: Vec<String>,
    /// The cached tables.
    pub tables: Vec<CachedTableStatus>,
}

/// One cached table in [`CacheStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedTableStatus {
    /// The server's name.
    pub name: String,
    /// ready, loading or absent.
    pub status: String,
    /// Records.
    pub rows: u64,
    /// Bytes of the copy (data, memos and indexes; all of it in memory once
    /// read).
    pub memory_bytes: u64,
    /// Bytes of the table on the server's disk, as last loaded.
    pub disk_bytes: u64,
}
