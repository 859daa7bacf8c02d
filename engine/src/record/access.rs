//! Typed access to a [`Record`]'s fields by name: `rec.str("A1_NOME")`,
//! `rec.dec("A1_LC")`, `rec.date("A1_DTCAD")`…
//!
//! Each accessor takes a field name (case-insensitive) and returns the value
//! in the Rust type asked for, or an error naming the field and its type:
//! [`Error::NoSuchField`] for a name the schema does not have, and
//! [`Error::InvalidValue`] for a field of another type (`field A1_NOME: is
//! Char(30), not a number`). A record does not know its table's name, so
//! `table` is empty in these errors. Conversions are exact only: an `Int64`
//! reads as a decimal, a `Numeric` without decimals as an integer.
//!
//! ```
//! use raiz_engine::{Database, Date, Decimal, Error, Field, FieldType, Schema, TableOptions};
//! # let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path())?;
//! let schema = Schema::new(vec![
//!     Field::new("A1_NOME", FieldType::Char(30)),
//!     Field::new("A1_LC", FieldType::Numeric { len: 14, dec: 2 }),
//!     Field::new("A1_DTCAD", FieldType::Date),
//!     Field::new("A1_MSBLQL", FieldType::Logical),
//! ]);
//! db.create_table("sa1", &schema, TableOptions::default())?;
//! let mut t = db.session().open_table("sa1")?;
//! let r = t.append(&schema.blank()
//!     .set("A1_NOME", "JOSÉ DA SILVA")?
//!     .set("A1_LC", "1500.50".parse::<Decimal>().unwrap())?
//!     .set("A1_DTCAD", Date::ymd(2024, 5, 1))?
//!     .into_values())?;
//!
//! let rec = t.read(r)?;
//! assert_eq!(rec.str("a1_nome")?, "JOSÉ DA SILVA");   // trailing blanks trimmed
//! assert_eq!(rec.dec("A1_LC")?.to_string(), "1500.50");
//! assert_eq!(rec.date("A1_DTCAD")?, Date::ymd(2024, 5, 1));
//! assert!(!rec.bool("A1_MSBLQL")?);
//!
//! let e = rec.dec("A1_NOME").unwrap_err();
//! assert!(matches!(e, Error::InvalidValue { .. }));
//! assert!(e.to_string().contains("field A1_NOME: is Char(30), not a number"), "{e}");
//! assert!(matches!(rec.str("A1_NOPE"), Err(Error::NoSuchField { .. })));
//! # Ok::<(), raiz_engine::Error>(())
//! ```

use super::Record;
use crate::error::{Error, Result};
use crate::schema::check::shorten;
use crate::schema::{Date, Decimal, DecimalError, Field, Memo, RecordBuilder, Value};

impl Record {
    /// The field named `name` and its value.
    fn field(&self, name: &str) -> Result<(&Field, &Value)> {
        let no_such = || Error::NoSuchField {
            table: String::new(),
            field: name.to_owned(),
        };
        let i = self.schema.position(name).ok_or_else(no_such)?;
        let field = &self.schema.fields()[i];
        let value = self.values.get(i).ok_or_else(|| Error::InvalidValue {
            table: String::new(),
            field: field.name.clone(),
            value: "none".into(),
            reason: format!(
                "record {} has {} values for {} fields",
                self.recno,
                self.values.len(),
                self.schema.len()
            ),
        })?;
        Ok((field, value))
    }

    fn invalid(field: &Field, value: &Value, reason: String) -> Error {
        Error::InvalidValue {
            table: String::new(),
            field: field.name.clone(),
            value: shorten(&value.to_string()),
            reason,
        }
    }

    /// The error for a field whose type is not `wanted`.
    fn not_a(field: &Field, value: &Value, wanted: &str) -> Error {
        Record::invalid(field, value, format!("is {}, not {wanted}", field.ty))
    }

    /// The text of a `Char` field, trailing blanks trimmed (xBase
    /// `RTrim(FieldGet())`).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![Field::new("NAME", FieldType::Char(8))]));
    /// let rec = Record::from_parts(1, false, vec![Value::from("ANA     ")], s);
    /// assert_eq!(rec.str("NAME")?, "ANA");
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn str(&self, name: &str) -> Result<&str> {
        match self.field(name)? {
            (_, Value::Char(s)) => Ok(s.trim_end_matches(' ')),
            (f, v) => Err(Record::not_a(f, v, "text")),
        }
    }

    /// [`Record::str`], owned.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![Field::new("NAME", FieldType::Char(8))]));
    /// let rec = Record::from_parts(1, false, vec![Value::from("ANA     ")], s);
    /// let name: String = rec.string("NAME")?;
    /// assert_eq!(name, "ANA");
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn string(&self, name: &str) -> Result<String> {
        self.str(name).map(str::to_owned)
    }

    /// The number in a `Numeric` field, or an `Int64` field's as a decimal.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Decimal, Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![
    ///     Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
    ///     Field::new("QTY", FieldType::Int64),
    /// ]));
    /// let rec = Record::from_parts(1, false, vec![Value::Numeric(Decimal::new(1990, 2)), Value::Int64(3)], s);
    /// assert_eq!(rec.dec("PRICE")?.to_string(), "19.90");
    /// assert_eq!(rec.dec("QTY")?, Decimal::from(3));
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn dec(&self, name: &str) -> Result<Decimal> {
        match self.field(name)? {
            (_, Value::Numeric(d)) => Ok(*d),
            (_, Value::Int64(i)) => Ok(Decimal::from(*i)),
            (f, v) => Err(Record::not_a(f, v, "a number")),
        }
    }

    /// The integer in an `Int64` field, or a `Numeric` field's when it is
    /// whole (`12.00` is 12; `12.50` is an error, never truncated).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Decimal, Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![
    ///     Field::new("QTY", FieldType::Int64),
    ///     Field::new("N", FieldType::Numeric { len: 6, dec: 2 }),
    /// ]));
    /// let rec = Record::from_parts(1, false, vec![Value::Int64(3), Value::Numeric(Decimal::new(1200, 2))], s);
    /// assert_eq!(rec.int("QTY")?, 3);
    /// assert_eq!(rec.int("N")?, 12);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn int(&self, name: &str) -> Result<i64> {
        match self.field(name)? {
            (_, Value::Int64(i)) => Ok(*i),
            (f, v @ Value::Numeric(d)) => i64::try_from(*d).map_err(|e| {
                let why = match e {
                    DecimalError::NotAnInteger { .. } => "has decimals".to_owned(),
                    _ => "is outside the Int64 range".to_owned(),
                };
                Record::invalid(f, v, format!("is {} and {why}: not an integer", f.ty))
            }),
            (f, v) => Err(Record::not_a(f, v, "an integer")),
        }
    }

    /// The number in a `Float64` field.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![Field::new("W", FieldType::Float64)]));
    /// let rec = Record::from_parts(1, false, vec![Value::Float64(0.25)], s);
    /// assert_eq!(rec.float("W")?, 0.25);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn float(&self, name: &str) -> Result<f64> {
        match self.field(name)? {
            (_, Value::Float64(x)) => Ok(*x),
            (f, v) => Err(Record::not_a(f, v, "a Float64")),
        }
    }

    /// The date in a `Date` field ([`Date::EMPTY`] when blank).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Date, Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![Field::new("D", FieldType::Date)]));
    /// let rec = Record::from_parts(1, false, vec![Value::Date(Date::EMPTY)], s);
    /// assert!(rec.date("D")?.is_empty());
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn date(&self, name: &str) -> Result<Date> {
        match self.field(name)? {
            (_, Value::Date(d)) => Ok(*d),
            (f, v) => Err(Record::not_a(f, v, "a date")),
        }
    }

    /// The truth value of a `Logical` field.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![Field::new("OK", FieldType::Logical)]));
    /// let rec = Record::from_parts(1, false, vec![Value::Logical(true)], s);
    /// assert!(rec.bool("OK")?);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.field(name)? {
            (_, Value::Logical(b)) => Ok(*b),
            (f, v) => Err(Record::not_a(f, v, "a logical")),
        }
    }

    /// The bytes of a `Binary` field.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![Field::new("H", FieldType::Binary(4))]));
    /// let rec = Record::from_parts(1, false, vec![Value::Binary(vec![1, 2])], s);
    /// assert_eq!(rec.bytes("H")?, &[1, 2]);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        match self.field(name)? {
            (_, Value::Binary(b)) => Ok(b),
            (f, v) => Err(Record::not_a(f, v, "Binary")),
        }
    }

    /// The memo of a `Memo` field: read from a table it is a reference
    /// ([`Memo::Stored`] or [`Memo::Empty`]); the bytes come from
    /// `Table::read_memo`.
    ///
    /// ```
    /// use raiz_engine::{Database, Field, FieldType, Memo, Schema, TableOptions, Value};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Database::open(dir.path())?;
    /// let schema = Schema::new(vec![Field::new("OBS", FieldType::Memo)]);
    /// db.create_table("t", &schema, TableOptions::default())?;
    /// let mut t = db.session().open_table("t")?;
    /// let r = t.append(&[Value::Memo(Memo::Data(b"note".to_vec()))])?;
    /// let rec = t.read(r)?;
    /// assert!(matches!(rec.memo("OBS")?, Memo::Stored(m) if m.len() == 4));
    /// assert_eq!(t.read_memo(r, "OBS")?, b"note");
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn memo(&self, name: &str) -> Result<&Memo> {
        match self.field(name)? {
            (_, Value::Memo(m)) => Ok(m),
            (f, v) => Err(Record::not_a(f, v, "a memo")),
        }
    }

    /// The record's values in a [`RecordBuilder`], to change some fields by
    /// name and write them back with `Table::update`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Record, Schema, Value};
    /// let s = Arc::new(Schema::new(vec![
    ///     Field::new("CODE", FieldType::Char(3)),
    ///     Field::new("QTY", FieldType::Int64),
    /// ]));
    /// let rec = Record::from_parts(1, false, vec![Value::from("ABC"), Value::Int64(3)], s);
    /// let b = rec.to_builder().set("QTY", 4)?;
    /// assert_eq!(b.values(), &[Value::from("ABC"), Value::Int64(4)]);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn to_builder(&self) -> RecordBuilder {
        RecordBuilder::of_record(self.schema.clone(), self.values.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::schema::{FieldType, Schema};

    fn rec() -> Record {
        let s = Arc::new(Schema::new(vec![
            Field::new("NAME", FieldType::Char(10)),
            Field::new("N", FieldType::Numeric { len: 6, dec: 2 }),
            Field::new("BIG", FieldType::Numeric { len: 30, dec: 0 }),
            Field::new("I", FieldType::Int64),
            Field::new("F", FieldType::Float64),
            Field::new("D", FieldType::Date),
            Field::new("L", FieldType::Logical),
            Field::new("M", FieldType::Memo),
            Field::new("B", FieldType::Binary(3)),
        ]));
        Record::from_parts(
            7,
            false,
            vec![
                Value::from("Zé        "),
                Value::Numeric(Decimal::new(1250, 2)),
                Value::Numeric("100000000000000000000".parse().unwrap()),
                Value::Int64(-4),
                Value::Float64(1.5),
                Value::Date(Date::ymd(2024, 1, 31)),
                Value::Logical(true),
                Value::Memo(Memo::Empty),
                Value::Binary(vec![9]),
            ],
            s,
        )
    }

    #[test]
    fn every_accessor_reads_its_type() {
        let r = rec();
        assert_eq!(r.str("name").unwrap(), "Zé");
        assert_eq!(r.string("NAME").unwrap(), "Zé");
        assert_eq!(r.dec("N").unwrap().to_string(), "12.50");
        assert_eq!(r.dec("I").unwrap(), Decimal::from(-4));
        assert_eq!(r.int("I").unwrap(), -4);
        assert_eq!(r.float("F").unwrap(), 1.5);
        assert_eq!(r.date("D").unwrap(), Date::ymd(2024, 1, 31));
        assert!(r.bool("L").unwrap());
        assert_eq!(r.memo("M").unwrap(), &Memo::Empty);
        assert_eq!(r.bytes("B").unwrap(), &[9]);
    }

    #[test]
    fn wrong_types_name_the_field_and_its_type() {
        let r = rec();
        let msg = |e: Error| e.to_string();
        let e = msg(r.dec("NAME").unwrap_err());
        assert!(e.contains("field NAME: is Char(10), not a number"), "{e}");
        let e = msg(r.str("N").unwrap_err());
        assert!(e.contains("field N: is Numeric(6,2), not text"), "{e}");
        let e = msg(r.int("N").unwrap_err());
        assert!(e.contains("is Numeric(6,2) and has decimals"), "{e}");
        let e = msg(r.int("BIG").unwrap_err());
        assert!(e.contains("outside the Int64 range"), "{e}");
        let e = msg(r.float("I").unwrap_err());
        assert!(e.contains("is Int64, not a Float64"), "{e}");
        let e = msg(r.date("L").unwrap_err());
        assert!(e.contains("is Logical, not a date"), "{e}");
        let e = msg(r.bool("D").unwrap_err());
        assert!(e.contains("is Date, not a logical"), "{e}");
        let e = msg(r.memo("B").unwrap_err());
        assert!(e.contains("is Binary(3), not a memo"), "{e}");
        let e = msg(r.bytes("M").unwrap_err());
        assert!(e.contains("is Memo, not Binary"), "{e}");
        assert!(matches!(r.str("X"), Err(Error::NoSuchField { field, .. }) if field == "X"));
    }

    #[test]
    fn a_short_record_is_an_error_not_a_panic() {
        let s = Arc::new(Schema::new(vec![
            Field::new("A", FieldType::Int64),
            Field::new("B", FieldType::Int64),
        ]));
        let r = Record::from_parts(1, false, vec![Value::Int64(1)], s);
        assert_eq!(r.int("A").unwrap(), 1);
        assert!(matches!(r.int("B"), Err(Error::InvalidValue { .. })));
        assert_eq!(r.get("B"), None);
        assert_eq!(r.to_builder().values(), &[Value::Int64(1), Value::Int64(0)]);
    }
}
