//! CSV input: a header row names the columns (`NAME` or `NAME:TYPE`, which
//! declares the schema), `@deleted` marks deleted records, every cell is text.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use raiz_engine::{Field, Schema};

use super::{RowError, Source, SourceRow, DELETED};
use crate::error::{CliError, CliResult};
use crate::values::{parse_bool, parse_type, Cell};

/// A CSV file being read.
pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    columns: Vec<String>,
    /// Position of the `@deleted` column among the cells.
    deleted: Option<usize>,
    declared: Option<Schema>,
    total: u64,
    record: csv::StringRecord,
}

fn reader(path: &Path) -> CliResult<csv::Reader<BufReader<File>>> {
    let f = File::open(path).map_err(|e| CliError::io(path.display(), e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, f)))
}

impl CsvSource {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> CliResult<CsvSource> {
        let total = std::fs::metadata(path)
            .map_err(|e| CliError::io(path.display(), e))?
            .len();
        let mut reader = reader(path)?;
        let headers = reader.headers().map_err(|e| match e.kind() {
            csv::ErrorKind::Io(_) => CliError::Io(format!("{}: {e}", path.display())),
            _ => CliError::Data(format!("{}: line 1 (the header): {e}", path.display())),
        })?;
        if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
            return Err(CliError::Data(format!(
                "{}: no header row: the first line names the columns",
                path.display()
            )));
        }
        let mut columns = Vec::new();
        let mut deleted = None;
        let mut typed = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let h = h.trim();
            if h.eq_ignore_ascii_case(DELETED) {
                deleted = Some(i);
                continue;
            }
            match h.split_once(':') {
                Some((name, ty)) => {
                    let ty = parse_type(ty).map_err(|e| {
                        CliError::Data(format!(
                            "{}: line 1, column {} ({h:?}): {e}",
                            path.display(),
                            i + 1
                        ))
                    })?;
                    typed.push(Field::new(name.trim(), ty));
                    columns.push(name.trim().to_owned());
                }
                None => columns.push(h.to_owned()),
            }
        }
        let declared = match typed.len() {
            0 => None,
            n if n == columns.len() => Some(Schema::new(typed)),
            _ => {
                return Err(CliError::Data(format!(
                    "{}: line 1: some columns have a type (NAME:TYPE) and some do not",
                    path.display()
                )))
            }
        };
        Ok(CsvSource {
            path: path.to_path_buf(),
            reader,
            columns,
            deleted,
            declared,
            total,
            record: csv::StringRecord::new(),
        })
    }
}

impl Source for CsvSource {
    fn unit(&self) -> &'static str {
        "line"
    }

    fn columns(&self) -> Option<Vec<String>> {
        Some(self.columns.clone())
    }

    fn declared(&self) -> Option<Schema> {
        self.declared.clone()
    }

    fn total(&self) -> u64 {
        self.total
    }

    fn position(&self) -> u64 {
        self.reader.position().byte()
    }

    fn rewind(&mut self) -> CliResult {
        self.reader = reader(&self.path)?;
        let _ = self.reader.headers();
        Ok(())
    }

    fn next_row(&mut self) -> CliResult<Option<Result<SourceRow, RowError>>> {
        let line = self.reader.position().line();
        match self.reader.read_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let at = self.record.position().map_or(line, |p| p.line());
                let n = self.columns.len() + usize::from(self.deleted.is_some());
                if self.record.len() != n {
                    // A blank line is no row.
                    if self.record.len() == 1 && self.record[0].is_empty() {
                        return self.next_row();
                    }
                    return Ok(Some(Err(RowError::new(
                        at,
                        None,
                        format!("{} fields, the header has {n}", self.record.len()),
                    ))));
                }
                let mut cells = Vec::with_capacity(self.columns.len());
                let mut deleted = false;
                let mut names = self.columns.iter();
                for (i, text) in self.record.iter().enumerate() {
                    if Some(i) == self.deleted {
                        deleted = match text.trim() {
                            "" => false,
                            "*" => true,
                            t => match parse_bool(t) {
                                Some(b) => b,
                                None => {
                                    return Ok(Some(Err(RowError::new(
                                        at,
                                        Some(DELETED.into()),
                                        format!("{t:?} is not true or false"),
                                    ))))
                                }
                            },
                        };
                        continue;
                    }
                    let name = names.next().expect("as many names as cells").clone();
                    let cell = if text.is_empty() {
                        Cell::Empty
                    } else {
                        Cell::Text(text.to_owned())
                    };
                    cells.push((name, cell));
                }
                Ok(Some(Ok(SourceRow { at, cells, deleted })))
            }
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line());
                match e.kind() {
                    csv::ErrorKind::Io(_) => {
                        Err(CliError::Io(format!("{}: {e}", self.path.display())))
                    }
                    csv::ErrorKind::Utf8 { err, .. } => Ok(Some(Err(RowError::new(
                        at,
                        None,
                        format!("field {} is not UTF-8 text", err.field() + 1),
                    )))),
                    _ => Ok(Some(Err(RowError::new(at, None, e.to_string())))),
                }
            }
        }
    }
}
