//! A logged table whose close fails keeps showing its committed data.
//!
//! When a table's last handle goes, the table is closed: its pages are written
//! to its files and synced. If that fails (a failed fsync), the files may lag
//! the log, which then refuses writes until the rootpath is reopened. The
//! README: "committed data stays readable". Opening the table again in the
//! same process must therefore not show the stale files: every acknowledged
//! commit is still there.

mod common;

use raiz_engine::{Field, FieldType, Memo, Schema, TableOptions, Value};

#[test]
fn committed_data_stays_readable_after_a_table_close_fails_to_sync() {
    let schema = Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("NOTES", FieldType::Memo),
    ]);
    let (storage, db) = common::fault_db(64 << 10);
    db.create_table("t", &schema, TableOptions::default().page_size(4096))
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    for k in 1..=3i64 {
        t.append(&[
            Value::Int64(k),
            Value::Memo(Memo::Data(vec![k as u8; 3000])),
        ])
        .unwrap();
    }
    // The close's sync fails.
    storage.fail_next_syncs(1);
    assert!(t.close().is_err(), "the close reports the failed sync");
    let t = s.open_table("t").unwrap();
    assert_eq!(
        t.record_count(),
        3,
        "the three acknowledged appends are still there"
    );
    for k in 1..=3u64 {
        assert_eq!(
            t.read(k).unwrap().get("K"),
            Some(&Value::Int64(k as i64)),
            "record {k}"
        );
        assert_eq!(t.read_memo(k, "NOTES").unwrap(), vec![k as u8; 3000]);
    }
}
