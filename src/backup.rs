//! `raiz backup` and `raiz restore`: an online copy of a rootpath, taken
//! through its server (an admin request) or embedded, and brought back into
//! a new rootpath with a new epoch. The invariant is in the engine's
//! `raiz_engine::backup` module docs.

use std::path::{Path, PathBuf};

use raiz_client::Connection;
use raiz_engine::backup::{BackupReport, RestoreReport};
use raiz_server::Config;

use crate::error::{CliError, CliResult};
use crate::Target;

fn print_backup(from: &str, r: &BackupReport) {
    println!(
        "backup of {from} in {}: {} tables, {} files ({} bytes), {} log bytes in {} segments",
        r.path.display(),
        r.tables,
        r.files,
        r.bytes,
        r.log_bytes,
        r.log_segments
    );
    println!(
        "commits paused {:.1} ms (one checkpoint); backup took {:.2} s",
        r.pause.as_secs_f64() * 1e3,
        r.took.as_secs_f64()
    );
}

/// `raiz backup`: through the server with `--connect`, else embedded.
pub fn backup(config: &Config, target: Target, to: &Path) -> CliResult {
    if let Some(url) = &target.connect {
        // The server writes the copy on its machine: give it an absolute path.
        let to = std::path::absolute(to).map_err(|e| CliError::io(to.display(), e))?;
        let session = Connection::connect(url)?.session()?;
        let report = session.backup(&to.to_string_lossy())?;
        print_backup(url, &report);
        return Ok(());
    }
    let root = target.root.or_else(|| config.root.clone()).ok_or_else(|| {
        CliError::Usage(
            "no rootpath: pass --root, --connect, or set root in the config file".into(),
        )
    })?;
    let options = raiz_engine::Options::default()
        .pool_bytes(config.pool_bytes())
        .log(config.log_options());
    let db = match raiz_engine::Database::open_with(&root, options) {
        Ok(db) => db,
        Err(e @ raiz_engine::Error::RootpathLocked { .. }) => {
            return Err(CliError::Io(format!(
                "{e}\n(if a server holds it, back it up through the server: raiz backup --connect raiz://ADMIN@HOST:PORT --to DIR)"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let report = db.backup(to)?;
    print_backup(&db.root().display().to_string(), &report);
    Ok(())
}

fn print_restore(r: &RestoreReport) {
    println!(
        "restored {} files ({} bytes) into {}; the backup's log replayed: {} commits",
        r.files,
        r.bytes,
        r.root.display(),
        r.recovery.commits
    );
    for (table, check) in &r.checks {
        if check.is_ok() {
            println!(
                "  {table:<24} ok ({} records, {} indexes)",
                check.records, check.indexes
            );
        } else {
            println!("  {table:<24} PROBLEMS");
            for p in &check.problems {
                println!("    {p}");
            }
        }
    }
    println!(
        "new epoch {:016x}{}: cache nodes that followed the original reload",
        r.epoch,
        r.old_epoch
            .map(|e| format!(" (the original's was {e:016x})"))
            .unwrap_or_default()
    );
}

/// `raiz restore`: the backup in `from` into the new rootpath `root`.
pub fn restore(config: &Config, from: &Path, root: Option<PathBuf>, limit: usize) -> CliResult {
    let root = root.ok_or_else(|| CliError::Usage("raiz restore needs --root NEWROOT".into()))?;
    let options = raiz_engine::Options::default()
        .pool_bytes(config.pool_bytes())
        .log(config.log_options());
    let report = raiz_engine::backup::restore(from, &root, options, limit)?;
    print_restore(&report);
    if report.is_ok() {
        Ok(())
    } else {
        Err(CliError::Data(format!(
            "{}: tables failed their check after the restore",
            root.display()
        )))
    }
}
