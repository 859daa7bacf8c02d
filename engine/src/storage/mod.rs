//! The storage seam: every byte the engine reads or writes goes through these traits.
//!
//! [`Storage`] is a namespace of files (a directory tree); [`StorageFile`] is one open
//! file addressed by byte offset. Three implementations:
//!
//! - [`FileStorage`]: real files through `std::fs` (the only place the engine touches
//!   the file system);
//! - [`MemoryStorage`]: files held in memory, for tests and temporary work;
//! - [`FaultStorage`]: memory files that remember what was synced (file contents
//!   by `sync`, directory entries by `sync_dir`), so a test can simulate a power cut
//!   (unsynced writes dropped or torn, unsynced creates, renames and removes
//!   undone), a failing `fsync` or a full disk, on command or at a seeded random
//!   point.
//!
//! # Contract
//!
//! - `read_at` fills the whole buffer or fails; reading past the end of the file is an
//!   [`std::io::ErrorKind::UnexpectedEof`] error.
//! - `write_at` writes the whole buffer or fails. A write past the end extends the
//!   file (the gap reads as zeros). A write is *not durable* until a later `sync`
//!   returns `Ok`.
//! - `sync` makes every write that returned before it durable. If it fails, the
//!   state of the unsynced writes is unknown; callers must not retry and trust it.
//! - Namespace operations (creating a file, `remove`, `rename`, the directories
//!   `create_dir_all` makes, `remove_dir_all`) are *not durable* until a later
//!   `sync_dir` of the directory holding the changed entry returns `Ok`: the file's
//!   directory, or for a directory its parent (for a rename between directories,
//!   both). A file in a new directory survives a crash only once the directory's
//!   own entry is durable too, so after `create_dir_all` sync each new directory's
//!   parent. A rename within one directory is atomic. If `sync_dir` fails, the
//!   state of those operations is unknown, as for `sync`.
//! - A full device is reported as [`std::io::ErrorKind::StorageFull`] (or `ENOSPC`).

mod fault;
mod file;
mod memory;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fault::{CrashMode, FaultStorage, FaultTrigger};
pub use file::FileStorage;
pub use memory::MemoryStorage;

/// One open file, addressed by byte offset. See the module docs for the contract.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
}

/// How [`Storage::open`] treats an existing or missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must not exist; it is created empty.
    CreateNew,
    /// The file must exist.
    Existing,
    /// Open it, creating it empty if missing.
    OpenOrCreate,
}

/// An exclusive, process-wide lock on a path, released when dropped (or when the
/// owning process dies).
pub trait StorageLock: Send + Sync + Debug {}

/// What [`Storage::try_lock`] found.
#[derive(Debug)]
pub enum LockAttempt {
    /// The lock is ours. `previous` is what the lock file said before we took it
    /// (a stale owner's description, if one had crashed).
    Acquired {
        /// The lock guard.
        guard: Box<dyn StorageLock>,
        /// Previous contents of the lock file, if any.
        previous: Option<String>,
    },
    /// Someone else holds it; `owner` is what the lock file says about them.
    Held {
        /// Contents of the lock file.
        owner: String,
    },
}

/// A namespace of files. See the module docs for the contract.
pub trait Storage: Send + Sync + Debug {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// True when a file exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the files directly inside `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes namespace changes inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The absolute, resolved form of `path` (which must exist).
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// Tries to take the exclusive lock on `path`, writing `owner` into it on success.
    fn try_lock(&self, path: &Path, owner: &str) -> io::Result<LockAttempt>;
    /// Names of the directories directly inside `dir`.
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
}
