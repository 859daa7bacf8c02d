//! The change feed: commits to watched tables come out numbered in commit
//! order, durable, with what the commits stored; replaying them on a copy
//! (`Session::replicate`) gives the same table — records, memos and every
//! index's order — under concurrent writers, transactions, savepoints and
//! rollbacks. Epochs survive a clean close and change after a crash.
//!
//! `RAIZ_FEED_SEED` replays a run; `RAIZ_FEED_OPS` lengthens it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use raiz_engine::feed::{FeedBody, FeedEntry, RecordChange, TableEvent};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage, MemoryStorage};
use raiz_engine::{
    Database, Field, FieldType, LogOptions, Memo, Options, Schema, TableOptions, Value,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("SEQ", FieldType::Int64),
        Field::new("CODE", FieldType::Char(8)),
        Field::new("NAME", FieldType::Char(12)),
        Field::new("QTY", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ])
}

fn options() -> TableOptions {
    TableOptions::default().serial("SEQ")
}

fn indexes() -> Vec<IndexDef> {
    vec![
        IndexDef::new("code", vec![Segment::field("CODE")]).unique(),
        IndexDef::new(
            "name",
            vec![Segment::field("NAME").upper(), Segment::field("QTY")],
        ),
    ]
}

fn create(db: &Database, name: &str) {
    db.create_table(name, &schema(), options()).unwrap();
    let s = db.session();
    let mut t = s.open_table(name).unwrap();
    for d in indexes() {
        t.create_index(&d).unwrap();
    }
}

fn mem() -> Database {
    Database::open_with(
        "/root",
        Options::default().storage(Arc::new(MemoryStorage::new())),
    )
    .unwrap()
}

/// Every record (memos read) and every index's order, for comparing copies.
fn picture(db: &Database, name: &str) -> Vec<String> {
    let s = db.session();
    let mut t = s.open_table(name).unwrap();
    let mut out = Vec::new();
    for r in t.snapshot().unwrap() {
        let memo = t.read_memo(r.recno(), "NOTE").unwrap();
        let mut v = r.values().to_vec();
        v[4] = Value::Memo(Memo::Data(memo));
        out.push(format!("{} {} {:?}", r.recno(), r.is_deleted(), v));
    }
    for order in ["code", "name"] {
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

/// Applies feed entries to a copy holding `name` (created like the source).
fn apply(copy: &Database, name: &str, entries: &[FeedEntry], last: &mut u64) {
    let s = copy.session();
    let t = s.open_table(name).unwrap();
    for e in entries {
        assert!(e.seq > *last, "numbers go up: {} after {}", e.seq, last);
        *last = e.seq;
        match &e.body {
            FeedBody::Commit(tables) => {
                for tc in tables {
                    assert_eq!(tc.table, name);
                    s.replicate(&[(&t, &tc.changes)]).unwrap();
                }
            }
            FeedBody::Table { .. } => panic!("no table event expected: {e:?}"),
        }
    }
}

fn row(rng: &mut StdRng) -> Vec<Value> {
    let memo = match rng.random_range(0..4) {
        0 => Memo::Data(vec![b'm'; rng.random_range(1..5000)]),
        _ => Memo::Empty,
    };
    vec![
        Value::Int64(0),
        Value::from(format!("K{:05}", rng.random_range(0..20000)).as_str()),
        Value::from(["ana", "Bia", "caio", "DORA"][rng.random_range(0..4)]),
        Value::Int64(rng.random_range(0..50)),
        Value::Memo(memo),
    ]
}

/// One random unit of work by one writer: a single write or a transaction
/// with a savepoint that may be rolled back, or a whole rolled-back one.
fn work(s: &raiz_engine::Session, t: &mut raiz_engine::Table, rng: &mut StdRng) {
    let count = t.record_count();
    let recno = rng.random_range(1..=count.max(1));
    let single = |t: &mut raiz_engine::Table, rng: &mut StdRng| -> raiz_engine::Result<()> {
        match rng.random_range(0..6) {
            0 | 1 => t.append(&row(rng)).map(drop),
            2 => {
                let old = t.read(recno)?;
                let mut v = row(rng);
                v[0] = old.values()[0].clone();
                if rng.random_bool(0.5) {
                    // Keep the stored memo.
                    v[4] = old.values()[4].clone();
                }
                t.update(recno, &v)
            }
            3 => t.update_fields(recno, &[("QTY", Value::Int64(rng.random_range(0..50)))]),
            4 => t.delete(recno),
            _ => t.recall(recno),
        }
    };
    match rng.random_range(0..5) {
        0 => {
            let _ = s.begin();
            for _ in 0..rng.random_range(1..4) {
                let _ = single(t, rng);
            }
            if let Ok(sp) = s.savepoint() {
                for _ in 0..rng.random_range(1..3) {
                    let _ = single(t, rng);
                }
                if rng.random_bool(0.5) {
                    let _ = s.rollback_to(sp);
                }
            }
            if rng.random_bool(0.8) {
                let _ = s.commit();
            } else {
                let _ = s.rollback();
            }
        }
        _ => {
            let _ = single(t, rng);
        }
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn nothing_is_queued_for_tables_nobody_watches() {
    let (_, db) = common::mem_db(1 << 20);
    create(&db, "t");
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(1))).unwrap();
    assert!(db.feed().take(Duration::ZERO).unwrap().is_empty());
    let before = db.feed().last_seq();
    db.feed().watch("other");
    t.append(&row(&mut StdRng::seed_from_u64(2))).unwrap();
    assert!(db.feed().take(Duration::ZERO).unwrap().is_empty());
    assert_eq!(db.feed().last_seq(), before);
}

#[test]
fn concurrent_writers_replayed_on_a_copy_give_the_same_table() {
    let seed = env("RAIZ_FEED_SEED", rand::random());
    let ops = env("RAIZ_FEED_OPS", 400);
    eprintln!("feed: seed {seed} (RAIZ_FEED_SEED), {ops} operations per writer (RAIZ_FEED_OPS)");
    let (_, db) = common::mem_db(4 << 20);
    create(&db, "t");
    let copy = mem();
    create(&copy, "t");
    let since = db.feed().watch("t");
    assert_eq!(since, db.feed().last_seq());
    let mut last = since;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let db = db.clone();
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed + w);
                    let s = db.session();
                    s.set_lock_timeout(Duration::from_millis(50));
                    let mut t = s.open_table("t").unwrap();
                    for _ in 0..ops {
                        work(&s, &mut t, &mut rng);
                    }
                })
            })
            .collect();
        // Apply while they write, as a node does.
        while writers.iter().any(|w| !w.is_finished()) {
            let got = db.feed().take(Duration::from_millis(5)).unwrap();
            apply(&copy, "t", &got, &mut last);
        }
    });
    let got = db.feed().take(Duration::from_millis(20)).unwrap();
    apply(&copy, "t", &got, &mut last);
    assert_eq!(
        last,
        db.feed().last_seq(),
        "seed {seed}: every entry came out"
    );
    let records = db.session().open_table("t").unwrap().record_count();
    eprintln!("feed: {last} entries, {records} records");
    assert!(
        last > ops && records > ops / 2,
        "seed {seed}: the writers wrote ({records} records)"
    );
    assert_eq!(picture(&copy, "t"), picture(&db, "t"), "seed {seed}");
    let s = copy.session();
    let t = s.open_table("t").unwrap();
    assert!(t.check(10).unwrap().problems.is_empty(), "seed {seed}");
}

#[test]
fn a_delayed_commit_leaves_the_feed_only_once_durable() {
    let storage = MemoryStorage::new();
    let log = LogOptions {
        sync_delay: Duration::from_millis(300),
        ..LogOptions::default()
    };
    let db = Database::open_with(
        "/root",
        Options::default().storage(Arc::new(storage)).log(log),
    )
    .unwrap();
    create(&db, "t");
    db.feed().watch("t");
    let s = db.session();
    s.set_delayed_durability(true);
    let mut t = s.open_table("t").unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(3))).unwrap();
    assert!(
        db.feed()
            .take(Duration::from_millis(50))
            .unwrap()
            .is_empty(),
        "not durable yet"
    );
    let got = db.feed().take(Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 1, "out once the log synced");
}

#[test]
fn table_events_are_numbered_between_the_commits() {
    let (_, db) = common::mem_db(1 << 20);
    create(&db, "t");
    db.feed().watch("t");
    db.feed().watch("u");
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(4))).unwrap();
    t.create_index(&IndexDef::new("qty", vec![Segment::field("QTY")]))
        .unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(5))).unwrap();
    t.pack().unwrap();
    db.create_table("u", &schema(), options()).unwrap();
    drop(t);
    db.drop_table("u").unwrap();
    let got = db.feed().take(Duration::from_millis(20)).unwrap();
    let kinds: Vec<String> = got
        .iter()
        .map(|e| match &e.body {
            FeedBody::Commit(t) => format!("commit {}", t[0].table),
            FeedBody::Table { table, event } => format!("{event:?} {table}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "commit t",
            "Rewritten t",
            "commit t",
            "Rewritten t",
            "Created u",
            "Dropped u"
        ]
    );
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(matches!(
        got[1].body,
        FeedBody::Table {
            event: TableEvent::Rewritten,
            ..
        }
    ));
}

#[test]
fn an_append_carries_its_serial_and_an_update_keeps_its_memo() {
    let (_, db) = common::mem_db(1 << 20);
    create(&db, "t");
    db.feed().watch("t");
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    let mut v = row(&mut StdRng::seed_from_u64(6));
    v[4] = Value::Memo(Memo::Data(b"first".to_vec()));
    let r = t.append(&v).unwrap();
    let stored = t.read(r).unwrap();
    let mut u = stored.values().to_vec();
    u[3] = Value::Int64(49);
    t.update(r, &u).unwrap();
    let got = db.feed().take(Duration::from_millis(20)).unwrap();
    let FeedBody::Commit(a) = &got[0].body else {
        panic!()
    };
    let RecordChange::Append { values, .. } = &a[0].changes[0] else {
        panic!()
    };
    assert_eq!(values[0], stored.values()[0], "the serial as stored");
    assert_ne!(values[0], Value::Int64(0));
    let FeedBody::Commit(b) = &got[1].body else {
        panic!()
    };
    let RecordChange::Update { values, .. } = &b[0].changes[0] else {
        panic!()
    };
    assert!(matches!(values[4], Value::Memo(Memo::Stored(_))), "kept");
    // A copy keeps its own stored memo for it.
    let copy = mem();
    create(&copy, "t");
    let mut last = 0;
    apply(&copy, "t", &got, &mut last);
    assert_eq!(picture(&copy, "t"), picture(&db, "t"));
}

#[test]
fn the_epoch_survives_a_clean_close_and_changes_after_a_crash() {
    let storage = FaultStorage::new();
    let open = |s: &FaultStorage| {
        Database::open_with("/root", Options::default().storage(Arc::new(s.clone()))).unwrap()
    };
    let db = open(&storage);
    create(&db, "t");
    db.feed().watch("t");
    let first = db.feed().epoch();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    for i in 0..3 {
        t.append(&row(&mut StdRng::seed_from_u64(i))).unwrap();
    }
    let seq = db.feed().last_seq();
    assert_eq!(seq, 3);
    drop(t);
    drop(s);
    drop(db);
    let db = open(&storage);
    assert_eq!(db.feed().epoch(), first, "a clean close keeps the epoch");
    assert_eq!(db.feed().last_seq(), seq, "and the numbers go on");
    db.feed().watch("t");
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(9))).unwrap();
    assert_eq!(db.feed().last_seq(), seq + 1);
    let after = storage.crash(CrashMode::KeepAll);
    drop(t);
    drop(s);
    drop(db);
    let db = open(&after);
    assert_ne!(db.feed().epoch(), first, "after a crash: a new epoch");
    assert!(db.feed().last_seq() >= seq, "numbers never go back");
}

#[test]
fn a_group_members_feed_numbers_changes_by_log_entry() {
    let db = mem();
    create(&db, "t");
    create(&db, "_raiz_own");
    let feed = db.feed().clone();
    // Before: nothing watched, nothing in the feed.
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(1))).unwrap();
    assert!(feed.take(Duration::ZERO).unwrap().is_empty());
    // From entry 5 on: every table but the member's own is in it, numbered
    // after 5 << 20; the floor is past every earlier entry's numbers.
    let shift = raiz_engine::feed::ENTRY_SHIFT;
    feed.follow_group(5);
    assert!(feed.follows_group());
    assert_eq!(feed.last_seq(), 5 << shift);
    assert_eq!(feed.watched_since("t"), Some(5 << shift));
    feed.begin_entry(5);
    t.append(&row(&mut StdRng::seed_from_u64(2))).unwrap();
    let mut own = s.open_table("_raiz_own").unwrap();
    own.append(&row(&mut StdRng::seed_from_u64(3))).unwrap();
    t.append(&row(&mut StdRng::seed_from_u64(4))).unwrap();
    // Entry 9 (6 to 8 changed nothing watched).
    feed.begin_entry(9);
    t.append(&row(&mut StdRng::seed_from_u64(5))).unwrap();
    let seqs: Vec<u64> = feed
        .take(Duration::from_secs(1))
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [(5 << shift) + 1, (5 << shift) + 2, (9 << shift) + 1]);
    assert_eq!(feed.last_seq(), (9 << shift) + 1);
    // A node anywhere in entry 5 resumes at its start; one at a boundary
    // stays there.
    assert_eq!(feed.resume_point((5 << shift) + 2), 5 << shift);
    assert_eq!(feed.resume_point(9 << shift), 9 << shift);
    // The group's epoch replaces the rootpath's.
    feed.set_epoch(0xfeed);
    assert_eq!(feed.epoch(), 0xfeed);
    // Elsewhere a position is kept as it is.
    let plain = mem();
    assert_eq!(
        plain.feed().resume_point((5 << shift) + 2),
        (5 << shift) + 2
    );
}
