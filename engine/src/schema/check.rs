//! The checks a value passes before it is written. Nothing is truncated or rounded:
//! a value that does not fit is refused with an error naming table, field and value.

use super::{Field, FieldType, Memo, Value};
use crate::error::{Error, Result};

/// Largest memo (256 MiB).
pub const MAX_MEMO: usize = 256 << 20;

/// Checks that `value` may be stored in `field` of `table`.
///
/// Accepted conversions are exact ones only: an `Int64` into a `Numeric`, and a
/// `Char` whose excess over the width is trailing blanks (which padding would
/// restore anyway).
pub fn check_value(table: &str, field: &Field, value: &Value) -> Result<()> {
    let fail = |reason: String| {
        Err(Error::InvalidValue {
            table: table.to_owned(),
            field: field.name.clone(),
            value: shorten(&value.to_string()),
            reason,
        })
    };
    match (field.ty, value) {
        (FieldType::Char(n), Value::Char(s)) => {
            let used = s.trim_end_matches(' ').len();
            if used > n as usize {
                return fail(format!("{used} bytes do not fit in Char({n})"));
            }
        }
        (FieldType::Numeric { len, dec }, Value::Numeric(_) | Value::Int64(_)) => {
            let d = match value {
                Value::Numeric(d) => *d,
                Value::Int64(v) => (*v).into(),
                _ => unreachable!("matched above"),
            };
            let Some(scaled) = d.rescale(dec) else {
                return fail(format!(
                    "has more than {dec} decimal places; Numeric({len},{dec}) would have to round it"
                ));
            };
            let width = scaled.integer_digits()
                + if dec > 0 { 1 + u32::from(dec) } else { 0 }
                + u32::from(scaled.mantissa() < 0);
            if width > u32::from(len) {
                return fail(format!(
                    "needs {width} characters; Numeric({len},{dec}) holds {len}"
                ));
            }
        }
        (FieldType::Date, Value::Date(d)) => {
            if !d.is_valid() {
                let (y, m, day) = d.parts();
                return Err(Error::InvalidValue {
                    table: table.to_owned(),
                    field: field.name.clone(),
                    value: format!("{y:04}-{m:02}-{day:02}"),
                    reason: "is not a real calendar date".into(),
                });
            }
        }
        (FieldType::Logical, Value::Logical(_)) | (FieldType::Int64, Value::Int64(_)) => {}
        (FieldType::Memo, Value::Memo(m)) => {
            if let Memo::Data(d) = m {
                if d.len() > MAX_MEMO {
                    return fail(format!(
                        "a memo of {} bytes exceeds the limit of {MAX_MEMO}",
                        d.len()
                    ));
                }
            }
        }
        (FieldType::Float64, Value::Float64(f)) => {
            if !f.is_finite() {
                return fail("Float64 fields hold finite numbers only".into());
            }
        }
        (FieldType::Binary(n), Value::Binary(b)) => {
            if b.len() > n as usize {
                return fail(format!("{} bytes do not fit in Binary({n})", b.len()));
            }
        }
        (ty, v) => {
            return fail(format!(
                "a {} value cannot be stored in a {ty} field",
                v.type_name()
            ));
        }
    }
    Ok(())
}

pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Date, Decimal};

    fn check(ty: FieldType, v: Value) -> Result<()> {
        check_value("T", &Field::new("F", ty), &v)
    }

    #[test]
    fn numeric_bounds_follow_xbase_width() {
        let ty = FieldType::Numeric { len: 6, dec: 2 };
        assert!(check(ty, Value::Numeric("999.99".parse().unwrap())).is_ok());
        assert!(check(ty, Value::Numeric("-99.99".parse().unwrap())).is_ok());
        assert!(check(ty, Value::Numeric("-999.99".parse().unwrap())).is_err());
        assert!(check(ty, Value::Numeric("1000".parse().unwrap())).is_err());
        assert!(check(ty, Value::Numeric("1.234".parse().unwrap())).is_err());
        assert!(check(ty, Value::Numeric("1.230".parse().unwrap())).is_ok());
        assert!(check(ty, Value::Int64(999)).is_ok());
        assert!(check(
            FieldType::Numeric { len: 3, dec: 0 },
            Value::Numeric(Decimal::new(-99, 0))
        )
        .is_ok());
    }

    #[test]
    fn wrong_type_and_width_are_refused() {
        let e = check(FieldType::Char(3), Value::Char("ABCD".into())).unwrap_err();
        assert!(e.to_string().contains("field F"), "{e}");
        assert!(check(FieldType::Char(3), Value::Char("ABC   ".into())).is_ok());
        assert!(check(FieldType::Char(3), Value::Int64(1)).is_err());
        assert!(check(FieldType::Date, Value::Date(Date::ymd(2023, 2, 29))).is_err());
        assert!(check(FieldType::Float64, Value::Float64(f64::NAN)).is_err());
        assert!(check(FieldType::Binary(2), Value::Binary(vec![1, 2, 3])).is_err());
    }
}
