//! Online backup under a write load, restored into a new rootpath: every table
//! checks clean, every commit acknowledged before the backup began is there,
//! no transaction is there in part, and the restored rootpath has a new epoch.
//! Commits go on during the backup; the longest one is printed.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raiz_engine::backup::{restore, MANIFEST};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Decimal, Durability, Error, Field, FieldType, LogOptions, Memo, Options, Schema,
    TableOptions, Value,
};

const WRITERS: i64 = 4;
const LINES: i64 = 3;

fn orders() -> Schema {
    Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("WRITER", FieldType::Int64),
        Field::new("N", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ])
}

fn lines() -> Schema {
    Schema::new(vec![
        Field::new("ORDER", FieldType::Int64),
        Field::new("LINE", FieldType::Int64),
        Field::new("AMOUNT", FieldType::Numeric { len: 12, dec: 2 }),
    ])
}

fn tally() -> Schema {
    Schema::new(vec![
        Field::new("WRITER", FieldType::Int64),
        Field::new("N", FieldType::Int64),
    ])
}

fn history() -> Schema {
    Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("TEXT", FieldType::Char(200)),
    ])
}

/// One acknowledged commit: the order id, when the commit was called and
/// when it returned.
#[derive(Clone, Copy)]
struct Acked {
    id: i64,
    called: Instant,
    returned: Instant,
}

fn setup(db: &Database) {
    db.create_table("orders", &orders(), TableOptions::default())
        .unwrap();
    db.create_table("lines", &lines(), TableOptions::default())
        .unwrap();
    db.create_table("tally", &tally(), TableOptions::default())
        .unwrap();
    db.create_table("history", &history(), TableOptions::default())
        .unwrap();
    db.create_table(
        "scratch",
        &history(),
        TableOptions::default().durability(Durability::Unlogged),
    )
    .unwrap();
    let s = db.session();
    let mut o = s.open_table("orders").unwrap();
    o.create_index(&IndexDef::new("id", vec![Segment::field("ID")]).unique())
        .unwrap();
    let mut l = s.open_table("lines").unwrap();
    l.create_index(
        &IndexDef::new(
            "line",
            vec![Segment::field("ORDER"), Segment::field("LINE")],
        )
        .unique(),
    )
    .unwrap();
    let mut t = s.open_table("tally").unwrap();
    for w in 0..WRITERS {
        t.append(&[Value::Int64(w), Value::Int64(0)]).unwrap();
    }
    // Something to copy while commits go on.
    let mut h = s.open_table("history").unwrap();
    s.begin().unwrap();
    for k in 0..30_000 {
        h.append(&[
            Value::Int64(k),
            Value::from(format!("row {k} ").repeat(12).as_str()),
        ])
        .unwrap();
    }
    s.commit().unwrap();
    h.create_index(&IndexDef::new("k", vec![Segment::field("K")]).unique())
        .unwrap();
}

/// One writer: transactions of an order, its lines and the writer's tally,
/// until `stop`.
fn writer(db: Database, w: i64, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<Acked>>>) {
    let s = db.session();
    let mut o = s.open_table("orders").unwrap();
    let mut l = s.open_table("lines").unwrap();
    let mut t = s.open_table("tally").unwrap();
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = w * 1_000_000 + n;
        s.begin().unwrap();
        let note = if n % 4 == 0 {
            Memo::Data(format!("order {id} ").repeat(40).into_bytes())
        } else {
            Memo::Empty
        };
        o.append(&[
            Value::Int64(id),
            Value::Int64(w),
            Value::Int64(n),
            Value::Memo(note),
        ])
        .unwrap();
        for line in 1..=LINES {
            l.append(&[
                Value::Int64(id),
                Value::Int64(line),
                Value::Numeric(Decimal::new(i128::from(id % 1000) * 100 + 25, 2)),
            ])
            .unwrap();
        }
        t.update(w as u64 + 1, &[Value::Int64(w), Value::Int64(n)])
            .unwrap();
        let called = Instant::now();
        s.commit().unwrap();
        acked.lock().unwrap().push(Acked {
            id,
            called,
            returned: Instant::now(),
        });
    }
}

fn all(db: &Database, table: &str) -> Vec<Vec<Value>> {
    let s = db.session();
    let t = s.open_table(table).unwrap();
    t.snapshot()
        .unwrap()
        .into_iter()
        .filter(|r| !r.is_deleted())
        .map(|r| r.into_values())
        .collect()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int64(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn a_backup_under_load_restores_every_acknowledged_commit_and_no_half_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let db = Database::open_with(
        &root,
        Options::default().log(LogOptions {
            // Checkpoints by size run during the backup too.
            checkpoint_bytes: 2 << 20,
            ..LogOptions::default()
        }),
    )
    .unwrap();
    setup(&db);
    let epoch = db.feed().epoch();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let (db, stop, acked) = (db.clone(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || writer(db, w, stop, acked)));
    }
    // An unlogged table written meanwhile, and explicit checkpoints, so the
    // backup meets both.
    {
        let (db1, stop1) = (db.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (db, stop) = (db1, stop1);
            let s = db.session();
            let mut t = s.open_table("scratch").unwrap();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                t.append(&[Value::Int64(k), Value::from("unlogged")])
                    .unwrap();
                k += 1;
                if k % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
        let (db2, stop2) = (db.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (db, stop) = (db2, stop2);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                db.checkpoint().unwrap();
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(400));
    let began = Instant::now();
    let report = db
        .backup_with(dir.path().join("backup"), || {
            // Commits and a checkpoint between the file copy and the log cut:
            // the pinned segments must all be kept and copied.
            std::thread::sleep(Duration::from_millis(30));
            db.checkpoint().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        })
        .unwrap();
    let ended = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let before: Vec<i64> = acked
        .iter()
        .filter(|a| a.returned < began)
        .map(|a| a.id)
        .collect();
    let during: Vec<&Acked> = acked
        .iter()
        .filter(|a| a.returned >= began && a.called <= ended)
        .collect();
    let longest = during
        .iter()
        .map(|a| a.returned - a.called)
        .max()
        .unwrap_or_default();
    let longest_before = acked
        .iter()
        .filter(|a| a.returned < began)
        .map(|a| a.returned - a.called)
        .max()
        .unwrap_or_default();
    println!(
        "backup under load: {} commits acknowledged before it began, {} during it; \
         longest commit during the backup {:.1} ms (before it {:.1} ms); \
         gate held {:.1} ms; backup took {:.1} ms ({} files, {} bytes, {} log segments, {} log bytes)",
        before.len(),
        during.len(),
        longest.as_secs_f64() * 1e3,
        longest_before.as_secs_f64() * 1e3,
        report.pause.as_secs_f64() * 1e3,
        report.took.as_secs_f64() * 1e3,
        report.files,
        report.bytes,
        report.log_segments,
        report.log_bytes,
    );
    assert!(!before.is_empty(), "the load ran before the backup");
    assert!(
        report.log_segments >= 2,
        "a checkpoint ran during the copy, and the pinned log kept every segment since"
    );
    assert!(
        report.pause < report.took,
        "the gate was not held for the whole backup"
    );
    assert!(
        longest < Duration::from_secs(3),
        "a commit stalled {longest:?} during the backup"
    );
    assert!(dir.path().join("backup").join(MANIFEST).exists());
    drop(db);

    // Restore into a new rootpath: every table checks clean.
    let restored = dir.path().join("restored");
    let r = restore(
        &dir.path().join("backup"),
        &restored,
        Options::default(),
        20,
    )
    .unwrap();
    if std::env::var_os("RAIZ_BACKUP_KEEP").is_some() && !r.is_ok() {
        let kept = dir.keep();
        panic!("kept {}", kept.display());
    }
    for (table, check) in &r.checks {
        assert!(
            check.is_ok(),
            "{table}: {check:?}\nrecovery: {:?}",
            r.recovery
        );
    }
    assert_eq!(r.checks.len(), 5);
    assert_ne!(r.epoch, epoch, "a restored rootpath has a new epoch");
    assert_eq!(r.old_epoch, Some(epoch));

    let db = Database::open(&restored).unwrap();
    assert_ne!(db.feed().epoch(), epoch);
    let orders = all(&db, "orders");
    let ids: HashSet<i64> = orders.iter().map(|o| int(&o[0])).collect();
    for id in &before {
        assert!(
            ids.contains(id),
            "order {id}, acknowledged before the backup began, is missing"
        );
    }
    // Whole transactions only: each order with all its lines, no line
    // without its order, each tally at its writer's last order.
    let mut per_order: BTreeMap<i64, i64> = BTreeMap::new();
    for l in all(&db, "lines") {
        *per_order.entry(int(&l[0])).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            per_order.get(id),
            Some(&LINES),
            "order {id} has part of its lines"
        );
    }
    for order in per_order.keys() {
        assert!(
            ids.contains(order),
            "lines of order {order} without the order"
        );
    }
    for t in all(&db, "tally") {
        let (w, n) = (int(&t[0]), int(&t[1]));
        let count = orders.iter().filter(|o| int(&o[1]) == w).count() as i64;
        let last = orders
            .iter()
            .filter(|o| int(&o[1]) == w)
            .map(|o| int(&o[2]))
            .max()
            .unwrap_or(0);
        assert_eq!(
            (n, count),
            (last, last),
            "writer {w}: tally and orders disagree"
        );
    }
    assert_eq!(all(&db, "history").len(), 30_000);
}

#[test]
fn backup_and_restore_refuse_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let db = Database::open(&root).unwrap();
    db.create_table("t", &tally(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.append(&[Value::Int64(1), Value::Int64(2)]).unwrap();

    let inside = db.backup(root.join("b")).unwrap_err();
    assert!(matches!(inside, Error::Backup { .. }), "{inside}");
    std::fs::create_dir_all(dir.path().join("full")).unwrap();
    std::fs::write(dir.path().join("full/x"), b"x").unwrap();
    let full = db.backup(dir.path().join("full")).unwrap_err();
    assert!(full.to_string().contains("not empty"), "{full}");

    let b = dir.path().join("b");
    let report = db.backup(&b).unwrap();
    assert_eq!(report.tables, 1);

    // A restore needs an empty target and a complete, undamaged backup.
    let err = restore(&b, &root, Options::default(), 5).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&b).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
        }
    }
    std::fs::remove_file(copy.join(MANIFEST)).unwrap();
    let err = restore(&copy, &dir.path().join("r1"), Options::default(), 5).unwrap_err();
    assert!(err.to_string().contains("not a raiz backup"), "{err}");

    let data = b.join("t.rzd");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let err = restore(&b, &dir.path().join("r2"), Options::default(), 5).unwrap_err();
    assert!(
        err.to_string().contains("t.rzd is damaged"),
        "the damaged file is named: {err}"
    );
}

#[test]
fn a_transaction_open_during_the_backup_leaves_a_deleted_blank_in_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("root")).unwrap();
    db.create_table("t", &tally(), TableOptions::default())
        .unwrap();
    let a = db.session();
    let mut ta = a.open_table("t").unwrap();
    a.begin().unwrap();
    assert_eq!(ta.append(&[Value::Int64(1), Value::Int64(1)]).unwrap(), 1);
    let b = db.session();
    let mut tb = b.open_table("t").unwrap();
    assert_eq!(tb.append(&[Value::Int64(2), Value::Int64(2)]).unwrap(), 2);
    // The backup is taken (and restored at another path) while recno 1 is
    // reserved by an open transaction: the copy has a hole there.
    db.backup(dir.path().join("b")).unwrap();
    a.commit().unwrap();
    let r = restore(
        &dir.path().join("b"),
        &dir.path().join("r"),
        Options::default(),
        5,
    )
    .unwrap();
    assert!(r.is_ok(), "{:?}", r.checks);
    let db = Database::open(dir.path().join("r")).unwrap();
    let s = db.session();
    let t = s.open_table("t").unwrap();
    assert_eq!(t.record_count(), 2);
    assert!(
        t.read(1).unwrap().is_deleted(),
        "the open transaction's recno is a deleted blank"
    );
    assert_eq!(t.read(2).unwrap().values()[1], Value::Int64(2));
}
