//! The command's error type and its exit codes.
//!
//! | code | meaning                                                        |
//! |------|----------------------------------------------------------------|
//! | 0    | success                                                        |
//! | 2    | usage: a bad flag, argument, shell command or schema text      |
//! | 3    | data: bad input rows, a failed check, a refused write, a missing table |
//! | 4    | I/O or connection: a file that cannot be read or written, a server that cannot be reached |

use std::process::ExitCode;

use raiz_client::ErrorKind;

/// What the `raiz` command reports when it fails; the variant chooses the
/// exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line (or a shell command) is not what the command takes.
    #[error("{0}")]
    Usage(String),
    /// The data is wrong: bad input, a failed check, a refused write.
    #[error("{0}")]
    Data(String),
    /// A file or a connection failed.
    #[error("{0}")]
    Io(String),
    /// Failures already told to the user (a script's failed commands): only
    /// the exit code is left to give.
    #[error("")]
    Reported(u8),
}

impl CliError {
    /// The process exit code of this error.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Data(_) => 3,
            CliError::Io(_) => 4,
            CliError::Reported(code) => *code,
        }
    }

    /// The exit code as an [`ExitCode`].
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// An I/O error about `what` (a path, usually).
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> CliError {
        CliError::Io(format!("{what}: {e}"))
    }
}

/// True for the kinds that mean a file, disk or connection failed rather
/// than the data or the request.
pub fn is_io_kind(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Io
            | ErrorKind::DiskFull
            | ErrorKind::SyncFailed
            | ErrorKind::Poisoned
            | ErrorKind::RootpathLocked
            | ErrorKind::Auth
            | ErrorKind::Protocol
            | ErrorKind::Closed
            | ErrorKind::Busy
    )
}

impl From<raiz_client::Error> for CliError {
    fn from(e: raiz_client::Error) -> CliError {
        let kind = e.kind();
        if matches!(e, raiz_client::Error::InvalidConnectionString { .. }) {
            CliError::Usage(e.to_string())
        } else if is_io_kind(kind) {
            CliError::Io(e.to_string())
        } else {
            CliError::Data(e.to_string())
        }
    }
}

impl From<raiz_engine::Error> for CliError {
    fn from(e: raiz_engine::Error) -> CliError {
        CliError::from(raiz_client::Error::Engine(e))
    }
}

impl From<raiz_server::Error> for CliError {
    fn from(e: raiz_server::Error) -> CliError {
        use raiz_server::Error as E;
        match e {
            E::Engine(e) => e.into(),
            e @ (E::Read { .. } | E::Write { .. } | E::Listen { .. } | E::Tls(_)) => {
                CliError::Io(e.to_string())
            }
            E::Invalid { .. } => CliError::Usage(e.to_string()),
            e => CliError::Data(e.to_string()),
        }
    }
}

/// Results of the command.
pub type CliResult<T = ()> = Result<T, CliError>;
