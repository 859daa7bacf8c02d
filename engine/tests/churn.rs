//! Concurrency without a crash, against an exact model.
//!
//! Six worker threads, each with its own session, work at random on three
//! tables — a logged fixed-format table with unique and duplicate indexes and a
//! memo, a logged variable-format table with a memo, and an unlogged table with a
//! memo — while another thread checkpoints and flushes at random moments. Workers
//! open and drop table handles all the time (so tables close and reopen under
//! the others' feet), run transactions (appends, memo-replacing updates, deletes,
//! recalls, savepoints and `rollback_to`, rollback, commit), autocommitted writes
//! and reads, increment shared counters under record locks (so lock waits,
//! timeouts and deadlocks happen), race for unique codes (so commits fail with a
//! duplicate key), end their session in the middle of a transaction, create and
//! drop a scratch table, and now and then pack, rebuild, create or drop an index
//! when they get the only handle (`TableInUse` being an expected answer). One
//! worker in three commits with delayed durability.
//!
//! The model records exactly what was acknowledged: every record belongs to the
//! worker that appended it and is named by (owner, sequence); its values are a
//! function of (owner, sequence, version), so a record's whole content is known
//! from its version. A commit that returned `Ok` is applied to the model while the
//! committing worker still holds a handle on each table it touched (so no pack
//! can slip in between); anything that failed (lock timeout, deadlock, conflict,
//! duplicate key) or was rolled back is not, and each of its appends is counted
//! as the deleted blank record it leaves.
//!
//! What it proves: while it runs, a worker always reads back its own records as
//! the model says (no lost or phantom write, no dirty read); at the end, and
//! again after the database is dropped and reopened, every table holds exactly
//! the model — values, memos, deleted flags, blank records, record and deleted
//! counts, index order — and `check` passes on each; no thread panics and none
//! hangs (a watchdog fails the test instead of hanging CI).
//!
//! `RAIZ_CHURN_OPS` sets the operations per worker (default 4000; a quarter of
//! that in the run on real files), `RAIZ_CHURN_SEED` the seed (printed; thread
//! timing still varies between runs), `RAIZ_CHURN_WORKERS` the number of workers
//! (default 6); `RAIZ_CHURN_TRACE` prints what each worker does.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::storage::MemoryStorage;
use raiz_engine::{
    Database, Durability, Error, Field, FieldType, Memo, Options, Record, RecordFormat, Schema,
    Session, Table, TableOptions, Value,
};

/// Worker threads.
fn workers() -> u64 {
    std::env::var("RAIZ_CHURN_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}
/// Shared counters in the fixed table: records (0, 1..=COUNTERS).
const COUNTERS: u64 = 4;
/// Unique codes the workers race for in the fixed table.
const CLAIMS: u64 = 6;
const CODE_LEN: usize = 16;
const POOL: usize = 256 << 10;

fn ops_per_worker() -> u64 {
    std::env::var("RAIZ_CHURN_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}

fn seed() -> u64 {
    std::env::var("RAIZ_CHURN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn tracing_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RAIZ_CHURN_TRACE").is_some())
}

/// With `RAIZ_CHURN_TRACE` set, prints what a worker does.
macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing_on() {
            eprintln!($($arg)*);
        }
    };
}

use common::Rng;

fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ c.wrapping_mul(0x1656_67b1_9e37_79f9);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

// ---- the tables ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Tbl {
    /// Logged, fixed format: unique (OWNER, SEQ) and CODE, duplicate GRP, a memo.
    Fx,
    /// Logged, variable format: a variable-length body and a memo.
    Vr,
    /// Unlogged, fixed format, a memo.
    Ul,
}

const TABLES: [Tbl; 3] = [Tbl::Fx, Tbl::Vr, Tbl::Ul];

impl Tbl {
    fn name(self) -> &'static str {
        match self {
            Tbl::Fx => "fx",
            Tbl::Vr => "vr",
            Tbl::Ul => "ul",
        }
    }

    fn idx(self) -> usize {
        self as usize
    }

    fn schema(self) -> Schema {
        let mut f = vec![
            Field::new("OWNER", FieldType::Int64),
            Field::new("SEQ", FieldType::Int64),
            Field::new("VER", FieldType::Int64),
        ];
        match self {
            Tbl::Fx => {
                f.push(Field::new("CODE", FieldType::Char(CODE_LEN as u32)));
                f.push(Field::new("GRP", FieldType::Int64));
            }
            Tbl::Vr => f.push(Field::new("BODY", FieldType::Binary(4000))),
            Tbl::Ul => {}
        }
        f.push(Field::new("NOTE", FieldType::Memo));
        Schema::new(f)
    }

    fn options(self) -> TableOptions {
        let o = TableOptions::default().page_size(4096);
        match self {
            Tbl::Fx => o,
            Tbl::Vr => o.format(RecordFormat::Variable),
            Tbl::Ul => o.durability(Durability::Unlogged),
        }
    }
}

/// The memo of a version: empty, small, or several blob pages.
fn memo(tbl: Tbl, owner: u64, seq: u64, ver: u64) -> Vec<u8> {
    let h = mix(owner * 3 + tbl as u64, seq, ver);
    let len = match h % 4 {
        0 => 0,
        1 => 1 + (h >> 8) % 100,
        2 => 300 + (h >> 8) % 2000,
        _ => 4000 + (h >> 8) % 9000,
    } as usize;
    (0..len)
        .map(|i| (h as usize).wrapping_add(i * 31) as u8)
        .collect()
}

/// The unique code of a fixed-table record: its own, or (one version in eight)
/// one of the few codes the workers race for; counters have theirs.
fn code(owner: u64, seq: u64, ver: u64) -> String {
    if owner == 0 {
        return format!("CTR{seq}");
    }
    let h = mix(owner, seq, ver ^ 0x55);
    if h.is_multiple_of(8) {
        format!("CLAIM{}", (h >> 8) % CLAIMS)
    } else {
        format!("K{owner}-{seq}")
    }
}

fn grp(owner: u64, seq: u64, ver: u64) -> i64 {
    (mix(owner, seq, ver ^ 0xaa) % 5) as i64
}

/// Version `ver` of record (owner, seq), as written.
fn row(tbl: Tbl, owner: u64, seq: u64, ver: u64) -> Vec<Value> {
    let mut v = vec![
        Value::Int64(owner as i64),
        Value::Int64(seq as i64),
        Value::Int64(ver as i64),
    ];
    match tbl {
        Tbl::Fx => {
            v.push(Value::from(code(owner, seq, ver).as_str()));
            v.push(Value::Int64(grp(owner, seq, ver)));
        }
        Tbl::Vr => {
            let h = mix(owner, seq, ver ^ 0x77);
            let len = match h % 3 {
                0 => (h >> 8) % 40,
                1 => 100 + (h >> 8) % 900,
                _ => 2000 + (h >> 8) % 2000,
            } as usize;
            v.push(Value::Binary(
                (0..len).map(|i| (h as usize + i * 7) as u8).collect(),
            ));
        }
        Tbl::Ul => {}
    }
    let m = memo(tbl, owner, seq, ver);
    v.push(Value::Memo(if m.is_empty() {
        Memo::Empty
    } else {
        Memo::Data(m)
    }));
    v
}

/// Version `ver` as it reads back: Char blank-padded, the memo left out (it is
/// compared through `read_memo`).
fn readback(tbl: Tbl, owner: u64, seq: u64, ver: u64) -> Vec<Value> {
    let mut v = row(tbl, owner, seq, ver);
    v.pop();
    if tbl == Tbl::Fx {
        v[3] = common::pad(&code(owner, seq, ver), CODE_LEN);
    }
    v
}

fn int(rec: &Record, field: &str) -> u64 {
    rec.get(field)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("record {}: {field} is not an Int64", rec.recno())) as u64
}

fn is_blank(tbl: Tbl, rec: &Record) -> bool {
    rec.is_deleted() && rec.values() == &tbl.schema().empty_record()[..]
}

// ---- the model ----

type Key = (u64, u64);

/// A record's state: its version and deleted flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    ver: u64,
    deleted: bool,
}

#[derive(Debug, Default)]
struct TableModel {
    recs: BTreeMap<Key, State>,
    /// Deleted blank records left by appends that never committed.
    blanks: u64,
}

#[derive(Debug, Default)]
struct Model {
    tables: [TableModel; 3],
    /// Acknowledged increments of each counter (its version must equal them).
    increments: [u64; COUNTERS as usize + 1],
}

impl Model {
    /// An acknowledged change. A counter's committed versions only grow, but
    /// concurrent committers may report them out of order: the model keeps
    /// the highest, and counts the increments.
    fn apply(&mut self, tbl: Tbl, key: Key, state: State) {
        let recs = &mut self.tables[tbl.idx()].recs;
        if key.0 == 0 {
            self.increments[key.1 as usize] += 1;
            let cur = recs.get(&key).map_or(0, |s| s.ver);
            recs.insert(
                key,
                State {
                    ver: cur.max(state.ver),
                    deleted: false,
                },
            );
        } else {
            recs.insert(key, state);
        }
    }

    fn get(&self, tbl: Tbl, key: Key) -> Option<State> {
        self.tables[tbl.idx()].recs.get(&key).copied()
    }

    fn own(&self, tbl: Tbl, owner: u64) -> Vec<(u64, State)> {
        self.tables[tbl.idx()]
            .recs
            .range((owner, 0)..(owner + 1, 0))
            .map(|(k, s)| (k.1, *s))
            .collect()
    }
}

fn setup(db: &Database, model: &mut Model) {
    for tbl in TABLES {
        db.create_table(tbl.name(), &tbl.schema(), tbl.options())
            .unwrap();
        let s = db.session();
        let mut t = s.open_table(tbl.name()).unwrap();
        t.create_index(
            &IndexDef::new(
                "by_key",
                vec![Segment::field("OWNER"), Segment::field("SEQ")],
            )
            .unique(),
        )
        .unwrap();
        if tbl == Tbl::Fx {
            t.create_index(&IndexDef::new("by_code", vec![Segment::field("CODE")]).unique())
                .unwrap();
            t.create_index(&IndexDef::new("by_grp", vec![Segment::field("GRP")]))
                .unwrap();
            for n in 1..=COUNTERS {
                t.append(&row(Tbl::Fx, 0, n, 0)).unwrap();
                model.tables[0].recs.insert(
                    (0, n),
                    State {
                        ver: 0,
                        deleted: false,
                    },
                );
            }
        }
    }
}

// ---- workers ----

/// Errors that mean "not applied, try something else".
fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::LockTimeout { .. }
            | Error::Deadlock { .. }
            | Error::LockConflict { .. }
            | Error::DuplicateKey { .. }
    )
}

/// The recno of record `key`, found through the unique index.
fn locate(t: &mut Table, key: Key) -> raiz_engine::Result<Option<u64>> {
    t.set_order(Some("by_key"))?;
    let found = t.seek(&[Value::Int64(key.0 as i64), Value::Int64(key.1 as i64)])?;
    Ok(found.then(|| t.recno()))
}

/// Asserts record `recno` holds version `want` of `key`, memo included.
fn assert_holds(tbl: Tbl, t: &Table, recno: u64, key: Key, want: State, what: &str) {
    let rec = t
        .read(recno)
        .unwrap_or_else(|e| panic!("{what}: {} record {recno}: {e}", tbl.name()));
    assert_eq!(
        &rec.values()[..rec.values().len() - 1],
        &readback(tbl, key.0, key.1, want.ver)[..],
        "{what}: {} record {key:?} (recno {recno}) is not version {}",
        tbl.name(),
        want.ver
    );
    assert_eq!(
        rec.is_deleted(),
        want.deleted,
        "{what}: {} record {key:?} (recno {recno}) deleted flag",
        tbl.name()
    );
    let m = t
        .read_memo(recno, "NOTE")
        .unwrap_or_else(|e| panic!("{what}: {} memo of {recno}: {e}", tbl.name()));
    assert!(
        m == memo(tbl, key.0, key.1, want.ver),
        "{what}: {} memo of record {key:?} (recno {recno}) is not version {}'s",
        tbl.name(),
        want.ver
    );
}

/// [`assert_holds`] for a record the reading session's open transaction may
/// have changed: it reads back exactly as it will once committed (values in
/// their stored form, its own memo, its deleted flag).
fn assert_holds_in_txn(tbl: Tbl, t: &Table, recno: u64, key: Key, want: State) {
    let rec = t
        .read(recno)
        .unwrap_or_else(|e| panic!("in a transaction: {} record {recno}: {e}", tbl.name()));
    let got: Vec<Value> = rec.values().to_vec();
    let mut expected: Vec<Value> = row(tbl, key.0, key.1, want.ver);
    let n = got.len() - 1;
    let pad = |v: &Value| match v {
        Value::Char(c) => Value::Char(c.trim_end().to_owned()),
        other => other.clone(),
    };
    // (Blank padding inside a transaction is pinned by `own_changes.rs`.)
    for (g, e) in got[..n].iter().zip(&expected[..n]) {
        assert_eq!(
            pad(g),
            pad(e),
            "in a transaction: {} record {key:?} (recno {recno}) is not version {}",
            tbl.name(),
            want.ver
        );
    }
    assert_eq!(
        rec.is_deleted(),
        want.deleted,
        "in a transaction: {} record {key:?} (recno {recno}) deleted flag",
        tbl.name()
    );
    assert_eq!(t.is_deleted(recno).unwrap(), want.deleted);
    let memo_now = t
        .read_memo(recno, "NOTE")
        .unwrap_or_else(|e| panic!("in a transaction: {} memo of {recno}: {e}", tbl.name()));
    let Value::Memo(m) = expected.pop().unwrap() else {
        unreachable!()
    };
    let want_memo = match m {
        Memo::Data(d) => d,
        _ => Vec::new(),
    };
    assert!(
        memo_now == want_memo,
        "in a transaction: {} memo of record {key:?} (recno {recno}) is not version {}'s",
        tbl.name(),
        want.ver
    );
}

/// One change of an open transaction, applied to the model at commit.
#[derive(Debug, Clone, Copy)]
struct Pending {
    tbl: Tbl,
    key: Key,
    state: State,
    appended: bool,
}

struct Worker<'a> {
    id: u64,
    db: Database,
    model: &'a Mutex<Model>,
    rng: Rng,
    session: Session,
    /// Handles kept between operations, dropped at random.
    handles: HashMap<Tbl, Vec<Table>>,
    next_seq: [u64; 3],
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    commits: u64,
    refused: u64,
    rollbacks: u64,
    autocommits: u64,
    packs: u64,
    rewrites_in_use: u64,
    index_changes: u64,
    sessions_ended: u64,
    scratch: u64,
}

impl Worker<'_> {
    /// A session as this worker uses them: its lock timeout, and delayed
    /// durability for one worker in three (no crash here: it only changes when
    /// commits return).
    fn new_session(&self) -> Session {
        let s = self.db.session();
        let timeouts = [0, 5, 50];
        s.set_lock_timeout(Duration::from_millis(timeouts[(self.id % 3) as usize]));
        s.set_delayed_durability(self.id % 3 == 1);
        s
    }

    fn take(&mut self, tbl: Tbl) -> Table {
        match self.handles.get_mut(&tbl).and_then(Vec::pop) {
            Some(t) => t,
            None => self
                .session
                .open_table(tbl.name())
                .unwrap_or_else(|e| panic!("worker {}: open {}: {e}", self.id, tbl.name())),
        }
    }

    fn put(&mut self, tbl: Tbl, t: Table) {
        self.handles.entry(tbl).or_default().push(t);
    }

    fn churn_handles(&mut self) {
        match self.rng.below(10) {
            0 => self.handles.clear(),
            1..=3 => {
                let tbl = TABLES[self.rng.below(3) as usize];
                if let Some(v) = self.handles.get_mut(&tbl) {
                    v.pop();
                }
            }
            4 => {
                // A second handle on the same table.
                let tbl = TABLES[self.rng.below(3) as usize];
                let t = self.session.open_table(tbl.name()).unwrap();
                self.put(tbl, t);
            }
            _ => {}
        }
    }

    fn step(&mut self) {
        self.churn_handles();
        match self.rng.below(100) {
            0..=39 => self.transaction(),
            40..=64 => self.autocommit(),
            65..=92 => self.reads(),
            93..=94 => self.scratch(),
            _ => self.maintenance(),
        }
    }

    /// What this worker's open transaction makes of its records: the model
    /// overlaid with `pending`.
    fn effective(&self, tbl: Tbl, pending: &[Pending]) -> Vec<(u64, State)> {
        let mut mine: BTreeMap<u64, State> = self
            .model
            .lock()
            .unwrap()
            .own(tbl, self.id)
            .into_iter()
            .collect();
        for p in pending
            .iter()
            .filter(|p| p.tbl == tbl && p.key.0 == self.id)
        {
            mine.insert(p.key.1, p.state);
        }
        mine.into_iter().collect()
    }

    fn transaction(&mut self) {
        let mut tables: HashMap<Tbl, Table> = TABLES.iter().map(|&t| (t, self.take(t))).collect();
        let s = self.session.clone();
        let ended_before = self.stats.sessions_ended;
        s.begin().unwrap();
        trace!("w{} begin", self.id);
        let mut pending: Vec<Pending> = Vec::new();
        let mut undone_appends = [0u64; 3];
        let mut savepoint = None;
        let n = 1 + self.rng.below(7);
        let mut abandon = false;
        for _ in 0..n {
            let tbl = TABLES[self.rng.below(3) as usize];
            let r = match self.rng.below(12) {
                0..=3 => self.txn_append(tbl, tables.get_mut(&tbl).unwrap(), &mut pending),
                4..=6 => self.txn_modify(tbl, tables.get_mut(&tbl).unwrap(), &mut pending),
                7..=8 => self.txn_counter(tables.get_mut(&Tbl::Fx).unwrap(), &mut pending),
                9 => {
                    savepoint = Some((s.savepoint().unwrap(), pending.len()));
                    trace!("w{} savepoint at {}", self.id, pending.len());
                    Ok(())
                }
                10 => {
                    if let Some((sp, len)) = savepoint {
                        s.rollback_to(sp).unwrap();
                        trace!("w{} rollback_to {len}", self.id);
                        for p in pending.drain(len..) {
                            if p.appended {
                                undone_appends[p.tbl.idx()] += 1;
                            }
                        }
                    }
                    Ok(())
                }
                _ => {
                    // Its own changes are what it reads back.
                    let mine = self.effective(tbl, &pending);
                    if let Some(&(seq, st)) = self.pick(&mine) {
                        let t = tables.get_mut(&tbl).unwrap();
                        let recno = locate(t, (self.id, seq)).unwrap().unwrap_or_else(|| {
                            panic!("own record ({}, {seq}) not found in a transaction", self.id)
                        });
                        assert_holds_in_txn(tbl, t, recno, (self.id, seq), st);
                    }
                    Ok(())
                }
            };
            match r {
                Ok(()) => {}
                Err(e) if refused(&e) => {
                    self.stats.refused += 1;
                    if self.rng.chance(50) {
                        abandon = true;
                        break;
                    }
                }
                Err(e) => panic!(
                    "worker {}: in a transaction on {}: {e}",
                    self.id,
                    tbl.name()
                ),
            }
        }
        let commit = !abandon && self.rng.chance(85);
        trace!("w{} txn ends: commit {commit}", self.id);
        let applied = if commit {
            match s.commit() {
                Ok(()) => true,
                Err(e) if refused(&e) => {
                    trace!("w{} commit refused: {e}", self.id);
                    self.stats.refused += 1;
                    false
                }
                Err(e) => panic!("worker {}: commit: {e}", self.id),
            }
        } else if self.rng.chance(10) {
            // The session ends with its transaction open: rolled back, its
            // locks released. The worker goes on with a new session.
            s.end().unwrap();
            self.stats.sessions_ended += 1;
            false
        } else {
            s.rollback().unwrap();
            self.stats.rollbacks += 1;
            false
        };
        {
            // Applied while this worker still holds a handle on every table.
            let mut m = self.model.lock().unwrap();
            for tbl in TABLES {
                m.tables[tbl.idx()].blanks += undone_appends[tbl.idx()];
            }
            for p in &pending {
                if applied {
                    m.apply(p.tbl, p.key, p.state);
                } else if p.appended {
                    m.tables[p.tbl.idx()].blanks += 1;
                }
            }
        }
        if applied {
            self.stats.commits += 1;
        }
        if s.in_transaction() || self.stats.sessions_ended > ended_before {
            drop(tables);
            self.handles.clear();
            self.session = self.new_session();
            return;
        }
        for (tbl, t) in tables {
            self.put(tbl, t);
        }
    }

    fn pick<'b>(&mut self, v: &'b [(u64, State)]) -> Option<&'b (u64, State)> {
        if v.is_empty() {
            None
        } else {
            v.get(self.rng.below(v.len() as u64) as usize)
        }
    }

    fn txn_append(
        &mut self,
        tbl: Tbl,
        t: &mut Table,
        pending: &mut Vec<Pending>,
    ) -> raiz_engine::Result<()> {
        let seq = self.next_seq[tbl.idx()] + 1;
        self.next_seq[tbl.idx()] = seq;
        let r = t.append(&row(tbl, self.id, seq, 1))?;
        trace!(
            "w{} txn append {} ({}, {seq}) -> {r}",
            self.id,
            tbl.name(),
            self.id
        );
        pending.push(Pending {
            tbl,
            key: (self.id, seq),
            state: State {
                ver: 1,
                deleted: false,
            },
            appended: true,
        });
        Ok(())
    }

    /// An update (a new version, memo replaced), a delete or a recall of one of
    /// this worker's records.
    fn txn_modify(
        &mut self,
        tbl: Tbl,
        t: &mut Table,
        pending: &mut Vec<Pending>,
    ) -> raiz_engine::Result<()> {
        let mine = self.effective(tbl, pending);
        let Some(&(seq, st)) = self.pick(&mine) else {
            return Ok(());
        };
        let key = (self.id, seq);
        let Some(recno) = locate(t, key)? else {
            // Deleted and packed away since it was picked.
            assert!(
                st.deleted && self.model.lock().unwrap().get(tbl, key).is_none(),
                "worker {}: {} record {key:?} ({st:?}) not found",
                self.id,
                tbl.name()
            );
            return Ok(());
        };
        let new = match self.rng.below(4) {
            0 => State {
                deleted: !st.deleted,
                ..st
            },
            _ => State {
                ver: st.ver + 1,
                ..st
            },
        };
        trace!(
            "w{} modify {} {key:?} at {recno}: {st:?} -> {new:?}",
            self.id,
            tbl.name()
        );
        if new.ver != st.ver {
            t.update(recno, &row(tbl, key.0, key.1, new.ver))?;
        } else if new.deleted {
            t.delete(recno)?;
        } else {
            t.recall(recno)?;
        }
        // (An append changed again in the same transaction is counted once, on
        // the append, as the blank it leaves if the transaction does not commit.)
        pending.push(Pending {
            tbl,
            key,
            state: new,
            appended: false,
        });
        Ok(())
    }

    /// Increments a shared counter: lock, read, update (deadlocks happen: the
    /// counters are locked in random order).
    fn txn_counter(
        &mut self,
        t: &mut Table,
        pending: &mut Vec<Pending>,
    ) -> raiz_engine::Result<()> {
        let n = 1 + self.rng.below(COUNTERS);
        let recno = locate(t, (0, n))?.expect("counters are never deleted");
        t.lock(recno, Duration::from_millis(20))?;
        let cur = int(&t.read(recno)?, "VER");
        t.update(recno, &row(Tbl::Fx, 0, n, cur + 1))?;
        pending.push(Pending {
            tbl: Tbl::Fx,
            key: (0, n),
            state: State {
                ver: cur + 1,
                deleted: false,
            },
            appended: false,
        });
        Ok(())
    }

    fn autocommit(&mut self) {
        let tbl = TABLES[self.rng.below(3) as usize];
        let mut t = self.take(tbl);
        let r: raiz_engine::Result<Option<(Key, State)>> = (|| {
            match self.rng.below(10) {
                0..=3 => {
                    let seq = self.next_seq[tbl.idx()] + 1;
                    self.next_seq[tbl.idx()] = seq;
                    let r = t.append(&row(tbl, self.id, seq, 1))?;
                    trace!(
                        "w{} autocommit append {} ({}, {seq}) -> {r}",
                        self.id,
                        tbl.name(),
                        self.id
                    );
                    Ok(Some((
                        (self.id, seq),
                        State {
                            ver: 1,
                            deleted: false,
                        },
                    )))
                }
                4..=7 => {
                    let mut pending = Vec::new();
                    self.txn_modify(tbl, &mut t, &mut pending)?;
                    Ok(pending.first().map(|p| (p.key, p.state)))
                }
                _ => {
                    // A counter outside a transaction: the lock is held across
                    // the read and the write, then released.
                    let mut f = if tbl == Tbl::Fx {
                        None
                    } else {
                        Some(self.take(Tbl::Fx))
                    };
                    let fx = f.as_mut().unwrap_or(&mut t);
                    let n = 1 + self.rng.below(COUNTERS);
                    let recno = locate(fx, (0, n))?.expect("counters are never deleted");
                    fx.lock(recno, Duration::from_millis(20))?;
                    let r = (|| {
                        let cur = int(&fx.read(recno)?, "VER");
                        fx.update(recno, &row(Tbl::Fx, 0, n, cur + 1))?;
                        Ok(Some((
                            (0, n),
                            State {
                                ver: cur + 1,
                                deleted: false,
                            },
                        )))
                    })();
                    assert!(fx.unlock(recno), "the counter's lock was held");
                    let r = r.map(|x| {
                        // Applied now, while the handle on the fixed table is held.
                        if let Some((key, st)) = x {
                            self.model.lock().unwrap().apply(Tbl::Fx, key, st);
                        }
                        None
                    });
                    if let Some(f) = f {
                        self.put(Tbl::Fx, f);
                    }
                    r
                }
            }
        })();
        match r {
            Ok(Some((key, st))) => {
                self.model.lock().unwrap().apply(tbl, key, st);
                self.stats.autocommits += 1;
            }
            Ok(None) => self.stats.autocommits += 1,
            Err(e) if refused(&e) => {
                trace!("w{} autocommit refused: {e}", self.id);
                self.stats.refused += 1
            }
            Err(e) => panic!("worker {}: autocommit on {}: {e}", self.id, tbl.name()),
        }
        self.put(tbl, t);
    }

    /// Reads: own records are exactly as the model says (only their owner
    /// changes them); range counts over own keys; walks in index order.
    fn reads(&mut self) {
        let tbl = TABLES[self.rng.below(3) as usize];
        let mut t = self.take(tbl);
        let mine = self.model.lock().unwrap().own(tbl, self.id);
        for _ in 0..3 {
            if let Some(&(seq, st)) = self.pick(&mine) {
                let recno = locate(&mut t, (self.id, seq)).unwrap().unwrap_or_else(|| {
                    panic!(
                        "worker {}: own {} record ({}, {seq}) is gone",
                        self.id,
                        tbl.name(),
                        self.id
                    )
                });
                assert_holds(tbl, &t, recno, (self.id, seq), st, "a read");
            }
        }
        let me = [Value::Int64(self.id as i64)];
        t.set_order(Some("by_key")).unwrap();
        let n = t.count_range(Some(&me), Some(&me)).unwrap();
        assert_eq!(
            n,
            mine.len() as u64,
            "worker {}: {} entries of its own in by_key",
            self.id,
            tbl.name()
        );
        match self.rng.below(3) {
            0 if tbl == Tbl::Fx => {
                // The duplicate index, walked while the others write (a record
                // they move forward in the order may come twice): this worker's
                // own records, which nobody else changes meanwhile, come once
                // each and in key order.
                t.set_order(Some("by_grp")).unwrap();
                let mut seen = std::collections::HashSet::new();
                let mut last = i64::MIN;
                let mut more = t.first().unwrap();
                for _ in 0..60 {
                    if !more {
                        break;
                    }
                    let rec = t.record().unwrap();
                    if int(&rec, "OWNER") == self.id {
                        assert!(seen.insert(t.recno()), "by_grp visits {} twice", t.recno());
                        let g = rec.get("GRP").and_then(Value::as_i64).unwrap();
                        assert!(g >= last, "by_grp goes back from {last} to {g}");
                        last = g;
                    }
                    more = t.next().unwrap();
                }
            }
            1 => {
                // An index another worker may be dropping or creating.
                match t.set_order(Some("by_ver")) {
                    Ok(()) => {
                        let mut more = t.last();
                        for _ in 0..20 {
                            match more {
                                Ok(true) => more = t.prev(),
                                Ok(false) | Err(Error::NoSuchIndex { .. }) => break,
                                Err(e) => panic!("walking by_ver: {e}"),
                            }
                        }
                    }
                    Err(Error::NoSuchIndex { .. }) => {}
                    Err(e) => panic!("set_order(by_ver): {e}"),
                }
                t.set_order(None).unwrap();
            }
            _ => {}
        }
        self.put(tbl, t);
    }

    /// A table created, written and dropped, racing the other workers doing
    /// the same (every refusal is an expected answer).
    fn scratch(&mut self) {
        let schema = Schema::new(vec![
            Field::new("N", FieldType::Int64),
            Field::new("NOTE", FieldType::Memo),
        ]);
        match self
            .db
            .create_table("scratch", &schema, TableOptions::default().page_size(4096))
        {
            Ok(()) | Err(Error::TableExists { .. }) => {}
            Err(e) => panic!("worker {}: create scratch: {e}", self.id),
        }
        match self.session.open_table("scratch") {
            Ok(mut t) => {
                for n in 0..3 {
                    t.append(&[Value::Int64(n), Value::Memo(Memo::Data(vec![n as u8; 700]))])
                        .unwrap();
                }
                let report = t.check(5).unwrap();
                assert!(report.is_ok(), "scratch: {:?}", report.problems);
            }
            Err(Error::TableNotFound { .. }) => {}
            Err(e) => panic!("worker {}: open scratch: {e}", self.id),
        }
        match self.db.drop_table("scratch") {
            Ok(()) => self.stats.scratch += 1,
            Err(Error::TableInUse { .. } | Error::TableNotFound { .. }) => {}
            Err(e) => panic!("worker {}: drop scratch: {e}", self.id),
        }
    }

    /// Pack, rebuild, or an index created or dropped — with the only handle
    /// when the table happens to have no other.
    fn maintenance(&mut self) {
        let tbl = TABLES[self.rng.below(3) as usize];
        self.handles.clear();
        let mut t = self.session.open_table(tbl.name()).unwrap();
        match self.rng.below(4) {
            0 => {
                // The model is held across the pack: a worker that commits to the
                // table after the pack applies its change after the pack's. A few
                // tries, the model released in between (a worker waiting for it
                // holds its handles).
                for _ in 0..5 {
                    let mut m = self.model.lock().unwrap();
                    let r = t.pack();
                    trace!("w{} pack {}: {r:?}", self.id, tbl.name());
                    match r {
                        Ok(_) => {
                            let tm = &mut m.tables[tbl.idx()];
                            tm.recs.retain(|_, s| !s.deleted);
                            tm.blanks = 0;
                            self.stats.packs += 1;
                            break;
                        }
                        Err(Error::TableInUse { .. }) => self.stats.rewrites_in_use += 1,
                        Err(e) => panic!("worker {}: pack {}: {e}", self.id, tbl.name()),
                    }
                    drop(m);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            1 => match t.rebuild() {
                Ok(r) => assert_eq!(
                    r.salvaged + r.memos_lost,
                    0,
                    "rebuild {}: {r:?}",
                    tbl.name()
                ),
                Err(Error::TableInUse { .. }) => self.stats.rewrites_in_use += 1,
                Err(e) => panic!("worker {}: rebuild {}: {e}", self.id, tbl.name()),
            },
            2 => {
                let def = IndexDef::new(
                    "by_ver",
                    vec![Segment::field("VER").descending(), Segment::field("SEQ")],
                );
                match t.create_index(&def) {
                    Ok(()) => self.stats.index_changes += 1,
                    Err(Error::IndexExists { .. }) => {}
                    Err(e) => panic!("worker {}: create_index on {}: {e}", self.id, tbl.name()),
                }
            }
            _ => match t.drop_index("by_ver") {
                Ok(()) => self.stats.index_changes += 1,
                Err(Error::NoSuchIndex { .. }) => {}
                Err(e) => panic!("worker {}: drop_index on {}: {e}", self.id, tbl.name()),
            },
        }
        drop(t);
    }
}

// ---- verification ----

/// Recnos in the order of index `order`.
fn walk(t: &mut Table, order: &str) -> Vec<u64> {
    t.set_order(Some(order)).unwrap();
    let mut out = Vec::new();
    let mut more = t.first().unwrap();
    while more {
        out.push(t.recno());
        more = t.next().unwrap();
    }
    t.set_order(None).unwrap();
    out
}

/// Asserts `db` holds exactly `model`, and `check` passes on every table.
fn verify(db: &Database, model: &Model, what: &str) {
    let s = db.session();
    for tbl in TABLES {
        let name = tbl.name();
        let tm = &model.tables[tbl.idx()];
        let mut t = s.open_table(name).unwrap();
        let report = t.check(20).unwrap();
        assert!(
            report.is_ok(),
            "{what}: check {name}: {:?}",
            report.problems
        );
        let snapshot = t.snapshot().unwrap();
        assert_eq!(
            snapshot.len() as u64,
            t.record_count(),
            "{what}: {name}: every recno up to the count holds a record"
        );
        let mut found: BTreeMap<Key, (State, u64)> = BTreeMap::new();
        let mut blanks = 0;
        for rec in &snapshot {
            if is_blank(tbl, rec) {
                blanks += 1;
                continue;
            }
            let key = (int(rec, "OWNER"), int(rec, "SEQ"));
            let st = State {
                ver: int(rec, "VER"),
                deleted: rec.is_deleted(),
            };
            assert_holds(tbl, &t, rec.recno(), key, st, what);
            if let Some(prev) = found.insert(key, (st, rec.recno())) {
                panic!(
                    "{what}: {name}: record {key:?} at recnos {} and {}",
                    prev.1,
                    rec.recno()
                );
            }
        }
        let got: BTreeMap<Key, State> = found.iter().map(|(k, (s, _))| (*k, *s)).collect();
        if got != tm.recs {
            let missing: Vec<_> = tm
                .recs
                .iter()
                .filter(|(k, s)| got.get(k) != Some(s))
                .take(10)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, s)| tm.recs.get(k) != Some(s))
                .take(10)
                .collect();
            panic!("{what}: {name} differs from the model: expected but not found {missing:?}; found but not expected {extra:?}");
        }
        assert_eq!(blanks, tm.blanks, "{what}: {name}: deleted blank records");
        if tbl == Tbl::Fx {
            for n in 1..=COUNTERS {
                assert_eq!(
                    got[&(0, n)].ver,
                    model.increments[n as usize],
                    "{what}: counter {n} holds every acknowledged increment"
                );
            }
        }
        let deleted = tm.recs.values().filter(|s| s.deleted).count() as u64 + tm.blanks;
        assert_eq!(t.deleted_count(), deleted, "{what}: {name}: deleted count");
        assert_eq!(
            t.record_count(),
            tm.recs.len() as u64 + tm.blanks,
            "{what}: {name}: record count"
        );
        // by_key: the model's keys in order, blanks (key (0, 0)) first in recno order.
        let mut blank_recnos: Vec<u64> = snapshot
            .iter()
            .filter(|r| is_blank(tbl, r))
            .map(Record::recno)
            .collect();
        blank_recnos.sort_unstable();
        let mut expected = blank_recnos;
        expected.extend(tm.recs.keys().map(|k| found[k].1));
        assert_eq!(
            walk(&mut t, "by_key"),
            expected,
            "{what}: {name}: by_key order"
        );
        if tbl == Tbl::Fx {
            // Unique: live records by code; deleted ones after theirs, by recno.
            let mut by_code: Vec<(String, u64, u64)> = snapshot
                .iter()
                .map(|r| {
                    let c = match r.get("CODE") {
                        Some(Value::Char(c)) => c.clone(),
                        other => panic!("CODE {other:?}"),
                    };
                    let suffix = if r.is_deleted() { r.recno() } else { 0 };
                    (c, suffix, r.recno())
                })
                .collect();
            by_code.sort();
            let expected: Vec<u64> = by_code.iter().map(|x| x.2).collect();
            assert_eq!(walk(&mut t, "by_code"), expected, "{what}: by_code order");
            let mut by_grp: Vec<(i64, u64)> = snapshot
                .iter()
                .map(|r| (r.get("GRP").and_then(Value::as_i64).unwrap(), r.recno()))
                .collect();
            by_grp.sort();
            let expected: Vec<u64> = by_grp.iter().map(|x| x.1).collect();
            assert_eq!(walk(&mut t, "by_grp"), expected, "{what}: by_grp order");
        }
    }
}

// ---- the run ----

/// Where the rootpath lives.
enum Disk {
    Memory(MemoryStorage),
    Files(tempfile::TempDir),
}

impl Disk {
    fn open(&self) -> Database {
        match self {
            Disk::Memory(m) => common::open_on(Arc::new(m.clone()), POOL),
            Disk::Files(dir) => {
                Database::open_with(dir.path(), Options::default().pool_bytes(POOL)).unwrap()
            }
        }
    }
}

fn run(disk: Disk, seed: u64, ops: u64) {
    eprintln!("churn: seed {seed} (RAIZ_CHURN_SEED), {ops} operations per worker (RAIZ_CHURN_OPS)");
    let db = disk.open();
    let model = Arc::new(Mutex::new(Model::default()));
    setup(&db, &mut model.lock().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for id in 1..=workers() {
        let (db, model) = (db.clone(), model.clone());
        threads.push((
            format!("worker {id}"),
            std::thread::spawn(move || {
                let mut w = Worker {
                    id,
                    session: db.session(),
                    db,
                    model: &model,
                    rng: Rng::new(seed ^ (id * 0x1234_5678_9abc)),
                    handles: HashMap::new(),
                    next_seq: [0; 3],
                    stats: Stats::default(),
                };
                w.session = w.new_session();
                for _ in 0..ops {
                    w.step();
                }
                w.stats
            }),
        ));
    }
    let checkpointer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0xc0ffee);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(rng.below(15)));
                match rng.below(3) {
                    0 => db.checkpoint().unwrap(),
                    1 => db.flush().unwrap(),
                    _ => {
                        let tbl = TABLES[rng.below(3) as usize];
                        let mut t = db.session().open_table(tbl.name()).unwrap();
                        t.flush().unwrap();
                    }
                }
                n += 1;
            }
            n
        })
    };
    // The watchdog: a hang fails the test instead of hanging CI.
    let limit = Duration::from_secs(60 + ops / 10);
    let started = Instant::now();
    while threads.iter().any(|(_, h)| !h.is_finished()) {
        if started.elapsed() > limit {
            let stuck: Vec<&str> = threads
                .iter()
                .filter(|(_, h)| !h.is_finished())
                .map(|(n, _)| n.as_str())
                .collect();
            panic!(
                "seed {seed}: {stuck:?} still running after {limit:?} (hang or deadlock); locks held: {:?}",
                db.locks()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut total = Stats::default();
    for (name, h) in threads {
        match h.join() {
            Ok(s) => {
                total.commits += s.commits;
                total.refused += s.refused;
                total.rollbacks += s.rollbacks;
                total.autocommits += s.autocommits;
                total.packs += s.packs;
                total.rewrites_in_use += s.rewrites_in_use;
                total.index_changes += s.index_changes;
                total.sessions_ended += s.sessions_ended;
                total.scratch += s.scratch;
            }
            Err(_) => panic!("seed {seed}: {name} panicked (its message is above)"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let checkpoints = checkpointer
        .join()
        .unwrap_or_else(|_| panic!("seed {seed}: the checkpoint thread panicked"));
    eprintln!(
        "churn: {total:?}, {checkpoints} checkpoints/flushes, {:?}",
        started.elapsed()
    );
    assert!(total.commits > 0, "some transactions committed");
    let model = model.lock().unwrap();
    verify(&db, &model, &format!("seed {seed}, at the end"));
    drop(db);
    let db = disk.open();
    assert_eq!(
        db.recovery().commits,
        0,
        "seed {seed}: a clean close leaves nothing to replay"
    );
    verify(&db, &model, &format!("seed {seed}, after reopening"));
}

#[test]
fn concurrent_sessions_keep_exactly_the_acknowledged_commits_and_check_clean() {
    run(Disk::Memory(MemoryStorage::new()), seed(), ops_per_worker());
}

/// The same on the real file system (real syncs, the owner lock), shorter.
#[test]
fn concurrent_sessions_on_real_files_keep_exactly_the_acknowledged_commits() {
    let dir = tempfile::tempdir().unwrap();
    run(Disk::Files(dir), seed(), ops_per_worker() / 4);
}
