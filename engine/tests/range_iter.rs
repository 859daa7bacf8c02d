//! `Table::range` iterators, which read the index a leaf at a time and
//! prefetch the records ahead: compared with a model over ranges spanning
//! many leaves, and walked while other sessions commit inserts, key changes,
//! deletes and recalls between every step (including from other threads).
//!
//! What must hold whatever the schedule: the entries (key, recno) an
//! iterator returns rise strictly (each entry at most once, in key order);
//! every record in the range that nobody touched while the iterator ran is
//! returned; each record returned is the committed record as it is at that
//! moment, with a key inside the range. `RAIZ_RANGE_SEED` sets the seed
//! (printed), `RAIZ_RANGE_ROUNDS` the rounds (default 40).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Field, FieldType, Schema, Session, Table, TableOptions, Value};

use common::Rng;

fn seed() -> u64 {
    std::env::var("RAIZ_RANGE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn rounds() -> u64 {
    std::env::var("RAIZ_RANGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// KEY: the indexed value (duplicates allowed); PAD: makes records long
/// enough that they spread over many data pages.
fn table(db: &Database) -> (Session, Table) {
    let schema = Schema::new(vec![
        Field::new("KEY", FieldType::Int64),
        Field::new("PAD", FieldType::Char(120)),
    ]);
    db.create_table("r", &schema, TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("r").unwrap();
    t.create_index(&IndexDef::new("by_key", vec![Segment::field("KEY")]))
        .unwrap();
    (s, t)
}

fn row(key: i64) -> [Value; 2] {
    [
        Value::Int64(key),
        Value::from(format!("pad {key}").as_str()),
    ]
}

fn key_of(r: &raiz_engine::Record) -> i64 {
    match r.values()[0] {
        Value::Int64(k) => k,
        ref v => panic!("KEY is {v:?}"),
    }
}

/// The model: recno → (key, deleted).
type Model = BTreeMap<u64, (i64, bool)>;

/// Entries of the model in range, in index order (key, recno).
fn expected(m: &Model, lo: Option<i64>, hi: Option<i64>, hide: bool) -> Vec<(i64, u64)> {
    let mut v: Vec<(i64, u64)> = m
        .iter()
        .filter(|(_, (k, d))| {
            lo.is_none_or(|lo| *k >= lo) && hi.is_none_or(|hi| *k <= hi) && !(hide && *d)
        })
        .map(|(r, (k, _))| (*k, *r))
        .collect();
    v.sort_unstable();
    v
}

fn bound(k: Option<i64>) -> Option<[Value; 1]> {
    k.map(|k| [Value::Int64(k)])
}

#[test]
fn ranges_over_many_leaves_match_the_model() {
    let seed = seed();
    eprintln!("range_iter: seed {seed} (RAIZ_RANGE_SEED)");
    let mut rng = Rng::new(seed);
    let (_s, db) = common::mem_db(4 << 20);
    let (s, mut t) = table(&db);
    let mut m = Model::new();
    s.begin().unwrap();
    for _ in 0..6000 {
        let k = rng.below(3000) as i64 - 1500;
        let r = t.append(&row(k)).unwrap();
        m.insert(r, (k, false));
    }
    s.commit().unwrap();
    // Delete a share of them (deleted records stay in the index).
    s.begin().unwrap();
    for r in 1..=6000u64 {
        if rng.below(5) == 0 {
            t.delete(r).unwrap();
            m.get_mut(&r).unwrap().1 = true;
        }
    }
    s.commit().unwrap();
    t.set_order(Some("by_key")).unwrap();
    for round in 0..40 {
        let lo = (rng.below(4) > 0).then(|| rng.below(3200) as i64 - 1600);
        let hi = (rng.below(4) > 0).then(|| lo.unwrap_or(-1600) + rng.below(2000) as i64);
        let hide = round % 2 == 0;
        s.set_hide_deleted(hide);
        let (lb, hb) = (bound(lo), bound(hi));
        let got: Vec<(i64, u64)> = t
            .range(lb.as_ref().map(|b| &b[..]), hb.as_ref().map(|b| &b[..]))
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (key_of(&r), r.recno())
            })
            .collect();
        assert_eq!(
            got,
            expected(&m, lo, hi, hide),
            "seed {seed} round {round}: range {lo:?}..={hi:?} hide deleted {hide}"
        );
        // Taking a few and restarting after the last key goes on exactly.
        let mut it = t
            .range(lb.as_ref().map(|b| &b[..]), hb.as_ref().map(|b| &b[..]))
            .unwrap();
        let first: Vec<u64> = it.by_ref().take(7).map(|r| r.unwrap().recno()).collect();
        let at = it.last_key();
        let mut again = t
            .range(lb.as_ref().map(|b| &b[..]), hb.as_ref().map(|b| &b[..]))
            .unwrap();
        again.restart_after(at);
        let rest: Vec<u64> = again.map(|r| r.unwrap().recno()).collect();
        let all: Vec<u64> = first.into_iter().chain(rest).collect();
        let want: Vec<u64> = expected(&m, lo, hi, hide).iter().map(|e| e.1).collect();
        assert_eq!(all, want, "seed {seed} round {round}: restart_after");
    }
}

/// What one iterator saw, checked against what the writers did.
struct Walk {
    lo: i64,
    hi: i64,
    got: Vec<(i64, u64)>,
}

/// Applies one random change to the table from `t`'s session and the model.
fn change(rng: &mut Rng, s: &Session, t: &mut Table, m: &mut Model, touched: &mut BTreeSet<u64>) {
    let known = m.len() as u64;
    s.begin().unwrap();
    for _ in 0..1 + rng.below(4) {
        let count = m.len() as u64;
        match rng.below(4) {
            0 => {
                let k = rng.below(2000) as i64 - 1000;
                let r = t.append(&row(k)).unwrap();
                m.insert(r, (k, false));
                touched.insert(r);
            }
            1 => {
                let r = 1 + rng.below(count);
                let k = rng.below(2000) as i64 - 1000;
                t.update(r, &row(k)).unwrap();
                m.get_mut(&r).unwrap().0 = k;
                touched.insert(r);
            }
            2 => {
                let r = 1 + rng.below(count);
                t.delete(r).unwrap();
                m.get_mut(&r).unwrap().1 = true;
                touched.insert(r);
            }
            _ => {
                let r = 1 + rng.below(count);
                t.recall(r).unwrap();
                m.get_mut(&r).unwrap().1 = false;
                touched.insert(r);
            }
        }
    }
    if rng.below(6) == 0 {
        s.rollback().unwrap();
        // The model cannot tell what was undone: reread what changed.
        for &r in touched.iter() {
            match t.read(r) {
                Ok(rec) => {
                    m.insert(r, (key_of(&rec), rec.is_deleted()));
                }
                Err(_) => {
                    m.remove(&r);
                }
            }
        }
        // Rolled-back appends leave deleted blank records behind.
        let count = t.record_count();
        for r in known + 1..=count {
            m.entry(r).or_insert_with(|| {
                let rec = t.read(r).unwrap();
                (key_of(&rec), rec.is_deleted())
            });
        }
    } else {
        s.commit().unwrap();
    }
}

fn check_walk(seed: u64, round: u64, w: &Walk, before: &Model, touched: &BTreeSet<u64>) {
    for pair in w.got.windows(2) {
        assert!(
            pair[0] < pair[1],
            "seed {seed} round {round}: entries out of order or repeated: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    for &(k, r) in &w.got {
        assert!(
            (w.lo..=w.hi).contains(&k),
            "seed {seed} round {round}: record {r} with key {k} outside {}..={}",
            w.lo,
            w.hi
        );
    }
    let seen: BTreeSet<u64> = w.got.iter().map(|e| e.1).collect();
    for (r, (k, _)) in before {
        if (w.lo..=w.hi).contains(k) && !touched.contains(r) {
            assert!(
                seen.contains(r),
                "seed {seed} round {round}: untouched record {r} (key {k}) in range was skipped"
            );
        }
    }
}

#[test]
fn iterators_stay_ordered_and_complete_while_other_sessions_commit() {
    let seed = seed();
    eprintln!("range_iter: seed {seed} (RAIZ_RANGE_SEED)");
    let mut rng = Rng::new(seed);
    let (_s, db) = common::mem_db(2 << 20);
    let (_rs, mut reader) = table(&db);
    reader.set_order(Some("by_key")).unwrap();
    let ws = db.session();
    let mut writer = ws.open_table("r").unwrap();
    let mut m = Model::new();
    ws.begin().unwrap();
    for _ in 0..3000 {
        let k = rng.below(2000) as i64 - 1000;
        let r = writer.append(&row(k)).unwrap();
        m.insert(r, (k, false));
    }
    ws.commit().unwrap();
    for round in 0..rounds() {
        let lo = rng.below(1600) as i64 - 1000;
        let hi = lo + rng.below(1200) as i64;
        let before = m.clone();
        let mut touched = BTreeSet::new();
        let mut it = reader
            .range(Some(&[Value::Int64(lo)]), Some(&[Value::Int64(hi)]))
            .unwrap();
        let mut got = Vec::new();
        let mut changes = 0;
        loop {
            // Often early (while the first leaf's buffer is young), then
            // now and then; bounded so that the table stays small.
            if changes < 80 && rng.below(if got.len() < 40 { 2 } else { 12 }) == 0 {
                change(&mut rng, &ws, &mut writer, &mut m, &mut touched);
                changes += 1;
            }
            let Some(rec) = it.next() else { break };
            let rec = rec.unwrap();
            let r = rec.recno();
            // The record as committed now.
            assert_eq!(
                (key_of(&rec), rec.is_deleted()),
                m[&r],
                "seed {seed} round {round}: record {r} is not as committed"
            );
            got.push((key_of(&rec), r));
        }
        check_walk(seed, round, &Walk { lo, hi, got }, &before, &touched);
    }
    assert!(reader.check(5).unwrap().is_ok());
}

#[test]
fn iterators_in_threads_meet_writers_in_threads() {
    let seed = seed();
    eprintln!("range_iter: seed {seed} (RAIZ_RANGE_SEED)");
    let (_s, db) = common::mem_db(1 << 20);
    let (s, mut t) = table(&db);
    s.begin().unwrap();
    for i in 0..4000i64 {
        t.append(&row(i % 1000)).unwrap();
    }
    s.commit().unwrap();
    drop(t);
    drop(s);
    let db = Arc::new(db);
    let stop = Arc::new(AtomicBool::new(false));
    // Writers move keys of records 1..=2000 and append more; records above
    // 2000 (keys i % 1000) are never touched.
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (w + 1));
                let mut t = db.session().open_table("r").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let r = 1 + w * 1000 + rng.below(1000);
                    t.update(r, &row(rng.below(1000) as i64)).unwrap();
                    if rng.below(20) == 0 {
                        t.append(&row(rng.below(1000) as i64)).unwrap();
                    }
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2u64)
        .map(|k| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (k + 100));
                let mut t = db.session().open_table("r").unwrap();
                t.set_order(Some("by_key")).unwrap();
                for round in 0..rounds() * 2 {
                    let lo = rng.below(900) as i64;
                    let hi = lo + rng.below(300) as i64;
                    let got: Vec<(i64, u64)> = t
                        .range(Some(&[Value::Int64(lo)]), Some(&[Value::Int64(hi)]))
                        .unwrap()
                        .map(|r| {
                            let r = r.unwrap();
                            (key_of(&r), r.recno())
                        })
                        .collect();
                    for pair in got.windows(2) {
                        assert!(pair[0] < pair[1], "seed {seed} round {round}: {pair:?}");
                    }
                    for &(key, r) in &got {
                        assert!((lo..=hi).contains(&key), "seed {seed}: {r} key {key}");
                    }
                    // The untouched records (2001..=4000, key (r-1) % 1000).
                    let seen: BTreeSet<u64> = got.iter().map(|e| e.1).collect();
                    for r in 2001..=4000u64 {
                        let key = ((r - 1) % 1000) as i64;
                        if (lo..=hi).contains(&key) {
                            assert!(seen.contains(&r), "seed {seed}: untouched {r} skipped");
                        }
                    }
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let t = db.session().open_table("r").unwrap();
    assert!(t.check(5).unwrap().is_ok());
}
