//! Damaged files on a real file system: every kind gives a clear error naming the
//! file and page, and nothing panics.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use raiz_engine::page::layout;
use raiz_engine::{Database, Error, Memo, RecordFormat, TableOptions, Value};

const PAGE: u64 = 8192;

fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, offset).unwrap();
}

/// A closed table of 500 records with memos on every tenth.
fn make(dir: &Path, format: RecordFormat) -> (PathBuf, PathBuf) {
    let db = Database::open(dir).unwrap();
    db.create_table(
        "t",
        &common::all_types(),
        TableOptions::default().format(format),
    )
    .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    for i in 0..500 {
        let memo = (i % 10 == 0).then(|| vec![b'm'; 3000 + i as usize]);
        t.append(&common::all_types_row(i, memo)).unwrap();
    }
    t.close().unwrap();
    (dir.join("t.rzd"), dir.join("t.rzb"))
}

#[test]
fn flipped_byte_in_a_data_page_names_file_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = make(dir.path(), RecordFormat::Fixed);
    flip(&data, 3 * PAGE + 500);
    let db = Database::open(dir.path()).unwrap();
    let t = db.session().open_table("t").unwrap();
    let mut errors = 0;
    for r in 1..=500 {
        match t.read(r) {
            Ok(_) => {}
            Err(Error::Checksum { path, page, .. }) => {
                assert_eq!(path, data.canonicalize().unwrap());
                assert_eq!(page, 3);
                errors += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(errors > 0, "the damaged page's records fail");
    assert!(t.read(1).is_ok(), "other pages still read");
    let msg = t.read(500).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.is_empty() || msg.contains("page"), "{msg}");
}

#[test]
fn flipped_byte_in_a_blob_page_names_the_blob_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, blobs) = make(dir.path(), RecordFormat::Variable);
    flip(&blobs, PAGE + 100);
    let db = Database::open(dir.path()).unwrap();
    let t = db.session().open_table("t").unwrap();
    let mut seen = false;
    for r in 1..=500 {
        if let Err(e) = t.read(r).and_then(|_| t.read_memo(r, "NOTES")) {
            match e {
                Error::Checksum { path, page: 1, .. } => {
                    assert!(path.ends_with("t.rzb"));
                    seen = true;
                }
                other => panic!("unexpected error {other}"),
            }
        }
    }
    assert!(seen);
}

#[test]
fn both_header_copies_damaged_is_a_checksum_error_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = make(dir.path(), RecordFormat::Fixed);
    flip(&data, 200);
    flip(&data, PAGE + 200);
    let db = Database::open(dir.path()).unwrap();
    match db.session().open_table("t") {
        Err(Error::Checksum { path, page: 0, .. }) => assert!(path.ends_with("t.rzd")),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn one_damaged_header_copy_is_repaired_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = make(dir.path(), RecordFormat::Fixed);
    // Damage the newest copy: the older one may be a generation behind, which the
    // open must notice and verify rather than trust blindly.
    for copy in [0u64, 1] {
        flip(&data, copy * PAGE + 300);
        let db = Database::open(dir.path()).unwrap();
        let t = db.session().open_table("t").unwrap();
        assert_eq!(t.record_count(), 500);
        for r in [1, 250, 500] {
            assert_eq!(
                t.read(r).unwrap().values()[6],
                Value::Int64(r as i64 - 1 - 1000)
            );
        }
        assert!(t.info().stats.header_repairs >= 1);
        let repairs = db.repairs();
        assert_eq!(repairs.len(), 1);
        assert!(repairs[0].1.header_repaired);
        drop(t);
        drop(db);
        let db = Database::open(dir.path()).unwrap();
        let t = db.session().open_table("t").unwrap();
        assert_eq!(t.record_count(), 500);
        assert!(db.repairs().is_empty(), "the repair was written back");
    }
}

#[test]
fn not_a_data_file_is_bad_magic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.rzd"), vec![7u8; 20000]).unwrap();
    std::fs::write(dir.path().join("tiny.rzd"), b"x").unwrap();
    let db = Database::open(dir.path()).unwrap();
    for name in ["junk", "tiny"] {
        match db.session().open_table(name) {
            Err(Error::BadMagic { path, kind: "data" }) => {
                assert!(path.ends_with(format!("{name}.rzd")))
            }
            other => panic!("{name}: expected bad magic, got {other:?}"),
        }
    }
}

#[test]
fn unknown_format_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = make(dir.path(), RecordFormat::Fixed);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&data)
        .unwrap();
    for copy in 0..2u64 {
        let mut page = vec![0u8; PAGE as usize];
        f.read_exact_at(&mut page, copy * PAGE).unwrap();
        page[32..36].copy_from_slice(&99u32.to_le_bytes());
        layout::seal(&mut page, copy);
        f.write_all_at(&page, copy * PAGE).unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    match db.session().open_table("t") {
        Err(Error::UnsupportedVersion {
            found: 99,
            supported: 2,
            path,
        }) => assert!(path.ends_with("t.rzd")),
        other => panic!("expected an unsupported version, got {other:?}"),
    }
}

#[test]
fn truncated_data_file_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = make(dir.path(), RecordFormat::Fixed);
    let len = std::fs::metadata(&data).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - PAGE - 100)
        .unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.session().open_table("t").unwrap();
    assert!(t.read(1).is_ok());
    match t.read(500) {
        Err(Error::CorruptPage { page, reason, .. }) => {
            assert!(reason.contains("beyond the end"), "{reason}");
            assert!(page >= 2);
        }
        other => panic!("expected a corrupt page error, got {other:?}"),
    }
}

#[test]
fn damaged_memo_pointer_is_detected() {
    // A variable table whose slot is rewired to another record's body: the owner
    // check refuses it instead of returning the wrong record.
    let (storage, db) = common::mem_db(1 << 20);
    db.create_table(
        "v",
        &common::all_types(),
        TableOptions::default().format(RecordFormat::Variable),
    )
    .unwrap();
    let mut t = db.session().open_table("v").unwrap();
    t.append(&common::all_types_row(1, Some(b"one".to_vec())))
        .unwrap();
    t.append(&common::all_types_row(2, Some(b"two".to_vec())))
        .unwrap();
    let r1 = t.read(1).unwrap();
    // Record 2 may not adopt record 1's memo by reference.
    let mut v2 = t.read(2).unwrap().into_values();
    v2[5] = r1.values()[5].clone();
    assert!(matches!(t.update(2, &v2), Err(Error::InvalidValue { .. })));
    assert_eq!(t.read_memo(2, "NOTES").unwrap(), b"two");
    // Copying content is done with Memo::Data.
    v2[5] = Value::Memo(Memo::Data(t.read_memo(1, "NOTES").unwrap()));
    t.update(2, &v2).unwrap();
    assert_eq!(t.read_memo(2, "NOTES").unwrap(), b"one");
    drop(storage);
}
