use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Durability, Field, FieldType, Options, Schema, TableOptions, Value};
use std::time::Instant;

fn main() {
    let threads: u64 = std::env::var("T")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40000);
    let dir = tempfile::tempdir_in("/work/tmp").unwrap_or_else(|_| tempfile::tempdir().unwrap());
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
    {
        let s = db.session();
        let mut t = s.open_table("kv").unwrap();
        t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())
            .unwrap();
    }
    let a = db.log_end();
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for th in 0..threads {
            let db = &db;
            sc.spawn(move || {
                let s = db.session();
                let mut t = s.open_table("kv").unwrap();
                for i in 0..n / threads {
                    let x = (th * 1_000_000 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut k = x.to_be_bytes().to_vec();
                    k.extend_from_slice(&x.rotate_left(17).to_le_bytes());
                    k.extend_from_slice(&x.rotate_left(33).to_le_bytes());
                    t.append(&[Value::Binary(k), Value::Binary(vec![(i % 251) as u8; 150])])
                        .unwrap();
                }
            });
        }
    });
    let d = t0.elapsed();
    println!(
        "{threads} threads: {:.0} commits/s, {:.0} log bytes/commit",
        n as f64 / d.as_secs_f64(),
        (db.log_end() - a) as f64 / n as f64
    );
}
