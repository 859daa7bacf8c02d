//! A server's change stream as a client reads it: what a cache node follows,
//! and what any other consumer of committed changes can read.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::proto::{Reply, Request, StreamPos};
use crate::remote::Conn;
use crate::url::{ConnectOptions, ConnectionString};

/// One message of the stream: every entry for the followed tables numbered
/// in `after+1..=upto` (none: a heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// Where the previous message ended.
    pub after: u64,
    /// Where this one ends.
    pub upto: u64,
    /// The entries, in order.
    pub entries: Vec<raiz_engine::feed::FeedEntry>,
    /// The server's clock when sent (ms since the Unix epoch).
    pub now_ms: u64,
}

/// A subscription to a server's change stream (one connection).
#[derive(Debug)]
pub struct ChangeStream {
    conn: Conn,
    id: u64,
    /// The server's epoch.
    pub epoch: u64,
    /// The stream carries the entries after this number.
    pub start: u64,
    /// Tables whose changes up to `start` the stream does not carry (see
    /// [`Reply::Subscribed`]).
    pub reload: Vec<String>,
}

impl ChangeStream {
    /// Subscribes to `tables` on `server`, from `after` when given. A read
    /// waits at most `silence` (the server sends a heartbeat every 250 ms);
    /// longer breaks the stream.
    pub fn connect(
        server: &ConnectionString,
        options: &ConnectOptions,
        tables: &[String],
        after: Option<StreamPos>,
        silence: Duration,
    ) -> Result<ChangeStream> {
        let mut conn = Conn::connect(server, options)?;
        conn.set_read_timeout(Some(silence))?;
        let id = conn.send(&Request::Subscribe {
            tables: tables.to_vec(),
            after,
        })?;
        match conn.recv(id)? {
            Reply::Subscribed {
                epoch,
                start,
                reload,
            } => Ok(ChangeStream {
                conn,
                id,
                epoch,
                start,
                reload,
            }),
            other => Err(Error::Protocol {
                peer: server.to_string(),
                reason: format!("expected Subscribed, got {other:?}"),
            }),
        }
    }

    /// The next message (blocking).
    pub fn next_changes(&mut self) -> Result<Changes> {
        match self.conn.recv(self.id)? {
            Reply::Changes {
                after,
                upto,
                entries,
                now_ms,
            } => Ok(Changes {
                after,
                upto,
                entries,
                now_ms,
            }),
            other => Err(Error::Protocol {
                peer: self.conn.peer().to_owned(),
                reason: format!("unexpected message on the stream: {other:?}"),
            }),
        }
    }
}
