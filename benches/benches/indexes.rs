//! Index work on a large table: random exact seek, seek then skip 10, append with
//! three indexes, full ordered scan, and the bulk build of an index.
//!
//! `cargo bench -p raiz-benches --bench indexes` (RAIZ_BENCH_ROWS sets the table
//! size, default 1,000,000).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raiz_benches::{timed_appends, unlogged_table, XorShift};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Field, FieldType, Options, RecordFormat, Schema, Table, TableOptions, Value,
};

fn rows() -> u64 {
    std::env::var("RAIZ_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(12)),
        Field::new("GRP", FieldType::Int64),
        Field::new("NAME", FieldType::Char(40)),
        Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
        Field::new("FILL", FieldType::Char(40)),
    ])
}

fn code(i: u64) -> String {
    // Scrambled so that appends do not arrive in key order.
    format!(
        "K{:011}",
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 100_000_000_000
    )
}

fn row(i: u64) -> Vec<Value> {
    vec![
        Value::from(code(i).as_str()),
        Value::Int64((i % 997) as i64),
        Value::from(format!("name {:08}", i.wrapping_mul(31) % 10_000_000).as_str()),
        Value::Numeric(raiz_engine::Decimal::new(
            i128::from((i % 100_000) as u32),
            2,
        )),
        Value::from("fill"),
    ]
}

fn three_indexes(t: &mut Table) {
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "by_grp",
        vec![Segment::field("GRP"), Segment::field("PRICE").descending()],
    ))
    .unwrap();
    t.create_index(&IndexDef::new(
        "by_name",
        vec![Segment::field("NAME").upper()],
    ))
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let n = rows();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(dir.path(), Options::default().pool_bytes(256 << 20)).unwrap();
    db.create_table(
        "big",
        &schema(),
        TableOptions::default().durability(raiz_engine::Durability::Unlogged),
    )
    .unwrap();
    let mut t = db.session().open_table("big").unwrap();
    let started = Instant::now();
    for i in 0..n {
        t.append(&row(i)).unwrap();
    }
    t.flush().unwrap();
    eprintln!(
        "loaded {n} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.set_order(Some("by_code")).unwrap();

    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(1));
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    g.bench_function("random_exact_seek", |b| {
        b.iter(|| {
            let i = rng.next_in(n) - 1;
            assert!(t.seek(&[Value::from(code(i).as_str())]).unwrap());
            t.record().unwrap()
        })
    });
    g.bench_function("seek_then_skip_10", |b| {
        b.iter(|| {
            let i = rng.next_in(n) - 1;
            t.seek(&[Value::from(code(i).as_str())]).unwrap();
            for _ in 0..10 {
                if !t.next().unwrap() {
                    break;
                }
                t.record().unwrap();
            }
        })
    });
    g.bench_function("range_iterator_take_10", |b| {
        b.iter(|| {
            let i = rng.next_in(n) - 1;
            let from = [Value::from(code(i).as_str())];
            let mut seen = 0;
            for r in t.range(Some(&from), None).unwrap().take(10) {
                r.unwrap();
                seen += 1;
            }
            seen
        })
    });
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("full_range_iterator_scan", |b| {
        b.iter(|| {
            let mut seen = 0u64;
            for r in t.range(None, None).unwrap() {
                r.unwrap();
                seen += 1;
            }
            assert_eq!(seen, n);
        })
    });
    g.bench_function("full_ordered_scan", |b| {
        b.iter(|| {
            let mut seen = 0u64;
            let mut ok = t.first().unwrap();
            while ok {
                t.record().unwrap();
                seen += 1;
                ok = t.next().unwrap();
            }
            assert_eq!(seen, n);
        })
    });
    g.bench_function("bulk_build_unique_index", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                t.create_index(&IndexDef::new(
                    "by_name",
                    vec![Segment::field("NAME").upper()],
                ))
                .unwrap();
                total += start.elapsed();
                t.drop_index("by_name").unwrap();
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("index_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_with_3_indexes", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let db =
                Database::open_with(dir.path(), Options::default().pool_bytes(256 << 20)).unwrap();
            let mut t = unlogged_table(&db, "a", &schema(), RecordFormat::Fixed);
            three_indexes(&mut t);
            let rows: Vec<_> = (0..iters).map(row).collect();
            timed_appends(&mut t, &rows)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    targets = bench
}
criterion_main!(benches);
