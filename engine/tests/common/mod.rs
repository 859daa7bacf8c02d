//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use raiz_engine::storage::{FaultStorage, MemoryStorage, Storage};
use raiz_engine::{Database, Date, Field, FieldType, Memo, Options, Schema, Value};

/// A schema with every field type.
pub fn all_types() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(8)),
        Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
        Field::new("WIDE", FieldType::Numeric { len: 30, dec: 6 }),
        Field::new("DAY", FieldType::Date),
        Field::new("ACTIVE", FieldType::Logical),
        Field::new("NOTES", FieldType::Memo),
        Field::new("QTY", FieldType::Int64),
        Field::new("RATIO", FieldType::Float64),
        Field::new("RAW", FieldType::Binary(6)),
    ])
}

/// A record for [`all_types`] derived from `i`.
pub fn all_types_row(i: u64, memo: Option<Vec<u8>>) -> Vec<Value> {
    vec![
        Value::from(format!("C{i:06}").as_str()),
        Value::Numeric(raiz_engine::Decimal::new(i as i128 * 7 - 500, 2)),
        Value::Numeric(raiz_engine::Decimal::new(-(i as i128) * 1_000_001, 6)),
        Value::Date(Date::ymd(
            2000 + (i % 30) as u16,
            (i % 12 + 1) as u8,
            (i % 28 + 1) as u8,
        )),
        Value::Logical(i.is_multiple_of(3)),
        Value::Memo(memo.map_or(Memo::Empty, Memo::Data)),
        Value::Int64(i as i64 - 1000),
        Value::Float64(i as f64 / 3.0),
        Value::Binary(vec![i as u8; (i % 7) as usize]),
    ]
}

/// A database in memory with a small pool.
pub fn mem_db(pool: usize) -> (MemoryStorage, Database) {
    let s = MemoryStorage::new();
    let db = open_on(Arc::new(s.clone()), pool);
    (s, db)
}

/// Opens `/root` on `storage`.
pub fn open_on(storage: Arc<dyn Storage>, pool: usize) -> Database {
    Database::open_with(
        "/root",
        Options::default().storage(storage).pool_bytes(pool),
    )
    .expect("open")
}

/// A fault-injecting storage and a database on it.
pub fn fault_db(pool: usize) -> (FaultStorage, Database) {
    let s = FaultStorage::new();
    let db = open_on(Arc::new(s.clone()), pool);
    (s, db)
}

/// Char values are read back blank-padded to the field width.
pub fn pad(s: &str, n: usize) -> Value {
    Value::Char(format!("{s:<n$}"))
}
