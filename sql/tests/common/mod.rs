//! ERP-shaped tables — customers, orders, order items, a data dictionary —
//! loaded into raiz and, row for row as SQL sees them, into plain SQLite
//! tables, so every query can be compared between the two.

#![allow(dead_code)]

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Date, Field, FieldType, Memo, Schema, TableOptions, Value};
use raiz_sql::value::{declared_type, memo, to_sql};
use raiz_sql::SqlValue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const CITIES: [&str; 6] = ["SAO PAULO", "RIO", "CURITIBA", "RECIFE", "MANAUS", "NATAL"];

/// The schema and indexes of each table.
pub fn tables() -> Vec<(&'static str, Schema, Vec<IndexDef>)> {
    vec![
        (
            "customers",
            Schema::new(vec![
                Field::new("CODE", FieldType::Char(6)),
                Field::new("NAME", FieldType::Char(30)),
                Field::new("CITY", FieldType::Char(20)),
                Field::new("CREDIT", FieldType::Numeric { len: 12, dec: 2 }),
                Field::new("SINCE", FieldType::Date),
                Field::new("ACTIVE", FieldType::Logical),
            ]),
            vec![
                IndexDef::new("code", vec![Segment::field("CODE")]).unique(),
                IndexDef::new("city", vec![Segment::field("CITY"), Segment::field("NAME")]),
            ],
        ),
        (
            "orders",
            Schema::new(vec![
                Field::new("NUM", FieldType::Int64),
                Field::new("CUST", FieldType::Char(6)),
                Field::new("ISSUED", FieldType::Date),
                Field::new("TOTAL", FieldType::Numeric { len: 14, dec: 2 }),
                Field::new("NOTE", FieldType::Memo),
            ]),
            vec![
                IndexDef::new("num", vec![Segment::field("NUM")]).unique(),
                IndexDef::new(
                    "cust",
                    vec![Segment::field("CUST"), Segment::field("ISSUED")],
                ),
            ],
        ),
        (
            "items",
            Schema::new(vec![
                Field::new("ORDNUM", FieldType::Int64),
                Field::new("LINE", FieldType::Int64),
                Field::new("PRODUCT", FieldType::Char(8)),
                Field::new("QTY", FieldType::Numeric { len: 9, dec: 3 }),
                Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
                Field::new("WEIGHT", FieldType::Float64),
            ]),
            vec![
                IndexDef::new(
                    "ordline",
                    vec![Segment::field("ORDNUM"), Segment::field("LINE")],
                )
                .unique(),
                IndexDef::new("product", vec![Segment::field("PRODUCT")]),
            ],
        ),
        (
            "sx3",
            Schema::new(vec![
                Field::new("ALIAS", FieldType::Char(3)),
                Field::new("FIELD", FieldType::Char(10)),
                Field::new("TITLE", FieldType::Char(30)),
                Field::new("KIND", FieldType::Char(1)),
                Field::new("SIZE", FieldType::Numeric { len: 3, dec: 0 }),
            ]),
            vec![IndexDef::new(
                "alias_field",
                vec![Segment::field("ALIAS"), Segment::field("FIELD")],
            )
            .unique()],
        ),
    ]
}

fn date(rng: &mut StdRng) -> Date {
    Date::ymd(
        2024 + rng.random_range(0..2),
        rng.random_range(1..=12),
        rng.random_range(1..=28),
    )
}

fn money(rng: &mut StdRng, max: i64) -> Value {
    Value::Numeric(raiz_engine::Decimal::new(
        i128::from(rng.random_range(0..max * 100)),
        2,
    ))
}

/// Records of every table, generated from `seed`; `scale` customers, about
/// 4× as many orders and 12× as many items.
pub fn generate(seed: u64, scale: usize) -> Vec<(&'static str, Vec<Vec<Value>>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut customers = Vec::new();
    for i in 0..scale {
        let name: String = (0..rng.random_range(3..12))
            .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
            .collect();
        let since = if rng.random_bool(0.1) {
            Date::EMPTY
        } else {
            date(&mut rng)
        };
        customers.push(vec![
            Value::from(format!("C{i:05}").as_str()),
            Value::from(name.as_str()),
            Value::from(CITIES[rng.random_range(0..CITIES.len())]),
            money(&mut rng, 50_000),
            Value::Date(since),
            Value::Logical(rng.random_bool(0.8)),
        ]);
    }
    let mut orders = Vec::new();
    let mut items = Vec::new();
    for num in 1..=(scale * 4) as i64 {
        let cust = format!("C{:05}", rng.random_range(0..scale));
        let note = match rng.random_range(0..4) {
            0 => Vec::new(),
            1 => b"urgent delivery".to_vec(),
            2 => format!("call before {num}").into_bytes(),
            _ => vec![0xff, 0x00, 0x41],
        };
        orders.push(vec![
            Value::Int64(num),
            Value::from(cust.as_str()),
            Value::Date(date(&mut rng)),
            money(&mut rng, 5_000),
            Value::Memo(Memo::Data(note)),
        ]);
        for line in 1..=rng.random_range(1..6) {
            items.push(vec![
                Value::Int64(num),
                Value::Int64(line),
                Value::from(format!("P{:04}", rng.random_range(0..200)).as_str()),
                Value::Numeric(raiz_engine::Decimal::new(
                    i128::from(rng.random_range(1..50_000)),
                    3,
                )),
                money(&mut rng, 900),
                Value::Float64(f64::from(rng.random_range(1..10_000)) / 7.0),
            ]);
        }
    }
    let mut sx3 = Vec::new();
    for alias in ["SA1", "SC5", "SC6", "SB1"] {
        for f in 0..25 {
            sx3.push(vec![
                Value::from(alias),
                Value::from(format!("{}_F{f:02}", &alias[1..]).as_str()),
                Value::from(format!("Field {f} of {alias}").as_str()),
                Value::from(["C", "N", "D", "L"][f % 4]),
                Value::Numeric(raiz_engine::Decimal::new(i128::from(f as i64 + 1), 0)),
            ]);
        }
    }
    vec![
        ("customers", customers),
        ("orders", orders),
        ("items", items),
        ("sx3", sx3),
    ]
}

/// Creates the tables in `db` and loads `data` in one transaction per
/// table; deletes every 13th record. Returns, per table, the recnos deleted.
pub fn load_raiz(db: &Database, data: &[(&str, Vec<Vec<Value>>)]) -> Vec<(String, Vec<u64>)> {
    let session = db.session();
    let mut deleted = Vec::new();
    for (name, schema, indexes) in tables() {
        db.create_table(name, &schema, TableOptions::default())
            .unwrap();
        let mut t = session.open_table(name).unwrap();
        for def in &indexes {
            t.create_index(def).unwrap();
        }
        let rows = &data.iter().find(|(n, _)| *n == name).unwrap().1;
        session.begin().unwrap();
        for r in rows {
            t.append(r).unwrap();
        }
        session.commit().unwrap();
        let gone: Vec<u64> = (1..=rows.len() as u64)
            .filter(|r| r.is_multiple_of(13))
            .collect();
        session.begin().unwrap();
        for &r in &gone {
            t.delete(r).unwrap();
        }
        session.commit().unwrap();
        deleted.push((name.to_owned(), gone));
    }
    deleted
}

/// The same live records in plain SQLite tables, typed and converted as
/// raiz's SQL gives them (recno kept as `recno`).
pub fn load_sqlite(data: &[(&str, Vec<Vec<Value>>)]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for (name, schema, _) in tables() {
        let mut cols: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\" {}", f.name, declared_type(&f.ty)))
            .collect();
        cols.push("recno BIGINT".into());
        conn.execute_batch(&format!("CREATE TABLE \"{name}\"({})", cols.join(", ")))
            .unwrap();
        let rows = &data.iter().find(|(n, _)| *n == name).unwrap().1;
        let marks = vec!["?"; cols.len()].join(", ");
        let mut stmt = conn
            .prepare(&format!("INSERT INTO \"{name}\" VALUES ({marks})"))
            .unwrap();
        for (i, r) in rows.iter().enumerate() {
            let recno = i as u64 + 1;
            if recno.is_multiple_of(13) {
                continue;
            }
            let mut vals: Vec<SqlValue> = r
                .iter()
                .map(|v| match v {
                    Value::Memo(Memo::Data(d)) => memo(d.clone()),
                    v => to_sql(v),
                })
                .collect();
            vals.push(SqlValue::Integer(recno as i64));
            stmt.execute(rusqlite::params_from_iter(vals.iter()))
                .unwrap();
        }
    }
    conn
}

/// Every row of `sql` run on a plain SQLite connection.
pub fn sqlite_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[SqlValue],
) -> Vec<Vec<SqlValue>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push(
            (0..n)
                .map(|i| SqlValue::from(row.get_ref(i).unwrap()))
                .collect(),
        );
    }
    out
}

/// A seed from `RAIZ_SQL_SEED` or the clock, printed so a failure can be
/// repeated.
pub fn seed() -> u64 {
    let seed = std::env::var("RAIZ_SQL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("RAIZ_SQL_SEED={seed}");
    seed
}
