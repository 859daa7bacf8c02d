//! Files held in memory. Everything is durable at once: `sync` does nothing.
//!
//! The namespace part ([`Namespace`]) is shared with the fault-injecting storage.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{LockAttempt, OpenMode, Storage, StorageFile, StorageLock};

/// Paths are kept lexically normalised (no `.` or `..`), absolute or not as given.
pub(super) fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// A map of paths to files, plus directories and owner locks.
#[derive(Debug)]
pub(super) struct Namespace<F> {
    pub(super) files: Mutex<HashMap<PathBuf, Arc<F>>>,
    dirs: Mutex<HashSet<PathBuf>>,
    locks: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl<F> Default for Namespace<F> {
    fn default() -> Self {
        Namespace {
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashSet::new()),
            locks: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

#[derive(Debug)]
struct MemLock {
    path: PathBuf,
    locks: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl StorageLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.locks.lock().remove(&self.path);
    }
}

impl<F> Namespace<F> {
    pub(super) fn open_with(
        &self,
        path: &Path,
        mode: OpenMode,
        make: impl FnOnce() -> F,
    ) -> io::Result<Arc<F>> {
        let path = normalise(path);
        let mut files = self.files.lock();
        match (files.get(&path), mode) {
            (Some(_), OpenMode::CreateNew) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: file exists", path.display()),
            )),
            (Some(f), _) => Ok(f.clone()),
            (None, OpenMode::Existing) => Err(not_found(&path)),
            (None, _) => {
                let f = Arc::new(make());
                files.insert(path, f.clone());
                Ok(f)
            }
        }
    }

    pub(super) fn exists(&self, path: &Path) -> bool {
        let path = normalise(path);
        self.files.lock().contains_key(&path) || self.dirs.lock().contains(&path)
    }

    pub(super) fn remove(&self, path: &Path) -> io::Result<()> {
        let path = normalise(path);
        self.files
            .lock()
            .remove(&path)
            .map(|_| ())
            .ok_or_else(|| not_found(&path))
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalise(from), normalise(to));
        let mut files = self.files.lock();
        let f = files.remove(&from).ok_or_else(|| not_found(&from))?;
        files.insert(to, f);
        Ok(())
    }

    pub(super) fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = normalise(dir);
        if !self.dirs.lock().contains(&dir) {
            return Err(not_found(&dir));
        }
        let mut names: Vec<String> = self
            .files
            .lock()
            .keys()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    pub(super) fn create_dir_all(&self, dir: &Path) {
        let mut dirs = self.dirs.lock();
        let mut p = normalise(dir);
        loop {
            dirs.insert(p.clone());
            if !p.pop() {
                break;
            }
        }
    }

    pub(super) fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = normalise(dir);
        let dirs = self.dirs.lock();
        if !dirs.contains(&dir) {
            return Err(not_found(&dir));
        }
        let mut names: Vec<String> = dirs
            .iter()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    pub(super) fn remove_dir_all(&self, dir: &Path) {
        let dir = normalise(dir);
        self.files.lock().retain(|p, _| !p.starts_with(&dir));
        self.dirs.lock().retain(|p| !p.starts_with(&dir));
    }

    pub(super) fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        if self.exists(path) {
            Ok(normalise(path))
        } else {
            Err(not_found(path))
        }
    }

    pub(super) fn try_lock(&self, path: &Path, owner: &str) -> LockAttempt {
        let path = normalise(path);
        let mut locks = self.locks.lock();
        if let Some(held) = locks.get(&path) {
            return LockAttempt::Held {
                owner: held.clone(),
            };
        }
        locks.insert(path.clone(), owner.to_owned());
        LockAttempt::Acquired {
            guard: Box::new(MemLock {
                path,
                locks: self.locks.clone(),
            }),
            previous: None,
        }
    }
}

/// Storage held entirely in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    ns: Arc<Namespace<MemFile>>,
}

impl MemoryStorage {
    /// An empty in-memory namespace.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }
}

/// One in-memory file.
#[derive(Debug, Default)]
pub(super) struct MemFile {
    data: RwLock<Vec<u8>>,
}

pub(super) fn read_from(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let end = offset
        .checked_add(buf.len() as u64)
        .filter(|&e| e <= data.len() as u64)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"))?;
    buf.copy_from_slice(&data[offset as usize..end as usize]);
    Ok(())
}

pub(super) fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset as usize..end].copy_from_slice(bytes);
}

impl StorageFile for MemFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from(&self.data.read(), offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_into(&mut self.data.write(), offset, data);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.data.write().resize(len as usize, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let f = self.ns.open_with(path, mode, MemFile::default)?;
        Ok(f)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.ns.exists(path))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.ns.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.ns.rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.ns.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.ns.create_dir_all(dir);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.ns.canonicalize(path)
    }

    fn try_lock(&self, path: &Path, owner: &str) -> io::Result<LockAttempt> {
        Ok(self.ns.try_lock(path, owner))
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.ns.list_dirs(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.ns.remove_dir_all(dir);
        Ok(())
    }
}
