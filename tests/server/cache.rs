//! Cache nodes in this process against a real server: loading, following,
//! reads with no round trip, reads of one's own writes, reloads.

use std::time::Duration;

use raiz_client::cache::{CacheConfig, CacheNode};
use raiz_client::{Connection, ErrorKind, Session};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, TableOptions, Value};

use crate::harness::Server;

pub fn dictionary() -> Schema {
    Schema::new(vec![
        Field::new("X3_CAMPO", FieldType::Char(10)),
        Field::new("X3_TITULO", FieldType::Char(20)),
        Field::new("X3_ORDEM", FieldType::Int64),
        Field::new("X3_HELP", FieldType::Memo),
    ])
}

pub fn create_dictionary(s: &Session, name: &str, rows: u64) {
    s.create_table(name, &dictionary(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table(name).unwrap();
    t.create_index(&IndexDef::new("campo", vec![Segment::field("X3_CAMPO")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "titulo",
        vec![
            Segment::field("X3_TITULO").upper(),
            Segment::field("X3_ORDEM"),
        ],
    ))
    .unwrap();
    let batch: Vec<Vec<Value>> = (0..rows).map(row).collect();
    t.append_many(&batch).unwrap();
}

pub fn row(i: u64) -> Vec<Value> {
    vec![
        Value::from(format!("F{i:06}").as_str()),
        Value::from(["Codigo", "Nome", "Valor", "Data"][(i % 4) as usize]),
        Value::Int64(i as i64 % 97),
        Value::Memo(if i.is_multiple_of(5) {
            Memo::Data(format!("help for {i}").into_bytes())
        } else {
            Memo::Empty
        }),
    ]
}

/// Every record with its memo, and each index's order: what a copy must
/// match.
pub fn picture(s: &Session, name: &str) -> Vec<String> {
    let mut t = s.open_table(name).unwrap();
    let mut out = Vec::new();
    for r in t.snapshot().unwrap() {
        let memo = t.read_memo(r.recno(), "X3_HELP").unwrap();
        let mut v = r.values().to_vec();
        v[3] = Value::Memo(Memo::Data(memo));
        out.push(format!("{} {} {:?}", r.recno(), r.is_deleted(), v));
    }
    for order in ["campo", "titulo"] {
        t.set_order(Some(order)).unwrap();
        let mut keys = vec![order.to_owned()];
        let mut more = t.first().unwrap();
        while more {
            keys.push(t.recno().to_string());
            more = t.next().unwrap();
        }
        out.push(keys.join(","));
    }
    out
}

fn node(server: &Server, tables: &[&str]) -> CacheNode {
    let cfg = CacheConfig::new(&server.url("ana"), tables).unwrap();
    let node = CacheNode::start(cfg).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    node
}

#[test]
fn a_node_loads_follows_and_reads_with_no_round_trip() {
    let server = Server::start(&[]);
    let direct = server.session("ana");
    create_dictionary(&direct, "sx3", 500);
    direct
        .create_table("sa1", &dictionary(), TableOptions::default())
        .unwrap();
    let node = node(&server, &["sx3"]);
    let conn = node.connection();
    let s = conn.session().unwrap();
    assert_eq!(picture(&s, "sx3"), picture(&direct, "sx3"));

    // Reads of a cached table: no round trip at all.
    let mut t = s.open_table("sx3").unwrap();
    t.set_order(Some("campo")).unwrap();
    let before = s.round_trips();
    for i in (0..500).step_by(7) {
        assert!(t.seek(&[Value::from(format!("F{i:06}").as_str())]).unwrap());
        let r = t.record().unwrap();
        assert_eq!(r.values()[2], Value::Int64(i as i64 % 97));
        t.skip(3).unwrap();
    }
    assert_eq!(s.round_trips(), before, "cached reads made round trips");

    // Another client's writes arrive.
    let mut d = direct.open_table("sx3").unwrap();
    d.update_fields(10, &[("X3_TITULO", Value::from("Changed"))])
        .unwrap();
    d.delete(11).unwrap();
    let r = d.append(&row(9999)).unwrap();
    let pos = direct.feed_position().unwrap();
    assert!(node.wait_applied(pos, Duration::from_secs(10)));
    assert_eq!(picture(&s, "sx3"), picture(&direct, "sx3"));
    assert_eq!(t.read(r).unwrap().str("X3_CAMPO").unwrap(), "F009999");

    // Read your writes: visible on the very next read, with no sleep.
    t.update_fields(20, &[("X3_ORDEM", Value::Int64(-5))])
        .unwrap();
    assert_eq!(t.read(20).unwrap().values()[2], Value::Int64(-5));
    let r = t.append(&row(12345)).unwrap();
    assert_eq!(t.recno(), r);
    assert!(t.seek(&[Value::from("F012345")]).unwrap());
    assert_eq!(t.recno(), r);

    // Tables that are not cached go to the server.
    let before = s.round_trips();
    let a = s.open_table("sa1").unwrap();
    assert_eq!(a.record_count().unwrap(), 0);
    assert!(s.round_trips() > before);

    let st = node.status();
    assert!(st.local_reads > 0, "{st:?}");
    assert_eq!(st.tables[0].status, "ready");
    assert!(st.tables[0].rows > 500);
}

#[test]
fn a_transaction_sees_its_own_writes_to_a_cached_table_and_others_do_not() {
    let server = Server::start(&[]);
    let direct = server.session("ana");
    create_dictionary(&direct, "sx3", 50);
    let node = node(&server, &["sx3"]);
    let conn = node.connection();
    let s = conn.session().unwrap();
    let other = conn.session().unwrap();
    let mut t = s.open_table("sx3").unwrap();
    let o = other.open_table("sx3").unwrap();
    s.begin().unwrap();
    t.update_fields(3, &[("X3_TITULO", Value::from("Mine"))])
        .unwrap();
    assert_eq!(t.read(3).unwrap().str("X3_TITULO").unwrap(), "Mine");
    assert_ne!(o.read(3).unwrap().str("X3_TITULO").unwrap(), "Mine");
    t.set_order(Some("titulo")).unwrap();
    assert!(t.seek(&[Value::from("MINE")]).unwrap());
    assert_eq!(t.recno(), 3);
    s.rollback().unwrap();
    assert_ne!(t.read(3).unwrap().str("X3_TITULO").unwrap(), "Mine");
    s.begin().unwrap();
    t.update_fields(4, &[("X3_TITULO", Value::from("Kept"))])
        .unwrap();
    s.commit().unwrap();
    assert_eq!(t.read(4).unwrap().str("X3_TITULO").unwrap(), "Kept");
    let pos = direct.feed_position().unwrap();
    assert!(node.wait_applied(pos, Duration::from_secs(10)));
    assert_eq!(o.read(4).unwrap().str("X3_TITULO").unwrap(), "Kept");
}

#[test]
fn schema_changes_and_new_indexes_reload_the_table() {
    let server = Server::start(&[]);
    let direct = server.session("ana");
    create_dictionary(&direct, "sx3", 100);
    let node = node(&server, &["sx3", "sx2"]);
    let conn = node.connection();
    let s = conn.session().unwrap();
    // sx2 does not exist yet: reads go to the server, which says so.
    assert_eq!(
        s.open_table("sx2").unwrap_err().kind(),
        ErrorKind::TableNotFound
    );
    create_dictionary(&direct, "sx2", 30);
    let mut d = direct.open_table("sx3").unwrap();
    d.create_index(&IndexDef::new("ordem", vec![Segment::field("X3_ORDEM")]))
        .unwrap();
    d.append(&row(777)).unwrap();
    drop(d);
    let pos = direct.feed_position().unwrap();
    assert!(node.wait_applied(pos, Duration::from_secs(10)));
    node.wait_ready(Duration::from_secs(30)).unwrap();
    assert_eq!(picture(&s, "sx2"), picture(&direct, "sx2"));
    let mut t = s.open_table("sx3").unwrap();
    t.set_order(Some("ordem")).unwrap();
    let before = s.round_trips();
    assert!(t.seek(&[Value::Int64(5)]).unwrap());
    assert_eq!(s.round_trips(), before);
    assert_eq!(picture(&s, "sx3"), picture(&direct, "sx3"));
    let st = node.status();
    assert!(st.reloads >= 3, "{st:?}");
}

#[test]
fn reads_turn_stale_when_the_server_goes_silent() {
    let server = Server::start(&[]);
    let direct = server.session("ana");
    create_dictionary(&direct, "sx3", 10);
    let cfg = CacheConfig::new(&server.url("ana"), &["sx3"])
        .unwrap()
        .stale_after(Duration::from_millis(700));
    let node = CacheNode::start(cfg).unwrap();
    node.wait_ready(Duration::from_secs(30)).unwrap();
    let conn = node.connection();
    let s = conn.session().unwrap();
    let t = s.open_table("sx3").unwrap();
    assert!(t.read(1).is_ok());
    drop(direct);
    // Stop the server (SIGSTOP: it stays connected but says nothing).
    crate::harness::signal(server.pid(), "STOP");
    std::thread::sleep(Duration::from_millis(1200));
    let e = t.read(1).unwrap_err();
    crate::harness::signal(server.pid(), "CONT");
    assert_eq!(e.kind(), ErrorKind::Stale, "{e}");
    // Back: reads work again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.read(1).is_err() {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Connection::connect(&server.url("ana")).unwrap();
}

/// The application code of the other modes, unchanged: only the connection
/// string names a cache; the sessions of the process share one node.
#[test]
fn the_same_code_runs_through_a_cache_connection_string() {
    let server = Server::start(&[]);
    create_dictionary(&server.session("ana"), "sx3", 200);
    let app = |url: &str| -> (Vec<String>, u64) {
        let conn = Connection::connect(url).unwrap();
        let s = conn.session().unwrap();
        let mut t = s.open_table("sx3").unwrap();
        t.set_order(Some("titulo")).unwrap();
        let before = s.round_trips();
        let mut seen = Vec::new();
        let mut more = t.seek(&[Value::from("NOME")]).unwrap();
        while more && seen.len() < 20 {
            seen.push(t.record().unwrap().str("X3_CAMPO").unwrap().to_owned());
            more = t.next().unwrap();
        }
        (seen, s.round_trips() - before)
    };
    let (direct, trips) = app(&server.url("ana"));
    assert!(trips > 0);
    let url = format!(
        "raiz+cache://ana:{}@{}?tables=sx3&stale=10",
        crate::harness::PASSWORD,
        server.addr
    );
    let (cached, trips) = app(&url);
    assert_eq!(cached, direct);
    assert_eq!(trips, 0, "reads through the cache made round trips");
    // A second connection with the same string shares the node.
    let a = Connection::connect(&url).unwrap();
    let b = Connection::connect(&url).unwrap();
    let (na, nb) = (a.cache_node().unwrap(), b.cache_node().unwrap());
    assert_eq!(na.status().reloads, nb.status().reloads);
    assert_eq!(na.status().reloads, 1, "one load for the process");
}

/// The model's random operations through an in-process node give exactly
/// what they give embedded: moves, seeks, scopes, batches, ranges, writes,
/// transactions rolled back and committed, locks.
#[test]
fn sessions_through_a_node_get_exactly_what_embedded_gives() {
    let server = Server::start(&[]);
    let ops: usize = std::env::var("RAIZ_SERVER_MODEL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("RAIZ_SERVER_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("through a node: seed {seed} (RAIZ_SERVER_MODEL_SEED), {ops} operations");
    crate::model::create(&server.session("ana"), "m");
    let node = node(&server, &["m"]);
    let conn = node.connection();
    let remote = crate::model::run_ops(&conn.session().unwrap(), "m", seed, ops);
    let dir = tempfile::tempdir().unwrap();
    let emb = Connection::connect(&format!("file:{}", dir.path().display())).unwrap();
    let s = emb.session().unwrap();
    crate::model::create(&s, "m");
    let local = crate::model::run_ops(&s, "m", seed, ops);
    for (k, (r, l)) in remote.iter().zip(&local).enumerate() {
        if r != l {
            for j in k.saturating_sub(6)..k {
                eprintln!("N {}\nL {}", remote[j], local[j]);
            }
        }
        assert_eq!(r, l, "seed {seed}: through a node and embedded differ");
    }
}
