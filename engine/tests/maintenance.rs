//! check, rebuild, pack and alter on tables larger than the buffer pool, including
//! failures injected midway that must leave the original intact.

mod common;

use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage, FaultTrigger};
use raiz_engine::{
    Database, Decimal, Error, Field, FieldType, Memo, RecordFormat, Schema, Table, TableOptions,
    Value,
};

const POOL: usize = 64 << 10;
const ROWS: i64 = 4000;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(8)),
        Field::new("QTY", FieldType::Char(6)),
        Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
        Field::new("NOTE", FieldType::Memo),
        Field::new("FILL", FieldType::Char(120)),
    ])
}

fn row(i: i64) -> Vec<Value> {
    vec![
        Value::from(format!("C{i:06}").as_str()),
        Value::from(format!("{}", i % 1000).as_str()),
        Value::Numeric(Decimal::new(i128::from(i) * 25, 2)),
        Value::Memo(if i % 5 == 0 {
            Memo::Data(format!("note {i}").repeat(40).into_bytes())
        } else {
            Memo::Empty
        }),
        Value::from(format!("{i:>100}").as_str()),
    ]
}

fn fill(db: &Database, format: RecordFormat) -> Table {
    db.create_table(
        "t",
        &schema(),
        TableOptions::default().format(format).page_size(4096),
    )
    .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    for i in 0..ROWS {
        t.append(&row(i)).unwrap();
    }
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "by_price",
        vec![Segment::field("PRICE").descending()],
    ))
    .unwrap();
    for r in (1..=ROWS as u64).step_by(3) {
        t.delete(r).unwrap();
    }
    t.flush().unwrap();
    let info = t.info();
    assert!(
        (info.data_pages + info.blob_pages) * 4096 > 8 * POOL as u64,
        "the table must exceed the pool"
    );
    t
}

/// Every record's code, deleted flag and memo length, in recno order.
fn snapshot(t: &Table) -> Vec<(Value, bool, usize)> {
    (1..=t.record_count())
        .map(|r| {
            let rec = t.read(r).unwrap();
            (
                rec.values()[0].clone(),
                rec.is_deleted(),
                t.read_memo(r, "NOTE").unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn pack_removes_deleted_records_and_renumbers() {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let (_s, db) = common::mem_db(POOL);
        let mut t = fill(&db, format);
        let live: Vec<(Value, bool, usize)> = snapshot(&t).into_iter().filter(|s| !s.1).collect();
        let report = t.pack().unwrap();
        assert_eq!(report.records_in, ROWS as u64);
        assert_eq!(report.records_out, live.len() as u64);
        assert_eq!(snapshot(&t), live);
        assert_eq!(t.deleted_count(), 0);
        assert!(t.check(10).unwrap().is_ok());
        t.set_order(Some("by_code")).unwrap();
        assert!(t.seek(&[Value::from("C000002")]).unwrap());
        assert_eq!(t.recno(), 2, "renumbered: the second live record");
        // Memo content survived.
        let r = (1..=t.record_count())
            .find(|r| !t.read_memo(*r, "NOTE").unwrap().is_empty())
            .unwrap();
        let code = t.read(r).unwrap().values()[0].as_str().unwrap()[1..]
            .trim()
            .parse::<i64>()
            .unwrap();
        assert_eq!(
            t.read_memo(r, "NOTE").unwrap(),
            format!("note {code}").repeat(40).into_bytes()
        );
        // Only the new generation's files remain.
        let info = t.info();
        assert_eq!(info.stats.unclean_opens, 0);
    }
}

#[test]
fn pack_needs_the_only_handle() {
    let (_s, db) = common::mem_db(POOL);
    let mut t = fill(&db, RecordFormat::Fixed);
    let other = db.session().open_table("t").unwrap();
    assert!(matches!(t.pack(), Err(Error::TableInUse { .. })));
    drop(other);
    t.pack().unwrap();
}

#[test]
fn alter_converts_and_keeps_recnos() {
    let (_s, db) = common::mem_db(POOL);
    let mut t = fill(&db, RecordFormat::Fixed);
    let before = snapshot(&t);
    let new = Schema::new(vec![
        Field::new("CODE", FieldType::Char(12)),
        Field::new("QTY", FieldType::Numeric { len: 8, dec: 1 }),
        Field::new("PRICE", FieldType::Char(14)),
        Field::new("NOTE", FieldType::Memo),
        Field::new("ADDED", FieldType::Logical),
    ]);
    let report = t.alter(&new).unwrap();
    assert_eq!(report.records_out, ROWS as u64);
    assert_eq!(t.schema().fields(), new.fields());
    let rec = t.read(11).unwrap();
    assert_eq!(rec.get("CODE"), Some(&common::pad("C000010", 12)));
    assert_eq!(rec.get("QTY"), Some(&Value::Numeric(Decimal::new(100, 1))));
    assert_eq!(rec.get("PRICE"), Some(&common::pad("2.50", 14)));
    assert_eq!(rec.get("ADDED"), Some(&Value::Logical(false)));
    let after: Vec<(bool, usize)> = snapshot(&t).into_iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(after, before.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>());
    // The indexes were rebuilt over the new fields.
    assert!(t.check(10).unwrap().is_ok());
    t.set_order(Some("by_price")).unwrap();
    assert!(t.first().unwrap());
    // And back: Char digits to Numeric.
    let back = Schema::new(vec![
        Field::new("CODE", FieldType::Char(12)),
        Field::new("QTY", FieldType::Char(10)),
        Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
        Field::new("NOTE", FieldType::Memo),
    ]);
    t.alter(&back).unwrap();
    assert_eq!(
        t.read(11).unwrap().get("PRICE"),
        Some(&Value::Numeric(Decimal::new(250, 2)))
    );
    assert_eq!(
        t.read(11).unwrap().get("QTY"),
        Some(&common::pad("10.0", 10))
    );
}

#[test]
fn alter_that_cannot_convert_leaves_the_table_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let mut t = fill(&db, RecordFormat::Fixed);
    let before = snapshot(&t);
    let files = |p: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let files_before = files(dir.path());
    // An index over a field the new schema lacks is refused before any work.
    let no_code = Schema::new(vec![
        Field::new("QTY", FieldType::Char(6)),
        Field::new("NOTE", FieldType::Memo),
    ]);
    match t.alter(&no_code) {
        Err(Error::InvalidSchema { reason, .. }) => assert!(reason.contains("by_code"), "{reason}"),
        other => panic!("expected the index to refuse the new fields, got {other:?}"),
    }
    // CODE holds letters: it cannot become a number.
    let bad = Schema::new(vec![
        Field::new("CODE", FieldType::Numeric { len: 10, dec: 0 }),
        Field::new("QTY", FieldType::Char(6)),
        Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
        Field::new("NOTE", FieldType::Memo),
    ]);
    match t.alter(&bad) {
        Err(Error::InvalidValue { field, value, .. }) => {
            assert_eq!(field, "CODE");
            assert!(value.contains("record 1"), "{value}");
        }
        other => panic!("expected a conversion error, got {other:?}"),
    }
    // Narrowing below the data is refused too.
    let narrow = Schema::new(vec![
        Field::new("CODE", FieldType::Char(3)),
        Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
        Field::new("NOTE", FieldType::Memo),
    ]);
    assert!(matches!(t.alter(&narrow), Err(Error::InvalidValue { .. })));
    assert_eq!(snapshot(&t), before);
    assert_eq!(
        files(dir.path()),
        files_before,
        "no file of the failed alters is left"
    );
    assert!(t.check(10).unwrap().is_ok());
}

#[test]
fn rebuild_recovers_what_the_data_pages_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let per_page;
    {
        let db = Database::open(dir.path()).unwrap();
        let t = fill(&db, RecordFormat::Fixed);
        per_page = (4096 - 24) / (t.schema().fixed_len() as u64 + 1);
    }
    // Damage data page 5 (records of that page become unreadable).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("t.rzd"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x55; 8], 5 * 4096 + 100).unwrap();
    let db = Database::open(dir.path()).unwrap();
    let mut t = db.session().open_table("t").unwrap();
    let report = t.check(1000).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems[0].contains("page 5"),
        "{:?}",
        report.problems[0]
    );
    let r = t.rebuild().unwrap();
    assert_eq!(r.salvaged, per_page);
    assert_eq!(r.records_out, ROWS as u64, "recnos are kept");
    assert!(t.check(10).unwrap().is_ok());
    let lost_first = (5 - 2) * per_page + 1;
    assert!(t.read(lost_first).unwrap().is_deleted());
    assert_eq!(
        t.read(lost_first - 1).unwrap().values()[0],
        common::pad(&format!("C{:06}", lost_first - 2), 8)
    );
    assert_eq!(t.info().stats.unclean_opens, 0);
}

/// A pack that fails at every kind of point leaves the original as it was.
#[test]
fn pack_and_alter_failing_midway_leave_the_original_intact() {
    let mut failures = 0;
    for (n, at) in [3u64, 40, 150, 400, 900, 1600, 2500]
        .into_iter()
        .enumerate()
    {
        for trigger in [
            FaultTrigger::DiskFull,
            FaultTrigger::PowerCut,
            FaultTrigger::FailSync,
        ] {
            let storage = FaultStorage::new();
            let db = common::open_on(Arc::new(storage.clone()), POOL);
            let t = fill(&db, RecordFormat::Variable);
            t.close().unwrap();
            let mut t = db.session().open_table("t").unwrap();
            let before = snapshot(&t);
            storage.arm(trigger, at);
            let result = if n % 2 == 0 {
                t.pack().map(|_| ())
            } else {
                let mut s = schema().fields().to_vec();
                s.push(Field::new("EXTRA", FieldType::Int64));
                t.alter(&Schema::new(s)).map(|_| ())
            };
            let Err(e) = result else { continue };
            failures += 1;
            assert!(
                !matches!(e, Error::InvalidValue { .. } | Error::InvalidSchema { .. }),
                "{e}"
            );
            drop(t);
            drop(db);
            // Whatever the fault, the image on disk after a crash holds the original.
            let after = storage.crash(CrashMode::DropUnsynced);
            let db = common::open_on(Arc::new(after), POOL);
            let t = db.session().open_table("t").unwrap();
            // All or nothing: the original, or (a fault after the commit point)
            // the complete result.
            let now = snapshot(&t);
            let packed: Vec<_> = before.iter().filter(|s| !s.1).cloned().collect();
            assert!(
                now == before || (n % 2 == 0 && now == packed),
                "{trigger:?} at {at}"
            );
            assert!(t.check(10).unwrap().is_ok(), "{trigger:?} at {at}");
        }
    }
    assert!(failures >= 10, "faults must hit the rewrites ({failures})");
}
