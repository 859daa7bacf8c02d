//! `raiz backup` and `raiz restore` as processes: a backup taken through a
//! real `raiz serve` while clients commit over the network, restored into a
//! new rootpath where every table checks clean, every commit acknowledged
//! before the backup began is there and no transaction is there in part;
//! the embedded backup, refused while a server holds the rootpath; a backup
//! needs an admin.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raiz_client::ErrorKind;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Decimal, Field, FieldType, Schema, TableOptions, Value};

use crate::harness::Server;

const WRITERS: i64 = 3;
const LINES: i64 = 3;

fn raiz(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raiz"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup(s: &raiz_client::Session) {
    let int = |n: &str| Field::new(n, FieldType::Int64);
    s.create_table(
        "orders",
        &Schema::new(vec![int("ID"), int("WRITER"), int("N")]),
        TableOptions::default(),
    )
    .unwrap();
    s.create_table(
        "lines",
        &Schema::new(vec![
            int("ORDER"),
            int("LINE"),
            Field::new("AMOUNT", FieldType::Numeric { len: 12, dec: 2 }),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    s.create_table(
        "tally",
        &Schema::new(vec![int("WRITER"), int("N")]),
        TableOptions::default(),
    )
    .unwrap();
    let mut o = s.open_table("orders").unwrap();
    o.create_index(&IndexDef::new("id", vec![Segment::field("ID")]).unique())
        .unwrap();
    let mut t = s.open_table("tally").unwrap();
    let rows: Vec<Vec<Value>> = (0..WRITERS)
        .map(|w| vec![Value::Int64(w), Value::Int64(0)])
        .collect();
    t.append_many(&rows).unwrap();
}

#[derive(Clone, Copy)]
struct Acked {
    id: i64,
    called: Instant,
    returned: Instant,
}

fn writer(server_url: String, w: i64, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<Acked>>>) {
    let s = raiz_client::Connection::connect(&server_url)
        .and_then(|c| c.session())
        .unwrap();
    let mut o = s.open_table("orders").unwrap();
    let mut l = s.open_table("lines").unwrap();
    let mut t = s.open_table("tally").unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = w * 1_000_000 + n;
        s.begin().unwrap();
        o.append(&[Value::Int64(id), Value::Int64(w), Value::Int64(n)])
            .unwrap();
        for line in 1..=LINES {
            l.append(&[
                Value::Int64(id),
                Value::Int64(line),
                Value::Numeric(Decimal::new(i128::from(line) * 150, 2)),
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

fn rows(db: &Database, table: &str) -> Vec<Vec<i64>> {
    let s = db.session();
    let t = s.open_table(table).unwrap();
    t.snapshot()
        .unwrap()
        .into_iter()
        .filter(|r| !r.is_deleted())
        .map(|r| {
            r.values()
                .iter()
                .map(|v| match v {
                    Value::Int64(i) => *i,
                    _ => 0,
                })
                .collect()
        })
        .collect()
}

/// Every order acknowledged before `began` is in the restored rootpath, and
/// every transaction there is whole.
fn verify(root: &Path, before: &[i64]) {
    let db = Database::open(root).unwrap();
    let orders = rows(&db, "orders");
    let ids: HashSet<i64> = orders.iter().map(|o| o[0]).collect();
    for id in before {
        assert!(
            ids.contains(id),
            "order {id} was acknowledged before the backup and is missing"
        );
    }
    let mut per: BTreeMap<i64, i64> = BTreeMap::new();
    for l in rows(&db, "lines") {
        *per.entry(l[0]).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            per.get(id),
            Some(&LINES),
            "order {id} has part of its lines"
        );
    }
    assert_eq!(per.len(), ids.len(), "lines without their order");
    for t in rows(&db, "tally") {
        let mine: Vec<&Vec<i64>> = orders.iter().filter(|o| o[1] == t[0]).collect();
        let last = mine.iter().map(|o| o[2]).max().unwrap_or(0);
        assert_eq!(
            (t[1], mine.len() as i64),
            (last, last),
            "writer {}: half a transaction",
            t[0]
        );
    }
}

#[test]
fn a_backup_through_a_server_under_load_restores_whole() {
    let server = Server::start(&[]);
    let admin = server.session("admin");
    setup(&admin);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, stop, acked) = (server.url("admin"), stop.clone(), acked.clone());
            std::thread::spawn(move || writer(url, w, stop, acked))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));

    let backup = server.dir.path().join("backup");
    let began = Instant::now();
    let (code, out, err) = raiz(&[
        "backup",
        "--connect",
        &server.url("admin"),
        "--to",
        backup.to_str().unwrap(),
    ]);
    let ended = Instant::now();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("commits paused"), "{out}");
    std::thread::sleep(Duration::from_millis(150));
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
    println!(
        "raiz backup --connect under load: {} commits before, {} during the backup ({:.0} ms, \
         the command's process included); longest commit during it {:.1} ms; {}",
        before.len(),
        during.len(),
        (ended - began).as_secs_f64() * 1e3,
        longest.as_secs_f64() * 1e3,
        out.lines().nth(1).unwrap_or_default()
    );
    assert!(
        !before.is_empty() && !during.is_empty(),
        "commits went on during the backup"
    );
    assert!(
        longest < Duration::from_secs(3),
        "a commit stalled {longest:?}"
    );

    // A user who is not an admin may not take one.
    let ana = server.session("ana");
    let e = ana
        .backup(server.dir.path().join("b2").to_str().unwrap())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    let restored = server.dir.path().join("restored");
    let (code, out, err) = raiz(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--root",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for t in ["orders", "lines", "tally"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(t) && l.contains(" ok ")),
            "{t} checked clean: {out}"
        );
    }
    assert!(out.contains("new epoch"), "{out}");
    assert!(restored.join("raiz.users").exists(), "the users come along");
    verify(&restored, &before);
    // A second restore into the same place is refused.
    let (code, _, err) = raiz(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--root",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn an_embedded_backup_needs_the_rootpath_free_and_restores_with_a_new_epoch() {
    let server = Server::start(&[]);
    let admin = server.session("admin");
    setup(&admin);
    let mut t = admin.open_table("tally").unwrap();
    t.update(1, &[Value::Int64(0), Value::Int64(42)]).unwrap();
    drop(t);
    drop(admin);
    let root = server.root();
    let b = server.dir.path().join("b");
    let (code, _, err) = raiz(&[
        "backup",
        "--root",
        root.to_str().unwrap(),
        "--to",
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--connect"), "the message says how: {err}");
    let (status, dir) = server.terminate();
    assert!(status.success());
    let epoch = Database::open(dir.path().join("root"))
        .unwrap()
        .feed()
        .epoch();

    let (code, out, err) = raiz(&[
        "backup",
        "--root",
        dir.path().join("root").to_str().unwrap(),
        "--to",
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 tables"), "{out}");
    let r = dir.path().join("r");
    let (code, out, err) = raiz(&[
        "restore",
        "--from",
        b.to_str().unwrap(),
        "--root",
        r.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let db = Database::open(&r).unwrap();
    assert_ne!(
        db.feed().epoch(),
        epoch,
        "a restored rootpath has a new epoch"
    );
    assert_eq!(rows(&db, "tally")[0], vec![0, 42]);
    drop(db);
    let (code, out, _) = raiz(&["check", "--root", r.to_str().unwrap(), "orders"]);
    assert_eq!(code, 0, "{out}");

    // Not a backup: exit 3, and the reason.
    let (code, _, err) = raiz(&[
        "restore",
        "--from",
        dir.path().join("root").to_str().unwrap(),
        "--root",
        dir.path().join("r2").to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a raiz backup"), "{err}");
}
