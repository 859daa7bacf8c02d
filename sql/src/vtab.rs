//! The `raiz` virtual table module: a raiz table as an SQLite table.
//!
//! Columns are the table's fields, named in lower case as PostgreSQL folds
//! unquoted names (typed as [`crate::value`] says), and two
//! hidden ones, which `SELECT *` leaves out: `recno` (also the rowid) and
//! `deleted` (named `_recno` / `_deleted` when a field already has the name).
//! Deleted records are left out unless the query names `deleted` anywhere
//! (`WHERE deleted`, `SELECT deleted, …`): then every record comes, and
//! SQLite applies whatever condition the query puts on it. (The hidden
//! columns come first, so SQLite's mask of used columns names them exactly
//! however wide the table.)
//!
//! Every cursor reads through the connection's engine session, checks the
//! user may read the table when it starts, and notes the table's commit count
//! the first time a statement reads it (see [`Shared::note_read`]) so that the
//! session can tell whether any commit changed a table while the statement
//! read it.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raiz_engine::db::RangeIter;
use raiz_engine::{FieldType, Memo, Record, Schema, Session, Table, Value};
use rusqlite::vtab::{
    sqlite3_vtab, sqlite3_vtab_cursor, Context, CreateVTab, IndexConstraintOp, IndexInfo, VTab,
    VTabConnection, VTabCursor, VTabKind, Values,
};

use crate::plan::{self, IndexShape, Offer, Op, Plan};
use crate::value::{self, SqlValue};

/// A lock of plain data: every critical section only pushes or reads, so a
/// panic elsewhere leaves nothing half-changed.
struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    fn new(v: T) -> Self {
        Mutex(std::sync::Mutex::new(v))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Decides whether the connection's user may read a table.
pub type Access = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What every virtual table of one connection shares.
pub(crate) struct Shared {
    pub session: Session,
    pub access: Access,
    /// Records read from tables since the connection opened.
    pub records_read: AtomicU64,
    /// A handle on each table with a virtual table: keeps it open between
    /// statements (a table whose last handle goes is closed, and opening it
    /// again reads its headers and checks its index pages), as an ISAM
    /// session's open table does.
    kept: Mutex<Vec<(String, Table)>>,
    /// The tables the current statement read: a handle (keeping the table
    /// open) and its commit count when the statement first read it.
    reads: Mutex<Vec<(String, Table, u64)>>,
    /// Tables whose definition changed under their virtual table.
    stale: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(session: Session, access: Access) -> Shared {
        Shared {
            session,
            access,
            records_read: AtomicU64::new(0),
            kept: Mutex::new(Vec::new()),
            reads: Mutex::new(Vec::new()),
            stale: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `name` open while its virtual table exists.
    pub fn keep(&self, name: &str) -> raiz_engine::Result<()> {
        let t = self.session.open_table(name)?;
        self.kept.lock().push((name.to_owned(), t));
        Ok(())
    }

    /// Lets `name` close (its virtual table is gone).
    pub fn release(&self, name: &str) {
        self.kept.lock().retain(|(n, _)| n != name);
    }

    /// Lets every table close.
    pub fn release_all(&self) {
        self.kept.lock().clear();
    }

    /// Whether `name` is kept open.
    pub fn is_kept(&self, name: &str) -> bool {
        self.kept.lock().iter().any(|(n, _)| n == name)
    }

    /// Notes that `name` must be looked at again before the next statement.
    pub fn mark_stale(&self, name: &str) {
        self.stale.lock().push(name.to_owned());
    }

    /// Starts a statement: forgets the tables the last one read.
    pub fn begin_statement(&self) {
        self.reads.lock().clear();
    }

    /// Notes that the statement reads `name` (on its first read).
    fn note_read(&self, name: &str) -> raiz_engine::Result<()> {
        let mut reads = self.reads.lock();
        if !reads.iter().any(|(n, _, _)| n == name) {
            let t = self.session.open_table(name)?;
            let at = t.commit_count();
            reads.push((name.to_owned(), t, at));
        }
        Ok(())
    }

    /// Ends a statement: true when no commit changed any table it read
    /// between its first read of that table and now. Then every table was
    /// read as it stood at this moment: one committed state.
    pub fn end_statement(&self) -> bool {
        let reads = std::mem::take(&mut *self.reads.lock());
        reads.iter().all(|(_, t, at)| t.commit_count() == *at)
    }

    /// Whether a table was found changed under its virtual table.
    pub fn has_stale(&self) -> bool {
        !self.stale.lock().is_empty()
    }

    /// Tables found changed under their virtual table (taken).
    pub fn take_stale(&self) -> Vec<String> {
        std::mem::take(&mut *self.stale.lock())
    }
}

/// One raiz table as a virtual table.
#[repr(C)]
pub(crate) struct RaizTab {
    /// SQLite's part; must come first.
    base: sqlite3_vtab,
    shared: Arc<Shared>,
    name: String,
    schema: Arc<Schema>,
    records: u64,
    indexes: Vec<IndexShape>,
}

impl RaizTab {
    const RECNO: usize = 0;
    const DELETED: usize = 1;
    /// Column of the first field.
    const FIELDS: usize = 2;
}

/// The statement declaring a table's columns.
fn declaration(schema: &Schema) -> String {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name.to_ascii_lowercase())
        .collect();
    let extra = |base: &str| {
        if names.iter().any(|n| n == base) {
            format!("_{base}")
        } else {
            base.to_owned()
        }
    };
    let mut cols = vec![
        format!("\"{}\" BIGINT HIDDEN", extra("recno")),
        format!("\"{}\" BOOLEAN HIDDEN", extra("deleted")),
    ];
    cols.extend(schema.fields().iter().map(|f| {
        format!(
            "\"{}\" {}",
            f.name.to_ascii_lowercase(),
            value::declared_type(&f.ty)
        )
    }));
    format!("CREATE TABLE x({})", cols.join(", "))
}

fn engine_error(e: raiz_engine::Error) -> rusqlite::Error {
    rusqlite::Error::ModuleError(e.to_string())
}

// SAFETY: `RaizTab` is `repr(C)` with `sqlite3_vtab` as its first field, as
// rusqlite's module glue requires (it casts SQLite's vtab pointer to it).
unsafe impl<'vtab> VTab<'vtab> for RaizTab {
    type Aux = Arc<Shared>;
    type Cursor = RaizCursor<'vtab>;

    fn connect(
        _db: &mut VTabConnection,
        aux: Option<&Arc<Shared>>,
        args: &[&[u8]],
    ) -> rusqlite::Result<(String, RaizTab)> {
        let shared = aux
            .ok_or_else(|| rusqlite::Error::ModuleError("raiz: no engine session".into()))?
            .clone();
        // args: module name, database name, table name, then ours.
        let name = args
            .get(3)
            .map(|a| String::from_utf8_lossy(a).trim_matches('"').to_owned())
            .ok_or_else(|| rusqlite::Error::ModuleError("raiz: which table?".into()))?;
        if !(shared.access)(&name) {
            return Err(rusqlite::Error::ModuleError(format!(
                "no such table, or no permission to read it: {name}"
            )));
        }
        let t = shared.session.open_table(&name).map_err(engine_error)?;
        let info = t.info();
        let schema = t.schema();
        let column = |field: &str| {
            schema
                .position(field)
                .map(|i| (i + RaizTab::FIELDS, schema.fields()[i].ty))
        };
        let indexes = info
            .indexes
            .iter()
            .filter_map(|(def, entries)| IndexShape::of(def, *entries, column))
            .collect();
        let tab = RaizTab {
            base: sqlite3_vtab::default(),
            shared,
            records: info.record_count,
            schema: schema.clone(),
            name,
            indexes,
        };
        Ok((declaration(&schema), tab))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<()> {
        let mut offers = Vec::new();
        let wants_deleted = info.col_used() & (1 << RaizTab::DELETED) != 0;
        for (at, c) in info.constraints().enumerate() {
            let col = c.column();
            if col >= 0 && col as usize == RaizTab::DELETED {
                continue;
            }
            if !c.is_usable() {
                continue;
            }
            let op = match c.operator() {
                IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ => Op::Eq,
                IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_GT
                | IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_GE => Op::Lower,
                IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LT
                | IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LE => Op::Upper,
                _ => continue,
            };
            let column = if col < 0 || col as usize == RaizTab::RECNO {
                if op != Op::Eq {
                    continue;
                }
                None
            } else {
                Some(col as usize)
            };
            offers.push(Offer { at, column, op });
        }
        let choice = plan::choose(self.records, &self.indexes, &offers);
        for (n, &at) in choice.args.iter().enumerate() {
            let mut usage = info.constraint_usage(at);
            usage.set_argv_index(n as c_int + 1);
            usage.set_omit(false);
        }
        info.set_idx_num(c_int::from(wants_deleted));
        info.set_idx_str(&choice.plan.encode());
        info.set_estimated_rows(choice.rows.min(i64::MAX as f64) as i64);
        info.set_estimated_cost(choice.cost);
        Ok(())
    }

    fn open(&'vtab mut self) -> rusqlite::Result<RaizCursor<'vtab>> {
        Ok(RaizCursor {
            base: sqlite3_vtab_cursor::default(),
            tab: self,
            table: None,
            ordered: None,
            source: Source::Done,
            current: None,
            with_deleted: false,
        })
    }
}

impl CreateVTab<'_> for RaizTab {
    const KIND: VTabKind = VTabKind::Default;
}

/// Where a cursor's records come from.
enum Source {
    /// Recno order, from the next recno on; a few records read ahead.
    Scan {
        after: u64,
        ahead: VecDeque<Record>,
        ended: bool,
    },
    /// An index range.
    Range(Box<RangeIter>),
    /// Nothing more.
    Done,
}

/// Records a scan reads under one read lock of the table.
const SCAN_BATCH: usize = 256;

/// A cursor over one raiz table.
#[repr(C)]
pub(crate) struct RaizCursor<'vtab> {
    /// SQLite's part; must come first.
    base: sqlite3_vtab_cursor,
    tab: &'vtab RaizTab,
    table: Option<Table>,
    /// A handle in the order of the index last read through (its position
    /// among the table's shapes).
    ordered: Option<(usize, Table)>,
    source: Source,
    current: Option<Record>,
    with_deleted: bool,
}

impl RaizCursor<'_> {
    /// Moves to the next record the query may see.
    fn advance(&mut self) -> raiz_engine::Result<()> {
        loop {
            let rec = match &mut self.source {
                Source::Done => None,
                Source::Range(it) => it.next().transpose()?,
                Source::Scan {
                    after,
                    ahead,
                    ended,
                } => {
                    if ahead.is_empty() && !*ended {
                        let t = self.table.as_ref().expect("a scan has its table");
                        let (batch, done) = t.scan(*after, SCAN_BATCH)?;
                        if let Some(last) = batch.last() {
                            *after = last.recno();
                        }
                        *ended = done;
                        ahead.extend(batch);
                    }
                    ahead.pop_front()
                }
            };
            let Some(rec) = rec else {
                self.source = Source::Done;
                self.current = None;
                return Ok(());
            };
            self.tab.shared.records_read.fetch_add(1, Ordering::Relaxed);
            if self.with_deleted || !rec.is_deleted() {
                self.current = Some(rec);
                return Ok(());
            }
        }
    }

    fn start(&mut self, plan: &Plan, args: &Values<'_>) -> raiz_engine::Result<()> {
        let tab = self.tab;
        // A cursor is filtered again for every row of an outer loop: its
        // handles are opened (and the definition checked) once.
        let t = match self.table.take() {
            Some(t) => t,
            None => {
                let t = match tab.shared.session.open_table(&tab.name) {
                    Ok(t) => t,
                    Err(e) => {
                        // Dropped (or unreadable) since the virtual table was
                        // made: the session drops it before its next statement.
                        tab.shared.stale.lock().push(tab.name.clone());
                        return Err(e);
                    }
                };
                if t.schema().as_ref() != tab.schema.as_ref() {
                    tab.shared.stale.lock().push(tab.name.clone());
                    return Err(raiz_engine::Error::Unsupported(format!(
                        "table {} was redefined while the query was prepared; run it again",
                        tab.name
                    )));
                }
                tab.shared.note_read(&tab.name)?;
                t
            }
        };
        let arg = |i: usize| args.iter().nth(i);
        self.source = match plan {
            Plan::Scan => Source::Scan {
                after: 0,
                ahead: VecDeque::new(),
                ended: false,
            },
            Plan::Recno => {
                let recno = match arg(0) {
                    Some(rusqlite::types::ValueRef::Integer(r)) => u64::try_from(r).ok(),
                    Some(rusqlite::types::ValueRef::Real(f)) if f.fract() == 0.0 && f >= 1.0 => {
                        Some(f as u64)
                    }
                    _ => None,
                };
                let mut ahead = VecDeque::new();
                if let Some(r) = recno.filter(|&r| r >= 1 && r <= t.record_count()) {
                    match t.read(r) {
                        Ok(rec) => ahead.push_back(rec),
                        // A slot an open transaction reserved holds nothing yet.
                        Err(raiz_engine::Error::NoSuchRecord { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Source::Scan {
                    after: 0,
                    ahead,
                    ended: true,
                }
            }
            Plan::Index {
                index,
                eq,
                lower,
                upper,
            } => {
                let shape = &tab.indexes[*index];
                let mut prefix = Vec::new();
                let mut complete = true;
                for (i, &(_, ty)) in shape.segments.iter().take(*eq).enumerate() {
                    match arg(i).and_then(|v| plan::bound(ty, v, Op::Eq)) {
                        Some(v) => prefix.push(v),
                        None => {
                            complete = false;
                            break;
                        }
                    }
                }
                let (mut lo, mut hi) = (prefix.clone(), prefix.clone());
                let mut lo_open = prefix.is_empty();
                let mut hi_open = prefix.is_empty();
                if complete {
                    let ty = shape.segments.get(*eq).map(|s| s.1);
                    let mut next = *eq;
                    if *lower {
                        if let Some(v) =
                            ty.and_then(|ty| arg(next).and_then(|v| plan::bound(ty, v, Op::Lower)))
                        {
                            lo.push(v);
                            lo_open = false;
                        }
                        next += 1;
                    }
                    if *upper {
                        if let Some(v) =
                            ty.and_then(|ty| arg(next).and_then(|v| plan::bound(ty, v, Op::Upper)))
                        {
                            hi.push(v);
                            hi_open = false;
                        }
                    }
                }
                if self.ordered.as_ref().is_none_or(|(i, _)| i != index) {
                    let mut o = tab.shared.session.open_table(&tab.name)?;
                    o.set_order(Some(&shape.name))?;
                    self.ordered = Some((*index, o));
                }
                let (_, ordered) = self.ordered.as_ref().expect("set above");
                let range = ordered.range(
                    (!lo_open).then_some(lo.as_slice()),
                    (!hi_open).then_some(hi.as_slice()),
                );
                match range {
                    Ok(it) => Source::Range(Box::new(it)),
                    // A bound the index cannot take (a value wider than its
                    // field): read everything, SQLite filters.
                    Err(raiz_engine::Error::InvalidValue { .. }) => Source::Scan {
                        after: 0,
                        ahead: VecDeque::new(),
                        ended: false,
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        self.table = Some(t);
        self.advance()
    }
}

// SAFETY: `RaizCursor` is `repr(C)` with `sqlite3_vtab_cursor` as its first
// field, as rusqlite's module glue requires.
unsafe impl VTabCursor for RaizCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        idx_str: Option<&str>,
        args: &Values<'_>,
    ) -> rusqlite::Result<()> {
        if !(self.tab.shared.access)(&self.tab.name) {
            return Err(rusqlite::Error::ModuleError(format!(
                "no such table, or no permission to read it: {}",
                self.tab.name
            )));
        }
        self.with_deleted = idx_num & 1 == 1;
        let plan = idx_str.and_then(Plan::decode).unwrap_or(Plan::Scan);
        self.start(&plan, args).map_err(engine_error)
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.advance().map_err(engine_error)
    }

    fn eof(&self) -> bool {
        self.current.is_none()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let Some(rec) = &self.current else {
            return ctx.set_result(&SqlValue::Null);
        };
        let fields = self.tab.schema.fields();
        let v = if i as usize == RaizTab::RECNO {
            SqlValue::Integer(rec.recno() as i64)
        } else if i as usize == RaizTab::DELETED {
            SqlValue::Integer(i64::from(rec.is_deleted()))
        } else {
            let i = i as usize - RaizTab::FIELDS;
            match &rec.values()[i] {
                Value::Memo(Memo::Data(d)) => value::memo(d.clone()),
                Value::Memo(_) if fields[i].ty == FieldType::Memo => {
                    let t = self.table.as_ref().expect("a record has its table");
                    value::memo(
                        t.read_memo(rec.recno(), &fields[i].name)
                            .map_err(engine_error)?,
                    )
                }
                other => value::to_sql(other),
            }
        };
        ctx.set_result(&v)
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.current.as_ref().map_or(0, |r| r.recno() as i64))
    }
}
