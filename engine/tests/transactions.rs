//! Transactions and locks: commit, rollback, savepoints, isolation (no dirty
//! reads), record / file / named locks, timeouts, deadlocks, release at session
//! end, temporary tables.

mod common;

use std::time::{Duration, Instant};

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Durability, Error, Field, FieldType, LockKey, Schema, TableOptions, Value,
};

fn accounts(db: &Database, n: i64) {
    let schema = Schema::new(vec![
        Field::new("ID", FieldType::Char(6)),
        Field::new("BAL", FieldType::Int64),
    ]);
    db.create_table("acc", &schema, TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("acc").unwrap();
    t.create_index(&IndexDef::new("by_id", vec![Segment::field("ID")]).unique())
        .unwrap();
    s.begin().unwrap();
    for i in 0..n {
        t.append(&[Value::from(format!("A{i:03}").as_str()), Value::Int64(100)])
            .unwrap();
    }
    s.commit().unwrap();
}

fn bal(t: &raiz_engine::Table, r: u64) -> i64 {
    t.read(r).unwrap().get("BAL").unwrap().as_i64().unwrap()
}

fn row(id: &str, b: i64) -> Vec<Value> {
    vec![Value::from(id), Value::Int64(b)]
}

#[test]
fn commit_makes_every_change_visible_at_once_and_rollback_none() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 3);
    let a = db.session();
    let b = db.session();
    let mut ta = a.open_table("acc").unwrap();
    let tb = b.open_table("acc").unwrap();
    a.begin().unwrap();
    ta.update(1, &row("A000", 50)).unwrap();
    ta.update(2, &row("A001", 150)).unwrap();
    let new = ta.append(&row("A999", 7)).unwrap();
    assert_eq!(new, 4);
    // Own view: the transaction's changes.
    assert_eq!(bal(&ta, 1), 50);
    assert_eq!(bal(&ta, 4), 7);
    ta.goto(4).unwrap();
    // Others: committed data only, and the reserved recno does not exist yet.
    assert_eq!(bal(&tb, 1), 100);
    assert!(matches!(tb.read(4), Err(Error::NoSuchRecord { .. })));
    assert_eq!(tb.snapshot().unwrap().len(), 3);
    a.commit().unwrap();
    assert_eq!((bal(&tb, 1), bal(&tb, 2), bal(&tb, 4)), (50, 150, 7));

    a.begin().unwrap();
    ta.update(1, &row("A000", 0)).unwrap();
    let gone = ta.append(&row("A998", 1)).unwrap();
    a.rollback().unwrap();
    assert_eq!(bal(&ta, 1), 50);
    // A rolled-back append leaves a deleted blank record: recnos are never reused.
    assert!(tb.read(gone).unwrap().is_deleted());
    assert_eq!(ta.append(&row("A997", 1)).unwrap(), gone + 1);
    assert!(ta.check(10).unwrap().is_ok());
}

#[test]
fn savepoints_roll_back_part_of_a_transaction() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let s = db.session();
    let mut t = s.open_table("acc").unwrap();
    assert!(matches!(s.savepoint(), Err(Error::Transaction(_))));
    s.begin().unwrap();
    t.update(1, &row("A000", 1)).unwrap();
    let sp = s.savepoint().unwrap();
    t.update(2, &row("A001", 2)).unwrap();
    let r = t.append(&row("A100", 3)).unwrap();
    s.rollback_to(sp).unwrap();
    assert_eq!(bal(&t, 2), 100, "undone back to the savepoint");
    t.update(2, &row("A001", 22)).unwrap();
    s.commit().unwrap();
    assert_eq!((bal(&t, 1), bal(&t, 2)), (1, 22));
    assert!(
        t.read(r).unwrap().is_deleted(),
        "the append after the savepoint became a deleted blank"
    );
    assert!(matches!(s.commit(), Err(Error::Transaction(_))));
    assert!(matches!(
        s.begin().and_then(|_| s.begin()),
        Err(Error::Transaction(_))
    ));
    s.rollback().unwrap();
}

#[test]
fn a_failed_commit_applies_nothing_across_tables() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let log = Schema::new(vec![Field::new("MSG", FieldType::Char(20))]);
    db.create_table("log", &log, TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("acc").unwrap();
    let mut l = s.open_table("log").unwrap();
    let other = db.session();
    s.begin().unwrap();
    l.append(&[Value::from("moved 10")]).unwrap();
    t.update(1, &row("A000", 90)).unwrap();
    t.append(&row("A500", 1)).unwrap();
    // Meanwhile another session commits the unique key this transaction took.
    other
        .open_table("acc")
        .unwrap()
        .append(&row("A500", 0))
        .unwrap();
    assert!(matches!(s.commit(), Err(Error::DuplicateKey { .. })));
    assert_eq!(bal(&t, 1), 100);
    assert_eq!(
        l.record_count(),
        1,
        "the log table's append became a blank, not a message"
    );
    assert!(l.read(1).unwrap().is_deleted());
    assert!(t.check(10).unwrap().is_ok() && l.check(10).unwrap().is_ok());
    assert!(db.locks().is_empty(), "a failed commit releases the locks");
}

#[test]
fn record_locks_conflict_wait_and_time_out_but_never_block_readers() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let a = db.session();
    let b = db.session();
    let ta = a.open_table("acc").unwrap();
    let mut tb = b.open_table("acc").unwrap();
    ta.lock(1, Duration::ZERO).unwrap();
    assert_eq!(bal(&tb, 1), 100, "readers are not blocked");
    assert!(matches!(
        tb.update(1, &row("A000", 1)),
        Err(Error::LockConflict { .. })
    ));
    b.set_lock_timeout(Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(matches!(
        tb.update(1, &row("A000", 1)),
        Err(Error::LockTimeout { .. })
    ));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    tb.update(2, &row("A001", 5)).unwrap();
    // A waiter gets the record once the holder unlocks.
    b.set_lock_timeout(Duration::from_secs(5));
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            assert!(ta.unlock(1));
        });
        tb.update(1, &row("A000", 9)).unwrap();
    });
    assert_eq!(bal(&ta, 1), 9);
    // File lock: others cannot write the table while it is held.
    ta.lock_file(Duration::ZERO).unwrap();
    b.set_lock_timeout(Duration::ZERO);
    assert!(matches!(
        tb.update(2, &row("A001", 6)),
        Err(Error::LockConflict { .. })
    ));
    assert!(matches!(
        tb.append(&row("A777", 6)),
        Err(Error::LockConflict { .. })
    ));
    assert!(ta.unlock_file());
    tb.append(&row("A777", 6)).unwrap();
}

#[test]
fn locks_taken_in_a_transaction_last_until_it_ends_and_are_listed() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let a = db.session();
    let b = db.session();
    let mut ta = a.open_table("acc").unwrap();
    let tb = b.open_table("acc").unwrap();
    a.begin().unwrap();
    ta.update(1, &row("A000", 1)).unwrap();
    a.lock_name("close-of-month").unwrap();
    assert!(!ta.unlock(1), "held until the transaction ends");
    assert!(!a.unlock_name("close-of-month"));
    let locks = db.locks();
    assert!(locks
        .iter()
        .any(|l| l.key == LockKey::Record("acc".into(), 1) && l.session == a.id()));
    assert!(locks
        .iter()
        .any(|l| l.key == LockKey::Name("close-of-month".into())));
    assert!(matches!(
        tb.lock(1, Duration::ZERO),
        Err(Error::LockConflict { .. })
    ));
    assert!(matches!(
        b.lock_name("close-of-month"),
        Err(Error::LockConflict { .. })
    ));
    a.commit().unwrap();
    assert!(db.locks().is_empty());
    tb.lock(1, Duration::ZERO).unwrap();
}

#[test]
fn a_transactions_appends_keep_others_from_their_recnos_and_from_the_file_lock() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let a = db.session();
    let b = db.session();
    let mut ta = a.open_table("acc").unwrap();
    let mut tb = b.open_table("acc").unwrap();
    a.begin().unwrap();
    let mine: Vec<u64> = (0..50)
        .map(|i| ta.append(&row(&format!("N{i:03}"), i)).unwrap())
        .collect();
    // A third session's record after them: the reserved recnos now lie
    // below the table's last stored record.
    let c = db.session();
    let mut tc = c.open_table("acc").unwrap();
    let after = tc.append(&row("C000", 1)).unwrap();
    assert!(after > *mine.last().unwrap());
    // Another session cannot lock, read, update or delete a recno the
    // transaction reserved: to it the record does not exist yet.
    for &r in &mine {
        assert!(matches!(
            tb.lock(r, Duration::ZERO),
            Err(Error::NoSuchRecord { .. })
        ));
        assert!(matches!(tb.read(r), Err(Error::NoSuchRecord { .. })));
        // (Refused as missing, or as locked for the one recno whose lock
        // stands for the transaction's appends.)
        let got = tb.update(r, &row("X", 1));
        assert!(
            matches!(
                got,
                Err(Error::NoSuchRecord { .. } | Error::LockConflict { .. })
            ),
            "{got:?}"
        );
        let got = tb.delete(r);
        assert!(
            matches!(
                got,
                Err(Error::NoSuchRecord { .. } | Error::LockConflict { .. })
            ),
            "{got:?}"
        );
    }
    // Nor from inside a transaction of its own.
    b.begin().unwrap();
    for &r in &mine[1..] {
        let got = tb.update(r, &row("Y", 2));
        assert!(
            matches!(
                got,
                Err(Error::NoSuchRecord { .. } | Error::LockConflict { .. })
            ),
            "{got:?}"
        );
    }
    b.commit().unwrap();
    // Nor take the whole table while the appends are pending.
    assert!(matches!(
        tb.lock_file(Duration::ZERO),
        Err(Error::LockConflict { .. })
    ));
    // Its own appends go on (and its own updates of them).
    ta.update(mine[7], &row("N007", 700)).unwrap();
    // A savepoint rolled back past the first append keeps the lock.
    let sp = a.savepoint().unwrap();
    let extra = ta.append(&row("N999", 1)).unwrap();
    a.rollback_to(sp).unwrap();
    assert!(matches!(
        tb.lock_file(Duration::ZERO),
        Err(Error::LockConflict { .. })
    ));
    a.commit().unwrap();
    assert!(db.locks().is_empty(), "{:?}", db.locks());
    // Committed: every record is there, and lockable.
    for &r in &mine {
        tb.lock(r, Duration::ZERO).unwrap();
        assert!(tb.unlock(r));
    }
    assert_eq!(bal(&tb, mine[7]), 700);
    assert!(tb.read(extra).unwrap().is_deleted());
    tb.lock_file(Duration::ZERO).unwrap();
    // While b holds the file, a's appends are refused at once.
    a.begin().unwrap();
    assert!(matches!(
        ta.append(&row("Z000", 1)),
        Err(Error::LockConflict { .. })
    ));
    a.rollback().unwrap();
    assert!(tb.unlock_file());
    assert!(ta.check(5).unwrap().is_ok());
}

#[test]
fn a_deadlock_is_reported_to_one_session_never_a_hang() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let a = db.session();
    let b = db.session();
    a.set_lock_timeout(Duration::from_secs(20));
    b.set_lock_timeout(Duration::from_secs(20));
    let mut ta = a.open_table("acc").unwrap();
    let mut tb = b.open_table("acc").unwrap();
    a.begin().unwrap();
    b.begin().unwrap();
    ta.update(1, &row("A000", 1)).unwrap();
    tb.update(2, &row("A001", 2)).unwrap();
    let t0 = Instant::now();
    let outcome = std::thread::scope(|s| {
        let h = s.spawn(move || {
            let r = tb.update(1, &row("A000", 3));
            if r.is_err() {
                b.rollback().unwrap();
            } else {
                b.commit().unwrap();
            }
            r
        });
        std::thread::sleep(Duration::from_millis(100));
        let mine = ta.update(2, &row("A001", 4));
        if mine.is_err() {
            a.rollback().unwrap();
        } else {
            a.commit().unwrap();
        }
        (mine, h.join().unwrap())
    });
    assert!(t0.elapsed() < Duration::from_secs(10), "no hang");
    let deadlocks = [&outcome.0, &outcome.1]
        .iter()
        .filter(|r| matches!(r, Err(Error::Deadlock { .. })))
        .count();
    assert_eq!(deadlocks, 1, "{outcome:?}");
    assert!(outcome.0.is_ok() || outcome.1.is_ok());
}

#[test]
fn ending_a_session_releases_its_locks_and_rolls_back() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 2);
    let b = db.session();
    let tb = b.open_table("acc").unwrap();
    {
        let a = db.session();
        let mut ta = a.open_table("acc").unwrap();
        a.begin().unwrap();
        ta.update(1, &row("A000", 0)).unwrap();
        a.lock_name("job").unwrap();
        assert!(tb.lock(1, Duration::ZERO).is_err());
        // The session and its handle go away without commit.
    }
    assert!(db.locks().is_empty());
    assert_eq!(bal(&tb, 1), 100);
    tb.lock(1, Duration::ZERO).unwrap();
    b.lock_name("job").unwrap();
    let c = db.session();
    let tc = c.open_table("acc").unwrap();
    c.begin().unwrap();
    tc.lock(2, Duration::ZERO).unwrap();
    c.end().unwrap();
    assert!(!c.in_transaction());
    assert!(db.locks().iter().all(|l| l.session != c.id()));
}

#[test]
fn temporary_tables_are_private_and_removed_at_session_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let s = db.session();
    let schema = Schema::new(vec![Field::new("K", FieldType::Int64)]);
    s.create_table(
        "work",
        &schema,
        TableOptions::default().durability(Durability::Temporary),
    )
    .unwrap();
    let mut t = s.open_table("work").unwrap();
    for i in 0..100 {
        t.append(&[Value::Int64(i)]).unwrap();
    }
    s.begin().unwrap();
    t.update(1, &[Value::Int64(-1)]).unwrap();
    s.commit().unwrap();
    assert_eq!(t.read(1).unwrap().get("K"), Some(&Value::Int64(-1)));
    assert_eq!(t.info().durability, Durability::Temporary);
    let tmp = s.temp_dir().unwrap();
    assert!(tmp.starts_with(std::env::temp_dir()));
    assert!(tmp.join("work.rzd").exists());
    assert!(
        !db.list_tables().unwrap().contains(&"work".to_string()),
        "not in the rootpath"
    );
    assert!(
        matches!(
            db.session().open_table("work"),
            Err(Error::TableNotFound { .. })
        ),
        "private"
    );
    drop(t);
    drop(s);
    assert!(!tmp.exists(), "removed with the session");
}

#[test]
fn unlogged_tables_still_take_part_in_transactions() {
    let (_s, db) = common::mem_db(1 << 20);
    let schema = Schema::new(vec![Field::new("K", FieldType::Int64)]);
    db.create_table(
        "u",
        &schema,
        TableOptions::default().durability(Durability::Unlogged),
    )
    .unwrap();
    let s = db.session();
    let mut t = s.open_table("u").unwrap();
    s.begin().unwrap();
    t.append(&[Value::Int64(1)]).unwrap();
    assert_eq!(db.session().open_table("u").unwrap().record_count(), 0);
    s.commit().unwrap();
    assert_eq!(db.session().open_table("u").unwrap().record_count(), 1);
}

#[test]
fn a_transaction_navigates_its_own_changes_in_index_order() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 3);
    let s = db.session();
    let other = db.session();
    let mut t = s.open_table("acc").unwrap();
    let mut o = other.open_table("acc").unwrap();
    t.set_order(Some("by_id")).unwrap();
    o.set_order(Some("by_id")).unwrap();
    let walk = |t: &mut raiz_engine::Table| {
        let mut v = vec![];
        let mut ok = t.first().unwrap();
        while ok {
            v.push(t.recno());
            ok = t.next().unwrap();
        }
        v
    };
    let back = |t: &mut raiz_engine::Table| {
        let mut v = vec![];
        let mut ok = t.last().unwrap();
        while ok {
            v.push(t.recno());
            ok = t.prev().unwrap();
        }
        v.reverse();
        v
    };
    s.begin().unwrap();
    let r = t.append(&row("A0015", 5)).unwrap();
    t.update(1, &row("A999", 1)).unwrap();
    // Its own order: record 1 moved to the end, the new one between 2 and 3.
    assert_eq!(walk(&mut t), vec![2, r, 3, 1]);
    assert_eq!(back(&mut t), vec![2, r, 3, 1]);
    assert!(t.seek(&[Value::from("A0015")]).unwrap());
    assert_eq!(t.recno(), r);
    assert!(
        !t.seek(&[Value::from("A000")]).unwrap(),
        "the old key is gone for it"
    );
    assert!(t.seek_last(&[Value::from("A9")]).unwrap());
    assert_eq!(t.recno(), 1);
    s.set_hide_deleted(true);
    t.delete(3).unwrap();
    assert_eq!(walk(&mut t), vec![2, r, 1]);
    // Others: committed only.
    assert_eq!(walk(&mut o), vec![1, 2, 3]);
    assert!(!o.seek(&[Value::from("A0015")]).unwrap());
    s.commit().unwrap();
    other.set_hide_deleted(true);
    assert_eq!(walk(&mut o), vec![2, r, 1]);
    assert_eq!(walk(&mut t), vec![2, r, 1]);
}

/// A large transaction navigates its own changes in index order as they are
/// made (the overlay is cached and folded forward change by change), through
/// key changes, deletes, recalls and a rollback to a savepoint; a model of the
/// live keys says what every scan must see.
#[test]
fn a_large_transaction_sees_its_own_changes_in_index_order() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    accounts(&db, 200);
    let s = db.session();
    s.set_hide_deleted(true);
    let mut t = s.open_table("acc").unwrap();
    t.set_order(Some("by_id")).unwrap();
    // Model: live key → recno.
    let mut model: BTreeMap<String, u64> = (0..200).map(|i| (format!("A{i:03}"), i + 1)).collect();
    let scan = |t: &mut raiz_engine::Table| {
        let mut seen = Vec::new();
        let mut more = t.first().unwrap();
        while more {
            let r = t.record().unwrap();
            seen.push((
                r.get("ID").unwrap().as_str().unwrap().trim().to_owned(),
                r.recno(),
            ));
            more = t.next().unwrap();
        }
        seen
    };
    let expect =
        |m: &BTreeMap<String, u64>| m.iter().map(|(k, r)| (k.clone(), *r)).collect::<Vec<_>>();
    s.begin().unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut sp = None;
    let mut at_sp = None;
    for step in 0..600u64 {
        match rnd(4) {
            0 => {
                let id = format!("B{step:04}");
                let r = t.append(&row(&id, 1)).unwrap();
                model.insert(id, r);
            }
            1 => {
                // Change a live record's key.
                if let Some((k, r)) = model
                    .iter()
                    .nth(rnd(model.len() as u64) as usize)
                    .map(|(k, r)| (k.clone(), *r))
                {
                    let id = format!("C{step:04}");
                    t.update(r, &row(&id, 2)).unwrap();
                    model.remove(&k);
                    model.insert(id, r);
                }
            }
            2 => {
                if let Some((k, r)) = model
                    .iter()
                    .nth(rnd(model.len() as u64) as usize)
                    .map(|(k, r)| (k.clone(), *r))
                {
                    t.delete(r).unwrap();
                    model.remove(&k);
                }
            }
            _ => {
                // A seek inside the transaction finds its own keys.
                if let Some((k, r)) = model.iter().nth(rnd(model.len() as u64) as usize) {
                    assert!(t.seek(&[Value::from(k.as_str())]).unwrap(), "{k}");
                    assert_eq!(t.recno(), *r);
                }
            }
        }
        if step == 300 {
            sp = Some(s.savepoint().unwrap());
            at_sp = Some(model.clone());
        }
        if step % 50 == 49 {
            assert_eq!(scan(&mut t), expect(&model), "step {step}");
        }
    }
    s.rollback_to(sp.unwrap()).unwrap();
    let model = at_sp.unwrap();
    assert_eq!(
        scan(&mut t),
        expect(&model),
        "after rollback to the savepoint"
    );
    s.commit().unwrap();
    let other = db.session();
    other.set_hide_deleted(true);
    let mut o = other.open_table("acc").unwrap();
    o.set_order(Some("by_id")).unwrap();
    assert_eq!(scan(&mut o), expect(&model), "committed");
}

#[test]
fn an_append_rolled_back_to_a_savepoint_is_a_deleted_blank_record_inside_the_transaction_too() {
    let (_s, db) = common::mem_db(1 << 20);
    accounts(&db, 10);
    let s = db.session();
    let mut t = s.open_table("acc").unwrap();
    s.begin().unwrap();
    let kept = t.append(&row("K001", 5)).unwrap();
    let sp = s.savepoint().unwrap();
    let undone = t.append(&row("U001", 6)).unwrap();
    s.rollback_to(sp).unwrap();
    // The handle still stands on the undone record: changing the order and
    // seeking must not trip over it.
    t.set_order(Some("by_id")).unwrap();
    assert!(t.seek(&[Value::from("A007")]).unwrap());
    assert_eq!(t.recno(), 8);
    let blank = t.read(undone).unwrap();
    assert!(blank.is_deleted());
    assert_eq!(blank.values(), &t.schema().empty_record()[..]);
    assert_eq!(t.read(kept).unwrap().get("BAL"), Some(&Value::Int64(5)));
    // It may even be written to, as any deleted record; commit keeps it deleted.
    t.update(undone, &row("U002", 7)).unwrap();
    s.commit().unwrap();
    let after = t.read(undone).unwrap();
    assert!(after.is_deleted());
    assert_eq!(after.get("BAL"), Some(&Value::Int64(7)));
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn a_transaction_reads_its_own_memos_and_keeps_a_deleted_records_flag_on_update() {
    let (_s, db) = common::mem_db(1 << 20);
    let schema = Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("M", FieldType::Memo),
    ]);
    db.create_table("m", &schema, TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("m").unwrap();
    let memo = |b: &[u8]| Value::Memo(raiz_engine::Memo::Data(b.to_vec()));
    let r = t.append(&[Value::Int64(1), memo(b"committed")]).unwrap();
    t.delete(r).unwrap();
    s.begin().unwrap();
    t.update(r, &[Value::Int64(2), memo(b"mine")]).unwrap();
    assert_eq!(t.read_memo(r, "M").unwrap(), b"mine");
    assert!(t.read(r).unwrap().is_deleted(), "an update keeps the flag");
    let other = db.session().open_table("m").unwrap();
    assert_eq!(other.read_memo(r, "M").unwrap(), b"committed");
    let n = t.append(&[Value::Int64(3), memo(b"new")]).unwrap();
    assert_eq!(t.read_memo(n, "M").unwrap(), b"new");
    s.commit().unwrap();
    assert_eq!(other.read_memo(r, "M").unwrap(), b"mine");
    assert!(other.read(r).unwrap().is_deleted());
}
