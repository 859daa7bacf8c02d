//! Self-repair on open: a missing, damaged or stale index file, a moved table, an
//! unclean close, leftovers of an interrupted rewrite. Each reopen repairs, logs,
//! counts, and `check` passes afterwards.

mod common;

use std::path::Path;
use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::CrashMode;
use raiz_engine::{Database, Durability, Field, FieldType, Memo, Schema, TableOptions, Value};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(8)),
        Field::new("N", FieldType::Int64),
        Field::new("M", FieldType::Memo),
    ])
}

fn build(root: &Path, n: i64) {
    let db = Database::open(root).unwrap();
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    for i in 0..n {
        t.append(&[
            Value::from(format!("K{i:05}").as_str()),
            Value::Int64(i % 7),
            Value::Memo(Memo::Data(vec![b'm'; 10])),
        ])
        .unwrap();
    }
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "by_n",
        vec![Segment::field("N"), Segment::field("CODE").descending()],
    ))
    .unwrap();
}

fn reopen_and_check(root: &Path, expect_rebuilt: u64, n: i64) -> raiz_engine::TableInfo {
    let db = Database::open(root).unwrap();
    let mut t = db.session().open_table("t").unwrap();
    let repairs = db.repairs();
    if expect_rebuilt > 0 {
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        assert_eq!(repairs[0].1.indexes_rebuilt, expect_rebuilt, "{repairs:?}");
    }
    let report = t.check(10).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    t.set_order(Some("by_code")).unwrap();
    assert!(t
        .seek(&[Value::from(format!("K{:05}", n - 1).as_str())])
        .unwrap());
    assert_eq!(t.recno(), n as u64);
    assert_eq!(t.count_range(None, None).unwrap(), n as u64);
    let info = t.info();
    drop(t);
    drop(db);
    // And the repair was written back: the next open needs none.
    let db = Database::open(root).unwrap();
    db.session().open_table("t").unwrap();
    assert!(db.repairs().is_empty(), "{:?}", db.repairs());
    info
}

#[test]
fn a_missing_index_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3000);
    std::fs::remove_file(dir.path().join("t.by_code.rzi")).unwrap();
    let info = reopen_and_check(dir.path(), 1, 3000);
    assert_eq!(info.stats.index_rebuilds, 1);
}

#[test]
fn a_damaged_index_page_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3000);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("t.by_n.rzi"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xab; 4], 3 * 8192 + 700).unwrap();
    reopen_and_check(dir.path(), 1, 3000);
}

#[test]
fn a_stale_index_copied_over_a_fresh_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2000);
    let stale = std::fs::read(dir.path().join("t.by_code.rzi")).unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut t = db.session().open_table("t").unwrap();
        for i in 2000..2500 {
            t.append(&[
                Value::from(format!("K{i:05}").as_str()),
                Value::Int64(1),
                Value::Memo(Memo::Empty),
            ])
            .unwrap();
        }
    }
    std::fs::write(dir.path().join("t.by_code.rzi"), stale).unwrap();
    reopen_and_check(dir.path(), 1, 2500);
}

#[test]
fn a_moved_table_has_its_indexes_checked() {
    let outer = tempfile::tempdir().unwrap();
    let (a, b) = (outer.path().join("a"), outer.path().join("b"));
    build(&a, 1500);
    std::fs::rename(&a, &b).unwrap();
    let db = Database::open(&b).unwrap();
    let t = db.session().open_table("t").unwrap();
    let r = db.repairs();
    assert!(r[0].1.moved);
    assert_eq!(r[0].1.indexes_rebuilt, 0, "sound indexes are kept");
    assert!(t.check(10).unwrap().is_ok());
    drop(t);
    drop(db);
    reopen_and_check(&b, 0, 1500);
}

#[test]
fn an_unclean_close_of_an_unlogged_table_rebuilds_every_index() {
    let (storage, db) = common::fault_db(128 << 10);
    db.create_table(
        "t",
        &schema(),
        TableOptions::default().durability(Durability::Unlogged),
    )
    .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    for i in 0..2000 {
        t.append(&[
            Value::from(format!("K{i:05}").as_str()),
            Value::Int64(i),
            Value::Memo(Memo::Empty),
        ])
        .unwrap();
    }
    // The process dies: the OS keeps its writes, the pool's dirty pages are lost.
    let after = storage.crash(CrashMode::KeepAll);
    drop(t);
    drop(db);
    let db = common::open_on(Arc::new(after), 128 << 10);
    let mut t = db.session().open_table("t").unwrap();
    let r = db.repairs();
    assert!(r[0].1.verified);
    assert_eq!(r[0].1.indexes_rebuilt, 1);
    assert!(t.check(10).unwrap().is_ok());
    t.set_order(Some("by_code")).unwrap();
    assert_eq!(t.count_range(None, None).unwrap(), t.record_count());
}

#[test]
fn leftovers_of_an_interrupted_rewrite_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100);
    for f in ["t.rzd.new", "t.g1.rzb", "t.by_code.g1.rzi"] {
        std::fs::write(dir.path().join(f), b"half written").unwrap();
    }
    reopen_and_check(dir.path(), 0, 100);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "raiz.epoch",
            "raiz.owner",
            "raiz.wal",
            "t.by_code.rzi",
            "t.by_n.rzi",
            "t.rzb",
            "t.rzd"
        ]
    );
}

#[test]
fn a_crashed_logged_table_is_recovered_from_the_log_with_its_indexes() {
    let (storage, db) = common::fault_db(128 << 10);
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    for i in 0..500 {
        t.append(&[
            Value::from(format!("K{i:05}").as_str()),
            Value::Int64(i),
            Value::Memo(Memo::Data(vec![b'x'; 300])),
        ])
        .unwrap();
    }
    // Power is cut: only what was synced survives, and every append was a
    // durable commit.
    let after = storage.crash(CrashMode::DropUnsynced);
    drop(t);
    drop(db);
    let db = common::open_on(Arc::new(after), 128 << 10);
    assert_eq!(db.recovery().commits, 500, "{:?}", db.recovery());
    let mut t = db.session().open_table("t").unwrap();
    assert!(
        db.repairs().is_empty(),
        "the log repaired it: no verification needed"
    );
    assert_eq!(t.record_count(), 500);
    assert!(t.check(10).unwrap().is_ok());
    t.set_order(Some("by_code")).unwrap();
    assert!(t.seek(&[Value::from("K00499")]).unwrap());
    assert_eq!(t.read_memo(t.recno(), "M").unwrap(), vec![b'x'; 300]);
}
