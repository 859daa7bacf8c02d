use raiz_engine::{Database, Options, Value};
use std::time::Instant;

fn key(i: u64) -> Vec<u8> {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = x.to_be_bytes().to_vec();
    k.extend_from_slice(&i.to_be_bytes());
    k.extend_from_slice(&[7u8; 8]);
    k
}

fn main() {
    let dir = std::path::Path::new("/tmp/prof_read_db");
    let db = Database::open_with(dir, Options::default().pool_bytes(512 << 20)).unwrap();
    let s = db.session();
    let mut t = s.open_table("kv").unwrap();
    t.set_order(Some("key")).unwrap();
    let mut m = t.first().unwrap();
    while m {
        std::hint::black_box(t.record().unwrap());
        m = t.next().unwrap();
    }
    let t0 = Instant::now();
    s.begin().unwrap();
    let n = 500_000u64;
    for i in 0..n {
        if t.seek(&[Value::Binary(key(i * 2))]).unwrap() {
            let r = t.recno();
            t.delete(r).unwrap();
        }
    }
    let t1 = Instant::now();
    s.commit().unwrap();
    let d = t0.elapsed();
    println!(
        "remove: {:.0}/s (txn {:?}, commit {:?})",
        n as f64 / d.as_secs_f64(),
        t1 - t0,
        t1.elapsed()
    );
}
