//! A commit that fails leaves nothing of its transaction, in every table.
//!
//! `Session::commit`: "On error nothing of it is applied and the transaction is
//! rolled back." A transaction may write logged and unlogged tables; unlogged
//! tables' changes are applied after the logged part is in the log. When one of
//! them is refused (a unique key another session took meanwhile), the commit
//! reports the error: the logged part must not stay applied — neither visible
//! now, nor replayed by recovery after a crash — and the transaction's reserved
//! recnos end up as deleted blank records, not holes.

mod common;

use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::CrashMode;
use raiz_engine::{Durability, Error, Field, FieldType, Schema, TableOptions, Value};

fn schema() -> Schema {
    Schema::new(vec![Field::new("K", FieldType::Int64)])
}

#[test]
fn a_commit_refused_by_an_unlogged_table_leaves_nothing_of_its_logged_part() {
    let (storage, db) = common::fault_db(1 << 20);
    db.create_table("lg", &schema(), TableOptions::default())
        .unwrap();
    db.create_table(
        "ul",
        &schema(),
        TableOptions::default().durability(Durability::Unlogged),
    )
    .unwrap();
    let a = db.session();
    let b = db.session();
    let mut lg = a.open_table("lg").unwrap();
    let mut ul = a.open_table("ul").unwrap();
    ul.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]).unique())
        .unwrap();
    a.begin().unwrap();
    lg.append(&[Value::Int64(1)]).unwrap();
    ul.append(&[Value::Int64(7)]).unwrap();
    // B takes the unique key meanwhile: A's commit is refused.
    b.open_table("ul")
        .unwrap()
        .append(&[Value::Int64(7)])
        .unwrap();
    match a.commit() {
        Err(Error::DuplicateKey { .. }) => {}
        other => panic!("expected DuplicateKey, got {other:?}"),
    }
    let live = |t: &raiz_engine::Table| {
        t.snapshot()
            .unwrap()
            .iter()
            .filter(|r| !r.is_deleted())
            .count()
    };
    assert_eq!(
        live(&lg),
        0,
        "the refused commit's append to the logged table is not there"
    );
    for r in 1..=ul.record_count() {
        ul.read(r)
            .unwrap_or_else(|e| panic!("unlogged recno {r} reserved by the refused commit: {e}"));
    }
    // Another commit syncs the log; then the power goes.
    b.open_table("lg")
        .unwrap()
        .append(&[Value::Int64(2)])
        .unwrap();
    let image = storage.crash(CrashMode::DropUnsynced);
    drop((lg, ul, a, b));
    std::mem::forget(db);
    let db = common::open_on(Arc::new(image), 1 << 20);
    let lg = db.session().open_table("lg").unwrap();
    let keys: Vec<Value> = lg
        .snapshot()
        .unwrap()
        .iter()
        .filter(|r| !r.is_deleted())
        .map(|r| r.get("K").unwrap().clone())
        .collect();
    assert_eq!(
        keys,
        vec![Value::Int64(2)],
        "after recovery only the acknowledged commit is there"
    );
}

/// The commit checks a unique key as it inserts it. When the second of two
/// unique indexes collides, the first index's entry, the record's body and
/// its memo are already written: all of it must go, in memory and after a
/// power cut, and the table must take the same rows afterwards.
#[test]
fn a_key_refused_at_commit_by_a_later_unique_index_leaves_no_entry_body_or_memo() {
    use raiz_engine::Memo;
    let (storage, db) = common::fault_db(1 << 20);
    let schema = Schema::new(vec![
        Field::new("A", FieldType::Int64),
        Field::new("B", FieldType::Int64),
        Field::new("C", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ]);
    db.create_table("t", &schema, TableOptions::default())
        .unwrap();
    let a = db.session();
    let b = db.session();
    let mut t = a.open_table("t").unwrap();
    t.create_index(&IndexDef::new("by_a", vec![Segment::field("A")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new("by_b", vec![Segment::field("B")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new("by_c", vec![Segment::field("C")]))
        .unwrap();
    let row = |a: i64, b: i64, note: &str| {
        vec![
            Value::Int64(a),
            Value::Int64(b),
            Value::Int64(a % 3),
            Value::Memo(Memo::Data(note.repeat(300).into_bytes())),
        ]
    };
    t.append(&row(1, 1, "first ")).unwrap();
    a.begin().unwrap();
    t.append(&row(2, 2, "second ")).unwrap();
    t.append(&row(3, 30, "third ")).unwrap();
    // B takes the second unique key of the third row meanwhile.
    let mut tb = b.open_table("t").unwrap();
    tb.append(&row(4, 30, "fourth ")).unwrap();
    match a.commit() {
        Err(Error::DuplicateKey { index, recno, .. }) => {
            assert_eq!(index, "by_b");
            assert_eq!(recno, tb.recno(), "the error names the holder");
        }
        other => panic!("expected DuplicateKey on by_b, got {other:?}"),
    }
    let live = |t: &raiz_engine::Table| -> Vec<i64> {
        let mut v: Vec<i64> = t
            .snapshot()
            .unwrap()
            .iter()
            .filter(|r| !r.is_deleted())
            .map(|r| match r.values()[0] {
                Value::Int64(a) => a,
                ref other => panic!("{other:?}"),
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(live(&t), vec![1, 4]);
    assert!(t.check(100).unwrap().is_ok(), "{:?}", t.check(100).unwrap());
    // Keys 2 and 3 are free again: the refused commit left no entry.
    t.set_order(Some("by_a")).unwrap();
    assert!(!t.seek(&[Value::Int64(3)]).unwrap());
    t.append(&row(3, 31, "again ")).unwrap();
    t.append(&row(2, 2, "again ")).unwrap();
    assert_eq!(live(&t), vec![1, 2, 3, 4]);
    assert!(t.check(100).unwrap().is_ok());
    let image = storage.crash(CrashMode::DropUnsynced);
    drop((t, tb, a, b));
    std::mem::forget(db);
    let db = common::open_on(Arc::new(image), 1 << 20);
    let t = db.session().open_table("t").unwrap();
    assert_eq!(live(&t), vec![1, 2, 3, 4]);
    let report = t.check(100).unwrap();
    assert!(report.is_ok(), "after recovery: {report:?}");
}
