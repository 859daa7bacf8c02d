//! A database whose commits a replicator orders (a cluster member), with a
//! replicator of one that applies what it is given at once, and can be told
//! to lose its leadership, change term, or fail a commit after or without
//! applying it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use raiz_engine::db::{Ddl, Replicator};
use raiz_engine::feed::{RecordChange, TableChanges};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{
    Database, Error, Field, FieldType, Options, Result, Schema, TableOptions, Value,
};

#[derive(Debug, Default)]
struct Solo {
    db: Mutex<Option<Database>>,
    term: AtomicU64,
    follower: AtomicBool,
    /// The next commit fails with `Failover`, applied (true) or not.
    fail_next: Mutex<Option<bool>>,
    log: Mutex<Vec<Vec<TableChanges>>>,
    ddl: Mutex<Vec<Ddl>>,
}

impl Solo {
    fn apply(&self, changes: &[TableChanges]) -> Result<()> {
        let db = self.db.lock().clone().expect("installed");
        let s = db.session();
        let tables: Vec<_> = changes
            .iter()
            .map(|t| s.open_table(&t.table))
            .collect::<Result<_>>()?;
        let batch: Vec<_> = tables
            .iter()
            .zip(changes)
            .map(|(t, c)| (t, c.changes.as_slice()))
            .collect();
        s.apply_replicated(&batch)
    }
}

impl Replicator for Solo {
    fn writable(&self) -> Result<u64> {
        if self.follower.load(Ordering::SeqCst) {
            return Err(Error::NotLeader {
                leader: Some("db2:7070".into()),
            });
        }
        Ok(self.term.load(Ordering::SeqCst))
    }

    fn commit(&self, token: u64, changes: Vec<TableChanges>) -> Result<()> {
        let now = self.writable()?;
        if now != token {
            return Err(Error::Failover {
                reason: "term changed".into(),
            });
        }
        self.log.lock().push(changes.clone());
        if let Some(applied) = self.fail_next.lock().take() {
            if applied {
                self.apply(&changes)?;
            }
            return Err(Error::Failover {
                reason: "no answer".into(),
            });
        }
        self.apply(&changes)
    }

    fn ddl(&self, _token: u64, op: Ddl) -> Result<()> {
        self.ddl.lock().push(op.clone());
        let db = self.db.lock().clone().expect("installed");
        db.apply_ddl(&op)
    }
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(6)),
        Field::new("QTY", FieldType::Int64),
    ])
}

fn member(dir: &std::path::Path) -> (Database, Arc<Solo>) {
    let db = Database::open(dir).unwrap();
    let solo = Arc::new(Solo::default());
    *solo.db.lock() = Some(db.clone());
    db.set_replicator(solo.clone()).unwrap();
    // One replicator per database.
    assert!(db.set_replicator(Arc::new(Solo::default())).is_err());
    (db, solo)
}

/// A row as stored (CODE blank-padded to its width).
fn row(code: &str, qty: i64) -> Vec<Value> {
    vec![Value::Char(format!("{code:<6}")), Value::Int64(qty)]
}

fn blank() -> Vec<Value> {
    schema().empty_record()
}

#[test]
fn commits_and_table_changes_go_through_the_replicator() {
    let dir = tempfile::tempdir().unwrap();
    let (db, solo) = member(dir.path());
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    assert_eq!(solo.ddl.lock().len(), 2);
    assert_eq!(t.append(&row("a", 1)).unwrap(), 1);
    s.begin().unwrap();
    t.append(&row("b", 2)).unwrap();
    t.update(1, &row("a", 10)).unwrap();
    s.commit().unwrap();
    let log = solo.log.lock().clone();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1][0].changes,
        vec![
            RecordChange::Append {
                recno: 2,
                values: row("b", 2)
            },
            RecordChange::Update {
                recno: 1,
                values: row("a", 10)
            },
        ]
    );
    assert_eq!(t.read(1).unwrap().values(), row("a", 10).as_slice());
    // Rewrites are not replicated: refused, not done here alone.
    assert!(matches!(t.pack(), Err(Error::Unsupported(_))));
    // Nor is a cache node's stream taken.
    let e = s.replicate(&[(&t, &[])]).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    drop(t);
    solo.db.lock().take();
}

#[test]
fn a_follower_refuses_writes_before_taking_a_recno() {
    let dir = tempfile::tempdir().unwrap();
    let (db, solo) = member(dir.path());
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    solo.follower.store(true, Ordering::SeqCst);
    let e = t.append(&row("a", 1)).unwrap_err();
    assert!(
        matches!(&e, Error::NotLeader { leader: Some(l) } if l == "db2:7070"),
        "{e}"
    );
    s.begin().unwrap();
    assert!(t.append(&row("a", 1)).is_err());
    s.rollback().unwrap();
    let e = db
        .create_table("u", &schema(), TableOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::NotLeader { .. }));
    solo.follower.store(false, Ordering::SeqCst);
    assert_eq!(t.append(&row("a", 1)).unwrap(), 1, "no recno was taken");
    assert!(solo.log.lock().len() == 1);
    drop(t);
    solo.db.lock().take();
}

#[test]
fn a_term_change_fails_the_open_transaction_and_blanks_its_recnos() {
    let dir = tempfile::tempdir().unwrap();
    let (db, solo) = member(dir.path());
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    s.begin().unwrap();
    t.append(&row("a", 1)).unwrap();
    solo.term.store(1, Ordering::SeqCst);
    // A write after the change is refused at once...
    let e = t.append(&row("b", 2)).unwrap_err();
    assert!(matches!(e, Error::Failover { .. }), "{e}");
    // ... and so is the commit.
    let e = s.commit().unwrap_err();
    assert!(matches!(e, Error::Failover { .. }), "{e}");
    assert!(!s.in_transaction());
    // The recno became a deleted blank record through the replicator.
    let r = t.read(1).unwrap();
    assert!(r.is_deleted());
    assert_eq!(r.values(), blank().as_slice());
    assert_eq!(
        solo.log.lock().last().unwrap()[0].changes,
        vec![RecordChange::Blank { recno: 1 }]
    );
    // The session goes on in the new term.
    assert_eq!(t.append(&row("c", 3)).unwrap(), 2);
    drop(t);
    solo.db.lock().take();
}

#[test]
fn a_commit_of_unknown_outcome_is_blanked_only_where_it_was_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let (db, solo) = member(dir.path());
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    // Applied, but the session heard nothing back.
    *solo.fail_next.lock() = Some(true);
    s.begin().unwrap();
    t.append(&row("a", 1)).unwrap();
    assert!(matches!(s.commit(), Err(Error::Failover { .. })));
    let r = t.read(1).unwrap();
    assert!(
        !r.is_deleted(),
        "the blank after the commit changed nothing"
    );
    assert_eq!(r.values(), row("a", 1).as_slice());
    // Not applied.
    *solo.fail_next.lock() = Some(false);
    assert!(matches!(
        t.append(&row("b", 2)),
        Err(Error::Failover { .. })
    ));
    let r = t.read(2).unwrap();
    assert!(r.is_deleted());
    assert_eq!(r.values(), blank().as_slice());
    assert_eq!(t.record_count(), 2);
    drop(t);
    solo.db.lock().take();
}

#[test]
fn an_append_takes_the_blank_a_crash_left_and_nothing_else() {
    let storage = FaultStorage::new();
    let open = |st: FaultStorage| {
        Database::open_with("/root", Options::default().storage(Arc::new(st))).unwrap()
    };
    let db = open(storage.clone());
    db.create_table("t", &schema(), TableOptions::default())
        .unwrap();
    {
        let s = db.session();
        let t = s.open_table("t").unwrap();
        // The group's entries in another order than their recnos: 2 first
        // (1 is reserved meanwhile), as on a member applying them.
        s.apply_replicated(&[(
            &t,
            &[RecordChange::Append {
                recno: 2,
                values: row("b", 2),
            }][..],
        )])
        .unwrap();
    }
    db.checkpoint().unwrap();
    // A power cut before 1 is applied: the reservation goes with the
    // process, and the next open stores a deleted blank record there.
    let db = open(storage.crash(CrashMode::DropUnsynced));
    let s = db.session();
    s.set_hide_deleted(false);
    let t = s.open_table("t").unwrap();
    assert!(t.read(1).unwrap().is_deleted());
    s.apply_replicated(&[(
        &t,
        &[RecordChange::Append {
            recno: 1,
            values: row("a", 1),
        }][..],
    )])
    .unwrap();
    let r = t.read(1).unwrap();
    assert!(!r.is_deleted());
    assert_eq!(r.values(), row("a", 1).as_slice());
    // A live record is a conflict the apply refuses, changing nothing.
    let e = s
        .apply_replicated(&[(
            &t,
            &[RecordChange::Append {
                recno: 2,
                values: row("x", 9),
            }][..],
        )])
        .unwrap_err();
    assert!(matches!(e, Error::CorruptRecord { .. }), "{e}");
    assert_eq!(t.read(2).unwrap().values(), row("b", 2).as_slice());
    assert!(t.check(10).unwrap().is_ok());
}
