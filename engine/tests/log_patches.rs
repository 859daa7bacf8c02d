//! Index changes logged compactly, replayed exactly: a key inserted into or
//! removed from a leaf is logged as a move, a split's new node as copies of
//! the node it came from, a split's cleared half as a run of zeros. After a
//! power cut at any point (with a checkpoint in between, so pages are logged
//! whole again and then compactly again), recovery must give back exactly the
//! acknowledged rows, in every index order, and `check` must pass.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::CrashMode;
use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("KEY", FieldType::Binary(24)),
        Field::new("GRP", FieldType::Char(6)),
        Field::new("N", FieldType::Int64),
    ])
}

/// Keys in scrambled order, alike in places (a constant middle), as ERP
/// codes often are.
fn key(i: u64) -> Vec<u8> {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = x.to_be_bytes().to_vec();
    k.extend_from_slice(b"FILIAL01");
    k.extend_from_slice(&i.to_le_bytes());
    k
}

fn row(i: u64) -> Vec<Value> {
    vec![
        Value::Binary(key(i)),
        Value::from(format!("G{:03}", i % 97).as_str()),
        Value::Int64(i as i64),
    ]
}

fn create(db: &Database) {
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "grp",
        vec![Segment::field("GRP"), Segment::field("N")],
    ))
    .unwrap();
}

/// The live rows (N → recno) of a database, checked against `model` in
/// both index orders, and `check`.
fn verify(db: &Database, model: &BTreeMap<u64, bool>, what: &str) {
    let s = db.session();
    s.set_hide_deleted(true);
    let mut t = s.open_table("t").unwrap();
    let live: Vec<u64> = model.iter().filter(|(_, &l)| l).map(|(&i, _)| i).collect();
    // By key.
    let mut want: Vec<(Vec<u8>, u64)> = live.iter().map(|&i| (key(i), i)).collect();
    want.sort();
    t.set_order(Some("key")).unwrap();
    let mut got = Vec::new();
    let mut more = t.first().unwrap();
    while more {
        let r = t.record().unwrap();
        let Value::Int64(n) = r.values()[2] else {
            panic!("{what}: {r:?}")
        };
        got.push(n as u64);
        more = t.next().unwrap();
    }
    let want_n: Vec<u64> = want.iter().map(|(_, i)| *i).collect();
    assert_eq!(got, want_n, "{what}: key order");
    // By group then N.
    let mut want: Vec<(String, u64)> = live
        .iter()
        .map(|&i| (format!("G{:03}", i % 97), i))
        .collect();
    want.sort();
    t.set_order(Some("grp")).unwrap();
    let mut got = Vec::new();
    let mut more = t.first().unwrap();
    while more {
        let Value::Int64(n) = t.record().unwrap().values()[2] else {
            unreachable!()
        };
        got.push(n as u64);
        more = t.next().unwrap();
    }
    assert_eq!(
        got,
        want.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
        "{what}: grp order"
    );
    let report = t.check(10).unwrap();
    assert!(report.is_ok(), "{what}: {report:?}");
}

#[test]
fn leaf_moves_split_copies_and_cleared_halves_replay_exactly_after_power_cuts() {
    let (storage, db) = common::fault_db(8 << 20);
    create(&db);
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.set_order(Some("key")).unwrap();
    let mut model: BTreeMap<u64, bool> = BTreeMap::new();
    let mut cuts = 0;
    for i in 0..3000u64 {
        if i % 7 == 3 && i > 10 {
            // Remove an earlier row (a left shift in both leaves).
            let victim = (i * 31) % i;
            if model.get(&victim) == Some(&true) {
                assert!(t.seek(&[Value::Binary(key(victim))]).unwrap());
                let r = t.recno();
                t.delete(r).unwrap();
                model.insert(victim, false);
            }
        }
        t.append(&row(i)).unwrap();
        model.insert(i, true);
        if i == 1500 {
            // Pages are logged whole again after this, then compactly again.
            db.checkpoint().unwrap();
        }
        if i % 700 == 699 {
            cuts += 1;
            let image = storage.crash(CrashMode::DropUnsynced);
            let recovered = common::open_on(Arc::new(image), 8 << 20);
            verify(&recovered, &model, &format!("power cut after row {i}"));
        }
    }
    assert_eq!(cuts, 4);
    verify(&db, &model, "live");
}
