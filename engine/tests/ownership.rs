//! One process owns a rootpath: checked with real child processes, including one
//! killed with SIGKILL in the middle of its writes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use raiz_engine::{Database, Durability, Error, Field, FieldType, Schema, TableOptions, Value};

const CHILD_ROOT: &str = "RAIZ_TEST_CHILD_ROOT";
const CHILD_MODE: &str = "RAIZ_TEST_CHILD_MODE";

/// Runs only inside a child spawned by the tests below.
#[test]
#[ignore = "entry point of the child process the ownership tests spawn"]
fn child_process_entry() {
    let Ok(root) = std::env::var(CHILD_ROOT) else {
        return;
    };
    let db = Database::open(&root).unwrap();
    if !db.table_exists("t").unwrap() {
        let schema = Schema::new(vec![
            Field::new("N", FieldType::Int64),
            Field::new("PAD", FieldType::Char(200)),
        ]);
        db.create_table(
            "t",
            &schema,
            TableOptions::default().durability(Durability::Unlogged),
        )
        .unwrap();
    }
    let mut t = db.session().open_table("t").unwrap();
    for i in 0..1000 {
        t.append(&[Value::Int64(i), Value::from("x".repeat(150).as_str())])
            .unwrap();
    }
    t.flush().unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    if std::env::var(CHILD_MODE).as_deref() == Ok("write-forever") {
        let mut i = 1000;
        loop {
            t.append(&[Value::Int64(i), Value::from("y")]).unwrap();
            i += 1;
        }
    }
    // Hold the rootpath until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn spawn(root: &Path, mode: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_MODE, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.trim_end().ends_with("ready") => break,
            Some(Ok(_)) => continue,
            other => panic!("child ended before it was ready: {other:?}"),
        }
    }
    // Keep draining so the child never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn a_second_process_gets_an_error_naming_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(dir.path(), "hold");
    match Database::open(dir.path()) {
        Err(Error::RootpathLocked { pid, owner, path }) => {
            assert_eq!(pid, child.id());
            assert!(owner.contains(&format!("pid={}", child.id())), "{owner}");
            assert_eq!(path, dir.path().canonicalize().unwrap());
            let msg = Error::RootpathLocked { pid, owner, path }.to_string();
            assert!(msg.contains(&child.id().to_string()), "{msg}");
        }
        other => panic!("expected RootpathLocked, got {other:?}"),
    }
    // The owner leaves cleanly: the rootpath is free and nothing needs repair.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let db = Database::open(dir.path()).unwrap();
    let t = db.session().open_table("t").unwrap();
    assert_eq!(t.record_count(), 1000);
    assert!(db.repairs().is_empty());
}

#[test]
fn a_killed_owner_is_taken_over_and_its_table_verified() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(dir.path(), "write-forever");
    std::thread::sleep(std::time::Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    let db = Database::open(dir.path()).expect("a dead owner's lock is taken over");
    let t = db.session().open_table("t").unwrap();
    let repairs = db.repairs();
    assert_eq!(repairs.len(), 1);
    assert!(
        repairs[0].1.verified,
        "the killed writer left the table unclean"
    );
    assert!(t.record_count() >= 1000);
    // Every flushed record is intact. After them, unlogged pages reach the disk in
    // eviction order: a record whose page was still in the killed process's pool
    // comes back as a deleted blank record, never as garbage.
    for r in 1..=t.record_count() {
        let rec = t.read(r).unwrap();
        let n = rec.get("N").unwrap().clone();
        if r <= 1000 || n != Value::Int64(0) {
            assert_eq!(n, Value::Int64(r as i64 - 1), "record {r}");
        } else {
            assert!(
                rec.is_deleted(),
                "record {r} was restored as a deleted blank"
            );
        }
    }
    assert!(t.info().stats.unclean_opens == 1);
}
