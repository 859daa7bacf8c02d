//! Sessions and table handles through a cache node: which side answers.
//!
//! A cached table's handle has two sides: the node's copy (an embedded
//! handle on the node's local rootpath) and the server (a remote handle,
//! opened when first needed). Reads go to the copy when the node serves the
//! table (ready, not stale, and caught up to this session's own writes);
//! otherwise — and for every write, lock, and any read of a table this
//! session's open transaction wrote — to the server. The position lives on
//! the side that answered last; the handle's order, scopes and filter are
//! replayed on the other side before it answers, and the position carried
//! over (by recno and flags, as a remote handle's `sync` does).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use raiz_engine::index::Condition;
use raiz_engine::{Schema, Value};

use super::{CacheNode, Node, Route};
use crate::error::Result;
use crate::proto::{Position, Reply, Request};
use crate::session::Remote;
use crate::table::Table;

/// How long a read waits for the node to apply the session's own write
/// before it goes to the server instead.
const OWN_WRITE_WAIT: Duration = Duration::from_millis(100);

/// The cache side of a session.
#[derive(Debug)]
pub struct CachedSession {
    node: CacheNode,
    local: raiz_engine::Session,
    /// The node must have applied this far before this session reads its
    /// copy: the feed position after the session's last write.
    min_applied: AtomicU64,
    /// Cached tables the open transaction wrote: read on the server until
    /// it ends.
    txn_written: Mutex<HashSet<String>>,
}

impl CachedSession {
    pub(crate) fn new(node: CacheNode) -> CachedSession {
        CachedSession {
            local: node.node().db.session(),
            node,
            min_applied: AtomicU64::new(0),
            txn_written: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        self.node.node()
    }

    pub(crate) fn local(&self) -> &raiz_engine::Session {
        &self.local
    }

    fn written(&self) -> MutexGuard<'_, HashSet<String>> {
        self.txn_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn txn_began(&self) {
        self.written().clear();
    }

    /// The transaction ended; when it wrote cached tables, reads wait for the
    /// node to have what its end stored.
    pub(crate) fn txn_ended(&self, remote: &Remote) -> Result<()> {
        let wrote = !self.written().is_empty();
        self.written().clear();
        // A rollback changes the copy too: the recnos its appends took are
        // stored as deleted blank records.
        if wrote {
            self.note_position(remote)?;
        }
        Ok(())
    }

    fn note_position(&self, remote: &Remote) -> Result<()> {
        match remote.call(&Request::FeedPosition)? {
            Reply::Count(n) => {
                self.min_applied.fetch_max(n, Ordering::Relaxed);
                Ok(())
            }
            other => Err(remote.unexpected(&other)),
        }
    }

    /// A write to cached table `table` succeeded on the server.
    fn wrote(&self, remote: &Remote, table: &str) -> Result<()> {
        if remote.in_txn() {
            self.written().insert(table.to_owned());
            Ok(())
        } else {
            self.note_position(remote)
        }
    }

    fn route(&self, table: &str) -> Result<Route> {
        if self.written().contains(table) {
            return Ok(Route::Server);
        }
        self.node().route(
            table,
            self.min_applied.load(Ordering::Relaxed),
            OWN_WRITE_WAIT,
        )
    }
}

/// A scope as set: its order, lower and upper keys.
type Scope = (Option<String>, Option<Vec<Value>>, Option<Vec<Value>>);

/// Which side holds the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Server,
}

/// The two sides of a cached table's handle.
#[derive(Debug)]
pub(crate) struct Sides {
    name: String,
    session: Arc<CachedSession>,
    remote: Arc<Remote>,
    local: Option<(u64, Table)>,
    server: Option<Table>,
    at: Side,
    /// Settings as the application made them, replayed on a side that
    /// lacks them (`settings` counts changes; each side notes the count it
    /// has).
    order: Option<String>,
    scopes: Vec<Scope>,
    filter: Option<Condition>,
    read_ahead: Option<u32>,
    settings: u64,
    local_settings: u64,
    server_settings: u64,
}

/// A cached table's handle state (see the module docs).
#[derive(Debug)]
pub struct CachedTable {
    sides: Mutex<Sides>,
    /// The order, readable without the lock (`Table::order` lends it).
    order: Option<String>,
    schema: Arc<Schema>,
}

fn position(t: &Table) -> Position {
    Position {
        recno: t.recno(),
        bof: t.bof(),
        eof: t.eof(),
        found: t.found(),
        on_record: t.on_record(),
    }
}

impl CachedTable {
    pub(crate) fn open(
        remote: Arc<Remote>,
        session: Arc<CachedSession>,
        name: &str,
    ) -> Result<CachedTable> {
        let name = raiz_engine::validate_table_name(name)?;
        let mut sides = Sides {
            name: name.clone(),
            session,
            remote,
            local: None,
            server: None,
            at: Side::Local,
            order: None,
            scopes: Vec::new(),
            filter: None,
            read_ahead: None,
            settings: 0,
            local_settings: 0,
            server_settings: 0,
        };
        // A new handle stands on the first record, as on the server.
        let schema = sides.reader()?.schema();
        Ok(CachedTable {
            sides: Mutex::new(sides),
            order: None,
            schema,
        })
    }

    fn sides(&self) -> MutexGuard<'_, Sides> {
        self.sides.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn name(&self) -> String {
        self.sides().name.clone()
    }

    pub(crate) fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    pub(crate) fn order(&self) -> Option<&str> {
        self.order.as_deref()
    }

    /// A read: on the side that serves it now.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut Table) -> Result<T>) -> Result<T> {
        let mut s = self.sides();
        let t = s.reader()?;
        f(t)
    }

    /// Something only the server does (locks, maintenance), without data
    /// changes of its own.
    pub(crate) fn server<T>(&self, f: impl FnOnce(&mut Table) -> Result<T>) -> Result<T> {
        let mut s = self.sides();
        let t = s.onto_server()?;
        f(t)
    }

    /// A write: on the server; then reads wait for the node to have it.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Table) -> Result<T>) -> Result<T> {
        let mut s = self.sides();
        let v = f(s.onto_server()?)?;
        let (session, remote, name) = (s.session.clone(), s.remote.clone(), s.name.clone());
        drop(s);
        session.wrote(&remote, &name)?;
        Ok(v)
    }

    /// The position as the side holding it says.
    pub(crate) fn peek<T>(&self, f: impl FnOnce(&Table) -> T, default: T) -> T {
        let s = self.sides();
        let t = match s.at {
            Side::Local => s.local.as_ref().map(|(_, t)| t),
            Side::Server => s.server.as_ref(),
        };
        t.map_or(default, f)
    }

    /// Changes a setting: on the side holding the position; the other side
    /// gets it when it next answers. A failed change changes nothing.
    pub(crate) fn setting(
        &mut self,
        f: impl FnOnce(&mut Table) -> Result<()>,
        record: impl FnOnce(&mut Sides),
    ) -> Result<()> {
        let mut s = self.sides();
        let t = match s.at {
            Side::Local => s.reader()?,
            Side::Server => s.onto_server()?,
        };
        f(t)?;
        record(&mut s);
        s.settings += 1;
        match s.at {
            Side::Local => s.local_settings = s.settings,
            Side::Server => s.server_settings = s.settings,
        }
        let order = s.order.clone();
        drop(s);
        self.order = order;
        Ok(())
    }

    pub(crate) fn set_read_ahead(&mut self, max: u32) {
        let mut s = self.sides();
        s.read_ahead = Some(max);
        if let Some(t) = &mut s.server {
            t.set_read_ahead(max);
        }
    }
}

impl Sides {
    pub(crate) fn set_order(&mut self, order: Option<&str>) {
        self.order = order.map(str::to_ascii_lowercase);
    }

    pub(crate) fn set_scope(&mut self, lo: Option<&[Value]>, hi: Option<&[Value]>) {
        // Kept even when cleared: a side that had the scope loses it too.
        let order = self.order.clone();
        self.scopes.retain(|(o, _, _)| *o != order);
        self.scopes
            .push((order, lo.map(<[Value]>::to_vec), hi.map(<[Value]>::to_vec)));
    }

    pub(crate) fn set_filter(&mut self, c: Option<&Condition>) {
        self.filter = c.cloned();
    }

    /// The side that serves a read now, with the position carried over.
    fn reader(&mut self) -> Result<&mut Table> {
        match self.session.route(&self.name)? {
            Route::Server => self.onto_server(),
            Route::Local(local, generation) => {
                if self.onto_local(&local, generation)? {
                    Ok(&mut self.local.as_mut().expect("opened").1)
                } else {
                    self.onto_server()
                }
            }
        }
    }

    /// Makes the copy hold the position; false when it cannot (the record
    /// the server side stands on is not in the copy yet, or the copy lacks
    /// an index the handle uses).
    fn onto_local(&mut self, local: &str, generation: u64) -> Result<bool> {
        let mut carry = match (&self.server, self.at) {
            (Some(s), Side::Server) => Some(position(s)),
            _ => None,
        };
        if !matches!(&self.local, Some((g, _)) if *g == generation) {
            // A new copy (first use, or the table was reloaded).
            if self.at == Side::Local {
                carry = self.local.as_ref().map(|(_, t)| position(t));
            }
            let s = self.session.local().clone();
            let t = s.open_table(local)?;
            self.local = Some((generation, Table::embedded(t, s)));
            self.local_settings = u64::MAX;
        }
        let t = &mut self.local.as_mut().expect("opened").1;
        if self.local_settings != self.settings {
            if replay(&self.scopes, &self.order, &self.filter, t).is_err() {
                return Ok(false);
            }
            self.local_settings = self.settings;
        }
        if let Some(p) = carry {
            let placed = match t.engine_mut() {
                Some(e) => e.place(p.recno, p.bof, p.eof, p.found, p.on_record),
                None => return Ok(false),
            };
            if placed.is_err() || (p.on_record && !t.on_record()) {
                return Ok(false);
            }
        }
        self.at = Side::Local;
        Ok(true)
    }

    /// Makes the server side hold the position.
    fn onto_server(&mut self) -> Result<&mut Table> {
        if self.server.is_none() {
            let t = match self.remote.call(&Request::OpenTable(self.name.clone()))? {
                Reply::Opened {
                    handle,
                    name,
                    schema,
                    at,
                } => Table::remote(self.remote.clone(), handle, name, schema, at),
                other => return Err(self.remote.unexpected(&other)),
            };
            self.server = Some(t);
            self.server_settings = u64::MAX;
            if let Some(n) = self.read_ahead {
                self.server.as_mut().expect("opened").set_read_ahead(n);
            }
        }
        if self.server_settings != self.settings {
            let t = self.server.as_mut().expect("opened");
            replay(&self.scopes, &self.order, &self.filter, t)?;
            self.server_settings = self.settings;
        }
        if self.at == Side::Local {
            if let Some((_, l)) = &self.local {
                let p = position(l);
                self.server.as_mut().expect("opened").put_position(p)?;
            }
            self.at = Side::Server;
        }
        Ok(self.server.as_mut().expect("opened"))
    }
}

/// Brings `t` to the application's settings: each order's scope, the order,
/// the filter.
fn replay(
    scopes: &[Scope],
    order: &Option<String>,
    filter: &Option<Condition>,
    t: &mut Table,
) -> Result<()> {
    for (o, lo, hi) in scopes {
        if o.is_none() {
            // Physical order has no scope to set or clear.
            continue;
        }
        t.set_order(o.as_deref())?;
        if lo.is_none() && hi.is_none() {
            t.clear_scope()?;
        } else {
            t.set_scope(lo.as_deref(), hi.as_deref())?;
        }
    }
    t.set_order(order.as_deref())?;
    t.set_filter(filter.as_ref())?;
    Ok(())
}
