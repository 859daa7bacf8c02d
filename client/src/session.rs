//! [`Connection`] and [`Session`]: the same calls embedded and remote.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use raiz_engine::{Database, Schema, TableOptions};

use crate::error::{Error, Result};
use crate::proto::{Permissions, Reply, Request, SessionInfo};
use crate::remote::{Conn, Stats};
use crate::table::Table;
use crate::url::{ConnectOptions, ConnectionString};
pub use raiz_engine::db::Retry;

/// What a connection string opened: a database in this process, or a server
/// each [`Connection::session`] connects to.
#[derive(Debug, Clone)]
pub struct Connection {
    kind: ConnKind,
}

#[derive(Debug, Clone)]
enum ConnKind {
    Embedded(Database),
    Remote(Box<(ConnectionString, ConnectOptions)>),
    Cached(crate::cache::CacheNode),
}

impl Connection {
    /// Parses `s` and opens it with default options.
    pub fn connect(s: &str) -> Result<Connection> {
        Connection::open(&s.parse()?)
    }

    /// Opens what `conn` names: embedded opens the rootpath now; a server
    /// connection is made by each [`Connection::session`] (one session per
    /// network connection).
    pub fn open(conn: &ConnectionString) -> Result<Connection> {
        Connection::open_with(conn, ConnectOptions::default())
    }

    /// [`Connection::open`] with options (password, CA file…).
    pub fn open_with(conn: &ConnectionString, opts: ConnectOptions) -> Result<Connection> {
        let kind = match conn {
            ConnectionString::File(root) => ConnKind::Embedded(Database::open(root)?),
            ConnectionString::Cache {
                server,
                tables,
                dir,
                stale_ms,
            } => {
                let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
                let mut cfg = crate::cache::CacheConfig::with_server((**server).clone(), &tables)?
                    .options(opts);
                if let Some(d) = dir {
                    cfg = cfg.dir(d);
                }
                if let Some(ms) = stale_ms {
                    cfg = cfg.stale_after(Duration::from_millis(*ms));
                }
                ConnKind::Cached(crate::cache::CacheNode::shared(cfg)?)
            }
            other => ConnKind::Remote(Box::new((other.clone(), opts))),
        };
        Ok(Connection { kind })
    }

    /// Sessions through a cache node running in this process.
    pub fn cached(node: crate::cache::CacheNode) -> Connection {
        Connection {
            kind: ConnKind::Cached(node),
        }
    }

    /// The cache node, when this connection goes through one.
    pub fn cache_node(&self) -> Option<&crate::cache::CacheNode> {
        match &self.kind {
            ConnKind::Cached(n) => Some(n),
            _ => None,
        }
    }

    /// Wraps an already open embedded database.
    pub fn embedded(db: Database) -> Connection {
        Connection {
            kind: ConnKind::Embedded(db),
        }
    }

    /// The embedded database, when this connection is embedded.
    pub fn database(&self) -> Option<&Database> {
        match &self.kind {
            ConnKind::Embedded(db) => Some(db),
            ConnKind::Remote(..) | ConnKind::Cached(_) => None,
        }
    }

    /// True for a server connection.
    pub fn is_remote(&self) -> bool {
        !matches!(self.kind, ConnKind::Embedded(..))
    }

    /// A new session (remote: a new authenticated network connection).
    pub fn session(&self) -> Result<Session> {
        Ok(Session {
            kind: match &self.kind {
                ConnKind::Embedded(db) => SessionKind::Embedded(db.session()),
                ConnKind::Remote(b) => SessionKind::Remote(Remote::connect(&b.0, &b.1)?),
                ConnKind::Cached(node) => {
                    let cfg = &node.node().config;
                    let remote = Remote::connect(&cfg.server, &cfg.options)?;
                    SessionKind::Cached {
                        cache: Arc::new(crate::cache::route::CachedSession::new(node.clone())),
                        remote,
                    }
                }
            },
        })
    }
}

/// The network side of a remote session, shared with its table handles.
#[derive(Debug)]
pub(crate) struct Remote {
    conn: Mutex<Conn>,
    /// Bumped by every write this session sends: read-ahead filled before a
    /// write is dropped, since it may hold the records the write changed.
    epoch: AtomicU64,
    /// Writes inside a transaction are sent without waiting for their replies.
    deferring: AtomicBool,
    /// A transaction is open (as this client began it).
    in_txn: AtomicBool,
    /// Savepoints taken in the open transaction (the server numbers them the
    /// same way, from 0 at each begin).
    savepoints: AtomicU64,
    stats: Arc<Stats>,
    /// The server's session id (a new one after a failover).
    session: AtomicU64,
    peer: String,
    /// On a cluster (several hosts): where to go after a failover, and what
    /// to set up again there (see `failover`).
    target: Option<(ConnectionString, ConnectOptions)>,
    replay: Mutex<crate::failover::Replay>,
    /// A failover ended the transaction this client had open: its rollback
    /// has nothing left to do.
    moved_in_txn: AtomicBool,
}

impl Remote {
    /// A new authenticated connection: one server session.
    pub fn connect(cs: &ConnectionString, opts: &ConnectOptions) -> Result<Arc<Remote>> {
        let conn = Conn::connect(cs, opts)?;
        let target = match cs {
            ConnectionString::Members {
                read_any: false, ..
            } => Some((cs.clone(), opts.clone())),
            _ => None,
        };
        Ok(Arc::new(Remote {
            target,
            replay: Mutex::default(),
            moved_in_txn: AtomicBool::new(false),
            session: AtomicU64::new(conn.session),
            stats: conn.stats.clone(),
            peer: conn.peer().to_owned(),
            conn: Mutex::new(conn),
            epoch: AtomicU64::new(0),
            deferring: AtomicBool::new(false),
            in_txn: AtomicBool::new(false),
            savepoints: AtomicU64::new(0),
        }))
    }

    /// A transaction is open (as this client began it).
    pub fn in_txn(&self) -> bool {
        self.in_txn.load(Ordering::Relaxed)
    }

    pub fn conn(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's session id.
    pub fn session_id(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    pub fn call(&self, req: &Request) -> Result<Reply> {
        let mut conn = self.conn();
        match conn.call(req) {
            Ok(reply) => {
                if self.target.is_some() {
                    self.replay
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .note(req, &reply);
                }
                Ok(reply)
            }
            Err(e) if self.target.is_some() && crate::failover::moves(&e) => {
                Err(self.fail_over(&mut conn, req, e))
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the session to the member that takes writes now (see
    /// `failover`); returns the error the request that found out gets.
    fn fail_over(&self, conn: &mut Conn, req: &Request, cause: Error) -> Error {
        let Some((cs, opts)) = &self.target else {
            return cause;
        };
        let mut next = match crate::failover::connect_members(cs, opts) {
            Ok(c) => c,
            // A request refused (not the leader, no quorum) was not done;
            // one whose connection went may have been: its outcome is
            // unknown, which is what `Failover` says.
            Err(e)
                if matches!(
                    cause.kind(),
                    crate::ErrorKind::Io | crate::ErrorKind::Closed
                ) =>
            {
                return Error::Server {
                    kind: crate::ErrorKind::Failover,
                    message: format!("{cause}; and then: {e}"),
                }
            }
            Err(e) => return e,
        };
        let replayed = self
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replay(&mut next);
        if let Err(e) = replayed {
            return e;
        }
        next.stats = self.stats.clone();
        let peer = next.peer().to_owned();
        self.session.store(next.session, Ordering::Relaxed);
        *conn = next;
        // (A commit clears the flag as it goes.)
        let in_txn = self.in_txn.swap(false, Ordering::Relaxed)
            || matches!(req, Request::Commit | Request::Rollback);
        if in_txn {
            self.moved_in_txn.store(true, Ordering::Relaxed);
        }
        self.savepoints.store(0, Ordering::Relaxed);
        self.wrote();
        tracing::warn!(cause = %cause, to = %peer, "session moved to the cluster's leader");
        Error::Server {
            kind: crate::ErrorKind::Failover,
            message: format!(
                "{cause}; the session moved to {peer}, its tables open again where they were{}: retry (a commit's outcome is unknown: look first)",
                if in_txn {
                    "; its transaction and locks are gone"
                } else {
                    "; its locks are gone"
                }
            ),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub fn wrote(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// True when a write should be sent without waiting (deferred writes on,
    /// inside a transaction).
    pub fn defer_writes(&self) -> bool {
        self.deferring.load(Ordering::Relaxed) && self.in_txn.load(Ordering::Relaxed)
    }

    pub fn unexpected(&self, reply: &Reply) -> Error {
        Error::Protocol {
            peer: self.peer.clone(),
            reason: format!("unexpected reply {reply:?}"),
        }
    }

    pub fn done(&self, req: &Request) -> Result<()> {
        match self.call(req)? {
            Reply::Done => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn boolean(&self, req: &Request) -> Result<bool> {
        match self.call(req)? {
            Reply::Bool(b) => Ok(b),
            other => Err(self.unexpected(&other)),
        }
    }
}

/// A point to roll back to inside a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint(SavepointKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SavepointKind {
    Embedded(raiz_engine::db::Savepoint),
    Remote(u64),
}

/// A session: open tables, locks and a transaction, embedded or on a server.
///
/// ```
/// use raiz_client::Connection;
/// use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};
/// let dir = tempfile::tempdir()?;
/// let conn = Connection::connect(&format!("file:{}", dir.path().display()))?;
/// let s = conn.session()?;
/// let schema = Schema::new(vec![Field::new("CODE", FieldType::Char(6))]);
/// s.create_table("items", &schema, TableOptions::default())?;
/// let mut t = s.open_table("items")?;
/// s.begin()?;
/// t.append(&[Value::Char("A1".into())])?;
/// s.commit()?;
/// assert_eq!(t.record_count()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Session {
    kind: SessionKind,
}

#[derive(Debug)]
enum SessionKind {
    Embedded(raiz_engine::Session),
    Remote(Arc<Remote>),
    /// Through a cache node: cached tables read from its copy, the rest
    /// (and every write) on the server through `remote`.
    Cached {
        remote: Arc<Remote>,
        cache: Arc<crate::cache::route::CachedSession>,
    },
}

impl Session {
    /// The session's id (as locks and `raiz monitor` show it).
    pub fn id(&self) -> u64 {
        match &self.kind {
            SessionKind::Embedded(s) => s.id(),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => r.session_id(),
        }
    }

    /// True when this session talks to a server.
    pub fn is_remote(&self) -> bool {
        !matches!(self.kind, SessionKind::Embedded(_))
    }

    /// Round trips to the server so far (0 embedded).
    pub fn round_trips(&self) -> u64 {
        match &self.kind {
            SessionKind::Embedded(_) => 0,
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.stats.round_trips.load(Ordering::Relaxed)
            }
        }
    }

    /// Bytes (sent, received) over the network (0 embedded).
    pub fn bytes(&self) -> (u64, u64) {
        match &self.kind {
            SessionKind::Embedded(_) => (0, 0),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => (
                r.stats.bytes_out.load(Ordering::Relaxed),
                r.stats.bytes_in.load(Ordering::Relaxed),
            ),
        }
    }

    /// The change feed's position: every commit this session saw
    /// acknowledged is numbered at or before it (cache nodes wait for it to
    /// show their own writes).
    pub fn feed_position(&self) -> Result<u64> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.database().feed().last_seq()),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::FeedPosition)? {
                    Reply::Count(n) => Ok(n),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Opens a handle on a table.
    pub fn open_table(&self, name: &str) -> Result<Table> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(Table::embedded(s.open_table(name)?, s.clone())),
            SessionKind::Cached { remote, cache } if cache.node().caches(name) => {
                Table::cached(remote.clone(), cache.clone(), name)
            }
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::OpenTable(name.to_owned()))? {
                    Reply::Opened {
                        handle,
                        name,
                        schema,
                        at,
                    } => Ok(Table::remote(r.clone(), handle, name, schema, at)),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Creates a table.
    pub fn create_table(&self, name: &str, schema: &Schema, opts: TableOptions) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.create_table(name, schema, opts)?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::CreateTable {
                    name: name.to_owned(),
                    schema: schema.clone(),
                    options: opts,
                })
            }
        }
    }

    /// Drops a table (it must not be open).
    pub fn drop_table(&self, name: &str) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.database().drop_table(name)?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::DropTable(name.to_owned()))
            }
        }
    }

    /// Table names of the rootpath.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.database().list_tables()?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::ListTables)? {
                    Reply::Tables(t) => Ok(t),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Whether a table exists.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.database().table_exists(name)?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.boolean(&Request::TableExists(name.to_owned()))
            }
        }
    }

    /// Begins a transaction.
    pub fn begin(&self) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.begin()?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                if r.deferring.load(Ordering::Relaxed) {
                    r.conn().send_deferred(&Request::Begin)?;
                } else {
                    r.done(&Request::Begin)?;
                }
                r.in_txn.store(true, Ordering::Relaxed);
                r.moved_in_txn.store(false, Ordering::Relaxed);
                r.savepoints.store(0, Ordering::Relaxed);
                if let SessionKind::Cached { cache, .. } = &self.kind {
                    cache.txn_began();
                }
                Ok(())
            }
        }
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> Result<bool> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.in_transaction()),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.boolean(&Request::InTransaction)
            }
        }
    }

    /// Commits: durable when this returns (for logged tables). With deferred
    /// writes, a write of the transaction that failed fails the commit: the
    /// transaction is rolled back and that write's error returned.
    pub fn commit(&self) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.commit()?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.wrote();
                r.in_txn.store(false, Ordering::Relaxed);
                // The replies of deferred writes come before the commit's:
                // the first failure among them is the commit's (the server
                // then rolled the transaction back instead of committing).
                let done = r.done(&Request::Commit);
                if let SessionKind::Cached { cache, .. } = &self.kind {
                    cache.txn_ended(r)?;
                }
                done
            }
        }
    }

    /// Rolls the transaction back (deferred writes' errors are dropped with it).
    pub fn rollback(&self) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.rollback()?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.wrote();
                r.in_txn.store(false, Ordering::Relaxed);
                if r.conn().deferred() > 0 {
                    let _ = r.conn().settle();
                }
                // A failover ended the transaction on the old leader.
                if r.moved_in_txn.swap(false, Ordering::Relaxed) {
                    if let SessionKind::Cached { cache, .. } = &self.kind {
                        cache.txn_ended(r)?;
                    }
                    return Ok(());
                }
                let done = r.done(&Request::Rollback);
                if let SessionKind::Cached { cache, .. } = &self.kind {
                    cache.txn_ended(r)?;
                }
                done
            }
        }
    }

    /// Sends the writes of a transaction without waiting for each reply
    /// (remote; embedded writes are immediate anyway): an order of three lines
    /// then costs a handful of round trips instead of dozens. A write's error
    /// is reported by the next request that waits for a reply — a read, a
    /// seek, a lock — or by [`Session::commit`], which then rolls the
    /// transaction back. Appends ([`Table::append`]) still wait: they answer
    /// their recno; [`Table::insert`] does not.
    pub fn set_deferred_writes(&self, on: bool) -> Result<()> {
        if let SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } = &self.kind {
            r.done(&Request::SetDeferredWrites(on))?;
            r.deferring.store(on, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Runs `work` in a transaction: commits when it returns Ok, rolls back
    /// when it (or the commit) fails, and runs it again when a deadlock
    /// refused it (up to three times; see [`Session::transaction_with`]).
    pub fn transaction<T>(&self, work: impl FnMut(&Session) -> Result<T>) -> Result<T> {
        self.transaction_with(Retry::default(), work)
            .map(|(v, _)| v)
    }

    /// [`Session::transaction`] with a retry policy; returns the value and how
    /// many times the transaction was retried.
    pub fn transaction_with<T>(
        &self,
        retry: Retry,
        mut work: impl FnMut(&Session) -> Result<T>,
    ) -> Result<(T, u32)> {
        let mut retries = 0;
        loop {
            self.begin()?;
            let result = match work(self) {
                Ok(v) => self.commit().map(|()| v),
                Err(e) => {
                    // (A failed commit has rolled back already.)
                    let _ = self.rollback();
                    Err(e)
                }
            };
            match result {
                Ok(v) => return Ok((v, retries)),
                Err(e) => {
                    let again = match e.kind() {
                        crate::ErrorKind::Deadlock => true,
                        crate::ErrorKind::LockTimeout => retry.on_timeout,
                        _ => false,
                    };
                    if again && retries < retry.max {
                        retries += 1;
                        retry.pause(retries);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Marks a savepoint in the open transaction.
    pub fn savepoint(&self) -> Result<Savepoint> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(Savepoint(SavepointKind::Embedded(s.savepoint()?))),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } if r.defer_writes() => {
                r.conn().send_deferred(&Request::Savepoint)?;
                let n = r.savepoints.fetch_add(1, Ordering::Relaxed);
                Ok(Savepoint(SavepointKind::Remote(n)))
            }
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::Savepoint)? {
                    Reply::Savepoint(n) => {
                        r.savepoints.store(n + 1, Ordering::Relaxed);
                        Ok(Savepoint(SavepointKind::Remote(n)))
                    }
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Undoes the changes made after `sp`.
    pub fn rollback_to(&self, sp: Savepoint) -> Result<()> {
        match (&self.kind, sp.0) {
            (SessionKind::Embedded(s), SavepointKind::Embedded(sp)) => Ok(s.rollback_to(sp)?),
            (
                SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. },
                SavepointKind::Remote(n),
            ) => {
                r.wrote();
                if r.defer_writes() {
                    return r.conn().send_deferred(&Request::RollbackTo(n));
                }
                r.done(&Request::RollbackTo(n))
            }
            _ => Err(Error::Engine(raiz_engine::Error::Transaction(
                "that savepoint belongs to another session".into(),
            ))),
        }
    }

    /// Takes a named lock, waiting at most the session's lock timeout.
    pub fn lock_name(&self, name: &str) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.lock_name(name)?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::LockName(name.to_owned()))
            }
        }
    }

    /// Releases a named lock; false if it was not held (or is kept until the
    /// transaction ends).
    pub fn unlock_name(&self, name: &str) -> Result<bool> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.unlock_name(name)),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.boolean(&Request::UnlockName(name.to_owned()))
            }
        }
    }

    /// xBase `SET DELETED ON`: navigation skips deleted records.
    pub fn set_hide_deleted(&self, on: bool) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => {
                s.set_hide_deleted(on);
                Ok(())
            }
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                if let SessionKind::Cached { cache, .. } = &self.kind {
                    cache.local().set_hide_deleted(on);
                }
                r.wrote();
                r.done(&Request::SetHideDeleted(on))
            }
        }
    }

    /// How long lock requests of this session wait.
    pub fn set_lock_timeout(&self, timeout: Duration) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => {
                s.set_lock_timeout(timeout);
                Ok(())
            }
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => r.done(
                &Request::SetLockTimeout(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            ),
        }
    }

    /// Delayed durability: commits return before their log sync.
    pub fn set_delayed_durability(&self, on: bool) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => {
                s.set_delayed_durability(on);
                Ok(())
            }
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::SetDelayedDurability(on))
            }
        }
    }

    /// Runs a checkpoint.
    pub fn checkpoint(&self) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.database().checkpoint()?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::Checkpoint)
            }
        }
    }

    /// Takes an online backup of the rootpath into `to` (see
    /// [`raiz_engine::backup`]): embedded, a directory of this machine;
    /// remote, of the server's machine (an admin user only).
    pub fn backup(&self, to: &str) -> Result<raiz_engine::backup::BackupReport> {
        match &self.kind {
            SessionKind::Embedded(s) => Ok(s.database().backup(to)?),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::Backup { to: to.to_owned() })? {
                    Reply::Backup(report) => Ok(report),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// One round trip that does nothing.
    pub fn ping(&self) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(_) => Ok(()),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::Ping)
            }
        }
    }

    /// The server's sessions (admin users only).
    pub fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("listing sessions")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::ListSessions)? {
                    Reply::Sessions(s) => Ok(s),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Ends a server session (admin users only).
    pub fn end_session(&self, id: u64) -> Result<bool> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("ending sessions")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.boolean(&Request::EndSession(id))
            }
        }
    }

    /// A table's permissions on the server.
    pub fn permissions(&self, table: &str) -> Result<Permissions> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("table permissions")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::GetPermissions(table.to_owned()))? {
                    Reply::Permissions(p) => Ok(p),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Sets a table's permissions (its owner or an admin).
    pub fn set_permissions(&self, table: &str, permissions: Permissions) -> Result<()> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("table permissions")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                r.done(&Request::SetPermissions {
                    table: table.to_owned(),
                    permissions,
                })
            }
        }
    }

    /// Cache nodes following the server's change stream (admin).
    pub fn list_subscriptions(&self) -> Result<Vec<crate::proto::SubscriptionInfo>> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("listing cache nodes")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::ListSubscriptions)? {
                    Reply::Subscriptions(v) => Ok(v),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// The cluster as the server sees it (a `raiz serve --cluster` member).
    pub fn cluster_status(&self) -> Result<crate::proto::ClusterStatus> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("a cluster's status")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => {
                match r.call(&Request::ClusterStatus)? {
                    Reply::ClusterStatus(v) => Ok(v),
                    other => Err(r.unexpected(&other)),
                }
            }
        }
    }

    /// Adds member `id` (reached by the others at `raft`, by clients at
    /// `client`) to the cluster (an admin user, on the leader); returns the
    /// cluster's state once the new membership is committed.
    pub fn cluster_add_member(
        &self,
        id: u64,
        raft: &str,
        client: &str,
    ) -> Result<crate::proto::ClusterStatus> {
        self.cluster_change(Request::ClusterAddMember {
            id,
            raft: raft.to_owned(),
            client: client.to_owned(),
        })
    }

    /// Removes member `id` from the cluster (an admin user, on the leader).
    pub fn cluster_remove_member(&self, id: u64) -> Result<crate::proto::ClusterStatus> {
        self.cluster_change(Request::ClusterRemoveMember { id })
    }

    /// Has the member this session is on build a snapshot of its database
    /// now (an admin user); returns the member's state once it is its
    /// current snapshot (`snapshot` names the last entry it covers).
    pub fn cluster_snapshot(&self) -> Result<crate::proto::ClusterStatus> {
        self.cluster_change(Request::ClusterSnapshot)
    }

    fn cluster_change(&self, req: Request) -> Result<crate::proto::ClusterStatus> {
        match &self.kind {
            SessionKind::Embedded(_) => Err(Error::RemoteOnly("changing a cluster's members")),
            SessionKind::Remote(r) | SessionKind::Cached { remote: r, .. } => match r.call(&req)? {
                Reply::ClusterStatus(v) => Ok(v),
                other => Err(r.unexpected(&other)),
            },
        }
    }

    /// Ends the session: rolls back an open transaction and releases its locks
    /// (remote: closes the connection).
    pub fn end(self) -> Result<()> {
        match self.kind {
            SessionKind::Embedded(s) => Ok(s.end()?),
            SessionKind::Remote(_) | SessionKind::Cached { .. } => Ok(()),
        }
    }
}
