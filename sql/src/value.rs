//! Values as SQL sees them: how each raiz field type is typed and converted.
//!
//! | raiz       | SQL value                       | declared type      |
//! |------------|---------------------------------|--------------------|
//! | Char(n)    | TEXT, trailing blanks removed   | `VARCHAR(n)`       |
//! | Numeric    | INTEGER when whole (and within 64 bits), else REAL | `NUMERIC(len,dec)` |
//! | Date       | TEXT `YYYY-MM-DD`; the empty date is NULL | `DATE`   |
//! | Logical    | INTEGER 0 or 1                  | `BOOLEAN`          |
//! | Memo       | TEXT (BLOB when not UTF-8), read only when selected | `TEXT` |
//! | Int64      | INTEGER                         | `BIGINT`           |
//! | Float64    | REAL                            | `DOUBLE`           |
//! | Binary(n)  | BLOB                            | `BLOB`             |
//!
//! A Numeric with decimals becomes a 64-bit float: exact to 15 significant
//! digits, which holds every amount of a `NUMERIC(17,2)` up to a trillion.

use raiz_engine::{Decimal, FieldType, Value};

/// One SQL value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// Approximate bytes the value takes in a buffered result.
    pub fn size(&self) -> usize {
        16 + match self {
            SqlValue::Text(s) => s.len(),
            SqlValue::Blob(b) => b.len(),
            _ => 0,
        }
    }
}

impl rusqlite::types::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl From<rusqlite::types::ValueRef<'_>> for SqlValue {
    fn from(v: rusqlite::types::ValueRef<'_>) -> SqlValue {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(f) => SqlValue::Real(f),
            ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
        }
    }
}

/// The declared SQL type of a field (see the module's table).
pub fn declared_type(ty: &FieldType) -> String {
    match *ty {
        FieldType::Char(n) => format!("VARCHAR({n})"),
        FieldType::Numeric { len, dec } => format!("NUMERIC({len},{dec})"),
        FieldType::Date => "DATE".into(),
        FieldType::Logical => "BOOLEAN".into(),
        FieldType::Memo => "TEXT".into(),
        FieldType::Int64 => "BIGINT".into(),
        FieldType::Float64 => "DOUBLE".into(),
        FieldType::Binary(_) => "BLOB".into(),
    }
}

/// A decimal as SQL sees it: INTEGER when whole (and within 64 bits), else REAL.
///
/// Like a value stored in an SQLite column of NUMERIC affinity, a whole
/// number is an INTEGER even when the field has decimals (`1560.00` → 1560),
/// so raiz's tables give what SQLite's own would.
pub fn decimal(d: &Decimal) -> SqlValue {
    if let Some(whole) = d.rescale(0) {
        if let Ok(i) = i64::try_from(whole.mantissa()) {
            return SqlValue::Integer(i);
        }
    }
    SqlValue::Real(d.to_f64())
}

/// A stored value as SQL sees it. Memo contents are not in `v` (the cursor
/// reads them); a memo here yields NULL.
pub fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Char(s) => SqlValue::Text(s.trim_end_matches(' ').to_owned()),
        Value::Numeric(d) => decimal(d),
        Value::Date(d) if d.is_empty() => SqlValue::Null,
        Value::Date(d) => SqlValue::Text(d.to_string()),
        Value::Logical(b) => SqlValue::Integer(i64::from(*b)),
        Value::Memo(_) => SqlValue::Null,
        Value::Int64(i) => SqlValue::Integer(*i),
        Value::Float64(f) => SqlValue::Real(*f),
        Value::Binary(b) => SqlValue::Blob(b.clone()),
    }
}

/// A memo's bytes as SQL sees them: TEXT when UTF-8, else BLOB.
pub fn memo(bytes: Vec<u8>) -> SqlValue {
    match String::from_utf8(bytes) {
        Ok(s) => SqlValue::Text(s),
        Err(e) => SqlValue::Blob(e.into_bytes()),
    }
}
