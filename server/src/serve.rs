//! Starting and stopping a server: open the rootpath, bind, accept, and on
//! SIGINT/SIGTERM (or [`ServerHandle::stop`]) shut down gracefully — stop
//! accepting, end every session (the request each is executing finishes, open
//! transactions roll back, locks are released), checkpoint, close the tables
//! cleanly so the next open needs no recovery.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_engine::{Database, Options};
use tokio::sync::watch;

use crate::conn::{self, Peer};
use crate::{acl, registry, Config, Error, Shared, Workers};

/// How long shutdown waits for sessions to finish their current request.
const DRAIN: Duration = Duration::from_secs(30);

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The TCP address it listens on (the real port when 0 was asked for).
    pub tcp: Option<SocketAddr>,
    /// The Unix socket it listens on.
    pub unix: Option<PathBuf>,
    /// Where it serves /healthz, /readyz and /metrics.
    pub metrics: Option<SocketAddr>,
    /// Where it serves SQL over the PostgreSQL protocol.
    pub sql: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl ServerHandle {
    /// Shuts down gracefully and waits for it.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop.send_replace(true);
        self.join()
    }

    /// Waits until the server stops (after a signal, when started by [`run`]).
    pub fn join(&mut self) -> Result<(), Error> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::Users("the server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        let _ = self.join();
    }
}

fn tls_acceptor(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, Error> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(Error::Tls("tls_cert and tls_key go together".into())),
    };
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| Error::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let pem = read(cert)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", cert.display())));
    }
    let pem = read(key)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc))))
}

fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, Error> {
    let lerr = |source| Error::Listen {
        address: path.display().to_string(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(lerr(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; not replacing it",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(lerr(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another server answers on this socket",
            )));
        }
        // A socket left by a server that died.
        std::fs::remove_file(path).map_err(lerr)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(lerr)?;
    l.set_nonblocking(true).map_err(lerr)?;
    Ok(l)
}

/// Opens the rootpath and starts serving in the background. With `signals`,
/// SIGINT and SIGTERM shut it down.
pub fn start(config: Config, signals: bool) -> Result<ServerHandle, Error> {
    start_with(config, signals, |_| {})
}

/// [`start`], calling `on_metrics` with the health and metrics address as
/// soon as it answers — before the rootpath is opened, so `/readyz` can be
/// watched while the log is replayed.
pub fn start_with(
    config: Config,
    signals: bool,
    on_metrics: impl FnOnce(SocketAddr),
) -> Result<ServerHandle, Error> {
    let root = config.root.clone().ok_or_else(|| Error::Invalid {
        path: None,
        message: "no rootpath: give --root or root = in raiz.toml".into(),
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("raiz-net")
        .build()
        .map_err(|source| Error::Listen {
            address: "runtime".into(),
            source,
        })?;
    let requests = Arc::new(crate::metrics::Requests::default());
    let probe = crate::metrics::ServerProbe::new(requests.clone());
    let (metrics_stop, metrics_stop_rx) = watch::channel(false);
    let metrics = match &config.metrics_listen {
        Some(addr) => {
            let l = crate::metrics::bind(addr)?;
            let local = l.local_addr().map_err(|source| Error::Listen {
                address: addr.clone(),
                source,
            })?;
            let source: Arc<dyn crate::metrics::Source> = probe.clone();
            let _guard = rt.enter();
            let l = tokio::net::TcpListener::from_std(l).map_err(|source| Error::Listen {
                address: addr.clone(),
                source,
            })?;
            rt.spawn(crate::metrics::serve_http(l, source, metrics_stop_rx));
            tracing::info!(address = %local, "health and metrics: /healthz, /readyz, /metrics");
            on_metrics(local);
            Some(local)
        }
        None => None,
    };
    let tls = tls_acceptor(&config)?;
    let users = Arc::new(crate::users::UserDb::open(&root)?);
    if users.current().users.is_empty() {
        tracing::warn!(root = %root.display(), "no users yet: every login fails until `raiz user add` creates one");
    }
    probe.set_phase(crate::metrics::Phase::Recovering);
    let db = Database::open_with(
        &root,
        Options::default()
            .pool_bytes(config.pool_bytes())
            .log(config.log_options()),
    )?;
    let cluster = crate::cluster::start(&config, &db)?;
    let acl = acl::Acl::load(&root)?;
    let tcp = match &config.listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Listen {
                address: addr.clone(),
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| Error::Listen {
                address: addr.clone(),
                source,
            })?;
            let local = l.local_addr().map_err(|source| Error::Listen {
                address: addr.clone(),
                source,
            })?;
            if tls.is_none() && !local.ip().is_loopback() {
                tracing::warn!(%local, "listening beyond this machine without TLS: set tls_cert and tls_key");
            }
            Some((l, local))
        }
        None => None,
    };
    let sql = match &config.sql_listen {
        Some(addr) => {
            let listen_error = |source| Error::Listen {
                address: addr.clone(),
                source,
            };
            let l = std::net::TcpListener::bind(addr).map_err(listen_error)?;
            l.set_nonblocking(true).map_err(listen_error)?;
            let local = l.local_addr().map_err(listen_error)?;
            if tls.is_none() && !local.ip().is_loopback() {
                tracing::warn!(%local, "serving SQL beyond this machine without TLS: passwords cross the network in clear");
            }
            Some((l, local))
        }
        None => None,
    };
    let unix = config.unix.as_deref().map(bind_unix).transpose()?;
    if tcp.is_none() && unix.is_none() {
        return Err(Error::Invalid {
            path: None,
            message: "nothing to listen on: give --listen or --unix".into(),
        });
    }
    let (stop, stop_rx) = watch::channel(false);
    let handle_tcp = tcp.as_ref().map(|(_, a)| *a);
    let handle_sql = sql.as_ref().map(|(_, a)| *a);
    let unix_path = config.unix.clone();
    let auth = crate::auth::Auth::start(users.clone()).map_err(|source| Error::Listen {
        address: "password-check threads".into(),
        source,
    })?;
    let stream = crate::stream::Stream::start(db.feed().clone(), config.window_bytes());
    let shared = Arc::new(Shared {
        stream,
        db,
        limits: Arc::new(crate::limits::Limits::new(&config)),
        config,
        acl,
        users,
        auth,
        registry: registry::Registry::default(),
        tls,
        shutdown: watch::channel(false).0,
        workers: Arc::new(Workers::default()),
        metrics: requests,
        cluster,
    });
    probe.attach(&shared);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("raiz-serve".into())
        .spawn(move || {
            let r = serve(
                rt,
                shared,
                (tcp.map(|(l, _)| l), sql.map(|(l, _)| l)),
                unix,
                (stop_rx, signals),
                &probe,
                ready_tx,
            );
            drop(metrics_stop);
            r
        })
        .map_err(|source| Error::Listen {
            address: "thread".into(),
            source,
        })?;
    // Returns once the accept loops run (and `/readyz` says so).
    let _ = ready_rx.recv_timeout(Duration::from_secs(30));
    Ok(ServerHandle {
        tcp: handle_tcp,
        unix: unix_path,
        metrics,
        sql: handle_sql,
        stop,
        thread: Some(thread),
    })
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully (`raiz serve`).
pub fn run(config: Config) -> Result<(), Error> {
    let mut h = start_with(config, true, |addr| {
        use std::io::Write;
        println!("raiz serve: metrics on {addr}");
        let _ = std::io::stdout().flush();
    })?;
    if let Some(a) = h.tcp {
        println!("raiz serve: listening on {a}");
    }
    if let Some(p) = &h.unix {
        println!("raiz serve: listening on {}", p.display());
    }
    if let Some(a) = h.sql {
        println!("raiz serve: SQL (PostgreSQL protocol) on {a}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    h.join()
}

fn serve(
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    (tcp, sql): (Option<std::net::TcpListener>, Option<std::net::TcpListener>),
    unix: Option<std::os::unix::net::UnixListener>,
    (mut stop, signals): (watch::Receiver<bool>, bool),
    probe: &crate::metrics::ServerProbe,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<(), Error> {
    let root = shared.db.root().to_path_buf();
    rt.block_on(async {
        if let Some(l) = sql {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(crate::pgsql::accept(shared.clone(), l));
                }
                Err(e) => tracing::error!(error = %e, "SQL listener"),
            }
        }
        if let Some(l) = tcp {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(accept_tcp(shared.clone(), l));
                }
                Err(e) => tracing::error!(error = %e, "TCP listener"),
            }
        }
        if let Some(l) = unix {
            match tokio::net::UnixListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(accept_unix(shared.clone(), l));
                }
                Err(e) => tracing::error!(error = %e, "Unix listener"),
            }
        }
        tokio::spawn(crate::watch::run(shared.clone()));
        tracing::info!(root = %root.display(), "serving");
        probe.set_phase(crate::metrics::Phase::Serving);
        let _ = ready.send(());
        wait_for_stop(&mut stop, signals).await;
        probe.set_phase(crate::metrics::Phase::Stopping);
        tracing::info!(
            sessions = shared.registry.len(),
            "shutting down: ending sessions"
        );
        shared.shutdown.send_replace(true);
        let deadline = Instant::now() + DRAIN;
        while shared.workers.running() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if shared.workers.running() > 0 {
            tracing::warn!(
                running = shared.workers.running(),
                "sessions still busy after the drain time; closing without them"
            );
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    if let Some(p) = &shared.config.unix {
        let _ = std::fs::remove_file(p);
    }
    if let Some(m) = &shared.cluster {
        m.shutdown();
    }
    let db = shared.db.clone();
    drop(shared);
    let result = db.checkpoint().map_err(Error::from);
    drop(db);
    tracing::info!(root = %root.display(), "closed");
    result
}

async fn wait_for_stop(stop: &mut watch::Receiver<bool>, signals: bool) {
    if !signals {
        let _ = stop.wait_for(|s| *s).await;
        return;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        let _ = stop.wait_for(|s| *s).await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Backs off after `accept` failures (out of file descriptors): waits grow
/// from 50 ms to 1 s, and one warning is logged per 10 s.
#[derive(Default)]
struct Backoff {
    wait: Duration,
    failures: u64,
    warned: Option<Instant>,
}

impl Backoff {
    async fn failed(&mut self, e: &std::io::Error) {
        self.failures += 1;
        if self
            .warned
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(error = %e, failures = self.failures, "accept failed; backing off");
            self.warned = Some(Instant::now());
            self.failures = 0;
        }
        self.wait = (self.wait * 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::time::sleep(self.wait).await;
    }

    fn succeeded(&mut self) {
        self.wait = Duration::ZERO;
    }
}

/// Serves an accepted stream, or refuses it at `max_connections`.
fn dispatch<S: conn::Stream + std::os::fd::AsFd>(shared: &Arc<Shared>, stream: S, peer: Peer) {
    let Some(slot) = shared.limits.connect() else {
        tracing::warn!(peer = %peer.address, open = shared.limits.open(), max = shared.config.max_connections(), "at max_connections; refused");
        tokio::spawn(conn::refuse(stream));
        return;
    };
    // Taken here, in accept order, so the limit is exact.
    let Some(pending) = shared.limits.unauthenticated(&peer.ip) else {
        tracing::warn!(peer = %peer.address, "too many connections logging in from this address or in total; refused");
        tokio::spawn(conn::refuse(stream));
        return;
    };
    // The session thread's own way to the socket (see `crate::direct`);
    // used only if the connection stays plain.
    let direct = stream.as_fd().try_clone_to_owned().ok();
    tokio::spawn(conn::serve(
        shared.clone(),
        stream,
        peer,
        slot,
        pending,
        direct,
    ));
}

async fn accept_tcp(shared: Arc<Shared>, l: tokio::net::TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            a = l.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.succeeded();
        let _ = stream.set_nodelay(true);
        let ka = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10))
            .with_retries(3);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka) {
            tracing::debug!(error = %e, "keepalive");
        }
        let peer = Peer {
            address: addr.to_string(),
            ip: addr.ip().to_string(),
            local: addr.ip().is_loopback(),
            tcp: true,
        };
        dispatch(&shared, stream, peer);
    }
}

async fn accept_unix(shared: Arc<Shared>, l: tokio::net::UnixListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            a = l.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff.succeeded();
                let peer = Peer {
                    address: "unix".into(),
                    ip: "unix".into(),
                    local: true,
                    tcp: false,
                };
                dispatch(&shared, stream, peer);
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}
