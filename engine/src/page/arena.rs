//! The memory of the pool's frames: pages carved out of 2 MiB slabs.
//!
//! A random read touches a different page each time, and with each page
//! allocated on its own every one of them needs its own TLB entry; carved out
//! of 2 MiB slabs that the kernel is asked to back with huge pages
//! (`MADV_HUGEPAGE`, where transparent huge pages are enabled for it), 512
//! pages of 4 KiB share one. BENCHMARKS.md's reading gives the measured
//! difference on random reads and short ranges.
//!
//! Invariants:
//!
//! - A slab serves one page size (a power of two from 4 KiB to 64 KiB, so
//!   chunks tile it exactly) and is aligned to its own size, so the slab of
//!   any chunk is its address rounded down.
//! - A chunk is owned by at most one [`PageBuf`] at a time; chunks never
//!   handed out are zero (the slab is allocated zeroed) and a chunk handed
//!   out again is zeroed first, so every new buffer reads as zeros.
//! - A slab with no chunk in use is returned to the allocator unless it is
//!   the only slab of its size with room, so memory follows the pool's use.

#[cfg(not(target_os = "linux"))]
use std::alloc::Layout;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

/// Bytes per slab (the size of an x86-64 huge page).
const SLAB: usize = 2 << 20;

/// One slab: where it is, its page size, and which chunks are free.
#[derive(Debug)]
struct Slab {
    base: NonNull<u8>,
    chunk: usize,
    /// Chunks from this index on were never handed out (still zero).
    untouched: usize,
    /// Chunks handed out and given back (not zero).
    returned: Vec<u32>,
    in_use: usize,
}

impl Slab {
    fn chunks(&self) -> usize {
        SLAB / self.chunk
    }

    fn has_room(&self) -> bool {
        self.in_use < self.chunks()
    }
}

#[derive(Debug, Default)]
struct Slabs {
    /// By base address.
    all: HashMap<usize, Slab>,
    /// Per page size, the bases of slabs with a free chunk.
    with_room: HashMap<usize, Vec<usize>>,
}

/// Frame memory for one pool. Buffers keep their arena alive.
#[derive(Debug)]
pub(crate) struct Arena {
    slabs: Mutex<Slabs>,
}

// SAFETY: the raw slab addresses in `Slabs` are only read or changed under
// the arena's mutex, and the memory they point to is handed out to one
// `PageBuf` at a time.
#[allow(unsafe_code)]
unsafe impl Send for Arena {}
// SAFETY: as for `Send`: every access goes through the mutex.
#[allow(unsafe_code)]
unsafe impl Sync for Arena {}

#[cfg(not(target_os = "linux"))]
fn slab_layout() -> Layout {
    Layout::from_size_align(SLAB, SLAB).expect("2 MiB is a valid layout")
}

impl Arena {
    pub fn new() -> Arc<Arena> {
        Arc::new(Arena {
            slabs: Mutex::new(Slabs::default()),
        })
    }

    /// A zeroed buffer of `len` bytes (a power of two from 4 KiB to 64 KiB;
    /// any other length gets a buffer of its own outside the slabs).
    pub fn alloc(self: &Arc<Arena>, len: usize) -> PageBuf {
        if !(len.is_power_of_two() && (4096..=SLAB / 32).contains(&len)) {
            return PageBuf::Own(vec![0u8; len].into_boxed_slice());
        }
        let mut s = self.slabs.lock();
        let base = match s.with_room.get(&len).and_then(|v| v.last().copied()) {
            Some(base) => base,
            None => match new_slab(len) {
                Some(slab) => {
                    let base = slab.base.as_ptr() as usize;
                    s.all.insert(base, slab);
                    s.with_room.entry(len).or_default().push(base);
                    base
                }
                None => return PageBuf::Own(vec![0u8; len].into_boxed_slice()),
            },
        };
        let slab = s.all.get_mut(&base).expect("listed slabs exist");
        let (index, dirty) = match slab.returned.pop() {
            Some(i) => (i as usize, true),
            None => {
                slab.untouched += 1;
                (slab.untouched - 1, false)
            }
        };
        slab.in_use += 1;
        if !slab.has_room() {
            if let Some(v) = s.with_room.get_mut(&len) {
                v.retain(|&b| b != base);
            }
        }
        drop(s);
        let addr = base + index * len;
        // SAFETY: `addr..addr + len` is chunk `index` of a live slab of
        // `SLAB` bytes (index < SLAB / len), owned by nobody else until this
        // buffer gives it back; the slab outlives the buffer (which holds the
        // arena, and a slab with a chunk in use is never freed).
        #[allow(unsafe_code)]
        let ptr = unsafe { NonNull::new_unchecked(addr as *mut u8) };
        if dirty {
            // SAFETY: as above, the chunk is this buffer's alone.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write_bytes(ptr.as_ptr(), 0, len)
            };
        }
        PageBuf::Slab {
            ptr,
            len,
            arena: self.clone(),
        }
    }

    fn give_back(&self, ptr: NonNull<u8>, len: usize) {
        let addr = ptr.as_ptr() as usize;
        let base = addr & !(SLAB - 1);
        let mut guard = self.slabs.lock();
        let s = &mut *guard;
        let Some(slab) = s.all.get_mut(&base) else {
            return;
        };
        let had_room = slab.has_room();
        slab.returned.push(((addr - base) / len) as u32);
        slab.in_use -= 1;
        let empty = slab.in_use == 0;
        let list = s.with_room.entry(len).or_default();
        if !had_room {
            list.push(base);
        }
        // An empty slab goes back unless it is the only room of its size.
        if empty && list.len() > 1 {
            list.retain(|&b| b != base);
            if let Some(slab) = s.all.remove(&base) {
                unmap_slab(slab.base);
            }
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Every buffer holds the arena: none is left, so no chunk is in use.
        for (_, slab) in self.slabs.get_mut().all.drain() {
            unmap_slab(slab.base);
        }
    }
}

/// A zeroed, 2 MiB-aligned slab for chunks of `chunk` bytes (None if no
/// memory could be had: the caller falls back to a buffer of its own).
fn new_slab(chunk: usize) -> Option<Slab> {
    Some(Slab {
        base: map_slab()?,
        chunk,
        untouched: 0,
        returned: Vec::new(),
        in_use: 0,
    })
}

/// Maps a slab straight from the kernel: zeroed pages not touched yet, so
/// the huge-page advice is given before the first fault (memory from the
/// allocator with this alignment may come already written, in small pages).
#[cfg(target_os = "linux")]
fn map_slab() -> Option<NonNull<u8>> {
    // Twice the size, to cut an aligned slab out of it.
    let len = 2 * SLAB;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choice touches no existing memory.
    #[allow(unsafe_code)]
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let start = p as usize;
    let base = (start + SLAB - 1) & !(SLAB - 1);
    // SAFETY: both ranges lie inside the mapping just made, outside the
    // aligned slab kept; unmapping them leaves the slab alone. Advice
    // changes no content or right.
    #[allow(unsafe_code)]
    unsafe {
        if base > start {
            libc::munmap(start as *mut libc::c_void, base - start);
        }
        let end = start + len;
        if end > base + SLAB {
            libc::munmap((base + SLAB) as *mut libc::c_void, end - base - SLAB);
        }
        libc::madvise(base as *mut libc::c_void, SLAB, libc::MADV_HUGEPAGE);
    }
    NonNull::new(base as *mut u8)
}

#[cfg(target_os = "linux")]
fn unmap_slab(base: NonNull<u8>) {
    // SAFETY: `base` is a slab of `SLAB` bytes mapped by `map_slab`, none
    // of whose chunks is in use.
    #[allow(unsafe_code)]
    unsafe {
        libc::munmap(base.as_ptr().cast(), SLAB)
    };
}

#[cfg(not(target_os = "linux"))]
fn map_slab() -> Option<NonNull<u8>> {
    // SAFETY: the layout has a non-zero size.
    #[allow(unsafe_code)]
    NonNull::new(unsafe { std::alloc::alloc_zeroed(slab_layout()) })
}

#[cfg(not(target_os = "linux"))]
fn unmap_slab(base: NonNull<u8>) {
    // SAFETY: allocated by `map_slab` with this layout; no chunk in use.
    #[allow(unsafe_code)]
    unsafe {
        std::alloc::dealloc(base.as_ptr(), slab_layout())
    };
}

/// A page's bytes: a chunk of a slab, or (for lengths the slabs do not
/// serve, or when no slab could be allocated) a buffer of its own.
#[derive(Debug)]
pub(crate) enum PageBuf {
    Slab {
        ptr: NonNull<u8>,
        len: usize,
        arena: Arc<Arena>,
    },
    Own(Box<[u8]>),
}

// SAFETY: a `PageBuf` owns its chunk exclusively (see `Arena::alloc`), as a
// `Box<[u8]>` owns its bytes; access follows Rust's borrow rules through
// `Deref`/`DerefMut`.
#[allow(unsafe_code)]
unsafe impl Send for PageBuf {}
// SAFETY: as for `Send`; `&PageBuf` only gives `&[u8]`.
#[allow(unsafe_code)]
unsafe impl Sync for PageBuf {}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            // SAFETY: the chunk is `len` initialised bytes owned by this
            // buffer for its whole life; `&self` borrows it shared.
            #[allow(unsafe_code)]
            PageBuf::Slab { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            PageBuf::Own(b) => b,
        }
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            // SAFETY: as in `deref`, and `&mut self` makes this borrow the
            // only one.
            #[allow(unsafe_code)]
            PageBuf::Slab { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
            PageBuf::Own(b) => b,
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if let PageBuf::Slab { ptr, len, arena } = self {
            arena.give_back(*ptr, *len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_distinct_and_their_slabs_go_back_when_empty() {
        let arena = Arena::new();
        let mut bufs: Vec<PageBuf> = (0..1100).map(|_| arena.alloc(4096)).collect();
        // Three slabs of 512 chunks hold 1100 buffers.
        assert_eq!(arena.slabs.lock().all.len(), 3);
        for (i, b) in bufs.iter_mut().enumerate() {
            assert!(b.iter().all(|&x| x == 0));
            b.fill((i % 251) as u8);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(
                b.iter().all(|&x| x == (i % 251) as u8),
                "buffer {i} overlaps another"
            );
        }
        // Given back and handed out again: zeroed.
        bufs.truncate(10);
        let again: Vec<PageBuf> = (0..600).map(|_| arena.alloc(4096)).collect();
        assert!(again.iter().all(|b| b.iter().all(|&x| x == 0)));
        drop(again);
        bufs.clear();
        // Empty slabs went back but for one with room.
        assert_eq!(arena.slabs.lock().all.len(), 1);
        // Other sizes get their own slabs; odd lengths their own buffers.
        let a = arena.alloc(65536);
        let b = arena.alloc(8192);
        let c = arena.alloc(1000);
        assert!(matches!(c, PageBuf::Own(_)));
        assert_eq!((a.len(), b.len(), c.len()), (65536, 8192, 1000));
        assert_eq!(arena.slabs.lock().all.len(), 3);
    }
}
