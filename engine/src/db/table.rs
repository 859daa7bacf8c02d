//! The table handle: record operations, index management, maintenance, and a
//! cursor (navigation lives in `nav.rs`).
//!
//! Each handle keeps its own position, order, scope and filter, so several handles
//! on one table (xBase work areas, c-tree ISAM contexts) move independently.
//! Navigation follows xBase:
//!
//! - skipping past the last record sets `eof`, and the position becomes
//!   `record_count + 1` (the phantom record);
//! - skipping back from the first record sets `bof` and stays on that record;
//! - skipping back from `eof` lands on the last record;
//! - on an empty table (or when every record is hidden) `first`/`last` set both.
//!
//! With the session's hide-deleted option on (xBase `SET DELETED ON`), deleted
//! records are skipped by every move except `goto`.

use std::sync::Arc;
use std::time::Duration;

use super::session::SessionInner;
use super::txn_index::PendingValues;
use crate::error::{Error, Result};
use crate::index::{Condition, IndexDef};
use crate::record::{Record, SlotStatus};
use crate::schema::{Memo, Schema, Value};
use crate::table::{CheckReport, RewriteReport, TableCore, TableInfo};
use crate::txn::{Change, LockKey, TableHandle};

/// A record filter for navigation.
pub type Filter = Box<dyn Fn(&Record) -> bool + Send + Sync>;

/// Encoded lower and upper bounds (key prefixes) of a scope.
pub(super) type Scope = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A saved position of a handle: its record, and its entry in the order it was
/// taken in. Putting it back resumes navigation exactly where the handle was,
/// even if that record's key changed since (a server saves these while it
/// reads ahead for a client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorState {
    recno: u64,
    bof: bool,
    eof: bool,
    positioned: bool,
    found: bool,
    order: Option<String>,
    ikey: Option<Vec<u8>>,
}

impl CursorState {
    /// The record of the saved position.
    pub fn recno(&self) -> u64 {
        self.recno
    }
}

/// A handle on an open table, with its own position.
///
/// ```
/// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
/// use raiz_engine::index::{IndexDef, Segment};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// let schema = Schema::new(vec![Field::new("NAME", FieldType::Char(10))]);
/// db.create_table("people", &schema, TableOptions::default())?;
/// let session = db.session();
/// let mut t = session.open_table("people")?;
/// for n in ["Rui", "Ana", "Bia"] {
///     t.append(&[Value::from(n)])?;
/// }
/// t.create_index(&IndexDef::new("by_name", vec![Segment::field("NAME")]))?;
/// t.set_order(Some("by_name"))?;
/// assert!(t.first()? && t.recno() == 2); // Ana
/// assert!(t.seek(&[Value::from("Bi")])? && t.recno() == 3);
/// assert!(!t.seek(&[Value::from("Zé")])? && t.eof());
/// # Ok::<(), raiz_engine::Error>(())
/// ```
pub struct Table {
    pub(super) shared: TableHandle,
    pub(super) session: Arc<SessionInner>,
    pub(super) recno: u64,
    pub(super) bof: bool,
    pub(super) eof: bool,
    /// Current index (lower-case name), or physical order.
    pub(super) order: Option<String>,
    /// Full key of the current entry in the current index.
    pub(super) ikey: Option<Vec<u8>>,
    /// Where `ikey` sits in the tree, and the tree version that position is
    /// valid for: lets `next`/`prev` step along the leaf instead of descending
    /// again. Cleared whenever `ikey` changes other than by a walk.
    pub(super) hint: Option<(u64, crate::index::Pos)>,
    /// The tree position the last walk ended on (set by `walk`, taken by `land`).
    pub(super) walked: Walked,
    /// The leaf whose following records the walk has prefetched (see
    /// `Table::prefetch_ahead`); `NO_LEAF` after any move but a step.
    pub(super) ahead_leaf: std::sync::atomic::AtomicU64,
    /// Encoded lower and upper scope bounds (prefixes) of the current order.
    pub(super) scope: Scope,
    /// The scopes of the other orders: each index keeps its own (xBase
    /// `ordScope`), in force again when the order is chosen again.
    pub(super) scopes: std::collections::HashMap<String, Scope>,
    /// On a record (false on the phantom record past the last one).
    pub(super) positioned: bool,
    /// Set by the last seek, cleared by every other move (xBase `Found()`).
    pub(super) found: bool,
    pub(super) filter: Option<Filter>,
    /// The session's rollback count when `ikey` was last checked against
    /// the record (see `Table::key_now`).
    pub(super) undone_seen: std::sync::atomic::AtomicU64,
}

/// The tree position (and tree version) a walk ended on, handed from the
/// walk to the move that called it. Plain loads and stores: a walk and the
/// move around it run under the handle's `&mut` or on one thread, so the
/// fields are never written from two threads at once; atomics only make the
/// handle shareable, and cost no locked instruction per move.
#[derive(Debug)]
pub(super) struct Walked {
    version: std::sync::atomic::AtomicU64,
    page: std::sync::atomic::AtomicU64,
    /// The entry index; `u64::MAX` for none.
    idx: std::sync::atomic::AtomicU64,
}

impl Default for Walked {
    fn default() -> Self {
        Walked {
            version: Default::default(),
            page: Default::default(),
            idx: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl Walked {
    pub(super) fn set(&self, at: Option<(u64, crate::index::Pos)>) {
        use std::sync::atomic::Ordering::Relaxed;
        match at {
            Some((v, p)) => {
                self.version.store(v, Relaxed);
                self.page.store(p.page, Relaxed);
                self.idx.store(p.idx as u64, Relaxed);
            }
            None => self.idx.store(u64::MAX, Relaxed),
        }
    }

    pub(super) fn take(&self) -> Option<(u64, crate::index::Pos)> {
        use std::sync::atomic::Ordering::Relaxed;
        let idx = self.idx.load(Relaxed);
        if idx == u64::MAX {
            return None;
        }
        self.idx.store(u64::MAX, Relaxed);
        let pos = crate::index::Pos {
            page: self.page.load(Relaxed),
            idx: idx as usize,
        };
        Some((self.version.load(Relaxed), pos))
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.shared.core.read().name)
            .field("order", &self.order)
            .field("recno", &self.recno)
            .field("bof", &self.bof)
            .field("eof", &self.eof)
            .finish()
    }
}

impl Table {
    pub(crate) fn new(shared: TableHandle, session: Arc<SessionInner>) -> Table {
        Table {
            shared,
            recno: 0,
            bof: true,
            eof: true,
            order: None,
            ikey: None,
            hint: None,
            walked: Walked::default(),
            ahead_leaf: std::sync::atomic::AtomicU64::new(super::nav::NO_LEAF),
            scope: (None, None),
            scopes: Default::default(),
            positioned: false,
            found: false,
            filter: None,
            undone_seen: std::sync::atomic::AtomicU64::new(
                session.undone.load(std::sync::atomic::Ordering::Relaxed),
            ),
            session,
        }
    }

    /// The table's name.
    pub fn name(&self) -> String {
        self.shared.core.read().name.clone()
    }

    /// The table's fields.
    pub fn schema(&self) -> Arc<Schema> {
        self.shared.core.read().schema.clone()
    }

    /// Records in the table, deleted ones included (xBase `RECCOUNT()`).
    pub fn record_count(&self) -> u64 {
        self.shared.core.read().record_count()
    }

    /// Commits that changed the table since it was opened (by any session).
    /// A reader that finds the same number before and after its reads saw
    /// the table as one commit left it: commits change it under the table's
    /// write lock, the number with them.
    pub fn commit_count(&self) -> u64 {
        self.shared.core.read().commits
    }

    /// Logically deleted records.
    pub fn deleted_count(&self) -> u64 {
        self.shared.core.read().deleted_count()
    }

    /// What the header says about the table.
    pub fn info(&self) -> TableInfo {
        let core = self.shared.core.read();
        TableInfo {
            name: core.name.clone(),
            file_id: core.body.file_id,
            path: core.body.path.clone(),
            format: core.body.format,
            durability: core.body.durability,
            page_size: core.data.page_size(),
            record_count: core.body.record_count,
            deleted_count: core.body.deleted_count,
            schema: core.body.schema.clone(),
            stats: core.body.stats,
            data_pages: core.data.page_count(),
            blob_pages: core.blobs.as_ref().map_or(0, |b| b.file().page_count()),
            index_pages: core
                .indexes
                .iter()
                .map(|i| i.tree.file().page_count())
                .sum(),
            indexes: core
                .indexes
                .iter()
                .map(|i| (i.spec.def.clone(), i.tree.state.entries))
                .collect(),
            serial: core.body.serial.map(|s| {
                (
                    core.schema.fields()[usize::from(s.field)].name.clone(),
                    s.next,
                )
            }),
        }
    }

    /// Appends a record; returns its recno. The handle is positioned on it.
    /// Inside a transaction the recno is reserved now and the record stored at
    /// commit.
    pub fn append(&mut self, values: &[Value]) -> Result<u64> {
        self.shared.core.read().check_values(values)?;
        self.check_unique_in_txn(values, None)?;
        let recno = self.session.write(
            &self.shared,
            Change::Append {
                recno: 0,
                values: values.to_vec(),
            },
        )?;
        self.reposition(recno)?;
        Ok(recno)
    }

    /// Reads record `recno` (memo fields hold references; see [`Table::read_memo`]).
    /// Inside a transaction, the transaction's own changes are seen.
    pub fn read(&self, recno: u64) -> Result<Record> {
        let core = self.shared.core.read();
        self.read_in(&core, recno)
    }

    pub(super) fn read_in(&self, core: &TableCore, recno: u64) -> Result<Record> {
        match self.session.pending(&self.shared, recno) {
            None => core.view(recno),
            Some((values, deleted)) => {
                let (values, base_deleted) = match values {
                    // An update keeps the committed flag unless it changed too.
                    PendingValues::Values(v) => {
                        let committed = deleted.is_none()
                            && recno <= core.record_count()
                            && core.view_status(recno)? == SlotStatus::Deleted;
                        (v, committed)
                    }
                    PendingValues::Blank => (core.schema.empty_record(), true),
                    PendingValues::Unchanged => {
                        let base = core.view(recno)?;
                        let deleted = base.is_deleted();
                        (base.into_values(), deleted)
                    }
                };
                Ok(Record::new(
                    recno,
                    deleted.unwrap_or(base_deleted),
                    values,
                    core.schema.clone(),
                ))
            }
        }
    }

    /// The slot status of `recno` as this handle's session sees it.
    pub(super) fn status_in(&self, core: &TableCore, recno: u64) -> Result<SlotStatus> {
        match self.session.pending(&self.shared, recno) {
            Some((_, Some(d))) => Ok(if d {
                SlotStatus::Deleted
            } else {
                SlotStatus::Live
            }),
            _ if recno > core.record_count() => Ok(SlotStatus::Empty),
            _ => core.view_status(recno),
        }
    }

    /// Highest recno this handle's session can see.
    pub(super) fn visible_count(&self, core: &TableCore) -> u64 {
        core.record_count()
            .max(self.session.pending_max(&self.shared))
    }

    /// Committed records after `after` in recno order, at most `max`, memo
    /// contents read (`Memo::Data`), under one read lock of the table: what a
    /// cache node loads. Empty slots (recnos reserved by open transactions)
    /// are skipped. Also returns the record count and whether no record
    /// follows.
    pub fn dump(&self, after: u64, max: usize) -> Result<(Vec<Record>, u64, bool)> {
        self.batch(after, max, true)
    }

    /// Committed records after `after` in recno order, at most `max`, under
    /// one read lock of the table, memos left as references (read them with
    /// [`Table::read_memo`]); deleted records included. Empty slots (recnos
    /// reserved by open transactions) are skipped. Also returns whether no
    /// record follows. A reader that scans a table in batches sees each
    /// record once, as committed when its batch was read.
    pub fn scan(&self, after: u64, max: usize) -> Result<(Vec<Record>, bool)> {
        self.batch(after, max, false)
            .map(|(records, _, done)| (records, done))
    }

    fn batch(&self, after: u64, max: usize, memos: bool) -> Result<(Vec<Record>, u64, bool)> {
        let core = self.shared.core.read();
        // What is stored: recnos an ended transaction left unstored come as
        // the blank records the table's next commit stores (and streams).
        let count = core.body.record_count;
        let mut out = Vec::new();
        let mut recno = after;
        while recno < count && out.len() < max.max(1) {
            recno += 1;
            if core.status(recno)? == SlotStatus::Empty {
                continue;
            }
            let rec = core.read(recno)?;
            if !memos {
                out.push(rec);
                continue;
            }
            let deleted = rec.is_deleted();
            let mut values = rec.into_values();
            for (i, f) in core.schema.fields().iter().enumerate() {
                if let Value::Memo(Memo::Stored(_)) = &values[i] {
                    values[i] = Value::Memo(Memo::Data(core.read_memo(recno, &f.name)?));
                }
            }
            out.push(Record::new(recno, deleted, values, core.schema.clone()));
        }
        Ok((out, count, recno >= count))
    }

    /// Reads the memo in `field` of record `recno`.
    /// Inside a transaction, its own changes are seen.
    pub fn read_memo(&self, recno: u64, field: &str) -> Result<Vec<u8>> {
        let core = self.shared.core.read();
        let pending = match self.session.pending(&self.shared, recno) {
            Some((PendingValues::Values(v), _)) => v,
            Some((PendingValues::Blank, _)) => return core.memo_index(field).map(|_| Vec::new()),
            _ => return core.read_memo(recno, field),
        };
        let idx = core.memo_index(field)?;
        match &pending[idx] {
            Value::Memo(Memo::Data(d)) => Ok(d.clone()),
            Value::Memo(Memo::Stored(_)) => core.read_memo(recno, field),
            _ => Ok(Vec::new()),
        }
    }

    /// Replaces record `recno`'s values. To keep a memo unchanged pass the
    /// [`crate::Memo::Stored`] reference read from this record. When the handle is
    /// on that record it stays on it, even if its key in the current order changed.
    /// The record is locked for the write (and until the end of a transaction).
    pub fn update(&mut self, recno: u64, values: &[Value]) -> Result<()> {
        self.shared.core.read().check_values(values)?;
        self.check_unique_in_txn(values, Some(recno))?;
        self.session.write(
            &self.shared,
            Change::Update {
                recno,
                values: values.to_vec(),
            },
        )?;
        if self.recno == recno && self.positioned {
            self.rekey()?;
        }
        Ok(())
    }

    /// Replaces only the named fields of record `recno` (xBase `REPLACE f
    /// WITH v`), keeping the others — memos included — as they are. A name
    /// that is not a field is [`Error::NoSuchField`].
    pub fn update_fields(&mut self, recno: u64, fields: &[(&str, Value)]) -> Result<()> {
        let mut values = self.read(recno)?.into_values();
        let schema = self.schema();
        for (name, v) in fields {
            let i = schema.position(name).ok_or_else(|| Error::NoSuchField {
                table: self.name(),
                field: (*name).to_owned(),
            })?;
            values[i] = v.clone();
        }
        self.update(recno, &values)
    }

    /// Appends a record without moving the handle (for a writer that goes on
    /// where it is, such as order items appended during a scan); returns its
    /// recno.
    pub fn insert(&mut self, values: &[Value]) -> Result<u64> {
        self.shared.core.read().check_values(values)?;
        self.check_unique_in_txn(values, None)?;
        self.session.write(
            &self.shared,
            Change::Append {
                recno: 0,
                values: values.to_vec(),
            },
        )
    }

    /// Deletes record `recno` logically: it keeps its recno and stays readable.
    pub fn delete(&mut self, recno: u64) -> Result<()> {
        self.session.write(
            &self.shared,
            Change::SetDeleted {
                recno,
                deleted: true,
            },
        )?;
        if self.recno == recno && self.positioned {
            self.rekey()?;
        }
        Ok(())
    }

    /// Undeletes record `recno`. Refused with [`Error::DuplicateKey`] when a live
    /// record now holds its key in a unique index.
    pub fn recall(&mut self, recno: u64) -> Result<()> {
        if self.session.in_transaction() {
            if let Ok(rec) = self.read(recno) {
                if rec.is_deleted() {
                    self.check_unique_in_txn(rec.values(), Some(recno))?;
                }
            }
        }
        self.session.write(
            &self.shared,
            Change::SetDeleted {
                recno,
                deleted: false,
            },
        )?;
        if self.recno == recno && self.positioned {
            self.rekey()?;
        }
        Ok(())
    }

    /// True when record `recno` is deleted.
    pub fn is_deleted(&self, recno: u64) -> Result<bool> {
        let core = self.shared.core.read();
        Ok(self.status_in(&core, recno)? == SlotStatus::Deleted)
    }

    /// Locks record `recno` for this session (RecLock), waiting up to `timeout`
    /// for another session to release it, and returns the record as of the
    /// lock — re-read after it was taken, as xBase `RLock` re-reads, so a
    /// read-modify-write under the lock starts from the committed values.
    /// Readers are never blocked by it. A record that does not exist (for this
    /// session) is `NoSuchRecord`.
    pub fn lock(&self, recno: u64, timeout: Duration) -> Result<Record> {
        {
            let core = self.shared.core.read();
            if self.status_in(&core, recno)? == SlotStatus::Empty {
                return Err(Error::NoSuchRecord {
                    table: core.name.clone(),
                    recno,
                    count: core.record_count(),
                });
            }
        }
        self.shared.rt.locks.lock(
            self.session.id,
            &LockKey::Record(self.shared.lock_name.clone(), recno),
            timeout,
        )?;
        self.read(recno)
    }

    /// Locks record `recno` waiting up to the session's lock timeout (xBase
    /// `RLock`), and returns it as of the lock.
    pub fn rlock(&self, recno: u64) -> Result<Record> {
        self.lock(recno, self.session.timeout())
    }

    /// Seeks `key` exactly and, when found, locks the record it lands on
    /// (waiting up to the session's lock timeout) and returns it as of the
    /// lock: the read-modify-write pattern of order entry, in one call (one
    /// request to a server). None when the key is not there (the handle is on
    /// the phantom record, as after any failed seek).
    pub fn seek_lock(&mut self, key: &[Value]) -> Result<Option<Record>> {
        if !self.seek(key)? {
            return Ok(None);
        }
        self.rlock(self.recno).map(Some)
    }

    /// Releases a record lock (kept until the end of an open transaction).
    pub fn unlock(&self, recno: u64) -> bool {
        if self.session.txn.lock().is_some() {
            return false;
        }
        self.shared.rt.locks.unlock(
            self.session.id,
            &LockKey::Record(self.shared.lock_name.clone(), recno),
        )
    }

    /// Locks the whole table for this session: other sessions can read but not
    /// write or lock its records.
    pub fn lock_file(&self, timeout: Duration) -> Result<()> {
        self.shared
            .rt
            .locks
            .lock(
                self.session.id,
                &LockKey::File(self.shared.lock_name.clone()),
                timeout,
            )
            .map(|_| ())
    }

    /// Releases the file lock (kept until the end of an open transaction).
    pub fn unlock_file(&self) -> bool {
        if self.session.txn.lock().is_some() {
            return false;
        }
        self.shared.rt.locks.unlock(
            self.session.id,
            &LockKey::File(self.shared.lock_name.clone()),
        )
    }

    /// Every record of the table read under one lock: a consistent picture of the
    /// committed data (no commit is half-seen).
    pub fn snapshot(&self) -> Result<Vec<Record>> {
        let core = self.shared.core.read();
        let mut out = Vec::new();
        for r in 1..=core.record_count() {
            match core.view(r) {
                Ok(rec) => out.push(rec),
                Err(Error::NoSuchRecord { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Writes every change of this table to disk and syncs. (A logged table's
    /// commits are already durable in the log; this writes them to its files.)
    pub fn flush(&mut self) -> Result<()> {
        let _gate = self.shared.rt.gate.read();
        self.shared.core.write().flush()
    }

    /// Closes the handle. When it is the table's last, the table is flushed and
    /// marked cleanly closed, and any error doing so is returned.
    pub fn close(self) -> Result<()> {
        self.shared.close()
    }

    // ---- indexes and maintenance ----

    /// Creates an index, built from every record (unique indexes refuse a table
    /// whose live records repeat a key).
    pub fn create_index(&mut self, def: &IndexDef) -> Result<()> {
        self.create_index_with_progress(def, &mut |_, _| {})
    }

    /// [`Table::create_index`], telling `progress` (records read, total).
    pub fn create_index_with_progress(
        &mut self,
        def: &IndexDef,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        if let Some(r) = self.shared.rt.replicator() {
            let token = r.writable()?;
            if self.shared.core.read().index_pos(&def.name).is_ok() {
                return Err(Error::IndexExists {
                    table: self.name(),
                    index: def.name.clone(),
                });
            }
            return r.ddl(
                token,
                crate::db::Ddl::CreateIndex {
                    table: self.name(),
                    def: def.clone(),
                },
            );
        }
        self.create_index_here(def, progress)
    }

    /// Creates an index on this database alone (see [`Table::create_index`]).
    pub(crate) fn create_index_here(
        &mut self,
        def: &IndexDef,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let _ddl = self.shared.rt.ddl.read_recursive();
        let mut core = self.shared.core.write();
        core.create_index(def, progress)?;
        self.rewritten(&core);
        Ok(())
    }

    /// Tells the change feed the table was rewritten (its write lock held, so
    /// the event is numbered between the commits before and after it).
    fn rewritten(&self, core: &crate::table::TableCore) {
        self.shared
            .rt
            .feed
            .push_event(&core.name, crate::feed::TableEvent::Rewritten);
    }

    /// Drops an index. Handles ordered by it fall back to physical order.
    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        if let Some(r) = self.shared.rt.replicator() {
            let token = r.writable()?;
            return r.ddl(
                token,
                crate::db::Ddl::DropIndex {
                    table: self.name(),
                    name: name.to_owned(),
                },
            );
        }
        self.drop_index_here(name)
    }

    /// Drops an index on this database alone (see [`Table::drop_index`]).
    pub(crate) fn drop_index_here(&mut self, name: &str) -> Result<()> {
        {
            let _ddl = self.shared.rt.ddl.read_recursive();
            let mut core = self.shared.core.write();
            core.drop_index(name)?;
            self.rewritten(&core);
        }
        let lower = name.to_ascii_lowercase();
        self.scopes.remove(&lower);
        if self.order.as_deref() == Some(lower.as_str()) {
            self.order = None;
            self.scope = (None, None);
            self.ikey = None;
            self.hint = None;
        }
        Ok(())
    }

    /// Checks every record and index; reports at most `limit` problems.
    pub fn check(&self, limit: usize) -> Result<CheckReport> {
        self.shared.core.read().check(limit)
    }

    /// The definition of index `name`, if the table has one.
    pub fn index_def(&self, name: &str) -> Option<IndexDef> {
        let core = self.shared.core.read();
        let i = core.index_pos(name).ok()?;
        Some(core.indexes[i].spec.def.clone())
    }

    /// Refuses an operation that rewrites the table on a cluster member
    /// (see [`crate::db::replicated`]).
    fn not_replicated(&self, what: &str) -> Result<()> {
        if self.shared.rt.replicator().is_some() {
            return Err(Error::Unsupported(format!(
                "table {}: {what} on a cluster member is not replicated yet",
                self.name()
            )));
        }
        Ok(())
    }

    fn exclusive(&self, what: &str) -> Result<()> {
        self.not_replicated(what)?;
        if self.session.txn.lock().is_some() {
            return Err(Error::Transaction(format!(
                "{what} cannot run inside a transaction"
            )));
        }
        let handles = self.shared.count();
        if handles > 1 {
            return Err(Error::TableInUse {
                table: format!("{} ({what} needs the only handle)", self.name()),
                handles,
            });
        }
        Ok(())
    }

    /// After a rewrite (pack, rebuild, alter) the handle goes to the first
    /// record, as DBFCDX does after `PACK`.
    fn after_rewrite(&mut self) -> Result<()> {
        self.ikey = None;
        self.hint = None;
        self.first().map(drop)
    }

    /// Re-creates every index from the data, recovering what damaged data pages
    /// still hold. Needs the only handle on the table.
    pub fn rebuild(&mut self) -> Result<RewriteReport> {
        self.exclusive("rebuild")?;
        let r = {
            let _ddl = self.shared.rt.ddl.read_recursive();
            let mut core = self.shared.core.write();
            let r = core.rebuild()?;
            self.rewritten(&core);
            r
        };
        self.after_rewrite()?;
        Ok(r)
    }

    /// Removes deleted records for good, renumbering the rest. Needs the only
    /// handle on the table; on failure the table is left as it was.
    pub fn pack(&mut self) -> Result<RewriteReport> {
        self.exclusive("pack")?;
        let r = {
            let _ddl = self.shared.rt.ddl.read_recursive();
            let mut core = self.shared.core.write();
            let r = core.pack()?;
            self.rewritten(&core);
            r
        };
        self.after_rewrite()?;
        Ok(r)
    }

    /// Changes the table's fields (see the crate docs for conversions). Needs the
    /// only handle on the table; on failure the table is left as it was.
    pub fn alter(&mut self, schema: &Schema) -> Result<RewriteReport> {
        self.exclusive("alter")?;
        let r = {
            let _ddl = self.shared.rt.ddl.read_recursive();
            let mut core = self.shared.core.write();
            let r = core.alter(schema)?;
            self.rewritten(&core);
            r
        };
        self.after_rewrite()?;
        Ok(r)
    }

    // ---- position ----

    /// The current record number (`record_count + 1` on the phantom record
    /// past the last one).
    pub fn recno(&self) -> u64 {
        self.recno
    }

    /// True after moving back past the first visible record (the handle stays
    /// on it), or when there is no visible record.
    pub fn bof(&self) -> bool {
        self.bof
    }

    /// True after moving past the last visible record, onto the phantom record.
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// True when the handle stands on a real record, false on the phantom
    /// record (`recno() == record_count() + 1`), whose fields read blank.
    pub fn on_record(&self) -> bool {
        self.positioned
    }

    /// True when the last seek found its key (xBase `Found()`); every other
    /// move clears it.
    pub fn found(&self) -> bool {
        self.found
    }

    /// The current order: an index name, or None for physical (recno) order.
    pub fn order(&self) -> Option<&str> {
        self.order.as_deref()
    }

    /// Sets the order by index name (None: physical order). The handle stays
    /// where it is (bof and eof too). Each index keeps its own scope: leaving
    /// an order and coming back finds its scope still in force; choosing the
    /// order already in force changes nothing.
    pub fn set_order(&mut self, index: Option<&str>) -> Result<()> {
        let order = match index {
            Some(name) => {
                let core = self.shared.core.read();
                let i = core.index_pos(name)?;
                Some(core.indexes[i].name().to_owned())
            }
            None => None,
        };
        if order == self.order {
            return Ok(());
        }
        // Everything that can fail first: a failed switch leaves the handle
        // as it was.
        let ikey = if self.positioned {
            self.key_in(order.as_deref(), self.recno)?
        } else {
            None
        };
        let scope = std::mem::take(&mut self.scope);
        if let Some(old) = self.order.take() {
            if scope != (None, None) {
                self.scopes.insert(old, scope);
            }
        }
        self.scope = order
            .as_ref()
            .and_then(|o| self.scopes.remove(o))
            .unwrap_or_default();
        self.order = order;
        self.ikey = ikey;
        self.hint = None;
        Ok(())
    }

    /// Restricts navigation in the current index to keys between `lower` and
    /// `upper` (each a partial key: leading segment values, the last possibly a
    /// prefix of a Char segment; None leaves that end open).
    pub fn set_scope(&mut self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<()> {
        let core = self.shared.core.read();
        let i = self.order_index(&core)?;
        let enc = |v: Option<&[Value]>| {
            v.map(|v| core.indexes[i].spec.seek_key(&core.name, v))
                .transpose()
        };
        self.scope = (enc(lower)?, enc(upper)?);
        Ok(())
    }

    /// Removes the current order's scope.
    pub fn clear_scope(&mut self) {
        self.scope = (None, None);
    }

    /// Shows only records for which `filter` returns true (xBase `SET FILTER`).
    pub fn set_filter(&mut self, filter: Option<Filter>) {
        self.filter = filter;
    }

    /// Shows only records that satisfy `condition` — the filter a client can send
    /// over the network, since it is data rather than code.
    pub fn set_filter_condition(&mut self, condition: Option<&Condition>) -> Result<()> {
        self.filter = match condition {
            None => None,
            Some(c) => {
                let p = c.predicate(&self.name(), &self.schema())?;
                Some(Box::new(move |r: &Record| p(r.values())))
            }
        };
        Ok(())
    }

    pub(super) fn hide_deleted(&self) -> bool {
        self.session
            .hide_deleted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current index's position in the table, or an error in physical order.
    pub(super) fn order_index(&self, core: &TableCore) -> Result<usize> {
        match &self.order {
            Some(name) => core.index_pos(name),
            None => Err(Error::Unsupported(format!(
                "table {}: this needs an index order (set_order)",
                core.name
            ))),
        }
    }

    pub(super) fn set_on(&mut self, recno: u64, ikey: Option<Vec<u8>>) {
        self.recno = recno;
        self.ikey = ikey;
        self.hint = None;
        self.bof = false;
        self.eof = false;
        self.positioned = true;
    }

    /// Onto the phantom record past the last one (eof; bof left to the caller).
    pub(super) fn set_eof(&mut self, count: u64) {
        self.recno = count + 1;
        self.ikey = None;
        self.hint = None;
        self.walked.set(None);
        self.eof = true;
        self.positioned = false;
    }

    /// Puts the handle on `recno`, with its key in the current order.
    pub(super) fn reposition(&mut self, recno: u64) -> Result<()> {
        let ikey = self.key_in_order(recno)?;
        self.set_on(recno, ikey);
        self.found = false;
        Ok(())
    }

    /// Recomputes the current record's key in the current order (after the
    /// record or the order changed); the position and its flags stay.
    pub(super) fn rekey(&mut self) -> Result<()> {
        self.hint = None;
        self.ikey = if self.positioned {
            self.key_in_order(self.recno)?
        } else {
            None
        };
        Ok(())
    }

    fn key_in_order(&self, recno: u64) -> Result<Option<Vec<u8>>> {
        self.key_in(self.order.as_deref(), recno)
    }

    /// Record `recno`'s key in index `order` (None: physical order, no key).
    fn key_in(&self, order: Option<&str>, recno: u64) -> Result<Option<Vec<u8>>> {
        let Some(name) = order else {
            return Ok(None);
        };
        let core = self.shared.core.read();
        let i = core.index_pos(name)?;
        let rec = self.read_in(&core, recno)?;
        Ok(core.key_of(i, rec.values(), recno, rec.is_deleted()))
    }

    /// The handle's position, to put back with [`Table::restore_cursor`].
    pub fn cursor_state(&self) -> CursorState {
        CursorState {
            recno: self.recno,
            bof: self.bof,
            eof: self.eof,
            positioned: self.positioned,
            found: self.found,
            order: self.order.clone(),
            ikey: self.ikey.clone(),
        }
    }

    /// Sets the bof, eof and found flags of a position restored for a remote
    /// client (the flags it saw; the record is the one the handle is on).
    pub fn set_flags(&mut self, bof: bool, eof: bool, found: bool) {
        self.bof = bof;
        self.eof = eof;
        self.found = found;
    }

    /// Puts the handle exactly where another handle on the same data said it
    /// was: on record `recno` (`on_record`), or on the phantom numbered
    /// `recno` — even if a record of that number exists by now — with the
    /// given flags. What a copy of the table uses to take a position over.
    pub fn place(
        &mut self,
        recno: u64,
        bof: bool,
        eof: bool,
        found: bool,
        on_record: bool,
    ) -> Result<()> {
        if on_record {
            self.goto(recno)?;
        } else {
            self.recno = recno;
            self.ikey = None;
            self.hint = None;
            self.walked.set(None);
            self.positioned = false;
        }
        self.set_flags(bof, eof, found);
        Ok(())
    }

    /// Puts the handle back where [`Table::cursor_state`] saw it; refused when
    /// the order changed since.
    pub fn restore_cursor(&mut self, state: &CursorState) -> Result<()> {
        if state.order != self.order {
            return Err(Error::Unsupported(format!(
                "table {}: a position saved in order {:?} cannot be restored in order {:?}",
                self.name(),
                state.order,
                self.order
            )));
        }
        self.recno = state.recno;
        self.bof = state.bof;
        self.eof = state.eof;
        self.positioned = state.positioned;
        self.found = state.found;
        self.ikey = state.ikey.clone();
        self.hint = None;
        Ok(())
    }

    /// Positions on record `recno` (deleted or not, in scope or not: xBase
    /// `dbGoto` ignores SET DELETED, the filter and the scope). A recno out of
    /// range — 0, past the last record, or one another session's open
    /// transaction reserved — lands on the phantom record with both bof and
    /// eof set, as in xBase; it is not an error ([`Table::read`] stays strict).
    pub fn goto(&mut self, recno: u64) -> Result<()> {
        let exists = {
            let core = self.shared.core.read();
            recno >= 1
                && recno <= self.visible_count(&core)
                && self.status_in(&core, recno)? != SlotStatus::Empty
        };
        if exists {
            self.reposition(recno)
        } else {
            let count = self.visible_count(&self.shared.core.read());
            self.set_eof(count);
            self.bof = true;
            self.found = false;
            Ok(())
        }
    }

    /// The record the handle is on. On the phantom record past the last one
    /// (eof) this is a blank record — blank Char, zero, the empty date, false,
    /// empty memos — numbered `record_count() + 1`, as xBase reads fields at
    /// eof; [`Table::on_record`] tells the two apart.
    pub fn record(&self) -> Result<Record> {
        if !self.positioned {
            let schema = self.schema();
            return Ok(Record::new(
                self.recno,
                false,
                schema.empty_record(),
                schema,
            ));
        }
        self.read(self.recno)
    }
}
