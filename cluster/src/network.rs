//! The members' Raft traffic over TCP.
//!
//! A member connects to each other member's Raft listener and keeps the
//! connection; a request and its reply are frames — a 4-byte big-endian
//! length, then the postcard encoding — one at a time per connection. A
//! connection opens with a hello frame: a magic string, a version and the
//! cluster's secret, which the listener compares in constant time before it
//! reads anything else; a wrong hello closes the connection. Any failure
//! drops the connection: the next request opens a new one (openraft retries
//! with its own backoff). A frame longer than [`MAX_FRAME`] is refused, on
//! both sides.
//!
//! The Raft port is for the members only: keep it on the members' network.
//! The secret keeps a stray client from speaking Raft to a member; it does
//! not encrypt the traffic.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::types::{Member, Raiz};

/// The largest frame either side reads.
pub const MAX_FRAME: usize = 256 << 20;

const MAGIC: &[u8; 8] = b"RZRAFT\x00\x01";

/// The largest hello (magic and secret) a member reads.
const MAX_HELLO: usize = 4096;

/// How long a member waits for a hello.
const HELLO_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<Raiz>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<Raiz>),
}

async fn write_frame(s: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    s.write_all(&buf).await
}

/// Reads a frame of at most `max` bytes. The buffer grows as the bytes
/// come (from 64 KiB), so a length announced by a peer that then sends
/// nothing costs nothing.
async fn read_frame(s: &mut TcpStream, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the {max} allowed"),
        ));
    }
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let got = s.take(len as u64).read_to_end(&mut body).await?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the peer closed after {got} of a frame's {len} bytes"),
        ));
    }
    Ok(body)
}

fn hello(secret: &str) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(secret.as_bytes());
    h
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Makes a member's connections to the others.
#[derive(Debug, Clone)]
pub struct Network {
    secret: Arc<str>,
    /// Where this member reaches each member it was configured with: its
    /// own settings win over the addresses the group's membership records
    /// (which another member may have written from its own view of the
    /// network).
    routes: Arc<BTreeMap<u64, String>>,
}

impl Network {
    /// Connections that open with `secret`, to the members at `routes`
    /// (others at the address their membership entry gives).
    pub fn new(secret: &str, routes: BTreeMap<u64, String>) -> Network {
        Network {
            secret: secret.into(),
            routes: Arc::new(routes),
        }
    }
}

impl RaftNetworkFactory<Raiz> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        Peer {
            target,
            addr: self.routes.get(&target).unwrap_or(&node.raft).clone(),
            secret: self.secret.clone(),
            conn: None,
        }
    }
}

/// One connection to another member.
#[derive(Debug)]
pub struct Peer {
    target: u64,
    addr: String,
    secret: Arc<str>,
    conn: Option<TcpStream>,
}

/// What a call can come to before a reply is decoded.
enum CallError {
    /// No connection could be made.
    Unreachable(io::Error),
    /// The connection failed or the reply made no sense.
    Network(io::Error),
}

impl Peer {
    async fn call<R: DeserializeOwned>(
        &mut self,
        rpc: &Rpc,
        ttl: Duration,
    ) -> Result<R, CallError> {
        match tokio::time::timeout(ttl, self.exchange(rpc)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Network(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from member {} within {ttl:?}", self.target),
                )))
            }
        }
    }

    async fn exchange<R: DeserializeOwned>(&mut self, rpc: &Rpc) -> Result<R, CallError> {
        if self.conn.is_none() {
            let mut s = TcpStream::connect(&self.addr)
                .await
                .map_err(CallError::Unreachable)?;
            s.set_nodelay(true).map_err(CallError::Unreachable)?;
            write_frame(&mut s, &hello(&self.secret))
                .await
                .map_err(CallError::Unreachable)?;
            self.conn = Some(s);
        }
        let s = self.conn.as_mut().expect("connected above");
        let body = postcard::to_allocvec(rpc).map_err(|e| CallError::Network(invalid(e)))?;
        write_frame(s, &body).await.map_err(CallError::Network)?;
        let reply = read_frame(s, MAX_FRAME).await.map_err(CallError::Network)?;
        postcard::from_bytes(&reply).map_err(|e| CallError::Network(invalid(e)))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        e: CallError,
    ) -> RPCError<u64, Member, RaftError<u64, E>> {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl RaftNetwork<Raiz> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Raiz>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let r: Result<AppendEntriesResponse<u64>, RaftError<u64>> = self
            .call(&Rpc::Append(rpc), option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Raiz>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        let r: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> = self
            .call(&Rpc::Snapshot(rpc), option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let r: Result<VoteResponse<u64>, RaftError<u64>> = self
            .call(&Rpc::Vote(rpc), option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Serves the other members' requests on `listener` until the runtime ends.
pub async fn serve(listener: TcpListener, raft: Raft<Raiz>, secret: Arc<str>) {
    loop {
        let (s, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "raft listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let raft = raft.clone();
        let secret = secret.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(s, raft, &secret).await {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, error = %e, "raft connection ended");
                }
            }
        });
    }
}

async fn connection(mut s: TcpStream, raft: Raft<Raiz>, secret: &str) -> io::Result<()> {
    s.set_nodelay(true)?;
    let h = tokio::time::timeout(HELLO_WAIT, read_frame(&mut s, MAX_HELLO))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no hello"))??;
    if !same(&h, &hello(secret)) {
        tracing::warn!(peer = ?s.peer_addr().ok(), "raft connection refused: not a member of this cluster (magic, version or secret)");
        return Err(invalid("bad hello"));
    }
    loop {
        let body = read_frame(&mut s, MAX_FRAME).await?;
        let rpc: Rpc = postcard::from_bytes(&body).map_err(invalid)?;
        let reply = match rpc {
            Rpc::Append(r) => postcard::to_allocvec(&raft.append_entries(r).await),
            Rpc::Vote(r) => postcard::to_allocvec(&raft.vote(r).await),
            Rpc::Snapshot(r) => postcard::to_allocvec(&raft.install_snapshot(r).await),
        }
        .map_err(invalid)?;
        write_frame(&mut s, &reply).await?;
    }
}
