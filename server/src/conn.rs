//! One connection: prologue, optional TLS, authentication, then a reader that
//! decodes frames into the worker's queue and a writer that sends the worker's
//! replies. The reader is where bad peers are caught: a wrong magic or
//! version, a frame over the limit, a frame not finished within the frame
//! timeout (slowloris), or no request for the idle timeout end the connection;
//! a frame that does not decode gets a `BadRequest` reply and the connection
//! goes on. Ending the connection closes the worker's queue; the worker
//! finishes the request it is executing, then ends the session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raiz_client::proto::{self, Envelope, Reply, Request, Status, WireError};
use raiz_client::ErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::timeout;

use crate::worker::{Item, Worker};
use crate::Shared;

/// A byte stream a connection runs on (TCP, TLS over TCP, Unix socket).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// How the peer reached us.
pub struct Peer {
    /// Address, for logs and the monitor.
    pub address: String,
    /// Loopback TCP or the Unix socket: TLS is optional.
    pub local: bool,
    /// A TCP stream TLS can be started on.
    pub tcp: bool,
}

async fn send_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame).await?;
    w.flush().await
}

fn error_payload(id: u64, kind: ErrorKind, message: String) -> Vec<u8> {
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

/// Reads one frame: the first byte may take up to `idle` (re-armed while the
/// session is busy), the rest must arrive within `frame`.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    idle: Duration,
    frame: Duration,
    limit: u32,
    busy: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<u8>, ReadEnd> {
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
    let rest = async {
        let mut len = [first, 0, 0, 0];
        r.read_exact(&mut len[1..]).await.map_err(ReadEnd::Io)?;
        let len = u32::from_le_bytes(len);
        if len > limit {
            return Err(ReadEnd::TooLarge(len));
        }
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
    match timeout(frame, rest).await {
        Ok(r) => r,
        Err(_) => Err(ReadEnd::Slow),
    }
}

/// Serves one accepted connection to its end.
pub async fn serve<S: Stream>(shared: Arc<Shared>, mut stream: S, peer: Peer) {
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
            Ok(Ok(tls)) => run(shared, tls, peer).await,
            Ok(Err(e)) => tracing::warn!(peer = %peer.address, error = %e, "TLS handshake failed"),
            Err(_) => tracing::warn!(peer = %peer.address, "TLS handshake timed out"),
        }
    } else {
        run(shared, stream, peer).await;
    }
}

async fn run<S: Stream>(shared: Arc<Shared>, stream: S, peer: Peer) {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(64 << 10, r);
    let limit = shared.config.max_frame();
    let frame_timeout = shared.config.frame_timeout();
    // Authentication: one Hello frame.
    let payload = match read_frame(&mut r, frame_timeout, frame_timeout, limit, &|| false).await {
        Ok(p) => p,
        Err(_) => {
            tracing::warn!(peer = %peer.address, "no hello in time or a bad frame; closed");
            return;
        }
    };
    let (id, user, password, client) = match proto::decode::<Envelope<Request>>(&payload) {
        Ok(Envelope {
            id,
            body:
                Request::Hello {
                    user,
                    password,
                    client,
                },
        }) => (id, user, password, client),
        _ => {
            let msg = "the first request must be a hello".to_owned();
            let _ = send_frame(&mut w, &error_payload(0, ErrorKind::BadRequest, msg)).await;
            return;
        }
    };
    let root = shared.db.root().to_path_buf();
    let name = user.clone();
    let verified = tokio::task::spawn_blocking(move || {
        crate::users::Users::load(&root).map(|u| u.verify(&name, &password).cloned())
    })
    .await;
    let user = match verified {
        Ok(Ok(Some(u))) => u,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the user list");
            let _ = send_frame(
                &mut w,
                &error_payload(
                    id,
                    ErrorKind::Auth,
                    "the server cannot read its user list".into(),
                ),
            )
            .await;
            return;
        }
        _ => {
            tracing::warn!(peer = %peer.address, user = %user, "authentication failed");
            // Slow down password guessing.
            tokio::time::sleep(Duration::from_millis(750)).await;
            let _ = send_frame(
                &mut w,
                &error_payload(
                    id,
                    ErrorKind::Auth,
                    format!("authentication failed for user {user:?}"),
                ),
            )
            .await;
            return;
        }
    };
    let session = shared.db.session();
    let sid = session.id();
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
    let (req_tx, req_rx) = tokio::sync::mpsc::channel::<Item>(64);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let worker = Worker::new(shared.clone(), session, user, entry.clone());
    let done = shared.workers.guard();
    let spawned = std::thread::Builder::new()
        .name(format!("raiz-session-{sid}"))
        .spawn(move || {
            worker.run(req_rx, out_tx);
            drop(done);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a session thread");
        shared.registry.remove(sid);
        return;
    }
    let writer_entry = entry.clone();
    let writer = tokio::spawn(async move {
        while let Some(p) = out_rx.recv().await {
            writer_entry
                .bytes_out
                .fetch_add(p.len() as u64 + 4, Ordering::Relaxed);
            if send_frame(&mut w, &p).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let idle = shared.config.idle_timeout();
    let mut ended = entry.ended();
    let mut shutdown = shared.shutdown.subscribe();
    let busy_entry = entry.clone();
    let busy = move || busy_entry.busy.load(Ordering::Relaxed);
    let why = loop {
        let frame = tokio::select! {
            f = read_frame(&mut r, idle, frame_timeout, limit, &busy) => f,
            _ = ended.wait_for(|e| *e) => break "ended by an admin",
            _ = shutdown.wait_for(|s| *s) => break "server shutting down",
        };
        let payload = match frame {
            Ok(p) => p,
            Err(ReadEnd::Closed) => break "closed by the client",
            Err(ReadEnd::Io(e)) => {
                tracing::debug!(session = sid, error = %e, "read");
                break "connection lost";
            }
            Err(ReadEnd::Idle) => break "idle timeout",
            Err(ReadEnd::Slow) => break "frame not completed in time",
            Err(ReadEnd::TooLarge(len)) => {
                let msg = format!("frame of {len} bytes exceeds the limit of {limit} bytes");
                let _ = req_tx.send((0, Err(msg))).await;
                break "frame over the limit";
            }
        };
        entry
            .bytes_in
            .fetch_add(payload.len() as u64 + 4, Ordering::Relaxed);
        entry.touch();
        let item = match proto::decode_request(&payload) {
            Ok((id, req)) => (id, Ok(req)),
            Err((Some(id), why)) => (id, Err(why)),
            Err((None, why)) => {
                let _ = req_tx.send((0, Err(why))).await;
                break "undecodable frame";
            }
        };
        if req_tx.send(item).await.is_err() {
            break "session ended";
        }
    };
    tracing::info!(session = sid, peer = %peer.address, reason = why, "session ending");
    drop(req_tx);
    let _ = writer.await;
    shared.registry.remove(sid);
}
