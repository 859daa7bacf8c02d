//! `raiz.toml`: the settings of a rootpath's owner, a cache node and the
//! `raiz` command. Every `raiz` subcommand reads it (`--config`); environment
//! variables override the file, and command-line flags override both.
//!
//! ```toml
//! [general]
//! root = "/data/erp"         # the rootpath
//! pool_mb = 256              # buffer pool
//! checkpoint_mb = 64         # the log: checkpoint once it grew this much
//! checkpoint_secs = 300      # … or this long after the last one
//! sync_delay_ms = 1000       # delayed-durability commits are synced within this
//!
//! [server]
//! listen = "0.0.0.0:7070"
//! unix = "/run/raiz.sock"
//! tls_cert = "/etc/raiz/server.pem"
//! tls_key = "/etc/raiz/server.key"
//! allow_plaintext = false
//! metrics_listen = "127.0.0.1:9470"   # /healthz, /readyz, /metrics
//! sql_listen = "0.0.0.0:5432"         # read-only SQL for psql and BI tools
//! idle_secs = 1800
//! frame_secs = 30
//! max_frame_mb = 72
//! max_connections = 4096
//! max_unauthenticated = 512
//! max_unauthenticated_per_address = 64
//! frame_budget_mb = 512
//! lock_idle_secs = 60
//! window_mb = 64             # recent changes kept for cache nodes
//!
//! [cache]                    # raiz cache
//! server = "raiz://node@db1:7070"
//! tables = ["sx3", "sx2"]    # or "sx3,sx2"
//! dir = "/var/cache/raiz"
//! stale_secs = 5
//! pool_mb = 1024
//! metrics_listen = "127.0.0.1:9471"
//! listen = ["unix:/run/raiz-node.sock"]   # bound clients
//!
//! [log]
//! level = "info"             # error, warn, info, debug, trace, or a filter such as "raiz=debug"
//! format = "text"            # or "json"
//! ```
//!
//! Invariants:
//! - **One table of settings** ([`SETTINGS`]) says, for every key, its
//!   section, type and range; the file, the environment and `--set` are all
//!   checked against it, so a key means the same wherever it comes from.
//! - **Every mistake is reported**, not only the first: unknown sections and
//!   keys, wrong types, values out of range, a key set twice — each with its
//!   line (`raiz config check`).
//! - **Backward compatible**: the keys of `[general]` and `[server]` are
//!   still accepted at the top level, as files written before the sections
//!   had them (`root = …`, `listen = …`); a key set both ways is a mistake.
//! - **Environment**: `RAIZ_<SECTION>_<KEY>` (upper case), e.g.
//!   `RAIZ_GENERAL_ROOT`, `RAIZ_SERVER_MAX_CONNECTIONS`, `RAIZ_CACHE_TABLES`
//!   (commas), `RAIZ_LOG_LEVEL`; `RAIZ_LOG` is kept as an older name of
//!   `RAIZ_LOG_LEVEL`. Other `RAIZ_` variables are left alone.

use std::path::{Path, PathBuf};

use crate::Error;

/// Settings of a rootpath's owner (`raiz serve`, or any `raiz` subcommand),
/// of a cache node (`raiz cache`) and of the command's logs.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Config {
    /// The rootpath.
    pub root: Option<PathBuf>,
    /// TCP address to listen on.
    pub listen: Option<String>,
    /// Unix socket path.
    pub unix: Option<PathBuf>,
    /// Buffer pool budget in MiB.
    pub pool_mb: Option<u64>,
    /// Log size (MiB) that triggers a checkpoint.
    pub checkpoint_mb: Option<u64>,
    /// Seconds after which a checkpoint runs anyway.
    pub checkpoint_secs: Option<u64>,
    /// Delay (ms) within which delayed-durability commits are synced.
    pub sync_delay_ms: Option<u64>,
    /// TLS certificate chain (PEM) of `raiz serve`.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Seconds without a request after which a session is ended.
    pub idle_secs: Option<u64>,
    /// Seconds a peer has to complete a frame it started (and the handshake).
    pub frame_secs: Option<u64>,
    /// Largest request frame accepted, in MiB.
    pub max_frame_mb: Option<u64>,
    /// Connections served at once, logged in or not (default 4096); the
    /// excess is answered with a `Busy` status and closed.
    pub max_connections: Option<u64>,
    /// Connections that have not logged in yet, in total (default 512).
    pub max_unauthenticated: Option<u64>,
    /// Connections that have not logged in yet, per peer address (default 64).
    pub max_unauthenticated_per_address: Option<u64>,
    /// Request frames buffered (read, queued, not yet executed) across all
    /// connections, in MiB (default 512; at least `max_frame_mb`).
    pub frame_budget_mb: Option<u64>,
    /// A session holding locks others wait for, idle this many seconds, is
    /// ended (default 60).
    pub lock_idle_secs: Option<u64>,
    /// Accept connections without TLS from other machines (default: only
    /// loopback and the Unix socket may skip TLS once a certificate is set;
    /// without a certificate every address is served in the clear).
    pub allow_plaintext: Option<bool>,
    /// Bytes of recent changes kept in memory for cache nodes to catch up
    /// from, in MiB (default 64).
    pub window_mb: Option<u64>,
    /// Where the server serves `/healthz`, `/readyz` and `/metrics`.
    pub metrics_listen: Option<String>,
    /// Where the server serves SQL over the PostgreSQL protocol.
    pub sql_listen: Option<String>,
    /// `[cache] server`: the server a cache node follows.
    pub cache_server: Option<String>,
    /// `[cache] tables`: the tables it caches.
    pub cache_tables: Option<Vec<String>>,
    /// `[cache] dir`: where it keeps its copy and status.
    pub cache_dir: Option<PathBuf>,
    /// `[cache] stale_secs`: reads are refused once the server has been
    /// silent this long.
    pub cache_stale_secs: Option<f64>,
    /// `[cache] pool_mb`: the buffer pool of its copy.
    pub cache_pool_mb: Option<u64>,
    /// `[cache] metrics_listen`: where a node serves its health and metrics.
    pub cache_metrics_listen: Option<String>,
    /// `[cache] listen`: where a node serves bound clients (`unix:PATH`, or
    /// a loopback `host:port`).
    pub cache_listen: Option<Vec<String>>,
    /// `raiz serve --cluster`: run as a member of the group `[cluster]`
    /// describes (a flag, not a setting of the file).
    pub cluster: bool,
    /// `[cluster] id`: this member's id (`raiz serve --cluster`).
    pub cluster_id: Option<u64>,
    /// `[cluster] members`: every member, each `ID RAFT_ADDRESS
    /// CLIENT_ADDRESS`.
    pub cluster_members: Option<Vec<String>>,
    /// `[cluster] listen`: where this member listens for the others (default:
    /// its own Raft address in `members`).
    pub cluster_listen: Option<String>,
    /// `[cluster] secret_file`: a file holding the secret the members share.
    pub cluster_secret_file: Option<PathBuf>,
    /// `[cluster] log_dir`: the member's Raft log (default ROOT/raft).
    pub cluster_log_dir: Option<PathBuf>,
    /// `[cluster] join`: a member joining a running group waits to be added
    /// (`raiz cluster add`) instead of forming a group.
    pub cluster_join: Option<bool>,
    /// `[cluster] snapshot_every`: build a snapshot after this many entries
    /// (0: never).
    pub cluster_snapshot_every: Option<u64>,
    /// `[cluster] keep_after_snapshot`: entries a snapshot covers kept in
    /// the log anyway.
    pub cluster_keep_after_snapshot: Option<u64>,
    /// `[log] level`: a level or a filter (`info`, `raiz=debug`).
    pub log_level: Option<String>,
    /// `[log] format`: `text` or `json`.
    pub log_format: Option<String>,
}

/// The type (and range) of a setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A file or directory path.
    Path,
    /// A `host:port` address (port 0 picks a free one).
    Address,
    /// A connection string (`raiz://user@host:port`, …).
    Url,
    /// A whole number in `min..=max`.
    Int {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A number greater than 0 and at most `max`.
    Seconds {
        /// Largest allowed.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// Names: a TOML array of strings or one string separated by commas.
    Names,
    /// Cluster members, as [`Kind::Names`]: each `ID RAFT CLIENT`.
    Members,
    /// Listen addresses, as [`Kind::Names`]: each `unix:PATH` or `host:port`.
    Listeners,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A log level or filter.
    LogFilter,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Path => "a path (text)".into(),
            Kind::Address => "an address host:port (text)".into(),
            Kind::Url => "a connection string (text)".into(),
            Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Seconds { max } => format!("a number of seconds above 0, at most {max}"),
            Kind::Bool => "true or false".into(),
            Kind::Names => "a list of names (an array of text, or text with commas)".into(),
            Kind::Members => {
                "a list of members, each \"ID RAFT_HOST:PORT CLIENT_HOST:PORT\" (an array of text, or text with commas)"
                    .into()
            }
            Kind::Listeners => {
                "a list of addresses, each unix:PATH or host:port (an array of text, or text with commas)"
                    .into()
            }
            Kind::Choice(words) => format!("one of {}", words.join(", ")),
            Kind::LogFilter => {
                "a log level (error, warn, info, debug, trace, off) or a filter such as raiz=debug"
                    .into()
            }
        }
    }
}

/// One setting: where it lives and what it takes.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its section (`general`, `server`, `cache`, `log`).
    pub section: &'static str,
    /// Its key.
    pub key: &'static str,
    /// Accepted at the top level too (files from before the sections).
    pub flat: bool,
    /// Its type.
    pub kind: Kind,
    /// What it does.
    pub help: &'static str,
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}

const DAY: u64 = 86_400;

/// Every setting, by section.
pub const SETTINGS: &[Setting] = &[
    s("general", "root", true, Kind::Path, "the rootpath"),
    s(
        "general",
        "pool_mb",
        true,
        int(1, 1 << 20),
        "buffer pool, MiB",
    ),
    s(
        "general",
        "checkpoint_mb",
        true,
        int(1, 1 << 20),
        "log size that triggers a checkpoint, MiB",
    ),
    s(
        "general",
        "checkpoint_secs",
        true,
        int(1, 7 * DAY),
        "a checkpoint runs at least this often, s",
    ),
    s(
        "general",
        "sync_delay_ms",
        true,
        int(1, 60_000),
        "delayed-durability commits are synced within this, ms",
    ),
    s(
        "server",
        "listen",
        true,
        Kind::Address,
        "TCP address to serve",
    ),
    s("server", "unix", true, Kind::Path, "Unix socket to serve"),
    s(
        "server",
        "tls_cert",
        true,
        Kind::Path,
        "TLS certificate chain (PEM)",
    ),
    s(
        "server",
        "tls_key",
        true,
        Kind::Path,
        "TLS private key (PEM)",
    ),
    s(
        "server",
        "allow_plaintext",
        true,
        Kind::Bool,
        "serve other machines without TLS though a certificate is set",
    ),
    s(
        "server",
        "metrics_listen",
        true,
        Kind::Address,
        "address of /healthz, /readyz and /metrics",
    ),
    s(
        "server",
        "sql_listen",
        true,
        Kind::Address,
        "address of SQL over the PostgreSQL protocol (psql, BI tools)",
    ),
    s(
        "server",
        "idle_secs",
        true,
        int(1, 365 * DAY),
        "end sessions idle this long, s",
    ),
    s(
        "server",
        "frame_secs",
        true,
        int(1, 3600),
        "time to finish a frame or the handshake, s",
    ),
    s(
        "server",
        "max_frame_mb",
        true,
        int(1, 4095),
        "largest request frame, MiB",
    ),
    s(
        "server",
        "max_connections",
        true,
        int(1, 1 << 20),
        "connections at once",
    ),
    s(
        "server",
        "max_unauthenticated",
        true,
        int(1, 1 << 20),
        "connections not logged in yet",
    ),
    s(
        "server",
        "max_unauthenticated_per_address",
        true,
        int(1, 1 << 20),
        "… per peer address",
    ),
    s(
        "server",
        "frame_budget_mb",
        true,
        int(1, 1 << 20),
        "request frames buffered, all connections, MiB",
    ),
    s(
        "server",
        "lock_idle_secs",
        true,
        int(1, 365 * DAY),
        "end idle holders of awaited locks after this, s",
    ),
    s(
        "server",
        "window_mb",
        true,
        int(1, 1 << 20),
        "recent changes kept for cache nodes, MiB",
    ),
    s(
        "cache",
        "server",
        false,
        Kind::Url,
        "the server a cache node follows",
    ),
    s(
        "cache",
        "tables",
        false,
        Kind::Names,
        "the tables it caches",
    ),
    s(
        "cache",
        "dir",
        false,
        Kind::Path,
        "where it keeps its copy (dbCache) and status",
    ),
    s(
        "cache",
        "stale_secs",
        false,
        Kind::Seconds { max: 86_400.0 },
        "refuse reads once the server is silent this long, s",
    ),
    s(
        "cache",
        "pool_mb",
        false,
        int(1, 1 << 20),
        "buffer pool of the copy, MiB",
    ),
    s(
        "cache",
        "metrics_listen",
        false,
        Kind::Address,
        "address of the node's /healthz, /readyz and /metrics",
    ),
    s(
        "cache",
        "listen",
        false,
        Kind::Listeners,
        "where bound clients connect: unix:PATH or a loopback host:port",
    ),
    s(
        "cluster",
        "id",
        false,
        int(1, 1 << 32),
        "this member's id (raiz serve --cluster)",
    ),
    s(
        "cluster",
        "members",
        false,
        Kind::Members,
        "every member: \"ID RAFT_HOST:PORT CLIENT_HOST:PORT\"",
    ),
    s(
        "cluster",
        "listen",
        false,
        Kind::Address,
        "where this member listens for the others (default: its Raft address)",
    ),
    s(
        "cluster",
        "secret_file",
        false,
        Kind::Path,
        "a file with the secret the members share",
    ),
    s(
        "cluster",
        "log_dir",
        false,
        Kind::Path,
        "the member's Raft log (default ROOT/raft)",
    ),
    s(
        "cluster",
        "join",
        false,
        Kind::Bool,
        "join a running group: wait to be added (raiz cluster add)",
    ),
    s(
        "cluster",
        "snapshot_every",
        false,
        int(0, 1 << 40),
        "build a snapshot after this many log entries (0: never)",
    ),
    s(
        "cluster",
        "keep_after_snapshot",
        false,
        int(0, 1 << 40),
        "log entries a snapshot covers that are kept anyway",
    ),
    s("log", "level", false, Kind::LogFilter, "what is logged"),
    s(
        "log",
        "format",
        false,
        Kind::Choice(&["text", "json"]),
        "log lines as text or JSON",
    ),
];

const fn s(
    section: &'static str,
    key: &'static str,
    flat: bool,
    kind: Kind,
    help: &'static str,
) -> Setting {
    Setting {
        section,
        key,
        flat,
        kind,
        help,
    }
}

/// The sections of the file.
pub const SECTIONS: &[&str] = &["general", "server", "cache", "cluster", "log"];

/// A value read for a setting, before it is stored.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Text(String),
    Int(u64),
    Float(f64),
    Bool(bool),
    Names(Vec<String>),
}

/// One mistake in a configuration: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// The line in the file (None for the environment or a flag).
    pub line: Option<usize>,
    /// The key as written (`server.listen`, `RAIZ_SERVER_LISTEN`, `--set …`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Mistake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

fn find(section: &str, key: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.section == section && s.key == key)
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> Option<usize> {
    span.map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1)
}

/// Checks a text value of `kind` (from the environment or `--set`).
fn from_text(kind: Kind, raw: &str) -> Result<Val, String> {
    let raw = raw.trim();
    match kind {
        Kind::Int { .. } => raw
            .parse::<u64>()
            .map(Val::Int)
            .map_err(|_| format!("{raw:?} is not {}", kind.describe())),
        Kind::Seconds { .. } => raw
            .parse::<f64>()
            .map(Val::Float)
            .map_err(|_| format!("{raw:?} is not {}", kind.describe())),
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Val::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Val::Bool(false)),
            _ => Err(format!("{raw:?} is not true or false")),
        },
        Kind::Names | Kind::Listeners | Kind::Members => Ok(Val::Names(
            raw.split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        )),
        _ => Ok(Val::Text(raw.to_owned())),
    }
}

/// Checks a TOML value of `kind`.
fn from_toml(kind: Kind, v: &toml_edit::Value) -> Result<Val, String> {
    use toml_edit::Value as V;
    let found = match v {
        V::String(_) => "text",
        V::Integer(_) => "a whole number",
        V::Float(_) => "a fractional number",
        V::Boolean(_) => "true/false",
        V::Datetime(_) => "a date",
        V::Array(_) => "an array",
        V::InlineTable(_) => "a table",
    };
    let wrong = || format!("expected {}, found {found}", kind.describe());
    match (kind, v) {
        (Kind::Int { .. }, V::Integer(i)) => u64::try_from(*i.value())
            .map(Val::Int)
            .map_err(|_| format!("{} is not {}", i.value(), kind.describe())),
        (Kind::Seconds { .. }, V::Integer(i)) => Ok(Val::Float(*i.value() as f64)),
        (Kind::Seconds { .. }, V::Float(f)) => Ok(Val::Float(*f.value())),
        (Kind::Bool, V::Boolean(b)) => Ok(Val::Bool(*b.value())),
        (Kind::Names | Kind::Listeners | Kind::Members, V::String(s)) => from_text(kind, s.value()),
        (Kind::Names | Kind::Listeners | Kind::Members, V::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Val::Names),
        (
            Kind::Path | Kind::Address | Kind::Url | Kind::Choice(_) | Kind::LogFilter,
            V::String(s),
        ) => Ok(Val::Text(s.value().clone())),
        _ => Err(wrong()),
    }
}

/// Checks a value's range or form.
fn validate(kind: Kind, v: &Val) -> Result<(), String> {
    match (kind, v) {
        (Kind::Int { min, max }, Val::Int(i)) if *i < min || *i > max => {
            Err(format!("{i} is out of range: {}", kind.describe()))
        }
        (Kind::Seconds { max }, Val::Float(f)) if !(*f > 0.0 && *f <= max) => {
            Err(format!("{f} is out of range: {}", kind.describe()))
        }
        (Kind::Path, Val::Text(t)) if t.is_empty() => Err("an empty path".into()),
        (Kind::Address, Val::Text(t)) => {
            let ok = t
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if ok {
                Ok(())
            } else {
                Err(format!("{t:?} is not host:port"))
            }
        }
        (Kind::Url, Val::Text(t)) => t
            .parse::<raiz_client::ConnectionString>()
            .map(drop)
            .map_err(|e| e.to_string()),
        (Kind::Choice(words), Val::Text(t)) if !words.contains(&t.as_str()) => {
            Err(format!("{t:?} is not {}", kind.describe()))
        }
        (Kind::LogFilter, Val::Text(t)) => {
            let ok = !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:=,.-[]{}\"/".contains(c));
            if ok {
                Ok(())
            } else {
                Err(format!("{t:?} is not {}", kind.describe()))
            }
        }
        (Kind::Listeners, Val::Names(n)) => match n.iter().find(|a| {
            let host_port = a
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            !(host_port || a.strip_prefix("unix:").is_some_and(|p| !p.is_empty()))
        }) {
            Some(bad) => Err(format!("{bad:?} is not unix:PATH or host:port")),
            None => Ok(()),
        },
        (Kind::Members, Val::Names(n)) => {
            let mut ids = std::collections::BTreeSet::new();
            for m in n {
                let (id, _) = parse_member(m)?;
                if !ids.insert(id) {
                    return Err(format!("member {id} is listed twice"));
                }
            }
            if n.is_empty() {
                return Err("no members".into());
            }
            Ok(())
        }
        (Kind::Names, Val::Names(n)) => match n
            .iter()
            .find(|n| raiz_engine::validate_table_name(n).is_err())
        {
            Some(bad) => Err(format!("{bad:?} is not a table name")),
            None if n.is_empty() => Err("no names".into()),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// One entry of `[cluster] members`: `ID RAFT_HOST:PORT CLIENT_HOST:PORT`.
pub fn parse_member(text: &str) -> Result<(u64, raiz_cluster::Member), String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let addr = |a: &str| {
        a.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    };
    match parts[..] {
        [id, raft, client] if addr(raft) && addr(client) => {
            let id =
                id.parse::<u64>().ok().filter(|&i| i >= 1).ok_or_else(|| {
                    format!("{text:?}: {id:?} is not a member id (a number from 1)")
                })?;
            Ok((
                id,
                raiz_cluster::Member {
                    raft: raft.to_owned(),
                    client: client.to_owned(),
                },
            ))
        }
        _ => Err(format!(
            "{text:?} is not \"ID RAFT_HOST:PORT CLIENT_HOST:PORT\""
        )),
    }
}

impl Config {
    fn store(&mut self, setting: &Setting, v: Val) {
        let text = |v: &Val| match v {
            Val::Text(t) => Some(t.clone()),
            _ => None,
        };
        let num = |v: &Val| match v {
            Val::Int(i) => Some(*i),
            _ => None,
        };
        let path = |v: &Val| text(v).map(PathBuf::from);
        match (setting.section, setting.key) {
            ("general", "root") => self.root = path(&v),
            ("general", "pool_mb") => self.pool_mb = num(&v),
            ("general", "checkpoint_mb") => self.checkpoint_mb = num(&v),
            ("general", "checkpoint_secs") => self.checkpoint_secs = num(&v),
            ("general", "sync_delay_ms") => self.sync_delay_ms = num(&v),
            ("server", "listen") => self.listen = text(&v),
            ("server", "unix") => self.unix = path(&v),
            ("server", "tls_cert") => self.tls_cert = path(&v),
            ("server", "tls_key") => self.tls_key = path(&v),
            ("server", "allow_plaintext") => {
                self.allow_plaintext = match v {
                    Val::Bool(b) => Some(b),
                    _ => None,
                }
            }
            ("server", "metrics_listen") => self.metrics_listen = text(&v),
            ("server", "sql_listen") => self.sql_listen = text(&v),
            ("server", "idle_secs") => self.idle_secs = num(&v),
            ("server", "frame_secs") => self.frame_secs = num(&v),
            ("server", "max_frame_mb") => self.max_frame_mb = num(&v),
            ("server", "max_connections") => self.max_connections = num(&v),
            ("server", "max_unauthenticated") => self.max_unauthenticated = num(&v),
            ("server", "max_unauthenticated_per_address") => {
                self.max_unauthenticated_per_address = num(&v)
            }
            ("server", "frame_budget_mb") => self.frame_budget_mb = num(&v),
            ("server", "lock_idle_secs") => self.lock_idle_secs = num(&v),
            ("server", "window_mb") => self.window_mb = num(&v),
            ("cache", "server") => self.cache_server = text(&v),
            ("cache", "tables") => {
                self.cache_tables = match v {
                    Val::Names(n) => Some(n),
                    _ => None,
                }
            }
            ("cache", "dir") => self.cache_dir = path(&v),
            ("cache", "stale_secs") => {
                self.cache_stale_secs = match v {
                    Val::Float(f) => Some(f),
                    _ => None,
                }
            }
            ("cache", "pool_mb") => self.cache_pool_mb = num(&v),
            ("cache", "metrics_listen") => self.cache_metrics_listen = text(&v),
            ("cache", "listen") => {
                self.cache_listen = match v {
                    Val::Names(n) => Some(n),
                    _ => None,
                }
            }
            ("cluster", "id") => self.cluster_id = num(&v),
            ("cluster", "members") => {
                self.cluster_members = match v {
                    Val::Names(n) => Some(n),
                    _ => None,
                }
            }
            ("cluster", "listen") => self.cluster_listen = text(&v),
            ("cluster", "secret_file") => self.cluster_secret_file = path(&v),
            ("cluster", "log_dir") => self.cluster_log_dir = path(&v),
            ("cluster", "join") => {
                self.cluster_join = match v {
                    Val::Bool(b) => Some(b),
                    _ => None,
                }
            }
            ("cluster", "snapshot_every") => self.cluster_snapshot_every = num(&v),
            ("cluster", "keep_after_snapshot") => self.cluster_keep_after_snapshot = num(&v),
            ("log", "level") => self.log_level = text(&v),
            ("log", "format") => self.log_format = text(&v),
            _ => {}
        }
    }

    /// Every mistake in configuration text, each with its line; the
    /// configuration it describes when there are none.
    pub fn check(text: &str) -> Result<Config, Vec<Mistake>> {
        let doc = match toml_edit::ImDocument::parse(text) {
            Ok(d) => d,
            Err(e) => {
                return Err(vec![Mistake {
                    line: line_of(text, e.span()),
                    key: "(syntax)".into(),
                    message: e.message().trim().to_owned(),
                }])
            }
        };
        let mut mistakes = Vec::new();
        let mut config = Config::default();
        // Where each setting was set, to tell a key set twice.
        let mut seen: Vec<(&'static str, &'static str, Option<usize>)> = Vec::new();
        let mut take = |setting: &'static Setting,
                        written: String,
                        line: Option<usize>,
                        value: &toml_edit::Item,
                        config: &mut Config,
                        mistakes: &mut Vec<Mistake>| {
            let mistake = |message: String| Mistake {
                line,
                key: written.clone(),
                message,
            };
            if let Some((_, _, first)) = seen
                .iter()
                .find(|(s, k, _)| *s == setting.section && *k == setting.key)
            {
                mistakes.push(mistake(format!(
                    "set twice (first{}) — as {}.{} and at the top level, or twice",
                    first.map(|l| format!(" on line {l}")).unwrap_or_default(),
                    setting.section,
                    setting.key
                )));
                return;
            }
            seen.push((setting.section, setting.key, line));
            let Some(v) = value.as_value() else {
                mistakes.push(mistake(format!(
                    "expected {}, found a table",
                    setting.kind.describe()
                )));
                return;
            };
            match from_toml(setting.kind, v).and_then(|val| {
                validate(setting.kind, &val)?;
                Ok(val)
            }) {
                Ok(val) => config.store(setting, val),
                Err(m) => mistakes.push(mistake(m)),
            }
        };
        let top = doc.as_table();
        for (name, item) in top.iter() {
            let line = line_of(text, top.key(name).and_then(|k| k.span()));
            if let Some(table) = item.as_table_like() {
                if !SECTIONS.contains(&name) {
                    mistakes.push(Mistake {
                        line,
                        key: format!("[{name}]"),
                        message: format!(
                            "unknown section; the sections are {}",
                            SECTIONS.join(", ")
                        ),
                    });
                    continue;
                }
                for (key, value) in table.iter() {
                    let kline = line_of(
                        text,
                        table
                            .key(key)
                            .and_then(|k| k.span())
                            .or_else(|| value.span()),
                    )
                    .or(line);
                    match find(name, key) {
                        Some(setting) => take(
                            setting,
                            format!("{name}.{key}"),
                            kline,
                            value,
                            &mut config,
                            &mut mistakes,
                        ),
                        None => mistakes.push(Mistake {
                            line: kline,
                            key: format!("{name}.{key}"),
                            message: format!(
                                "unknown key in [{name}]; it takes {}",
                                SETTINGS
                                    .iter()
                                    .filter(|s| s.section == name)
                                    .map(|s| s.key)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }),
                    }
                }
                continue;
            }
            match SETTINGS.iter().find(|s| s.flat && s.key == name) {
                Some(setting) => take(
                    setting,
                    name.to_owned(),
                    line,
                    item,
                    &mut config,
                    &mut mistakes,
                ),
                None => {
                    let hint = SETTINGS
                        .iter()
                        .find(|s| s.key == name)
                        .map(|s| format!("; did you mean [{}] {}?", s.section, s.key))
                        .unwrap_or_default();
                    mistakes.push(Mistake {
                        line,
                        key: name.to_owned(),
                        message: format!("unknown key{hint}"),
                    })
                }
            }
        }
        if mistakes.is_empty() {
            Ok(config)
        } else {
            mistakes.sort_by_key(|m| m.line);
            Err(mistakes)
        }
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<Config, Error> {
        Self::parse_from(text, None)
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Config, Error> {
        Config::check(text).map_err(|mistakes| Error::Invalid {
            path: path.map(Path::to_path_buf),
            message: mistakes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_from(&text, Some(path))
    }

    /// The environment variable of a setting: `RAIZ_<SECTION>_<KEY>`.
    pub fn env_name(setting: &Setting) -> String {
        format!(
            "RAIZ_{}_{}",
            setting.section.to_ascii_uppercase(),
            setting.key.to_ascii_uppercase()
        )
    }

    /// Overrides settings from environment variables (`vars`, usually
    /// `std::env::vars()`): `RAIZ_<SECTION>_<KEY>`, and `RAIZ_LOG` for the
    /// log level when `RAIZ_LOG_LEVEL` is not set. Each bad value is a
    /// mistake naming its variable.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), Vec<Mistake>> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("RAIZ_"))
            .collect();
        let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut mistakes = Vec::new();
        for setting in SETTINGS {
            let name = Self::env_name(setting);
            let value = match get(&name) {
                Some(v) => v,
                None if setting.section == "log" && setting.key == "level" => match get("RAIZ_LOG")
                {
                    Some(v) => v,
                    None => continue,
                },
                None => continue,
            };
            if let Err(m) = self.set_text(setting, &value) {
                mistakes.push(Mistake {
                    line: None,
                    key: name,
                    message: m,
                });
            }
        }
        if mistakes.is_empty() {
            Ok(())
        } else {
            Err(mistakes)
        }
    }

    fn set_text(&mut self, setting: &Setting, raw: &str) -> Result<(), String> {
        let v = from_text(setting.kind, raw)?;
        validate(setting.kind, &v)?;
        self.store(setting, v);
        Ok(())
    }

    /// Overrides one setting from `SECTION.KEY=VALUE` (the `--set` flag).
    pub fn apply_set(&mut self, assignment: &str) -> Result<(), Mistake> {
        let mistake = |message: String| Mistake {
            line: None,
            key: format!("--set {assignment}"),
            message,
        };
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| mistake("expected SECTION.KEY=VALUE".into()))?;
        let (section, key) = name
            .trim()
            .split_once('.')
            .ok_or_else(|| mistake("expected SECTION.KEY=VALUE".into()))?;
        let setting = find(section, key)
            .ok_or_else(|| mistake(format!("unknown setting {section}.{key}")))?;
        self.set_text(setting, value).map_err(mistake)
    }

    /// The settings that are set, as TOML with their sections (what
    /// `raiz config show` prints).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for section in SECTIONS {
            let mut lines = Vec::new();
            for s in SETTINGS.iter().filter(|s| s.section == *section) {
                if let Some(v) = self.value_text(s) {
                    lines.push(format!("{} = {v}", s.key));
                }
            }
            if !lines.is_empty() {
                out.push_str(&format!("[{section}]\n{}\n\n", lines.join("\n")));
            }
        }
        out
    }

    fn value_text(&self, s: &Setting) -> Option<String> {
        let q = |t: &str| format!("{t:?}");
        let p = |p: &Option<PathBuf>| p.as_ref().map(|p| q(&p.display().to_string()));
        let t = |t: &Option<String>| t.as_deref().map(q);
        let n = |n: Option<u64>| n.map(|n| n.to_string());
        match (s.section, s.key) {
            ("general", "root") => p(&self.root),
            ("general", "pool_mb") => n(self.pool_mb),
            ("general", "checkpoint_mb") => n(self.checkpoint_mb),
            ("general", "checkpoint_secs") => n(self.checkpoint_secs),
            ("general", "sync_delay_ms") => n(self.sync_delay_ms),
            ("server", "listen") => t(&self.listen),
            ("server", "unix") => p(&self.unix),
            ("server", "tls_cert") => p(&self.tls_cert),
            ("server", "tls_key") => p(&self.tls_key),
            ("server", "allow_plaintext") => self.allow_plaintext.map(|b| b.to_string()),
            ("server", "metrics_listen") => t(&self.metrics_listen),
            ("server", "sql_listen") => t(&self.sql_listen),
            ("server", "idle_secs") => n(self.idle_secs),
            ("server", "frame_secs") => n(self.frame_secs),
            ("server", "max_frame_mb") => n(self.max_frame_mb),
            ("server", "max_connections") => n(self.max_connections),
            ("server", "max_unauthenticated") => n(self.max_unauthenticated),
            ("server", "max_unauthenticated_per_address") => {
                n(self.max_unauthenticated_per_address)
            }
            ("server", "frame_budget_mb") => n(self.frame_budget_mb),
            ("server", "lock_idle_secs") => n(self.lock_idle_secs),
            ("server", "window_mb") => n(self.window_mb),
            ("cache", "server") => t(&self.cache_server),
            ("cache", "tables") => self.cache_tables.as_ref().map(|v| {
                format!(
                    "[{}]",
                    v.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")
                )
            }),
            ("cache", "dir") => p(&self.cache_dir),
            ("cache", "stale_secs") => self.cache_stale_secs.map(|f| format!("{f:?}")),
            ("cache", "pool_mb") => n(self.cache_pool_mb),
            ("cache", "metrics_listen") => t(&self.cache_metrics_listen),
            ("cache", "listen") => self.cache_listen.as_ref().map(|v| {
                format!(
                    "[{}]",
                    v.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")
                )
            }),
            ("cluster", "id") => n(self.cluster_id),
            ("cluster", "members") => self.cluster_members.as_ref().map(|v| {
                format!(
                    "[{}]",
                    v.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")
                )
            }),
            ("cluster", "listen") => t(&self.cluster_listen),
            ("cluster", "secret_file") => p(&self.cluster_secret_file),
            ("cluster", "log_dir") => p(&self.cluster_log_dir),
            ("cluster", "join") => self.cluster_join.map(|b| b.to_string()),
            ("cluster", "snapshot_every") => n(self.cluster_snapshot_every),
            ("cluster", "keep_after_snapshot") => n(self.cluster_keep_after_snapshot),
            ("log", "level") => t(&self.log_level),
            ("log", "format") => t(&self.log_format),
            _ => None,
        }
    }

    /// The log settings (the engine's defaults where unset).
    pub fn log_options(&self) -> raiz_engine::LogOptions {
        let d = raiz_engine::LogOptions::default();
        raiz_engine::LogOptions {
            checkpoint_bytes: self
                .checkpoint_mb
                .map_or(d.checkpoint_bytes, |mb| mb.saturating_mul(1 << 20)),
            checkpoint_interval: self
                .checkpoint_secs
                .map_or(d.checkpoint_interval, std::time::Duration::from_secs),
            sync_delay: self
                .sync_delay_ms
                .map_or(d.sync_delay, std::time::Duration::from_millis),
        }
    }

    /// Idle time after which a session is ended (default 30 minutes).
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idle_secs.unwrap_or(1800))
    }

    /// Time a peer has to finish a frame or the handshake (default 30 s).
    pub fn frame_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.frame_secs.unwrap_or(30))
    }

    /// Largest request frame accepted.
    pub fn max_frame(&self) -> u32 {
        self.max_frame_mb
            .map_or(raiz_client::proto::DEFAULT_MAX_FRAME, |mb| {
                u32::try_from(mb.saturating_mul(1 << 20)).unwrap_or(u32::MAX)
            })
    }

    /// Connections served at once (default 4096).
    pub fn max_connections(&self) -> usize {
        clamp_usize(self.max_connections, 4096)
    }

    /// Connections not yet logged in: in total, and per peer address
    /// (defaults 512 and 64).
    pub fn max_unauthenticated(&self) -> (usize, usize) {
        (
            clamp_usize(self.max_unauthenticated, 512),
            clamp_usize(self.max_unauthenticated_per_address, 64),
        )
    }

    /// Bytes of request frames buffered across connections (default 512 MiB,
    /// never below the largest frame, so any one frame can be read).
    pub fn frame_budget(&self) -> usize {
        let budget = clamp_usize(self.frame_budget_mb, 512).saturating_mul(1 << 20);
        budget.max(self.max_frame() as usize)
    }

    /// Idle time after which a session holding locks others wait for is
    /// ended (default 60 s).
    pub fn lock_idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lock_idle_secs.unwrap_or(60))
    }

    /// Bytes of the change stream's window (default 64 MiB).
    pub fn window_bytes(&self) -> usize {
        clamp_usize(self.window_mb, 64).saturating_mul(1 << 20)
    }

    /// The buffer pool budget in bytes (the engine's default when unset).
    pub fn pool_bytes(&self) -> usize {
        self.pool_mb
            .map_or(raiz_engine::db::DEFAULT_POOL_BYTES, |mb| {
                (mb as usize).saturating_mul(1 << 20)
            })
    }
}

fn clamp_usize(v: Option<u64>, default: usize) -> usize {
    v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_sql_listener_is_a_setting() {
        let c = Config::parse("[server]\nsql_listen = \"127.0.0.1:5432\"\n").unwrap();
        assert_eq!(c.sql_listen.as_deref(), Some("127.0.0.1:5432"));
        assert!(c.to_toml().contains("sql_listen = \"127.0.0.1:5432\""));
        assert!(Config::check("[server]\nsql_listen = 5432\n").is_err());
    }

    #[test]
    fn cluster_members_are_checked() {
        let c = Config::parse(
            "[cluster]\nid = 2\nmembers = [\"1 db1:7071 db1:7070\", \"2 db2:7071 db2:7070\"]\njoin = true\nsnapshot_every = 5000\nkeep_after_snapshot = 100\n",
        )
        .unwrap();
        assert_eq!(c.cluster_snapshot_every, Some(5000));
        assert_eq!(c.cluster_keep_after_snapshot, Some(100));
        assert_eq!(c.cluster_id, Some(2));
        assert_eq!(c.cluster_members.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.cluster_join, Some(true));
        for bad in [
            "[cluster]\nmembers = [\"1 db1:7071\"]\n",
            "[cluster]\nmembers = [\"0 db1:7071 db1:7070\"]\n",
            "[cluster]\nmembers = [\"x db1:7071 db1:7070\"]\n",
            "[cluster]\nmembers = [\"1 db1 db1:7070\"]\n",
            "[cluster]\nmembers = [\"1 a:1 b:2\", \"1 c:3 d:4\"]\n",
            "[cluster]\nmembers = []\n",
            "[cluster]\nid = 0\n",
        ] {
            let e = Config::check(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn reads_a_file_and_rejects_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raiz.toml");
        std::fs::write(&p, "root = \"/d\"\nlisten = \"127.0.0.1:7070\"\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.root, Some(PathBuf::from("/d")));
        assert_eq!(c.pool_bytes(), raiz_engine::db::DEFAULT_POOL_BYTES);
        std::fs::write(&p, "roots = \"/d\"\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("raiz.toml") && e.contains("roots"), "{e}");
        assert!(Config::parse("pool_mb = 0").is_err());
        assert!(Config::parse("checkpoint_mb = 0").is_err());
        assert!(Config::parse("idle_secs = 0").is_err());
        let c = Config::parse("idle_secs = 5\nmax_frame_mb = 2\ntls_cert = 'c.pem'\n").unwrap();
        assert_eq!(c.idle_timeout(), std::time::Duration::from_secs(5));
        assert_eq!(c.max_frame(), 2 << 20);
        let c = Config::parse("checkpoint_mb = 8\nsync_delay_ms = 250\n").unwrap();
        assert_eq!(c.log_options().checkpoint_bytes, 8 << 20);
        assert_eq!(
            c.log_options().sync_delay,
            std::time::Duration::from_millis(250)
        );
        assert!(Config::parse("pool_mb = 'x'").is_err());
        assert!(Config::parse("max_connections = 0").is_err());
        let c =
            Config::parse("max_connections = 10\nmax_unauthenticated_per_address = 2\n").unwrap();
        assert_eq!(c.max_connections(), 10);
        assert_eq!(c.max_unauthenticated(), (512, 2));
        assert_eq!(c.lock_idle_timeout(), std::time::Duration::from_secs(60));
        let c = Config::parse("frame_budget_mb = 1\nmax_frame_mb = 8\n").unwrap();
        assert_eq!(c.frame_budget(), 8 << 20);
        assert!(matches!(
            Config::load(&dir.path().join("none.toml")),
            Err(Error::Read { .. })
        ));
    }

    #[test]
    fn sections_and_flat_keys_mean_the_same() {
        let flat = Config::parse("root = '/d'\nlisten = '127.0.0.1:7070'\npool_mb = 8\n").unwrap();
        let sectioned = Config::parse(
            "[general]\nroot = '/d'\npool_mb = 8\n[server]\nlisten = '127.0.0.1:7070'\n",
        )
        .unwrap();
        assert_eq!(flat, sectioned);
        let c = Config::parse(
            "[cache]\nserver = 'raiz://n@db1:7070'\ntables = ['sx3', 'SX2']\nstale_secs = 2.5\n\
             listen = ['unix:/run/n.sock', '127.0.0.1:7071']\n[log]\nlevel = 'raiz=debug'\nformat = 'json'\n[server]\nmetrics_listen = '127.0.0.1:0'\n",
        )
        .unwrap();
        assert_eq!(c.cache_tables, Some(vec!["sx3".into(), "SX2".into()]));
        assert_eq!(c.cache_stale_secs, Some(2.5));
        assert_eq!(
            c.cache_listen,
            Some(vec!["unix:/run/n.sock".into(), "127.0.0.1:7071".into()])
        );
        assert_eq!(c.log_format.as_deref(), Some("json"));
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(
            Config::parse("[cache]\ntables = 'a, b'\n")
                .unwrap()
                .cache_tables
                .unwrap(),
            vec!["a", "b"]
        );
        // What `config show` prints reads back the same.
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn every_mistake_is_named_with_its_line() {
        let text = "root = '/d'\n\
                    [server]\n\
                    listen = 7070\n\
                    max_connections = 0\n\
                    colour = 'red'\n\
                    [general]\n\
                    root = '/e'\n\
                    [cache]\n\
                    tables = ['ok', 'no/slash']\n\
                    stale_secs = -1\n\
                    listen = ['unix:', 'nowhere', '127.0.0.1:7071']\n\
                    [gui]\n\
                    theme = 1\n\
                    [log]\n\
                    format = 'xml'\n";
        let m = Config::check(text).unwrap_err();
        let got: Vec<(Option<usize>, &str)> = m.iter().map(|m| (m.line, m.key.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(3), "server.listen"),
                (Some(4), "server.max_connections"),
                (Some(5), "server.colour"),
                (Some(7), "general.root"),
                (Some(9), "cache.tables"),
                (Some(10), "cache.stale_secs"),
                (Some(11), "cache.listen"),
                (Some(12), "[gui]"),
                (Some(15), "log.format"),
            ],
            "{m:#?}"
        );
        assert!(m[0].message.contains("found a whole number"), "{}", m[0]);
        assert!(m[1].message.contains("out of range"), "{}", m[1]);
        assert!(m[2].message.contains("unknown key"), "{}", m[2]);
        assert!(
            m[3].message.contains("set twice (first on line 1)"),
            "{}",
            m[3]
        );
        assert!(m[4].message.contains("no/slash"), "{}", m[4]);
        assert!(
            m[6].message
                .contains("\"unix:\" is not unix:PATH or host:port"),
            "{}",
            m[6]
        );
        assert_eq!(
            m[8].to_string(),
            "line 15: log.format: \"xml\" is not one of text, json"
        );
        let m =
            Config::check("listen = 'x'\nmetrics_listen = 'nohost'\nlevel = 'info'\n").unwrap_err();
        assert!(m[0].message.contains("not host:port"), "{}", m[0]);
        assert!(
            m[2].message.contains("did you mean [log] level"),
            "{}",
            m[2]
        );
        let m = Config::check("[server\nlisten = 1").unwrap_err();
        assert_eq!((m[0].line, m[0].key.as_str()), (Some(1), "(syntax)"));
    }

    #[test]
    fn the_environment_overrides_the_file_and_set_overrides_both() {
        let mut c =
            Config::parse("[general]\nroot = '/file'\npool_mb = 8\n[log]\nlevel = 'warn'\n")
                .unwrap();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        c.apply_env(env(&[
            ("RAIZ_GENERAL_ROOT", "/env"),
            ("RAIZ_SERVER_MAX_CONNECTIONS", "12"),
            ("RAIZ_CACHE_TABLES", "sx3,sx2"),
            ("RAIZ_LOG", "debug"),
            ("RAIZ_SERVER_MODEL_OPS", "3000"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        assert_eq!(c.root, Some(PathBuf::from("/env")));
        assert_eq!(c.pool_mb, Some(8));
        assert_eq!(c.max_connections(), 12);
        assert_eq!(c.cache_tables, Some(vec!["sx3".into(), "sx2".into()]));
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        c.apply_env(env(&[("RAIZ_LOG", "debug"), ("RAIZ_LOG_LEVEL", "trace")]))
            .unwrap();
        assert_eq!(c.log_level.as_deref(), Some("trace"));
        let bad = c
            .apply_env(env(&[
                ("RAIZ_GENERAL_POOL_MB", "lots"),
                ("RAIZ_SERVER_ALLOW_PLAINTEXT", "maybe"),
            ]))
            .unwrap_err();
        assert_eq!(bad.len(), 2);
        assert!(
            bad[0].to_string().starts_with("RAIZ_GENERAL_POOL_MB: "),
            "{}",
            bad[0]
        );
        c.apply_set("general.pool_mb=16").unwrap();
        assert_eq!(c.pool_mb, Some(16));
        assert!(c
            .apply_set("general.pool_mb=0")
            .unwrap_err()
            .message
            .contains("out of range"));
        assert!(c.apply_set("nope").is_err());
        assert!(c
            .apply_set("general.colour=red")
            .unwrap_err()
            .message
            .contains("unknown setting"));
    }
}
