//! Errors of the cluster crate: each names the file it concerns.

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or syncing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the log is damaged where no crash could have left it so
    /// (a record before the last sync point, a segment header, the meta
    /// file): the member must be restored from another member or a backup.
    #[error("{path}: damaged at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An append that would leave a hole in the log, or a read, cut or purge
    /// of an index the log cannot have.
    #[error("log index {index}: {reason}")]
    Index {
        /// The index asked for.
        index: u64,
        /// Why it is refused.
        reason: String,
    },
    /// The member's database refused.
    #[error(transparent)]
    Engine(#[from] raiz_engine::Error),
    /// The member's settings do not make a member.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The Raft listener could not be opened.
    #[error("cannot listen for the other members on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// openraft could not start or stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// An entry larger than the log takes.
    #[error("a log entry of {len} bytes is larger than the {max} bytes an entry may have")]
    TooLarge {
        /// The entry's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
