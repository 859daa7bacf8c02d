//! A bounded buffer pool shared by every file of a database.
//!
//! Frames are keyed by (file id, page number) and evicted with the CLOCK algorithm
//! when the pool's byte budget is reached. The pool is split into shards by the
//! key's hash — each with its own mutex, map and clock — so readers on different
//! cores rarely meet on one lock; the budget is the pool's, counted in one
//! atomic, and a load that finds the pool full evicts from its own shard.
//! Invariants:
//!
//! - A page's frame lives in the one shard its key hashes to.
//! - A frame is *pinned* while a guard on it exists (its `Arc` count exceeds the
//!   pool's own two references, the map's and the clock slot's). A reference to
//!   an unpinned frame is only handed out under its shard's mutex (other clones
//!   are made from a reference that already pins it), so a frame seen unpinned
//!   there cannot be pinned during its eviction.
//! - A frame being loaded is write-locked by its loader until the bytes are in and
//!   verified; a waiter that then finds it failed retries the lookup.
//! - A dirty frame is written back (checksummed) before it leaves the pool. Clean
//!   frames are preferred as victims; a dirty victim is written back under the pool
//!   mutex so that no reader can load the stale on-disk copy in between.
//! - When every frame of the loading shard is pinned (or it has none) the pool
//!   grows past its budget rather than fail.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::arena::{Arena, PageBuf};
use super::file::FileShared;
use super::guard::PageMut;
use super::map::{Layout, PageMap};
use crate::error::Result;

/// The smallest budget a pool accepts (eight 4 KiB pages).
pub const MIN_POOL_BYTES: usize = 32 << 10;

pub(super) const LOADING: u8 = 0;
pub(super) const READY: u8 = 1;
pub(super) const FAILED: u8 = 2;

/// One cached page. The fields a page read touches come first (`repr(C)`)
/// so that they share a cache line with the `Arc`'s counts.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Frame {
    pub(super) data: RwLock<PageBuf>,
    /// Where the page's bytes are: the buffer never moves or changes
    /// length while the frame lives, so this address may be used as a
    /// prefetch hint without taking the lock.
    addr: usize,
    pub(super) state: AtomicU8,
    referenced: AtomicBool,
    pub(super) dirty: AtomicBool,
    pub(super) page_no: u64,
    pub(super) file: Arc<FileShared>,
    /// Changed by a commit whose log frames are not written yet: not evictable.
    pub(super) hold: AtomicBool,
    /// The log must be durable up to here before this page is written back.
    pub(super) need_lsn: AtomicU64,
}

impl Frame {
    pub(super) fn new(arena: &Arc<Arena>, file: Arc<FileShared>, page_no: u64, state: u8) -> Frame {
        let size = file.page_size as usize;
        let bytes = arena.alloc(size);
        Frame {
            addr: bytes.as_ptr() as usize,
            data: RwLock::new(bytes),
            state: AtomicU8::new(state),
            referenced: AtomicBool::new(true),
            dirty: AtomicBool::new(false),
            page_no,
            file,
            hold: AtomicBool::new(false),
            need_lsn: AtomicU64::new(0),
        }
    }

    fn size(&self) -> usize {
        self.file.page_size as usize
    }
}

/// Counters describing the pool's work since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Page requests served from memory.
    pub hits: u64,
    /// Page requests that read the disk.
    pub misses: u64,
    /// Frames evicted to make room.
    pub evictions: u64,
    /// Dirty frames written back (evictions and flushes).
    pub writebacks: u64,
    /// Bytes currently cached.
    pub cached_bytes: u64,
    /// The budget in bytes.
    pub capacity_bytes: u64,
}

/// Hashes a (file id, page number) key: both are integers the engine chose,
/// not input an attacker controls, so a multiply-mix is enough and it is far
/// cheaper than SipHash on the hottest path of every read.
#[derive(Debug, Default, Clone, Copy)]
struct PageHasher(u64);

impl std::hash::Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A page's slot in the clock, its frame and the address of its bytes, kept
/// in the map itself so a hit (or a prefetch) reads no other memory of the
/// pool than the map's entry.
type Pages = PageMap<(usize, Arc<Frame>, usize)>;

/// The size of one map bucket.
const BUCKET_BYTES: usize = std::mem::size_of::<Option<(u64, u64, (usize, Arc<Frame>, usize))>>();

/// References the pool itself holds on a cached frame: the map's and the
/// clock slot's. More than these means a guard (or a caller) pins it.
const POOL_REFS: usize = 2;

#[derive(Debug, Default)]
struct Inner {
    map: Pages,
    slots: Vec<Option<Arc<Frame>>>,
    free: Vec<usize>,
    hand: usize,
    used: usize,
}

/// One shard of the pool: its frames and counters. Aligned so that two
/// shards' counters never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    inner: Mutex<Inner>,
    // The counters are changed under `inner`'s lock only (see `bump`).
    /// The map's bucket layout, published for prefetches that do not take
    /// the mutex (see `BufferPool::prefetch_entry`); may lag a growth.
    map_base: AtomicUsize,
    map_mask: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// Shards of a pool this large: one per MiB of budget, at most 16 (a power
/// of two), so each still holds many pages when its keys are few.
fn shard_count(capacity: usize) -> usize {
    let n = (capacity >> 20).clamp(1, 16);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Hints the CPU to load the cache line at `addr`. A prefetch instruction
/// never faults and has no effect the program can observe, whatever the
/// address.
#[inline]
#[allow(unsafe_code)]
fn prefetch_line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86_64 baseline, so the instruction
        // exists on every CPU this runs on; a prefetch reads no memory the
        // program sees and cannot fault, whatever `addr` is.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(addr as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Adds one to a shard's counter. Only called under the shard's mutex, so
/// a plain load and store cannot lose a count (and cost no locked
/// instruction on the read path); `stats` reads them without the mutex.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The buffer pool. See the module docs for its invariants.
#[derive(Debug)]
pub struct BufferPool {
    shards: Box<[Shard]>,
    capacity: usize,
    /// Bytes cached in every shard (changed under the shard's mutex).
    used: AtomicUsize,
    pub(super) writebacks: AtomicU64,
    /// Where frames get their bytes.
    arena: Arc<Arena>,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// The frame was cached (it may still be loading).
    Cached(Arc<Frame>),
    /// A new frame, write-locked for the caller, which must load it.
    Load(PageMut),
}

impl BufferPool {
    /// A pool that caches up to `capacity_bytes` of pages (at least
    /// [`MIN_POOL_BYTES`]).
    pub fn new(capacity_bytes: usize) -> Arc<BufferPool> {
        let capacity = capacity_bytes.max(MIN_POOL_BYTES);
        let n = shard_count(capacity);
        let shards = (0..n)
            .map(|_| Shard {
                inner: Mutex::new(Inner::default()),
                map_base: AtomicUsize::new(0),
                map_mask: AtomicUsize::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            })
            .collect();
        Arc::new(BufferPool {
            shards,
            capacity,
            used: AtomicUsize::new(0),
            writebacks: AtomicU64::new(0),
            arena: Arena::new(),
        })
    }

    /// The shard a page's frame lives in.
    fn shard(&self, file_id: u64, page_no: u64) -> &Shard {
        use std::hash::Hasher;
        let mut h = PageHasher::default();
        h.write_u64(file_id);
        h.write_u64(page_no);
        // The high bits: the multiply mixes them best.
        let i = (h.finish() >> 32) as usize & (self.shards.len() - 1);
        &self.shards[i]
    }

    /// Counters since creation.
    pub fn stats(&self) -> PoolStats {
        let sum = |f: fn(&Shard) -> u64| self.shards.iter().map(f).sum::<u64>();
        PoolStats {
            hits: sum(|s| s.hits.load(Ordering::Relaxed)),
            misses: sum(|s| s.misses.load(Ordering::Relaxed)),
            evictions: sum(|s| s.evictions.load(Ordering::Relaxed)),
            writebacks: self.writebacks.load(Ordering::Relaxed),
            cached_bytes: self.used.load(Ordering::Relaxed) as u64,
            capacity_bytes: self.capacity as u64,
        }
    }

    /// Finds the frame for a page, or installs a new one for the caller to fill
    /// (`state` is the new frame's initial state: LOADING for reads, READY for a
    /// freshly formatted page).
    pub(super) fn lookup(&self, file: &Arc<FileShared>, page_no: u64, state: u8) -> Result<Lookup> {
        let key = (file.id, page_no);
        let shard = self.shard(file.id, page_no);
        let mut inner = shard.inner.lock();
        if let Some((_, frame, _)) = inner.map.get(&key) {
            let frame = frame.clone();
            // Read first: a store to a line every reader of a hot page shares
            // would make the cores fight over it.
            if !frame.referenced.load(Ordering::Relaxed) {
                frame.referenced.store(true, Ordering::Relaxed);
            }
            bump(&shard.hits);
            return Ok(Lookup::Cached(frame));
        }
        bump(&shard.misses);
        let frame = Arc::new(Frame::new(&self.arena, file.clone(), page_no, state));
        self.make_room(shard, &mut inner, frame.size())?;
        // Locked before it is visible: no reader can see the zeros.
        let guard = PageMut::lock(frame.clone());
        let slot = match inner.free.pop() {
            Some(s) => {
                inner.slots[s] = Some(frame.clone());
                s
            }
            None => {
                inner.slots.push(Some(frame.clone()));
                inner.slots.len() - 1
            }
        };
        inner.used += frame.size();
        self.used.fetch_add(frame.size(), Ordering::Relaxed);
        let addr = frame.addr;
        inner.map.insert(key, (slot, frame, addr));
        let layout = inner.map.layout();
        shard.map_base.store(layout.base, Ordering::Relaxed);
        shard.map_mask.store(layout.mask, Ordering::Relaxed);
        Ok(Lookup::Load(guard))
    }

    /// Drops a frame whose load failed.
    pub(super) fn forget(&self, frame: &Arc<Frame>) {
        let mut inner = self.shard(frame.file.id, frame.page_no).inner.lock();
        let key = (frame.file.id, frame.page_no);
        if let Some(&(slot, ref f, _)) = inner.map.get(&key) {
            if Arc::ptr_eq(f, frame) {
                inner.map.remove(&key);
                inner.slots[slot] = None;
                inner.free.push(slot);
                inner.used -= frame.size();
                self.used.fetch_sub(frame.size(), Ordering::Relaxed);
            }
        }
    }

    /// The cached frame of a page, if any.
    pub(super) fn cached(&self, file_id: u64, page_no: u64) -> Option<Arc<Frame>> {
        let inner = self.shard(file_id, page_no).inner.lock();
        inner
            .map
            .get(&(file_id, page_no))
            .map(|(_, f, _)| f.clone())
    }

    /// Asks the CPU to bring the map entry of a page into its caches, so
    /// that a [`BufferPool::prefetch`] or lookup of it soon after finds it
    /// there: the first of a prefetch's two stages, which takes no lock
    /// (the layout it reads may be stale; a prefetch never faults).
    pub(super) fn prefetch_entry(&self, file_id: u64, page_no: u64) {
        let shard = self.shard(file_id, page_no);
        let layout = Layout {
            base: shard.map_base.load(Ordering::Relaxed),
            mask: shard.map_mask.load(Ordering::Relaxed),
        };
        if layout.base == 0 {
            return;
        }
        let addr = layout.bucket_addr::<(usize, Arc<Frame>, usize)>(file_id, page_no);
        prefetch_line(addr);
        prefetch_line(addr.wrapping_add(BUCKET_BYTES - 1));
    }

    /// Asks the CPU to bring the bytes `at..at + len` of a cached page, and
    /// the line of its frame a read takes, into its caches, so that a read
    /// soon after does not wait on memory. Nothing happens for a page that
    /// is not cached (a prefetch never reads the disk). Only a hint: it
    /// changes no state, pins nothing and reads no byte of the page.
    pub(super) fn prefetch(&self, file_id: u64, page_no: u64, at: usize, len: usize) {
        let inner = self.shard(file_id, page_no).inner.lock();
        if let Some((_, frame, addr)) = inner.map.get(&(file_id, page_no)) {
            // The `Arc`'s counts sit just before the frame's fields.
            prefetch_line(Arc::as_ptr(frame) as usize);
            let start = addr + at;
            let mut line = start & !63;
            while line < start + len.max(1) {
                prefetch_line(line);
                line += 64;
            }
        }
    }

    /// Removes every frame of a file (which must have been flushed or is being
    /// discarded on purpose).
    pub(super) fn evict_file(&self, file_id: u64) {
        self.evict_pages_from(file_id, 0);
    }

    /// Removes the frames of a file's pages from `first` on (pages being cut
    /// off the file; their changes are discarded on purpose).
    pub(super) fn evict_pages_from(&self, file_id: u64, first: u64) {
        for shard in self.shards.iter() {
            let mut inner = shard.inner.lock();
            let keys: Vec<(u64, u64)> = inner
                .map
                .keys()
                .filter(|k| k.0 == file_id && k.1 >= first)
                .collect();
            for key in keys {
                if let Some((slot, _, _)) = inner.map.remove(&key) {
                    if let Some(f) = inner.slots[slot].take() {
                        inner.used -= f.size();
                        self.used.fetch_sub(f.size(), Ordering::Relaxed);
                    }
                    inner.free.push(slot);
                }
            }
        }
    }

    fn make_room(&self, shard: &Shard, inner: &mut Inner, need: usize) -> Result<()> {
        // Two sweeps prefer clean frames; the third accepts dirty ones.
        let mut sweeps = 0;
        let mut scanned = 0;
        while self.used.load(Ordering::Relaxed) + need > self.capacity && !inner.slots.is_empty() {
            if inner.hand >= inner.slots.len() {
                inner.hand = 0;
            }
            let idx = inner.hand;
            inner.hand += 1;
            scanned += 1;
            if scanned > inner.slots.len() {
                scanned = 0;
                sweeps += 1;
                if sweeps >= 4 {
                    // Everything is pinned: grow past the budget.
                    return Ok(());
                }
            }
            let Some(frame) = inner.slots[idx].clone() else {
                continue;
            };
            // `frame` is one more reference: the clone above.
            if frame.pinned_excluding(1) {
                continue;
            }
            // The count is read relaxed: order the reads below after the last
            // guard's release (its `Arc` drop), or a weakly ordered CPU could
            // see a page as clean that its last writer changed.
            std::sync::atomic::fence(Ordering::Acquire);
            if frame.state.load(Ordering::Acquire) != READY || frame.hold.load(Ordering::Acquire) {
                continue;
            }
            if frame.referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            let dirty = frame.dirty.load(Ordering::Acquire);
            if dirty && sweeps < 2 {
                continue;
            }
            if dirty {
                frame.file.write_back(&frame)?;
                self.writebacks.fetch_add(1, Ordering::Relaxed);
            }
            let key = (frame.file.id, frame.page_no);
            if inner
                .map
                .get(&key)
                .is_some_and(|(_, f, _)| Arc::ptr_eq(f, &frame))
            {
                inner.map.remove(&key);
            }
            inner.slots[idx] = None;
            inner.free.push(idx);
            inner.used -= frame.size();
            self.used.fetch_sub(frame.size(), Ordering::Relaxed);
            bump(&shard.evictions);
        }
        Ok(())
    }
}

impl Frame {
    /// Pinned by someone other than the pool and `extra` references held by
    /// the caller. Every guard holds a reference to its frame.
    fn pinned_excluding(self: &Arc<Frame>, extra: usize) -> bool {
        Arc::strong_count(self) > POOL_REFS + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_by_budget_and_keys_spread_over_them() {
        for (budget, shards) in [
            (MIN_POOL_BYTES, 1),
            (1 << 20, 1),
            (3 << 20, 2),
            (4 << 20, 4),
            ((15 << 20) + 5, 8),
            (256 << 20, 16),
        ] {
            let pool = BufferPool::new(budget);
            assert_eq!(pool.shards.len(), shards, "{budget}");
            assert_eq!(pool.stats().capacity_bytes, budget as u64);
        }
        // Keys spread over every shard.
        let pool = BufferPool::new(256 << 20);
        let mut seen = vec![false; pool.shards.len()];
        for page in 0..1000 {
            let s = pool.shard(7, page) as *const Shard;
            let i = pool.shards.iter().position(|x| std::ptr::eq(x, s)).unwrap();
            seen[i] = true;
        }
        assert!(seen.iter().all(|&x| x));
    }
}
