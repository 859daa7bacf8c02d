//! Tables in a rootpath: create, open, close, drop, list, names that must not
//! escape, moved directories, memos read on demand, concurrent handles.

mod common;

use std::sync::Arc;

use raiz_engine::{
    Database, Error, Field, FieldType, Memo, RecordFormat, Schema, TableOptions, Value,
};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("K", FieldType::Char(4)),
        Field::new("M", FieldType::Memo),
    ])
}

#[test]
fn create_list_open_drop() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert!(db.list_tables().unwrap().is_empty());
    db.create_table("SA1010", &schema(), TableOptions::default())
        .unwrap();
    db.create_table(
        "sb1010",
        &schema(),
        TableOptions::default().format(RecordFormat::Variable),
    )
    .unwrap();
    assert!(matches!(
        db.create_table("sa1010", &schema(), TableOptions::default()),
        Err(Error::TableExists { .. })
    ));
    assert_eq!(db.list_tables().unwrap(), vec!["sa1010", "sb1010"]);
    let t = db.session().open_table("Sa1010").unwrap();
    assert!(matches!(
        db.drop_table("SA1010"),
        Err(Error::TableInUse { handles: 1, .. })
    ));
    t.close().unwrap();
    db.drop_table("sa1010").unwrap();
    assert_eq!(db.list_tables().unwrap(), vec!["sb1010"]);
    assert!(matches!(
        db.session().open_table("sa1010"),
        Err(Error::TableNotFound { .. })
    ));
    assert!(matches!(
        db.drop_table("sa1010"),
        Err(Error::TableNotFound { .. })
    ));
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!files.iter().any(|f| f.starts_with("sa1010")), "{files:?}");
}

#[test]
fn names_cannot_reach_outside_the_rootpath() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let db = Database::open(&root).unwrap();
    for bad in [
        "../escape",
        "..",
        "a/b",
        "/etc/passwd",
        "x\0y",
        "tab\tname",
        "",
        &"n".repeat(65),
        "a.b",
        "-x",
    ] {
        match db.create_table(bad, &schema(), TableOptions::default()) {
            Err(Error::InvalidName { what: "table", .. }) => {}
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
        assert!(matches!(
            db.session().open_table(bad),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(db.drop_table(bad), Err(Error::InvalidName { .. })));
    }
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("root")]);
}

#[test]
fn header_describes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.create_table("a", &schema(), TableOptions::default().page_size(16384))
        .unwrap();
    db.create_table("b", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let (a, b) = (
        s.open_table("a").unwrap().info(),
        s.open_table("b").unwrap().info(),
    );
    assert_ne!(a.file_id, b.file_id);
    assert_eq!(a.page_size, 16384);
    assert_eq!(a.schema, schema());
    assert_eq!(
        a.path,
        dir.path()
            .canonicalize()
            .unwrap()
            .join("a.rzd")
            .to_string_lossy()
    );
    assert_eq!(a.durability, raiz_engine::Durability::Logged);
    assert_eq!(a.format, RecordFormat::Fixed);
}

#[test]
fn a_moved_rootpath_is_detected_and_its_paths_updated() {
    let outer = tempfile::tempdir().unwrap();
    let (a, b) = (outer.path().join("a"), outer.path().join("b"));
    {
        let db = Database::open(&a).unwrap();
        db.create_table("t", &schema(), TableOptions::default())
            .unwrap();
        let mut t = db.session().open_table("t").unwrap();
        t.append(&[Value::from("x"), Value::Memo(Memo::Data(b"hello".to_vec()))])
            .unwrap();
    }
    std::fs::rename(&a, &b).unwrap();
    let db = Database::open(&b).unwrap();
    let t = db.session().open_table("t").unwrap();
    let info = t.info();
    assert_eq!(
        info.path,
        b.canonicalize().unwrap().join("t.rzd").to_string_lossy()
    );
    assert_eq!(info.stats.moves, 1);
    assert!(db.repairs()[0].1.moved);
    assert_eq!(t.read_memo(1, "M").unwrap(), b"hello");
    drop(t);
    drop(db);
    let db = Database::open(&b).unwrap();
    let t = db.session().open_table("t").unwrap();
    assert!(db.repairs().is_empty());
    assert_eq!(t.info().stats.moves, 1);
}

#[test]
fn reading_a_record_does_not_read_its_memos() {
    // A damaged memo page leaves the record readable: proof the memo was not read.
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        db.create_table("t", &schema(), TableOptions::default().format(format))
            .unwrap();
        let mut t = db.session().open_table("t").unwrap();
        let r = t
            .append(&[
                Value::from("k"),
                Value::Memo(Memo::Data(vec![7u8; 100_000])),
            ])
            .unwrap();
        t.close().unwrap();
        drop(db);
        // The memo's first overflow page is the blob file's page 1 (written first).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("t.rzb"))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 16], 8192 + 1000).unwrap();
        let db = Database::open(dir.path()).unwrap();
        let t = db.session().open_table("t").unwrap();
        let rec = t.read(r).unwrap();
        assert_eq!(rec.get("K"), Some(&Value::from("k   ")));
        assert!(matches!(rec.get("M"), Some(Value::Memo(Memo::Stored(m))) if m.len() == 100_000));
        assert!(matches!(
            t.read_memo(r, "M"),
            Err(Error::Checksum { page: 1, .. })
        ));
    }
}

#[test]
fn concurrent_sessions_share_one_table() {
    let (_s, db) = common::mem_db(256 << 10);
    db.create_table(
        "t",
        &schema(),
        TableOptions::default().format(RecordFormat::Variable),
    )
    .unwrap();
    let db = Arc::new(db);
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut t = db.session().open_table("t").unwrap();
                let mut mine = vec![];
                for i in 0..300 {
                    let key = format!("{w}{:03}", i % 1000);
                    let r = t
                        .append(&[
                            Value::from(key.as_str()),
                            Value::Memo(Memo::Data(vec![w as u8; i * 13])),
                        ])
                        .unwrap();
                    mine.push((r, key, i));
                    if i % 10 == 0 {
                        let (r0, k0, i0) = &mine[i / 2];
                        assert_eq!(
                            t.read(*r0).unwrap().get("K"),
                            Some(&Value::from(k0.as_str()))
                        );
                        assert_eq!(t.read_memo(*r0, "M").unwrap(), vec![w as u8; i0 * 13]);
                    }
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .map(|(r, _, _)| r)
        .collect();
    all.sort();
    assert_eq!(
        all,
        (1..=1200).collect::<Vec<u64>>(),
        "every append got its own recno"
    );
}

#[test]
fn second_open_in_the_same_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Database::open(dir.path()).unwrap();
    match Database::open(dir.path()) {
        Err(Error::RootpathLocked { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("expected RootpathLocked, got {other:?}"),
    }
}
