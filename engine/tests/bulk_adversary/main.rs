//! Adversarial, seeded random schedules against the large-append commit path
//! (deferred, sorted index entries; bottom-up build of an empty index), the
//! in-place rekeying of deleted records' unique keys, and the transaction's
//! own unique check / lazily built ordered view.
//!
//! Every step is compared with an in-memory model: each record's values,
//! deleted flag and memo, every index walked in order with and without
//! deleted records, seeks, and `check`; power cuts on `FaultStorage` between
//! steps, four threads racing for the same keys.
//!
//! Seed: `RAIZ_ADV_SEED` (a fixed default, printed; set it to explore other
//! schedules). Rounds: `RAIZ_ADV_ROUNDS` (small default).

#[path = "../common/mod.rs"]
mod common;
mod model;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;

use raiz_engine::storage::CrashMode;
use raiz_engine::{Error, TableOptions};

use model::*;
use world::*;

#[test]
fn random_schedule_of_large_appends_collisions_savepoints_and_power_cuts() {
    schedule(world(0, false));
}

#[test]
fn random_schedule_on_unlogged_tables() {
    schedule(world(0x5EED, true));
}

fn schedule(mut w: World) {
    for round in 0..rounds(20) {
        eprintln!("round {round}");
        let name = if w.rng.chance(70) { "t1" } else { "t2" };
        match w.rng.below(10) {
            0 => {
                let f = w.fresh_table();
                w.load_multi(&[f]);
            }
            1 => {
                // Two tables in one commit, one of them perhaps new.
                let other = if w.rng.chance(50) {
                    w.fresh_table()
                } else {
                    "t2".to_owned()
                };
                let mut v = vec!["t1".to_owned(), other];
                w.rng.shuffle(&mut v);
                w.load_multi(&v);
            }
            2 => {
                w.wipe(name);
                w.load(name);
            }
            _ => w.load(name),
        }
        match w.rng.below(6) {
            0 | 1 => w.delete_recall(name),
            2 => w.mixed("t1", "t2"),
            3 => w.mixed("t2", "t1"),
            _ => w.load(name),
        }
        if w.rng.chance(35) && !w.unlogged {
            w.power_cut();
        }
    }
    if !w.unlogged {
        w.power_cut();
    }
}

// ---------------------------------------------------------------- threads

/// What one thread did to the shared table.
#[derive(Default)]
struct Log {
    recs: BTreeMap<u64, Rec>,
}

#[test]
fn threads_loading_separate_and_shared_tables_with_contested_keys() {
    let seed = seed(0xC0FFEE);
    let (storage, db) = common::fault_db(8 << 20);
    let threads = 4usize;
    let gate = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refusals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..threads {
        create(&db, &format!("p{i}"));
    }
    create(&db, "shared");
    let db = Arc::new(db);
    let rounds = rounds(5).clamp(1, 12);
    let handles: Vec<_> = (0..threads)
        .map(|ti| {
            let db = db.clone();
            let gate = gate.clone();
            let refusals = refusals.clone();
            // Threads meet before appending to and before committing to the
            // shared table (a thread that panicked lets the others go after a while).
            let meet = move |k: usize| {
                gate.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let t0 = std::time::Instant::now();
                while gate.load(std::sync::atomic::Ordering::SeqCst) < k * threads
                    && t0.elapsed() < std::time::Duration::from_secs(10)
                {
                    std::thread::yield_now();
                }
            };
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (ti as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
                let s = db.session();
                let mut own = s.open_table(&format!("p{ti}")).unwrap();
                let mut sh = s.open_table("shared").unwrap();
                let mut own_model = Model::default();
                let mut log = Log::default();
                let base = 10_000_000 * (ti as i64 + 1);
                let mut next = base;
                for round in 0..rounds {
                    // Own table: a large load, sometimes rolled back to a savepoint.
                    let n = rng.range(240, 900);
                    s.begin().unwrap();
                    let mut pend = Vec::new();
                    let mut blanks = Vec::new();
                    for k in 0..n {
                        next += 1;
                        let r = Rec::new(next, rng.chance(10));
                        let rn = own.append(&r.values()).unwrap();
                        pend.push((rn, r));
                        if k == n / 2 && rng.chance(50) {
                            let sp = s.savepoint().unwrap();
                            for _ in 0..rng.range(1, 20) {
                                next += 1;
                                blanks.push(own.append(&Rec::new(next, false).values()).unwrap());
                            }
                            s.rollback_to(sp).unwrap();
                        }
                    }
                    s.commit().unwrap_or_else(|e| panic!("thread {ti} round {round} own commit: {e:?}"));
                    for (rn, r) in pend {
                        own_model.recs.insert(rn, r);
                    }
                    for b in blanks {
                        own_model.recs.insert(b, Rec::blank());
                    }
                    // Shared table: a large load with contested codes.
                    let n = rng.range(250, 700);
                    let contested: Vec<i64> = (0..3).map(|j| 1_000_000 + round as i64 * 10 + j).collect();
                    meet(2 * round + 1);
                    s.begin().unwrap();
                    let mut pend = Vec::new();
                    let mut took = Vec::new();
                    for k in 0..n {
                        let code = if k % (n / 3 + 1) == 7 && took.len() < contested.len() {
                            contested[took.len()]
                        } else {
                            next += 1;
                            next
                        };
                        let r = Rec::new(code, rng.chance(10));
                        match sh.append(&r.values()) {
                            Ok(rn) => {
                                if code < base {
                                    took.push(code);
                                }
                                pend.push((rn, r));
                            }
                            Err(Error::DuplicateKey { recno, index, .. }) if code < base => {
                                // Another thread committed it already.
                                took.push(code);
                                let h = sh.read(recno).unwrap();
                                assert!(!h.is_deleted(), "thread {ti}: the holder {recno} ({index}) is live");
                                assert_eq!(code_of(h.values()), code, "thread {ti}: holder {recno} ({index})");
                            }
                            Err(e) => panic!("thread {ti} round {round}: append {r:?}: {e:?}"),
                        }
                    }
                    meet(2 * round + 2);
                    match s.commit() {
                        Ok(()) => {
                            for (rn, r) in pend {
                                log.recs.insert(rn, r);
                            }
                        }
                        Err(Error::DuplicateKey { recno, index, key, .. }) => {
                            let h = sh.read(recno).unwrap();
                            assert!(!h.is_deleted(), "thread {ti}: commit refused by {recno} ({index} {key}): live");
                            assert!(
                                contested.contains(&code_of(h.values())),
                                "thread {ti}: commit refused by {recno} ({index} {key}) holding {:?}",
                                h.values()
                            );
                            for (rn, _) in pend {
                                log.recs.insert(rn, Rec::blank());
                            }
                            refusals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => panic!("thread {ti} round {round}: shared commit {e:?}"),
                    }
                    // Deletes and recalls of its own shared records (not the
                    // contested ones), while the others load: entries rekeyed
                    // in place in the trees they insert into.
                    let mine: Vec<u64> = log
                        .recs
                        .iter()
                        .filter(|(_, r)| !r.blank && r.code >= base)
                        .map(|(n, _)| *n)
                        .collect();
                    for _ in 0..rng.range(5, 40) {
                        if mine.is_empty() {
                            break;
                        }
                        let n = mine[rng.below(mine.len() as u64) as usize];
                        let r = log.recs.get_mut(&n).unwrap();
                        if r.deleted {
                            sh.recall(n).unwrap_or_else(|e| panic!("thread {ti}: recall {n}: {e:?}"));
                        } else {
                            sh.delete(n).unwrap_or_else(|e| panic!("thread {ti}: delete {n}: {e:?}"));
                        }
                        r.deleted = !r.deleted;
                    }
                }
                drop((own, sh));
                (own_model, log)
            })
        })
        .collect();
    let mut models = Vec::new();
    let mut shared = Model::default();
    for h in handles {
        let (m, log) = h.join().expect("a thread panicked");
        models.push(m);
        for (n, r) in log.recs {
            assert!(
                shared.recs.insert(n, r).is_none(),
                "recno {n} given to two threads"
            );
        }
    }
    eprintln!(
        "threads: {} shared commits refused",
        refusals.load(std::sync::atomic::Ordering::SeqCst)
    );
    for (i, m) in models.iter().enumerate() {
        verify(&db, &format!("p{i}"), m, "threads");
    }
    verify(&db, "shared", &shared, "threads");
    // Then a power cut: all of it is there.
    let image = storage.crash(CrashMode::DropUnsynced);
    let db = common::open_on(Arc::new(image), 4 << 20);
    for (i, m) in models.iter().enumerate() {
        verify(&db, &format!("p{i}"), m, "threads after power cut");
    }
    let count = db.session().open_table("shared").unwrap().record_count();
    let cut: Vec<u64> = shared.recs.range(count + 1..).map(|(n, _)| *n).collect();
    for n in cut {
        assert!(
            shared.recs[&n].blank,
            "shared recno {n} lost after the power cut"
        );
        shared.recs.remove(&n);
    }
    verify(&db, "shared", &shared, "threads after power cut");
}

/// Loads large enough that the bottom-up build makes a tree of several
/// levels, with a non-unique index whose keys are nearly all one value, then
/// a large load into the full indexes, one refused by the last key it would
/// insert, a power cut.
#[test]
fn huge_loads_build_deep_trees_and_a_refusal_at_the_last_key_leaves_nothing() {
    let seed = seed(0xB16);
    let mut rng = Rng(seed);
    let (storage, db) = common::fault_db(1 << 20);
    create_with(&db, "h", TableOptions::default().page_size(4096));
    let mut m = Model::default();
    let s = db.session();
    let mut t = s.open_table("h").unwrap();
    let n = 20_000 + rng.below(5000) as i64;
    let mut codes: Vec<i64> = (1..=n).map(|c| c * 2).collect();
    rng.shuffle(&mut codes);
    s.begin().unwrap();
    for &c in &codes {
        let mut r = Rec::new(c, c % 97 == 0);
        if c % 11 != 0 {
            r.grp = "SAME".into();
        }
        let rn = t.append(&r.values()).unwrap();
        m.recs.insert(rn, r);
    }
    s.commit().unwrap();
    verify(&db, "h", &m, "huge first load");
    // Odd codes in between, the greatest last in key order; another session
    // takes the greatest one first.
    let b = db.session();
    let mut tb = b.open_table("h").unwrap();
    let mut codes: Vec<i64> = (0..4000i64).map(|i| i * 2 + 1).collect();
    rng.shuffle(&mut codes);
    s.begin().unwrap();
    let mut pend = Vec::new();
    for &c in &codes {
        let mut r = Rec::new(c, false);
        r.grp = "SAME".into();
        pend.push((t.append(&r.values()).unwrap(), r));
    }
    let top = *codes.iter().max().unwrap();
    let mut r = Rec::new(top, false);
    r.tag = 0;
    r.b = 77;
    let holder = tb.append(&r.values()).unwrap();
    m.recs.insert(holder, r);
    expect_dup(s.commit(), &["code"], Some(holder), "huge second load");
    for (rn, _) in &pend {
        m.recs.insert(*rn, Rec::blank());
    }
    verify(&db, "h", &m, "huge second load refused");
    // Again, without the taken key: it goes in.
    s.begin().unwrap();
    for (_, r) in pend.iter().filter(|(_, r)| r.code != top) {
        let rn = t.append(&r.values()).unwrap();
        m.recs.insert(rn, r.clone());
    }
    s.commit().unwrap();
    verify(&db, "h", &m, "huge second load retried");
    drop((t, tb, s, b));
    let image = storage.crash(CrashMode::DropUnsynced);
    std::mem::forget(db);
    let db = common::open_on(Arc::new(image), 1 << 20);
    verify(&db, "h", &m, "huge loads after a power cut");
}

/// Few codes, many records: every code is held by several deleted records
/// (their keys carry their recnos) and perhaps one live one. Large loads
/// insert live keys among those deleted entries; deletes and recalls rekey
/// entries in place, in both directions among their equals.
#[test]
fn churn_on_few_keys_with_many_deleted_holders() {
    let seed = seed(0xC4);
    let mut rng = Rng(seed);
    let (storage, db) = common::fault_db(256 << 10);
    create_with(&db, "c", TableOptions::default().page_size(4096));
    let mut m = Model::default();
    let s = db.session();
    s.set_hide_deleted(rng.chance(50));
    let mut t = s.open_table("c").unwrap();
    let pool: i64 = 700;
    for round in 0..rounds(8) * 2 {
        let what = format!("churn round {round}");
        let live = m.live_codes();
        let mut free: Vec<i64> = (1..=pool).filter(|c| !live.contains(c)).collect();
        rng.shuffle(&mut free);
        let n = (rng.range(250, 330) as usize).min(free.len());
        let in_txn = rng.chance(80);
        if in_txn {
            s.begin().unwrap();
        }
        let mut pend = Vec::new();
        for &c in &free[..n] {
            let r = Rec::new(c, rng.chance(5));
            let rn = t
                .append(&r.values())
                .unwrap_or_else(|e| panic!("[{what}] append {r:?}: {e:?}"));
            pend.push((rn, r));
        }
        if in_txn {
            s.commit()
                .unwrap_or_else(|e| panic!("[{what}] commit: {e:?}"));
        }
        for (rn, r) in pend {
            m.recs.insert(rn, r);
        }
        // Delete about half of the live records, recall some deleted ones.
        let in_txn = rng.chance(50);
        if in_txn {
            s.begin().unwrap();
        }
        let live: Vec<u64> = m
            .recs
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(n, _)| *n)
            .collect();
        for n in live {
            if rng.chance(50) {
                t.delete(n).unwrap();
                m.recs.get_mut(&n).unwrap().deleted = true;
            }
        }
        let deleted: Vec<u64> = m
            .recs
            .iter()
            .filter(|(_, r)| r.deleted)
            .map(|(n, _)| *n)
            .collect();
        for _ in 0..rng.range(10, 80) {
            let n = deleted[rng.below(deleted.len() as u64) as usize];
            if !m.recs[&n].deleted {
                continue;
            }
            recall_checked(&mut t, &mut m, n, &what);
        }
        if in_txn {
            s.commit()
                .unwrap_or_else(|e| panic!("[{what}] commit deletes/recalls: {e:?}"));
        }
        verify(&db, "c", &m, &what);
    }
    drop((t, s));
    let image = storage.crash(CrashMode::DropUnsynced);
    std::mem::forget(db);
    let db = common::open_on(Arc::new(image), 256 << 10);
    verify(&db, "c", &m, "churn after a power cut");
}
