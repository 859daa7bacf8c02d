//! Random sequences of append / update / delete / recall / reopen, compared with a
//! simple in-memory model after every step: every record, its memo, and the
//! navigation order with and without deleted records hidden. Fixed and variable
//! tables, 4 KiB pages, and a buffer pool far smaller than the data.
//!
//! `PROPTEST_CASES` sets the number of cases (default 32 per format).

mod common;

use std::sync::Arc;

use proptest::prelude::*;
use raiz_engine::storage::MemoryStorage;
use raiz_engine::{
    Database, Date, Decimal, Field, FieldType, Memo, RecordFormat, Schema, Table, TableOptions,
    Value,
};

const POOL: usize = 32 << 10;

#[derive(Debug, Clone)]
enum Op {
    Append(u32, Option<usize>),
    Update(usize, u32, MemoChange),
    Delete(usize),
    Recall(usize),
    Reopen,
    Flush,
    HideDeleted(bool),
}

#[derive(Debug, Clone)]
enum MemoChange {
    Keep,
    Clear,
    Set(usize),
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    deleted: bool,
    values: Vec<Value>,
    memo: Vec<u8>,
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("NAME", FieldType::Char(24)),
        Field::new("AMOUNT", FieldType::Numeric { len: 10, dec: 2 }),
        Field::new("DAY", FieldType::Date),
        Field::new("OK", FieldType::Logical),
        Field::new("TEXT", FieldType::Memo),
        Field::new("N", FieldType::Int64),
        Field::new("BLOB", FieldType::Binary(40)),
    ])
}

fn memo_bytes(seed: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed as usize * 31 + i) as u8).collect()
}

/// Values for seed `s`; the memo slot is filled in by the caller.
fn row_values(s: u32) -> Vec<Value> {
    let name = "x".repeat((s % 25) as usize);
    vec![
        Value::Char(name),
        Value::Numeric(Decimal::new(i128::from(s % 2_000_000) - 1_000_000, 2)),
        Value::Date(if s.is_multiple_of(5) {
            Date::EMPTY
        } else {
            Date::ymd(
                1990 + (s % 40) as u16,
                (s % 12 + 1) as u8,
                (s % 28 + 1) as u8,
            )
        }),
        Value::Logical(s.is_multiple_of(2)),
        Value::Memo(Memo::Empty),
        Value::Int64(i64::from(s) * -3),
        Value::Binary(vec![s as u8; (s % 41) as usize]),
    ]
}

/// What the table returns for stored `values` (Char blank-padded).
fn expected(values: &[Value]) -> Vec<Value> {
    let mut v = values.to_vec();
    if let Value::Char(s) = &v[0] {
        v[0] = common::pad(s, 24);
    }
    v
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u32>(), proptest::option::weighted(0.3, 0usize..9000)).prop_map(|(s, m)| Op::Append(s, m)),
        4 => (any::<usize>(), any::<u32>(), prop_oneof![
            2 => Just(MemoChange::Keep),
            1 => Just(MemoChange::Clear),
            1 => (0usize..9000).prop_map(MemoChange::Set),
        ]).prop_map(|(i, s, m)| Op::Update(i, s, m)),
        3 => any::<usize>().prop_map(Op::Delete),
        2 => any::<usize>().prop_map(Op::Recall),
        1 => Just(Op::Reopen),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(Op::HideDeleted),
    ]
}

struct Harness {
    storage: MemoryStorage,
    db: Option<Database>,
    session: Option<raiz_engine::Session>,
    table: Option<Table>,
    hide: bool,
}

impl Harness {
    fn new(format: RecordFormat) -> Harness {
        let storage = MemoryStorage::new();
        let db = common::open_on(Arc::new(storage.clone()), POOL);
        db.create_table(
            "m",
            &schema(),
            TableOptions::default().format(format).page_size(4096),
        )
        .unwrap();
        let session = db.session();
        let table = session.open_table("m").unwrap();
        Harness {
            storage,
            db: Some(db),
            session: Some(session),
            table: Some(table),
            hide: false,
        }
    }

    fn t(&mut self) -> &mut Table {
        self.table.as_mut().unwrap()
    }

    fn reopen(&mut self) {
        self.table.take().unwrap().close().unwrap();
        self.db.take();
        self.session.take();
        let db = common::open_on(Arc::new(self.storage.clone()), POOL);
        let session = db.session();
        session.set_hide_deleted(self.hide);
        self.table = Some(session.open_table("m").unwrap());
        self.session = Some(session);
        self.db = Some(db);
        assert!(
            self.db.as_ref().unwrap().repairs().is_empty(),
            "a clean close needs no repair"
        );
    }
}

fn check(h: &mut Harness, model: &[Row]) {
    let hide = h.hide;
    let t = h.t();
    assert_eq!(t.record_count(), model.len() as u64);
    assert_eq!(
        t.deleted_count(),
        model.iter().filter(|r| r.deleted).count() as u64
    );
    for (i, row) in model.iter().enumerate() {
        let recno = i as u64 + 1;
        let rec = t.read(recno).unwrap();
        assert_eq!(rec.is_deleted(), row.deleted, "recno {recno}");
        let mut got = rec.values().to_vec();
        match &got[4] {
            Value::Memo(Memo::Stored(r)) => assert_eq!(r.len() as usize, row.memo.len()),
            Value::Memo(Memo::Empty) => assert!(row.memo.is_empty()),
            other => panic!("memo field read as {other:?}"),
        }
        got[4] = Value::Memo(Memo::Empty);
        assert_eq!(got, expected(&row.values), "recno {recno}");
        assert_eq!(
            t.read_memo(recno, "TEXT").unwrap(),
            row.memo,
            "memo of {recno}"
        );
    }
    let visible: Vec<u64> = model
        .iter()
        .enumerate()
        .filter(|(_, r)| !hide || !r.deleted)
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let mut fwd = vec![];
    let mut ok = t.first().unwrap();
    while ok {
        fwd.push(t.recno());
        ok = t.next().unwrap();
    }
    assert_eq!(fwd, visible);
    assert!(t.eof());
    let mut back = vec![];
    let mut ok = t.last().unwrap();
    while ok {
        back.push(t.recno());
        ok = t.prev().unwrap();
    }
    back.reverse();
    assert_eq!(back, visible);
}

fn run(format: RecordFormat, bulk: u32, ops: Vec<Op>) {
    let mut h = Harness::new(format);
    let mut model: Vec<Row> = Vec::new();
    for s in 0..bulk {
        let v = row_values(s);
        h.t().append(&v).unwrap();
        model.push(Row {
            deleted: false,
            values: v,
            memo: vec![],
        });
    }
    for op in ops {
        match op {
            Op::Append(s, memo) => {
                let mut v = row_values(s);
                let m = memo.map(|l| memo_bytes(s, l)).unwrap_or_default();
                v[4] = Value::Memo(if m.is_empty() {
                    Memo::Empty
                } else {
                    Memo::Data(m.clone())
                });
                let r = h.t().append(&v).unwrap();
                assert_eq!(r, model.len() as u64 + 1);
                v[4] = Value::Memo(Memo::Empty);
                model.push(Row {
                    deleted: false,
                    values: v,
                    memo: m,
                });
            }
            Op::Update(i, s, change) if !model.is_empty() => {
                let i = i % model.len();
                let recno = i as u64 + 1;
                let current = h.t().read(recno).unwrap();
                let mut v = row_values(s);
                let memo = match change {
                    MemoChange::Keep => {
                        v[4] = current.values()[4].clone();
                        model[i].memo.clone()
                    }
                    MemoChange::Clear => {
                        v[4] = Value::Memo(Memo::Empty);
                        vec![]
                    }
                    MemoChange::Set(l) => {
                        let m = memo_bytes(s, l);
                        v[4] = Value::Memo(Memo::Data(m.clone()));
                        m
                    }
                };
                h.t().update(recno, &v).unwrap();
                v[4] = Value::Memo(Memo::Empty);
                model[i].values = v;
                model[i].memo = memo;
            }
            Op::Delete(i) if !model.is_empty() => {
                let i = i % model.len();
                h.t().delete(i as u64 + 1).unwrap();
                model[i].deleted = true;
            }
            Op::Recall(i) if !model.is_empty() => {
                let i = i % model.len();
                h.t().recall(i as u64 + 1).unwrap();
                model[i].deleted = false;
            }
            Op::Reopen => h.reopen(),
            Op::Flush => h.t().flush().unwrap(),
            Op::HideDeleted(on) => {
                h.hide = on;
                h.session.as_ref().unwrap().set_hide_deleted(on);
            }
            _ => {}
        }
    }
    check(&mut h, &model);
    h.reopen();
    check(&mut h, &model);
    let stats = h.db.as_ref().unwrap().pool_stats();
    assert!(
        stats.cached_bytes <= stats.capacity_bytes + 4096 * 4,
        "{stats:?}"
    );
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
    fn fixed_table_matches_model(bulk in 300u32..900, ops in proptest::collection::vec(op(), 1..120)) {
        run(RecordFormat::Fixed, bulk, ops);
    }

    #[test]
    fn variable_table_matches_model(bulk in 300u32..900, ops in proptest::collection::vec(op(), 1..120)) {
        run(RecordFormat::Variable, bulk, ops);
    }
}

#[test]
fn pool_is_much_smaller_than_the_data() {
    let mut h = Harness::new(RecordFormat::Fixed);
    for s in 0u32..3000 {
        h.t().append(&row_values(s)).unwrap();
    }
    h.t().flush().unwrap();
    let info = h.t().info();
    let data_bytes = info.data_pages * 4096;
    let stats = h.db.as_ref().unwrap().pool_stats();
    assert!(
        data_bytes > 8 * stats.capacity_bytes,
        "{data_bytes} vs {stats:?}"
    );
    assert!(stats.evictions > 0);
    for s in (0u32..3000).rev() {
        let rec = h.t().read(u64::from(s) + 1).unwrap();
        assert_eq!(rec.values()[5], Value::Int64(i64::from(s) * -3));
    }
}
