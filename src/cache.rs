//! `raiz cache`: run a cache node as a process, show a node's status,
//! throw a node's copy away.
//!
//! A running node writes its status to `DIR/raiz-node.status.json` (outside
//! `dbCache`) every second; `raiz cache status --dir DIR` reads it. With
//! `--metrics-listen` it serves `/healthz`, `/readyz` (every table loaded,
//! the server connected) and `/metrics` from the same status, refreshed
//! every 50 ms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use raiz_client::cache::{CacheConfig, CacheNode, CacheStatus};
use raiz_engine::storage::{FileStorage, LockAttempt, Storage};

use crate::error::{CliError, CliResult};

/// The status file of a node's directory.
pub const STATUS_FILE: &str = "raiz-node.status.json";

/// What `raiz cache` runs.
pub struct RunOptions {
    pub server: String,
    pub tables: Vec<String>,
    pub dir: Option<PathBuf>,
    pub stale_secs: Option<f64>,
    pub pool_mb: Option<u64>,
    pub listen: Vec<String>,
    pub metrics_listen: Option<String>,
}

/// Runs a node until SIGTERM or SIGINT.
pub fn run(o: RunOptions) -> CliResult {
    let tables: Vec<&str> = o.tables.iter().map(String::as_str).collect();
    let mut config = CacheConfig::new(&o.server, &tables).map_err(usage)?;
    if let Some(dir) = &o.dir {
        config = config.dir(dir);
    }
    if let Some(s) = o.stale_secs {
        if !(s > 0.0 && s.is_finite()) {
            return Err(CliError::Usage(format!(
                "--stale-secs {s}: give a positive number"
            )));
        }
        config = config.stale_after(Duration::from_secs_f64(s));
    }
    if let Some(mb) = o.pool_mb {
        config = config.pool_bytes((mb as usize).saturating_mul(1 << 20));
    }
    let status_path = o.dir.as_ref().map(|d| d.join(STATUS_FILE));
    let mut said_ready = false;
    let probe = raiz_server::metrics::NodeProbe::new();
    let _endpoint = match &o.metrics_listen {
        Some(addr) => {
            let e = raiz_server::metrics::Endpoint::start(addr, probe.clone())?;
            println!("raiz cache: metrics on {}", e.address);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            Some(e)
        }
        None => None,
    };
    // With an endpoint the status is taken as often as the node's loop
    // allows; the status file is written when it changed, or a second
    // went by (so the last status a node reports is always the file's).
    let every = if o.metrics_listen.is_some() {
        Duration::from_millis(50)
    } else {
        Duration::from_secs(1)
    };
    let mut written: Option<(std::time::Instant, CacheStatus)> = None;
    raiz_server::node::run(config, &o.listen, every, |st| {
        probe.report(st);
        let due = written
            .as_ref()
            .is_none_or(|(at, last)| last != st || at.elapsed() >= Duration::from_secs(1));
        if let (true, Some(p)) = (due, &status_path) {
            written = Some((std::time::Instant::now(), st.clone()));
            if let Err(e) = write_status(p, st) {
                tracing::warn!(error = %e, path = %p.display(), "cannot write the status file");
            }
        }
        let ready = st.connected && st.tables.iter().all(|t| t.status != "loading");
        if ready && !said_ready {
            println!(
                "raiz cache: following {} ({} tables, at {})",
                st.server,
                st.tables.len(),
                st.applied
            );
            said_ready = true;
        }
    })?;
    Ok(())
}

fn usage(e: raiz_client::Error) -> CliError {
    CliError::Usage(e.to_string())
}

fn write_status(path: &Path, st: &CacheStatus) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(st).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Prints the status a node in `dir` last wrote.
pub fn status(dir: &Path, json: bool) -> CliResult {
    let path = dir.join(STATUS_FILE);
    let text = std::fs::read(&path).map_err(|e| CliError::io(path.display(), e))?;
    let st: CacheStatus = serde_json::from_slice(&text)
        .map_err(|e| CliError::Data(format!("{}: {e}", path.display())))?;
    let running = is_running(dir);
    if json {
        let mut v = serde_json::to_value(&st).map_err(|e| CliError::Data(e.to_string()))?;
        v["running"] = serde_json::Value::Bool(running);
        println!("{v}");
        return Ok(());
    }
    println!(
        "node {} ({}), server {} {}",
        dir.display(),
        if running {
            "running"
        } else {
            "not running: last status"
        },
        st.server,
        if st.connected {
            "connected"
        } else {
            "not connected"
        }
    );
    println!(
        "epoch {}  applied {}  server at {}  lag {} changes, {} ms  silent {} ms",
        st.epoch,
        st.applied,
        st.server_last,
        st.lag_changes,
        st.lag_ms,
        st.silent_ms.map_or_else(|| "-".into(), |s| s.to_string())
    );
    println!(
        "reads {} local, {} passed to the server; {} loads, {} catch-ups, {} record changes applied",
        st.local_reads, st.passed_reads, st.reloads, st.catch_ups, st.applied_changes
    );
    if let Some(e) = &st.last_error {
        println!("last error: {e}");
    }
    println!(
        "{:<24} {:<8} {:>10} {:>14} {:>14} {:>6}",
        "table", "status", "rows", "memory", "disk", "ratio"
    );
    for t in &st.tables {
        let ratio = if t.disk_bytes > 0 {
            format!("{:.2}", t.memory_bytes as f64 / t.disk_bytes as f64)
        } else {
            "-".into()
        };
        println!(
            "{:<24} {:<8} {:>10} {:>14} {:>14} {:>6}",
            t.name, t.status, t.rows, t.memory_bytes, t.disk_bytes, ratio
        );
    }
    for e in &st.events {
        println!("  {e}");
    }
    Ok(())
}

fn is_running(dir: &Path) -> bool {
    let storage = FileStorage::new();
    !matches!(
        storage.try_lock(
            &dir.join(raiz_client::cache::NODE_LOCK),
            "raiz cache status"
        ),
        Ok(LockAttempt::Acquired { .. })
    )
}

/// Throws away the copy of the node in `dir`.
pub fn discard(dir: &Path) -> CliResult {
    CacheNode::discard(dir).map_err(|e| CliError::Data(e.to_string()))?;
    println!(
        "raiz cache: the copy in {} is discarded; the next start loads afresh",
        dir.display()
    );
    Ok(())
}
