//! Sessions on a cluster (`raiz://user@db1:7070,db2:7070,db3:7070`): finding
//! the member that takes writes, and moving a session to the new one after a
//! failover.
//!
//! A session remembers what it set up on its server: the tables it opened
//! (handle, name, order, scope, filter, where the server's cursor was) and its
//! settings (deleted records hidden, lock timeout, delayed durability,
//! deferred writes). When a request finds the connection gone, or the member
//! no longer the leader, the session connects to the member that takes
//! writes now, opens every table again under the same handle, puts each back
//! in its order, scope, filter and position, restores its settings — and the
//! request fails with [`ErrorKind::Failover`]: the transaction that was open
//! and the locks the session held are gone (locks are never carried over
//! silently), and the request itself may or may not have been done (a
//! commit's outcome is unknown: look before retrying). Everything else goes
//! on: the application retries its transaction, without reopening anything.
//!
//! Not carried over: range iterators and temporary tables (their next
//! request fails), and savepoints (they belonged to the transaction).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raiz_engine::index::Condition;
use raiz_engine::schema::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::proto::{Position, Reply, Request, TableOp};
use crate::remote::Conn;
use crate::url::{ConnectOptions, ConnectionString};

/// How long a session waits for a member that takes writes, unless
/// [`ConnectOptions::failover_wait`] says otherwise: an election takes a few
/// seconds.
pub const FAILOVER_WAIT: Duration = Duration::from_secs(15);

fn member(cs: &ConnectionString, host: &str, port: u16) -> ConnectionString {
    match cs {
        ConnectionString::Members {
            user,
            password,
            tls,
            ca,
            ..
        } => ConnectionString::Tcp {
            user: user.clone(),
            password: password.clone(),
            host: host.to_owned(),
            port,
            tls: *tls,
            ca: ca.clone(),
        },
        other => other.clone(),
    }
}

/// A connection to the member of `cs` that takes writes (with `?read=any`,
/// to the first that answers), waiting up to [`FAILOVER_WAIT`] for one.
pub(crate) fn connect_members(cs: &ConnectionString, opts: &ConnectOptions) -> Result<Conn> {
    let ConnectionString::Members {
        hosts, read_any, ..
    } = cs
    else {
        return Conn::connect(cs, opts);
    };
    let wait = opts.failover_wait.unwrap_or(FAILOVER_WAIT);
    let start = Instant::now();
    let mut last: Option<Error> = None;
    let mut hint: Option<(String, u16)> = None;
    loop {
        let order: Vec<(String, u16)> = hint
            .take()
            .into_iter()
            .chain(hosts.iter().cloned())
            .collect();
        for (host, port) in &order {
            let mut conn = match Conn::connect(&member(cs, host, *port), opts) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if *read_any {
                return Ok(conn);
            }
            match conn.call(&Request::ClusterStatus) {
                Ok(Reply::ClusterStatus(st)) if st.writable => return Ok(conn),
                Ok(Reply::ClusterStatus(st)) => {
                    let leader = st
                        .leader
                        .and_then(|l| st.members.iter().find(|m| m.id == l));
                    if let Some((h, p)) = leader.and_then(|m| m.client.rsplit_once(':')) {
                        if let Ok(p) = p.parse() {
                            hint = Some((h.to_owned(), p));
                        }
                    }
                    last = Some(Error::Server {
                        kind: ErrorKind::NotLeader,
                        message: format!("{host}:{port} is a {} (term {})", st.role, st.term),
                    });
                }
                // Not a cluster member: it takes writes if anything does.
                Err(e) if e.kind() == ErrorKind::Unsupported => return Ok(conn),
                Ok(other) => last = Some(conn.unexpected(&other)),
                Err(e) => last = Some(e),
            }
        }
        if start.elapsed() >= wait {
            return Err(Error::Server {
                kind: ErrorKind::NoQuorum,
                message: format!(
                    "no member of {cs} takes writes after {:?} (last: {})",
                    wait,
                    last.map_or("no answer".to_owned(), |e| e.to_string())
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An error after which a session on a cluster moves to the leader: the
/// connection went, the member is not (or no longer) the leader, or it is a
/// leader cut off from the majority.
pub(crate) fn moves(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Io | ErrorKind::Closed | ErrorKind::NotLeader | ErrorKind::NoQuorum
    )
}

/// A scope's lower and upper keys.
type Scope = (Option<Vec<Value>>, Option<Vec<Value>>);

#[derive(Debug, Clone, Default)]
struct TableState {
    name: String,
    order: Option<String>,
    scope: Option<Scope>,
    filter: Option<Condition>,
    at: Option<Position>,
}

/// What a session set up on its server (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    tables: BTreeMap<u32, TableState>,
    hide_deleted: Option<bool>,
    lock_timeout: Option<u64>,
    delayed: Option<bool>,
    deferred: Option<bool>,
}

impl Replay {
    /// Takes note of a request the server carried out.
    pub fn note(&mut self, req: &Request, reply: &Reply) {
        match (req, reply) {
            (
                Request::OpenTable(_),
                Reply::Opened {
                    handle, name, at, ..
                },
            ) => {
                self.tables.insert(
                    *handle,
                    TableState {
                        name: name.clone(),
                        at: Some(*at),
                        ..TableState::default()
                    },
                );
            }
            (Request::Table { handle, op, .. }, Reply::Table { at, .. }) => {
                if let TableOp::Close = op {
                    self.tables.remove(handle);
                    return;
                }
                let Some(t) = self.tables.get_mut(handle) else {
                    return;
                };
                t.at = Some(*at);
                match op {
                    TableOp::SetOrder(o) => t.order = o.clone(),
                    TableOp::SetScope { lower, upper } => {
                        t.scope = Some((lower.clone(), upper.clone()))
                    }
                    TableOp::ClearScope => t.scope = None,
                    TableOp::SetFilter(f) => t.filter = f.clone(),
                    _ => {}
                }
            }
            (Request::SetHideDeleted(on), _) => self.hide_deleted = Some(*on),
            (Request::SetLockTimeout(ms), _) => self.lock_timeout = Some(*ms),
            (Request::SetDelayedDurability(on), _) => self.delayed = Some(*on),
            (Request::SetDeferredWrites(on), _) => self.deferred = Some(*on),
            _ => {}
        }
    }

    /// Sets it all up again on `conn` (a new session on the new leader).
    pub fn replay(&self, conn: &mut Conn) -> Result<()> {
        let settings = [
            self.hide_deleted.map(Request::SetHideDeleted),
            self.lock_timeout.map(Request::SetLockTimeout),
            self.delayed.map(Request::SetDelayedDurability),
            self.deferred.map(Request::SetDeferredWrites),
        ];
        for req in settings.into_iter().flatten() {
            conn.call(&req)?;
        }
        for (&handle, t) in &self.tables {
            match conn.call(&Request::OpenTableAs {
                name: t.name.clone(),
                handle,
            }) {
                Ok(Reply::Opened { .. }) => {}
                Ok(other) => return Err(conn.unexpected(&other)),
                // A temporary table went with the old session: its handle
                // fails from now on.
                Err(e) if e.kind() == ErrorKind::TableNotFound => {
                    tracing::warn!(table = %t.name, "a table could not be opened again after a failover");
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut ops = Vec::new();
            if t.order.is_some() {
                ops.push(TableOp::SetOrder(t.order.clone()));
            }
            if let Some((lower, upper)) = &t.scope {
                ops.push(TableOp::SetScope {
                    lower: lower.clone(),
                    upper: upper.clone(),
                });
            }
            if t.filter.is_some() {
                ops.push(TableOp::SetFilter(t.filter.clone()));
            }
            for op in ops {
                conn.call(&Request::Table {
                    handle,
                    sync: None,
                    op,
                })?;
            }
            if let Some(at) = t.at {
                conn.call(&Request::Table {
                    handle,
                    sync: Some(at),
                    op: TableOp::Position,
                })?;
            }
        }
        Ok(())
    }
}
