//! A fault-injecting storage for tests.
//!
//! # What the program sees, and what a crash leaves
//!
//! The program always sees the current state: every completed write and every
//! namespace change, as [`super::MemoryStorage`] would show them. Separately the
//! storage keeps what would survive a power cut, in two parts:
//!
//! - **File contents**, per file node (an inode, shared by every name of the file):
//!   a durable image, plus the writes and length changes made since the last
//!   successful `sync` of that file, in order. A `sync` applies them to the durable
//!   image.
//! - **The namespace**, per directory: its durable entries (name → file node or
//!   subdirectory), plus the namespace operations done in it since its last
//!   successful `sync_dir`, in order. Each operation goes in the list of the
//!   directory that holds the entry it changes:
//!   - creating a file (`open` with [`OpenMode::CreateNew`] or
//!     [`OpenMode::OpenOrCreate`] on a missing name) and `remove` go in the file's
//!     directory;
//!   - a `rename` within one directory is a single operation of that directory,
//!     atomic: after a crash the file has its old name or its new one, never both
//!     or neither. A `rename` between directories is a link in the target
//!     directory and an unlink in the source directory, each durable on its own
//!     (after a crash the file may have both names, or neither);
//!   - `create_dir_all` records the creation of each missing component in that
//!     component's parent; `remove_dir_all` records the removal (of the directory
//!     and everything under it) in the removed directory's parent.
//!
//!   `sync_dir(dir)` applies the pending operations of `dir` to its durable
//!   entries, in order. The roots (`/`, and the empty path of relative names)
//!   always exist.
//!
//! After a crash a file or directory exists only if it can be reached from a root
//! through durable entries: a file whose directory's creation never became durable
//! in the directory's parent vanishes with it, even if the file's own directory was
//! synced. A file node that no durable name reaches is gone. A directory removed
//! and created again is a new directory: the old one's entries never show in it.
//!
//! [`FaultStorage::crash`] builds that image as a new storage. What it does with
//! the operations still pending depends on the [`CrashMode`].
//!
//! Creating a file in a directory that does not exist (in the program's view)
//! fails with [`io::ErrorKind::NotFound`], as on a real file system; so does
//! `sync_dir` of a missing directory.
//!
//! # Faults
//!
//! Faults happen on command or armed to fire at the n-th *operation* from now,
//! counting writes, file `sync`s, `sync_dir`s and `rename`s:
//! - a failing sync — the next `sync` or `sync_dir` fails, and what it would have
//!   made durable is forgotten, as Linux does with dirty pages after a failed
//!   `fsync` (the writes or namespace operations stay visible to the program until
//!   the crash);
//! - a full disk — writes or length changes that would grow the files past a
//!   capacity fail with [`io::ErrorKind::StorageFull`];
//! - a power cut — the operation where it fires and every later write, length
//!   change, sync, `sync_dir` and namespace change fail (reads, and opening
//!   existing files, still work); call `crash` to get the image;
//! - a torn write — the next write that lands keeps only its first half (and
//!   reports success).
//!
//! [`FaultStorage::injected_faults`] counts the faults the program actually met:
//! each failed `sync` or `sync_dir`, each write or length change refused for a full
//! disk, each operation refused after a power cut, each torn write. Arming a
//! trigger or filling the disk counts nothing by itself, so when the count is zero
//! every operation succeeded and wrote exactly what it was given.
//!
//! File handles do not keep their storage alive: once every [`FaultStorage`]
//! handle is dropped its state is freed, and file handles still open go on as
//! plain memory files, with no faults.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::memory::{normalise, read_from, write_into, Namespace};
use super::{LockAttempt, OpenMode, Storage, StorageFile};

/// A fault that can be armed to fire after a number of storage operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTrigger {
    /// The sync (of a file or a directory) at that point, or the next one, fails.
    FailSync,
    /// From that point the disk is full (capacity = current size).
    DiskFull,
    /// From that point every write, sync and namespace change fails, as if power
    /// was cut.
    PowerCut,
}

/// What a simulated crash does with what was not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// A killed process: the OS still writes out its cache. Every pending
    /// namespace operation is applied, and every file is as the program saw it
    /// (including writes a failed `sync` dropped from the durable future: the
    /// cache still holds them). Namespace operations forgotten by a failed
    /// `sync_dir` are not applied.
    KeepAll,
    /// A power cut on a disk that honours syncs: every unsynced write and every
    /// namespace operation not covered by a `sync_dir` is dropped.
    DropUnsynced,
    /// A power cut at a random point, from `seed` (the same seed on the same state
    /// gives the same image). Per directory, a random-length prefix of its pending
    /// namespace operations is applied (journaled file systems keep them in
    /// order); each unsynced write is dropped, kept, or torn at a 512-byte
    /// boundary, and each unsynced length change is kept or dropped.
    Random {
        /// Seed for the choices.
        seed: u64,
    },
}

/// Salt for the namespace choices of a random crash, so the content choices of a
/// seed do not depend on how many directories had pending operations.
const NAMESPACE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

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

/// A file node: what the program sees, the durable image, and the writes between.
#[derive(Debug)]
struct FaultFile {
    seen: RwLock<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
    pending: Mutex<Vec<Pending>>,
    /// Weak, so the storage's namespace (which owns the files) is not kept alive
    /// by its own files.
    storage: Weak<Shared>,
}

type DirId = u64;

/// A durable directory entry.
#[derive(Debug, Clone)]
enum Entry {
    File(Arc<FaultFile>),
    Dir(DirId),
}

/// A namespace operation not yet made durable, in the list of the directory that
/// holds the entry it changes.
#[derive(Debug, Clone)]
enum NsOp {
    /// A new name for a file node (a create, or the target of a rename from
    /// another directory).
    Link {
        name: OsString,
        node: Arc<FaultFile>,
    },
    /// A name removed (a remove, or the source of a rename to another directory).
    Unlink { name: OsString },
    /// A rename within the directory.
    Rename {
        from: OsString,
        to: OsString,
        node: Arc<FaultFile>,
    },
    /// A new subdirectory.
    Mkdir { name: OsString, id: DirId },
    /// A subdirectory removed with everything under it.
    Rmdir { name: OsString },
}

type Entries = BTreeMap<OsString, Entry>;

fn apply(entries: &mut Entries, op: &NsOp) {
    match op {
        NsOp::Link { name, node } => {
            entries.insert(name.clone(), Entry::File(node.clone()));
        }
        NsOp::Unlink { name } => {
            if let Some(Entry::File(_)) = entries.get(name) {
                entries.remove(name);
            }
        }
        NsOp::Rename { from, to, node } => {
            if let Some(Entry::File(_)) = entries.get(from) {
                entries.remove(from);
            }
            entries.insert(to.clone(), Entry::File(node.clone()));
        }
        NsOp::Mkdir { name, id } => {
            entries.insert(name.clone(), Entry::Dir(*id));
        }
        NsOp::Rmdir { name } => {
            if let Some(Entry::Dir(_)) = entries.get(name) {
                entries.remove(name);
            }
        }
    }
}

/// One directory: its durable entries and the operations pending in it.
#[derive(Debug, Default)]
struct DirNode {
    entries: Entries,
    pending: Vec<NsOp>,
}

/// The directories: which node each path names now, and every node that may
/// still matter after a crash.
#[derive(Debug, Default)]
struct Tree {
    next_id: DirId,
    /// The program's view: directory path -> node (roots included).
    current: HashMap<PathBuf, DirId>,
    /// Paths without a parent; always exist, always durable.
    roots: BTreeMap<PathBuf, DirId>,
    nodes: BTreeMap<DirId, DirNode>,
}

impl Tree {
    fn alloc(&mut self) -> DirId {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, DirNode::default());
        id
    }

    /// The node of directory `path` (normalised) in the program's view; roots are
    /// made on first use.
    fn dir(&mut self, path: &Path) -> Option<DirId> {
        if path.parent().is_none() {
            if let Some(&id) = self.roots.get(path) {
                return Some(id);
            }
            let id = self.alloc();
            self.roots.insert(path.to_path_buf(), id);
            self.current.insert(path.to_path_buf(), id);
            return Some(id);
        }
        self.current.get(path).copied()
    }

    fn record(&mut self, dir: DirId, op: NsOp) {
        self.nodes
            .get_mut(&dir)
            .expect("a directory in view has a node")
            .pending
            .push(op);
    }

    /// Drops the nodes that can matter no more: neither in the program's view nor
    /// reachable from one through durable entries or pending creations.
    fn collect(&mut self) {
        let mut live: HashSet<DirId> = self.current.values().copied().collect();
        let mut stack: Vec<DirId> = live.iter().copied().collect();
        while let Some(id) = stack.pop() {
            let Some(node) = self.nodes.get(&id) else {
                continue;
            };
            let durable = node.entries.values().filter_map(|e| match e {
                Entry::Dir(d) => Some(*d),
                Entry::File(_) => None,
            });
            let pending = node.pending.iter().filter_map(|op| match op {
                NsOp::Mkdir { id, .. } => Some(*id),
                _ => None,
            });
            for d in durable.chain(pending).collect::<Vec<_>>() {
                if live.insert(d) {
                    stack.push(d);
                }
            }
        }
        self.nodes.retain(|id, _| live.contains(id));
    }

    fn pending_ops(&self) -> usize {
        self.nodes.values().map(|n| n.pending.len()).sum()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Directory nodes and the durable namespace. Taken before `ns`'s locks, and
    /// held across every namespace change so both views change in the same order.
    tree: Mutex<Tree>,
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

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

/// A normalised path's directory and name.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )),
    }
}

impl FaultStorage {
    /// How many handles on this namespace exist (clones, and a database's
    /// own copy while it is open): tests use it to prove a dropped
    /// database let go of its storage.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

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
                tree: Mutex::new(Tree::default()),
                ns: Namespace::default(),
            }),
        }
    }

    /// The next `n` syncs (of files or directories) fail.
    pub fn fail_next_syncs(&self, n: u32) {
        self.shared.state.lock().fail_syncs = n;
    }

    /// Writes that would make the files larger than `bytes` in all fail with a
    /// full disk. `None` lifts the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.shared.state.lock().capacity = bytes;
    }

    /// Fills the disk: from now on nothing may grow.
    pub fn fill_disk(&self) {
        let used = self.used_bytes();
        self.set_capacity(Some(used));
    }

    /// The next write that lands keeps only its first half (and reports success).
    pub fn tear_next_write(&self) {
        self.shared.state.lock().tear_next = true;
    }

    /// Arms `trigger` to fire at the `after_ops`-th operation (write, `sync`,
    /// `sync_dir` or `rename`) from now.
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

    /// Operations (writes, `sync`s, `sync_dir`s and `rename`s) seen so far.
    pub fn ops(&self) -> u64 {
        self.shared.state.lock().ops
    }

    /// How many faults the program has met so far (see the module docs): failed
    /// syncs, writes refused for a full disk, operations refused after a power
    /// cut, torn writes.
    pub fn injected_faults(&self) -> u64 {
        self.shared.state.lock().injected
    }

    /// Total bytes of all files as the program sees them.
    pub fn used_bytes(&self) -> u64 {
        self.shared.used()
    }

    /// Writes and length changes not yet synced, over all files.
    pub fn unsynced_writes(&self) -> usize {
        self.shared
            .ns
            .files
            .lock()
            .values()
            .map(|f| f.pending.lock().len())
            .sum()
    }

    /// Namespace operations not yet made durable by a `sync_dir`, over all
    /// directories.
    pub fn unsynced_namespace_ops(&self) -> usize {
        self.shared.tree.lock().pending_ops()
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
    /// armed and nothing pending, holding the durable namespace plus what `mode`
    /// keeps of the pending namespace operations, and in it each file's durable
    /// image plus what `mode` keeps of its unsynced writes. This handle is left as
    /// it was.
    pub fn crash(&self, mode: CrashMode) -> FaultStorage {
        let seed = match mode {
            CrashMode::Random { seed } => seed,
            _ => 0,
        };
        // The namespace: each directory's durable entries plus a prefix of its
        // pending operations …
        let tree = self.shared.tree.lock();
        let mut ns_rng = StdRng::seed_from_u64(seed ^ NAMESPACE_SALT);
        let mut after: BTreeMap<DirId, Entries> = BTreeMap::new();
        for (&id, node) in &tree.nodes {
            let keep = match mode {
                CrashMode::KeepAll => node.pending.len(),
                CrashMode::DropUnsynced => 0,
                CrashMode::Random { .. } => ns_rng.random_range(0..=node.pending.len()),
            };
            let mut entries = node.entries.clone();
            for op in &node.pending[..keep] {
                apply(&mut entries, op);
            }
            after.insert(id, entries);
        }
        // … and what of it can be reached from a root.
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut files: Vec<(PathBuf, Arc<FaultFile>)> = Vec::new();
        let mut stack: Vec<(PathBuf, DirId)> =
            tree.roots.iter().map(|(p, &id)| (p.clone(), id)).collect();
        drop(tree);
        while let Some((path, id)) = stack.pop() {
            for (name, entry) in after.get(&id).into_iter().flatten() {
                match entry {
                    Entry::File(node) => files.push((path.join(name), node.clone())),
                    Entry::Dir(d) => stack.push((path.join(name), *d)),
                }
            }
            dirs.push(path);
        }
        dirs.sort();
        files.sort_by(|a, b| a.0.cmp(&b.0));

        let out = FaultStorage::new();
        let mut tree = out.shared.tree.lock();
        for dir in &dirs {
            out.shared.ns.create_dir_all(dir);
            if dir.parent().is_none() {
                tree.dir(dir);
                continue;
            }
            let (parent, name) = split(dir).expect("a directory below a root");
            let parent = tree.dir(parent).expect("parents come first");
            let id = tree.alloc();
            tree.current.insert(dir.clone(), id);
            let node = tree.nodes.get_mut(&parent).expect("node of a directory");
            node.entries.insert(name.to_owned(), Entry::Dir(id));
        }
        // File contents, once per node (in the order of its first name).
        let mut rng = StdRng::seed_from_u64(seed);
        let mut made: HashMap<*const FaultFile, Arc<FaultFile>> = HashMap::new();
        for (path, node) in &files {
            let nf = made
                .entry(Arc::as_ptr(node))
                .or_insert_with(|| {
                    let img = node.image_after(mode, &mut rng);
                    let nf = FaultFile::new(Arc::downgrade(&out.shared));
                    *nf.seen.write() = img.clone();
                    *nf.durable.lock() = img;
                    Arc::new(nf)
                })
                .clone();
            let (parent, name) = split(path).expect("a file name");
            let parent = tree.dir(parent).expect("a directory reached");
            let node = tree.nodes.get_mut(&parent).expect("node of a directory");
            node.entries
                .insert(name.to_owned(), Entry::File(nf.clone()));
            out.shared.ns.files.lock().insert(path.clone(), nf);
        }
        drop(tree);
        out
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
                // Counted when the program meets it, not here.
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

    /// Fails (and counts a fault) once the power is off.
    fn check_power(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.powered_off {
            st.injected += 1;
            return Err(injected("power lost"));
        }
        Ok(())
    }

    /// Takes one pending sync failure, if any (and counts it).
    fn take_sync_failure(&self) -> bool {
        let mut st = self.state.lock();
        if st.fail_syncs > 0 {
            st.fail_syncs -= 1;
            st.injected += 1;
            true
        } else {
            false
        }
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
    fn new(storage: Weak<Shared>) -> FaultFile {
        FaultFile {
            seen: RwLock::new(Vec::new()),
            durable: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            storage,
        }
    }

    fn check_growth(&self, storage: &Shared, new_len: u64) -> io::Result<()> {
        let cur = self.seen.read().len() as u64;
        if new_len <= cur {
            return Ok(());
        }
        let cap = storage.state.lock().capacity;
        if let Some(cap) = cap {
            let used = storage.used();
            if used + (new_len - cur) > cap {
                storage.state.lock().injected += 1;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (injected fault)",
                ));
            }
        }
        Ok(())
    }

    /// The contents after a crash in `mode`.
    fn image_after(&self, mode: CrashMode, rng: &mut StdRng) -> Vec<u8> {
        let mut img = match mode {
            CrashMode::KeepAll => return self.seen.read().clone(),
            _ => self.durable.lock().clone(),
        };
        if let CrashMode::Random { .. } = mode {
            for p in self.pending.lock().iter() {
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
                            let keep = (rng.random_range(0..sectors.max(1)) * 512).min(data.len());
                            write_into(&mut img, *off, &data[..keep]);
                        }
                    },
                }
            }
        }
        img
    }
}

impl StorageFile for FaultFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from(&self.seen.read(), offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut tear = false;
        if let Some(storage) = self.storage.upgrade() {
            storage.tick();
            storage.check_power()?;
            self.check_growth(&storage, offset + data.len() as u64)?;
            let mut st = storage.state.lock();
            tear = std::mem::take(&mut st.tear_next);
            if tear {
                st.injected += 1;
            }
        }
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
        if let Some(storage) = self.storage.upgrade() {
            storage.check_power()?;
            self.check_growth(&storage, len)?;
        }
        self.seen.write().resize(len as usize, 0);
        self.pending.lock().push(Pending::SetLen(len));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        if let Some(storage) = self.storage.upgrade() {
            storage.tick();
            storage.check_power()?;
            if storage.take_sync_failure() {
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
        let path = normalise(path);
        let mut tree = self.shared.tree.lock();
        let exists = self.shared.ns.files.lock().contains_key(&path);
        let mut dir = None;
        if !exists && mode != OpenMode::Existing {
            let (parent, name) = split(&path)?;
            let id = tree.dir(parent).ok_or_else(|| not_found(parent))?;
            self.shared.check_power()?;
            dir = Some((id, name.to_owned()));
        }
        let storage = Arc::downgrade(&self.shared);
        let f = self
            .shared
            .ns
            .open_with(&path, mode, move || FaultFile::new(storage))?;
        if let Some((id, name)) = dir {
            tree.record(
                id,
                NsOp::Link {
                    name,
                    node: f.clone(),
                },
            );
        }
        Ok(f)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.shared.ns.exists(path))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let path = normalise(path);
        let mut tree = self.shared.tree.lock();
        if !self.shared.ns.files.lock().contains_key(&path) {
            return Err(not_found(&path));
        }
        self.shared.check_power()?;
        self.shared.ns.remove(&path)?;
        let (parent, name) = split(&path)?;
        if let Some(id) = tree.dir(parent) {
            tree.record(
                id,
                NsOp::Unlink {
                    name: name.to_owned(),
                },
            );
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalise(from), normalise(to));
        let mut tree = self.shared.tree.lock();
        self.tick();
        self.shared.check_power()?;
        let node = self
            .shared
            .ns
            .files
            .lock()
            .get(&from)
            .cloned()
            .ok_or_else(|| not_found(&from))?;
        let (from_dir, from_name) = split(&from)?;
        let (to_dir, to_name) = split(&to)?;
        let to_id = tree.dir(to_dir).ok_or_else(|| not_found(to_dir))?;
        let from_id = tree.dir(from_dir);
        self.shared.ns.rename(&from, &to)?;
        let (from_name, to_name) = (from_name.to_owned(), to_name.to_owned());
        if from_id == Some(to_id) {
            tree.record(
                to_id,
                NsOp::Rename {
                    from: from_name,
                    to: to_name,
                    node,
                },
            );
        } else {
            tree.record(
                to_id,
                NsOp::Link {
                    name: to_name,
                    node,
                },
            );
            if let Some(id) = from_id {
                tree.record(id, NsOp::Unlink { name: from_name });
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.shared.ns.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = normalise(dir);
        let mut tree = self.shared.tree.lock();
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .filter(|p| p.parent().is_some() && !tree.current.contains_key(*p))
            .collect();
        if !missing.is_empty() {
            self.shared.check_power()?;
        }
        missing.reverse();
        for p in missing {
            let (parent, name) = split(p)?;
            let parent = tree.dir(parent).expect("parents are made first");
            let id = tree.alloc();
            tree.current.insert(p.to_path_buf(), id);
            tree.record(
                parent,
                NsOp::Mkdir {
                    name: name.to_owned(),
                    id,
                },
            );
        }
        self.shared.ns.create_dir_all(&dir);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = normalise(dir);
        let mut tree = self.shared.tree.lock();
        let id = tree.dir(&dir).ok_or_else(|| not_found(&dir))?;
        self.tick();
        self.shared.check_power()?;
        let node = tree.nodes.get_mut(&id).expect("node of a directory");
        if self.shared.take_sync_failure() {
            // As with a file: what it would have made durable is forgotten.
            node.pending.clear();
            tree.collect();
            return Err(injected("directory fsync failed"));
        }
        for op in std::mem::take(&mut node.pending) {
            apply(&mut node.entries, &op);
        }
        tree.collect();
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
        let dir = normalise(dir);
        let mut tree = self.shared.tree.lock();
        let has_files = self
            .shared
            .ns
            .files
            .lock()
            .keys()
            .any(|p| p.starts_with(&dir));
        let is_root = dir.parent().is_none();
        if has_files || tree.current.contains_key(&dir) {
            self.shared.check_power()?;
        }
        if is_root {
            // A root stays; everything in it goes.
            let root = tree.dir(&dir).expect("roots always exist");
            let files: Vec<OsString> = self
                .shared
                .ns
                .files
                .lock()
                .keys()
                .filter(|p| p.parent() == Some(dir.as_path()))
                .filter_map(|p| p.file_name().map(OsStr::to_owned))
                .collect();
            let subdirs: Vec<OsString> = tree
                .current
                .keys()
                .filter(|p| p.parent() == Some(dir.as_path()))
                .filter_map(|p| p.file_name().map(OsStr::to_owned))
                .collect();
            for name in files {
                tree.record(root, NsOp::Unlink { name });
            }
            for name in subdirs {
                tree.record(root, NsOp::Rmdir { name });
            }
            tree.current
                .retain(|p, _| *p == dir || !p.starts_with(&dir));
        } else if tree.current.contains_key(&dir) {
            tree.current.retain(|p, _| !p.starts_with(&dir));
            let (parent, name) = split(&dir)?;
            if let Some(parent) = tree.dir(parent) {
                tree.record(
                    parent,
                    NsOp::Rmdir {
                        name: name.to_owned(),
                    },
                );
            }
        }
        self.shared.ns.remove_dir_all(&dir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    /// Creates `path` holding `data`, synced (the file, not its directory).
    fn put(s: &FaultStorage, path: &str, data: &[u8]) -> Arc<dyn StorageFile> {
        let f = s.open(p(path), OpenMode::CreateNew).unwrap();
        f.write_at(0, data).unwrap();
        f.sync().unwrap();
        f
    }

    fn contents(s: &FaultStorage, path: &str) -> Option<Vec<u8>> {
        let f = match s.open(p(path), OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => panic!("{path}: {e}"),
        };
        let mut buf = vec![0; f.len().unwrap() as usize];
        f.read_at(0, &mut buf).unwrap();
        Some(buf)
    }

    /// A storage with `/d` created and durable.
    fn with_dir() -> FaultStorage {
        let s = FaultStorage::new();
        s.create_dir_all(p("/d")).unwrap();
        s.sync_dir(p("/")).unwrap();
        s
    }

    /// Everything a storage holds: directories, then files with their contents.
    fn snapshot(s: &FaultStorage) -> (Vec<PathBuf>, Vec<(PathBuf, Vec<u8>)>) {
        let mut dirs: Vec<PathBuf> = s.shared.tree.lock().current.keys().cloned().collect();
        dirs.sort();
        let mut files: Vec<PathBuf> = s.shared.ns.files.lock().keys().cloned().collect();
        files.sort();
        let files = files
            .into_iter()
            .map(|f| {
                let c = contents(s, f.to_str().unwrap()).unwrap();
                (f, c)
            })
            .collect();
        (dirs, files)
    }

    #[test]
    fn a_synced_file_in_an_unsynced_directory_needs_the_directory_sync() {
        let s = with_dir();
        put(&s, "/d/f", b"hello");
        assert_eq!(s.unsynced_namespace_ops(), 1);
        assert_eq!(contents(&s, "/d/f").unwrap(), b"hello");
        let lost = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&lost, "/d/f"), None);
        assert!(lost.exists(p("/d")).unwrap());
        assert_eq!(lost.list(p("/d")).unwrap(), Vec::<String>::new());
        let killed = s.crash(CrashMode::KeepAll);
        assert_eq!(contents(&killed, "/d/f").unwrap(), b"hello");
        assert_eq!(s.injected_faults(), 0);
    }

    #[test]
    fn sync_dir_makes_a_create_durable() {
        let s = with_dir();
        let f = put(&s, "/d/f", b"hello");
        s.sync_dir(p("/d")).unwrap();
        assert_eq!(s.unsynced_namespace_ops(), 0);
        f.write_at(5, b" world").unwrap();
        let after = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&after, "/d/f").unwrap(), b"hello");
        assert_eq!(after.list(p("/d")).unwrap(), vec!["f".to_owned()]);
        // The image has nothing pending: a second crash keeps it all.
        assert_eq!(after.unsynced_namespace_ops(), 0);
        let again = after.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&again, "/d/f").unwrap(), b"hello");
    }

    #[test]
    fn an_unsynced_remove_comes_back_with_its_durable_contents() {
        let s = with_dir();
        let f = put(&s, "/d/f", b"old");
        s.sync_dir(p("/d")).unwrap();
        f.write_at(0, b"new").unwrap();
        s.remove(p("/d/f")).unwrap();
        assert!(!s.exists(p("/d/f")).unwrap());
        let back = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&back, "/d/f").unwrap(), b"old");
        assert_eq!(contents(&s.crash(CrashMode::KeepAll), "/d/f"), None);
        s.sync_dir(p("/d")).unwrap();
        assert_eq!(contents(&s.crash(CrashMode::DropUnsynced), "/d/f"), None);
    }

    #[test]
    fn a_rename_is_durable_with_its_directory_and_atomic() {
        let s = with_dir();
        put(&s, "/d/a", b"data");
        s.sync_dir(p("/d")).unwrap();
        s.rename(p("/d/a"), p("/d/b")).unwrap();
        let before = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&before, "/d/a").unwrap(), b"data");
        assert_eq!(contents(&before, "/d/b"), None);
        for seed in 0..32 {
            let r = s.crash(CrashMode::Random { seed });
            let names = r.list(p("/d")).unwrap();
            assert!(names == ["a"] || names == ["b"], "seed {seed}: {names:?}");
        }
        s.sync_dir(p("/d")).unwrap();
        let after = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&after, "/d/a"), None);
        assert_eq!(contents(&after, "/d/b").unwrap(), b"data");
    }

    #[test]
    fn a_rename_over_an_existing_file_replaces_it_atomically() {
        let s = with_dir();
        put(&s, "/d/cur", b"v1");
        s.sync_dir(p("/d")).unwrap();
        put(&s, "/d/cur.new", b"v2");
        s.rename(p("/d/cur.new"), p("/d/cur")).unwrap();
        let before = s.crash(CrashMode::DropUnsynced);
        assert_eq!(before.list(p("/d")).unwrap(), vec!["cur".to_owned()]);
        assert_eq!(contents(&before, "/d/cur").unwrap(), b"v1");
        for seed in 0..32 {
            let r = s.crash(CrashMode::Random { seed });
            let cur = contents(&r, "/d/cur").unwrap();
            assert!(cur == b"v1" || cur == b"v2", "seed {seed}");
        }
        s.sync_dir(p("/d")).unwrap();
        let after = s.crash(CrashMode::DropUnsynced);
        assert_eq!(after.list(p("/d")).unwrap(), vec!["cur".to_owned()]);
        assert_eq!(contents(&after, "/d/cur").unwrap(), b"v2");
    }

    #[test]
    fn a_rename_between_directories_needs_both() {
        let s = FaultStorage::new();
        s.create_dir_all(p("/x")).unwrap();
        s.create_dir_all(p("/y")).unwrap();
        s.sync_dir(p("/")).unwrap();
        put(&s, "/x/f", b"data");
        s.sync_dir(p("/x")).unwrap();
        s.rename(p("/x/f"), p("/y/f")).unwrap();
        assert_eq!(s.unsynced_namespace_ops(), 2);
        s.sync_dir(p("/y")).unwrap();
        // Only the link is durable: the file has both names, one node.
        let both = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&both, "/x/f").unwrap(), b"data");
        assert_eq!(contents(&both, "/y/f").unwrap(), b"data");
        let x = both.open(p("/x/f"), OpenMode::Existing).unwrap();
        x.write_at(0, b"DATA").unwrap();
        assert_eq!(contents(&both, "/y/f").unwrap(), b"DATA");
        s.sync_dir(p("/x")).unwrap();
        let after = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&after, "/x/f"), None);
        assert_eq!(contents(&after, "/y/f").unwrap(), b"data");
    }

    #[test]
    fn files_in_a_directory_whose_creation_was_not_synced_vanish() {
        let s = with_dir();
        s.create_dir_all(p("/d/e/g")).unwrap();
        assert_eq!(s.unsynced_namespace_ops(), 2);
        put(&s, "/d/e/g/f", b"data");
        s.sync_dir(p("/d/e/g")).unwrap();
        s.sync_dir(p("/d/e")).unwrap();
        // `/d/e` is not durable in `/d`: everything under it is gone.
        let lost = s.crash(CrashMode::DropUnsynced);
        assert!(lost.exists(p("/d")).unwrap());
        assert!(!lost.exists(p("/d/e")).unwrap());
        assert!(!lost.exists(p("/d/e/g")).unwrap());
        assert_eq!(contents(&lost, "/d/e/g/f"), None);
        assert_eq!(lost.list_dirs(p("/d")).unwrap(), Vec::<String>::new());
        s.sync_dir(p("/d")).unwrap();
        let kept = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&kept, "/d/e/g/f").unwrap(), b"data");
        assert_eq!(kept.list_dirs(p("/d")).unwrap(), vec!["e".to_owned()]);
    }

    #[test]
    fn a_new_root_level_directory_needs_the_root_synced() {
        let s = FaultStorage::new();
        s.create_dir_all(p("/r/wal")).unwrap();
        put(&s, "/r/wal/1", b"log");
        s.sync_dir(p("/r/wal")).unwrap();
        s.sync_dir(p("/r")).unwrap();
        assert!(!s.crash(CrashMode::DropUnsynced).exists(p("/r")).unwrap());
        s.sync_dir(p("/")).unwrap();
        let after = s.crash(CrashMode::DropUnsynced);
        assert_eq!(contents(&after, "/r/wal/1").unwrap(), b"log");
        assert!(after.exists(p("/")).unwrap());
    }

    #[test]
    fn an_unsynced_remove_dir_all_comes_back_and_a_new_directory_is_new() {
        let s = with_dir();
        put(&s, "/d/old", b"old");
        s.sync_dir(p("/d")).unwrap();
        s.remove_dir_all(p("/d")).unwrap();
        assert!(!s.exists(p("/d")).unwrap());
        s.create_dir_all(p("/d")).unwrap();
        put(&s, "/d/new", b"new");
        s.sync_dir(p("/d")).unwrap();
        // Neither the removal nor the new directory reached the disk: the old one
        // is there as it was, without the new directory's entries.
        let back = s.crash(CrashMode::DropUnsynced);
        assert_eq!(back.list(p("/d")).unwrap(), vec!["old".to_owned()]);
        assert_eq!(contents(&back, "/d/old").unwrap(), b"old");
        assert_eq!(
            s.crash(CrashMode::KeepAll).list(p("/d")).unwrap(),
            vec!["new".to_owned()]
        );
        s.sync_dir(p("/")).unwrap();
        let after = s.crash(CrashMode::DropUnsynced);
        assert_eq!(after.list(p("/d")).unwrap(), vec!["new".to_owned()]);
        // The removed directory's node is no longer kept.
        assert_eq!(s.shared.tree.lock().nodes.len(), 2);
    }

    #[test]
    fn keep_all_is_the_program_view() {
        let s = with_dir();
        s.create_dir_all(p("/d/e")).unwrap();
        let f = put(&s, "/d/e/f", b"abc");
        f.write_at(3, b"def").unwrap();
        put(&s, "/d/g", b"g");
        s.rename(p("/d/g"), p("/d/h")).unwrap();
        put(&s, "/top", b"t");
        s.remove(p("/top")).unwrap();
        assert_eq!(snapshot(&s.crash(CrashMode::KeepAll)), snapshot(&s));
    }

    #[test]
    fn random_crashes_replay_by_seed_and_cover_both_outcomes() {
        let s = with_dir();
        let f = put(&s, "/d/f", &[1; 4096]);
        f.write_at(0, &[2; 2048]).unwrap();
        s.create_dir_all(p("/d/e")).unwrap();
        put(&s, "/d/e/g", b"g");
        s.sync_dir(p("/d/e")).unwrap();
        let (mut with, mut without) = (0, 0);
        for seed in 0..64 {
            let a = snapshot(&s.crash(CrashMode::Random { seed }));
            let b = snapshot(&s.crash(CrashMode::Random { seed }));
            assert_eq!(a, b, "seed {seed} replays");
            if a.1.iter().any(|(path, _)| path == p("/d/f")) {
                with += 1;
            } else {
                without += 1;
            }
            // `/d/e/g` is there exactly when `/d/e` is.
            let e = a.0.iter().any(|d| d == p("/d/e"));
            let g = a.1.iter().any(|(path, _)| path == p("/d/e/g"));
            assert_eq!(e, g, "seed {seed}");
        }
        assert!(with > 0 && without > 0, "{with} with, {without} without");
    }

    #[test]
    fn a_power_cut_armed_at_sync_dir_fails_it() {
        let s = with_dir();
        put(&s, "/d/f", b"data");
        s.arm(FaultTrigger::PowerCut, 1);
        let e = s.sync_dir(p("/d")).unwrap_err();
        assert!(e.to_string().contains("power lost"), "{e}");
        assert_eq!(s.injected_faults(), 1);
        assert!(s.sync_dir(p("/d")).is_err());
        assert!(s.open(p("/d/g"), OpenMode::CreateNew).is_err());
        assert!(s.remove(p("/d/f")).is_err());
        assert!(s.create_dir_all(p("/d/x")).is_err());
        assert!(s.remove_dir_all(p("/d")).is_err());
        assert_eq!(s.injected_faults(), 6);
        // Reads go on; nothing changed after the cut.
        assert_eq!(contents(&s, "/d/f").unwrap(), b"data");
        assert_eq!(s.unsynced_namespace_ops(), 1);
        assert_eq!(contents(&s.crash(CrashMode::DropUnsynced), "/d/f"), None);
        assert_eq!(
            contents(&s.crash(CrashMode::KeepAll), "/d/f").unwrap(),
            b"data"
        );
    }

    #[test]
    fn a_failed_sync_dir_forgets_its_operations() {
        let s = with_dir();
        put(&s, "/d/f", b"data");
        s.arm(FaultTrigger::FailSync, 1);
        assert!(s.sync_dir(p("/d")).is_err());
        assert_eq!(s.injected_faults(), 1);
        // Still visible, no longer pending, never durable.
        assert_eq!(contents(&s, "/d/f").unwrap(), b"data");
        assert_eq!(s.unsynced_namespace_ops(), 0);
        s.sync_dir(p("/d")).unwrap();
        assert_eq!(contents(&s.crash(CrashMode::DropUnsynced), "/d/f"), None);
        assert_eq!(contents(&s.crash(CrashMode::KeepAll), "/d/f"), None);
        // fail_next_syncs covers directories too, and counts.
        s.fail_next_syncs(1);
        assert!(s.sync_dir(p("/")).is_err());
        assert_eq!(s.injected_faults(), 2);
    }

    #[test]
    fn sync_dir_counts_as_an_operation_and_needs_the_directory() {
        let s = with_dir();
        let before = s.ops();
        s.sync_dir(p("/d")).unwrap();
        assert_eq!(s.ops(), before + 1);
        let e = s.sync_dir(p("/nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = s.open(p("/nope/f"), OpenMode::CreateNew).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(s.injected_faults(), 0);
    }

    #[test]
    fn only_faults_met_are_counted() {
        let s = with_dir();
        let f = put(&s, "/d/f", &[0; 100]);
        // A full disk that refuses nothing is no fault.
        s.arm(FaultTrigger::DiskFull, 1);
        f.write_at(0, &[1; 100]).unwrap();
        assert_eq!(s.injected_faults(), 0);
        let e = f.write_at(100, &[1; 10]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(s.injected_faults(), 1);
        s.set_capacity(None);
        // A failing sync armed at a write fails the next sync.
        s.arm(FaultTrigger::FailSync, 1);
        f.write_at(0, &[2; 10]).unwrap();
        assert_eq!(s.injected_faults(), 1);
        assert!(f.sync().is_err());
        assert_eq!(s.injected_faults(), 2);
        s.tear_next_write();
        f.write_at(0, &[3; 10]).unwrap();
        assert_eq!(s.injected_faults(), 3);
        assert_eq!(
            &contents(&s, "/d/f").unwrap()[..10],
            &[3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
        );
    }

    #[test]
    fn a_dropped_storage_is_freed_with_its_files() {
        let s = with_dir();
        let f = put(&s, "/d/a", &vec![7; 3 << 20]);
        put(&s, "/d/b", &vec![8; 2 << 20]);
        f.write_at(0, &[9; 4096]).unwrap();
        s.remove(p("/d/b")).unwrap();
        let image = s.crash(CrashMode::KeepAll);
        let state = Arc::downgrade(&s.shared);
        let image_state = Arc::downgrade(&image.shared);
        let node = Arc::downgrade(&f);
        let other = s.clone();
        drop(s);
        assert!(state.upgrade().is_some(), "a clone keeps it");
        drop(other);
        drop(image);
        assert!(state.upgrade().is_none(), "the storage was not freed");
        assert!(
            image_state.upgrade().is_none(),
            "the crash image was not freed"
        );
        // An open handle outlives its storage, as a plain memory file.
        f.write_at(0, b"still").unwrap();
        f.sync().unwrap();
        assert!(node.upgrade().is_some());
        drop(f);
        assert!(node.upgrade().is_none(), "the file was not freed");
    }
}
