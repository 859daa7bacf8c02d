//! A server session used request by request, for proxies — a cache node
//! serving bound clients forwards what it cannot answer from its copy.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::proto::{Reply, Request, WireError};
use crate::session::Remote;
use crate::url::{ConnectOptions, ConnectionString};

/// One authenticated server session, spoken to in protocol requests.
#[derive(Debug)]
pub struct RawSession {
    remote: Arc<Remote>,
}

impl RawSession {
    /// Connects and logs in.
    pub fn connect(server: &ConnectionString, options: &ConnectOptions) -> Result<RawSession> {
        Ok(RawSession {
            remote: Remote::connect(server, options)?,
        })
    }

    /// The server's id of this session.
    pub fn session_id(&self) -> u64 {
        self.remote.session_id()
    }

    /// Sends `req` and waits for its reply: Ok(Err(..)) when the server
    /// refused it, Err when the connection failed.
    pub fn call(&self, req: &Request) -> Result<std::result::Result<Reply, WireError>> {
        match self.remote.call(req) {
            Ok(r) => Ok(Ok(r)),
            Err(Error::Server { kind, message }) => Ok(Err(WireError { kind, message })),
            Err(e) => Err(e),
        }
    }
}
