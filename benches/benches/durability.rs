//! Durable commits and the machine's fsync rate, measured in the same run;
//! unlogged appends; recovery time for a large log.
//!
//! `cargo bench -p raiz-benches --bench durability`
//! (`RAIZ_BENCH_LOG_MB` sets the log size for the recovery figure, default 1024.)

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use raiz_benches::{row, schema, timed_appends, unlogged_table};
use raiz_engine::{Database, LogOptions, Memo, Options, RecordFormat, TableOptions, Value};

fn fsync_rate(c: &mut Criterion) {
    let mut g = c.benchmark_group("machine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fdatasync_after_512B_append", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("f")).unwrap();
        let buf = [7u8; 512];
        b.iter(|| {
            f.write_all(&buf).unwrap();
            f.sync_data().unwrap();
        })
    });
    g.bench_function("fdatasync_after_512B_overwrite", |b| {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("f")).unwrap();
        f.set_len(64 << 20).unwrap();
        f.sync_all().unwrap();
        let buf = [7u8; 512];
        let mut off = 0u64;
        b.iter(|| {
            f.write_all_at(&buf, off).unwrap();
            off = (off + 512) % (64 << 20);
            f.sync_data().unwrap();
        })
    });
    g.finish();
}

fn commits(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_commit");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 4, 16] {
        g.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let db = Database::open(dir.path()).unwrap();
                db.create_table("t", &schema(100, false), TableOptions::default())
                    .unwrap();
                let per = (iters as usize).div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for w in 0..threads {
                        let db = db.clone();
                        s.spawn(move || {
                            let mut t = db.session().open_table("t").unwrap();
                            for i in 0..per {
                                t.append(&row((w * per + i) as u64, 100, None)).unwrap();
                            }
                        });
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * threads) as f64)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("unlogged_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("autocommit_100B", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::open(dir.path()).unwrap();
            let mut t = unlogged_table(&db, "u", &schema(100, false), RecordFormat::Fixed);
            let rows: Vec<_> = (0..iters).map(|i| row(i, 100, None)).collect();
            timed_appends(&mut t, &rows)
        })
    });
    g.finish();
}

/// Builds a log of about `mb` MiB of committed transactions, then times the
/// recovery that replays it.
fn recovery(mb: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = LogOptions {
        checkpoint_bytes: u64::MAX,
        checkpoint_interval: Duration::from_secs(86_400),
        ..LogOptions::default()
    };
    let opts = || Options::default().log(log).pool_bytes(256 << 20);
    let started = Instant::now();
    {
        let db = Database::open_with(dir.path(), opts()).unwrap();
        db.create_table("r", &schema(200, true), TableOptions::default())
            .unwrap();
        let s = db.session();
        let mut t = s.open_table("r").unwrap();
        let memo = vec![b'm'; 2000];
        let wal = dir.path().join("raiz.wal");
        let size = || -> u64 {
            std::fs::read_dir(&wal)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        let mut i = 0u64;
        while size() < mb << 20 {
            s.begin().unwrap();
            for _ in 0..500 {
                let mut v = row(i, 200, None);
                v.push(Value::Memo(Memo::Data(memo.clone())));
                t.append(&v).unwrap();
                i += 1;
            }
            s.commit().unwrap();
        }
        eprintln!(
            "built a {} MiB log ({i} records) in {:.1} s",
            size() >> 20,
            started.elapsed().as_secs_f64()
        );
        // The process "dies": no close, no checkpoint. What it left on disk is
        // copied aside (this process still holds the rootpath's owner lock).
        std::mem::forget(t);
        std::mem::forget(s);
        std::mem::forget(db);
    }
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let started = Instant::now();
    let db = Database::open_with(crashed.path(), opts()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let r = db.recovery();
    println!(
        "recovery: {} MiB of log, {} commits, {} pages replayed in {secs:.2} s ({:.0} MiB/s)",
        r.bytes >> 20,
        r.commits,
        r.pages,
        (r.bytes >> 20) as f64 / secs
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "raiz.owner" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    fsync_rate(&mut c);
    commits(&mut c);
    c.final_summary();
    let mb = std::env::var("RAIZ_BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    if std::env::args().any(|a| a == "--bench") {
        recovery(mb);
    }
}
