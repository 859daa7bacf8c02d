//! The schedule's world: the fault-injecting storage and database, the
//! models of its tables, and the steps a schedule takes (loads in `load`).

use std::collections::BTreeMap;
use std::sync::Arc;

use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{Database, Error, TableOptions};

use crate::common;
use crate::model::*;

mod load;

#[derive(Clone)]
pub struct Part {
    pub name: String,
    pub m0: Model,
    pub pending: BTreeMap<u64, Rec>,
    pub blanks: Vec<u64>,
}

pub struct World {
    pub storage: FaultStorage,
    pub db: Database,
    pub models: BTreeMap<String, Model>,
    pub next_code: i64,
    pub rng: Rng,
    pub step: usize,
    pub pool: usize,
    pub unlogged: bool,
}

pub fn expect_dup(
    r: raiz_engine::Result<impl std::fmt::Debug>,
    indexes: &[&str],
    holder: Option<u64>,
    what: &str,
) -> (String, u64) {
    match r {
        Err(Error::DuplicateKey {
            index, recno, key, ..
        }) => {
            assert!(
                indexes.contains(&index.as_str()),
                "[{what}] DuplicateKey names index {index} (key {key}), expected one of {indexes:?}"
            );
            if let Some(h) = holder {
                assert_eq!(
                    recno, h,
                    "[{what}] DuplicateKey on {index} key {key}: the holder"
                );
            }
            (index, recno)
        }
        other => panic!(
            "[{what}] expected DuplicateKey on {indexes:?} (holder {holder:?}), got {other:?}"
        ),
    }
}

/// Recalls deleted record `n`: done when no live record holds one of its
/// unique keys, else refused with `DuplicateKey` naming a holder the model
/// knows, the record left deleted. The model follows.
pub fn recall_checked(t: &mut raiz_engine::Table, m: &mut Model, n: u64, what: &str) {
    let r = m.recs[&n].clone();
    let holders: Vec<(&str, u64)> = UNIQUE
        .iter()
        .filter_map(|ix| m.live_holder(&r, ix, Some(n)).map(|h| (*ix, h)))
        .collect();
    let res = t.recall(n);
    if holders.is_empty() {
        res.unwrap_or_else(|e| panic!("[{what}] recall {n} {r:?}: {e:?}"));
        m.recs.get_mut(&n).unwrap().deleted = false;
    } else {
        let ixs: Vec<&str> = holders.iter().map(|h| h.0).collect();
        let (ix, h) = expect_dup(res, &ixs, None, &format!("{what}: recall {n} {r:?}"));
        let want = holders.iter().find(|x| x.0 == ix).unwrap().1;
        assert_eq!(h, want, "[{what}] recall {n}: the holder of {ix}");
        assert!(
            t.is_deleted(n).unwrap(),
            "[{what}] a refused recall leaves {n} deleted"
        );
    }
}

impl World {
    pub fn fresh(&mut self) -> i64 {
        self.next_code += 1 + self.rng.below(3) as i64;
        self.next_code
    }

    /// One large (or just-below-threshold) appending transaction, with the
    /// variants an adversary would choose.
    pub fn load(&mut self, name: &str) {
        self.load_multi(&[name.to_owned()]);
    }

    /// The codes a load into `m0` appends: fresh ones, some codes only deleted
    /// records hold, sometimes code 0 (the blank records' code).
    pub fn load_codes(&mut self, m0: &Model, n: usize) -> Vec<i64> {
        let mut codes: Vec<i64> = (0..n).map(|_| self.fresh()).collect();
        let live = m0.live_codes();
        let mut reusable: Vec<i64> = m0
            .recs
            .values()
            .filter(|r| r.deleted && !r.blank && !live.contains(&r.code))
            .map(|r| r.code)
            .filter(|&c| {
                UNIQUE
                    .iter()
                    .all(|ix| m0.live_holder(&Rec::new(c, false), ix, None).is_none())
            })
            .collect();
        reusable.sort();
        reusable.dedup();
        self.rng.shuffle(&mut reusable);
        let share = if self.rng.chance(20) { n } else { n / 4 };
        for (i, c) in reusable.into_iter().take(share).enumerate() {
            codes[i] = c;
        }
        if self.rng.chance(30)
            && !live.contains(&0)
            && UNIQUE
                .iter()
                .all(|ix| m0.live_holder(&Rec::new(0, false), ix, None).is_none())
        {
            codes[n - 1] = 0;
        }
        codes.sort();
        codes.dedup();
        self.rng.shuffle(&mut codes);
        codes
    }

    /// One transaction appending to every table of `names`, then: commit,
    /// another session colliding with one of its keys first (by a single
    /// record or by a large load of its own; on one index or on both), a
    /// rollback, or another session taking a key and deleting it again.
    pub fn create(&self, name: &str) {
        let opts = TableOptions::default();
        let opts = if self.unlogged {
            opts.durability(raiz_engine::Durability::Unlogged)
        } else {
            opts
        };
        create_with(&self.db, name, opts);
    }

    /// A new table: its indexes are empty (a load builds them bottom-up).
    pub fn fresh_table(&mut self) -> String {
        let name = format!("f{}", self.step);
        self.create(&name);
        self.models.insert(name.clone(), Model::default());
        name
    }

    /// Deletes most (or all) records and packs the table: its indexes are
    /// rebuilt from what is left, perhaps empty, before the next load.
    pub fn wipe(&mut self, name: &str) {
        self.step += 1;
        let what = format!("step {} wipe {name}", self.step);
        let all = self.rng.chance(50);
        eprintln!("[{what}] all={all}");
        let s = self.db.session();
        let mut t = s.open_table(name).unwrap();
        let m = self.models[name].clone();
        s.begin().unwrap();
        let mut keep = Vec::new();
        for (n, r) in &m.recs {
            if r.deleted {
                continue;
            }
            if all || self.rng.chance(90) {
                t.delete(*n).unwrap();
            } else {
                keep.push(r.clone());
            }
        }
        s.commit().unwrap();
        t.pack().unwrap_or_else(|e| panic!("[{what}] pack: {e:?}"));
        drop(t);
        let model = Model {
            recs: keep
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, r))
                .collect(),
        };
        verify(&self.db, name, &model, &what);
        self.models.insert(name.to_owned(), model);
    }

    /// Deletes and recalls of committed records, in a transaction or not.
    pub fn delete_recall(&mut self, name: &str) {
        self.step += 1;
        let what = format!("step {} delete/recall {name}", self.step);
        let in_txn = self.rng.chance(50);
        eprintln!("[{what}] in_txn={in_txn}");
        let s = self.db.session();
        let mut t = s.open_table(name).unwrap();
        let mut m = self.models[name].clone();
        if in_txn {
            s.begin().unwrap();
        }
        let live: Vec<u64> = m
            .recs
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(n, _)| *n)
            .collect();
        let k = self.rng.range(1, 40);
        for _ in 0..k {
            if live.is_empty() {
                break;
            }
            let n = live[self.rng.below(live.len() as u64) as usize];
            if m.recs[&n].deleted {
                continue;
            }
            t.delete(n).unwrap();
            m.recs.get_mut(&n).unwrap().deleted = true;
        }
        // Some live rows take the keys of records just deleted (a new append
        // with the same code) so that recalling those must fail.
        let deleted: Vec<u64> = m
            .recs
            .iter()
            .filter(|(_, r)| r.deleted)
            .map(|(n, _)| *n)
            .collect();
        for _ in 0..self.rng.below(4) {
            if deleted.is_empty() {
                break;
            }
            let n = deleted[self.rng.below(deleted.len() as u64) as usize];
            let old = m.recs[&n].clone();
            if old.blank {
                continue;
            }
            let mut r = Rec::new(old.code, false);
            if self.rng.chance(50) {
                r.code = self.fresh(); // only (A, B) taken
                r.memo = Some(b"ab taker".to_vec());
            } else {
                r.b = 400 + (self.rng.below(1000) as i64);
            }
            if UNIQUE
                .iter()
                .any(|ix| m.live_holder(&r, ix, None).is_some())
            {
                continue;
            }
            let rn = t
                .append(&r.values())
                .unwrap_or_else(|e| panic!("[{what}] taker {r:?}: {e}"));
            m.recs.insert(rn, r);
        }
        for _ in 0..self.rng.range(1, 30) {
            let deleted: Vec<u64> = m
                .recs
                .iter()
                .filter(|(_, r)| r.deleted)
                .map(|(n, _)| *n)
                .collect();
            if deleted.is_empty() {
                break;
            }
            let n = deleted[self.rng.below(deleted.len() as u64) as usize];
            recall_checked(&mut t, &mut m, n, &what);
        }
        if in_txn {
            if self.rng.chance(15) {
                s.rollback().unwrap();
                // Appends of the rolled-back transaction are blanks now.
                let before = &self.models[name];
                for (n, _) in m.recs.clone().iter() {
                    if !before.recs.contains_key(n) {
                        m.recs.insert(*n, Rec::blank());
                    } else {
                        m.recs.insert(*n, before.recs[n].clone());
                    }
                }
            } else {
                s.commit()
                    .unwrap_or_else(|e| panic!("[{what}] commit: {e:?}"));
            }
        }
        drop(t);
        verify(&self.db, name, &m, &what);
        self.models.insert(name.to_owned(), m);
    }

    /// A transaction of many appends to one table and other changes: to the
    /// same table (no longer all appends) or to another table.
    pub fn mixed(&mut self, t1: &str, t2: &str) {
        self.step += 1;
        let what = format!("step {} mixed {t1}/{t2}", self.step);
        let same = self.rng.chance(50);
        eprintln!("[{what}] same_table={same}");
        let s = self.db.session();
        let mut ta = s.open_table(t1).unwrap();
        let mut tb = s.open_table(t2).unwrap();
        let mut m1 = self.models[t1].clone();
        let mut m2 = self.models[t2].clone();
        s.begin().unwrap();
        let n = self.rng.range(256, 700);
        let mut mine = Vec::new();
        for _ in 0..n {
            let r = Rec::new(self.fresh(), self.rng.chance(10));
            let rn = ta.append(&r.values()).unwrap();
            m1.recs.insert(rn, r);
            mine.push(rn);
        }
        let (t, m) = if same {
            (&mut ta, &mut m1)
        } else {
            (&mut tb, &mut m2)
        };
        let live: Vec<u64> = m
            .recs
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(n, _)| *n)
            .collect();
        if !live.is_empty() {
            // Update one record to a fresh code, delete another.
            let u = live[self.rng.below(live.len() as u64) as usize];
            let mut r = Rec::new(self.fresh(), true);
            r.deleted = m.recs[&u].deleted;
            t.update(u, &r.values()).unwrap();
            m.recs.insert(u, r);
            let d = live[self.rng.below(live.len() as u64) as usize];
            t.delete(d).unwrap();
            m.recs.get_mut(&d).unwrap().deleted = true;
        }
        if same && self.rng.chance(50) {
            // Change one of its own appends, delete another.
            let u = mine[self.rng.below(mine.len() as u64) as usize];
            let r = Rec::new(self.fresh(), false);
            ta.update(u, &r.values()).unwrap();
            m1.recs.insert(u, r);
            let d = mine[self.rng.below(mine.len() as u64) as usize];
            ta.delete(d).unwrap();
            m1.recs.get_mut(&d).unwrap().deleted = true;
        }
        s.commit()
            .unwrap_or_else(|e| panic!("[{what}] commit: {e:?}"));
        drop((ta, tb));
        verify(&self.db, t1, &m1, &what);
        verify(&self.db, t2, &m2, &what);
        self.models.insert(t1.to_owned(), m1);
        self.models.insert(t2.to_owned(), m2);
    }

    /// The power goes: only what was synced stays; every acknowledged commit
    /// must be there. A refused commit's blanks may be gone if nothing synced
    /// them, but only at the end of the table.
    pub fn power_cut(&mut self) {
        self.step += 1;
        let what = format!("step {} power cut", self.step);
        eprintln!("[{what}]");
        let image = self.storage.crash(CrashMode::DropUnsynced);
        let old = std::mem::replace(
            &mut self.db,
            common::open_on(Arc::new(image.clone()), self.pool),
        );
        std::mem::forget(old);
        self.storage = image;
        let names: Vec<String> = self.models.keys().cloned().collect();
        for name in names {
            let count = self.db.session().open_table(&name).unwrap().record_count();
            let m = self.models.get_mut(&name).unwrap();
            let cut: Vec<u64> = m.recs.range(count + 1..).map(|(n, _)| *n).collect();
            for n in cut {
                assert!(
                    m.recs[&n].blank && m.recs[&n].deleted,
                    "[{what}] {name}: recno {n} of an acknowledged commit is gone after the power cut (record_count {count}): {:?}",
                    m.recs[&n]
                );
                m.recs.remove(&n);
            }
            let m = m.clone();
            verify(&self.db, &name, &m, &what);
        }
    }
}

pub fn world(salt: u64, unlogged: bool) -> World {
    let seed = seed(salt);
    let mut rng = Rng(seed);
    let pool = if rng.chance(50) { 48 << 10 } else { 4 << 20 };
    eprintln!("pool {pool}, unlogged {unlogged}");
    let (storage, db) = common::fault_db(pool);
    let w = World {
        storage,
        db,
        models: BTreeMap::new(),
        next_code: 0,
        rng,
        step: 0,
        pool,
        unlogged,
    };
    let mut w = w;
    for n in ["t1", "t2"] {
        w.create(n);
        w.models.insert(n.to_owned(), Model::default());
    }
    w
}
