//! A file seen as numbered pages through the buffer pool.
//!
//! Page `n` lives at byte `n * page_size`. Every page read from disk is verified
//! (checksum, page number, type) before anyone sees it; every page written back is
//! sealed with its checksum first. Growing the file writes the new page at once, so
//! a full disk is reported by [`PageFile::allocate`] — before the caller changed
//! anything — rather than later by a flush. A failed sync poisons the file: later
//! writes get [`Error::Poisoned`], reads keep working.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub use super::guard::{PageMut, PageRef};
use super::layout::{self, PageFault, PageType};
use super::pool::{BufferPool, Frame, Lookup, FAILED, LOADING, READY};
use crate::error::{Error, Result};
use crate::storage::StorageFile;

static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// State of an open paged file shared by its frames.
#[derive(Debug)]
pub(crate) struct FileShared {
    pub(super) id: u64,
    pub(super) path: PathBuf,
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) page_size: u32,
    poisoned: AtomicBool,
    dirty: Mutex<BTreeSet<u64>>,
    wal: std::sync::OnceLock<Arc<crate::log::Wal>>,
}

impl FileShared {
    /// Writes a frame's page to disk, sealed. Clears its dirty flag first so a
    /// concurrent change marks it dirty again.
    pub(super) fn write_back(&self, frame: &Frame) -> Result<()> {
        // The write-ahead rule: a page changed by a commit reaches its file only
        // after the commit's log frames are durable.
        if let Some(wal) = self.wal.get() {
            let need = frame.need_lsn.load(Ordering::Acquire);
            if need > wal.durable() {
                wal.flush_to(need)?;
            }
        }
        let mut image = {
            let data = frame.data.read();
            frame.dirty.store(false, Ordering::Release);
            data.to_vec()
        };
        layout::seal(&mut image, frame.page_no);
        let offset = frame.page_no * self.page_size as u64;
        if let Err(e) = self.file.write_at(offset, &image) {
            frame.dirty.store(true, Ordering::Release);
            return Err(Error::io(&self.path, e));
        }
        if !frame.dirty.load(Ordering::Acquire) {
            self.dirty.lock().remove(&frame.page_no);
        }
        Ok(())
    }
}

/// One file of pages. See the module docs.
#[derive(Debug)]
pub struct PageFile {
    shared: Arc<FileShared>,
    pool: Arc<BufferPool>,
    pages: AtomicU64,
    grow: Mutex<()>,
    /// Pages changed since `begin_capture`, with their image before the change
    /// (None for pages the capture allocated).
    capture: Mutex<Option<std::collections::BTreeMap<u64, Option<Vec<u8>>>>>,
    /// Pages whose full image is in the log since the last checkpoint: later
    /// commits may log only the bytes they change.
    logged: Mutex<std::collections::HashSet<u64>>,
    /// Pages of the capture under way built from another page's content (a
    /// split's new node, and the node it came from): the log may describe
    /// them as copies of it ([`PageFile::source_of`]).
    sources: Mutex<std::collections::HashMap<u64, u64>>,
}

impl PageFile {
    /// Wraps an open storage file. A trailing partial page (a torn extension) is
    /// ignored and will be overwritten by the next allocation.
    pub fn open(
        pool: Arc<BufferPool>,
        file: Arc<dyn StorageFile>,
        path: &Path,
        page_size: u32,
    ) -> Result<PageFile> {
        let len = file.len().map_err(|e| Error::io(path, e))?;
        let pages = len / page_size as u64;
        if len % page_size as u64 != 0 {
            tracing::warn!(file = %path.display(), len, "file ends with a partial page; ignoring it");
        }
        Ok(PageFile {
            shared: Arc::new(FileShared {
                id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
                path: path.to_path_buf(),
                file,
                page_size,
                poisoned: AtomicBool::new(false),
                dirty: Mutex::new(BTreeSet::new()),
                wal: std::sync::OnceLock::new(),
            }),
            capture: Mutex::new(None),
            logged: Mutex::new(std::collections::HashSet::new()),
            sources: Mutex::new(std::collections::HashMap::new()),
            pool,
            pages: AtomicU64::new(pages),
            grow: Mutex::new(()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> u32 {
        self.shared.page_size
    }

    /// Number of whole pages in the file.
    pub fn page_count(&self) -> u64 {
        self.pages.load(Ordering::Acquire)
    }

    /// The underlying storage file (for header pages, which bypass the pool).
    pub fn storage(&self) -> &Arc<dyn StorageFile> {
        &self.shared.file
    }

    /// True after a failed sync.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Makes page write-backs of this file obey the log's write-ahead rule.
    pub fn set_wal(&self, wal: Arc<crate::log::Wal>) {
        let _ = self.shared.wal.set(wal);
    }

    /// Starts recording the pages changed from now on (and holding them in the
    /// pool) until [`PageFile::end_capture`].
    pub fn begin_capture(&self) {
        *self.capture.lock() = Some(std::collections::BTreeMap::new());
        self.sources.lock().clear();
    }

    /// Notes, during a capture, that `page` was built from `source`'s content
    /// (a hint for the log; ignored outside a capture).
    pub fn note_source(&self, page: u64, source: u64) {
        if self.capture.lock().is_some() {
            self.sources.lock().insert(page, source);
        }
    }

    /// The page the capture's `page` was built from, if one was noted.
    pub fn source_of(&self, page: u64) -> Option<u64> {
        self.sources.lock().get(&page).copied()
    }

    /// Stops recording; returns the pages changed and their images before.
    pub fn end_capture(&self) -> Vec<(u64, Option<Vec<u8>>)> {
        self.capture
            .lock()
            .take()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// The current image of a page (unsealed), for the log.
    pub fn image(&self, page_no: u64) -> Result<Vec<u8>> {
        Ok(self.read(page_no)?.to_vec())
    }

    /// True when the page's full image is in the log since the last checkpoint.
    pub fn fully_logged(&self, page_no: u64) -> bool {
        self.logged.lock().contains(&page_no)
    }

    /// Forgets which pages were logged in full (a checkpoint started a new log).
    pub fn forget_logged(&self) {
        self.logged.lock().clear();
    }

    /// Lets a held page be evicted once the log is durable up to `lsn`.
    pub fn release(&self, page_no: u64, lsn: u64) {
        self.logged.lock().insert(page_no);
        if let Some(frame) = self.pool.cached(self.shared.id, page_no) {
            frame.need_lsn.fetch_max(lsn, Ordering::AcqRel);
            frame.hold.store(false, Ordering::Release);
        }
    }

    /// Lets the pool write a captured page back (an unlogged table's commit:
    /// nothing to log first).
    pub fn unhold(&self, page_no: u64) {
        if let Some(frame) = self.pool.cached(self.shared.id, page_no) {
            frame.hold.store(false, Ordering::Release);
        }
    }

    /// Puts back a page's image from before a failed commit.
    pub fn restore(&self, page_no: u64, before: Option<&[u8]>) -> Result<()> {
        if let Some(frame) = self.pool.cached(self.shared.id, page_no) {
            if let Some(b) = before {
                frame.data.write().copy_from_slice(b);
            }
            frame.hold.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Refuses every later write (the file was replaced under this handle).
    pub fn poison(&self) {
        self.shared.poisoned.store(true, Ordering::Release);
    }

    /// Refuses writes after a failed sync.
    pub fn check_writable(&self) -> Result<()> {
        if self.is_poisoned() {
            Err(Error::Poisoned {
                path: self.shared.path.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn check_range(&self, page_no: u64) -> Result<()> {
        let pages = self.page_count();
        if page_no >= pages {
            return Err(Error::CorruptPage {
                path: self.shared.path.clone(),
                page: page_no,
                reason: format!("page is beyond the end of the file ({pages} pages)"),
            });
        }
        Ok(())
    }

    fn load(&self, page_no: u64, buf: &mut [u8]) -> Result<()> {
        let path = &self.shared.path;
        self.shared
            .file
            .read_at(page_no * self.shared.page_size as u64, buf)
            .map_err(|e| Error::io(path, e))?;
        layout::verify(buf, page_no).map_err(|f| fault_error(path, page_no, f))
    }

    /// Reads page `page_no`, verified.
    pub fn read(&self, page_no: u64) -> Result<PageRef> {
        self.check_range(page_no)?;
        loop {
            match self.pool.lookup(&self.shared, page_no, LOADING)? {
                Lookup::Cached(frame) => {
                    let guard = PageRef::lock(frame);
                    if guard.frame().state.load(Ordering::Acquire) == FAILED {
                        continue;
                    }
                    return Ok(guard);
                }
                Lookup::Load(mut guard) => {
                    if let Err(e) = self.load(page_no, &mut guard) {
                        guard.frame().state.store(FAILED, Ordering::Release);
                        self.pool.forget(guard.frame());
                        return Err(e);
                    }
                    guard.frame().state.store(READY, Ordering::Release);
                    return Ok(guard.downgrade());
                }
            }
        }
    }

    /// Hints that bytes `at..at + len` of page `page_no` will be read soon:
    /// if the page is cached, the CPU starts bringing them into its caches.
    /// Never reads the disk and changes nothing.
    pub fn prefetch(&self, page_no: u64, at: usize, len: usize) {
        self.pool.prefetch(self.shared.id, page_no, at, len);
    }

    /// The first stage of a prefetch, for a page wanted a little later than
    /// [`PageFile::prefetch`]'s: brings the pool's entry for the page into
    /// the CPU's caches, so that the prefetch (or read) after it does not
    /// wait on the pool's map. Takes no lock and changes nothing.
    pub fn prefetch_entry(&self, page_no: u64) {
        self.pool.prefetch_entry(self.shared.id, page_no);
    }

    /// Opens page `page_no` for writing; it becomes dirty.
    pub fn write(&self, page_no: u64) -> Result<PageMut> {
        self.write_page(page_no, true)
    }

    /// Holds page `page_no` for writing without reading it from disk (the
    /// caller overwrites it whole: what the disk holds may be unreadable). A
    /// page not cached starts as zeros.
    pub fn write_fresh(&self, page_no: u64) -> Result<PageMut> {
        self.write_page(page_no, false)
    }

    fn write_page(&self, page_no: u64, load: bool) -> Result<PageMut> {
        self.check_writable()?;
        self.check_range(page_no)?;
        loop {
            let guard = match self.pool.lookup(&self.shared, page_no, LOADING)? {
                Lookup::Cached(frame) => {
                    let guard = PageMut::lock(frame);
                    if guard.frame().state.load(Ordering::Acquire) == FAILED {
                        continue;
                    }
                    guard
                }
                Lookup::Load(mut guard) => {
                    if !load {
                        guard.fill(0);
                    } else if let Err(e) = self.load(page_no, &mut guard) {
                        guard.frame().state.store(FAILED, Ordering::Release);
                        self.pool.forget(guard.frame());
                        return Err(e);
                    }
                    guard.frame().state.store(READY, Ordering::Release);
                    guard
                }
            };
            let frame = guard.frame();
            self.mark_dirty(frame);
            if let Some(set) = self.capture.lock().as_mut() {
                if let std::collections::btree_map::Entry::Vacant(v) = set.entry(page_no) {
                    v.insert(Some(guard.to_vec()));
                    frame.hold.store(true, Ordering::Release);
                }
            }
            return Ok(guard);
        }
    }

    fn mark_dirty(&self, frame: &Frame) {
        frame.dirty.store(true, Ordering::Release);
        self.shared.dirty.lock().insert(frame.page_no);
    }

    /// Appends a new page of type `ty` to the file. The formatted page is written
    /// to disk at once, so a full disk fails here and leaves the file as it was.
    pub fn allocate(&self, ty: PageType) -> Result<(u64, PageMut)> {
        self.check_writable()?;
        let _grow = self.grow.lock();
        let page_no = self.page_count();
        let size = self.shared.page_size as usize;
        let mut image = vec![0u8; size];
        layout::format(&mut image, ty);
        layout::seal(&mut image, page_no);
        self.shared
            .file
            .write_at(page_no * size as u64, &image)
            .map_err(|e| Error::io(&self.shared.path, e))?;
        self.pages.store(page_no + 1, Ordering::Release);
        let mut guard = match self.pool.lookup(&self.shared, page_no, READY)? {
            Lookup::Cached(frame) => PageMut::lock(frame),
            Lookup::Load(guard) => guard,
        };
        guard.copy_from_slice(&image);
        let frame = guard.frame().clone();
        frame.state.store(READY, Ordering::Release);
        self.mark_dirty(&frame);
        if let Some(set) = self.capture.lock().as_mut() {
            set.insert(page_no, None);
            frame.hold.store(true, Ordering::Release);
        }
        Ok((page_no, guard))
    }

    /// Writes every dirty page of this file back to disk, in page order.
    pub fn write_dirty(&self) -> Result<()> {
        let pages: Vec<u64> = self.shared.dirty.lock().iter().copied().collect();
        for page_no in pages {
            match self.pool.cached(self.shared.id, page_no) {
                Some(frame) if frame.dirty.load(Ordering::Acquire) => {
                    self.shared.write_back(&frame)?;
                    self.pool
                        .writebacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {
                    self.shared.dirty.lock().remove(&page_no);
                }
            }
        }
        Ok(())
    }

    /// Syncs the file. A failure poisons it.
    pub fn sync(&self) -> Result<()> {
        self.check_writable()?;
        if let Err(e) = self.shared.file.sync() {
            self.shared.poisoned.store(true, Ordering::Release);
            tracing::error!(file = %self.shared.path.display(), error = %e, "sync failed; file poisoned");
            return Err(Error::SyncFailed {
                path: self.shared.path.clone(),
                source: e,
            });
        }
        Ok(())
    }

    /// Writes back every dirty page, then syncs.
    pub fn flush(&self) -> Result<()> {
        self.check_writable()?;
        self.write_dirty()?;
        self.sync()
    }

    /// Number of pages waiting to be written back.
    pub fn dirty_pages(&self) -> usize {
        self.shared.dirty.lock().len()
    }

    /// Cuts the file to `pages` pages, dropping every cached page of it (dirty
    /// ones included: the caller is rewriting the file).
    pub fn truncate(&self, pages: u64) -> Result<()> {
        self.check_writable()?;
        let _grow = self.grow.lock();
        self.pool.evict_file(self.shared.id);
        self.shared.dirty.lock().clear();
        self.shared
            .file
            .set_len(pages * self.shared.page_size as u64)
            .map_err(|e| Error::io(&self.shared.path, e))?;
        self.pages.store(pages, Ordering::Release);
        Ok(())
    }

    /// Cuts the file back to its first `pages` pages, discarding the cached
    /// pages beyond (what a failed commit allocated: nothing refers to them).
    pub fn shrink_to(&self, pages: u64) -> Result<()> {
        let _grow = self.grow.lock();
        if pages >= self.page_count() {
            return Ok(());
        }
        self.pool.evict_pages_from(self.shared.id, pages);
        self.shared.dirty.lock().retain(|&p| p < pages);
        self.logged.lock().retain(|&p| p < pages);
        self.shared
            .file
            .set_len(pages * self.shared.page_size as u64)
            .map_err(|e| Error::io(&self.shared.path, e))?;
        self.pages.store(pages, Ordering::Release);
        Ok(())
    }

    /// Reads every page from disk in large chunks (bypassing the pool) and
    /// verifies each one. Returns the first damaged page's error.
    pub fn verify_all(&self, first: u64) -> Result<()> {
        const CHUNK: u64 = 64;
        let size = self.shared.page_size as u64;
        let pages = self.page_count();
        let mut buf = vec![0u8; (CHUNK * size) as usize];
        let mut p = first;
        while p < pages {
            let n = CHUNK.min(pages - p);
            let b = &mut buf[..(n * size) as usize];
            self.shared
                .file
                .read_at(p * size, b)
                .map_err(|e| Error::io(&self.shared.path, e))?;
            for (i, page) in b.chunks(size as usize).enumerate() {
                let no = p + i as u64;
                // A page cached dirty is newer than its disk copy; its disk copy
                // may legitimately be anything until written back.
                if self.shared.dirty.lock().contains(&no) {
                    continue;
                }
                layout::verify(page, no).map_err(|f| fault_error(&self.shared.path, no, f))?;
            }
            p += n;
        }
        Ok(())
    }

    /// Reads a page straight from disk (no pool), verified.
    pub fn read_direct(&self, page_no: u64, buf: &mut [u8]) -> Result<()> {
        self.load(page_no, buf)
    }

    /// Writes a page straight to disk (no pool), sealing it.
    pub fn write_direct(&self, page_no: u64, image: &mut [u8]) -> Result<()> {
        self.check_writable()?;
        layout::seal(image, page_no);
        self.shared
            .file
            .write_at(page_no * self.shared.page_size as u64, image)
            .map_err(|e| Error::io(&self.shared.path, e))?;
        if page_no >= self.page_count() {
            self.pages.store(page_no + 1, Ordering::Release);
        }
        Ok(())
    }
}

impl Drop for PageFile {
    fn drop(&mut self) {
        // Frames of a closed file are useless; unflushed changes are dropped on
        // purpose (the owner flushes before a clean close).
        self.pool.evict_file(self.shared.id);
    }
}

pub(crate) fn fault_error(path: &Path, page: u64, f: PageFault) -> Error {
    match f {
        PageFault::Checksum { stored, computed } => Error::Checksum {
            path: path.to_path_buf(),
            page,
            stored,
            computed,
        },
        PageFault::Misplaced { found } => Error::CorruptPage {
            path: path.to_path_buf(),
            page,
            reason: format!("page claims to be page {found} (misdirected write)"),
        },
        PageFault::BadType(t) => Error::CorruptPage {
            path: path.to_path_buf(),
            page,
            reason: format!("unknown page type {t}"),
        },
    }
}
