//! The rootpath: a directory of tables owned by one process at a time, its log,
//! its sessions, and the table handle.
//!
//! Invariants:
//! - While a [`Database`] (or any table handle from it) is alive, this process
//!   holds the exclusive owner lock on `raiz.owner` in the rootpath. Another process
//!   gets [`Error::RootpathLocked`] naming the owner's pid. The lock is the kernel's
//!   (`flock`), so a crashed owner's lock is gone and the next opener takes over,
//!   logging the stale owner it replaced.
//! - Before anything else, opening replays the log (see [`recovery`]), so every
//!   table is at its last committed state when it is first opened.
//! - A table is open at most once per process: every handle on it shares one
//!   open table, found through the registry (`txn::registry`), which also
//!   serialises opens, closes, creates and drops of the same name.
//! - Every path is built from a validated table name inside the rootpath.
//! - Closing the database cleanly (dropping its last handle) checkpoints: the log
//!   is empty afterwards and the next open needs no recovery.

mod keypos;
mod names;
mod nav;
mod recno_map;
pub mod recovery;
pub mod replicated;
mod session;
mod table;
mod txn_index;
mod unique;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use names::{validate_table_name, MAX_TABLE_NAME};
pub use nav::RangeIter;
pub use recovery::RecoveryReport;
pub use replicated::{Ddl, Replicator};
pub use session::{Retry, Savepoint, Session};
pub use table::{CursorState, Filter, Table};

use crate::error::{Error, Result};
use crate::log::Wal;
use crate::page::{BufferPool, PoolStats};
use crate::schema::{Durability, Schema};
use crate::storage::{FileStorage, LockAttempt, Storage, StorageLock};
use crate::table::{is_table_file, Env, OpenReport, TableCore, TableOptions, TablePaths};
use crate::txn::{Change, LockInfo, LogOptions, Runtime, TableHandle, TableShared};

/// Name of the owner lock file in a rootpath.
pub const OWNER_FILE: &str = "raiz.owner";

/// Default buffer pool budget (64 MiB).
pub const DEFAULT_POOL_BYTES: usize = 64 << 20;

/// Prefix of the directories holding sessions' temporary tables.
pub(crate) const TEMP_PREFIX: &str = "raiz-tmp-";

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of pages the buffer pool may cache.
    pub pool_bytes: usize,
    /// Where the files live.
    pub storage: Arc<dyn Storage>,
    /// Log and checkpoint settings.
    pub log: LogOptions,
    /// A rootpath of temporary tables: no log.
    pub(crate) temporary: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pool_bytes: DEFAULT_POOL_BYTES,
            storage: Arc::new(FileStorage::new()),
            log: LogOptions::default(),
            temporary: false,
        }
    }
}

impl Options {
    /// Sets the buffer pool budget.
    pub fn pool_bytes(mut self, bytes: usize) -> Self {
        self.pool_bytes = bytes;
        self
    }

    /// Sets the storage.
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// Sets the log and checkpoint settings.
    pub fn log(mut self, log: LogOptions) -> Self {
        self.log = log;
        self
    }
}

#[derive(Debug)]
pub(crate) struct DbInner {
    root: PathBuf,
    storage: Arc<dyn Storage>,
    pool: Arc<BufferPool>,
    rt: Arc<Runtime>,
    repairs: Mutex<Vec<(String, OpenReport)>>,
    recovery: RecoveryReport,
    next_session: AtomicU64,
    _owner: Box<dyn StorageLock>,
}

impl Drop for DbInner {
    fn drop(&mut self) {
        // Every table is closed by now; an empty log means no recovery next time.
        let checkpoint = crate::txn::checkpoint(&self.rt);
        if let Err(e) = &checkpoint {
            tracing::error!(root = %self.root.display(), error = %e, "final checkpoint failed; the log will be replayed at next open");
        }
        // Tables kept after a failed close reference the runtime that
        // references them: let go of them, or the database is never freed.
        let kept = self.rt.release_kept();
        // Only a clean end keeps the epoch for the next open.
        if checkpoint.is_ok() && kept.is_ok() {
            if let Err(e) = self.rt.feed.close() {
                tracing::warn!(root = %self.root.display(), error = %e, "could not mark the change feed closed; cache nodes will reload");
            }
        }
    }
}

/// An embedded rootpath. Cloning gives another handle on the same database.
///
/// ```
/// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// db.create_table("items", &Schema::new(vec![Field::new("CODE", FieldType::Char(8))]), TableOptions::default())?;
/// assert_eq!(db.list_tables()?, vec!["items".to_string()]);
/// db.drop_table("items")?;
/// assert!(db.list_tables()?.is_empty());
/// # Ok::<(), raiz_engine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) inner: Arc<DbInner>,
}

fn owner_pid(owner: &str) -> u32 {
    owner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn owner_description() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let program = std::env::args().next().unwrap_or_default();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "pid={} host={} program={} since={since}\n",
        std::process::id(),
        host.trim(),
        program.replace(char::is_whitespace, "_")
    )
}

/// Stores a deleted blank record in every slot a crash left empty below the
/// record count (recnos reserved by transactions the crash ended), as a
/// rollback would have: a logged commit for a logged table. Runs under the
/// commit gate, before the table is registered.
fn fill_holes(rt: &Runtime, shared: &TableShared) -> Result<()> {
    let mut core = shared.core.write();
    let holes = core.unfilled()?;
    if holes.is_empty() {
        return core.mark_filled();
    }
    tracing::warn!(table = %core.name, holes = holes.len(), first = holes[0],
        "recnos reserved by transactions a crash ended; stored as deleted blank records");
    let changes: Vec<Change> = holes.iter().map(|&recno| Change::Blank { recno }).collect();
    let located: Vec<(usize, &Change)> = changes.iter().map(|c| (0, c)).collect();
    let txn = rt
        .next_txn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (recnos, logged) = crate::txn::commit::apply_locked(&mut [&mut *core], &located, txn)?;
    if rt.feed.active() {
        let lsn = logged.as_ref().map_or(0, |(_, l)| *l);
        let changes = crate::txn::commit::feed_changes(&[&*core], &located, &recnos)?;
        rt.feed.push_commit(changes, lsn);
    }
    drop(core);
    if let Some((wal, lsn)) = logged {
        wal.flush_to(lsn)?;
    }
    Ok(())
}

/// Removes temporary-table directories whose session's process is gone (their
/// owner lock can be taken).
fn clean_stale_temp_dirs(storage: &Arc<dyn Storage>) {
    let tmp = std::env::temp_dir();
    let Ok(dirs) = storage.list_dirs(&tmp) else {
        return;
    };
    let mine = format!("{TEMP_PREFIX}{}-", std::process::id());
    // This process's own sessions are alive by definition (and may be creating
    // their directory right now, before taking its lock).
    for d in dirs
        .iter()
        .filter(|d| d.starts_with(TEMP_PREFIX) && !d.starts_with(&mine))
    {
        let dir = tmp.join(d);
        if let Ok(LockAttempt::Acquired { guard, .. }) =
            storage.try_lock(&dir.join(OWNER_FILE), "cleanup")
        {
            drop(guard);
            match storage.remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "removed temporary tables left by a crashed session")
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove stale temporary tables")
                }
            }
        }
    }
}

impl Database {
    /// Opens (creating if needed) the rootpath at `root` on the real file system.
    pub fn open(root: impl AsRef<Path>) -> Result<Database> {
        Database::open_with(root, Options::default())
    }

    /// Opens (creating if needed) the rootpath at `root` with `options`,
    /// replaying its log first.
    pub fn open_with(root: impl AsRef<Path>, options: Options) -> Result<Database> {
        let root = root.as_ref();
        let storage = options.storage;
        storage
            .create_dir_all(root)
            .map_err(|e| Error::io(root, e))?;
        let root = storage.canonicalize(root).map_err(|e| Error::io(root, e))?;
        // The rootpath's entry in its parent (it may have just been created).
        // Best effort: a parent the process may not sync held the rootpath
        // long before this open.
        if let Some(parent) = root.parent() {
            if let Err(e) = storage.sync_dir(parent) {
                tracing::warn!(dir = %parent.display(), error = %e, "could not sync the rootpath's parent directory");
            }
        }
        let lock_path = root.join(OWNER_FILE);
        let owner = match storage
            .try_lock(&lock_path, &owner_description())
            .map_err(|e| Error::io(&lock_path, e))?
        {
            LockAttempt::Held { owner } => {
                return Err(Error::RootpathLocked {
                    path: root,
                    pid: owner_pid(&owner),
                    owner: owner.trim().to_owned(),
                })
            }
            LockAttempt::Acquired { guard, previous } => {
                if let Some(prev) = previous {
                    tracing::warn!(root = %root.display(), previous = %prev.trim(), pid = owner_pid(&prev),
                        "the previous owner of this rootpath did not close it (crashed?); taking over");
                }
                guard
            }
        };
        // A create interrupted by a crash leaves a `.rzd.new`; it never became a table.
        for name in storage.list(&root).map_err(|e| Error::io(&root, e))? {
            if name.ends_with(".rzd.new") {
                tracing::info!(file = %name, "removing an unfinished table create or rewrite");
                let _ = storage.remove(&root.join(&name));
            }
        }
        let (wal, recovery) = if options.temporary {
            (None, RecoveryReport::default())
        } else {
            clean_stale_temp_dirs(&storage);
            let report = recovery::recover(&storage, &root)?;
            let wal = Wal::open(storage.clone(), &root, report.last_segment)?;
            (Some(Arc::new(wal)), report)
        };
        let feed = match &wal {
            Some(w) => crate::feed::Feed::open(storage.clone(), &root, Some(w.clone()))?,
            None => crate::feed::Feed::none(),
        };
        let rt = Arc::new(Runtime {
            feed: Arc::new(feed),
            wal,
            locks: Default::default(),
            gate: RwLock::new(()),
            tables: Default::default(),
            next_txn: AtomicU64::new(1),
            log: options.log,
            last_checkpoint: Mutex::new(std::time::Instant::now()),
            ddl: RwLock::new(()),
            stats: Default::default(),
            replicator: std::sync::OnceLock::new(),
        });
        if rt.wal.is_some() {
            crate::txn::spawn_log_syncer(&rt);
        }
        Ok(Database {
            inner: Arc::new(DbInner {
                root,
                storage,
                pool: BufferPool::new(options.pool_bytes),
                rt,
                repairs: Mutex::new(Vec::new()),
                recovery,
                next_session: AtomicU64::new(1),
                _owner: owner,
            }),
        })
    }

    pub(crate) fn env(&self) -> Env {
        Env {
            storage: self.inner.storage.clone(),
            pool: self.inner.pool.clone(),
            root: self.inner.root.clone(),
            wal: self.inner.rt.wal.clone(),
        }
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.inner
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.rt
    }

    /// The storage the database's files are read and written through.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// The change feed of this rootpath: commits to watched tables, numbered
    /// in commit order (see [`crate::feed`]).
    pub fn feed(&self) -> &Arc<crate::feed::Feed> {
        &self.inner.rt.feed
    }

    /// The rootpath (absolute).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// A new session.
    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }

    /// The buffer pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Repairs made when tables were opened, oldest first.
    pub fn repairs(&self) -> Vec<(String, OpenReport)> {
        self.inner.repairs.lock().clone()
    }

    /// What replaying the log did when this database was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Locks held now by every session.
    pub fn locks(&self) -> Vec<LockInfo> {
        self.inner.rt.locks.list()
    }

    /// Log syncs done so far (concurrent commits share one).
    pub fn log_syncs(&self) -> u64 {
        self.inner.rt.wal.as_ref().map_or(0, |w| w.syncs())
    }

    /// The log's end position (LSN). The difference between two readings is
    /// what the commits in between wrote to the log, frames and padding.
    pub fn log_end(&self) -> u64 {
        self.inner.rt.wal.as_ref().map_or(0, |w| w.end())
    }

    /// The database's counters for monitoring (see [`crate::stats`]).
    pub fn stats(&self) -> crate::stats::EngineStats {
        use std::sync::atomic::Ordering::Relaxed;
        let rt = &self.inner.rt;
        let locks = &rt.locks.stats;
        crate::stats::EngineStats {
            commits: rt.stats.commits.load(Relaxed),
            log_syncs: self.log_syncs(),
            log_bytes: self.log_end(),
            group_commit: rt.wal.as_ref().map(|w| w.batches()).unwrap_or_default(),
            checkpoints: rt.stats.checkpoints.snapshot(),
            lock_waits: locks.waits.load(Relaxed),
            lock_wait_seconds: locks.wait_micros.load(Relaxed) as f64 / 1e6,
            lock_timeouts: locks.timeouts.load(Relaxed),
            deadlocks: locks.deadlocks.load(Relaxed),
            pool: self.pool_stats(),
            open_tables: rt.tables.open_tables().len() as u64,
            backups: rt.stats.backups.load(Relaxed),
        }
    }

    /// Writes every changed page of every table to its files and starts a new
    /// log segment, so a crash now would need no replay.
    pub fn checkpoint(&self) -> Result<()> {
        crate::txn::checkpoint(&self.inner.rt)
    }

    /// Names of the tables in the rootpath, sorted.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        let root = &self.inner.root;
        let names = self
            .inner
            .storage
            .list(root)
            .map_err(|e| Error::io(root, e))?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_suffix(".rzd"))
            .filter(|n| validate_table_name(n).is_ok())
            .map(str::to_owned)
            .collect())
    }

    /// True when table `name` exists.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        let name = validate_table_name(name)?;
        let path = TablePaths::new(&self.inner.root, &name).data;
        self.inner
            .storage
            .exists(&path)
            .map_err(|e| Error::io(&path, e))
    }

    /// Creates table `name`. Temporary tables belong to a session: create them
    /// with [`Session::create_table`].
    pub fn create_table(&self, name: &str, schema: &Schema, opts: TableOptions) -> Result<()> {
        if let Some(r) = self.replicator() {
            let token = r.writable()?;
            let name = validate_table_name(name)?;
            if self.table_exists(&name)? {
                return Err(Error::TableExists { table: name });
            }
            if opts.durability == Durability::Temporary {
                return Err(Error::Unsupported(format!(
                    "table {name}: temporary tables belong to a session; create them with Session::create_table"
                )));
            }
            return r.ddl(
                token,
                Ddl::CreateTable {
                    name,
                    schema: schema.clone(),
                    opts,
                },
            );
        }
        self.create_table_here(name, schema, opts)
    }

    /// Creates a table on this database alone (see [`Database::create_table`]).
    pub(crate) fn create_table_here(
        &self,
        name: &str,
        schema: &Schema,
        opts: TableOptions,
    ) -> Result<()> {
        let name = validate_table_name(name)?;
        if opts.durability == Durability::Temporary && self.inner.rt.wal.is_some() {
            return Err(Error::Unsupported(format!(
                "table {name}: temporary tables belong to a session; create them with Session::create_table"
            )));
        }
        let rt = &self.inner.rt;
        let _ddl = rt.ddl.read_recursive();
        let exists = |_| Error::TableExists {
            table: name.clone(),
        };
        rt.with_table_closed(&name, exists, || {
            if self.table_exists(&name)? {
                return Err(Error::TableExists {
                    table: name.clone(),
                });
            }
            TableCore::create(&self.env(), &name, schema, &opts)?;
            rt.feed.push_event(&name, crate::feed::TableEvent::Created);
            Ok(())
        })?;
        tracing::info!(table = %name, format = ?opts.format, durability = %opts.durability, page_size = opts.page_size, "table created");
        Ok(())
    }

    pub(crate) fn open_shared(&self, name: &str) -> Result<TableHandle> {
        let name = validate_table_name(name)?;
        let open = || {
            let (core, report) = TableCore::open(&self.env(), &name)?;
            if report != OpenReport::default() {
                self.inner.repairs.lock().push((name.clone(), report));
            }
            let keepalive: Arc<dyn std::any::Any + Send + Sync> = self.inner.clone();
            Ok(TableShared::new(core, self.inner.rt.clone(), keepalive))
        };
        let rt = &self.inner.rt;
        rt.open_table(&name, open, |shared| fill_holes(rt, shared))
    }

    /// Removes table `name` and its files. Refused while it has open handles.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        if let Some(r) = self.replicator() {
            let token = r.writable()?;
            let name = validate_table_name(name)?;
            if !self.table_exists(&name)? {
                return Err(Error::TableNotFound {
                    table: name,
                    root: self.inner.root.clone(),
                });
            }
            return r.ddl(token, Ddl::DropTable { name });
        }
        self.drop_table_here(name)
    }

    /// Drops a table on this database alone (see [`Database::drop_table`]).
    pub(crate) fn drop_table_here(&self, name: &str) -> Result<()> {
        let name = validate_table_name(name)?;
        let in_use = |handles| Error::TableInUse {
            table: name.clone(),
            handles,
        };
        let _ddl = self.inner.rt.ddl.read_recursive();
        self.inner.rt.with_table_closed(&name, in_use, || {
            self.remove_table_files(&name)?;
            self.inner
                .rt
                .feed
                .push_event(&name, crate::feed::TableEvent::Dropped);
            Ok(())
        })?;
        tracing::info!(table = %name, "table dropped");
        Ok(())
    }

    fn remove_table_files(&self, name: &str) -> Result<()> {
        let paths = TablePaths::new(&self.inner.root, name);
        let storage = &self.inner.storage;
        match storage.remove(&paths.data) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::TableNotFound {
                    table: name.to_owned(),
                    root: self.inner.root.clone(),
                })
            }
            Err(e) => return Err(Error::io(&paths.data, e)),
        }
        // The data file is gone, so the table is; its blob and index files follow.
        let root = &self.inner.root;
        for f in storage.list(root).map_err(|e| Error::io(root, e))? {
            if is_table_file(name, &f) {
                let p = root.join(&f);
                storage.remove(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        storage.sync_dir(root).map_err(|e| Error::io(root, e))
    }

    /// Writes every open table's changes to disk and syncs them (a checkpoint).
    pub fn flush(&self) -> Result<()> {
        self.checkpoint()
    }
}
