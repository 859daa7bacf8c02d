//! The application API as an ERP program uses it, each scenario run embedded
//! and against a real `raiz serve` with the same assertions: a lock returns
//! the record as of the lock, serials inside transactions, unique keys checked
//! at the write, values in one representation, moves after a batch, range
//! iterators and the session's own writes, failed `set_order`, appends rolled
//! back to a savepoint, deleted records updated in a transaction, partial
//! updates, `seek_lock`, transactions retried after a deadlock.

use std::time::Duration;

use raiz_client::{Connection, ErrorKind, Session, Table};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, TableOptions, Value};

use crate::harness::Server;

/// Opens sessions of one database, embedded or on a server.
pub trait Sessions: Sync {
    fn session(&self) -> Session;
}

pub struct Embedded {
    conn: Connection,
    _dir: tempfile::TempDir,
}

impl Embedded {
    pub fn new() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::connect(&format!("file:{}", dir.path().display())).unwrap();
        Embedded { conn, _dir: dir }
    }
}

impl Sessions for Embedded {
    fn session(&self) -> Session {
        self.conn.session().unwrap()
    }
}

impl Sessions for Server {
    fn session(&self) -> Session {
        Server::session(self, "ana")
    }
}

fn products(s: &Session, name: &str) -> Table {
    let schema = Schema::new(vec![
        Field::new("CODE", FieldType::Char(6)),
        Field::new("STOCK", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ]);
    s.create_table(name, &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table(name).unwrap();
    t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    for (i, code) in ["P1", "P2", "P3", "P4", "P5"].iter().enumerate() {
        t.append(&[
            Value::from(*code),
            Value::Int64(100 + i as i64),
            Value::Memo(Memo::Data(format!("note {code}").into_bytes())),
        ])
        .unwrap();
    }
    t
}

fn stock(rec: &raiz_engine::Record) -> i64 {
    rec.get("STOCK").and_then(Value::as_i64).unwrap()
}

fn lock_returns_the_record_as_of_the_lock(db: &dyn Sessions) {
    let (a, b) = (db.session(), db.session());
    products(&a, "lk");
    let mut tb = b.open_table("lk").unwrap();
    tb.set_order(Some("by_code")).unwrap();
    assert!(tb.seek(&[Value::from("P1")]).unwrap());
    assert_eq!(stock(&tb.record().unwrap()), 100);
    // Another session changes it between the seek and the lock.
    let mut ta = a.open_table("lk").unwrap();
    let rec = ta.lock(1, Duration::ZERO).unwrap();
    ta.update_fields(1, &[("STOCK", Value::Int64(stock(&rec) - 10))])
        .unwrap();
    ta.unlock(1).unwrap();
    let locked = tb.lock(1, Duration::from_secs(1)).unwrap();
    assert_eq!(stock(&locked), 90, "the lock re-reads the record");
    assert_eq!(stock(&tb.record().unwrap()), 90, "and so does record()");
    tb.update_fields(1, &[("STOCK", Value::Int64(stock(&locked) - 5))])
        .unwrap();
    assert_eq!(stock(&ta.read(1).unwrap()), 85, "no lost update");
}

fn a_serial_is_assigned_at_a_transactions_append(db: &dyn Sessions) {
    let s = db.session();
    let schema = Schema::new(vec![
        Field::new("SEQ", FieldType::Int64),
        Field::new("CUST", FieldType::Char(6)),
    ]);
    s.create_table("orders", &schema, TableOptions::default().serial("SEQ"))
        .unwrap();
    let mut t = s.open_table("orders").unwrap();
    t.append(&[Value::Int64(0), Value::from("C0")]).unwrap();
    s.begin().unwrap();
    let r = t.append(&[Value::Int64(0), Value::from("C1")]).unwrap();
    let rec = t.record().unwrap();
    let seq = rec.get("SEQ").and_then(Value::as_i64).unwrap();
    assert_eq!(seq, 2, "the serial is the transaction's at once");
    let mut v = rec.into_values();
    v[1] = Value::from("C9");
    t.update(r, &v).unwrap();
    s.commit().unwrap();
    let after = t.read(r).unwrap();
    assert_eq!(after.get("SEQ"), Some(&Value::Int64(2)));
    assert_eq!(after.get("CUST"), Some(&Value::from("C9    ")));
    // A rolled-back append's serial is never handed out again.
    s.begin().unwrap();
    t.append(&[Value::Int64(0), Value::from("C2")]).unwrap();
    s.rollback().unwrap();
    let r = t.append(&[Value::Int64(0), Value::from("C3")]).unwrap();
    assert_eq!(t.read(r).unwrap().get("SEQ"), Some(&Value::Int64(4)));
}

fn a_unique_key_is_refused_at_the_write(db: &dyn Sessions) {
    let s = db.session();
    let mut t = products(&s, "uq");
    s.begin().unwrap();
    let taken = [Value::from("P1"), Value::Int64(1), Value::Memo(Memo::Empty)];
    let e = t.update(2, &taken).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DuplicateKey, "{e}");
    let e = t.append(&taken).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DuplicateKey, "{e}");
    // The transaction's own records count too; moving a key frees it.
    t.update(
        1,
        &[Value::from("P9"), Value::Int64(1), Value::Memo(Memo::Empty)],
    )
    .unwrap();
    t.update(2, &taken).unwrap();
    let e = t
        .append(&[Value::from("P9"), Value::Int64(0), Value::Memo(Memo::Empty)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DuplicateKey, "{e}");
    s.commit().unwrap();
    assert!(t.check(5).unwrap().is_ok());
}

fn values_read_in_a_transaction_are_as_committed(db: &dyn Sessions) {
    let s = db.session();
    let mut t = products(&s, "pad");
    s.begin().unwrap();
    let r = t
        .append(&[Value::from("C"), Value::Int64(1), Value::Memo(Memo::Empty)])
        .unwrap();
    let inside = t.read(r).unwrap();
    s.commit().unwrap();
    assert_eq!(inside.get("CODE"), Some(&Value::from("C     ")));
    assert_eq!(inside.values(), t.read(r).unwrap().values());
    // A committed deleted record the transaction updates stays deleted.
    t.delete(3).unwrap();
    s.begin().unwrap();
    t.update_fields(3, &[("STOCK", Value::Int64(7))]).unwrap();
    assert!(t.read(3).unwrap().is_deleted());
    assert!(t.is_deleted(3).unwrap());
    s.commit().unwrap();
    assert!(t.read(3).unwrap().is_deleted());
}

fn a_batch_in_a_read_ahead_keeps_the_position(db: &dyn Sessions) -> Vec<u64> {
    let (s, other) = (db.session(), db.session());
    let schema = Schema::new(vec![Field::new("K", FieldType::Int64)]);
    s.create_table("ra", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("ra").unwrap();
    for k in 0..100 {
        t.append(&[Value::Int64(k * 10)]).unwrap();
    }
    t.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]))
        .unwrap();
    t.set_order(Some("by_k")).unwrap();
    let mut seen = vec![];
    assert!(t.first().unwrap());
    for _ in 0..20 {
        assert!(t.next().unwrap());
        seen.push(t.recno());
    }
    let here = t.recno();
    t.batch(&raiz_client::BatchRequest::prefix(
        vec![Value::Int64(500)],
        raiz_client::BatchAction::Read { lock_ms: None },
    ))
    .unwrap();
    // The current record moves far ahead in key order.
    other
        .open_table("ra")
        .unwrap()
        .update(here, &[Value::Int64(805)])
        .unwrap();
    for _ in 0..3 {
        assert!(t.skip(1).unwrap());
        seen.push(t.recno());
    }
    // From the key it stood on: the next keys, not the record's new place.
    assert_eq!(&seen[seen.len() - 3..], &[here + 1, here + 2, here + 3]);
    seen
}

fn a_range_shows_the_sessions_own_writes(db: &dyn Sessions) -> Vec<String> {
    let s = db.session();
    s.set_hide_deleted(true).unwrap();
    let schema = Schema::new(vec![Field::new("K", FieldType::Int64)]);
    s.create_table("rg", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("rg").unwrap();
    for k in 0..40 {
        t.append(&[Value::Int64(k * 10)]).unwrap();
    }
    t.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]))
        .unwrap();
    t.set_order(Some("by_k")).unwrap();
    let mut w = s.open_table("rg").unwrap();
    let mut out = vec![];
    let it = t.range(None, None).unwrap();
    for (n, rec) in it.enumerate() {
        let rec = rec.unwrap();
        out.push(format!("{}={:?}", rec.recno(), rec.get("K")));
        match n {
            2 => w.delete(6).unwrap(),
            4 => w.update(8, &[Value::Int64(1000)]).unwrap(),
            5 => drop(w.append(&[Value::Int64(75)]).unwrap()),
            _ => {}
        }
    }
    assert!(
        !out.iter().any(|r| r.starts_with("6=")),
        "a deleted record: {out:?}"
    );
    assert!(out.contains(&"41=Some(Int64(75))".to_owned()), "{out:?}");
    assert!(out.contains(&"8=Some(Int64(1000))".to_owned()), "{out:?}");
    out
}

fn a_failed_set_order_changes_nothing(db: &dyn Sessions) {
    let s = db.session();
    let mut t = products(&s, "so");
    t.set_order(Some("by_code")).unwrap();
    assert!(t.seek(&[Value::from("P3")]).unwrap());
    assert!(t.set_order(Some("nope")).is_err());
    assert_eq!(t.order(), Some("by_code"));
    assert!(t.next().unwrap());
    assert_eq!(t.recno(), 4);
    t.drop_index("BY_CODE").unwrap();
    assert_eq!(t.order(), None, "index names are case-insensitive");
    assert!(t.next().unwrap());
    assert_eq!(t.recno(), 5);
}

fn an_append_rolled_back_to_a_savepoint_is_a_deleted_blank(db: &dyn Sessions) {
    let s = db.session();
    let mut t = products(&s, "sp");
    s.begin().unwrap();
    let sp = s.savepoint().unwrap();
    let r = t
        .append(&[Value::from("X"), Value::Int64(1), Value::Memo(Memo::Empty)])
        .unwrap();
    s.rollback_to(sp).unwrap();
    assert_eq!(t.recno(), r);
    let rec = t.record().unwrap();
    assert!(rec.is_deleted(), "the handle's record is the deleted blank");
    assert_eq!(rec.get("CODE"), Some(&Value::from("      ")));
    assert!(t.read(r).unwrap().is_deleted());
    s.commit().unwrap();
    assert!(t.read(r).unwrap().is_deleted());
}

fn seek_lock_and_insert(db: &dyn Sessions) {
    let s = db.session();
    let mut t = products(&s, "sk");
    t.set_order(Some("by_code")).unwrap();
    let rec = t.seek_lock(&[Value::from("P4")]).unwrap().unwrap();
    assert_eq!(rec.recno(), 4);
    assert!(t.found());
    assert!(t.seek_lock(&[Value::from("ZZ")]).unwrap().is_none());
    assert!(t.eof());
    assert!(t.seek(&[Value::from("P2")]).unwrap());
    t.insert(&[Value::from("P0"), Value::Int64(0), Value::Memo(Memo::Empty)])
        .unwrap();
    assert_eq!(t.recno(), 2, "insert does not move the handle");
    assert_eq!(t.record_count().unwrap(), 6);
    // The memo is kept by a partial update.
    t.update_fields(4, &[("STOCK", Value::Int64(1))]).unwrap();
    assert_eq!(t.read_memo(4, "NOTE").unwrap(), b"note P4");
    let e = t
        .update_fields(4, &[("NOPE", Value::Int64(1))])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchField);
}

fn a_deadlocked_transaction_is_retried(db: &dyn Sessions) {
    let setup = db.session();
    products(&setup, "dl");
    let run = |first: u64, second: u64| {
        let s = db.session();
        s.set_lock_timeout(Duration::from_secs(5)).unwrap();
        let mut t = s.open_table("dl").unwrap();
        s.transaction_with(raiz_client::Retry::default(), |_| {
            let a = t.rlock(first)?;
            // Both hold their first lock before asking for the other's.
            std::thread::sleep(Duration::from_millis(100));
            let b = t.rlock(second)?;
            t.update_fields(first, &[("STOCK", Value::Int64(stock(&a) - 1))])?;
            t.update_fields(second, &[("STOCK", Value::Int64(stock(&b) + 1))])?;
            Ok(())
        })
        .unwrap()
        .1
    };
    let retries: u32 = std::thread::scope(|scope| {
        let x = scope.spawn(|| run(1, 2));
        let y = scope.spawn(|| run(2, 1));
        x.join().unwrap() + y.join().unwrap()
    });
    let t = setup.open_table("dl").unwrap();
    assert_eq!(stock(&t.read(1).unwrap()), 100, "each moved one unit");
    assert_eq!(stock(&t.read(2).unwrap()), 101);
    assert!(
        retries >= 1,
        "one of the two was refused by a deadlock and retried"
    );
}

fn all(db: &dyn Sessions) -> (Vec<u64>, Vec<String>) {
    lock_returns_the_record_as_of_the_lock(db);
    a_serial_is_assigned_at_a_transactions_append(db);
    a_unique_key_is_refused_at_the_write(db);
    values_read_in_a_transaction_are_as_committed(db);
    let moves = a_batch_in_a_read_ahead_keeps_the_position(db);
    let range = a_range_shows_the_sessions_own_writes(db);
    a_failed_set_order_changes_nothing(db);
    an_append_rolled_back_to_a_savepoint_is_a_deleted_blank(db);
    seek_lock_and_insert(db);
    a_deadlocked_transaction_is_retried(db);
    (moves, range)
}

#[test]
fn the_application_api_behaves_the_same_embedded_and_remote() {
    let embedded = all(&Embedded::new());
    let remote = all(&Server::start(&[]));
    assert_eq!(embedded, remote, "remote moves and ranges as embedded");
}
