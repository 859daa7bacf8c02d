//! Record append, read-by-recno and memo read, on real files, with tables larger
//! than the buffer pool.
//!
//! `cargo bench -p raiz-benches --bench records`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raiz_benches::{format_name, row, schema, timed_appends, unlogged_table, XorShift};
use raiz_engine::{Database, Options, RecordFormat, TableOptions};

/// The pool is kept far smaller than the tables so reads and appends hit the disk
/// path (through the OS page cache).
const POOL: usize = 2 << 20;
/// Tables for the read benchmarks hold about this many bytes (10× the pool).
const READ_BYTES: usize = 20 << 20;

fn open(dir: &std::path::Path) -> Database {
    Database::open_with(dir, Options::default().pool_bytes(POOL)).unwrap()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    for size in [100usize, 1024] {
        for format in [RecordFormat::Fixed, RecordFormat::Variable] {
            let id = BenchmarkId::new(format_name(format), size);
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir().unwrap();
                    let db = open(dir.path());
                    let mut t = unlogged_table(&db, "t", &schema(size, false), format);
                    let rows: Vec<_> = (0..iters).map(|i| row(i, size, None)).collect();
                    timed_appends(&mut t, &rows)
                })
            });
        }
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_by_recno");
    g.throughput(Throughput::Elements(1));
    for size in [100usize, 1024] {
        for format in [RecordFormat::Fixed, RecordFormat::Variable] {
            let dir = tempfile::tempdir().unwrap();
            let db = open(dir.path());
            let mut t = unlogged_table(&db, "t", &schema(size, false), format);
            let rows = (READ_BYTES / size) as u64;
            for i in 0..rows {
                t.append(&row(i, size, None)).unwrap();
            }
            t.flush().unwrap();
            let info = t.info();
            let bytes = (info.data_pages + info.blob_pages) * u64::from(info.page_size);
            assert!(
                bytes > 2 * POOL as u64,
                "table must exceed the pool: {bytes}"
            );
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            g.bench_function(BenchmarkId::new(format_name(format), size), |b| {
                b.iter(|| t.read(rng.next_in(rows)).unwrap())
            });
        }
    }
    g.finish();
}

fn memo(c: &mut Criterion) {
    let mut g = c.benchmark_group("memo_read");
    g.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for memo_len in [256usize, 4096, 65536] {
        let name = format!("m{memo_len}");
        db.create_table(
            &name,
            &schema(100, true),
            TableOptions::default().durability(raiz_engine::Durability::Unlogged),
        )
        .unwrap();
        let mut t = db.session().open_table(&name).unwrap();
        let body = vec![b'x'; memo_len];
        let n = (8 * POOL / memo_len).max(2000) as u64;
        for i in 0..n {
            t.append(&row(i, 100, Some(&body))).unwrap();
        }
        t.flush().unwrap();
        let mut rng = XorShift(7);
        g.bench_function(BenchmarkId::new("record_only", memo_len), |b| {
            b.iter(|| t.read(rng.next_in(n)).unwrap())
        });
        g.bench_function(BenchmarkId::new("record_and_memo", memo_len), |b| {
            b.iter(|| {
                let r = rng.next_in(n);
                t.read(r).unwrap();
                t.read_memo(r, "NOTES").unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = append, read, memo
}
criterion_main!(benches);
