//! Connection strings: which raiz an application talks to, and how.

use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Default TCP port of `raiz serve`.
pub const DEFAULT_PORT: u16 = 7070;

/// A parsed connection string.
///
/// | string                                   | mode                                |
/// |------------------------------------------|-------------------------------------|
/// | `file:/data/root`                        | embedded, the rootpath in-process   |
/// | `raiz://user[:password]@host[:7070]`     | a server over TCP                   |
/// | `raizs://user@host[:7070]?ca=/etc/ca.pem`| a server over TCP with TLS          |
/// | `raiz+unix://user@/run/raiz.sock`        | a server over its Unix socket       |
///
/// A password left out of the string comes from [`ConnectOptions::password`] or
/// the `RAIZ_PASSWORD` environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionString {
    /// Embedded: open the rootpath in this process.
    File(PathBuf),
    /// A server over TCP.
    Tcp {
        /// User to authenticate as.
        user: Option<String>,
        /// Password, when given in the string.
        password: Option<String>,
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Use TLS.
        tls: bool,
        /// CA certificate (PEM) to trust, from `?ca=`.
        ca: Option<PathBuf>,
    },
    /// A cache node in this process, in front of a server: `raiz+cache://`
    /// with the server's address and `?tables=a,b` (and optionally
    /// `&dir=/path` to keep the copy across restarts, `&stale=SECS`, `&tls=1`
    /// and `&ca=PATH` for a TLS server). With a cluster's members
    /// (`raiz+cache://ana@db1,db2,db3?tables=…`) the node follows the
    /// leader, or with `&read=any` the first member that answers, and moves
    /// to another member when that one goes, keeping its copy (see
    /// `raiz_engine::feed`).
    Cache {
        /// The server.
        server: Box<ConnectionString>,
        /// The tables to cache.
        tables: Vec<String>,
        /// Where the node keeps its copy.
        dir: Option<PathBuf>,
        /// Staleness limit in milliseconds.
        stale_ms: Option<u64>,
    },
    /// The members of a cluster (`raiz://user@db1:7070,db2:7070,db3:7070`):
    /// the session goes to the member that takes writes, and moves to the
    /// new one after a failover (see [`crate::Session`]). With `?read=any`
    /// it stays on the first member that answers, leader or not: reads there
    /// may be behind the leader by what the member has not yet applied, and
    /// writes get `NotLeader`.
    Members {
        /// User to authenticate as.
        user: Option<String>,
        /// Password, when given in the string.
        password: Option<String>,
        /// The members' client addresses, in the order given.
        hosts: Vec<(String, u16)>,
        /// Use TLS.
        tls: bool,
        /// CA certificate (PEM) to trust, from `?ca=`.
        ca: Option<PathBuf>,
        /// `?read=any`: any member will do.
        read_any: bool,
    },
    /// A server over a Unix socket.
    Unix {
        /// User to authenticate as.
        user: Option<String>,
        /// Password, when given in the string.
        password: Option<String>,
        /// The socket.
        path: PathBuf,
    },
}

impl std::fmt::Display for ConnectionString {
    /// The string without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |u: &Option<String>| u.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        match self {
            ConnectionString::File(p) => write!(f, "file:{}", p.display()),
            ConnectionString::Tcp {
                user,
                host,
                port,
                tls,
                ..
            } => write!(
                f,
                "{}://{}{host}:{port}",
                if *tls { "raizs" } else { "raiz" },
                at(user)
            ),
            ConnectionString::Unix { user, path, .. } => {
                write!(f, "raiz+unix://{}{}", at(user), path.display())
            }
            ConnectionString::Members {
                user, hosts, tls, ..
            } => {
                let list: Vec<String> = hosts
                    .iter()
                    .map(|(h, p)| {
                        if h.contains(':') {
                            format!("[{h}]:{p}")
                        } else {
                            format!("{h}:{p}")
                        }
                    })
                    .collect();
                write!(
                    f,
                    "{}://{}{}",
                    if *tls { "raizs" } else { "raiz" },
                    at(user),
                    list.join(",")
                )
            }
            ConnectionString::Cache {
                server,
                tables,
                dir,
                ..
            } => {
                write!(f, "cache of {server} ({})", tables.join(","))?;
                if let Some(d) = dir {
                    write!(f, " in {}", d.display())?;
                }
                Ok(())
            }
        }
    }
}

/// Settings a connection string does not carry.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Password (else the string's, else `RAIZ_PASSWORD`).
    pub password: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate, for TLS.
    pub ca_file: Option<PathBuf>,
    /// Name to verify in the server's certificate (default: the host).
    pub server_name: Option<String>,
    /// Largest frame accepted from the server.
    pub max_frame: Option<u32>,
    /// What this client calls itself (shown by `raiz monitor`).
    pub client_name: Option<String>,
    /// On a cluster connection string: how long to wait for a member that
    /// takes writes, at connect and after a failover (default 15 s).
    pub failover_wait: Option<std::time::Duration>,
}

fn split_user(
    s: &str,
    rest: &str,
    bad: &dyn Fn(&'static str) -> Error,
) -> Result<(Option<String>, Option<String>, String), Error> {
    let _ = s;
    match rest.rsplit_once('@') {
        Some((u, h)) => {
            let (user, pass) = match u.split_once(':') {
                Some((u, p)) => (u, Some(p.to_owned())),
                None => (u, None),
            };
            if user.is_empty() {
                return Err(bad("empty user name before @"));
            }
            Ok((Some(user.to_owned()), pass, h.to_owned()))
        }
        None => Ok((None, None, rest.to_owned())),
    }
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
        if let Some(rest) = s.strip_prefix("raiz+cache://") {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (mut tables, mut dir, mut stale_ms, mut tls, mut ca) =
                (Vec::new(), None, None, false, None);
            let mut read = None;
            for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                match kv.split_once('=') {
                    Some(("tables", v)) => {
                        tables = v
                            .split(',')
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect()
                    }
                    Some(("dir", v)) if !v.is_empty() => dir = Some(PathBuf::from(v)),
                    Some(("stale", v)) => {
                        stale_ms = Some(
                            v.parse::<f64>()
                                .ok()
                                .filter(|s| *s > 0.0 && s.is_finite())
                                .map(|s| (s * 1000.0).round().max(1.0) as u64)
                                .ok_or_else(|| bad("stale= takes a positive number of seconds"))?,
                        )
                    }
                    Some(("tls", "1" | "true")) => tls = true,
                    Some(("ca", v)) if !v.is_empty() => ca = Some(v.to_owned()),
                    Some(("read", v @ ("any" | "leader"))) => read = Some(v),
                    _ => return Err(bad(
                        "unknown parameter (raiz+cache:// takes tables=, dir=, stale=, tls=, ca=, read=)",
                    )),
                }
            }
            if tables.is_empty() {
                return Err(bad("raiz+cache:// needs ?tables=a,b"));
            }
            let mut query: Vec<String> = Vec::new();
            query.extend(ca.as_ref().map(|ca| format!("ca={ca}")));
            query.extend(read.map(|r| format!("read={r}")));
            let scheme = if tls || ca.is_some() { "raizs" } else { "raiz" };
            let server = if query.is_empty() {
                format!("{scheme}://{rest}")
            } else {
                format!("{scheme}://{rest}?{}", query.join("&"))
            };
            let server: ConnectionString = server.parse().map_err(|_| bad("bad server address"))?;
            return Ok(ConnectionString::Cache {
                server: Box::new(server),
                tables,
                dir,
                stale_ms,
            });
        }
        if let Some(rest) = s.strip_prefix("raiz+unix://") {
            let (user, password, path) = split_user(s, rest, &bad)?;
            if !path.starts_with('/') {
                return Err(bad("raiz+unix:// needs an absolute socket path"));
            }
            return Ok(ConnectionString::Unix {
                user,
                password,
                path: PathBuf::from(path),
            });
        }
        let (rest, tls) = if let Some(r) = s.strip_prefix("raizs://") {
            (r, true)
        } else if let Some(r) = s.strip_prefix("raiz://") {
            (r, false)
        } else {
            return Err(bad(
                "expected file:, raiz://, raizs://, raiz+unix:// or raiz+cache://",
            ));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut ca = None;
        let mut read_any = false;
        for kv in query.into_iter().flat_map(|q| q.split('&')) {
            match kv.split_once('=') {
                Some(("ca", v)) if !v.is_empty() => ca = Some(PathBuf::from(v)),
                Some(("read", "any")) => read_any = true,
                Some(("read", "leader")) => read_any = false,
                _ => {
                    return Err(bad(
                        "unknown parameter (?ca=PATH and, with several hosts, ?read=leader|any are known)",
                    ))
                }
            }
        }
        let (user, password, hostport) = split_user(s, rest, &bad)?;
        let hostport = hostport.trim_end_matches('/');
        let mut hosts = Vec::new();
        for one in hostport.split(',') {
            hosts.push(host_port(one, &bad)?);
        }
        if hosts.len() == 1 && !read_any {
            let (host, port) = hosts.pop().expect("one");
            return Ok(ConnectionString::Tcp {
                user,
                password,
                host,
                port,
                tls,
                ca,
            });
        }
        Ok(ConnectionString::Members {
            user,
            password,
            hosts,
            tls,
            ca,
            read_any,
        })
    }
}

/// One `host[:port]` (an IPv6 address in brackets).
fn host_port(hostport: &str, bad: &dyn Fn(&'static str) -> Error) -> Result<(String, u16), Error> {
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
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(user: Option<&str>, host: &str, port: u16) -> ConnectionString {
        ConnectionString::Tcp {
            user: user.map(Into::into),
            password: None,
            host: host.into(),
            port,
            tls: false,
            ca: None,
        }
    }

    #[test]
    fn parses_every_mode() {
        let p = |s: &str| s.parse::<ConnectionString>().unwrap();
        assert_eq!(
            p("file:/data/root"),
            ConnectionString::File("/data/root".into())
        );
        assert_eq!(
            p("file:///data/root"),
            ConnectionString::File("/data/root".into())
        );
        assert_eq!(p("raiz://h"), tcp(None, "h", DEFAULT_PORT));
        assert_eq!(p("raiz://u@[::1]:9000"), tcp(Some("u"), "::1", 9000));
        assert_eq!(
            p("raizs://u:pw@db1:7071?ca=/etc/raiz/ca.pem"),
            ConnectionString::Tcp {
                user: Some("u".into()),
                password: Some("pw".into()),
                host: "db1".into(),
                port: 7071,
                tls: true,
                ca: Some("/etc/raiz/ca.pem".into()),
            }
        );
        assert_eq!(
            p("raiz+unix:///run/raiz.sock"),
            ConnectionString::Unix {
                user: None,
                password: None,
                path: "/run/raiz.sock".into()
            }
        );
        assert_eq!(
            p("raiz+unix://ana@/run/raiz.sock"),
            ConnectionString::Unix {
                user: Some("ana".into()),
                password: None,
                path: "/run/raiz.sock".into()
            }
        );
    }

    #[test]
    fn parses_cache_strings() {
        let c: ConnectionString =
            "raiz+cache://ana:pw@db1:7070?tables=sx3,sx2&dir=/var/cache/raiz&stale=2.5"
                .parse()
                .unwrap();
        let ConnectionString::Cache {
            server,
            tables,
            dir,
            stale_ms,
        } = c
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            *server,
            ConnectionString::Tcp {
                user: Some("ana".into()),
                password: Some("pw".into()),
                host: "db1".into(),
                port: 7070,
                tls: false,
                ca: None
            }
        );
        assert_eq!(tables, ["sx3", "sx2"]);
        assert_eq!(dir, Some("/var/cache/raiz".into()));
        assert_eq!(stale_ms, Some(2500));
        // A cluster's members, any of them.
        let c: ConnectionString = "raiz+cache://ana@db1:7070,db2:7070?tables=a&read=any"
            .parse()
            .unwrap();
        let ConnectionString::Cache { server, .. } = c else {
            panic!("{c:?}")
        };
        assert!(
            matches!(*server, ConnectionString::Members { read_any: true, ref hosts, .. } if hosts.len() == 2),
            "{server:?}"
        );
        for bad in [
            "raiz+cache://db1",
            "raiz+cache://db1?tables=",
            "raiz+cache://db1?tables=a&stale=0",
            "raiz+cache://db1?tables=a&what=1",
            "raiz+cache://db1,db2?tables=a&read=some",
            "raiz+cache://db1,?tables=a&read=any",
        ] {
            assert!(bad.parse::<ConnectionString>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_cluster_strings() {
        let c: ConnectionString = "raiz://ana@db1:7070,db2,[::1]:7072?read=any"
            .parse()
            .unwrap();
        assert_eq!(
            c,
            ConnectionString::Members {
                user: Some("ana".into()),
                password: None,
                hosts: vec![
                    ("db1".into(), 7070),
                    ("db2".into(), DEFAULT_PORT),
                    ("::1".into(), 7072)
                ],
                tls: false,
                ca: None,
                read_any: true,
            }
        );
        assert_eq!(c.to_string(), "raiz://ana@db1:7070,db2:7070,[::1]:7072");
        for bad in ["raiz://a,,b", "raiz://a,b:0", "raiz://a,b?read=some"] {
            assert!(bad.parse::<ConnectionString>().is_err(), "{bad}");
        }
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
            "raiz://h?x=1",
        ] {
            assert!(bad.parse::<ConnectionString>().is_err(), "{bad}");
        }
    }
}
