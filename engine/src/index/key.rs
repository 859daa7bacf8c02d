//! Index definitions and the order-preserving key encoding.
//!
//! Every segment encodes to a fixed width, so a key is a fixed-width byte string
//! and keys sort byte-wise in the order users expect:
//!
//! | type          | bytes     | encoding                                                   |
//! |---------------|-----------|------------------------------------------------------------|
//! | `Char(n)`     | width     | the bytes at `offset..offset+width`, blank-padded, optionally upper-cased or folded |
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
//!
//! `Char` widths count bytes, and upper-case and folded segments fold text
//! before it is encoded: see [`Segment`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{Date, Decimal, FieldType, Schema, Value};

/// Longest key an index may have, in bytes (before the 8-byte recno suffix).
pub const MAX_KEY_LEN: usize = 960;

/// One part of a key.
///
/// # Text: bytes, upper case and folding
///
/// A `Char(n)` field holds `n` **bytes** of UTF-8, as a DBF field holds `n`
/// bytes in its codepage: `"José"` takes 5 of them, and a `Char(6)` field
/// holds `"Ângela"` only if it is 7 wide. Segment widths, offsets and the
/// length of a seek key count bytes too.
///
/// An [`upper`](Segment::upper) segment upper-cases the text, keeping every
/// character's byte length (`ç → Ç`, `á → Á`; a letter whose upper case is
/// longer stays as it is), and sorts accented capitals after `Z`, by their
/// code points. A [`fold`](Segment::fold) segment is for names: it upper-cases
/// and drops accents from the Latin letters used in Portuguese, Spanish,
/// French and the rest of Latin-1 and Latin Extended-A (`Á À Â Ã Ä Å → A`,
/// `Ç → C`, `É → E`, `Ñ → N`, `Ø → O`, `ß → SS`, `Æ → AE`, `Œ → OE`, lower
/// case alike), so `"Ângela"`, `"ANGELA"` and `"angela"` are one key and sort
/// between `"ANDRE"` and `"BRUNO"`. Other characters are upper-cased as in an
/// `upper` segment. A folded letter never takes more bytes than the letter
/// (a 2-byte `Á` becomes a 1-byte `A`), so the whole field is folded and then
/// blank-padded to its width before the segment's bytes are taken: a partial
/// segment's offset and length count bytes of the folded text.
///
/// A seek on an upper-case or folded segment folds the sought key the same
/// way, so `seek("angela")` and `seek("ÂNGELA")` both find `"Ângela"`.
///
/// # Encoding
///
/// Stored in table headers and sent over the wire with postcard: the case
/// rule (`upper`, `fold`) is one byte, 0 for as-is, 1 for upper case, 2 for
/// folded, where earlier versions stored `upper` as a `bool` (the same bytes 0
/// and 1), so definitions written before `fold` existed read unchanged. A
/// build that predates `fold` refuses a folded definition (2 is not a
/// `bool`) rather than misreading it.
///
/// ```
/// use raiz_engine::index::Segment;
/// let name = Segment::field("A1_NOME").fold();
/// assert!(name.fold && name.upper);
/// let prefix = Segment::part("A1_COD", 0, 3).upper().descending();
/// assert_eq!((prefix.offset, prefix.len), (0, Some(3)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "SegmentRepr", try_from = "SegmentRepr")]
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
    /// Fold to upper case without accents (`Char` only; implies `upper`):
    /// see [text](Segment#text-bytes-upper-case-and-folding).
    pub fold: bool,
}

/// How a [`Segment`] is encoded: its case rule in one byte where `upper` was
/// a `bool` (postcard writes both as one byte), so older definitions decode.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Segment")]
struct SegmentRepr {
    field: String,
    offset: u32,
    len: Option<u32>,
    /// 0 as is, 1 upper case, 2 folded.
    upper: u8,
    descending: bool,
}

impl From<Segment> for SegmentRepr {
    fn from(s: Segment) -> SegmentRepr {
        SegmentRepr {
            field: s.field,
            offset: s.offset,
            len: s.len,
            upper: if s.fold { 2 } else { u8::from(s.upper) },
            descending: s.descending,
        }
    }
}

impl TryFrom<SegmentRepr> for Segment {
    type Error = String;

    fn try_from(r: SegmentRepr) -> std::result::Result<Segment, String> {
        let (upper, fold) = match r.upper {
            0 => (false, false),
            1 => (true, false),
            2 => (true, true),
            other => {
                return Err(format!(
                    "segment on {}: unknown case rule {other} (this build knows 0 to 2)",
                    r.field
                ))
            }
        };
        Ok(Segment {
            field: r.field,
            offset: r.offset,
            len: r.len,
            upper,
            descending: r.descending,
            fold,
        })
    }
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
            fold: false,
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

    /// Folds to upper case without accents, for names: `"Ângela"`, `"angela"`
    /// and `"ANGELA"` are one key (see
    /// [text](Segment#text-bytes-upper-case-and-folding)).
    ///
    /// ```
    /// use raiz_engine::index::{IndexDef, Segment};
    /// let by_name = IndexDef::new("by_name", vec![Segment::field("A1_NOME").fold()]);
    /// assert!(by_name.segments[0].fold);
    /// ```
    pub fn fold(mut self) -> Segment {
        self.upper = true;
        self.fold = true;
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
    /// The field's name, as the schema spells it.
    name: String,
    ty: FieldType,
    offset: usize,
    width: usize,
    upper: bool,
    fold: bool,
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
    if (partial || seg.upper || seg.fold) && !matches!(ty, FieldType::Char(_)) {
        return Err(bad(format!(
            "segment on {}: byte ranges, upper-case and folding apply to Char fields only",
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

/// The letter without its accent, upper-case, for the Latin letters of
/// Latin-1 and Latin Extended-A; never more bytes than the letter (all of
/// them take 2).
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' | 'Ā'..='ą' => "A",
        'Æ' | 'æ' => "AE",
        'Ç' | 'ç' | 'Ć'..='č' => "C",
        'Ð' | 'ð' | 'Ď'..='đ' => "D",
        'È'..='Ë' | 'è'..='ë' | 'Ē'..='ě' => "E",
        'Ĝ'..='ģ' => "G",
        'Ĥ'..='ħ' => "H",
        'Ì'..='Ï' | 'ì'..='ï' | 'Ĩ'..='ı' => "I",
        'Ĳ' | 'ĳ' => "IJ",
        'Ĵ' | 'ĵ' => "J",
        'Ķ'..='ĸ' => "K",
        'Ĺ'..='ł' => "L",
        'Ñ' | 'ñ' | 'Ń'..='ŋ' => "N",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | 'Ō'..='ő' => "O",
        'Œ' | 'œ' => "OE",
        'Ŕ'..='ř' => "R",
        'Ś'..='š' | 'ſ' => "S",
        'ß' => "SS",
        'Ţ'..='ŧ' => "T",
        'Þ' | 'þ' => "TH",
        'Ù'..='Ü' | 'ù'..='ü' | 'Ũ'..='ų' => "U",
        'Ŵ' | 'ŵ' => "W",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ'..='Ÿ' => "Y",
        'Ź'..='ž' => "Z",
        _ => return None,
    })
}

/// Upper case without accents: the text of a [`Segment::fold`] key, never
/// longer in bytes than `s`.
pub(crate) fn fold_text(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else if let Some(f) = fold_latin(c) {
            out.push_str(f);
        } else {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) if u.len_utf8() == c.len_utf8() => out.push(u),
                _ => out.push(c),
            }
        }
    }
    out
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
                name: schema.fields()[field].name.clone(),
                ty,
                offset,
                width,
                upper: s.upper,
                fold: s.fold,
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
    ///
    /// An error names the segment's field, and the index and segment in its
    /// reason: `field A1_COD: index sa1_1, segment A1_COD: a Int64 value
    /// cannot seek a Char(6) segment`.
    pub fn seek_key(&self, table: &str, values: &[Value]) -> Result<Vec<u8>> {
        if values.len() > self.segs.len() {
            let fields: Vec<&str> = self.segs.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::InvalidValue {
                table: table.to_owned(),
                field: fields.join("+"),
                value: format!("{} values", values.len()),
                reason: format!(
                    "index {} has {} segment(s) ({})",
                    self.def.name,
                    self.segs.len(),
                    fields.join(", ")
                ),
            });
        }
        let mut out = Vec::with_capacity(self.key_len);
        for (i, (s, v)) in self.segs.iter().zip(values).enumerate() {
            let last = i + 1 == values.len();
            // Formatted only into an error's reason.
            let ctx = SegmentCtx {
                index: &self.def.name,
                segment: &s.name,
            };
            if let (FieldType::Date, Value::Char(text)) = (s.ty, v) {
                date_text(table, &ctx, s, text, last, &mut out)?;
                continue;
            }
            let v = seek_value(table, &ctx, s, v)?;
            encode(s, &v, last, &mut out);
        }
        Ok(out)
    }
}

/// Names an index and one of its segments in a seek error's reason.
struct SegmentCtx<'a> {
    index: &'a str,
    segment: &'a str,
}

impl std::fmt::Display for SegmentCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "index {}, segment {}", self.index, self.segment)
    }
}

/// A Date segment sought as `YYYYMMDD` text: whole, or a prefix of it when it
/// is the seek key's last part. `ctx` names the index and segment.
fn date_text(
    table: &str,
    ctx: &dyn std::fmt::Display,
    s: &CSeg,
    text: &str,
    last: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    let bad = |reason: &str| Error::InvalidValue {
        table: table.to_owned(),
        field: s.name.clone(),
        value: format!("{text:?}"),
        reason: format!("{ctx}: {reason}"),
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

/// Checks a sought value against segment `s`: its type, a `Char`'s length
/// (after folding, for a folded segment), a `Numeric`'s decimals. `ctx` names
/// the index and segment (or the condition) for the error's reason; the
/// error's field is the segment's field.
fn seek_value<'v>(
    table: &str,
    ctx: &dyn std::fmt::Display,
    s: &CSeg,
    v: &'v Value,
) -> Result<std::borrow::Cow<'v, Value>> {
    use std::borrow::Cow;
    let bad = |reason: String| Error::InvalidValue {
        table: table.to_owned(),
        field: s.name.clone(),
        value: v.to_string(),
        reason: format!("{ctx}: {reason}"),
    };
    Ok(match (s.ty, v) {
        (FieldType::Char(_), Value::Char(c)) => {
            let folded = s.fold.then(|| fold_text(c));
            let len = folded.as_ref().map_or(c.len(), String::len);
            if len > s.width {
                return Err(bad(format!(
                    "a key part of {len} bytes is longer than its {}-byte segment",
                    s.width
                )));
            }
            folded.map_or(Cow::Borrowed(v), |f| Cow::Owned(Value::Char(f)))
        }
        (FieldType::Numeric { dec, .. }, Value::Numeric(_) | Value::Int64(_)) => {
            let d = match v {
                Value::Numeric(d) => *d,
                Value::Int64(i) => Decimal::from(*i),
                _ => unreachable!("matched above"),
            };
            Cow::Owned(Value::Numeric(
                d.rescale(dec)
                    .ok_or_else(|| bad(format!("has more than {dec} decimals")))?,
            ))
        }
        (FieldType::Int64, Value::Int64(_))
        | (FieldType::Float64, Value::Float64(_))
        | (FieldType::Date, Value::Date(_))
        | (FieldType::Logical, Value::Logical(_))
        | (FieldType::Binary(_), Value::Binary(_)) => Cow::Borrowed(v),
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
            let mut b: Vec<u8> = if s.fold {
                fold_text(text).into_bytes()
            } else {
                text.as_bytes().to_vec()
            };
            if s.upper && !s.fold {
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
                name: f.name.clone(),
                ty: f.ty,
                offset,
                width,
                upper: false,
                fold: false,
                desc: false,
            };
            let value = value.to_value();
            let v = seek_value(table, &"condition", &cs, &value)?;
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

#[cfg(test)]
mod text_tests {
    use super::*;
    use crate::schema::{Field, FieldType};

    fn names() -> Schema {
        Schema::new(vec![
            Field::new("A1_COD", FieldType::Char(6)),
            Field::new("A1_NOME", FieldType::Char(10)),
        ])
    }

    fn spec(segs: Vec<Segment>) -> KeySpec {
        KeySpec::compile("sa1", &names(), &IndexDef::new("sa1_1", segs)).unwrap()
    }

    fn key(k: &KeySpec, name: &str) -> Vec<u8> {
        k.key(&[Value::from("000001"), Value::from(name)])
    }

    #[test]
    fn folding_drops_accents_and_never_grows() {
        assert_eq!(fold_text("Ângela"), "ANGELA");
        assert_eq!(fold_text("andré"), "ANDRE");
        assert_eq!(fold_text("Érico"), "ERICO");
        assert_eq!(fold_text("João Conceição Müller"), "JOAO CONCEICAO MULLER");
        assert_eq!(fold_text("Straße Œuvre Æsir"), "STRASSE OEUVRE AESIR");
        assert_eq!(fold_text("Łódź Šťastný Ğ ı ÿ"), "LODZ STASTNY G I Y");
        assert_eq!(fold_text("Nº 12 – ª"), "Nº 12 – ª");
        assert_eq!(fold_text("ωΣ"), "ΩΣ");
        for c in ('\u{80}'..='\u{24F}').chain(['ß', 'ŉ', 'Ω', 'ﬁ']) {
            let s = c.to_string();
            assert!(fold_text(&s).len() <= s.len(), "{c:?}");
        }
    }

    #[test]
    fn folded_names_sort_by_their_letters() {
        let upper = spec(vec![Segment::field("A1_NOME").upper()]);
        let fold = spec(vec![Segment::field("A1_NOME").fold()]);
        let names = ["Ângela", "Érico", "ZULMIRA", "andré", "Bruno", "ÁLVARO"];
        let sorted = |k: &KeySpec| {
            let mut v: Vec<(Vec<u8>, &str)> = names.iter().map(|n| (key(k, n), *n)).collect();
            v.sort();
            v.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
        };
        assert_eq!(
            sorted(&fold),
            ["ÁLVARO", "andré", "Ângela", "Bruno", "Érico", "ZULMIRA"]
        );
        // Upper case alone puts accented capitals after Z.
        assert_eq!(
            sorted(&upper),
            ["andré", "Bruno", "ZULMIRA", "ÁLVARO", "Ângela", "Érico"]
        );
        // Fixed width: the folded text is blank-padded to the field.
        assert_eq!(key(&fold, "Ângela"), b"ANGELA    ");
        assert_eq!(fold.key_len(), 10);
    }

    #[test]
    fn folded_seeks_find_with_and_without_accents() {
        let fold = spec(vec![Segment::field("A1_NOME").fold()]);
        let full = key(&fold, "Ângela");
        for sought in ["angela", "ANGELA", "Ângela", "ÂNGELA", "ângela"] {
            assert_eq!(
                fold.seek_key("sa1", &[Value::from(sought)]).unwrap(),
                b"ANGELA"
            );
            assert!(full.starts_with(b"ANGELA"));
        }
        let prefix = fold.seek_key("sa1", &[Value::from("Â")]).unwrap();
        assert_eq!(prefix, b"A");
        // A sought key counts the bytes of its folded text: 11 bytes of
        // "Ângela Luíz" fold to 10 and fit the Char(10) segment.
        assert_eq!(
            fold.seek_key("sa1", &[Value::from("Ângela Luí")]).unwrap(),
            b"ANGELA LUI"
        );
        let upper = spec(vec![Segment::field("A1_NOME").upper()]);
        assert!(upper.seek_key("sa1", &[Value::from("Ângela Luí")]).is_err());
        // A partial folded segment takes bytes of the folded text.
        let part = spec(vec![Segment::part("A1_NOME", 1, 3).fold()]);
        assert_eq!(key(&part, "Ângela"), b"NGE");
        // Descending folded segments invert the folded bytes.
        let desc = spec(vec![Segment::field("A1_NOME").fold().descending()]);
        assert!(key(&desc, "Érico") < key(&desc, "andré"));
    }

    #[test]
    fn fold_applies_to_char_fields_only() {
        let s = Schema::new(vec![Field::new("N", FieldType::Int64)]);
        let def = IndexDef::new("n", vec![Segment::field("N").fold()]);
        let e = KeySpec::compile("t", &s, &def).unwrap_err();
        assert!(
            e.to_string().contains("folding apply to Char fields only"),
            "{e}"
        );
    }

    /// `Segment` as it was encoded before `fold`: `upper` a bool.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldSegment {
        field: String,
        offset: u32,
        len: Option<u32>,
        upper: bool,
        descending: bool,
    }

    #[test]
    fn segments_written_before_fold_decode_unchanged() {
        for (upper, descending, len) in [(false, false, None), (true, true, Some(3))] {
            let old = OldSegment {
                field: "A1_NOME".into(),
                offset: 2,
                len,
                upper,
                descending,
            };
            let bytes = postcard::to_allocvec(&old).unwrap();
            let new: Segment = postcard::from_bytes(&bytes).unwrap();
            let mut want = Segment::field("A1_NOME");
            want.offset = 2;
            want.len = len;
            want.upper = upper;
            want.descending = descending;
            assert_eq!(new, want);
            // And a segment without fold encodes exactly as before.
            assert_eq!(postcard::to_allocvec(&new).unwrap(), bytes);
        }
        // Whole definitions, as stored in a table header.
        let def = IndexDef::new(
            "by_name",
            vec![
                Segment::field("A1_NOME").fold(),
                Segment::field("A1_COD").upper(),
            ],
        )
        .unique();
        let bytes = postcard::to_allocvec(&def).unwrap();
        assert_eq!(postcard::from_bytes::<IndexDef>(&bytes).unwrap(), def);
        // A build that predates fold refuses a folded segment rather than
        // misreading it.
        let folded = postcard::to_allocvec(&Segment::field("X").fold()).unwrap();
        assert!(postcard::from_bytes::<OldSegment>(&folded).is_err());
        let mut bad = folded.clone();
        let at = bad.len() - 2;
        bad[at] = 3;
        assert!(postcard::from_bytes::<Segment>(&bad).is_err());
    }

    #[test]
    fn seek_errors_name_the_field_and_the_index() {
        let k = spec(vec![Segment::field("A1_COD"), Segment::field("A1_NOME")]);
        let e = k.seek_key("sa1", &[Value::Int64(1)]).unwrap_err();
        let Error::InvalidValue { field, reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(field, "A1_COD");
        assert_eq!(
            reason,
            "index sa1_1, segment A1_COD: a Int64 value cannot seek a Char(6) segment"
        );
        assert_eq!(
            e.to_string(),
            "table sa1: field A1_COD: index sa1_1, segment A1_COD: \
             a Int64 value cannot seek a Char(6) segment (value 1)"
        );
        let e = k
            .seek_key("sa1", &[Value::from("000001"), Value::from("x".repeat(11))])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("field A1_NOME: index sa1_1, segment A1_NOME: a key part of 11 bytes"),
            "{e}"
        );
        let e = k
            .seek_key(
                "sa1",
                &[Value::from("1"), Value::from("2"), Value::from("3")],
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("field A1_COD+A1_NOME: index sa1_1 has 2 segment(s) (A1_COD, A1_NOME)"),
            "{e}"
        );
        let dated = Schema::new(vec![Field::new("EMISSAO", FieldType::Date)]);
        let d = KeySpec::compile(
            "sf2",
            &dated,
            &IndexDef::new("sf2_1", vec![Segment::field("emissao")]),
        )
        .unwrap();
        let e = d.seek_key("sf2", &[Value::from("2024-01")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("field EMISSAO: index sf2_1, segment EMISSAO: a Date segment"),
            "{e}"
        );
        // Conditions name their field too.
        let c = Condition::cmp("A1_COD", CmpOp::Eq, Literal::Int64(1));
        let Err(e) = c.predicate("sa1", &names()) else {
            panic!("an Int64 compared with a Char field was accepted")
        };
        assert!(e.to_string().contains("field A1_COD: condition:"), "{e}");
    }
}
