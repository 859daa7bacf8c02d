//! Random appends / updates / deletes / recalls / reopens on a table with several
//! indexes (unique upper-cased, multi-segment with a descending part, duplicates,
//! conditional), compared after every batch with a model built on BTreeMap:
//! every navigation call's result — first/next and last/prev, exact, soft and
//! last-of-prefix seeks with partial keys, scopes, skip counts crossing both ends,
//! counts, with and without deleted records hidden.
//!
//! `PROPTEST_CASES` sets the number of cases (default 32).

mod common;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_engine::storage::MemoryStorage;
use raiz_engine::{
    Decimal, Error, Field, FieldType, RecordFormat, Schema, Table, TableOptions, Value,
};

#[derive(Debug, Clone, PartialEq)]
struct Row {
    code: String,
    grp: i64,
    name: String,
    amount: i64, // hundredths
    deleted: bool,
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(4)),
        Field::new("GRP", FieldType::Int64),
        Field::new("NAME", FieldType::Char(6)),
        Field::new("AMOUNT", FieldType::Numeric { len: 9, dec: 2 }),
    ])
}

fn values(r: &Row) -> Vec<Value> {
    vec![
        Value::from(r.code.as_str()),
        Value::Int64(r.grp),
        Value::from(r.name.as_str()),
        Value::Numeric(Decimal::new(i128::from(r.amount), 2)),
    ]
}

fn pad(s: &str, n: usize) -> String {
    format!("{s:<n$}")
}

/// Model keys: one BTreeMap per index, from a comparable key to the recno.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum K {
    /// by_code: upper(code), 0 for live or recno for deleted.
    Code(String, u64),
    /// by_grp_name: grp asc, name desc, recno.
    GrpName(i64, Reverse<String>, u64),
    /// by_amount: amount, recno.
    Amount(i64, u64),
    /// pos_by_name (AMOUNT > 0): name, recno.
    PosName(String, u64),
}

const INDEXES: [&str; 4] = ["by_code", "by_grp_name", "by_amount", "pos_by_name"];

fn model_index(rows: &[Row], which: usize) -> Vec<(K, u64)> {
    let mut m = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let recno = i as u64 + 1;
        let k = match which {
            0 => K::Code(
                pad(&r.code.to_uppercase(), 4),
                if r.deleted { recno } else { 0 },
            ),
            1 => K::GrpName(r.grp, Reverse(pad(&r.name, 6)), recno),
            2 => K::Amount(r.amount, recno),
            _ if r.amount > 0 => K::PosName(pad(&r.name, 6), recno),
            _ => continue,
        };
        m.insert(k, recno);
    }
    m.into_iter().collect()
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8, i64, u8, i64),
    Update(usize, u8, i64, u8, i64),
    Delete(usize),
    Recall(usize),
    Reopen,
}

const CODES: [&str; 6] = ["ab", "AB", "ac", "b", "bz", "c1"];
const NAMES: [&str; 5] = ["ana", "bia", "bruno", "caio", "ze"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, -2i64..3, 0u8..5, -300i64..300).prop_map(|(c, g, n, a)| Op::Append(c, g, n, a)),
        3 => (any::<usize>(), 0u8..6, -2i64..3, 0u8..5, -300i64..300).prop_map(|(i, c, g, n, a)| Op::Update(i, c, g, n, a)),
        2 => any::<usize>().prop_map(Op::Delete),
        2 => any::<usize>().prop_map(Op::Recall),
        1 => Just(Op::Reopen),
    ]
}

fn row_of(code: u8, grp: i64, name: u8, amount: i64) -> Row {
    Row {
        code: format!("{}{}", CODES[code as usize], grp.rem_euclid(3)),
        grp,
        name: NAMES[name as usize].to_string(),
        amount,
        deleted: false,
    }
}

fn live_code_taken(rows: &[Row], code: &str, me: Option<usize>) -> bool {
    rows.iter()
        .enumerate()
        .any(|(i, r)| Some(i) != me && !r.deleted && r.code.to_uppercase() == code.to_uppercase())
}

struct H {
    storage: MemoryStorage,
    db: Option<raiz_engine::Database>,
    t: Option<Table>,
}

impl H {
    fn open(&mut self) {
        let db = common::open_on(Arc::new(self.storage.clone()), 64 << 10);
        self.t = Some(db.session().open_table("m").unwrap());
        self.db = Some(db);
    }
    fn t(&mut self) -> &mut Table {
        self.t.as_mut().unwrap()
    }
}

fn walk(t: &mut Table) -> Vec<u64> {
    let mut v = vec![];
    let mut ok = t.first().unwrap();
    while ok {
        v.push(t.recno());
        ok = t.next().unwrap();
    }
    v
}

fn walk_back(t: &mut Table) -> Vec<u64> {
    let mut v = vec![];
    let mut ok = t.last().unwrap();
    while ok {
        v.push(t.recno());
        ok = t.prev().unwrap();
    }
    v.reverse();
    v
}

/// Seek keys for index `which` and what they mean as a predicate on model keys.
/// A seek key and, for model keys, how they compare with it as a prefix.
type Probe = (Vec<Value>, Box<dyn Fn(&K) -> std::cmp::Ordering>);

fn probes(which: usize) -> Vec<Probe> {
    let mut out: Vec<Probe> = Vec::new();
    match which {
        0 => {
            for p in ["A", "AB", "AB1", "B", "BZ", "C", "Q", ""] {
                let p2 = p.to_string();
                out.push((
                    vec![Value::from(p)],
                    Box::new(move |k| match k {
                        K::Code(c, _) => {
                            let cut = &c[..p2.len().min(c.len())];
                            cut.cmp(p2.as_str())
                        }
                        _ => unreachable!(),
                    }),
                ));
            }
        }
        1 => {
            for g in -3i64..4 {
                out.push((
                    vec![Value::Int64(g)],
                    Box::new(move |k| match k {
                        K::GrpName(kg, _, _) => kg.cmp(&g),
                        _ => unreachable!(),
                    }),
                ));
                for n in ["b", "bruno", "c", "zz"] {
                    let n2 = n.to_string();
                    out.push((
                        vec![Value::Int64(g), Value::from(n)],
                        Box::new(move |k| match k {
                            K::GrpName(kg, Reverse(kn), _) => kg.cmp(&g).then_with(|| {
                                let cut = &kn[..n2.len().min(kn.len())];
                                // Descending segment: larger names first.
                                n2.as_str().cmp(cut)
                            }),
                            _ => unreachable!(),
                        }),
                    ));
                }
            }
        }
        2 => {
            for a in [-301i64, -100, 0, 5, 299, 300] {
                out.push((
                    vec![Value::Numeric(Decimal::new(i128::from(a), 2))],
                    Box::new(move |k| match k {
                        K::Amount(ka, _) => ka.cmp(&a),
                        _ => unreachable!(),
                    }),
                ));
            }
        }
        _ => {
            for n in ["a", "bi", "bruno", "d", "ze"] {
                let n2 = n.to_string();
                out.push((
                    vec![Value::from(n)],
                    Box::new(move |k| match k {
                        K::PosName(kn, _) => kn[..n2.len().min(kn.len())].cmp(n2.as_str()),
                        _ => unreachable!(),
                    }),
                ));
            }
        }
    }
    out
}

fn check_all(h: &mut H, rows: &[Row], hide: bool) {
    let session = h.db.as_ref().unwrap().session();
    session.set_hide_deleted(hide);
    let mut t = session.open_table("m").unwrap();
    let count = rows.len() as u64;
    for (which, name) in INDEXES.iter().enumerate() {
        t.set_order(Some(name)).unwrap();
        let model: Vec<(K, u64)> = model_index(rows, which)
            .into_iter()
            .filter(|(_, r)| !hide || !rows[*r as usize - 1].deleted)
            .collect();
        let expect: Vec<u64> = model.iter().map(|(_, r)| *r).collect();
        assert_eq!(walk(&mut t), expect, "{name} forward (hide {hide})");
        assert_eq!(walk_back(&mut t), expect, "{name} backward (hide {hide})");
        assert_eq!(
            t.count_range(None, None).unwrap(),
            expect.len() as u64,
            "{name} count"
        );
        // Skips from the top crossing both ends.
        for n in [1i64, 3, 7, 100] {
            t.first().unwrap();
            let ok = t.skip(n).unwrap();
            match expect.get(n as usize) {
                Some(&r) => assert!(ok && t.recno() == r, "{name} skip {n}"),
                None => assert!(
                    !ok && t.eof() && t.recno() == count + 1,
                    "{name} skip {n} to eof"
                ),
            }
            let back = t.skip(-n - 1).unwrap();
            let from = expect.len().min(n as usize);
            if from > n as usize {
                assert!(back);
            } else {
                assert!(
                    !back && (expect.is_empty() || t.bof()),
                    "{name} skip back to bof"
                );
                if let Some(&first) = expect.first() {
                    assert_eq!(t.recno(), first);
                }
            }
        }
        for (key, cmp) in probes(which) {
            let exact: Vec<&(K, u64)> = model.iter().filter(|(k, _)| cmp(k).is_eq()).collect();
            let found = t.seek(&key).unwrap();
            assert_eq!(found, !exact.is_empty(), "{name} seek {key:?}");
            if found {
                assert_eq!(t.recno(), exact[0].1, "{name} seek {key:?}");
            } else {
                assert!(t.eof());
            }
            let soft = t.seek_soft(&key).unwrap();
            assert_eq!(soft, !exact.is_empty());
            match model.iter().find(|(k, _)| cmp(k).is_ge()) {
                Some((_, r)) => assert_eq!(t.recno(), *r, "{name} soft seek {key:?}"),
                None => assert!(t.eof(), "{name} soft seek {key:?} past the end"),
            }
            let last = t.seek_last(&key).unwrap();
            assert_eq!(last, !exact.is_empty());
            if last {
                assert_eq!(
                    t.recno(),
                    exact.last().unwrap().1,
                    "{name} seek last {key:?}"
                );
            }
            // Scope [key, key]: exactly the prefix matches.
            t.set_scope(Some(&key), Some(&key)).unwrap();
            let scoped = walk(&mut t);
            assert_eq!(
                scoped,
                exact.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
                "{name} scope {key:?}"
            );
            assert_eq!(walk_back(&mut t), scoped);
            t.clear_scope();
            let range: Vec<u64> = t
                .range(Some(&key), Some(&key))
                .unwrap()
                .map(|r| r.unwrap().recno())
                .collect();
            assert_eq!(range, scoped, "{name} range {key:?}");
        }
    }
    assert!(t.check(5).unwrap().is_ok(), "{:?}", t.check(5).unwrap());
}

fn run(format: RecordFormat, ops: Vec<Op>) {
    let storage = MemoryStorage::new();
    {
        let db = common::open_on(Arc::new(storage.clone()), 64 << 10);
        db.create_table(
            "m",
            &schema(),
            TableOptions::default().format(format).page_size(4096),
        )
        .unwrap();
        let mut t = db.session().open_table("m").unwrap();
        t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE").upper()]).unique())
            .unwrap();
        t.create_index(&IndexDef::new(
            "by_grp_name",
            vec![Segment::field("GRP"), Segment::field("NAME").descending()],
        ))
        .unwrap();
        t.create_index(&IndexDef::new("by_amount", vec![Segment::field("AMOUNT")]))
            .unwrap();
        t.create_index(
            &IndexDef::new("pos_by_name", vec![Segment::field("NAME")]).when(Condition::cmp(
                "AMOUNT",
                CmpOp::Gt,
                Literal::Numeric(Decimal::ZERO),
            )),
        )
        .unwrap();
    }
    let mut h = H {
        storage,
        db: None,
        t: None,
    };
    h.open();
    let mut rows: Vec<Row> = Vec::new();
    for op in ops {
        match op {
            Op::Append(c, g, n, a) => {
                let r = row_of(c, g, n, a);
                let taken = live_code_taken(&rows, &r.code, None);
                match h.t().append(&values(&r)) {
                    Ok(recno) => {
                        assert!(!taken);
                        assert_eq!(recno, rows.len() as u64 + 1);
                        rows.push(r);
                    }
                    Err(Error::DuplicateKey { .. }) => assert!(taken),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Update(i, c, g, n, a) if !rows.is_empty() => {
                let i = i % rows.len();
                let mut r = row_of(c, g, n, a);
                r.deleted = rows[i].deleted;
                let taken = !r.deleted && live_code_taken(&rows, &r.code, Some(i));
                match h.t().update(i as u64 + 1, &values(&r)) {
                    Ok(()) => {
                        assert!(!taken);
                        rows[i] = r;
                    }
                    Err(Error::DuplicateKey { .. }) => assert!(taken),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Delete(i) if !rows.is_empty() => {
                let i = i % rows.len();
                h.t().delete(i as u64 + 1).unwrap();
                rows[i].deleted = true;
            }
            Op::Recall(i) if !rows.is_empty() => {
                let i = i % rows.len();
                let taken =
                    rows[i].deleted && live_code_taken(&rows, &rows[i].code.clone(), Some(i));
                match h.t().recall(i as u64 + 1) {
                    Ok(()) => {
                        assert!(!taken);
                        rows[i].deleted = false;
                    }
                    Err(Error::DuplicateKey { .. }) => assert!(taken),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Reopen => {
                h.t.take().unwrap().close().unwrap();
                h.db.take();
                h.open();
                assert!(h.db.as_ref().unwrap().repairs().is_empty());
            }
            _ => {}
        }
    }
    check_all(&mut h, &rows, false);
    check_all(&mut h, &rows, true);
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn fixed_table_indexes_match_model(ops in proptest::collection::vec(op(), 1..250)) {
        run(RecordFormat::Fixed, ops);
    }

    #[test]
    fn variable_table_indexes_match_model(ops in proptest::collection::vec(op(), 1..250)) {
        run(RecordFormat::Variable, ops);
    }
}
