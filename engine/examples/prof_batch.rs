use raiz_engine::{Database, Options, Value};
use std::time::Instant;

fn main() {
    let dir = std::path::Path::new("/tmp/prof_read_db");
    let db = Database::open_with(dir, Options::default().pool_bytes(512 << 20)).unwrap();
    let s = db.session();
    let mut t = s.open_table("kv").unwrap();
    let base: u64 = std::env::var("BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    // warm the pool
    t.set_order(Some("key")).unwrap();
    let mut m = t.first().unwrap();
    while m {
        std::hint::black_box(t.record().unwrap());
        m = t.next().unwrap();
    }
    let a = db.log_end();
    let t0 = Instant::now();
    for b in 0..100u64 {
        s.begin().unwrap();
        for i in 0..1000u64 {
            let x = (base + b * 1000 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut k = x.to_be_bytes().to_vec();
            k.extend_from_slice(&x.rotate_left(17).to_le_bytes());
            k.extend_from_slice(&x.rotate_left(33).to_le_bytes());
            t.append(&[Value::Binary(k), Value::Binary(vec![(i % 251) as u8; 150])])
                .unwrap();
        }
        s.commit().unwrap();
    }
    let d = t0.elapsed();
    println!(
        "batches: {:.0} records/s, {:.0} log bytes/batch",
        100_000.0 / d.as_secs_f64(),
        (db.log_end() - a) as f64 / 100.0
    );
}
