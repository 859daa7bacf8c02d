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

use super::{Change, Runtime, TableShared};

/// Applies `changes` atomically (for logged tables) and durably (unless
/// `delayed`). Returns the recno of each change, in order (appends with recno
/// 0 get theirs here).
pub(crate) fn commit(
    changes: &[(Arc<TableShared>, Change)],
    txn: u64,
    delayed: bool,
) -> Result<Vec<u64>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut tables: Vec<Arc<TableShared>> = Vec::new();
    for (t, _) in changes {
        if !tables.iter().any(|x| Arc::ptr_eq(x, t)) {
            tables.push(t.clone());
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
    let mut cores: Vec<_> = tables.iter().map(|t| t.core.write()).collect();
    let slot = |t: &Arc<TableShared>| {
        tables
            .iter()
            .position(|x| Arc::ptr_eq(x, t))
            .expect("collected above")
    };
    let logged: Vec<bool> = cores
        .iter()
        .map(|c| c.is_logged() && c.env_has_wal())
        .collect();
    let mut undos: Vec<Option<crate::table::Undo>> = cores
        .iter()
        .zip(&logged)
        .map(|(c, &l)| l.then(|| c.begin_commit()))
        .collect();
    let mut recnos = vec![0u64; changes.len()];
    let mut failed = None;
    for (n, (t, c)) in changes.iter().enumerate() {
        let i = slot(t);
        if !logged[i] {
            continue;
        }
        match cores[i].apply_change(c) {
            Ok(r) => recnos[n] = r,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let captured: Vec<Option<crate::table::Captured>> = cores
        .iter()
        .zip(&logged)
        .map(|(c, &l)| l.then(|| c.end_commit()))
        .collect();
    let abort = |cores: &mut Vec<parking_lot::RwLockWriteGuard<'_, crate::table::TableCore>>,
                 captured: Vec<Option<crate::table::Captured>>,
                 undos: &mut Vec<Option<crate::table::Undo>>| {
        for (i, cap) in captured.into_iter().enumerate() {
            if let (Some(cap), Some(undo)) = (cap, undos[i].take()) {
                cores[i].abort_commit(cap, undo);
            }
        }
    };
    if let Some(e) = failed {
        abort(&mut cores, captured, &mut undos);
        return Err(e);
    }
    let mut lsn = 0;
    let mut wal = None;
    if logged.iter().any(|&l| l) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut error = None;
        for (i, cap) in captured.iter().enumerate() {
            if let Some(cap) = cap {
                match cores[i].log_entries(cap) {
                    Ok(mut e) => entries.append(&mut e),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        let w = cores[logged.iter().position(|&l| l).expect("some logged")]
            .wal()
            .expect("logged tables have a log");
        if error.is_none() {
            entries.push(Entry::Commit { txn });
            match w.append(&entries) {
                Ok(end) => lsn = end,
                Err(e) => error = Some(e),
            }
        }
        if let Some(e) = error {
            abort(&mut cores, captured, &mut undos);
            return Err(e);
        }
        for (i, cap) in captured.iter().enumerate() {
            if let Some(cap) = cap {
                cores[i].release_commit(cap, lsn);
            }
        }
        wal = Some(w);
    }
    // Unlogged tables: applied now that the logged part is in.
    for (n, (t, c)) in changes.iter().enumerate() {
        let i = slot(t);
        if !logged[i] {
            recnos[n] = cores[i].apply_change(c)?;
        }
    }
    drop(cores);
    drop(gates);
    if let Some(w) = wal {
        if !delayed {
            w.flush_to(lsn)?;
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
    Ok(recnos)
}
