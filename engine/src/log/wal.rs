//! The write-ahead log of a rootpath: segment files in `raiz.wal/`.
//!
//! Invariants:
//! - Frames are written in LSN order by one writer at a time (the append mutex);
//!   the LSN of a frame is its end offset in the log stream. A write that fails
//!   (a full disk) is cut back with `set_len`, so the log never holds a partial
//!   frame in the middle: the failed commit is simply not there.
//! - `durable()` only grows, and only after a successful `sync` of everything
//!   written before it. Concurrent committers share one sync (group commit): one
//!   leads and syncs every frame written so far; the others sleep, each until
//!   a sync covers its LSN. Whoever releases the sync mutex wakes the sleepers
//!   now durable and the first of the rest, which leads the next sync; so no
//!   committer sleeps while nobody syncs, and a sync wakes only those it
//!   concerns.
//! - A failed sync poisons the log: every later append or flush fails until the
//!   database is reopened (a retried fsync may lie).
//! - A checkpoint (everything before it written to the table files and synced)
//!   starts a new segment — its name durable before any commit goes to it —
//!   and removes the older ones. Segment numbers only grow, one per checkpoint,
//!   and a segment is removed only after a checkpoint covered it; so if a crash
//!   brings back removed segments (their removal not yet durable), those
//!   before a gap in the numbering are older than a completed checkpoint, and
//!   recovery skips them: it replays the run of consecutive segments that ends
//!   with the newest. Replaying the rest of a run only redoes what the files
//!   already hold.
//! - A backup pins the segment a checkpoint just started ([`Wal::pin`]): while
//!   a pin is held, `rotate` keeps that segment and every later one, so the
//!   log from the pinned checkpoint on stays whole (a run of consecutive
//!   segments). Replaying such a run from its first segment is sound for the
//!   same reason recovery is: the first change of a page after any checkpoint
//!   is logged whole, so whatever version of a page the files hold, the run's
//!   images and deltas bring it to the run's end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::record::{encode, padding, Entry};
use crate::error::{Error, Result};
use crate::storage::{OpenMode, Storage, StorageFile};

/// Directory of the log inside a rootpath.
pub const WAL_DIR: &str = "raiz.wal";

/// Name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:010}.wal")
}

/// Segment numbers present in the log directory, ascending.
pub fn segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<u64>> {
    if !storage.exists(dir).map_err(|e| Error::io(dir, e))? {
        return Ok(Vec::new());
    }
    let mut seqs: Vec<u64> = storage
        .list(dir)
        .map_err(|e| Error::io(dir, e))?
        .iter()
        .filter_map(|n| n.strip_suffix(".wal").and_then(|s| s.parse().ok()))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

struct Writer {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    seq: u64,
    /// Bytes in the current segment.
    pos: u64,
    /// LSN of the segment's first byte.
    base: u64,
    /// Bytes of the segment already written with zeros and synced, or with
    /// the frames of a large commit: appends below this overwrite, so their
    /// sync need not commit a new file size (a large commit's own sync
    /// commits it).
    zeroed: u64,
    /// Commits appended since the log was opened.
    commits: u64,
}

/// The log is extended with synced zeros this much at a time.
const ZERO_CHUNK: u64 = 4 << 20;

/// A commit's frames are written at most this much at a time.
const APPEND_CHUNK: usize = 4 << 20;

/// Extends the segment with synced zeros so that `need` bytes fit.
fn prezero(w: &mut Writer) -> std::io::Result<()> {
    let need = w.pos;
    if need <= w.zeroed {
        return Ok(());
    }
    let chunk = vec![0u8; 1 << 20];
    let target = need.div_ceil(ZERO_CHUNK) * ZERO_CHUNK;
    while w.zeroed < target {
        w.file.write_at(w.zeroed, &chunk)?;
        w.zeroed += chunk.len() as u64;
    }
    w.file.sync()
}

/// A committer asleep in [`Wal::flush_to`].
struct Waiter {
    id: u64,
    lsn: u64,
    thread: std::thread::Thread,
}

/// The sync mutex held by [`Wal::hold_sync`].
struct SyncHold<'a> {
    wal: &'a Wal,
    guard: Option<parking_lot::MutexGuard<'a, ()>>,
}

impl Drop for SyncHold<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.wal.wake(self.wal.is_poisoned());
    }
}

/// The log. Shared by every logged table of a database.
pub struct Wal {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    writer: Mutex<Writer>,
    sync: Mutex<()>,
    /// Committers asleep until the log is durable up to their LSN (see
    /// [`Wal::flush_to`]).
    waiters: Mutex<Vec<Waiter>>,
    /// Numbers waiters.
    next_waiter: AtomicU64,
    durable: AtomicU64,
    poisoned: AtomicBool,
    syncs: AtomicU64,
    /// Bytes appended since the last checkpoint.
    since_checkpoint: AtomicU64,
    /// Commits covered by the syncs so far (written under the sync mutex).
    synced_commits: AtomicU64,
    /// Commits covered per sync.
    batches: crate::stats::Histogram,
    /// Segments pinned by running backups: the lowest segment each needs.
    pins: Mutex<Vec<u64>>,
}

/// Keeps a segment and every later one from removal while it lives
/// ([`Wal::pin`]).
#[derive(Debug)]
pub struct SegmentPin {
    wal: Arc<Wal>,
    seq: u64,
}

impl SegmentPin {
    /// The first segment kept.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for SegmentPin {
    fn drop(&mut self) {
        let mut pins = self.wal.pins.lock();
        if let Some(i) = pins.iter().position(|&s| s == self.seq) {
            pins.swap_remove(i);
        }
    }
}

/// A piece of the log to copy: a segment and how many of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCut {
    /// The segment number.
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Bytes to copy from its start: whole commits only.
    pub len: u64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("durable", &self.durable())
            .finish()
    }
}

impl Wal {
    /// Opens the log of `root` for appending, in a new segment after `last_seq`.
    pub fn open(storage: Arc<dyn Storage>, root: &Path, last_seq: u64) -> Result<Wal> {
        let dir = root.join(WAL_DIR);
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        // The log directory's own entry: a rootpath copied or moved without
        // it would otherwise lose it, with every commit in it, at a power cut.
        storage.sync_dir(root).map_err(|e| Error::io(root, e))?;
        let seq = last_seq + 1;
        let path = dir.join(segment_name(seq));
        let file = storage
            .open(&path, OpenMode::OpenOrCreate)
            .map_err(|e| Error::io(&path, e))?;
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Wal {
            storage,
            dir,
            writer: Mutex::new(Writer {
                file,
                path,
                seq,
                pos: 0,
                base: 0,
                zeroed: 0,
                commits: 0,
            }),
            sync: Mutex::new(()),
            waiters: Mutex::new(Vec::new()),
            next_waiter: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            since_checkpoint: AtomicU64::new(0),
            synced_commits: AtomicU64::new(0),
            batches: crate::stats::Histogram::new(crate::stats::BATCH_BOUNDS),
            pins: Mutex::new(Vec::new()),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything up to this LSN is durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// LSN of the end of the log.
    pub fn end(&self) -> u64 {
        let w = self.writer.lock();
        w.base + w.pos
    }

    /// Syncs performed (to see group commit at work).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Bytes appended since the last checkpoint.
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint.load(Ordering::Relaxed)
    }

    /// True after a failed sync.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Refuses every later append and flush (a table file could not be made
    /// durable, so the tables on disk may lag the log until recovery runs).
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    fn check(&self) -> Result<()> {
        if self.is_poisoned() {
            return Err(Error::Poisoned {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Writes the frames of `entries` (one commit) to the log; returns the LSN
    /// of their end. Not durable until [`Wal::flush_to`] covers it. On error
    /// nothing of them is in the log.
    pub fn append(&self, entries: &[Entry]) -> Result<u64> {
        self.check()?;
        // A commit's frames are encoded before the writer is taken, unless
        // they are many: those are written a chunk at a time under it (no
        // buffer the size of a bulk load, and its pages faulted in).
        let mut buf = Vec::new();
        let mut rest = entries;
        while let Some((e, more)) = rest.split_first() {
            if buf.len() >= APPEND_CHUNK {
                break;
            }
            encode(e, &mut buf);
            rest = more;
        }
        let mut w = self.writer.lock();
        let start = w.pos;
        let written = self.write_frames(&mut w, &mut buf, rest).inspect_err(|_| {
            // Cut back whatever part reached the file: a later frame must
            // never follow a partial one.
            let _ = w.file.set_len(start);
            w.pos = start;
            w.zeroed = start;
        })?;
        w.pos = start + written;
        if matches!(entries.last(), Some(Entry::Commit { .. })) {
            w.commits += 1;
        }
        self.since_checkpoint.fetch_add(written, Ordering::Relaxed);
        Ok(w.base + w.pos)
    }

    /// Writes `buf` and then the frames of `rest` at the writer's position, a
    /// chunk at a time; returns the bytes written.
    fn write_frames(&self, w: &mut Writer, buf: &mut Vec<u8>, rest: &[Entry]) -> Result<u64> {
        let start = w.pos;
        let mut written = 0u64;
        let mut rest = rest.iter();
        loop {
            let more = match rest.next() {
                Some(e) => {
                    encode(e, buf);
                    true
                }
                None => false,
            };
            if buf.len() >= APPEND_CHUNK || (!more && !buf.is_empty()) {
                let at = start + written;
                let end = at + buf.len() as u64;
                // A full chunk extends the file itself (the commit's sync
                // records the new size once); zeros written and synced ahead
                // only pay for small commits, whose syncs then write data alone.
                let extends = buf.len() >= APPEND_CHUNK;
                if end > w.zeroed && !extends {
                    w.pos = end;
                    let r = prezero(w);
                    w.pos = start;
                    r.map_err(|e| Error::io(&w.path, e))?;
                }
                w.file
                    .write_at(at, buf)
                    .map_err(|e| Error::io(&w.path, e))?;
                w.zeroed = w.zeroed.max(end);
                written += buf.len() as u64;
                buf.clear();
            }
            if !more {
                // The sync pads the log to the next 4 KiB boundary: that room
                // is made now, where a full disk refuses the commit cleanly —
                // never by the sync, whose failure would leave the commit
                // applied and its fate unknown.
                let end = start + written;
                let padded = end + padding(end as usize) as u64;
                if padded > w.zeroed {
                    w.pos = padded;
                    let r = prezero(w);
                    w.pos = start;
                    r.map_err(|e| Error::io(&w.path, e))?;
                }
                return Ok(written);
            }
        }
    }

    /// Makes the log durable up to at least `lsn` (sharing the sync with every
    /// committer that arrives meanwhile).
    ///
    /// One committer leads a sync of everything written so far; the others
    /// sleep, each until the log is durable up to its own LSN. A leader wakes
    /// only the waiters its sync covered, and one more to lead the next sync
    /// if any are left: with many committers, a broadcast would wake every
    /// sleeper for each sync only to put most back to sleep. Waiters never
    /// queue on the sync mutex itself: one whose frames the running sync
    /// covers must not then wait behind the next sync too.
    pub fn flush_to(&self, lsn: u64) -> Result<()> {
        loop {
            if self.durable() >= lsn {
                return Ok(());
            }
            self.check()?;
            if let Some(leader) = self.sync.try_lock() {
                let r = if self.durable() >= lsn {
                    Ok(())
                } else {
                    self.sync_now()
                };
                drop(leader);
                self.wake(r.is_err());
                r?;
                continue;
            }
            let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
            {
                let mut waiters = self.waiters.lock();
                if self.durable() >= lsn {
                    return Ok(());
                }
                // Invariant: whoever releases the sync mutex then calls
                // `wake` under this lock; so a waiter added while the mutex
                // is held is always woken, and one that finds it free leads.
                if !self.sync.is_locked() {
                    continue;
                }
                waiters.push(Waiter {
                    id,
                    lsn,
                    thread: std::thread::current(),
                });
            }
            // Woken by a leader (or spuriously): look again either way.
            std::thread::park();
            self.waiters.lock().retain(|w| w.id != id);
        }
    }

    /// After the sync mutex is released: wakes the waiters now durable, and
    /// the first of the others to lead the next sync (every waiter when the
    /// log is poisoned: they fail at once).
    fn wake(&self, all: bool) {
        let durable = self.durable();
        let mut waiters = self.waiters.lock();
        let mut next: Option<usize> = None;
        let mut i = 0;
        while i < waiters.len() {
            if all || waiters[i].lsn <= durable {
                waiters.swap_remove(i).thread.unpark();
            } else {
                if next.is_none_or(|n| waiters[i].lsn < waiters[n].lsn) {
                    next = Some(i);
                }
                i += 1;
            }
        }
        if let Some(n) = next {
            waiters.swap_remove(n).thread.unpark();
        }
    }

    /// Syncs everything written so far (the caller holds the sync mutex).
    fn sync_now(&self) -> Result<()> {
        let (file, path, end, commits) = {
            let mut w = self.writer.lock();
            // Zeros to the next 4 KiB boundary (the prepared space is zeros
            // already): commits appended after this sync start on a fresh
            // page, never one the sync may still be writing back, and a later
            // torn write cannot touch a page holding a durable commit.
            let pad = padding(w.pos as usize) as u64;
            if pad > 0 {
                let pos = w.pos;
                w.pos += pad;
                // Appends make this room before they return (`write_frames`),
                // so this is a safeguard. Failing here, the commits written
                // since the last sync are applied but not durable: a failed
                // sync, not a full disk to retry after.
                if let Err(e) = prezero(&mut w) {
                    w.pos = pos;
                    self.poisoned.store(true, Ordering::Release);
                    return Err(Error::SyncFailed {
                        path: w.path.clone(),
                        source: e,
                    });
                }
                self.since_checkpoint.fetch_add(pad, Ordering::Relaxed);
            }
            (w.file.clone(), w.path.clone(), w.base + w.pos, w.commits)
        };
        if let Err(e) = file.sync() {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(log = %path.display(), error = %e, "log sync failed; writes refused until reopen");
            return Err(Error::SyncFailed { path, source: e });
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        // Under the sync mutex: no other sync moves the count meanwhile.
        let before = self.synced_commits.swap(commits, Ordering::Relaxed);
        if commits > before {
            self.batches.observe((commits - before) as f64);
        }
        self.durable.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.flush_to(self.end())
    }

    /// Starts a new segment and removes the older ones. The caller has written
    /// and synced every change the older segments hold, and no commit runs.
    pub fn rotate(&self) -> Result<()> {
        self.flush()?;
        let _sync = self.hold_sync();
        let mut w = self.writer.lock();
        let seq = w.seq + 1;
        let path = self.dir.join(segment_name(seq));
        let file = self
            .storage
            .open(&path, OpenMode::OpenOrCreate)
            .map_err(|e| Error::io(&path, e))?;
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        // Commits are about to go to the new segment: its name must be durable.
        self.sync_dir_or_poison()?;
        let old = w.seq;
        w.base += w.pos;
        w.pos = 0;
        w.zeroed = 0;
        w.file = file;
        w.path = path;
        w.seq = seq;
        drop(w);
        let keep_from = self.pins.lock().iter().copied().min().unwrap_or(u64::MAX);
        for s in segments(self.storage.as_ref(), &self.dir)? {
            if s <= old && s < keep_from {
                let p = self.dir.join(segment_name(s));
                self.storage.remove(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        self.sync_dir_or_poison()?;
        self.since_checkpoint.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The sync mutex, held for work other than a sync (`rotate`, `cut`):
    /// waiters that queued meanwhile are woken when it is released.
    fn hold_sync(&self) -> SyncHold<'_> {
        SyncHold {
            wal: self,
            guard: Some(self.sync.lock()),
        }
    }

    /// Commits covered per sync so far (group commit at work).
    pub fn batches(&self) -> crate::stats::HistogramSnapshot {
        self.batches.snapshot()
    }

    /// Keeps the current segment and every later one until the pin is
    /// dropped. Called right after a checkpoint started the current segment,
    /// under the commit gate, so the pinned run holds every commit since.
    pub fn pin(self: &Arc<Self>) -> SegmentPin {
        let seq = self.writer.lock().seq;
        self.pins.lock().push(seq);
        SegmentPin {
            wal: self.clone(),
            seq,
        }
    }

    /// Makes the log durable and returns, from the pinned segment on, each
    /// segment and the length of it that holds whole durable commits: what a
    /// backup copies. The bytes named never change afterwards (appends go
    /// past them; older segments are no longer written).
    pub fn cut(&self, pin: &SegmentPin) -> Result<Vec<SegmentCut>> {
        self.flush()?;
        // The sync mutex keeps `rotate` out while the segments are listed.
        let _sync = self.hold_sync();
        let w = self.writer.lock();
        let durable = self.durable();
        let mut out = Vec::new();
        for s in segments(self.storage.as_ref(), &self.dir)? {
            if s < pin.seq || s > w.seq {
                continue;
            }
            let path = self.dir.join(segment_name(s));
            let len = if s == w.seq {
                durable.saturating_sub(w.base).min(w.pos)
            } else {
                self.storage
                    .open(&path, OpenMode::Existing)
                    .and_then(|f| f.len())
                    .map_err(|e| Error::io(&path, e))?
            };
            out.push(SegmentCut { seq: s, path, len });
        }
        Ok(out)
    }

    /// Syncs the log directory. A failure poisons the log: which names the
    /// directory will hold after a crash is unknown, and a retried sync may lie.
    fn sync_dir_or_poison(&self) -> Result<()> {
        self.storage.sync_dir(&self.dir).map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(log = %self.dir.display(), error = %e, "log directory sync failed; writes refused until reopen");
            Error::SyncFailed {
                path: self.dir.clone(),
                source: e,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::FileRef;
    use crate::storage::MemoryStorage;

    /// Whatever a commit's size — its last chunk full or not — the room its
    /// sync pads into is there once it is appended, so a sync never needs
    /// space the disk may not have.
    #[test]
    fn after_an_append_the_padding_of_its_sync_is_already_there() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let wal = Wal::open(storage, Path::new("/root"), 0).unwrap();
        let file = FileRef {
            file: "t.rzd".into(),
            incarnation: 1,
        };
        for (txn, size) in [
            (1u64, 100usize),
            (2, APPEND_CHUNK - 40),
            (3, APPEND_CHUNK - 24),
            (4, 5000),
        ]
        .into_iter()
        .chain((0..6).map(|i| (10 + i, APPEND_CHUNK - 32 + i as usize * 3)))
        {
            let entries = [
                Entry::Page {
                    file: file.clone(),
                    page: 2,
                    image: vec![7u8; size],
                },
                Entry::Commit { txn },
            ];
            wal.append(&entries).unwrap();
            let w = wal.writer.lock();
            let padded = w.pos + padding(w.pos as usize) as u64;
            assert!(
                w.zeroed >= padded,
                "size {size}: zeroed {} < {padded}",
                w.zeroed
            );
            drop(w);
            wal.flush().unwrap();
        }
    }
}
