//! Physical-order navigation with xBase semantics.

mod common;

use raiz_engine::{Error, Field, FieldType, Schema, TableOptions, Value};

fn table_with(n: u64) -> (raiz_engine::Database, raiz_engine::Session) {
    let (_s, db) = common::mem_db(1 << 20);
    let schema = Schema::new(vec![Field::new("N", FieldType::Int64)]);
    db.create_table("t", &schema, TableOptions::default())
        .unwrap();
    let session = db.session();
    let mut t = session.open_table("t").unwrap();
    for i in 1..=n {
        t.append(&[Value::Int64(i as i64)]).unwrap();
    }
    (db, session)
}

#[test]
fn empty_table_sets_bof_and_eof() {
    let (_db, s) = table_with(0);
    let mut t = s.open_table("t").unwrap();
    assert!(!t.first().unwrap());
    assert!(t.bof() && t.eof());
    assert!(!t.last().unwrap());
    assert!(t.bof() && t.eof());
    assert!(!t.next().unwrap());
    assert!(
        t.eof() && !t.bof(),
        "a forward skip clears bof, as in xBase"
    );
    assert!(!t.prev().unwrap());
    assert!(
        t.bof() && !t.eof(),
        "a backward skip clears eof, as in xBase"
    );
    // The phantom record: blank fields, recno 1 on an empty table.
    let phantom = t.record().unwrap();
    assert!(!t.on_record());
    assert_eq!(phantom.recno(), 1);
    assert_eq!(phantom.get("N"), Some(&Value::Int64(0)));
}

#[test]
fn skipping_past_either_end_follows_xbase() {
    let (_db, s) = table_with(3);
    let mut t = s.open_table("t").unwrap();
    assert!(t.first().unwrap());
    assert_eq!(t.recno(), 1);
    assert!(!t.prev().unwrap());
    assert!(t.bof() && !t.eof());
    assert_eq!(t.recno(), 1, "bof stays on the first record");
    assert!(t.next().unwrap());
    assert_eq!(t.recno(), 2);
    assert!(!t.bof());
    assert!(t.skip(1).unwrap());
    assert_eq!(t.recno(), 3);
    assert!(!t.next().unwrap());
    assert!(t.eof());
    assert_eq!(t.recno(), 4, "eof is the phantom record");
    assert!(!t.next().unwrap(), "next at eof stays at eof");
    assert!(t.prev().unwrap(), "back from eof lands on the last record");
    assert_eq!(t.recno(), 3);
    assert!(!t.skip(-5).unwrap());
    assert!(t.bof());
    assert_eq!(t.recno(), 1);
    assert!(!t.skip(10).unwrap());
    assert!(t.eof());
    assert!(t.skip(-2).unwrap());
    assert_eq!(t.recno(), 2);
    assert!(t.last().unwrap());
    assert_eq!(t.record().unwrap().get("N"), Some(&Value::Int64(3)));
}

#[test]
fn goto_reaches_any_existing_record_and_lands_on_the_phantom_for_others() {
    let (_db, s) = table_with(5);
    let mut t = s.open_table("t").unwrap();
    t.delete(4).unwrap();
    s.set_hide_deleted(true);
    t.goto(4).unwrap();
    assert_eq!(
        t.recno(),
        4,
        "goto ignores the hide-deleted option, like xBase GOTO"
    );
    for out in [0, 6, 1000] {
        t.goto(out).unwrap();
        assert!(
            t.bof() && t.eof(),
            "goto({out}) is the phantom with both flags"
        );
        assert_eq!(t.recno(), 6);
        assert!(!t.on_record());
    }
    assert!(matches!(
        t.read(6),
        Err(Error::NoSuchRecord { recno: 6, .. })
    ));
}

#[test]
fn hidden_deleted_records_are_skipped() {
    let (_db, s) = table_with(6);
    let mut t = s.open_table("t").unwrap();
    for r in [1, 3, 4, 6] {
        t.delete(r).unwrap();
    }
    let visit = |t: &mut raiz_engine::Table| {
        let mut seen = vec![];
        let mut ok = t.first().unwrap();
        while ok {
            seen.push(t.recno());
            ok = t.next().unwrap();
        }
        seen
    };
    assert_eq!(visit(&mut t), vec![1, 2, 3, 4, 5, 6]);
    s.set_hide_deleted(true);
    assert_eq!(visit(&mut t), vec![2, 5]);
    assert!(t.last().unwrap());
    assert_eq!(t.recno(), 5);
    assert!(t.prev().unwrap());
    assert_eq!(t.recno(), 2);
    assert!(!t.prev().unwrap());
    assert!(t.bof());
    assert_eq!(t.recno(), 2);
    t.recall(6).unwrap();
    assert!(t.last().unwrap());
    assert_eq!(t.recno(), 6);
    for r in [2, 5, 6] {
        t.delete(r).unwrap();
    }
    assert!(!t.first().unwrap());
    assert!(t.bof() && t.eof());
}

#[test]
fn handles_keep_their_own_positions() {
    let (_db, s) = table_with(4);
    let mut a = s.open_table("t").unwrap();
    let mut b = s.open_table("t").unwrap();
    a.first().unwrap();
    b.last().unwrap();
    a.next().unwrap();
    assert_eq!((a.recno(), b.recno()), (2, 4));
    let r = a.append(&[Value::Int64(5)]).unwrap();
    assert_eq!(a.recno(), r, "append positions on the new record");
    assert!(b.next().unwrap(), "b sees the record a appended");
    assert_eq!(b.recno(), 5);
}
