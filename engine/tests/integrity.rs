//! Data-integrity regressions: each test pins one way acknowledged or flushed data
//! could be lost, or damage go unnoticed, and asserts the documented behaviour.
//!
//! - Closing and reopening a table from several threads at once loses no
//!   acknowledged commit (one open table per process, whatever the timing).
//! - After a killed process, the blob file's free list hands out only free pages:
//!   appends that need new blob pages keep working, and `check` passes.
//! - A recno reserved by a transaction that never committed, below one that did,
//!   comes back after a crash as a deleted blank record, as a rollback makes it —
//!   whether the hole is in the log or already in the checkpointed files.
//! - An unlogged variable-format table opens after a kill or a power cut, whatever
//!   order its pages reached the disk in: records read back a value once written
//!   to them, and the ones that cannot be read become deleted blank records.
//! - `check` reads memos: a damaged memo is reported with its record and field,
//!   and `rebuild` empties it.
//! - The fault-injecting storage counts as injected only faults that refused
//!   something.
//!
//! A crash of an embedded database is simulated on the fault-injecting storage by
//! [`kill`]: the disk image is taken first, and the `Database` is then forgotten so
//! none of its closing work runs.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage};
use raiz_engine::{
    Database, Durability, Error, Field, FieldType, Memo, RecordFormat, Schema, Table, TableOptions,
    Value,
};

/// Simulates the death of the process owning `db` at this instant: returns what
/// the disk holds afterwards (`CrashMode::KeepAll`: a killed process, whose
/// writes the OS still flushes; `DropUnsynced`/`Random`: a power cut), then
/// drops `db`: its final checkpoint and the close of its tables write to the
/// old storage only, never to the returned image. Sessions and handles of `db`
/// may still be dropped afterwards, for the same reason.
fn kill(storage: &FaultStorage, db: Database, mode: CrashMode) -> FaultStorage {
    let image = storage.crash(mode);
    drop(db);
    image
}

/// Asserts `check` finds nothing wrong with `t`.
fn assert_checks(t: &Table, what: &str) {
    let report = t.check(20).unwrap();
    assert!(report.is_ok(), "{what}: check found {:?}", report.problems);
}

fn int(t: &Table, recno: u64, field: &str) -> i64 {
    t.read(recno)
        .unwrap_or_else(|e| panic!("record {recno}: {e}"))
        .get(field)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("record {recno}: {field} is not an Int64"))
}

// ---- concurrent close and reopen ----

const THREADS: u64 = 8;
const INCREMENTS_PER_THREAD: u64 = 250;

/// One thread's increments of record 1's counter. The read-modify-write is made
/// safe by a named lock taken *before* the table is opened, so a waiting thread
/// holds no handle: each commit is followed by the table's last handle going
/// (closing it) while the next thread opens it. Returns the acknowledged commits.
fn increment_with_fresh_handles(db: &Database, n: u64) -> u64 {
    let s = db.session();
    s.set_lock_timeout(Duration::from_secs(10));
    let mut acked = 0;
    while acked < n {
        s.begin().unwrap();
        let r = s.lock_name("ctr").and_then(|_| {
            let mut t = s.open_table("ctr")?;
            let v = t.read(1)?.get("N").and_then(Value::as_i64).unwrap();
            t.update(
                1,
                &[
                    Value::Int64(1),
                    Value::Int64(v + 1),
                    Value::Memo(Memo::Empty),
                ],
            )?;
            s.commit()
            // `t`, the table's last handle, goes now: the table is closed while
            // the next thread, granted the lock by this commit, opens it.
        });
        match r {
            Ok(()) => acked += 1,
            Err(
                Error::LockConflict { .. } | Error::LockTimeout { .. } | Error::Deadlock { .. },
            ) => {
                if s.in_transaction() {
                    s.rollback().unwrap();
                }
            }
            Err(e) => panic!("an increment failed: {e}"),
        }
    }
    acked
}

/// The table has a memo field: closing it then syncs the blob file before the
/// data pages are written, which leaves a reopening thread plenty of time to read
/// what the closing one has not written yet.
#[test]
fn concurrent_close_and_reopen_of_a_table_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.create_table(
        "ctr",
        &Schema::new(vec![
            Field::new("ID", FieldType::Int64),
            Field::new("N", FieldType::Int64),
            Field::new("NOTES", FieldType::Memo),
        ]),
        TableOptions::default().page_size(4096),
    )
    .unwrap();
    db.session()
        .open_table("ctr")
        .unwrap()
        .append(&[Value::Int64(1), Value::Int64(0), Value::Memo(Memo::Empty)])
        .unwrap();
    let acked = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..THREADS {
            sc.spawn(|| {
                let n = increment_with_fresh_handles(&db, INCREMENTS_PER_THREAD);
                acked.fetch_add(n, Ordering::SeqCst);
            });
        }
    });
    let acked = acked.load(Ordering::SeqCst);
    assert_eq!(acked, THREADS * INCREMENTS_PER_THREAD);
    {
        let t = db.session().open_table("ctr").unwrap();
        assert_eq!(
            int(&t, 1, "N"),
            acked as i64,
            "the counter holds every acknowledged increment"
        );
        assert_checks(&t, "after the run");
    }
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    let t = db.session().open_table("ctr").unwrap();
    assert_eq!(
        int(&t, 1, "N"),
        acked as i64,
        "after reopening, the counter holds every acknowledged increment"
    );
    assert_checks(&t, "after reopening");
}

// ---- the blob free list after recovery ----

fn memo_schema() -> Schema {
    Schema::new(vec![
        Field::new("N", FieldType::Int64),
        Field::new("NAME", FieldType::Char(20)),
        Field::new("NOTES", FieldType::Memo),
    ])
}

/// Memo `version` of record `n`: sizes from a few bytes to several overflow pages.
fn memo_of(n: u64, version: u64) -> Vec<u8> {
    let len = 20 + ((n * 7919 + version * 104_729) % 12_000) as usize;
    (0..len)
        .map(|i| (n as usize * 31 + version as usize * 17 + i) as u8)
        .collect()
}

fn memo_row(n: u64, version: u64) -> Vec<Value> {
    vec![
        Value::Int64(n as i64),
        Value::from(format!("rec {n} v{version}").as_str()),
        Value::Memo(Memo::Data(memo_of(n, version))),
    ]
}

#[derive(Debug, Clone, Copy)]
enum AfterUpdates {
    /// Every handle dropped (the table is closed), then a handle opened again.
    Close,
    /// `Table::flush` on the open table.
    Flush,
}

/// A logged table with memos: appends, a checkpoint, blob-replacing updates,
/// then the table is closed or flushed (which frees the replaced blobs' pages
/// in the blob file), one more commit (it logs the table's blob free list, now
/// holding those pages), and the process is killed. Recovery replays the
/// updates' page images over the freed pages.
fn blob_free_list_run(format: RecordFormat, after: AfterUpdates) {
    let what = format!("{format:?}, then {after:?}");
    let (storage, db) = common::fault_db(256 << 10);
    db.create_table(
        "m",
        &memo_schema(),
        TableOptions::default().page_size(4096).format(format),
    )
    .unwrap();
    let s = db.session();
    let mut t = s.open_table("m").unwrap();
    // version[n - 1]: the memo version record n holds (None: empty).
    let mut version: Vec<Option<u64>> = Vec::new();
    for n in 1..=60 {
        assert_eq!(t.append(&memo_row(n, 0)).unwrap(), n);
        version.push(Some(0));
    }
    db.checkpoint().unwrap();
    for round in 1..=2 {
        for n in (1..=60).filter(|n| (n + round) % 3 != 0) {
            t.update(n, &memo_row(n, round)).unwrap();
            version[n as usize - 1] = Some(round);
        }
    }
    match after {
        AfterUpdates::Close => {
            drop(t);
            t = s.open_table("m").unwrap();
        }
        AfterUpdates::Flush => t.flush().unwrap(),
    }
    let mut last = memo_row(61, 0);
    last[2] = Value::Memo(Memo::Empty);
    assert_eq!(t.append(&last).unwrap(), 61);
    version.push(None);
    let image = kill(&storage, db, CrashMode::KeepAll);
    drop((t, s));

    let db = common::open_on(Arc::new(image), 256 << 10);
    let mut t = db.session().open_table("m").unwrap();
    assert_eq!(t.record_count(), 61, "{what}");
    assert_checks(&t, &format!("{what}, after recovery"));
    // Appends that need new blob pages, many of them.
    for n in 62..=160u64 {
        let r = t
            .append(&memo_row(n, 0))
            .unwrap_or_else(|e| panic!("{what}: append {n} after recovery: {e}"));
        assert_eq!(r, n, "{what}");
        version.push(Some(0));
    }
    assert_checks(&t, &format!("{what}, after appends"));
    for n in 1..=160u64 {
        let got = t
            .read_memo(n, "NOTES")
            .unwrap_or_else(|e| panic!("{what}: memo of {n}: {e}"));
        let want = version[n as usize - 1].map_or_else(Vec::new, |v| memo_of(n, v));
        assert!(
            got == want,
            "{what}: memo of record {n} is not version {:?}",
            version[n as usize - 1]
        );
    }
}

#[test]
fn blob_pages_freed_before_a_kill_are_not_handed_out_twice_after_recovery() {
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        for after in [AfterUpdates::Close, AfterUpdates::Flush] {
            blob_free_list_run(format, after);
        }
    }
}

// ---- recno holes after a crash ----

fn hole_schema() -> Schema {
    Schema::new(vec![
        Field::new("CODE", FieldType::Char(8)),
        Field::new("N", FieldType::Int64),
        Field::new("NOTES", FieldType::Memo),
    ])
}

fn hole_row(i: i64) -> Vec<Value> {
    vec![
        Value::from(format!("R{i}").as_str()),
        Value::Int64(i),
        Value::Memo(Memo::Data(vec![i as u8; 300])),
    ]
}

fn hole_run(mode: CrashMode, checkpoint_before_crash: bool) {
    let what = format!("{mode:?}, checkpoint before the crash: {checkpoint_before_crash}");
    let (storage, db) = common::fault_db(1 << 20);
    db.create_table("t", &hole_schema(), TableOptions::default().page_size(4096))
        .unwrap();
    let b = db.session();
    let mut tb = b.open_table("t").unwrap();
    for i in 1..=5 {
        tb.append(&hole_row(i)).unwrap();
    }
    let a = db.session();
    let mut ta = a.open_table("t").unwrap();
    a.begin().unwrap();
    let hole = ta.append(&hole_row(100)).unwrap();
    assert_eq!(hole, 6);
    let committed = tb.append(&hole_row(7)).unwrap();
    assert_eq!(committed, hole + 1);
    if checkpoint_before_crash {
        db.checkpoint().unwrap();
    }
    let image = kill(&storage, db, mode);
    drop((ta, tb, a, b));

    let db = common::open_on(Arc::new(image), 1 << 20);
    let mut t = db.session().open_table("t").unwrap();
    assert_eq!(t.record_count(), committed, "{what}");
    let rec = t
        .read(hole)
        .unwrap_or_else(|e| panic!("{what}: the uncommitted recno {hole}: {e}"));
    assert!(rec.is_deleted(), "{what}: recno {hole} is a deleted record");
    assert_eq!(
        rec.values(),
        &hole_schema().empty_record()[..],
        "{what}: recno {hole} is blank"
    );
    assert_eq!(int(&t, committed, "N"), 7, "{what}");
    assert_eq!(t.read_memo(committed, "NOTES").unwrap(), vec![7u8; 300]);
    assert_checks(&t, &what);
    assert_eq!(t.append(&hole_row(8)).unwrap(), committed + 1, "{what}");
    assert_checks(&t, &what);
}

/// Session A reserves recno N in an open transaction; session B commits N + 1;
/// the process dies (or the power goes) — with the hole only in the log, or,
/// after a checkpoint, in the table's files.
#[test]
fn an_uncommitted_recno_below_a_committed_one_is_a_deleted_blank_after_a_crash() {
    for checkpoint_before_crash in [false, true] {
        for mode in [CrashMode::DropUnsynced, CrashMode::KeepAll] {
            hole_run(mode, checkpoint_before_crash);
        }
    }
}

// ---- an unlogged variable-format table after a kill ----

/// A tiny xorshift generator: schedules are reproducible from the printed seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn var_schema() -> Schema {
    Schema::new(vec![
        Field::new("N", FieldType::Int64),
        Field::new("VER", FieldType::Int64),
        Field::new("BODY", FieldType::Binary(6000)),
        Field::new("NOTES", FieldType::Memo),
    ])
}

/// One version of a record: its number, the version, and the lengths of its
/// body and memo (their bytes derive from these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    ver: i64,
    body: usize,
    memo: usize,
}

fn var_bytes(recno: u64, ver: i64, salt: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (recno as usize * 131 + ver as usize * 7 + i) as u8 ^ salt)
        .collect()
}

fn var_row(recno: u64, v: Version) -> Vec<Value> {
    vec![
        Value::Int64(recno as i64),
        Value::Int64(v.ver),
        Value::Binary(var_bytes(recno, v.ver, 0x11, v.body)),
        Value::Memo(if v.memo == 0 {
            Memo::Empty
        } else {
            Memo::Data(var_bytes(recno, v.ver, 0x77, v.memo))
        }),
    ]
}

/// Lengths with a wide spread: mostly small, sometimes a record grows a lot.
fn var_version(rng: &mut XorShift, ver: i64) -> Version {
    let body = match rng.below(10) {
        0..=5 => rng.below(60) as usize,
        6..=8 => 200 + rng.below(1500) as usize,
        _ => 3000 + rng.below(3000) as usize,
    };
    let memo = match rng.below(4) {
        0 | 1 => 0,
        2 => 1 + rng.below(500) as usize,
        _ => 2000 + rng.below(9000) as usize,
    };
    Version { ver, body, memo }
}

/// One crash of the workload: when, how, what the disk held after it, and every
/// version written to each record before it.
struct Crash {
    step: u64,
    mode: CrashMode,
    image: FaultStorage,
    history: Vec<Vec<Version>>,
}

const CRASH_MODES: [CrashMode; 5] = [
    CrashMode::KeepAll,
    CrashMode::DropUnsynced,
    CrashMode::Random { seed: 0 },
    CrashMode::Random { seed: 1 },
    CrashMode::Random { seed: 2 },
];

/// Runs a seeded schedule of appends, updates (lengths varying widely) and
/// occasional flushes on an unlogged variable-format table with an index and a
/// 64 KiB pool, so pages reach the disk in eviction order. Every 150 steps the
/// disk is imaged as each crash mode would leave it (as [`kill`] does, several
/// times over); the database is never closed.
fn unlogged_workload(seed: u64) -> Vec<Crash> {
    let (storage, db) = common::fault_db(64 << 10);
    db.create_table(
        "v",
        &var_schema(),
        TableOptions::default()
            .page_size(4096)
            .format(RecordFormat::Variable)
            .durability(Durability::Unlogged),
    )
    .unwrap();
    let s = db.session();
    let mut t = s.open_table("v").unwrap();
    t.create_index(&IndexDef::new("by_n", vec![Segment::field("N")]))
        .unwrap();
    let mut rng = XorShift::new(seed);
    // history[recno - 1]: the versions written to recno, oldest first.
    let mut history: Vec<Vec<Version>> = Vec::new();
    let mut crashes = Vec::new();
    for step in 1..=600u64 {
        let roll = rng.below(100);
        if history.is_empty() || roll < 30 {
            let v = var_version(&mut rng, step as i64);
            let r = t.append(&var_row(history.len() as u64 + 1, v)).unwrap();
            assert_eq!(r, history.len() as u64 + 1, "seed {seed}");
            history.push(vec![v]);
        } else if roll < 97 {
            let r = rng.below(history.len() as u64) + 1;
            let v = var_version(&mut rng, step as i64);
            t.update(r, &var_row(r, v)).unwrap();
            history[r as usize - 1].push(v);
        } else {
            t.flush().unwrap();
        }
        if step % 150 == 0 {
            for mode in CRASH_MODES {
                crashes.push(Crash {
                    step,
                    mode,
                    image: storage.crash(mode),
                    history: history.clone(),
                });
            }
        }
    }
    // The crash images are taken: closing now writes to the old storage only.
    drop(t);
    drop(s);
    drop(db);
    crashes
}

/// What must hold after reopening an unlogged table a crash interrupted; the
/// first thing that does not. Torn pages included: the verification at open
/// turns whatever cannot be read back into deleted blank records.
fn check_unlogged_after_crash(crash: Crash) -> Result<(), String> {
    let history = &crash.history;
    let db = common::open_on(Arc::new(crash.image), 64 << 10);
    let t = match db.session().open_table("v") {
        Ok(t) => t,
        Err(e) => return Err(format!("the table does not open: {e}")),
    };
    let report = t.check(20).map_err(|e| format!("check: {e}"))?;
    if !report.is_ok() {
        return Err(format!("check found {:?}", report.problems));
    }
    if t.record_count() > history.len() as u64 {
        return Err(format!(
            "{} records, {} were appended",
            t.record_count(),
            history.len()
        ));
    }
    let blank = var_schema().empty_record();
    for r in 1..=t.record_count() {
        let rec = match t.read(r) {
            Ok(rec) => rec,
            Err(e) => return Err(format!("record {r}: {e}")),
        };
        if rec.is_deleted() {
            // The workload deletes nothing: this is a record lost in the crash.
            if rec.values() != &blank[..] {
                return Err(format!("deleted record {r} is not blank"));
            }
            continue;
        }
        let ver = rec.get("VER").and_then(Value::as_i64).unwrap_or(-1);
        let Some(v) = history[r as usize - 1].iter().find(|v| v.ver == ver) else {
            return Err(format!(
                "record {r} holds version {ver}, never written to it"
            ));
        };
        let want = var_row(r, *v);
        if rec.values()[..3] != want[..3] {
            return Err(format!("record {r} is not version {ver} as written"));
        }
        let memo = match t.read_memo(r, "NOTES") {
            Ok(m) => m,
            Err(e) => return Err(format!("memo of record {r}: {e}")),
        };
        let want_memo = match &want[3] {
            Value::Memo(Memo::Data(d)) => d.clone(),
            _ => Vec::new(),
        };
        if memo != want_memo {
            return Err(format!("memo of record {r} is not version {ver}'s"));
        }
    }
    Ok(())
}

/// Workload seeds. On failure every (seed, step, mode) that went wrong is
/// listed; `unlogged_workload(seed)` replays one.
const UNLOGGED_SEEDS: std::ops::RangeInclusive<u64> = 1..=6;

#[test]
fn an_unlogged_variable_table_opens_and_checks_after_a_kill_or_power_cut() {
    let mut failures = Vec::new();
    let mut crashes = 0;
    for seed in UNLOGGED_SEEDS {
        for crash in unlogged_workload(seed) {
            crashes += 1;
            let (step, mode) = (crash.step, crash.mode);
            if let Err(e) = check_unlogged_after_crash(crash) {
                failures.push(format!(
                    "workload seed {seed}, crash after step {step}, {mode:?}: {e}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {crashes} crashes went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- check reads memos ----

#[test]
fn check_reports_an_unreadable_memo_and_rebuild_empties_it() {
    let schema = Schema::new(vec![
        Field::new("N", FieldType::Int64),
        Field::new("NOTES", FieldType::Memo),
        Field::new("EXTRA", FieldType::Memo),
    ]);
    let (storage, db) = common::fault_db(1 << 20);
    db.create_table(
        "f",
        &schema,
        TableOptions::default()
            .page_size(4096)
            .format(RecordFormat::Fixed)
            .durability(Durability::Unlogged),
    )
    .unwrap();
    let s = db.session();
    let mut t = s.open_table("f").unwrap();
    // Record 2's NOTES is the only memo: every blob page after the header is its.
    let memo: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    for n in 1..=3i64 {
        let notes = if n == 2 {
            Memo::Data(memo.clone())
        } else {
            Memo::Empty
        };
        t.append(&[
            Value::Int64(n),
            Value::Memo(notes),
            Value::Memo(Memo::Empty),
        ])
        .unwrap();
    }
    assert_eq!(t.read_memo(2, "NOTES").unwrap(), memo);
    assert_checks(&t, "before the damage");
    t.close().unwrap();
    // Damage on the medium in the memo's first page (page 1; page 0 is the header).
    storage
        .corrupt_byte(&db.root().join("f.rzb"), 4096 + 2000)
        .unwrap();
    let mut t = s.open_table("f").unwrap();
    assert!(t.read_memo(2, "NOTES").is_err(), "the memo is damaged");
    let report = t.check(20).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("record 2") && p.contains("NOTES")),
        "check names record 2 and its field NOTES: {:?}",
        report.problems
    );
    let rebuilt = t.rebuild().unwrap();
    assert!(rebuilt.memos_lost >= 1, "{rebuilt:?}");
    assert_eq!(rebuilt.salvaged, 0, "{rebuilt:?}");
    assert_checks(&t, "after rebuild");
    assert_eq!(t.read_memo(2, "NOTES").unwrap(), Vec::<u8>::new());
    for n in 1..=3u64 {
        assert_eq!(int(&t, n, "N"), n as i64);
        assert!(!t.read(n).unwrap().is_deleted());
    }
}

// ---- the fault-injecting storage's count ----

#[test]
fn a_disk_full_trigger_that_refuses_nothing_is_not_counted_as_injected() {
    use raiz_engine::storage::{FaultTrigger, OpenMode, Storage};
    let storage = FaultStorage::new();
    let f = storage
        .open(std::path::Path::new("/f"), OpenMode::CreateNew)
        .unwrap();
    f.write_at(0, &[1u8; 4096]).unwrap();
    // The disk fills at the next operation, an overwrite in place: nothing grows,
    // nothing is refused.
    storage.arm(FaultTrigger::DiskFull, 1);
    f.write_at(0, &[2u8; 4096]).unwrap();
    f.sync().unwrap();
    assert_eq!(storage.injected_faults(), 0, "no operation was refused yet");
    // Growing is refused now: one injected fault.
    let err = f.write_at(4096, &[3u8; 4096]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    assert_eq!(storage.injected_faults(), 1, "one write was refused");

    // A trigger that fires on a growing write refuses it: counted once.
    let storage = FaultStorage::new();
    let f = storage
        .open(std::path::Path::new("/g"), OpenMode::CreateNew)
        .unwrap();
    storage.arm(FaultTrigger::DiskFull, 1);
    let err = f.write_at(0, &[4u8; 4096]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    assert_eq!(storage.injected_faults(), 1, "one write was refused");
}
