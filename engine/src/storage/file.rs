//! Real files through `std::fs`: positional reads and writes (`pread`/`pwrite`),
//! `fdatasync` for `sync`, and an advisory `flock` for the rootpath owner lock —
//! released by the kernel when the owning process dies, which is what lets a stale
//! owner be taken over safely. Files are opened with `O_NOFOLLOW`: a symbolic link
//! in a rootpath (`evil.rzd -> /elsewhere`) is refused, never followed outside it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LockAttempt, OpenMode, Storage, StorageFile, StorageLock};

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileStorage;

impl FileStorage {
    /// A handle on the real file system.
    pub fn new() -> FileStorage {
        FileStorage
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
}

impl StorageFile for RealFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[derive(Debug)]
struct FileLock {
    file: File,
}

impl StorageLock for FileLock {}

impl Drop for FileLock {
    fn drop(&mut self) {
        // An empty lock file tells the next owner this one left cleanly; the
        // kernel releases the lock when the file closes.
        let _ = self.file.set_len(0);
    }
}

/// Options that open a file without following a symbolic link at its path.
fn no_follow() -> OpenOptions {
    let mut opts = OpenOptions::new();
    opts.custom_flags(libc::O_NOFOLLOW);
    opts
}

/// Names the link when an open failed because the path is a symbolic link.
fn refuse_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            e.kind(),
            format!(
                "{} is a symbolic link; raiz opens no links in a rootpath",
                path.display()
            ),
        )
    } else {
        e
    }
}

impl Storage for FileStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut opts = no_follow();
        opts.read(true).write(true);
        match mode {
            OpenMode::CreateNew => {
                opts.create_new(true);
            }
            OpenMode::Existing => {}
            OpenMode::OpenOrCreate => {
                opts.create(true);
            }
        }
        Ok(Arc::new(RealFile {
            file: opts.open(path).map_err(|e| refuse_link(path, e))?,
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        fs::canonicalize(path)
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn try_lock(&self, path: &Path, owner: &str) -> io::Result<LockAttempt> {
        let mut file = no_follow()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| refuse_link(path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let mut previous = String::new();
                file.read_to_string(&mut previous)?;
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(owner.as_bytes())?;
                file.sync_data()?;
                let previous = (!previous.trim().is_empty()).then_some(previous);
                Ok(LockAttempt::Acquired {
                    guard: Box::new(FileLock { file }),
                    previous,
                })
            }
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                file.read_to_string(&mut owner)?;
                Ok(LockAttempt::Held { owner })
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolic_links_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"not yours").unwrap();
        let link = dir.path().join("evil.rzd");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let s = FileStorage::new();
        for mode in [OpenMode::Existing, OpenMode::OpenOrCreate] {
            let e = s.open(&link, mode).unwrap_err();
            assert!(e.to_string().contains("evil.rzd is a symbolic link"), "{e}");
        }
        assert!(s.open(&link, OpenMode::CreateNew).is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");
        // A real file opens as before.
        assert!(s.open(&outside, OpenMode::Existing).is_ok());
    }
}
