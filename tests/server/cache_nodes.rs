//! Cache nodes as real processes (`raiz cache`) following a real server,
//! while direct clients and an in-process node write at random: once writes
//! stop and every node reports lag 0, every node's copy equals the server's
//! tables — every record, every memo, every index's order. Variants kill a
//! node mid-stream and restart it from its dbCache, restart the server, cut
//! a node's connection through a relay the test controls, and alter a table
//! and create an index while nodes follow.
//!
//! `RAIZ_CACHE_ITERS` sets how many rounds of writes each test runs (default
//! 2); `RAIZ_CACHE_SEED` replays a schedule.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raiz_client::cache::{CacheConfig, CacheNode};
use raiz_client::{Connection, Session};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cache::{create_dictionary, picture, row};
use crate::harness::{signal, wait, Server, PASSWORD};

/// A loopback relay: forwards connections to `target`, and can cut them.
pub struct Relay {
    pub addr: String,
    target: Arc<Mutex<String>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: &str) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let target = Arc::new(Mutex::new(target.to_owned()));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (t, o, s) = (target.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(c) = c else { continue };
                let to = t.lock().unwrap().clone();
                let Ok(up) = TcpStream::connect(&to) else {
                    continue;
                };
                o.lock().unwrap().push(c.try_clone().unwrap());
                o.lock().unwrap().push(up.try_clone().unwrap());
                for (mut a, mut b) in [(c.try_clone().unwrap(), up.try_clone().unwrap()), (up, c)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match a.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if b.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = b.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            addr,
            target,
            open,
            stop,
        }
    }

    /// Cuts every connection going through it now.
    pub fn cut(&self) -> usize {
        let mut open = self.open.lock().unwrap();
        for s in open.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let n = open.len();
        open.clear();
        n
    }

    pub fn retarget(&self, to: &str) {
        *self.target.lock().unwrap() = to.to_owned();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A `raiz cache` process.
pub struct NodeProc {
    pub dir: PathBuf,
    server: String,
    tables: String,
    extra: Vec<String>,
    child: Option<Child>,
}

impl NodeProc {
    pub fn start(dir: &Path, server_addr: &str, tables: &[&str]) -> NodeProc {
        NodeProc::start_with(dir, server_addr, tables, &[])
    }

    pub fn start_with(dir: &Path, server_addr: &str, tables: &[&str], extra: &[&str]) -> NodeProc {
        let mut n = NodeProc {
            dir: dir.to_owned(),
            server: format!("raiz://ana@{server_addr}"),
            tables: tables.join(","),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(["cache", "--server", &self.server, "--tables", &self.tables])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--stale-secs", "30", "--pool-mb", "64"])
            .args(&self.extra)
            .env("RAIZ_PASSWORD", PASSWORD)
            .env("RAIZ_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok);
        assert!(
            first
                .as_deref()
                .is_some_and(|l| l.starts_with("raiz cache: following")),
            "node did not start: {first:?}\n{}",
            self.log()
        );
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
            .args(["cache", "status", "--json", "--dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits until the node has applied `pos` and has no lag.
    pub fn caught_up(&self, pos: u64) {
        let start = Instant::now();
        loop {
            let st = self.status();
            let applied = st["applied"].as_u64().unwrap();
            let loading = st["tables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["status"] == "loading");
            if applied >= pos && !loading && st["connected"] == true {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node never caught up to {pos}: {st}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let st = wait(&mut c, Duration::from_secs(60));
            assert!(st.success(), "node exit {st:?}\n{}", self.log());
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    /// The copy of each table, read from the stopped node's dbCache through
    /// the embedded API.
    pub fn copy_pictures(&self, tables: &[&str]) -> Vec<Vec<String>> {
        assert!(self.child.is_none(), "stop the node first");
        let conn =
            Connection::connect(&format!("file:{}", self.dir.join("dbCache").display())).unwrap();
        let s = conn.session().unwrap();
        let state = s.open_table("raiz_node").unwrap();
        let mut map = std::collections::HashMap::new();
        for r in state.snapshot().unwrap().into_iter().skip(1) {
            let field = |f: &str| r.str(f).unwrap().to_owned();
            map.insert(field("NAME"), (field("LOCAL"), field("STATUS")));
        }
        tables
            .iter()
            .map(|t| {
                let (local, status) = map.get(*t).cloned().unwrap_or_default();
                assert_eq!(status, "ready", "table {t} in {}", self.dir.display());
                picture(&s, &local)
            })
            .collect()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn iters() -> u64 {
    std::env::var("RAIZ_CACHE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn seed() -> u64 {
    std::env::var("RAIZ_CACHE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Random writes on `table` for `ops` operations: single writes, record
/// locks, transactions with savepoints, some rolled back.
pub fn write_randomly(s: &Session, table: &str, rng: &mut StdRng, ops: usize) {
    let mut t = s.open_table(table).unwrap();
    s.set_lock_timeout(Duration::from_millis(200)).unwrap();
    for _ in 0..ops {
        let count = t.record_count().unwrap().max(1);
        let recno = rng.random_range(1..=count);
        let one = |t: &mut raiz_client::Table, rng: &mut StdRng| -> raiz_client::Result<()> {
            match rng.random_range(0..7) {
                0 | 1 => t.append(&row(rng.random_range(100_000..900_000))).map(drop),
                2 => t.update_fields(
                    recno,
                    &[("X3_ORDEM", Value::Int64(rng.random_range(0..97)))],
                ),
                3 => t.update_fields(
                    recno,
                    &[(
                        "X3_HELP",
                        Value::Memo(Memo::Data(vec![b'h'; rng.random_range(0..3000)])),
                    )],
                ),
                4 => t.delete(recno),
                5 => t.recall(recno),
                _ => {
                    let r = t.lock(recno, Duration::from_millis(200))?;
                    let o = r.int("X3_ORDEM")?;
                    t.update_fields(recno, &[("X3_ORDEM", Value::Int64((o + 1) % 97))])?;
                    t.unlock(recno).map(drop)
                }
            }
        };
        if rng.random_bool(0.25) {
            if s.begin().is_err() {
                continue;
            }
            for _ in 0..rng.random_range(1..4) {
                let _ = one(&mut t, rng);
            }
            if let Ok(sp) = s.savepoint() {
                let _ = one(&mut t, rng);
                if rng.random_bool(0.5) {
                    let _ = s.rollback_to(sp);
                }
            }
            if rng.random_bool(0.8) {
                let _ = s.commit();
            } else {
                let _ = s.rollback();
            }
        } else {
            let _ = one(&mut t, rng);
        }
    }
}

const TABLES: [&str; 2] = ["sx3", "sx2"];

struct Setup {
    server: Option<Server>,
    relay: Relay,
    _dirs: tempfile::TempDir,
    inproc: CacheNode,
}

fn setup(nodes: usize) -> (Setup, Vec<NodeProc>) {
    let server = Server::start(&[]);
    let s = server.session("ana");
    create_dictionary(&s, "sx3", 300);
    create_dictionary(&s, "sx2", 50);
    let relay = Relay::start(&server.addr);
    let dirs = tempfile::tempdir().unwrap();
    let nodes: Vec<NodeProc> = (0..nodes)
        .map(|i| NodeProc::start(&dirs.path().join(format!("node{i}")), &relay.addr, &TABLES))
        .collect();
    let inproc = CacheNode::start(
        CacheConfig::new(&server.url("bo"), &TABLES)
            .unwrap()
            .stale_after(Duration::from_secs(30)),
    )
    .unwrap();
    inproc.wait_ready(Duration::from_secs(60)).unwrap();
    (
        Setup {
            server: Some(server),
            relay,
            _dirs: dirs,
            inproc,
        },
        nodes,
    )
}

impl Setup {
    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }
}

/// Writers: two direct clients and one session through the in-process
/// node, `ops` operations each, on both tables.
fn write_round(st: &Setup, rng: &mut StdRng, ops: usize) {
    let seeds: Vec<u64> = (0..3).map(|_| rng.random()).collect();
    std::thread::scope(|scope| {
        for (i, seed) in seeds.into_iter().enumerate() {
            let server = st.server();
            let inproc = &st.inproc;
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed);
                let s = if i == 2 {
                    inproc.connection().session().unwrap()
                } else {
                    server.session(["ana", "bo"][i])
                };
                for _ in 0..2 {
                    let table = TABLES[rng.random_range(0..2)];
                    write_randomly(&s, table, &mut rng, ops / 2);
                }
            });
        }
    });
}

/// Stops writes, waits for every node, stops them, and compares.
fn converge(st: &Setup, nodes: &mut [NodeProc]) {
    let direct = st.server().session("ana");
    let pos = direct.feed_position().unwrap();
    let expected: Vec<Vec<String>> = TABLES.iter().map(|t| picture(&direct, t)).collect();
    assert!(st.inproc.wait_applied(pos, Duration::from_secs(60)));
    let s = st.inproc.connection().session().unwrap();
    for (t, want) in TABLES.iter().zip(&expected) {
        assert_eq!(&picture(&s, t), want, "in-process node, table {t}");
    }
    for n in nodes.iter_mut() {
        n.caught_up(pos);
        n.terminate();
        let got = n.copy_pictures(&TABLES);
        for ((t, got), want) in TABLES.iter().zip(got).zip(&expected) {
            assert_eq!(
                &got,
                want,
                "node {}, table {t}\n{}",
                n.dir.display(),
                n.log()
            );
        }
        n.restart();
    }
}

#[test]
fn three_node_processes_and_writers_converge() {
    let seed = seed();
    eprintln!(
        "cache nodes: seed {seed} (RAIZ_CACHE_SEED), {} rounds (RAIZ_CACHE_ITERS)",
        iters()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let (st, mut nodes) = setup(3);
    for round in 0..iters() {
        write_round(&st, &mut rng, 120);
        // (a) a node killed mid-stream, restarted from its dbCache.
        let victim = (round as usize) % nodes.len();
        let pause = Duration::from_millis(rng.random_range(10..90));
        let mut wrng = StdRng::seed_from_u64(rng.random());
        std::thread::scope(|scope| {
            let st = &st;
            let h = scope.spawn(move || write_round(st, &mut wrng, 80));
            std::thread::sleep(pause);
            nodes[victim].kill();
            h.join().unwrap();
        });
        nodes[victim].restart();
        // (c) every node's connection cut mid-stream by the relay.
        let mut crng = StdRng::seed_from_u64(rng.random());
        std::thread::scope(|scope| {
            let st = &st;
            let h = scope.spawn(move || write_round(st, &mut crng, 60));
            std::thread::sleep(Duration::from_millis(30));
            st.relay.cut();
            h.join().unwrap();
        });
        converge(&st, &mut nodes);
    }
}

#[test]
fn nodes_follow_a_server_restart_and_a_table_rewritten_under_them() {
    let seed = seed();
    eprintln!("cache nodes: seed {seed} (RAIZ_CACHE_SEED)");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut st, mut nodes) = setup(2);
    write_round(&st, &mut rng, 100);
    // (b) the server stopped and started again on the same rootpath, once
    // the nodes have everything (so they can catch up rather than reload).
    let pos = st.server().session("ana").feed_position().unwrap();
    for n in &nodes {
        n.caught_up(pos);
    }
    let (status, dir) = st.server.take().unwrap().terminate();
    assert!(status.success());
    st.server = Some(Server::start_in(dir, &[]));
    st.relay.retarget(&st.server().addr);
    st.relay.cut();
    // (The in-process node follows the old address: give it a new one.)
    st.inproc = CacheNode::start(
        CacheConfig::new(&st.server().url("bo"), &TABLES)
            .unwrap()
            .stale_after(Duration::from_secs(30)),
    )
    .unwrap();
    st.inproc.wait_ready(Duration::from_secs(60)).unwrap();
    write_round(&st, &mut rng, 100);
    // (d) a table altered and an index created while nodes follow.
    let s = st.server().session("ana");
    let mut t = s.open_table("sx2").unwrap();
    let mut fields = t.schema().fields().to_vec();
    fields.push(Field::new("X3_NOVO", FieldType::Char(4)));
    t.alter(&Schema::new(fields)).unwrap();
    drop(t);
    let mut t = s.open_table("sx3").unwrap();
    t.create_index(&IndexDef::new("ordem", vec![Segment::field("X3_ORDEM")]))
        .unwrap();
    drop(t);
    write_round(&st, &mut rng, 60);
    converge(&st, &mut nodes);
    // A node restarted after a clean server restart caught up rather than
    // reloading everything: its log says so.
    for n in &nodes {
        assert!(n.log().contains("catching up from"), "{}", n.log());
    }
}
