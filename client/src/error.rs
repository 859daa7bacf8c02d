//! The client's error type, and the error kinds shared by both modes.

use serde::{Deserialize, Serialize};

/// What went wrong, the same in embedded and remote mode: an application
/// matches on [`Error::kind`] and runs unchanged in either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// I/O on a data file (or, remote, on the connection).
    Io,
    /// The disk is full; nothing was changed.
    DiskFull,
    /// A sync failed.
    SyncFailed,
    /// Writes are refused after a sync failure.
    Poisoned,
    /// A page checksum failed.
    Checksum,
    /// A page is corrupt.
    CorruptPage,
    /// Not a raiz file.
    BadMagic,
    /// Unsupported file format version.
    UnsupportedVersion,
    /// An invalid table, index or user name.
    InvalidName,
    /// An invalid schema or index definition.
    InvalidSchema,
    /// The table exists.
    TableExists,
    /// The table does not exist.
    TableNotFound,
    /// The table is open elsewhere.
    TableInUse,
    /// Another process owns the rootpath.
    RootpathLocked,
    /// A value does not fit its field.
    InvalidValue,
    /// Wrong number of values.
    FieldCount,
    /// No such field.
    NoSuchField,
    /// No such record.
    NoSuchRecord,
    /// A record is too large.
    RecordTooLarge,
    /// The handle is not on a record.
    NoCurrentRecord,
    /// A record is corrupt.
    CorruptRecord,
    /// A unique key is taken.
    DuplicateKey,
    /// No such index.
    NoSuchIndex,
    /// The index exists.
    IndexExists,
    /// A lock is held by another session.
    LockConflict,
    /// A lock wait timed out.
    LockTimeout,
    /// A deadlock was detected.
    Deadlock,
    /// A transaction misuse (commit without begin…).
    Transaction,
    /// Not supported.
    Unsupported,
    /// Anything else the engine reported.
    Other,
    /// User or password refused.
    Auth,
    /// The user lacks a right on the table.
    PermissionDenied,
    /// A request the server could not decode or does not know.
    BadRequest,
    /// The peer broke the protocol (bad magic, version, frame).
    Protocol,
    /// The connection or session ended (ended by an admin, idle, shutdown,
    /// the user removed).
    Closed,
    /// The server refused the connection at its connection limit: retry later.
    Busy,
    /// The server's change feed stopped: cache nodes reload once it restarts.
    FeedStopped,
    /// A cache node cannot vouch for its copy: it has heard nothing from its
    /// server for longer than its staleness limit.
    Stale,
    /// A cluster member that does not take writes now (a follower): writes go
    /// to the leader.
    NotLeader,
    /// The cluster cannot reach a majority: nothing can be committed.
    NoQuorum,
    /// The leader changed during the transaction: its locks are gone and the
    /// outcome of a commit in flight is unknown; look, then retry.
    Failover,
}

impl ErrorKind {
    /// The kind of an engine error.
    pub fn of(e: &raiz_engine::Error) -> ErrorKind {
        use raiz_engine::Error as E;
        match e {
            E::Io { .. } => ErrorKind::Io,
            E::DiskFull { .. } => ErrorKind::DiskFull,
            E::SyncFailed { .. } => ErrorKind::SyncFailed,
            E::Poisoned { .. } => ErrorKind::Poisoned,
            E::Checksum { .. } => ErrorKind::Checksum,
            E::CorruptPage { .. } => ErrorKind::CorruptPage,
            E::BadMagic { .. } => ErrorKind::BadMagic,
            E::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            E::InvalidName { .. } => ErrorKind::InvalidName,
            E::InvalidSchema { .. } => ErrorKind::InvalidSchema,
            E::TableExists { .. } => ErrorKind::TableExists,
            E::TableNotFound { .. } => ErrorKind::TableNotFound,
            E::TableInUse { .. } => ErrorKind::TableInUse,
            E::RootpathLocked { .. } => ErrorKind::RootpathLocked,
            E::InvalidValue { .. } => ErrorKind::InvalidValue,
            E::FieldCount { .. } => ErrorKind::FieldCount,
            E::NoSuchField { .. } => ErrorKind::NoSuchField,
            E::NoSuchRecord { .. } => ErrorKind::NoSuchRecord,
            E::RecordTooLarge { .. } => ErrorKind::RecordTooLarge,
            E::NoCurrentRecord { .. } => ErrorKind::NoCurrentRecord,
            E::CorruptRecord { .. } => ErrorKind::CorruptRecord,
            E::DuplicateKey { .. } => ErrorKind::DuplicateKey,
            E::NoSuchIndex { .. } => ErrorKind::NoSuchIndex,
            E::IndexExists { .. } => ErrorKind::IndexExists,
            E::LockConflict { .. } => ErrorKind::LockConflict,
            E::LockTimeout { .. } => ErrorKind::LockTimeout,
            E::Deadlock { .. } => ErrorKind::Deadlock,
            E::Transaction(_) => ErrorKind::Transaction,
            E::Unsupported(_) => ErrorKind::Unsupported,
            E::FeedStopped { .. } => ErrorKind::FeedStopped,
            E::NotLeader { .. } => ErrorKind::NotLeader,
            E::NoQuorum { .. } => ErrorKind::NoQuorum,
            E::Failover { .. } => ErrorKind::Failover,
            #[allow(unreachable_patterns)]
            _ => ErrorKind::Other,
        }
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string is malformed.
    #[error("invalid connection string {input:?}: {reason}")]
    InvalidConnectionString {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The embedded engine refused.
    #[error(transparent)]
    Engine(#[from] raiz_engine::Error),
    /// The server refused, with the kind the engine (or the server) reported.
    #[error("{message}")]
    Server {
        /// The kind.
        kind: ErrorKind,
        /// The server's message.
        message: String,
    },
    /// The connection failed.
    #[error("connection to {peer}: {source}")]
    Io {
        /// Who we talk to.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The peer broke the protocol or speaks another version.
    #[error("protocol error with {peer}: {reason}")]
    Protocol {
        /// Who we talk to.
        peer: String,
        /// What happened.
        reason: String,
    },
    /// TLS setup failed (certificate files, handshake).
    #[error("TLS: {0}")]
    Tls(String),
    /// The operation needs a server connection.
    #[error("{0} needs a server connection")]
    RemoteOnly(&'static str),
    /// A cache node's copy or its state cannot be used.
    #[error("cache node: {0}")]
    Cache(String),
    /// A cache node has heard nothing from its server for longer than its
    /// staleness limit: it refuses to serve a copy it cannot vouch for.
    #[error("cache node: table {table} is stale: no word from the server for {silent_ms} ms (limit {limit_ms} ms)")]
    Stale {
        /// The table read.
        table: String,
        /// Since the last message from the server (or since the node started).
        silent_ms: u64,
        /// The node's limit.
        limit_ms: u64,
    },
}

impl Error {
    /// The kind, the same whether the error came from the embedded engine or
    /// from a server.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidConnectionString { .. } => ErrorKind::InvalidName,
            Error::Engine(e) => ErrorKind::of(e),
            Error::Server { kind, .. } => *kind,
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => ErrorKind::Closed,
                _ => ErrorKind::Io,
            },
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Tls(_) => ErrorKind::Protocol,
            Error::RemoteOnly(_) => ErrorKind::Unsupported,
            Error::Cache(_) => ErrorKind::Other,
            Error::Stale { .. } => ErrorKind::Stale,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
