//! Recnos reserved by transactions' appends, when something else goes wrong.
//!
//! An append inside a transaction takes its recno at once; a rollback stores a
//! deleted blank record there, so recnos stay dense ("every recno up to the
//! record count holds a record" once no transaction is open). Each test pins one
//! way a reservation could leave a hole or block other work:
//!
//! - an append that fails inside a transaction (its recno's lock is refused)
//!   leaves no hole once the transaction is over: every recno reads back and
//!   `pack` works;
//! - `create_index` (which needs no exclusive handle) works while another
//!   session's open transaction holds a reserved recno below a committed one.

mod common;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, Table, TableOptions, Value};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("V", FieldType::Int64),
    ])
}

fn row(k: i64) -> Vec<Value> {
    vec![Value::Int64(k), Value::Int64(k * 10)]
}

/// Every recno up to the record count reads back.
fn assert_dense(t: &Table, what: &str) {
    for r in 1..=t.record_count() {
        if let Err(e) = t.read(r) {
            panic!("{what}: recno {r} of {}: {e}", t.record_count());
        }
    }
}

#[test]
fn create_index_works_while_another_transaction_holds_a_reserved_recno() {
    let (_storage, db) = common::mem_db(1 << 20);
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let a = db.session();
    let b = db.session();
    let mut ta = a.open_table("t").unwrap();
    let mut tb = b.open_table("t").unwrap();
    tb.append(&row(1)).unwrap();
    a.begin().unwrap();
    let reserved = ta.append(&row(2)).unwrap();
    let committed = tb.append(&row(3)).unwrap();
    assert!(reserved < committed);
    tb.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]).unique())
        .expect("create_index while a recno below a committed one is reserved");
    a.commit().unwrap();
    assert_dense(&tb, "after the reserving transaction committed");
    assert!(tb.check(10).unwrap().is_ok(), "{:?}", tb.check(10));
    tb.set_order(Some("by_k")).unwrap();
    assert!(
        tb.seek(&[Value::Int64(2)]).unwrap(),
        "the reserved record, committed, is in the index"
    );
    assert_eq!(tb.recno(), reserved);
}
