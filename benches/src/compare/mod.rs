//! The side-by-side comparison: every workload on every engine in one run,
//! written as a markdown table (absolute figures and each engine's ratio to
//! the best) and as JSON.
//!
//! Records are a 24-byte random key and a 150-byte value (the shape of the
//! published redb comparison); raiz stores them in a fixed-length table with a
//! unique index on the key. Every engine gets the same cache budget and its
//! documented durable setting for the durable rows (see [`engines`]).

pub mod cache;
pub mod cluster;
pub mod data;
pub mod engines;
pub mod machine;
pub mod report;
pub mod server;

use std::time::{Duration, Instant};

use data::{Dataset, IsamRow, Row};
use report::{Better, Report};

/// Boxed errors: the harness reports and stops on the first failure.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Counts and budgets of a run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Records loaded.
    pub records: usize,
    /// Individual durable commits.
    pub commits: usize,
    /// Batches of `batch` records.
    pub batches: usize,
    /// Records per batch.
    pub batch: usize,
    /// Point reads and range reads.
    pub reads: usize,
    /// Commits per thread count in the group-commit rows.
    pub group_commits: usize,
    /// Records of the ISAM rows.
    pub isam_records: usize,
    /// Cache budget given to every engine.
    pub cache_bytes: usize,
    /// Seconds per server rate.
    pub server_secs: f64,
    /// Records of the remote scan.
    pub scan_records: usize,
}

impl Spec {
    /// The published run.
    pub fn full(records: usize) -> Spec {
        Spec {
            records,
            commits: 1000,
            batches: 100,
            batch: 1000,
            reads: records.min(1_000_000),
            group_commits: 2000,
            isam_records: (records / 5).max(1000),
            cache_bytes: 256 << 20,
            server_secs: 3.0,
            scan_records: 20_000,
        }
    }

    /// Tiny counts, for CI: proves the harness runs, measures nothing.
    pub fn quick() -> Spec {
        Spec {
            records: 2000,
            commits: 20,
            batches: 3,
            batch: 100,
            reads: 2000,
            group_commits: 40,
            isam_records: 500,
            cache_bytes: 16 << 20,
            server_secs: 0.3,
            scan_records: 2000,
        }
    }
}

/// What every embedded engine does. Methods take `&self`: the 2-thread read
/// and group-commit rows call them from several threads at once.
pub trait Engine: Send + Sync {
    /// Loads rows in one transaction.
    fn load(&self, rows: &[Row]) -> Result<()>;
    /// Inserts rows in one durable transaction (a single row: one commit).
    fn commit(&self, rows: &[Row]) -> Result<()>;
    /// Reads the value of a key; false when absent.
    fn get(&self, key: &[u8]) -> Result<bool>;
    /// Seeks the first key ≥ `key` and reads it and the next 9 (10 records).
    fn range10(&self, key: &[u8]) -> Result<usize>;
    /// Reads every record in key order; returns the count.
    fn scan(&self) -> Result<usize>;
    /// Removes keys in one transaction.
    fn remove(&self, keys: &[[u8; 24]]) -> Result<()>;
    /// Compacts the files; false when the engine has no compaction.
    fn compact(&self) -> Result<bool>;
    /// Bytes on disk.
    fn size(&self) -> Result<u64>;
    /// ISAM: appends rows with a unique key and two secondary indexes (peers
    /// write the index entries in the same transaction), durably, in one
    /// transaction per call.
    fn isam_append(&self, rows: &[IsamRow]) -> Result<()>;
    /// ISAM: seeks the first row with this (group, day) on the second index
    /// and reads it; false when none.
    fn isam_seek(&self, group: &[u8; 8], day: u32) -> Result<bool>;
    /// False for an engine that cannot commit durably (raiz unlogged).
    fn durable(&self) -> bool {
        true
    }
    /// Bytes written to the engine's log so far, where it can tell.
    fn log_end(&self) -> Option<u64> {
        None
    }
}

/// An engine under test: how to create one in a directory.
pub struct Contender {
    /// Name in the table.
    pub name: &'static str,
    /// Opens a fresh instance in `dir` with `cache` bytes of cache.
    pub open: fn(&std::path::Path, usize) -> Result<Box<dyn Engine>>,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let start = Instant::now();
    let v = f()?;
    Ok((v, start.elapsed()))
}

const MIB: f64 = 1048576.0;

/// Runs every embedded workload on one engine, adding its figures to `report`.
pub fn run_engine(c: &Contender, spec: &Spec, data: &Dataset, report: &mut Report) -> Result<()> {
    let name = c.name;
    let progress = |w: &str| tracing::info!(engine = name, workload = w, "running");
    let dir = tempfile::tempdir()?;
    let e = (c.open)(dir.path(), spec.cache_bytes)?;
    progress("bulk load");
    let ((), d) = timed(|| e.load(&data.rows))?;
    report.add(
        "bulk load, one transaction",
        "records/s",
        Better::Higher,
        name,
        rate(data.rows.len(), d),
    );
    report.add(
        "file size after load",
        "MiB",
        Better::Lower,
        name,
        e.size()? as f64 / MIB,
    );

    progress("point reads");
    let ((), d) = timed(|| {
        for k in &data.probe {
            if !e.get(k)? {
                return Err("a loaded key was not found".into());
            }
        }
        Ok(())
    })?;
    report.add(
        "random point reads",
        "reads/s",
        Better::Higher,
        name,
        rate(data.probe.len(), d),
    );

    progress("range reads");
    let (n, d) = timed(|| {
        let mut n = 0;
        for k in data.probe.iter().take(spec.reads / 4) {
            n += e.range10(k)?;
        }
        Ok(n)
    })?;
    if n < (spec.reads / 4) * 9 {
        return Err(format!("range reads returned {n} records").into());
    }
    report.add(
        "seek + read the next 10 (range of 10)",
        "ranges/s",
        Better::Higher,
        name,
        rate(spec.reads / 4, d),
    );

    progress("scan");
    let (n, d) = timed(|| e.scan())?;
    if n != data.rows.len() {
        return Err(format!("scan saw {n} of {} records", data.rows.len()).into());
    }
    report.add(
        "full ordered scan",
        "records/s",
        Better::Higher,
        name,
        rate(n, d),
    );

    progress("2-thread reads");
    let ((), d) = timed(|| {
        std::thread::scope(|s| {
            let half = data.probe.len() / 2;
            let hs: Vec<_> = [&data.probe[..half], &data.probe[half..]]
                .into_iter()
                .map(|keys| {
                    let e = &e;
                    s.spawn(move || -> Result<()> {
                        for k in keys {
                            e.get(k)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().map_err(|_| "reader panicked")??;
            }
            Ok(())
        })
    })?;
    report.add(
        "random point reads, 2 threads",
        "reads/s",
        Better::Higher,
        name,
        rate(data.probe.len(), d),
    );

    if e.durable() {
        progress("individual commits");
        let ((), d) = timed(|| {
            for r in &data.extra[..spec.commits] {
                e.commit(std::slice::from_ref(r))?;
            }
            Ok(())
        })?;
        report.add(
            "individual durable commits of 1 record",
            "commits/s",
            Better::Higher,
            name,
            rate(spec.commits, d),
        );
        progress("batches");
        let rows = &data.extra[spec.commits..spec.commits + spec.batches * spec.batch];
        let ((), d) = timed(|| {
            for chunk in rows.chunks(spec.batch) {
                e.commit(chunk)?;
            }
            Ok(())
        })?;
        report.add(
            &format!("{} durable batches of {}", spec.batches, spec.batch),
            "records/s",
            Better::Higher,
            name,
            rate(rows.len(), d),
        );
    } else {
        for w in [
            "individual durable commits of 1 record".to_owned(),
            format!("{} durable batches of {}", spec.batches, spec.batch),
        ] {
            report.na(&w, name, "no durable commit");
        }
    }

    progress("remove half");
    let keys: Vec<[u8; 24]> = data.rows.iter().step_by(2).map(|r| r.key).collect();
    let ((), d) = timed(|| e.remove(&keys))?;
    report.add(
        "remove half, one transaction",
        "records/s",
        Better::Higher,
        name,
        rate(keys.len(), d),
    );
    report.add(
        "file size after removals",
        "MiB",
        Better::Lower,
        name,
        e.size()? as f64 / MIB,
    );
    progress("compact");
    if e.compact()? {
        report.add(
            "file size after compaction",
            "MiB",
            Better::Lower,
            name,
            e.size()? as f64 / MIB,
        );
    } else {
        report.na("file size after compaction", name, "no compaction");
    }
    if !e.get(&data.rows[1].key)? || e.get(&data.rows[0].key)? {
        return Err("wrong records after removal and compaction".into());
    }
    drop(e);

    // Group commit on a fresh instance.
    let dir = tempfile::tempdir()?;
    let e = (c.open)(dir.path(), spec.cache_bytes)?;
    for threads in [1usize, 4, 16] {
        let w = format!("durable 1-record commits, {threads} thread(s)");
        if !e.durable() {
            report.na(&w, name, "no durable commit");
            continue;
        }
        progress(&w);
        let log_before = e.log_end();
        let per = spec.group_commits / threads;
        let base = match threads {
            1 => 0,
            4 => spec.group_commits,
            _ => 2 * spec.group_commits,
        };
        let ((), d) = timed(|| {
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        let e = &e;
                        let rows = &data.group[base + t * per..base + (t + 1) * per];
                        s.spawn(move || -> Result<()> {
                            for r in rows {
                                e.commit(std::slice::from_ref(r))?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().map_err(|_| "committer panicked")??;
                }
                Ok(())
            })
        })?;
        report.add(
            &w,
            "commits/s",
            Better::Higher,
            name,
            rate(per * threads, d),
        );
        if let (Some(a), Some(b)) = (log_before, e.log_end()) {
            report.add(
                &format!("log bytes per 1-record commit, {threads} thread(s)"),
                "bytes",
                Better::Lower,
                name,
                (b - a) as f64 / (per * threads) as f64,
            );
        }
    }
    drop(e);

    // ISAM rows on a fresh instance.
    let dir = tempfile::tempdir()?;
    let e = (c.open)(dir.path(), spec.cache_bytes)?;
    progress("isam append");
    let ((), d) = timed(|| {
        for chunk in data.isam.chunks(1000) {
            e.isam_append(chunk)?;
        }
        Ok(())
    })?;
    report.add(
        "ISAM: append with 3 indexes (transactions of 1,000)",
        "records/s",
        Better::Higher,
        name,
        rate(data.isam.len(), d),
    );
    progress("isam seek");
    let ((), d) = timed(|| {
        for r in data.isam.iter().step_by(3) {
            if !e.isam_seek(&r.group, r.day)? {
                return Err("an ISAM key was not found on the second index".into());
            }
        }
        Ok(())
    })?;
    report.add(
        "ISAM: seek on the 2nd index + read the record",
        "seeks/s",
        Better::Higher,
        name,
        rate(data.isam.len().div_ceil(3), d),
    );
    Ok(())
}
