//! Index behaviour users rely on: unique among live records, conditional indexes,
//! serial fields, seeks, scopes, ranges, counts, and positions that survive writes.

mod common;

use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
use raiz_engine::{
    Database, Date, Decimal, Error, Field, FieldType, Schema, Table, TableOptions, Value,
};

fn customers(db: &Database) -> Table {
    let schema = Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("CODE", FieldType::Char(6)),
        Field::new("NAME", FieldType::Char(20)),
        Field::new("STATUS", FieldType::Char(1)),
        Field::new("LIMIT", FieldType::Numeric { len: 12, dec: 2 }),
        Field::new("SINCE", FieldType::Date),
    ]);
    db.create_table("sa1", &schema, TableOptions::default().serial("ID"))
        .unwrap();
    let mut t = db.session().open_table("sa1").unwrap();
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE").upper()]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "by_limit",
        vec![Segment::field("LIMIT").descending(), Segment::field("NAME")],
    ))
    .unwrap();
    t.create_index(
        &IndexDef::new("open_by_name", vec![Segment::field("NAME")]).when(Condition::cmp(
            "STATUS",
            CmpOp::Eq,
            Literal::Char("A".into()),
        )),
    )
    .unwrap();
    t
}

fn row(code: &str, name: &str, status: &str, limit: &str) -> Vec<Value> {
    vec![
        Value::Int64(0),
        Value::from(code),
        Value::from(name),
        Value::from(status),
        Value::Numeric(limit.parse().unwrap()),
        Value::Date(Date::ymd(2026, 1, 2)),
    ]
}

fn order(t: &mut Table) -> Vec<u64> {
    let mut out = vec![];
    let mut ok = t.first().unwrap();
    while ok {
        out.push(t.recno());
        ok = t.next().unwrap();
    }
    out
}

#[test]
fn unique_keys_are_unique_among_live_records_only() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    let a = t.append(&row("c001", "Ana", "A", "100")).unwrap();
    match t.append(&row("C001", "Other", "A", "1")) {
        Err(Error::DuplicateKey {
            index,
            key,
            recno,
            table,
        }) => {
            assert_eq!(
                (index.as_str(), recno, table.as_str()),
                ("by_code", a, "sa1")
            );
            assert!(key.contains("CODE"), "{key}");
        }
        other => panic!("expected a duplicate key, got {other:?}"),
    }
    assert_eq!(t.record_count(), 1, "the refused append left nothing");
    // Delete, then the same key may be appended again.
    t.delete(a).unwrap();
    let b = t.append(&row("C001", "Bruno", "A", "200")).unwrap();
    // Recalling the deleted one now collides.
    assert!(matches!(t.recall(a), Err(Error::DuplicateKey { recno, .. }) if recno == b));
    assert!(t.is_deleted(a).unwrap());
    // Update into a taken key is refused, and changes nothing.
    let c = t.append(&row("C002", "Caio", "A", "300")).unwrap();
    let before = t.read(c).unwrap();
    let mut v = before.values().to_vec();
    v[1] = Value::from("c001");
    assert!(matches!(t.update(c, &v), Err(Error::DuplicateKey { .. })));
    assert_eq!(t.read(c).unwrap(), before);
    // Free the key, then the recall works.
    t.delete(b).unwrap();
    t.recall(a).unwrap();
    t.set_order(Some("by_code")).unwrap();
    assert!(t.seek(&[Value::from("C001")]).unwrap());
    assert_eq!(t.recno(), a);
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn conditional_index_follows_records_in_and_out() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    let a = t.append(&row("A1", "Zeca", "A", "1")).unwrap();
    let b = t.append(&row("A2", "Bia", "I", "1")).unwrap();
    let c = t.append(&row("A3", "Ana", "A", "1")).unwrap();
    t.set_order(Some("open_by_name")).unwrap();
    assert_eq!(order(&mut t), vec![c, a]);
    let mut v = t.read(b).unwrap().into_values();
    v[3] = Value::from("A");
    t.update(b, &v).unwrap();
    assert_eq!(order(&mut t), vec![c, b, a]);
    let mut v = t.read(a).unwrap().into_values();
    v[3] = Value::from("X");
    t.update(a, &v).unwrap();
    assert_eq!(order(&mut t), vec![c, b]);
    assert_eq!(
        t.info()
            .indexes
            .iter()
            .find(|(d, _)| d.name == "open_by_name")
            .unwrap()
            .1,
        2
    );
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn serial_field_is_assigned_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut t = customers(&db);
        for i in 0..5 {
            let r = t.append(&row(&format!("S{i}"), "n", "A", "1")).unwrap();
            assert_eq!(t.read(r).unwrap().get("ID"), Some(&Value::Int64(i + 1)));
        }
        t.delete(5).unwrap();
        t.pack().unwrap();
        let mut v = t.read(2).unwrap().into_values();
        v[0] = Value::Int64(99);
        assert!(matches!(t.update(2, &v), Err(Error::InvalidValue { .. })));
    }
    let db = Database::open(dir.path()).unwrap();
    let mut t = db.session().open_table("sa1").unwrap();
    let r = t.append(&row("S9", "n", "A", "1")).unwrap();
    assert_eq!(
        t.read(r).unwrap().get("ID"),
        Some(&Value::Int64(6)),
        "5 was used before the pack"
    );
    assert_eq!(t.info().serial, Some(("ID".to_string(), 7)));
}

#[test]
fn seeks_scopes_and_descending_order() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    let data = [
        ("K1", "Carla", "500"),
        ("K2", "Ana", "500"),
        ("K3", "Beto", "-20.5"),
        ("K4", "Dora", "1000"),
        ("K5", "Ana", "0"),
    ];
    for (c, n, l) in data {
        t.append(&row(c, n, "A", l)).unwrap();
    }
    t.set_order(Some("by_limit")).unwrap();
    // Descending limit, then name ascending.
    assert_eq!(order(&mut t), vec![4, 2, 1, 5, 3]);
    assert!(t.seek(&[Value::Numeric("500".parse().unwrap())]).unwrap());
    assert_eq!(t.recno(), 2);
    assert!(t
        .seek_last(&[Value::Numeric("500".parse().unwrap())])
        .unwrap());
    assert_eq!(t.recno(), 1);
    assert!(t
        .seek(&[Value::Numeric("500".parse().unwrap()), Value::from("Ca")])
        .unwrap());
    assert_eq!(t.recno(), 1);
    // Soft seek in a descending segment lands on the next lower limit.
    assert!(!t
        .seek_soft(&[Value::Numeric("600".parse().unwrap())])
        .unwrap());
    assert_eq!(t.recno(), 2);
    assert!(!t.seek(&[Value::Numeric("7".parse().unwrap())]).unwrap());
    assert!(t.eof());
    assert!(
        t.prev().unwrap(),
        "back from a failed seek's eof is the last record"
    );
    assert_eq!(t.recno(), 3);

    t.set_order(Some("by_code")).unwrap();
    t.set_scope(Some(&[Value::from("K2")]), Some(&[Value::from("K4")]))
        .unwrap();
    assert_eq!(order(&mut t), vec![2, 3, 4]);
    assert!(t.last().unwrap());
    assert_eq!(t.recno(), 4);
    assert!(!t.seek(&[Value::from("K5")]).unwrap(), "outside the scope");
    assert_eq!(
        t.count_range(Some(&[Value::from("K2")]), Some(&[Value::from("K4")]))
            .unwrap(),
        3
    );
    t.clear_scope();
    assert_eq!(t.count_range(None, None).unwrap(), 5);
    let names: Vec<Value> = t
        .range(Some(&[Value::from("K3")]), None)
        .unwrap()
        .map(|r| r.unwrap().get("NAME").unwrap().clone())
        .collect();
    assert_eq!(
        names,
        vec![
            common::pad("Beto", 20),
            common::pad("Dora", 20),
            common::pad("Ana", 20)
        ]
    );
    // Filter.
    t.set_filter(Some(Box::new(|r| {
        r.get("NAME") == Some(&common::pad("Ana", 20))
    })));
    assert_eq!(order(&mut t), vec![2, 5]);
    t.set_filter(None);
    // Partial Char key, upper-cased for the upper segment.
    assert!(t.seek(&[Value::from("k")]).unwrap());
    assert_eq!(t.recno(), 1);
    // Too long a key part is an error, not a silent truncation.
    assert!(matches!(
        t.seek(&[Value::from("K123456")]),
        Err(Error::InvalidValue { .. })
    ));
    assert!(matches!(
        t.seek(&[Value::Int64(1)]),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn skip_counts_cross_both_ends_and_deleted_records_hide() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    for i in 0..10 {
        t.append(&row(&format!("Z{i}"), "n", "A", "1")).unwrap();
    }
    t.set_order(Some("by_code")).unwrap();
    t.first().unwrap();
    assert!(t.skip(4).unwrap());
    assert_eq!(t.recno(), 5);
    assert!(!t.skip(20).unwrap());
    assert!(t.eof());
    assert!(t.skip(-3).unwrap());
    assert_eq!(t.recno(), 8);
    assert!(!t.skip(-30).unwrap());
    assert!(t.bof());
    assert_eq!(t.recno(), 1);
    t.delete(1).unwrap();
    t.delete(2).unwrap();
    let s = db.session();
    s.set_hide_deleted(true);
    let mut u = s.open_table("sa1").unwrap();
    u.set_order(Some("by_code")).unwrap();
    assert_eq!(order(&mut u), (3..=10).collect::<Vec<_>>());
    assert_eq!(u.count_range(None, None).unwrap(), 8);
    assert_eq!(t.count_range(None, None).unwrap(), 10);
}

#[test]
fn position_survives_a_key_update_by_the_same_handle() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    for (c, n) in [("P1", "Ana"), ("P2", "Bia"), ("P3", "Caio")] {
        t.append(&row(c, n, "A", "1")).unwrap();
    }
    t.set_order(Some("by_code")).unwrap();
    assert!(t.seek(&[Value::from("P2")]).unwrap());
    let mut v = t.record().unwrap().into_values();
    v[1] = Value::from("P9");
    t.update(2, &v).unwrap();
    assert_eq!(t.recno(), 2, "still on the updated record");
    assert!(!t.next().unwrap(), "now the last in code order");
    assert!(t.prev().unwrap());
    assert_eq!(t.recno(), 2);
    assert!(t.prev().unwrap());
    assert_eq!(t.recno(), 3);
}

#[test]
fn a_handle_follows_its_record_through_its_own_sessions_changes_only() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    for (c, n) in [("P1", "Ana"), ("P2", "Bia"), ("P3", "Caio"), ("P4", "Dora")] {
        t.append(&row(c, n, "A", "1")).unwrap();
    }
    t.set_order(Some("by_code")).unwrap();
    assert!(t.seek(&[Value::from("P2")]).unwrap());
    // Another session moves record 2 to the end of the code order: the
    // handle goes on from the key it stood on, so a scan sees each entry once.
    let other = db.session();
    let mut o = other.open_table("sa1").unwrap();
    let mut v = o.read(2).unwrap().into_values();
    v[1] = Value::from("P9");
    o.update(2, &v).unwrap();
    assert_eq!(t.recno(), 2);
    assert!(t.next().unwrap());
    assert_eq!(t.recno(), 3, "P2 (as it was) -> P3");

    // The session's own change through another handle moves it.
    let s = db.session();
    let mut u = s.open_table("sa1").unwrap();
    u.set_order(Some("by_code")).unwrap();
    assert!(u.seek(&[Value::from("P3")]).unwrap());
    let mut u2 = s.open_table("sa1").unwrap();
    let mut w = u2.read(3).unwrap().into_values();
    s.begin().unwrap();
    w[1] = Value::from("A0");
    u2.update(3, &w).unwrap();
    assert_eq!(u.key_no().unwrap(), 1, "A0 comes first now");
    assert!(u.next().unwrap());
    assert_eq!(u.recno(), 1, "A0 -> P1");
    // A rollback puts it back, and a handle on it follows.
    assert!(u.seek(&[Value::from("A0")]).unwrap());
    s.rollback().unwrap();
    assert_eq!(u.recno(), 3);
    assert_eq!(u.key_no().unwrap(), 2, "P1 P3 P4 P9");
    assert!(u.next().unwrap());
    assert_eq!(u.recno(), 4, "P3 -> P4 once the change is rolled back");
    assert!(u.prev().unwrap() && u.prev().unwrap());
    assert_eq!(u.recno(), 1, "P1 <- P3");
}

#[test]
fn definitions_are_checked() {
    let (_s, db) = common::mem_db(1 << 20);
    let mut t = customers(&db);
    let bad = |t: &mut Table, d: IndexDef| t.create_index(&d).unwrap_err();
    assert!(matches!(
        bad(
            &mut t,
            IndexDef::new("by_code", vec![Segment::field("NAME")])
        ),
        Error::IndexExists { .. }
    ));
    assert!(matches!(
        bad(&mut t, IndexDef::new("x", vec![Segment::field("NOPE")])),
        Error::NoSuchField { .. }
    ));
    assert!(matches!(
        bad(&mut t, IndexDef::new("x", vec![])),
        Error::InvalidSchema { .. }
    ));
    assert!(matches!(
        bad(
            &mut t,
            IndexDef::new("x", vec![Segment::part("NAME", 15, 10)])
        ),
        Error::InvalidSchema { .. }
    ));
    assert!(matches!(
        bad(
            &mut t,
            IndexDef::new("x", vec![Segment::field("LIMIT").upper()])
        ),
        Error::InvalidSchema { .. }
    ));
    assert!(matches!(
        bad(
            &mut t,
            IndexDef::new("bad name", vec![Segment::field("NAME")])
        ),
        Error::InvalidName { .. }
    ));
    // A key longer than an index allows is refused when the index is defined.
    let wide = Schema::new(vec![Field::new("T", FieldType::Char(2000))]);
    db.create_table("wide", &wide, TableOptions::default())
        .unwrap();
    let mut w = db.session().open_table("wide").unwrap();
    match w.create_index(&IndexDef::new("by_t", vec![Segment::field("T")])) {
        Err(Error::InvalidSchema { reason, .. }) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("expected a key-length error, got {other:?}"),
    }
    w.create_index(&IndexDef::new("by_t", vec![Segment::part("T", 0, 100)]))
        .unwrap();
    // A unique index over repeated live keys is refused, leaving no file behind.
    t.append(&row("D1", "Same", "A", "1")).unwrap();
    t.append(&row("D2", "Same", "A", "1")).unwrap();
    assert!(matches!(
        bad(
            &mut t,
            IndexDef::new("by_name_u", vec![Segment::field("NAME")]).unique()
        ),
        Error::DuplicateKey { .. }
    ));
    assert!(t.info().indexes.iter().all(|(d, _)| d.name != "by_name_u"));
    t.drop_index("by_limit").unwrap();
    assert!(matches!(
        t.set_order(Some("by_limit")),
        Err(Error::NoSuchIndex { .. })
    ));
    assert!(matches!(
        t.drop_index("by_limit"),
        Err(Error::NoSuchIndex { .. })
    ));
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn estimates_are_close_on_large_ranges() {
    let (_s, db) = common::mem_db(4 << 20);
    let schema = Schema::new(vec![
        Field::new("N", FieldType::Int64),
        Field::new("D", FieldType::Numeric { len: 10, dec: 2 }),
    ]);
    db.create_table("big", &schema, TableOptions::default())
        .unwrap();
    let mut t = db.session().open_table("big").unwrap();
    for i in 0..20_000i64 {
        t.append(&[
            Value::Int64(i),
            Value::Numeric(Decimal::new(i128::from(i % 100), 0)),
        ])
        .unwrap();
    }
    t.create_index(&IndexDef::new("by_n", vec![Segment::field("N")]).unique())
        .unwrap();
    t.set_order(Some("by_n")).unwrap();
    let exact = t
        .count_range(Some(&[Value::Int64(5000)]), Some(&[Value::Int64(14_999)]))
        .unwrap();
    assert_eq!(exact, 10_000);
    let est = t
        .estimate_range(Some(&[Value::Int64(5000)]), Some(&[Value::Int64(14_999)]))
        .unwrap();
    assert!((9_000..=11_000).contains(&est), "estimate {est}");
}

#[test]
fn a_seek_in_a_transaction_passes_over_its_own_hidden_entries_to_the_committed_ones() {
    // The transaction appends a record whose key sorts before the committed
    // one the seek should land on, and the filter hides it: the seek must
    // go on to the committed record, not past it.
    let (_s, db) = common::mem_db(1 << 20);
    let s = db.session();
    let mut t = customers(&db);
    t.append(&row("B1", "BETA", "A", "10")).unwrap();
    t.append(&row("D1", "DELTA", "A", "10")).unwrap();
    drop(t);
    let mut t = s.open_table("sa1").unwrap();
    t.set_order(Some("by_code")).unwrap();
    s.begin().unwrap();
    t.append(&row("A1", "ALPHA", "A", "10")).unwrap();
    t.append(&row("C1", "GAMMA", "A", "10")).unwrap();
    t.set_filter(Some(Box::new(|r| {
        !matches!(r.get("NAME"), Some(Value::Char(n)) if n.starts_with("ALPHA") || n.starts_with("GAMMA"))
    })));
    assert!(t.seek_soft(&[Value::from("A")]).unwrap() || !t.eof());
    assert_eq!(code_of(&t), "B1");
    assert!(t.next().unwrap());
    assert_eq!(code_of(&t), "D1");
    assert!(!t.seek(&[Value::from("A1")]).unwrap());
    assert!(t.seek(&[Value::from("B1")]).unwrap());
    t.set_filter(None);
    assert!(t.seek(&[Value::from("A1")]).unwrap());
    assert!(t.next().unwrap());
    assert_eq!(code_of(&t), "B1");
    s.rollback().unwrap();
}

fn code_of(t: &Table) -> String {
    match t.record().unwrap().get("CODE") {
        Some(Value::Char(c)) => c.trim_end().to_owned(),
        other => panic!("CODE is {other:?}"),
    }
}
