//! Record encoding.
//!
//! **Fixed format**: fields in schema order at fixed offsets, little-endian:
//!
//! | type            | bytes            | encoding                                     |
//! |-----------------|------------------|----------------------------------------------|
//! | `Char(n)`       | n                | UTF-8, blank-padded                          |
//! | `Numeric(l,d)`  | 8 (l ≤ 18) or 16 | mantissa scaled to `d` decimals, i64 / i128  |
//! | `Date`          | 4                | `yyyymmdd` as u32, 0 = empty                 |
//! | `Logical`       | 1                | 0 or 1                                       |
//! | `Memo`          | 12               | blob id u64 (0 = empty), length u32          |
//! | `Int64`         | 8                | i64                                          |
//! | `Float64`       | 8                | IEEE-754 bits                                |
//! | `Binary(n)`     | 2 or 4, then n   | length (u16 if n ≤ 65535, else u32), bytes   |
//!
//! **Variable format**: the same, except `Char` is a LEB128 length and the text
//! without trailing blanks, and `Binary` a LEB128 length and the bytes.
//!
//! Values are checked ([`crate::schema::check_value`]) before they are encoded; a
//! stored record that does not decode is reported as corrupt, never a panic.

use crate::error::{Error, Result};
use crate::schema::{
    binary_prefix, Date, Decimal, FieldType, Memo, MemoRef, RecordFormat, Schema, Value,
};

/// Encodes and decodes the records of one schema.
#[derive(Debug, Clone)]
pub struct Codec {
    types: Vec<FieldType>,
    format: RecordFormat,
    fixed_len: usize,
}

/// Why stored bytes do not decode.
type Corrupt = String;

impl Codec {
    /// A codec for `schema` in `format`.
    pub fn new(schema: &Schema, format: RecordFormat) -> Codec {
        Codec {
            types: schema.fields().iter().map(|f| f.ty).collect(),
            format,
            fixed_len: schema.fixed_len(),
        }
    }

    /// Bytes of a fixed-format record.
    pub fn fixed_len(&self) -> usize {
        self.fixed_len
    }

    /// Puts checked values in the form a read gives back once they are
    /// stored: Char blank-padded to its width, numbers at their field's scale
    /// (so a transaction reads its own changes as everyone will after it).
    pub fn normalize(&self, values: &mut [Value]) {
        for (ty, v) in self.types.iter().zip(values.iter_mut()) {
            match (ty, &*v) {
                (FieldType::Char(n), Value::Char(s)) => {
                    let t = s.trim_end_matches(' ');
                    let mut p = String::with_capacity(*n as usize);
                    p.push_str(t);
                    p.extend(std::iter::repeat_n(
                        ' ',
                        (*n as usize).saturating_sub(t.len()),
                    ));
                    *v = Value::Char(p);
                }
                (FieldType::Numeric { dec, .. }, Value::Numeric(_) | Value::Int64(_)) => {
                    let d = match &*v {
                        Value::Numeric(d) => *d,
                        Value::Int64(i) => Decimal::from(*i),
                        _ => unreachable!("matched above"),
                    };
                    if let Some(d) = d.rescale(*dec) {
                        *v = Value::Numeric(d);
                    }
                }
                _ => {}
            }
        }
    }

    /// Appends the encoding of `values` (checked, memos resolved to stored
    /// references) to `out`.
    pub fn encode(&self, values: &[Value], out: &mut Vec<u8>) {
        debug_assert_eq!(values.len(), self.types.len());
        for (ty, v) in self.types.iter().zip(values) {
            self.encode_field(*ty, v, out);
        }
    }

    fn encode_field(&self, ty: FieldType, v: &Value, out: &mut Vec<u8>) {
        let var = self.format == RecordFormat::Variable;
        match (ty, v) {
            (FieldType::Char(n), Value::Char(s)) => {
                let t = s.trim_end_matches(' ');
                if var {
                    put_varint(out, t.len() as u64);
                    out.extend_from_slice(t.as_bytes());
                } else {
                    out.extend_from_slice(t.as_bytes());
                    out.resize(out.len() + n as usize - t.len(), b' ');
                }
            }
            (FieldType::Numeric { len, dec }, Value::Numeric(_) | Value::Int64(_)) => {
                let d = match v {
                    Value::Numeric(d) => *d,
                    Value::Int64(i) => Decimal::from(*i),
                    _ => unreachable!("matched above"),
                };
                let m = d.rescale(dec).map_or(0, |d| d.mantissa());
                if len <= 18 {
                    out.extend_from_slice(&(m as i64).to_le_bytes());
                } else {
                    out.extend_from_slice(&m.to_le_bytes());
                }
            }
            (FieldType::Date, Value::Date(d)) => out.extend_from_slice(&d.yyyymmdd().to_le_bytes()),
            (FieldType::Logical, Value::Logical(b)) => out.push(u8::from(*b)),
            (FieldType::Memo, Value::Memo(m)) => {
                let r = match m {
                    Memo::Stored(r) => *r,
                    _ => MemoRef { blob: 0, len: 0 },
                };
                out.extend_from_slice(&r.blob.to_le_bytes());
                out.extend_from_slice(&r.len.to_le_bytes());
            }
            (FieldType::Int64, Value::Int64(i)) => out.extend_from_slice(&i.to_le_bytes()),
            (FieldType::Float64, Value::Float64(f)) => {
                out.extend_from_slice(&f.to_bits().to_le_bytes())
            }
            (FieldType::Binary(n), Value::Binary(b)) => {
                if var {
                    put_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                } else {
                    if binary_prefix(n) == 2 {
                        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                    } else {
                        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    }
                    out.extend_from_slice(b);
                    out.resize(out.len() + n as usize - b.len(), 0);
                }
            }
            _ => {
                // Unreachable after check_value; encode the empty value rather than
                // panic so a bug cannot take the process down.
                debug_assert!(false, "unchecked value {v:?} for {ty:?}");
                self.encode_field(ty, &ty.empty_value(), out);
            }
        }
    }

    /// Decodes a stored record.
    pub fn decode(&self, bytes: &[u8], table: &str, recno: u64) -> Result<Vec<Value>> {
        self.decode_inner(bytes)
            .map_err(|reason| Error::CorruptRecord {
                table: table.to_owned(),
                recno,
                reason,
            })
    }

    fn decode_inner(&self, bytes: &[u8]) -> Result<Vec<Value>, Corrupt> {
        let mut r = Reader { b: bytes, at: 0 };
        let mut out = Vec::with_capacity(self.types.len());
        for ty in &self.types {
            out.push(self.decode_field(*ty, &mut r)?);
        }
        if r.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - r.at));
        }
        Ok(out)
    }

    fn decode_field(&self, ty: FieldType, r: &mut Reader<'_>) -> Result<Value, Corrupt> {
        let var = self.format == RecordFormat::Variable;
        Ok(match ty {
            FieldType::Char(n) => {
                let raw = if var {
                    let len = r.varint()? as usize;
                    if len > n as usize {
                        return Err(format!("text of {len} bytes in Char({n})"));
                    }
                    r.take(len)?
                } else {
                    r.take(n as usize)?
                };
                let s =
                    std::str::from_utf8(raw).map_err(|_| "text is not valid UTF-8".to_owned())?;
                let mut s = s.to_owned();
                s.extend(std::iter::repeat_n(' ', n as usize - raw.len()));
                Value::Char(s)
            }
            FieldType::Numeric { len, dec } => {
                let m = if len <= 18 {
                    i128::from(i64::from_le_bytes(r.array()?))
                } else {
                    i128::from_le_bytes(r.array()?)
                };
                Value::Numeric(Decimal::new(m, dec))
            }
            FieldType::Date => {
                let d = Date::from_yyyymmdd(u32::from_le_bytes(r.array()?));
                if !d.is_valid() {
                    return Err(format!("impossible date {}", d.yyyymmdd()));
                }
                Value::Date(d)
            }
            FieldType::Logical => match r.take(1)?[0] {
                0 => Value::Logical(false),
                1 => Value::Logical(true),
                b => return Err(format!("logical byte {b}")),
            },
            FieldType::Memo => {
                let blob = u64::from_le_bytes(r.array()?);
                let len = u32::from_le_bytes(r.array()?);
                if blob == 0 {
                    Value::Memo(Memo::Empty)
                } else {
                    Value::Memo(Memo::Stored(MemoRef { blob, len }))
                }
            }
            FieldType::Int64 => Value::Int64(i64::from_le_bytes(r.array()?)),
            FieldType::Float64 => Value::Float64(f64::from_bits(u64::from_le_bytes(r.array()?))),
            FieldType::Binary(n) => {
                if var {
                    let len = r.varint()? as usize;
                    if len > n as usize {
                        return Err(format!("{len} bytes in Binary({n})"));
                    }
                    Value::Binary(r.take(len)?.to_vec())
                } else {
                    let len = if binary_prefix(n) == 2 {
                        usize::from(u16::from_le_bytes(r.array()?))
                    } else {
                        u32::from_le_bytes(r.array()?) as usize
                    };
                    let raw = r.take(n as usize)?;
                    if len > n as usize {
                        return Err(format!("{len} bytes in Binary({n})"));
                    }
                    Value::Binary(raw[..len].to_vec())
                }
            }
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("record ends early (needs {n} bytes at offset {})", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("length prefix too long".into())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("C", FieldType::Char(5)),
            Field::new("N", FieldType::Numeric { len: 10, dec: 2 }),
            Field::new("W", FieldType::Numeric { len: 30, dec: 4 }),
            Field::new("D", FieldType::Date),
            Field::new("L", FieldType::Logical),
            Field::new("M", FieldType::Memo),
            Field::new("I", FieldType::Int64),
            Field::new("F", FieldType::Float64),
            Field::new("B", FieldType::Binary(4)),
        ])
    }

    fn values() -> Vec<Value> {
        vec![
            Value::Char("ab   ".into()),
            Value::Numeric("-12.50".parse().unwrap()),
            Value::Numeric("123456789012345678.1234".parse().unwrap()),
            Value::Date(Date::ymd(2026, 11, 23)),
            Value::Logical(true),
            Value::Memo(Memo::Stored(MemoRef { blob: 77, len: 9 })),
            Value::Int64(-5),
            Value::Float64(2.5),
            Value::Binary(vec![0, 1]),
        ]
    }

    #[test]
    fn both_formats_round_trip() {
        for format in [RecordFormat::Fixed, RecordFormat::Variable] {
            let c = Codec::new(&schema(), format);
            let mut out = Vec::new();
            c.encode(&values(), &mut out);
            if format == RecordFormat::Fixed {
                assert_eq!(out.len(), c.fixed_len());
            }
            assert_eq!(c.decode(&out, "T", 1).unwrap(), values());
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let c = Codec::new(&schema(), RecordFormat::Variable);
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
            let _ = c.decode(&junk, "T", 1);
        }
        let mut out = Vec::new();
        c.encode(&values(), &mut out);
        out.truncate(out.len() - 1);
        assert!(matches!(
            c.decode(&out, "T", 3),
            Err(Error::CorruptRecord { recno: 3, .. })
        ));
    }
}
