//! Writers that follow the leader, the history they record, and the checker
//! that holds every member's tables against it.
//!
//! An order is written with 1–3 lines in one transaction; its NL field says
//! how many. Later transactions update its QTY. Each commit the client saw
//! acknowledged is recorded as such; a commit that failed at `commit()` with
//! a connection or cluster error is *in doubt* (the group may have committed
//! it); a transaction that failed before `commit()` was never sent for
//! commit. The check: an order with an acknowledged write is present, with
//! the last acknowledged QTY or one written in doubt after it; an order
//! present was written (acknowledged or in doubt) with that QTY; its lines
//! are all there and no line's order is missing (no transaction in part).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use raiz_client::{Connection, ErrorKind, Session, Table};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::PASSWORD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    InDoubt,
}

/// (QTY, NL, outcome) of each commit that wrote an order, in order.
pub type Writes = Vec<(i64, i64, Outcome)>;

/// Per order code, its writes.
#[derive(Debug, Default)]
pub struct History {
    pub ops: Mutex<BTreeMap<String, Writes>>,
    /// (code, QTY, member) of every live order a reader saw on a member
    /// while the faults went on.
    pub reads: Mutex<Vec<(String, i64, usize)>>,
    pub acked: AtomicU64,
    pub in_doubt: AtomicU64,
}

impl History {
    pub fn record(&self, code: &str, qty: i64, nl: i64, o: Outcome) {
        match o {
            Outcome::Acked => self.acked.fetch_add(1, Ordering::Relaxed),
            Outcome::InDoubt => self.in_doubt.fetch_add(1, Ordering::Relaxed),
        };
        self.ops
            .lock()
            .unwrap()
            .entry(code.to_owned())
            .or_default()
            .push((qty, nl, o));
    }
}

pub fn create_tables(s: &Session) {
    s.create_table(
        "orders",
        &Schema::new(vec![
            Field::new("CODE", FieldType::Char(12)),
            Field::new("QTY", FieldType::Int64),
            Field::new("NL", FieldType::Int64),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    s.create_table(
        "lines",
        &Schema::new(vec![
            Field::new("ORD", FieldType::Char(12)),
            Field::new("N", FieldType::Int64),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    let mut o = s.open_table("orders").unwrap();
    o.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    let mut l = s.open_table("lines").unwrap();
    l.create_index(&IndexDef::new(
        "ord",
        vec![Segment::field("ORD"), Segment::field("N")],
    ))
    .unwrap();
}

fn text(v: &Value) -> String {
    match v {
        Value::Char(c) => c.trim_end().to_owned(),
        other => panic!("not text: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int64(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// A connection to whichever of `addrs` takes writes now.
fn connect_leader(addrs: &[String]) -> Option<Session> {
    for a in addrs {
        let Ok(s) =
            Connection::connect(&format!("raiz://admin:{PASSWORD}@{a}")).and_then(|c| c.session())
        else {
            continue;
        };
        if s.cluster_status().is_ok_and(|st| st.writable) {
            return Some(s);
        }
    }
    None
}

/// An error after which a commit may or may not have been made: the
/// leadership moved, or the connection went. (`NotLeader` and `NoQuorum`
/// are refusals before anything was proposed.)
pub fn in_doubt(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::Failover | ErrorKind::Io | ErrorKind::Closed | ErrorKind::Protocol
    )
}

/// A replication or connection error: the member cannot answer for the
/// group, or is gone.
fn cluster_trouble(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::NotLeader
            | ErrorKind::NoQuorum
            | ErrorKind::Failover
            | ErrorKind::Io
            | ErrorKind::Closed
            | ErrorKind::Protocol
    )
}

pub struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub history: Arc<History>,
}

impl Writers {
    /// `n` writers and one reader.
    pub fn start(addrs: Vec<String>, n: u64, seed: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(History::default());
        let mut threads: Vec<JoinHandle<()>> = (0..n)
            .map(|w| {
                let (stop, history, addrs) = (stop.clone(), history.clone(), addrs.clone());
                std::thread::spawn(move || writer(w, seed, &addrs, &stop, &history))
            })
            .collect();
        let (stop2, history2) = (stop.clone(), history.clone());
        threads.push(std::thread::spawn(move || {
            reader(seed, &addrs, &stop2, &history2)
        }));
        Writers {
            stop,
            threads,
            history,
        }
    }

    pub fn stop(self) -> Arc<History> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        self.history
    }
}

/// Reads whole order tables from members at random (followers too) while
/// the writers write and the faults go on; every live order seen is noted.
fn reader(seed: u64, addrs: &[String], stop: &AtomicBool, h: &History) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    while !stop.load(Ordering::SeqCst) {
        let i = rng.random_range(0..addrs.len());
        let seen: raiz_client::Result<Vec<(String, i64)>> = (|| {
            let s =
                Connection::connect(&format!("raiz://admin:{PASSWORD}@{}", addrs[i]))?.session()?;
            let t = s.open_table("orders")?;
            Ok(t.snapshot()?
                .into_iter()
                .filter(|r| !r.is_deleted())
                .map(|r| (text(&r.values()[0]), int(&r.values()[1])))
                .collect())
        })();
        // A member down or cut off does not answer: that is no observation.
        if let Ok(seen) = seen {
            let mut reads = h.reads.lock().unwrap();
            reads.extend(seen.into_iter().map(|(c, q)| (c, q, i)));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..40)));
    }
}

struct Conn {
    s: Session,
    orders: Table,
    lines: Table,
}

fn writer(w: u64, seed: u64, addrs: &[String], stop: &AtomicBool, h: &History) {
    let mut rng = StdRng::seed_from_u64(seed ^ (w << 32));
    let mut conn: Option<Conn> = None;
    let mut mine: Vec<(String, i64)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                // Writer 0 lets the cluster connection string find the
                // leader (and move its session after a failover); the
                // others look for it themselves.
                let found = if w == 0 {
                    let hosts = addrs.join(",");
                    let cs: raiz_client::ConnectionString =
                        format!("raiz://admin:{PASSWORD}@{hosts}").parse().unwrap();
                    let opts = raiz_client::ConnectOptions {
                        failover_wait: Some(Duration::from_secs(3)),
                        ..Default::default()
                    };
                    Connection::open_with(&cs, opts)
                        .and_then(|c| c.session())
                        .ok()
                } else {
                    connect_leader(addrs)
                };
                let Some(s) = found else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let (Ok(orders), Ok(lines)) = (s.open_table("orders"), s.open_table("lines"))
                else {
                    continue;
                };
                conn.insert(Conn { s, orders, lines })
            }
        };
        let update = !mine.is_empty() && rng.random_bool(0.3);
        let (code, qty, nl) = if update {
            let (code, nl) = mine[rng.random_range(0..mine.len())].clone();
            (code, rng.random_range(0..1_000_000), nl)
        } else {
            n += 1;
            (
                format!("w{w}-{n}"),
                rng.random_range(0..1_000_000),
                rng.random_range(1..=3),
            )
        };
        let rollback = rng.random_bool(0.15);
        let mut at_commit = false;
        let r: raiz_client::Result<()> = (|| {
            c.s.begin()?;
            if update {
                c.orders.set_order(Some("code"))?;
                if !c.orders.seek(&[Value::Char(code.clone())])? {
                    panic!("writer {w}: own acknowledged order {code} not found on the leader");
                }
                let recno = c.orders.recno();
                c.orders.update(
                    recno,
                    &[
                        Value::Char(code.clone()),
                        Value::Int64(qty),
                        Value::Int64(nl),
                    ],
                )?;
            } else {
                c.orders.append(&[
                    Value::Char(code.clone()),
                    Value::Int64(qty),
                    Value::Int64(nl),
                ])?;
                for i in 0..nl {
                    c.lines
                        .append(&[Value::Char(code.clone()), Value::Int64(i)])?;
                }
            }
            if rollback {
                return c.s.rollback();
            }
            at_commit = true;
            c.s.commit()
        })();
        match r {
            Ok(()) if rollback => {}
            Ok(()) => {
                h.record(&code, qty, nl, Outcome::Acked);
                if !update {
                    mine.push((code, nl));
                }
            }
            Err(e) => {
                assert!(
                    cluster_trouble(e.kind()),
                    "writer {w}: {e} ({:?})",
                    e.kind()
                );
                if at_commit && in_doubt(e.kind()) {
                    h.record(&code, qty, nl, Outcome::InDoubt);
                }
                if w == 0 {
                    // Same session, same tables: it moves by itself when the
                    // member it is on cannot take writes. (The transaction
                    // may be over already: a failed commit ends it.)
                    let _ = c.s.rollback();
                } else {
                    conn = None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Live orders (code → QTY, NL), lines per order, and every record and the
/// index orders, of one member.
pub struct Contents {
    pub orders: BTreeMap<String, (i64, i64)>,
    pub lines: BTreeMap<String, i64>,
    pub raw: Vec<String>,
}

fn order_of(t: &mut Table, index: &str) -> Vec<u64> {
    t.set_order(Some(index)).unwrap();
    let mut out = Vec::new();
    let mut at = t.first().unwrap();
    while at {
        out.push(t.recno());
        at = t.next().unwrap();
    }
    out
}

pub fn contents(s: &Session) -> Contents {
    s.set_hide_deleted(false).unwrap();
    let mut o = s.open_table("orders").unwrap();
    let mut l = s.open_table("lines").unwrap();
    let mut raw = Vec::new();
    let mut orders = BTreeMap::new();
    for r in o.snapshot().unwrap() {
        raw.push(format!(
            "orders {} {} {:?}",
            r.recno(),
            r.is_deleted(),
            r.values()
        ));
        if !r.is_deleted() {
            let v = r.values();
            let prev = orders.insert(text(&v[0]), (int(&v[1]), int(&v[2])));
            assert!(prev.is_none(), "order {} twice", text(&v[0]));
        }
    }
    let mut lines: BTreeMap<String, i64> = BTreeMap::new();
    for r in l.snapshot().unwrap() {
        raw.push(format!(
            "lines {} {} {:?}",
            r.recno(),
            r.is_deleted(),
            r.values()
        ));
        if !r.is_deleted() {
            *lines.entry(text(&r.values()[0])).or_default() += 1;
        }
    }
    raw.push(format!("orders by code {:?}", order_of(&mut o, "code")));
    raw.push(format!("lines by ord {:?}", order_of(&mut l, "ord")));
    for t in [&o, &l] {
        let report = t.check(10).unwrap();
        assert!(report.is_ok(), "check: {:?}", report.problems);
    }
    Contents { orders, lines, raw }
}

/// Holds one member's contents against the history (see the module docs).
pub fn check(c: &Contents, h: &History, who: &str, seed: u64) {
    let ops = h.ops.lock().unwrap();
    for (code, list) in ops.iter() {
        let last_ack = list.iter().rposition(|op| op.2 == Outcome::Acked);
        let allowed: Vec<i64> = match last_ack {
            Some(i) => std::iter::once(list[i].0)
                .chain(
                    list[i + 1..]
                        .iter()
                        .filter(|op| op.2 == Outcome::InDoubt)
                        .map(|op| op.0),
                )
                .collect(),
            None => list.iter().map(|op| op.0).collect(),
        };
        match c.orders.get(code) {
            None => assert!(
                last_ack.is_none(),
                "{who}: acknowledged order {code} is missing (seed {seed})"
            ),
            Some((qty, nl)) => {
                assert!(
                    allowed.contains(qty),
                    "{who}: order {code} has QTY {qty}, never written as its last acknowledged or in-doubt value {allowed:?} (seed {seed})"
                );
                assert_eq!(
                    c.lines.get(code).copied().unwrap_or(0),
                    *nl,
                    "{who}: order {code} has lines missing or extra (seed {seed})"
                );
            }
        }
    }
    for code in c.orders.keys() {
        assert!(
            ops.contains_key(code),
            "{who}: order {code} was never written (seed {seed})"
        );
    }
    // No read anywhere saw a value nobody wrote, or a write a cut-off
    // leader took (those are never committed).
    for (code, qty, member) in h.reads.lock().unwrap().iter() {
        let ok = ops
            .get(code)
            .is_some_and(|list| list.iter().any(|op| op.0 == *qty));
        assert!(
            ok,
            "{who}: a read on member {} saw order {code} with QTY {qty}, never written so (seed {seed})",
            member + 1
        );
    }
    for code in c.lines.keys() {
        assert!(
            c.orders.contains_key(code),
            "{who}: lines of order {code}, which is not there: half a transaction (seed {seed})"
        );
    }
}
