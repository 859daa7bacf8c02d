//! # raiz-server
//!
//! The configuration of a served rootpath, read from `raiz.toml`. The `raiz`
//! command reads it (`--config`) for every subcommand that opens a rootpath;
//! command-line flags override what the file says.
//!
//! ```toml
//! root = "/data/erp"
//! listen = "0.0.0.0:7070"
//! unix = "/run/raiz.sock"
//! pool_mb = 256
//! checkpoint_mb = 64       # checkpoint once the log grew this much
//! checkpoint_secs = 300    # … or this long after the last one
//! sync_delay_ms = 1000     # delayed-durability commits are synced within this
//! ```
//!
//! ```
//! let c = raiz_server::Config::parse("root = '/data/erp'\npool_mb = 128\n").unwrap();
//! assert_eq!(c.pool_bytes(), 128 << 20);
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("invalid config{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong, with line and column.
        message: String,
    },
}

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
