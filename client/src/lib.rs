//! # raiz-client
//!
//! How an application names the raiz it talks to. A connection string selects the
//! mode, so the same application code runs embedded or against a server:
//!
//! | string                         | mode                                         |
//! |--------------------------------|----------------------------------------------|
//! | `file:/data/root`              | embedded, opening the rootpath in-process    |
//! | `raiz://user@host:7070`        | a `raiz serve` over TCP                      |
//! | `raiz+unix:///run/raiz.sock`   | a `raiz serve` over its Unix socket          |
//!
//! This build opens embedded connections; the network modes are parsed and
//! validated, and [`Connection::open`] reports them as not available yet.
//!
//! ```
//! use raiz_client::ConnectionString;
//! let c: ConnectionString = "raiz://ana@db1:7070".parse().unwrap();
//! assert_eq!(c, ConnectionString::Tcp { user: Some("ana".into()), host: "db1".into(), port: 7070 });
//! ```

use std::path::PathBuf;
use std::str::FromStr;

use raiz_engine::Database;

/// Default TCP port of `raiz serve`.
pub const DEFAULT_PORT: u16 = 7070;

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
    /// The mode is not available in this build.
    #[error("{0} connections are not available in this build")]
    Unavailable(&'static str),
    /// The engine refused.
    #[error(transparent)]
    Engine(#[from] raiz_engine::Error),
}

/// A parsed connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionString {
    /// Embedded: open the rootpath in this process.
    File(PathBuf),
    /// A server over TCP.
    Tcp {
        /// User to authenticate as.
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A server over a Unix socket.
    Unix(PathBuf),
}

impl FromStr for ConnectionString {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidConnectionString {
            input: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("file:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("file: needs a rootpath"));
            }
            return Ok(ConnectionString::File(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("raiz+unix://") {
            if !path.starts_with('/') {
                return Err(bad("raiz+unix:// needs an absolute socket path"));
            }
            return Ok(ConnectionString::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("raiz://") {
            let (user, hostport) = match rest.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
                Some(_) => return Err(bad("empty user name before @")),
                None => (None, rest),
            };
            let hostport = hostport.trim_end_matches('/');
            let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("unclosed [ in IPv6 address"))?;
                (h, after.strip_prefix(':'))
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (hostport, None),
                }
            };
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            let port = match port {
                Some(p) => p
                    .parse()
                    .map_err(|_| bad("port is not a number in 1..=65535"))?,
                None => DEFAULT_PORT,
            };
            if port == 0 {
                return Err(bad("port is not a number in 1..=65535"));
            }
            return Ok(ConnectionString::Tcp {
                user,
                host: host.to_owned(),
                port,
            });
        }
        Err(bad("expected file:, raiz:// or raiz+unix://"))
    }
}

/// An open connection.
#[derive(Debug, Clone)]
pub enum Connection {
    /// An embedded database.
    Embedded(Database),
}

impl Connection {
    /// Opens what `conn` names.
    pub fn open(conn: &ConnectionString) -> Result<Connection, Error> {
        match conn {
            ConnectionString::File(root) => Ok(Connection::Embedded(Database::open(root)?)),
            ConnectionString::Tcp { .. } => Err(Error::Unavailable("TCP")),
            ConnectionString::Unix(_) => Err(Error::Unavailable("Unix socket")),
        }
    }

    /// The embedded database behind this connection.
    pub fn database(&self) -> &Database {
        match self {
            Connection::Embedded(db) => db,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode() {
        assert_eq!(
            "file:/data/root".parse::<ConnectionString>().unwrap(),
            ConnectionString::File("/data/root".into())
        );
        assert_eq!(
            "file:///data/root".parse::<ConnectionString>().unwrap(),
            ConnectionString::File("/data/root".into())
        );
        assert_eq!(
            "raiz://h".parse::<ConnectionString>().unwrap(),
            ConnectionString::Tcp {
                user: None,
                host: "h".into(),
                port: DEFAULT_PORT
            }
        );
        assert_eq!(
            "raiz://u@[::1]:9000".parse::<ConnectionString>().unwrap(),
            ConnectionString::Tcp {
                user: Some("u".into()),
                host: "::1".into(),
                port: 9000
            }
        );
        assert_eq!(
            "raiz+unix:///run/raiz.sock"
                .parse::<ConnectionString>()
                .unwrap(),
            ConnectionString::Unix("/run/raiz.sock".into())
        );
    }

    #[test]
    fn refuses_malformed_strings() {
        for bad in [
            "",
            "file:",
            "http://x",
            "raiz://",
            "raiz://h:0",
            "raiz://h:99999",
            "raiz://@h",
            "raiz+unix://rel",
            "raiz://[::1",
        ] {
            assert!(bad.parse::<ConnectionString>().is_err(), "{bad}");
        }
    }

    #[test]
    fn opens_embedded_and_refuses_network_modes_clearly() {
        let dir = tempfile_dir();
        let c = Connection::open(&ConnectionString::File(dir.clone())).unwrap();
        assert!(c.database().list_tables().unwrap().is_empty());
        let e = Connection::open(&"raiz://h".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("TCP"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("raiz-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
