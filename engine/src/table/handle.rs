//! The table handle: record operations and a cursor in physical (recno) order.
//!
//! Each handle keeps its own position, so several handles on one table (xBase work
//! areas, c-tree ISAM contexts) move independently. Navigation follows xBase:
//!
//! - skipping past the last record sets `eof`, and the position becomes
//!   `record_count + 1` (the phantom record);
//! - skipping back from the first record sets `bof` and stays on that record;
//! - skipping back from `eof` lands on the last record;
//! - on an empty table (or when every record is hidden) `first`/`last` set both.
//!
//! With the session's hide-deleted option on (xBase `SET DELETED ON`), deleted
//! records are skipped by every move except `goto`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{TableCore, TableInfo};
use crate::error::{Error, Result};
use crate::record::{Record, SlotStatus};
use crate::schema::{Schema, Value};

/// Cursor settings shared by a session's handles.
#[derive(Debug, Default)]
pub(crate) struct CursorOptions {
    pub hide_deleted: AtomicBool,
}

/// An open table shared by every handle on it. Closed cleanly when the last
/// handle goes.
#[derive(Debug)]
pub(crate) struct TableShared {
    pub core: RwLock<TableCore>,
    /// Keeps the database (and its owner lock) alive while the table is open.
    pub _keepalive: Arc<dyn std::any::Any + Send + Sync>,
}

impl TableShared {
    /// Flushes and marks the table cleanly closed.
    pub fn close(&self) -> Result<()> {
        self.core.write().close()
    }
}

impl Drop for TableShared {
    fn drop(&mut self) {
        let core = self.core.get_mut();
        if let Err(e) = core.close() {
            tracing::error!(table = %core.name, error = %e, "table not closed cleanly; it will be verified at next open");
        }
    }
}

/// A handle on an open table, with its own position.
///
/// ```
/// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// let schema = Schema::new(vec![Field::new("NAME", FieldType::Char(10))]);
/// db.create_table("people", &schema, TableOptions::default())?;
/// let session = db.session();
/// let mut t = session.open_table("people")?;
/// let r = t.append(&[Value::from("Ana")])?;
/// assert_eq!(t.read(r)?.get("NAME"), Some(&Value::from("Ana       ")));
/// assert!(t.first()? && t.recno() == r);
/// assert!(!t.next()? && t.eof());
/// # Ok::<(), raiz_engine::Error>(())
/// ```
pub struct Table {
    shared: Arc<TableShared>,
    opts: Arc<CursorOptions>,
    recno: u64,
    bof: bool,
    eof: bool,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.shared.core.read().name)
            .field("recno", &self.recno)
            .field("bof", &self.bof)
            .field("eof", &self.eof)
            .finish()
    }
}

impl Table {
    pub(crate) fn new(shared: Arc<TableShared>, opts: Arc<CursorOptions>) -> Table {
        Table {
            shared,
            opts,
            recno: 0,
            bof: true,
            eof: true,
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

    /// Logically deleted records.
    pub fn deleted_count(&self) -> u64 {
        self.shared.core.read().body.deleted_count
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
        }
    }

    /// Appends a record; returns its recno. The handle is positioned on it.
    pub fn append(&mut self, values: &[Value]) -> Result<u64> {
        let recno = self.shared.core.write().append(values)?;
        self.set_on(recno);
        Ok(recno)
    }

    /// Reads record `recno` (memo fields hold references; see [`Table::read_memo`]).
    pub fn read(&self, recno: u64) -> Result<Record> {
        self.shared.core.read().read(recno)
    }

    /// Reads the memo in `field` of record `recno`.
    pub fn read_memo(&self, recno: u64, field: &str) -> Result<Vec<u8>> {
        self.shared.core.read().read_memo(recno, field)
    }

    /// Replaces record `recno`'s values. To keep a memo unchanged pass the
    /// [`crate::Memo::Stored`] reference read from this record.
    pub fn update(&mut self, recno: u64, values: &[Value]) -> Result<()> {
        self.shared.core.write().update(recno, values)
    }

    /// Deletes record `recno` logically: it keeps its recno and stays readable.
    pub fn delete(&mut self, recno: u64) -> Result<()> {
        self.shared
            .core
            .write()
            .set_deleted(recno, true)
            .map(|_| ())
    }

    /// Undeletes record `recno`.
    pub fn recall(&mut self, recno: u64) -> Result<()> {
        self.shared
            .core
            .write()
            .set_deleted(recno, false)
            .map(|_| ())
    }

    /// True when record `recno` is deleted.
    pub fn is_deleted(&self, recno: u64) -> Result<bool> {
        Ok(self.shared.core.read().status(recno)? == SlotStatus::Deleted)
    }

    /// Writes every change of this table to disk and syncs.
    pub fn flush(&mut self) -> Result<()> {
        self.shared.core.write().flush()
    }

    /// Closes the handle. When it is the table's last, the table is flushed and
    /// marked cleanly closed, and any error doing so is returned.
    pub fn close(self) -> Result<()> {
        // The database's registry holds only a weak reference: a count of one
        // means this is the last handle.
        if Arc::strong_count(&self.shared) == 1 {
            return self.shared.close();
        }
        Ok(())
    }

    // ---- navigation ----

    /// The current record number (`record_count + 1` at eof, 0 before any move).
    pub fn recno(&self) -> u64 {
        self.recno
    }

    /// True after moving back past the first record, or on an empty table.
    pub fn bof(&self) -> bool {
        self.bof
    }

    /// True after moving past the last record, or on an empty table.
    pub fn eof(&self) -> bool {
        self.eof
    }

    fn hide_deleted(&self) -> bool {
        self.opts.hide_deleted.load(Ordering::Relaxed)
    }

    fn set_on(&mut self, recno: u64) {
        self.recno = recno;
        self.bof = false;
        self.eof = false;
    }

    fn set_eof(&mut self, count: u64) {
        self.recno = count + 1;
        self.eof = true;
    }

    /// First visible recno in `range` order.
    fn find(&self, core: &TableCore, mut range: impl Iterator<Item = u64>) -> Result<Option<u64>> {
        if !self.hide_deleted() {
            return Ok(range.next());
        }
        for r in range {
            if core.status(r)? == SlotStatus::Live {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Moves to the first visible record. Returns false (bof and eof) if none.
    pub fn first(&mut self) -> Result<bool> {
        let shared = self.shared.clone();
        let core = shared.core.read();
        let count = core.record_count();
        match self.find(&core, 1..=count)? {
            Some(r) => self.set_on(r),
            None => {
                self.set_eof(count);
                self.bof = true;
            }
        }
        Ok(!self.eof)
    }

    /// Moves to the last visible record. Returns false (bof and eof) if none.
    pub fn last(&mut self) -> Result<bool> {
        let shared = self.shared.clone();
        let core = shared.core.read();
        let count = core.record_count();
        match self.find(&core, (1..=count).rev())? {
            Some(r) => self.set_on(r),
            None => {
                self.set_eof(count);
                self.bof = true;
            }
        }
        Ok(!self.eof)
    }

    /// Moves to the next visible record; past the last one sets eof.
    // The xBase name; a cursor move that can fail is not an `Iterator`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<bool> {
        let shared = self.shared.clone();
        let core = shared.core.read();
        let count = core.record_count();
        if self.eof {
            self.set_eof(count);
            return Ok(false);
        }
        match self.find(&core, self.recno + 1..=count)? {
            Some(r) => self.set_on(r),
            None => {
                self.bof = false;
                self.set_eof(count);
            }
        }
        Ok(!self.eof)
    }

    /// Moves to the previous visible record; from eof this is the last one, and
    /// before the first one sets bof (staying on the first).
    pub fn prev(&mut self) -> Result<bool> {
        if self.eof {
            let found = self.last()?;
            if !found {
                return Ok(false);
            }
            return Ok(true);
        }
        let shared = self.shared.clone();
        let core = shared.core.read();
        match self.find(&core, (1..self.recno).rev())? {
            Some(r) => self.set_on(r),
            None => {
                self.bof = true;
                let count = core.record_count();
                if let Some(r) = self.find(&core, self.recno..=count)? {
                    self.recno = r;
                } else {
                    self.set_eof(count);
                }
            }
        }
        Ok(!self.bof && !self.eof)
    }

    /// Moves `n` visible records forward (or back when negative); stops at eof or
    /// bof. Returns true when it lands on a record without reaching either.
    pub fn skip(&mut self, n: i64) -> Result<bool> {
        for _ in 0..n.unsigned_abs() {
            let moved = if n > 0 { self.next()? } else { self.prev()? };
            if !moved {
                return Ok(false);
            }
        }
        Ok(!self.bof && !self.eof)
    }

    /// Positions on record `recno` (deleted or not).
    pub fn goto(&mut self, recno: u64) -> Result<()> {
        self.shared.core.read().status(recno)?;
        self.set_on(recno);
        Ok(())
    }

    /// The record the handle is on.
    pub fn record(&self) -> Result<Record> {
        if self.eof || self.recno == 0 {
            return Err(Error::NoCurrentRecord {
                table: self.name(),
                at: if self.eof { "eof" } else { "bof" },
            });
        }
        self.read(self.recno)
    }
}
