//! Shared helpers for the raiz benchmarks (tables of records of a chosen size),
//! and the side-by-side comparison with peer engines ([`compare`]).

pub mod compare;

use raiz_engine::{Field, FieldType, Memo, RecordFormat, Schema, Value};

/// A schema whose encoded records are about `size` bytes: an Int64 key, a
/// Numeric, a Date and a Char filling the rest (plus a Memo when `memo`).
pub fn schema(size: usize, memo: bool) -> Schema {
    let mut fields = vec![
        Field::new("ID", FieldType::Int64),
        Field::new("AMOUNT", FieldType::Numeric { len: 14, dec: 2 }),
        Field::new("DAY", FieldType::Date),
        Field::new(
            "TEXT",
            FieldType::Char(size.saturating_sub(20).max(1) as u32),
        ),
    ];
    if memo {
        fields.push(Field::new("NOTES", FieldType::Memo));
    }
    Schema::new(fields)
}

/// A record of `schema(size, memo)`. Variable tables store the text trimmed, so
/// it is filled to keep both formats at the same size.
pub fn row(i: u64, size: usize, memo: Option<&[u8]>) -> Vec<Value> {
    let width = size.saturating_sub(20).max(1);
    let text: String = std::iter::repeat_n((b'a' + (i % 26) as u8) as char, width).collect();
    let mut v = vec![
        Value::Int64(i as i64),
        Value::Numeric(raiz_engine::Decimal::new(i as i128 * 101, 2)),
        Value::Date(raiz_engine::Date::ymd(
            2026,
            1 + (i % 12) as u8,
            1 + (i % 28) as u8,
        )),
        Value::Char(text),
    ];
    if let Some(m) = memo {
        v.push(Value::Memo(Memo::Data(m.to_vec())));
    }
    v
}

/// Creates an unlogged table `name` and opens it.
pub fn unlogged_table(
    db: &raiz_engine::Database,
    name: &str,
    schema: &Schema,
    format: RecordFormat,
) -> raiz_engine::Table {
    db.create_table(
        name,
        schema,
        raiz_engine::TableOptions::default()
            .durability(raiz_engine::Durability::Unlogged)
            .format(format),
    )
    .expect("create the benchmark table");
    db.session()
        .open_table(name)
        .expect("open the benchmark table")
}

/// Appends `rows` and flushes; the time it took.
pub fn timed_appends(t: &mut raiz_engine::Table, rows: &[Vec<Value>]) -> std::time::Duration {
    let start = std::time::Instant::now();
    for r in rows {
        t.append(r).expect("append");
    }
    t.flush().expect("flush");
    start.elapsed()
}

/// Name used in benchmark ids.
pub fn format_name(f: RecordFormat) -> &'static str {
    match f {
        RecordFormat::Fixed => "fixed",
        RecordFormat::Variable => "variable",
    }
}

/// A small, fast, deterministic generator for benchmark access patterns.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// Next value in `1..=n`.
    pub fn next_in(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n + 1
    }
}
