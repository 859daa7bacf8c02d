//! A schema inferred from the data, when `--create` has no `--schema` and
//! the input declares none: per column, the narrowest type that holds every
//! value exactly.
//!
//! - every value `true`/`false`/`T`/`F` → `L`;
//! - whole numbers without leading zeros (a code like `007` stays text) → `I`;
//! - decimals (and whole numbers) → `N(len,dec)` wide enough for all;
//! - numbers with an exponent → `F` (Float64);
//! - `YYYY-MM-DD` dates → `D`;
//! - text longer than 254 bytes or with line breaks, or bytes → `M`;
//! - anything else → `C(n)`, n the longest value in bytes.
//!
//! In JSON lines a string is text whatever it looks like (numbers are JSON
//! numbers). Names are made valid field names (`Unit Price` → `Unit_Price`).

use raiz_engine::{Date, Field, FieldType, Schema};

use super::SourceRow;
use crate::error::{CliError, CliResult};
use crate::values::Cell;

/// Longest text kept in a `Char` field by inference (the DBF limit).
const MAX_CHAR: usize = 254;

#[derive(Debug, Clone)]
struct Column {
    name: String,
    non_empty: u64,
    all_bool: bool,
    all_int: bool,
    all_dec: bool,
    all_float: bool,
    all_date: bool,
    memo: bool,
    int_digits: usize,
    scale: usize,
    negative: bool,
    max_len: usize,
    /// The type the input declares (DBF), whose Char widths grow to fit.
    declared: Option<FieldType>,
}

impl Column {
    fn new(name: &str, declared: Option<FieldType>) -> Column {
        Column {
            name: name.to_owned(),
            non_empty: 0,
            all_bool: true,
            all_int: true,
            all_dec: true,
            all_float: true,
            all_date: true,
            memo: false,
            int_digits: 0,
            scale: 0,
            negative: false,
            max_len: 0,
            declared,
        }
    }

    fn not_number(&mut self) {
        self.all_int = false;
        self.all_dec = false;
        self.all_float = false;
    }

    fn number(&mut self, t: &str) {
        let (neg, digits) = match t.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, t),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && (int == "0" || !int.starts_with('0'))
            && (digits.contains('.') != frac.is_empty());
        if plain {
            self.negative |= neg;
            self.int_digits = self.int_digits.max(int.len());
            self.scale = self.scale.max(frac.len());
            if !frac.is_empty() || int.len() > 18 || t.parse::<i64>().is_err() {
                self.all_int = false;
            }
        } else {
            self.all_int = false;
            self.all_dec = false;
        }
        let exp = t.contains(['e', 'E']) && t.parse::<f64>().is_ok_and(f64::is_finite);
        if !plain && !exp {
            self.all_float = false;
        }
    }

    fn feed(&mut self, cell: &Cell, strings_are_text: bool) {
        let text = match cell {
            Cell::Empty => return,
            Cell::Text(s) if s.trim().is_empty() => {
                self.max_len = self.max_len.max(s.len());
                return;
            }
            Cell::Text(s) | Cell::Number(s) => s.as_str(),
            Cell::Bool(_) => {
                self.non_empty += 1;
                self.not_number();
                self.all_date = false;
                self.max_len = self.max_len.max(1);
                return;
            }
            Cell::Date(_) => {
                self.non_empty += 1;
                self.not_number();
                self.all_bool = false;
                return;
            }
            Cell::Bytes(b) => {
                self.non_empty += 1;
                self.not_number();
                self.all_bool = false;
                self.all_date = false;
                self.max_len = self.max_len.max(b.len());
                if b.len() > MAX_CHAR || b.contains(&b'\n') || std::str::from_utf8(b).is_err() {
                    self.memo = true;
                }
                return;
            }
        };
        self.non_empty += 1;
        self.max_len = self.max_len.max(text.len());
        if text.len() > MAX_CHAR || text.contains(['\n', '\r']) {
            self.memo = true;
        }
        let is_number = matches!(cell, Cell::Number(_));
        if is_number || !strings_are_text {
            let t = text.trim();
            if !matches!(
                t.to_ascii_lowercase().as_str(),
                "t" | "f" | "true" | "false" | ".t." | ".f."
            ) || is_number
            {
                self.all_bool = false;
            }
            self.number(t);
        } else {
            self.all_bool = false;
            self.not_number();
        }
        if is_number || text.len() != 10 || Date::parse(text).is_none() || !text.contains('-') {
            self.all_date = false;
        }
    }

    fn field_type(&self) -> FieldType {
        if let Some(ty) = self.declared {
            return match ty {
                FieldType::Char(n) => FieldType::Char(n.max(self.max_len as u32)),
                other => other,
            };
        }
        let char_type = || {
            if self.memo {
                FieldType::Memo
            } else {
                FieldType::Char(self.max_len.max(1) as u32)
            }
        };
        if self.non_empty == 0 {
            return char_type();
        }
        if self.all_bool {
            return FieldType::Logical;
        }
        if self.all_int {
            return FieldType::Int64;
        }
        if self.all_dec {
            let len = self.int_digits
                + if self.scale > 0 { self.scale + 1 } else { 0 }
                + usize::from(self.negative);
            if len <= 38 {
                return FieldType::Numeric {
                    len: len as u8,
                    dec: self.scale as u8,
                };
            }
        }
        if self.all_float {
            return FieldType::Float64;
        }
        if self.all_date {
            return FieldType::Date;
        }
        char_type()
    }
}

/// Gathers what the rows show, column by column.
pub struct Inferrer {
    columns: Vec<Column>,
    strings_are_text: bool,
}

impl Inferrer {
    /// For `columns` known up front (CSV header, DBF fields) or found as the
    /// rows come (JSON lines); `declared` types stay (DBF), Char widths grow.
    pub fn new(
        columns: Option<Vec<String>>,
        declared: Option<&Schema>,
        strings_are_text: bool,
    ) -> Inferrer {
        let columns = columns
            .unwrap_or_default()
            .iter()
            .map(|n| {
                let ty = declared.and_then(|s| s.position(n).map(|i| s.fields()[i].ty));
                Column::new(n, ty)
            })
            .collect();
        Inferrer {
            columns,
            strings_are_text,
        }
    }

    /// Takes one row into account.
    pub fn feed(&mut self, row: &SourceRow) {
        for (name, cell) in &row.cells {
            let i = match self.columns.iter().position(|c| &c.name == name) {
                Some(i) => i,
                None => {
                    self.columns.push(Column::new(name, None));
                    self.columns.len() - 1
                }
            };
            self.columns[i].feed(cell, self.strings_are_text);
        }
    }

    /// The schema, and for each source column the field it fills.
    pub fn finish(self) -> CliResult<(Schema, Vec<(String, String)>)> {
        if self.columns.is_empty() {
            return Err(CliError::Data(
                "no columns to infer a schema from (the input has no rows?)".into(),
            ));
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut names = Vec::new();
        for c in &self.columns {
            let name = field_name(&c.name);
            if let Some(other) = fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(&name))
            {
                return Err(CliError::Data(format!(
                    "columns {:?} and {:?} both become field {name}: give --schema",
                    names
                        .get(other)
                        .map_or("", |(n, _): &(String, String)| n.as_str()),
                    c.name
                )));
            }
            fields.push(Field::new(name.clone(), c.field_type()));
            names.push((c.name.clone(), name));
        }
        Ok((Schema::new(fields), names))
    }
}

/// A valid field name for a column: letters, digits and `_` (others become
/// `_`), not starting with a digit, at most 32 bytes.
pub fn field_name(column: &str) -> String {
    let mut s: String = column
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert_str(0, "F_");
    }
    s.truncate(raiz_engine::schema::MAX_FIELD_NAME);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(rows: &[&[&str]], text: bool) -> String {
        let mut inf = Inferrer::new(Some(vec!["A".into()]), None, text);
        for (i, r) in rows.iter().enumerate() {
            inf.feed(&SourceRow {
                at: i as u64,
                cells: r
                    .iter()
                    .map(|v| {
                        (
                            "A".to_owned(),
                            if v.is_empty() {
                                Cell::Empty
                            } else {
                                Cell::Text((*v).to_owned())
                            },
                        )
                    })
                    .collect(),
                deleted: false,
            });
        }
        crate::values::schema_text(&inf.finish().unwrap().0)
    }

    #[test]
    fn the_narrowest_exact_type_wins() {
        assert_eq!(infer(&[&["1"], &["-20"], &[""]], false), "A I");
        assert_eq!(infer(&[&["1"], &["-20.55"], &["3.1"]], false), "A N(6,2)");
        assert_eq!(infer(&[&["007"], &["8"]], false), "A C(3)");
        assert_eq!(infer(&[&["1e300"], &["2.5"]], false), "A F");
        assert_eq!(infer(&[&["2024-02-29"], &[""]], false), "A D");
        assert_eq!(infer(&[&["2024-02-30"]], false), "A C(10)");
        assert_eq!(infer(&[&["T"], &["false"]], false), "A L");
        assert_eq!(infer(&[&["line\nbreak"]], false), "A M");
        assert_eq!(infer(&[&["12"]], true), "A C(2)");
        assert_eq!(infer(&[&[""]], false), "A C(1)");
        assert_eq!(
            infer(&[&["99999999999999999999"]], false),
            "A N(20)",
            "past i64"
        );
    }

    #[test]
    fn names_become_field_names() {
        assert_eq!(field_name("Unit Price"), "Unit_Price");
        assert_eq!(field_name("1st"), "F_1st");
        assert_eq!(field_name(""), "F_");
    }
}
