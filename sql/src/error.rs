//! The SQL layer's errors.

/// What can go wrong running SQL over raiz tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused the statement (syntax, a missing column, a type error)
    /// or failed running it.
    #[error("{0}")]
    Sql(String),
    /// The engine failed reading a table.
    #[error(transparent)]
    Engine(#[from] raiz_engine::Error),
    /// A statement that would change data or the connection's setup.
    #[error("raiz SQL is read-only: {0} (writes go through the ISAM API)")]
    ReadOnly(String),
    /// The user may not read the table (or it does not exist).
    #[error("no such table, or no permission to read it: {0}")]
    NoTable(String),
    /// The result is larger than the session's limit.
    #[error(
        "the result exceeds {limit_mb} MiB; narrow the query (WHERE, LIMIT) or raise the limit"
    )]
    TooLarge {
        /// The limit, in MiB.
        limit_mb: u64,
    },
    /// The statement was cancelled (by the client, or its time ran out).
    #[error("the statement was cancelled")]
    Cancelled,
}

/// Results of the SQL layer.
pub type Result<T> = std::result::Result<T, Error>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::OperationInterrupted {
                return Error::Cancelled;
            }
        }
        if let rusqlite::Error::MultipleStatement = e {
            return Error::Sql("one statement at a time, please".into());
        }
        Error::Sql(e.to_string())
    }
}
