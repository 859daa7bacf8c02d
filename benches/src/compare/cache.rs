//! Cache nodes against the server they cache, in the same run: point reads
//! and seek-then-next-10 on a cached table in-process versus over loopback
//! TCP; the delay from a commit to its visibility on a node at a steady
//! 1,000 commits/s (p50, p99); memory of the copy over the table's size on
//! disk; a node's start-up cold (loading over the network) and warm (from
//! its dbCache); the server's durable commit rate with 0 and 3 subscribed
//! nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raiz_client::cache::{CacheConfig, CacheNode};
use raiz_client::Connection;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, TableOptions, Value};

use super::report::{Better, Report};
use super::{Result, Spec};

/// Column of reads from a node's copy in the application's process.
pub const NODE: &str = "cache node, in-process";
/// Column of the same reads from `raiz serve` over loopback TCP.
pub const SERVER: &str = "raiz serve over TCP";
/// Column of a bound client: another process's ordinary client reading the
/// node's copy over its Unix socket (here, in this process, over a real
/// socket).
pub const BOUND: &str = "cache node, bound client (Unix socket)";

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(12)),
        Field::new("TITLE", FieldType::Char(40)),
        Field::new("ORD", FieldType::Int64),
        Field::new("BODY", FieldType::Char(900)),
        Field::new("HELP", FieldType::Memo),
    ])
}

fn row(i: u64) -> Vec<Value> {
    vec![
        Value::from(format!("C{i:010}").as_str()),
        Value::from(format!("title {}", i % 1000).as_str()),
        Value::Int64(i as i64 % 97),
        Value::from("x".repeat(100 + (i % 800) as usize).as_str()),
        Value::Memo(if i.is_multiple_of(10) {
            Memo::Data(vec![b'h'; 500])
        } else {
            Memo::Empty
        }),
    ]
}

fn key(i: u64) -> Value {
    Value::from(format!("C{i:010}").as_str())
}

/// Reads per second of `op` on one thread for `secs`.
fn rate(secs: f64, mut op: impl FnMut(u64) -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            op(n)?;
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn reads(t: &mut raiz_client::Table, rows: u64, secs: f64) -> Result<(f64, f64)> {
    t.set_order(Some("code"))?;
    let point = rate(secs, |i| {
        if !t.seek(&[key(i * 7919 % rows)])? {
            return Err("a loaded key was not found".into());
        }
        std::hint::black_box(t.record()?);
        Ok(())
    })?;
    let ranges = rate(secs, |i| {
        t.seek(&[key(i * 7919 % rows)])?;
        for _ in 0..10 {
            std::hint::black_box(t.record()?);
            if !t.next()? {
                break;
            }
        }
        Ok(())
    })?;
    Ok((point, ranges))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Durable 1-record appends from `conns` sessions for `secs`.
fn commits(conn: &Connection, conns: usize, secs: f64, tag: u64) -> Result<f64> {
    let stop = AtomicBool::new(false);
    let done = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..conns)
            .map(|c| {
                let (stop, done) = (&stop, &done);
                s.spawn(move || -> Result<()> {
                    let session = conn.session()?;
                    let mut t = session.open_table("dict")?;
                    let mut i = (tag * 100 + c as u64) * 10_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        t.append(&row(1_000_000_000 + i))?;
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().map_err(|_| "writer panicked")??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Runs the cache rows.
pub fn run(spec: &Spec, quick: bool, report: &mut Report) -> Result<()> {
    let rows: u64 = if quick { 3_000 } else { 200_000 };
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root)?;
    let mut users = raiz_server::users::Users::default();
    users.add("bench", "bench", vec![], true)?;
    users.save(&root)?;
    let mut config = raiz_server::Config::default();
    config.root = Some(root);
    config.listen = Some("127.0.0.1:0".into());
    config.pool_mb = Some((spec.cache_bytes >> 20) as u64);
    let server = raiz_server::start(config, false)?;
    let url = format!(
        "raiz://bench:bench@{}",
        server.tcp.ok_or("the server has no TCP address")?
    );
    let conn = Connection::connect(&url)?;
    let s = conn.session()?;
    s.create_table("dict", &schema(), TableOptions::default())?;
    let mut t = s.open_table("dict")?;
    tracing::info!(rows, "cache: loading the dictionary");
    for chunk in (0..rows).collect::<Vec<_>>().chunks(2000) {
        s.begin()?;
        t.append_many(&chunk.iter().map(|&i| row(i)).collect::<Vec<_>>())?;
        s.commit()?;
    }
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())?;
    t.create_index(&IndexDef::new(
        "title",
        vec![Segment::field("TITLE"), Segment::field("ORD")],
    ))?;
    let disk = t.info()?.bytes();
    drop(t);

    // Start-up, cold: everything over the network into a new dbCache.
    let nodes = tempfile::tempdir()?;
    let cfg = || -> Result<CacheConfig> {
        Ok(CacheConfig::new(&url, &["dict"])?
            .dir(nodes.path().join("a"))
            .pool_bytes(2 << 30))
    };
    let started = Instant::now();
    let node = CacheNode::start(cfg()?)?;
    node.wait_ready(Duration::from_secs(600))?;
    let cold = started.elapsed().as_secs_f64();
    let mb = disk as f64 / (1 << 20) as f64;
    report.add(
        &format!("node start-up, cold load of a {mb:.0} MB table"),
        "s",
        Better::Lower,
        NODE,
        cold,
    );
    let st = node.status();
    let memory = st.tables[0].memory_bytes as f64;
    report.add(
        "memory of the copy over the table's size on disk",
        "ratio",
        Better::Lower,
        NODE,
        memory / disk as f64,
    );
    node.stop();
    let started = Instant::now();
    let node = CacheNode::start(cfg()?)?;
    node.wait_ready(Duration::from_secs(600))?;
    report.add(
        &format!("node start-up, warm restart from dbCache ({mb:.0} MB)"),
        "s",
        Better::Lower,
        NODE,
        started.elapsed().as_secs_f64(),
    );

    // Reads: the copy in this process against the server over TCP.
    let secs = spec.server_secs;
    let ns = node.connection().session()?;
    let mut nt = ns.open_table("dict")?;
    let before = ns.round_trips();
    let (p, r) = reads(&mut nt, rows, secs)?;
    if ns.round_trips() != before {
        return Err("reads of the cached table made round trips".into());
    }
    report.add(
        "point read by key (seek + record)",
        "reads/s",
        Better::Higher,
        NODE,
        p,
    );
    report.add(
        "seek + read the next 10",
        "ranges/s",
        Better::Higher,
        NODE,
        r,
    );
    {
        let sock = nodes.path().join("node.sock");
        let _front = raiz_server::bound::start(node.clone(), Some(&sock), None)?;
        let cs: raiz_client::ConnectionString =
            format!("raiz+unix://bench@{}", sock.display()).parse()?;
        let bc = Connection::open_with(
            &cs,
            raiz_client::ConnectOptions {
                password: Some("bench".into()),
                ..raiz_client::ConnectOptions::default()
            },
        )?;
        let bs = bc.session()?;
        let mut bt = bs.open_table("dict")?;
        let (p, r) = reads(&mut bt, rows, secs)?;
        report.add(
            "point read by key (seek + record)",
            "reads/s",
            Better::Higher,
            BOUND,
            p,
        );
        report.add(
            "seek + read the next 10",
            "ranges/s",
            Better::Higher,
            BOUND,
            r,
        );
    }
    let mut rt = s.open_table("dict")?;
    let (p, r) = reads(&mut rt, rows, secs)?;
    report.add(
        "point read by key (seek + record)",
        "reads/s",
        Better::Higher,
        SERVER,
        p,
    );
    report.add(
        "seek + read the next 10",
        "ranges/s",
        Better::Higher,
        SERVER,
        r,
    );
    drop(rt);

    // Notification delay at a steady 1,000 commits/s: a direct client
    // commits, notes the feed position, and the time until the node has it.
    let samples = if quick { 100 } else { 2000 };
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    {
        let writer = conn.session()?;
        let mut wt = writer.open_table("dict")?;
        let period = Duration::from_millis(1);
        let mut next = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel::<(u64, Instant)>();
        let watcher = {
            let node = node.clone();
            let delays = delays.clone();
            std::thread::spawn(move || {
                for (seq, at) in rx {
                    if node.wait_applied(seq, Duration::from_secs(10)) {
                        delays
                            .lock()
                            .unwrap()
                            .push(at.elapsed().as_secs_f64() * 1e3);
                    }
                }
            })
        };
        for i in 0..samples {
            wt.update_fields(1 + (i % rows), &[("ORD", Value::Int64(i as i64))])?;
            let at = Instant::now();
            let seq = writer.feed_position()?;
            tx.send((seq, at)).map_err(|_| "watcher gone")?;
            next += period;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        drop(tx);
        watcher.join().map_err(|_| "watcher panicked")?;
    }
    let mut d = delays.lock().unwrap().clone();
    if d.len() != samples as usize {
        return Err(format!("{} of {samples} changes arrived", d.len()).into());
    }
    report.add(
        "commit to visibility on a node at 1,000 commits/s, p50",
        "ms",
        Better::Lower,
        NODE,
        percentile(&mut d, 0.5),
    );
    report.add(
        "commit to visibility on a node at 1,000 commits/s, p99",
        "ms",
        Better::Lower,
        NODE,
        percentile(&mut d, 0.99),
    );
    drop(nt);
    drop(ns);
    node.stop();

    // The server's commit rate with no node, with three subscribers reading
    // the stream (the server's own cost: nodes on other machines), and with
    // three nodes in this process applying it (on this 2-core machine they
    // compete with the server for the cores).
    let without = commits(&conn, 8, secs, 1)?;
    let server_addr: raiz_client::ConnectionString = url.parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| -> Result<std::thread::JoinHandle<()>> {
            let mut stream = raiz_client::cache::ChangeStream::connect(
                &server_addr,
                &Default::default(),
                &["dict".to_owned()],
                None,
                Duration::from_secs(10),
            )?;
            let stop = stop.clone();
            Ok(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if stream.next_changes().is_err() {
                        return;
                    }
                }
            }))
        })
        .collect::<Result<_>>()?;
    let with_readers = commits(&conn, 8, secs, 2)?;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let followers: Vec<CacheNode> = (0..3)
        .map(|_| -> Result<CacheNode> {
            let n = CacheNode::start(CacheConfig::new(&url, &["dict"])?.pool_bytes(2 << 30))?;
            n.wait_ready(Duration::from_secs(600))?;
            Ok(n)
        })
        .collect::<Result<_>>()?;
    let with_nodes = commits(&conn, 8, secs, 3)?;
    for (what, v) in [
        ("no node", without),
        ("3 subscribers reading the stream", with_readers),
        ("3 nodes applying it in this process", with_nodes),
    ] {
        report.add(
            &format!("server: durable 1-record commits, 8 connections, {what}"),
            "commits/s",
            Better::Higher,
            SERVER,
            v,
        );
    }
    drop(followers);
    drop(s);
    server.stop()?;
    Ok(())
}
