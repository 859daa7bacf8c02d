//! Many client threads run random operations against a real server; the same
//! sequences run embedded must give exactly the same results — records,
//! positions, counts and error kinds — read-ahead and all.

use std::fmt::Debug;

use raiz_client::{BatchAction, BatchRequest, Connection, Session};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Memo, Schema, TableOptions, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::Server;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(6)),
        Field::new("NAME", FieldType::Char(12)),
        Field::new("QTY", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ])
}

pub fn create(s: &Session, name: &str) {
    s.create_table(name, &schema(), TableOptions::default())
        .unwrap();
    let mut t = s.open_table(name).unwrap();
    t.create_index(&IndexDef::new("code", vec![Segment::field("CODE")]).unique())
        .unwrap();
    t.create_index(&IndexDef::new(
        "name",
        vec![Segment::field("NAME").upper(), Segment::field("QTY")],
    ))
    .unwrap();
    t.close().unwrap();
}

fn show<T: Debug>(r: raiz_client::Result<T>) -> String {
    match r {
        Ok(v) => without_blob_ids(format!("{v:?}")),
        Err(e) => format!("err:{:?}", e.kind()),
    }
}

/// A stored memo's reference names a place in one database's memo file:
/// two databases holding the same memo (a server and a cache node's copy)
/// may store it elsewhere. Compare lengths only.
fn without_blob_ids(s: String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("blob: ") {
        out.push_str(&rest[..i]);
        rest = &rest[i + 6..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest = rest[digits..].trim_start_matches(", ");
    }
    out.push_str(rest);
    out
}

fn code(rng: &mut StdRng) -> Value {
    Value::Char(format!("C{:03}", rng.random_range(0..120)))
}

fn name(rng: &mut StdRng) -> Value {
    const NAMES: [&str; 6] = ["ana", "Bia", "caio", "DORA", "edu", "fabi"];
    Value::Char(NAMES[rng.random_range(0..NAMES.len())].to_owned())
}

fn row(rng: &mut StdRng) -> Vec<Value> {
    let memo = if rng.random_bool(0.3) {
        Memo::Data(vec![b'm'; rng.random_range(1..3000)])
    } else {
        Memo::Empty
    };
    vec![
        code(rng),
        name(rng),
        Value::Int64(rng.random_range(-50..50)),
        Value::Memo(memo),
    ]
}

/// Where the handle is, and the record it reads there (the phantom's blank
/// record at eof included).
fn here(t: &raiz_client::Table) -> String {
    let rec = show(
        t.record()
            .map(|r| (r.recno(), r.is_deleted(), r.into_values())),
    );
    format!(
        "@{} bof={} eof={} found={} on={} {rec}",
        t.recno(),
        t.bof(),
        t.eof(),
        t.found(),
        t.on_record()
    )
}

/// Runs `n` random operations on `table`; returns what each one gave.
pub fn run_ops(s: &Session, table: &str, seed: u64, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = s.open_table(table).unwrap();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let count = t.record_count().unwrap();
        let recno = rng.random_range(1..=count + 1);
        let op = rng.random_range(0..28);
        let r = match op {
            0..=3 => show(t.append(&row(&mut rng))),
            4 => {
                let mut v = row(&mut rng);
                if rng.random_bool(0.5) {
                    // Keep the stored memo.
                    if let Ok(old) = t.read(recno) {
                        v[3] = old.values()[3].clone();
                    }
                }
                show(t.update(recno, &v))
            }
            5 => show(t.delete(recno)),
            6 => show(t.recall(recno)),
            7 => show(t.read(recno).map(|r| (r.is_deleted(), r.into_values()))),
            8 => show(t.read_memo(recno, "NOTE").map(|m| m.len())),
            9 => {
                let o = [None, Some("code"), Some("name")][rng.random_range(0..3)];
                format!("{} {}", show(t.set_order(o)), here(&t))
            }
            10 | 11 => {
                let mut steps = vec![show(t.first())];
                for _ in 0..rng.random_range(0..40) {
                    steps.push(format!("{} {}", show(t.next()), here(&t)));
                }
                steps.join(" | ")
            }
            12 => {
                let mut steps = vec![show(t.last())];
                for _ in 0..rng.random_range(0..25) {
                    steps.push(format!("{} {}", show(t.prev()), here(&t)));
                }
                steps.join(" | ")
            }
            13 => {
                let k = match t.order() {
                    Some("name") => vec![name(&mut rng)],
                    _ => vec![code(&mut rng)],
                };
                let mut steps = vec![format!("{} {}", show(t.seek(&k)), here(&t))];
                for _ in 0..rng.random_range(0..6) {
                    steps.push(format!("{} {}", show(t.next()), here(&t)));
                }
                steps.join(" | ")
            }
            14 => {
                let k = vec![Value::Char(
                    ["b", "D", "e", "z"][rng.random_range(0..4)].into(),
                )];
                let mut steps = vec![format!("{} {}", show(t.seek_soft(&k)), here(&t))];
                for _ in 0..rng.random_range(0..4) {
                    steps.push(format!("{} {}", show(t.prev()), here(&t)));
                }
                steps.join(" | ")
            }
            15 => format!("{} {}", show(t.skip(rng.random_range(-6..7))), here(&t)),
            16 => format!("{} {}", show(t.goto(recno)), here(&t)),
            17 => show(t.count_range(Some(&[name(&mut rng)]), None)),
            18 => show(t.range(None, Some(&[name(&mut rng)])).and_then(|it| {
                it.map(|r| r.map(|r| r.recno()))
                    .collect::<raiz_client::Result<Vec<_>>>()
            })),
            19 => match rng.random_range(0..4) {
                0 => show(s.begin()),
                1 => show(s.commit()),
                2 => show(s.rollback()),
                _ => show(s.savepoint().and_then(|sp| {
                    let mut t2 = s.open_table(table)?;
                    t2.append(&[
                        Value::Char("SAVEPT".into()),
                        Value::Char("x".into()),
                        Value::Int64(0),
                        Value::Memo(Memo::Empty),
                    ])?;
                    s.rollback_to(sp)
                })),
            },
            20 => {
                let req = BatchRequest::prefix(
                    vec![name(&mut rng)],
                    match rng.random_range(0..3) {
                        0 => BatchAction::Read { lock_ms: None },
                        1 => BatchAction::Update(vec![(
                            "QTY".into(),
                            Value::Int64(rng.random_range(0..9)),
                        )]),
                        _ => BatchAction::Delete,
                    },
                );
                show(t.batch(&req).map(|o| {
                    (
                        o.count,
                        o.records.iter().map(|r| r.recno()).collect::<Vec<_>>(),
                    )
                }))
            }
            21 => show(s.set_hide_deleted(rng.random_bool(0.5))),
            22 => format!(
                "{} kc={} kn={}",
                here(&t),
                show(t.key_count()),
                show(t.key_no())
            ),
            24 => {
                let k = vec![Value::Char(
                    ["b", "D", "e", "z", "C05"][rng.random_range(0..5)].into(),
                )];
                let mut steps = vec![format!("{} {}", show(t.seek_last_soft(&k)), here(&t))];
                for _ in 0..rng.random_range(0..4) {
                    steps.push(format!("{} {}", show(t.next()), here(&t)));
                }
                steps.join(" | ")
            }
            25 => {
                let bound = |rng: &mut StdRng| match t.order() {
                    Some("name") => rng.random_bool(0.7).then(|| vec![name(rng)]),
                    _ => rng.random_bool(0.7).then(|| vec![code(rng)]),
                };
                let (lo, hi) = (bound(&mut rng), bound(&mut rng));
                format!(
                    "{} {}",
                    show(t.set_scope(lo.as_deref(), hi.as_deref())),
                    show(t.key_count())
                )
            }
            26 => show(t.clear_scope()),
            27 => {
                let out = [0, count + 1, count + 9][rng.random_range(0..3)];
                let first = format!("{} {}", show(t.goto(out)), here(&t));
                let n = [-2, -1, 1, 2][rng.random_range(0..4)];
                format!("{first} | {} {}", show(t.skip(n)), here(&t))
            }
            _ => show(
                t.lock(recno, std::time::Duration::ZERO)
                    .and_then(|_| t.unlock(recno)),
            ),
        };
        out.push(format!("{i}/{op}: {r}"));
    }
    if s.in_transaction().unwrap() {
        out.push(show(s.commit()));
    }
    out.push(show(t.snapshot().map(|v| {
        v.into_iter()
            .map(|r| (r.recno(), r.is_deleted(), r.into_values()))
            .collect::<Vec<_>>()
    })));
    out.push(show(t.check(10).map(|c| c.problems)));
    out
}

#[test]
fn remote_results_match_embedded_ones() {
    let threads = 8;
    let ops: usize = std::env::var("RAIZ_SERVER_MODEL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250);
    let seed: u64 = std::env::var("RAIZ_SERVER_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = Server::start(&[]);
    let remote: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let s = server.session("ana");
                    let name = format!("model{i}");
                    create(&s, &name);
                    run_ops(&s, &name, seed + i, ops)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::connect(&format!("file:{}", dir.path().display())).unwrap();
    for (i, remote) in remote.iter().enumerate() {
        let s = conn.session().unwrap();
        let name = format!("model{i}");
        create(&s, &name);
        let local = run_ops(&s, &name, seed + i as u64, ops);
        assert_eq!(remote.len(), local.len());
        for (r, l) in remote.iter().zip(&local) {
            if r != l {
                let k = remote.iter().position(|x| x == r).unwrap();
                for j in k.saturating_sub(8)..=k {
                    eprintln!("R {}\nL {}", remote[j], local[j]);
                }
            }
            assert_eq!(r, l, "thread {i}: remote and embedded differ");
        }
    }
    let s = server.session("ana");
    assert_eq!(s.list_tables().unwrap().len(), threads as usize);
}
