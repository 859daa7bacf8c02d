//! The engine side of one connection: an OS thread that owns the session and
//! its table handles and executes the connection's requests in order, so the
//! engine's blocking work (I/O, lock waits, fsync) never runs on the async
//! reactor. Every request is checked against the user's rights first; the
//! user is re-read when the server's user list changed (a removed user's
//! session ends with an error saying so). Before a request that may wait for
//! a lock, the worker notes the lock in its registry entry, so the monitor
//! and the lock-idle watchdog see who waits on whom. On a plain connection
//! the thread also reads the requests from the socket and writes the replies
//! ([`Worker::run_plain`]); on a TLS one it takes them from the reader task's
//! queue and queues the replies for the writer task ([`Worker::run`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_client::proto::{
    BatchAction, BatchRequest, Position, Reply, Request, TableOp, TableOut, WireError,
};
use raiz_client::ErrorKind;
use raiz_engine::db::{CursorState, Savepoint};
use raiz_engine::{LockKey, Session, Table};
use tokio::sync::OwnedSemaphorePermit;

use crate::acl::{self, Right};
use crate::ahead::{nav, MAX_AHEAD};
use crate::limits::Outbox;
use crate::registry::Entry;
use crate::users::User;
use crate::Shared;

/// Sends a reply on a plain connection; false once the connection is gone.
fn send_plain(entry: &Entry, conn: &mut crate::direct::PlainConn, payload: &[u8]) -> bool {
    match conn.send(payload) {
        Ok(()) => {
            entry
                .bytes_out
                .fetch_add(payload.len() as u64 + 4, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::debug!(session = entry.id, error = %e, "reply not sent");
            false
        }
    }
}

/// Named locks one session may hold.
pub const MAX_NAMED_LOCKS: usize = 1024;
/// Longest lock name, in bytes.
pub const MAX_LOCK_NAME: usize = 256;

/// One queued request: its id, the request or why it did not decode, and
/// its bytes' reservation in the frame budget (released once it has run).
pub struct Item {
    id: u64,
    req: Result<Request, String>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Item {
    /// A decoded request.
    pub fn new(id: u64, req: Request, budget: Option<OwnedSemaphorePermit>) -> Item {
        Item {
            id,
            req: Ok(req),
            _budget: budget,
        }
    }

    /// A frame that did not decode: answered `BadRequest` with `why`.
    pub fn refused(id: u64, why: String) -> Item {
        Item {
            id,
            req: Err(why),
            _budget: None,
        }
    }
}

struct Handle {
    table: Table,
    /// One of the session's temporary tables: every right, whatever a real
    /// table of the same name allows.
    temporary: bool,
    /// Shared, so a request names its table without copying the string.
    name: Arc<str>,
    /// Positions the last move passed while reading ahead, so a client's
    /// `sync` puts the cursor back exactly (by key, not only by recno).
    passed: Vec<CursorState>,
}

/// The session's state on its thread.
pub struct Worker {
    shared: Arc<Shared>,
    session: Session,
    user: User,
    entry: Arc<Entry>,
    handles: HashMap<u32, Handle>,
    iters: HashMap<u32, (crate::ahead::Range, Arc<str>, bool)>,
    savepoints: Vec<Savepoint>,
    /// The client sends writes inside transactions without waiting.
    deferred: bool,
    /// The first such write that failed in the open transaction.
    txn_failed: Option<WireError>,
    next_id: u32,
    /// The user list generation `user` was read at.
    users_seen: u64,
    /// Temporary tables this session created (lower case).
    temps: HashSet<String>,
    /// Named locks taken (may include some a transaction's end released).
    names: HashSet<String>,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> WireError {
    WireError {
        kind,
        message: message.into(),
    }
}

pub(crate) fn engine(e: raiz_engine::Error) -> WireError {
    WireError {
        kind: ErrorKind::of(&e),
        message: e.to_string(),
    }
}

pub(crate) type R<T> = Result<T, WireError>;

pub(crate) fn position(t: &Table) -> Position {
    Position {
        recno: t.recno(),
        bof: t.bof(),
        eof: t.eof(),
        found: t.found(),
        on_record: t.on_record(),
    }
}

impl Worker {
    /// A worker for an authenticated session.
    pub fn new(shared: Arc<Shared>, session: Session, user: User, entry: Arc<Entry>) -> Worker {
        Worker {
            users_seen: shared.users.generation(),
            temps: HashSet::new(),
            names: HashSet::new(),
            shared,
            session,
            user,
            entry,
            handles: HashMap::new(),
            iters: HashMap::new(),
            savepoints: Vec::new(),
            deferred: false,
            txn_failed: None,
            next_id: 1,
        }
    }

    /// Executes requests until the connection's queue closes, sending each
    /// encoded response to `out` (a TLS connection: see [`crate::conn`]).
    /// Then ends the session: its transaction is rolled back and its locks
    /// released.
    pub fn run(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<Item>,
        out: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
        outbox: &Outbox,
    ) {
        let mut send = |payload: Vec<u8>| {
            outbox.queued(payload.len());
            out.send(payload).is_ok()
        };
        // Waits while the client has not read REPLY_BUDGET bytes of replies.
        while outbox.wait_room() {
            let Some(item) = rx.blocking_recv() else {
                break;
            };
            if let Ok(Request::Subscribe { tables, after }) = &item.req {
                // The connection becomes a change stream until it ends.
                let shared = self.shared.clone();
                let closed = || rx.is_closed() || *shared.shutdown.borrow();
                self.subscribe(item.id, tables, *after, &out, outbox, &closed);
                break;
            }
            if !self.serve(item, &mut send) {
                break;
            }
        }
        self.finish(&mut send);
    }

    /// Serves a plain connection to its end on this thread: reads each
    /// request from the socket, runs it and writes the reply (see
    /// [`crate::direct`]). `rt` is the server's runtime, for the frame
    /// budget's semaphore.
    pub fn run_plain(mut self, mut conn: crate::direct::PlainConn, rt: &tokio::runtime::Handle) {
        let config = &self.shared.config;
        let (idle, frame, limit) = (
            config.idle_timeout(),
            config.frame_timeout(),
            config.max_frame(),
        );
        let why = loop {
            // An end by an admin or the server also shuts the socket's
            // reading side, but a request already on its way may still be
            // read after that: the session's state decides, not the read.
            if self.ended() {
                break "ended";
            }
            let shared = self.shared.clone();
            let read = conn.read_frame(idle, frame, limit, |len| {
                rt.block_on(shared.limits.frame(len))
            });
            let (payload, permit) = match read {
                Ok(f) => f,
                Err(end) => {
                    if let crate::direct::ReadEnd::TooLarge(len) = end {
                        let msg =
                            format!("frame of {len} bytes exceeds the limit of {limit} bytes");
                        let _ =
                            conn.send(&crate::conn::error_payload(0, ErrorKind::BadRequest, msg));
                    }
                    if let crate::direct::ReadEnd::Io(e) = &end {
                        tracing::debug!(session = self.entry.id, error = %e, "read");
                    }
                    break end.reason();
                }
            };
            self.entry
                .bytes_in
                .fetch_add(payload.len() as u64 + 4, Ordering::Relaxed);
            self.entry.touch();
            let item = match raiz_client::proto::decode_request(&payload) {
                Ok((id, req)) => Item::new(id, req, permit),
                Err((Some(id), why)) => Item::refused(id, why),
                Err((None, why)) => {
                    let _ = conn.send(&crate::conn::error_payload(0, ErrorKind::BadRequest, why));
                    break "undecodable frame";
                }
            };
            drop(payload);
            if self.ended() {
                break "ended";
            }
            if let Ok(Request::Subscribe { tables, after }) = &item.req {
                self.subscribe_plain(item.id, tables, *after, &conn);
                break "change stream ended";
            }
            let entry = self.entry.clone();
            let mut send = |p: Vec<u8>| send_plain(&entry, &mut conn, &p);
            if !self.serve(item, &mut send) {
                break "connection lost";
            }
        };
        // A read woken by the end of the session reads as a close.
        let why = if self.entry.is_ended() {
            "ended by an admin or the server"
        } else if *self.shared.shutdown.borrow() {
            "server shutting down"
        } else {
            why
        };
        tracing::info!(
            session = self.entry.id,
            reason = why,
            detail = self.entry.reason().as_deref().unwrap_or(""),
            "session ending"
        );
        let entry = self.entry.clone();
        self.finish(&mut |p: Vec<u8>| send_plain(&entry, &mut conn, &p));
        conn.close();
    }

    /// Whether an admin, the watchdog or the server ended this session.
    fn ended(&self) -> bool {
        self.entry.is_ended() || *self.shared.shutdown.borrow()
    }

    /// Runs one request and sends its reply through `send`; false when the
    /// session must end (the reply could not be sent, or the user's rights
    /// were revoked).
    fn serve(&mut self, item: Item, send: &mut dyn FnMut(Vec<u8>) -> bool) -> bool {
        let id = item.id;
        self.entry.busy.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let kind = item
            .req
            .as_ref()
            .map_or("undecodable", crate::metrics::request_kind);
        let revoked = self.revalidate();
        let writes = item.req.as_ref().is_ok_and(is_write);
        let body = match (&revoked, item.req) {
            (Some(why), _) => Err(err(ErrorKind::Closed, why.clone())),
            (None, Ok(r)) => self.handle(r),
            (None, Err(why)) => Err(err(ErrorKind::BadRequest, why)),
        };
        if let (true, true, Err(e)) = (self.deferred, writes, &body) {
            if self.session.in_transaction() && self.txn_failed.is_none() {
                self.txn_failed = Some(e.clone());
            }
        }
        *self.entry.waiting.lock() = None;
        self.entry.blocked_by.lock().clear();
        if let Err(e) = &body {
            tracing::debug!(session = self.entry.id, kind = ?e.kind, "{}", e.message);
        }
        self.shared
            .metrics
            .record(kind, body.as_ref().err().map(|e| e.kind), started.elapsed());
        self.entry.requests.fetch_add(1, Ordering::Relaxed);
        let open = self.session.in_transaction();
        {
            let mut since = self.entry.txn_since.lock();
            match (open, since.is_some()) {
                (true, false) => *since = Some(Instant::now()),
                (false, true) => *since = None,
                _ => {}
            }
        }
        let payload = raiz_client::proto::encode(&raiz_client::proto::Envelope { id, body });
        self.entry.busy.store(false, Ordering::Relaxed);
        if !send(payload) {
            return false;
        }
        if let Some(why) = revoked {
            self.entry.end_because(why);
            return false;
        }
        true
    }

    /// Ends the session: says why it was ended, if it was (after the last
    /// reply), rolls its transaction back and releases its locks.
    fn finish(mut self, send: &mut dyn FnMut(Vec<u8>) -> bool) {
        if let Some(reason) = self.entry.reason() {
            send(crate::conn::error_payload(0, ErrorKind::Closed, reason));
        }
        self.iters.clear();
        self.handles.clear();
        if self.session.in_transaction() {
            tracing::info!(session = self.entry.id, user = %self.user.name, "connection ended inside a transaction: rolled back");
        }
        if let Err(e) = self.session.end() {
            tracing::warn!(session = self.entry.id, error = %e, "ending the session");
        }
    }

    /// A change stream on a plain connection: a writer thread sends what the
    /// stream queues, a watcher thread reads (and drops) whatever the node
    /// sends until the connection closes.
    fn subscribe_plain(
        &mut self,
        id: u64,
        tables: &[String],
        after: Option<raiz_client::proto::StreamPos>,
        conn: &crate::direct::PlainConn,
    ) {
        let (Ok(mut writer), Ok(watch)) = (conn.writer(), conn.watcher()) else {
            return;
        };
        let outbox = Arc::new(Outbox::default());
        let (out, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let entry = self.entry.clone();
        let writer_outbox = outbox.clone();
        let sending = std::thread::Builder::new()
            .name(format!("raiz-stream-{}", entry.id))
            .spawn(move || {
                while let Some(p) = out_rx.blocking_recv() {
                    let n = p.len();
                    if writer.send(&p).is_err() {
                        break;
                    }
                    entry.bytes_out.fetch_add(n as u64 + 4, Ordering::Relaxed);
                    writer_outbox.sent(n);
                }
                writer_outbox.close();
            });
        let watch_gone = gone.clone();
        let watching = std::thread::Builder::new()
            .name(format!("raiz-watch-{}", self.entry.id))
            .spawn(move || {
                watch.wait_closed();
                watch_gone.store(true, Ordering::Relaxed);
            });
        let (Ok(sending), Ok(watching)) = (sending, watching) else {
            return;
        };
        let shared = self.shared.clone();
        let me = self.entry.clone();
        let closed =
            || gone.load(Ordering::Relaxed) || *shared.shutdown.borrow() || me.reason().is_some();
        self.subscribe(id, tables, after, &out, &outbox, &closed);
        drop(out);
        let _ = sending.join();
        conn.close();
        let _ = watching.join();
    }

    /// Serves a change stream on this connection (a cache node) until the
    /// connection ends or the node is cut off.
    fn subscribe(
        &mut self,
        id: u64,
        tables: &[String],
        after: Option<raiz_client::proto::StreamPos>,
        out: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
        outbox: &Outbox,
        closed: &dyn Fn() -> bool,
    ) {
        let send = |body: R<Reply>| {
            let payload = raiz_client::proto::encode(&raiz_client::proto::Envelope { id, body });
            outbox.queued(payload.len());
            let _ = out.send(payload);
        };
        let mut names = Vec::new();
        for t in tables {
            let checked = raiz_engine::validate_table_name(t)
                .map_err(engine)
                .and_then(|n| self.need(&n, Right::Read).map(|()| n));
            match checked {
                Ok(n) if !names.contains(&n) => names.push(n),
                Ok(_) => {}
                Err(e) => return send(Err(e)),
            }
        }
        if names.is_empty() {
            return send(Err(err(
                ErrorKind::BadRequest,
                "subscribe to at least one table",
            )));
        }
        let stream = self.shared.stream.clone();
        let (start, reload) = stream.subscribe(&names, after);
        tracing::info!(session = self.entry.id, user = %self.user.name, tables = ?names, start, reload = ?reload, "cache node subscribed");
        send(Ok(Reply::Subscribed {
            epoch: stream.epoch(),
            start,
            reload,
        }));
        // A streaming session is never idle: it is sending.
        self.entry.busy.store(true, Ordering::Relaxed);
        let sub = Arc::new(crate::stream::Subscription {
            session: self.entry.id,
            user: self.user.name.clone(),
            peer: self.entry.address.clone(),
            tables: names,
            sent: Default::default(),
            unread: Default::default(),
        });
        match stream.serve(id, start, sub, out, outbox, closed) {
            crate::stream::End::Closed => {}
            crate::stream::End::Cut(e) => {
                tracing::warn!(session = self.entry.id, user = %self.user.name, "{}", e.message);
                send(Err(e));
            }
        }
        self.entry.busy.store(false, Ordering::Relaxed);
    }

    /// Forgets the positions `handle`'s last move passed while reading
    /// ahead: the next `sync` places the cursor afresh (a front-end that
    /// moved the application's handle elsewhere since).
    pub(crate) fn forget_passed(&mut self, handle: u32) {
        if let Some(h) = self.handles.get_mut(&handle) {
            h.passed.clear();
        }
    }

    /// Ends the session (a front-end that drives the worker itself).
    pub(crate) fn end(self) {
        let Worker {
            session,
            handles,
            iters,
            ..
        } = self;
        drop(iters);
        drop(handles);
        if let Err(e) = session.end() {
            tracing::warn!(error = %e, "ending a session");
        }
    }

    /// Re-reads the user when the user list changed; why the session must
    /// end when the user is gone.
    fn revalidate(&mut self) -> Option<String> {
        let generation = self.shared.users.generation();
        if generation == self.users_seen {
            return None;
        }
        self.users_seen = generation;
        match self.shared.users.current().get(&self.user.name) {
            Some(u) => {
                if u.admin != self.user.admin || u.groups != self.user.groups {
                    tracing::info!(session = self.entry.id, user = %u.name, admin = u.admin, groups = ?u.groups, "the user's rights changed; applied to the session");
                }
                self.user = u.clone();
                None
            }
            None => {
                tracing::warn!(session = self.entry.id, user = %self.user.name, "the user was removed; ending the session");
                Some(removed(&self.user.name))
            }
        }
    }

    /// Notes the lock the current request may wait for.
    fn may_wait(&self, key: LockKey) {
        *self.entry.waiting.lock() = Some(key);
    }

    fn need_on(&self, table: &str, temporary: bool, right: Right) -> R<()> {
        if temporary {
            return Ok(());
        }
        self.need(table, right)
    }

    fn need(&self, table: &str, right: Right) -> R<()> {
        if self.shared.acl.allows(&self.user, table, right) {
            Ok(())
        } else {
            tracing::warn!(user = %self.user.name, table, right = right.name(), "permission denied");
            Err(err(
                ErrorKind::PermissionDenied,
                format!(
                    "user {} may not {} table {table}",
                    self.user.name,
                    right.name()
                ),
            ))
        }
    }

    fn name_ok(name: &str) -> R<()> {
        raiz_engine::validate_table_name(name)
            .map(drop)
            .map_err(engine)
    }

    fn admin(&self, what: &str) -> R<()> {
        if self.user.admin {
            Ok(())
        } else {
            Err(err(
                ErrorKind::PermissionDenied,
                format!("{what} needs an admin user; {} is not one", self.user.name),
            ))
        }
    }

    /// The cluster member this server is, or why not.
    fn cluster(&self) -> R<&std::sync::Arc<raiz_cluster::ClusterMember>> {
        self.shared.cluster.as_ref().ok_or_else(|| {
            err(
                ErrorKind::Unsupported,
                "this server is not a cluster member (raiz serve --cluster)",
            )
        })
    }

    /// Opens a handle on `name`: the next free number, or `want` (a session
    /// moved after a failover asks for the handles it had).
    fn open_table(&mut self, name: String, want: Option<u32>) -> R<Reply> {
        Self::name_ok(&name)?;
        if let Some(h) = want {
            if h == 0 || self.handles.contains_key(&h) {
                return Err(err(
                    ErrorKind::BadRequest,
                    format!("handle {h} is in use or not a handle number"),
                ));
            }
        }
        let temporary = self.temps.contains(&name.to_ascii_lowercase());
        self.need_on(&name, temporary, Right::Read)?;
        let table = self.session.open_table(&name).map_err(engine)?;
        let id = match want {
            Some(h) => {
                self.next_id = self.next_id.max(h.wrapping_add(1)).max(1);
                h
            }
            None => {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                id
            }
        };
        let schema = (*table.schema()).clone();
        let at = position(&table);
        let tname = table.name();
        self.entry.tables.lock().push(tname.clone());
        self.handles.insert(
            id,
            Handle {
                table,
                temporary,
                name: Arc::from(tname.as_str()),
                passed: Vec::new(),
            },
        );
        Ok(Reply::Opened {
            handle: id,
            name: tname,
            schema,
            at,
        })
    }

    pub(crate) fn handle(&mut self, req: Request) -> R<Reply> {
        let s = &self.session;
        let db = self.shared.db.clone();
        Ok(match req {
            Request::Hello { .. } => {
                return Err(err(ErrorKind::BadRequest, "already authenticated"))
            }
            Request::Ping => Reply::Done,
            Request::ListTables => {
                let mut tables = db.list_tables().map_err(engine)?;
                tables.retain(|t| self.shared.acl.allows(&self.user, t, Right::Read));
                Reply::Tables(tables)
            }
            Request::TableExists(name) => {
                Self::name_ok(&name)?;
                Reply::Bool(db.table_exists(&name).map_err(engine)?)
            }
            Request::CreateTable {
                name,
                schema,
                options,
            } => {
                Self::name_ok(&name)?;
                let temporary = options.durability == raiz_engine::Durability::Temporary;
                s.create_table(&name, &schema, options).map_err(engine)?;
                if temporary {
                    self.temps.insert(name.to_ascii_lowercase());
                } else {
                    self.shared
                        .acl
                        .set(&name, Some(acl::for_new_table(&self.user)))
                        .map_err(|e| err(ErrorKind::Io, e.to_string()))?;
                }
                Reply::Done
            }
            Request::DropTable(name) => {
                Self::name_ok(&name)?;
                self.need(&name, Right::Define)?;
                db.drop_table(&name).map_err(engine)?;
                self.shared
                    .acl
                    .set(&name, None)
                    .map_err(|e| err(ErrorKind::Io, e.to_string()))?;
                Reply::Done
            }
            Request::OpenTable(name) => self.open_table(name, None)?,
            Request::OpenTableAs { name, handle } => self.open_table(name, Some(handle))?,
            Request::Begin => {
                s.begin().map_err(engine)?;
                self.savepoints.clear();
                self.txn_failed = None;
                Reply::Done
            }
            Request::InTransaction => Reply::Bool(s.in_transaction()),
            Request::Commit => {
                if let Some(e) = self.txn_failed.take() {
                    // A write the client did not wait for failed: the
                    // transaction is not whole, so it is not committed.
                    s.rollback().map_err(engine)?;
                    return Err(e);
                }
                s.commit().map_err(engine)?;
                Reply::Done
            }
            Request::Rollback => {
                self.txn_failed = None;
                s.rollback().map_err(engine)?;
                Reply::Done
            }
            Request::Subscribe { .. } => {
                return Err(err(
                    ErrorKind::BadRequest,
                    "a subscription must be a connection's request",
                ))
            }
            Request::FeedPosition => Reply::Count(db.feed().last_seq()),
            Request::ClusterStatus => Reply::ClusterStatus(crate::cluster::status(self.cluster()?)),
            Request::ClusterAddMember { id, raft, client } => {
                self.admin("changing the cluster's members")?;
                let m = self.cluster()?;
                m.add_member(id, raiz_cluster::Member { raft, client })
                    .map_err(engine)?;
                tracing::info!(user = %self.user.name, id, "cluster member added");
                Reply::ClusterStatus(crate::cluster::status(m))
            }
            Request::ClusterRemoveMember { id } => {
                self.admin("changing the cluster's members")?;
                let m = self.cluster()?;
                m.remove_member(id).map_err(engine)?;
                tracing::info!(user = %self.user.name, id, "cluster member removed");
                Reply::ClusterStatus(crate::cluster::status(m))
            }
            Request::ClusterSnapshot => {
                self.admin("building a cluster snapshot")?;
                let m = self.cluster()?;
                let started = std::time::Instant::now();
                let index = m.snapshot().map_err(engine)?;
                tracing::info!(user = %self.user.name, index = ?index, secs = started.elapsed().as_secs_f64(), "cluster snapshot built on request");
                Reply::ClusterStatus(crate::cluster::status(m))
            }
            Request::ListSubscriptions => {
                self.admin("listing cache nodes")?;
                Reply::Subscriptions(self.shared.stream.subscriptions())
            }
            Request::SetDeferredWrites(on) => {
                self.deferred = on;
                Reply::Done
            }
            Request::Savepoint => {
                self.savepoints.push(s.savepoint().map_err(engine)?);
                Reply::Savepoint(self.savepoints.len() as u64 - 1)
            }
            Request::RollbackTo(n) => {
                let sp = *usize::try_from(n)
                    .ok()
                    .and_then(|n| self.savepoints.get(n))
                    .ok_or_else(|| err(ErrorKind::Transaction, format!("no savepoint {n}")))?;
                s.rollback_to(sp).map_err(engine)?;
                Reply::Done
            }
            Request::LockName(name) => {
                self.named_lock_allowed(&name)?;
                self.may_wait(LockKey::Name(name.as_str().into()));
                self.session.lock_name(&name).map_err(engine)?;
                self.names.insert(name);
                Reply::Done
            }
            Request::UnlockName(name) => {
                let released = self.session.unlock_name(&name);
                if released {
                    self.names.remove(&name);
                }
                Reply::Bool(released)
            }
            Request::SetHideDeleted(on) => {
                s.set_hide_deleted(on);
                Reply::Done
            }
            Request::SetLockTimeout(ms) => {
                s.set_lock_timeout(Duration::from_millis(ms));
                Reply::Done
            }
            Request::SetDelayedDurability(on) => {
                s.set_delayed_durability(on);
                Reply::Done
            }
            Request::Checkpoint => {
                self.admin("a checkpoint")?;
                db.checkpoint().map_err(engine)?;
                Reply::Done
            }
            Request::Backup { to } => {
                self.admin("a backup")?;
                let report = db.backup(&to).map_err(engine)?;
                tracing::info!(session = self.entry.id, user = %self.user.name, to = %report.path.display(),
                    bytes = report.bytes + report.log_bytes, pause_ms = report.pause.as_secs_f64() * 1e3, "backup taken");
                Reply::Backup(report)
            }
            Request::Table { handle, sync, op } => self.table(handle, sync, op)?,
            Request::RangeNext { iter, max, resume } => {
                let (name, temporary) = self
                    .iters
                    .get(&iter)
                    .map(|(_, n, t)| (n.clone(), *t))
                    .ok_or_else(|| {
                        err(ErrorKind::BadRequest, format!("no range iterator {iter}"))
                    })?;
                self.need_on(&name, temporary, Right::Read)?;
                let it = match self.iters.get_mut(&iter) {
                    Some((it, _, _)) => it,
                    None => return Err(err(ErrorKind::BadRequest, "no range iterator")),
                };
                if let Some(used) = resume {
                    it.resume(used);
                }
                let (records, done) = it.take(max.clamp(1, MAX_AHEAD))?;
                Reply::RangeMore { records, done }
            }
            Request::RangeClose(iter) => {
                self.iters.remove(&iter);
                Reply::Done
            }
            Request::ListSessions => {
                self.admin("listing sessions")?;
                let locks = db.locks();
                Reply::Sessions(self.shared.registry.list(&|id| {
                    locks
                        .iter()
                        .filter(|l| l.session == id)
                        .map(|l| l.key.to_string())
                        .collect()
                }))
            }
            Request::EndSession(id) => {
                self.admin("ending sessions")?;
                tracing::info!(by = %self.user.name, session = id, "session ended by an admin");
                Reply::Bool(self.shared.registry.end(id))
            }
            Request::GetPermissions(table) => {
                Self::name_ok(&table)?;
                Reply::Permissions(self.shared.acl.get(&table))
            }
            Request::SetPermissions { table, permissions } => {
                Self::name_ok(&table)?;
                let current = self.shared.acl.get(&table);
                if !self.user.admin && current.owner != self.user.name {
                    return Err(err(
                        ErrorKind::PermissionDenied,
                        format!("only the owner of {table} or an admin may change its permissions"),
                    ));
                }
                if !db.table_exists(&table).map_err(engine)? {
                    return Err(engine(raiz_engine::Error::TableNotFound {
                        table,
                        root: db.root().to_path_buf(),
                    }));
                }
                crate::users::validate_name("user", &permissions.owner)
                    .and_then(|_| crate::users::validate_name("group", &permissions.group))
                    .map_err(|e| err(ErrorKind::InvalidName, e.to_string()))?;
                self.shared
                    .acl
                    .set(&table, Some(permissions))
                    .map_err(|e| err(ErrorKind::Io, e.to_string()))?;
                Reply::Done
            }
        })
    }

    /// Refuses a named lock over the per-session limits.
    fn named_lock_allowed(&mut self, name: &str) -> R<()> {
        if name.len() > MAX_LOCK_NAME {
            return Err(err(
                ErrorKind::InvalidName,
                format!(
                    "a lock name of {} bytes exceeds the limit of {MAX_LOCK_NAME}",
                    name.len()
                ),
            ));
        }
        if self.names.len() >= MAX_NAMED_LOCKS && !self.names.contains(name) {
            // Locks a transaction's end released are still counted: recount.
            let me = self.session.id();
            self.names = self
                .shared
                .db
                .locks()
                .into_iter()
                .filter_map(|l| match l.key {
                    LockKey::Name(n) if l.session == me => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            if self.names.len() >= MAX_NAMED_LOCKS {
                return Err(err(
                    ErrorKind::LockConflict,
                    format!(
                        "session {me} holds {MAX_NAMED_LOCKS} named locks, the most one session may hold"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn table(&mut self, handle: u32, sync: Option<Position>, op: TableOp) -> R<Reply> {
        let (name, temporary) = self
            .handles
            .get(&handle)
            .map(|h| (h.name.clone(), h.temporary))
            .ok_or_else(|| {
                err(
                    ErrorKind::BadRequest,
                    format!("no open table handle {handle}"),
                )
            })?;
        let right = match &op {
            TableOp::Append(_)
            | TableOp::Insert(_)
            | TableOp::Update { .. }
            | TableOp::UpdateFields { .. }
            | TableOp::SeekLock(_)
            | TableOp::Recall(_)
            | TableOp::Lock { .. }
            | TableOp::Unlock(_)
            | TableOp::LockFile { .. }
            | TableOp::UnlockFile
            | TableOp::Flush => Right::Write,
            TableOp::Delete(_) => Right::Delete,
            TableOp::CreateIndex(_)
            | TableOp::DropIndex(_)
            | TableOp::Rebuild
            | TableOp::Pack
            | TableOp::Alter(_) => Right::Define,
            TableOp::Batch(b) => match &b.action {
                BatchAction::Read { lock_ms: None } => Right::Read,
                BatchAction::Read { .. } | BatchAction::Update(_) => Right::Write,
                BatchAction::Delete => Right::Delete,
            },
            _ => Right::Read,
        };
        if let TableOp::Close = op {
            self.handles.remove(&handle);
            let mut tables = self.entry.tables.lock();
            if let Some(i) = tables.iter().position(|t| **t == *name) {
                tables.remove(i);
            }
            return Ok(Reply::Table {
                at: Position::default(),
                out: TableOut::Done,
            });
        }
        // Closing needs no right (the rights may have changed since the open).
        self.need_on(&name, temporary, right)?;
        match &op {
            TableOp::Lock { recno, .. }
            | TableOp::Update { recno, .. }
            | TableOp::UpdateFields { recno, .. }
            | TableOp::Delete(recno)
            | TableOp::Recall(recno) => self.may_wait(LockKey::Record(name.clone(), *recno)),
            TableOp::LockFile { .. } => self.may_wait(LockKey::File(name.clone())),
            _ => {}
        }
        let session = self.session.clone();
        let h = self.handles.get_mut(&handle).ok_or_else(|| {
            err(
                ErrorKind::BadRequest,
                format!("no open table handle {handle}"),
            )
        })?;
        let t = &mut h.table;
        if let Some(pos) = sync {
            match h.passed.iter().find(|c| c.recno() == pos.recno) {
                Some(state) if pos.on_record => {
                    t.restore_cursor(state).map_err(engine)?;
                    // The application's flags, as it saw them (a read-ahead
                    // record's own flags may differ: bof at the end of a
                    // backward batch).
                    t.set_flags(pos.bof, pos.eof, pos.found);
                }
                _ => t
                    .place(pos.recno, pos.bof, pos.eof, pos.found, pos.on_record)
                    .map_err(engine)?,
            }
        }
        if !keeps_passed(&op) || sync.is_some() {
            h.passed.clear();
        }
        let out = match op {
            TableOp::Close | TableOp::Position => TableOut::Done,
            TableOp::Info => TableOut::Info(Box::new(t.info())),
            TableOp::Append(v) => {
                t.append(&v).map_err(engine)?;
                TableOut::Appended(t.record().map_err(engine)?.into())
            }
            TableOp::Read(r) => TableOut::Record(t.read(r).map_err(engine)?.into()),
            TableOp::ReadMemo { recno, field } => {
                TableOut::Memo(t.read_memo(recno, &field).map_err(engine)?)
            }
            TableOp::Update { recno, values } => {
                t.update(recno, &values).map_err(engine)?;
                TableOut::Done
            }
            TableOp::Delete(r) => {
                t.delete(r).map_err(engine)?;
                TableOut::Done
            }
            TableOp::Recall(r) => {
                t.recall(r).map_err(engine)?;
                TableOut::Done
            }
            TableOp::IsDeleted(r) => TableOut::Bool(t.is_deleted(r).map_err(engine)?),
            TableOp::Lock { recno, timeout_ms } => TableOut::Record(
                if timeout_ms == u64::MAX {
                    t.rlock(recno)
                } else {
                    t.lock(recno, Duration::from_millis(timeout_ms))
                }
                .map_err(engine)?
                .into(),
            ),
            TableOp::Unlock(r) => TableOut::Bool(t.unlock(r)),
            TableOp::LockFile { timeout_ms } => {
                t.lock_file(Duration::from_millis(timeout_ms))
                    .map_err(engine)?;
                TableOut::Done
            }
            TableOp::UnlockFile => TableOut::Bool(t.unlock_file()),
            TableOp::Flush => {
                t.flush().map_err(engine)?;
                TableOut::Done
            }
            TableOp::Snapshot => TableOut::Records(
                t.snapshot()
                    .map_err(engine)?
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            ),
            TableOp::CreateIndex(def) => {
                t.create_index(&def).map_err(engine)?;
                TableOut::Done
            }
            TableOp::DropIndex(n) => {
                t.drop_index(&n).map_err(engine)?;
                TableOut::Done
            }
            TableOp::Check { limit } => TableOut::Check(t.check(limit as usize).map_err(engine)?),
            TableOp::Rebuild => TableOut::Rewrite(t.rebuild().map_err(engine)?),
            TableOp::Pack => TableOut::Rewrite(t.pack().map_err(engine)?),
            TableOp::Alter(schema) => TableOut::Rewrite(t.alter(&schema).map_err(engine)?),
            TableOp::SetOrder(o) => {
                t.set_order(o.as_deref()).map_err(engine)?;
                TableOut::Done
            }
            TableOp::SetScope { lower, upper } => {
                t.set_scope(lower.as_deref(), upper.as_deref())
                    .map_err(engine)?;
                TableOut::Done
            }
            TableOp::ClearScope => {
                t.clear_scope();
                TableOut::Done
            }
            TableOp::SetFilter(c) => {
                t.set_filter_condition(c.as_ref()).map_err(engine)?;
                TableOut::Done
            }
            TableOp::Nav { op, ahead } => return nav(t, op, ahead, &mut h.passed),
            TableOp::Current => TableOut::Record(t.record().map_err(engine)?.into()),
            TableOp::KeyCount => TableOut::Count(t.key_count().map_err(engine)?),
            TableOp::SeekLock(key) => {
                TableOut::Locked(t.seek_lock(&key).map_err(engine)?.map(Into::into))
            }
            TableOp::UpdateFields { recno, fields } => {
                let fields: Vec<(&str, raiz_engine::Value)> = fields
                    .iter()
                    .map(|(f, v)| (f.as_str(), v.clone()))
                    .collect();
                t.update_fields(recno, &fields).map_err(engine)?;
                TableOut::Done
            }
            TableOp::Insert(values) => TableOut::Count(t.insert(&values).map_err(engine)?),
            TableOp::KeyNo => TableOut::Count(t.key_no().map_err(engine)?),
            TableOp::Dump { after, max } => {
                let (records, count, done) = t
                    .dump(after, (max as usize).min(crate::ahead::MAX_AHEAD as usize))
                    .map_err(engine)?;
                TableOut::Dump {
                    records: records.into_iter().map(Into::into).collect(),
                    count,
                    done,
                }
            }
            TableOp::CountRange { lower, upper } => TableOut::Count(
                t.count_range(lower.as_deref(), upper.as_deref())
                    .map_err(engine)?,
            ),
            TableOp::EstimateRange { lower, upper } => TableOut::Count(
                t.estimate_range(lower.as_deref(), upper.as_deref())
                    .map_err(engine)?,
            ),
            TableOp::Range {
                lower,
                upper,
                first,
            } => {
                let mut it = crate::ahead::Range::new(
                    t.range(lower.as_deref(), upper.as_deref())
                        .map_err(engine)?,
                );
                let (records, done) = it.take(first.clamp(1, MAX_AHEAD))?;
                // Kept until the client closes it, even when done: the
                // client's own writes may need it put back and read again.
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                self.iters.insert(id, (it, name.clone(), temporary));
                let iter = Some(id);
                let at = position(&self.handles[&handle].table);
                return Ok(Reply::Table {
                    at,
                    out: TableOut::Range {
                        iter,
                        records,
                        done,
                    },
                });
            }
            TableOp::Batch(b) => {
                let (count, records) = raiz_client::batch::run(&session, t, &b).map_err(engine)?;
                TableOut::Batch {
                    count,
                    records: records.into_iter().map(Into::into).collect(),
                }
            }
        };
        Ok(Reply::Table {
            at: position(t),
            out,
        })
    }
}

/// True for the requests a client may send without waiting when it defers
/// writes: their failure must fail the transaction's commit.
fn is_write(req: &Request) -> bool {
    match req {
        Request::Savepoint | Request::RollbackTo(_) => true,
        Request::Table { op, .. } => matches!(
            op,
            TableOp::Append(_)
                | TableOp::Insert(_)
                | TableOp::Update { .. }
                | TableOp::UpdateFields { .. }
                | TableOp::Delete(_)
                | TableOp::Recall(_)
        ),
        _ => false,
    }
}

/// Why a removed user's session ends.
pub fn removed(user: &str) -> String {
    format!("user {user} was removed from the server's user list; session ended")
}

/// Operations whose answer does not depend on the handle's position and
/// that leave it alone: any side answers them without the position carried
/// over, and they do not move it.
pub(crate) fn positionless(op: &TableOp) -> bool {
    matches!(
        op,
        TableOp::Info
            | TableOp::Read(_)
            | TableOp::ReadMemo { .. }
            | TableOp::IsDeleted(_)
            | TableOp::Snapshot
            | TableOp::KeyCount
            | TableOp::CountRange { .. }
            | TableOp::EstimateRange { .. }
            | TableOp::Range { .. }
            | TableOp::Dump { .. }
            | TableOp::Lock { .. }
            | TableOp::Unlock(_)
            | TableOp::LockFile { .. }
            | TableOp::UnlockFile
            | TableOp::Flush
            | TableOp::Check { .. }
            | TableOp::Batch(BatchRequest {
                action: BatchAction::Read { lock_ms: None },
                ..
            })
    )
}

/// Operations that leave the cursor alone and keep a handle's read-ahead
/// positions: a client reads records and memos in the middle of a scan.
pub(crate) fn keeps_passed(op: &TableOp) -> bool {
    positionless(op) || matches!(op, TableOp::Current | TableOp::Position | TableOp::KeyNo)
}
