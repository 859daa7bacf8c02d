//! The engine's one error type.
//!
//! Every variant names what it concerns — the file and page, the table, the field,
//! the record number — so that a message read in a log or received over the wire is
//! enough to act on. Errors from the storage layer keep their [`std::io::ErrorKind`]
//! distinction that matters to callers: a full disk ([`Error::DiskFull`]) is
//! retryable once space is freed, a failed sync ([`Error::SyncFailed`]) is not, and
//! poisons the file until it is reopened ([`Error::Poisoned`]).

use std::io;
use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error other than a full disk or a failed sync.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A write needed space the disk does not have. Nothing was changed; the write
    /// can be retried once space is freed.
    #[error("disk full while writing {path}; nothing was changed, retry once space is freed")]
    DiskFull {
        /// The file that could not grow.
        path: PathBuf,
    },

    /// `fsync` failed. The kernel may have dropped the unsynced pages, so the file
    /// refuses further writes until it is reopened.
    #[error("sync failed on {path}: {source}; writes are refused until the table is reopened")]
    SyncFailed {
        /// The file whose sync failed.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An earlier sync failure poisoned this file: writes are refused, reads still work.
    #[error("{path}: writes refused after an earlier sync failure; reopen the table")]
    Poisoned {
        /// The poisoned file.
        path: PathBuf,
    },

    /// A page's stored checksum does not match its contents.
    #[error("{path}: checksum mismatch in page {page} (stored {stored:#010x}, computed {computed:#010x}); run `raiz rebuild`")]
    Checksum {
        /// The file holding the page.
        path: PathBuf,
        /// The page number.
        page: u64,
        /// Checksum found in the page.
        stored: u32,
        /// Checksum of the page's bytes.
        computed: u32,
    },

    /// A page passed its checksum but its contents break an invariant.
    #[error("{path}: page {page} is corrupt: {reason}")]
    CorruptPage {
        /// The file holding the page.
        path: PathBuf,
        /// The page number.
        page: u64,
        /// What is wrong.
        reason: String,
    },

    /// The file does not start with raiz's magic bytes.
    #[error("{path}: not a raiz {kind} file (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What kind of file was expected.
        kind: &'static str,
    },

    /// The file was written by an incompatible format version.
    #[error(
        "{path}: format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },

    /// A table or field name is not acceptable.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "table" or "field".
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A schema or table option is not acceptable.
    #[error("table {table}: invalid definition: {reason}")]
    InvalidSchema {
        /// The table being created.
        table: String,
        /// What is wrong.
        reason: String,
    },

    /// `create_table` on a name that exists.
    #[error("table {table} already exists")]
    TableExists {
        /// The table name.
        table: String,
    },

    /// The table does not exist in the rootpath.
    #[error("table {table} does not exist in {root}")]
    TableNotFound {
        /// The table name.
        table: String,
        /// The rootpath searched.
        root: PathBuf,
    },

    /// The table has open handles and cannot be dropped or replaced.
    #[error("table {table} is open ({handles} handle(s)); close it first")]
    TableInUse {
        /// The table name.
        table: String,
        /// Open handles.
        handles: usize,
    },

    /// Another process owns the rootpath.
    #[error(
        "rootpath {path} is in use by process {pid} ({owner}); stop it or open another rootpath"
    )]
    RootpathLocked {
        /// The rootpath.
        path: PathBuf,
        /// The owner's process id, when recorded.
        pid: u32,
        /// The owner's description (host and program).
        owner: String,
    },

    /// A value does not fit its field.
    #[error("table {table}: field {field}: {reason} (value {value})")]
    InvalidValue {
        /// The table.
        table: String,
        /// The field.
        field: String,
        /// The offending value, printed.
        value: String,
        /// What is wrong.
        reason: String,
    },

    /// A record was given with the wrong number of values.
    #[error("table {table}: a record needs {expected} values, {found} given")]
    FieldCount {
        /// The table.
        table: String,
        /// Fields in the schema.
        expected: usize,
        /// Values given.
        found: usize,
    },

    /// No field of that name.
    #[error("table {table}: no field named {field}")]
    NoSuchField {
        /// The table.
        table: String,
        /// The name asked for.
        field: String,
    },

    /// The record number is outside `1..=record_count`.
    #[error("table {table}: record {recno} does not exist (the table has {count} records)")]
    NoSuchRecord {
        /// The table.
        table: String,
        /// The record number asked for.
        recno: u64,
        /// Records in the table.
        count: u64,
    },

    /// A variable-length record larger than the limit.
    #[error("table {table}: record of {len} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// The table.
        table: String,
        /// Encoded size.
        len: usize,
        /// The limit.
        limit: usize,
    },

    /// The handle is not positioned on a record (bof or eof).
    #[error("table {table}: no current record (at {at})")]
    NoCurrentRecord {
        /// The table.
        table: String,
        /// "bof" or "eof".
        at: &'static str,
    },

    /// A stored record or memo could not be decoded.
    #[error("table {table}: record {recno} is corrupt: {reason}")]
    CorruptRecord {
        /// The table.
        table: String,
        /// The record.
        recno: u64,
        /// What is wrong.
        reason: String,
    },

    /// A unique index already holds this key for a live record.
    #[error("table {table}: index {index} already holds key {key} (record {recno})")]
    DuplicateKey {
        /// The table.
        table: String,
        /// The unique index.
        index: String,
        /// The key, printed.
        key: String,
        /// The live record holding it.
        recno: u64,
    },

    /// No index of that name on the table.
    #[error("table {table}: no index named {index}")]
    NoSuchIndex {
        /// The table.
        table: String,
        /// The name asked for.
        index: String,
    },

    /// An index of that name already exists on the table.
    #[error("table {table}: an index named {index} already exists")]
    IndexExists {
        /// The table.
        table: String,
        /// The name.
        index: String,
    },

    /// Another session holds a lock this operation needs and no wait was
    /// asked for (a zero timeout): "not waited".
    #[error("{lock} is locked by {holder_name}")]
    LockConflict {
        /// The lock, described.
        lock: String,
        /// The session holding it.
        holder: u64,
        /// The holder as people know it: `session N`, with its user and
        /// address when the session has a name (a server's sessions do).
        holder_name: String,
    },

    /// Waited for a lock until the timeout and gave up: "waited".
    #[error("{lock} is still locked by {holder_name} after {waited_ms} ms")]
    LockTimeout {
        /// The lock, described.
        lock: String,
        /// The session holding it.
        holder: u64,
        /// The holder as people know it (see [`Error::LockConflict`]).
        holder_name: String,
        /// How long this session waited.
        waited_ms: u64,
    },

    /// Waiting for the lock would close a cycle of sessions waiting for each other.
    #[error(
        "deadlock: waiting for {lock} (held by {holder_name}) would never end; roll back and retry"
    )]
    Deadlock {
        /// The lock asked for.
        lock: String,
        /// A session in the cycle.
        holder: u64,
        /// The holder as people know it (see [`Error::LockConflict`]).
        holder_name: String,
    },

    /// A transaction operation without an open transaction, or a savepoint that
    /// does not exist.
    #[error("transaction error: {0}")]
    Transaction(String),

    /// The operation is not available in this build or on this table.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// The change feed cannot go on (a commit's log sync failed, or nobody
    /// took its changes): cache nodes must reload after the server restarts.
    #[error("the change feed stopped: {reason}")]
    FeedStopped {
        /// Why.
        reason: String,
    },

    /// This database is a cluster member that does not take writes now: it
    /// is a follower, or a leader not yet caught up with its term. Writes go
    /// to the leader (named when known).
    #[error("not the leader: writes go to {}", leader.as_deref().unwrap_or("the leader, once one is elected"))]
    NotLeader {
        /// The leader's client address, when known.
        leader: Option<String>,
    },

    /// The cluster cannot reach a majority of its members: nothing can be
    /// committed until it can.
    #[error("no quorum: {reason}")]
    NoQuorum {
        /// What the member knows.
        reason: String,
    },

    /// The leader changed while this transaction was open or committing: its
    /// locks are gone and, if it was committing, its outcome is not known
    /// here. Look before retrying (the new leader has the answer).
    #[error("failover: {reason}")]
    Failover {
        /// What happened.
        reason: String,
    },

    /// A backup cannot be taken there, or a backup cannot be restored: it is
    /// incomplete, damaged, or the target is not empty.
    #[error("backup {path}: {reason}")]
    Backup {
        /// The backup's directory (or the restore's target).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Maps an I/O error on `path` to the matching variant (a full disk becomes
    /// [`Error::DiskFull`]).
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if is_disk_full(&source) {
            Error::DiskFull { path }
        } else {
            Error::Io { path, source }
        }
    }

    /// True for errors that leave the data intact and may succeed if retried later
    /// (a full disk).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::DiskFull { .. })
    }

    /// True for a cluster member's refusal that says nothing about the data:
    /// not the leader, no quorum, a failover (the outcome of a commit that
    /// got one is unknown here).
    pub fn is_replication(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. } | Error::NoQuorum { .. } | Error::Failover { .. }
        )
    }

    /// True for damage found in a file (a bad checksum, a page or record that
    /// does not decode): `check` reports it and `rebuild` repairs it.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Checksum { .. } | Error::CorruptPage { .. } | Error::CorruptRecord { .. }
        )
    }
}

/// True when `e` means the device has no space left.
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC) | Some(EDQUOT))
}
