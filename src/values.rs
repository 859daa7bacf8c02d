//! Field types and values as text, shared by the shell, import and export:
//! the compact type syntax (`C(10)`, `N(12,2)`, `I`, `F`, `D`, `L`, `M`,
//! `Binary(16)`), schemas written as `FIELD TYPE, …`, input cells turned into
//! values for a field, and values written back as text or JSON.
//!
//! Every conversion is exact: a decimal keeps its scale, a float its shortest
//! text that reads back to the same bits, a memo or binary value its bytes
//! (base64 where text cannot hold them).

use base64::Engine as _;
use raiz_engine::schema::check_value;
use raiz_engine::{Date, Decimal, Field, FieldType, Memo, Schema, Value};

/// Why a schema text or a value does not convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A type that is not one of raiz's.
    #[error("{0:?} is not a field type (C(n), N(len[,dec]), I, F, D, L, M, Binary(n), or Char(n), Numeric(len,dec), Int64, Float64, Date, Logical, Memo)")]
    Type(String),
    /// A schema text that is not `FIELD TYPE, …`.
    #[error("schema {text:?}: {reason}")]
    Schema {
        /// The text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A value that does not convert to its field, or does not fit it.
    #[error("field {field}: {reason}")]
    Value {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Parses a field type: compact (`C(10)`, `N(12,2)`, `N(5)`, `I`, `F`, `D`,
/// `L`, `M`) or as `raiz info` prints it (`Char(10)`, `Numeric(12,2)`,
/// `Int64`, `Float64`, `Date`, `Logical`, `Memo`, `Binary(16)`),
/// case-insensitive.
pub fn parse_type(text: &str) -> Result<FieldType, ValueError> {
    let bad = || ValueError::Type(text.trim().to_owned());
    let t = text.trim();
    let (name, args) = match t.split_once('(') {
        Some((n, rest)) => (n.trim(), Some(rest.strip_suffix(')').ok_or_else(bad)?)),
        None => (t, None),
    };
    let nums: Vec<u32> = match args {
        Some(a) => a
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let small = |n: u32| u8::try_from(n).map_err(|_| bad());
    let ty = match (name.to_ascii_lowercase().as_str(), nums.as_slice()) {
        ("c", [n]) => FieldType::Char(*n),
        ("n", [l]) => FieldType::Numeric {
            len: small(*l)?,
            dec: 0,
        },
        ("n", [l, d]) => FieldType::Numeric {
            len: small(*l)?,
            dec: small(*d)?,
        },
        ("i", []) => FieldType::Int64,
        ("f", []) => FieldType::Float64,
        ("d", []) => FieldType::Date,
        ("l", []) => FieldType::Logical,
        ("m", []) => FieldType::Memo,
        _ => t.parse().map_err(|_| bad())?,
    };
    Ok(ty)
}

/// The compact text of a type: what [`parse_type`] reads back.
pub fn type_text(ty: FieldType) -> String {
    match ty {
        FieldType::Char(n) => format!("C({n})"),
        FieldType::Numeric { len, dec: 0 } => format!("N({len})"),
        FieldType::Numeric { len, dec } => format!("N({len},{dec})"),
        FieldType::Int64 => "I".into(),
        FieldType::Float64 => "F".into(),
        FieldType::Date => "D".into(),
        FieldType::Logical => "L".into(),
        FieldType::Memo => "M".into(),
        FieldType::Binary(n) => format!("Binary({n})"),
    }
}

/// Splits `text` at the commas outside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parses `FIELD TYPE, FIELD TYPE, …` (or `FIELD:TYPE`); names are checked
/// as the engine checks them.
pub fn parse_schema(text: &str) -> Result<Schema, ValueError> {
    let bad = |reason: String| ValueError::Schema {
        text: text.to_owned(),
        reason,
    };
    let mut fields: Vec<Field> = Vec::new();
    for part in split_top(text) {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad(
                "an empty field definition (two commas, or none at all)".into(),
            ));
        }
        let (name, ty) = part
            .split_once(|c: char| c.is_whitespace() || c == ':')
            .ok_or_else(|| bad(format!("{part:?}: expected FIELD TYPE")))?;
        let name = name.trim();
        raiz_engine::schema::validate_field_name(name).map_err(|e| bad(e.to_string()))?;
        if fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            return Err(bad(format!("field {name} is defined twice")));
        }
        let ty = parse_type(ty.trim_start_matches(':')).map_err(|e| bad(e.to_string()))?;
        fields.push(Field::new(name, ty));
    }
    Ok(Schema::new(fields))
}

/// The text [`parse_schema`] reads back: `CODE C(6), PRICE N(12,2)`.
pub fn schema_text(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name, type_text(f.ty)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One input value before it meets its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing: the field's empty value (blanks, zero, the empty date, false).
    Empty,
    /// Text, as a CSV cell, a JSON string or a shell word gives it.
    Text(String),
    /// A number's exact text, as JSON or a DBF numeric field gives it.
    Number(String),
    /// A truth value (JSON, DBF).
    Bool(bool),
    /// A date (DBF).
    Date(Date),
    /// Bytes (a JSON `{"base64": …}` object, a DBF memo's decoded text).
    Bytes(Vec<u8>),
}

/// Prefix of a memo written as base64 in text: a memo that is not UTF-8, or
/// whose text itself starts with the prefix.
pub const MEMO_BASE64: &str = "base64:";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Decodes base64 text.
pub fn from_base64(text: &str) -> Result<Vec<u8>, String> {
    b64()
        .decode(text.trim())
        .map_err(|e| format!("{:?} is not base64 ({e})", short(text)))
}

/// Encodes bytes as base64.
pub fn to_base64(bytes: &[u8]) -> String {
    b64().encode(bytes)
}

fn short(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

/// Parses a logical: `T`, `F`, `true`, `false`, `Y`, `N`, `yes`, `no`, `1`,
/// `0`, `.T.`, `.F.` (any case).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "1" | ".t." | ".y." => Some(true),
        "f" | "false" | "n" | "no" | "0" | ".f." | ".n." => Some(false),
        _ => None,
    }
}

/// Turns `cell` into a value of `field` and checks that it fits (width,
/// decimals, a real date…). The error names the field and says why.
pub fn to_value(cell: Cell, field: &Field) -> Result<Value, ValueError> {
    let bad = |reason: String| ValueError::Value {
        field: field.name.clone(),
        reason,
    };
    let value = match (field.ty, cell) {
        (ty, Cell::Empty) => ty.empty_value(),
        (FieldType::Char(_), Cell::Text(s) | Cell::Number(s)) => Value::Char(s),
        (FieldType::Char(_), Cell::Bool(b)) => Value::Char(if b { "T" } else { "F" }.into()),
        (FieldType::Char(_), Cell::Date(d)) => Value::Char(date_text(d)),
        (FieldType::Char(_), Cell::Bytes(b)) => Value::Char(
            String::from_utf8(b).map_err(|_| bad("the bytes are not UTF-8 text".into()))?,
        ),
        (FieldType::Numeric { .. }, Cell::Text(s) | Cell::Number(s)) => {
            if s.trim().is_empty() {
                field.ty.empty_value()
            } else {
                Value::Numeric(
                    s.parse::<Decimal>()
                        .map_err(|_| bad(format!("{:?} is not a decimal number", short(&s))))?,
                )
            }
        }
        (FieldType::Int64, Cell::Text(s) | Cell::Number(s)) => {
            let t = s.trim();
            if t.is_empty() {
                Value::Int64(0)
            } else if let Ok(v) = t.parse::<i64>() {
                Value::Int64(v)
            } else {
                let d = t
                    .parse::<Decimal>()
                    .map_err(|_| bad(format!("{:?} is not an integer", short(&s))))?;
                Value::Int64(i64::try_from(d).map_err(|e| bad(e.to_string()))?)
            }
        }
        (FieldType::Float64, Cell::Text(s) | Cell::Number(s)) => {
            let t = s.trim();
            if t.is_empty() {
                Value::Float64(0.0)
            } else {
                let v = t
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{:?} is not a number", short(&s))))?;
                Value::Float64(v)
            }
        }
        (FieldType::Date, Cell::Text(s)) => Value::Date(Date::parse(&s).ok_or_else(|| {
            bad(format!(
                "{:?} is not a date (YYYY-MM-DD or YYYYMMDD, a real calendar day)",
                short(&s)
            ))
        })?),
        (FieldType::Date, Cell::Date(d)) => Value::Date(d),
        (FieldType::Logical, Cell::Text(s)) => {
            if s.trim().is_empty() || s.trim() == "?" {
                Value::Logical(false)
            } else {
                Value::Logical(parse_bool(&s).ok_or_else(|| {
                    bad(format!(
                        "{:?} is not a logical (T/F, true/false, Y/N, 1/0)",
                        short(&s)
                    ))
                })?)
            }
        }
        (FieldType::Logical, Cell::Bool(b)) => Value::Logical(b),
        (FieldType::Memo, Cell::Text(s)) => {
            let bytes = match s.strip_prefix(MEMO_BASE64) {
                Some(rest) => from_base64(rest).map_err(bad)?,
                None => s.into_bytes(),
            };
            memo(bytes)
        }
        (FieldType::Memo, Cell::Number(s)) => memo(s.into_bytes()),
        (FieldType::Memo, Cell::Bytes(b)) => memo(b),
        (FieldType::Binary(_), Cell::Text(s)) => Value::Binary(from_base64(&s).map_err(bad)?),
        (FieldType::Binary(_), Cell::Bytes(b)) => Value::Binary(b),
        (ty, cell) => {
            let what = match cell {
                Cell::Number(_) => "a number",
                Cell::Bool(_) => "a logical",
                Cell::Date(_) => "a date",
                Cell::Bytes(_) => "bytes",
                Cell::Text(_) => "text",
                Cell::Empty => "nothing",
            };
            return Err(bad(format!("{what} cannot be stored in a {ty} field")));
        }
    };
    if let Err(e) = check_value("", field, &value) {
        return Err(match e {
            raiz_engine::Error::InvalidValue { value, reason, .. } => {
                bad(format!("{value}: {reason}"))
            }
            other => bad(other.to_string()),
        });
    }
    Ok(value)
}

fn memo(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        Value::Memo(Memo::Empty)
    } else {
        Value::Memo(Memo::Data(bytes))
    }
}

/// `YYYY-MM-DD`, or nothing for the empty date.
pub fn date_text(d: Date) -> String {
    if d.is_empty() {
        String::new()
    } else {
        let (y, m, day) = d.parts();
        format!("{y:04}-{m:02}-{day:02}")
    }
}

/// The shortest text that reads back as exactly `v`.
pub fn float_text(v: f64) -> String {
    // `{:?}` is the shortest round-trip form, with an exponent for very
    // large or small numbers (`1e300`); both forms parse back exactly.
    format!("{v:?}")
}

/// A memo's bytes as text: the text itself, or [`MEMO_BASE64`] and base64
/// when the bytes are not UTF-8 or the text starts with the prefix.
pub fn memo_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.starts_with(MEMO_BASE64) => s.to_owned(),
        _ => format!("{MEMO_BASE64}{}", to_base64(bytes)),
    }
}

/// A value as CSV text (`memo`: the memo's bytes, for a memo field):
/// Char without its trailing blanks, decimals with their scale, dates as
/// `YYYY-MM-DD`, logicals as `true`/`false`, binary as base64.
pub fn value_text(v: &Value, memo: Option<&[u8]>) -> String {
    match v {
        Value::Char(s) => s.trim_end_matches(' ').to_owned(),
        Value::Numeric(d) => d.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float64(f) => float_text(*f),
        Value::Date(d) => date_text(*d),
        Value::Logical(b) => b.to_string(),
        Value::Memo(_) => memo.map(memo_text).unwrap_or_default(),
        Value::Binary(b) => to_base64(b),
    }
}

/// Appends `s` as a JSON string.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a value as JSON: numbers as JSON numbers in their exact text
/// (`12.50` keeps its scale), dates as `"YYYY-MM-DD"` (`""` when empty),
/// memos as strings or `{"base64": …}` when they are not UTF-8, binary as
/// a base64 string.
pub fn json_value(out: &mut String, v: &Value, memo: Option<&[u8]>) {
    match v {
        Value::Numeric(d) => out.push_str(&d.to_string()),
        Value::Int64(i) => out.push_str(&i.to_string()),
        Value::Float64(f) => out.push_str(&float_text(*f)),
        Value::Logical(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Memo(_) => {
            let bytes = memo.unwrap_or_default();
            match std::str::from_utf8(bytes) {
                Ok(s) if !s.starts_with(MEMO_BASE64) => json_string(out, s),
                _ => {
                    out.push_str("{\"base64\":");
                    json_string(out, &to_base64(bytes));
                    out.push('}');
                }
            }
        }
        other => json_string(out, &value_text(other, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_types_read_back() {
        for t in [
            FieldType::Char(10),
            FieldType::Numeric { len: 12, dec: 2 },
            FieldType::Numeric { len: 5, dec: 0 },
            FieldType::Int64,
            FieldType::Float64,
            FieldType::Date,
            FieldType::Logical,
            FieldType::Memo,
            FieldType::Binary(16),
        ] {
            assert_eq!(parse_type(&type_text(t)).unwrap(), t);
            assert_eq!(parse_type(&t.to_string()).unwrap(), t);
        }
        assert!(parse_type("C").is_err());
        assert!(parse_type("N(300)").is_err());
        assert!(parse_type("Q(3)").is_err());
    }

    #[test]
    fn schemas_read_back_and_bad_ones_are_named() {
        let s = parse_schema("CODE C(6), PRICE N(12,2), QTY:I, NOTE M").unwrap();
        assert_eq!(schema_text(&s), "CODE C(6), PRICE N(12,2), QTY I, NOTE M");
        assert!(parse_schema("CODE C(6),, X I").is_err());
        let e = parse_schema("CODE C(6), code I").unwrap_err().to_string();
        assert!(e.contains("defined twice"), "{e}");
        let e = parse_schema("1X C(2)").unwrap_err().to_string();
        assert!(e.contains("starts with a digit"), "{e}");
    }

    #[test]
    fn values_convert_exactly_or_say_why() {
        let f = |ty| Field::new("F", ty);
        let n = f(FieldType::Numeric { len: 6, dec: 2 });
        assert_eq!(
            to_value(Cell::Text("1.5".into()), &n).unwrap(),
            Value::Numeric("1.5".parse().unwrap())
        );
        let e = to_value(Cell::Text("1.555".into()), &n).unwrap_err();
        assert!(e.to_string().starts_with("field F: 1.555: "), "{e}");
        let e = to_value(Cell::Text("abc".into()), &n).unwrap_err();
        assert!(e.to_string().contains("not a decimal"), "{e}");
        let m = f(FieldType::Memo);
        let bytes = vec![0xff, 0, 1];
        let text = memo_text(&bytes);
        assert_eq!(
            to_value(Cell::Text(text), &m).unwrap(),
            Value::Memo(Memo::Data(bytes))
        );
        let tricky = b"base64:not really".to_vec();
        assert_eq!(
            to_value(Cell::Text(memo_text(&tricky)), &m).unwrap(),
            Value::Memo(Memo::Data(tricky))
        );
        for v in [0.1, 1e300, -2.5e-308, 123456789.0] {
            assert_eq!(
                to_value(Cell::Text(float_text(v)), &f(FieldType::Float64)).unwrap(),
                Value::Float64(v)
            );
        }
        let e = to_value(Cell::Text("2023-02-29".into()), &f(FieldType::Date)).unwrap_err();
        assert!(e.to_string().contains("not a date"), "{e}");
        let e = to_value(Cell::Text("maybe".into()), &f(FieldType::Logical)).unwrap_err();
        assert!(e.to_string().contains("not a logical"), "{e}");
        let e = to_value(Cell::Text("toolong".into()), &f(FieldType::Char(3))).unwrap_err();
        assert!(e.to_string().contains("do not fit in Char(3)"), "{e}");
    }
}
