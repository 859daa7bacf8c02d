//! What the in-process cluster tests share: members on loopback ports,
//! waiting for a leader and for members to catch up, and a table's records
//! and index order to compare members by.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_cluster::{ClusterConfig, ClusterMember, Member};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};

pub struct Node {
    pub member: Arc<ClusterMember>,
    pub db: Database,
    pub config: ClusterConfig,
}

impl Node {
    pub fn start(config: ClusterConfig) -> Node {
        let root = config.log_dir.parent().unwrap().to_owned();
        // A member stopped in this process lets go of its rootpath once its
        // Raft's tasks have ended.
        let start = Instant::now();
        let db = loop {
            match Database::open(&root) {
                Err(raiz_engine::Error::RootpathLocked { .. })
                    if start.elapsed() < Duration::from_secs(10) =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => break other.unwrap(),
            }
        };
        let member = ClusterMember::start(config.clone(), db.clone()).unwrap();
        Node { member, db, config }
    }
}

/// Ports handed out in this process: two members never get the same one.
static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free port below the ephemeral range (a member started again must find
/// its port free; an ephemeral one may meanwhile be a connection's).
pub fn free_port() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port: u16 = rng.random_range(20_000..32_000);
        if GIVEN.lock().unwrap().insert(port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
}

pub fn group(dir: &std::path::Path, n: u64) -> Vec<Node> {
    group_with(dir, n, |_| {})
}

/// `n` members under `dir`, each configuration changed by `tune`.
pub fn group_with(dir: &std::path::Path, n: u64, tune: impl Fn(&mut ClusterConfig)) -> Vec<Node> {
    let members: BTreeMap<u64, Member> = (1..=n)
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
    (1..=n)
        .map(|id| {
            let root = dir.join(format!("m{id}"));
            let mut cfg = ClusterConfig::new(id, members.clone(), root.join("raft"));
            cfg.secret = "s3cret".into();
            tune(&mut cfg);
            Node::start(cfg)
        })
        .collect()
}

/// Waits for a member that takes writes; returns its position.
pub fn leader(nodes: &[Node], skip: &[usize]) -> usize {
    let start = Instant::now();
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            if n.db.replicator().unwrap().writable().is_ok() {
                return i;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no leader after 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every member (but `skip`) applied what the leader has.
pub fn converge(nodes: &[Node], leader: usize, skip: &[usize]) {
    let target = nodes[leader].member.status().applied;
    let start = Instant::now();
    for (i, n) in nodes.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        while n.member.status().applied < target {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "member {} did not catch up",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(8)),
        Field::new("QTY", FieldType::Int64),
    ])
}

/// Every record: recno, deleted, values.
pub type Records = Vec<(u64, bool, Vec<Value>)>;

/// Every record and the unique index's order.
pub fn contents(db: &Database, table: &str) -> (Records, Vec<u64>) {
    let s = db.session();
    s.set_hide_deleted(false);
    let mut t = s.open_table(table).unwrap();
    let mut records = Vec::new();
    for recno in 1..=t.record_count() {
        let r = t.read(recno).unwrap();
        records.push((recno, r.is_deleted(), r.values().to_vec()));
    }
    t.set_order(Some("code")).unwrap();
    let mut order = Vec::new();
    let mut at = t.first().unwrap();
    while at {
        order.push(t.recno());
        at = t.next().unwrap();
    }
    assert!(t.check(10).unwrap().is_ok(), "check on {table}");
    (records, order)
}

pub fn code(s: &str) -> Value {
    Value::Char(s.into())
}

pub fn with_index(db: &Database) {
    db.create_table("items", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("items").unwrap();
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
}
