//! Health and metrics on their own address: `/metrics` parses as Prometheus
//! text (with the `prometheus-parse` crate) and its counters move when work
//! is done; `/readyz` answers 503 while the server replays a large log and
//! while a cache node loads, 200 once they serve.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raiz_client::ErrorKind;
use raiz_engine::{Database, Field, FieldType, LogOptions, Options, Schema, TableOptions, Value};

use crate::harness::{make_users, Server};

/// A GET over a fresh connection: status and body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Bodies are small: chunked or not, the text is all there.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `/metrics`, parsed: each sample's name, labels and value. Every sample
/// line of the text must be one the parser understood.
/// One sample of a scrape: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

pub fn scrape(addr: &str) -> Vec<Sample> {
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let names: std::collections::HashSet<&str> =
        parsed.samples.iter().map(|s| s.metric.as_str()).collect();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            names.contains(name) || names.contains(base),
            "the parser dropped {line:?}"
        );
    }
    let mut out = Vec::new();
    for s in parsed.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => out.push((s.metric, labels, v)),
            prometheus_parse::Value::Histogram(buckets) => {
                let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                out.push((format!("{}_count", s.metric), labels, total));
            }
            prometheus_parse::Value::Summary(_) => {}
        }
    }
    out
}

/// The value of `name` with these labels (all of them), or 0.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

#[test]
fn metrics_parse_and_move_with_the_work_done() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let m = server.metrics.clone().expect("a metrics address");
    assert_eq!(get(&m, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(&m, "/readyz").0, 200);
    assert_eq!(get(&m, "/nothing").0, 404);
    let before = scrape(&m);
    assert_eq!(value(&before, "raiz_ready", &[]), 1.0);

    let ana = server.session("ana");
    ana.create_table(
        "items",
        &Schema::new(vec![Field::new("CODE", FieldType::Char(8))]),
        TableOptions::default(),
    )
    .unwrap();
    let mut t = ana.open_table("items").unwrap();
    for i in 0..20 {
        t.append(&[Value::from(format!("C{i}").as_str())]).unwrap();
    }
    for r in 1..=20 {
        t.read(r).unwrap();
    }
    // A lock wait that times out, and a deadlock.
    let bo = server.session("bo");
    let tb = bo.open_table("items").unwrap();
    t.lock(1, Duration::ZERO).unwrap();
    tb.lock(2, Duration::ZERO).unwrap();
    let e = tb.lock(1, Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout);
    let waiter = std::thread::spawn(move || {
        let r = tb.lock(1, Duration::from_secs(5));
        (r.map(drop).map_err(|e| e.kind()), tb, bo)
    });
    std::thread::sleep(Duration::from_millis(200));
    let dead = t.lock(2, Duration::from_secs(5));
    if let Err(e) = &dead {
        assert_eq!(e.kind(), ErrorKind::Deadlock);
    }
    t.unlock(1).unwrap();
    let (r, _tb, _bo) = waiter.join().unwrap();
    assert!(dead.is_err() || r.is_err(), "one side saw the deadlock");
    server.session("admin").checkpoint().unwrap();

    let after = scrape(&m);
    let grew = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (a, b) = (value(&before, name, labels), value(&after, name, labels));
        assert!(b >= a + by, "{name}{labels:?}: {a} -> {b}");
    };
    grew("raiz_commits_total", &[], 20.0);
    grew(
        "raiz_requests_total",
        &[("kind", "append"), ("outcome", "ok")],
        20.0,
    );
    grew(
        "raiz_requests_total",
        &[("kind", "read"), ("outcome", "ok")],
        20.0,
    );
    grew(
        "raiz_requests_total",
        &[("kind", "lock"), ("outcome", "lock_timeout")],
        1.0,
    );
    grew("raiz_request_seconds_count", &[("kind", "append")], 20.0);
    grew("raiz_log_syncs_total", &[], 1.0);
    grew("raiz_group_commit_batch_count", &[], 1.0);
    grew("raiz_checkpoint_seconds_count", &[], 1.0);
    grew("raiz_lock_waits_total", &[], 2.0);
    grew("raiz_lock_timeouts_total", &[], 1.0);
    grew("raiz_deadlocks_total", &[], 1.0);
    grew("raiz_pool_hits_total", &[], 1.0);
    assert!(value(&after, "raiz_sessions", &[]) >= 2.0);
    assert!(value(&after, "raiz_pool_capacity_bytes", &[]) > 0.0);
}

/// A rootpath whose log holds many commits not yet checkpointed, as a crash
/// leaves it: the files and log of a database still open, copied.
fn crashed_rootpath(dir: &std::path::Path) -> std::path::PathBuf {
    let live = dir.join("live");
    let db = Database::open_with(
        &live,
        Options::default().log(LogOptions {
            checkpoint_bytes: 1 << 40,
            checkpoint_interval: Duration::from_secs(3600),
            ..LogOptions::default()
        }),
    )
    .unwrap();
    db.create_table(
        "big",
        &Schema::new(vec![
            Field::new("K", FieldType::Int64),
            Field::new("TEXT", FieldType::Char(200)),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    let s = db.session();
    let mut t = s.open_table("big").unwrap();
    for chunk in 0..20 {
        s.begin().unwrap();
        for k in 0..5000 {
            t.append(&[
                Value::Int64(chunk * 5000 + k),
                Value::from("payload ".repeat(24).as_str()),
            ])
            .unwrap();
        }
        s.commit().unwrap();
    }
    let copy = dir.join("root");
    copy_dir(&live, &copy);
    std::mem::drop(t);
    copy
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "raiz.owner" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn first_line(child: &mut Child, prefix: &str) -> String {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    std::thread::spawn(move || for _ in lines {});
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

/// Polls `/readyz` until 200: the 503 answers seen before, and how long.
fn until_ready(addr: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut not_ready = Vec::new();
    loop {
        let (status, body) = get(addr, "/readyz");
        if status == 200 {
            return not_ready;
        }
        assert_eq!(status, 503, "{body}");
        not_ready.push(body);
        assert!(
            start.elapsed() < limit,
            "not ready after {limit:?}: {not_ready:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_server_is_not_ready_while_it_replays_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = crashed_rootpath(dir.path());
    make_users(&root);
    let log_bytes: u64 = std::fs::read_dir(root.join("raiz.wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["serve", "--root", root.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m = first_line(&mut child, "raiz serve: metrics on ");
    let started = Instant::now();
    assert_eq!(get(&m, "/healthz").0, 200, "alive while recovering");
    let not_ready = until_ready(&m, Duration::from_secs(60));
    println!(
        "/readyz: 503 for {:.0} ms while {} MB of log were replayed ({} answers: {:?})",
        started.elapsed().as_secs_f64() * 1e3,
        log_bytes >> 20,
        not_ready.len(),
        not_ready.first()
    );
    assert!(
        not_ready.iter().any(|b| b.contains("replaying the log")),
        "/readyz said not ready during recovery: {not_ready:?}"
    );
    let samples = scrape(&m);
    assert_eq!(value(&samples, "raiz_ready", &[]), 1.0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_cache_node_is_not_ready_while_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    make_users(&root);
    {
        let db = Database::open(&root).unwrap();
        db.create_table(
            "sx3",
            &Schema::new(vec![
                Field::new("X3_CAMPO", FieldType::Char(10)),
                Field::new("X3_TITULO", FieldType::Char(60)),
            ]),
            TableOptions::default(),
        )
        .unwrap();
        let s = db.session();
        let mut t = s.open_table("sx3").unwrap();
        s.begin().unwrap();
        for i in 0..60_000 {
            t.append(&[
                Value::from(format!("F{i:06}").as_str()),
                Value::from("a field title of some length"),
            ])
            .unwrap();
        }
        s.commit().unwrap();
    }
    let server = Server::start_in(dir, &[]);
    let mut node = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(["cache", "--server", &server.url("ana"), "--tables", "sx3"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m = first_line(&mut node, "raiz cache: metrics on ");
    let not_ready = until_ready(&m, Duration::from_secs(60));
    let mut seen: Vec<&String> = not_ready.iter().collect();
    seen.dedup();
    println!("node /readyz before ready: {seen:?}");
    assert!(
        not_ready.iter().any(|b| b.contains("loading sx3")),
        "/readyz said not ready while the node loaded: {seen:?}"
    );
    let samples = scrape(&m);
    assert_eq!(value(&samples, "raiz_node_ready", &[]), 1.0);
    assert_eq!(value(&samples, "raiz_node_connected", &[]), 1.0);
    assert_eq!(
        value(&samples, "raiz_node_table_rows", &[("table", "sx3")]),
        60_000.0
    );
    assert!(
        value(
            &samples,
            "raiz_node_table_memory_bytes",
            &[("table", "sx3")]
        ) > 1e6
    );
    assert_eq!(
        value(&samples, "raiz_node_table_ready", &[("table", "sx3")]),
        1.0
    );
    // A change on the server arrives: the applied position moves.
    let applied = value(&samples, "raiz_node_applied_seq", &[]);
    let s = server.session("ana");
    let mut t = s.open_table("sx3").unwrap();
    t.update(1, &[Value::from("F000000"), Value::from("changed")])
        .unwrap();
    let moved = crate::harness::eventually(Duration::from_secs(10), || {
        value(&scrape(&m), "raiz_node_applied_seq", &[]) > applied
    });
    assert!(moved, "the node's applied position moved");
    let _ = node.kill();
    let _ = node.wait();
}

#[test]
fn a_sectioned_config_file_sets_up_the_server() {
    let server = Server::with_config(
        "[general]\npool_mb = 16\n\n[server]\nmetrics_listen = \"127.0.0.1:0\"\nmax_connections = 64\n\n[log]\nlevel = \"info\"\n",
        &[],
    );
    let m = server
        .metrics
        .clone()
        .expect("metrics_listen from [server]");
    let samples = scrape(&m);
    assert_eq!(
        value(&samples, "raiz_pool_capacity_bytes", &[]),
        f64::from(16u32 << 20),
        "pool_mb from [general]"
    );
}
