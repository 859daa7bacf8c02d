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

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{
    Database, Error, Field, FieldType, Memo, Schema, Session, Table, TableOptions, Value,
};

// ---------------------------------------------------------------- rng, seed

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

fn seed(salt: u64) -> u64 {
    let s = match std::env::var("RAIZ_ADV_SEED") {
        Ok(v) => v.trim().parse().expect("RAIZ_ADV_SEED: a u64"),
        // A fixed default keeps the suite's runs repeatable; set
        // RAIZ_ADV_SEED (e.g. from `date +%s%N`) to explore other schedules.
        Err(_) => 0x005E_ED0F_B01C,
    };
    eprintln!("bulk_adversary: RAIZ_ADV_SEED={s}");
    s ^ salt
}

fn rounds(default: usize) -> usize {
    std::env::var("RAIZ_ADV_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- schema, rows

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Int64),
        Field::new("A", FieldType::Char(6)),
        Field::new("B", FieldType::Int64),
        Field::new("GRP", FieldType::Char(4)),
        Field::new("TAG", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ])
}

fn create(db: &Database, name: &str) {
    create_with(db, name, TableOptions::default());
}

fn create_with(db: &Database, name: &str, opts: TableOptions) {
    db.create_table(name, &schema(), opts).unwrap();
    let mut t = db.session().open_table(name).unwrap();
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.create_index(
        &IndexDef::new(
            "ab",
            vec![
                Segment::field("A").upper(),
                Segment::field("B").descending(),
            ],
        )
        .unique(),
    )
    .unwrap();
    t.create_index(&IndexDef::new("grp", vec![Segment::field("GRP")]))
        .unwrap();
    // Unique among the records it includes: those with a tag.
    t.create_index(
        &IndexDef::new("tag", vec![Segment::field("TAG")])
            .unique()
            .when(Condition::cmp("TAG", CmpOp::Gt, Literal::Int64(0))),
    )
    .unwrap();
}

/// The same text in the other case (the same key in index "ab").
fn flip(a: &str) -> String {
    a.chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[derive(Clone, PartialEq)]
struct Rec {
    code: i64,
    a: String,
    b: i64,
    grp: String,
    tag: i64,
    memo: Option<Vec<u8>>,
    deleted: bool,
    blank: bool,
}

impl std::fmt::Debug for Rec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Rec{{code {} a {:?} b {} grp {:?} tag {} memo {:?}{}{}}}",
            self.code,
            self.a,
            self.b,
            self.grp,
            self.tag,
            self.memo.as_ref().map(|m| m.len()),
            if self.deleted { " DELETED" } else { "" },
            if self.blank { " BLANK" } else { "" },
        )
    }
}

impl Rec {
    /// A row whose (A, B) is a bijection of its code: both unique keys are
    /// scrambled with respect to each other and to the append order.
    fn new(code: i64, memo: bool) -> Rec {
        let a = format!(
            "{:06x}",
            ((code as u64).wrapping_mul(0x9E37_79B1)) & 0xFF_FFFF
        );
        // Index "ab" takes A upper-cased: some rows spell it in capitals.
        let a = if code % 3 == 0 { a.to_uppercase() } else { a };
        let mix = (code as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        Rec {
            code,
            a,
            b: code % 7 - 3,
            grp: format!("G{:02} ", mix % 23),
            tag: if code % 10 == 3 { code * 3 + 1 } else { 0 },
            memo: memo.then(|| {
                format!("memo {code};")
                    .repeat(1 + (code as usize % 40))
                    .into_bytes()
            }),
            deleted: false,
            blank: false,
        }
    }
    fn blank() -> Rec {
        Rec {
            code: 0,
            a: " ".repeat(6),
            b: 0,
            grp: " ".repeat(4),
            tag: 0,
            memo: None,
            deleted: true,
            blank: true,
        }
    }
    fn values(&self) -> Vec<Value> {
        vec![
            Value::Int64(self.code),
            Value::Char(self.a.clone()),
            Value::Int64(self.b),
            Value::Char(self.grp.clone()),
            Value::Int64(self.tag),
            Value::Memo(match &self.memo {
                Some(d) => Memo::Data(d.clone()),
                None => Memo::Empty,
            }),
        ]
    }
    fn key(&self, index: &str) -> Vec<Value> {
        match index {
            "code" => vec![Value::Int64(self.code)],
            "ab" => vec![Value::Char(self.a.clone()), Value::Int64(self.b)],
            "tag" => vec![Value::Int64(self.tag)],
            _ => vec![Value::Char(self.grp.clone())],
        }
    }
    fn holds(&self, other: &Rec, index: &str) -> bool {
        match index {
            "code" => self.code == other.code,
            "ab" => self.a.to_uppercase() == other.a.to_uppercase() && self.b == other.b,
            "tag" => self.tag > 0 && self.tag == other.tag,
            _ => unreachable!(),
        }
    }
}

const INDEXES: [&str; 4] = ["code", "ab", "grp", "tag"];
const UNIQUE: [&str; 3] = ["code", "ab", "tag"];

/// A table as it must be: every recno from 1 up.
#[derive(Default, Clone)]
struct Model {
    recs: BTreeMap<u64, Rec>,
}

impl Model {
    fn live_holder(&self, r: &Rec, index: &str, except: Option<u64>) -> Option<u64> {
        self.recs
            .iter()
            .find(|(n, x)| !x.deleted && Some(**n) != except && x.holds(r, index))
            .map(|(n, _)| *n)
    }
    fn live_codes(&self) -> HashSet<i64> {
        self.recs
            .values()
            .filter(|r| !r.deleted)
            .map(|r| r.code)
            .collect()
    }
    /// Expected walk of `index`: a unique index orders a live key before the
    /// deleted ones holding it (their key carries the recno), a non-unique
    /// one by key then recno.
    fn order(&self, index: &str, hide: bool) -> Vec<u64> {
        let mut v: Vec<(OrderKey, u8, u64)> = self
            .recs
            .iter()
            .filter(|(_, r)| !(hide && r.deleted))
            .filter(|(_, r)| index != "tag" || r.tag > 0)
            .map(|(&n, r)| {
                let k = match index {
                    "code" => (r.code, String::new(), 0, String::new()),
                    "tag" => (r.tag, String::new(), 0, String::new()),
                    "ab" => (0, r.a.to_uppercase(), -r.b, String::new()),
                    _ => (0, String::new(), 0, r.grp.clone()),
                };
                let d = if index == "grp" { 0 } else { r.deleted as u8 };
                (k, d, n)
            })
            .collect();
        v.sort();
        v.into_iter().map(|x| x.2).collect()
    }
}

/// A row's key fields as an index orders them: code, A, B, tag.
type OrderKey = (i64, String, i64, String);

fn code_of(v: &[Value]) -> i64 {
    match v[0] {
        Value::Int64(c) => c,
        ref o => panic!("CODE {o:?}"),
    }
}

fn walk(t: &mut Table, index: &str) -> Vec<u64> {
    t.set_order(Some(index)).unwrap();
    let mut got = Vec::new();
    let mut more = t.first().unwrap();
    while more {
        got.push(t.recno());
        more = t.next().unwrap();
        assert!(got.len() < 1_000_000, "walk of {index} does not end");
    }
    got
}

/// The table holds exactly the model: every record's flag and values, every
/// index walked both with and without deleted records, seeks, and `check`.
fn verify(db: &Database, name: &str, m: &Model, what: &str) {
    let s = db.session();
    let mut t = s.open_table(name).unwrap();
    let snap = t.snapshot().unwrap();
    let max = m.recs.keys().next_back().copied().unwrap_or(0);
    assert_eq!(
        t.record_count(),
        max,
        "[{what}] {name}: record_count (model has recnos 1..={max})"
    );
    assert_eq!(snap.len() as u64, max, "[{what}] {name}: snapshot length");
    for rec in &snap {
        let n = rec.recno();
        let want = m
            .recs
            .get(&n)
            .unwrap_or_else(|| panic!("[{what}] {name}: recno {n} not in the model"));
        assert_eq!(
            rec.is_deleted(),
            want.deleted,
            "[{what}] {name}: recno {n} deleted flag (model {want:?}, table {:?})",
            rec.values()
        );
        let w = want.values();
        for (i, (got, want_v)) in rec.values().iter().zip(w.iter()).take(5).enumerate() {
            assert_eq!(
                got, want_v,
                "[{what}] {name}: recno {n} field {i} (model {want:?})"
            );
        }
        match &want.memo {
            Some(d) => assert_eq!(
                &t.read_memo(n, "NOTE").unwrap(),
                d,
                "[{what}] {name}: recno {n} memo"
            ),
            None => assert!(
                t.read_memo(n, "NOTE").unwrap().is_empty(),
                "[{what}] {name}: recno {n} memo should be empty"
            ),
        }
    }
    for hide in [true, false] {
        s.set_hide_deleted(hide);
        for ix in INDEXES {
            let got = walk(&mut t, ix);
            let want = m.order(ix, hide);
            if got != want {
                let first = got
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()));
                panic!(
                    "[{what}] {name}: order {ix} (hide_deleted {hide}): got {} entries, want {}; \
                     first difference at {first}: got {:?} want {:?}",
                    got.len(),
                    want.len(),
                    got.get(first).map(|r| (r, m.recs.get(r))),
                    want.get(first).map(|r| (r, m.recs.get(r))),
                );
            }
        }
    }
    // Seeks through both unique indexes find the live holder.
    s.set_hide_deleted(true);
    for ix in UNIQUE {
        t.set_order(Some(ix)).unwrap();
        for (n, r) in m
            .recs
            .iter()
            .filter(|(_, r)| !r.deleted && (ix != "tag" || r.tag > 0))
            .step_by(7)
        {
            assert!(
                t.seek(&r.key(ix)).unwrap(),
                "[{what}] {name}: seek {ix} {r:?}"
            );
            assert_eq!(t.recno(), *n, "[{what}] {name}: seek {ix} {r:?}");
        }
    }
    t.set_order(None).unwrap();
    let report = t.check(100).unwrap();
    assert!(report.is_ok(), "[{what}] {name}: check {report:?}");
}

// ---------------------------------------------------------------- the schedule

#[derive(Clone)]
struct Part {
    name: String,
    m0: Model,
    pending: BTreeMap<u64, Rec>,
    blanks: Vec<u64>,
}

struct World {
    storage: FaultStorage,
    db: Database,
    models: BTreeMap<String, Model>,
    next_code: i64,
    rng: Rng,
    step: usize,
    pool: usize,
    unlogged: bool,
}

fn expect_dup(
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

impl World {
    fn fresh(&mut self) -> i64 {
        self.next_code += 1 + self.rng.below(3) as i64;
        self.next_code
    }

    /// One large (or just-below-threshold) appending transaction, with the
    /// variants an adversary would choose.
    fn load(&mut self, name: &str) {
        self.load_multi(&[name.to_owned()]);
    }

    /// The codes a load into `m0` appends: fresh ones, some codes only deleted
    /// records hold, sometimes code 0 (the blank records' code).
    fn load_codes(&mut self, m0: &Model, n: usize) -> Vec<i64> {
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
    fn load_multi(&mut self, names: &[String]) {
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
    fn append_phase(
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
    fn own_edits(&mut self, t: &mut Table, part: &mut Part, what: &str) {
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
    fn dup_attempts(&mut self, t: &mut Table, part: &Part, what: &str) {
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
    fn navigate(&mut self, s: &Session, t: &mut Table, part: &Part, what: &str) {
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
            if got != want {
                let first = got
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()));
                panic!(
                    "[{what}] in-txn walk {ix} (hide {hide}): got {} want {}; first difference at {first}: got {:?} want {:?}",
                    got.len(),
                    want.len(),
                    got.get(first).map(|r| (r, merged.recs.get(r))),
                    want.get(first).map(|r| (r, merged.recs.get(r))),
                );
            }
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

    fn create(&self, name: &str) {
        let opts = TableOptions::default();
        let opts = if self.unlogged {
            opts.durability(raiz_engine::Durability::Unlogged)
        } else {
            opts
        };
        create_with(&self.db, name, opts);
    }

    /// A new table: its indexes are empty (a load builds them bottom-up).
    fn fresh_table(&mut self) -> String {
        let name = format!("f{}", self.step);
        self.create(&name);
        self.models.insert(name.clone(), Model::default());
        name
    }

    /// Deletes most (or all) records and packs the table: its indexes are
    /// rebuilt from what is left, perhaps empty, before the next load.
    fn wipe(&mut self, name: &str) {
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
    fn delete_recall(&mut self, name: &str) {
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
    fn mixed(&mut self, t1: &str, t2: &str) {
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
    fn power_cut(&mut self) {
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

fn world(salt: u64, unlogged: bool) -> World {
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
            let r = m.recs[&n].clone();
            if !r.deleted {
                continue;
            }
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
                let (ix, h) = expect_dup(res, &ixs, None, &format!("{what}: recall {n}"));
                assert_eq!(
                    h,
                    holders.iter().find(|x| x.0 == ix).unwrap().1,
                    "[{what}] recall {n}: holder"
                );
            }
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
