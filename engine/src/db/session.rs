//! Sessions: the unit that owns table handles, locks, a transaction, and
//! temporary tables.
//!
//! Invariants:
//! - A transaction's changes live only in the session until commit; other sessions
//!   never see them (no dirty reads). Its own `read`/`record`/`goto` see them.
//! - Every record a transaction changes is locked by the session until the
//!   transaction ends; locks taken inside a transaction are kept until it ends.
//! - An append inside a transaction reserves its recno at once; if the append is
//!   rolled back, the recno becomes a deleted blank record (recnos are never reused).
//! - Ending a session (dropping its last handle, or [`Session::end`]) rolls back
//!   its transaction, releases its locks and removes its temporary tables.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::replicated::failover;
use super::table::Table;
use super::txn_index::{self, Overlay};
use super::{Database, Options, TEMP_PREFIX};
use crate::error::{Error, Result};
use crate::index::IndexDef;
use crate::schema::{Durability, Schema, Value};
use crate::table::TableOptions;
use crate::txn::commit::commit;
use crate::txn::{Change, LockKey, TableHandle, TableShared};

pub(crate) use super::txn_index::Txn;

/// A point to roll back to inside a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint(usize);

/// A session's private rootpath of temporary tables.
#[derive(Debug)]
struct TempDb {
    db: Database,
    dir: PathBuf,
    names: HashSet<String>,
}

/// A session's open transaction, if any, and whether there is one: read
/// without the lock by the navigation paths, which outside a transaction
/// have nothing of the session's to merge (a scan would otherwise take the
/// lock several times per record).
#[derive(Debug, Default)]
pub(crate) struct TxnSlot {
    slot: Mutex<Option<Txn>>,
    /// `slot.is_some()` as of the last release of the lock.
    open: AtomicBool,
}

/// The lock on a [`TxnSlot`]; on release it records whether a transaction
/// is open.
pub(crate) struct TxnGuard<'a> {
    guard: parking_lot::MutexGuard<'a, Option<Txn>>,
    open: &'a AtomicBool,
}

impl TxnSlot {
    pub fn lock(&self) -> TxnGuard<'_> {
        TxnGuard {
            guard: self.slot.lock(),
            open: &self.open,
        }
    }

    /// Whether a transaction is open, without the lock: exact on the thread
    /// that last began or ended it (another thread racing a begin could
    /// read it either way, as it could take the lock before or after).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

impl std::ops::Deref for TxnGuard<'_> {
    type Target = Option<Txn>;
    fn deref(&self) -> &Option<Txn> {
        &self.guard
    }
}

impl std::ops::DerefMut for TxnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Option<Txn> {
        &mut self.guard
    }
}

impl Drop for TxnGuard<'_> {
    fn drop(&mut self) {
        self.open.store(self.guard.is_some(), Ordering::Release);
    }
}

/// The state behind a [`Session`], shared with its table handles.
#[derive(Debug)]
pub(crate) struct SessionInner {
    pub id: u64,
    pub db: Database,
    pub hide_deleted: AtomicBool,
    pub lock_timeout: Mutex<Duration>,
    pub delayed: AtomicBool,
    pub txn: TxnSlot,
    /// Rollbacks (whole or to a savepoint) so far: a handle standing on a
    /// record the session changed re-reads its key after one.
    pub undone: AtomicU64,
    temp: Mutex<Option<TempDb>>,
}

impl SessionInner {
    pub fn timeout(&self) -> Duration {
        *self.lock_timeout.lock()
    }

    /// Takes `key` for this session (waiting up to the session's timeout).
    /// Returns true when newly taken.
    pub fn lock(&self, shared: &TableShared, key: &LockKey) -> Result<bool> {
        shared.rt.locks.lock(self.id, key, self.timeout())
    }

    /// An append needs the table not to be file-locked by another session.
    pub(super) fn check_file_lock(shared: &TableShared, me: u64) -> Result<()> {
        match shared
            .rt
            .locks
            .holder_other_than(&LockKey::File(shared.lock_name.clone()), me)
        {
            Some(holder) => Err(Error::LockConflict {
                lock: format!("table {}", shared.name),
                holder,
                holder_name: shared.rt.locks.describe(holder),
            }),
            None => Ok(()),
        }
    }

    /// Checks an append's values and reserves its recno, filling its serial
    /// field: the serial is the transaction's at once (it reads it back and
    /// later updates carry it unchanged).
    pub(super) fn reserve_append(&self, shared: &TableShared, values: &mut [Value]) -> Result<u64> {
        shared.core.read().check_and_normalize(values)?;
        Self::check_file_lock(shared, self.id)?;
        let mut core = shared.core.write();
        core.assign_serial(values);
        Ok(core.reserve_recno())
    }

    /// Applies a write: recorded in the open transaction, or committed at once.
    /// Returns the record's recno.
    pub fn write(&self, shared: &TableHandle, change: Change) -> Result<u64> {
        let name = shared.lock_name.clone();
        // A cluster member takes writes only as its leader (see `replicated`).
        let routed = match shared.rt.replicator() {
            Some(r) => {
                let token = r.writable()?;
                Some((r, token))
            }
            None => None,
        };
        let mut guard = self.txn.lock();
        if let Some(txn) = guard.as_mut() {
            if let Some((_, token)) = &routed {
                match txn.token {
                    Some(t) if t != *token => return Err(failover(t, *token)),
                    _ => txn.token = Some(*token),
                }
            }
            let change = match change {
                Change::Append { mut values, .. } => {
                    let recno = self.reserve_append(shared, &mut values)?;
                    // One record lock per table per transaction covers its
                    // appends: it keeps others from locking the whole table
                    // until the transaction ends, and nobody else can lock a
                    // recno the transaction reserved (to them it does not
                    // exist until the commit stores it). A lock per appended
                    // recno cost a bulk load as much as storing the records.
                    let covered = txn.table(shared).is_some_and(|t| t.max_append > 0);
                    if covered {
                        // The file lock check above stands for the lock.
                    } else if let Err(e) = self.lock(shared, &LockKey::Record(name, recno)) {
                        // The recno is taken: it becomes a deleted blank record
                        // when the transaction ends, as a rolled-back append's.
                        txn.add_blank(shared.clone(), recno);
                        return Err(e);
                    }
                    Change::Append { recno, values }
                }
                other => {
                    let recno = other.recno();
                    // Stored (a recno another transaction reserved is
                    // not, even below the last stored record), or appended
                    // by this transaction.
                    let stored = recno >= 1 && {
                        let core = shared.core.read();
                        recno <= core.record_count()
                            && core.view_status(recno)? != crate::record::SlotStatus::Empty
                    };
                    let exists = stored
                        || txn
                            .table(shared)
                            .and_then(|t| t.records.get(&recno))
                            .is_some_and(|p| p.appended);
                    if !exists {
                        let core = shared.core.read();
                        return Err(Error::NoSuchRecord {
                            table: shared.name.clone(),
                            recno,
                            count: core.record_count(),
                        });
                    }
                    let other = match other {
                        Change::Update { recno, mut values } => {
                            shared.core.read().check_and_normalize(&mut values)?;
                            Change::Update { recno, values }
                        }
                        other => other,
                    };
                    self.lock(shared, &LockKey::Record(name, recno))?;
                    other
                }
            };
            let recno = change.recno();
            txn.push(shared.clone(), change);
            return Ok(recno);
        }
        drop(guard);
        if let Some((r, token)) = routed {
            return self.write_routed(&*r, token, shared, change);
        }
        // A write of its own: lock, commit, unlock (unless the lock was held before).
        let key = match &change {
            Change::Append { .. } => {
                Self::check_file_lock(shared, self.id)?;
                None
            }
            other => Some(LockKey::Record(name, other.recno())),
        };
        let newly = match &key {
            Some(k) => self.lock(shared, k)?,
            None => false,
        };
        let id = shared.rt.next_txn.fetch_add(1, Ordering::Relaxed);
        let r = commit(
            &[(shared.clone(), change)],
            id,
            self.delayed.load(Ordering::Relaxed),
        );
        if let (true, Some(k)) = (newly, &key) {
            shared.rt.locks.unlock(self.id, k);
        }
        Ok(r?[0])
    }

    /// What this session's open transaction makes of record `recno`: None when it
    /// has no change for it; otherwise the pending values and deleted flag (None
    /// values: only the flag changed).
    pub fn pending(
        &self,
        shared: &Arc<TableShared>,
        recno: u64,
    ) -> Option<super::txn_index::PendingRecord> {
        if !self.txn.is_open() {
            return None;
        }
        self.txn.lock().as_ref()?.pending(shared, recno)
    }

    /// True while a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.lock().is_some()
    }

    /// True when this session's open transaction changed `shared`.
    pub fn touched(&self, shared: &Arc<TableShared>) -> bool {
        self.txn.is_open()
            && self
                .txn
                .lock()
                .as_ref()
                .is_some_and(|t| t.table(shared).is_some())
    }

    /// Highest recno this session's transaction appended to `shared`.
    pub fn pending_max(&self, shared: &Arc<TableShared>) -> u64 {
        if !self.txn.is_open() {
            return 0;
        }
        self.txn
            .lock()
            .as_ref()
            .and_then(|t| t.table(shared))
            .map_or(0, |t| t.max_append)
    }

    /// The overlay of index `def` on `shared`, brought up to date: `fold`
    /// is called, under the transaction's lock, for each recno changed since
    /// the cached overlay was last folded (all of them when none is cached),
    /// with the transaction to read its pending values in place. None
    /// without pending changes to the table. When `fold` fails, nothing is
    /// cached: the next call folds from the start. `ordered` asks for the
    /// overlay's entries in key order too (see [`Overlay`]).
    pub fn overlay_fold(
        &self,
        shared: &Arc<TableShared>,
        def: &IndexDef,
        ordered: bool,
        mut fold: impl FnMut(&mut Overlay, u64, &Txn) -> Result<()>,
    ) -> Result<Option<Arc<Overlay>>> {
        if !self.txn.is_open() {
            return Ok(None);
        }
        let mut guard = self.txn.lock();
        let Some(txn) = guard.as_mut() else {
            return Ok(None);
        };
        let key = txn_index::key(shared);
        let Some(t) = txn.index.get_mut(&key) else {
            return Ok(None);
        };
        // Taken out and put back with its own name and definition: no clone.
        let (name, (def, applied, mut ov)) = match t.overlays.remove_entry(&def.name) {
            Some((name, (d, applied, ov))) if d == *def => (name, (d, applied, ov)),
            _ => (def.name.clone(), (def.clone(), 0, Arc::default())),
        };
        let end = t.order.len();
        if applied < end {
            let fresh = t.order[applied..].to_vec();
            let o = Arc::make_mut(&mut ov);
            for r in fresh {
                fold(o, r, txn)?;
            }
        }
        if ordered && !ov.is_sorted() {
            Arc::make_mut(&mut ov).sort();
        }
        if let Some(t) = txn.index.get_mut(&key) {
            t.overlays.insert(name, (def, end, ov.clone()));
        }
        Ok(Some(ov))
    }

    /// Rolls back the open transaction (if any): reserved recnos become deleted
    /// blank records. Locks are released.
    pub fn rollback(&self) -> Result<()> {
        let txn = self.txn.lock().take();
        self.undone.fetch_add(1, Ordering::Relaxed);
        let result = match txn {
            Some(t) => self.blank(
                t.changes
                    .into_iter()
                    .filter_map(append_slot)
                    .chain(t.blanks)
                    .collect(),
            ),
            None => Ok(()),
        };
        self.db.runtime().locks.release_all(self.id);
        if let Some(t) = &*self.temp.lock() {
            t.db.runtime().locks.release_all(self.id);
        }
        result
    }

    pub(super) fn blank(&self, slots: Vec<(TableHandle, u64)>) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let changes: Vec<(TableHandle, Change)> = slots
            .into_iter()
            .map(|(t, recno)| (t, Change::Blank { recno }))
            .collect();
        let result = match self.db.runtime().replicator() {
            // Blanks go through the group like any change.
            Some(r) => r
                .writable()
                .and_then(|token| self.commit_routed(&*r, token, &changes)),
            None => {
                let id = self.db.runtime().next_txn.fetch_add(1, Ordering::Relaxed);
                commit(&changes, id, true).map(|_| ())
            }
        };
        if result.is_err() {
            // The transaction is over all the same: its recnos read as the
            // deleted blank records they are, and the table's next commit
            // stores them (see `table::reserve`).
            for (t, c) in &changes {
                t.core.write().reserved.orphan(c.recno());
            }
        }
        result
    }

    fn end(&self) {
        if let Err(e) = self.rollback() {
            tracing::warn!(session = self.id, error = %e, "rolling back at session end failed");
        }
        self.db.runtime().locks.forget_name(self.id);
        if let Some(t) = self.temp.lock().take() {
            let storage = t.db.storage().clone();
            drop(t.db);
            if let Err(e) = storage.remove_dir_all(&t.dir) {
                tracing::warn!(dir = %t.dir.display(), error = %e, "could not remove temporary tables");
            }
        }
    }
}

fn append_slot((t, c): (TableHandle, Change)) -> Option<(TableHandle, u64)> {
    match c {
        Change::Append { recno, .. } => Some((t, recno)),
        _ => None,
    }
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        self.end();
    }
}

/// When [`Session::transaction`] runs a failed transaction again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// At most this many retries.
    pub max: u32,
    /// Retry on [`Error::LockTimeout`] too, not only on [`Error::Deadlock`].
    pub on_timeout: bool,
}

impl Default for Retry {
    /// Three retries, on deadlocks only.
    fn default() -> Retry {
        Retry {
            max: 3,
            on_timeout: false,
        }
    }
}

impl Retry {
    /// No retry.
    pub const NONE: Retry = Retry {
        max: 0,
        on_timeout: false,
    };

    /// Waits a little before retry `n`: a random part of a window that grows
    /// with `n`, so two transactions that deadlocked do not meet again in
    /// lockstep.
    pub fn pause(&self, n: u32) {
        let window = 2u64 << n.min(8);
        let ms = rand::random::<u64>() % window;
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn retries(&self, e: &Error) -> bool {
        matches!(e, Error::Deadlock { .. })
            || (self.on_timeout && matches!(e, Error::LockTimeout { .. }))
    }
}

/// A session on a database: its table handles, locks, transaction and
/// temporary tables. Cloning gives another handle on the same session.
///
/// ```
/// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// db.create_table("acc", &Schema::new(vec![Field::new("BAL", FieldType::Int64)]), TableOptions::default())?;
/// let s = db.session();
/// let mut t = s.open_table("acc")?;
/// t.append(&[Value::Int64(100)])?;
/// s.begin()?;
/// t.update(1, &[Value::Int64(40)])?;
/// assert_eq!(t.read(1)?.get("BAL"), Some(&Value::Int64(40)));           // its own change
/// assert_eq!(db.session().open_table("acc")?.read(1)?.get("BAL"), Some(&Value::Int64(100))); // others: committed only
/// s.rollback()?;
/// assert_eq!(t.read(1)?.get("BAL"), Some(&Value::Int64(100)));
/// # Ok::<(), raiz_engine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    pub(super) inner: Arc<SessionInner>,
}

impl Session {
    pub(super) fn new(db: Database) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                id: db.next_session_id(),
                db,
                hide_deleted: AtomicBool::new(false),
                lock_timeout: Mutex::new(Duration::ZERO),
                delayed: AtomicBool::new(false),
                txn: TxnSlot::default(),
                undone: AtomicU64::new(0),
                temp: Mutex::new(None),
            }),
        }
    }

    /// The session's id (as locks report it).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The database this session works on.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// Hides deleted records from navigation in every handle of this session.
    pub fn set_hide_deleted(&self, on: bool) {
        self.inner.hide_deleted.store(on, Ordering::Relaxed);
    }

    /// True when deleted records are hidden from navigation.
    pub fn hide_deleted(&self) -> bool {
        self.inner.hide_deleted.load(Ordering::Relaxed)
    }

    /// Names the session in other sessions' lock errors ("record 7 of table
    /// sa1 is locked by session 3 (ana@10.0.0.7:51234)"); a server names each
    /// session after its user and address.
    pub fn set_name(&self, name: &str) {
        self.inner.db.runtime().locks.set_name(self.inner.id, name);
    }

    /// The session's default lock timeout: how long writes, and locks taken
    /// without a timeout of their own ([`Table::rlock`]), wait for another
    /// session's lock before failing — zero, the default, fails at once with
    /// [`Error::LockConflict`] ("not waited"); a wait that runs out is
    /// [`Error::LockTimeout`] ("waited").
    pub fn set_lock_timeout(&self, timeout: Duration) {
        *self.inner.lock_timeout.lock() = timeout;
    }

    /// Lets commits return before their log sync; the log is synced within the
    /// database's sync delay (default 1 s). A crash loses at most that window,
    /// never part of a transaction.
    pub fn set_delayed_durability(&self, on: bool) {
        self.inner.delayed.store(on, Ordering::Relaxed);
    }

    /// Opens a handle on table `name` (one of this session's temporary tables, or
    /// a table of the rootpath), standing on its first record in physical
    /// order (xBase `USE` goes top; on an empty table, eof and bof on the
    /// phantom record).
    pub fn open_table(&self, name: &str) -> Result<Table> {
        let canonical = super::validate_table_name(name)?;
        let temp = match &*self.inner.temp.lock() {
            Some(t) if t.names.contains(&canonical) => Some(t.db.open_shared(&canonical)?),
            _ => None,
        };
        let shared = match temp {
            Some(s) => s,
            None => self.inner.db.open_shared(name)?,
        };
        let mut t = Table::new(shared, self.inner.clone());
        t.first()?;
        Ok(t)
    }

    /// Creates a table. A [`Durability::Temporary`] table is private to this
    /// session, lives in the machine's temporary directory and is removed when the
    /// session ends (or, after a crash, at the next start of raiz).
    pub fn create_table(&self, name: &str, schema: &Schema, opts: TableOptions) -> Result<()> {
        if opts.durability != Durability::Temporary {
            return self.inner.db.create_table(name, schema, opts);
        }
        let canonical = super::validate_table_name(name)?;
        let mut temp = self.inner.temp.lock();
        if temp.is_none() {
            let dir = std::env::temp_dir().join(format!(
                "{TEMP_PREFIX}{}-{}-{:08x}",
                std::process::id(),
                self.inner.id,
                rand::random::<u32>()
            ));
            let options = Options {
                storage: self.inner.db.storage().clone(),
                pool_bytes: 8 << 20,
                temporary: true,
                ..Options::default()
            };
            let db = Database::open_with(&dir, options)?;
            *temp = Some(TempDb {
                db,
                dir,
                names: HashSet::new(),
            });
        }
        let t = temp.as_mut().expect("created above");
        t.db.create_table(&canonical, schema, opts)?;
        t.names.insert(canonical);
        Ok(())
    }

    /// Where this session's temporary tables live, once it has any.
    pub fn temp_dir(&self) -> Option<PathBuf> {
        self.inner.temp.lock().as_ref().map(|t| t.dir.clone())
    }

    /// Begins a transaction. Writes until commit or rollback are this session's
    /// alone; other sessions see none of them.
    pub fn begin(&self) -> Result<()> {
        let mut txn = self.inner.txn.lock();
        if txn.is_some() {
            return Err(Error::Transaction(
                "a transaction is already open; use a savepoint to nest".into(),
            ));
        }
        *txn = Some(Txn {
            id: self
                .inner
                .db
                .runtime()
                .next_txn
                .fetch_add(1, Ordering::Relaxed),
            ..Txn::default()
        });
        Ok(())
    }

    /// Applies changes another database committed — a cache node keeping its
    /// copy of a server's tables — as one commit, without locks: each record
    /// is stored as the source committed it (see
    /// [`crate::feed::RecordChange`]; a record past the end reserves the recnos
    /// before it, which their own changes fill). Durable when it returns unless
    /// delayed durability is on. Refused inside a transaction.
    pub fn replicate(&self, batch: &[(&Table, &[crate::feed::RecordChange])]) -> Result<()> {
        use crate::feed::RecordChange as R;
        if self.inner.db.runtime().replicator().is_some() {
            return Err(Error::Unsupported(
                "a cluster member applies its group's entries, not a cache node's stream".into(),
            ));
        }
        if self.in_transaction() {
            return Err(Error::Transaction(
                "replicated changes cannot be applied inside a transaction".into(),
            ));
        }
        let mut changes: Vec<(TableHandle, Change)> = Vec::new();
        for (t, list) in batch {
            for c in list.iter() {
                let change = match c {
                    R::Append { recno, values } => Change::Put {
                        recno: *recno,
                        values: Some(values.clone()),
                        deleted: Some(false),
                    },
                    R::Update { recno, values } => Change::Put {
                        recno: *recno,
                        values: Some(values.clone()),
                        deleted: None,
                    },
                    R::SetDeleted { recno, deleted } => Change::Put {
                        recno: *recno,
                        values: None,
                        deleted: Some(*deleted),
                    },
                    R::Blank { recno } => Change::Put {
                        recno: *recno,
                        values: Some(t.schema().empty_record()),
                        deleted: Some(true),
                    },
                };
                changes.push((t.shared.clone(), change));
            }
        }
        let id = self
            .inner
            .db
            .runtime()
            .next_txn
            .fetch_add(1, Ordering::Relaxed);
        commit(&changes, id, self.inner.delayed.load(Ordering::Relaxed)).map(drop)
    }

    /// True while a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.inner.txn.lock().is_some()
    }

    /// Commits the open transaction: all of its changes become visible at once,
    /// and, unless delayed durability is on, are durable when this returns. On
    /// error nothing of it is applied and the transaction is rolled back.
    pub fn commit(&self) -> Result<()> {
        let txn = self
            .inner
            .txn
            .lock()
            .take()
            .ok_or_else(|| Error::Transaction("commit without an open transaction".into()))?;
        // Blanks first: a change the transaction made to a blanked recno came
        // after the rollback to a savepoint that blanked it.
        let mut changes = txn.changes;
        if !txn.blanks.is_empty() {
            // (Moved only when there are blanks: a bulk load's million
            // changes are not copied.)
            changes.splice(
                0..0,
                txn.blanks
                    .into_iter()
                    .map(|(t, recno)| (t, Change::Blank { recno })),
            );
        }
        if let Some(r) = self.inner.db.runtime().replicator() {
            let result = match txn.token {
                Some(t) => self.inner.commit_routed(&*r, t, &changes),
                None => r
                    .writable()
                    .and_then(|t| self.inner.commit_routed(&*r, t, &changes)),
            };
            if let Err(e) = &result {
                self.inner.after_routed_failure(e, &changes);
            }
            self.inner.db.runtime().locks.release_all(self.inner.id);
            return result;
        }
        let result = commit(&changes, txn.id, self.inner.delayed.load(Ordering::Relaxed));
        if result.is_err() {
            let slots = changes.into_iter().filter_map(|(t, c)| match c {
                Change::Append { recno, .. } | Change::Blank { recno } => Some((t, recno)),
                _ => None,
            });
            if let Err(e) = self.inner.blank(slots.collect()) {
                tracing::warn!(session = self.inner.id, error = %e, "could not blank the recnos of a failed commit");
            }
        }
        self.inner.db.runtime().locks.release_all(self.inner.id);
        result.map(|_| ())
    }

    /// Rolls back the open transaction: its appended recnos become deleted
    /// blank records. When those cannot be stored (a full disk) the error is
    /// returned, but the rollback has happened all the same: the recnos read
    /// as deleted blank records, and the table's next commit stores them.
    pub fn rollback(&self) -> Result<()> {
        if !self.in_transaction() {
            return Err(Error::Transaction(
                "rollback without an open transaction".into(),
            ));
        }
        self.inner.rollback()
    }

    /// Runs `work` in a transaction: commits when it returns Ok, rolls back
    /// when it (or the commit) fails. A transaction refused by a deadlock is
    /// run again from the start, up to `retry.max` times (and one that gave up
    /// waiting for a lock too, with `retry.on_timeout`). Returns the value and
    /// how many times the transaction was retried.
    ///
    /// ```
    /// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
    /// use raiz_engine::db::Retry;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Database::open(dir.path())?;
    /// db.create_table("acc", &Schema::new(vec![Field::new("BAL", FieldType::Int64)]), TableOptions::default())?;
    /// let s = db.session();
    /// let mut t = s.open_table("acc")?;
    /// t.append(&[Value::Int64(100)])?;
    /// let (bal, retries) = s.transaction(Retry::default(), |_| {
    ///     let rec = t.rlock(1)?;
    ///     let bal = rec.get("BAL").and_then(Value::as_i64).unwrap_or(0) - 30;
    ///     t.update(1, &[Value::Int64(bal)])?;
    ///     Ok(bal)
    /// })?;
    /// assert_eq!((bal, retries), (70, 0));
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn transaction<T>(
        &self,
        retry: Retry,
        mut work: impl FnMut(&Session) -> Result<T>,
    ) -> Result<(T, u32)> {
        let mut retries = 0;
        loop {
            self.begin()?;
            let result = work(self).and_then(|v| self.commit().map(|()| v));
            match result {
                Ok(v) => return Ok((v, retries)),
                Err(e) => {
                    if self.in_transaction() {
                        self.inner.rollback()?;
                    }
                    if retries < retry.max && retry.retries(&e) {
                        retries += 1;
                        tracing::debug!(session = self.inner.id, retries, error = %e, "transaction retried");
                        retry.pause(retries);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Marks a point to roll back to, inside the open transaction.
    pub fn savepoint(&self) -> Result<Savepoint> {
        let txn = self.inner.txn.lock();
        let t = txn
            .as_ref()
            .ok_or_else(|| Error::Transaction("savepoint without an open transaction".into()))?;
        Ok(Savepoint(t.changes.len()))
    }

    /// Undoes the transaction's changes made after `sp`; the transaction stays
    /// open (locks are kept until it ends).
    pub fn rollback_to(&self, sp: Savepoint) -> Result<()> {
        let mut txn = self.inner.txn.lock();
        let t = txn.as_mut().ok_or_else(|| {
            Error::Transaction("rollback to a savepoint without an open transaction".into())
        })?;
        if sp.0 > t.changes.len() {
            return Err(Error::Transaction(
                "that savepoint was already rolled back".into(),
            ));
        }
        t.rollback_to(sp.0);
        self.inner.undone.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes the named lock `name`, waiting up to the session's lock timeout.
    pub fn lock_name(&self, name: &str) -> Result<()> {
        self.inner
            .db
            .runtime()
            .locks
            .lock(
                self.inner.id,
                &LockKey::Name(name.into()),
                self.inner.timeout(),
            )
            .map(|_| ())
    }

    /// Releases the named lock `name` (kept until the end of an open transaction).
    pub fn unlock_name(&self, name: &str) -> bool {
        if self.in_transaction() {
            return false;
        }
        self.inner
            .db
            .runtime()
            .locks
            .unlock(self.inner.id, &LockKey::Name(name.into()))
    }

    /// Ends the session now: rolls back its transaction, releases its locks and
    /// removes its temporary tables. Its handles stay usable for reads and
    /// writes of their own.
    pub fn end(&self) -> Result<()> {
        let r = self.inner.rollback();
        if let Some(t) = self.inner.temp.lock().take() {
            let storage = t.db.storage().clone();
            drop(t.db);
            storage
                .remove_dir_all(&t.dir)
                .map_err(|e| Error::io(&t.dir, e))?;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::{Field, FieldType, Schema, Value};
    use crate::storage::MemoryStorage;
    use crate::{Database, Options, TableOptions};

    /// An append whose record lock is refused after its recno was taken (a
    /// file lock taken in between: a window too narrow to hit on purpose)
    /// leaves that recno to the transaction as a blank: a deleted blank
    /// record, seen so inside it, stored so at its end.
    #[test]
    fn a_spent_recno_becomes_a_deleted_blank_record() {
        let storage = std::sync::Arc::new(MemoryStorage::new());
        let db = Database::open_with("/r", Options::default().storage(storage)).unwrap();
        let schema = Schema::new(vec![Field::new("K", FieldType::Int64)]);
        db.create_table("t", &schema, TableOptions::default())
            .unwrap();
        let s = db.session();
        let mut t = s.open_table("t").unwrap();
        t.append(&[Value::Int64(1)]).unwrap();
        s.begin().unwrap();
        let spent = t.shared.core.write().reserve_recno();
        s.inner
            .txn
            .lock()
            .as_mut()
            .unwrap()
            .add_blank(t.shared.clone(), spent);
        let r = t.append(&[Value::Int64(3)]).unwrap();
        assert_eq!((spent, r), (2, 3));
        let inside = t.read(spent).unwrap();
        assert!(inside.is_deleted());
        assert_eq!(inside.values(), &schema.empty_record()[..]);
        s.commit().unwrap();
        let after = t.read(spent).unwrap();
        assert!(after.is_deleted());
        assert_eq!(t.read(3).unwrap().get("K"), Some(&Value::Int64(3)));
        assert!(t.check(5).unwrap().is_ok());
    }
}
