//! `raiz serve` over loopback, measured in one run: point reads by key and
//! durable single-record inserts with 1, 8 and 32 client connections, and a
//! 20,000-record sequential scan with read-ahead versus one record per round
//! trip.
//!
//! `cargo bench -p raiz-benches --bench server`
//! (`RAIZ_BENCH_SECS` sets the seconds per rate, default 3;
//! `RAIZ_BENCH_ROWS` the rows of the point-read table, default 100,000.)
//!
//! The server runs in this process on its own threads (`raiz_server::start`),
//! the clients on theirs; every request crosses a real loopback socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raiz_benches::XorShift;
use raiz_client::{Connection, Session};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};

const PASSWORD: &str = "bench";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("VAL", FieldType::Char(150)),
    ])
}

fn row(id: i64) -> Vec<Value> {
    vec![Value::Int64(id), Value::Char(format!("value of {id:>12}"))]
}

/// Runs `work` on `conns` sessions for `secs`; returns operations per second.
fn rate(
    url: &str,
    conns: usize,
    secs: u64,
    work: impl Fn(&Session, &mut raiz_client::Table, &mut XorShift) + Sync,
) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let ready = std::sync::Barrier::new(conns + 1);
    let elapsed = std::thread::scope(|s| {
        for c in 0..conns {
            let (stop, done, ready, work) = (&stop, &done, &ready, &work);
            s.spawn(move || {
                let session = Connection::connect(url).unwrap().session().unwrap();
                let mut t = session.open_table("kv").unwrap();
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
                ready.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    work(&session, &mut t, &mut rng);
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        ready.wait();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        start.elapsed()
    });
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

fn main() {
    let secs = env("RAIZ_BENCH_SECS", 3);
    let rows = env("RAIZ_BENCH_ROWS", 100_000) as i64;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut users = raiz_server::users::Users::default();
    users.add("bench", PASSWORD, vec![], true).unwrap();
    users.save(&root).unwrap();
    let mut config = raiz_server::Config::default();
    config.root = Some(root);
    config.listen = Some("127.0.0.1:0".into());
    config.pool_mb = Some(256);
    let server = raiz_server::start(config, false).unwrap();
    let url = format!("raiz://bench:{PASSWORD}@{}", server.tcp.unwrap());

    let s = Connection::connect(&url).unwrap().session().unwrap();
    s.create_table("kv", &schema(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table("kv").unwrap();
    let start = Instant::now();
    s.begin().unwrap();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<_> = chunk.iter().map(|&i| row(i)).collect();
        t.append_many(&batch).unwrap();
    }
    s.commit().unwrap();
    t.create_index(&IndexDef::new("id", vec![Segment::field("ID")]).unique())
        .unwrap();
    println!(
        "loaded {rows} rows over the network in one transaction: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    drop(t);

    println!("\n| workload | 1 connection | 8 connections | 32 connections |");
    println!("|---|---|---|---|");
    let mut line = String::from("| point read by key (seek + record), requests/s |");
    for conns in [1, 8, 32] {
        let r = rate(&url, conns, secs, |_, t, rng| {
            if t.order().is_none() {
                t.set_order(Some("id")).unwrap();
            }
            let id = rng.next_in(rows as u64) as i64 - 1;
            assert!(t.seek(&[Value::Int64(id)]).unwrap());
            std::hint::black_box(t.record().unwrap());
        });
        line += &format!(" {r:.0} |");
    }
    println!("{line}");
    let next = AtomicU64::new(rows as u64);
    let mut line = String::from("| durable insert (logged, autocommit), requests/s |");
    for conns in [1, 8, 32] {
        let r = rate(&url, conns, secs, |_, t, _| {
            let id = next.fetch_add(1, Ordering::Relaxed) as i64;
            t.append(&row(id)).unwrap();
        });
        line += &format!(" {r:.0} |");
    }
    println!("{line}");
    let r = rate(&url, 1, secs, |s, _, _| s.ping().unwrap());
    println!("| empty request (ping), requests/s | {r:.0} | | |");

    // The scan.
    s.create_table("scan", &schema(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table("scan").unwrap();
    s.begin().unwrap();
    let batch: Vec<_> = (0..20_000).map(row).collect();
    t.append_many(&batch).unwrap();
    s.commit().unwrap();
    println!("\n| 20,000-record sequential scan | time | round trips |");
    println!("|---|---|---|");
    for (label, ahead) in [
        ("read-ahead (default)", raiz_client::MAX_READ_AHEAD),
        ("one record per round trip", 0),
    ] {
        t.set_read_ahead(ahead);
        // Warm once, then measure.
        let mut best = Duration::MAX;
        let mut trips = 0;
        for _ in 0..3 {
            let before = s.round_trips();
            let start = Instant::now();
            let mut n = 0;
            let mut more = t.first().unwrap();
            while more {
                std::hint::black_box(t.record().unwrap());
                n += 1;
                more = t.next().unwrap();
            }
            assert_eq!(n, 20_000);
            best = best.min(start.elapsed());
            trips = s.round_trips() - before;
        }
        println!("| {label} | {:.1} ms | {trips} |", best.as_secs_f64() * 1e3);
    }
    drop(t);
    drop(s);
    server.stop().unwrap();
}
