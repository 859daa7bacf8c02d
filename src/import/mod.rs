//! `raiz import`: rows from CSV, JSON lines or DBF into a table, all or
//! nothing.
//!
//! 1. The target schema: the table's own; with `--create`, `--schema`, or
//!    what the input declares (typed CSV header, `{"@schema": …}` line, DBF
//!    header), else inferred from a first pass over the rows ([`infer`]).
//! 2. A checking pass turns every row into values of that schema and
//!    reports each bad row with its line (record, for DBF), field and
//!    reason. Nothing has been written yet: a bad row stops the import here
//!    unless `--keep-going` skips it. `--dry-run` stops here in any case.
//! 3. The writing pass appends every good row (and deletes those marked
//!    deleted) in one transaction, committed at the end. If the engine
//!    refuses a row (a duplicate unique key) the transaction is rolled back
//!    — and a table the import created is dropped — unless `--keep-going`
//!    skips that row too.
//!
//! The transaction holds the rows until the commit (about 1 KB a row);
//! `--batch N` commits every N rows instead, bounding the memory: an import
//! that then fails keeps the batches committed before, unless the import
//! created the table, which it drops. BENCHMARKS.md has the figures.

mod csv;
mod dbf;
pub mod infer;
mod jsonl;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use raiz_client::{Connection, Session, Table, TableOptions, Value};
use raiz_engine::Schema;

use crate::error::{CliError, CliResult};
use crate::progress;
use crate::values::{schema_text, to_value, Cell};

/// The column or key that marks a deleted record.
pub const DELETED: &str = "@deleted";

/// Rows sent to the table per request (pipelined to a server).
const CHUNK: usize = 512;

/// Bad rows told one by one; the rest are counted.
const REPORT_MAX: usize = 20;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// dBASE III/IV or FoxPro table (memos from its .dbt/.fpt).
    Dbf,
}

/// What `raiz import` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The table.
    pub table: String,
    /// The input file.
    pub from: PathBuf,
    /// Its format.
    pub format: Format,
    /// Create the table.
    pub create: bool,
    /// The schema for `--create`.
    pub schema: Option<Schema>,
    /// Check and tell, change nothing.
    pub dry_run: bool,
    /// Skip bad rows.
    pub keep_going: bool,
    /// Commit every this many rows (None: one transaction).
    pub batch: Option<u64>,
}

/// One row of input: where it is, its cells by column, its deleted flag.
#[derive(Debug, Clone)]
pub struct SourceRow {
    /// Line (CSV, JSON lines) or record number (DBF).
    pub at: u64,
    /// Column name and cell.
    pub cells: Vec<(String, Cell)>,
    /// Marked deleted.
    pub deleted: bool,
}

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{at}{}: {reason}", field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct RowError {
    /// Line or record number.
    pub at: u64,
    /// The field concerned.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl RowError {
    /// A bad row.
    pub fn new(at: u64, field: Option<String>, reason: String) -> RowError {
        RowError { at, field, reason }
    }
}

/// An input being read, row by row, as often as the passes need.
pub trait Source {
    /// What `at` counts: `line` or `record`.
    fn unit(&self) -> &'static str;
    /// The columns, when the input names them up front.
    fn columns(&self) -> Option<Vec<String>>;
    /// The schema the input declares.
    fn declared(&self) -> Option<Schema>;
    /// The declared schema's Char widths come from the data (DBF: text
    /// grows when its code page becomes UTF-8).
    fn declared_needs_widths(&self) -> bool {
        false
    }
    /// Fails when the declared schema cannot be a raiz schema.
    fn check_declared(&self) -> CliResult {
        Ok(())
    }
    /// Size of the input, for progress (bytes or records).
    fn total(&self) -> u64;
    /// How far the reading is, in the unit of [`Source::total`].
    fn position(&self) -> u64;
    /// Starts again from the first row.
    fn rewind(&mut self) -> CliResult;
    /// The next row (None at the end); an `Err` is an I/O failure that ends
    /// the import, a bad row is `Some(Err(_))`.
    fn next_row(&mut self) -> CliResult<Option<Result<SourceRow, RowError>>>;
}

fn open(format: Format, path: &std::path::Path) -> CliResult<Box<dyn Source>> {
    Ok(match format {
        Format::Csv => Box::new(csv::CsvSource::open(path)?),
        Format::Jsonl => Box::new(jsonl::JsonlSource::open(path)?),
        Format::Dbf => Box::new(dbf::DbfSource::open(path)?),
    })
}

/// How source columns fill the target's fields.
struct Target {
    schema: Schema,
    /// Lower-case column name → field position.
    map: HashMap<String, usize>,
}

impl Target {
    fn new(schema: Schema, renames: &[(String, String)]) -> Target {
        let mut map: HashMap<String, usize> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        for (column, field) in renames {
            if let Some(i) = schema.position(field) {
                map.insert(column.to_ascii_lowercase(), i);
            }
        }
        Target { schema, map }
    }

    /// Columns that are no field of the target.
    fn unknown(&self, columns: &[String]) -> Vec<String> {
        columns
            .iter()
            .filter(|c| !self.map.contains_key(&c.to_ascii_lowercase()))
            .cloned()
            .collect()
    }

    /// A row as the target's values.
    fn values(&self, row: SourceRow, table: &str) -> Result<Vec<Value>, RowError> {
        let mut values = self.schema.empty_record();
        for (name, cell) in row.cells {
            let Some(&i) = self.map.get(&name.to_ascii_lowercase()) else {
                return Err(RowError::new(
                    row.at,
                    None,
                    format!("{name:?} is no field of table {table}"),
                ));
            };
            let field = &self.schema.fields()[i];
            values[i] = to_value(cell, field).map_err(|e| {
                RowError::new(
                    row.at,
                    Some(field.name.clone()),
                    match e {
                        crate::values::ValueError::Value { reason, .. } => reason,
                        other => other.to_string(),
                    },
                )
            })?;
        }
        Ok(values)
    }
}

/// Bad rows seen: the first ones in full, then a count.
struct Bad {
    unit: &'static str,
    source: String,
    count: u64,
}

impl Bad {
    fn report(&mut self, e: &RowError) {
        self.count += 1;
        if self.count as usize <= REPORT_MAX {
            eprintln!("raiz: {}: {} {e}", self.source, self.unit);
        } else if self.count as usize == REPORT_MAX + 1 {
            eprintln!("raiz: {}: more bad rows (counted below)", self.source);
        }
    }
}

/// Runs `raiz import`.
pub fn run(conn: &Connection, o: &Options) -> CliResult {
    let started = Instant::now();
    let mut src = open(o.format, &o.from)?;
    let session = conn.session()?;
    let exists = session.table_exists(&o.table)?;
    match (exists, o.create) {
        (true, true) => {
            return Err(CliError::Data(format!(
                "table {} exists: leave out --create to import into it",
                o.table
            )))
        }
        (false, false) => {
            return Err(CliError::Data(format!(
                "table {} does not exist: --create makes it",
                o.table
            )))
        }
        _ => {}
    }
    if exists && o.schema.is_some() {
        return Err(CliError::Usage(
            "--schema goes with --create (the table has its schema)".into(),
        ));
    }
    let source = o.from.display().to_string();
    let (schema, renames, how) = if exists {
        let t = session.open_table(&o.table)?;
        let s = (*t.schema()).clone();
        t.close()?;
        (s, Vec::new(), "the table's")
    } else if let Some(s) = &o.schema {
        (s.clone(), Vec::new(), "given")
    } else if let (Some(s), false) = (src.declared(), src.declared_needs_widths()) {
        (s, Vec::new(), "declared by the input")
    } else {
        src.check_declared()?;
        let declared = src.declared();
        let pb = progress::bar(src.total());
        pb.set_message("reading");
        let mut inf =
            infer::Inferrer::new(src.columns(), declared.as_ref(), o.format == Format::Jsonl);
        while let Some(row) = src.next_row()? {
            if let Ok(row) = row {
                inf.feed(&row);
            }
            pb.set_position(src.position());
        }
        pb.finish_and_clear();
        src.rewind()?;
        let (s, renames) = inf.finish()?;
        let how = if declared.is_some() {
            "from the DBF header"
        } else {
            "inferred"
        };
        (s, renames, how)
    };
    let target = Target::new(schema, &renames);
    if let Some(cols) = src.columns() {
        let unknown = target.unknown(&cols);
        if !unknown.is_empty() {
            return Err(CliError::Data(format!(
                "{source}: column(s) {} are no field of table {}",
                unknown.join(", "),
                o.table
            )));
        }
    }

    // Checking pass: nothing is written.
    let mut bad = Bad {
        unit: src.unit(),
        source: source.clone(),
        count: 0,
    };
    let (mut rows, mut deleted) = (0u64, 0u64);
    let pb = progress::bar(src.total());
    while let Some(row) = src.next_row()? {
        match row.and_then(|r| {
            let d = r.deleted;
            target.values(r, &o.table).map(|_| d)
        }) {
            Ok(d) => {
                rows += 1;
                deleted += u64::from(d);
            }
            Err(e) => bad.report(&e),
        }
        pb.set_position(src.position());
    }
    pb.finish_and_clear();
    if o.dry_run {
        println!("schema ({how}): {}", schema_text(&target.schema));
        println!(
            "{rows} rows ({deleted} deleted) would be imported into {}; {} bad",
            o.table, bad.count
        );
    }
    if bad.count > 0 && !o.keep_going {
        return Err(CliError::Data(format!(
            "{} bad row(s) in {source}; nothing imported (--keep-going imports the others)",
            bad.count
        )));
    }
    if o.dry_run {
        return Ok(());
    }

    // Writing pass: one transaction.
    src.rewind()?;
    if !exists {
        session.create_table(&o.table, &target.schema, TableOptions::default())?;
    }
    let mut t = session.open_table(&o.table)?;
    let mut w = Writer {
        batch: o.batch,
        uncommitted: 0,
        session: &session,
        table: &mut t,
        keep_going: o.keep_going,
        refused: 0,
        written: 0,
        deleted: 0,
        chunk: Vec::with_capacity(CHUNK),
        bad: &mut bad,
        pb: progress::bar(rows),
    };
    let r = session
        .begin()
        .map_err(CliError::from)
        .and_then(|()| w.all(src.as_mut(), &target, &o.table));
    let r = r.and_then(|()| session.commit().map_err(CliError::from));
    w.pb.finish_and_clear();
    let (written, deleted, refused) = (w.written, w.deleted, w.refused);
    if let Err(e) = r {
        let _ = session.rollback();
        drop(t);
        if !exists {
            let _ = session.drop_table(&o.table);
        }
        return Err(match e {
            CliError::Data(m) => CliError::Data(format!("{m}; nothing imported")),
            other => other,
        });
    }
    let secs = started.elapsed().as_secs_f64();
    let skipped = bad.count;
    println!(
        "imported {written} rows ({deleted} deleted) into {} in {secs:.2} s: {:.0} rows/s{}",
        o.table,
        written as f64 / secs.max(1e-9),
        if skipped > 0 {
            format!("; {skipped} bad row(s) skipped ({refused} refused by the table)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The writing pass.
struct Writer<'a> {
    batch: Option<u64>,
    uncommitted: u64,
    session: &'a Session,
    table: &'a mut Table,
    keep_going: bool,
    refused: u64,
    written: u64,
    deleted: u64,
    chunk: Vec<(u64, Vec<Value>, bool)>,
    bad: &'a mut Bad,
    pb: indicatif::ProgressBar,
}

impl Writer<'_> {
    fn all(&mut self, src: &mut dyn Source, target: &Target, table: &str) -> CliResult {
        while let Some(row) = src.next_row()? {
            let Ok(row) = row else { continue };
            let (at, deleted) = (row.at, row.deleted);
            // Checked in the first pass: a bad row here was skipped there.
            let Ok(values) = target.values(row, table) else {
                continue;
            };
            self.chunk.push((at, values, deleted));
            if self.chunk.len() == CHUNK {
                self.flush()?;
            }
        }
        self.flush()
    }

    /// Appends one row; a refusal names its line.
    fn one(&mut self, at: u64, values: &[Value], deleted: bool) -> Result<(), RowError> {
        let refused = |e: raiz_client::Error| RowError::new(at, None, e.to_string());
        let recno = self.table.append(values).map_err(refused)?;
        if deleted {
            self.table.delete(recno).map_err(refused)?;
            self.deleted += 1;
        }
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> CliResult {
        let chunk = std::mem::take(&mut self.chunk);
        if chunk.is_empty() {
            return Ok(());
        }
        self.pb.inc(chunk.len() as u64);
        self.uncommitted += chunk.len() as u64;
        let r = self.write(chunk);
        if let (Ok(()), Some(b)) = (&r, self.batch) {
            if self.uncommitted >= b {
                self.session.commit()?;
                self.session.begin()?;
                self.uncommitted = 0;
            }
        }
        r
    }

    fn write(&mut self, chunk: Vec<(u64, Vec<Value>, bool)>) -> CliResult {
        if self.keep_going {
            for (at, values, deleted) in &chunk {
                if let Err(e) = self.one(*at, values, *deleted) {
                    self.bad.report(&e);
                    self.refused += 1;
                }
            }
            return Ok(());
        }
        let sp = self.session.savepoint()?;
        let rows: Vec<Vec<Value>> = chunk.iter().map(|(_, v, _)| v.clone()).collect();
        match self.table.append_many(&rows) {
            Ok(recnos) => {
                for ((_, _, deleted), recno) in chunk.iter().zip(recnos) {
                    if *deleted {
                        self.table.delete(recno)?;
                        self.deleted += 1;
                    }
                }
                self.written += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Find the row the table refused, to name its line.
                self.session.rollback_to(sp)?;
                for (at, values, deleted) in &chunk {
                    if let Err(re) = self.one(*at, values, *deleted) {
                        return Err(CliError::Data(format!(
                            "{}: {} {re}",
                            self.bad.source, self.bad.unit
                        )));
                    }
                }
                Err(e.into())
            }
        }
    }
}
