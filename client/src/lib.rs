//! # raiz-client
//!
//! The Session / Table API an application writes once and runs in every mode,
//! chosen by a connection string:
//!
//! | string                             | mode                                       |
//! |------------------------------------|--------------------------------------------|
//! | `file:/data/root`                  | embedded, opening the rootpath in-process  |
//! | `raiz://user@host:7070`            | a `raiz serve` over TCP                    |
//! | `raizs://user@host:7070?ca=ca.pem` | a `raiz serve` over TCP with TLS           |
//! | `raiz+unix://user@/run/raiz.sock`  | a `raiz serve` over its Unix socket        |
//!
//! Embedded, every call goes straight to [`raiz_engine`]. Remote, each
//! [`Session`] is one authenticated connection to the server (its locks and
//! transaction live exactly as long as the connection), and each call is a
//! request in the [`proto`] wire protocol; errors keep their [`ErrorKind`], so
//! an application matches `err.kind()` the same way in both modes. Navigation
//! reads ahead (see [`Table`]), range iterators fetch growing batches and
//! [`Table::batch`] reads, deletes or updates a whole key range in one request;
//! [`Session::round_trips`] counts what that saves.
//!
//! ```
//! use raiz_client::ConnectionString;
//! let c: ConnectionString = "raiz://ana@db1:7070".parse().unwrap();
//! assert!(matches!(c, ConnectionString::Tcp { port: 7070, tls: false, .. }));
//! ```

pub mod batch;
mod error;
pub mod proto;
mod remote;
mod session;
mod table;
mod url;

pub use error::{Error, ErrorKind, Result};
pub use proto::{BatchAction, BatchOutcome, BatchRequest, Permissions, Rights, SessionInfo};
pub use session::{Connection, Retry, Savepoint, Session};
pub use table::{RangeIter, Table, MAX_READ_AHEAD};
pub use url::{ConnectOptions, ConnectionString, DEFAULT_PORT};
