//! Field values: xBase dates, memos, and the [`Value`] enum (exact decimals
//! are in [`decimal`](super::decimal)).
//!
//! There is no NULL: every type has an empty value (blanks, zero, the empty date,
//! false, an empty memo) and a freshly appended field holds it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::decimal::Decimal;

/// A calendar date, or the empty date. Stored as `yyyymmdd`; `0` is empty.
///
/// [`Date::ymd`] does not check its arguments, so an impossible date can be built
/// and is rejected, naming the field, when written ([`Date::is_valid`]).
///
/// ```
/// use raiz_engine::Date;
/// assert!(Date::ymd(2024, 2, 29).is_valid());
/// assert!(!Date::ymd(2023, 2, 29).is_valid());
/// assert_eq!(Date::parse("20261123").unwrap().to_string(), "2026-11-23");
/// assert!(Date::EMPTY.is_empty());
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Date(u32);

impl Date {
    /// The empty date (xBase blank date).
    pub const EMPTY: Date = Date(0);

    /// A date from its parts, unchecked.
    pub const fn ymd(year: u16, month: u8, day: u8) -> Date {
        Date(year as u32 * 10000 + month as u32 * 100 + day as u32)
    }

    /// A date from `yyyymmdd`, unchecked.
    pub const fn from_yyyymmdd(v: u32) -> Date {
        Date(v)
    }

    /// Parses `yyyymmdd` or `yyyy-mm-dd`; an empty or blank text is the empty date.
    pub fn parse(s: &str) -> Option<Date> {
        let t = s.trim();
        if t.is_empty() {
            return Some(Date::EMPTY);
        }
        let digits: String = t.chars().filter(|c| *c != '-').collect();
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let d = Date(digits.parse().ok()?);
        d.is_valid().then_some(d)
    }

    /// `yyyymmdd`, `0` when empty.
    pub fn yyyymmdd(&self) -> u32 {
        self.0
    }

    /// Year, month, day.
    pub fn parts(&self) -> (u32, u32, u32) {
        (self.0 / 10000, self.0 / 100 % 100, self.0 % 100)
    }

    /// True for the empty date.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// True for the empty date and for real calendar dates in years 1..=9999.
    pub fn is_valid(&self) -> bool {
        if self.is_empty() {
            return true;
        }
        let (y, m, d) = self.parts();
        if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || self.0 > 99_991_231 {
            return false;
        }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        d <= days
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("        ");
        }
        let (y, m, d) = self.parts();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Where a stored memo lives: read it with [`crate::Table::read_memo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemoRef {
    pub(crate) blob: u64,
    pub(crate) len: u32,
}

impl MemoRef {
    /// Length of the memo in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for an empty memo.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A memo field's value. Reading a record yields [`Memo::Stored`] (the bytes are
/// read only on demand); writing takes [`Memo::Data`] to store new content, or the
/// record's own [`Memo::Stored`] to keep it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Memo {
    /// No content.
    #[default]
    Empty,
    /// Content already stored with this record.
    Stored(MemoRef),
    /// New content to store.
    Data(Vec<u8>),
}

/// A field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Text of a `Char(n)` field; read back blank-padded to `n` bytes.
    Char(String),
    /// An exact decimal for a `Numeric(len, dec)` field.
    Numeric(Decimal),
    /// A `Date` field's value.
    Date(Date),
    /// A `Logical` field's value.
    Logical(bool),
    /// A `Memo` field's value.
    Memo(Memo),
    /// An `Int64` field's value.
    Int64(i64),
    /// A `Float64` field's value (finite).
    Float64(f64),
    /// A `Binary(n)` field's bytes (up to `n`, length kept exactly).
    Binary(Vec<u8>),
}

impl Value {
    /// The value's type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Char(_) => "Char",
            Value::Numeric(_) => "Numeric",
            Value::Date(_) => "Date",
            Value::Logical(_) => "Logical",
            Value::Memo(_) => "Memo",
            Value::Int64(_) => "Int64",
            Value::Float64(_) => "Float64",
            Value::Binary(_) => "Binary",
        }
    }

    /// The text, if this is a `Char` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Char(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `Int64` value.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int64(v) => Some(*v),
            _ => None,
        }
    }

    /// The decimal, if this is a `Numeric` value.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Numeric(d) => Some(*d),
            _ => None,
        }
    }

    /// The memo, if this is a `Memo` value (a reference when read from a
    /// table: the bytes come from `Table::read_memo`).
    pub fn as_memo(&self) -> Option<&Memo> {
        match self {
            Value::Memo(m) => Some(m),
            _ => None,
        }
    }

    /// The truth value, if this is a `Logical` value.
    ///
    /// ```
    /// use raiz_engine::Value;
    /// assert_eq!(Value::from(true).as_bool(), Some(true));
    /// assert_eq!(Value::from("T").as_bool(), None);
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Logical(b) => Some(*b),
            _ => None,
        }
    }

    /// The date, if this is a `Date` value.
    ///
    /// ```
    /// use raiz_engine::{Date, Value};
    /// assert_eq!(Value::from(Date::ymd(2024, 5, 1)).as_date(), Some(Date::ymd(2024, 5, 1)));
    /// ```
    pub fn as_date(&self) -> Option<Date> {
        match self {
            Value::Date(d) => Some(*d),
            _ => None,
        }
    }

    /// The float, if this is a `Float64` value.
    ///
    /// ```
    /// use raiz_engine::Value;
    /// assert_eq!(Value::from(0.5).as_f64(), Some(0.5));
    /// ```
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(v) => Some(*v),
            _ => None,
        }
    }

    /// The bytes, if this is a `Binary` value.
    ///
    /// ```
    /// use raiz_engine::Value;
    /// assert_eq!(Value::from(&b"\x01\x02"[..]).as_bytes(), Some(&[1u8, 2][..]));
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Char(s) => write!(f, "{s:?}"),
            Value::Numeric(d) => write!(f, "{d}"),
            Value::Date(d) if d.is_empty() => f.write_str("empty date"),
            Value::Date(d) => {
                let (y, m, day) = d.parts();
                write!(f, "{y:04}-{m:02}-{day:02}")
            }
            Value::Logical(b) => write!(f, "{b}"),
            Value::Memo(Memo::Empty) => f.write_str("empty memo"),
            Value::Memo(Memo::Stored(r)) => write!(f, "stored memo of {} bytes", r.len),
            Value::Memo(Memo::Data(d)) => write!(f, "memo of {} bytes", d.len()),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::Binary(b) => write!(f, "{} bytes", b.len()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Char(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Char(s)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int64(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float64(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Logical(v)
    }
}

impl From<Decimal> for Value {
    fn from(v: Decimal) -> Value {
        Value::Numeric(v)
    }
}

impl From<Date> for Value {
    fn from(v: Date) -> Value {
        Value::Date(v)
    }
}

/// An `Int64` value (it converts exactly into a `Numeric` field too).
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int64(i64::from(v))
    }
}

/// An `Int64` value (it converts exactly into a `Numeric` field too).
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int64(i64::from(v))
    }
}

/// A `Binary` value.
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Binary(v)
    }
}

/// A `Binary` value.
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Binary(v.to_vec())
    }
}

/// A `Binary` value.
impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Value {
        Value::Binary(v.to_vec())
    }
}

/// A `Memo` value.
impl From<Memo> for Value {
    fn from(v: Memo) -> Value {
        Value::Memo(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(Date::ymd(2000, 2, 29).is_valid());
        assert!(!Date::ymd(1900, 2, 29).is_valid());
        assert!(!Date::ymd(2024, 13, 1).is_valid());
        assert!(!Date::ymd(2024, 4, 31).is_valid());
        assert!(!Date::ymd(0, 1, 1).is_valid());
        assert_eq!(Date::parse("2024-02-30"), None);
        assert_eq!(Date::parse(""), Some(Date::EMPTY));
    }
}
