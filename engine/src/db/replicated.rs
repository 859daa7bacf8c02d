//! A database whose commits a group of members orders: a cluster member.
//!
//! With a [`Replicator`] installed ([`Database::set_replicator`]), no session
//! of the database applies a change itself. A write first asks the replicator
//! whether this member takes writes now (the leader, caught up with its term)
//! and gets the term as a token; the transaction keeps the token of its first
//! write. At commit the session hands its changes, as the change feed carries
//! them ([`TableChanges`]), to the replicator, which has the group agree on
//! them and returns once they are applied here — through
//! [`Session::apply_replicated`], on this member as on every other, in the
//! group's order. So nobody, here or elsewhere, sees a change the group has
//! not committed.
//!
//! Invariants:
//! - **The token guards the locks.** A transaction whose writes were taken
//!   under one term and whose commit finds another gets
//!   [`Error::Failover`]: the locks it held meant nothing to the new leader.
//! - **Recnos come from the leader.** An append reserves its recno on the
//!   leader as it does anywhere; the change carries it, and a member applying
//!   it reserves the recnos before it as a cache node's copy does. A recno
//!   whose transaction ended without storing it is a deleted blank record
//!   that goes through the group like any change (a rollback's blanks are a
//!   commit of their own); when that commit cannot be made the recno stays an
//!   orphan, offered again with the table's next commit, and a new term's
//!   first entry blanks every reservation left open below the end of each
//!   table (see `raiz-cluster`).
//! - **Only the apply path writes.** Commits made by
//!   [`Session::apply_replicated`] never store orphans of their own (that
//!   would be a change the others lack).
//! - **Changes to the set of tables and indexes** go through the group too
//!   ([`Ddl`]); the maintenance operations that rewrite a table (pack,
//!   rebuild, alter) are refused on a member until they are replicated.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::session::SessionInner;
use super::{Database, Session, Table};
use crate::error::{Error, Result};
use crate::feed::{RecordChange, TableChanges};
use crate::schema::{Schema, Value};
use crate::table::TableOptions;
use crate::txn::commit::commit_with;
use crate::txn::{Change, LockKey, TableHandle};

/// Orders a database's commits with a group of members (see the module docs).
pub trait Replicator: Send + Sync + std::fmt::Debug {
    /// Whether this member takes writes now. Returns the token (the term)
    /// under which a transaction's writes are taken, or
    /// [`Error::NotLeader`] / [`Error::NoQuorum`].
    fn writable(&self) -> Result<u64>;

    /// Has the group commit `changes`, taken under `token`; returns once they
    /// are applied on this member, or why not: the refusal the apply met (a
    /// unique key taken meanwhile: nothing of it applied anywhere), or a
    /// replication error ([`Error::is_replication`]).
    fn commit(&self, token: u64, changes: Vec<TableChanges>) -> Result<()>;

    /// Has the group make a change to the set of tables.
    fn ddl(&self, token: u64, op: Ddl) -> Result<()>;
}

/// A change to the set of tables, ordered with the commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Ddl {
    /// Creates a table.
    CreateTable {
        /// Its name.
        name: String,
        /// Its schema.
        schema: Schema,
        /// Its options.
        opts: TableOptions,
    },
    /// Drops a table.
    DropTable {
        /// Its name.
        name: String,
    },
    /// Creates an index on a table (built from its records on each member).
    CreateIndex {
        /// The table.
        table: String,
        /// The index.
        def: crate::index::IndexDef,
    },
    /// Drops an index.
    DropIndex {
        /// The table.
        table: String,
        /// The index's name.
        name: String,
    },
}

impl Database {
    /// Makes this database a cluster member's: from now on every commit and
    /// every change to the set of tables goes through `replicator`. Set once,
    /// before any session writes; a second one is refused.
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) -> Result<()> {
        self.runtime()
            .replicator
            .set(replicator)
            .map_err(|_| Error::Unsupported("this database has a replicator already".into()))
    }

    /// The replicator, on a cluster member.
    pub fn replicator(&self) -> Option<Arc<dyn Replicator>> {
        self.runtime().replicator()
    }

    /// Applies a change to the set of tables the group committed (the
    /// replicator's apply path). Creating a table that exists with the same
    /// schema, or dropping one that does not exist, is done already: an entry
    /// may be applied again after a crash, since the files change outside the
    /// log.
    pub fn apply_ddl(&self, op: &Ddl) -> Result<()> {
        match op {
            Ddl::CreateTable { name, schema, opts } => {
                match self.create_table_here(name, schema, opts.clone()) {
                    Err(Error::TableExists { .. }) => {
                        let s = self.session();
                        let t = s.open_table(name)?;
                        if *t.schema() == *schema {
                            Ok(())
                        } else {
                            Err(Error::TableExists {
                                table: name.clone(),
                            })
                        }
                    }
                    other => other,
                }
            }
            Ddl::DropTable { name } => match self.drop_table_here(name) {
                Err(Error::TableNotFound { .. }) => Ok(()),
                other => other,
            },
            Ddl::CreateIndex { table, def } => {
                let s = self.session();
                let mut t = s.open_table(table)?;
                match t.create_index_here(def, &mut |_, _| {}) {
                    Err(Error::IndexExists { .. })
                        if t.index_def(&def.name).as_ref() == Some(def) =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            }
            Ddl::DropIndex { table, name } => {
                let s = self.session();
                let mut t = s.open_table(table)?;
                match t.drop_index_here(name) {
                    Err(Error::NoSuchIndex { .. }) => Ok(()),
                    other => other,
                }
            }
        }
    }
}

impl Session {
    /// Applies changes the group committed, as one commit: the apply path of
    /// a cluster member (see the module docs). Each change is applied as its
    /// leader's session made it — an append at its recno (reserving the
    /// recnos before it when this member has not seen them), an update of a
    /// record that must exist, a delete flag, a blank — so a change refused
    /// here (a unique key) is refused on every member applying the same
    /// entries from the same state, and nothing of the commit is applied.
    /// Never synced: the group's log is the durable record, and the caller
    /// stores the entry's position in the same commit. The change feed hands
    /// the commit to cache nodes at once, without waiting for this engine's
    /// log (see `txn::commit::commit_with`).
    pub fn apply_replicated(&self, batch: &[(&Table, &[RecordChange])]) -> Result<()> {
        if self.in_transaction() {
            return Err(Error::Transaction(
                "replicated changes cannot be applied inside a transaction".into(),
            ));
        }
        let mut changes: Vec<(TableHandle, Change)> = Vec::new();
        for (t, list) in batch {
            let core = t.shared.core.read();
            for c in list.iter() {
                match c {
                    // The blank of a commit whose outcome its session could
                    // not learn, which the group committed after all:
                    // nothing to do.
                    RecordChange::Blank { recno } if core.is_stored(*recno)? => continue,
                    // A recno this member found empty when it opened the
                    // table after a crash (its commit was not applied yet)
                    // and stored as a deleted blank record: the commit
                    // takes it. (Any other record there stays a conflict,
                    // and the apply fails.)
                    RecordChange::Append { recno, values }
                        if core.is_stored(*recno)? && is_deleted_blank(&core, *recno)? =>
                    {
                        changes.push((
                            t.shared.clone(),
                            Change::Put {
                                recno: *recno,
                                values: Some(values.clone()),
                                deleted: Some(false),
                            },
                        ));
                        continue;
                    }
                    _ => {}
                }
                changes.push((t.shared.clone(), to_change(c)));
            }
        }
        self.commit_applied(&changes).map(drop)
    }

    /// Stores records of `table` as a snapshot of the group holds them, as
    /// one commit without locks: each `(recno, values, deleted)` becomes that
    /// record whatever was there (`values` None keeps the record's values; a
    /// missing record is created, reserving the recnos before it). A member
    /// installing a snapshot brings its tables to the snapshot's state with
    /// these (see `raiz_cluster::snapshot`). Never synced, like
    /// [`Session::apply_replicated`]; the change feed carries it as updates.
    pub fn put_records(
        &self,
        table: &Table,
        records: &[(u64, Option<Vec<Value>>, bool)],
    ) -> Result<()> {
        if self.in_transaction() {
            return Err(Error::Transaction(
                "records cannot be put inside a transaction".into(),
            ));
        }
        let changes: Vec<(TableHandle, Change)> = records
            .iter()
            .map(|(recno, values, deleted)| {
                (
                    table.shared.clone(),
                    Change::Put {
                        recno: *recno,
                        values: values.clone(),
                        deleted: Some(*deleted),
                    },
                )
            })
            .collect();
        self.commit_applied(&changes).map(drop)
    }

    /// Commits changes a member applies (not synced: the group's log is the
    /// durable record; handed to the change feed at once).
    fn commit_applied(&self, changes: &[(TableHandle, Change)]) -> Result<Vec<u64>> {
        let id = self
            .inner
            .db
            .runtime()
            .next_txn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        commit_with(changes, id, true, false)
    }

    /// Blanks every recno reserved and not stored at or below the end of
    /// `table`, and forgets the reservations above it: a new term's first
    /// entry does this on every member, since no transaction of an earlier
    /// term can store them any more. Returns the recnos blanked.
    pub fn settle_reservations(&self, table: &Table) -> Result<Vec<u64>> {
        let gaps = table.shared.core.write().forget_reservations();
        if gaps.is_empty() {
            return Ok(gaps);
        }
        let changes: Vec<(TableHandle, Change)> = gaps
            .iter()
            .map(|&recno| (table.shared.clone(), Change::Blank { recno }))
            .collect();
        self.commit_applied(&changes)?;
        Ok(gaps)
    }
}

/// The error a transaction gets when the term changed under it.
pub(crate) fn failover(was: u64, now: u64) -> Error {
    Error::Failover {
        reason: format!(
            "the leader changed (term {was} to {now}) while the transaction was open; its locks are gone: roll back and retry"
        ),
    }
}

impl SessionInner {
    /// A write outside a transaction on a cluster member: reserve (an
    /// append), lock, have the group commit it, unlock.
    pub(super) fn write_routed(
        &self,
        r: &dyn Replicator,
        token: u64,
        shared: &TableHandle,
        change: Change,
    ) -> Result<u64> {
        let (change, key) = match change {
            Change::Append { mut values, .. } => {
                let recno = self.reserve_append(shared, &mut values)?;
                (Change::Append { recno, values }, None)
            }
            other => {
                let key = LockKey::Record(shared.lock_name.clone(), other.recno());
                (other, Some(key))
            }
        };
        let recno = change.recno();
        let newly = match &key {
            Some(k) => self.lock(shared, k)?,
            None => false,
        };
        let changes = [(shared.clone(), change)];
        let result = self.commit_routed(r, token, &changes);
        if let (true, Some(k)) = (newly, &key) {
            shared.rt.locks.unlock(self.id, k);
        }
        if let Err(e) = &result {
            self.after_routed_failure(e, &changes);
        }
        result.map(|()| recno)
    }

    /// Hands `changes` to the group, with the orphans of the tables they
    /// touch first (recnos earlier blanks could not store).
    pub(super) fn commit_routed(
        &self,
        r: &dyn Replicator,
        token: u64,
        changes: &[(TableHandle, Change)],
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut all: Vec<(TableHandle, Change)> = Vec::new();
        for (t, _) in changes {
            if all.iter().any(|(x, _)| Arc::ptr_eq(x, t)) {
                continue;
            }
            for recno in t.core.read().reserved.orphans() {
                all.push((t.clone(), Change::Blank { recno }));
            }
        }
        let grouped = if all.is_empty() {
            group(changes)
        } else {
            all.extend(changes.iter().cloned());
            group(&all)
        };
        r.commit(token, grouped)
    }

    /// After a commit the group did not confirm: when its outcome is unknown
    /// (a replication error) the recnos it appended are offered to the group
    /// as blanks — a no-op where the commit made it — and kept as orphans
    /// when that fails too. (A refusal the apply met was blanked by the
    /// apply, on every member.)
    pub(super) fn after_routed_failure(&self, e: &Error, changes: &[(TableHandle, Change)]) {
        if !e.is_replication() {
            return;
        }
        let slots: Vec<(TableHandle, u64)> = changes
            .iter()
            .filter_map(|(t, c)| match c {
                Change::Append { recno, .. } | Change::Blank { recno } => Some((t.clone(), *recno)),
                _ => None,
            })
            .collect();
        if let Err(e) = self.blank(slots) {
            tracing::warn!(session = self.id, error = %e, "could not blank the recnos of a commit the cluster did not confirm");
        }
    }
}

/// True when `recno` holds a deleted record with every field empty (what a
/// rolled-back append or a recno a crash left leaves).
fn is_deleted_blank(core: &crate::table::TableCore, recno: u64) -> Result<bool> {
    let r = core.read(recno)?;
    Ok(r.is_deleted() && r.values() == core.schema.empty_record().as_slice())
}

/// A session's change as the group carries it.
pub(crate) fn to_record_change(c: &Change) -> RecordChange {
    match c {
        Change::Append { recno, values } => RecordChange::Append {
            recno: *recno,
            values: values.clone(),
        },
        Change::Update { recno, values } => RecordChange::Update {
            recno: *recno,
            values: values.clone(),
        },
        Change::SetDeleted { recno, deleted } => RecordChange::SetDeleted {
            recno: *recno,
            deleted: *deleted,
        },
        Change::Blank { recno } => RecordChange::Blank { recno: *recno },
        Change::Put {
            recno,
            values,
            deleted,
        } => match (values, deleted) {
            (Some(values), _) => RecordChange::Update {
                recno: *recno,
                values: values.clone(),
            },
            (None, d) => RecordChange::SetDeleted {
                recno: *recno,
                deleted: d.unwrap_or(false),
            },
        },
    }
}

/// A change the group carries as a member applies it.
fn to_change(c: &RecordChange) -> Change {
    match c {
        RecordChange::Append { recno, values } => Change::Append {
            recno: *recno,
            values: values.clone(),
        },
        RecordChange::Update { recno, values } => Change::Update {
            recno: *recno,
            values: values.clone(),
        },
        RecordChange::SetDeleted { recno, deleted } => Change::SetDeleted {
            recno: *recno,
            deleted: *deleted,
        },
        RecordChange::Blank { recno } => Change::Blank { recno: *recno },
    }
}

/// Groups a commit's changes by table, in order, as the group carries them.
pub(crate) fn group(changes: &[(TableHandle, Change)]) -> Vec<TableChanges> {
    let mut out: Vec<(TableHandle, TableChanges)> = Vec::new();
    for (t, c) in changes {
        let i = match out.iter().position(|(x, _)| Arc::ptr_eq(x, t)) {
            Some(i) => i,
            None => {
                out.push((
                    t.clone(),
                    TableChanges {
                        table: t.name.clone(),
                        changes: Vec::new(),
                    },
                ));
                out.len() - 1
            }
        };
        out[i].1.changes.push(to_record_change(c));
    }
    out.into_iter().map(|(_, c)| c).collect()
}
