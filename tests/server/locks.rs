//! Record and named locks between clients of a real server, and a client
//! killed while holding locks inside a transaction.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raiz_client::{Connection, ErrorKind, Session};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};

use crate::harness::{self, Server};

fn accounts(s: &Session) {
    let schema = Schema::new(vec![
        Field::new("ID", FieldType::Int64),
        Field::new("BAL", FieldType::Int64),
    ]);
    s.create_table("acc", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("acc").unwrap();
    for i in 1..=3 {
        t.append(&[Value::Int64(i), Value::Int64(100)]).unwrap();
    }
}

#[test]
fn two_clients_contend_for_record_and_named_locks() {
    let server = Server::start(&[]);
    let a = server.session("ana");
    let b = server.session("bo");
    accounts(&a);
    let ta = a.open_table("acc").unwrap();
    let tb = b.open_table("acc").unwrap();
    a.begin().unwrap();
    ta.lock(1, Duration::ZERO).unwrap();
    a.lock_name("closing-2026-11").unwrap();
    // b cannot take either, but can still read the record.
    let e = tb.lock(1, Duration::from_millis(150)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
    assert!(e.to_string().contains("record 1"), "{e}");
    b.set_lock_timeout(Duration::from_millis(100)).unwrap();
    let e = b.lock_name("closing-2026-11").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
    assert_eq!(tb.read(1).unwrap().get("BAL"), Some(&Value::Int64(100)));
    // Other records and names are free.
    tb.lock(2, Duration::ZERO).unwrap();
    b.lock_name("other").unwrap();
    // Inside the transaction the locks are kept until it ends.
    assert!(!ta.unlock(1).unwrap());
    // b waits; a's commit releases; b gets it within its timeout.
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let r = tb.lock(1, Duration::from_secs(10));
        (r.map_err(|e| e.to_string()), start.elapsed(), b, tb)
    });
    std::thread::sleep(Duration::from_millis(200));
    a.commit().unwrap();
    let (r, waited, b, _tb) = waiter.join().unwrap();
    r.unwrap();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    b.set_lock_timeout(Duration::from_secs(5)).unwrap();
    b.lock_name("closing-2026-11").unwrap();
    // And a now waits on b's.
    let e = ta.lock(1, Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout);
}

/// Run by `killed_client_releases_locks_and_rolls_back` in a child process.
#[test]
#[ignore = "child process of killed_client_releases_locks_and_rolls_back"]
fn child_holds_locks_in_a_transaction() {
    let Ok(url) = std::env::var("RAIZ_TEST_CHILD_URL") else {
        return;
    };
    let s = Connection::connect(&url).unwrap().session().unwrap();
    let mut t = s.open_table("acc").unwrap();
    s.begin().unwrap();
    t.lock(1, Duration::ZERO).unwrap();
    t.update(1, &[Value::Int64(1), Value::Int64(-999)]).unwrap();
    t.append(&[Value::Int64(4), Value::Int64(5)]).unwrap();
    s.lock_name("job-42").unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn killed_client_releases_locks_and_rolls_back() {
    let server = Server::start(&[]);
    let other = server.session("bo");
    accounts(&other);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "locks::child_holds_locks_in_a_transaction",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("RAIZ_TEST_CHILD_URL", server.url("ana"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut ready = false;
    for line in out.lines() {
        if line.unwrap().contains("READY") {
            ready = true;
            break;
        }
    }
    assert!(ready, "child did not get ready");
    let t = other.open_table("acc").unwrap();
    assert_eq!(
        t.lock(1, Duration::from_millis(100)).unwrap_err().kind(),
        ErrorKind::LockTimeout
    );
    harness::signal(child.id(), "KILL");
    harness::wait(&mut child, Duration::from_secs(10));
    // The server notices the dead connection, rolls back and releases.
    t.lock(1, Duration::from_secs(10)).unwrap();
    other.set_lock_timeout(Duration::from_secs(10)).unwrap();
    other.lock_name("job-42").unwrap();
    assert_eq!(t.read(1).unwrap().get("BAL"), Some(&Value::Int64(100)));
    let live: Vec<_> = t
        .snapshot()
        .unwrap()
        .into_iter()
        .filter(|r| !r.is_deleted())
        .map(|r| r.values().to_vec())
        .collect();
    assert_eq!(live.len(), 3, "the uncommitted append is gone: {live:?}");
    assert!(server.log().contains("rolled back"), "{}", server.log());
}
