//! A blocking connection to `raiz serve`: prologue, optional TLS, hello, then
//! request/reply frames. Counts round trips so read-ahead can be measured.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::proto::{self, Envelope, Reply, Request, Response, Status};
use crate::url::{ConnectOptions, ConnectionString};

/// Counters of one connection.
#[derive(Debug, Default)]
pub struct Stats {
    /// Times the client waited for the server (a pipelined window counts once).
    pub round_trips: AtomicU64,
    /// Requests sent.
    pub requests: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
}

enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
            Transport::Unix(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// One authenticated connection (one server session).
pub(crate) struct Conn {
    io: BufReader<Transport>,
    peer: String,
    next_id: u64,
    max_frame: u32,
    broken: bool,
    /// Requests sent without waiting: their replies are skipped when they come.
    forgotten: std::collections::VecDeque<u64>,
    /// Writes sent without waiting (deferred): their replies are read when
    /// they come, and the first error among them is kept for the next request
    /// that waits.
    deferred: std::collections::VecDeque<u64>,
    deferred_error: Option<Error>,
    pub stats: Arc<Stats>,
    pub session: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("session", &self.session)
            .finish()
    }
}

fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca).map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate in the file",
            ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Conn {
    /// Connects, negotiates and authenticates.
    pub fn connect(cs: &ConnectionString, opts: &ConnectOptions) -> Result<Conn> {
        let (mut transport, peer, user, password, tls) = match cs {
            ConnectionString::File(_) => return Err(Error::RemoteOnly("a network connection")),
            ConnectionString::Cache { server, .. } => return Conn::connect(server, opts),
            ConnectionString::Members { .. } => return crate::failover::connect_members(cs, opts),
            ConnectionString::Tcp {
                user,
                password,
                host,
                port,
                tls,
                ca,
            } => {
                let peer = format!("{host}:{port}");
                let s = TcpStream::connect((host.as_str(), *port)).map_err(|source| Error::Io {
                    peer: peer.clone(),
                    source,
                })?;
                s.set_nodelay(true).ok();
                let tls = tls.then(|| (host.clone(), ca.clone()));
                (Transport::Tcp(s), peer, user, password, tls)
            }
            ConnectionString::Unix {
                user,
                password,
                path,
            } => {
                let peer = path.display().to_string();
                let s = UnixStream::connect(path).map_err(|source| Error::Io {
                    peer: peer.clone(),
                    source,
                })?;
                (Transport::Unix(s), peer, user, password, None)
            }
        };
        let io_err = |source| Error::Io {
            peer: peer.clone(),
            source,
        };
        let flags = if tls.is_some() { proto::FLAG_TLS } else { 0 };
        transport
            .write_all(&proto::prologue(proto::VERSION, flags))
            .map_err(io_err)?;
        let mut answer = [0u8; 8];
        transport.read_exact(&mut answer).map_err(io_err)?;
        let protocol = |reason: String| Error::Protocol {
            peer: peer.clone(),
            reason,
        };
        let (version, status) = proto::parse_prologue(&answer)
            .ok_or_else(|| protocol("the peer is not a raiz server (bad magic)".into()))?;
        match Status::from_u16(status) {
            Some(Status::Ok) => {}
            Some(Status::VersionMismatch) => {
                return Err(protocol(format!(
                    "the server speaks protocol version {version}, this client version {}",
                    proto::VERSION
                )))
            }
            Some(Status::TlsRequired) => {
                return Err(protocol(
                    "the server requires TLS from this address (use raizs://)".into(),
                ))
            }
            Some(Status::TlsUnavailable) => {
                return Err(protocol(
                    "TLS was asked for but the server has no certificate".into(),
                ))
            }
            Some(Status::Busy) => {
                return Err(Error::Server {
                    kind: crate::ErrorKind::Busy,
                    message: format!("{peer}: the server is at its connection limit; retry later"),
                })
            }
            _ => return Err(protocol(format!("unexpected server status {status}"))),
        }
        if let Some((host, ca)) = tls {
            let Transport::Tcp(tcp) = transport else {
                return Err(Error::Tls("TLS needs a TCP connection".into()));
            };
            let ca = opts
                .ca_file
                .clone()
                .or(ca)
                .or_else(|| std::env::var_os("RAIZ_CA").map(Into::into))
                .ok_or_else(|| {
                    Error::Tls(
                        "no CA certificate: give ?ca=PATH, ConnectOptions::ca_file or RAIZ_CA"
                            .into(),
                    )
                })?;
            let name = opts.server_name.clone().unwrap_or(host);
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| Error::Tls(format!("server name: {e}")))?;
            let conn = rustls::ClientConnection::new(tls_config(&ca)?, name)
                .map_err(|e| Error::Tls(e.to_string()))?;
            transport = Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
        }
        let mut conn = Conn {
            io: BufReader::with_capacity(64 << 10, transport),
            peer,
            next_id: 1,
            max_frame: opts.max_frame.unwrap_or(proto::DEFAULT_MAX_FRAME),
            broken: false,
            forgotten: std::collections::VecDeque::new(),
            deferred: std::collections::VecDeque::new(),
            deferred_error: None,
            stats: Arc::default(),
            session: 0,
        };
        let password = opts
            .password
            .clone()
            .or_else(|| password.clone())
            .or_else(|| std::env::var("RAIZ_PASSWORD").ok())
            .unwrap_or_default();
        let user = user
            .clone()
            .or_else(|| std::env::var("RAIZ_USER").ok())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default();
        let hello = Request::Hello {
            user,
            password,
            client: opts.client_name.clone().unwrap_or_else(|| {
                std::env::args()
                    .next()
                    .unwrap_or_else(|| "raiz-client".into())
            }),
        };
        match conn.call(&hello)? {
            Reply::Welcome { session, .. } => conn.session = session,
            other => return Err(conn.unexpected(&other)),
        }
        Ok(conn)
    }

    /// The peer's address, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    pub fn unexpected(&self, reply: &Reply) -> Error {
        Error::Protocol {
            peer: self.peer.clone(),
            reason: format!("unexpected reply {reply:?}"),
        }
    }

    fn fail(&mut self, source: io::Error) -> Error {
        self.broken = true;
        Error::Io {
            peer: self.peer.clone(),
            source,
        }
    }

    /// Sends a request without waiting for its reply; returns its id.
    pub fn send(&mut self, req: &Request) -> Result<u64> {
        if self.broken {
            return Err(Error::Io {
                peer: self.peer.clone(),
                source: io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the connection was lost earlier",
                ),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let payload = proto::encode(&Envelope { id, body: req });
        let mut frame = Vec::with_capacity(payload.len() + 4);
        if proto::write_frame(&mut frame, &payload).is_err() {
            return Err(Error::Protocol {
                peer: self.peer.clone(),
                reason: "request too large for a frame".into(),
            });
        }
        let w = self.io.get_mut();
        if let Err(e) = w.write_all(&frame).and_then(|_| w.flush()) {
            return Err(self.fail(e));
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_out
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        Ok(id)
    }

    /// Sends a request whose reply nobody waits for (closing a handle when it
    /// is dropped); the reply is skipped when it arrives.
    pub fn send_forget(&mut self, req: &Request) {
        if let Ok(id) = self.send(req) {
            self.forgotten.push_back(id);
        }
    }

    /// Reads the next response off the wire.
    fn read_response(&mut self) -> Result<Response> {
        let payload = match proto::read_frame(&mut self.io, self.max_frame) {
            Ok(p) => p,
            Err(proto::FrameError::Io(e)) => return Err(self.fail(e)),
            Err(e @ proto::FrameError::TooLarge { .. }) => {
                self.broken = true;
                return Err(Error::Protocol {
                    peer: self.peer.clone(),
                    reason: e.to_string(),
                });
            }
        };
        self.stats
            .bytes_in
            .fetch_add(payload.len() as u64 + 4, Ordering::Relaxed);
        proto::decode(&payload).map_err(|e| {
            self.broken = true;
            Error::Protocol {
                peer: self.peer.clone(),
                reason: format!("undecodable reply: {e}"),
            }
        })
    }

    /// Sets how long a read may wait (None: for ever); a read that times out
    /// breaks the connection.
    pub fn set_read_timeout(&mut self, d: Option<std::time::Duration>) -> Result<()> {
        let r = match self.io.get_ref() {
            Transport::Tcp(s) => s.set_read_timeout(d),
            Transport::Unix(s) => s.set_read_timeout(d),
            Transport::Tls(s) => s.sock.set_read_timeout(d),
        };
        r.map_err(|e| self.fail(e))
    }

    /// Sends a write without waiting for its reply; an error it gets is
    /// reported by the next request that waits (or [`Conn::settle`]).
    pub fn send_deferred(&mut self, req: &Request) -> Result<()> {
        let id = self.send(req)?;
        self.deferred.push_back(id);
        Ok(())
    }

    /// Writes sent without waiting whose replies have not come yet.
    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// Waits for the replies of every deferred write (a round trip, when
    /// there are any); returns the first error one of them got.
    pub fn settle(&mut self) -> Result<()> {
        if let Some(&last) = self.deferred.back() {
            self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
            while self.deferred.contains(&last) {
                let resp = self.read_response()?;
                self.route(resp)?;
            }
        }
        match self.deferred_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Files a reply that belongs to a deferred or forgotten request; an
    /// unexpected one breaks the connection.
    fn route(&mut self, resp: Response) -> Result<()> {
        if self.deferred.front() == Some(&resp.id) {
            self.deferred.pop_front();
            if let Err(e) = resp.body {
                self.deferred_error.get_or_insert(Error::Server {
                    kind: e.kind,
                    message: e.message,
                });
            }
            return Ok(());
        }
        if self.forgotten.front() == Some(&resp.id) {
            self.forgotten.pop_front();
            return Ok(());
        }
        self.broken = true;
        if let (0, Err(e)) = (resp.id, resp.body) {
            return Err(Error::Server {
                kind: e.kind,
                message: e.message,
            });
        }
        Err(Error::Protocol {
            peer: self.peer.clone(),
            reason: format!("unexpected reply to request {}", resp.id),
        })
    }

    /// Reads the reply to request `id` (replies come in request order),
    /// filing the replies of deferred and forgotten requests sent before it.
    /// A deferred write's error takes the place of this reply: the caller
    /// learns of it at its next request.
    pub fn recv(&mut self, id: u64) -> Result<Reply> {
        loop {
            let resp = self.read_response()?;
            if resp.id == id {
                if let Some(e) = self.deferred_error.take() {
                    return Err(e);
                }
                return resp.body.map_err(|e| Error::Server {
                    kind: e.kind,
                    message: e.message,
                });
            }
            if self.deferred.front() == Some(&resp.id) || self.forgotten.front() == Some(&resp.id) {
                self.route(resp)?;
                continue;
            }
            self.broken = true;
            // id 0: the server refused something it could not attribute (a
            // frame over its limit, a frame without an id) and is closing.
            if let (0, Err(e)) = (resp.id, resp.body) {
                return Err(Error::Server {
                    kind: e.kind,
                    message: e.message,
                });
            }
            return Err(Error::Protocol {
                peer: self.peer.clone(),
                reason: format!("reply for request {} while waiting for {id}", resp.id),
            });
        }
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        let id = self.send(req)?;
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        self.recv(id)
    }

    /// Sends all requests, then reads all replies: one round trip for the lot.
    /// Stops at the first failure after draining what was sent.
    pub fn pipeline(&mut self, reqs: impl Iterator<Item = Request>) -> Result<Vec<Reply>> {
        let mut ids = Vec::new();
        for r in reqs {
            ids.push(self.send(&r)?);
        }
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(ids.len());
        let mut first_err = None;
        for id in ids {
            match self.recv(id) {
                Ok(r) => out.push(r),
                Err(e) => {
                    let fatal = self.broken;
                    first_err.get_or_insert(e);
                    if fatal {
                        break;
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
