//! `raiz export`: a table as CSV or JSON lines, in recno or an index's
//! order, every value exact (see [`crate::values`]), deleted records only
//! with `--deleted` (marked by `@deleted`), each field's type with `--types`
//! so `raiz import --create` recreates the table as it was.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use raiz_client::{Connection, Memo, Record, Table, Value};

use crate::error::{CliError, CliResult};
use crate::import::DELETED;
use crate::progress;
use crate::values::{json_string, json_value, schema_text, type_text, value_text};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// What `raiz export` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The table.
    pub table: String,
    /// The format.
    pub format: Format,
    /// The output file (standard output when None).
    pub out: Option<PathBuf>,
    /// The index whose order the records follow.
    pub order: Option<String>,
    /// Deleted records too.
    pub deleted: bool,
    /// Types in the header.
    pub types: bool,
}

/// Where the rows go.
enum Sink {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Json(BufWriter<Box<dyn Write>>),
}

/// The memo bytes of each memo field of `rec` (None for other fields).
fn memos(t: &Table, rec: &Record) -> CliResult<Vec<Option<Vec<u8>>>> {
    let schema = t.schema();
    schema
        .fields()
        .iter()
        .zip(rec.values())
        .map(|(f, v)| {
            Ok(match v {
                Value::Memo(Memo::Stored(r)) if !r.is_empty() => {
                    Some(t.read_memo(rec.recno(), &f.name)?)
                }
                Value::Memo(Memo::Data(d)) => Some(d.clone()),
                Value::Memo(_) => Some(Vec::new()),
                _ => None,
            })
        })
        .collect()
}

/// Runs `raiz export`.
pub fn run(conn: &Connection, o: &Options) -> CliResult {
    let session = conn.session()?;
    session.set_hide_deleted(!o.deleted)?;
    let mut t = session.open_table(&o.table)?;
    if let Some(i) = &o.order {
        t.set_order(Some(i))?;
    }
    let schema = t.schema();
    let target = o
        .out
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    let sink: Box<dyn Write> = match &o.out {
        Some(p) => Box::new(File::create(p).map_err(|e| CliError::io(p.display(), e))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let io = |e: std::io::Error| CliError::io(&target, e);
    let csv_err = |e: csv::Error| CliError::Io(format!("{target}: {e}"));
    let mut sink = match o.format {
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_writer(sink);
            let mut header: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| {
                    if o.types {
                        format!("{}:{}", f.name, type_text(f.ty))
                    } else {
                        f.name.clone()
                    }
                })
                .collect();
            if o.deleted {
                header.push(DELETED.into());
            }
            w.write_record(&header).map_err(csv_err)?;
            Sink::Csv(Box::new(w))
        }
        Format::Jsonl => {
            let mut out = BufWriter::with_capacity(1 << 16, sink);
            if o.types {
                let mut s = String::from("{\"@schema\":");
                json_string(&mut s, &schema_text(&schema));
                s.push_str("}\n");
                out.write_all(s.as_bytes()).map_err(io)?;
            }
            Sink::Json(out)
        }
    };
    let pb = progress::bar(t.record_count()?);
    let mut n = 0u64;
    let mut line = String::new();
    let mut cells: Vec<String> = Vec::with_capacity(schema.len() + 1);
    let mut more = t.first()?;
    while more {
        let rec = t.record()?;
        let memo = memos(&t, &rec)?;
        match &mut sink {
            Sink::Csv(w) => {
                cells.clear();
                cells.extend(
                    rec.values()
                        .iter()
                        .zip(&memo)
                        .map(|(v, m)| value_text(v, m.as_deref())),
                );
                if o.deleted {
                    cells.push(if rec.is_deleted() { "true" } else { "" }.into());
                }
                w.write_record(&cells).map_err(csv_err)?;
            }
            Sink::Json(out) => {
                line.clear();
                line.push('{');
                for (i, ((f, v), m)) in schema
                    .fields()
                    .iter()
                    .zip(rec.values())
                    .zip(&memo)
                    .enumerate()
                {
                    if i > 0 {
                        line.push(',');
                    }
                    json_string(&mut line, &f.name);
                    line.push(':');
                    json_value(&mut line, v, m.as_deref());
                }
                if rec.is_deleted() {
                    line.push_str(",\"@deleted\":true");
                }
                line.push_str("}\n");
                out.write_all(line.as_bytes()).map_err(io)?;
            }
        }
        n += 1;
        pb.inc(1);
        more = t.next()?;
    }
    match &mut sink {
        Sink::Csv(w) => w.flush().map_err(io)?,
        Sink::Json(out) => out.flush().map_err(io)?,
    }
    pb.finish_and_clear();
    if let Some(p) = &o.out {
        println!("exported {n} records of {} to {}", o.table, p.display());
    }
    Ok(())
}
