//! A commit that only appends many records inserts its index entries sorted at
//! the end (an empty index is built bottom-up). It must be indistinguishable
//! from inserting them one record at a time: the same order through every
//! index, the same unique-key errors, nothing left of a refused commit, and
//! the same state after a power cut.

mod common;

use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{
    Database, Error, Field, FieldType, Memo, Schema, Session, Table, TableOptions, Value,
};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Int64),
        Field::new("GRP", FieldType::Char(4)),
        Field::new("NAME", FieldType::Char(12)),
        Field::new("NOTE", FieldType::Memo),
    ])
}

/// Row `code`: a scrambled group and name so no index sees keys in order.
fn row(code: i64) -> Vec<Value> {
    let mix = (code as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    vec![
        Value::Int64(code),
        Value::from(format!("G{:02}", mix % 37).as_str()),
        Value::from(format!("N{:08}", mix % 100_003).as_str()),
        Value::Memo(if code % 5 == 0 {
            Memo::Data(format!("note {code} ").repeat(30).into_bytes())
        } else {
            Memo::Empty
        }),
    ]
}

fn create(db: &Database) {
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let mut t = db.session().open_table("t").unwrap();
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "grp_name",
        vec![Segment::field("GRP"), Segment::field("NAME")],
    ))
    .unwrap();
    t.create_index(&IndexDef::new("name", vec![Segment::field("NAME")]))
        .unwrap();
}

/// A session that hides deleted records, and its handle on table `t`.
fn hiding(db: &Database) -> (Session, Table) {
    let s = db.session();
    s.set_hide_deleted(true);
    let t = s.open_table("t").unwrap();
    (s, t)
}

/// What a power cut now leaves of `storage`, reopened (so recovered), with
/// [`hiding`]'s session and handle. The live database goes on, on its own
/// storage.
fn after_power_cut(storage: &FaultStorage, pool: usize) -> (Database, Session, Table) {
    let db = common::open_on(Arc::new(storage.crash(CrashMode::DropUnsynced)), pool);
    let (s, t) = hiding(&db);
    (db, s, t)
}

/// A row's position in one index: its fields as text, then its recno.
type SortKey = Box<dyn Fn(&(u64, Vec<Value>)) -> (String, String, u64)>;

fn code(v: &[Value]) -> i64 {
    match v[0] {
        Value::Int64(c) => c,
        ref other => panic!("{other:?}"),
    }
}

/// Every index walked in order (deleted records hidden: a refused load
/// leaves its recnos as deleted blanks) matches the live rows sorted by that
/// index's fields (recno breaking ties, as a non-unique index orders them),
/// and `check` passes.
fn verify(t: &mut Table, mut codes: Vec<i64>) {
    codes.sort();
    let rows: Vec<(u64, Vec<Value>)> = t
        .snapshot()
        .unwrap()
        .iter()
        .filter(|r| !r.is_deleted())
        .map(|r| (r.recno(), r.values().to_vec()))
        .collect();
    let mut have: Vec<i64> = rows.iter().map(|(_, v)| code(v)).collect();
    have.sort();
    assert_eq!(have, codes, "the live rows");
    let text = |v: &Value| v.to_string();
    let orders: [(&str, SortKey); 3] = [
        (
            "code",
            Box::new(|(r, v)| (format!("{:020}", code(v)), String::new(), *r)),
        ),
        (
            "grp_name",
            Box::new(move |(r, v)| (text(&v[1]), text(&v[2]), *r)),
        ),
        (
            "name",
            Box::new(move |(r, v)| (text(&v[2]), String::new(), *r)),
        ),
    ];
    for (name, key) in orders {
        let mut want: Vec<_> = rows.iter().map(|x| (key(x), x.0)).collect();
        want.sort();
        let want: Vec<u64> = want.into_iter().map(|(_, r)| r).collect();
        t.set_order(Some(name)).unwrap();
        let mut got = Vec::new();
        let mut more = t.first().unwrap();
        while more {
            got.push(t.recno());
            more = t.next().unwrap();
        }
        assert_eq!(got, want, "order {name}");
    }
    t.set_order(None).unwrap();
    let report = t.check(100).unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn a_first_load_and_later_loads_keep_every_index_in_order() {
    let (_s, db) = common::mem_db(4 << 20);
    create(&db);
    let (s, mut t) = hiding(&db);
    let mut codes = Vec::new();
    // The first load builds the empty indexes; later ones insert sorted
    // into full ones; the small one goes record by record.
    for (from, n) in [(0i64, 3000i64), (10_000, 1000), (5_000, 300), (20_000, 10)] {
        s.begin().unwrap();
        for i in 0..n {
            // Codes not in order: the unique index is not appended to.
            let c = from + (i * 7919) % n;
            t.append(&row(c)).unwrap();
            codes.push(c);
        }
        s.commit().unwrap();
        verify(&mut t, codes.clone());
    }
    // Seeks find every record through the unique index.
    t.set_order(Some("code")).unwrap();
    for &c in &codes {
        assert!(t.seek(&[Value::Int64(c)]).unwrap(), "code {c}");
        assert_eq!(code(t.record().unwrap().values()), c);
    }
}

#[test]
fn a_load_refused_for_a_key_committed_meanwhile_leaves_nothing_and_can_be_retried() {
    let (_s, db) = common::mem_db(4 << 20);
    create(&db);
    let a = db.session();
    a.set_hide_deleted(true);
    let b = db.session();
    let mut t = a.open_table("t").unwrap();
    s_load(&a, &mut t, 0..500);
    let before = t.record_count();
    a.begin().unwrap();
    for c in 1000..1600 {
        t.append(&row(c)).unwrap();
    }
    // Another session commits one of the keys after the load checked it.
    let mut tb = b.open_table("t").unwrap();
    tb.append(&row(1234)).unwrap();
    let holder = tb.recno();
    match a.commit() {
        Err(Error::DuplicateKey {
            index, recno, key, ..
        }) => {
            assert_eq!(index, "code");
            assert_eq!(recno, holder, "the error names the holder");
            assert!(key.contains("1234"), "{key}");
        }
        other => panic!("expected DuplicateKey, got {other:?}"),
    }
    let mut codes: Vec<i64> = (0..500).collect();
    codes.push(1234);
    verify(&mut t, codes.clone());
    assert!(
        t.record_count() > before + 1,
        "the refused load's recnos stay, as deleted blanks"
    );
    // The same load without the taken key goes in.
    a.begin().unwrap();
    for c in (1000..1600).filter(|&c| c != 1234) {
        t.append(&row(c)).unwrap();
        codes.push(c);
    }
    a.commit().unwrap();
    verify(&mut t, codes);
}

fn s_load(s: &raiz_engine::Session, t: &mut Table, codes: std::ops::Range<i64>) {
    s.begin().unwrap();
    for c in codes {
        t.append(&row(c)).unwrap();
    }
    s.commit().unwrap();
}

#[test]
fn a_load_is_in_the_tables_after_a_power_cut() {
    let (storage, db) = common::fault_db(1 << 20);
    create(&db);
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    s_load(&s, &mut t, 0..2000);
    s_load(&s, &mut t, 5000..5700);
    let (_db, _s, mut t) = after_power_cut(&storage, 1 << 20);
    verify(&mut t, (0..2000).chain(5000..5700).collect());
}

/// A load's index entries are inserted at the end of its commit, without
/// pages reserved per append: a disk that fills up there fails the commit
/// with `DiskFull`, leaves the tables as they were (into an empty index, as
/// a bottom-up build, and into a full one), and the load goes in once there
/// is room.
#[test]
fn a_disk_that_fills_during_a_load_fails_its_commit_and_leaves_the_tables_intact() {
    let mut failed = 0;
    for margin in [0u64, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20] {
        for committed in [0i64, 600] {
            let (storage, db) = common::fault_db(4 << 20);
            create(&db);
            let (s, mut t) = hiding(&db);
            if committed > 0 {
                s_load(&s, &mut t, 0..committed);
            }
            t.flush().unwrap();
            let mut codes: Vec<i64> = (0..committed).collect();
            storage.set_capacity(Some(storage.used_bytes() + margin));
            s.begin().unwrap();
            for c in 10_000..12_000 {
                t.append(&row(c)).unwrap();
            }
            match s.commit() {
                Ok(()) => codes.extend(10_000..12_000),
                Err(e @ Error::DiskFull { .. }) => {
                    assert!(e.is_retryable());
                    failed += 1;
                    storage.set_capacity(None);
                    // The retry first: the refused load's recnos become
                    // deleted blanks with the next commit when the disk was
                    // too full to write them at once (see the ignored test
                    // below for what a read sees before that).
                    s_load(&s, &mut t, 10_000..12_000);
                    codes.extend(10_000..12_000);
                }
                Err(e) => panic!("margin {margin}: unexpected {e}"),
            }
            storage.set_capacity(None);
            verify(&mut t, codes.clone());
            // And after a power cut.
            let (_db, _s, mut t) = after_power_cut(&storage, 4 << 20);
            verify(&mut t, codes);
        }
    }
    assert!(failed >= 2, "the disk filled during {failed} loads");
}

/// A commit refused by a full disk, when the disk is still too full to store
/// its recnos as deleted blank records: those recnos read as the deleted
/// blank records a rollback makes them, at once — from the handle still on
/// the last of them, by recno from another session, in the counts — and the
/// table's next commit stores them, durably.
#[test]
fn recnos_of_a_commit_refused_by_a_full_disk_read_as_deleted_blanks_until_a_commit_stores_them() {
    let (storage, db) = common::fault_db(4 << 20);
    create(&db);
    let (s, mut t) = hiding(&db);
    t.append(&row(1)).unwrap();
    t.flush().unwrap();
    storage.set_capacity(Some(storage.used_bytes()));
    s.begin().unwrap();
    for c in 100..2100 {
        t.append(&row(c)).unwrap();
    }
    assert!(matches!(s.commit(), Err(Error::DiskFull { .. })));
    let counts = |t: &Table| (t.record_count(), t.deleted_count());
    assert_eq!(counts(&t), (2001, 2000));
    assert!(t.on_record() && t.recno() == 2001);
    assert!(t.record().unwrap().is_deleted());
    let other = db.session();
    let mut o = other.open_table("t").unwrap();
    o.goto(1500).unwrap();
    assert!(o.on_record());
    let rec = o.record().unwrap();
    assert!(rec.is_deleted() && rec.values() == schema().empty_record().as_slice());
    assert_eq!(o.read_memo(1500, "NOTE").unwrap(), Vec::<u8>::new());
    verify(&mut t, vec![1]);
    // A write while the disk is still full fails and changes nothing.
    assert!(matches!(o.append(&row(5)), Err(Error::DiskFull { .. })));
    assert_eq!(counts(&t), (2001, 2000));
    verify(&mut t, vec![1]);
    storage.set_capacity(None);
    // The next commit stores them with its own change.
    t.goto(2000).unwrap();
    o.append(&row(7)).unwrap();
    assert_eq!(o.recno(), 2002);
    assert_eq!(counts(&t), (2002, 2000));
    verify(&mut t, vec![1, 7]);
    // Stored durably: a power cut keeps them, and they stay deleted blanks.
    let (_db, _s, mut t) = after_power_cut(&storage, 4 << 20);
    assert_eq!(counts(&t), (2002, 2000));
    verify(&mut t, vec![1, 7]);
}

/// The same below a recno another session committed meanwhile, and with no
/// later commit to store them: closing the database (or a power cut) leaves
/// empty slots below the record count, which the next open stores as the
/// deleted blank records they read as.
#[test]
fn recnos_left_unstored_below_a_later_commit_are_blanks_after_a_reopen() {
    for power_cut in [false, true] {
        let (storage, db) = common::fault_db(4 << 20);
        create(&db);
        let a = db.session();
        let b = db.session();
        b.set_hide_deleted(true);
        let mut ta = a.open_table("t").unwrap();
        let mut tb = b.open_table("t").unwrap();
        tb.append(&row(1)).unwrap();
        a.begin().unwrap();
        for c in 100..1100 {
            ta.append(&row(c)).unwrap();
        }
        tb.append(&row(2)).unwrap();
        assert_eq!(tb.recno(), 1002);
        ta.flush().unwrap();
        storage.set_capacity(Some(storage.used_bytes()));
        assert!(matches!(a.commit(), Err(Error::DiskFull { .. })));
        let counts = |t: &Table| (t.record_count(), t.deleted_count());
        assert_eq!(counts(&tb), (1002, 1000));
        for r in 2..=1001 {
            assert!(tb.is_deleted(r).unwrap(), "recno {r}");
        }
        verify(&mut tb, vec![1, 2]);
        storage.set_capacity(None);
        let (_db, _s, mut t) = if power_cut {
            after_power_cut(&storage, 4 << 20)
        } else {
            drop((ta, tb, a, b));
            drop(db);
            let db = common::open_on(Arc::new(storage), 4 << 20);
            let (s, t) = hiding(&db);
            (db, s, t)
        };
        assert_eq!(counts(&t), (1002, 1000), "power cut: {power_cut}");
        verify(&mut t, vec![1, 2]);
    }
}

/// A rollback on a full disk: it reports the disk, and is a rollback all the
/// same. The recnos read as deleted blank records; a later transaction may
/// recall and rewrite one of them (through an index too) before any commit
/// stored them, and its commit stores them all.
#[test]
fn a_rollback_on_a_full_disk_leaves_blanks_a_later_transaction_can_rewrite() {
    let (storage, db) = common::fault_db(4 << 20);
    create(&db);
    let (s, mut t) = hiding(&db);
    t.append(&row(1)).unwrap();
    t.flush().unwrap();
    s.begin().unwrap();
    for c in 100..1100 {
        t.append(&row(c)).unwrap();
    }
    storage.set_capacity(Some(storage.used_bytes()));
    assert!(matches!(s.rollback(), Err(Error::DiskFull { .. })));
    assert!(!s.in_transaction());
    assert_eq!((t.record_count(), t.deleted_count()), (1001, 1000));
    verify(&mut t, vec![1]);
    storage.set_capacity(None);
    s.begin().unwrap();
    t.update(500, &row(9)).unwrap();
    t.recall(500).unwrap();
    t.set_order(Some("code")).unwrap();
    assert!(t.seek(&[Value::Int64(9)]).unwrap());
    assert_eq!(t.recno(), 500);
    s.commit().unwrap();
    assert_eq!((t.record_count(), t.deleted_count()), (1001, 999));
    verify(&mut t, vec![1, 9]);
}

/// A commit whose log frames run to many megabytes is written a chunk at a
/// time: a disk that fills after its first chunks refuses the whole commit
/// (nothing of it is replayed after a power cut either), and once there is
/// room the same load commits and survives a power cut whole.
#[test]
fn a_commit_logged_in_many_chunks_is_all_or_nothing() {
    let (storage, db) = common::fault_db(64 << 20);
    create(&db);
    let (s, mut t) = hiding(&db);
    t.append(&row(1)).unwrap();
    t.flush().unwrap();
    let load = |t: &mut Table| {
        s.begin().unwrap();
        for c in 10..80_010 {
            t.append(&row(c)).unwrap();
        }
        s.commit()
    };
    // Room for a few megabytes of log only.
    storage.set_capacity(Some(storage.used_bytes() + (10 << 20)));
    let before = db.log_end();
    assert!(matches!(load(&mut t), Err(Error::DiskFull { .. })));
    storage.set_capacity(None);
    verify(&mut t, vec![1]);
    verify(&mut after_power_cut(&storage, 64 << 20).2, vec![1]);
    // With room: the load commits, its log well past one chunk.
    let start = db.log_end();
    load(&mut t).unwrap();
    assert!(
        db.log_end() - start > 8 << 20,
        "{} bytes",
        db.log_end() - start
    );
    assert!(start >= before);
    let mut codes = vec![1];
    codes.extend(10..80_010);
    verify(&mut t, codes.clone());
    verify(&mut after_power_cut(&storage, 64 << 20).2, codes);
}
