//! The Raft log of a cluster member, on disk.
//!
//! Entries are opaque byte strings numbered by consecutive indexes (the
//! member's Raft layer serializes into them what an entry carries: term,
//! leader, the transaction's change set). They live in segment files
//! `DIR/<first index, 20 digits>.seg`, appended in order; once a segment
//! passes [`RaftLogOptions::segment_bytes`] the next entry starts a new one,
//! so that dropping a prefix a snapshot covers is deleting whole files.
//!
//! Format: a segment starts with a 16-byte header (magic `RZRAFTSG`, format
//! version u32 LE, zero u32), then records: payload length u32 LE, CRC-32 of
//! (index u64 LE ‖ payload) u32 LE, index u64 LE, payload. The meta file
//! `DIR/meta` holds the vote, the committed entry and the purge point:
//! magic `RZRAFTMT`, version u32 LE, length u32 LE, CRC-32 u32 LE, then the
//! postcard encoding of [`LogMeta`].
//!
//! Invariants:
//!
//! - The entries present are one run of consecutive indexes, held by the
//!   segments in order (a segment's first index follows the previous one's
//!   last); the entries at or below the purge point are not present, even
//!   where a segment still holds them.
//! - An entry is durable once a [`RaftLog::sync`] begun after its
//!   [`RaftLog::append`] returned `Ok`. A crash can only lose or tear
//!   records written after the last sync, which are at the end of the last
//!   segment: on open that segment is cut at its first record that does not
//!   check out. Such a record anywhere else is damage, and opening fails
//!   ([`Error::Corrupt`]) rather than drop entries that were durable.
//! - [`RaftLog::truncate`] and [`RaftLog::purge`] are durable when they
//!   return: a suffix a new leader overruled must not come back after a
//!   crash (the member could vote on it). A crash in the middle leaves the
//!   log as before or as after, never with a hole: later segments go before
//!   the cut of an earlier one, and the purge point is saved before the
//!   segments it covers are deleted.
//! - The meta file is replaced atomically: written beside, synced, renamed
//!   over, directory synced.
//! - After a failed sync the log refuses every write until it is reopened
//!   (the state of the unsynced writes is unknown). Opening syncs the last
//!   segment and the directory: what a reopened log holds is durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raiz_engine::storage::{OpenMode, Storage, StorageFile};
use serde::{Deserialize, Serialize};

use crate::error::{io, Error, Result};

const SEGMENT_MAGIC: &[u8; 8] = b"RZRAFTSG";
const META_MAGIC: &[u8; 8] = b"RZRAFTMT";
const VERSION: u32 = 1;
const HEADER: u64 = 16;
/// Length, CRC and index before a record's payload.
const RECORD_HEAD: usize = 16;

/// Choices for a log.
#[derive(Debug, Clone, Copy)]
pub struct RaftLogOptions {
    /// A segment this large takes no more entries (default 64 MiB).
    pub segment_bytes: u64,
    /// The largest entry the log takes (default 256 MiB).
    pub max_entry: usize,
}

impl Default for RaftLogOptions {
    fn default() -> Self {
        RaftLogOptions {
            segment_bytes: 64 << 20,
            max_entry: 256 << 20,
        }
    }
}

/// What the log keeps beside its entries, each as the Raft layer encoded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMeta {
    /// The last vote saved.
    pub vote: Option<Vec<u8>>,
    /// The last committed entry saved.
    pub committed: Option<Vec<u8>>,
    /// The purge point: entries up to this index are gone, and the encoded
    /// id of the last of them.
    pub purged: Option<(u64, Vec<u8>)>,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// Byte offset of each record: entry `first + i` at `offsets[i]`.
    offsets: Vec<u64>,
    end: u64,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first + self.offsets.len() as u64 - 1)
    }
}

/// A member's Raft log (see the module docs).
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use raiz_cluster::{RaftLog, RaftLogOptions};
/// use raiz_engine::storage::MemoryStorage;
///
/// let storage = Arc::new(MemoryStorage::new());
/// let dir = Path::new("/member/log");
/// let mut log = RaftLog::open(storage.clone(), dir, RaftLogOptions::default())?;
/// log.append([(1, &b"first"[..]), (2, &b"second"[..])])?;
/// log.sync()?; // both durable now
/// log.truncate(2)?; // a new leader overruled entry 2
/// drop(log);
/// let log = RaftLog::open(storage, dir, RaftLogOptions::default())?;
/// assert_eq!(log.read(1, 10)?, vec![(1, b"first".to_vec())]);
/// # Ok::<(), raiz_cluster::Error>(())
/// ```
#[derive(Debug)]
pub struct RaftLog {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    opts: RaftLogOptions,
    segments: Vec<Segment>,
    meta: LogMeta,
    /// Writes since the last sync, and segment files created since then.
    unsynced: bool,
    dir_dirty: bool,
    poisoned: bool,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Parses the records of `bytes` (a segment's, from `base` on) while they
/// check out and follow `next` in order; returns their offsets and where
/// the valid part ends, with why it stopped if it stopped early.
fn scan(bytes: &[u8], base: u64, mut next: u64) -> (Vec<(u64, u64)>, u64, Option<String>) {
    let mut at = 0usize;
    let mut found = Vec::new();
    while at < bytes.len() {
        if bytes.len() - at < RECORD_HEAD {
            return (
                found,
                base + at as u64,
                Some("a record's header is cut short".into()),
            );
        }
        let len = u32_at(bytes, at) as usize;
        let sum = u32_at(bytes, at + 4);
        let index = u64_at(bytes, at + 8);
        let body = at + RECORD_HEAD;
        if bytes.len() - body < len {
            return (
                found,
                base + at as u64,
                Some("a record is cut short".into()),
            );
        }
        let payload = &bytes[body..body + len];
        if crc(index, payload) != sum {
            return (
                found,
                base + at as u64,
                Some("a record's checksum does not match".into()),
            );
        }
        if index != next {
            return (
                found,
                base + at as u64,
                Some(format!("entry {index} where entry {next} belongs")),
            );
        }
        found.push((index, base + at as u64));
        next += 1;
        at = body + len;
    }
    (found, base + at as u64, None)
}

impl RaftLog {
    /// Opens (or creates) the log in `dir`, cutting a torn tail off its last
    /// segment.
    pub fn open(storage: Arc<dyn Storage>, dir: &Path, opts: RaftLogOptions) -> Result<RaftLog> {
        // Each directory made here is durable once its parent's entry is.
        let mut made = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at {
            if d.as_os_str().is_empty() || storage.exists(d).map_err(io(d))? {
                break;
            }
            made.push(d);
            at = d.parent();
        }
        storage.create_dir_all(dir).map_err(io(dir))?;
        for d in made.iter().rev() {
            if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
                storage.sync_dir(parent).map_err(io(parent))?;
            }
        }
        let meta = read_meta(&*storage, dir)?;
        let mut names: Vec<(u64, String)> = storage
            .list(dir)
            .map_err(io(dir))?
            .into_iter()
            .filter_map(|n| {
                let first = n.strip_suffix(".seg")?.parse().ok()?;
                Some((first, n))
            })
            .collect();
        names.sort();
        let mut log = RaftLog {
            storage,
            dir: dir.to_path_buf(),
            opts,
            segments: Vec::new(),
            meta,
            unsynced: false,
            dir_dirty: false,
            poisoned: false,
        };
        let count = names.len();
        for (i, (first, name)) in names.into_iter().enumerate() {
            let seg = log.load_segment(first, &dir.join(name), i + 1 == count)?;
            if let Some(prev) = log.segments.last() {
                let want = prev.last().map_or(prev.first, |l| l + 1);
                if seg.first != want {
                    return Err(Error::Corrupt {
                        path: seg.path,
                        offset: 0,
                        reason: format!(
                            "starts at entry {} where entry {want} belongs (a segment is missing)",
                            seg.first
                        ),
                    });
                }
            }
            log.segments.push(seg);
        }
        // What is found is what counts from now on: a process that ended
        // without a crash leaves its last writes in the OS's cache only.
        if let Some(seg) = log.segments.last() {
            seg.file.sync().map_err(io(&seg.path))?;
        }
        log.storage.sync_dir(dir).map_err(io(dir))?;
        // Segments a purge covered but a crash left behind.
        log.drop_purged_segments()?;
        if let (Some((p, _)), Some(first)) = (&log.meta.purged, log.segments.first()) {
            if first.first > p + 1 {
                return Err(Error::Corrupt {
                    path: first.path.clone(),
                    offset: 0,
                    reason: format!(
                        "the log resumes at entry {} after a purge up to {p}: entries are missing",
                        first.first
                    ),
                });
            }
        }
        Ok(log)
    }

    fn load_segment(&self, first: u64, path: &Path, last: bool) -> Result<Segment> {
        let file = self
            .storage
            .open(path, OpenMode::Existing)
            .map_err(io(path))?;
        let len = file.len().map_err(io(path))?;
        let corrupt = |offset, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let mut head = [0u8; HEADER as usize];
        if len >= HEADER {
            file.read_at(0, &mut head).map_err(io(path))?;
        }
        // A header never made durable (the segment's first sync writes it
        // with its first records): nothing in the segment was durable.
        if len < HEADER || head == [0u8; HEADER as usize] {
            if !last {
                return Err(corrupt(0, "a segment without its header".into()));
            }
            tracing::warn!(segment = %path.display(), "log segment created just before a crash; emptied");
            write_header(&*file, path)?;
            return Ok(Segment {
                first,
                path: path.to_path_buf(),
                file,
                offsets: Vec::new(),
                end: HEADER,
            });
        }
        if &head[..8] != SEGMENT_MAGIC || u32_at(&head, 8) != VERSION {
            return Err(corrupt(
                0,
                "not a raiz log segment (magic or version)".into(),
            ));
        }
        let mut bytes = vec![0u8; (len - HEADER) as usize];
        file.read_at(HEADER, &mut bytes).map_err(io(path))?;
        let (found, end, stopped) = scan(&bytes, HEADER, first);
        if let Some(reason) = stopped {
            if !last {
                return Err(corrupt(end, reason));
            }
            tracing::warn!(
                segment = %path.display(),
                offset = end,
                dropped = len - end,
                reason = %reason,
                "log tail not synced before a crash; cut off"
            );
            file.set_len(end).map_err(io(path))?;
            file.sync().map_err(io(path))?;
        }
        Ok(Segment {
            first,
            path: path.to_path_buf(),
            file,
            offsets: found.into_iter().map(|(_, at)| at).collect(),
            end,
        })
    }

    /// What the log keeps beside its entries.
    pub fn meta(&self) -> &LogMeta {
        &self.meta
    }

    /// The purge point, if any.
    pub fn purged(&self) -> Option<u64> {
        self.meta.purged.as_ref().map(|(i, _)| *i)
    }

    /// The first entry present (None: no entry).
    pub fn first_index(&self) -> Option<u64> {
        let last = self.last_index()?;
        let first = self.segments.first()?.first;
        let first = match self.purged() {
            Some(p) => first.max(p + 1),
            None => first,
        };
        (first <= last).then_some(first)
    }

    /// The last entry present (None: no entry).
    pub fn last_index(&self) -> Option<u64> {
        let last = self.segments.iter().rev().find_map(Segment::last)?;
        match self.purged() {
            Some(p) if last <= p => None,
            _ => Some(last),
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("a sync of the log failed; reopen it"),
            });
        }
        Ok(())
    }

    /// Appends entries after the last one (the first entry of an empty log
    /// may have any index above the purge point). Not durable until
    /// [`RaftLog::sync`].
    pub fn append<'a>(&mut self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<()> {
        self.check_writable()?;
        let mut buf = Vec::new();
        for (index, payload) in entries {
            if payload.len() > self.opts.max_entry || payload.len() > u32::MAX as usize {
                return Err(Error::TooLarge {
                    len: payload.len(),
                    max: self.opts.max_entry.min(u32::MAX as usize),
                });
            }
            let want = match (self.last_index(), self.purged()) {
                (Some(l), _) => Some(l + 1),
                (None, Some(p)) => Some(p + 1),
                (None, None) => None,
            };
            if want.is_some_and(|w| w != index) {
                return Err(Error::Index {
                    index,
                    reason: format!("appended where entry {} belongs", want.unwrap_or(0)),
                });
            }
            let roll = match self.segments.last() {
                None => true,
                Some(s) => {
                    // The entry the segment takes next (an empty log's first
                    // entry may start anywhere: then a segment of its own).
                    let next = s.last().map_or(s.first, |l| l + 1);
                    next != index
                        || (s.end + buf.len() as u64 >= self.opts.segment_bytes
                            && !s.offsets.is_empty())
                }
            };
            if roll {
                self.flush_buf(&mut buf)?;
                self.roll(index)?;
            }
            let seg = self.segments.last_mut().expect("rolled above");
            seg.offsets.push(seg.end + buf.len() as u64);
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc(index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        self.flush_buf(&mut buf)
    }

    /// Writes `buf` at the end of the last segment.
    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let seg = self.segments.last_mut().expect("records go to a segment");
        if let Err(e) = seg.file.write_at(seg.end, buf) {
            // The offsets just pushed describe bytes that are not there.
            let written = seg.offsets.partition_point(|&o| o < seg.end);
            seg.offsets.truncate(written);
            buf.clear();
            return Err(io(&seg.path)(e));
        }
        seg.end += buf.len() as u64;
        buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Starts a new segment at `first`, the previous one made durable.
    fn roll(&mut self, first: u64) -> Result<()> {
        self.sync()?;
        let path = self.dir.join(segment_name(first));
        // Segments without entries (made just before a crash, or for an
        // entry that never came) give way: no segment may follow an empty one.
        while self.segments.last().is_some_and(|s| s.offsets.is_empty()) {
            let old = self.segments.pop().expect("just seen");
            self.storage.remove(&old.path).map_err(io(&old.path))?;
        }
        let file = self
            .storage
            .open(&path, OpenMode::CreateNew)
            .map_err(io(&path))?;
        write_header(&*file, &path)?;
        self.segments.push(Segment {
            first,
            path,
            file,
            offsets: Vec::new(),
            end: HEADER,
        });
        self.dir_dirty = true;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every entry appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.unsynced {
            if let Some(seg) = self.segments.last() {
                if let Err(e) = seg.file.sync() {
                    self.poisoned = true;
                    tracing::error!(segment = %seg.path.display(), error = %e, "log sync failed");
                    return Err(io(&seg.path)(e));
                }
            }
            self.unsynced = false;
        }
        if self.dir_dirty {
            if let Err(e) = self.storage.sync_dir(&self.dir) {
                self.poisoned = true;
                return Err(io(&self.dir)(e));
            }
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// The entries present with indexes in `from..to`, in order.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let (Some(first), Some(last)) = (self.first_index(), self.last_index()) else {
            return Ok(Vec::new());
        };
        let (from, to) = (from.max(first), to.min(last + 1));
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for seg in &self.segments {
            let Some(seg_last) = seg.last() else { continue };
            let (a, b) = (from.max(seg.first), to.min(seg_last + 1));
            if a >= b {
                continue;
            }
            let start = seg.offsets[(a - seg.first) as usize];
            let stop = match seg.offsets.get((b - seg.first) as usize) {
                Some(&o) => o,
                None => seg.end,
            };
            let mut bytes = vec![0u8; (stop - start) as usize];
            seg.file.read_at(start, &mut bytes).map_err(io(&seg.path))?;
            let (found, _, stopped) = scan(&bytes, start, a);
            if let Some(reason) = stopped {
                return Err(Error::Corrupt {
                    path: seg.path.clone(),
                    offset: found.last().map_or(start, |f| f.1),
                    reason,
                });
            }
            for (index, at) in found {
                let body = (at - start) as usize + RECORD_HEAD;
                let len = u32_at(&bytes, (at - start) as usize) as usize;
                out.push((index, bytes[body..body + len].to_vec()));
            }
        }
        Ok(out)
    }

    /// Removes the entries from `from` on, durably.
    pub fn truncate(&mut self, from: u64) -> Result<()> {
        self.check_writable()?;
        if let Some(p) = self.purged() {
            if from <= p {
                return Err(Error::Index {
                    index: from,
                    reason: format!("cannot cut entries at or below the purge point {p}"),
                });
            }
        }
        if self.last_index().is_none_or(|l| from > l) {
            return Ok(());
        }
        // Whole segments first, later ones before the cut of an earlier one.
        let mut removed = false;
        while let Some(seg) = self.segments.last() {
            if seg.first < from {
                break;
            }
            let seg = self.segments.pop().expect("just seen");
            self.storage.remove(&seg.path).map_err(io(&seg.path))?;
            removed = true;
        }
        if removed {
            self.storage.sync_dir(&self.dir).map_err(io(&self.dir))?;
        }
        if let Some(seg) = self.segments.last_mut() {
            let keep = (from - seg.first) as usize;
            if keep < seg.offsets.len() {
                let end = seg.offsets[keep];
                seg.file.set_len(end).map_err(io(&seg.path))?;
                seg.offsets.truncate(keep);
                seg.end = end;
            }
        }
        // What stays is durable, the segment's own entry in the directory too.
        self.unsynced = true;
        self.sync()
    }

    /// Drops the entries up to `index` (inclusive; it may be past the last
    /// entry, as after installing a snapshot), saving `last_id` — the
    /// Raft layer's id of entry `index` — as the purge point. Durable.
    pub fn purge(&mut self, index: u64, last_id: Vec<u8>) -> Result<()> {
        self.check_writable()?;
        if self.purged().is_some_and(|p| index < p) {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        meta.purged = Some((index, last_id));
        self.save_meta(meta)?;
        self.drop_purged_segments()
    }

    /// Deletes the segments every entry of which is at or below the purge
    /// point (all of them when the purge passed the last entry).
    fn drop_purged_segments(&mut self) -> Result<()> {
        let Some(p) = self.purged() else {
            return Ok(());
        };
        let mut removed = false;
        while let Some(seg) = self.segments.first() {
            // The last segment stays while it holds entries past the point.
            let covered = seg.last().map_or(seg.first <= p + 1, |l| l <= p);
            if !covered {
                break;
            }
            let seg = self.segments.remove(0);
            self.storage.remove(&seg.path).map_err(io(&seg.path))?;
            removed = true;
        }
        if removed {
            self.storage.sync_dir(&self.dir).map_err(io(&self.dir))?;
        }
        Ok(())
    }

    /// Saves the vote, durably.
    pub fn save_vote(&mut self, vote: Vec<u8>) -> Result<()> {
        let mut meta = self.meta.clone();
        meta.vote = Some(vote);
        self.save_meta(meta)
    }

    /// Saves the committed entry's id, durably.
    pub fn save_committed(&mut self, committed: Vec<u8>) -> Result<()> {
        let mut meta = self.meta.clone();
        meta.committed = Some(committed);
        self.save_meta(meta)
    }

    fn save_meta(&mut self, meta: LogMeta) -> Result<()> {
        self.check_writable()?;
        let body = postcard::to_allocvec(&meta).map_err(|e| Error::Io {
            path: self.dir.join("meta"),
            source: std::io::Error::other(e),
        })?;
        let mut bytes = Vec::with_capacity(20 + body.len());
        bytes.extend_from_slice(META_MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let (tmp, path) = (self.dir.join("meta.tmp"), self.dir.join("meta"));
        let f = self
            .storage
            .open(&tmp, OpenMode::OpenOrCreate)
            .map_err(io(&tmp))?;
        f.set_len(0).map_err(io(&tmp))?;
        f.write_at(0, &bytes).map_err(io(&tmp))?;
        f.sync().map_err(io(&tmp))?;
        drop(f);
        self.storage.rename(&tmp, &path).map_err(io(&path))?;
        self.storage.sync_dir(&self.dir).map_err(io(&self.dir))?;
        self.meta = meta;
        Ok(())
    }
}

fn write_header(file: &dyn StorageFile, path: &Path) -> Result<()> {
    let mut head = [0u8; HEADER as usize];
    head[..8].copy_from_slice(SEGMENT_MAGIC);
    head[8..12].copy_from_slice(&VERSION.to_le_bytes());
    file.set_len(0).map_err(io(path))?;
    file.write_at(0, &head).map_err(io(path))
}

fn read_meta(storage: &dyn Storage, dir: &Path) -> Result<LogMeta> {
    let path = dir.join("meta");
    if !storage.exists(&path).map_err(io(&path))? {
        return Ok(LogMeta::default());
    }
    let f = storage.open(&path, OpenMode::Existing).map_err(io(&path))?;
    let len = f.len().map_err(io(&path))?;
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: reason.to_owned(),
    };
    if len < 20 {
        return Err(corrupt("the meta file is shorter than its header"));
    }
    let mut bytes = vec![0u8; len as usize];
    f.read_at(0, &mut bytes).map_err(io(&path))?;
    if &bytes[..8] != META_MAGIC || u32_at(&bytes, 8) != VERSION {
        return Err(corrupt("not a raiz log meta file (magic or version)"));
    }
    let body_len = u32_at(&bytes, 12) as usize;
    let body = bytes
        .get(20..20 + body_len)
        .ok_or_else(|| corrupt("the meta file is cut short"))?;
    if crc32fast::hash(body) != u32_at(&bytes, 16) {
        return Err(corrupt("the meta file's checksum does not match"));
    }
    postcard::from_bytes(body).map_err(|e| corrupt(&format!("the meta file does not decode: {e}")))
}
