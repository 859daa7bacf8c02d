//! Real processes killed while several threads commit: a child process runs
//! writer threads that open and drop their table handles every transaction,
//! append in concurrent transactions (so recnos reserved by one transaction sit
//! below recnos another commits), replace memos, delete their oldest row
//! (freeing its memo for later appends), roll back to savepoints and
//! roll whole transactions back, while checkpoints run at a random log size and
//! the buffer pool is small and random. The parent SIGKILLs it at a random
//! moment — sometimes also killing the next process during its recovery — then
//! reopens the rootpath and checks, against a model of what each thread was
//! told:
//! - every acknowledged commit is there, and at most the one in flight more;
//! - every transaction is whole: a thread's head record and its rows agree,
//!   the last `WINDOW` rows of each thread live and every older one deleted;
//! - a rolled-back append is a deleted blank record;
//! - `check` passes on every table, before and after a new write.
//!
//! Every `PACK_EVERY` cycles the parent packs the rows table between kills,
//! so the next recoveries run over packed files. With the deletes this keeps
//! the data bounded: a cycle costs the same at the thousandth as at the
//! first. `RAIZ_CRASH_ITERS` sets the number of kill cycles (default 6).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Field, FieldType, LogOptions, Memo, Options, RecordFormat, Schema, Session, Table,
    TableOptions, Value,
};

const ROOT: &str = "RAIZ_TEST_KILL_ROOT";
const SETTINGS: &str = "RAIZ_TEST_KILL_SETTINGS";
const THREADS: i64 = 4;
/// Rows each thread keeps: its transaction `n` deletes its row `n - WINDOW`.
const WINDOW: i64 = 48;
/// Kill cycles between two packs of the rows table.
const PACK_EVERY: u64 = 10;

fn iters() -> u64 {
    std::env::var("RAIZ_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// The memo a row `(t, n)` is appended with.
fn row_memo(t: i64, n: i64) -> Vec<u8> {
    vec![(t * 31 + n) as u8; ((t * 977 + n * 131) % 5000) as usize]
}

/// The memo a row gets when a later transaction `by` replaces it.
fn rewritten_memo(t: i64, by: i64) -> Vec<u8> {
    vec![(t + by * 7) as u8; ((by * 389) % 7000) as usize + 1]
}

/// The memo of thread `t`'s head record after its transaction `n`.
fn head_memo(t: i64, n: i64) -> Vec<u8> {
    vec![n as u8; ((n * 613 + t) % 9000) as usize]
}

/// Transaction `by` of a thread also rewrites its row `by - 3` when `by` is a
/// multiple of 7.
fn rewrites(by: i64) -> Option<i64> {
    (by % 7 == 0 && by > 3).then_some(by - 3)
}

/// What row `(t, k)` holds once the thread committed `n` transactions.
fn expected_row_memo(t: i64, k: i64, n: i64) -> Vec<u8> {
    let by = k + 3;
    if by <= n && rewrites(by) == Some(k) {
        rewritten_memo(t, by)
    } else {
        row_memo(t, k)
    }
}

fn open(root: &Path, checkpoint_bytes: u64, pool: usize) -> Database {
    let log = LogOptions {
        checkpoint_bytes,
        ..LogOptions::default()
    };
    Database::open_with(root, Options::default().log(log).pool_bytes(pool)).unwrap()
}

fn setup(db: &Database) {
    let heads = Schema::new(vec![
        Field::new("T", FieldType::Int64),
        Field::new("N", FieldType::Int64),
        Field::new("M", FieldType::Memo),
    ]);
    db.create_table("heads", &heads, TableOptions::default().page_size(4096))
        .unwrap();
    let rows = Schema::new(vec![
        Field::new("T", FieldType::Int64),
        Field::new("N", FieldType::Int64),
        Field::new("TXT", FieldType::Char(40)),
        Field::new("M", FieldType::Memo),
    ]);
    db.create_table(
        "rows",
        &rows,
        TableOptions::default()
            .page_size(4096)
            .format(RecordFormat::Variable),
    )
    .unwrap();
    let s = db.session();
    let mut h = s.open_table("heads").unwrap();
    h.create_index(&IndexDef::new("by_t", vec![Segment::field("T")]).unique())
        .unwrap();
    let mut r = s.open_table("rows").unwrap();
    r.create_index(
        &IndexDef::new("by_tn", vec![Segment::field("T"), Segment::field("N")]).unique(),
    )
    .unwrap();
    r.create_index(&IndexDef::new("by_n", vec![Segment::field("N")]))
        .unwrap();
    s.begin().unwrap();
    for t in 0..THREADS {
        h.append(&[Value::Int64(t), Value::Int64(0), Value::Memo(Memo::Empty)])
            .unwrap();
    }
    s.commit().unwrap();
}

/// The recno of thread `t`'s row `n`, through the unique index.
fn find_row(rows: &mut Table, t: i64, n: i64) -> raiz_engine::Result<u64> {
    rows.set_order(Some("by_tn"))?;
    if rows.seek(&[Value::Int64(t), Value::Int64(n)])? {
        Ok(rows.recno())
    } else {
        Err(raiz_engine::Error::Transaction(format!(
            "row ({t}, {n}) not found"
        )))
    }
}

/// Thread `t`'s transaction `n`. With `may_roll_back`, some are rolled back
/// on purpose: then it returns Ok(false) and the same `n` is tried again.
fn transaction(s: &Session, t: i64, n: i64, may_roll_back: bool) -> raiz_engine::Result<bool> {
    // Fresh handles every time: the tables close and reopen under the others.
    let mut heads = s.open_table("heads")?;
    let mut rows = s.open_table("rows")?;
    s.begin()?;
    let r = (|| {
        rows.append(&[
            Value::Int64(t),
            Value::Int64(n),
            Value::from(format!("row {t}/{n}").as_str()),
            Value::Memo(Memo::Data(row_memo(t, n))),
        ])?;
        if n % 5 == 0 {
            let sp = s.savepoint()?;
            rows.append(&[
                Value::Int64(t),
                Value::Int64(-n),
                Value::from("undone"),
                Value::Memo(Memo::Data(vec![1; 3000])),
            ])?;
            s.rollback_to(sp)?;
        }
        if let Some(k) = rewrites(n) {
            let r = find_row(&mut rows, t, k)?;
            let mut v = rows.read(r)?.into_values();
            v[3] = Value::Memo(Memo::Data(rewritten_memo(t, n)));
            rows.update(r, &v)?;
        }
        if n > WINDOW {
            let r = find_row(&mut rows, t, n - WINDOW)?;
            rows.delete(r)?;
        }
        let head = t as u64 + 1;
        heads.update(
            head,
            &[
                Value::Int64(t),
                Value::Int64(n),
                Value::Memo(Memo::Data(head_memo(t, n))),
            ],
        )?;
        Ok(())
    })();
    if let Err(e) = r {
        let _ = s.rollback();
        return Err(e);
    }
    if may_roll_back && n % 11 == 0 {
        s.rollback()?;
        return Ok(false);
    }
    s.commit()?;
    Ok(true)
}

/// Runs only inside a child spawned by the test below.
#[test]
#[ignore = "entry point of the child process the kill test spawns"]
fn kill_child_entry() {
    let Ok(root) = std::env::var(ROOT) else {
        return;
    };
    let settings = std::env::var(SETTINGS).unwrap();
    let mut it = settings.split(',').map(|v| v.parse::<u64>().unwrap());
    let (checkpoint_bytes, pool, recover_only) =
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let db = open(Path::new(&root), checkpoint_bytes, pool as usize);
    if recover_only == 1 {
        // Recovery ran in `open`; the parent may have killed us during it.
        println!("recovered");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    if !db.table_exists("heads").unwrap() {
        setup(&db);
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let (db, out) = (db.clone(), out.clone());
        threads.push(std::thread::spawn(move || {
            let s = db.session();
            let start = {
                let h = s.open_table("heads").unwrap();
                h.read(t as u64 + 1)
                    .unwrap()
                    .get("N")
                    .unwrap()
                    .as_i64()
                    .unwrap()
            };
            let mut n = start + 1;
            loop {
                let done = transaction(&s, t, n, true)
                    .and_then(|done| {
                        // Rolled back on purpose: the next try commits it.
                        if done {
                            Ok(true)
                        } else {
                            transaction(&s, t, n, false)
                        }
                    })
                    .unwrap_or_else(|e| panic!("thread {t}, transaction {n}: {e}"));
                assert!(done);
                let mut o = out.lock().unwrap();
                writeln!(o, "ack {t} {n}").unwrap();
                o.flush().unwrap();
                n += 1;
            }
        }));
    }
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "started").unwrap();
        o.flush().unwrap();
    }
    // Checkpoints now and then, besides those the log size triggers.
    loop {
        std::thread::sleep(Duration::from_millis(40));
        db.checkpoint().unwrap();
    }
}

fn child(root: &Path, settings: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROOT, root)
        .env(SETTINGS, settings)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks the rootpath against what each thread was told (`before`: what the
/// last check found); returns each thread's committed count.
fn verify(
    db: &Database,
    before: &HashMap<i64, i64>,
    acked: &HashMap<i64, i64>,
    iter: u64,
) -> HashMap<i64, i64> {
    let s = db.session();
    let heads = s.open_table("heads").unwrap();
    let mut rows = s.open_table("rows").unwrap();
    let mut committed = HashMap::new();
    for t in 0..THREADS {
        let head = heads.read(t as u64 + 1).unwrap();
        let n = head.get("N").unwrap().as_i64().unwrap();
        let a = acked.get(&t).copied().unwrap_or(0);
        assert!(
            n == a || n == a + 1,
            "iteration {iter}: thread {t} has {n} transactions, {a} were acknowledged"
        );
        assert_eq!(
            heads.read_memo(t as u64 + 1, "M").unwrap(),
            if n == 0 { vec![] } else { head_memo(t, n) },
            "iteration {iter}: memo of thread {t}'s head"
        );
        // The rows deleted since the last check (older ones were checked
        // then; the count below covers them all again).
        let was = before.get(&t).copied().unwrap_or(0);
        for k in (was - WINDOW + 1).max(1)..=n - WINDOW {
            if let Ok(r) = find_row(&mut rows, t, k) {
                assert!(
                    rows.read(r).unwrap().is_deleted(),
                    "iteration {iter}: row ({t}, {k}) is live after {n} transactions"
                );
            }
        }
        for k in (n - WINDOW + 1).max(1)..=n {
            let r = find_row(&mut rows, t, k)
                .unwrap_or_else(|e| panic!("iteration {iter}: thread {t}: {e}"));
            let rec = rows.read(r).unwrap();
            assert!(!rec.is_deleted(), "iteration {iter}: row ({t}, {k})");
            assert_eq!(
                rows.read_memo(r, "M").unwrap(),
                expected_row_memo(t, k, n),
                "iteration {iter}: memo of row ({t}, {k}) after {n} transactions"
            );
        }
        // Nothing of a later transaction: it would be half of one.
        assert!(
            find_row(&mut rows, t, n + 1).is_err(),
            "iteration {iter}: thread {t} has a row of transaction {} but its head says {n}",
            n + 1
        );
        committed.insert(t, n);
    }
    let blank = rows.schema().empty_record();
    let mut live: HashMap<i64, i64> = HashMap::new();
    for rec in rows.snapshot().unwrap() {
        let t = rec.get("T").unwrap().as_i64().unwrap();
        let n = rec.get("N").unwrap().as_i64().unwrap();
        if rec.is_deleted() {
            // A rolled-back append, or a row its thread deleted.
            let deleted_row = (0..THREADS).contains(&t) && n > 0 && n <= committed[&t] - WINDOW;
            assert!(
                deleted_row || rec.values() == &blank[..],
                "iteration {iter}: deleted record {} ({t}, {n}) is neither a rolled-back append nor a deleted row",
                rec.recno()
            );
        } else {
            assert!(
                n > 0,
                "iteration {iter}: a savepoint's undone row is visible"
            );
            *live.entry(t).or_default() += 1;
        }
    }
    for t in 0..THREADS {
        assert_eq!(
            live.get(&t).copied().unwrap_or(0),
            committed[&t].min(WINDOW),
            "iteration {iter}: live rows of thread {t}"
        );
    }
    for t in [&heads, &rows] {
        let report = t.check(10).unwrap();
        assert!(report.is_ok(), "iteration {iter}: {}: {report:?}", t.name());
    }
    committed
}

/// A write after recovery works and leaves every table checking clean.
fn write_after_recovery(db: &Database, iter: u64) {
    let s = db.session();
    let mut rows = s.open_table("rows").unwrap();
    s.begin().unwrap();
    rows.append(&[
        Value::Int64(1000 + iter as i64),
        Value::Int64(1),
        Value::from("probe"),
        Value::Memo(Memo::Data(vec![7; 4000])),
    ])
    .unwrap();
    s.commit().unwrap();
    for name in ["heads", "rows"] {
        let report = s.open_table(name).unwrap().check(10).unwrap();
        assert!(
            report.is_ok(),
            "iteration {iter}: after a write, {name}: {report:?}"
        );
    }
}

#[test]
fn killed_concurrent_writers_lose_no_acknowledged_commit_and_leave_every_table_checking_clean() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("RAIZ_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c0ff_ee00_0001u64);
    println!("seed {seed} (RAIZ_CRASH_SEED replays)");
    let mut rng = Rng(seed);
    let mut committed: HashMap<i64, i64> = HashMap::new();
    let mut kills_in_recovery = 0;
    for iter in 0..iters() {
        let checkpoint_bytes = 32 * 1024 + rng.next() % (4 << 20);
        let pool = (64 << 10) + (rng.next() % (4 << 20)) as usize;
        let mut c = child(dir.path(), &format!("{checkpoint_bytes},{pool},0"));
        // Each thread's acknowledged count starts from what survived so far.
        let acked = Arc::new(Mutex::new(committed.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let acked = acked.clone();
            let out = c.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let line = line.trim_start_matches("test kill_child_entry ... ");
                    if line == "started" {
                        let _ = tx.send(());
                    } else if let Some(rest) = line.strip_prefix("ack ") {
                        let mut p = rest.split_whitespace().map(|v| v.parse::<i64>().unwrap());
                        let (t, n) = (p.next().unwrap(), p.next().unwrap());
                        let mut a = acked.lock().unwrap();
                        let e = a.entry(t).or_insert(0);
                        *e = (*e).max(n);
                    }
                }
            })
        };
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the child started its writers");
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 400));
        c.kill().unwrap();
        c.wait().unwrap();
        reader.join().unwrap();
        if rng.next().is_multiple_of(3) {
            // Kill the next process while it recovers.
            let mut r = child(dir.path(), &format!("{checkpoint_bytes},{pool},1"));
            std::thread::sleep(Duration::from_millis(rng.next() % 40));
            r.kill().unwrap();
            r.wait().unwrap();
            kills_in_recovery += 1;
        }
        let started = Instant::now();
        let db = open(dir.path(), 1 << 30, 8 << 20);
        let acked = acked.lock().unwrap().clone();
        committed = verify(&db, &committed, &acked, iter);
        write_after_recovery(&db, iter);
        if iter % PACK_EVERY == PACK_EVERY - 1 {
            let s = db.session();
            let mut rows = s.open_table("rows").unwrap();
            rows.pack().unwrap();
            let report = rows.check(10).unwrap();
            assert!(report.is_ok(), "iteration {iter}: after pack: {report:?}");
        }
        drop(db);
        if iter % 50 == 0 {
            println!(
                "iteration {iter}: {:?} committed per thread, verified in {:?}",
                committed,
                started.elapsed()
            );
        }
    }
    println!("{kills_in_recovery} kills during recovery");
    assert!(
        committed.values().sum::<i64>() > 0,
        "the children committed something"
    );
}
