//! Many threads moving money between accounts under record locks, in
//! transactions, locking in random order (so deadlocks and timeouts happen and are
//! retried). The total must hold at every read — readers never see half a
//! transfer — and after a crash and recovery.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{Error, Field, FieldType, Options, Schema, TableOptions, Value};

const ACCOUNTS: u64 = 12;
const START: i64 = 1000;

fn total(t: &raiz_engine::Table) -> i64 {
    t.snapshot()
        .unwrap()
        .iter()
        .map(|r| r.get("BAL").unwrap().as_i64().unwrap())
        .sum()
}

#[test]
fn concurrent_transfers_keep_the_sum_at_every_read_and_after_recovery() {
    let storage = FaultStorage::new();
    let db = raiz_engine::Database::open_with(
        "/bank",
        Options::default()
            .storage(Arc::new(storage.clone()))
            .pool_bytes(1 << 20),
    )
    .unwrap();
    let schema = Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("BAL", FieldType::Int64),
    ]);
    db.create_table("acc", &schema, TableOptions::default())
        .unwrap();
    {
        let s = db.session();
        let mut t = s.open_table("acc").unwrap();
        t.create_index(&IndexDef::new(
            "by_bal",
            vec![Segment::field("BAL"), Segment::field("ID")],
        ))
        .unwrap();
        s.begin().unwrap();
        for i in 0..ACCOUNTS {
            t.append(&[Value::Int64(i as i64), Value::Int64(START)])
                .unwrap();
        }
        s.commit().unwrap();
    }
    let expected = ACCOUNTS as i64 * START;
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (db, stop, reads) = (db.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            let t = db.session().open_table("acc").unwrap();
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(total(&t), expected, "a reader saw half a transfer");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The reader is reading before the transfers start (on a loaded machine
    // the workers could otherwise be done before it ever ran).
    while reads.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (db, retries) = (db.clone(), retries.clone());
            std::thread::spawn(move || {
                let s = db.session();
                s.set_lock_timeout(Duration::from_millis(500));
                let mut t = s.open_table("acc").unwrap();
                let mut x = 0x2545_f491_4f6c_dd1du64 ^ (w + 1);
                let mut done = 0;
                while done < 150 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (a, b) = (x % ACCOUNTS + 1, (x / ACCOUNTS) % ACCOUNTS + 1);
                    if a == b {
                        continue;
                    }
                    let amount = (x % 50) as i64 + 1;
                    s.begin().unwrap();
                    let r = (|| -> raiz_engine::Result<()> {
                        // Lock both first (in whatever order came up), then read.
                        t.lock(a, Duration::from_millis(500))?;
                        t.lock(b, Duration::from_millis(500))?;
                        let ba = t.read(a)?.get("BAL").unwrap().as_i64().unwrap();
                        let bb = t.read(b)?.get("BAL").unwrap().as_i64().unwrap();
                        t.update(a, &[Value::Int64(a as i64 - 1), Value::Int64(ba - amount)])?;
                        t.update(b, &[Value::Int64(b as i64 - 1), Value::Int64(bb + amount)])?;
                        Ok(())
                    })();
                    match r {
                        Ok(()) => {
                            s.commit().unwrap();
                            done += 1;
                        }
                        Err(Error::Deadlock { .. } | Error::LockTimeout { .. }) => {
                            s.rollback().unwrap();
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0);
    let t = db.session().open_table("acc").unwrap();
    assert_eq!(total(&t), expected);
    assert!(t.check(10).unwrap().is_ok());
    let balances: Vec<Value> = t
        .snapshot()
        .unwrap()
        .iter()
        .map(|r| r.get("BAL").unwrap().clone())
        .collect();
    // Power cut now: every commit was durable, so recovery gives back exactly this.
    let after = storage.crash(CrashMode::DropUnsynced);
    drop(t);
    drop(db);
    let db = raiz_engine::Database::open_with("/bank", Options::default().storage(Arc::new(after)))
        .unwrap();
    let t = db.session().open_table("acc").unwrap();
    assert_eq!(total(&t), expected);
    let recovered: Vec<Value> = t
        .snapshot()
        .unwrap()
        .iter()
        .map(|r| r.get("BAL").unwrap().clone())
        .collect();
    assert_eq!(recovered, balances);
    assert!(t.check(10).unwrap().is_ok());
    eprintln!(
        "retries after deadlock or timeout: {}",
        retries.load(Ordering::Relaxed)
    );
}
