//! The model the adversarial schedules are checked against: a seeded RNG,
//! the table's schema and indexes, each record's expected state, and the
//! check of a table against its model.

use std::collections::{BTreeMap, HashSet};

use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_engine::{Database, Field, FieldType, Memo, Schema, Table, TableOptions, Value};

// ---------------------------------------------------------------- rng, seed

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

pub fn seed(salt: u64) -> u64 {
    let s = match std::env::var("RAIZ_ADV_SEED") {
        Ok(v) => v.trim().parse().expect("RAIZ_ADV_SEED: a u64"),
        // A fixed default keeps the suite's runs repeatable; set
        // RAIZ_ADV_SEED (e.g. from `date +%s%N`) to explore other schedules.
        Err(_) => 0x005E_ED0F_B01C,
    };
    eprintln!("bulk_adversary: RAIZ_ADV_SEED={s}");
    s ^ salt
}

pub fn rounds(default: usize) -> usize {
    std::env::var("RAIZ_ADV_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- schema, rows

pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Int64),
        Field::new("A", FieldType::Char(6)),
        Field::new("B", FieldType::Int64),
        Field::new("GRP", FieldType::Char(4)),
        Field::new("TAG", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ])
}

pub fn create(db: &Database, name: &str) {
    create_with(db, name, TableOptions::default());
}

pub fn create_with(db: &Database, name: &str, opts: TableOptions) {
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
pub fn flip(a: &str) -> String {
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
pub struct Rec {
    pub code: i64,
    pub a: String,
    pub b: i64,
    pub grp: String,
    pub tag: i64,
    pub memo: Option<Vec<u8>>,
    pub deleted: bool,
    pub blank: bool,
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
    pub fn new(code: i64, memo: bool) -> Rec {
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
    pub fn blank() -> Rec {
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
    pub fn values(&self) -> Vec<Value> {
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
    pub fn key(&self, index: &str) -> Vec<Value> {
        match index {
            "code" => vec![Value::Int64(self.code)],
            "ab" => vec![Value::Char(self.a.clone()), Value::Int64(self.b)],
            "tag" => vec![Value::Int64(self.tag)],
            _ => vec![Value::Char(self.grp.clone())],
        }
    }
    pub fn holds(&self, other: &Rec, index: &str) -> bool {
        match index {
            "code" => self.code == other.code,
            "ab" => self.a.to_uppercase() == other.a.to_uppercase() && self.b == other.b,
            "tag" => self.tag > 0 && self.tag == other.tag,
            _ => unreachable!(),
        }
    }
}

pub const INDEXES: [&str; 4] = ["code", "ab", "grp", "tag"];
pub const UNIQUE: [&str; 3] = ["code", "ab", "tag"];

/// A table as it must be: every recno from 1 up.
#[derive(Default, Clone)]
pub struct Model {
    pub recs: BTreeMap<u64, Rec>,
}

impl Model {
    pub fn live_holder(&self, r: &Rec, index: &str, except: Option<u64>) -> Option<u64> {
        self.recs
            .iter()
            .find(|(n, x)| !x.deleted && Some(**n) != except && x.holds(r, index))
            .map(|(n, _)| *n)
    }
    pub fn live_codes(&self) -> HashSet<i64> {
        self.recs
            .values()
            .filter(|r| !r.deleted)
            .map(|r| r.code)
            .collect()
    }
    /// Expected walk of `index`: a unique index orders a live key before the
    /// deleted ones holding it (their key carries the recno), a non-unique
    /// one by key then recno.
    pub fn order(&self, index: &str, hide: bool) -> Vec<u64> {
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
pub type OrderKey = (i64, String, i64, String);

pub fn code_of(v: &[Value]) -> i64 {
    match v[0] {
        Value::Int64(c) => c,
        ref o => panic!("CODE {o:?}"),
    }
}

pub fn walk(t: &mut Table, index: &str) -> Vec<u64> {
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
pub fn verify(db: &Database, name: &str, m: &Model, what: &str) {
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
            same_order(
                &got,
                &want,
                m,
                &format!("[{what}] {name}: order {ix} (hide_deleted {hide})"),
            );
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

/// Panics, naming the first difference, unless a walk found `want`.
pub fn same_order(got: &[u64], want: &[u64], m: &Model, what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} entries, want {}; first difference at {first}: got {:?} want {:?}",
            got.len(),
            want.len(),
            got.get(first).map(|r| (r, m.recs.get(r))),
            want.get(first).map(|r| (r, m.recs.get(r))),
        );
    }
}
