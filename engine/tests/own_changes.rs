//! What a transaction reads of its own changes is what it will commit.
//!
//! The README: "Inside a transaction, reads and navigation (`read`, `goto`,
//! `first`/`next`/…, `seek` in any order) show the transaction's own changes."
//! Each test pins one way a read inside a transaction could show something else
//! than the record as the commit will store it, or fail on the transaction's own
//! changes:
//!
//! - a deleted record the transaction updates is still deleted (an update keeps
//!   the flag, and the commit stores it deleted);
//! - `read_memo` gives the memo the transaction wrote, for a record it updated
//!   or appended;
//! - Char values read back blank-padded, as they do once committed;
//! - a handle left on an append that `rollback_to` undid can still change its
//!   order.

mod common;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, Table, TableOptions, Value};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("NAME", FieldType::Char(10)),
        Field::new("NOTES", FieldType::Memo),
    ])
}

fn row(k: i64, name: &str, memo: &[u8]) -> Vec<Value> {
    vec![
        Value::Int64(k),
        Value::from(name),
        Value::Memo(Memo::Data(memo.to_vec())),
    ]
}

fn table(db: &raiz_engine::Database, s: &raiz_engine::Session) -> Table {
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table("t").unwrap();
    t.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]).unique())
        .unwrap();
    t
}

#[test]
fn a_deleted_record_updated_in_a_transaction_still_reads_back_deleted() {
    let (_storage, db) = common::mem_db(1 << 20);
    let s = db.session();
    let mut t = table(&db, &s);
    let r = t.append(&row(1, "one", b"first")).unwrap();
    t.delete(r).unwrap();
    s.begin().unwrap();
    t.update(r, &row(1, "uno", b"second")).unwrap();
    assert!(t.is_deleted(r).unwrap(), "is_deleted: still deleted");
    assert!(
        t.read(r).unwrap().is_deleted(),
        "read inside the transaction: an update keeps the deleted flag"
    );
    s.commit().unwrap();
    assert!(t.read(r).unwrap().is_deleted(), "committed: deleted");
}

#[test]
fn read_memo_in_a_transaction_shows_the_memo_it_wrote() {
    let (_storage, db) = common::mem_db(1 << 20);
    let s = db.session();
    let mut t = table(&db, &s);
    let r = t.append(&row(1, "one", b"committed memo")).unwrap();
    s.begin().unwrap();
    t.update(r, &row(1, "one", b"memo of the transaction"))
        .unwrap();
    let appended = t.append(&row(2, "two", b"memo of an append")).unwrap();
    assert_eq!(
        t.read_memo(r, "NOTES").unwrap(),
        b"memo of the transaction",
        "an updated record's memo"
    );
    assert_eq!(
        t.read_memo(appended, "NOTES").unwrap(),
        b"memo of an append",
        "an appended record's memo"
    );
    s.commit().unwrap();
    assert_eq!(t.read_memo(r, "NOTES").unwrap(), b"memo of the transaction");
}

#[test]
fn char_values_read_in_a_transaction_are_blank_padded_as_once_committed() {
    let (_storage, db) = common::mem_db(1 << 20);
    let s = db.session();
    let mut t = table(&db, &s);
    s.begin().unwrap();
    let r = t.append(&row(1, "ab", b"")).unwrap();
    let inside = t.read(r).unwrap().get("NAME").cloned();
    s.commit().unwrap();
    let committed = t.read(r).unwrap().get("NAME").cloned();
    assert_eq!(committed, Some(common::pad("ab", 10)));
    assert_eq!(
        inside, committed,
        "the transaction read the value it then committed"
    );
}

#[test]
fn set_order_works_on_a_handle_left_on_an_append_undone_by_rollback_to() {
    let (_storage, db) = common::mem_db(1 << 20);
    let s = db.session();
    let mut t = table(&db, &s);
    t.append(&row(1, "one", b"")).unwrap();
    s.begin().unwrap();
    let sp = s.savepoint().unwrap();
    t.append(&row(2, "two", b"")).unwrap();
    s.rollback_to(sp).unwrap();
    // The handle still sits on the undone append.
    t.set_order(Some("by_k"))
        .expect("set_order after rollback_to undid the handle's append");
    assert!(t.seek(&[Value::Int64(1)]).unwrap());
    assert_eq!(t.recno(), 1);
    s.commit().unwrap();
}
