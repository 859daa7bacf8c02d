//! Online backup and restore of a rootpath.
//!
//! A backup ([`crate::Database::backup`]) is a copy of the table files plus
//! the log written while they were copied, taken while sessions go on reading
//! and committing. Restoring it ([`restore`]) copies it into a new rootpath
//! and opens that, which replays the copied log the way crash recovery does.
//!
//! ## The invariant
//!
//! The copy is consistent for the same reason crash recovery is:
//!
//! 1. **A checkpoint first.** The backup takes the commit gate exclusively
//!    for one checkpoint — every open table's changed pages written to its
//!    files and synced, the log rotated to a new segment — and pins that new
//!    segment before it lets commits go on ([`crate::log::Wal::pin`]). That
//!    is the only pause: commits wait for one checkpoint, no longer.
//! 2. **Files as they are.** It then copies the table files while commits
//!    go on. A page may be copied as of the checkpoint, as of any later
//!    write-back, or even torn by a concurrent write; but every page changed
//!    after the checkpoint has its full image in the pinned log (the first
//!    change of a page after a checkpoint is always logged whole), and every
//!    page not changed since is exactly what the checkpoint wrote. Later
//!    checkpoints may run meanwhile: they do not remove pinned segments.
//! 3. **The log to a commit boundary.** Then it makes the log durable and
//!    copies the pinned segments up to the durable end, which lies between
//!    two commits ([`crate::log::Wal::cut`]).
//! 4. **Replay.** Opening the restored rootpath replays those segments over
//!    the copied files: each commit whose frames are all there is redone
//!    whole, torn or stale pages are overwritten by their images, and the
//!    tables' counters come from the log's last states. So the copy holds
//!    every commit acknowledged before the backup began (durable before the
//!    checkpoint, hence in the files) and each later one either whole or not
//!    at all.
//!
//! While it copies, the backup holds the rootpath's DDL lock: creating,
//! dropping or rewriting a table (pack, rebuild, alter) and creating or
//! dropping an index wait for it, so the files it lists are the files the log
//! refers to. **Unlogged** tables have no log to repair a fuzzy copy: each is
//! flushed and marked clean, then copied under its table's write lock, so its
//! copy is the table at one instant (writers of that table wait while it is
//! copied; a transaction spanning logged and unlogged tables is atomic in the
//! copy only in its logged part, as after a crash). Temporary tables are not
//! part of a rootpath and are not copied.
//!
//! ## The backup directory
//!
//! The rootpath's files (tables, `raiz.users`, `raiz.acl`), the log segments
//! in `raiz.wal/`, and last `raiz.backup`, a manifest naming every file with
//! its size and crc32. A directory without the manifest is an unfinished
//! backup and is refused by [`restore`]. The owner lock and `raiz.epoch` are
//! not copied: a restored rootpath draws a new epoch at its first open, so
//! cache nodes that followed the original reload rather than trust a copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::{recovery::RecoveryReport, Database, Options, OWNER_FILE};
use crate::error::{Error, Result};
use crate::log::{SegmentCut, WAL_DIR};
use crate::storage::{OpenMode, Storage};
use crate::table::{header, CheckReport};

/// Name of the manifest, written last into a backup directory.
pub const MANIFEST: &str = "raiz.backup";

const MANIFEST_HEADER: &str = "raiz backup 1";
const CHUNK: usize = 1 << 20;

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupReport {
    /// Where it went (absolute).
    pub path: PathBuf,
    /// Tables copied.
    pub tables: usize,
    /// Files copied (tables and control files, log segments not counted).
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Log segments copied.
    pub log_segments: usize,
    /// Bytes of log copied (replayed when the backup is restored).
    pub log_bytes: u64,
    /// How long commits were held back: the checkpoint under the gate.
    pub pause: Duration,
    /// How long the whole backup took.
    pub took: Duration,
    /// The change feed's sequence number when the backup began.
    pub feed_seq: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreReport {
    /// The new rootpath (absolute).
    pub root: PathBuf,
    /// Files copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// What replaying the backup's log did.
    pub recovery: RecoveryReport,
    /// Each table with its check.
    pub checks: Vec<(String, CheckReport)>,
    /// The epoch of the source when it was backed up, and the new one.
    pub old_epoch: Option<u64>,
    /// The restored rootpath's new epoch.
    pub epoch: u64,
}

impl RestoreReport {
    /// True when every table checked clean.
    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(|(_, c)| c.is_ok())
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Backup {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Copies `len` bytes (all of it when None) of `from` to a new file `to`,
/// synced; returns the bytes copied and their crc32. None when `from` is gone.
fn copy_file(
    storage: &dyn Storage,
    from: &Path,
    to: &Path,
    len: Option<u64>,
) -> Result<Option<(u64, u32)>> {
    let src = match storage.open(from, OpenMode::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(from, e)),
    };
    let len = match len {
        Some(l) => l,
        None => src.len().map_err(|e| Error::io(from, e))?,
    };
    let dst = storage
        .open(to, OpenMode::CreateNew)
        .map_err(|e| Error::io(to, e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut crc = crc32fast::Hasher::new();
    let mut at = 0u64;
    while at < len {
        let n = CHUNK.min((len - at) as usize);
        src.read_at(at, &mut buf[..n])
            .map_err(|e| Error::io(from, e))?;
        dst.write_at(at, &buf[..n]).map_err(|e| Error::io(to, e))?;
        crc.update(&buf[..n]);
        at += n as u64;
    }
    dst.sync().map_err(|e| Error::io(to, e))?;
    Ok(Some((len, crc.finalize())))
}

/// A file of the rootpath that a backup copies (not the owner lock, the
/// epoch mark, the log, or what an interrupted rewrite left).
fn is_copied(name: &str) -> bool {
    name != OWNER_FILE
        && name != crate::feed::EPOCH_FILE
        && name != MANIFEST
        && !name.ends_with(".new")
        && !name.ends_with(".tmp")
        && !name.chars().any(char::is_whitespace)
}

/// Prepares the backup directory: created, empty, not inside the rootpath
/// and not containing it. Returns its absolute path.
fn prepare_target(storage: &dyn Storage, root: &Path, to: &Path, inside: bool) -> Result<PathBuf> {
    storage.create_dir_all(to).map_err(|e| Error::io(to, e))?;
    let abs = storage.canonicalize(to).map_err(|e| Error::io(to, e))?;
    if inside {
        if root.starts_with(&abs) || abs.starts_with(root.join(WAL_DIR)) || !abs.starts_with(root) {
            return Err(bad(
                &abs,
                format!(
                    "this copy must go in a directory under the rootpath {}, not its log directory",
                    root.display()
                ),
            ));
        }
    } else if abs.starts_with(root) || root.starts_with(&abs) {
        return Err(bad(
            &abs,
            format!(
                "a backup must go outside the rootpath {} (and not contain it)",
                root.display()
            ),
        ));
    }
    let files = storage.list(&abs).map_err(|e| Error::io(&abs, e))?;
    let dirs = storage.list_dirs(&abs).map_err(|e| Error::io(&abs, e))?;
    if !files.is_empty() || !dirs.is_empty() {
        return Err(bad(&abs, "the directory is not empty"));
    }
    Ok(abs)
}

struct Manifest {
    source: String,
    epoch: Option<u64>,
    feed_seq: u64,
    files: Vec<(String, u64, u32)>,
}

impl Manifest {
    fn text(&self) -> String {
        let mut s = format!("{MANIFEST_HEADER}\nsource {}\n", self.source);
        if let Some(e) = self.epoch {
            s.push_str(&format!("epoch {e:016x}\n"));
        }
        s.push_str(&format!("feed_seq {}\n", self.feed_seq));
        for (name, len, crc) in &self.files {
            s.push_str(&format!("file {name} {len} {crc:08x}\n"));
        }
        s.push_str("end\n");
        s
    }

    fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let mut lines = text.lines();
        if lines.next() != Some(MANIFEST_HEADER) {
            return Err(bad(
                path,
                format!("{MANIFEST} is not a raiz backup manifest"),
            ));
        }
        let mut m = Manifest {
            source: String::new(),
            epoch: None,
            feed_seq: 0,
            files: Vec::new(),
        };
        let mut ended = false;
        for (i, line) in lines.enumerate() {
            let line_no = i + 2;
            let wrong = || {
                bad(
                    path,
                    format!("{MANIFEST} line {line_no} is damaged: {line:?}"),
                )
            };
            let mut words = line.split(' ');
            match words.next() {
                Some("source") => m.source = line["source ".len()..].to_owned(),
                Some("epoch") => {
                    m.epoch = Some(
                        words
                            .next()
                            .and_then(|w| u64::from_str_radix(w, 16).ok())
                            .ok_or_else(wrong)?,
                    )
                }
                Some("feed_seq") => {
                    m.feed_seq = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .ok_or_else(wrong)?
                }
                Some("file") => {
                    let (Some(name), Some(len), Some(crc), None) =
                        (words.next(), words.next(), words.next(), words.next())
                    else {
                        return Err(wrong());
                    };
                    let name_ok = !name.is_empty()
                        && !name.starts_with('/')
                        && name
                            .split('/')
                            .all(|p| !p.is_empty() && p != "." && p != "..")
                        && (name.matches('/').count() == 0
                            || name.starts_with(&format!("{WAL_DIR}/")));
                    let len: u64 = len.parse().map_err(|_| wrong())?;
                    let crc = u32::from_str_radix(crc, 16).map_err(|_| wrong())?;
                    if !name_ok {
                        return Err(wrong());
                    }
                    m.files.push((name.to_owned(), len, crc));
                }
                Some("end") => {
                    ended = true;
                    break;
                }
                _ => return Err(wrong()),
            }
        }
        if !ended {
            return Err(bad(path, format!("{MANIFEST} is cut short")));
        }
        Ok(m)
    }
}

impl Database {
    /// Takes an online backup into `to` (created if needed; it must be empty
    /// and outside the rootpath) while sessions go on reading and committing.
    /// See the [module docs](crate::backup) for what the copy holds.
    pub fn backup(&self, to: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_with(to, || {})
    }

    /// [`Database::backup`], running `after_files` once the table files are
    /// copied and before the log is cut (tests make checkpoints and commits
    /// happen there).
    #[doc(hidden)]
    pub fn backup_with(
        &self,
        to: impl AsRef<Path>,
        after_files: impl FnOnce(),
    ) -> Result<BackupReport> {
        self.backup_to(to.as_ref(), false, after_files)
    }

    /// [`Database::backup`] into a directory under the rootpath (not the
    /// rootpath itself, nor its log directory): the copy a cluster member
    /// builds its snapshots from, kept beside its Raft log.
    pub fn backup_inside(&self, to: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_to(to.as_ref(), true, || {})
    }

    fn backup_to(
        &self,
        to: &Path,
        inside: bool,
        after_files: impl FnOnce(),
    ) -> Result<BackupReport> {
        let started = Instant::now();
        let rt = self.runtime().clone();
        let storage: Arc<dyn Storage> = self.storage().clone();
        let root = self.root().to_path_buf();
        let Some(wal) = rt.wal.clone() else {
            return Err(Error::Unsupported(
                "a rootpath of temporary tables has nothing to back up".into(),
            ));
        };
        // No table is created, dropped or rewritten until the copy is done.
        let _ddl = rt.ddl.write();
        let to = prepare_target(storage.as_ref(), &root, to, inside)?;
        let feed_seq = self.feed().last_seq();
        let epoch = Some(self.feed().epoch()).filter(|&e| e != 0);
        // 1. One checkpoint under the gate, and the new segment pinned before
        //    commits go on.
        let (pause, pin) = crate::txn::checkpoint_then(&rt, |w| w.map(|w| w.pin()))?;
        let pin = pin.ok_or_else(|| Error::Unsupported("no log to back up".into()))?;
        tracing::info!(to = %to.display(), pause_ms = pause.as_secs_f64() * 1e3, "backup: checkpoint done, copying");
        let mut manifest = Manifest {
            source: root.display().to_string(),
            epoch,
            feed_seq,
            files: Vec::new(),
        };
        let mut report = BackupReport {
            path: to.clone(),
            pause,
            feed_seq,
            ..BackupReport::default()
        };
        // 2. The files. Unlogged tables are copied whole under their lock.
        let names = storage.list(&root).map_err(|e| Error::io(&root, e))?;
        let mut under_lock: Vec<String> = Vec::new();
        for table in self.list_tables()? {
            let data = root.join(format!("{table}.rzd"));
            let logged = match storage.open(&data, OpenMode::Existing) {
                Ok(f) => match header::read(f.as_ref(), &data) {
                    Ok(h) => h.body.durability == crate::Durability::Logged,
                    // Copied as it is: the restore's check will say what is wrong.
                    Err(_) => true,
                },
                Err(_) => continue,
            };
            report.tables += 1;
            if logged {
                continue;
            }
            let handle = self.open_shared(&table)?;
            let mut core = handle.core.write();
            core.close()?;
            let files: Vec<String> = std::iter::once(format!("{table}.rzd"))
                .chain(core.body.blob_file.clone())
                .chain(core.body.indexes.iter().map(|b| b.file.clone()))
                .collect();
            for f in files {
                if let Some((len, crc)) =
                    copy_file(storage.as_ref(), &root.join(&f), &to.join(&f), None)?
                {
                    report.files += 1;
                    report.bytes += len;
                    manifest.files.push((f.clone(), len, crc));
                }
                under_lock.push(f);
            }
            drop(core);
            drop(handle);
        }
        for name in names {
            if !is_copied(&name) || under_lock.contains(&name) {
                continue;
            }
            if let Some((len, crc)) =
                copy_file(storage.as_ref(), &root.join(&name), &to.join(&name), None)?
            {
                report.files += 1;
                report.bytes += len;
                manifest.files.push((name, len, crc));
            }
        }
        after_files();
        // 3. The log from the pinned segment to the durable end.
        let cut: Vec<SegmentCut> = wal.cut(&pin)?;
        let log_dir = to.join(WAL_DIR);
        storage
            .create_dir_all(&log_dir)
            .map_err(|e| Error::io(&log_dir, e))?;
        for seg in &cut {
            let name = crate::log::segment_name(seg.seq);
            let (len, crc) = copy_file(
                storage.as_ref(),
                &seg.path,
                &log_dir.join(&name),
                Some(seg.len),
            )?
            .ok_or_else(|| bad(&seg.path, "a pinned log segment disappeared"))?;
            report.log_segments += 1;
            report.log_bytes += len;
            manifest.files.push((format!("{WAL_DIR}/{name}"), len, crc));
        }
        drop(pin);
        storage
            .sync_dir(&log_dir)
            .map_err(|e| Error::io(&log_dir, e))?;
        // 4. The manifest, last: its presence says the backup is complete.
        let mpath = to.join(MANIFEST);
        let f = storage
            .open(&mpath, OpenMode::CreateNew)
            .map_err(|e| Error::io(&mpath, e))?;
        f.write_at(0, manifest.text().as_bytes())
            .and_then(|()| f.sync())
            .map_err(|e| Error::io(&mpath, e))?;
        storage.sync_dir(&to).map_err(|e| Error::io(&to, e))?;
        rt.stats
            .backups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        report.took = started.elapsed();
        tracing::info!(to = %to.display(), files = report.files, bytes = report.bytes,
            log_bytes = report.log_bytes, pause_ms = pause.as_secs_f64() * 1e3,
            secs = report.took.as_secs_f64(), "backup done");
        Ok(report)
    }
}

/// Restores the backup in `from` into the new rootpath `to` (created; it
/// must be empty): copies every file the manifest names, checking its size
/// and crc32, opens the copy — which replays the backup's log and draws a new
/// epoch — and checks every table (at most `check_limit` problems each).
pub fn restore(
    from: &Path,
    to: &Path,
    options: Options,
    check_limit: usize,
) -> Result<RestoreReport> {
    let storage = options.storage.clone();
    let mpath = from.join(MANIFEST);
    let text = {
        let f = match storage.open(&mpath, OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(
                    from,
                    format!("no {MANIFEST}: not a raiz backup, or one that did not finish"),
                ))
            }
            Err(e) => return Err(Error::io(&mpath, e)),
        };
        let len = f.len().map_err(|e| Error::io(&mpath, e))?;
        if len > 64 << 20 {
            return Err(bad(from, format!("{MANIFEST} is implausibly large")));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_at(0, &mut buf).map_err(|e| Error::io(&mpath, e))?;
        String::from_utf8(buf).map_err(|_| bad(from, format!("{MANIFEST} is not text")))?
    };
    let manifest = Manifest::parse(&text, from)?;
    storage.create_dir_all(to).map_err(|e| Error::io(to, e))?;
    let root = storage.canonicalize(to).map_err(|e| Error::io(to, e))?;
    let files = storage.list(&root).map_err(|e| Error::io(&root, e))?;
    let dirs = storage.list_dirs(&root).map_err(|e| Error::io(&root, e))?;
    if !files.is_empty() || !dirs.is_empty() {
        return Err(bad(&root, "the new rootpath is not empty"));
    }
    storage
        .create_dir_all(&root.join(WAL_DIR))
        .map_err(|e| Error::io(&root, e))?;
    let mut report = RestoreReport {
        root: root.clone(),
        old_epoch: manifest.epoch,
        ..RestoreReport::default()
    };
    for (name, len, crc) in &manifest.files {
        let src = from.join(name);
        let got = copy_file(storage.as_ref(), &src, &root.join(name), None)?
            .ok_or_else(|| bad(from, format!("{name} is missing")))?;
        if got != (*len, *crc) {
            return Err(bad(
                from,
                format!(
                    "{name} is damaged: {} bytes with crc32 {:08x}, the manifest says {len} bytes with {crc:08x}",
                    got.0, got.1
                ),
            ));
        }
        report.files += 1;
        report.bytes += len;
    }
    storage
        .sync_dir(&root.join(WAL_DIR))
        .and_then(|()| storage.sync_dir(&root))
        .map_err(|e| Error::io(&root, e))?;
    // No `raiz.epoch` was copied: this open draws a new epoch.
    let db = Database::open_with(&root, options)?;
    report.recovery = db.recovery().clone();
    report.epoch = db.feed().epoch();
    let session = db.session();
    for table in db.list_tables()? {
        let t = session.open_table(&table)?;
        let check = t.check(check_limit)?;
        t.close()?;
        report.checks.push((table, check));
    }
    drop(session);
    drop(db);
    tracing::info!(root = %root.display(), files = report.files, commits = report.recovery.commits, "restored");
    Ok(report)
}
