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
    /// Accept connections without TLS from other machines (default: only
    /// loopback and the Unix socket may skip TLS once a certificate is set;
    /// without a certificate every address is served in the clear).
    pub allow_plaintext: Option<bool>,
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

    /// The buffer pool budget in bytes (the engine's default when unset).
    pub fn pool_bytes(&self) -> usize {
        self.pool_mb
            .map_or(raiz_engine::db::DEFAULT_POOL_BYTES, |mb| {
                (mb as usize).saturating_mul(1 << 20)
            })
    }
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
        assert!(matches!(
            Config::load(&dir.path().join("none.toml")),
            Err(Error::Read { .. })
        ));
    }
}
