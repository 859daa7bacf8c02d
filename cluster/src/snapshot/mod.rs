//! Snapshots: a consistent copy of a member's rootpath, from which a member
//! that is new, or that fell behind the log the group keeps, is brought up
//! to date; and after which the group drops the log it covers.
//!
//! - **Building** ([`Snapshots::build`]) takes an online backup of the
//!   member's database into a work directory while entries go on being
//!   applied (`Database::backup_inside`; commits pause for one checkpoint),
//!   opens the copy — which replays the backup's log to a commit boundary —
//!   and reads there the position the state machine stores with every entry
//!   (`_raiz_cluster`): the copy is exactly the state after that entry, so
//!   that entry's id is the snapshot's. The copy is packed into one file
//!   ([`archive`]) and becomes the current snapshot.
//! - **Sending and receiving**: openraft streams the current snapshot's file
//!   in chunks ([`SnapshotFile`]); the receiver writes them into a new file
//!   and syncs it.
//! - **Installing** ([`crate::state::StateMachine`]): the received file is
//!   unpacked (every file's crc checked) and opened, made the current
//!   snapshot (durably: a member that crashes from here on resumes the
//!   installation at its next start), and the live database is brought to
//!   its state record by record ([`install`]); the snapshot's position is
//!   stored last, then a checkpoint makes it all durable before openraft
//!   drops its log.
//!
//! Invariants:
//! - **One at a time.** Building and installing exclude each other
//!   ([`Snapshots::exclusive`]): a backup taken while an installation is
//!   half done would pair the old position with some of the new data.
//! - **The current snapshot is never ahead of what this member can
//!   restore.** `current` names a snapshot file that is complete and synced;
//!   at start a member whose database is behind it installs it first (a
//!   crash during an installation, or a database that lost unsynced applies
//!   after openraft dropped the log they came from).
//!
//! Layout, under the member's log directory: `snapshots/current` (the
//! current snapshot's metadata and file name, replaced by a rename),
//! `snapshots/*.snap` (snapshot files), `snapshots/work-*` (copies being
//! built or installed, removed when done and at start).

pub mod archive;
pub mod file;
pub mod install;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use openraft::SnapshotMeta;
use parking_lot::{Mutex, MutexGuard};
use raiz_engine::storage::{OpenMode, Storage};
use raiz_engine::{Database, Options};
use serde::{Deserialize, Serialize};

pub use file::SnapshotFile;
pub use install::InstallReport;

use crate::error::{io, Error, Result};
use crate::types::Member;

/// A snapshot's metadata as openraft knows it.
pub type Meta = SnapshotMeta<u64, Member>;

/// Buffer pool of a copy opened while building or installing.
const COPY_POOL: usize = 32 << 20;

const CURRENT: &str = "current";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Current {
    meta: Meta,
    file: String,
}

/// A member's snapshots (see the module docs).
#[derive(Debug)]
pub struct Snapshots {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    current: Mutex<Option<Current>>,
    busy: Mutex<()>,
    seq: AtomicU64,
}

fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl Snapshots {
    /// The snapshots under `log_dir`, left-overs of an interrupted build or
    /// installation removed.
    pub fn open(storage: Arc<dyn Storage>, log_dir: &Path) -> Result<Arc<Snapshots>> {
        let dir = log_dir.join("snapshots");
        storage.create_dir_all(&dir).map_err(io(&dir))?;
        let cpath = dir.join(CURRENT);
        let current = if storage.exists(&cpath).map_err(io(&cpath))? {
            let f = storage
                .open(&cpath, OpenMode::Existing)
                .map_err(io(&cpath))?;
            let len = f.len().map_err(io(&cpath))?;
            if len > 16 << 20 {
                return Err(Error::Corrupt {
                    path: cpath,
                    offset: 0,
                    reason: "implausibly large".into(),
                });
            }
            let mut b = vec![0u8; len as usize];
            f.read_at(0, &mut b).map_err(io(&cpath))?;
            let c: Current = postcard::from_bytes(&b).map_err(|e| Error::Corrupt {
                path: cpath.clone(),
                offset: 0,
                reason: format!("does not decode: {e}"),
            })?;
            Some(c)
        } else {
            None
        };
        for d in storage.list_dirs(&dir).map_err(io(&dir))? {
            if d.starts_with("work-") {
                let p = dir.join(&d);
                storage.remove_dir_all(&p).map_err(io(&p))?;
            }
        }
        for f in storage.list(&dir).map_err(io(&dir))? {
            let keep = f == CURRENT || current.as_ref().is_some_and(|c| c.file == f);
            if !keep {
                let p = dir.join(&f);
                storage.remove(&p).map_err(io(&p))?;
            }
        }
        Ok(Arc::new(Snapshots {
            storage,
            dir,
            current: Mutex::new(current),
            busy: Mutex::new(()),
            seq: AtomicU64::new(0),
        }))
    }

    /// Held while building or installing (see the module docs).
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.busy.lock()
    }

    /// The current snapshot's metadata.
    pub fn current(&self) -> Option<Meta> {
        self.current.lock().as_ref().map(|c| c.meta.clone())
    }

    /// The current snapshot, opened for reading.
    pub fn open_current(&self) -> Result<Option<(Meta, SnapshotFile)>> {
        let Some(c) = self.current.lock().clone() else {
            return Ok(None);
        };
        let path = self.dir.join(&c.file);
        let f = SnapshotFile::open(self.storage.as_ref(), &path, OpenMode::Existing)
            .map_err(io(&path))?;
        Ok(Some((c.meta, f)))
    }

    fn name(&self, what: &str) -> String {
        format!(
            "{what}-{}-{}",
            stamp(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A new, empty file for a snapshot being received.
    pub fn incoming(&self) -> Result<SnapshotFile> {
        let path = self.dir.join(format!("{}.snap", self.name("in")));
        SnapshotFile::open(self.storage.as_ref(), &path, OpenMode::CreateNew).map_err(io(&path))
    }

    /// A new, empty work directory.
    fn work_dir(&self) -> Result<PathBuf> {
        let p = self.dir.join(self.name("work"));
        self.storage.create_dir_all(&p).map_err(io(&p))?;
        Ok(p)
    }

    fn remove_dir(&self, p: &Path) {
        if let Err(e) = self.storage.remove_dir_all(p) {
            tracing::warn!(dir = %p.display(), error = %e, "a snapshot work directory could not be removed");
        }
    }

    /// Makes the complete, synced snapshot file `path` the current one with
    /// `meta`, unless the current one is as recent; the previous file goes.
    pub fn keep(&self, meta: &Meta, path: &Path) -> Result<()> {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Config(format!("{}: not a snapshot file", path.display())))?
            .to_owned();
        let mut cur = self.current.lock();
        if cur
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id >= meta.last_log_id && c.file != file)
        {
            drop(cur);
            let _ = self.storage.remove(path);
            return Ok(());
        }
        let next = Current {
            meta: meta.clone(),
            file,
        };
        let bytes = postcard::to_allocvec(&next).expect("encodes");
        let tmp = self.dir.join(format!("{CURRENT}.tmp"));
        let cpath = self.dir.join(CURRENT);
        let _ = self.storage.remove(&tmp);
        let f = self
            .storage
            .open(&tmp, OpenMode::CreateNew)
            .map_err(io(&tmp))?;
        f.write_at(0, &bytes).map_err(io(&tmp))?;
        f.sync().map_err(io(&tmp))?;
        drop(f);
        self.storage.rename(&tmp, &cpath).map_err(io(&cpath))?;
        self.storage.sync_dir(&self.dir).map_err(io(&self.dir))?;
        let file = next.file.clone();
        if let Some(old) = cur.replace(next) {
            if old.file != file {
                let p = self.dir.join(&old.file);
                if let Err(e) = self.storage.remove(&p) {
                    tracing::warn!(file = %p.display(), error = %e, "an old snapshot could not be removed");
                }
            }
        }
        Ok(())
    }

    /// Builds a snapshot of `db` (see the module docs) and makes it current.
    pub fn build(&self, db: &Database, read_position: PositionReader) -> Result<Meta> {
        let started = Instant::now();
        let _busy = self.exclusive();
        let work = self.work_dir()?;
        let built = (|| {
            let backup = db.backup_inside(&work)?;
            let copy = self.open_copy(&work)?;
            let (last_log_id, last_membership) = read_position(&copy)?;
            drop(copy);
            let name = format!("{}.snap", self.name("built"));
            let path = self.dir.join(&name);
            let out = self
                .storage
                .open(&path, OpenMode::CreateNew)
                .map_err(io(&path))?;
            let bytes = archive::pack(self.storage.as_ref(), &work, out.as_ref(), &path)?;
            let meta = Meta {
                last_log_id,
                last_membership,
                snapshot_id: name.trim_end_matches(".snap").to_owned(),
            };
            self.keep(&meta, &path)?;
            tracing::info!(
                index = ?meta.last_log_id.map(|l| l.index),
                tables = backup.tables,
                bytes,
                secs = started.elapsed().as_secs_f64(),
                "snapshot built"
            );
            Ok(meta)
        })();
        self.remove_dir(&work);
        built
    }

    /// Unpacks `file` into a new work directory (checking every file of it)
    /// and opens the copy. The caller hands both to [`Snapshots::done_with`].
    pub fn unpack(&self, file: &SnapshotFile) -> Result<(Database, PathBuf)> {
        let work = self.work_dir()?;
        let opened = archive::unpack(
            self.storage.as_ref(),
            file.file().as_ref(),
            file.path(),
            &work,
        )
        .and_then(|_| self.open_copy(&work));
        match opened {
            Ok(db) => Ok((db, work)),
            Err(e) => {
                self.remove_dir(&work);
                Err(e)
            }
        }
    }

    /// Closes a copy from [`Snapshots::unpack`] and removes it.
    pub fn done_with(&self, copy: Database, work: &Path) {
        drop(copy);
        self.remove_dir(work);
    }

    fn open_copy(&self, dir: &Path) -> Result<Database> {
        Ok(Database::open_with(
            dir,
            Options::default()
                .storage(self.storage.clone())
                .pool_bytes(COPY_POOL),
        )?)
    }
}

/// Reads, from a copy of a member's database, the entry it is the state
/// after and the membership then.
pub type PositionReader = fn(
    &Database,
) -> std::result::Result<
    (
        Option<openraft::LogId<u64>>,
        openraft::StoredMembership<u64, Member>,
    ),
    Error,
>;
