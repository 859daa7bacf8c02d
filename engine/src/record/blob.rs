//! The blob file: memos, and the bodies of variable-length records.
//!
//! A blob id is `page << 16 | slot`; id 0 never names a blob (page 0 is the file's
//! header). Small blobs share slotted pages; a blob too large for an empty page is a
//! descriptor in a slot plus a chain of overflow pages.
//!
//! Slotted page payload (offsets relative to the payload, after the page header):
//!
//! | offset | size | field                                             |
//! |-------:|-----:|---------------------------------------------------|
//! |      0 |    2 | slot count                                        |
//! |      2 |    2 | start of the data area (data grows down from the end) |
//! |      4 |    2 | live slots                                        |
//! |      8 |  8·n | slots: offset u16, length u16, flags u16, 0 u16   |
//!
//! Slot flags: 0 dead, 1 inline bytes, 2 overflow descriptor (total length u64,
//! first overflow page u64). Overflow page payload: next page u64 (0 ends the
//! chain), chunk length u32, the chunk. Free pages form a list through their first
//! payload u64.
//!
//! Header page 0: magic, version, page size, free-list head, fill page. It is
//! trusted only after a clean close; otherwise the free list is abandoned (its pages
//! leak until `pack`), so a crash can never hand out a page that is still in use.

use std::path::Path;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::page::layout::{self, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use crate::page::{PageFile, PageType, PAGE_HEADER};

mod audit;

const MAGIC: &[u8; 8] = b"RAIZBLB\0";
const VERSION: u32 = 1;
const HDR_FREE: usize = PAGE_HEADER + 16;
const HDR_FILL: usize = PAGE_HEADER + 24;
const HDR_INCARNATION: usize = PAGE_HEADER + 32;
/// The page count: pages past it were allocated by a commit that never
/// completed. 0 (older files): unknown.
const HDR_PAGES: usize = PAGE_HEADER + 40;

const SLOT_AREA: usize = 8;
const SLOT: usize = 8;
const F_INLINE: u16 = 1;
const F_OVERFLOW: u16 = 2;
const DESCRIPTOR: usize = 16;
const OVF_HEAD: usize = 12;

#[derive(Debug, Default)]
struct State {
    free_head: u64,
    fill: u64,
    reusable: Vec<u64>,
    /// Blobs retired by an update, freed only once the data file no longer
    /// points to them durably (see [`BlobStore::retire`]).
    retired: Vec<u64>,
}

/// Blob storage over one paged file.
#[derive(Debug)]
pub struct BlobStore {
    file: PageFile,
    state: Mutex<State>,
    incarnation: u64,
}

impl BlobStore {
    fn payload(&self) -> usize {
        self.file.page_size() as usize - PAGE_HEADER
    }

    /// Largest blob stored inline in a slotted page.
    fn max_inline(&self) -> usize {
        self.payload() - SLOT_AREA - SLOT
    }

    fn corrupt(&self, page: u64, reason: impl Into<String>) -> Error {
        Error::CorruptPage {
            path: self.file.path().to_path_buf(),
            page,
            reason: reason.into(),
        }
    }

    /// Writes the header of a new, empty blob file.
    pub fn create(file: PageFile) -> Result<BlobStore> {
        let store = BlobStore {
            file,
            state: Mutex::new(State::default()),
            incarnation: rand::random(),
        };
        store.write_header()?;
        Ok(store)
    }

    /// Opens a blob file. `trust_header` is false after an unclean close.
    pub fn open(file: PageFile, trust_header: bool) -> Result<BlobStore> {
        let mut page = vec![0u8; file.page_size() as usize];
        if file.page_count() == 0 {
            return Err(Error::CorruptPage {
                path: file.path().to_path_buf(),
                page: 0,
                reason: "blob file has no header page".into(),
            });
        }
        file.read_direct(0, &mut page)?;
        check_magic(&page, file.path(), file.page_size())?;
        let mut st = State::default();
        let pages = get_u64(&page, HDR_PAGES);
        if trust_header && pages > 0 && file.page_count() > pages {
            // Pages a commit cut short by a crash allocated: nothing refers to them.
            file.shrink_to(pages)?;
        }
        if trust_header {
            st.free_head = get_u64(&page, HDR_FREE);
            st.fill = get_u64(&page, HDR_FILL);
            if st.free_head >= file.page_count() || st.fill >= file.page_count() {
                st = State::default();
            }
        }
        Ok(BlobStore {
            incarnation: get_u64(&page, HDR_INCARNATION),
            file,
            state: Mutex::new(st),
        })
    }

    /// The underlying file.
    pub fn file(&self) -> &PageFile {
        &self.file
    }

    /// Writes back dirty pages and the header (free list, fill page), then syncs.
    pub fn flush(&self) -> Result<()> {
        self.file.write_dirty()?;
        self.write_header()?;
        self.file.sync()
    }

    fn write_header(&self) -> Result<()> {
        let (free, fill) = self.free_and_fill();
        write_header_page(
            &self.file,
            free,
            fill,
            self.incarnation,
            self.file.page_count(),
        )
    }

    /// Identifies this file across re-creations under the same name.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Free-list head and fill page (what the header records).
    pub fn free_and_fill(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.free_head, st.fill)
    }

    /// Restores the free-list head and fill page (undoing a failed commit).
    pub fn set_free_and_fill(&self, free_head: u64, fill: u64) {
        let mut st = self.state.lock();
        st.free_head = free_head;
        st.fill = fill;
        st.reusable.clear();
    }

    /// Takes a page from the free list or grows the file.
    fn new_page(&self, st: &mut State, ty: PageType) -> Result<(u64, crate::page::PageMut)> {
        if st.free_head != 0 {
            let no = st.free_head;
            let mut p = self.file.write(no)?;
            if PageType::from_byte(layout::page_type(&p)) != Some(PageType::Free) {
                // The list is damaged: abandon it rather than reuse a live page.
                st.free_head = 0;
                return Err(self.corrupt(no, "free-list page is in use"));
            }
            st.free_head = get_u64(&p, PAGE_HEADER);
            layout::format(&mut p, ty);
            return Ok((no, p));
        }
        self.file.allocate(ty)
    }

    fn release_page(&self, st: &mut State, no: u64) -> Result<()> {
        let mut p = self.file.write(no)?;
        layout::format(&mut p, PageType::Free);
        put_u64(&mut p, PAGE_HEADER, st.free_head);
        st.free_head = no;
        st.reusable.retain(|&r| r != no);
        if st.fill == no {
            st.fill = 0;
        }
        Ok(())
    }

    /// Stores `data`; returns its id.
    pub fn put(&self, data: &[u8]) -> Result<u64> {
        self.file.check_writable()?;
        let mut st = self.state.lock();
        if data.len() <= self.max_inline() {
            return self.put_inline(&mut st, data, F_INLINE);
        }
        let first = self.write_chain(&mut st, data)?;
        let mut desc = [0u8; DESCRIPTOR];
        desc[..8].copy_from_slice(&(data.len() as u64).to_le_bytes());
        desc[8..].copy_from_slice(&first.to_le_bytes());
        match self.put_inline(&mut st, &desc, F_OVERFLOW) {
            Ok(id) => Ok(id),
            Err(e) => {
                let _ = self.free_chain(&mut st, first);
                Err(e)
            }
        }
    }

    fn write_chain(&self, st: &mut State, data: &[u8]) -> Result<u64> {
        let chunk = self.payload() - OVF_HEAD;
        let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
        // Written back to front so each page knows its successor.
        let mut next = 0u64;
        for piece in pieces.iter().rev() {
            let (no, mut p) = match self.new_page(st, PageType::Overflow) {
                Ok(x) => x,
                Err(e) => {
                    if next != 0 {
                        let _ = self.free_chain(st, next);
                    }
                    return Err(e);
                }
            };
            put_u64(&mut p, PAGE_HEADER, next);
            put_u32(&mut p, PAGE_HEADER + 8, piece.len() as u32);
            p[PAGE_HEADER + OVF_HEAD..PAGE_HEADER + OVF_HEAD + piece.len()].copy_from_slice(piece);
            next = no;
        }
        Ok(next)
    }

    fn free_chain(&self, st: &mut State, mut no: u64) -> Result<()> {
        let mut hops = 0u64;
        while no != 0 {
            hops += 1;
            if hops > self.file.page_count() {
                return Err(self.corrupt(no, "overflow chain loops"));
            }
            let next = {
                let p = self.file.read(no)?;
                if PageType::from_byte(layout::page_type(&p)) != Some(PageType::Overflow) {
                    return Err(self.corrupt(no, "expected an overflow page"));
                }
                get_u64(&p, PAGE_HEADER)
            };
            self.release_page(st, no)?;
            no = next;
        }
        Ok(())
    }

    fn put_inline(&self, st: &mut State, data: &[u8], flags: u16) -> Result<u64> {
        let candidates: Vec<u64> = std::iter::once(st.fill)
            .filter(|&f| f != 0)
            .chain(st.reusable.iter().copied())
            .collect();
        for no in candidates {
            let mut p = self.file.write(no)?;
            if let Some(slot) = self.place(&mut p, no, data, flags)? {
                drop(p);
                if no != st.fill {
                    st.reusable.retain(|&r| r != no);
                    self.set_fill(st, no)?;
                }
                return Ok(no << 16 | slot as u64);
            }
        }
        let (no, mut p) = self.new_page(st, PageType::Blobs)?;
        let end = self.payload() as u16;
        let b = &mut p[PAGE_HEADER..];
        put_u16(b, 0, 0);
        put_u16(b, 2, end);
        put_u16(b, 4, 0);
        let slot = self
            .place(&mut p, no, data, flags)?
            .ok_or_else(|| self.corrupt(no, "fresh page cannot hold a blob"))?;
        drop(p);
        self.set_fill(st, no)?;
        Ok(no << 16 | slot as u64)
    }

    /// Makes `no` the fill page. The page it replaces goes on the free list if
    /// all its blobs were freed while it was the fill page (an empty slotted
    /// page is never left off the free list).
    fn set_fill(&self, st: &mut State, no: u64) -> Result<()> {
        let old = std::mem::replace(&mut st.fill, no);
        if old != 0 && old != no {
            let empty = {
                let p = self.file.read(old)?;
                PageType::from_byte(layout::page_type(&p)) == Some(PageType::Blobs)
                    && get_u16(&p[PAGE_HEADER..], 4) == 0
            };
            if empty {
                self.release_page(st, old)?;
            }
        }
        Ok(())
    }

    /// Puts `data` into a slotted page if it fits (compacting the page if that
    /// helps). Returns the slot.
    fn place(&self, page: &mut [u8], no: u64, data: &[u8], flags: u16) -> Result<Option<usize>> {
        let b = &mut page[PAGE_HEADER..];
        let count = usize::from(get_u16(b, 0));
        let mut end = usize::from(get_u16(b, 2));
        let live = get_u16(b, 4);
        if SLOT_AREA + count * SLOT > end || end > b.len() {
            return Err(self.corrupt(no, "slot directory overlaps data"));
        }
        let dead = (0..count).find(|&i| get_u16(b, SLOT_AREA + i * SLOT + 4) == 0);
        let slot_cost = if dead.is_some() { 0 } else { SLOT };
        let dir_end = SLOT_AREA + count * SLOT + slot_cost;
        if dir_end + data.len() > end {
            let used: usize = (0..count)
                .filter(|&i| get_u16(b, SLOT_AREA + i * SLOT + 4) != 0)
                .map(|i| usize::from(get_u16(b, SLOT_AREA + i * SLOT + 2)))
                .sum();
            if dir_end + used + data.len() > b.len() {
                return Ok(None);
            }
            end = compact(b, count);
        }
        let slot = dead.unwrap_or(count);
        let off = end - data.len();
        b[off..end].copy_from_slice(data);
        let s = SLOT_AREA + slot * SLOT;
        put_u16(b, s, off as u16);
        put_u16(b, s + 2, data.len() as u16);
        put_u16(b, s + 4, flags);
        put_u16(b, s + 6, 0);
        if dead.is_none() {
            put_u16(b, 0, (count + 1) as u16);
        }
        put_u16(b, 2, off as u16);
        put_u16(b, 4, live + 1);
        Ok(Some(slot))
    }

    /// Reads a slot: its flags and bytes.
    fn slot(&self, id: u64) -> Result<(u16, Vec<u8>)> {
        let (no, slot) = (id >> 16, (id & 0xffff) as usize);
        if no == 0 || no >= self.file.page_count() {
            return Err(self.corrupt(no, format!("blob id {id:#x} points outside the file")));
        }
        let p = self.file.read(no)?;
        if PageType::from_byte(layout::page_type(&p)) != Some(PageType::Blobs) {
            return Err(self.corrupt(no, format!("blob id {id:#x} does not point to a blob page")));
        }
        let b = &p[PAGE_HEADER..];
        let count = usize::from(get_u16(b, 0));
        if slot >= count {
            return Err(self.corrupt(no, format!("blob slot {slot} does not exist")));
        }
        let s = SLOT_AREA + slot * SLOT;
        let (off, len, flags) = (
            usize::from(get_u16(b, s)),
            usize::from(get_u16(b, s + 2)),
            get_u16(b, s + 4),
        );
        if flags == 0 {
            return Err(self.corrupt(no, format!("blob slot {slot} is free")));
        }
        if off + len > b.len() || off < SLOT_AREA + count * SLOT {
            return Err(self.corrupt(no, format!("blob slot {slot} points outside the page")));
        }
        Ok((flags, b[off..off + len].to_vec()))
    }

    /// Reads blob `id`, which must be `len` bytes long.
    pub fn get(&self, id: u64, len: u64) -> Result<Vec<u8>> {
        let (flags, bytes) = self.slot(id)?;
        let no = id >> 16;
        let data = match flags {
            F_INLINE => bytes,
            F_OVERFLOW if bytes.len() == DESCRIPTOR => {
                let total = get_u64(&bytes, 0);
                let mut next = get_u64(&bytes, 8);
                if total != len {
                    return Err(self.corrupt(no, format!("blob is {total} bytes, expected {len}")));
                }
                let mut out = Vec::with_capacity(total as usize);
                while next != 0 {
                    if out.len() as u64 >= total {
                        return Err(self.corrupt(next, "overflow chain longer than its blob"));
                    }
                    if next >= self.file.page_count() {
                        return Err(self.corrupt(next, "overflow page outside the file"));
                    }
                    let p = self.file.read(next)?;
                    if PageType::from_byte(layout::page_type(&p)) != Some(PageType::Overflow) {
                        return Err(self.corrupt(next, "expected an overflow page"));
                    }
                    let n = get_u32(&p, PAGE_HEADER + 8) as usize;
                    let start = PAGE_HEADER + OVF_HEAD;
                    if start + n > p.len() {
                        return Err(self.corrupt(next, "overflow chunk longer than its page"));
                    }
                    out.extend_from_slice(&p[start..start + n]);
                    next = get_u64(&p, PAGE_HEADER);
                }
                out
            }
            _ => return Err(self.corrupt(no, format!("blob slot has flags {flags}"))),
        };
        if data.len() as u64 != len {
            return Err(self.corrupt(no, format!("blob is {} bytes, expected {len}", data.len())));
        }
        Ok(data)
    }

    /// Schedules blob `id` to be freed by the next [`BlobStore::release_retired`].
    ///
    /// A blob replaced by an update stays allocated until the data file's new slot
    /// is synced: were its space reused sooner, a crash could leave the old slot
    /// pointing at another record's bytes.
    pub fn retire(&self, id: u64) {
        self.state.lock().retired.push(id);
    }

    /// Frees the retired blobs. Call only after the data file was synced.
    pub fn release_retired(&self) -> Result<()> {
        let retired = std::mem::take(&mut self.state.lock().retired);
        for id in retired {
            self.free(id)?;
        }
        Ok(())
    }

    /// Forgets blobs retired after the first `n` (undoing a failed commit).
    pub fn truncate_retired(&self, n: usize) {
        self.state.lock().retired.truncate(n);
    }

    /// Blobs waiting for [`BlobStore::release_retired`].
    pub fn retired(&self) -> usize {
        self.state.lock().retired.len()
    }

    /// Frees blob `id` at once (for blobs nothing durable points to).
    pub fn free(&self, id: u64) -> Result<()> {
        self.file.check_writable()?;
        let (flags, bytes) = self.slot(id)?;
        let mut st = self.state.lock();
        if flags == F_OVERFLOW && bytes.len() == DESCRIPTOR {
            self.free_chain(&mut st, get_u64(&bytes, 8))?;
        }
        let (no, slot) = (id >> 16, (id & 0xffff) as usize);
        let (live, free_bytes) = {
            let mut p = self.file.write(no)?;
            let b = &mut p[PAGE_HEADER..];
            let s = SLOT_AREA + slot * SLOT;
            put_u16(b, s + 2, 0);
            put_u16(b, s + 4, 0);
            let live = get_u16(b, 4).saturating_sub(1);
            put_u16(b, 4, live);
            let count = usize::from(get_u16(b, 0));
            let used: usize = (0..count)
                .filter(|&i| get_u16(b, SLOT_AREA + i * SLOT + 4) != 0)
                .map(|i| usize::from(get_u16(b, SLOT_AREA + i * SLOT + 2)))
                .sum();
            (live, b.len() - used)
        };
        if live == 0 && st.fill != no {
            self.release_page(&mut st, no)?;
        } else if st.fill != no && free_bytes * 2 >= self.payload() && !st.reusable.contains(&no) {
            st.reusable.push(no);
        }
        Ok(())
    }
}

/// Writes a blob file's header page.
pub fn write_header_page(
    file: &PageFile,
    free_head: u64,
    fill: u64,
    incarnation: u64,
    pages: u64,
) -> Result<()> {
    let mut page = layout::file_header(file.page_size(), MAGIC, VERSION);
    put_u64(&mut page, HDR_PAGES, pages);
    put_u64(&mut page, HDR_FREE, free_head);
    put_u64(&mut page, HDR_FILL, fill);
    put_u64(&mut page, HDR_INCARNATION, incarnation);
    file.write_direct(0, &mut page)
}

/// Reads a blob file header's incarnation (None if the header is not sound).
pub fn read_incarnation(file: &PageFile) -> Option<u64> {
    let mut page = vec![0u8; file.page_size() as usize];
    file.read_direct(0, &mut page).ok()?;
    (&page[PAGE_HEADER..PAGE_HEADER + 8] == MAGIC).then(|| get_u64(&page, HDR_INCARNATION))
}

/// Moves live slot data to the end of the page; returns the new data start.
fn compact(b: &mut [u8], count: usize) -> usize {
    let mut items: Vec<(usize, Vec<u8>)> = (0..count)
        .filter(|&i| get_u16(b, SLOT_AREA + i * SLOT + 4) != 0)
        .map(|i| {
            let s = SLOT_AREA + i * SLOT;
            let (off, len) = (usize::from(get_u16(b, s)), usize::from(get_u16(b, s + 2)));
            (i, b[off..off + len].to_vec())
        })
        .collect();
    items.sort_by_key(|(i, _)| *i);
    let mut end = b.len();
    for (i, data) in items {
        let off = end - data.len();
        b[off..end].copy_from_slice(&data);
        put_u16(b, SLOT_AREA + i * SLOT, off as u16);
        end = off;
    }
    end
}

fn check_magic(page: &[u8], path: &Path, page_size: u32) -> Result<()> {
    if &page[PAGE_HEADER..PAGE_HEADER + 8] != MAGIC {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            kind: "blob",
        });
    }
    let v = get_u32(page, PAGE_HEADER + 8);
    if v != VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: v,
            supported: VERSION,
        });
    }
    if get_u32(page, PAGE_HEADER + 12) != page_size {
        return Err(Error::CorruptPage {
            path: path.to_path_buf(),
            page: 0,
            reason: "blob file page size differs from its table's".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::BufferPool;
    use crate::storage::{MemoryStorage, OpenMode, Storage};

    fn store(pool_bytes: usize) -> BlobStore {
        let s = MemoryStorage::new();
        let p = Path::new("/t.rzb");
        let f = s.open(p, OpenMode::CreateNew).unwrap();
        let file = PageFile::open(BufferPool::new(pool_bytes), f, p, 4096).unwrap();
        BlobStore::create(file).unwrap()
    }

    #[test]
    fn small_and_large_blobs_round_trip_and_free() {
        let b = store(1 << 20);
        let mut ids = Vec::new();
        for i in 0..200usize {
            let len = (i * 97) % 9000;
            let data: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            ids.push((b.put(&data).unwrap(), data));
        }
        for (id, data) in &ids {
            assert_eq!(&b.get(*id, data.len() as u64).unwrap(), data);
        }
        let pages_before = b.file().page_count();
        for (id, _) in ids.iter().step_by(2) {
            b.free(*id).unwrap();
        }
        for (id, data) in ids.iter().skip(1).step_by(2) {
            assert_eq!(&b.get(*id, data.len() as u64).unwrap(), data);
        }
        // Freed space is reused: storing the same again does not double the file.
        for (_, data) in ids.iter().step_by(2) {
            b.put(data).unwrap();
        }
        assert!(
            b.file().page_count() < pages_before * 2,
            "{} vs {pages_before}",
            b.file().page_count()
        );
        assert!(b.get(ids[0].0, ids[0].1.len() as u64).is_err());
    }

    #[test]
    fn bad_ids_are_errors() {
        let b = store(1 << 20);
        let id = b.put(b"hello").unwrap();
        assert!(b.get(id, 4).is_err());
        assert!(b.get(0, 0).is_err());
        assert!(b.get(999 << 16, 1).is_err());
        assert!(b.get(id + 5, 5).is_err());
    }
}
