//! What the shell prints: aligned tables or one JSON object per line, the
//! same bytes for the same state whatever the mode (embedded or a server).

use std::io::Write;

use raiz_engine::{FieldType, Value};

use crate::values::{date_text, json_string, json_value, to_base64, value_text};

/// Widest value shown in a table cell; longer ones end in `…` (JSON output
/// is never shortened).
const CELL_MAX: usize = 40;

/// A record as the shell shows it.
pub struct Row {
    /// Its recno.
    pub recno: u64,
    /// Logically deleted.
    pub deleted: bool,
    /// Field name, type, value, and the memo's bytes for a memo field.
    pub fields: Vec<(String, FieldType, Value, Option<Vec<u8>>)>,
}

/// The shell's output: standard output for results, standard error for
/// errors, in text (aligned tables) or JSON lines.
pub struct Out {
    json: bool,
    out: Box<dyn Write>,
}

/// One cell of a text table.
fn cell_text(ty: FieldType, v: &Value, memo: Option<&[u8]>) -> String {
    let s = match (ty, v) {
        (_, Value::Memo(_)) => String::from_utf8_lossy(memo.unwrap_or_default()).into_owned(),
        (_, Value::Binary(b)) => to_base64(b),
        (_, Value::Date(d)) => date_text(*d),
        (_, other) => value_text(other, None),
    };
    let mut shown = String::new();
    for c in s.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c.is_control() => shown.push('?'),
            c => shown.push(c),
        }
    }
    if shown.chars().count() > CELL_MAX {
        shown = shown.chars().take(CELL_MAX - 1).collect::<String>() + "…";
    }
    shown
}

fn right_aligned(ty: FieldType) -> bool {
    matches!(
        ty,
        FieldType::Numeric { .. } | FieldType::Int64 | FieldType::Float64
    )
}

/// Lines of an aligned table: two blanks between columns, no trailing blanks.
pub fn table_lines(headers: &[String], right: &[bool], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i].saturating_sub(c.chars().count());
            if right[i] {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![line(headers)];
    out.extend(rows.iter().map(|r| line(r)));
    out
}

impl Out {
    /// Output to `out`, as JSON lines when `json`.
    pub fn new(json: bool, out: Box<dyn Write>) -> Out {
        Out { json, out }
    }

    /// True in JSON mode.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Writes a line of output.
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    /// Flushes standard output (before anything goes to standard error).
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// A message: `text` in text mode, `{"message": text}` in JSON.
    pub fn message(&mut self, text: &str) {
        if self.json {
            let mut s = String::from("{\"message\":");
            json_string(&mut s, text);
            s.push('}');
            self.line(&s);
        } else {
            self.line(text);
        }
    }

    /// A number: itself in text mode, `{"key": n}` in JSON.
    pub fn scalar(&mut self, key: &str, n: u64) {
        if self.json {
            let mut s = String::from("{");
            json_string(&mut s, key);
            s.push_str(&format!(":{n}}}"));
            self.line(&s);
        } else {
            self.line(&n.to_string());
        }
    }

    /// An error, on standard error.
    pub fn error(&mut self, text: &str) {
        self.flush();
        if self.json {
            let mut s = String::from("{\"error\":");
            json_string(&mut s, text);
            s.push('}');
            eprintln!("{s}");
        } else {
            eprintln!("error: {text}");
        }
    }

    /// Records: a table with `recno` and `del` columns first, or one JSON
    /// object each with `@recno` and `@deleted` first.
    pub fn records(&mut self, rows: &[Row]) {
        if self.json {
            for r in rows {
                let mut s = format!("{{\"@recno\":{},\"@deleted\":{}", r.recno, r.deleted);
                Self::json_fields(&mut s, r);
                s.push('}');
                self.line(&s);
            }
            return;
        }
        let Some(first) = rows.first() else {
            self.line("(no records)");
            return;
        };
        let mut headers = vec!["recno".to_owned(), "del".to_owned()];
        let mut right = vec![true, false];
        for (name, ty, _, _) in &first.fields {
            headers.push(name.clone());
            right.push(right_aligned(*ty));
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut c = vec![
                    r.recno.to_string(),
                    if r.deleted { "*" } else { "" }.to_owned(),
                ];
                c.extend(
                    r.fields
                        .iter()
                        .map(|(_, ty, v, m)| cell_text(*ty, v, m.as_deref())),
                );
                c
            })
            .collect();
        for l in table_lines(&headers, &right, &cells) {
            self.line(&l);
        }
    }

    fn json_fields(s: &mut String, r: &Row) {
        for (name, _, v, m) in &r.fields {
            s.push(',');
            json_string(s, name);
            s.push(':');
            json_value(s, v, m.as_deref());
        }
    }

    /// Where a move left the handle: the record (when on one) and the flags
    /// worth telling — `bof`, `eof`, `not found` after a seek.
    pub fn position(&mut self, row: Option<&Row>, recno: u64, flags: Flags) {
        if self.json {
            let mut s = format!(
                "{{\"@recno\":{recno},\"@bof\":{},\"@eof\":{},\"@found\":{}",
                flags.bof, flags.eof, flags.found
            );
            if let Some(r) = row {
                s.push_str(&format!(",\"@deleted\":{}", r.deleted));
                Self::json_fields(&mut s, r);
            }
            s.push('}');
            self.line(&s);
            return;
        }
        if let Some(r) = row {
            self.records(std::slice::from_ref(r));
        }
        let mut notes = Vec::new();
        if flags.bof {
            notes.push("bof".to_owned());
        }
        if flags.eof {
            notes.push(format!("eof, recno {recno}"));
        }
        if flags.sought && !flags.found {
            notes.push("not found".to_owned());
        }
        if !notes.is_empty() {
            self.line(&format!("({})", notes.join(", ")));
        }
    }

    /// A generic table (text) or one object per row (JSON), the JSON values
    /// given as JSON text.
    pub fn rows(&mut self, headers: &[&str], right: &[bool], rows: &[Vec<(String, String)>]) {
        if self.json {
            for r in rows {
                let mut s = String::from("{");
                for (i, (h, (_, j))) in headers.iter().zip(r).enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    json_string(&mut s, h);
                    s.push(':');
                    s.push_str(j);
                }
                s.push('}');
                self.line(&s);
            }
            return;
        }
        let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|(t, _)| t.clone()).collect())
            .collect();
        for l in table_lines(&headers, right, &cells) {
            self.line(&l);
        }
    }
}

/// The flags a move leaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// Before the first record.
    pub bof: bool,
    /// Past the last record.
    pub eof: bool,
    /// The last seek found its key.
    pub found: bool,
    /// The move was a seek (so `found` is worth telling).
    pub sought: bool,
}

/// A text cell and its JSON form, for [`Out::rows`].
pub fn text_cell(s: &str) -> (String, String) {
    let mut j = String::new();
    json_string(&mut j, s);
    (s.to_owned(), j)
}

/// A number cell and its JSON form, for [`Out::rows`].
pub fn num_cell(n: impl std::fmt::Display) -> (String, String) {
    (n.to_string(), n.to_string())
}

/// A truth cell and its JSON form, for [`Out::rows`].
pub fn bool_cell(b: bool, yes: &str) -> (String, String) {
    (if b { yes } else { "" }.to_owned(), b.to_string())
}
