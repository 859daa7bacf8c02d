//! The change feed: every commit to a watched table, in commit order, with a
//! sequence number — what a server streams to its cache nodes.
//!
//! Invariants:
//! - **Nothing is done for tables nobody watches.** A commit asks one atomic
//!   flag whether any table is watched; only then does it look further.
//! - **Sequence numbers follow commit order.** A commit takes its number, and
//!   queues its entry, while it still holds the write locks of its tables; so
//!   two commits touching one table are numbered in the order they applied,
//!   and a reader holding a table's read lock knows every commit to it up to
//!   [`Feed::last_seq`] is applied and none after. Table events (created,
//!   dropped, rewritten) are numbered the same way once they are done.
//! - **Entries leave the feed durable and in order.** [`Feed::take`] hands out
//!   entries in sequence order, and an entry of a logged table only once the
//!   log is durable up to its commit: a node never sees a commit a crash could
//!   undo. A commit whose log sync failed poisons the log; the feed is then
//!   broken and says so, since what follows is in doubt.
//! - **Epochs.** A rootpath has an epoch, a random number kept in
//!   `raiz.epoch` with the last sequence number. A clean close writes both;
//!   an open finds the file marked open after a crash (or missing, or
//!   unreadable) and draws a new epoch: whatever a node cached from before may
//!   not be what recovery kept (unlogged tables, delayed durability), so it
//!   must reload. Numbers go on from the last one recorded either way. A
//!   rootpath restored from a copy must get a new epoch (remove `raiz.epoch`).
//! - **A cluster member's feed follows the group's log** ([`Feed::follow_group`]):
//!   every table but the member's own is in it, its epoch is the group's,
//!   and the changes applied for the log entry at index I are numbered from
//!   `I << ENTRY_SHIFT` up, so a change has the same number on every member
//!   and a node can move from one member to another. A node coming from
//!   another member resumes at the start of the entry it was in
//!   ([`Feed::resume_point`]); the changes of that entry it already had come
//!   again, and applying a record as stored twice changes nothing.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::log::Wal;
use crate::schema::Value;
use crate::storage::{OpenMode, Storage};

/// The file holding a rootpath's epoch and last sequence number.
pub const EPOCH_FILE: &str = "raiz.epoch";

/// Queued entries beyond this many bytes break the feed (its reader is gone
/// or stuck): better a clear break, which makes nodes reload, than a server
/// that grows without bound.
const MAX_QUEUED_BYTES: usize = 256 << 20;

/// One record's change in a commit, as the commit stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecordChange {
    /// A new record (live) at `recno`.
    Append {
        /// Its recno.
        recno: u64,
        /// Its values as stored (serial assigned; memos as written:
        /// `Memo::Data` for new content).
        values: Vec<Value>,
    },
    /// New values of a record. A memo field given as `Memo::Stored` keeps the
    /// record's memo as it was.
    Update {
        /// The record.
        recno: u64,
        /// Its new values.
        values: Vec<Value>,
    },
    /// Logical delete (true) or recall (false).
    SetDeleted {
        /// The record.
        recno: u64,
        /// The new flag.
        deleted: bool,
    },
    /// A recno whose append was rolled back, stored as a deleted blank record.
    Blank {
        /// The recno.
        recno: u64,
    },
}

impl RecordChange {
    /// The record the change concerns.
    pub fn recno(&self) -> u64 {
        match self {
            RecordChange::Append { recno, .. }
            | RecordChange::Update { recno, .. }
            | RecordChange::SetDeleted { recno, .. }
            | RecordChange::Blank { recno } => *recno,
        }
    }

    /// Rough size in bytes (for the window's accounting).
    pub fn weight(&self) -> usize {
        let values = match self {
            RecordChange::Append { values, .. } | RecordChange::Update { values, .. } => values
                .iter()
                .map(|v| match v {
                    Value::Char(s) => s.len() + 8,
                    Value::Memo(crate::schema::Memo::Data(d)) => d.len() + 8,
                    _ => 16,
                })
                .sum(),
            _ => 0,
        };
        24 + values
    }
}

/// What happened to a whole table: a node reloads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableEvent {
    /// Created.
    Created,
    /// Dropped.
    Dropped,
    /// Rewritten: altered, packed, rebuilt, or an index created or dropped.
    Rewritten,
}

/// The changes of one commit to one table, in the order they applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableChanges {
    /// The table (lower case).
    pub table: String,
    /// Its record changes.
    pub changes: Vec<RecordChange>,
}

/// What a feed entry carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeedBody {
    /// A commit: its changes to watched tables.
    Commit(Vec<TableChanges>),
    /// An event of a whole table.
    Table {
        /// The table.
        table: String,
        /// What happened.
        event: TableEvent,
    },
}

/// One numbered entry of the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEntry {
    /// Its sequence number.
    pub seq: u64,
    /// What it carries.
    pub body: FeedBody,
}

impl FeedEntry {
    /// The tables it concerns.
    pub fn tables(&self) -> Vec<&str> {
        match &self.body {
            FeedBody::Commit(t) => t.iter().map(|t| t.table.as_str()).collect(),
            FeedBody::Table { table, .. } => vec![table.as_str()],
        }
    }

    /// Rough size in bytes.
    pub fn weight(&self) -> usize {
        32 + match &self.body {
            FeedBody::Commit(t) => t
                .iter()
                .map(|t| t.table.len() + t.changes.iter().map(|c| c.weight()).sum::<usize>())
                .sum(),
            FeedBody::Table { table, .. } => table.len(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The last number given out.
    last_seq: u64,
    /// On a cluster member: the number every table is watched after.
    group_since: u64,
    /// On a cluster member: the next entry is numbered above this (the
    /// start of the log entry being applied).
    base: u64,
    /// Watched tables, with the number they have been watched after (every
    /// change to them numbered above it is in the feed).
    watched: HashMap<String, u64>,
    /// Numbered entries not yet taken, in order, with the log position each
    /// waits for (0: none).
    queue: VecDeque<(FeedEntry, u64)>,
    queued_bytes: usize,
    /// Why the feed cannot go on, once it cannot.
    broken: Option<String>,
}

/// Bits below a log entry's index in a cluster member's sequence numbers:
/// room for that many feed entries per log entry.
pub const ENTRY_SHIFT: u32 = 20;

/// The change feed of a database (see the module docs).
#[derive(Debug)]
pub struct Feed {
    epoch: AtomicU64,
    /// Set on a cluster member (see [`Feed::follow_group`]).
    group: AtomicBool,
    /// The epoch the rootpath had before this open, if it kept it.
    wal: Option<Arc<Wal>>,
    any: AtomicBool,
    state: Mutex<State>,
    ready: Condvar,
    file: Option<(Arc<dyn Storage>, PathBuf)>,
}

/// `raiz.epoch` as text: `epoch=HEX seq=N state=open|closed watch=T1,T2`.
struct Mark {
    epoch: u64,
    seq: u64,
    closed: bool,
    watch: Vec<String>,
}

fn parse_mark(text: &str) -> Option<Mark> {
    let mut epoch = None;
    let mut seq = None;
    let mut closed = None;
    let mut watch = Vec::new();
    for word in text.split_whitespace() {
        match word.split_once('=')? {
            ("epoch", v) => epoch = u64::from_str_radix(v, 16).ok(),
            ("seq", v) => seq = v.parse().ok(),
            ("state", v) => closed = Some(v == "closed"),
            ("watch", v) => {
                watch = v
                    .split(',')
                    .filter(|t| crate::validate_table_name(t).is_ok())
                    .map(str::to_owned)
                    .collect()
            }
            _ => {}
        }
    }
    Some(Mark {
        epoch: epoch?,
        seq: seq?,
        closed: closed?,
        watch,
    })
}

fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    // Never 0: 0 means "no epoch" on the wire.
    h.finish().max(1)
}

fn write_mark(
    storage: &dyn Storage,
    path: &Path,
    epoch: u64,
    seq: u64,
    closed: bool,
    watch: &[String],
) -> Result<()> {
    let mut watch = watch.to_vec();
    watch.sort();
    let text = format!(
        "epoch={epoch:016x} seq={seq} state={} watch={}\n",
        if closed { "closed" } else { "open" },
        watch.join(",")
    );
    let tmp = path.with_extension("epoch.new");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(&p, e)
    };
    let f = storage
        .open(&tmp, OpenMode::OpenOrCreate)
        .map_err(io(&tmp))?;
    f.set_len(0).map_err(io(&tmp))?;
    f.write_at(0, text.as_bytes()).map_err(io(&tmp))?;
    f.sync().map_err(io(&tmp))?;
    drop(f);
    storage.rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        storage.sync_dir(dir).map_err(io(dir))?;
    }
    Ok(())
}

impl Feed {
    /// The feed of a rootpath being opened: reads its mark, draws a new epoch
    /// unless it was closed cleanly, and marks it open.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        root: &Path,
        wal: Option<Arc<Wal>>,
    ) -> Result<Feed> {
        let path = root.join(EPOCH_FILE);
        let mark = match storage.exists(&path).map_err(|e| Error::io(&path, e))? {
            false => None,
            true => {
                let f = storage
                    .open(&path, OpenMode::Existing)
                    .map_err(|e| Error::io(&path, e))?;
                let len = f.len().map_err(|e| Error::io(&path, e))?.min(4096) as usize;
                let mut buf = vec![0; len];
                f.read_at(0, &mut buf).map_err(|e| Error::io(&path, e))?;
                parse_mark(&String::from_utf8_lossy(&buf))
            }
        };
        let (epoch, seq, watch) = match mark {
            Some(m) if m.closed => (m.epoch, m.seq, m.watch),
            Some(m) => {
                let epoch = new_epoch();
                tracing::warn!(root = %root.display(), old = format!("{:016x}", m.epoch), new = format!("{epoch:016x}"),
                    "the rootpath was not closed cleanly: new epoch (cache nodes reload)");
                (epoch, m.seq, m.watch)
            }
            None => (new_epoch(), 0, Vec::new()),
        };
        write_mark(&*storage, &path, epoch, seq, false, &watch)?;
        // Tables watched before stay watched from the start, so a node that
        // followed them before a restart catches up instead of reloading.
        let watched: HashMap<String, u64> = watch.into_iter().map(|t| (t, seq)).collect();
        Ok(Feed {
            epoch: AtomicU64::new(epoch),
            group: AtomicBool::new(false),
            wal,
            any: AtomicBool::new(!watched.is_empty()),
            state: Mutex::new(State {
                last_seq: seq,
                watched,
                ..State::default()
            }),
            ready: Condvar::new(),
            file: Some((storage, path)),
        })
    }

    /// A feed for a database of temporary tables: nothing is ever watched.
    pub(crate) fn none() -> Feed {
        Feed {
            epoch: AtomicU64::new(0),
            group: AtomicBool::new(false),
            wal: None,
            any: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            file: None,
        }
    }

    /// Marks the rootpath closed cleanly with the last sequence number.
    pub(crate) fn close(&self) -> Result<()> {
        let st = self.state.lock();
        if st.broken.is_some() {
            return Ok(());
        }
        match &self.file {
            Some((storage, path)) => {
                let watch: Vec<String> = st.watched.keys().cloned().collect();
                write_mark(&**storage, path, self.epoch(), st.last_seq, true, &watch)
            }
            None => Ok(()),
        }
    }

    /// The rootpath's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Makes this the feed of a cluster member (see the module docs): every
    /// table but the member's own (`_raiz_*`) is watched from now on, and
    /// numbers follow the log from entry `next_index` on.
    pub fn follow_group(&self, next_index: u64) {
        let mut st = self.state.lock();
        // Entries before `next_index` were applied before this open: a
        // stream started now holds none of them, so its floor must be past
        // their numbers (a node positioned in one of them reloads).
        st.base = next_index << ENTRY_SHIFT;
        st.last_seq = st.last_seq.max(st.base);
        st.group_since = st.last_seq;
        self.group.store(true, Ordering::Release);
        self.any.store(true, Ordering::Release);
    }

    /// True on a cluster member (see [`Feed::follow_group`]): numbers only
    /// increase, with gaps between log entries.
    pub fn follows_group(&self) -> bool {
        self.group.load(Ordering::Acquire)
    }

    /// Sets the group's epoch (a member learns it from the group's log).
    pub fn set_epoch(&self, epoch: u64) {
        let old = self.epoch.swap(epoch, Ordering::AcqRel);
        if old != epoch {
            tracing::info!(
                old = format!("{old:016x}"),
                new = format!("{epoch:016x}"),
                "the change feed takes the group's epoch"
            );
        }
    }

    /// Numbers the changes that follow after log entry `index` (a cluster
    /// member, before it applies the entry).
    pub fn begin_entry(&self, index: u64) {
        self.state.lock().base = index << ENTRY_SHIFT;
    }

    /// Where a node at `seq` resumes: on a cluster member, the start of the
    /// log entry `seq` belongs to (see the module docs); elsewhere `seq`.
    pub fn resume_point(&self, seq: u64) -> u64 {
        if self.group.load(Ordering::Acquire) {
            // Entry I's changes are numbered after I << ENTRY_SHIFT.
            seq >> ENTRY_SHIFT << ENTRY_SHIFT
        } else {
            seq
        }
    }

    fn in_feed(&self, st: &State, table: &str) -> bool {
        st.watched.contains_key(table)
            || (self.group.load(Ordering::Acquire) && !table.starts_with("_raiz_"))
    }

    /// The last sequence number given out (entries up to it may not all be
    /// durable yet).
    pub fn last_seq(&self) -> u64 {
        self.state.lock().last_seq
    }

    /// Starts watching `table` (a no-op if it is watched); returns the number
    /// it is watched after: every later change to it is in the feed.
    pub fn watch(&self, table: &str) -> u64 {
        let mut st = self.state.lock();
        let last = st.last_seq;
        let name = table.to_lowercase();
        if self.group.load(Ordering::Acquire) {
            return st.group_since;
        }
        if let Some(&since) = st.watched.get(&name) {
            return since;
        }
        st.watched.insert(name, last);
        self.any.store(true, Ordering::Release);
        // Remembered across restarts (best effort: a failure only means a
        // node reloads after the next restart).
        if let Some((storage, path)) = &self.file {
            let watch: Vec<String> = st.watched.keys().cloned().collect();
            if let Err(e) = write_mark(&**storage, path, self.epoch(), last, false, &watch) {
                tracing::warn!(error = %e, "could not record the watched tables");
            }
        }
        last
    }

    /// The number `table` is watched after, if it is.
    pub fn watched_since(&self, table: &str) -> Option<u64> {
        let st = self.state.lock();
        if self.in_feed(&st, &table.to_lowercase())
            && !st.watched.contains_key(&table.to_lowercase())
        {
            return Some(st.group_since);
        }
        st.watched.get(&table.to_lowercase()).copied()
    }

    /// The watched tables.
    pub fn watched(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state.lock().watched.keys().cloned().collect();
        v.sort();
        v
    }

    /// True when any table is watched.
    pub(crate) fn active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Numbers and queues a commit's changes to watched tables (called with
    /// the tables' write locks held). `lsn`: where its log frames end (0 for
    /// unlogged tables).
    pub(crate) fn push_commit(&self, tables: Vec<TableChanges>, lsn: u64) {
        let mut st = self.state.lock();
        let tables: Vec<TableChanges> = tables
            .into_iter()
            .filter(|t| self.in_feed(&st, &t.table) && !t.changes.is_empty())
            .collect();
        if tables.is_empty() {
            return;
        }
        self.push(&mut st, FeedBody::Commit(tables), lsn);
    }

    /// Numbers and queues an event of a whole table (once it is done).
    pub(crate) fn push_event(&self, table: &str, event: TableEvent) {
        if !self.active() {
            return;
        }
        let mut st = self.state.lock();
        if !self.in_feed(&st, table) {
            return;
        }
        self.push(
            &mut st,
            FeedBody::Table {
                table: table.to_owned(),
                event,
            },
            0,
        );
    }

    fn push(&self, st: &mut State, body: FeedBody, lsn: u64) {
        st.last_seq = st.last_seq.max(st.base) + 1;
        let entry = FeedEntry {
            seq: st.last_seq,
            body,
        };
        if st.broken.is_some() {
            return;
        }
        st.queued_bytes += entry.weight();
        st.queue.push_back((entry, lsn));
        if st.queued_bytes > MAX_QUEUED_BYTES {
            st.broken = Some(format!(
                "more than {} MiB of changes not taken from the feed",
                MAX_QUEUED_BYTES >> 20
            ));
            st.queue.clear();
            st.queued_bytes = 0;
        }
        self.ready.notify_all();
    }

    /// Marks the feed broken (a commit's log sync failed: what follows is in
    /// doubt).
    pub(crate) fn break_with(&self, why: String) {
        let mut st = self.state.lock();
        if st.broken.is_none() {
            st.broken = Some(why);
        }
        st.queue.clear();
        st.queued_bytes = 0;
        self.ready.notify_all();
    }

    /// Wakes a reader waiting in [`Feed::take`] (the log became durable
    /// further).
    pub(crate) fn durable(&self) {
        if self.active() {
            self.ready.notify_all();
        }
    }

    /// Takes the entries ready to go, in order, waiting up to `wait` for one.
    /// Fails once the feed is broken.
    pub fn take(&self, wait: Duration) -> Result<Vec<FeedEntry>> {
        let deadline = std::time::Instant::now() + wait;
        let mut st = self.state.lock();
        loop {
            if let Some(why) = &st.broken {
                return Err(Error::FeedStopped {
                    reason: why.clone(),
                });
            }
            let durable = self.wal.as_ref().map_or(u64::MAX, |w| w.durable());
            let mut out = Vec::new();
            while let Some((_, lsn)) = st.queue.front() {
                if *lsn > durable {
                    break;
                }
                let (e, _) = st.queue.pop_front().expect("front exists");
                st.queued_bytes -= e.weight();
                out.push(e);
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            // A commit waiting for its sync (delayed durability) is not
            // announced when the sync happens: look again soon.
            let step = if st.queue.is_empty() {
                deadline - now
            } else {
                (deadline - now).min(Duration::from_millis(2))
            };
            self.ready.wait_for(&mut st, step);
        }
    }
}
