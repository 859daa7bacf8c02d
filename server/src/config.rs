//! `raiz.toml`: the settings of a rootpath's owner. Every `raiz` subcommand reads
//! it (`--config`); command-line flags override what the file says.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// Settings of a rootpath's owner (`raiz serve`, or any `raiz` subcommand).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

impl Config {
    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<Config, Error> {
        Self::parse_from(text, None)
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Config, Error> {
        let c: Config = toml::from_str(text).map_err(|e| Error::Invalid {
            path: path.map(Path::to_path_buf),
            message: e.to_string(),
        })?;
        for (name, v) in [
            ("pool_mb", c.pool_mb),
            ("checkpoint_mb", c.checkpoint_mb),
            ("checkpoint_secs", c.checkpoint_secs),
            ("sync_delay_ms", c.sync_delay_ms),
            ("idle_secs", c.idle_secs),
            ("frame_secs", c.frame_secs),
            ("max_frame_mb", c.max_frame_mb),
            ("max_connections", c.max_connections),
            ("max_unauthenticated", c.max_unauthenticated),
            (
                "max_unauthenticated_per_address",
                c.max_unauthenticated_per_address,
            ),
            ("frame_budget_mb", c.frame_budget_mb),
            ("lock_idle_secs", c.lock_idle_secs),
            ("window_mb", c.window_mb),
        ] {
            if v == Some(0) {
                return Err(Error::Invalid {
                    path: path.map(Path::to_path_buf),
                    message: format!("{name} must be at least 1"),
                });
            }
        }
        Ok(c)
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_from(&text, Some(path))
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
}
