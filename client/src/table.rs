//! [`Table`]: a handle with its own position, embedded or on a server.
//!
//! Remote handles read ahead: a move returns the record it lands on and, for
//! sequential work, the next records in the same direction, which the
//! following `next`/`prev` calls consume without a round trip. The server's
//! cursor then sits further on than the application's; the next request that
//! depends on the position carries the application's recno (`sync`) so the
//! server puts its cursor back first. Read-ahead is dropped when this session
//! writes (it may hold what the write changed); records written by *other*
//! sessions after a batch was read show up from the next batch on, as with
//! any cursor that buffers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use raiz_engine::index::{Condition, IndexDef};
use raiz_engine::table::{CheckReport, RewriteReport};
use raiz_engine::{Record, Schema, TableInfo, Value};

use crate::cache::route::{CachedSession, CachedTable};
use crate::error::Result;
use crate::proto::{
    BatchOutcome, BatchRequest, NavOp, Position, Reply, Request, TableOp, TableOut, WireRecord,
};
use crate::session::Remote;

/// Largest read-ahead of one reply, in records.
pub const MAX_READ_AHEAD: u32 = 1024;
const FIRST_SCAN_BATCH: u32 = 16;
const FIRST_SEEK_BATCH: u32 = 4;
const FIRST_RANGE_BATCH: u32 = 64;

/// A handle on an open table (see the crate docs for the modes).
#[derive(Debug)]
pub struct Table {
    kind: TableKind,
}

#[derive(Debug)]
enum TableKind {
    Embedded {
        t: raiz_engine::Table,
        session: raiz_engine::Session,
    },
    Remote(RemoteTable),
    /// A table a cache node caches: its copy or the server answers.
    Cached(Box<CachedTable>),
}

#[derive(Debug)]
struct RemoteTable {
    remote: Arc<Remote>,
    handle: u32,
    name: String,
    schema: Arc<Schema>,
    order: Option<String>,
    cur: Mutex<Cursor>,
    closed: bool,
}

impl Drop for RemoteTable {
    fn drop(&mut self) {
        if !self.closed {
            // Waits for the reply, so that once the handle is gone the table
            // is closed on the server too (dropping it right after works).
            let _ = self.remote.call(&Request::Table {
                handle: self.handle,
                sync: None,
                op: TableOp::Close,
            });
        }
    }
}

/// The application's view of a remote handle's position and its read-ahead.
#[derive(Debug)]
struct Cursor {
    pos: Position,
    /// The record at `pos`, with the write epoch it was read at.
    current: Option<(u64, Record)>,
    ahead: VecDeque<WireRecord>,
    forward: bool,
    /// Where the server's cursor stopped when read-ahead reached the end.
    end: Option<Position>,
    /// The write epoch `ahead` was read at.
    epoch: u64,
    /// The server's cursor is not at `pos`.
    server_moved: bool,
    /// The next request carries the position whatever it is (the position
    /// came from elsewhere: a cache node's copy).
    force_sync: bool,
    max_ahead: u32,
    scan_batch: u32,
    seek_batch: u32,
    /// The last fill came from a seek and this many of its records were used.
    seek_fill: Option<(usize, usize)>,
}

impl Cursor {
    fn new() -> Cursor {
        Cursor {
            pos: Position::default(),
            current: None,
            ahead: VecDeque::new(),
            forward: true,
            end: None,
            epoch: 0,
            server_moved: false,
            force_sync: false,
            max_ahead: MAX_READ_AHEAD,
            scan_batch: FIRST_SCAN_BATCH,
            seek_batch: FIRST_SEEK_BATCH,
            seek_fill: None,
        }
    }

    /// Drops the read-ahead; returns the recno the server must go back to.
    fn take_sync(&mut self) -> Option<Position> {
        self.ahead.clear();
        self.end = None;
        let moved = std::mem::take(&mut self.server_moved);
        let forced = std::mem::take(&mut self.force_sync);
        ((moved && self.pos.on_record) || forced).then_some(self.pos)
    }

    fn learn_seek(&mut self) {
        if let Some((filled, used)) = self.seek_fill.take() {
            if used == 0 {
                self.seek_batch = (self.seek_batch / 2).max(1);
            } else if used >= filled {
                self.seek_batch = (self.seek_batch * 2).min(MAX_READ_AHEAD);
            }
        }
    }

    fn ahead_for(&mut self, op: &NavOp) -> u32 {
        if self.max_ahead == 0 {
            return 0;
        }
        let n = match op {
            NavOp::First | NavOp::Last => {
                self.scan_batch = FIRST_SCAN_BATCH;
                self.scan_batch
            }
            NavOp::Next | NavOp::Prev => {
                let n = self.scan_batch;
                self.scan_batch = (self.scan_batch * 2).min(MAX_READ_AHEAD);
                n
            }
            NavOp::Seek(_) | NavOp::SeekSoft(_) | NavOp::SeekLast(_) | NavOp::SeekLastSoft(_) => {
                self.learn_seek();
                self.scan_batch = FIRST_SCAN_BATCH;
                self.seek_batch
            }
            NavOp::Skip(_) | NavOp::Goto(_) => 0,
        };
        n.min(self.max_ahead)
    }
}

/// Standing on `recno` after a step (found is cleared by any move but a seek).
fn on(recno: u64) -> Position {
    Position {
        recno,
        bof: false,
        eof: false,
        found: false,
        on_record: true,
    }
}

impl RemoteTable {
    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        self.cur.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, w: WireRecord) -> Record {
        Record::from_parts(w.recno, w.deleted, w.values, self.schema.clone())
    }

    fn call(&self, sync: Option<Position>, op: TableOp) -> Result<(Position, TableOut)> {
        let req = Request::Table {
            handle: self.handle,
            sync,
            op,
        };
        match self.remote.call(&req)? {
            Reply::Table { at, out } => Ok((at, out)),
            other => Err(self.remote.unexpected(&other)),
        }
    }

    /// An operation that neither depends on nor moves the position.
    fn op(&self, op: TableOp) -> Result<TableOut> {
        Ok(self.call(None, op)?.1)
    }

    /// The handle's current record, if `rec` is it, is `rec` now (a lock
    /// re-read it).
    fn refresh_current(&self, rec: &Record) {
        let epoch = self.remote.epoch();
        let mut c = self.cursor();
        if c.pos.on_record && c.pos.recno == rec.recno() {
            c.current = Some((epoch, rec.clone()));
        }
    }

    /// A write that does not move the handle: sent without waiting inside a
    /// transaction when the session defers writes (its error then comes with
    /// the next request that waits), otherwise like [`RemoteTable::write`].
    fn write_maybe_deferred(&self, op: TableOp) -> Result<()> {
        if !self.remote.defer_writes() {
            return self.write(op).map(drop);
        }
        self.remote.wrote();
        let mut c = self.cursor();
        let sync = c.take_sync();
        c.current = None;
        let req = Request::Table {
            handle: self.handle,
            sync,
            op,
        };
        self.remote.conn().send_deferred(&req)
    }

    /// A write: it may move the handle (an append lands on the new record)
    /// and makes any read-ahead stale, so it goes positioned.
    fn write(&self, op: TableOp) -> Result<TableOut> {
        self.remote.wrote();
        self.positioned(op)
    }

    /// An operation that depends on or resets the position.
    fn positioned(&self, op: TableOp) -> Result<TableOut> {
        let mut c = self.cursor();
        let sync = c.take_sync();
        c.current = None;
        match self.call(sync, op) {
            Ok((at, out)) => {
                c.pos = at;
                Ok(out)
            }
            Err(e) => {
                // A failed operation may still have moved the handle.
                if let Ok((at, _)) = self.call(None, TableOp::Position) {
                    c.pos = at;
                }
                Err(e)
            }
        }
    }

    fn nav(&self, op: NavOp) -> Result<bool> {
        let epoch = self.remote.epoch();
        let mut c = self.cursor();
        let forward = op.forward();
        let step = matches!(op, NavOp::Next | NavOp::Prev);
        if step
            && c.forward == forward
            && c.epoch == epoch
            && (!c.ahead.is_empty() || c.end.is_some())
        {
            if let Some(fill) = &mut c.seek_fill {
                fill.1 += 1;
            }
            if let Some(w) = c.ahead.pop_front() {
                c.pos = on(w.recno);
                let rec = self.record(w);
                c.current = Some((epoch, rec));
                c.server_moved = !c.ahead.is_empty() || c.end.is_some();
                return Ok(true);
            }
            let end = c.end.take().unwrap_or_default();
            c.pos = end;
            c.current = None;
            c.server_moved = false;
            return Ok(false);
        }
        let sync = c.take_sync();
        let ahead = c.ahead_for(&op);
        let seek = matches!(
            op,
            NavOp::Seek(_) | NavOp::SeekSoft(_) | NavOp::SeekLast(_) | NavOp::SeekLastSoft(_)
        );
        let (at, out) = match self.call(sync, TableOp::Nav { op, ahead }) {
            Ok(r) => r,
            Err(e) => {
                // The server may have moved before failing: ask where its
                // cursor is (one more round trip, on errors only).
                c.current = None;
                if let Ok((at, _)) = self.call(None, TableOp::Position) {
                    c.pos = at;
                }
                return Err(e);
            }
        };
        let TableOut::Moved {
            found,
            current,
            ahead,
            end,
        } = out
        else {
            return Err(self.remote.unexpected(&Reply::Table { at, out }));
        };
        c.pos = at;
        c.current = current.map(|w| (epoch, self.record(w)));
        c.seek_fill = seek.then_some((ahead.len(), 0));
        c.server_moved = !ahead.is_empty() || end.is_some();
        c.ahead = ahead.into();
        c.end = end;
        c.forward = forward;
        c.epoch = epoch;
        Ok(found)
    }
}

macro_rules! out {
    ($rt:expr, $out:expr, $pat:pat => $val:expr) => {
        match $out {
            $pat => Ok($val),
            other => Err($rt.remote.unexpected(&Reply::Table {
                at: Position::default(),
                out: other,
            })),
        }
    };
}

impl Table {
    pub(crate) fn embedded(t: raiz_engine::Table, session: raiz_engine::Session) -> Table {
        Table {
            kind: TableKind::Embedded { t, session },
        }
    }

    pub(crate) fn remote(
        remote: Arc<Remote>,
        handle: u32,
        name: String,
        schema: Schema,
        at: Position,
    ) -> Table {
        let mut cursor = Cursor::new();
        cursor.pos = at;
        Table {
            kind: TableKind::Remote(RemoteTable {
                remote,
                handle,
                name,
                schema: Arc::new(schema),
                order: None,
                cur: Mutex::new(cursor),
                closed: false,
            }),
        }
    }

    /// The table's name.
    pub fn name(&self) -> String {
        match &self.kind {
            TableKind::Cached(c) => c.name(),
            TableKind::Embedded { t, .. } => t.name(),
            TableKind::Remote(r) => r.name.clone(),
        }
    }

    /// The table's fields.
    pub fn schema(&self) -> Arc<Schema> {
        match &self.kind {
            TableKind::Cached(c) => c.schema(),
            TableKind::Embedded { t, .. } => t.schema(),
            TableKind::Remote(r) => r.schema.clone(),
        }
    }

    /// Sets the most records one remote reply may read ahead (0: one record
    /// per round trip, as without read-ahead). No effect embedded.
    pub fn set_read_ahead(&mut self, max: u32) {
        match &mut self.kind {
            TableKind::Remote(r) => {
                let mut c = r.cursor();
                c.max_ahead = max.min(MAX_READ_AHEAD);
            }
            TableKind::Cached(c) => c.set_read_ahead(max),
            TableKind::Embedded { .. } => {}
        }
    }

    /// A handle on a table a cache node caches.
    pub(crate) fn cached(
        remote: Arc<Remote>,
        session: Arc<CachedSession>,
        name: &str,
    ) -> Result<Table> {
        Ok(Table {
            kind: TableKind::Cached(Box::new(CachedTable::open(remote, session, name)?)),
        })
    }

    /// The engine handle of an embedded table.
    pub(crate) fn engine_mut(&mut self) -> Option<&mut raiz_engine::Table> {
        match &mut self.kind {
            TableKind::Embedded { t, .. } => Some(t),
            _ => None,
        }
    }

    /// Puts a remote handle where `p` says (the next request carries it),
    /// dropping its read-ahead; embedded, goes to the record.
    pub(crate) fn put_position(&mut self, p: Position) -> Result<()> {
        match &mut self.kind {
            TableKind::Remote(r) => {
                let mut c = r.cursor();
                c.ahead.clear();
                c.end = None;
                c.current = None;
                c.pos = p;
                c.force_sync = true;
                Ok(())
            }
            TableKind::Embedded { t, .. } => {
                Ok(t.place(p.recno, p.bof, p.eof, p.found, p.on_record)?)
            }
            TableKind::Cached(_) => Ok(()),
        }
    }

    /// Header information and counts.
    pub fn info(&self) -> Result<TableInfo> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.info()),
            TableKind::Embedded { t, .. } => Ok(t.info()),
            TableKind::Remote(r) => out!(r, r.op(TableOp::Info)?, TableOut::Info(i) => *i),
        }
    }

    /// Records, deleted ones included.
    pub fn record_count(&self) -> Result<u64> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.record_count()),
            TableKind::Embedded { t, .. } => Ok(t.record_count()),
            TableKind::Remote(_) => Ok(self.info()?.record_count),
        }
    }

    /// Logically deleted records.
    pub fn deleted_count(&self) -> Result<u64> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.deleted_count()),
            TableKind::Embedded { t, .. } => Ok(t.deleted_count()),
            TableKind::Remote(_) => Ok(self.info()?.deleted_count),
        }
    }

    /// Appends a record; returns its recno.
    pub fn append(&mut self, values: &[Value]) -> Result<u64> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.append(values)),
            TableKind::Embedded { t, .. } => Ok(t.append(values)?),
            TableKind::Remote(r) => {
                let out = r.write(TableOp::Append(values.to_vec()))?;
                let rec = out!(r, out, TableOut::Appended(w) => r.record(w))?;
                let recno = rec.recno();
                // The handle is on it: record() needs no request.
                r.cursor().current = Some((r.remote.epoch(), rec));
                Ok(recno)
            }
        }
    }

    /// Appends several records; remote, the requests are pipelined (sent
    /// without waiting for each reply). Each append is its own write, as with
    /// [`Table::append`]: wrap the call in a transaction for all or nothing.
    pub fn append_many(&mut self, rows: &[Vec<Value>]) -> Result<Vec<u64>> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.append_many(rows)),
            TableKind::Embedded { t, .. } => Ok(rows
                .iter()
                .map(|v| t.append(v))
                .collect::<raiz_engine::Result<_>>()?),
            TableKind::Remote(r) => {
                r.remote.wrote();
                let mut c = r.cursor();
                let mut sync = c.take_sync();
                c.current = None;
                let mut recnos = Vec::with_capacity(rows.len());
                for chunk in rows.chunks(256) {
                    let reqs = chunk.iter().map(|v| Request::Table {
                        handle: r.handle,
                        sync: sync.take(),
                        op: TableOp::Append(v.clone()),
                    });
                    let replies = r.remote.conn().pipeline(reqs);
                    for reply in replies? {
                        match reply {
                            Reply::Table {
                                at,
                                out: TableOut::Appended(w),
                            } => {
                                c.pos = at;
                                recnos.push(w.recno);
                            }
                            other => return Err(r.remote.unexpected(&other)),
                        }
                    }
                }
                Ok(recnos)
            }
        }
    }

    /// Reads a record (memo fields as references; see [`Table::read_memo`]).
    pub fn read(&self, recno: u64) -> Result<Record> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.read(recno)),
            TableKind::Embedded { t, .. } => Ok(t.read(recno)?),
            TableKind::Remote(r) => {
                out!(r, r.op(TableOp::Read(recno))?, TableOut::Record(w) => r.record(w))
            }
        }
    }

    /// Reads a memo field's bytes.
    pub fn read_memo(&self, recno: u64, field: &str) -> Result<Vec<u8>> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.read_memo(recno, field)),
            TableKind::Embedded { t, .. } => Ok(t.read_memo(recno, field)?),
            TableKind::Remote(r) => {
                out!(r, r.op(TableOp::ReadMemo { recno, field: field.to_owned() })?,
                TableOut::Memo(m) => m)
            }
        }
    }

    /// Replaces a record's values (deferred remotely inside a transaction
    /// when the session asks for it: [`crate::Session::set_deferred_writes`]).
    pub fn update(&mut self, recno: u64, values: &[Value]) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| {
                let values = server_memos(t, recno, values)?;
                t.update(recno, &values)
            }),
            TableKind::Embedded { t, .. } => Ok(t.update(recno, values)?),
            TableKind::Remote(r) => r.write_maybe_deferred(TableOp::Update {
                recno,
                values: values.to_vec(),
            }),
        }
    }

    /// Replaces only the named fields of a record (xBase `REPLACE`), keeping
    /// the others — memos included; deferred like [`Table::update`].
    pub fn update_fields(&mut self, recno: u64, fields: &[(&str, Value)]) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| {
                if fields
                    .iter()
                    .any(|(_, v)| matches!(v, Value::Memo(raiz_engine::Memo::Stored(_))))
                {
                    // Keeping a memo read from a copy: keep the server's.
                    let current = t.read(recno)?;
                    let schema = t.schema();
                    let fields: Vec<(&str, Value)> = fields
                        .iter()
                        .map(|(n, v)| match v {
                            Value::Memo(raiz_engine::Memo::Stored(_)) => {
                                let i = schema.position(n).unwrap_or(usize::MAX);
                                let kept = current.values().get(i).cloned().unwrap_or(v.clone());
                                (*n, kept)
                            }
                            v => (*n, v.clone()),
                        })
                        .collect();
                    t.update_fields(recno, &fields)
                } else {
                    t.update_fields(recno, fields)
                }
            }),
            TableKind::Embedded { t, .. } => Ok(t.update_fields(recno, fields)?),
            TableKind::Remote(r) => r.write_maybe_deferred(TableOp::UpdateFields {
                recno,
                fields: fields
                    .iter()
                    .map(|(f, v)| ((*f).to_owned(), v.clone()))
                    .collect(),
            }),
        }
    }

    /// Appends a record without moving the handle. Deferred like
    /// [`Table::update`] (its recno is then not known here: use
    /// [`Table::append`] when you need it).
    pub fn insert(&mut self, values: &[Value]) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.insert(values)),
            TableKind::Embedded { t, .. } => t.insert(values).map(drop).map_err(Into::into),
            TableKind::Remote(r) => r.write_maybe_deferred(TableOp::Insert(values.to_vec())),
        }
    }

    /// Logically deletes a record (deferred like [`Table::update`]).
    pub fn delete(&mut self, recno: u64) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.delete(recno)),
            TableKind::Embedded { t, .. } => Ok(t.delete(recno)?),
            TableKind::Remote(r) => r.write_maybe_deferred(TableOp::Delete(recno)),
        }
    }

    /// Undeletes a record (deferred like [`Table::update`]).
    pub fn recall(&mut self, recno: u64) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.recall(recno)),
            TableKind::Embedded { t, .. } => Ok(t.recall(recno)?),
            TableKind::Remote(r) => r.write_maybe_deferred(TableOp::Recall(recno)),
        }
    }

    /// Locks a record, waiting up to the session's lock timeout (xBase
    /// `RLock`), and returns it as of the lock.
    pub fn rlock(&self, recno: u64) -> Result<Record> {
        match &self.kind {
            TableKind::Cached(c) => c.server(|t| t.rlock(recno)),
            TableKind::Embedded { t, .. } => Ok(t.rlock(recno)?),
            TableKind::Remote(r) => {
                let op = TableOp::Lock {
                    recno,
                    timeout_ms: u64::MAX,
                };
                let rec = out!(r, r.op(op)?, TableOut::Record(w) => r.record(w))?;
                r.refresh_current(&rec);
                Ok(rec)
            }
        }
    }

    /// Seeks `key` exactly and, when found, locks the record it lands on (the
    /// session's lock timeout) and returns it as of the lock — one request to
    /// a server. None when the key is not there (eof, as after any failed
    /// seek).
    pub fn seek_lock(&mut self, key: &[Value]) -> Result<Option<Record>> {
        match &mut self.kind {
            TableKind::Cached(c) => c.server(|t| t.seek_lock(key)),
            TableKind::Embedded { t, .. } => Ok(t.seek_lock(key)?),
            TableKind::Remote(r) => {
                let out = r.positioned(TableOp::SeekLock(key.to_vec()))?;
                let rec = out!(r, out, TableOut::Locked(w) => w.map(|w| r.record(w)))?;
                if let Some(rec) = &rec {
                    r.refresh_current(rec);
                }
                Ok(rec)
            }
        }
    }

    /// Whether a record is deleted.
    pub fn is_deleted(&self, recno: u64) -> Result<bool> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.is_deleted(recno)),
            TableKind::Embedded { t, .. } => Ok(t.is_deleted(recno)?),
            TableKind::Remote(r) => {
                out!(r, r.op(TableOp::IsDeleted(recno))?, TableOut::Bool(b) => b)
            }
        }
    }

    /// Locks a record, waiting at most `timeout`.
    pub fn lock(&self, recno: u64, timeout: Duration) -> Result<Record> {
        match &self.kind {
            TableKind::Cached(c) => c.server(|t| t.lock(recno, timeout)),
            TableKind::Embedded { t, .. } => Ok(t.lock(recno, timeout)?),
            TableKind::Remote(r) => {
                let op = TableOp::Lock {
                    recno,
                    timeout_ms: millis(timeout),
                };
                let rec = out!(r, r.op(op)?, TableOut::Record(w) => r.record(w))?;
                // The handle's current record, if this is it, is as of now.
                r.refresh_current(&rec);
                Ok(rec)
            }
        }
    }

    /// Unlocks a record; false if it was not locked (or is kept until the
    /// transaction ends).
    pub fn unlock(&self, recno: u64) -> Result<bool> {
        match &self.kind {
            TableKind::Cached(c) => c.server(|t| t.unlock(recno)),
            TableKind::Embedded { t, .. } => Ok(t.unlock(recno)),
            TableKind::Remote(r) => out!(r, r.op(TableOp::Unlock(recno))?, TableOut::Bool(b) => b),
        }
    }

    /// Locks the whole table.
    pub fn lock_file(&self, timeout: Duration) -> Result<()> {
        match &self.kind {
            TableKind::Cached(c) => c.server(|t| t.lock_file(timeout)),
            TableKind::Embedded { t, .. } => Ok(t.lock_file(timeout)?),
            TableKind::Remote(r) => r
                .op(TableOp::LockFile {
                    timeout_ms: millis(timeout),
                })
                .map(drop),
        }
    }

    /// Unlocks the table.
    pub fn unlock_file(&self) -> Result<bool> {
        match &self.kind {
            TableKind::Cached(c) => c.server(|t| t.unlock_file()),
            TableKind::Embedded { t, .. } => Ok(t.unlock_file()),
            TableKind::Remote(r) => out!(r, r.op(TableOp::UnlockFile)?, TableOut::Bool(b) => b),
        }
    }

    /// Committed records after recno `after`, in recno order, at most `max`,
    /// with memo contents (`Memo::Data`), each batch read under the table's
    /// lock (batches are not one snapshot): what a cache node loads. Returns
    /// the records, the record count, and whether none follow.
    pub fn dump(&self, after: u64, max: u32) -> Result<(Vec<Record>, u64, bool)> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.dump(after, max)),
            TableKind::Embedded { t, .. } => Ok(t.dump(after, max as usize)?),
            TableKind::Remote(r) => out!(r, r.op(TableOp::Dump { after, max })?,
                TableOut::Dump { records, count, done } =>
                    (records.into_iter().map(|w| r.record(w)).collect(), count, done)),
        }
    }

    /// Every record in recno order.
    pub fn snapshot(&self) -> Result<Vec<Record>> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.snapshot()),
            TableKind::Embedded { t, .. } => Ok(t.snapshot()?),
            TableKind::Remote(r) => out!(r, r.op(TableOp::Snapshot)?,
                TableOut::Records(v) => v.into_iter().map(|w| r.record(w)).collect()),
        }
    }

    /// Writes the table's dirty pages.
    pub fn flush(&mut self) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.server(|t| t.flush()),
            TableKind::Embedded { t, .. } => Ok(t.flush()?),
            TableKind::Remote(r) => r.op(TableOp::Flush).map(drop),
        }
    }

    /// Closes the handle.
    pub fn close(self) -> Result<()> {
        match self.kind {
            TableKind::Cached(_) => Ok(()),
            TableKind::Embedded { t, .. } => Ok(t.close()?),
            TableKind::Remote(mut r) => {
                r.closed = true;
                r.op(TableOp::Close).map(drop)
            }
        }
    }

    /// Creates an index, building it from every record.
    pub fn create_index(&mut self, def: &IndexDef) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.create_index(def)),
            TableKind::Embedded { t, .. } => Ok(t.create_index(def)?),
            TableKind::Remote(r) => r.write(TableOp::CreateIndex(def.clone())).map(drop),
        }
    }

    /// Drops an index.
    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.drop_index(name)),
            TableKind::Embedded { t, .. } => Ok(t.drop_index(name)?),
            TableKind::Remote(r) => {
                r.remote.wrote();
                r.positioned(TableOp::DropIndex(name.to_owned()))?;
                // Index names are case-insensitive.
                if r.order
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(name))
                {
                    r.order = None;
                }
                Ok(())
            }
        }
    }

    /// Verifies the table and its indexes, reporting at most `limit` problems.
    pub fn check(&self, limit: usize) -> Result<CheckReport> {
        match &self.kind {
            TableKind::Cached(c) => c.server(|t| t.check(limit)),
            TableKind::Embedded { t, .. } => Ok(t.check(limit)?),
            TableKind::Remote(r) => out!(r, r.op(TableOp::Check {
                limit: u32::try_from(limit).unwrap_or(u32::MAX) })?, TableOut::Check(c) => c),
        }
    }

    fn rewrite(&mut self, op: TableOp) -> Result<RewriteReport> {
        match &mut self.kind {
            TableKind::Cached(c) => c.write(|t| t.rewrite(op)),
            TableKind::Embedded { t, .. } => Ok(match op {
                TableOp::Rebuild => t.rebuild()?,
                TableOp::Pack => t.pack()?,
                TableOp::Alter(s) => t.alter(&s)?,
                _ => unreachable!("rewrite takes Rebuild, Pack or Alter"),
            }),
            TableKind::Remote(r) => {
                let alter = match &op {
                    TableOp::Alter(s) => Some(s.clone()),
                    _ => None,
                };
                r.remote.wrote();
                let rep = out!(r, r.positioned(op)?, TableOut::Rewrite(x) => x)?;
                if let Some(s) = alter {
                    r.schema = Arc::new(s);
                }
                Ok(rep)
            }
        }
    }

    /// Rebuilds the table from its data pages.
    pub fn rebuild(&mut self) -> Result<RewriteReport> {
        self.rewrite(TableOp::Rebuild)
    }

    /// Removes deleted records physically (recnos change).
    pub fn pack(&mut self) -> Result<RewriteReport> {
        self.rewrite(TableOp::Pack)
    }

    /// Changes the fields.
    pub fn alter(&mut self, schema: &Schema) -> Result<RewriteReport> {
        let rep = self.rewrite(TableOp::Alter(schema.clone()))?;
        if let TableKind::Remote(r) = &mut self.kind {
            // The server converted the schema; ask for what it stored.
            if let Ok(TableOut::Info(i)) = r.op(TableOp::Info) {
                r.schema = Arc::new(i.schema);
            }
        }
        Ok(rep)
    }

    /// Current recno (count + 1 on the phantom record past the last one).
    pub fn recno(&self) -> u64 {
        match &self.kind {
            TableKind::Cached(c) => c.peek(|t| t.recno(), 0),
            TableKind::Embedded { t, .. } => t.recno(),
            TableKind::Remote(r) => r.cursor().pos.recno,
        }
    }

    /// Before the first record.
    pub fn bof(&self) -> bool {
        match &self.kind {
            TableKind::Cached(c) => c.peek(|t| t.bof(), false),
            TableKind::Embedded { t, .. } => t.bof(),
            TableKind::Remote(r) => r.cursor().pos.bof,
        }
    }

    /// Past the last record.
    pub fn eof(&self) -> bool {
        match &self.kind {
            TableKind::Cached(c) => c.peek(|t| t.eof(), false),
            TableKind::Embedded { t, .. } => t.eof(),
            TableKind::Remote(r) => r.cursor().pos.eof,
        }
    }

    /// On a real record (false on the phantom record, whose fields read blank).
    pub fn on_record(&self) -> bool {
        match &self.kind {
            TableKind::Cached(c) => c.peek(|t| t.on_record(), false),
            TableKind::Embedded { t, .. } => t.on_record(),
            TableKind::Remote(r) => r.cursor().pos.on_record,
        }
    }

    /// The last seek found its key (xBase `Found()`); any other move clears it.
    pub fn found(&self) -> bool {
        match &self.kind {
            TableKind::Cached(c) => c.peek(|t| t.found(), false),
            TableKind::Embedded { t, .. } => t.found(),
            TableKind::Remote(r) => r.cursor().pos.found,
        }
    }

    /// Records visible through the current order: inside its scope, not hidden
    /// as deleted, passing the filter (xBase `ordKeyCount()`).
    pub fn key_count(&self) -> Result<u64> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.key_count()),
            TableKind::Embedded { t, .. } => Ok(t.key_count()?),
            TableKind::Remote(r) => {
                out!(r, r.positioned(TableOp::KeyCount)?, TableOut::Count(n) => n)
            }
        }
    }

    /// The current record's position among the records visible through the
    /// current order, from 1; 0 on the phantom or a record the order does not
    /// show (xBase `ordKeyNo()`).
    pub fn key_no(&self) -> Result<u64> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.key_no()),
            TableKind::Embedded { t, .. } => Ok(t.key_no()?),
            TableKind::Remote(r) => {
                out!(r, r.positioned(TableOp::KeyNo)?, TableOut::Count(n) => n)
            }
        }
    }

    /// The current order's index name (None: physical order).
    pub fn order(&self) -> Option<&str> {
        match &self.kind {
            TableKind::Cached(c) => c.order(),
            TableKind::Embedded { t, .. } => t.order(),
            TableKind::Remote(r) => r.order.as_deref(),
        }
    }

    /// Sets the order (None: physical); the handle stays on its record.
    pub fn set_order(&mut self, index: Option<&str>) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.setting(|t| t.set_order(index), |s| s.set_order(index)),
            TableKind::Embedded { t, .. } => Ok(t.set_order(index)?),
            TableKind::Remote(r) => {
                r.positioned(TableOp::SetOrder(index.map(str::to_owned)))?;
                r.order = index.map(|s| s.to_ascii_lowercase());
                Ok(())
            }
        }
    }

    /// Restricts navigation to a key range of the current order.
    pub fn set_scope(&mut self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => {
                c.setting(|t| t.set_scope(lower, upper), |s| s.set_scope(lower, upper))
            }
            TableKind::Embedded { t, .. } => Ok(t.set_scope(lower, upper)?),
            TableKind::Remote(r) => r
                .positioned(TableOp::SetScope {
                    lower: lower.map(<[Value]>::to_vec),
                    upper: upper.map(<[Value]>::to_vec),
                })
                .map(drop),
        }
    }

    /// Removes the scope.
    pub fn clear_scope(&mut self) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => c.setting(|t| t.clear_scope(), |s| s.set_scope(None, None)),
            TableKind::Embedded { t, .. } => {
                t.clear_scope();
                Ok(())
            }
            TableKind::Remote(r) => r.positioned(TableOp::ClearScope).map(drop),
        }
    }

    /// Shows only records satisfying `condition` (None: all).
    pub fn set_filter(&mut self, condition: Option<&Condition>) -> Result<()> {
        match &mut self.kind {
            TableKind::Cached(c) => {
                c.setting(|t| t.set_filter(condition), |s| s.set_filter(condition))
            }
            TableKind::Embedded { t, .. } => Ok(t.set_filter_condition(condition)?),
            TableKind::Remote(r) => r
                .positioned(TableOp::SetFilter(condition.cloned()))
                .map(drop),
        }
    }

    /// The record the handle is on; on the phantom record past the last one,
    /// a blank record numbered `record_count + 1`.
    pub fn record(&self) -> Result<Record> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.record()),
            TableKind::Embedded { t, .. } => Ok(t.record()?),
            TableKind::Remote(r) => {
                let pos = r.cursor().pos;
                if !pos.on_record {
                    let blank = r.schema.empty_record();
                    return Ok(Record::from_parts(
                        pos.recno,
                        false,
                        blank,
                        r.schema.clone(),
                    ));
                }
                let epoch = r.remote.epoch();
                if let Some((e, rec)) = &r.cursor().current {
                    if *e == epoch {
                        return Ok(rec.clone());
                    }
                }
                let w = out!(r, r.positioned(TableOp::Current)?, TableOut::Record(w) => w)?;
                let rec = r.record(w);
                r.cursor().current = Some((epoch, rec.clone()));
                Ok(rec)
            }
        }
    }

    fn nav(&mut self, op: NavOp) -> Result<bool> {
        match &mut self.kind {
            TableKind::Cached(c) => c.read(|t| t.nav(op)),
            TableKind::Embedded { t, .. } => Ok(match op {
                NavOp::First => t.first()?,
                NavOp::Last => t.last()?,
                NavOp::Next => t.next()?,
                NavOp::Prev => t.prev()?,
                NavOp::Skip(n) => t.skip(n)?,
                NavOp::Goto(r) => {
                    t.goto(r)?;
                    true
                }
                NavOp::Seek(k) => t.seek(&k)?,
                NavOp::SeekSoft(k) => t.seek_soft(&k)?,
                NavOp::SeekLast(k) => t.seek_last(&k)?,
                NavOp::SeekLastSoft(k) => t.seek_last_soft(&k)?,
            }),
            TableKind::Remote(r) => r.nav(op),
        }
    }

    /// First record of the order; false when there is none.
    pub fn first(&mut self) -> Result<bool> {
        self.nav(NavOp::First)
    }

    /// Last record; false when there is none.
    pub fn last(&mut self) -> Result<bool> {
        self.nav(NavOp::Last)
    }

    /// Next record; false at eof.
    // The xBase name; a cursor move that can fail is not an `Iterator`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<bool> {
        self.nav(NavOp::Next)
    }

    /// Previous record; false at bof.
    pub fn prev(&mut self) -> Result<bool> {
        self.nav(NavOp::Prev)
    }

    /// Moves `n` records (negative: backwards); false when an end was reached.
    pub fn skip(&mut self, n: i64) -> Result<bool> {
        self.nav(NavOp::Skip(n))
    }

    /// Goes to a record (deleted, filtered or out of scope alike); out of
    /// range it lands on the phantom record with bof and eof set.
    pub fn goto(&mut self, recno: u64) -> Result<()> {
        self.nav(NavOp::Goto(recno)).map(drop)
    }

    /// Exact seek of a (partial) key; false (and eof) when absent.
    pub fn seek(&mut self, key: &[Value]) -> Result<bool> {
        self.nav(NavOp::Seek(key.to_vec()))
    }

    /// Soft seek: the first key ≥ `key`; true when it matched exactly.
    pub fn seek_soft(&mut self, key: &[Value]) -> Result<bool> {
        self.nav(NavOp::SeekSoft(key.to_vec()))
    }

    /// The last record with the (partial) key.
    pub fn seek_last(&mut self, key: &[Value]) -> Result<bool> {
        self.nav(NavOp::SeekLast(key.to_vec()))
    }

    /// The last record with the (partial) key, or when none has it the last
    /// key before it (xBase `dbSeek(key, .T., .T.)`); true in the first case.
    pub fn seek_last_soft(&mut self, key: &[Value]) -> Result<bool> {
        self.nav(NavOp::SeekLastSoft(key.to_vec()))
    }

    /// Exact number of entries of a key range of the current order.
    pub fn count_range(&self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<u64> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.count_range(lower, upper)),
            TableKind::Embedded { t, .. } => Ok(t.count_range(lower, upper)?),
            TableKind::Remote(r) => out!(r, r.op(TableOp::CountRange {
                lower: lower.map(<[Value]>::to_vec), upper: upper.map(<[Value]>::to_vec) })?,
                TableOut::Count(n) => n),
        }
    }

    /// Estimated number of entries of a key range (a few page reads).
    pub fn estimate_range(&self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<u64> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.estimate_range(lower, upper)),
            TableKind::Embedded { t, .. } => Ok(t.estimate_range(lower, upper)?),
            TableKind::Remote(r) => out!(r, r.op(TableOp::EstimateRange {
                lower: lower.map(<[Value]>::to_vec), upper: upper.map(<[Value]>::to_vec) })?,
                TableOut::Count(n) => n),
        }
    }

    /// Iterates the records of a key range of the current order; remote, the
    /// records arrive in growing batches.
    pub fn range(&self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<RangeIter> {
        match &self.kind {
            TableKind::Cached(c) => c.read(|t| t.range(lower, upper)),
            TableKind::Embedded { t, .. } => Ok(RangeIter {
                kind: RangeKind::Embedded(t.range(lower, upper)?),
            }),
            TableKind::Remote(r) => {
                let max = r.cursor().max_ahead;
                let first = if max == 0 {
                    1
                } else {
                    FIRST_RANGE_BATCH.min(max)
                };
                let (iter, records, done) = out!(r, r.op(TableOp::Range {
                    lower: lower.map(<[Value]>::to_vec), upper: upper.map(<[Value]>::to_vec), first })?,
                    TableOut::Range { iter, records, done } => (iter, records, done))?;
                Ok(RangeIter {
                    kind: RangeKind::Remote(RemoteRange {
                        remote: r.remote.clone(),
                        schema: r.schema.clone(),
                        iter,
                        buf: records.into(),
                        used: 0,
                        epoch: r.remote.epoch(),
                        done,
                        batch: if max == 0 {
                            1
                        } else {
                            (first * 2).min(max.max(1))
                        },
                        max: if max == 0 { 1 } else { max },
                    }),
                })
            }
        }
    }

    /// Reads, deletes or updates every record of a key range of the current
    /// order in one request (outside a transaction, a delete or update batch
    /// is all or nothing).
    pub fn batch(&mut self, req: &BatchRequest) -> Result<BatchOutcome> {
        match &mut self.kind {
            TableKind::Cached(c) => {
                if matches!(
                    req.action,
                    crate::proto::BatchAction::Read { lock_ms: None }
                ) {
                    c.read(|t| t.batch(req))
                } else {
                    c.write(|t| t.batch(req))
                }
            }
            TableKind::Embedded { t, session } => {
                let (count, records) = crate::batch::run(session, t, req)?;
                Ok(BatchOutcome { count, records })
            }
            TableKind::Remote(r) => {
                let op = TableOp::Batch(req.clone());
                let out = if matches!(
                    req.action,
                    crate::proto::BatchAction::Read { lock_ms: None }
                ) {
                    r.op(op)?
                } else {
                    r.write(op)?
                };
                out!(r, out,
                    TableOut::Batch { count, records } => BatchOutcome {
                        count, records: records.into_iter().map(|w| r.record(w)).collect() })
            }
        }
    }
}

/// `values` for an update sent to a server: a memo given as `Memo::Stored`
/// (kept, as read from a cache node's copy, whose memo file is its own)
/// becomes the server's own reference for that record's memo.
pub(crate) fn server_memos(t: &Table, recno: u64, values: &[Value]) -> Result<Vec<Value>> {
    if !values
        .iter()
        .any(|v| matches!(v, Value::Memo(raiz_engine::Memo::Stored(_))))
    {
        return Ok(values.to_vec());
    }
    let current = t.read(recno)?;
    Ok(values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Memo(raiz_engine::Memo::Stored(_)) => current
                .values()
                .get(i)
                .cloned()
                .unwrap_or_else(|| v.clone()),
            v => v.clone(),
        })
        .collect())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Records of a key range, in key order (see [`Table::range`]).
#[derive(Debug)]
pub struct RangeIter {
    kind: RangeKind,
}

#[derive(Debug)]
enum RangeKind {
    Embedded(raiz_engine::db::RangeIter),
    Remote(RemoteRange),
}

/// A remote range iterator: records come in growing batches. When this
/// session writes, the rest of a batch may be stale: it is dropped and the
/// server's iterator put back after the last record the application used, so
/// the iterator shows the session's own writes as an embedded one does.
#[derive(Debug)]
struct RemoteRange {
    remote: Arc<Remote>,
    schema: Arc<Schema>,
    iter: Option<u32>,
    buf: VecDeque<WireRecord>,
    /// Records of the current batch the application used.
    used: u32,
    /// The session's write epoch when the batch was read.
    epoch: u64,
    /// The server had no more records when the batch was read.
    done: bool,
    batch: u32,
    max: u32,
}

impl RemoteRange {
    fn next(&mut self) -> Option<Result<Record>> {
        let stale = self.remote.epoch() != self.epoch;
        if self.buf.is_empty() || stale {
            if self.done && !stale {
                return None;
            }
            let id = self.iter?;
            let resume = stale.then_some(self.used);
            self.buf.clear();
            match self.remote.call(&Request::RangeNext {
                iter: id,
                max: self.batch,
                resume,
            }) {
                Ok(Reply::RangeMore { records, done }) => {
                    self.buf.extend(records);
                    self.done = done;
                    self.used = 0;
                    self.epoch = self.remote.epoch();
                    self.batch = (self.batch * 2).min(self.max);
                }
                Ok(other) => {
                    self.iter = None;
                    return Some(Err(self.remote.unexpected(&other)));
                }
                Err(e) => {
                    self.iter = None;
                    return Some(Err(e));
                }
            }
        }
        let w = self.buf.pop_front()?;
        self.used += 1;
        Some(Ok(Record::from_parts(
            w.recno,
            w.deleted,
            w.values,
            self.schema.clone(),
        )))
    }
}

impl Iterator for RangeIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        match &mut self.kind {
            RangeKind::Embedded(it) => it.next().map(|r| r.map_err(Into::into)),
            RangeKind::Remote(r) => r.next(),
        }
    }
}

impl Drop for RangeIter {
    fn drop(&mut self) {
        if let RangeKind::Remote(RemoteRange {
            remote,
            iter: Some(id),
            ..
        }) = &self.kind
        {
            // Without waiting: the reply is skipped when it comes.
            remote.conn().send_forget(&Request::RangeClose(*id));
        }
    }
}
