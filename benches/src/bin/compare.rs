//! The comparison harness: every workload on every engine in one run.
//!
//! ```sh
//! bash benches/compare.sh                      # installs PostgreSQL if missing, then the default run
//! cargo run --profile bench -p raiz-benches --bin compare -- [--records N] [--out BENCHMARKS.md] [--json benches/results.json]
//! cargo run --profile bench -p raiz-benches --bin compare -- --quick   # tiny counts, nothing published (CI)
//! ```

use std::path::PathBuf;
use std::time::Instant;

use raiz_benches::compare::report::{Cell, Report};
use raiz_benches::compare::{self, data::Dataset, engines, machine, run_engine, server, Spec};

struct Args {
    quick: bool,
    records: usize,
    out: Option<PathBuf>,
    json: Option<PathBuf>,
    server: bool,
    cache: bool,
    cluster: bool,
    only: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        records: 1_000_000,
        out: None,
        json: None,
        server: true,
        cache: true,
        cluster: true,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--records" => {
                a.records = value()?
                    .parse()
                    .map_err(|_| "--records takes a number".to_owned())?
            }
            "--out" => a.out = Some(value()?.into()),
            "--json" => a.json = Some(value()?.into()),
            "--no-server" => a.server = false,
            "--no-cache" => a.cache = false,
            "--no-cluster" => a.cluster = false,
            "--only" => a.only.push(value()?),
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn value(r: &Report, workload: &str, engine: &str) -> Option<f64> {
    r.workloads
        .iter()
        .find(|w| w.name.starts_with(workload))
        .and_then(|w| match w.cells.get(engine) {
            Some(Cell::Value(v)) => Some(*v),
            _ => None,
        })
}

fn best_of(r: &Report, workload: &str, durable_only: bool) -> Option<(String, f64)> {
    let w = r.workloads.iter().find(|w| w.name.starts_with(workload))?;
    w.cells
        .iter()
        .filter(|(e, _)| !(durable_only && e.as_str() == "raiz (unlogged)"))
        .filter_map(|(e, c)| match c {
            Cell::Value(v) => Some((e.clone(), *v)),
            _ => None,
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The goals of the comparison, each checked against this run's figures.
fn targets(r: &Report) -> String {
    let mut out = String::from("| target | this run | met |\n|---|---|---|\n");
    let mut row = |target: &str, got: String, met: Option<bool>| {
        let m = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        out.push_str(&format!("| {target} | {got} | {m} |\n"));
    };
    // Durable rows compare raiz (logged) with the durable peers only: an
    // unlogged table skips the very work they are paying for.
    for (w, durable) in [
        ("ISAM: append with 3 indexes", true),
        ("ISAM: seek on the 2nd index", false),
        ("individual durable commits", true),
    ] {
        let target = if durable {
            format!("raiz (logged) first on \"{w}\" among durable engines")
        } else {
            format!("raiz first on \"{w}\"")
        };
        match best_of(r, w, durable) {
            Some((e, v)) => row(
                &target,
                format!("best: {e} ({v:.0})"),
                Some(e.starts_with("raiz")),
            ),
            None => row(&target, "-".into(), None),
        }
    }
    let one = value(r, "durable 1-record commits, 1 thread", "raiz (logged)");
    let sixteen = value(r, "durable 1-record commits, 16 thread", "raiz (logged)");
    match (one, sixteen) {
        (Some(a), Some(b)) => row(
            "group commit: 16 threads ≥ 5× one thread",
            format!("{b:.0} vs {a:.0} commits/s ({:.1}×)", b / a),
            Some(b >= 5.0 * a),
        ),
        _ => row("group commit: 16 threads ≥ 5× one thread", "-".into(), None),
    }
    let fsync = value(r, "fdatasync after a 512-byte overwrite", machine::COLUMN);
    let mbps = value(r, "sequential write + final fdatasync", machine::COLUMN);
    let per_commit = value(
        r,
        "log bytes per 1-record commit, 16 thread",
        "raiz (logged)",
    );
    match (sixteen, fsync, mbps, per_commit) {
        (Some(b), Some(f), Some(bw), Some(bytes)) => {
            // 16 committers can share one sync: at most 16 commits per sync,
            // and no more commits than the bandwidth carries at the log bytes
            // a commit measured in this run.
            let allowed = (f * 16.0).min(bw * 1e6 / bytes);
            row(
                "group commit within 2× of what fsync rate and bandwidth allow",
                format!(
                    "{b:.0} of {allowed:.0} commits/s (min of 16 × {f:.0} syncs/s and {bw:.0} MB/s ÷ {bytes:.0} B per commit)"
                ),
                Some(b * 2.0 >= allowed),
            )
        }
        _ => row(
            "group commit within 2× of the machine's bound",
            "-".into(),
            None,
        ),
    }
    match (
        value(r, "random point reads", "raiz (logged)"),
        value(r, "random point reads", "LMDB (heed)"),
    ) {
        (Some(a), Some(l)) => row(
            "random reads within 1.5× of LMDB",
            format!("{a:.0} vs {l:.0} reads/s ({:.2}×)", l / a),
            Some(a * 1.5 >= l),
        ),
        _ => row("random reads within 1.5× of LMDB", "-".into(), None),
    }
    // The rest of the read, commit and bulk targets: raiz's figure against a
    // reference in the same run, `raiz ≥ factor × reference` (for bytes, the
    // other way round).
    let logged = "raiz (logged)";
    let lmdb = "LMDB (heed)";
    let redb = "redb";
    let ratio_targets: [(&str, &str, &str, &str, f64); 7] = [
        (
            "random reads from 2 threads within 1.5× of LMDB",
            "random point reads, 2 threads",
            logged,
            lmdb,
            1.0 / 1.5,
        ),
        (
            "random reads from 2 threads ≥ 1.8× raiz's one-thread rate",
            "random point reads, 2 threads",
            logged,
            "random point reads|raiz (logged)",
            1.8,
        ),
        (
            "seek + read the next 10 ≥ redb",
            "seek + read the next 10",
            logged,
            redb,
            1.0,
        ),
        (
            "full ordered scan ≥ half of redb's rate",
            "full ordered scan",
            logged,
            redb,
            0.5,
        ),
        (
            "bulk load in one transaction ≥ 50 % of LMDB's rate",
            "bulk load, one transaction",
            logged,
            lmdb,
            0.5,
        ),
        (
            "remove half in one transaction ≥ redb's rate",
            "remove half, one transaction",
            logged,
            redb,
            1.0,
        ),
        (
            "individual durable commits ≥ 80 % of the preallocated fdatasync rate",
            "individual durable commits",
            logged,
            "fdatasync after a 512-byte overwrite|this machine",
            0.8,
        ),
    ];
    for (target, w, e, reference, factor) in ratio_targets {
        let refv = match reference.split_once('|') {
            Some((rw, re)) => value(r, rw, re),
            None => value(r, w, reference),
        };
        match (value(r, w, e), refv) {
            (Some(a), Some(b)) => row(
                target,
                format!("{a:.0} vs {b:.0} ({:.2}×)", a / b),
                Some(a >= factor * b),
            ),
            _ => row(target, "-".into(), None),
        }
    }
    match value(r, "100 durable batches of 1000", logged) {
        // 38.4K records/s when the target was set.
        Some(v) => row(
            "100 durable batches of 1,000 ≥ 2× 38.4K records/s",
            format!("{v:.0} records/s"),
            Some(v >= 76_800.0),
        ),
        None => row(
            "100 durable batches of 1,000 ≥ 76.8K records/s",
            "-".into(),
            None,
        ),
    }
    for (target, w, limit) in [
        (
            "log bytes per 1-record commit from 16 threads ≤ 1 KiB",
            "log bytes per 1-record commit, 16 thread",
            1024.0,
        ),
        (
            "log bytes per 1-record commit from 1 thread ≤ one 4 KiB block per sync",
            "log bytes per 1-record commit, 1 thread",
            4096.0,
        ),
    ] {
        match value(r, w, logged) {
            Some(b) => row(target, format!("{b:.0} bytes"), Some(b <= limit)),
            None => row(target, "-".into(), None),
        }
    }
    match (
        value(r, "sequential scan over the network of", server::RAIZ),
        value(r, "sequential scan over the network of", server::RAIZ_ONE),
    ) {
        (Some(a), Some(o)) => row(
            "warm remote scan ≥ 50× faster than one round trip per record",
            format!("{a:.1} ms vs {o:.1} ms ({:.0}×)", o / a),
            Some(o >= 50.0 * a),
        ),
        _ => row(
            "warm remote scan ≥ 50× faster than one round trip per record",
            "-".into(),
            None,
        ),
    }
    let pg_best = |w: &str| {
        [server::PG, server::PGBENCH]
            .iter()
            .filter_map(|c| value(r, w, c).map(|v| (*c, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    match (
        value(r, "point read by key, 1 connection", server::RAIZ),
        value(r, server::LOOPBACK, machine::COLUMN),
    ) {
        (Some(a), Some(rt)) => row(
            "remote point read from 1 connection within 1.3× of the loopback round trip",
            format!("{a:.0} reads/s vs {rt:.0} round trips/s ({:.2}×)", rt / a),
            Some(a * 1.3 >= rt),
        ),
        _ => row(
            "remote point read from 1 connection within 1.3× of the loopback round trip",
            "-".into(),
            None,
        ),
    }
    for (w, factor) in [
        ("point read by key, 32 connection", 1.5),
        ("durable 1-record insert, 8 connection", 1.0),
        ("durable 1-record insert, 32 connection", 1.0),
    ] {
        let target = match factor == 1.0 {
            true => format!("raiz serve ≥ PostgreSQL's best on \"{w}s\""),
            false => format!("raiz serve ≥ {factor}× PostgreSQL's best on \"{w}s\""),
        };
        match (value(r, w, server::RAIZ), pg_best(w)) {
            (Some(a), Some((c, p))) => row(
                &target,
                format!("{a:.0} vs {p:.0} ({c}): {:.2}×", a / p),
                Some(a >= factor * p),
            ),
            _ => row(&target, "-".into(), None),
        }
    }
    let node = compare::cache::NODE;
    let srv = compare::cache::SERVER;
    match (
        value(r, "point read by key (seek + record)", node),
        value(r, "point read by key (seek + record)", srv),
    ) {
        (Some(n), Some(s)) => row(
            "cache node: in-process reads ≥ 100× the server's",
            format!("{n:.0} vs {s:.0} reads/s ({:.0}×)", n / s),
            Some(n >= 100.0 * s),
        ),
        _ => row(
            "cache node: in-process reads ≥ 100× the server's",
            "-".into(),
            None,
        ),
    }
    match value(
        r,
        "commit to visibility on a node at 1,000 commits/s, p99",
        node,
    ) {
        Some(ms) => row(
            "cache node: p99 commit-to-visibility < 5 ms at 1,000 commits/s",
            format!("{ms:.2} ms"),
            Some(ms < 5.0),
        ),
        None => row(
            "cache node: p99 commit-to-visibility < 5 ms",
            "-".into(),
            None,
        ),
    }
    match value(r, "memory of the copy over the table's size on disk", node) {
        Some(x) => row(
            "cache node: memory ≤ 1.3 × disk size",
            format!("{x:.2}"),
            Some(x <= 1.3),
        ),
        None => row("cache node: memory ≤ 1.3 × disk size", "-".into(), None),
    }
    out
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAIZ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    let spec = if a.quick {
        Spec::quick()
    } else {
        Spec::full(a.records)
    };
    let started = Instant::now();
    let data = Dataset::new(&spec);
    let mut report = Report::default();
    if let Err(e) = machine::measure(a.quick, &mut report) {
        eprintln!("compare: machine limits: {e}");
        std::process::exit(1);
    }
    let contenders: Vec<_> = engines::all()
        .into_iter()
        .filter(|c| a.only.is_empty() || a.only.iter().any(|o| c.name.contains(o.as_str())))
        .collect();
    for c in &contenders {
        if let Err(e) = run_engine(c, &spec, &data, &mut report) {
            eprintln!("compare: {}: {e}", c.name);
            std::process::exit(1);
        }
    }
    if a.server {
        if let Err(e) = server::run(&spec, &data, &mut report) {
            eprintln!("compare: servers: {e}");
            std::process::exit(1);
        }
    }
    if a.cache {
        if let Err(e) = compare::cache::run(&spec, a.quick, &mut report) {
            eprintln!("compare: cache nodes: {e}");
            std::process::exit(1);
        }
    }
    if a.cluster {
        if let Err(e) = compare::cluster::run(&spec, a.quick, &mut report) {
            eprintln!("compare: cluster: {e}");
            std::process::exit(1);
        }
    }
    let engines: Vec<String> = contenders.iter().map(|c| c.name.to_owned()).collect();
    let mut md = String::new();
    md.push_str("# raiz benchmarks\n\n");
    md.push_str(&format!(
        "Measured in one run on this machine ({} cores, {}, Linux {}, {} filesystem for the temporary directory), {} records of a 24-byte random key and a 150-byte value, cache budget {} MiB per engine; the run took {:.0} s.\n\n",
        sh("nproc"),
        sh("free -g | awk '/Mem:/{print $2\" GiB RAM\"}'"),
        sh("uname -r"),
        sh("df -T \"${TMPDIR:-/tmp}\" | awk 'NR==2{print $2}'"),
        spec.records,
        spec.cache_bytes >> 20,
        started.elapsed().as_secs_f64(),
    ));
    md.push_str(&format!(
        "Reproduce: `bash benches/compare.sh --records {}` (it installs PostgreSQL when missing, then runs `cargo run --profile bench -p raiz-benches --bin compare`). Raw numbers: `benches/results.json`.\n\n",
        spec.records
    ));
    md.push_str("Each cell: the figure, then its ratio to the best engine on that row (1.00 = best, in bold). The machine is shared and noisy: read ratios, not absolutes.\n\n");
    md.push_str("## Embedded engines\n\n");
    md.push_str(&report.markdown(&engines));
    md.push_str("\nSettings: raiz — buffer pool = budget, logged tables commit after the log's fdatasync (group commit), unlogged tables have no durable rows; redb — `Durability::Immediate` (default), `set_cache_size`; SQLite (rusqlite, bundled) — `journal_mode=WAL`, `synchronous=FULL`, `cache_size` = budget per connection, one connection per thread; LMDB (heed) — default flags (sync at commit), no cache setting (the OS page cache); fjall — `PersistMode::SyncAll` on every write transaction, `cache_size` = budget. File sizes are the blocks allocated under each engine's directory (logs and journals included). Compaction: raiz `pack`, redb `compact`, SQLite `VACUUM`, LMDB a compacting copy swapped in, fjall a major compaction. The ISAM rows give peers a unique key and two secondary indexes they maintain by hand in the same transaction (SQLite uses its own `CREATE INDEX`).\n\n");
    md.push_str("## This machine\n\n");
    md.push_str(&report.markdown(&[machine::COLUMN.to_owned()]));
    if a.server {
        md.push_str("\n## Servers over loopback\n\n");
        md.push_str(&report.markdown(&[
            server::RAIZ.to_owned(),
            server::PG.to_owned(),
            server::PGBENCH.to_owned(),
        ]));
        md.push('\n');
        md.push_str(
            &report
                .markdown(&[
                    server::RAIZ.to_owned(),
                    server::RAIZ_ONE.to_owned(),
                    server::PG.to_owned(),
                ])
                .lines()
                .filter(|l| {
                    l.starts_with("| workload")
                        || l.starts_with("|---")
                        || l.contains("sequential scan")
                })
                .collect::<Vec<_>>()
                .join("\n"),
        );
        md.push_str("\n\nSettings: `raiz serve` in-process on its own threads, clients on theirs, every request over a loopback TCP socket; a point read is `seek` + `record`, an insert an autocommitted logged append. PostgreSQL from the distribution's packages, fresh `initdb`, `fsync=on`, `synchronous_commit=on`, `shared_buffers` = budget, `bytea` key with a primary key index; the scan through a portal fetching 1,000 rows per round trip. 100,000 records loaded. The harness's PostgreSQL client prepares each statement once per connection (one round trip per request, as raiz); the pgbench column is PostgreSQL's own client on the same server (`pgbench -n -M prepared`, a 100,000-row table read by a bigint key, inserts of a random 24-byte key and a 150-byte value), a cross-check of the harness's client.\n");
    }
    if a.cache {
        md.push_str("\n## Cache nodes\n\n");
        md.push_str(&report.markdown(&[
            compare::cache::NODE.to_owned(),
            compare::cache::BOUND.to_owned(),
            compare::cache::SERVER.to_owned(),
        ]));
        md.push_str("\nSettings: a `raiz serve` and its clients in this process over loopback TCP; a dictionary table of 1 KB records (a 900-byte text field, a memo on one record in ten, a unique and a two-field index); cache nodes in this process (`CacheNode`, copy in a dbCache directory, pool large enough to hold it). A bound client is the ordinary client connected to the node's Unix socket (`raiz cache --listen unix:PATH`), reading the node's copy. Start-up is until the node is ready (loaded, indexed, caught up). The delay is from a commit's return on a direct client to the node having applied it, one commit per millisecond. The commit rows append 1 KB records from 8 connections: with no node; with three subscribers that read the change stream and discard it (the server's own cost of feeding nodes on other machines); with three nodes in this process applying it (on a 2-core machine they take the cores the server would use).\n");
    }
    if a.cluster {
        md.push_str("\n## A cluster of three\n\n");
        md.push_str(&report.markdown(&[
            compare::cluster::SINGLE.to_owned(),
            compare::cluster::GROUP.to_owned(),
        ]));
        md.push_str("\nSettings: three `raiz serve --cluster` members in this process, each with its own rootpath, Raft log and runtime, talking Raft over loopback TCP; clients connect with the cluster string (every member listed) and write to the leader. A commit returns once a majority holds it in its Raft log (fsync) and the leader applied it. The single server is an ordinary `raiz serve` on the same machine in the same run. Failover: the leader is stopped as a server stops (its Raft ends, the others hear nothing more), then the time to the first write another member acknowledges; the stopped member is started again and catches up before the next run. Catch-up: a follower stopped while 8 connections write, then started; the time from its start to having applied what the leader had.\n");
    }
    md.push_str("\n## Targets\n\n");
    md.push_str(&targets(&report));
    for n in &report.notes {
        md.push_str(&format!("\n- {n}"));
    }
    md.push('\n');
    let out = a.out.clone().unwrap_or_else(|| {
        if a.quick {
            std::env::temp_dir().join("raiz-benchmarks-quick.md")
        } else {
            PathBuf::from("BENCHMARKS.md")
        }
    });
    // Keep the hand-written reading of the figures across runs.
    if let Ok(old) = std::fs::read_to_string(&out) {
        if let Some(i) = old.find("\n## Reading") {
            md.push_str(&old[i..]);
        }
    }
    let json = a.json.clone().unwrap_or_else(|| {
        if a.quick {
            std::env::temp_dir().join("raiz-benchmarks-quick.json")
        } else {
            PathBuf::from("benches/results.json")
        }
    });
    if let Err(e) = std::fs::write(&out, &md).and_then(|_| std::fs::write(&json, report.json())) {
        eprintln!("compare: writing {}: {e}", out.display());
        std::process::exit(1);
    }
    println!("{md}");
    eprintln!("compare: wrote {} and {}", out.display(), json.display());
}
