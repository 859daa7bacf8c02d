//! Device faults on unlogged tables through the fault-injecting storage: a failed
//! fsync, a full disk, a power cut, torn writes — on command and at seeded random
//! points. (Logged tables: `durability.rs`.)
//!
//! `RAIZ_FAULT_SEEDS` sets how many seeded runs to make (default 40).

mod common;

use std::sync::Arc;

use raiz_engine::storage::{CrashMode, FaultStorage, FaultTrigger};
use raiz_engine::{Database, Durability, Error, Memo, RecordFormat, TableOptions, Value};

const POOL: usize = 64 << 10;

fn seeds() -> u64 {
    std::env::var("RAIZ_FAULT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn create(db: &Database, format: RecordFormat) {
    db.create_table(
        "t",
        &common::all_types(),
        TableOptions::default()
            .format(format)
            .page_size(4096)
            .durability(Durability::Unlogged),
    )
    .unwrap();
}

fn row(i: u64) -> Vec<Value> {
    common::all_types_row(
        i,
        i.is_multiple_of(4)
            .then(|| vec![i as u8; 100 + (i as usize * 37) % 6000]),
    )
}

fn expect_row(t: &raiz_engine::Table, recno: u64, i: u64) {
    let rec = t
        .read(recno)
        .unwrap_or_else(|e| panic!("record {recno}: {e}"));
    assert_eq!(
        rec.values()[6],
        Value::Int64(i as i64 - 1000),
        "record {recno}"
    );
    let memo = t.read_memo(recno, "NOTES").unwrap();
    let want = if i.is_multiple_of(4) {
        vec![i as u8; 100 + (i as usize * 37) % 6000]
    } else {
        vec![]
    };
    assert_eq!(memo, want, "memo of {recno}");
}

#[test]
fn failed_fsync_is_an_error_then_writes_are_refused_until_reopen() {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let (storage, db) = common::fault_db(POOL);
        create(&db, format);
        let mut t = db.session().open_table("t").unwrap();
        for i in 0..200 {
            t.append(&row(i)).unwrap();
        }
        t.flush().unwrap();
        for i in 200..300 {
            t.append(&row(i)).unwrap();
        }
        storage.fail_next_syncs(1);
        match t.flush() {
            Err(Error::SyncFailed { .. }) => {}
            other => panic!("expected a sync failure, got {other:?}"),
        }
        assert!(matches!(t.append(&row(999)), Err(Error::Poisoned { .. })));
        assert!(matches!(t.flush(), Err(Error::Poisoned { .. })));
        // Reads still work.
        expect_row(&t, 1, 0);
        expect_row(&t, 250, 249);
        drop(t);
        drop(db);
        // A power cut now loses what the failed sync did not make durable; the
        // table opens, verified, with everything the successful flush covered.
        let after = storage.crash(CrashMode::DropUnsynced);
        let db = common::open_on(Arc::new(after), POOL);
        let t = db.session().open_table("t").unwrap();
        assert!(t.record_count() >= 200);
        for i in 0..200 {
            expect_row(&t, i + 1, i);
        }
        assert!(db.repairs()[0].1.verified);
        let mut t = t;
        t.append(&row(1000)).unwrap();
    }
}

#[test]
fn full_disk_fails_the_writer_and_keeps_the_data() {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let (storage, db) = common::fault_db(POOL);
        create(&db, format);
        let mut t = db.session().open_table("t").unwrap();
        for i in 0..100 {
            t.append(&row(i)).unwrap();
        }
        t.flush().unwrap();
        storage.fill_disk();
        let mut failures = 0;
        let mut ids: Vec<u64> = (0..100).collect();
        for i in 100..400 {
            let appended = ids.len() as u64;
            match t.append(&row(i)) {
                Ok(r) => {
                    assert_eq!(r, appended + 1);
                    ids.push(i);
                }
                Err(e @ Error::DiskFull { .. }) => {
                    assert!(e.is_retryable());
                    failures += 1;
                    assert_eq!(t.record_count(), appended, "a failed append adds nothing");
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(failures > 0, "the disk filled up");
        let appended = ids.len() as u64;
        for (k, &i) in ids.iter().enumerate() {
            expect_row(&t, k as u64 + 1, i);
        }
        storage.set_capacity(None);
        let r = t.append(&row(5000)).unwrap();
        assert_eq!(r, appended + 1);
        t.close().unwrap();
        drop(db);
        let db = common::open_on(Arc::new(storage.clone()), POOL);
        let t = db.session().open_table("t").unwrap();
        assert_eq!(t.record_count(), appended + 1);
        expect_row(&t, appended + 1, 5000);
        assert!(db.repairs().is_empty());
    }
}

#[test]
fn power_cut_keeps_every_flushed_record() {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let (storage, db) = common::fault_db(POOL);
        create(&db, format);
        let mut t = db.session().open_table("t").unwrap();
        for i in 0..500 {
            t.append(&row(i)).unwrap();
            if i == 299 {
                t.flush().unwrap();
            }
        }
        for r in (1..300).step_by(7) {
            t.update(r, &row(10_000 + r)).unwrap();
        }
        assert!(storage.unsynced_writes() > 0);
        let after = storage.crash(CrashMode::DropUnsynced);
        drop(t);
        drop(db);
        let db = common::open_on(Arc::new(after), POOL);
        let t = db.session().open_table("t").unwrap();
        assert!(db.repairs()[0].1.verified, "an unclean table is verified");
        assert!(t.record_count() >= 300);
        for r in 1..=300u64 {
            // Either the flushed version or, when the page reached the disk, the update.
            let rec = t.read(r).unwrap();
            let v = rec.values()[6].as_i64().unwrap();
            let i = (v + 1000) as u64;
            assert!(i == r - 1 || i == 10_000 + r, "record {r} holds {v}");
            expect_row(&t, r, i);
        }
    }
}

#[test]
fn seeded_faults_never_corrupt_what_was_flushed() {
    for seed in 0..seeds() {
        for format in [RecordFormat::Fixed, RecordFormat::Variable] {
            run_seed(seed, format);
        }
    }
}

fn run_seed(seed: u64, format: RecordFormat) {
    let storage = FaultStorage::new();
    let db = common::open_on(Arc::new(storage.clone()), POOL);
    create(&db, format);
    let mut t = db.session().open_table("t").unwrap();
    let (trigger, at) = storage.arm_seeded(seed, 950);
    // model[r-1] = seed value of record r; `durable` = model at the last good flush.
    let mut model: Vec<u64> = Vec::new();
    let mut durable: Vec<u64> = Vec::new();
    let mut failed = None;
    for step in 0..1200u64 {
        let result = if step % 5 == 4 && !model.is_empty() {
            let r = (step * 7919 + seed) % model.len() as u64 + 1;
            t.update(r, &row(20_000 + step))
                .map(|_| model[r as usize - 1] = 20_000 + step)
        } else if step % 97 == 96 {
            t.flush().map(|_| durable = model.clone())
        } else {
            t.append(&row(step)).map(|r| {
                assert_eq!(r, model.len() as u64 + 1);
                model.push(step);
            })
        };
        if let Err(e) = result {
            assert!(
                matches!(
                    e,
                    Error::DiskFull { .. }
                        | Error::SyncFailed { .. }
                        | Error::Io { .. }
                        | Error::Poisoned { .. }
                ),
                "seed {seed}: unexpected error {e}"
            );
            failed = Some(e);
            break;
        }
    }
    let injected = storage.injected_faults();
    assert!(
        failed.is_some() || injected == 0 || trigger == FaultTrigger::FailSync,
        "seed {seed}: fault {trigger:?} at {at} went unnoticed"
    );
    drop(t);
    drop(db);
    // Whatever happened, a power cut now must leave every flushed record intact.
    let after = storage.crash(CrashMode::DropUnsynced);
    let db = common::open_on(Arc::new(after), POOL);
    let t = db.session().open_table("t").unwrap();
    assert!(t.record_count() >= durable.len() as u64, "seed {seed}");
    for (i, &v) in durable.iter().enumerate() {
        let r = i as u64 + 1;
        let got = (t.read(r).unwrap().values()[6].as_i64().unwrap() + 1000) as u64;
        // A record updated after the flush may show either version.
        if got != v {
            assert!(
                got >= 20_000 && model.get(i) == Some(&got),
                "seed {seed}: record {r} is {got}, flushed {v}"
            );
        }
        expect_row(&t, r, got);
    }
    let report = t.check(10).unwrap();
    assert!(report.is_ok(), "seed {seed}: {report:?}");
}

#[test]
fn torn_writes_and_random_crashes_leave_a_table_that_opens_reads_and_checks() {
    for seed in 0..seeds() {
        let (storage, db) = common::fault_db(POOL);
        create(&db, RecordFormat::Variable);
        let mut t = db.session().open_table("t").unwrap();
        for i in 0..300 {
            t.append(&row(i)).unwrap();
            if i == 150 {
                t.flush().unwrap();
                storage.tear_next_write();
            }
        }
        let after = storage.crash(CrashMode::Random { seed });
        drop(t);
        drop(db);
        // The verification at open turns what cannot be read back into deleted
        // blank records: the table opens, every record reads, check passes.
        let db = common::open_on(Arc::new(after), POOL);
        let t = db
            .session()
            .open_table("t")
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let blank = common::all_types().empty_record();
        for r in 1..=t.record_count() {
            let rec = t.read(r).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            if rec.is_deleted() {
                assert_eq!(rec.values(), &blank[..], "seed {seed}: record {r}");
                assert!(t.read_memo(r, "NOTES").unwrap().is_empty());
            } else {
                // Record r was appended as row r - 1, memo included.
                expect_row(&t, r, r - 1);
            }
        }
        let report = t.check(10).unwrap();
        assert!(report.is_ok(), "seed {seed}: {report:?}");
    }
}

#[test]
fn memo_write_on_a_full_disk_leaves_the_record_unchanged() {
    let (storage, db) = common::fault_db(POOL);
    create(&db, RecordFormat::Fixed);
    let mut t = db.session().open_table("t").unwrap();
    let r = t.append(&row(4)).unwrap();
    t.flush().unwrap();
    storage.fill_disk();
    let mut v = t.read(r).unwrap().into_values();
    v[5] = Value::Memo(Memo::Data(vec![9u8; 50_000]));
    v[6] = Value::Int64(42);
    assert!(matches!(t.update(r, &v), Err(Error::DiskFull { .. })));
    expect_row(&t, r, 4);
    storage.set_capacity(None);
    t.update(r, &v).unwrap();
    assert_eq!(t.read_memo(r, "NOTES").unwrap(), vec![9u8; 50_000]);
}
