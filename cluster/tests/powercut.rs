//! Members on fault-injecting storage, cut off from power: one member, the
//! leader, and all three at once; and a member whose disk is replaced by an
//! empty one (it catches up by a snapshot: the members build them every 300
//! entries and keep 30 entries behind them). Every commit acknowledged before the cut is
//! on every member afterwards, each table checks clean, and the members'
//! tables are identical (records and index order).
//!
//! `RAIZ_CLUSTER_ROUNDS` (default 1) repeats it with new seeds;
//! `RAIZ_CLUSTER_SEED` replays one (the seed of the random crash images).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::free_port;
use raiz_cluster::{ClusterConfig, ClusterMember, Member};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{Database, Field, FieldType, Options, Schema, TableOptions, Value};

struct Node {
    member: Arc<ClusterMember>,
    db: Database,
    storage: FaultStorage,
    config: ClusterConfig,
}

impl Node {
    fn start(config: ClusterConfig, storage: FaultStorage) -> Node {
        let root: PathBuf = config.log_dir.parent().unwrap().to_owned();
        let db = Database::open_with(&root, Options::default().storage(Arc::new(storage.clone())))
            .unwrap();
        let member = ClusterMember::start(config.clone(), db.clone()).unwrap();
        Node {
            member,
            db,
            storage,
            config,
        }
    }

    /// What a power cut now leaves, as a new member on it (this one stops).
    /// Its Raft stops first: a member that went on answering after the
    /// image was taken would acknowledge entries the image lacks, which no
    /// real power cut allows.
    fn power_cut(self, mode: CrashMode) -> Node {
        self.member.shutdown();
        let image = self.storage.crash(mode);
        let config = self.config.clone();
        drop(self);
        Node::start(config, image)
    }
}

fn group() -> Vec<Node> {
    let members: BTreeMap<u64, Member> = (1..=3)
        .map(|id| {
            (
                id,
                Member {
                    raft: free_port(),
                    client: format!("db{id}.example:7070"),
                },
            )
        })
        .collect();
    (1..=3)
        .map(|id| {
            let root = PathBuf::from(format!("/m{id}"));
            let mut cfg = ClusterConfig::new(id, members.clone(), root.join("raft"));
            // Snapshots built, and the log behind them dropped, while the
            // members write and lose power.
            cfg.snapshot_every = 300;
            cfg.keep_after_snapshot = 30;
            Node::start(cfg, FaultStorage::new())
        })
        .collect()
}

fn leader(nodes: &[Node]) -> usize {
    let start = Instant::now();
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if n.db.replicator().unwrap().writable().is_ok() {
                return i;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no leader");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn converge(nodes: &[Node], l: usize) {
    // A write in the current term makes every member's log end with it.
    let s = nodes[l].db.session();
    let mut t = s.open_table("items").unwrap();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    t.append(&[Value::Char(format!("sync{n}")), Value::Int64(0)])
        .unwrap_or_else(|e| panic!("{e}"));
    let target = nodes[l].member.status().applied;
    let start = Instant::now();
    for n in nodes {
        while n.member.status().applied < target {
            assert!(start.elapsed() < Duration::from_secs(30), "no catch-up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn contents(db: &Database) -> Vec<String> {
    let s = db.session();
    s.set_hide_deleted(false);
    let mut t = s.open_table("items").unwrap();
    let mut out = Vec::new();
    for recno in 1..=t.record_count() {
        let r = t.read(recno).unwrap();
        out.push(format!("{recno} {} {:?}", r.is_deleted(), r.values()));
    }
    t.set_order(Some("code")).unwrap();
    let mut at = t.first().unwrap();
    let mut order = Vec::new();
    while at {
        order.push(t.recno());
        at = t.next().unwrap();
    }
    out.push(format!("order {order:?}"));
    let report = t.check(10).unwrap();
    assert!(report.is_ok(), "check: {:?}", report.problems);
    out
}

fn live_codes(db: &Database) -> BTreeSet<String> {
    let s = db.session();
    let t = s.open_table("items").unwrap();
    (1..=t.record_count())
        .filter_map(|r| {
            let rec = t.read(r).ok()?;
            if rec.is_deleted() {
                return None;
            }
            match &rec.values()[0] {
                Value::Char(c) => Some(c.trim_end().to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// Writers on the leader for `ms`; the codes of acknowledged commits.
fn write(db: &Database, tag: &str, ms: u64) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|w| {
            let (db, acked, stop, tag) = (db.clone(), acked.clone(), stop.clone(), tag.to_owned());
            std::thread::spawn(move || {
                let s = db.session();
                let mut t = s.open_table("items").unwrap();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let code = format!("{tag}{w}-{n}");
                    let r = (|| {
                        s.begin()?;
                        t.append(&[Value::Char(code.clone()), Value::Int64(n)])?;
                        if n % 5 == 0 {
                            return s.rollback().map(|()| false);
                        }
                        s.commit().map(|()| true)
                    })();
                    match r {
                        Ok(true) => {
                            acked.lock().unwrap().insert(code);
                        }
                        Ok(false) => {}
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(ms));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let out = acked.lock().unwrap().clone();
    out
}

fn seed() -> u64 {
    std::env::var("RAIZ_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

fn check_all(nodes: &[Node], acked: &BTreeSet<String>, seed: u64) {
    let l = leader(nodes);
    converge(nodes, l);
    let expect = contents(&nodes[l].db);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            contents(&n.db),
            expect,
            "member {} differs (seed {seed})",
            i + 1
        );
        let live = live_codes(&n.db);
        let lost: Vec<&String> = acked.difference(&live).collect();
        assert!(
            lost.is_empty(),
            "member {}: acknowledged commits lost: {lost:?} (seed {seed})",
            i + 1
        );
    }
}

#[test]
fn power_cuts_of_one_member_the_leader_and_all_lose_nothing_acknowledged() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAIZ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let rounds: u64 = std::env::var("RAIZ_CLUSTER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for _ in 0..rounds {
        round(seed());
    }
}

fn round(seed: u64) {
    println!("seed {seed} (RAIZ_CLUSTER_SEED={seed} repeats it)");
    let mut nodes = group();
    let l = leader(&nodes);
    nodes[l]
        .db
        .create_table(
            "items",
            &Schema::new(vec![
                Field::new("CODE", FieldType::Char(12)),
                Field::new("N", FieldType::Int64),
            ]),
            TableOptions::default(),
        )
        .unwrap();
    {
        let s = nodes[l].db.session();
        let mut t = s.open_table("items").unwrap();
        t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
            .unwrap();
    }
    let mut acked = write(&nodes[l].db, "a", 400);

    println!("a follower loses power");
    // A follower loses power (unsynced writes torn at random).
    let f = (l + 1) % 3;
    let node = nodes.remove(f);
    nodes.insert(f, node.power_cut(CrashMode::Random { seed }));
    let l = leader(&nodes);
    acked.extend(write(&nodes[l].db, "b", 300));
    check_all(&nodes, &acked, seed);

    println!("the leader loses power");
    // The leader loses power (every unsynced write dropped).
    let l = leader(&nodes);
    let node = nodes.remove(l);
    nodes.insert(l, node.power_cut(CrashMode::DropUnsynced));
    let l = leader(&nodes);
    acked.extend(write(&nodes[l].db, "c", 300));
    check_all(&nodes, &acked, seed);

    println!("a follower's disk is replaced by an empty one");
    let l = leader(&nodes);
    let f = (l + 2) % 3;
    let node = nodes.remove(f);
    node.member.shutdown();
    let config = node.config.clone();
    drop(node);
    nodes.insert(f, Node::start(config, FaultStorage::new()));
    acked.extend(write(&nodes[l].db, "d", 200));
    check_all(&nodes, &acked, seed);

    println!("all three lose power");
    // All three at once.
    for n in &nodes {
        n.member.shutdown();
    }
    let images: Vec<FaultStorage> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.storage.crash(CrashMode::Random {
                seed: seed ^ i as u64,
            })
        })
        .collect();
    let configs: Vec<ClusterConfig> = nodes.iter().map(|n| n.config.clone()).collect();
    drop(nodes);
    let nodes: Vec<Node> = configs
        .into_iter()
        .zip(images)
        .map(|(c, s)| Node::start(c, s))
        .collect();
    check_all(&nodes, &acked, seed);
    println!("{} acknowledged commits survived", acked.len());
    for n in &nodes {
        n.member.shutdown();
    }
}
