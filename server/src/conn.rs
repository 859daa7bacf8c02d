//! One connection: prologue, optional TLS, authentication. Then a plain
//! connection (TCP or Unix) is handed to its session thread, which reads,
//! runs and answers its requests itself with the same checks (see
//! [`crate::direct`]); a TLS connection gets a reader that decodes frames
//! into the worker's queue and a writer that sends the worker's replies.
//! The reader is where bad peers are caught: a wrong magic or version, a frame over the limit, a frame not finished within the frame
//! timeout (slowloris), or no request for the idle timeout end the connection;
//! a frame that does not decode gets a `BadRequest` reply and the connection
//! goes on. Ending the connection closes the worker's queue; the worker
//! finishes the request it is executing, then ends the session.
//!
//! Before login a peer may send one hello, in a frame of at most
//! [`proto::MAX_HELLO_FRAME`] bytes, decoded by [`proto::decode_hello`] (no
//! other request decoder is reachable). After it, every frame reserves its
//! bytes in the server's frame budget before its body is read, the queue to
//! the worker is short, and the worker waits while its unsent replies exceed
//! [`crate::limits::REPLY_BUDGET`]: a client that does not read its replies
//! stops being read (see [`crate::limits`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raiz_client::proto::{self, Envelope, Reply, Status, WireError};
use raiz_client::ErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::auth::{Verdict, FAILURE_DELAY};
use crate::limits::{ConnSlot, Outbox, PendingSlot};
use crate::worker::{Item, Worker};
use crate::Shared;

/// Why a session ended when an admin or the server's watcher ended it.
const ENDED: &str = "ended by an admin or the server";
/// Requests queued for a session thread.
const QUEUE: usize = 16;
/// Time the writer gets to send what is queued once a session was ended.
const FORCED_END_GRACE: Duration = Duration::from_secs(1);

/// A byte stream a connection runs on (TCP, TLS over TCP, Unix socket).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// How the peer reached us.
pub struct Peer {
    /// Address, for logs and the monitor.
    pub address: String,
    /// The address without the port (`unix` for the Unix socket): what
    /// per-address limits count.
    pub ip: String,
    /// Loopback TCP or the Unix socket: TLS is optional.
    pub local: bool,
    /// A TCP stream TLS can be started on.
    pub tcp: bool,
}

async fn send_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let len = (payload.len() as u32).to_le_bytes();
    if payload.len() <= 16 << 10 {
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&len);
        frame.extend_from_slice(payload);
        w.write_all(&frame).await?;
    } else {
        w.write_all(&len).await?;
        w.write_all(payload).await?;
    }
    w.flush().await
}

pub(crate) fn error_payload(id: u64, kind: ErrorKind, message: String) -> Vec<u8> {
    proto::encode(&Envelope::<Result<Reply, WireError>> {
        id,
        body: Err(WireError { kind, message }),
    })
}

/// Why a frame could not be read.
enum ReadEnd {
    Closed,
    Idle,
    Slow,
    TooLarge(u32),
    Io(std::io::Error),
}

/// Reads a frame's length: the first byte may take up to `idle` (re-armed
/// while the session is busy), the rest must arrive within `frame`.
async fn read_len<R: AsyncRead + Unpin>(
    r: &mut R,
    idle: Duration,
    frame: Duration,
    busy: &(dyn Fn() -> bool + Sync),
) -> Result<u32, ReadEnd> {
    let first = loop {
        match timeout(idle, r.read_u8()).await {
            Ok(Ok(b)) => break b,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ReadEnd::Closed)
            }
            Ok(Err(e)) => return Err(ReadEnd::Io(e)),
            Err(_) if busy() => continue,
            Err(_) => return Err(ReadEnd::Idle),
        }
    };
    let mut len = [first, 0, 0, 0];
    match timeout(frame, r.read_exact(&mut len[1..])).await {
        Ok(Ok(_)) => Ok(u32::from_le_bytes(len)),
        Ok(Err(e)) => Err(ReadEnd::Io(e)),
        Err(_) => Err(ReadEnd::Slow),
    }
}

/// Reads a frame's body of `len` bytes within `frame`. The buffer grows as
/// bytes arrive, so announcing a large frame and sending little costs little.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: u32,
    frame: Duration,
) -> Result<Vec<u8>, ReadEnd> {
    let body = async {
        let mut buf = Vec::with_capacity((len as usize).min(1 << 20));
        let got = r
            .take(u64::from(len))
            .read_to_end(&mut buf)
            .await
            .map_err(ReadEnd::Io)?;
        if got != len as usize {
            return Err(ReadEnd::Closed);
        }
        Ok(buf)
    };
    timeout(frame, body).await.unwrap_or(Err(ReadEnd::Slow))
}

/// Refuses a connection over a limit: a `Busy` prologue, then close. The
/// peer's prologue is read first (briefly), so the close does not reset the
/// connection before the client has read the answer.
pub async fn refuse<S: Stream>(mut stream: S) {
    let _ = stream
        .write_all(&proto::prologue(proto::VERSION, Status::Busy as u16))
        .await;
    let mut hello = [0u8; 8];
    let _ = timeout(Duration::from_millis(500), stream.read_exact(&mut hello)).await;
    let _ = stream.shutdown().await;
}

/// Serves one accepted connection to its end.
pub async fn serve<S: Stream>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: Peer,
    slot: ConnSlot,
    pending: PendingSlot,
    direct: Option<std::os::fd::OwnedFd>,
) {
    let frame_timeout = shared.config.frame_timeout();
    let mut hello = [0u8; 8];
    match timeout(frame_timeout, stream.read_exact(&mut hello)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return,
        Err(_) => {
            tracing::warn!(peer = %peer.address, "no prologue in time; closed");
            return;
        }
    }
    let Some((version, flags)) = proto::parse_prologue(&hello) else {
        tracing::warn!(peer = %peer.address, "not a raiz client (bad magic); closed");
        let _ = stream
            .write_all(&proto::prologue(proto::VERSION, Status::NotRaiz as u16))
            .await;
        return;
    };
    let status = if version != proto::VERSION {
        Status::VersionMismatch
    } else if flags & proto::FLAG_TLS != 0 {
        if shared.tls.is_some() && peer.tcp {
            Status::Ok
        } else {
            Status::TlsUnavailable
        }
    } else if shared.tls.is_some() && !peer.local && !shared.config.allow_plaintext.unwrap_or(false)
    {
        Status::TlsRequired
    } else {
        Status::Ok
    };
    if stream
        .write_all(&proto::prologue(proto::VERSION, status as u16))
        .await
        .is_err()
    {
        return;
    }
    if status != Status::Ok {
        tracing::warn!(peer = %peer.address, client_version = version, ?status, "connection refused");
        return;
    }
    if flags & proto::FLAG_TLS != 0 {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        match timeout(frame_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => run(shared, tls, peer, pending, slot, None).await,
            Ok(Err(e)) => tracing::warn!(peer = %peer.address, error = %e, "TLS handshake failed"),
            Err(_) => tracing::warn!(peer = %peer.address, "TLS handshake timed out"),
        }
    } else {
        run(shared, stream, peer, pending, slot, direct).await;
    }
}

/// Reads and checks the hello; the user, or None when the connection is done.
async fn login<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    shared: &Shared,
    r: &mut R,
    w: &mut W,
    peer: &Peer,
) -> Option<(u64, crate::users::User, String)> {
    let frame_timeout = shared.config.frame_timeout();
    let limit = proto::MAX_HELLO_FRAME;
    let payload = match read_len(r, frame_timeout, frame_timeout, &|| false).await {
        Ok(len) if len > limit => {
            let msg = format!("a hello frame of {len} bytes exceeds the limit of {limit} bytes");
            tracing::warn!(peer = %peer.address, "{msg}; closed");
            let _ = send_frame(w, &error_payload(0, ErrorKind::BadRequest, msg)).await;
            return None;
        }
        Ok(len) => read_body(r, len, frame_timeout).await.ok(),
        Err(_) => None,
    };
    let Some(payload) = payload else {
        tracing::warn!(peer = %peer.address, "no hello in time or a bad frame; closed");
        return None;
    };
    let (id, hello) = match proto::decode_hello(&payload) {
        Ok(h) => h,
        Err((id, msg)) => {
            let _ = send_frame(
                w,
                &error_payload(id.unwrap_or(0), ErrorKind::BadRequest, msg),
            )
            .await;
            return None;
        }
    };
    let delay = shared.auth.delay(&peer.ip, &hello.user);
    if !delay.is_zero() {
        tracing::debug!(peer = %peer.address, user = %hello.user, ?delay, "login slowed after failures");
        tokio::time::sleep(delay).await;
    }
    let name = hello.user.clone();
    match shared.auth.verify(hello.user, hello.password).await {
        Verdict::Ok(user) => Some((id, user, hello.client)),
        Verdict::Unavailable => {
            let msg = "the server is shutting down".to_owned();
            let _ = send_frame(w, &error_payload(id, ErrorKind::Closed, msg)).await;
            None
        }
        Verdict::Denied => {
            tracing::warn!(peer = %peer.address, user = %name, "authentication failed");
            shared.auth.failed(&peer.ip, &name);
            tokio::time::sleep(FAILURE_DELAY).await;
            let msg = format!("authentication failed for user {name:?}");
            let _ = send_frame(w, &error_payload(id, ErrorKind::Auth, msg)).await;
            None
        }
    }
}

async fn run<S: Stream>(
    shared: Arc<Shared>,
    stream: S,
    peer: Peer,
    pending: PendingSlot,
    _slot: ConnSlot,
    direct: Option<std::os::fd::OwnedFd>,
) {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(16 << 10, r);
    let Some((id, user, client)) = login(&shared, &mut r, &mut w, &peer).await else {
        return;
    };
    drop(pending);
    let session = shared.db.session();
    let sid = session.id();
    // Other sessions' lock errors name this one by its user and address.
    session.set_name(&format!("{}@{}", user.name, peer.address));
    let entry = shared.registry.add(sid, &user.name, &peer.address, &client);
    tracing::info!(session = sid, user = %user.name, peer = %peer.address, "session started");
    let welcome = proto::encode(&Envelope::<Result<Reply, WireError>> {
        id,
        body: Ok(Reply::Welcome {
            session: sid,
            server: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    });
    if send_frame(&mut w, &welcome).await.is_err() {
        shared.registry.remove(sid);
        return;
    }
    let worker = Worker::new(shared.clone(), session, user, entry.clone());
    if let Some(fd) = direct {
        // A plain connection: its session thread reads and writes the socket
        // itself from here on (see `crate::direct`).
        let buffered = r.buffer().to_vec();
        drop(r);
        drop(w);
        return run_plain(shared, fd, buffered, peer, worker, entry).await;
    }
    let (req_tx, req_rx) = mpsc::channel::<Item>(QUEUE);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let outbox = Arc::new(Outbox::default());
    let done = shared.workers.guard();
    let worker_outbox = outbox.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("raiz-session-{sid}"))
        .spawn(move || {
            worker.run(req_rx, out_tx, &worker_outbox);
            drop(done);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a session thread");
        shared.registry.remove(sid);
        return;
    }
    let writer_entry = entry.clone();
    let writer_outbox = outbox.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(p) = out_rx.recv().await {
            writer_entry
                .bytes_out
                .fetch_add(p.len() as u64 + 4, Ordering::Relaxed);
            let sent = send_frame(&mut w, &p).await;
            writer_outbox.sent(p.len());
            if sent.is_err() {
                break;
            }
        }
        writer_outbox.close();
        let _ = w.shutdown().await;
    });
    let why = read_requests(&shared, &mut r, &entry, &req_tx).await;
    let forced = entry.reason();
    tracing::info!(session = sid, peer = %peer.address, reason = why, detail = forced.as_deref().unwrap_or(""), "session ending");
    // The session thread says why the session was ended, after its last
    // reply (queued behind it).
    drop(req_tx);
    let grace = if forced.is_some() || why == ENDED {
        FORCED_END_GRACE
    } else {
        shared.config.frame_timeout()
    };
    // The writer ends once the session thread has answered its last request.
    // If meanwhile replies wait and none gets out for `grace`, the client
    // does not read: stop writing, so the session thread (maybe waiting for
    // room) ends and releases its locks.
    let mut sent = entry.bytes_out.load(Ordering::Relaxed);
    while timeout(grace, &mut writer).await.is_err() {
        let now = entry.bytes_out.load(Ordering::Relaxed);
        if outbox.pending() > 0 && now == sent {
            writer.abort();
            outbox.close();
            break;
        }
        sent = now;
    }
    shared.registry.remove(sid);
}

/// Serves a plain connection whose session thread reads and writes the
/// socket (`fd`, which nothing else uses any more; `buffered`: bytes the
/// login's reader had already read): waits for the thread to end, waking it
/// when an admin or the server ends the session.
async fn run_plain(
    shared: Arc<Shared>,
    fd: std::os::fd::OwnedFd,
    buffered: Vec<u8>,
    peer: Peer,
    worker: Worker,
    entry: Arc<crate::registry::Entry>,
) {
    let sid = entry.id;
    let conn = match crate::direct::PlainConn::new(
        fd,
        peer.tcp,
        &buffered,
        shared.config.idle_timeout(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(session = sid, error = %e, "cannot take over the connection");
            shared.registry.remove(sid);
            return;
        }
    };
    let waker = match conn.waker() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(session = sid, error = %e, "cannot take over the connection");
            shared.registry.remove(sid);
            return;
        }
    };
    let rt = tokio::runtime::Handle::current();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let done = shared.workers.guard();
    let spawned = std::thread::Builder::new()
        .name(format!("raiz-session-{sid}"))
        .spawn(move || {
            worker.run_plain(conn, &rt);
            drop(done);
            let _ = ended_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a session thread");
        shared.registry.remove(sid);
        return;
    }
    let mut ended = entry.ended();
    let mut shutdown = shared.shutdown.subscribe();
    tokio::pin!(ended_rx);
    // (The watch guards are dropped inside the select: only whether the
    // thread must be woken comes out.)
    let wake = tokio::select! {
        _ = &mut ended_rx => false,
        _ = ended.wait_for(|e| *e) => true,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    if wake {
        waker.wake();
        // The thread ends after the request it is running, if any; one stuck
        // writing a reply its client does not read gets the grace the writer
        // task gets on a TLS connection, then its socket is closed.
        loop {
            match timeout(FORCED_END_GRACE, &mut ended_rx).await {
                Ok(_) => break,
                Err(_) if entry.busy.load(Ordering::Relaxed) => {}
                Err(_) => {
                    waker.close();
                    let _ = (&mut ended_rx).await;
                    break;
                }
            }
        }
    }
    tracing::debug!(session = sid, peer = %peer.address, "plain connection done");
    shared.registry.remove(sid);
}

/// Reads requests into the worker's queue until the connection ends; why.
async fn read_requests<R: AsyncRead + Unpin>(
    shared: &Shared,
    r: &mut R,
    entry: &Arc<crate::registry::Entry>,
    req_tx: &mpsc::Sender<Item>,
) -> &'static str {
    let limit = shared.config.max_frame();
    let frame_timeout = shared.config.frame_timeout();
    let idle = shared.config.idle_timeout();
    let mut ended = entry.ended();
    let mut shutdown = shared.shutdown.subscribe();
    let busy_entry = entry.clone();
    let busy = move || busy_entry.busy.load(Ordering::Relaxed);
    loop {
        let next = async {
            let len = read_len(r, idle, frame_timeout, &busy).await?;
            if len > limit {
                return Err(ReadEnd::TooLarge(len));
            }
            let permit = shared.limits.frame(len).await;
            Ok((read_body(r, len, frame_timeout).await?, permit))
        };
        let frame = tokio::select! {
            f = next => f,
            _ = ended.wait_for(|e| *e) => return ENDED,
            _ = shutdown.wait_for(|s| *s) => return "server shutting down",
        };
        let (payload, permit) = match frame {
            Ok(p) => p,
            Err(ReadEnd::Closed) => return "closed by the client",
            Err(ReadEnd::Io(e)) => {
                tracing::debug!(session = entry.id, error = %e, "read");
                return "connection lost";
            }
            Err(ReadEnd::Idle) => return "idle timeout",
            Err(ReadEnd::Slow) => return "frame not completed in time",
            Err(ReadEnd::TooLarge(len)) => {
                let msg = format!("frame of {len} bytes exceeds the limit of {limit} bytes");
                let _ = req_tx.send(Item::refused(0, msg)).await;
                return "frame over the limit";
            }
        };
        entry
            .bytes_in
            .fetch_add(payload.len() as u64 + 4, Ordering::Relaxed);
        entry.touch();
        let decoded = proto::decode_request(&payload);
        drop(payload);
        let item = match decoded {
            Ok((id, req)) => Item::new(id, req, permit),
            Err((Some(id), why)) => Item::refused(id, why),
            Err((None, why)) => {
                let _ = req_tx.send(Item::refused(0, why)).await;
                return "undecodable frame";
            }
        };
        // Queue it; a full queue means the session is busy or its client does
        // not read its replies (the session thread waits for room): then this
        // connection is not read either, up to the idle timeout.
        let queued = async {
            loop {
                match timeout(idle, req_tx.reserve()).await {
                    Ok(Ok(slot)) => return Ok(slot),
                    Ok(Err(_)) => return Err("session ended"),
                    Err(_) if busy() => continue,
                    Err(_) => return Err("replies not read within the idle timeout"),
                }
            }
        };
        let slot = tokio::select! {
            q = queued => q,
            _ = ended.wait_for(|e| *e) => return ENDED,
            _ = shutdown.wait_for(|s| *s) => return "server shutting down",
        };
        match slot {
            Ok(slot) => slot.send(item),
            Err(why) => return why,
        }
    }
}
