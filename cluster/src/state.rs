//! The state machine: the group's committed entries applied to a member's
//! rootpath, in log order.
//!
//! Invariants:
//! - **The position travels with the data.** Each entry is applied as one
//!   engine commit that also updates record 1 of the member's own table
//!   [`META_TABLE`] with the entry's log id, so whatever state recovery
//!   restores after a crash is the state after some entry, and that entry's
//!   id is what [`RaftStateMachine::applied_state`] reports: openraft applies
//!   the entries after it again, from the group's log. The commits are not
//!   synced (delayed durability): the group's log is the durable record.
//!   The membership (record 2) is updated in the same commit as the position
//!   of a membership entry.
//! - **Every member comes to the same outcome.** A change refused by the
//!   engine for what the data holds — a unique key taken by an earlier
//!   entry, a record that is not there, a table dropped — is refused on every
//!   member applying the same entries from the same state: nothing of the
//!   entry is applied, the recnos it appended become deleted blank records,
//!   and the refusal is its [`Outcome`]. An error of the member's own
//!   environment (I/O, a full disk, a damaged page) is not a refusal: the
//!   state machine stops with a storage error, openraft stops the member,
//!   and it applies the entry again once restarted, rather than diverge.
//! - **A new term settles old reservations.** The blank entry a leader
//!   commits at the start of its term blanks, on every member, the recnos
//!   reserved and not stored at or below each table's end and forgets the
//!   rest (see `raiz_engine::db::replicated`); the leader takes writes only
//!   once it has applied that entry ([`Applied::ready_term`]).

// openraft's traits return its `StorageError`, large as it is.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    Snapshot, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use raiz_engine::db::Ddl;
use raiz_engine::feed::{RecordChange, TableChanges};
use raiz_engine::schema::Memo;
use raiz_engine::{
    Database, Error as EngineError, Field, FieldType, Schema, Session, Table, TableOptions, Value,
};

use crate::snapshot::{self, SnapshotFile, Snapshots};
use crate::types::{Command, Member, Outcome, Raiz};

/// The member's own table: record 1 holds the log id of the last entry
/// applied, record 2 the membership. Names starting `_raiz_` are refused to
/// clients on a member.
pub const META_TABLE: &str = "_raiz_cluster";

/// Tables clients of a member may not change.
pub fn is_internal(table: &str) -> bool {
    table.starts_with("_raiz_")
}

/// How long a drop waits for this member's own handles on the table to go.
const DROP_WAIT: Duration = Duration::from_secs(30);

/// A snapshot whose chunks stopped coming this long ago is no longer being
/// received (the leader went, or moved on).
const RECEIVING_SILENCE_MS: u64 = 2_000;

/// Refusals kept for their proposers to collect.
const KEPT_REFUSALS: usize = 4096;

type Membership = StoredMembership<u64, Member>;

/// Turns this member's elections off (false) and on again.
pub type Elections = Box<dyn Fn(bool) + Send + Sync>;

/// What the state machine shares with the member's replicator.
#[derive(Default)]
pub struct Applied {
    /// The term whose first entry this member applied as its leader: it takes
    /// writes in that term only.
    pub ready_term: AtomicU64,
    /// The group's epoch, once its genesis entry is applied here (0 before).
    pub epoch: AtomicU64,
    /// Engine errors of entries proposed here and refused, by log index.
    refusals: Mutex<BTreeMap<u64, EngineError>>,
    /// Set once Raft runs: an installation turns elections off meanwhile
    /// (the leader hears nothing from the member until it ends, and a member
    /// that stood for election then would only disrupt the group).
    pub elections: std::sync::OnceLock<Elections>,
    /// Holders of [`Applied::quiet`].
    quiet: Mutex<u32>,
    /// When the last chunk of a snapshot being received was written (ms
    /// since the Unix epoch).
    receiving: Arc<AtomicU64>,
}

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applied")
            .field("ready_term", &self.ready_term)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Applied {
    /// Keeps this member from standing for election until every guard is
    /// dropped.
    pub fn quiet(self: &Arc<Self>) -> Quiet {
        let mut n = self.quiet.lock();
        *n += 1;
        if *n == 1 {
            if let Some(e) = self.elections.get() {
                e(false);
            }
        }
        Quiet(self.clone())
    }
}

/// Elections off until dropped (see [`Applied::quiet`]).
pub struct Quiet(Arc<Applied>);

impl Drop for Quiet {
    fn drop(&mut self) {
        let mut n = self.0.quiet.lock();
        *n -= 1;
        if *n == 0 {
            if let Some(e) = self.0.elections.get() {
                e(true);
            }
        }
    }
}

impl Applied {
    /// The engine's refusal of the entry at `index`, if it was proposed here.
    pub fn take_refusal(&self, index: u64) -> Option<EngineError> {
        self.refusals.lock().remove(&index)
    }

    fn refused(&self, index: u64, e: EngineError) {
        let mut r = self.refusals.lock();
        r.insert(index, e);
        while r.len() > KEPT_REFUSALS {
            r.pop_first();
        }
    }
}

/// openraft's state machine over a member's database (see the module docs).
pub struct StateMachine {
    id: u64,
    db: Database,
    session: Session,
    meta: Table,
    tables: HashMap<String, Table>,
    applied: Option<LogId<u64>>,
    membership: Membership,
    /// The group's epoch (0 until its genesis entry is applied).
    epoch: u64,
    shared: Arc<Applied>,
    snapshots: Arc<Snapshots>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("id", &self.id)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

fn meta_schema() -> Schema {
    Schema::new(vec![
        Field::new("TERM", FieldType::Int64),
        Field::new("NODE", FieldType::Int64),
        Field::new("IDX", FieldType::Int64),
        Field::new("MEMB", FieldType::Memo),
    ])
}

fn engine(e: EngineError) -> crate::Error {
    crate::Error::Engine(e)
}

impl StateMachine {
    /// The state machine of member `id` over `db`, which must not have a
    /// replicator yet when its table is first created. A database behind the
    /// current snapshot in `snapshots` is brought to it first (see
    /// [`crate::snapshot`]).
    pub fn open(id: u64, db: Database, snapshots: Arc<Snapshots>) -> crate::Result<StateMachine> {
        if !db.table_exists(META_TABLE).map_err(engine)? {
            db.create_table(META_TABLE, &meta_schema(), TableOptions::default())
                .map_err(engine)?;
        }
        let session = db.session();
        let mut meta = session.open_table(META_TABLE).map_err(engine)?;
        if meta.record_count() < 2 {
            let empty = postcard::to_allocvec(&Membership::default()).expect("encodes");
            while meta.record_count() < 2 {
                let memb = if meta.record_count() == 1 {
                    Value::Memo(Memo::Data(empty.clone()))
                } else {
                    Value::Memo(Memo::Empty)
                };
                meta.append(&[Value::Int64(0), Value::Int64(0), Value::Int64(0), memb])
                    .map_err(engine)?;
            }
        }
        let (applied, membership) = position_in(&db, &meta)?;
        let epoch = epoch_in(&meta)?;
        // The change feed follows the group's log from the next entry on.
        db.feed().follow_group(applied.map_or(0, |l| l.index) + 1);
        if epoch != 0 {
            db.feed().set_epoch(epoch);
        }
        let shared: Arc<Applied> = Arc::default();
        shared.epoch.store(epoch, Ordering::SeqCst);
        let mut sm = StateMachine {
            id,
            db,
            session,
            meta,
            tables: HashMap::new(),
            applied,
            membership,
            epoch,
            shared,
            snapshots,
        };
        if let Some(snap) = sm.snapshots.current() {
            if snap.last_log_id > sm.applied {
                tracing::warn!(
                    applied = ?sm.applied.map(|l| l.index),
                    snapshot = ?snap.last_log_id.map(|l| l.index),
                    "this member's database is behind its current snapshot (an installation interrupted, or applies lost): installing it"
                );
                let (meta, file) = sm.snapshots.open_current()?.expect("current");
                let (copy, work) = sm.snapshots.unpack(&file)?;
                let r = sm.install_from(&copy, &meta);
                sm.snapshots.done_with(copy, &work);
                r?;
            }
        }
        Ok(sm)
    }

    /// What the replicator shares with this state machine.
    pub fn shared(&self) -> Arc<Applied> {
        self.shared.clone()
    }

    /// The last entry applied.
    pub fn applied(&self) -> Option<LogId<u64>> {
        self.applied
    }

    fn table(&mut self, name: &str) -> Result<&Table, EngineError> {
        if !self.tables.contains_key(name) {
            let t = self.session.open_table(name)?;
            self.tables.insert(name.to_owned(), t);
        }
        Ok(&self.tables[name])
    }

    /// Record 1 (and 2 — the membership and the group's epoch — when
    /// `membership`) as of `log_id`.
    fn position(&self, log_id: LogId<u64>, membership: bool) -> Vec<RecordChange> {
        let mut out = vec![RecordChange::Update {
            recno: 1,
            values: vec![
                Value::Int64(log_id.leader_id.term as i64),
                Value::Int64(log_id.leader_id.node_id as i64),
                Value::Int64(log_id.index as i64 + 1),
                Value::Memo(Memo::Empty),
            ],
        }];
        if membership {
            let bytes = postcard::to_allocvec(&self.membership).expect("encodes");
            out.push(RecordChange::Update {
                recno: 2,
                values: vec![
                    Value::Int64(0),
                    Value::Int64(0),
                    Value::Int64(self.epoch as i64),
                    Value::Memo(Memo::Data(bytes)),
                ],
            });
        }
        out
    }

    /// Applies `changes` with the position of `log_id`, as one commit.
    fn commit_with_position(
        &mut self,
        log_id: LogId<u64>,
        changes: &[TableChanges],
        membership: bool,
    ) -> Result<(), EngineError> {
        for t in changes {
            if is_internal(&t.table) {
                return Err(EngineError::Unsupported(format!(
                    "table {} belongs to the cluster member",
                    t.table
                )));
            }
            self.table(&t.table)?;
        }
        let position = self.position(log_id, membership);
        let mut batch: Vec<(&Table, &[RecordChange])> = changes
            .iter()
            .map(|t| (&self.tables[&t.table], t.changes.as_slice()))
            .collect();
        batch.push((&self.meta, &position));
        self.session.apply_replicated(&batch)
    }

    fn apply_one(&mut self, entry: Entry<Raiz>) -> Result<Outcome, StorageError<u64>> {
        let log_id = entry.log_id;
        self.db.feed().begin_entry(log_id.index);
        let outcome = match entry.payload {
            EntryPayload::Blank => {
                self.settle_reservations().map_err(|e| fatal(log_id, e))?;
                self.commit_with_position(log_id, &[], false)
                    .map_err(|e| fatal(log_id, e))?;
                if log_id.leader_id.node_id == self.id {
                    self.shared
                        .ready_term
                        .fetch_max(log_id.leader_id.term, Ordering::SeqCst);
                }
                Outcome::default()
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(log_id), m);
                self.commit_with_position(log_id, &[], true)
                    .map_err(|e| fatal(log_id, e))?;
                Outcome::default()
            }
            EntryPayload::Normal(Command::Commit { changes }) => {
                match self.commit_with_position(log_id, &changes, false) {
                    Ok(()) => Outcome::default(),
                    Err(e) if environmental(&e) => return Err(fatal(log_id, e)),
                    Err(e) => {
                        let blanks = blanks_of(&changes);
                        // The table may be the reason (dropped): its blanks
                        // have nowhere to go.
                        let blanks: Vec<TableChanges> = blanks
                            .into_iter()
                            .filter(|t| self.table(&t.table).is_ok())
                            .collect();
                        self.commit_with_position(log_id, &blanks, false)
                            .map_err(|e| fatal(log_id, e))?;
                        self.refuse(log_id, e)
                    }
                }
            }
            EntryPayload::Normal(Command::Genesis { epoch }) => {
                // The first one committed names the group; any later one
                // (proposed by a leader that had not applied the first yet)
                // changes nothing.
                let first = self.epoch == 0 && epoch != 0;
                if first {
                    self.epoch = epoch;
                }
                self.commit_with_position(log_id, &[], first)
                    .map_err(|e| fatal(log_id, e))?;
                if first {
                    self.db.feed().set_epoch(epoch);
                    self.shared.epoch.store(epoch, Ordering::SeqCst);
                }
                Outcome::default()
            }
            EntryPayload::Normal(Command::Ddl(op)) => match self.apply_ddl(&op) {
                Ok(()) => {
                    self.commit_with_position(log_id, &[], false)
                        .map_err(|e| fatal(log_id, e))?;
                    Outcome::default()
                }
                Err(e) if environmental(&e) => return Err(fatal(log_id, e)),
                Err(e) => {
                    self.commit_with_position(log_id, &[], false)
                        .map_err(|e| fatal(log_id, e))?;
                    self.refuse(log_id, e)
                }
            },
        };
        self.applied = Some(log_id);
        Ok(outcome)
    }

    /// Brings the database to the state of the snapshot copy `src`, whose
    /// metadata is `meta`, and stores its position (see [`crate::snapshot`]).
    fn install_from(&mut self, src: &Database, meta: &snapshot::Meta) -> crate::Result<()> {
        let snapshots = self.snapshots.clone();
        let _busy = snapshots.exclusive();
        let started = Instant::now();
        let db = self.db.clone();
        let report =
            snapshot::install::install(&self.db, &self.session, &mut self.tables, src, &|name| {
                drop_waiting(&db, name)
            })
            .map_err(engine)?;
        self.membership = meta.last_membership.clone();
        let epoch = read_epoch(src)?;
        if self.epoch == 0 && epoch != 0 {
            self.epoch = epoch;
            self.db.feed().set_epoch(epoch);
            self.shared.epoch.store(epoch, Ordering::SeqCst);
        }
        if let Some(id) = meta.last_log_id {
            self.commit_with_position(id, &[], true).map_err(engine)?;
        }
        // Durable before openraft drops the log the snapshot covers.
        self.db.checkpoint().map_err(engine)?;
        self.applied = meta.last_log_id;
        tracing::info!(
            index = ?meta.last_log_id.map(|l| l.index),
            dropped = report.dropped,
            created = report.created,
            records = report.records,
            secs = started.elapsed().as_secs_f64(),
            "snapshot installed"
        );
        Ok(())
    }

    fn refuse(&self, log_id: LogId<u64>, e: EngineError) -> Outcome {
        let message = e.to_string();
        tracing::debug!(index = log_id.index, error = %message, "entry refused on apply");
        if log_id.leader_id.node_id == self.id {
            self.shared.refused(log_id.index, e);
        }
        Outcome {
            refused: Some(message),
        }
    }

    fn apply_ddl(&mut self, op: &Ddl) -> Result<(), EngineError> {
        if let Ddl::CreateTable { name, .. }
        | Ddl::DropTable { name }
        | Ddl::CreateIndex { table: name, .. }
        | Ddl::DropIndex { table: name, .. } = op
        {
            if is_internal(name) {
                return Err(EngineError::Unsupported(format!(
                    "table {name} belongs to the cluster member"
                )));
            }
        }
        let Ddl::DropTable { name } = op else {
            return self.db.apply_ddl(op);
        };
        self.tables.remove(&name.to_ascii_lowercase());
        drop_waiting(&self.db, name)
    }

    fn settle_reservations(&mut self) -> Result<(), EngineError> {
        for name in self.db.list_tables()? {
            if is_internal(&name) {
                continue;
            }
            match self.table(&name) {
                Ok(_) => {}
                Err(EngineError::TableNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let gaps = self.session.settle_reservations(&self.tables[&name])?;
            if !gaps.is_empty() {
                tracing::info!(table = %name, recnos = gaps.len(), "recnos left by the last term stored as deleted blank records");
            }
        }
        Ok(())
    }
}

/// Drops table `name`, waiting a while for readers on this member to let
/// go of it.
fn drop_waiting(db: &Database, name: &str) -> Result<(), EngineError> {
    let op = Ddl::DropTable {
        name: name.to_owned(),
    };
    let start = Instant::now();
    loop {
        match db.apply_ddl(&op) {
            Err(EngineError::TableInUse { .. }) if start.elapsed() < DROP_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The position and membership stored in `meta` (the member's table of
/// `db`).
fn position_in(db: &Database, meta: &Table) -> crate::Result<(Option<LogId<u64>>, Membership)> {
    let pos = meta.read(1).map_err(engine)?;
    let int = |i: usize| pos.values()[i].as_i64().unwrap_or(0);
    let applied = (int(2) > 0).then(|| {
        LogId::new(
            CommittedLeaderId::new(int(0) as u64, int(1) as u64),
            int(2) as u64 - 1,
        )
    });
    let bytes = meta.read_memo(2, "MEMB").map_err(engine)?;
    let membership: Membership =
        postcard::from_bytes(&bytes).map_err(|e| crate::Error::Corrupt {
            path: db.root().join(META_TABLE),
            offset: 0,
            reason: format!("the stored membership does not decode: {e}"),
        })?;
    Ok((applied, membership))
}

/// The group's epoch stored in `meta` (0: none yet).
fn epoch_in(meta: &Table) -> crate::Result<u64> {
    let r = meta.read(2).map_err(engine)?;
    Ok(r.values()[2].as_i64().unwrap_or(0) as u64)
}

/// The group's epoch in a copy of a member's database (0: none yet).
pub fn read_epoch(db: &Database) -> crate::Result<u64> {
    if !db.table_exists(META_TABLE).map_err(engine)? {
        return Ok(0);
    }
    let meta = db.session().open_table(META_TABLE).map_err(engine)?;
    if meta.record_count() < 2 {
        return Ok(0);
    }
    epoch_in(&meta)
}

/// The entry a copy of a member's database is the state after, and the
/// membership then (a copy without the member's table is the state before
/// any entry).
pub fn read_position(db: &Database) -> crate::Result<(Option<LogId<u64>>, Membership)> {
    if !db.table_exists(META_TABLE).map_err(engine)? {
        return Ok((None, Membership::default()));
    }
    let meta = db.session().open_table(META_TABLE).map_err(engine)?;
    if meta.record_count() < 2 {
        return Ok((None, Membership::default()));
    }
    position_in(db, &meta)
}

/// The recnos a commit appended (or blanked), as blanks.
fn blanks_of(changes: &[TableChanges]) -> Vec<TableChanges> {
    changes
        .iter()
        .map(|t| TableChanges {
            table: t.table.clone(),
            changes: t
                .changes
                .iter()
                .filter_map(|c| match c {
                    RecordChange::Append { recno, .. } | RecordChange::Blank { recno } => {
                        Some(RecordChange::Blank { recno: *recno })
                    }
                    _ => None,
                })
                .collect(),
        })
        .filter(|t| !t.changes.is_empty())
        .collect()
}

/// True for an error of the member's own environment rather than of the
/// entry: the member must stop rather than refuse.
pub fn environmental(e: &EngineError) -> bool {
    use EngineError as E;
    matches!(
        e,
        E::Io { .. }
            | E::DiskFull { .. }
            | E::SyncFailed { .. }
            | E::Poisoned { .. }
            | E::Checksum { .. }
            | E::CorruptPage { .. }
            | E::CorruptRecord { .. }
            | E::BadMagic { .. }
            | E::UnsupportedVersion { .. }
            | E::RootpathLocked { .. }
            | E::TableInUse { .. }
            | E::LockConflict { .. }
            | E::LockTimeout { .. }
            | E::Deadlock { .. }
            | E::FeedStopped { .. }
            | E::Backup { .. }
    ) || e.is_replication()
}

fn fatal(log_id: LogId<u64>, e: EngineError) -> StorageError<u64> {
    tracing::error!(index = log_id.index, error = %e, "a committed entry could not be applied; the member stops");
    StorageError::IO {
        source: StorageIOError::apply(log_id, AnyError::new(&e)),
    }
}

/// Builds a snapshot of the member's database while entries go on being
/// applied (see [`crate::snapshot`]).
#[derive(Debug)]
pub struct Builder {
    db: Database,
    snapshots: Arc<Snapshots>,
}

fn snapshot_error(meta: Option<&snapshot::Meta>, e: crate::Error) -> StorageError<u64> {
    tracing::error!(error = %e, "snapshot");
    StorageError::IO {
        source: StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e)),
    }
}

impl RaftSnapshotBuilder<Raiz> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Raiz>, StorageError<u64>> {
        let (db, snapshots) = (self.db.clone(), self.snapshots.clone());
        let built = tokio::task::spawn_blocking(move || {
            snapshots.build(&db, read_position)?;
            // The current one: this build's, or one installed meanwhile.
            Ok::<_, crate::Error>(snapshots.open_current()?.expect("current"))
        })
        .await
        .map_err(|e| snapshot_error(None, crate::Error::Raft(e.to_string())))?
        .map_err(|e| snapshot_error(None, e))?;
        Ok(Snapshot {
            meta: built.0,
            snapshot: Box::new(built.1),
        })
    }
}

impl RaftStateMachine<Raiz> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Raiz>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<Raiz>> = entries.into_iter().collect();
        tokio::task::block_in_place(|| entries.into_iter().map(|e| self.apply_one(e)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<u64>> {
        let f = tokio::task::block_in_place(|| self.snapshots.incoming())
            .map_err(|e| snapshot_error(None, e))?
            .note_writes(self.shared.receiving.clone());
        // The leader sends nothing else while it streams the snapshot: this
        // member stays out of elections until chunks stop coming (then the
        // installation keeps it out until it ends).
        let quiet = self.shared.quiet();
        let receiving = self.shared.receiving.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let last = receiving.load(Ordering::Relaxed);
                if snapshot::file::now_ms().saturating_sub(last) > RECEIVING_SILENCE_MS {
                    break;
                }
            }
            drop(quiet);
        });
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &snapshot::Meta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<u64>> {
        tokio::task::block_in_place(|| {
            if meta.last_log_id <= self.applied {
                // Nothing newer than what is applied: kept to send on.
                return self.snapshots.keep(meta, snapshot.path());
            }
            let _quiet = self.shared.quiet();
            let (copy, work) = self.snapshots.unpack(&snapshot)?;
            let r = self
                .snapshots
                .keep(meta, snapshot.path())
                .and_then(|()| self.install_from(&copy, meta));
            self.snapshots.done_with(copy, &work);
            r
        })
        .map_err(|e| snapshot_error(Some(meta), e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Raiz>>, StorageError<u64>> {
        let current = tokio::task::block_in_place(|| self.snapshots.open_current())
            .map_err(|e| snapshot_error(None, e))?;
        Ok(current.map(|(meta, f)| Snapshot {
            meta,
            snapshot: Box::new(f),
        }))
    }
}
