use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Durability, Field, FieldType, Options, Schema, TableOptions, Value};
use std::time::Instant;

fn key(i: u64) -> Vec<u8> {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = x.to_be_bytes().to_vec();
    k.extend_from_slice(&i.to_be_bytes());
    k.extend_from_slice(&[7u8; 8]);
    k
}

fn main() {
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let what = std::env::var("WHAT").unwrap_or_else(|_| "all".into());
    let dir = std::path::Path::new("/tmp/prof_read_db");
    let fresh = !dir.exists();
    let db = Database::open_with(dir, Options::default().pool_bytes(512 << 20)).unwrap();
    if fresh {
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
        let t0 = Instant::now();
        s.begin().unwrap();
        for i in 0..n {
            t.append(&[
                Value::Binary(key(i)),
                Value::Binary(vec![(i % 251) as u8; 150]),
            ])
            .unwrap();
        }
        s.commit().unwrap();
        println!("load: {:.0}/s", n as f64 / t0.elapsed().as_secs_f64());
        t.flush().unwrap();
    }
    let s = db.session();
    let mut t = s.open_table("kv").unwrap();
    t.set_order(Some("key")).unwrap();
    // warm
    let mut m = t.first().unwrap();
    while m {
        std::hint::black_box(t.record().unwrap());
        m = t.next().unwrap();
    }
    for round in 0..3 {
        if what == "all" || what == "get" {
            let t0 = Instant::now();
            let reads = 1_000_000u64;
            for j in 0..reads {
                let i = (j.wrapping_mul(7919) + round) % n;
                assert!(t.seek(&[Value::Binary(key(i))]).unwrap());
                std::hint::black_box(t.record().unwrap());
            }
            let d = t0.elapsed();
            println!("get: {:.0}/s", reads as f64 / d.as_secs_f64());
        }
        if what == "all" || what == "scan" {
            let t0 = Instant::now();
            let mut c = 0u64;
            let mut m = t.first().unwrap();
            while m {
                std::hint::black_box(t.record().unwrap());
                c += 1;
                m = t.next().unwrap();
            }
            let d = t0.elapsed();
            println!("scan: {:.0}/s", c as f64 / d.as_secs_f64());
        }
        if what == "all" || what == "range" {
            let t0 = Instant::now();
            let reads = 200_000u64;
            for j in 0..reads {
                let i = (j.wrapping_mul(7919) + round) % n;
                let mut more = t.seek_soft(&[Value::Binary(key(i))]).unwrap() || !t.eof();
                let mut c = 0;
                while more && c < 10 {
                    std::hint::black_box(t.record().unwrap());
                    c += 1;
                    more = c < 10 && t.next().unwrap();
                }
            }
            let d = t0.elapsed();
            println!("range10: {:.0}/s", reads as f64 / d.as_secs_f64());
        }
    }
}
