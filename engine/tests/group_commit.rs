//! Group commit under a crowd: many threads commit durably while checkpoints
//! and online backups hold the log's sync mutex for work of their own. Every
//! committer must be woken — by the sync that covers its frames, or to lead
//! the next one — and none may sleep on after the others are done. A watchdog
//! fails the test instead of letting it hang.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Field, FieldType, Options, Schema, TableOptions, Value};

const THREADS: i64 = 16;

fn commits() -> i64 {
    std::env::var("RAIZ_GROUP_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

#[test]
fn every_committer_wakes_while_checkpoints_and_backups_hold_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let db = Database::open_with(&root, Options::default()).unwrap();
    let schema = Schema::new(vec![
        Field::new("THREAD", FieldType::Int64),
        Field::new("N", FieldType::Int64),
    ]);
    db.create_table("t", &schema, TableOptions::default())
        .unwrap();
    db.session()
        .open_table("t")
        .unwrap()
        .create_index(
            &IndexDef::new("k", vec![Segment::field("THREAD"), Segment::field("N")]).unique(),
        )
        .unwrap();
    let per = commits();
    let (done_tx, done_rx) = mpsc::channel();
    let mut writers = Vec::new();
    for th in 0..THREADS {
        let (db, done) = (db.clone(), done_tx.clone());
        writers.push(std::thread::spawn(move || {
            let s = db.session();
            let mut t = s.open_table("t").unwrap();
            for n in 0..per {
                t.append(&[Value::Int64(th), Value::Int64(n)]).unwrap();
            }
            done.send(th).unwrap();
        }));
    }
    drop(done_tx);
    // Meanwhile the sync mutex is taken for a log rotation (checkpoint) and
    // a log cut (backup), over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let (db, stop, dir) = (db.clone(), stop.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                db.checkpoint().unwrap();
                if n % 4 == 0 {
                    db.backup(dir.join(format!("backup{n}"))).unwrap();
                }
                n += 1;
            }
            n
        })
    };
    let mut finished = 0;
    while finished < THREADS {
        match done_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(_) => finished += 1,
            Err(e) => {
                panic!("{finished} of {THREADS} committers finished, then none for 120 s: {e}")
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = holder.join().unwrap();
    for w in writers {
        w.join().unwrap();
    }
    assert!(rounds > 0);
    let t = db.session().open_table("t").unwrap();
    assert_eq!(t.record_count(), (THREADS * per) as u64);
    assert!(t.check(10).unwrap().is_ok());
    // The crowd shared syncs.
    let stats = db.stats();
    assert!(
        stats.log_syncs < (THREADS * per) as u64,
        "{} syncs for {} commits",
        stats.log_syncs,
        THREADS * per
    );
}
