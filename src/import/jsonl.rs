//! JSON lines input: one object per line; numbers keep their exact text
//! (`12.50`), `{"base64": …}` holds bytes, `@deleted` marks a deleted record,
//! and a first line `{"@schema": "FIELD TYPE, …"}` declares the schema.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use raiz_engine::Schema;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{RowError, Source, SourceRow, DELETED};
use crate::error::{CliError, CliResult};
use crate::values::{from_base64, parse_bool, parse_schema, Cell};

/// Key of the schema line.
pub const SCHEMA: &str = "@schema";

/// An object's members in their order, values unparsed.
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut v = Vec::new();
                while let Some((k, raw)) = map.next_entry::<String, Box<RawValue>>()? {
                    v.push((k, raw));
                }
                Ok(RawObject(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Base64 {
    base64: String,
}

/// A member's value as a cell.
fn cell(raw: &RawValue) -> Result<Cell, String> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Cell::Text)
            .map_err(|e| e.to_string()),
        Some(b't') => Ok(Cell::Bool(true)),
        Some(b'f') => Ok(Cell::Bool(false)),
        Some(b'n') => Ok(Cell::Empty),
        Some(b'{') => {
            let b: Base64 = serde_json::from_str(text)
                .map_err(|_| "an object other than {\"base64\": \"…\"}".to_owned())?;
            from_base64(&b.base64).map(Cell::Bytes)
        }
        Some(b'[') => Err("an array is no field value".into()),
        _ => Ok(Cell::Number(text.to_owned())),
    }
}

/// A JSON lines file being read.
pub struct JsonlSource {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    pos: u64,
    total: u64,
    declared: Option<Schema>,
    buf: Vec<u8>,
}

impl JsonlSource {
    /// Opens `path`; a first `{"@schema": …}` line is read as the schema.
    pub fn open(path: &Path) -> CliResult<JsonlSource> {
        let total = std::fs::metadata(path)
            .map_err(|e| CliError::io(path.display(), e))?
            .len();
        let mut s = JsonlSource {
            path: path.to_path_buf(),
            reader: BufReader::new(File::open(path).map_err(|e| CliError::io(path.display(), e))?),
            line: 0,
            pos: 0,
            total,
            declared: None,
            buf: Vec::new(),
        };
        s.declared = s.schema_line()?;
        s.rewind()?;
        Ok(s)
    }

    /// The schema of a first `{"@schema": …}` line.
    fn schema_line(&mut self) -> CliResult<Option<Schema>> {
        if !self.read_line()? {
            return Ok(None);
        }
        let Ok(obj) = serde_json::from_slice::<RawObject>(&self.buf) else {
            return Ok(None);
        };
        match obj.0.as_slice() {
            [(k, v)] if k == SCHEMA => {
                let text: String = serde_json::from_str(v.get()).map_err(|_| {
                    CliError::Data(format!(
                        "{}: line 1: {SCHEMA} is not a string",
                        self.path.display()
                    ))
                })?;
                let schema = parse_schema(&text)
                    .map_err(|e| CliError::Data(format!("{}: line 1: {e}", self.path.display())))?;
                Ok(Some(schema))
            }
            _ => Ok(None),
        }
    }

    /// Reads the next line into `buf`; false at the end.
    fn read_line(&mut self) -> CliResult<bool> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| CliError::io(self.path.display(), e))?;
        self.pos += n as u64;
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(n > 0)
    }
}

impl Source for JsonlSource {
    fn unit(&self) -> &'static str {
        "line"
    }

    fn columns(&self) -> Option<Vec<String>> {
        None
    }

    fn declared(&self) -> Option<Schema> {
        self.declared.clone()
    }

    fn total(&self) -> u64 {
        self.total
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn rewind(&mut self) -> CliResult {
        let f = File::open(&self.path).map_err(|e| CliError::io(self.path.display(), e))?;
        self.reader = BufReader::with_capacity(1 << 16, f);
        self.line = 0;
        self.pos = 0;
        if self.declared.is_some() {
            self.read_line()?;
        }
        Ok(())
    }

    fn next_row(&mut self) -> CliResult<Option<Result<SourceRow, RowError>>> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let at = self.line;
        let obj = match serde_json::from_slice::<RawObject>(&self.buf) {
            Ok(o) => o,
            Err(e) => {
                let reason = if std::str::from_utf8(&self.buf).is_err() {
                    "not UTF-8 text".to_owned()
                } else {
                    format!("not a JSON object ({e})")
                };
                return Ok(Some(Err(RowError::new(at, None, reason))));
            }
        };
        let mut cells = Vec::with_capacity(obj.0.len());
        let mut deleted = false;
        for (k, raw) in obj.0 {
            if k.eq_ignore_ascii_case(DELETED) {
                deleted = match cell(&raw) {
                    Ok(Cell::Bool(b)) => b,
                    Ok(Cell::Empty) => false,
                    Ok(Cell::Text(t)) if parse_bool(&t).is_some() => parse_bool(&t) == Some(true),
                    _ => {
                        return Ok(Some(Err(RowError::new(
                            at,
                            Some(DELETED.into()),
                            format!("{} is not true or false", raw.get()),
                        ))))
                    }
                };
                continue;
            }
            if k.starts_with('@') {
                // Other annotations (the shell's @recno…) are no fields.
                continue;
            }
            match cell(&raw) {
                Ok(c) => cells.push((k, c)),
                Err(reason) => return Ok(Some(Err(RowError::new(at, Some(k), reason)))),
            }
        }
        Ok(Some(Ok(SourceRow { at, cells, deleted })))
    }
}
