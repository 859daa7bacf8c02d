//! The open tables of a database, and the handles that keep them open.
//!
//! Invariants:
//! - **One copy.** A table is open in a process at most once: every handle on
//!   it shares one [`TableShared`]. The registry holds an entry for a name from
//!   the moment an open of it starts until its close has finished (`Busy` while
//!   opening or closing, `Open` in between); an open, create or drop that finds
//!   the name `Busy` waits. So no interleaving of opens, closes, drops,
//!   checkpoints and maintenance can put two in-memory copies of one table's
//!   files in a process, each writing its own version of them.
//! - **Handles are counted.** [`TableHandle`] is the only way to use a table;
//!   `handles` counts them (table handles, range iterators, and the changes of
//!   open transactions). It goes from 0 to 1 only under the registry lock (an
//!   open); the handle that takes it back to 0 closes the table: under the
//!   registry lock it checks the count is still 0 and the entry still its own,
//!   marks the entry `Busy`, closes the table (flush, header marked clean), then
//!   removes the entry and wakes the waiters.
//! - **A failed close keeps the table.** When closing cannot write and sync
//!   a table's files, the copy in memory is the only current one: it stays
//!   registered (`Kept`, no handles) so a later open reads it, never the stale
//!   files. A drop or a rewrite of a kept table first retries its close and
//!   reports that close's error if it fails again. When the database itself
//!   goes, it retries the close of its kept tables and lets go of them, so a
//!   database that met a faulty disk is freed like any other.
//! - **Checkpoints see every table.** A close holds the commit gate shared from
//!   before it marks its entry `Busy` until the entry is gone; an open registers
//!   its table (and fills the holes a crash left, a logged commit) under the gate
//!   too. A checkpoint holds the gate exclusively while it lists and flushes the
//!   `Open` tables, so it never rotates the log past a table whose changes are in
//!   neither its files nor the log.
//!
//! Lock order: commit gate, then the registry, then a table's core.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::{Runtime, TableShared};
use crate::error::Result;

#[derive(Debug)]
enum Slot {
    /// An open or a close of the table is under way.
    Busy,
    /// The table is open.
    Open(Arc<TableShared>),
    /// Its last handle went but its close failed: the pages in memory are its
    /// only current copy (no handles; not keeping the database alive).
    Kept(Arc<TableShared>),
}

/// What [`Registry::acquire`] found.
enum Acquired {
    /// The open table, with a handle counted for the caller.
    Open(Arc<TableShared>),
    /// The table is open with this many handles (nothing counted).
    InUse(usize),
    /// The table was not open; its name is now `Busy`, held by the caller.
    Claimed,
    /// The table was kept after a failed close; its name is now `Busy`, held
    /// by the caller, who must close it before using its files.
    Kept(Arc<TableShared>),
}

/// The open tables of a database, by name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<String, Slot>>,
    changed: Condvar,
}

/// Removes a `Busy` entry (and wakes the waiters) unless disarmed: an open or a
/// drop that fails, or panics, never leaves its name blocked.
struct BusyGuard<'a> {
    registry: &'a Registry,
    name: &'a str,
    armed: bool,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut map = self.registry.map.lock();
            map.remove(self.name);
            self.registry.changed.notify_all();
        }
    }
}

impl Registry {
    /// Waits until `name` is not `Busy`. If it is open and `count` is true,
    /// counts a new handle on it — under the registry lock, so a close that has
    /// not marked it `Busy` yet sees the count and leaves it open. If it is not
    /// open, marks the name `Busy` for the caller.
    fn acquire(&self, name: &str, count: bool) -> Acquired {
        let mut map = self.map.lock();
        loop {
            match map.get(name) {
                Some(Slot::Busy) => self.changed.wait(&mut map),
                Some(Slot::Open(t)) if count => {
                    t.handles.fetch_add(1, Ordering::AcqRel);
                    return Acquired::Open(t.clone());
                }
                Some(Slot::Kept(t)) => {
                    let t = t.clone();
                    if count {
                        t.handles.store(1, Ordering::Release);
                        map.insert(name.to_owned(), Slot::Open(t.clone()));
                        return Acquired::Open(t);
                    }
                    map.insert(name.to_owned(), Slot::Busy);
                    return Acquired::Kept(t);
                }
                Some(Slot::Open(t)) => match t.handles.load(Ordering::Acquire) {
                    // Its last handle is gone and its close is under way.
                    0 => self.changed.wait(&mut map),
                    n => return Acquired::InUse(n),
                },
                None => {
                    map.insert(name.to_owned(), Slot::Busy);
                    return Acquired::Claimed;
                }
            }
        }
    }

    fn busy<'a>(&'a self, name: &'a str) -> BusyGuard<'a> {
        BusyGuard {
            registry: self,
            name,
            armed: true,
        }
    }

    /// The open tables (a checkpoint flushes them; it holds the gate exclusively,
    /// so none of them can close meanwhile).
    pub fn open_tables(&self) -> Vec<Arc<TableShared>> {
        self.map
            .lock()
            .values()
            .filter_map(|s| match s {
                Slot::Open(t) | Slot::Kept(t) => Some(t.clone()),
                Slot::Busy => None,
            })
            .collect()
    }

    /// Puts back a kept table whose close failed again (its name was `Busy`,
    /// held by `guard`).
    fn keep(&self, t: Arc<TableShared>, mut guard: BusyGuard<'_>) {
        let mut map = self.map.lock();
        map.insert(t.name.clone(), Slot::Kept(t));
        guard.armed = false;
        self.changed.notify_all();
    }
}

impl Runtime {
    /// A handle on table `name`: the open table if there is one; otherwise
    /// `open` builds it (outside every lock: it may verify and repair the whole
    /// table), and `register` — called under the commit gate with the table
    /// not yet visible to anyone — finishes it (filling the holes a crash left)
    /// before it is registered under the same gate.
    pub(crate) fn open_table(
        self: &Arc<Self>,
        name: &str,
        open: impl FnOnce() -> Result<TableShared>,
        register: impl FnOnce(&TableShared) -> Result<()>,
    ) -> Result<TableHandle> {
        if let Acquired::Open(t) = self.tables.acquire(name, true) {
            return Ok(TableHandle::new(t));
        }
        // (`acquire` with a count never answers `Kept` or `InUse`.)
        let mut guard = self.tables.busy(name);
        let shared = open()?;
        let gate = self.gate.read_recursive();
        if let Err(e) = register(&shared) {
            drop(gate);
            if let Err(c) = shared.core.write().close() {
                tracing::error!(table = %name, error = %c, "closing a table whose open failed");
            }
            return Err(e);
        }
        let shared = Arc::new(shared);
        shared.handles.store(1, Ordering::Release);
        let mut map = self.tables.map.lock();
        map.insert(name.to_owned(), Slot::Open(shared.clone()));
        guard.armed = false;
        self.tables.changed.notify_all();
        drop(map);
        drop(gate);
        Ok(TableHandle::new(shared))
    }

    /// Runs `f` with table `name` neither open nor being opened or closed by
    /// anyone (its name is held `Busy` meanwhile). Fails with `in_use` (given
    /// the handle count) when the table is open.
    pub(crate) fn with_table_closed<R>(
        &self,
        name: &str,
        in_use: impl FnOnce(usize) -> crate::Error,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let kept = match self.tables.acquire(name, false) {
            Acquired::InUse(handles) => return Err(in_use(handles)),
            Acquired::Kept(t) => Some(t),
            Acquired::Open(_) | Acquired::Claimed => None,
        };
        let guard = self.tables.busy(name);
        if let Some(t) = kept {
            let gate = self.gate.read_recursive();
            if let Err(e) = t.close_core() {
                drop(gate);
                self.tables.keep(t, guard);
                return Err(e);
            }
        }
        let _guard = guard;
        f()
    }

    /// Retries the close of every kept table and lets go of them all (the
    /// database is going: nothing can open them any more). Returns the first
    /// close that failed again; those tables are repaired at the next open
    /// (logged ones from the log).
    pub(crate) fn release_kept(&self) -> Result<()> {
        let gate = self.gate.read_recursive();
        let kept: Vec<Arc<TableShared>> = {
            let mut map = self.tables.map.lock();
            let names: Vec<String> = map
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Kept(_)))
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| match map.remove(&n) {
                    Some(Slot::Kept(t)) => Some(t),
                    _ => None,
                })
                .collect()
        };
        let mut first = Ok(());
        for t in kept {
            if let Err(e) = t.close_core() {
                tracing::error!(table = %t.name, error = %e, "a table whose close failed could not be closed at the end either; it will be repaired at next open");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        self.tables.changed.notify_all();
        drop(gate);
        first
    }

    /// Closes `t` if its last handle is gone and nobody reopened it meanwhile.
    /// Returns the close's result (Ok when there was nothing to close).
    fn release(&self, t: &Arc<TableShared>) -> Result<()> {
        // Shared gate first (see the module docs); recursive because a thread
        // that drops its last handle may already hold the gate shared.
        let gate = self.gate.read_recursive();
        let mut map = self.tables.map.lock();
        if t.handles.load(Ordering::Acquire) != 0
            || !matches!(map.get(&t.name), Some(Slot::Open(cur)) if Arc::ptr_eq(cur, t))
        {
            return Ok(());
        }
        map.insert(t.name.clone(), Slot::Busy);
        drop(map);
        let busy = self.tables.busy(&t.name);
        let result = t.close_core();
        if result.is_err() {
            // Its files could not be brought up to date: the pages in memory
            // are the only current copy. It stays open — a later open gets
            // this copy, whose committed data stays readable — without
            // keeping the database alive.
            t.keepalive.lock().take();
            self.tables.keep(t.clone(), busy);
        } else {
            drop(busy);
        }
        drop(gate);
        result
    }
}

/// A counted reference to an open table. The last one to go closes the table.
#[derive(Debug)]
pub(crate) struct TableHandle {
    shared: Arc<TableShared>,
    /// False once [`TableHandle::close`] gave the count back.
    counted: bool,
}

impl TableHandle {
    fn new(shared: Arc<TableShared>) -> TableHandle {
        TableHandle {
            shared,
            counted: true,
        }
    }

    /// Drops this handle; when it was the table's last, closes the table and
    /// returns what closing it gave.
    pub fn close(mut self) -> Result<()> {
        self.counted = false;
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.rt.clone().release(&self.shared)
        } else {
            Ok(())
        }
    }

    /// Handles on this table now (this one included).
    pub fn count(&self) -> usize {
        self.shared.handles.load(Ordering::Acquire)
    }
}

impl Clone for TableHandle {
    fn clone(&self) -> Self {
        // The count is at least 1 (this handle), so it cannot race a close.
        self.shared.handles.fetch_add(1, Ordering::AcqRel);
        TableHandle::new(self.shared.clone())
    }
}

impl Deref for TableHandle {
    type Target = Arc<TableShared>;

    fn deref(&self) -> &Arc<TableShared> {
        &self.shared
    }
}

impl Drop for TableHandle {
    fn drop(&mut self) {
        if self.counted && self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(e) = self.shared.rt.clone().release(&self.shared) {
                tracing::error!(table = %self.shared.name, error = %e, "table not closed cleanly; it will be repaired at next open");
            }
        }
    }
}
