//! A fault-injecting storage for tests.
//!
//! Each file keeps two images: what the program sees (every completed write) and
//! what would survive a power cut (writes followed by a successful `sync`). Writes in
//! between are kept as a pending list, so [`FaultStorage::crash`] can rebuild what a
//! disk might hold after the cut: pending writes dropped, applied, or torn part-way.
//!
//! Faults, on command or armed to fire after a number of operations:
//! - a failing `sync` — the pending writes are then forgotten, as Linux does with
//!   dirty pages after a failed `fsync` (they stay visible until the "crash");
//! - a full disk — writes that would grow the namespace past a capacity fail with
//!   [`io::ErrorKind::StorageFull`];
//! - a power cut — every later write and sync fails; call `crash` to get the image;
//! - a torn write — the next write lands only its first half.
//!
//! Namespace operations (create, rename, remove) are treated as durable at once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::memory::{read_from, write_into, Namespace};
use super::{LockAttempt, OpenMode, Storage, StorageFile};

/// A fault that can be armed to fire after a number of storage operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTrigger {
    /// The sync at that point fails.
    FailSync,
    /// From that point the disk is full (capacity = current size).
    DiskFull,
    /// From that point every write and sync fails, as if power was cut.
    PowerCut,
}

/// What a simulated crash does with writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Keep everything written (a killed process: the OS still flushes its cache).
    KeepAll,
    /// Drop every unsynced write (a power cut with a disk that honours syncs).
    DropUnsynced,
    /// Each unsynced write is, at random from `seed`, dropped, kept, or torn at a
    /// 512-byte boundary.
    Random {
        /// Seed for the choices.
        seed: u64,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug)]
struct State {
    ops: u64,
    armed: Option<(u64, FaultTrigger)>,
    fail_syncs: u32,
    capacity: Option<u64>,
    tear_next: bool,
    powered_off: bool,
    injected: u64,
}

#[derive(Debug)]
struct FaultFile {
    seen: RwLock<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
    pending: Mutex<Vec<Pending>>,
    storage: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    ns: Namespace<FaultFile>,
}

/// Storage in memory that can simulate crashes and device faults. Cloning gives
/// another handle on the same files.
#[derive(Debug, Clone)]
pub struct FaultStorage {
    shared: Arc<Shared>,
}

impl Default for FaultStorage {
    fn default() -> Self {
        FaultStorage::new()
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("{what} (injected fault)"))
}

impl FaultStorage {
    /// An empty namespace with no faults armed.
    pub fn new() -> FaultStorage {
        FaultStorage {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ops: 0,
                    armed: None,
                    fail_syncs: 0,
                    capacity: None,
                    tear_next: false,
                    powered_off: false,
                    injected: 0,
                }),
                ns: Namespace::default(),
            }),
        }
    }

    /// The next `n` syncs fail.
    pub fn fail_next_syncs(&self, n: u32) {
        self.shared.state.lock().fail_syncs = n;
    }

    /// Writes that would make the namespace larger than `bytes` fail with a full
    /// disk. `None` lifts the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.shared.state.lock().capacity = bytes;
    }

    /// Fills the disk: from now on nothing may grow.
    pub fn fill_disk(&self) {
        let used = self.used_bytes();
        self.set_capacity(Some(used));
    }

    /// The next write lands only its first half (and reports success).
    pub fn tear_next_write(&self) {
        self.shared.state.lock().tear_next = true;
    }

    /// Arms `trigger` to fire at the `after_ops`-th write or sync from now.
    pub fn arm(&self, trigger: FaultTrigger, after_ops: u64) {
        let mut st = self.shared.state.lock();
        st.armed = Some((st.ops + after_ops.max(1), trigger));
    }

    /// Arms a fault chosen from `seed`: its kind and a point within the next
    /// `within_ops` operations. Returns what was armed.
    pub fn arm_seeded(&self, seed: u64, within_ops: u64) -> (FaultTrigger, u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let trigger = match rng.random_range(0..3) {
            0 => FaultTrigger::FailSync,
            1 => FaultTrigger::DiskFull,
            _ => FaultTrigger::PowerCut,
        };
        let at = rng.random_range(1..=within_ops.max(1));
        self.arm(trigger, at);
        (trigger, at)
    }

    /// Operations (writes and syncs) seen so far.
    pub fn ops(&self) -> u64 {
        self.shared.state.lock().ops
    }

    /// How many faults have been injected so far.
    pub fn injected_faults(&self) -> u64 {
        self.shared.state.lock().injected
    }

    /// Total bytes of all files as the program sees them.
    pub fn used_bytes(&self) -> u64 {
        self.shared
            .ns
            .files
            .lock()
            .values()
            .map(|f| f.seen.read().len() as u64)
            .sum()
    }

    /// Bytes written but not yet synced, over all files.
    pub fn unsynced_writes(&self) -> usize {
        self.shared
            .ns
            .files
            .lock()
            .values()
            .map(|f| f.pending.lock().len())
            .sum()
    }

    /// Flips one byte of a file in both images (corruption on the medium).
    pub fn corrupt_byte(&self, path: &Path, offset: u64) -> io::Result<()> {
        let f = self
            .shared
            .ns
            .open_with(path, OpenMode::Existing, || unreachable!())?;
        for img in [&mut *f.seen.write(), &mut *f.durable.lock()] {
            if let Some(b) = img.get_mut(offset as usize) {
                *b ^= 0x5a;
            }
        }
        Ok(())
    }

    /// What a disk would hold after a crash now: a new storage, with no faults
    /// armed, whose files are the durable images plus what `mode` keeps of the
    /// unsynced writes. This handle is left as it was.
    pub fn crash(&self, mode: CrashMode) -> FaultStorage {
        let out = FaultStorage::new();
        let mut rng = StdRng::seed_from_u64(match mode {
            CrashMode::Random { seed } => seed,
            _ => 0,
        });
        let files = self.shared.ns.files.lock();
        let mut paths: Vec<&PathBuf> = files.keys().collect();
        paths.sort();
        for path in paths {
            let f = &files[path];
            let mut img = match mode {
                CrashMode::KeepAll => f.seen.read().clone(),
                _ => f.durable.lock().clone(),
            };
            if let CrashMode::Random { .. } = mode {
                for p in f.pending.lock().iter() {
                    match p {
                        Pending::SetLen(len) => {
                            if rng.random_bool(0.5) {
                                img.resize(*len as usize, 0);
                            }
                        }
                        Pending::Write(off, data) => match rng.random_range(0..3) {
                            0 => {}
                            1 => write_into(&mut img, *off, data),
                            _ => {
                                let sectors = data.len().div_ceil(512);
                                let keep =
                                    (rng.random_range(0..sectors.max(1)) * 512).min(data.len());
                                write_into(&mut img, *off, &data[..keep]);
                            }
                        },
                    }
                }
            }
            let nf = out
                .shared
                .ns
                .open_with(path, OpenMode::CreateNew, || {
                    FaultFile::new(out.shared.clone())
                })
                .expect("fresh namespace");
            *nf.seen.write() = img.clone();
            *nf.durable.lock() = img;
        }
        drop(files);
        // Directories are durable at once.
        for dir in self.dirs() {
            out.shared.ns.create_dir_all(&dir);
        }
        out
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.shared
            .ns
            .files
            .lock()
            .keys()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect()
    }

    /// Registers an operation; returns the fault to inject now, if any.
    fn tick(&self) -> Option<FaultTrigger> {
        self.shared.tick()
    }
}

impl Shared {
    fn tick(&self) -> Option<FaultTrigger> {
        let used = self.used();
        let mut st = self.state.lock();
        st.ops += 1;
        if let Some((at, trigger)) = st.armed {
            if st.ops >= at {
                st.armed = None;
                st.injected += 1;
                match trigger {
                    FaultTrigger::PowerCut => st.powered_off = true,
                    FaultTrigger::FailSync => st.fail_syncs += 1,
                    FaultTrigger::DiskFull => st.capacity = Some(used),
                }
                return Some(trigger);
            }
        }
        None
    }

    fn used(&self) -> u64 {
        self.ns
            .files
            .lock()
            .values()
            .map(|f| f.seen.read().len() as u64)
            .sum()
    }
}

impl FaultFile {
    fn new(storage: Arc<Shared>) -> FaultFile {
        FaultFile {
            seen: RwLock::new(Vec::new()),
            durable: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            storage,
        }
    }

    fn check_growth(&self, new_len: u64) -> io::Result<()> {
        let cur = self.seen.read().len() as u64;
        if new_len <= cur {
            return Ok(());
        }
        let cap = self.storage.state.lock().capacity;
        if let Some(cap) = cap {
            let used = self.storage.used();
            if used + (new_len - cur) > cap {
                self.storage.state.lock().injected += 1;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (injected fault)",
                ));
            }
        }
        Ok(())
    }
}

impl StorageFile for FaultFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from(&self.seen.read(), offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.storage.tick();
        let tear = {
            let mut st = self.storage.state.lock();
            if st.powered_off {
                return Err(injected("power lost"));
            }
            std::mem::take(&mut st.tear_next)
        };
        self.check_growth(offset + data.len() as u64)?;
        let data = if tear { &data[..data.len() / 2] } else { data };
        write_into(&mut self.seen.write(), offset, data);
        self.pending
            .lock()
            .push(Pending::Write(offset, data.to_vec()));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.seen.read().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.storage.state.lock().powered_off {
            return Err(injected("power lost"));
        }
        self.check_growth(len)?;
        self.seen.write().resize(len as usize, 0);
        self.pending.lock().push(Pending::SetLen(len));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.storage.tick();
        {
            let mut st = self.storage.state.lock();
            if st.powered_off {
                return Err(injected("power lost"));
            }
            if st.fail_syncs > 0 {
                st.fail_syncs -= 1;
                drop(st);
                // Like Linux after a failed fsync: the dirty data is dropped from the
                // durable future, though the program still sees it until a crash.
                self.pending.lock().clear();
                return Err(injected("fsync failed"));
            }
        }
        let mut durable = self.durable.lock();
        for p in self.pending.lock().drain(..) {
            match p {
                Pending::Write(off, data) => write_into(&mut durable, off, &data),
                Pending::SetLen(len) => durable.resize(len as usize, 0),
            }
        }
        Ok(())
    }
}

impl Storage for FaultStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let shared = self.shared.clone();
        let f = self
            .shared
            .ns
            .open_with(path, mode, move || FaultFile::new(shared))?;
        Ok(f)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.shared.ns.exists(path))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.shared.ns.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.tick() == Some(FaultTrigger::PowerCut) || self.shared.state.lock().powered_off {
            return Err(injected("power lost"));
        }
        self.shared.ns.rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.shared.ns.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.ns.create_dir_all(dir);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.shared.ns.canonicalize(path)
    }

    fn try_lock(&self, path: &Path, owner: &str) -> io::Result<LockAttempt> {
        Ok(self.shared.ns.try_lock(path, owner))
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.shared.ns.list_dirs(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.ns.remove_dir_all(dir);
        Ok(())
    }
}
