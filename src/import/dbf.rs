//! DBF input (dBASE III/IV, FoxPro, Visual FoxPro) through the `dbase`
//! crate: the header's fields map to raiz types, text is decoded from the
//! code page named by the header's language driver byte (cp437, cp850,
//! cp1252 … into UTF-8), memos come from the `.dbt` / `.fpt` file, and
//! deleted records stay deleted.
//!
//! Numbers are read from the record's own text (`N`, `F`) or its 8-byte
//! integer (`Y`, currency), never through a float, so every digit stays; the
//! decimals of `N` and `F` fields are read from the field descriptors, which
//! `dbase` does not expose.
//!
//! | DBF                 | raiz                                   |
//! |---------------------|----------------------------------------|
//! | `C(n)`              | `Char(n)`, wider if UTF-8 needs it     |
//! | `N(l,d)`, `F(l,d)`  | `Numeric(l,d)`                         |
//! | `D`                 | `Date`                                 |
//! | `L`                 | `Logical` (`?` or blank: false)        |
//! | `M`                 | `Memo`                                 |
//! | `I`                 | `Int64`                                |
//! | `B` (double)        | `Float64`                              |
//! | `Y` (currency)      | `Numeric(20,4)`                        |
//! | `T` (datetime)      | `Char(19)`, `YYYY-MM-DD HH:MM:SS`      |

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dbase::{FieldType as DbfType, FieldValue};
use raiz_engine::{Date, Decimal, Field, FieldType, Schema};

use super::{RowError, Source, SourceRow};
use crate::error::{CliError, CliResult};
use crate::values::Cell;

/// A DBF file being read.
pub struct DbfSource {
    path: PathBuf,
    file: dbase::File<dbase::BufReadWriteFile>,
    raw: File,
    /// Per field: name, type, length, decimals, offset in the record.
    fields: Vec<(String, DbfType, u8, u8, usize)>,
    record_size: usize,
    first: u64,
    next: usize,
    buf: Vec<u8>,
}

fn dbf_err(path: &Path, e: dbase::Error) -> CliError {
    match e.kind() {
        dbase::ErrorKind::IoError(_) => CliError::Io(format!("{}: {e}", path.display())),
        dbase::ErrorKind::ErrorOpeningMemoFile(_) => CliError::Io(format!(
            "{}: the memo file (.dbt/.fpt): {e}",
            path.display()
        )),
        _ => CliError::Data(format!("{}: {e}", path.display())),
    }
}

impl DbfSource {
    /// Opens `path` (and its memo file).
    pub fn open(path: &Path) -> CliResult<DbfSource> {
        let mut file = dbase::File::open_read_only(path).map_err(|e| dbf_err(path, e))?;
        // Leading blanks are data; trailing ones are padding.
        file.set_options(dbase::ReadingOptions::default().character_trim(dbase::TrimOption::End));
        let mut raw = File::open(path).map_err(|e| CliError::io(path.display(), e))?;
        let mut head = [0u8; 32];
        raw.read_exact(&mut head)
            .map_err(|e| CliError::io(path.display(), e))?;
        let first = u64::from(u16::from_le_bytes([head[8], head[9]]));
        let mut fields = Vec::new();
        let mut offset = 1;
        for (i, f) in file.fields().iter().enumerate() {
            // Descriptor i: 32 bytes from byte 32; byte 17 holds the decimals.
            let mut d = [0u8; 32];
            raw.seek(SeekFrom::Start(32 + 32 * i as u64))
                .and_then(|_| raw.read_exact(&mut d))
                .map_err(|e| CliError::io(path.display(), e))?;
            fields.push((
                f.name().to_owned(),
                f.field_type(),
                f.length(),
                d[17],
                offset,
            ));
            offset += usize::from(f.length());
        }
        Ok(DbfSource {
            path: path.to_path_buf(),
            file,
            raw,
            fields,
            record_size: offset,
            first,
            next: 0,
            buf: vec![0; offset],
        })
    }

    fn read_raw(&mut self, index: usize) -> CliResult<()> {
        let at = self.first + (index * self.record_size) as u64;
        self.raw
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.raw.read_exact(&mut self.buf))
            .map_err(|e| CliError::io(format!("{}: record {}", self.path.display(), index + 1), e))
    }
}

/// The raiz type of a DBF field.
fn raiz_type(name: &str, ty: DbfType, len: u8, dec: u8) -> CliResult<FieldType> {
    Ok(match ty {
        DbfType::Character => FieldType::Char(u32::from(len.max(1))),
        DbfType::Numeric | DbfType::Float => {
            if dec > 0 && u16::from(dec) + 2 > u16::from(len) {
                return Err(CliError::Data(format!(
                    "field {name}: N({len},{dec}) leaves no room for \"0.\""
                )));
            }
            FieldType::Numeric {
                len: len.clamp(1, 38),
                dec,
            }
        }
        DbfType::Date => FieldType::Date,
        DbfType::Logical => FieldType::Logical,
        DbfType::Memo => FieldType::Memo,
        DbfType::Integer => FieldType::Int64,
        DbfType::Double => FieldType::Float64,
        DbfType::Currency => FieldType::Numeric { len: 20, dec: 4 },
        DbfType::DateTime => FieldType::Char(19),
    })
}

impl Source for DbfSource {
    fn unit(&self) -> &'static str {
        "record"
    }

    fn columns(&self) -> Option<Vec<String>> {
        Some(self.fields.iter().map(|f| f.0.clone()).collect())
    }

    fn declared(&self) -> Option<Schema> {
        let fields: CliResult<Vec<Field>> = self
            .fields
            .iter()
            .map(|(n, t, l, d, _)| Ok(Field::new(n.clone(), raiz_type(n, *t, *l, *d)?)))
            .collect();
        fields.ok().map(Schema::new)
    }

    fn declared_needs_widths(&self) -> bool {
        true
    }

    fn check_declared(&self) -> CliResult {
        for (n, t, l, d, _) in &self.fields {
            raiz_type(n, *t, *l, *d)?;
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        self.file.num_records() as u64
    }

    fn position(&self) -> u64 {
        self.next as u64
    }

    fn rewind(&mut self) -> CliResult {
        self.next = 0;
        Ok(())
    }

    fn next_row(&mut self) -> CliResult<Option<Result<SourceRow, RowError>>> {
        let index = self.next;
        if index >= self.file.num_records() {
            return Ok(None);
        }
        self.next += 1;
        let at = index as u64 + 1;
        self.read_raw(index)?;
        let deleted = self.buf[0] == b'*';
        let mut cells = Vec::with_capacity(self.fields.len());
        for (i, (name, ty, len, _dec, off)) in self.fields.iter().enumerate() {
            let raw = &self.buf[*off..*off + usize::from(*len)];
            let cell = match ty {
                DbfType::Numeric | DbfType::Float => {
                    let text = String::from_utf8_lossy(raw);
                    let t = text.trim();
                    if t.is_empty() {
                        Cell::Empty
                    } else if t.bytes().all(|b| b == b'*') {
                        return Ok(Some(Err(RowError::new(
                            at,
                            Some(name.clone()),
                            format!("{t:?}: the number overflowed its field when it was written"),
                        ))));
                    } else {
                        Cell::Number(t.to_owned())
                    }
                }
                DbfType::DateTime => {
                    let mut day = [0u8; 4];
                    let mut ms = [0u8; 4];
                    day.copy_from_slice(&raw[..4]);
                    ms.copy_from_slice(&raw[4..8]);
                    let (day, ms) = (i32::from_le_bytes(day), i32::from_le_bytes(ms));
                    if raw.iter().all(|b| *b == 0 || *b == b' ') || day == 0 {
                        Cell::Empty
                    } else {
                        match datetime_text(day, ms) {
                            Some(t) => Cell::Text(t),
                            None => {
                                return Ok(Some(Err(RowError::new(
                                    at,
                                    Some(name.clone()),
                                    format!("day {day}, millisecond {ms} is not a date and time"),
                                ))))
                            }
                        }
                    }
                }
                DbfType::Currency => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&raw[..8]);
                    Cell::Number(Decimal::new(i128::from(i64::from_le_bytes(b)), 4).to_string())
                }
                _ => {
                    let mut rec = self.file.record(index).expect("index < num_records");
                    match rec.read_field(dbase::FieldIndex(i)) {
                        Ok(v) => match value_cell(v) {
                            Ok(c) => c,
                            Err(reason) => {
                                return Ok(Some(Err(RowError::new(at, Some(name.clone()), reason))))
                            }
                        },
                        Err(e) => {
                            if matches!(e.kind(), dbase::ErrorKind::IoError(_)) {
                                return Err(dbf_err(&self.path, e));
                            }
                            return Ok(Some(Err(RowError::new(
                                at,
                                Some(name.clone()),
                                e.kind().to_string(),
                            ))));
                        }
                    }
                }
            };
            cells.push((name.clone(), cell));
        }
        Ok(Some(Ok(SourceRow { at, cells, deleted })))
    }
}

/// A value `dbase` decoded, as a cell.
fn value_cell(v: FieldValue) -> Result<Cell, String> {
    Ok(match v {
        FieldValue::Character(None) => Cell::Empty,
        FieldValue::Character(Some(s)) => Cell::Text(s),
        FieldValue::Memo(s) => Cell::Bytes(s.into_bytes()),
        FieldValue::Logical(b) => Cell::Bool(b.unwrap_or(false)),
        FieldValue::Date(None) => Cell::Empty,
        FieldValue::Date(Some(d)) => {
            let date = Date::ymd(d.year() as u16, d.month() as u8, d.day() as u8);
            if d.year() > 9999 || !date.is_valid() {
                return Err(format!(
                    "{:04}-{:02}-{:02} is not a real calendar date",
                    d.year(),
                    d.month(),
                    d.day()
                ));
            }
            Cell::Date(date)
        }
        FieldValue::Integer(i) => Cell::Number(i.to_string()),
        FieldValue::Double(f) => Cell::Number(crate::values::float_text(f)),
        // Read from the record's own bytes instead (exact digits, empty
        // datetimes).
        FieldValue::Numeric(_)
        | FieldValue::Float(_)
        | FieldValue::Currency(_)
        | FieldValue::DateTime(_) => {
            unreachable!("read from the raw record")
        }
    })
}

/// A Visual FoxPro datetime (Julian day number, milliseconds since
/// midnight) as `YYYY-MM-DD HH:MM:SS`.
fn datetime_text(jdn: i32, ms: i32) -> Option<String> {
    let a = i64::from(jdn) + 32044;
    let b = (4 * a + 3) / 146_097;
    let c = a - 146_097 * b / 4;
    let d = (4 * c + 3) / 1461;
    let e = c - 1461 * d / 4;
    let m = (5 * e + 2) / 153;
    let day = e - (153 * m + 2) / 5 + 1;
    let month = m + 3 - 12 * (m / 10);
    let year = 100 * b + d - 4800 + m / 10;
    let date = Date::ymd(
        u16::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
    );
    if !(1..=9999).contains(&year) || !date.is_valid() || !(0..86_400_000).contains(&ms) {
        return None;
    }
    let secs = ms / 1000;
    Some(format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn julian_days_become_dates() {
        assert_eq!(
            super::datetime_text(2_460_432, 49_510_000).as_deref(),
            Some("2024-05-01 13:45:10")
        );
        assert_eq!(
            super::datetime_text(2_451_545, 0).as_deref(),
            Some("2000-01-01 00:00:00")
        );
        assert_eq!(super::datetime_text(-5, 0), None);
        assert_eq!(super::datetime_text(2_451_545, 86_400_000), None);
    }
}
