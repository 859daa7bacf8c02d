//! Bringing a live database to a snapshot's state, record by record.
//!
//! A member installs a snapshot into the database its sessions, cache nodes
//! and the server's clients are using, so the files cannot be swapped under
//! them. Instead each table is compared with the snapshot's copy and only
//! what differs is written, as ordinary (unsynced) engine commits that the
//! change feed carries to cache nodes like any other:
//!
//! - a table the snapshot lacks is dropped; one it has and this member lacks
//!   is created with its indexes; one whose definition differs (schema,
//!   options, indexes) or that holds more records than the snapshot's is
//!   dropped and created again;
//! - then, in two passes over the records: first every live record that
//!   will change is marked deleted (a deleted record holds no unique key),
//!   then every record that differs is stored with the snapshot's values and
//!   flag. A unique key a record takes in the second pass is free: whichever
//!   record held it here either holds it in the snapshot too (then the two
//!   would collide in the snapshot, which cannot be) or was moved out of the
//!   way in the first pass.
//!
//! Each pass commits every [`CHUNK`] records, so a table of any size is
//! installed in bounded memory; the caller stores the snapshot's position
//! only after the last one. The installation is idempotent: run again from
//! any point it left off (a crash), it converges on the same state, which is
//! how a member resumes an interrupted one at its next start.

use std::collections::{HashMap, VecDeque};

use raiz_engine::db::Ddl;
use raiz_engine::{Database, Error as EngineError, Record, Session, Table, TableOptions};

use crate::state::is_internal;

/// Records compared and written per commit.
pub const CHUNK: usize = 10_000;

/// What an installation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// Tables dropped (gone from the snapshot, or redefined there).
    pub dropped: usize,
    /// Tables created.
    pub created: usize,
    /// Records written.
    pub records: u64,
}

type Result<T> = std::result::Result<T, EngineError>;

/// Records of a table in recno order, read [`CHUNK`] at a time.
struct Records<'a> {
    table: &'a Table,
    buf: VecDeque<Record>,
    after: u64,
    done: bool,
}

impl<'a> Records<'a> {
    fn new(table: &'a Table) -> Records<'a> {
        Records {
            table,
            buf: VecDeque::new(),
            after: 0,
            done: false,
        }
    }

    /// The next record, if any.
    fn next(&mut self) -> Result<Option<Record>> {
        if self.buf.is_empty() && !self.done {
            let (recs, _, end) = self.table.dump(self.after, CHUNK)?;
            if let Some(last) = recs.last() {
                self.after = last.recno();
            }
            self.done = end || recs.is_empty();
            self.buf.extend(recs);
        }
        Ok(self.buf.pop_front())
    }

    /// The record at `recno`, skipping those before it.
    fn at(&mut self, recno: u64) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.buf.front() {
                if r.recno() > recno {
                    return Ok(None);
                }
                let r = self.buf.pop_front().expect("front");
                if r.recno() == recno {
                    return Ok(Some(r));
                }
                continue;
            }
            if self.done {
                return Ok(None);
            }
            if self.next()?.map(|r| self.buf.push_front(r)).is_none() {
                return Ok(None);
            }
        }
    }
}

fn same(a: &Record, b: &Record) -> bool {
    a.is_deleted() == b.is_deleted() && a.values() == b.values()
}

/// The options a table was created with, as its header tells them.
fn options_of(t: &Table) -> TableOptions {
    let info = t.info();
    TableOptions {
        format: info.format,
        page_size: info.page_size,
        durability: info.durability,
        serial: info.serial.map(|(name, _)| name),
    }
}

/// True when the two tables have the same definition.
fn same_definition(a: &Table, b: &Table) -> bool {
    let (ia, ib) = (a.info(), b.info());
    ia.schema == ib.schema
        && options_of(a) == options_of(b)
        && ia
            .indexes
            .iter()
            .map(|(d, _)| d)
            .eq(ib.indexes.iter().map(|(d, _)| d))
}

/// Makes the tables of `db` hold what those of the snapshot `src` hold (see
/// the module docs). `tables` is the caller's cache of open handles on `db`;
/// `drop_table` drops a table of `db` (waiting for readers to let go).
pub fn install(
    db: &Database,
    session: &Session,
    tables: &mut HashMap<String, Table>,
    src: &Database,
    drop_table: &dyn Fn(&str) -> Result<()>,
) -> Result<InstallReport> {
    let mut report = InstallReport::default();
    let wanted: Vec<String> = src
        .list_tables()?
        .into_iter()
        .filter(|n| !is_internal(n))
        .collect();
    for name in db.list_tables()? {
        if is_internal(&name) || wanted.iter().any(|w| w.eq_ignore_ascii_case(&name)) {
            continue;
        }
        tables.remove(&name.to_ascii_lowercase());
        drop_table(&name)?;
        report.dropped += 1;
    }
    let src_session = src.session();
    for name in &wanted {
        let key = name.to_ascii_lowercase();
        let from = src_session.open_table(name)?;
        let fits = if db.table_exists(name)? {
            if !tables.contains_key(&key) {
                tables.insert(key.clone(), session.open_table(name)?);
            }
            let here = &tables[&key];
            same_definition(here, &from) && here.record_count() <= from.record_count()
        } else {
            true
        };
        if !fits {
            tracing::info!(table = %name, "table defined differently in the snapshot: dropped and created again");
            tables.remove(&key);
            drop_table(name)?;
            report.dropped += 1;
        }
        if !db.table_exists(name)? {
            let info = from.info();
            db.apply_ddl(&Ddl::CreateTable {
                name: name.clone(),
                schema: info.schema.clone(),
                opts: options_of(&from),
            })?;
            for (def, _) in &info.indexes {
                db.apply_ddl(&Ddl::CreateIndex {
                    table: name.clone(),
                    def: def.clone(),
                })?;
            }
            report.created += 1;
        }
        if !tables.contains_key(&key) {
            tables.insert(key.clone(), session.open_table(name)?);
        }
        report.records += copy_records(session, &tables[&key], &from)?;
    }
    Ok(report)
}

/// The two passes over one table (see the module docs). Returns the records
/// written.
fn copy_records(session: &Session, here: &Table, from: &Table) -> Result<u64> {
    // Pass 1: live records that will change, out of the way.
    let mut batch: Vec<(u64, Option<Vec<raiz_engine::Value>>, bool)> = Vec::new();
    let (mut theirs, mut ours) = (Records::new(from), Records::new(here));
    while let Some(want) = theirs.next()? {
        if let Some(have) = ours.at(want.recno())? {
            if !have.is_deleted() && !same(&have, &want) {
                batch.push((want.recno(), None, true));
            }
        }
        if batch.len() >= CHUNK {
            session.put_records(here, &std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        session.put_records(here, &std::mem::take(&mut batch))?;
    }
    // Pass 2: every record that differs, as the snapshot has it.
    let mut written = 0u64;
    let (mut theirs, mut ours) = (Records::new(from), Records::new(here));
    while let Some(want) = theirs.next()? {
        let have = ours.at(want.recno())?;
        if have.as_ref().is_some_and(|h| same(h, &want)) {
            continue;
        }
        let recno = want.recno();
        let deleted = want.is_deleted();
        batch.push((recno, Some(want.into_values()), deleted));
        written += 1;
        if batch.len() >= CHUNK {
            session.put_records(here, &std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        session.put_records(here, &batch)?;
    }
    Ok(written)
}
