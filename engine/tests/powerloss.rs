//! Power cuts in the middle of a busy workload, and in the middle of recovery.
//!
//! Each seed runs one workload on the fault-injecting storage, with a power cut
//! armed a few storage operations into a seeded step: three sessions
//! interleave transactions
//! over several logged tables (so appends of concurrent transactions leave
//! reserved recnos below committed ones), with memo- and body-replacing updates,
//! deletes, recalls, savepoints, rollbacks, autocommitted writes, handles opened
//! and dropped (tables close and reopen), checkpoints (explicit, and by a small
//! seeded `LogOptions::checkpoint_bytes`), index creation and removal, `pack` and
//! `rebuild`, on a 64 KiB buffer pool (pages are evicted all the time). Every
//! transaction writes its id into every record it touches and a row into a log
//! table. The workload stops at the first operation the cut refuses (or once
//! the cut has fired in an operation that reports nothing, such as a table
//! closing as its last handle goes: the process is dead from there).
//!
//! The disk is then imaged as a power cut leaves it (`DropUnsynced`, `KeepAll`,
//! `Random`), and for each image:
//!
//! - reopening gives exactly the acknowledged state of every logged table — or,
//!   when the operation the cut interrupted was a commit or a `pack`, exactly
//!   that state with it applied: every acknowledged commit is there, nothing of a
//!   transaction that was not acknowledged is, and no transaction is there in
//!   part. A recno that was reserved but never committed is a deleted blank
//!   record, or beyond the record count;
//! - the acknowledged index set of each table is there, and index order agrees
//!   with the records;
//! - `check` passes on every table;
//! - a new transaction (append, update, commit) succeeds, and `check` still
//!   passes;
//! - when recovery itself loses power (a cut armed a few operations into the
//!   reopen), reopening that image gives the same result as the uninterrupted
//!   recovery.
//!
//! An unlogged table takes part in the same transactions: after the crash it
//! opens, `check` passes, and every record that reads back holds a version once
//! written to it (or is a deleted blank record) — torn pages included: the
//! verification at open turns what cannot be read back into deleted blank
//! records.
//!
//! `RAIZ_FAULT_SEEDS` sets the number of seeds (default 40). A failure names
//! its seed and crash mode; `RAIZ_POWERLOSS_SEED=n` replays seed n alone, and
//! `RAIZ_POWERLOSS_TRACE` prints what its workload does.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::{CrashMode, FaultStorage, FaultTrigger};
use raiz_engine::{
    Database, Durability, Error, Field, FieldType, LogOptions, Memo, Options, Record, RecordFormat,
    Schema, Session, Table, TableOptions, Value,
};

const POOL: usize = 64 << 10;
const SESSIONS: usize = 3;
const STEPS: u64 = 400;

/// The seeds to run: `RAIZ_POWERLOSS_SEED` alone, or the first
/// `RAIZ_FAULT_SEEDS` (default 40).
fn seeds() -> std::ops::Range<u64> {
    let env = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    match env("RAIZ_POWERLOSS_SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..env("RAIZ_FAULT_SEEDS").unwrap_or(40),
    }
}

fn tracing_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RAIZ_POWERLOSS_TRACE").is_some())
}

/// With `RAIZ_POWERLOSS_TRACE` set, prints what the workload does.
macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing_on() {
            eprintln!($($arg)*);
        }
    };
}

/// A tiny xorshift generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

// ---- tables ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Tbl {
    /// Logged, fixed format, a memo; unique by_id, and by_grp (duplicates)
    /// created and dropped by the workload.
    Fx,
    /// Logged, variable format: a body of varying length and a memo.
    Vr,
    /// Logged: one row per transaction.
    Log,
    /// Unlogged, fixed format, a memo.
    Ul,
}

const TABLES: [Tbl; 4] = [Tbl::Fx, Tbl::Vr, Tbl::Log, Tbl::Ul];
const LOGGED: [Tbl; 3] = [Tbl::Fx, Tbl::Vr, Tbl::Log];
/// The tables a transaction's writes go to (each also writes a log row).
const DATA: [Tbl; 3] = [Tbl::Fx, Tbl::Vr, Tbl::Ul];

impl Tbl {
    fn name(self) -> &'static str {
        match self {
            Tbl::Fx => "fx",
            Tbl::Vr => "vr",
            Tbl::Log => "txlog",
            Tbl::Ul => "ul",
        }
    }

    fn idx(self) -> usize {
        self as usize
    }

    fn schema(self) -> Schema {
        let f = |n: &str, t| Field::new(n, t);
        Schema::new(match self {
            Tbl::Fx => vec![
                f("ID", FieldType::Int64),
                f("TXN", FieldType::Int64),
                f("VER", FieldType::Int64),
                f("GRP", FieldType::Int64),
                f("NOTE", FieldType::Memo),
            ],
            Tbl::Vr => vec![
                f("ID", FieldType::Int64),
                f("TXN", FieldType::Int64),
                f("VER", FieldType::Int64),
                f("BODY", FieldType::Binary(3000)),
                f("NOTE", FieldType::Memo),
            ],
            Tbl::Log => vec![
                f("ID", FieldType::Int64),
                f("TXN", FieldType::Int64),
                f("VER", FieldType::Int64),
                f("WHAT", FieldType::Char(24)),
            ],
            Tbl::Ul => vec![
                f("ID", FieldType::Int64),
                f("TXN", FieldType::Int64),
                f("VER", FieldType::Int64),
                f("NOTE", FieldType::Memo),
            ],
        })
    }

    fn options(self) -> TableOptions {
        let o = TableOptions::default().page_size(4096);
        match self {
            Tbl::Vr => o.format(RecordFormat::Variable),
            Tbl::Ul => o.durability(Durability::Unlogged),
            _ => o,
        }
    }

    fn has_memo(self) -> bool {
        self != Tbl::Log
    }
}

/// The version of a record a transaction wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Rec {
    id: u64,
    txn: u64,
    ver: u64,
    deleted: bool,
}

fn memo(tbl: Tbl, id: u64, ver: u64) -> Vec<u8> {
    let h = mix(id * 8 + tbl as u64, ver);
    let len = match h % 4 {
        0 => 0,
        1 => 1 + (h >> 8) % 200,
        2 => 500 + (h >> 8) % 3000,
        _ => 5000 + (h >> 8) % 9000,
    } as usize;
    (0..len)
        .map(|i| (h as usize).wrapping_add(i * 13) as u8)
        .collect()
}

fn row(tbl: Tbl, r: Rec) -> Vec<Value> {
    let mut v = vec![
        Value::Int64(r.id as i64),
        Value::Int64(r.txn as i64),
        Value::Int64(r.ver as i64),
    ];
    match tbl {
        Tbl::Fx => v.push(Value::Int64(((r.id + r.ver) % 4) as i64)),
        Tbl::Vr => {
            let h = mix(r.id ^ 0x77, r.ver);
            let len = match h % 3 {
                0 => (h >> 8) % 30,
                1 => 100 + (h >> 8) % 700,
                _ => 1500 + (h >> 8) % 1500,
            } as usize;
            v.push(Value::Binary(
                (0..len).map(|i| (h as usize + i * 3) as u8).collect(),
            ));
        }
        Tbl::Log => v.push(Value::from(format!("txn {}", r.txn).as_str())),
        Tbl::Ul => {}
    }
    if tbl.has_memo() {
        let m = memo(tbl, r.id, r.ver);
        v.push(Value::Memo(if m.is_empty() {
            Memo::Empty
        } else {
            Memo::Data(m)
        }));
    }
    v
}

/// Compares what record `rec` holds with version `want` (memo included);
/// None when equal.
fn differs(tbl: Tbl, t: &Table, rec: &Record, want: Rec) -> raiz_engine::Result<Option<String>> {
    let mut expected = row(tbl, want);
    if tbl.has_memo() {
        expected.pop();
    }
    if tbl == Tbl::Log {
        expected[3] = common::pad(&format!("txn {}", want.txn), 24);
    }
    let got = &rec.values()[..expected.len()];
    if got != &expected[..] {
        return Ok(Some(format!(
            "record {} holds {got:?}, expected {want:?}",
            rec.recno()
        )));
    }
    if rec.is_deleted() != want.deleted {
        return Ok(Some(format!(
            "record {} deleted flag {}, expected {want:?}",
            rec.recno(),
            rec.is_deleted()
        )));
    }
    if tbl.has_memo() && t.read_memo(rec.recno(), "NOTE")? != memo(tbl, want.id, want.ver) {
        return Ok(Some(format!(
            "record {}: memo is not version {}'s",
            rec.recno(),
            want.ver
        )));
    }
    Ok(None)
}

fn is_blank(tbl: Tbl, rec: &Record) -> bool {
    rec.is_deleted() && rec.values() == &tbl.schema().empty_record()[..]
}

fn int(rec: &Record, f: &str) -> u64 {
    rec.get(f).and_then(Value::as_i64).unwrap_or(-1) as u64
}

// ---- the model ----

/// A recno of a table as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A committed record.
    Rec(Rec),
    /// A deleted blank record: an append rolled back (stored by a commit that
    /// is not waited for: after a crash it may be missing, and is then filled in
    /// again the same way).
    Blank,
    /// Reserved by an open transaction.
    Reserved,
}

/// What the committed state of every table is (and, for the logged tables,
/// what recovery must give back).
#[derive(Debug, Clone, Default)]
struct State {
    slots: [Vec<Slot>; 4],
    /// Indexes of each table, by name.
    indexes: [BTreeSet<String>; 4],
}

impl State {
    fn next_recno(&self, tbl: Tbl) -> u64 {
        self.slots[tbl.idx()].len() as u64 + 1
    }

    fn set(&mut self, tbl: Tbl, recno: u64, slot: Slot) {
        let v = &mut self.slots[tbl.idx()];
        while (v.len() as u64) < recno {
            v.push(Slot::Reserved);
        }
        v[recno as usize - 1] = slot;
    }

    /// `pack`: deleted records go, the others are renumbered in order.
    fn pack(&mut self, tbl: Tbl) {
        let v = &mut self.slots[tbl.idx()];
        assert!(
            !v.contains(&Slot::Reserved),
            "pack with an open reservation"
        );
        v.retain(|s| matches!(s, Slot::Rec(r) if !r.deleted));
    }

    fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            self.set(c.tbl, c.recno, Slot::Rec(c.rec));
        }
    }
}

/// One write of a transaction (or an autocommit): the version it gives a recno.
#[derive(Debug, Clone, Copy)]
struct Change {
    tbl: Tbl,
    recno: u64,
    rec: Rec,
    appended: bool,
}

/// What the interrupted operation would have done had it completed.
#[derive(Debug, Clone)]
enum InDoubt {
    Changes(Vec<Change>),
    Pack(Tbl),
    Index(Tbl, String, bool),
}

/// The interrupted operation, in a few words.
fn describe(doubt: &Option<InDoubt>) -> String {
    match doubt {
        None => "no commit, pack or index change".into(),
        Some(InDoubt::Changes(c)) => {
            let tables: BTreeSet<&str> = c.iter().map(|c| c.tbl.name()).collect();
            format!("a commit to {tables:?}")
        }
        Some(InDoubt::Pack(t)) => format!("a pack of {}", t.name()),
        Some(InDoubt::Index(t, n, created)) => {
            format!(
                "{} index {n} of {}",
                if *created { "creating" } else { "dropping" },
                t.name()
            )
        }
    }
}

// ---- the workload ----

struct Txn {
    id: u64,
    changes: Vec<Change>,
    /// Tables written (the writes may have been rolled back to a savepoint
    /// since: their reserved recnos still tie the transaction to the table).
    touched: BTreeSet<Tbl>,
    savepoint: Option<(raiz_engine::db::Savepoint, usize)>,
}

struct Workload<'a> {
    seed: u64,
    rng: Rng,
    db: &'a Database,
    sessions: Vec<Session>,
    handles: Vec<HashMap<Tbl, Table>>,
    txns: Vec<Option<Txn>>,
    /// The committed state (open reservations included).
    state: State,
    next_id: u64,
    next_txn: u64,
    /// Every version ever written (or attempted) to each unlogged record, by id.
    ul_history: HashMap<u64, Vec<Rec>>,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    commits: u64,
    rollbacks: u64,
    autocommits: u64,
    checkpoints: u64,
    packs: u64,
    index_changes: u64,
    conflicts: u64,
}

/// How a workload ended.
struct Ended {
    state: State,
    in_doubt: Option<InDoubt>,
    ul_history: HashMap<u64, Vec<Rec>>,
    stats: Stats,
    cut: bool,
}

/// The cut refused the operation (and the workload stops there).
fn is_fault(e: &Error) -> bool {
    matches!(
        e,
        Error::Io { .. } | Error::SyncFailed { .. } | Error::Poisoned { .. }
    )
}

/// Why the workload stops: the error, and what the operation it interrupted
/// would have done.
struct Stop {
    error: Error,
    in_doubt: Option<InDoubt>,
}

type Step = Result<(), Box<Stop>>;

fn stop(error: Error) -> Box<Stop> {
    Box::new(Stop {
        error,
        in_doubt: None,
    })
}

fn doubt(error: Error, in_doubt: InDoubt) -> Box<Stop> {
    Box::new(Stop {
        error,
        in_doubt: Some(in_doubt),
    })
}

impl Workload<'_> {
    fn handle(&mut self, s: usize, tbl: Tbl) -> Result<&mut Table, Error> {
        if !self.handles[s].contains_key(&tbl) {
            let t = self.sessions[s].open_table(tbl.name())?;
            self.handles[s].insert(tbl, t);
        }
        Ok(self.handles[s].get_mut(&tbl).expect("inserted above"))
    }

    /// True when an open transaction has written `tbl`.
    fn busy(&self, tbl: Tbl) -> bool {
        self.txns.iter().flatten().any(|t| t.touched.contains(&tbl))
    }

    /// A committed record of `tbl`, or one session `s`'s transaction appended.
    fn pick(&mut self, s: usize, tbl: Tbl) -> Option<(u64, Rec)> {
        let mut mine: BTreeMap<u64, Rec> = BTreeMap::new();
        for (i, slot) in self.state.slots[tbl.idx()].iter().enumerate() {
            if let Slot::Rec(r) = slot {
                mine.insert(i as u64 + 1, *r);
            }
        }
        if let Some(t) = &self.txns[s] {
            for c in t.changes.iter().filter(|c| c.tbl == tbl) {
                mine.insert(c.recno, c.rec);
            }
        }
        if mine.is_empty() {
            return None;
        }
        let n = self.rng.below(mine.len() as u64) as usize;
        mine.into_iter().nth(n)
    }

    fn step(&mut self) -> Step {
        let s = self.rng.below(SESSIONS as u64) as usize;
        if self.txns[s].is_some() {
            match self.rng.below(100) {
                0..=54 => self.txn_write(s),
                55..=62 => self.txn_savepoint(s),
                63..=91 => self.commit(s),
                _ => self.rollback(s),
            }
        } else {
            match self.rng.below(100) {
                0..=34 => {
                    self.sessions[s].begin().map_err(stop)?;
                    trace!("s{s} begin");
                    self.next_txn += 1;
                    self.txns[s] = Some(Txn {
                        id: self.next_txn,
                        changes: Vec::new(),
                        touched: BTreeSet::new(),
                        savepoint: None,
                    });
                    Ok(())
                }
                35..=59 => self.autocommit(s),
                60..=71 => self.read_back(s),
                72..=83 => {
                    // Handles go (tables close when their last one does).
                    for tbl in TABLES {
                        if self.rng.chance(40) && self.handles[s].remove(&tbl).is_some() {
                            trace!("s{s} drops its handle on {}", tbl.name());
                        }
                    }
                    Ok(())
                }
                84..=88 => {
                    self.stats.checkpoints += 1;
                    trace!("s{s} checkpoint");
                    self.db.checkpoint().map_err(stop)
                }
                _ => self.maintenance(s),
            }
        }
    }

    fn version(&mut self, tbl: Tbl, id: u64, ver: u64, txn: u64, deleted: bool) -> Rec {
        let r = Rec {
            id,
            txn,
            ver,
            deleted,
        };
        if tbl == Tbl::Ul {
            self.ul_history.entry(id).or_default().push(r);
        }
        r
    }

    /// A write of session `s`'s transaction: an append, an update (memo and
    /// body replaced), a delete or a recall.
    fn txn_write(&mut self, s: usize) -> Step {
        let tbl = DATA[self.rng.below(3) as usize];
        let txn = self.txns[s].as_ref().expect("open").id;
        let append = self.rng.chance(45);
        let change = if append {
            self.next_id += 1;
            let rec = self.version(tbl, self.next_id, 1, txn, false);
            let t = self.handle(s, tbl).map_err(stop)?;
            let recno = t.append(&row(tbl, rec)).map_err(stop)?;
            trace!("s{s} txn append {} -> {recno}", tbl.name());
            assert_eq!(
                recno,
                self.state.next_recno(tbl),
                "seed {}: the recno an append reserves",
                self.seed
            );
            self.state.set(tbl, recno, Slot::Reserved);
            Change {
                tbl,
                recno,
                rec,
                appended: true,
            }
        } else {
            let Some((recno, old)) = self.pick(s, tbl) else {
                return Ok(());
            };
            let flag_only = self.rng.below(4) == 0;
            // A delete or recall keeps the values (and their transaction's
            // stamp); an update stamps this transaction.
            let rec = if flag_only {
                let r = Rec {
                    deleted: !old.deleted,
                    ..old
                };
                self.version(tbl, r.id, r.ver, r.txn, r.deleted)
            } else {
                self.version(tbl, old.id, old.ver + 1, txn, old.deleted)
            };
            trace!("s{s} txn write {} {recno}: {old:?} -> {rec:?}", tbl.name());
            let t = self.handle(s, tbl).map_err(stop)?;
            let r = if !flag_only {
                t.update(recno, &row(tbl, rec))
            } else if rec.deleted {
                t.delete(recno)
            } else {
                t.recall(recno)
            };
            match r {
                Ok(()) => {}
                // Another open transaction has the record.
                Err(Error::LockConflict { .. }) => {
                    self.stats.conflicts += 1;
                    return Ok(());
                }
                Err(e) => return Err(stop(e)),
            }
            Change {
                tbl,
                recno,
                rec,
                appended: false,
            }
        };
        let txn = self.txns[s].as_mut().expect("open");
        txn.changes.push(change);
        txn.touched.insert(tbl);
        Ok(())
    }

    fn txn_savepoint(&mut self, s: usize) -> Step {
        let txn = self.txns[s].as_mut().expect("open");
        match txn.savepoint {
            Some((sp, len)) if self.rng.chance(60) => {
                trace!("s{s} rollback_to {len}");
                self.sessions[s].rollback_to(sp).map_err(stop)?;
                let txn = self.txns[s].as_mut().expect("open");
                for c in txn.changes.drain(len..) {
                    if c.appended {
                        // Stored as a deleted blank record when the transaction ends.
                        self.state.set(c.tbl, c.recno, Slot::Blank);
                    }
                }
            }
            _ => {
                trace!("s{s} savepoint");
                let sp = self.sessions[s].savepoint().map_err(stop)?;
                let txn = self.txns[s].as_mut().expect("open");
                txn.savepoint = Some((sp, txn.changes.len()));
            }
        }
        Ok(())
    }

    /// Commits session `s`'s transaction, with its row in the log table.
    fn commit(&mut self, s: usize) -> Step {
        let id = self.txns[s].as_ref().expect("open").id;
        let log = self.version(Tbl::Log, 0, 1, id, false);
        let t = self.handle(s, Tbl::Log).map_err(stop)?;
        let recno = t.append(&row(Tbl::Log, Rec { id, ..log })).map_err(stop)?;
        trace!(
            "s{s} log row append -> {recno} (count {})",
            t.record_count()
        );
        assert_eq!(recno, self.state.next_recno(Tbl::Log), "seed {}", self.seed);
        self.state.set(Tbl::Log, recno, Slot::Reserved);
        let txn = self.txns[s].take().expect("open");
        let mut changes = txn.changes;
        changes.push(Change {
            tbl: Tbl::Log,
            recno,
            rec: Rec { id, ..log },
            appended: true,
        });
        let r = self.sessions[s].commit();
        trace!("s{s} commit txn {id} (log row {recno}): {r:?}");
        match r {
            Ok(()) => {
                self.state.apply(&changes);
                self.stats.commits += 1;
                Ok(())
            }
            Err(e) => Err(doubt(e, InDoubt::Changes(changes))),
        }
    }

    fn rollback(&mut self, s: usize) -> Step {
        let txn = self.txns[s].take().expect("open");
        for c in txn.changes.iter().filter(|c| c.appended) {
            self.state.set(c.tbl, c.recno, Slot::Blank);
        }
        self.stats.rollbacks += 1;
        trace!("s{s} rollback");
        self.sessions[s].rollback().map_err(stop)
    }

    fn autocommit(&mut self, s: usize) -> Step {
        let tbl = DATA[self.rng.below(3) as usize];
        self.next_txn += 1;
        let txn = self.next_txn;
        let (recno, rec, r) = if self.rng.chance(40) {
            self.next_id += 1;
            let rec = self.version(tbl, self.next_id, 1, txn, false);
            let recno = self.state.next_recno(tbl);
            let t = self.handle(s, tbl).map_err(stop)?;
            let r = t.append(&row(tbl, rec)).map(|got| {
                assert_eq!(got, recno, "the recno of an autocommitted append");
            });
            (recno, rec, r)
        } else {
            let Some((recno, old)) = self.pick(s, tbl) else {
                return Ok(());
            };
            let rec = self.version(tbl, old.id, old.ver + 1, txn, old.deleted);
            let t = self.handle(s, tbl).map_err(stop)?;
            (recno, rec, t.update(recno, &row(tbl, rec)))
        };
        let change = Change {
            tbl,
            recno,
            rec,
            appended: false,
        };
        trace!("s{s} autocommit {} {recno}: {r:?}", tbl.name());
        match r {
            Ok(()) => {
                self.state.apply(&[change]);
                self.stats.autocommits += 1;
                Ok(())
            }
            Err(Error::LockConflict { .. }) => {
                self.stats.conflicts += 1;
                Ok(())
            }
            Err(e) => Err(doubt(e, InDoubt::Changes(vec![change]))),
        }
    }

    /// Committed records read back as the model says (no crash yet: exact, the
    /// unlogged table too).
    fn read_back(&mut self, s: usize) -> Step {
        let tbl = TABLES[self.rng.below(4) as usize];
        let slots = self.state.slots[tbl.idx()].clone();
        let picks: Vec<u64> = (0..4)
            .map(|_| self.rng.below(slots.len() as u64) + 1)
            .collect();
        let seed = self.seed;
        let t = self.handle(s, tbl).map_err(stop)?;
        for recno in picks {
            if slots.is_empty() {
                break;
            }
            match slots[recno as usize - 1] {
                Slot::Rec(want) => {
                    let rec = t.read(recno).map_err(stop)?;
                    if let Some(d) = differs(tbl, t, &rec, want).map_err(stop)? {
                        panic!("seed {seed}: {} before the crash: {d}", tbl.name());
                    }
                }
                Slot::Blank => {
                    // Its blank is stored when the rollback ends, or at the end
                    // of the transaction that rolled back to a savepoint.
                    if let Ok(rec) = t.read(recno) {
                        assert!(is_blank(tbl, &rec), "seed {seed}: {recno} blank");
                    }
                }
                Slot::Reserved => {}
            }
        }
        Ok(())
    }

    /// `pack`, `rebuild`, an index created or dropped — on a table no open
    /// transaction has written, with every other handle on it dropped.
    fn maintenance(&mut self, s: usize) -> Step {
        let tbl = TABLES[self.rng.below(4) as usize];
        if self.busy(tbl) {
            return Ok(());
        }
        for h in &mut self.handles {
            h.remove(&tbl);
        }
        let op = self.rng.below(4);
        let exists = self.state.indexes[tbl.idx()].contains("by_grp");
        let t = self.handle(s, tbl).map_err(stop)?;
        match op {
            0 => match t.pack().inspect(|_| trace!("s{s} pack {}", tbl.name())) {
                Ok(_) => {
                    self.state.pack(tbl);
                    self.stats.packs += 1;
                    Ok(())
                }
                Err(e) => Err(doubt(e, InDoubt::Pack(tbl))),
            },
            1 => {
                let before = t.record_count();
                let r = t.rebuild();
                trace!(
                    "s{s} rebuild {} ({before} records): {r:?}, {} records",
                    tbl.name(),
                    t.record_count()
                );
                r.map(|_| ()).map_err(stop)
            }
            _ if tbl == Tbl::Fx => {
                let r = if exists {
                    t.drop_index("by_grp")
                } else {
                    t.create_index(&IndexDef::new(
                        "by_grp",
                        vec![Segment::field("GRP"), Segment::field("VER").descending()],
                    ))
                };
                match r {
                    Ok(()) => {
                        let set = &mut self.state.indexes[tbl.idx()];
                        if exists {
                            set.remove("by_grp");
                        } else {
                            set.insert("by_grp".into());
                        }
                        self.stats.index_changes += 1;
                        Ok(())
                    }
                    Err(e) => Err(doubt(e, InDoubt::Index(tbl, "by_grp".into(), !exists))),
                }
            }
            _ => Ok(()),
        }
    }
}

/// Cuts the power at the next storage operation, unless it is cut already.
fn power_off(storage: &FaultStorage) {
    if storage.injected_faults() == 0 {
        storage.arm(FaultTrigger::PowerCut, 1);
    }
}

fn open(storage: &FaultStorage, checkpoint_bytes: u64) -> raiz_engine::Result<Database> {
    Database::open_with(
        "/root",
        Options::default()
            .storage(Arc::new(storage.clone()))
            .pool_bytes(POOL)
            .log(LogOptions {
                checkpoint_bytes,
                ..LogOptions::default()
            }),
    )
}

fn setup(db: &Database) -> State {
    let mut state = State::default();
    for tbl in TABLES {
        db.create_table(tbl.name(), &tbl.schema(), tbl.options())
            .unwrap();
        if tbl != Tbl::Log {
            let mut t = db.session().open_table(tbl.name()).unwrap();
            t.create_index(&IndexDef::new("by_id", vec![Segment::field("ID")]).unique())
                .unwrap();
            state.indexes[tbl.idx()].insert("by_id".into());
        }
    }
    state
}

/// Runs seed `seed`'s workload until the power cut (or its end); returns what
/// was acknowledged and the storage to image.
fn workload(seed: u64) -> (FaultStorage, u64, Ended) {
    let mut rng = Rng::new(seed);
    let checkpoint_bytes = (8 << 10) + rng.below(200 << 10);
    let storage = FaultStorage::new();
    let db = open(&storage, checkpoint_bytes).unwrap();
    let state = setup(&db);
    // The cut: a few storage operations into a seeded step (one run in eleven
    // reaches the end first). Counted in steps, so a seed replays the same
    // cut even though the engine's random file ids vary the log's size.
    let cut_step = rng.below(STEPS + STEPS / 10);
    let cut_ops = 1 + rng.below(12);
    let mut w = Workload {
        seed,
        rng,
        db: &db,
        sessions: (0..SESSIONS).map(|_| db.session()).collect(),
        handles: (0..SESSIONS).map(|_| HashMap::new()).collect(),
        txns: (0..SESSIONS).map(|_| None).collect(),
        state,
        next_id: 0,
        next_txn: 0,
        ul_history: HashMap::new(),
        stats: Stats::default(),
    };
    let mut in_doubt = None;
    for step in 0..STEPS {
        if step == cut_step {
            storage.arm(FaultTrigger::PowerCut, cut_ops);
        }
        match w.step() {
            // The power went during an operation that reported nothing (a
            // table closing as its last handle went, a checkpoint after a
            // durable commit): the process is dead from here.
            Ok(()) if storage.injected_faults() > 0 => break,
            Ok(()) => {}
            Err(stopped) => {
                let e = &stopped.error;
                assert!(
                    is_fault(e) && storage.injected_faults() > 0,
                    "seed {seed}: an operation failed with {e} (not the power cut)"
                );
                in_doubt = stopped.in_doubt;
                break;
            }
        }
    }
    let cut = storage.injected_faults() > 0;
    let ended = Ended {
        state: w.state.clone(),
        in_doubt,
        ul_history: std::mem::take(&mut w.ul_history),
        stats: w.stats,
        cut,
    };
    // The power goes now if it has not yet: from here nothing reaches the disk,
    // so the process's closing work (rollbacks, table closes, the final
    // checkpoint) changes nothing of what a crash leaves.
    power_off(&storage);
    drop(w);
    drop(db);
    (storage, checkpoint_bytes, ended)
}

// ---- after the crash ----

/// Which expected state recovery gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acknowledged,
    WithInDoubt,
}

/// Differences between logged table `tbl` of `db` and `want`; None if it
/// matches.
fn compare(db: &Database, tbl: Tbl, want: &State) -> raiz_engine::Result<Option<String>> {
    let s = db.session();
    let t = s.open_table(tbl.name())?;
    let slots = &want.slots[tbl.idx()];
    let count = t.record_count();
    let required = slots
        .iter()
        .rposition(|s| matches!(s, Slot::Rec(_)))
        .map_or(0, |i| i as u64 + 1);
    if count < required || count > slots.len() as u64 {
        return Ok(Some(format!(
            "{} records; the committed ones end at {required}, the reserved at {}",
            count,
            slots.len()
        )));
    }
    for recno in 1..=count {
        let rec = t.read(recno)?;
        match slots[recno as usize - 1] {
            Slot::Rec(r) => {
                if let Some(d) = differs(tbl, &t, &rec, r)? {
                    return Ok(Some(d));
                }
            }
            Slot::Blank | Slot::Reserved => {
                if !is_blank(tbl, &rec) {
                    return Ok(Some(format!(
                        "recno {recno}, never committed, holds {:?} (deleted {})",
                        rec.values(),
                        rec.is_deleted()
                    )));
                }
            }
        }
    }
    let names: BTreeSet<String> = t
        .info()
        .indexes
        .iter()
        .map(|(d, _)| d.name.clone())
        .collect();
    if names != want.indexes[tbl.idx()] {
        return Ok(Some(format!(
            "indexes {names:?}, expected {:?}",
            want.indexes[tbl.idx()]
        )));
    }
    Ok(None)
}

/// The expected state with the interrupted operation applied.
fn with_in_doubt(state: &State, doubt: &InDoubt) -> State {
    let mut s = state.clone();
    match doubt {
        InDoubt::Changes(c) => s.apply(c),
        InDoubt::Pack(tbl) => s.pack(*tbl),
        InDoubt::Index(tbl, name, created) => {
            if *created {
                s.indexes[tbl.idx()].insert(name.clone());
            } else {
                s.indexes[tbl.idx()].remove(name);
            }
        }
    }
    s
}

/// Images whose recovery gave the interrupted operation applied.
static APPLIED: AtomicU64 = AtomicU64::new(0);
/// Reopens the power cut before they were done.
static RECOVERIES_CUT: AtomicU64 = AtomicU64::new(0);

/// Asserts `check` passes on table `tbl`.
fn check_table(db: &Database, tbl: Tbl, what: &str) -> Result<(), String> {
    let t = match db.session().open_table(tbl.name()) {
        Ok(t) => t,
        Err(e) => return Err(format!("{what}: {} does not open: {e}", tbl.name())),
    };
    let report = t
        .check(20)
        .map_err(|e| format!("{what}: check {}: {e}", tbl.name()))?;
    if report.is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{what}: check {} found {:?}",
            tbl.name(),
            report.problems
        ))
    }
}

/// The unlogged table: every record that reads back holds a version written to
/// it, or is a deleted blank; no record twice.
fn check_unlogged(db: &Database, ended: &Ended, torn: bool, what: &str) -> Result<(), String> {
    let t = match db.session().open_table(Tbl::Ul.name()) {
        Ok(t) => t,
        Err(e) => return Err(format!("{what}: ul does not open: {e}")),
    };
    let mut seen = BTreeSet::new();
    for recno in 1..=t.record_count() {
        let rec = match t.read(recno) {
            Ok(r) => r,
            Err(Error::Checksum { .. }) if torn => continue,
            Err(e) => return Err(format!("{what}: ul record {recno}: {e}")),
        };
        if is_blank(Tbl::Ul, &rec) {
            continue;
        }
        let id = int(&rec, "ID");
        let written = ended.ul_history.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        let matching = written
            .iter()
            .find(|r| r.txn == int(&rec, "TXN") && r.ver == int(&rec, "VER"));
        let Some(&want) = matching else {
            return Err(format!(
                "{what}: ul record {recno} holds {:?}, never written",
                rec.values()
            ));
        };
        let want = Rec {
            deleted: rec.is_deleted(),
            ..want
        };
        match differs(Tbl::Ul, &t, &rec, want) {
            Ok(None) => {}
            Ok(Some(d)) => return Err(format!("{what}: ul {d}")),
            Err(Error::Checksum { .. }) if torn => {}
            Err(e) => return Err(format!("{what}: ul memo of {recno}: {e}")),
        }
        if !seen.insert(id) {
            return Err(format!("{what}: ul record id {id} twice"));
        }
    }
    Ok(())
}

/// Opens `image` and checks everything the module docs list; returns which
/// expected state recovery gave.
fn verify_image(
    image: &FaultStorage,
    checkpoint_bytes: u64,
    ended: &Ended,
    torn: bool,
    what: &str,
) -> Result<Outcome, String> {
    let db = open(image, checkpoint_bytes).map_err(|e| format!("{what}: reopen: {e}"))?;
    let alt = ended
        .in_doubt
        .as_ref()
        .map(|d| with_in_doubt(&ended.state, d));
    // The same outcome for every table: the interrupted operation is in or
    // out as a whole.
    let mut outcome = None;
    for tbl in LOGGED {
        let first =
            compare(&db, tbl, &ended.state).map_err(|e| format!("{what}: {}: {e}", tbl.name()))?;
        let this = match (first, &alt) {
            (None, _) => Outcome::Acknowledged,
            (Some(d), None) => return Err(format!("{what}: {}: {d}", tbl.name())),
            (Some(d), Some(alt)) => {
                match compare(&db, tbl, alt).map_err(|e| format!("{what}: {}: {e}", tbl.name()))? {
                    None => Outcome::WithInDoubt,
                    Some(d2) => {
                        return Err(format!(
                    "{what}: {}: as acknowledged: {d}; with the interrupted operation ({:?}): {d2}",
                    tbl.name(),
                    ended.in_doubt
                ))
                    }
                }
            }
        };
        // A table the interrupted operation did not touch matches both.
        let both = alt.as_ref().is_some_and(|a| {
            a.slots[tbl.idx()] == ended.state.slots[tbl.idx()]
                && a.indexes[tbl.idx()] == ended.state.indexes[tbl.idx()]
        });
        if !both {
            match outcome {
                None => outcome = Some(this),
                Some(o) if o != this => {
                    return Err(format!(
                        "{what}: the interrupted operation is in part there ({:?})",
                        ended.in_doubt
                    ))
                }
                Some(_) => {}
            }
        }
    }
    for tbl in TABLES {
        check_table(&db, tbl, what)?;
    }
    check_unlogged(&db, ended, torn, what)?;
    // Index order agrees with the records.
    for tbl in [Tbl::Fx, Tbl::Vr] {
        let mut t = db.session().open_table(tbl.name()).unwrap();
        t.set_order(Some("by_id")).unwrap();
        let mut last = None;
        let mut more = t.first().map_err(|e| format!("{what}: {e}"))?;
        while more {
            let rec = t.record().map_err(|e| format!("{what}: {e}"))?;
            let key = (
                int(&rec, "ID"),
                if rec.is_deleted() { rec.recno() } else { 0 },
            );
            if last.is_some_and(|l| l >= key) {
                return Err(format!(
                    "{what}: {} by_id out of order at {key:?}",
                    tbl.name()
                ));
            }
            last = Some(key);
            more = t.next().map_err(|e| format!("{what}: {e}"))?;
        }
    }
    // A new transaction works on every table, and check still passes.
    let s = db.session();
    s.begin().map_err(|e| format!("{what}: {e}"))?;
    for tbl in [Tbl::Fx, Tbl::Vr, Tbl::Log, Tbl::Ul] {
        let mut t = match s.open_table(tbl.name()) {
            Ok(t) => t,
            Err(e) => return Err(format!("{what}: open {}: {e}", tbl.name())),
        };
        let rec = Rec {
            id: 1_000_000,
            txn: 1_000_000,
            ver: 1,
            deleted: false,
        };
        let r = t
            .append(&row(tbl, rec))
            .map_err(|e| format!("{what}: append to {}: {e}", tbl.name()))?;
        t.update(r, &row(tbl, Rec { ver: 2, ..rec }))
            .map_err(|e| format!("{what}: update of {}: {e}", tbl.name()))?;
    }
    s.commit()
        .map_err(|e| format!("{what}: commit after recovery: {e}"))?;
    for tbl in TABLES {
        check_table(&db, tbl, &format!("{what}, after a new commit"))?;
    }
    drop(s);
    drop(db);
    Ok(outcome.unwrap_or(Outcome::Acknowledged))
}

/// Recovery of `image` loses power `cut` operations in (opening the database
/// and each table); then the disk is imaged again.
fn crash_during_recovery(
    image: &FaultStorage,
    checkpoint_bytes: u64,
    cut: u64,
    mode: CrashMode,
) -> FaultStorage {
    let copy = image.crash(CrashMode::KeepAll);
    copy.arm(FaultTrigger::PowerCut, cut);
    let db = open(&copy, checkpoint_bytes).ok();
    let mut handles = Vec::new();
    if let Some(db) = &db {
        let s = db.session();
        for tbl in TABLES {
            match s.open_table(tbl.name()) {
                Ok(t) => handles.push(t),
                Err(_) => break,
            }
        }
    }
    if copy.injected_faults() > 0 {
        RECOVERIES_CUT.fetch_add(1, Ordering::Relaxed);
    }
    power_off(&copy);
    drop(handles);
    drop(db);
    copy.crash(mode)
}

const MODES: [fn(u64) -> CrashMode; 3] = [
    |_| CrashMode::DropUnsynced,
    |_| CrashMode::KeepAll,
    |seed| CrashMode::Random { seed },
];

/// One seed: the workload, then every crash mode. Returns the failures.
fn run_seed(seed: u64) -> (Vec<String>, Ended) {
    let (storage, checkpoint_bytes, ended) = workload(seed);
    let mut failures = Vec::new();
    for mode in MODES.map(|m| m(seed)) {
        let torn = matches!(mode, CrashMode::Random { .. });
        let image = storage.crash(mode);
        let what = format!(
            "seed {seed}, {mode:?} (interrupted: {})",
            describe(&ended.in_doubt)
        );
        let first = match verify_image(
            &image.crash(CrashMode::KeepAll),
            checkpoint_bytes,
            &ended,
            torn,
            &what,
        ) {
            Ok(o) => {
                if o == Outcome::WithInDoubt {
                    APPLIED.fetch_add(1, Ordering::Relaxed);
                }
                o
            }
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let mut rng = Rng::new(seed ^ 0xdead);
        for _ in 0..2 {
            // Early (the log replay) or later (opening and repairing tables).
            let within = if rng.chance(50) { 40 } else { 300 };
            let cut = 1 + rng.below(within);
            let again_mode = if rng.chance(50) {
                CrashMode::DropUnsynced
            } else {
                CrashMode::Random { seed: rng.next() }
            };
            let again = crash_during_recovery(&image, checkpoint_bytes, cut, again_mode);
            let what = format!("{what}, recovery cut after {cut} operations, then {again_mode:?}");
            match verify_image(&again, checkpoint_bytes, &ended, torn, &what) {
                Ok(o) if o == first => {}
                Ok(o) => failures.push(format!(
                    "{what}: recovery gave {o:?}, the uninterrupted one {first:?}"
                )),
                Err(e) => failures.push(e),
            }
        }
    }
    (failures, ended)
}

#[test]
fn power_cuts_keep_every_acknowledged_commit_and_no_partial_transaction() {
    let mut failures = Vec::new();
    let (mut cuts, mut in_doubt) = (0, 0);
    let mut total = Stats::default();
    let started = std::time::Instant::now();
    for seed in seeds() {
        let (f, ended) = run_seed(seed);
        failures.extend(f);
        cuts += u64::from(ended.cut);
        in_doubt += u64::from(ended.in_doubt.is_some());
        let s = ended.stats;
        total.commits += s.commits;
        total.rollbacks += s.rollbacks;
        total.autocommits += s.autocommits;
        total.checkpoints += s.checkpoints;
        total.packs += s.packs;
        total.index_changes += s.index_changes;
        total.conflicts += s.conflicts;
    }
    eprintln!(
        "powerloss: {:?} seeds, {cuts} cut mid-run ({in_doubt} during a commit, pack or index change), {total:?}; {} images recovered the interrupted operation; {} reopens cut by the power; {:?}",
        seeds(),
        APPLIED.load(Ordering::Relaxed),
        RECOVERIES_CUT.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if seeds().count() >= 10 {
        assert!(cuts > 0, "the power was cut during some workloads");
    }
}

// ---- regressions ----

fn memo_schema() -> Schema {
    Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("NOTE", FieldType::Memo),
    ])
}

fn memo_row(k: i64, len: usize) -> Vec<Value> {
    vec![Value::Int64(k), Value::Memo(Memo::Data(vec![k as u8; len]))]
}

/// Kills the process (`KeepAll`: what was written stays) and reopens; returns
/// what `check` finds in table `t`.
fn kill_and_check(storage: &FaultStorage, db: Database) -> Vec<String> {
    let image = storage.crash(CrashMode::KeepAll);
    power_off(storage);
    drop(db);
    let db = open(&image, 64 << 20).unwrap();
    let t = db.session().open_table("t").unwrap();
    t.check(20).unwrap().problems
}

/// A commit whose memo needs new blob pages is cut by a kill before it is
/// logged: the pages it allocated must not be left as lost pages.
#[test]
fn a_commit_killed_after_allocating_blob_pages_leaves_check_clean() {
    let storage = FaultStorage::new();
    let db = open(&storage, 64 << 20).unwrap();
    db.create_table("t", &memo_schema(), TableOptions::default().page_size(4096))
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.append(&memo_row(1, 100)).unwrap();
    // The next operation (the new blob's first page, written as it is
    // allocated) goes through; the one after it does not.
    storage.arm(FaultTrigger::PowerCut, 2);
    s.begin().unwrap();
    t.update(1, &memo_row(1, 20_000)).unwrap();
    assert!(s.commit().is_err(), "the cut refuses the commit");
    drop((t, s));
    let problems = kill_and_check(&storage, db);
    assert!(problems.is_empty(), "check after the kill: {problems:?}");
}

/// The same for index pages: a commit splitting index pages is cut by a kill.
#[test]
fn a_commit_killed_after_allocating_index_pages_leaves_check_clean() {
    let schema = Schema::new(vec![
        Field::new("K", FieldType::Int64),
        Field::new("C", FieldType::Char(200)),
    ]);
    let row = |k: i64| vec![Value::Int64(k), Value::from(format!("{k:0>150}").as_str())];
    let storage = FaultStorage::new();
    let db = open(&storage, 64 << 20).unwrap();
    db.create_table("t", &schema, TableOptions::default().page_size(4096))
        .unwrap();
    let s = db.session();
    let mut t = s.open_table("t").unwrap();
    t.create_index(&IndexDef::new("by_c", vec![Segment::field("C")]))
        .unwrap();
    for k in 1..=30 {
        t.append(&row(k)).unwrap();
    }
    storage.arm(FaultTrigger::PowerCut, 4);
    s.begin().unwrap();
    for k in 31..=200 {
        t.append(&row(k)).unwrap();
    }
    assert!(s.commit().is_err(), "the cut refuses the commit");
    drop((t, s));
    let problems = kill_and_check(&storage, db);
    assert!(problems.is_empty(), "check after the kill: {problems:?}");
}
