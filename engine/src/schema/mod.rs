//! Table definitions: field types, schemas, and the checks a value must pass
//! before it is written.

mod builder;
pub(crate) mod check;
pub mod decimal;
mod value;

use serde::{Deserialize, Serialize};

pub use builder::RecordBuilder;
pub use check::check_value;
pub use decimal::{Decimal, DecimalError, ParseDecimalError, Rounding};
pub use value::{Date, Memo, MemoRef, Value};

use crate::error::{Error, Result};

/// Widest `Char` or `Binary` field of a variable-length table (16 MiB).
pub const MAX_VAR_FIELD: u32 = 16 << 20;
/// Largest encoded record of a variable-length table (64 MiB).
pub const MAX_VAR_RECORD: usize = 64 << 20;
/// Most fields a table may have.
pub const MAX_FIELDS: usize = 2048;
/// Longest field name.
pub const MAX_FIELD_NAME: usize = 32;

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    /// Fixed-width text of `n` bytes (UTF-8), blank-padded.
    Char(u32),
    /// Exact decimal, xBase style: `len` is the printed width including sign and
    /// decimal point, `dec` the digits after the point (at most 38 wide).
    Numeric {
        /// Printed width, including sign and point.
        len: u8,
        /// Decimal places.
        dec: u8,
    },
    /// A calendar date or the empty date.
    Date,
    /// True or false.
    Logical,
    /// Large text or bytes stored out of line, read on demand.
    Memo,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float (finite values only).
    Float64,
    /// Up to `n` bytes, length kept exactly.
    Binary(u32),
}

impl FieldType {
    /// Bytes this field takes in a fixed-length record.
    pub fn fixed_width(&self) -> usize {
        match *self {
            FieldType::Char(n) => n as usize,
            FieldType::Numeric { len, .. } => {
                if len <= 18 {
                    8
                } else {
                    16
                }
            }
            FieldType::Date => 4,
            FieldType::Logical => 1,
            FieldType::Memo => 12,
            FieldType::Int64 | FieldType::Float64 => 8,
            FieldType::Binary(n) => binary_prefix(n) + n as usize,
        }
    }

    /// The empty value of this type.
    pub fn empty_value(&self) -> Value {
        match *self {
            FieldType::Char(n) => Value::Char(" ".repeat(n as usize)),
            FieldType::Numeric { dec, .. } => Value::Numeric(Decimal::new(0, dec)),
            FieldType::Date => Value::Date(Date::EMPTY),
            FieldType::Logical => Value::Logical(false),
            FieldType::Memo => Value::Memo(Memo::Empty),
            FieldType::Int64 => Value::Int64(0),
            FieldType::Float64 => Value::Float64(0.0),
            FieldType::Binary(_) => Value::Binary(Vec::new()),
        }
    }
}

/// Bytes of the length prefix of a `Binary(n)` field.
pub(crate) fn binary_prefix(n: u32) -> usize {
    if n <= u32::from(u16::MAX) {
        2
    } else {
        4
    }
}

/// One field of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's name (unique in its table, compared without case).
    pub name: String,
    /// The field's type.
    pub ty: FieldType,
}

impl Field {
    /// A field.
    pub fn new(name: impl Into<String>, ty: FieldType) -> Field {
        Field {
            name: name.into(),
            ty,
        }
    }
}

/// How records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RecordFormat {
    /// Every record takes the same bytes; `goto(recno)` is one page access.
    #[default]
    Fixed,
    /// Records are stored at their encoded size (blanks trimmed), up to
    /// [`MAX_VAR_RECORD`] bytes, with overflow pages.
    Variable,
}

/// The fields of a table, in order.
///
/// ```
/// use raiz_engine::{Field, FieldType, Schema};
/// let schema = Schema::new(vec![
///     Field::new("CODE", FieldType::Char(6)),
///     Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
/// ]);
/// assert_eq!(schema.position("price"), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    fields: Vec<Field>,
}

impl Schema {
    /// A schema from its fields (checked when a table is created).
    pub fn new(fields: Vec<Field>) -> Schema {
        Schema { fields }
    }

    /// The fields.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Index of the field named `name` (case-insensitive).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Bytes of a fixed-length record (without its status byte).
    pub fn fixed_len(&self) -> usize {
        self.fields.iter().map(|f| f.ty.fixed_width()).sum()
    }

    /// Empty values for every field.
    pub fn empty_record(&self) -> Vec<Value> {
        self.fields.iter().map(|f| f.ty.empty_value()).collect()
    }

    /// Checks the schema for a table of `format` whose fixed records must fit in
    /// `max_fixed` bytes.
    pub fn validate(&self, table: &str, format: RecordFormat, max_fixed: usize) -> Result<()> {
        let bad = |reason: String| Error::InvalidSchema {
            table: table.to_owned(),
            reason,
        };
        if self.fields.is_empty() {
            return Err(bad("a table needs at least one field".into()));
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(bad(format!(
                "{} fields; the limit is {MAX_FIELDS}",
                self.fields.len()
            )));
        }
        for (i, f) in self.fields.iter().enumerate() {
            validate_field_name(&f.name)?;
            if self.fields[..i]
                .iter()
                .any(|g| g.name.eq_ignore_ascii_case(&f.name))
            {
                return Err(bad(format!("field {} is defined twice", f.name)));
            }
            match f.ty {
                FieldType::Char(0) | FieldType::Binary(0) => {
                    return Err(bad(format!("field {} has width 0", f.name)))
                }
                FieldType::Char(n) | FieldType::Binary(n) if n > MAX_VAR_FIELD => {
                    return Err(bad(format!(
                        "field {} is {n} bytes wide; the limit is {MAX_VAR_FIELD}",
                        f.name
                    )))
                }
                FieldType::Numeric { len, dec } => {
                    if len == 0 || len > 38 {
                        return Err(bad(format!(
                            "field {}: Numeric width {len} is outside 1..=38",
                            f.name
                        )));
                    }
                    if dec > 0 && u16::from(dec) + 2 > u16::from(len) {
                        return Err(bad(format!(
                            "field {}: Numeric({len},{dec}) leaves no room for \"0.\"",
                            f.name
                        )));
                    }
                }
                _ => {}
            }
        }
        if format == RecordFormat::Fixed && self.fixed_len() > max_fixed {
            return Err(bad(format!(
                "a fixed record of {} bytes does not fit in a page ({max_fixed} bytes); \
                 choose a larger page size or the variable format",
                self.fixed_len()
            )));
        }
        Ok(())
    }
}

/// Checks a field name: 1 to 32 ASCII letters, digits or `_`, not starting with a digit.
pub fn validate_field_name(name: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::InvalidName {
            what: "field",
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("it is empty");
    }
    if name.len() > MAX_FIELD_NAME {
        return reject("it is longer than 32 bytes");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return reject("only ASCII letters, digits and _ are allowed");
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return reject("it starts with a digit");
    }
    Ok(())
}

/// How a table survives a crash (chosen at create).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// Every change goes through the write-ahead log.
    #[default]
    Logged,
    /// Direct writes; after a crash the table is verified, not recovered.
    Unlogged,
    /// Private to its session, removed on close.
    Temporary,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Logged => "logged",
            Durability::Unlogged => "unlogged",
            Durability::Temporary => "temporary",
        })
    }
}

impl std::str::FromStr for FieldType {
    type Err = Error;

    /// Parses what `Display` prints: `Char(10)`, `Numeric(12,2)`, `Date`,
    /// `Logical`, `Memo`, `Int64`, `Float64`, `Binary(16)` (case-insensitive).
    fn from_str(s: &str) -> Result<FieldType> {
        let bad = || {
            Error::InvalidSchema {
            table: String::new(),
            reason: format!("{s:?} is not a field type (Char(n), Numeric(len,dec), Date, Logical, Memo, Int64, Float64, Binary(n))"),
        }
        };
        let t = s.trim();
        let (name, args) = match t.split_once('(') {
            Some((n, rest)) => (n.trim(), Some(rest.strip_suffix(')').ok_or_else(bad)?)),
            None => (t, None),
        };
        let nums: Vec<u32> = match args {
            Some(a) => a
                .split(',')
                .map(|x| x.trim().parse().map_err(|_| bad()))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(
            match (name.to_ascii_lowercase().as_str(), nums.as_slice()) {
                ("char", [n]) => FieldType::Char(*n),
                ("numeric", [l]) => FieldType::Numeric {
                    len: u8::try_from(*l).map_err(|_| bad())?,
                    dec: 0,
                },
                ("numeric", [l, d]) => FieldType::Numeric {
                    len: u8::try_from(*l).map_err(|_| bad())?,
                    dec: u8::try_from(*d).map_err(|_| bad())?,
                },
                ("date", []) => FieldType::Date,
                ("logical", []) => FieldType::Logical,
                ("memo", []) => FieldType::Memo,
                ("int64", []) => FieldType::Int64,
                ("float64", []) => FieldType::Float64,
                ("binary", [n]) => FieldType::Binary(*n),
                _ => return Err(bad()),
            },
        )
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldType::Char(n) => write!(f, "Char({n})"),
            FieldType::Numeric { len, dec } => write!(f, "Numeric({len},{dec})"),
            FieldType::Date => f.write_str("Date"),
            FieldType::Logical => f.write_str("Logical"),
            FieldType::Memo => f.write_str("Memo"),
            FieldType::Int64 => f.write_str("Int64"),
            FieldType::Float64 => f.write_str("Float64"),
            FieldType::Binary(n) => write!(f, "Binary({n})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_parse_what_they_print() {
        for t in [
            FieldType::Char(10),
            FieldType::Numeric { len: 12, dec: 2 },
            FieldType::Date,
            FieldType::Logical,
            FieldType::Memo,
            FieldType::Int64,
            FieldType::Float64,
            FieldType::Binary(16),
        ] {
            assert_eq!(t.to_string().parse::<FieldType>().unwrap(), t);
        }
        assert_eq!(
            "numeric(5)".parse::<FieldType>().unwrap(),
            FieldType::Numeric { len: 5, dec: 0 }
        );
        for bad in [
            "",
            "Char",
            "Char(x)",
            "Numeric(300,1)",
            "Text(4)",
            "Date(1)",
            "Char(4",
        ] {
            assert!(bad.parse::<FieldType>().is_err(), "{bad}");
        }
    }
}
