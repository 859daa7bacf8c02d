//! [`RecordBuilder`]: a record's values set by field name, for an append or
//! an update.

use std::sync::Arc;

use super::check::{check_value, shorten};
use super::{FieldType, Memo, Schema, Value};
use crate::error::{Error, Result};

/// A record's values, set by field name and checked as they are set; starts
/// blank (every field empty: blanks, zero, the empty date, false, an empty
/// memo) from [`Schema::blank`] or [`RecordBuilder::new`].
///
/// A value is checked against its field when set, so a wrong type, a text too
/// wide or a number with too many decimals is an [`Error::InvalidValue`]
/// naming the field at the line that set it (the table name is empty: a schema
/// does not know its table). Conversions are exact ones: an integer into a
/// `Numeric` field, a number with fewer decimals than its field (both stored
/// at the field's scale), and text or bytes into a `Memo` field (as new memo
/// content).
///
/// ```
/// use raiz_engine::{Database, Date, Decimal, Field, FieldType, Schema, TableOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// let schema = Schema::new(vec![
///     Field::new("A1_COD", FieldType::Char(6)),
///     Field::new("A1_NOME", FieldType::Char(40)),
///     Field::new("A1_LC", FieldType::Numeric { len: 14, dec: 2 }),
///     Field::new("A1_DTCAD", FieldType::Date),
///     Field::new("A1_OBS", FieldType::Memo),
/// ]);
/// db.create_table("sa1", &schema, TableOptions::default())?;
/// let mut t = db.session().open_table("sa1")?;
///
/// let new = t
///     .schema()
///     .blank()
///     .set("A1_COD", "000001")?
///     .set("A1_NOME", "Ângela Souza")?
///     .set("A1_LC", 1500)?                      // stored as 1500.00
///     .set("A1_DTCAD", Date::ymd(2024, 5, 1))?
///     .set("A1_OBS", "pays on the 10th")?;       // new memo content
/// let r = t.append(&new.into_values())?;
///
/// let rec = t.read(r)?;
/// assert_eq!(rec.str("A1_NOME")?, "Ângela Souza");
/// assert_eq!(rec.dec("A1_LC")?, Decimal::from(1500));
/// assert_eq!(t.read_memo(r, "A1_OBS")?, b"pays on the 10th");
///
/// // Errors name the field, at the line that set it.
/// let e = schema.blank().set("A1_LC", "a lot").unwrap_err();
/// assert!(e.to_string().contains("field A1_LC"), "{e}");
///
/// // An update by name: the record's values, a field changed.
/// let changed = rec.to_builder().set("A1_LC", "2000.5".parse::<Decimal>().unwrap())?;
/// t.update(r, changed.values())?;
/// assert_eq!(t.read(r)?.dec("A1_LC")?.to_string(), "2000.50");
/// # Ok::<(), raiz_engine::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RecordBuilder {
    schema: Arc<Schema>,
    values: Vec<Value>,
}

impl Schema {
    /// A blank record of this schema to set fields of by name: see
    /// [`RecordBuilder`]. It holds a copy of the schema; with a table's
    /// `Arc<Schema>` at hand, [`RecordBuilder::new`] shares it instead.
    ///
    /// ```
    /// use raiz_engine::{Field, FieldType, Schema, Value};
    /// let s = Schema::new(vec![Field::new("CODE", FieldType::Char(3)), Field::new("QTY", FieldType::Int64)]);
    /// let b = s.blank().set("qty", 7)?;
    /// assert_eq!(b.values(), &[Value::from("   "), Value::Int64(7)]);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn blank(&self) -> RecordBuilder {
        RecordBuilder::new(Arc::new(self.clone()))
    }
}

impl RecordBuilder {
    /// A blank record of `schema`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Schema, schema::RecordBuilder};
    /// let s = Arc::new(Schema::new(vec![Field::new("OK", FieldType::Logical)]));
    /// let b = RecordBuilder::new(s.clone()).set("OK", true)?;
    /// assert_eq!(b.get("ok").and_then(|v| v.as_bool()), Some(true));
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn new(schema: Arc<Schema>) -> RecordBuilder {
        let values = schema.empty_record();
        RecordBuilder { schema, values }
    }

    /// Starts from `values` (a record's, to change some fields); they must be
    /// one per field of `schema` ([`Error::FieldCount`] otherwise). They are
    /// not checked here: setting a field checks that field, writing checks
    /// them all.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use raiz_engine::{Field, FieldType, Schema, Value, schema::RecordBuilder};
    /// let s = Arc::new(Schema::new(vec![Field::new("N", FieldType::Int64)]));
    /// let b = RecordBuilder::from_values(s.clone(), vec![Value::Int64(1)])?.set("N", 2)?;
    /// assert_eq!(b.into_values(), vec![Value::Int64(2)]);
    /// assert!(RecordBuilder::from_values(s, vec![]).is_err());
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn from_values(schema: Arc<Schema>, values: Vec<Value>) -> Result<RecordBuilder> {
        if values.len() != schema.len() {
            return Err(Error::FieldCount {
                table: String::new(),
                expected: schema.len(),
                found: values.len(),
            });
        }
        Ok(RecordBuilder { schema, values })
    }

    /// A record's values, as they are: missing ones (a record built from
    /// fewer parts than its schema) are blank, extra ones dropped.
    pub(crate) fn of_record(schema: Arc<Schema>, mut values: Vec<Value>) -> RecordBuilder {
        let blank = schema.empty_record();
        values.truncate(blank.len());
        let have = values.len();
        values.extend(blank.into_iter().skip(have));
        RecordBuilder { schema, values }
    }

    /// Sets the field named `name` (case-insensitive) to `value`, checked
    /// against the field; returns the builder, to chain with `?`.
    /// [`Error::NoSuchField`] for an unknown name, [`Error::InvalidValue`] for
    /// a value the field cannot hold.
    ///
    /// ```
    /// use raiz_engine::{Error, Field, FieldType, Schema};
    /// let s = Schema::new(vec![Field::new("CODE", FieldType::Char(3))]);
    /// assert!(s.blank().set("CODE", "ABC").is_ok());
    /// assert!(matches!(s.blank().set("CODE", "ABCD"), Err(Error::InvalidValue { .. })));
    /// assert!(matches!(s.blank().set("NAME", "x"), Err(Error::NoSuchField { .. })));
    /// ```
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Result<RecordBuilder> {
        self.put(name, value)?;
        Ok(self)
    }

    /// [`RecordBuilder::set`] in place, for loops.
    ///
    /// ```
    /// use raiz_engine::{Field, FieldType, Schema};
    /// let s = Schema::new(vec![Field::new("A", FieldType::Int64), Field::new("B", FieldType::Int64)]);
    /// let mut b = s.blank();
    /// for (name, v) in [("A", 1), ("B", 2)] {
    ///     b.put(name, v)?;
    /// }
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn put(&mut self, name: &str, value: impl Into<Value>) -> Result<&mut RecordBuilder> {
        let i = self
            .schema
            .position(name)
            .ok_or_else(|| Error::NoSuchField {
                table: String::new(),
                field: name.to_owned(),
            })?;
        let field = &self.schema.fields()[i];
        let value = match (field.ty, value.into()) {
            (FieldType::Memo, Value::Char(s)) => Value::Memo(Memo::Data(s.into_bytes())),
            (FieldType::Memo, Value::Binary(b)) => Value::Memo(Memo::Data(b)),
            (_, v) => v,
        };
        check_value("", field, &value)?;
        let value = match (field.ty, value) {
            (FieldType::Numeric { dec, .. }, Value::Int64(n)) => {
                Value::Numeric(super::Decimal::from(n).rescale(dec).ok_or_else(|| {
                    Error::InvalidValue {
                        table: String::new(),
                        field: field.name.clone(),
                        value: shorten(&n.to_string()),
                        reason: format!("does not fit {}", field.ty),
                    }
                })?)
            }
            (FieldType::Numeric { dec, .. }, Value::Numeric(d)) => {
                Value::Numeric(d.rescale(dec).unwrap_or(d))
            }
            (_, v) => v,
        };
        if let Some(slot) = self.values.get_mut(i) {
            *slot = value;
        }
        Ok(self)
    }

    /// The value of the field named `name` (case-insensitive).
    ///
    /// ```
    /// use raiz_engine::{Field, FieldType, Schema, Value};
    /// let s = Schema::new(vec![Field::new("N", FieldType::Int64)]);
    /// assert_eq!(s.blank().get("n"), Some(&Value::Int64(0)));
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.schema.position(name).and_then(|i| self.values.get(i))
    }

    /// The schema.
    ///
    /// ```
    /// use raiz_engine::{Field, FieldType, Schema};
    /// let s = Schema::new(vec![Field::new("N", FieldType::Int64)]);
    /// assert_eq!(s.blank().schema(), &s);
    /// ```
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The values, in schema order (for `Table::append` or `Table::update`).
    ///
    /// ```
    /// use raiz_engine::{Field, FieldType, Schema};
    /// let s = Schema::new(vec![Field::new("N", FieldType::Int64)]);
    /// assert_eq!(s.blank().values().len(), 1);
    /// ```
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Takes the values, in schema order.
    ///
    /// ```
    /// use raiz_engine::{Field, FieldType, Schema, Value};
    /// let s = Schema::new(vec![Field::new("N", FieldType::Int64)]);
    /// assert_eq!(s.blank().set("N", 3)?.into_values(), vec![Value::Int64(3)]);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Date, Decimal, Field};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("CODE", FieldType::Char(6)),
            Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
            Field::new("WHEN", FieldType::Date),
            Field::new("NOTES", FieldType::Memo),
            Field::new("RAW", FieldType::Binary(4)),
            Field::new("F", FieldType::Float64),
        ])
    }

    #[test]
    fn values_are_converted_exactly_and_checked() {
        let b = schema()
            .blank()
            .set("code", "A1")
            .unwrap()
            .set("PRICE", 3)
            .unwrap()
            .set("NOTES", "text")
            .unwrap()
            .set("RAW", &[1u8, 2][..])
            .unwrap()
            .set("WHEN", Date::ymd(2024, 2, 29))
            .unwrap();
        assert_eq!(b.get("PRICE"), Some(&Value::Numeric(Decimal::new(300, 2))));
        assert_eq!(b.get("PRICE").unwrap().to_string(), "3.00");
        assert_eq!(
            b.get("NOTES"),
            Some(&Value::Memo(Memo::Data(b"text".to_vec())))
        );
        let b = b.set("PRICE", Decimal::new(15, 1)).unwrap();
        assert_eq!(b.get("PRICE").unwrap().to_string(), "1.50");
        let b = b.set("NOTES", b"\x00\x01".to_vec()).unwrap();
        assert_eq!(b.get("NOTES"), Some(&Value::Memo(Memo::Data(vec![0, 1]))));

        let bad = |name: &str, v: Value| schema().blank().set(name, v).unwrap_err().to_string();
        let e = bad("PRICE", Value::from(1.5));
        assert!(e.contains("field PRICE") && e.contains("Float64"), "{e}");
        let e = bad("PRICE", Value::Numeric(Decimal::new(1234, 3)));
        assert!(e.contains("decimal places"), "{e}");
        let e = bad("CODE", Value::from("ABCDEFG"));
        assert!(e.contains("Char(6)"), "{e}");
        let e = bad("WHEN", Value::from(Date::ymd(2023, 2, 29)));
        assert!(e.contains("calendar date"), "{e}");
        let e = bad("RAW", Value::from(vec![0u8; 5]));
        assert!(e.contains("Binary(4)"), "{e}");
        let e = bad("PRICE", Value::Int64(i64::MAX));
        assert!(e.contains("field PRICE"), "{e}");
        assert!(matches!(
            schema().blank().set("NOPE", 1),
            Err(Error::NoSuchField { .. })
        ));
    }
}
