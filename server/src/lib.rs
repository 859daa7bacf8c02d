//! # raiz-server
//!
//! `raiz serve`: the single owner of a rootpath, serving many clients over TCP
//! (optionally TLS) and a Unix socket with the `raiz-client` wire protocol.
//!
//! - [`config`]: `raiz.toml`, read by every `raiz` subcommand.
//! - [`users`] and [`acl`]: who may connect (argon2 hashes in `raiz.users`) and
//!   what each user may do to each table (`raiz.acl`).
//! - [`serve`]: listeners, signals and graceful shutdown; per connection,
//!   `conn` (async: handshake, frames, timeouts, backpressure) and `worker`
//!   (an OS thread that owns the engine session and runs its requests in
//!   order).
//! - [`auth`]: password checks on a small pool, login throttling.
//! - [`limits`]: connections, logins in progress, buffered frames, unsent
//!   replies.
//! - [`registry`]: the sessions `raiz monitor` lists and ends; `watch` keeps
//!   them in step with `raiz.users` and ends idle holders of awaited locks.
//!
//! ```toml
//! root = "/data/erp"
//! listen = "0.0.0.0:7070"
//! unix = "/run/raiz.sock"
//! pool_mb = 256
//! checkpoint_mb = 64       # checkpoint once the log grew this much
//! checkpoint_secs = 300    # … or this long after the last one
//! sync_delay_ms = 1000     # delayed-durability commits are synced within this
//! tls_cert = "/etc/raiz/server.pem"
//! tls_key = "/etc/raiz/server.key"
//! idle_secs = 1800         # a session without requests for this long is ended
//! frame_secs = 30          # a started frame must be complete within this
//! max_frame_mb = 72
//! max_connections = 4096   # connections at once; the excess gets a Busy status
//! max_unauthenticated = 512               # connections not logged in yet, in total
//! max_unauthenticated_per_address = 64    # … and per peer address
//! frame_budget_mb = 512    # request frames read and not yet executed, all connections
//! lock_idle_secs = 60      # end a session holding awaited locks, silent this long
//! ```
//!
//! ```
//! let c = raiz_server::Config::parse("root = '/data/erp'\npool_mb = 128\n").unwrap();
//! assert_eq!(c.pool_bytes(), 128 << 20);
//! ```

pub mod acl;
mod ahead;
pub mod auth;
pub mod bound;
pub mod cluster;
pub mod config;
mod conn;
mod direct;
pub mod guide;
pub mod limits;
pub mod metrics;
pub mod node;
mod pgsql;
pub mod registry;
pub mod serve;
pub mod stream;
pub mod users;
mod watch;
mod worker;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use config::Config;
pub use serve::{run, start, ServerHandle};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("invalid config{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A user-list operation was refused.
    #[error("{0}")]
    Users(String),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// An address could not be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address or socket path.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused.
    #[error(transparent)]
    Engine(#[from] raiz_engine::Error),
    /// A cache node or its server refused.
    #[error(transparent)]
    Client(#[from] raiz_client::Error),
    /// The cluster member could not start.
    #[error("cluster: {0}")]
    Cluster(String),
}

/// Replaces `path` with `bytes`: temporary file, sync, rename, sync directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Shared {
    /// What a cache node's front-end shares: its copy, and no users, rights
    /// or limits of its own (the server checks them; see [`bound`]).
    pub(crate) fn for_copy(db: raiz_engine::Database) -> Result<Arc<Shared>, Error> {
        let root = db.root().to_path_buf();
        let config = Config {
            root: Some(root.clone()),
            ..Config::default()
        };
        let users = Arc::new(users::UserDb::open(&root)?);
        let auth = auth::Auth::start(users.clone()).map_err(|source| Error::Listen {
            address: "password-check threads".into(),
            source,
        })?;
        Ok(Arc::new(Shared {
            stream: stream::Stream::start(db.feed().clone(), 1 << 20),
            acl: acl::Acl::load(&root)?,
            limits: Arc::new(limits::Limits::new(&config)),
            config,
            users,
            auth,
            registry: registry::Registry::default(),
            tls: None,
            shutdown: tokio::sync::watch::channel(false).0,
            workers: Arc::new(Workers::default()),
            metrics: Arc::new(metrics::Requests::default()),
            cluster: None,
            db,
        }))
    }
}

/// Session threads still running.
#[derive(Debug, Default)]
pub(crate) struct Workers(AtomicUsize);

/// Held by a session thread while it runs.
pub(crate) struct WorkerGuard(Arc<Workers>);

impl Workers {
    pub fn guard(self: &Arc<Self>) -> WorkerGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        WorkerGuard(self.clone())
    }

    pub fn running(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub db: raiz_engine::Database,
    pub config: Config,
    pub acl: acl::Acl,
    pub users: Arc<users::UserDb>,
    pub auth: auth::Auth,
    pub limits: Arc<limits::Limits>,
    pub registry: registry::Registry,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub workers: Arc<Workers>,
    pub stream: Arc<stream::Stream>,
    pub metrics: Arc<metrics::Requests>,
    /// The cluster member, under `--cluster`.
    pub cluster: Option<Arc<raiz_cluster::ClusterMember>>,
}
