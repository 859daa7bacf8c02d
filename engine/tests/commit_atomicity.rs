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
