//! A cache node serving bound clients: other processes of the machine
//! connect to the node over its Unix socket (or loopback TCP) with the
//! ordinary client and read the node's one copy, so forty application
//! processes share one cache instead of holding forty.
//!
//! Each bound connection logs in to the server with the client's own user
//! and password (the server checks them, and its rights apply: a cached
//! table is opened on the server before the copy serves it), then every
//! request is either answered from the copy — reads of a cached table the
//! node serves (ready, not stale, caught up to the connection's own writes,
//! not written by its open transaction) — or forwarded to the server as it
//! came. Reads from the copy run through the server's own request executor
//! on an embedded session over the copy, so read-ahead, batches and range
//! iterators behave as they do on the server. A handle's position lives on
//! the side that answered last; a request that goes to the other side
//! carries it (recno and flags, as a client's `sync` does), and the other
//! side gets the handle's order, scopes and filter replayed first.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raiz_client::cache::CacheNode;
use raiz_client::proto::{
    self, BatchAction, BatchRequest, Envelope, Position, Reply, Request, Status, TableOp, TableOut,
    WireError,
};
use raiz_client::{ConnectOptions, ConnectionString, ErrorKind, RawSession};

use crate::users::User;
use crate::worker::Worker;
use crate::{Error, Shared};

/// Local iterator ids are told apart from the server's by this bit.
const LOCAL_ITER: u32 = 1 << 31;

/// A running front-end; stops accepting when dropped.
pub struct BoundServer {
    stop: Arc<AtomicBool>,
    /// The Unix socket it listens on.
    pub unix: Option<PathBuf>,
    /// The TCP address it listens on.
    pub tcp: Option<std::net::SocketAddr>,
}

impl Drop for BoundServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = &self.unix {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Serves `node` to bound clients on `unix` and/or `tcp` (loopback).
pub fn start(
    node: CacheNode,
    unix: Option<&Path>,
    tcp: Option<&str>,
) -> Result<BoundServer, Error> {
    let shared = Shared::for_copy(node.copy().clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let listen_err = |address: String| move |source| Error::Listen { address, source };
    let mut server = BoundServer {
        stop: stop.clone(),
        unix: None,
        tcp: None,
    };
    if let Some(path) = unix {
        if path.exists() {
            // A socket left by a node that died; refuse anything else.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::Listen {
                    address: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another node serves this socket",
                    ),
                });
            }
            let _ = std::fs::remove_file(path);
        }
        let l = std::os::unix::net::UnixListener::bind(path)
            .map_err(listen_err(path.display().to_string()))?;
        l.set_nonblocking(true)
            .map_err(listen_err(path.display().to_string()))?;
        server.unix = Some(path.to_owned());
        spawn_acceptor(&node, &shared, &stop, move || {
            let (s, _) = l.accept()?;
            s.set_nonblocking(false)?;
            Ok((s, "unix".to_owned()))
        })?;
    }
    if let Some(addr) = tcp {
        let l = std::net::TcpListener::bind(addr).map_err(listen_err(addr.to_owned()))?;
        let local = l.local_addr().map_err(listen_err(addr.to_owned()))?;
        if !local.ip().is_loopback() {
            return Err(Error::Invalid {
                path: None,
                message: format!("bound clients connect over loopback, not {local}"),
            });
        }
        l.set_nonblocking(true)
            .map_err(listen_err(addr.to_owned()))?;
        server.tcp = Some(local);
        spawn_acceptor(&node, &shared, &stop, move || {
            let (s, peer) = l.accept()?;
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            Ok((s, peer.to_string()))
        })?;
    }
    Ok(server)
}

/// A thread that accepts connections with `accept` (on a non-blocking
/// listener) and serves each on a thread of its own, until `stop`.
fn spawn_acceptor<S: Read + Write + Send + 'static>(
    node: &CacheNode,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
    mut accept: impl FnMut() -> std::io::Result<(S, String)> + Send + 'static,
) -> Result<(), Error> {
    let (node, shared, stop) = (node.clone(), shared.clone(), stop.clone());
    std::thread::Builder::new()
        .name("raiz-bound-accept".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match accept() {
                    Ok((s, peer)) => {
                        let (node, shared) = (node.clone(), shared.clone());
                        std::thread::spawn(move || connection(s, peer, node, shared));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a bound client");
                        std::thread::sleep(Duration::from_millis(50))
                    }
                }
            }
        })
        .map(drop)
        .map_err(|source| Error::Listen {
            address: "accept thread".into(),
            source,
        })
}

fn reply(w: &mut impl Write, id: u64, body: Result<Reply, WireError>) -> std::io::Result<()> {
    let payload = proto::encode(&Envelope { id, body });
    proto::write_frame(w, &payload)?;
    w.flush()
}

fn werr(kind: ErrorKind, message: impl Into<String>) -> WireError {
    WireError {
        kind,
        message: message.into(),
    }
}

/// The server's connection string with the bound client's credentials.
fn as_user(server: &ConnectionString, user: &str) -> ConnectionString {
    match server.clone() {
        ConnectionString::Tcp {
            host,
            port,
            tls,
            ca,
            ..
        } => ConnectionString::Tcp {
            user: Some(user.to_owned()),
            password: None,
            host,
            port,
            tls,
            ca,
        },
        ConnectionString::Unix { path, .. } => ConnectionString::Unix {
            user: Some(user.to_owned()),
            password: None,
            path,
        },
        other => other,
    }
}

/// One bound connection, on its own thread.
fn connection<S: Read + Write>(mut s: S, peer: String, node: CacheNode, shared: Arc<Shared>) {
    let mut pro = [0u8; 8];
    if s.read_exact(&mut pro).is_err() {
        return;
    }
    let status = match proto::parse_prologue(&pro) {
        None => Status::NotRaiz,
        Some((v, _)) if v != proto::VERSION => Status::VersionMismatch,
        Some((_, flags)) if flags & proto::FLAG_TLS != 0 => Status::TlsUnavailable,
        Some(_) => Status::Ok,
    };
    if s.write_all(&proto::prologue(proto::VERSION, status as u16))
        .is_err()
        || status != Status::Ok
    {
        return;
    }
    let Ok(first) = proto::read_frame(&mut s, proto::MAX_HELLO_FRAME) else {
        return;
    };
    let (id, hello) = match proto::decode_hello(&first) {
        Ok(h) => h,
        Err((id, why)) => {
            let _ = reply(
                &mut s,
                id.unwrap_or(0),
                Err(werr(ErrorKind::BadRequest, why)),
            );
            return;
        }
    };
    let cfg_server = node.status().server;
    let server = match node_server(&node) {
        Some(s) => s,
        None => {
            let _ = reply(&mut s, id, Err(werr(ErrorKind::Io, "no server")));
            return;
        }
    };
    let opts = ConnectOptions {
        password: Some(hello.password.clone()),
        client_name: Some(format!("{} via cache node", hello.client)),
        ..node_options(&node)
    };
    let up = match RawSession::connect(&as_user(&server, &hello.user), &opts) {
        Ok(up) => up,
        Err(e) => {
            tracing::warn!(peer = %peer, user = %hello.user, error = %e, "bound client refused");
            let _ = reply(&mut s, id, Err(werr(e.kind(), e.to_string())));
            return;
        }
    };
    let welcome = Reply::Welcome {
        session: up.session_id(),
        server: format!("raiz cache node of {cfg_server}"),
    };
    if reply(&mut s, id, Ok(welcome)).is_err() {
        return;
    }
    let user = User {
        name: hello.user.clone(),
        hash: String::new(),
        groups: Vec::new(),
        admin: true,
    };
    let entry = shared
        .registry
        .add(up.session_id(), &hello.user, &peer, &hello.client);
    let local = Worker::new(shared.clone(), shared.db.session(), user, entry);
    let mut b = Bound {
        node,
        up,
        local,
        handles: HashMap::new(),
        local_names: HashMap::new(),
        in_txn: false,
        txn_written: HashSet::new(),
        min_applied: 0,
    };
    while let Ok(frame) = proto::read_frame(&mut s, proto::DEFAULT_MAX_FRAME) {
        let (id, body) = match proto::decode_request(&frame) {
            Ok((id, req)) => (id, b.handle(req)),
            Err((id, why)) => (id.unwrap_or(0), Err(werr(ErrorKind::BadRequest, why))),
        };
        let fatal = matches!(&body, Err(e) if e.kind == ErrorKind::Closed);
        if reply(&mut s, id, body).is_err() || fatal {
            break;
        }
    }
    b.local.end();
}

fn node_server(node: &CacheNode) -> Option<ConnectionString> {
    Some(node.config().server.clone())
}

fn node_options(node: &CacheNode) -> ConnectOptions {
    node.config().options.clone()
}

/// Which side of a cached handle answered last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Server,
}

/// A bound client's handle on a cached table.
struct Handle {
    table: String,
    schema: raiz_engine::Schema,
    /// The copy's handle: (worker handle, generation, local table).
    local: Option<(u32, u64)>,
    at: Side,
    /// Where the side that answered last left the handle.
    pos: Position,
    /// Order, scope and filter changes, in order, replayed on a new copy
    /// handle; `applied` of them the copy handle has.
    settings: Vec<TableOp>,
    applied: usize,
    /// The server's handle keeps the positions its last read-ahead passed
    /// (to restore a client's `sync` by key): valid only while the server
    /// side answered last.
    server_passed: bool,
}

struct Bound {
    node: CacheNode,
    up: RawSession,
    local: Worker,
    /// The client's handles on cached tables (by the server's handle id).
    handles: HashMap<u32, Handle>,
    /// Local table of each copy handle, to notice a reload.
    local_names: HashMap<u32, String>,
    in_txn: bool,
    txn_written: HashSet<String>,
    min_applied: u64,
}

fn is_read(op: &TableOp) -> bool {
    matches!(
        op,
        TableOp::Info
            | TableOp::Read(_)
            | TableOp::ReadMemo { .. }
            | TableOp::IsDeleted(_)
            | TableOp::Nav { .. }
            | TableOp::Current
            | TableOp::Position
            | TableOp::KeyCount
            | TableOp::KeyNo
            | TableOp::CountRange { .. }
            | TableOp::EstimateRange { .. }
            | TableOp::Range { .. }
            | TableOp::Snapshot
            | TableOp::Batch(BatchRequest {
                action: BatchAction::Read { lock_ms: None },
                ..
            })
    )
}

fn is_setting(op: &TableOp) -> bool {
    matches!(
        op,
        TableOp::SetOrder(_)
            | TableOp::SetScope { .. }
            | TableOp::ClearScope
            | TableOp::SetFilter(_)
    )
}

fn changes_data(op: &TableOp) -> bool {
    !is_read(op)
        && !is_setting(op)
        && !matches!(
            op,
            TableOp::Lock { .. }
                | TableOp::Unlock(_)
                | TableOp::LockFile { .. }
                | TableOp::UnlockFile
                | TableOp::Close
                | TableOp::Check { .. }
                | TableOp::Flush
                | TableOp::Dump { .. }
        )
}

impl Bound {
    fn forward(&self, req: &Request) -> Result<Reply, WireError> {
        self.up
            .call(req)
            .map_err(|e| werr(ErrorKind::Closed, format!("the server: {e}")))?
    }

    fn note_position(&mut self) {
        if let Ok(Reply::Count(n)) = self.forward(&Request::FeedPosition) {
            self.min_applied = self.min_applied.max(n);
        }
    }

    fn handle(&mut self, req: Request) -> Result<Reply, WireError> {
        match req {
            Request::Hello { .. } => Err(werr(ErrorKind::BadRequest, "already authenticated")),
            Request::Subscribe { .. } => Err(werr(
                ErrorKind::BadRequest,
                "subscribe to the server, not to a cache node",
            )),
            Request::OpenTable(name) => {
                let r = self.forward(&Request::OpenTable(name.clone()))?;
                if let Reply::Opened {
                    handle, at, schema, ..
                } = &r
                {
                    if self.node.caches(&name) {
                        self.handles.insert(
                            *handle,
                            Handle {
                                table: name.to_ascii_lowercase(),
                                schema: schema.clone(),
                                local: None,
                                at: Side::Server,
                                pos: *at,
                                settings: Vec::new(),
                                applied: 0,
                                server_passed: false,
                            },
                        );
                    }
                }
                Ok(r)
            }
            Request::Table { handle, sync, op } if self.handles.contains_key(&handle) => {
                self.table(handle, sync, op)
            }
            Request::RangeNext { iter, max, resume } if iter & LOCAL_ITER != 0 => {
                self.local.handle(Request::RangeNext {
                    iter: iter & !LOCAL_ITER,
                    max,
                    resume,
                })
            }
            Request::RangeClose(iter) if iter & LOCAL_ITER != 0 => {
                self.local.handle(Request::RangeClose(iter & !LOCAL_ITER))
            }
            Request::Begin => {
                let r = self.forward(&Request::Begin)?;
                self.in_txn = true;
                self.txn_written.clear();
                Ok(r)
            }
            Request::Commit | Request::Rollback => {
                let r = self.forward(&req);
                // A commit, and a rollback too (the recnos its appends took
                // are stored as deleted blank records), changes what the
                // copy must show this session.
                if !self.txn_written.is_empty() {
                    self.note_position();
                }
                self.in_txn = false;
                self.txn_written.clear();
                r
            }
            Request::SetHideDeleted(on) => {
                let r = self.forward(&Request::SetHideDeleted(on))?;
                self.local.handle(Request::SetHideDeleted(on))?;
                Ok(r)
            }
            other => self.forward(&other),
        }
    }

    /// The copy handle of `handle`, when the copy serves its table now.
    fn local_side(&mut self, handle: u32) -> Result<Option<u32>, WireError> {
        let table = self.handles[&handle].table.clone();
        if self.in_txn && self.txn_written.contains(&table) {
            return Ok(None);
        }
        let serving = self
            .node
            .serving(&table, self.min_applied)
            .map_err(|e| werr(e.kind(), e.to_string()))?;
        let Some((local_table, generation)) = serving else {
            return Ok(None);
        };
        let h = self.handles.get_mut(&handle).expect("checked");
        let fresh = !matches!(h.local, Some((_, g)) if g == generation);
        if fresh {
            if let Some((old, _)) = h.local.take() {
                let _ = self.local.handle(Request::Table {
                    handle: old,
                    sync: None,
                    op: TableOp::Close,
                });
                self.local_names.remove(&old);
            }
            let id = match self.local.handle(Request::OpenTable(local_table.clone()))? {
                Reply::Opened { handle, .. } => handle,
                _ => return Ok(None),
            };
            self.local_names.insert(id, local_table);
            let h = self.handles.get_mut(&handle).expect("checked");
            h.local = Some((id, generation));
            h.applied = 0;
        }
        let h = self.handles.get_mut(&handle).expect("checked");
        let (id, _) = h.local.expect("opened");
        // Bring the copy handle to the application's settings.
        while h.applied < h.settings.len() {
            let op = h.settings[h.applied].clone();
            if self
                .local
                .handle(Request::Table {
                    handle: id,
                    sync: None,
                    op,
                })
                .is_err()
            {
                return Ok(None);
            }
            h.applied += 1;
        }
        Ok(Some(id))
    }

    fn table(
        &mut self,
        handle: u32,
        sync: Option<Position>,
        op: TableOp,
    ) -> Result<Reply, WireError> {
        if is_setting(&op) {
            // Settings go to the server (which checks them) and are replayed
            // on the copy handle when it next answers.
            let carry = self.carry(handle, sync, Side::Server);
            if let Some(p) = carry {
                self.server_forgets(handle, p)?;
            }
            let r = self.forward(&Request::Table {
                handle,
                sync: carry,
                op: op.clone(),
            });
            self.handles
                .get_mut(&handle)
                .expect("checked")
                .server_passed = false;
            if r.is_ok() {
                self.handles
                    .get_mut(&handle)
                    .expect("checked")
                    .settings
                    .push(op);
            }
            self.landed(handle, Side::Server, carry, &r);
            return r;
        }
        let still = crate::worker::positionless(&op) && sync.is_none();
        if is_read(&op) {
            if let Some(local) = self.local_side(handle)? {
                let carry = match still {
                    true => None,
                    false => self.carry(handle, sync, Side::Local),
                };
                if carry.is_some() && self.handles[&handle].at != Side::Local {
                    // The copy handle's read-ahead positions are from before
                    // the server side moved the handle.
                    self.local.forget_passed(local);
                }
                let mut r = self.local.handle(Request::Table {
                    handle: local,
                    sync: carry,
                    op,
                });
                if let Ok(Reply::Table {
                    out: TableOut::Range { iter, .. },
                    ..
                }) = &mut r
                {
                    *iter = iter.map(|i| i | LOCAL_ITER);
                }
                match still {
                    true => self.unmoved(handle, Side::Local, &mut r),
                    false => self.landed(handle, Side::Local, carry, &r),
                }
                return r;
            }
        }
        let op = self.server_memos(handle, op)?;
        let close = matches!(op, TableOp::Close);
        let writes = changes_data(&op);
        let carry = match still {
            true => None,
            false => self.carry(handle, sync, Side::Server),
        };
        if let Some(p) = carry {
            self.server_forgets(handle, p)?;
        }
        let moves_ahead = matches!(op, TableOp::Nav { ahead, .. } if ahead > 0);
        let keeps = crate::worker::keeps_passed(&op) && carry.is_none();
        let mut r = self.forward(&Request::Table {
            handle,
            sync: carry,
            op,
        });
        if let Some(h) = self.handles.get_mut(&handle) {
            h.server_passed = moves_ahead || (keeps && h.server_passed);
        }
        if close {
            if let Some(h) = self.handles.remove(&handle) {
                if let Some((id, _)) = h.local {
                    let _ = self.local.handle(Request::Table {
                        handle: id,
                        sync: None,
                        op: TableOp::Close,
                    });
                    self.local_names.remove(&id);
                }
            }
            return r;
        }
        let table = self.handles[&handle].table.clone();
        if writes && r.is_ok() {
            if self.in_txn {
                self.txn_written.insert(table);
            } else {
                self.note_position();
            }
        }
        match still {
            true => self.unmoved(handle, Side::Server, &mut r),
            false => self.landed(handle, Side::Server, carry, &r),
        }
        r
    }

    /// Before a request carries a position from the copy side to the
    /// server: a server handle still holding the positions of an older
    /// read-ahead would restore the carried recno by its old key, so it
    /// first makes a move of its own (one more round trip, only then).
    fn server_forgets(&mut self, handle: u32, p: Position) -> Result<(), WireError> {
        let h = &self.handles[&handle];
        if !h.server_passed || h.at == Side::Server {
            return Ok(());
        }
        self.forward(&Request::Table {
            handle,
            sync: None,
            op: TableOp::Nav {
                op: proto::NavOp::Goto(p.recno),
                ahead: 0,
            },
        })?;
        self.handles
            .get_mut(&handle)
            .expect("checked")
            .server_passed = false;
        Ok(())
    }

    /// A positionless request answered by the side that did not answer
    /// last: that side's cursor is somewhere else (where it was left long
    /// ago), so the reply says where the handle really is.
    fn unmoved(&self, handle: u32, side: Side, r: &mut Result<Reply, WireError>) {
        let h = &self.handles[&handle];
        if let Ok(Reply::Table { at, .. }) = r {
            if h.at != side {
                *at = h.pos;
            }
        }
    }

    /// Notes where a request to `side` left the handle: a side sent a
    /// position restores it before the operation, even one that then fails;
    /// a successful one says where it ended.
    fn landed(
        &mut self,
        handle: u32,
        side: Side,
        carry: Option<Position>,
        r: &Result<Reply, WireError>,
    ) {
        let h = self.handles.get_mut(&handle).expect("checked");
        if let Some(p) = carry {
            h.at = side;
            h.pos = p;
        }
        if let Ok(Reply::Table { at, out }) = r {
            h.at = side;
            // Where the side's cursor is: after reading ahead, on the last
            // record it read (or where it stopped), which is where the
            // client expects it when it sends no position of its own.
            h.pos = match out {
                TableOut::Moved { end: Some(end), .. } => *end,
                TableOut::Moved { ahead, .. } if !ahead.is_empty() => Position {
                    recno: ahead[ahead.len() - 1].recno,
                    bof: false,
                    eof: false,
                    found: false,
                    on_record: true,
                },
                _ => *at,
            };
        }
    }

    /// An update that keeps a memo as read from the copy (a `Memo::Stored`
    /// reference into the copy's memo file) keeps the server's memo instead.
    fn server_memos(&self, handle: u32, op: TableOp) -> Result<TableOp, WireError> {
        use raiz_engine::{Memo, Value};
        let stored = |v: &Value| matches!(v, Value::Memo(Memo::Stored(_)));
        let recno = match &op {
            TableOp::Update { recno, values } if values.iter().any(stored) => *recno,
            TableOp::UpdateFields { recno, fields } if fields.iter().any(|(_, v)| stored(v)) => {
                *recno
            }
            _ => return Ok(op),
        };
        let current = match self.forward(&Request::Table {
            handle,
            sync: None,
            op: TableOp::Read(recno),
        })? {
            Reply::Table {
                out: TableOut::Record(r),
                ..
            } => r.values,
            _ => return Ok(op),
        };
        Ok(match op {
            TableOp::Update { recno, values } => TableOp::Update {
                recno,
                values: values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| match stored(&v) {
                        true => current.get(i).cloned().unwrap_or(v),
                        false => v,
                    })
                    .collect(),
            },
            TableOp::UpdateFields { recno, fields } => {
                let schema = &self.handles[&handle].schema;
                TableOp::UpdateFields {
                    recno,
                    fields: fields
                        .into_iter()
                        .map(|(n, v)| {
                            let kept = schema.position(&n).and_then(|i| current.get(i).cloned());
                            match (stored(&v), kept) {
                                (true, Some(k)) => (n, k),
                                _ => (n, v),
                            }
                        })
                        .collect(),
                }
            }
            other => other,
        })
    }

    /// The position a request to `to` must carry: the client's own (it read
    /// ahead), or, when the other side answered last, where it left the
    /// handle.
    fn carry(&self, handle: u32, sync: Option<Position>, to: Side) -> Option<Position> {
        let h = &self.handles[&handle];
        sync.or((h.at != to).then_some(h.pos))
    }
}
