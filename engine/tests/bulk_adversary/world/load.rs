//! Loads: one or several tables appended to in one transaction, with own
//! edits, savepoints, refused duplicates and navigation mid-load.

use std::collections::BTreeMap;

use raiz_engine::{Error, Session, Table};

use crate::model::*;

use super::{expect_dup, Part, World};

impl World {
    pub fn load_multi(&mut self, names: &[String]) {
        self.step += 1;
        let what = format!("step {} load {names:?}", self.step);
        let ending = match self.rng.below(18) {
            0..=4 => 0,
            5 | 6 => 1,
            7 => 2,
            8 => 3,
            9 => 4,
            10 | 11 => 5,
            12 => 6,
            13 => 7,
            14 => 8,
            15 => 9,
            _ => 10,
        };
        let a = self.db.session();
        a.set_hide_deleted(self.rng.chance(50));
        eprintln!("[{what}] ending={ending} hide={}", a.hide_deleted());
        a.begin().unwrap();
        let mut parts: Vec<Part> = Vec::new();
        for name in names {
            let m0 = self.models[name].clone();
            let n = if self.rng.chance(50) {
                self.rng.range(240, 275)
            } else {
                self.rng.range(250, 1500)
            } as usize;
            let codes = self.load_codes(&m0, n);
            let mut t = a.open_table(name).unwrap();
            let mut part = Part {
                name: name.clone(),
                m0,
                pending: BTreeMap::new(),
                blanks: Vec::new(),
            };
            self.append_phase(&a, &mut t, &mut part, codes, &what);
            parts.push(part);
        }

        // What another session does right before the commit.
        let victim_part = self.rng.below(parts.len() as u64) as usize;
        let vname = parts[victim_part].name.clone();
        let mut vmodel = parts[victim_part].m0.clone();
        let b = self.db.session();
        let mut tb = b.open_table(&vname).unwrap();
        let mut colliders: Vec<(&str, u64)> = Vec::new();
        let mut taken: Vec<u64> = Vec::new(); // pending recnos whose key was taken
        if matches!(ending, 1 | 2 | 4 | 5 | 6) {
            let pending = &parts[victim_part].pending;
            let live_pending: Vec<(u64, Rec)> = pending
                .iter()
                .filter(|(_, r)| !r.deleted)
                .map(|(n, r)| (*n, r.clone()))
                .collect();
            let mut kinds: Vec<&str> = match ending {
                2 => vec!["ab"],
                6 => vec!["code", "ab"],
                _ => vec!["code"],
            };
            if ending == 5 && self.rng.chance(50) {
                kinds = vec!["ab"];
            }
            let mut rows: Vec<Rec> = Vec::new();
            for kind in &kinds {
                let (vn, victim) = loop {
                    let k = self.rng.below(live_pending.len() as u64) as usize;
                    if !taken.contains(&live_pending[k].0) {
                        break live_pending[k].clone();
                    }
                };
                taken.push(vn);
                let mut r = if *kind == "ab" {
                    let mut r = Rec::new(self.fresh(), false);
                    r.a = flip(&victim.a);
                    r.b = victim.b;
                    r
                } else {
                    let mut r = Rec::new(victim.code, self.rng.chance(50));
                    r.tag = 0;
                    r.b = 100 + victim.b + 10 * rows.len() as i64;
                    r
                };
                r.grp = "ZZ  ".into();
                rows.push(r);
            }
            let mut holders = Vec::new();
            if ending == 5 {
                // A large load of its own carries the colliding record.
                b.begin().unwrap();
                let k = self.rng.range(256, 400);
                let at = self.rng.below(k);
                let mut mine = Vec::new();
                for i in 0..k {
                    let r = if i == at {
                        rows[0].clone()
                    } else {
                        Rec::new(self.fresh(), false)
                    };
                    let rn = tb.append(&r.values()).unwrap();
                    if i == at {
                        holders.push(rn);
                    }
                    mine.push((rn, r));
                }
                b.commit()
                    .unwrap_or_else(|e| panic!("[{what}] the other session's load: {e:?}"));
                for (rn, r) in mine {
                    vmodel.recs.insert(rn, r);
                }
            } else {
                for r in &rows {
                    let h = tb.append(&r.values()).unwrap_or_else(|e| {
                        panic!("[{what}] the other session's append {r:?}: {e}")
                    });
                    vmodel.recs.insert(h, r.clone());
                    holders.push(h);
                }
            }
            let extra = Rec::new(self.fresh(), true);
            let en = tb.append(&extra.values()).unwrap();
            vmodel.recs.insert(en, extra);
            if ending == 4 {
                tb.delete(holders[0]).unwrap();
                vmodel.recs.get_mut(&holders[0]).unwrap().deleted = true;
            } else {
                for (kind, h) in kinds.iter().zip(&holders) {
                    colliders.push((kind, *h));
                }
            }
        }
        // Another session's large load, open across this commit: committed
        // first (7), or after this one, refused by one of its keys (8).
        let mut late: Vec<(u64, Rec)> = Vec::new();
        let mut late_victim = (0u64, String::new());
        if ending == 7 || ending == 8 {
            b.begin().unwrap();
            let k = self.rng.range(250, 600);
            let at = self.rng.below(k);
            for i in 0..k {
                let r = if ending == 8 && i == at {
                    let live_pending: Vec<(u64, Rec)> = parts[victim_part]
                        .pending
                        .iter()
                        .filter(|(_, r)| !r.deleted)
                        .map(|(n, r)| (*n, r.clone()))
                        .collect();
                    let (vn, v) =
                        live_pending[self.rng.below(live_pending.len() as u64) as usize].clone();
                    let mut r = Rec::new(v.code, false);
                    r.tag = 0;
                    r.b = 600 + v.b;
                    late_victim = (vn, format!("{}", v.code));
                    r
                } else {
                    Rec::new(self.fresh(), self.rng.chance(10))
                };
                let rn = tb.append(&r.values()).unwrap_or_else(|e| {
                    panic!("[{what}] the other session's open load {r:?}: {e:?}")
                });
                late.push((rn, r));
            }
            if ending == 7 {
                b.commit()
                    .unwrap_or_else(|e| panic!("[{what}] the other session's open load: {e:?}"));
                for (rn, r) in late.drain(..) {
                    vmodel.recs.insert(rn, r);
                }
            }
        }
        // Another session makes a record hold one of the load's keys by a
        // recall (9) or an update (10) of a committed record.
        let mut by_edit: Vec<(&str, u64)> = Vec::new();
        if ending == 9 || ending == 10 {
            let pending = &parts[victim_part].pending;
            let recallable: Vec<(u64, u64)> = pending
                .iter()
                .filter(|(_, r)| !r.deleted)
                .filter_map(|(pn, pr)| {
                    vmodel
                        .recs
                        .iter()
                        .find(|(_, d)| d.deleted && !d.blank && d.code == pr.code)
                        .map(|(dn, _)| (*pn, *dn))
                })
                .filter(|(_, dn)| {
                    UNIQUE.iter().all(|ix| {
                        vmodel
                            .live_holder(&vmodel.recs[dn], ix, Some(*dn))
                            .is_none()
                    })
                })
                .collect();
            let live: Vec<u64> = vmodel
                .recs
                .iter()
                .filter(|(_, r)| !r.deleted)
                .map(|(n, _)| *n)
                .collect();
            if ending == 9 && !recallable.is_empty() {
                let (pn, dn) = recallable[self.rng.below(recallable.len() as u64) as usize];
                tb.recall(dn)
                    .unwrap_or_else(|e| panic!("[{what}] the other session's recall {dn}: {e:?}"));
                vmodel.recs.get_mut(&dn).unwrap().deleted = false;
                taken.push(pn);
                let (d, p) = (&vmodel.recs[&dn], &pending[&pn]);
                for ix in UNIQUE {
                    if d.holds(p, ix) {
                        by_edit.push((ix, dn));
                    }
                }
                eprintln!("[{what}] recall of {dn} takes the key of pending {pn}: {by_edit:?}");
            } else if !live.is_empty() {
                let x = live[self.rng.below(live.len() as u64) as usize];
                let live_pending: Vec<(&u64, &Rec)> =
                    pending.iter().filter(|(_, r)| !r.deleted).collect();
                let (pn, v) = live_pending[self.rng.below(live_pending.len() as u64) as usize];
                taken.push(*pn);
                let mut r = Rec::new(v.code, false);
                r.tag = 0;
                r.b = 700 + v.b;
                let old = vmodel.recs[&x].clone();
                tb.update(x, &r.values()).unwrap_or_else(|e| {
                    panic!("[{what}] the other session's update of {x} {old:?} to {r:?}: {e:?}")
                });
                vmodel.recs.insert(x, r);
                by_edit.push(("code", x));
                eprintln!("[{what}] update of {x} takes code {}", v.code);
            }
        }
        colliders.extend(by_edit);
        drop(tb);

        let refused = if ending == 3 {
            a.rollback().unwrap();
            true
        } else {
            let res = a.commit();
            if colliders.is_empty() {
                res.unwrap_or_else(|e| panic!("[{what}] commit: {e:?}"));
                false
            } else {
                let ixs: Vec<&str> = colliders.iter().map(|c| c.0).collect();
                let (ix, h) = expect_dup(res, &ixs, None, &what);
                let want = colliders.iter().find(|c| c.0 == ix).unwrap().1;
                assert_eq!(
                    h, want,
                    "[{what}] DuplicateKey on {ix}: the holder (colliders {colliders:?})"
                );
                true
            }
        };
        if ending == 8 {
            let res = b.commit();
            let what = format!("{what}: the other session's load committed after it");
            let (vn, vcode) = late_victim.clone();
            let (_, _) = expect_dup(
                res.inspect_err(|e| {
                    if let Error::DuplicateKey { key, .. } = e {
                        assert!(
                            key.contains(&vcode),
                            "[{what}] key {key} names code {vcode}"
                        );
                    }
                }),
                &["code"],
                Some(vn),
                &what,
            );
            for (rn, _) in late.drain(..) {
                vmodel.recs.insert(rn, Rec::blank());
            }
        }
        for (i, p) in parts.iter().enumerate() {
            let mut model = if i == victim_part {
                vmodel.clone()
            } else {
                p.m0.clone()
            };
            for n in &p.blanks {
                model.recs.insert(*n, Rec::blank());
            }
            for (n, r) in &p.pending {
                model
                    .recs
                    .insert(*n, if refused { Rec::blank() } else { r.clone() });
            }
            verify(&self.db, &p.name, &model, &what);
            self.models.insert(p.name.clone(), model);
        }
        // Retry a refused load: the same records, but those whose key was taken.
        if refused && self.rng.chance(60) {
            let what = format!("{what} retry");
            a.begin().unwrap();
            let mut added: Vec<(String, u64, Rec)> = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let mut t = a.open_table(&p.name).unwrap();
                for (n, r) in &p.pending {
                    // Not those whose key was taken, nor its own deleted
                    // records (a taken key may be theirs too).
                    if (i == victim_part && taken.contains(n)) || r.deleted {
                        continue;
                    }
                    let rn = t
                        .append(&r.values())
                        .unwrap_or_else(|e| panic!("[{what}] append {r:?} again: {e:?}"));
                    if r.deleted {
                        t.delete(rn).unwrap();
                    }
                    added.push((p.name.clone(), rn, r.clone()));
                }
            }
            a.commit()
                .unwrap_or_else(|e| panic!("[{what}] commit: {e:?}"));
            for (name, n, r) in added {
                self.models.get_mut(&name).unwrap().recs.insert(n, r);
            }
            for p in &parts {
                let m = self.models[&p.name].clone();
                verify(&self.db, &p.name, &m, &what);
            }
        }
    }

    /// Appends `codes` to `t` inside the open transaction, with savepoints,
    /// refused duplicates, navigation and edits of its own appends.
    pub fn append_phase(
        &mut self,
        a: &Session,
        t: &mut Table,
        part: &mut Part,
        codes: Vec<i64>,
        what: &str,
    ) {
        let n = codes.len();
        let memo_pct = self.rng.below(30);
        let savepoint_at = self
            .rng
            .chance(35)
            .then(|| self.rng.below(n as u64) as usize);
        let navs: Vec<usize> = (0..self.rng.below(3))
            .map(|_| self.rng.below(n as u64) as usize)
            .collect();
        let dup_at = self
            .rng
            .chance(40)
            .then(|| self.rng.below(n as u64) as usize);
        let edits = self.rng.chance(25);
        eprintln!(
            "[{what}] {}: n={n} memo%={memo_pct} savepoint={savepoint_at:?} navs={navs:?} dup={dup_at:?} edits={edits}",
            part.name
        );
        let tagless = self.rng.chance(30);
        let mut queue = codes;
        queue.reverse();
        let mut i = 0usize;
        while let Some(c) = queue.pop() {
            let mut r = Rec::new(c, self.rng.below(100) < memo_pct);
            if tagless {
                r.tag = 0;
            }
            let got = t
                .append(&r.values())
                .unwrap_or_else(|e| panic!("[{what}] append {r:?}: {e}"));
            assert_eq!(t.recno(), got, "[{what}] append positions the handle");
            part.pending.insert(got, r);
            if Some(i) == savepoint_at {
                let sp = a.savepoint().unwrap();
                let k = self.rng.range(1, 60) as usize;
                let mut undone = Vec::new();
                for _ in 0..k {
                    let Some(c2) = queue.pop() else { break };
                    let r2 = Rec::new(c2, self.rng.chance(20));
                    let n2 = t.append(&r2.values()).unwrap();
                    undone.push((n2, c2));
                }
                if self.rng.chance(50) {
                    // The ordered view is built now, before the rollback.
                    let mut with = part.clone();
                    for (n2, c2) in &undone {
                        with.pending.insert(*n2, Rec::new(*c2, false));
                    }
                    // (memo flags differ, but navigation does not look at them)
                    self.navigate(a, t, &with, what);
                }
                a.rollback_to(sp).unwrap();
                for (n2, c2) in undone {
                    part.blanks.push(n2);
                    queue.push(c2);
                    assert!(
                        t.read(n2).map(|r| r.is_deleted()).unwrap_or(true),
                        "[{what}] an append rolled back to a savepoint reads deleted"
                    );
                }
                self.rng.shuffle(&mut queue);
                if self.rng.chance(50) {
                    self.navigate(a, t, part, what);
                }
            }
            if Some(i) == dup_at {
                self.dup_attempts(t, part, what);
            }
            if navs.contains(&i) {
                self.navigate(a, t, part, what);
            }
            i += 1;
        }
        if edits {
            self.own_edits(t, part, what);
        }
        if self.rng.chance(30) {
            self.navigate(a, t, part, what);
        }
    }

    /// Edits of the transaction's own appends: a rekey (its old key free
    /// again, its new key taken), a delete (its key free for a live record; a
    /// recall then refused), a delete and recall.
    pub fn own_edits(&mut self, t: &mut Table, part: &mut Part, what: &str) {
        let live: Vec<u64> = part
            .pending
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(n, _)| *n)
            .collect();
        let pick = |rng: &mut Rng| live[rng.below(live.len() as u64) as usize];
        // Rekey u to a fresh code; its old record is appended again.
        let u = pick(&mut self.rng);
        let old = part.pending[&u].clone();
        let new = Rec::new(self.fresh(), self.rng.chance(30));
        t.update(u, &new.values())
            .unwrap_or_else(|e| panic!("[{what}] rekey own {u} {old:?} -> {new:?}: {e:?}"));
        part.pending.insert(u, new.clone());
        let mut clash = Rec::new(new.code, false);
        clash.tag = 0;
        clash.b = 500;
        expect_dup(
            t.append(&clash.values()),
            &["code"],
            Some(u),
            &format!("{what}: the rekeyed record's new code"),
        );
        let rn = t.append(&old.values()).unwrap_or_else(|e| {
            panic!("[{what}] the old key of rekeyed {u} ({old:?}) is free again: {e:?}")
        });
        part.pending.insert(rn, old);
        // Delete d; a live record takes its keys; recalling d is refused.
        let d = pick(&mut self.rng);
        if d == u {
            return;
        }
        let dr = part.pending[&d].clone();
        t.delete(d).unwrap();
        part.pending.get_mut(&d).unwrap().deleted = true;
        let taker = self.rng.chance(50).then(|| {
            let mut r = dr.clone();
            r.deleted = false;
            r.memo = None;
            r
        });
        if let Some(r) = taker {
            let rn = t.append(&r.values()).unwrap_or_else(|e| {
                panic!("[{what}] a live record takes the key of own deleted {d} {dr:?}: {e:?}")
            });
            part.pending.insert(rn, r);
            let (ix, h) = expect_dup(
                t.recall(d),
                &UNIQUE,
                None,
                &format!("{what}: recall own {d}"),
            );
            assert_eq!(h, rn, "[{what}] recall own {d}: the holder on {ix}");
            assert!(t.is_deleted(d).unwrap());
        } else if self.rng.chance(50) {
            t.recall(d)
                .unwrap_or_else(|e| panic!("[{what}] recall own {d} {dr:?}: {e:?}"));
            part.pending.get_mut(&d).unwrap().deleted = false;
        }
    }

    /// Appends inside the transaction that must be refused at once: a key of
    /// a live committed record, and keys of the transaction's own rows.
    pub fn dup_attempts(&mut self, t: &mut Table, part: &Part, what: &str) {
        let (m0, pending) = (&part.m0, &part.pending);
        let live: Vec<(u64, &Rec)> = m0
            .recs
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(n, r)| (*n, r))
            .collect();
        if !live.is_empty() {
            let (h, hr) = live[self.rng.below(live.len() as u64) as usize];
            let mut r = Rec::new(hr.code, false);
            r.tag = 0;
            r.b = 200 + hr.b; // only the code collides
            expect_dup(
                t.append(&r.values()),
                &["code"],
                Some(h),
                &format!("{what}: in-txn dup of committed code"),
            );
            let mut r = Rec::new(9_000_000 + self.rng.below(1000) as i64 * 1000 + 999, false);
            r.a = flip(&hr.a);
            r.b = hr.b;
            if m0.live_holder(&r, "code", None).is_none()
                && !pending.values().any(|p| p.code == r.code)
            {
                expect_dup(
                    t.append(&r.values()),
                    &["ab"],
                    Some(h),
                    &format!("{what}: in-txn dup of committed ab"),
                );
            }
        }
        let k = self.rng.below(pending.len() as u64) as usize;
        let (&pn, pr) = pending.iter().nth(k).unwrap();
        let mut r = Rec::new(pr.code, true);
        r.tag = 0;
        r.b = 300 + pr.b;
        expect_dup(
            t.append(&r.values()),
            &["code"],
            Some(pn),
            &format!("{what}: in-txn dup of own code"),
        );
        let mut r = Rec::new(8_000_000 + self.rng.below(1_000_000) as i64, false);
        r.a = flip(&pr.a);
        r.b = pr.b;
        if m0.live_holder(&r, "code", None).is_none() && !pending.values().any(|p| p.code == r.code)
        {
            expect_dup(
                t.append(&r.values()),
                &["ab"],
                Some(pn),
                &format!("{what}: in-txn dup of own ab"),
            );
        }
    }

    /// Navigation inside the transaction: seeks find pending rows, walks show
    /// committed and pending rows merged in key order.
    pub fn navigate(&mut self, s: &Session, t: &mut Table, part: &Part, what: &str) {
        let (m0, pending, blanks) = (&part.m0, &part.pending, &part.blanks);
        let hide = s.hide_deleted();
        let uix = UNIQUE[self.rng.below(3) as usize];
        let live_pending: Vec<(u64, Rec)> = pending
            .iter()
            .filter(|(_, r)| !r.deleted && (uix != "tag" || r.tag > 0))
            .map(|(n, r)| (*n, r.clone()))
            .collect();
        let mut merged = m0.clone();
        for (n, r) in pending {
            merged.recs.insert(*n, r.clone());
        }
        for n in blanks {
            merged.recs.insert(*n, Rec::blank());
        }
        let ix = INDEXES[self.rng.below(INDEXES.len() as u64) as usize];
        // Seek a few pending rows through a unique index.
        t.set_order(Some(uix)).unwrap();
        for _ in 0..5 {
            if live_pending.is_empty() {
                break;
            }
            let k = self.rng.below(live_pending.len() as u64) as usize;
            let (pn, pr) = live_pending[k].clone();
            assert!(
                t.seek(&pr.key(uix)).unwrap(),
                "[{what}] in-txn seek {uix} of pending {pn} {pr:?}"
            );
            assert_eq!(
                t.recno(),
                pn,
                "[{what}] in-txn seek {uix} of pending {pr:?}"
            );
            // A few steps on from it follow the merged order.
            let want = merged.order(uix, hide);
            let at = want.iter().position(|&x| x == pn).unwrap();
            for step in 1..=8 {
                let more = t.next().unwrap();
                match want.get(at + step) {
                    Some(&w) => {
                        assert!(more, "[{what}] in-txn next after seek {uix}");
                        assert_eq!(
                            t.recno(),
                            w,
                            "[{what}] in-txn next #{step} after seek {uix} {pr:?}"
                        );
                    }
                    None => {
                        assert!(!more && t.eof(), "[{what}] in-txn next past the end");
                        break;
                    }
                }
            }
        }
        // A full walk when the table is not too big (debug build).
        if merged.recs.len() < 6000 {
            let got = walk(t, ix);
            let want = merged.order(ix, hide);
            same_order(
                &got,
                &want,
                &merged,
                &format!("[{what}] in-txn walk {ix} (hide {hide})"),
            );
            // And backwards from the end.
            let mut back = Vec::new();
            if t.last().unwrap() {
                back.push(t.recno());
                while t.prev().unwrap() {
                    back.push(t.recno());
                }
            }
            back.reverse();
            assert_eq!(
                back, want,
                "[{what}] in-txn walk {ix} backwards (hide {hide})"
            );
        }
        t.set_order(None).unwrap();
    }
}
