//! Index definitions and the order-preserving key encoding.
//!
//! Every segment encodes to a fixed width, so a key is a fixed-width byte string
//! and keys sort byte-wise in the order users expect:
//!
//! | type          | bytes     | encoding                                                   |
//! |---------------|-----------|------------------------------------------------------------|
//! | `Char(n)`     | width     | the bytes at `offset..offset+width`, blank-padded, optionally upper-cased |
//! | `Numeric`     | 8 or 16   | mantissa at the field's scale, sign bit flipped, big-endian |
//! | `Int64`       | 8         | sign bit flipped, big-endian                               |
//! | `Float64`     | 8         | IEEE total order (negatives inverted, sign flipped), big-endian |
//! | `Date`        | 8         | `YYYYMMDD` as ASCII digits, xBase `DTOS()` (the empty date is 8 blanks and sorts first) |
//! | `Logical`     | 1         | 0 or 1                                                     |
//! | `Binary(n)`   | n + 2     | bytes zero-padded, then the length big-endian               |
//!
//! A descending segment inverts its bytes. A partial seek key is a prefix: whole
//! leading segments, and for a `Char` segment the bytes given (not padded); a
//! `Date` segment may be sought as `YYYYMMDD` text, whole or (last) a prefix of
//! it — `"2024"` seeks the first date of 2024, as `dbSeek("2024")` does on a
//! `DTOS()` index.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{Date, Decimal, FieldType, Schema, Value};

/// Longest key an index may have, in bytes (before the 8-byte recno suffix).
pub const MAX_KEY_LEN: usize = 960;

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The field.
    pub field: String,
    /// For a `Char` field: the first byte used.
    pub offset: u32,
    /// For a `Char` field: how many bytes (to the end of the field when `None`).
    pub len: Option<u32>,
    /// Fold to upper case (`Char` only).
    pub upper: bool,
    /// Sort this segment in descending order.
    pub descending: bool,
}

impl Segment {
    /// The whole field, ascending.
    pub fn field(name: impl Into<String>) -> Segment {
        Segment {
            field: name.into(),
            offset: 0,
            len: None,
            upper: false,
            descending: false,
        }
    }

    /// `len` bytes of a `Char` field from `offset`.
    pub fn part(name: impl Into<String>, offset: u32, len: u32) -> Segment {
        Segment {
            offset,
            len: Some(len),
            ..Segment::field(name)
        }
    }

    /// Folds to upper case.
    pub fn upper(mut self) -> Segment {
        self.upper = true;
        self
    }

    /// Sorts descending.
    pub fn descending(mut self) -> Segment {
        self.descending = true;
        self
    }
}

/// A comparison operator in a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
}

/// A constant in a condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    /// Text.
    Char(String),
    /// A decimal.
    Numeric(Decimal),
    /// A date.
    Date(Date),
    /// A logical.
    Logical(bool),
    /// An integer.
    Int64(i64),
    /// A float.
    Float64(f64),
}

impl Literal {
    fn to_value(&self) -> Value {
        match self {
            Literal::Char(s) => Value::Char(s.clone()),
            Literal::Numeric(d) => Value::Numeric(*d),
            Literal::Date(d) => Value::Date(*d),
            Literal::Logical(b) => Value::Logical(*b),
            Literal::Int64(i) => Value::Int64(*i),
            Literal::Float64(f) => Value::Float64(*f),
        }
    }
}

/// Which records a conditional index holds (at most [`Condition::MAX_DEPTH`]
/// levels deep).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Condition {
    /// `field op value`.
    Cmp {
        /// The field.
        field: String,
        /// The comparison.
        op: CmpOp,
        /// The constant.
        value: Literal,
    },
    /// All of these.
    And(Vec<Condition>),
    /// Any of these.
    Or(Vec<Condition>),
    /// Not this.
    Not(Box<Condition>),
}

thread_local! {
    /// Conditions being decoded on this thread, outermost first.
    static DECODING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of a condition being decoded; past the limit, the decoder fails
/// before it reads (and recurses into) anything more.
struct DepthGuard;

impl DepthGuard {
    fn enter<E: serde::de::Error>() -> std::result::Result<DepthGuard, E> {
        DECODING.with(|d| {
            let depth = d.get() + 1;
            if depth > Condition::MAX_DEPTH {
                return Err(E::custom(format_args!(
                    "condition nested more than {} levels deep",
                    Condition::MAX_DEPTH
                )));
            }
            d.set(depth);
            Ok(DepthGuard)
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DECODING.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// The derived decoding of [`Condition`] (same names, order and shape); its
/// nested conditions decode through [`Condition`]'s own `Deserialize`, so
/// every level passes the depth guard.
#[derive(Deserialize)]
#[serde(rename = "Condition")]
enum ConditionRepr {
    Cmp {
        field: String,
        op: CmpOp,
        value: Literal,
    },
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let _level = DepthGuard::enter::<D::Error>()?;
        Ok(match ConditionRepr::deserialize(d)? {
            ConditionRepr::Cmp { field, op, value } => Condition::Cmp { field, op, value },
            ConditionRepr::And(v) => Condition::And(v),
            ConditionRepr::Or(v) => Condition::Or(v),
            ConditionRepr::Not(c) => Condition::Not(c),
        })
    }
}

impl Condition {
    /// Deepest nesting of `And`, `Or` and `Not` a condition may have: deeper
    /// ones are refused when decoded (from the wire or a file) and when an
    /// index or a filter is defined, so no condition can exhaust a stack.
    pub const MAX_DEPTH: usize = 64;

    /// How deeply `And`, `Or` and `Not` nest (a comparison alone is 1),
    /// computed without recursion.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((c, d)) = stack.pop() {
            deepest = deepest.max(d);
            match c {
                Condition::Cmp { .. } => {}
                Condition::And(v) | Condition::Or(v) => stack.extend(v.iter().map(|c| (c, d + 1))),
                Condition::Not(c) => stack.push((c, d + 1)),
            }
        }
        deepest
    }

    /// Refuses a condition nested deeper than [`Condition::MAX_DEPTH`].
    fn check_depth(&self, table: &str, what: &str) -> Result<()> {
        let depth = self.depth();
        if depth > Condition::MAX_DEPTH {
            return Err(Error::InvalidSchema {
                table: table.to_owned(),
                reason: format!(
                    "{what} condition is nested {depth} levels deep; the limit is {}",
                    Condition::MAX_DEPTH
                ),
            });
        }
        Ok(())
    }

    /// `field op value`.
    pub fn cmp(field: impl Into<String>, op: CmpOp, value: Literal) -> Condition {
        Condition::Cmp {
            field: field.into(),
            op,
            value,
        }
    }

    /// Compiles the condition against `schema` into a predicate on a record's
    /// values (fields and constants checked once, here). Comparisons follow the
    /// key order of each field's type, as in a conditional index.
    pub fn predicate(
        &self,
        table: &str,
        schema: &Schema,
    ) -> Result<impl Fn(&[Value]) -> bool + Send + Sync + 'static> {
        self.check_depth(table, "the filter")?;
        let c = compile_cond(table, schema, self)?;
        Ok(move |values: &[Value]| eval(&c, values))
    }
}

/// An index's definition.
///
/// ```
/// use raiz_engine::index::{IndexDef, Segment};
/// let by_name = IndexDef::new("by_name", vec![Segment::field("NAME").upper(), Segment::field("ID")]).unique();
/// assert!(by_name.unique);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    /// The index's name (letters, digits, `_`; stored lower-case).
    pub name: String,
    /// The key's parts, in order.
    pub segments: Vec<Segment>,
    /// Unique among live records.
    pub unique: bool,
    /// Only records satisfying this are in the index.
    pub condition: Option<Condition>,
}

impl IndexDef {
    /// An index allowing duplicates (ordered by recno).
    pub fn new(name: impl Into<String>, segments: Vec<Segment>) -> IndexDef {
        IndexDef {
            name: name.into(),
            segments,
            unique: false,
            condition: None,
        }
    }

    /// Makes it unique among live records.
    pub fn unique(mut self) -> IndexDef {
        self.unique = true;
        self
    }

    /// Restricts it to records satisfying `c`.
    pub fn when(mut self, c: Condition) -> IndexDef {
        self.condition = Some(c);
        self
    }
}

#[derive(Debug, Clone)]
struct CSeg {
    field: usize,
    ty: FieldType,
    offset: usize,
    width: usize,
    upper: bool,
    desc: bool,
}

#[derive(Debug, Clone)]
enum CCond {
    Cmp { seg: CSeg, op: CmpOp, key: Vec<u8> },
    And(Vec<CCond>),
    Or(Vec<CCond>),
    Not(Box<CCond>),
}

/// A definition compiled against a schema: computes keys and conditions.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The definition.
    pub def: IndexDef,
    segs: Vec<CSeg>,
    key_len: usize,
    cond: Option<CCond>,
}

fn seg_width(table: &str, ty: FieldType, seg: &Segment) -> Result<(usize, usize)> {
    let bad = |reason: String| Error::InvalidSchema {
        table: table.to_owned(),
        reason,
    };
    let partial = seg.offset != 0 || seg.len.is_some();
    if (partial || seg.upper) && !matches!(ty, FieldType::Char(_)) {
        return Err(bad(format!(
            "segment on {}: byte ranges and upper-case apply to Char fields only",
            seg.field
        )));
    }
    Ok(match ty {
        FieldType::Char(n) => {
            let n = n as usize;
            let off = seg.offset as usize;
            let len = seg.len.map_or(n.saturating_sub(off), |l| l as usize);
            if off + len > n || len == 0 {
                return Err(bad(format!(
                    "segment {}[{off}..{}] is outside Char({n})",
                    seg.field,
                    off + len
                )));
            }
            (off, len)
        }
        FieldType::Numeric { len, .. } => (0, if len <= 18 { 8 } else { 16 }),
        FieldType::Int64 | FieldType::Float64 => (0, 8),
        FieldType::Date => (0, 8),
        FieldType::Logical => (0, 1),
        FieldType::Binary(n) => (0, n as usize + 2),
        FieldType::Memo => {
            return Err(bad(format!(
                "field {} is a Memo and cannot be indexed",
                seg.field
            )))
        }
    })
}

fn upper_in_place(bytes: &mut Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => bytes.make_ascii_uppercase(),
        Ok(s) => {
            // Fold only characters whose upper case has the same UTF-8 length, so
            // byte offsets and widths never move (ç → Ç, á → Á; ß stays).
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                let mut up = c.to_uppercase();
                match (up.next(), up.next()) {
                    (Some(u), None) if u.len_utf8() == c.len_utf8() => out.push(u),
                    _ => out.push(c),
                }
            }
            *bytes = out.into_bytes();
        }
        Err(_) => bytes.make_ascii_uppercase(),
    }
}

fn put_i128_ordered(out: &mut Vec<u8>, v: i128, width: usize) {
    if width == 8 {
        out.extend_from_slice(&((v as i64 as u64) ^ (1 << 63)).to_be_bytes());
    } else {
        out.extend_from_slice(&((v as u128) ^ (1 << 127)).to_be_bytes());
    }
}

impl KeySpec {
    /// Compiles `def` against `schema`, checking every segment and the key length.
    pub fn compile(table: &str, schema: &Schema, def: &IndexDef) -> Result<KeySpec> {
        crate::schema::validate_field_name(&def.name).map_err(|_| Error::InvalidName {
            what: "index",
            name: def.name.clone(),
            reason: "only ASCII letters, digits and _, at most 32, not starting with a digit",
        })?;
        let bad = |reason: String| Error::InvalidSchema {
            table: table.to_owned(),
            reason,
        };
        if def.segments.is_empty() {
            return Err(bad(format!("index {} has no segments", def.name)));
        }
        let mut segs = Vec::new();
        for s in &def.segments {
            let field = schema
                .position(&s.field)
                .ok_or_else(|| Error::NoSuchField {
                    table: table.to_owned(),
                    field: s.field.clone(),
                })?;
            let ty = schema.fields()[field].ty;
            let (offset, width) = seg_width(table, ty, s)?;
            segs.push(CSeg {
                field,
                ty,
                offset,
                width,
                upper: s.upper,
                desc: s.descending,
            });
        }
        let key_len: usize = segs.iter().map(|s| s.width).sum();
        if key_len > MAX_KEY_LEN {
            return Err(bad(format!(
                "index {} has a key of {key_len} bytes; the limit is {MAX_KEY_LEN}",
                def.name
            )));
        }
        if let Some(c) = &def.condition {
            c.check_depth(table, &format!("index {}'s", def.name))?;
        }
        let cond = def
            .condition
            .as_ref()
            .map(|c| compile_cond(table, schema, c))
            .transpose()?;
        Ok(KeySpec {
            def: def.clone(),
            segs,
            key_len,
            cond,
        })
    }

    /// Bytes of a key (without the recno suffix).
    pub fn key_len(&self) -> usize {
        self.key_len
    }

    /// True when the record belongs in this index.
    pub fn includes(&self, values: &[Value]) -> bool {
        self.cond.as_ref().is_none_or(|c| eval(c, values))
    }

    /// The key of a record.
    pub fn key(&self, values: &[Value]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key_len + 8);
        for s in &self.segs {
            encode(s, &values[s.field], false, &mut out);
        }
        out
    }

    /// A seek key from leading segment values; the last may be a partial `Char`.
    pub fn seek_key(&self, table: &str, values: &[Value]) -> Result<Vec<u8>> {
        if values.len() > self.segs.len() {
            return Err(Error::InvalidValue {
                table: table.to_owned(),
                field: self.def.name.clone(),
                value: format!("{} values", values.len()),
                reason: format!("index {} has {} segments", self.def.name, self.segs.len()),
            });
        }
        let mut out = Vec::with_capacity(self.key_len);
        for (i, (s, v)) in self.segs.iter().zip(values).enumerate() {
            let last = i + 1 == values.len();
            if let (FieldType::Date, Value::Char(text)) = (s.ty, v) {
                date_text(table, &self.def.name, s, text, last, &mut out)?;
                continue;
            }
            let v = seek_value(table, &self.def.name, s, v)?;
            encode(s, &v, last, &mut out);
        }
        Ok(out)
    }
}

/// A Date segment sought as `YYYYMMDD` text: whole, or a prefix of it when it
/// is the seek key's last part.
fn date_text(
    table: &str,
    index: &str,
    s: &CSeg,
    text: &str,
    last: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    let bad = |reason: &str| Error::InvalidValue {
        table: table.to_owned(),
        field: index.to_owned(),
        value: format!("{text:?}"),
        reason: reason.to_owned(),
    };
    let t = text.trim_end();
    if t.len() > 8 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "a Date segment is sought as YYYYMMDD digits (or a prefix of them)",
        ));
    }
    if t.len() < 8 && !last {
        return Err(bad(
            "only the last part of a seek key may be a partial date",
        ));
    }
    let start = out.len();
    if t.is_empty() && text.len() == 8 {
        // Eight blanks: the empty date.
        out.extend_from_slice(b"        ");
    } else {
        out.extend_from_slice(t.as_bytes());
    }
    if s.desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
    Ok(())
}

fn seek_value(table: &str, index: &str, s: &CSeg, v: &Value) -> Result<Value> {
    let bad = |reason: String| Error::InvalidValue {
        table: table.to_owned(),
        field: index.to_owned(),
        value: v.to_string(),
        reason,
    };
    Ok(match (s.ty, v) {
        (FieldType::Char(_), Value::Char(c)) => {
            if c.len() > s.width {
                return Err(bad(format!(
                    "a key part of {} bytes is longer than its {}-byte segment",
                    c.len(),
                    s.width
                )));
            }
            v.clone()
        }
        (FieldType::Numeric { dec, .. }, Value::Numeric(_) | Value::Int64(_)) => {
            let d = match v {
                Value::Numeric(d) => *d,
                Value::Int64(i) => Decimal::from(*i),
                _ => unreachable!("matched above"),
            };
            Value::Numeric(
                d.rescale(dec)
                    .ok_or_else(|| bad(format!("has more than {dec} decimals")))?,
            )
        }
        (FieldType::Int64, Value::Int64(_))
        | (FieldType::Float64, Value::Float64(_))
        | (FieldType::Date, Value::Date(_))
        | (FieldType::Logical, Value::Logical(_))
        | (FieldType::Binary(_), Value::Binary(_)) => v.clone(),
        (ty, v) => {
            return Err(bad(format!(
                "a {} value cannot seek a {ty} segment",
                v.type_name()
            )))
        }
    })
}

/// Appends the encoding of `v` for segment `s`; `partial` leaves a Char unpadded.
fn encode(s: &CSeg, v: &Value, partial: bool, out: &mut Vec<u8>) {
    let start = out.len();
    match (s.ty, v) {
        (FieldType::Char(n), Value::Char(text)) => {
            let mut b: Vec<u8> = text.as_bytes().to_vec();
            if s.upper {
                upper_in_place(&mut b);
            }
            if partial {
                out.extend_from_slice(&b[..b.len().min(s.width)]);
            } else {
                b.resize((n as usize).max(b.len()), b' ');
                out.extend_from_slice(&b[s.offset..s.offset + s.width]);
            }
        }
        (FieldType::Numeric { dec, .. }, Value::Numeric(d)) => {
            let m = d.rescale(dec).map_or(0, |d| d.mantissa());
            put_i128_ordered(out, m, s.width);
        }
        (FieldType::Numeric { dec, .. }, Value::Int64(i)) => {
            let m = Decimal::from(*i).rescale(dec).map_or(0, |d| d.mantissa());
            put_i128_ordered(out, m, s.width);
        }
        (FieldType::Int64, Value::Int64(i)) => put_i128_ordered(out, i128::from(*i), 8),
        (FieldType::Float64, Value::Float64(f)) => {
            let f = if *f == 0.0 { 0.0 } else { *f };
            let bits = f.to_bits();
            let ord = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ord.to_be_bytes());
        }
        (FieldType::Date, Value::Date(d)) => {
            if d.is_empty() {
                out.extend_from_slice(b"        ");
            } else {
                out.extend_from_slice(format!("{:08}", d.yyyymmdd()).as_bytes());
            }
        }
        (FieldType::Logical, Value::Logical(b)) => out.push(u8::from(*b)),
        (FieldType::Binary(n), Value::Binary(b)) => {
            out.extend_from_slice(b);
            out.resize(out.len() + n as usize - b.len().min(n as usize), 0);
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        }
        _ => out.resize(start + s.width, 0),
    }
    if s.desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
}

fn compile_cond(table: &str, schema: &Schema, c: &Condition) -> Result<CCond> {
    Ok(match c {
        Condition::Cmp { field, op, value } => {
            let idx = schema.position(field).ok_or_else(|| Error::NoSuchField {
                table: table.to_owned(),
                field: field.clone(),
            })?;
            let f = &schema.fields()[idx];
            let seg = Segment::field(field.clone());
            let (offset, width) = seg_width(table, f.ty, &seg)?;
            let cs = CSeg {
                field: idx,
                ty: f.ty,
                offset,
                width,
                upper: false,
                desc: false,
            };
            let v = seek_value(table, "condition", &cs, &value.to_value())?;
            let mut key = Vec::new();
            encode(&cs, &v, false, &mut key);
            CCond::Cmp {
                seg: cs,
                op: *op,
                key,
            }
        }
        Condition::And(v) => CCond::And(
            v.iter()
                .map(|c| compile_cond(table, schema, c))
                .collect::<Result<_>>()?,
        ),
        Condition::Or(v) => CCond::Or(
            v.iter()
                .map(|c| compile_cond(table, schema, c))
                .collect::<Result<_>>()?,
        ),
        Condition::Not(c) => CCond::Not(Box::new(compile_cond(table, schema, c)?)),
    })
}

fn eval(c: &CCond, values: &[Value]) -> bool {
    match c {
        CCond::Cmp { seg, op, key } => {
            let mut mine = Vec::with_capacity(key.len());
            encode(seg, &values[seg.field], false, &mut mine);
            let ord = mine.as_slice().cmp(key.as_slice());
            match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
            }
        }
        CCond::And(v) => v.iter().all(|c| eval(c, values)),
        CCond::Or(v) => v.iter().any(|c| eval(c, values)),
        CCond::Not(c) => !eval(c, values),
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;
    use crate::schema::{Field, FieldType};

    fn nested(depth: usize) -> Condition {
        let mut c = Condition::cmp("N", CmpOp::Gt, Literal::Int64(0));
        for i in 1..depth {
            c = if i % 2 == 0 {
                Condition::Not(Box::new(c))
            } else {
                Condition::And(vec![c])
            };
        }
        c
    }

    #[test]
    fn deep_conditions_are_refused_when_decoded_and_defined() {
        let schema = Schema::new(vec![Field::new("N", FieldType::Int64)]);
        let ok = nested(Condition::MAX_DEPTH);
        assert_eq!(ok.depth(), Condition::MAX_DEPTH);
        let bytes = postcard::to_allocvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<Condition>(&bytes).unwrap(), ok);
        assert!(ok.predicate("t", &schema).is_ok());
        let def = IndexDef::new("pos", vec![Segment::field("N")]).when(ok);
        assert!(KeySpec::compile("t", &schema, &def).is_ok());

        let deep = nested(Condition::MAX_DEPTH + 1);
        let bytes = postcard::to_allocvec(&deep).unwrap();
        let e = postcard::from_bytes::<Condition>(&bytes).unwrap_err();
        assert!(matches!(e, postcard::Error::SerdeDeCustom), "{e:?}");
        let Err(e) = deep.predicate("t", &schema) else {
            panic!("a filter nested too deep was accepted")
        };
        assert!(e.to_string().contains("nested 65 levels deep"), "{e}");
        let def = IndexDef::new("pos", vec![Segment::field("N")]).when(deep);
        let e = KeySpec::compile("t", &schema, &def).unwrap_err();
        assert!(matches!(e, Error::InvalidSchema { .. }), "{e}");
        // The guard is released after a failure: the next decode starts at 0.
        let bytes = postcard::to_allocvec(&nested(3)).unwrap();
        assert!(postcard::from_bytes::<Condition>(&bytes).is_ok());

        // A hostile encoding far deeper than any stack could take: `Not`
        // (variant 3) a million times fails at the limit, without recursing.
        let hostile = vec![3u8; 1_000_000];
        assert!(postcard::from_bytes::<Condition>(&hostile).is_err());
        // Wide is fine: depth, not size, is limited.
        let wide = Condition::Or((0..10_000).map(|_| nested(2)).collect());
        assert_eq!(wide.depth(), 3);
        let bytes = postcard::to_allocvec(&wide).unwrap();
        assert_eq!(postcard::from_bytes::<Condition>(&bytes).unwrap(), wide);
    }
}
