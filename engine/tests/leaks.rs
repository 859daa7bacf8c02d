//! A dropped database lets go of everything it held: its storage, its files,
//! its threads. An application that opens and closes rootpaths (or a test
//! that opens thousands of simulated disks) must not grow without bound.

use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::FaultStorage;
use raiz_engine::{Database, Field, FieldType, Options, Schema, TableOptions, Value};

fn open(storage: &FaultStorage) -> Database {
    Database::open_with(
        "/root",
        Options::default()
            .storage(Arc::new(storage.clone()))
            .pool_bytes(64 << 10),
    )
    .unwrap()
}

fn work(db: &Database) {
    let schema = Schema::new(vec![
        Field::new("K", FieldType::Char(8)),
        Field::new("N", FieldType::Int64),
        Field::new("M", FieldType::Memo),
    ]);
    if !db.table_exists("t").unwrap() {
        db.create_table("t", &schema, TableOptions::default())
            .unwrap();
        let s = db.session();
        let mut t = s.open_table("t").unwrap();
        t.create_index(&IndexDef::new("k", vec![Segment::field("K")]))
            .unwrap();
    }
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    let other = db.session();
    let _t2 = other.open_table("t").unwrap();
    s.begin().unwrap();
    for i in 0..50 {
        t.append(&[
            Value::from(format!("k{i}")),
            Value::Int64(i),
            Value::Memo(raiz_engine::Memo::Data(vec![1; 300])),
        ])
        .unwrap();
    }
    let sp = s.savepoint().unwrap();
    t.update(
        1,
        &[
            Value::from("x"),
            Value::Int64(0),
            Value::Memo(raiz_engine::Memo::Empty),
        ],
    )
    .unwrap();
    s.rollback_to(sp).unwrap();
    s.commit().unwrap();
    t.lock(2, std::time::Duration::ZERO).unwrap();
    t.set_order(Some("k")).unwrap();
    let mut more = t.first().unwrap();
    while more {
        more = t.next().unwrap();
    }
    db.checkpoint().unwrap();
}

#[test]
fn a_dropped_database_lets_go_of_its_storage() {
    let storage = FaultStorage::new();
    for round in 0..3 {
        let db = open(&storage);
        work(&db);
        assert!(storage.handles() > 1);
        drop(db);
        assert_eq!(
            storage.handles(),
            1,
            "round {round}: something still holds the database after it was dropped"
        );
    }
}

#[test]
fn a_database_dropped_with_sessions_and_handles_still_alive_lets_go_when_they_do() {
    let storage = FaultStorage::new();
    let db = open(&storage);
    work(&db);
    let s = db.session();
    let t = s.open_table("t").unwrap();
    drop(db);
    drop(t);
    drop(s);
    assert_eq!(storage.handles(), 1);
}

#[test]
fn a_crashed_copy_and_its_recovery_let_go_too() {
    let storage = FaultStorage::new();
    let db = open(&storage);
    work(&db);
    let after = storage.crash(raiz_engine::storage::CrashMode::Random { seed: 7 });
    drop(db);
    assert_eq!(storage.handles(), 1);
    let db = open(&after);
    work(&db);
    drop(db);
    assert_eq!(after.handles(), 1);
}

#[test]
fn databases_that_met_injected_faults_and_power_cuts_let_go_too() {
    for seed in 0..60 {
        let storage = FaultStorage::new();
        let db = open(&storage);
        work(&db);
        let s = db.session();
        storage.arm_seeded(seed, 300);
        let mut t = s.open_table("t").unwrap();
        for i in 0..200 {
            let r = s.begin().and_then(|()| {
                t.append(&[
                    Value::from(format!("f{i}")),
                    Value::Int64(i),
                    Value::Memo(raiz_engine::Memo::Data(vec![2; 900])),
                ])?;
                s.commit()
            });
            if r.is_err() {
                break;
            }
        }
        let after = storage.crash(raiz_engine::storage::CrashMode::Random { seed });
        drop(t);
        drop(s);
        drop(db);
        assert_eq!(
            storage.handles(),
            1,
            "seed {seed}: the faulted database is still held"
        );
        let db = open(&after);
        drop(db);
        assert_eq!(
            after.handles(),
            1,
            "seed {seed}: the recovered database is still held"
        );
    }
}
