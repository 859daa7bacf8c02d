//! Committing a transaction's changes.
//!
//! Under the commit gate (shared; a checkpoint takes it exclusively) the tables
//! concerned are write-locked in name order, so concurrent commits never
//! deadlock on them. Logged tables apply their changes while capturing the pages
//! they touch; the captured pages and counters are written to the log with a
//! commit frame; only then are the table locks released, and the committer waits
//! for the log to be durable (sharing the sync with concurrent committers) unless
//! it asked for delayed durability. Any failure before the log write puts every
//! captured page and counter back: nothing of the transaction remains.
//!
//! Unlogged and temporary tables have no log to make them atomic: their changes
//! are applied after the logged part succeeded.

use std::sync::Arc;

use crate::error::Result;
use crate::log::record::Entry;
use crate::log::Wal;
use crate::table::{Captured, TableCore, Undo, DEFER_FROM};

use super::{Change, Runtime, TableHandle, TableShared};

/// Applies `changes` atomically (for logged tables) and durably (unless
/// `delayed`). Returns the recno of each change, in order (appends with recno
/// 0 get theirs here).
pub(crate) fn commit(
    changes: &[(TableHandle, Change)],
    txn: u64,
    delayed: bool,
) -> Result<Vec<u64>> {
    commit_with(changes, txn, delayed, true)
}

/// [`commit`]; with `feed_waits` false the change feed hands the commit on
/// without waiting for the log to be durable: a cluster member's apply,
/// whose changes the group's log already holds durably (a crash before the
/// engine's log is synced gets a new epoch, and the entries are applied
/// again from the group's log).
pub(crate) fn commit_with(
    changes: &[(TableHandle, Change)],
    txn: u64,
    delayed: bool,
    feed_waits: bool,
) -> Result<Vec<u64>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut tables: Vec<Arc<TableShared>> = Vec::new();
    for (t, _) in changes {
        if !tables.iter().any(|x| Arc::ptr_eq(x, t)) {
            tables.push(Arc::clone(t));
        }
    }
    tables.sort_by(|a, b| {
        (Arc::as_ptr(&a.rt) as usize, &a.name).cmp(&(Arc::as_ptr(&b.rt) as usize, &b.name))
    });
    let mut runtimes: Vec<Arc<Runtime>> = Vec::new();
    for t in &tables {
        if !runtimes.iter().any(|r| Arc::ptr_eq(r, &t.rt)) {
            runtimes.push(t.rt.clone());
        }
    }
    let gates: Vec<_> = runtimes.iter().map(|r| r.gate.read()).collect();
    let mut guards: Vec<_> = tables.iter().map(|t| t.core.write()).collect();
    // Recnos earlier transactions of these tables left unstored (their blank
    // records could not be written) are stored first, in this commit.
    // (Not on a cluster member: there a change of its own would be one the
    // others lack; its sessions offer orphans to the group instead.)
    let replicated = runtimes.iter().any(|r| r.replicator().is_some());
    let orphans: Vec<(usize, Change)> = guards
        .iter()
        .filter(|_| !replicated)
        .enumerate()
        .flat_map(|(i, g)| {
            g.reserved
                .orphans()
                .into_iter()
                .map(move |recno| (i, Change::Blank { recno }))
        })
        .collect();
    let located: Vec<(usize, &Change)> = orphans
        .iter()
        .map(|(i, c)| (*i, c))
        .chain(changes.iter().map(|(t, c)| {
            let i = tables
                .iter()
                .position(|x| Arc::ptr_eq(x, t))
                .expect("collected above");
            (i, c)
        }))
        .collect();
    let mut cores: Vec<&mut TableCore> = guards.iter_mut().map(|g| &mut **g).collect();
    let (mut recnos, logged) = apply_locked(&mut cores, &located, txn)?;
    for core in cores.iter_mut() {
        core.commits += 1;
    }
    // Numbered while the tables are still locked (see `crate::feed`).
    let lsn = match &logged {
        Some((_, l)) if feed_waits => *l,
        _ => 0,
    };
    for rt in &runtimes {
        if rt.feed.active() {
            let mine: Vec<usize> = (0..tables.len())
                .filter(|&i| Arc::ptr_eq(&tables[i].rt, rt))
                .collect();
            let views: Vec<&TableCore> = mine.iter().map(|&i| &*cores[i]).collect();
            let (located, recnos): (Vec<(usize, &Change)>, Vec<u64>) = located
                .iter()
                .zip(&recnos)
                .filter_map(|(&(i, c), &r)| mine.iter().position(|&m| m == i).map(|j| ((j, c), r)))
                .unzip();
            match feed_changes(&views, &located, &recnos) {
                Ok(c) => rt.feed.push_commit(c, lsn),
                Err(e) => rt
                    .feed
                    .break_with(format!("reading back a commit's serial: {e}")),
            }
        }
    }
    recnos.drain(..orphans.len());
    drop(cores);
    drop(guards);
    drop(gates);
    if let Some((w, lsn)) = logged {
        if !delayed {
            if let Err(e) = w.flush_to(lsn) {
                for rt in &runtimes {
                    rt.feed
                        .break_with(format!("a commit's log sync failed: {e}"));
                }
                return Err(e);
            }
            for rt in &runtimes {
                rt.feed.durable();
            }
        }
        for rt in &runtimes {
            if rt.wal.as_ref().is_some_and(|rw| Arc::ptr_eq(rw, &w)) {
                // The commit is durable: a failing checkpoint must not report it
                // as failed. (The checkpoint poisoned the log; later writes say so.)
                if let Err(e) = super::maybe_checkpoint(rt) {
                    tracing::error!(error = %e, "checkpoint after a commit failed");
                }
            }
        }
    }
    for rt in &runtimes {
        rt.stats
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(recnos)
}

/// A commit's changes as the change feed carries them, per table (in the
/// order of `cores`), with the recnos `apply_locked` gave. An append's
/// serial number, assigned while it applied, is read back from its record.
pub(crate) fn feed_changes(
    cores: &[&TableCore],
    changes: &[(usize, &Change)],
    recnos: &[u64],
) -> Result<Vec<crate::feed::TableChanges>> {
    use crate::feed::{RecordChange, TableChanges};
    let mut out: Vec<TableChanges> = cores
        .iter()
        .map(|c| TableChanges {
            table: c.name.clone(),
            changes: Vec::new(),
        })
        .collect();
    for (&(i, c), &recno) in changes.iter().zip(recnos) {
        let rc = match c {
            Change::Append { recno: 0, values } => {
                let mut values = values.clone();
                if let Some(field) = cores[i].serial_field() {
                    values[field] = cores[i].read(recno)?.values()[field].clone();
                }
                RecordChange::Append { recno, values }
            }
            Change::Append { values, .. } => RecordChange::Append {
                recno,
                values: values.clone(),
            },
            Change::Update { values, .. } => RecordChange::Update {
                recno,
                values: values.clone(),
            },
            Change::SetDeleted { deleted, .. } => RecordChange::SetDeleted {
                recno,
                deleted: *deleted,
            },
            Change::Blank { .. } => RecordChange::Blank { recno },
            Change::Put {
                values: Some(values),
                ..
            } => RecordChange::Update {
                recno,
                values: values.clone(),
            },
            Change::Put { deleted, .. } => RecordChange::SetDeleted {
                recno,
                deleted: deleted.unwrap_or(false),
            },
        };
        out[i].changes.push(rc);
    }
    Ok(out)
}

/// Where a commit's frames end in the log: durable once the log is synced
/// up to this LSN.
pub(crate) type LogEnd = (Arc<Wal>, u64);

/// Applies `changes` (each naming its table by position in `cores`) to tables
/// the caller has write-locked, under the commit gate the caller holds shared.
///
/// Every table — logged or not — captures the pages the changes touch, so a
/// change that fails anywhere (a unique key taken meanwhile, a full disk) puts
/// every table back as it was: a commit is all or nothing in every table, even
/// when it is refused by an unlogged one. Then the logged tables' part is
/// written to the log (not yet synced); only after that are the captured
/// pages released. Returns the recnos, and the log and LSN to make durable
/// when logged tables took part. (Unlogged tables are atomic only while the
/// process lives: a crash may keep any part of their changes.)
pub(crate) fn apply_locked(
    cores: &mut [&mut TableCore],
    changes: &[(usize, &Change)],
    txn: u64,
) -> Result<(Vec<u64>, Option<LogEnd>)> {
    let logged: Vec<bool> = cores
        .iter()
        .map(|c| c.is_logged() && c.env_has_wal())
        .collect();
    let mut undos: Vec<Undo> = cores.iter_mut().map(|c| c.begin_commit()).collect();
    // A table this commit only appends to, many records, takes its index
    // entries sorted at the end (see `table::bulk`).
    let mut appends = vec![0usize; cores.len()];
    let mut others = vec![false; cores.len()];
    for &(i, c) in changes {
        match c {
            Change::Append { .. } | Change::Blank { .. } => appends[i] += 1,
            _ => others[i] = true,
        }
    }
    for (i, core) in cores.iter_mut().enumerate() {
        if !others[i] && appends[i] >= DEFER_FROM {
            core.defer_keys();
        }
    }
    let mut recnos = vec![0u64; changes.len()];
    let mut failed = None;
    for (n, &(i, c)) in changes.iter().enumerate() {
        match cores[i].apply_change(c) {
            Ok(r) => recnos[n] = r,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        for core in cores.iter_mut() {
            if let Err(e) = core.apply_deferred() {
                failed = Some(e);
                break;
            }
        }
    }
    for core in cores.iter_mut() {
        core.drop_deferred();
    }
    let captured: Vec<Captured> = cores.iter().map(|c| c.end_commit()).collect();
    let abort = |cores: &mut [&mut TableCore], captured: Vec<Captured>, undos: Vec<Undo>| {
        for ((core, cap), undo) in cores.iter_mut().zip(captured).zip(undos) {
            core.abort_commit(cap, undo);
        }
    };
    if let Some(e) = failed {
        abort(cores, captured, std::mem::take(&mut undos));
        return Err(e);
    }
    let mut wal = None;
    let mut lsn = 0;
    if let Some(first) = logged.iter().position(|&l| l) {
        let w = cores[first].wal().expect("logged tables have a log");
        let mut entries: Vec<Entry> = Vec::new();
        let mut error = None;
        for (i, cap) in captured.iter().enumerate() {
            if logged[i] {
                match cores[i].log_entries(cap) {
                    Ok(mut e) => entries.append(&mut e),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        if error.is_none() {
            entries.push(Entry::Commit { txn });
            match w.append(&entries) {
                Ok(end) => lsn = end,
                Err(e) => error = Some(e),
            }
        }
        if let Some(e) = error {
            abort(cores, captured, undos);
            return Err(e);
        }
        wal = Some((w, lsn));
    }
    for (i, cap) in captured.iter().enumerate() {
        if logged[i] {
            cores[i].release_commit(cap, lsn);
        } else {
            cores[i].release_unlogged(cap);
        }
    }
    Ok((recnos, wal))
}
