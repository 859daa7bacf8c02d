//! A report running while ISAM sessions commit: it never blocks them, and
//! what it calls consistent is one committed state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
use raiz_sql::{Options, SqlSession, SqlValue};

const ACCOUNTS: i64 = 2_000;
const BALANCE: i64 = 1_000;

fn setup(db: &Database) {
    for name in ["accounts", "ledger"] {
        let schema = Schema::new(vec![
            Field::new("ID", FieldType::Int64),
            Field::new("BALANCE", FieldType::Numeric { len: 14, dec: 2 }),
        ]);
        db.create_table(name, &schema, TableOptions::default())
            .unwrap();
        let s = db.session();
        let mut t = s.open_table(name).unwrap();
        t.create_index(&IndexDef::new("id", vec![Segment::field("ID")]).unique())
            .unwrap();
        s.begin().unwrap();
        for id in 0..ACCOUNTS {
            let b = if name == "accounts" { BALANCE } else { 0 };
            t.append(&[
                Value::Int64(id),
                Value::Numeric(raiz_engine::Decimal::new(i128::from(b) * 100, 2)),
            ])
            .unwrap();
        }
        s.commit().unwrap();
    }
}

/// Moves money between accounts, and mirrors each move in `ledger`, in one
/// transaction per move: the sum of `accounts` and the sum of `ledger`
/// (which starts at zero) together always hold ACCOUNTS × BALANCE, and
/// `accounts` alone always does too.
fn transfer(db: &Database, stop: &AtomicBool, done: &AtomicU64, seed: u64) {
    let s = db.session();
    let mut acc = s.open_table("accounts").unwrap();
    let mut led = s.open_table("ledger").unwrap();
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while !stop.load(Ordering::Relaxed) {
        let (a, b) = (
            (next() % ACCOUNTS as u64) + 1,
            (next() % ACCOUNTS as u64) + 1,
        );
        if a == b {
            continue;
        }
        let amount = i128::from((next() % 5000) as i64);
        let r = s.transaction(raiz_engine::db::Retry::default(), |_| {
            for (t, sign) in [(&mut acc, -1), (&mut led, 1)] {
                let get = |r: &raiz_engine::Record| match &r.values()[1] {
                    Value::Numeric(d) => d.mantissa(),
                    _ => unreachable!(),
                };
                let va = get(&t.rlock(a)?) + sign * amount;
                let vb = get(&t.rlock(b)?) - sign * amount;
                t.update_fields(
                    a,
                    &[("BALANCE", Value::Numeric(raiz_engine::Decimal::new(va, 2)))],
                )?;
                t.update_fields(
                    b,
                    &[("BALANCE", Value::Numeric(raiz_engine::Decimal::new(vb, 2)))],
                )?;
            }
            Ok(())
        });
        match r {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            // Retries used up on contended records: the money stays put.
            Err(raiz_engine::Error::Deadlock { .. })
            | Err(raiz_engine::Error::LockTimeout { .. })
            | Err(raiz_engine::Error::LockConflict { .. }) => {}
            Err(e) => panic!("transfer: {e}"),
        }
    }
}

/// A sum as a number, to the cent (a sum of REALs carries float noise).
fn num(v: &SqlValue) -> f64 {
    match v {
        SqlValue::Integer(i) => *i as f64,
        SqlValue::Real(f) => (f * 100.0).round() / 100.0,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn reports_see_one_committed_state_and_never_block_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    setup(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let (db, stop, done) = (db.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || transfer(&db, &stop, &done, 0x9E37_79B9 + i))
        })
        .collect();
    let mut sql = SqlSession::open(&db, raiz_sql::everything(), Options::default()).unwrap();
    let total = (ACCOUNTS * BALANCE) as f64;
    let (mut consistent, mut runs, mut moved_during) = (0, 0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) || consistent < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no consistent run in a minute"
        );
        let before = done.load(Ordering::Relaxed);
        let r = sql
            .query(
                "SELECT (SELECT sum(balance) FROM accounts),
                        (SELECT sum(balance) FROM accounts) + (SELECT sum(balance) FROM ledger),
                        (SELECT count(*) FROM accounts a JOIN ledger l ON l.id = a.id
                          WHERE round(a.balance + l.balance, 2) <> 1000)",
                &[],
            )
            .unwrap();
        runs += 1;
        if done.load(Ordering::Relaxed) > before {
            moved_during += 1;
        }
        if r.consistent {
            consistent += 1;
            // One committed state: every invariant holds exactly.
            assert_eq!(num(&r.rows[0][0]), total, "{r:?}");
            assert_eq!(num(&r.rows[0][1]), total, "{r:?}");
            assert_eq!(r.rows[0][2], SqlValue::Integer(0), "{r:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    eprintln!(
        "{runs} reports, {consistent} consistent, writers committed during {moved_during}; {} transfers",
        done.load(Ordering::Relaxed)
    );
    assert!(done.load(Ordering::Relaxed) > 100, "writers were held up");
    assert!(
        moved_during > 0,
        "no commit ever happened while a report ran"
    );
    // At rest, the state is the invariant's.
    let r = sql.query("SELECT sum(balance) FROM accounts", &[]).unwrap();
    assert!(r.consistent);
    assert_eq!(num(&r.rows[0][0]), total);
}
