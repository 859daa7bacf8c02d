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
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dbase::{FieldValue, ReadableRecord};
use raiz_engine::{Date, Decimal, Field, FieldType, Schema};

use super::{RowError, Source, SourceRow};
use crate::error::{CliError, CliResult};
use crate::values::Cell;

/// A field descriptor, as the header has it.
#[derive(Debug, Clone)]
struct Desc {
    name: String,
    ty: u8,
    len: u8,
    dec: u8,
    /// Offset in the record (the deletion flag is byte 0).
    offset: usize,
}

/// The header, read here rather than by `dbase`: its field count and the
/// decimals of each field (FoxPro files may keep an area after the
/// descriptors that `dbase` would read as fields).
#[derive(Debug, Clone)]
struct Header {
    version: u8,
    records: u64,
    first: u64,
    record_len: u64,
    fields: Vec<Desc>,
}

fn read_header(path: &Path, f: &mut File) -> CliResult<Header> {
    let bad = |what: String| CliError::Data(format!("{}: not a DBF file: {what}", path.display()));
    let io = |e| CliError::io(path.display(), e);
    let mut h = [0u8; 32];
    f.read_exact(&mut h)
        .map_err(|_| bad("shorter than a header".into()))?;
    let records = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
    let first = u64::from(u16::from_le_bytes([h[8], h[9]]));
    let record_len = u64::from(u16::from_le_bytes([h[10], h[11]]));
    if first < 33 {
        return Err(bad(format!(
            "the header says records start at byte {first}"
        )));
    }
    let mut rest = vec![0u8; first as usize - 32];
    f.read_exact(&mut rest).map_err(io)?;
    let mut fields = Vec::new();
    let mut offset = 1;
    for d in rest.chunks_exact(32) {
        if d[0] == 0x0D {
            break;
        }
        let name_end = d[..11].iter().position(|b| *b == 0).unwrap_or(11);
        let name = String::from_utf8_lossy(&d[..name_end]).trim().to_owned();
        fields.push(Desc {
            name,
            ty: d[11],
            len: d[16],
            dec: d[17],
            offset,
        });
        offset += usize::from(d[16]);
    }
    if fields.is_empty() {
        return Err(bad("no field descriptors".into()));
    }
    if offset as u64 != record_len {
        return Err(bad(format!(
            "records of {record_len} bytes, but the fields take {offset}"
        )));
    }
    Ok(Header {
        version: h[0],
        records,
        first,
        record_len,
        fields,
    })
}

/// The file as `dbase` is shown it: the header rebuilt from the fields
/// found (with the 263-byte backlink Visual FoxPro has), and every record
/// marked live (this module reads the deletion flags itself).
struct View {
    head: Vec<u8>,
    file: BufReader<File>,
    file_pos: u64,
    first: u64,
    record_len: u64,
    records: u64,
    pos: u64,
}

impl View {
    fn new(header: &Header, raw_head: &[u8], file: File) -> View {
        let vfp = matches!(header.version, 0x30..=0x32);
        let mut head = raw_head[..32].to_vec();
        for d in &header.fields {
            let mut desc = [0u8; 32];
            let n = d.name.len().min(10);
            desc[..n].copy_from_slice(&d.name.as_bytes()[..n]);
            desc[11] = d.ty;
            desc[16] = d.len;
            desc[17] = d.dec;
            head.extend_from_slice(&desc);
        }
        head.push(0x0D);
        if vfp {
            head.extend(std::iter::repeat_n(0u8, 263));
        }
        let len = u16::try_from(head.len()).unwrap_or(u16::MAX);
        head[8..10].copy_from_slice(&len.to_le_bytes());
        View {
            head,
            file: BufReader::with_capacity(1 << 16, file),
            file_pos: u64::MAX,
            first: header.first,
            record_len: header.record_len,
            records: header.records,
            pos: 0,
        }
    }

    fn len(&self) -> u64 {
        self.head.len() as u64 + self.records * self.record_len
    }
}

impl Read for View {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let head = self.head.len() as u64;
        if self.pos < head {
            let from = &self.head[self.pos as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            self.pos += n as u64;
            return Ok(n);
        }
        let rel = self.pos - head;
        let left = self.records * self.record_len - rel.min(self.records * self.record_len);
        let want = (buf.len() as u64).min(left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let at = self.first + rel;
        if self.file_pos != at {
            self.file.seek(SeekFrom::Start(at))?;
            self.file_pos = at;
        }
        let n = self.file.read(&mut buf[..want])?;
        self.file_pos += n as u64;
        // Every record live: its first byte is the deletion flag.
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if (rel + i as u64).is_multiple_of(self.record_len) {
                *b = b' ';
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for View {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len().checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// The DBF view or its memo file: `dbase` wants one type for both.
enum Src {
    View(Box<View>),
    Memo(BufReader<File>),
}

impl Read for Src {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Src::View(v) => v.read(buf),
            Src::Memo(m) => m.read(buf),
        }
    }
}

impl Seek for Src {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match self {
            Src::View(v) => v.seek(to),
            Src::Memo(m) => m.seek(to),
        }
    }
}

/// A record's fields in order, as `dbase` decodes them (a field it cannot
/// decode is its reason, and the others are still read).
struct Fields(Vec<Result<FieldValue, String>>);

impl ReadableRecord for Fields {
    fn read_using<S, M>(it: &mut dbase::FieldIterator<S, M>) -> Result<Self, dbase::FieldError>
    where
        S: Read + Seek,
        M: Read + Seek,
    {
        Ok(Fields(
            it.map(|f| f.map(|nv| nv.value).map_err(|e| e.kind().to_string()))
                .collect(),
        ))
    }
}

/// A DBF file being read.
pub struct DbfSource {
    path: PathBuf,
    header: Header,
    reader: dbase::Reader<Src>,
    raw: BufReader<File>,
    raw_pos: u64,
    next: u64,
    buf: Vec<u8>,
}

/// The memo file next to `path` (`.dbt` for dBASE, `.fpt` for FoxPro), in
/// either case.
fn memo_path(path: &Path, version: u8) -> Option<PathBuf> {
    let ext = match version {
        0x83 | 0x8b | 0xcb => "dbt",
        _ => "fpt",
    };
    [ext.to_owned(), ext.to_ascii_uppercase()]
        .iter()
        .map(|e| path.with_extension(e))
        .find(|p| p.exists())
}

impl DbfSource {
    /// Opens `path` (and its memo file).
    pub fn open(path: &Path) -> CliResult<DbfSource> {
        let io = |e| CliError::io(path.display(), e);
        let mut f = File::open(path).map_err(io)?;
        let header = read_header(path, &mut f)?;
        for d in &header.fields {
            if !b"CNFDLMIBYT".contains(&d.ty) {
                return Err(CliError::Data(format!(
                    "{}: field {}: DBF type {:?} is not imported (C, N, F, D, L, M, I, B, Y, T are)",
                    path.display(),
                    d.name,
                    char::from(d.ty)
                )));
            }
        }
        let mut raw_head = vec![0u8; 32];
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.read_exact(&mut raw_head).map_err(io)?;
        let view = View::new(&header, &raw_head, File::open(path).map_err(io)?);
        let builder = dbase::ReaderBuilder::new()
            .with_options(dbase::ReadingOptions::default().character_trim(dbase::TrimOption::End));
        let reader = if header.fields.iter().any(|d| d.ty == b'M') {
            let memo = memo_path(path, header.version).ok_or_else(|| {
                CliError::Io(format!(
                    "{}: it has memo fields, but its memo file ({}) is missing",
                    path.display(),
                    path.with_extension(if matches!(header.version, 0x83 | 0x8b | 0xcb) {
                        "dbt"
                    } else {
                        "fpt"
                    })
                    .display()
                ))
            })?;
            let m = File::open(&memo).map_err(|e| CliError::io(memo.display(), e))?;
            builder.build_with_memo(Src::View(Box::new(view)), Src::Memo(BufReader::new(m)))
        } else {
            builder.build(Src::View(Box::new(view)))
        }
        .map_err(|e| dbf_err(path, e))?;
        Ok(DbfSource {
            path: path.to_path_buf(),
            buf: vec![0; header.record_len as usize],
            header,
            reader,
            raw: BufReader::with_capacity(1 << 16, f),
            raw_pos: u64::MAX,
            next: 0,
        })
    }

    fn read_raw(&mut self, index: u64) -> CliResult<()> {
        let at = self.header.first + index * self.header.record_len;
        if self.raw_pos != at {
            self.raw
                .seek(SeekFrom::Start(at))
                .map_err(|e| CliError::io(self.path.display(), e))?;
        }
        self.raw.read_exact(&mut self.buf).map_err(|e| {
            CliError::io(format!("{}: record {}", self.path.display(), index + 1), e)
        })?;
        self.raw_pos = at + self.header.record_len;
        Ok(())
    }
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

/// The raiz type of a DBF field.
fn raiz_type(d: &Desc) -> CliResult<FieldType> {
    let (len, dec) = (d.len, d.dec);
    Ok(match d.ty {
        b'C' => FieldType::Char(u32::from(len.max(1))),
        b'N' | b'F' => {
            if dec > 0 && u16::from(dec) + 2 > u16::from(len) {
                return Err(CliError::Data(format!(
                    "field {}: N({len},{dec}) leaves no room for \"0.\"",
                    d.name
                )));
            }
            FieldType::Numeric {
                len: len.clamp(1, 38),
                dec,
            }
        }
        b'D' => FieldType::Date,
        b'L' => FieldType::Logical,
        b'M' => FieldType::Memo,
        b'I' => FieldType::Int64,
        b'B' => FieldType::Float64,
        b'Y' => FieldType::Numeric { len: 20, dec: 4 },
        _ => FieldType::Char(19),
    })
}

impl Source for DbfSource {
    fn unit(&self) -> &'static str {
        "record"
    }

    fn columns(&self) -> Option<Vec<String>> {
        Some(self.header.fields.iter().map(|f| f.name.clone()).collect())
    }

    fn declared(&self) -> Option<Schema> {
        let fields: CliResult<Vec<Field>> = self
            .header
            .fields
            .iter()
            .map(|d| Ok(Field::new(d.name.clone(), raiz_type(d)?)))
            .collect();
        fields.ok().map(Schema::new)
    }

    fn declared_needs_widths(&self) -> bool {
        true
    }

    fn check_declared(&self) -> CliResult {
        for d in &self.header.fields {
            raiz_type(d)?;
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        self.header.records
    }

    fn position(&self) -> u64 {
        self.next
    }

    fn rewind(&mut self) -> CliResult {
        self.next = 0;
        Ok(())
    }

    fn next_row(&mut self) -> CliResult<Option<Result<SourceRow, RowError>>> {
        let index = self.next;
        if index >= self.header.records {
            return Ok(None);
        }
        self.next += 1;
        let at = index + 1;
        self.read_raw(index)?;
        let deleted = self.buf[0] == b'*';
        self.reader
            .seek(index as usize)
            .map_err(|e| dbf_err(&self.path, e))?;
        let decoded = match self.reader.iter_records_as::<Fields>().next() {
            Some(Ok(f)) => f.0,
            Some(Err(e)) => {
                if matches!(e.kind(), dbase::ErrorKind::IoError(_)) {
                    return Err(dbf_err(&self.path, e));
                }
                return Ok(Some(Err(RowError::new(at, None, e.kind().to_string()))));
            }
            None => return Ok(None),
        };
        let mut cells = Vec::with_capacity(self.header.fields.len());
        for (d, v) in self.header.fields.iter().zip(decoded) {
            let raw = &self.buf[d.offset..d.offset + usize::from(d.len)];
            let bad =
                |reason: String| Ok(Some(Err(RowError::new(at, Some(d.name.clone()), reason))));
            let cell = match d.ty {
                b'N' | b'F' => {
                    let text = String::from_utf8_lossy(raw);
                    let t = text.trim();
                    if t.is_empty() {
                        Cell::Empty
                    } else if t.bytes().all(|b| b == b'*') {
                        return bad(format!(
                            "{t:?}: the number overflowed its field when it was written"
                        ));
                    } else {
                        Cell::Number(t.to_owned())
                    }
                }
                b'Y' => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&raw[..8]);
                    Cell::Number(Decimal::new(i128::from(i64::from_le_bytes(b)), 4).to_string())
                }
                b'T' => {
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
                                return bad(format!(
                                    "day {day}, millisecond {ms} is not a date and time"
                                ))
                            }
                        }
                    }
                }
                _ => match v.and_then(value_cell) {
                    Ok(c) => c,
                    Err(reason) => return bad(reason),
                },
            };
            cells.push((d.name.clone(), cell));
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
