use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Durability, Field, FieldType, Options, Schema, TableOptions, Value};
use std::collections::BTreeMap;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(dir.path(), Options::default().pool_bytes(256 << 20)).unwrap();
    let schema = Schema::new(vec![
        Field::new("KEY", FieldType::Binary(24)),
        Field::new("VAL", FieldType::Binary(150)),
    ]);
    db.create_table(
        "kv",
        &schema,
        TableOptions::default().durability(Durability::Logged),
    )
    .unwrap();
    let s = db.session();
    let mut t = s.open_table("kv").unwrap();
    t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())
        .unwrap();
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20000);
    let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
    let start = db.log_end();
    for i in 0..n {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut k = x.to_be_bytes().to_vec();
        k.extend_from_slice(&[1u8; 16]);
        let a = db.log_end();
        t.append(&[Value::Binary(k), Value::Binary(vec![3u8; 150])])
            .unwrap();
        let b = db.log_end();
        *hist.entry((b - a).div_ceil(1024)).or_default() += 1;
    }
    println!("avg {:.0}", (db.log_end() - start) as f64 / n as f64);
    for (k, v) in hist {
        println!("<= {k} KiB: {v}");
    }
}
