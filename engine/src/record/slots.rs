//! Record slots in the data file: recno → (page, offset) by arithmetic alone.
//!
//! Pages `FIRST_RECORD_PAGE..` of a data file are record pages; each holds
//! `per_page` slots of `slot_len` bytes after the page header. A slot is a status
//! byte ([`SlotStatus`]) followed by, for fixed tables, the encoded record, and for
//! variable tables a reference to the record's body in the blob file (blob id u64,
//! length u32). So recno `r` lives in page `FIRST_RECORD_PAGE + (r-1) / per_page`
//! at slot `(r-1) % per_page`: `goto` costs one page access in both formats.

use crate::error::{Error, Result};
use crate::page::{PageFile, PageType, PAGE_HEADER};

/// The first page holding records (pages 0 and 1 are the two header copies).
pub const FIRST_RECORD_PAGE: u64 = 2;

/// Bytes of a variable table's slot body: blob id and length.
pub const VAR_SLOT_BODY: usize = 12;

/// The state of a record slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStatus {
    /// Never written (beyond the end of the table, or lost in a crash).
    Empty = 0,
    /// A live record.
    Live = 1,
    /// A logically deleted record (still readable until pack).
    Deleted = 2,
}

impl SlotStatus {
    fn from_byte(b: u8) -> Option<SlotStatus> {
        match b {
            0 => Some(SlotStatus::Empty),
            1 => Some(SlotStatus::Live),
            2 => Some(SlotStatus::Deleted),
            _ => None,
        }
    }
}

/// Addressing of record slots in a data file.
#[derive(Debug, Clone, Copy)]
pub struct SlotMap {
    /// Bytes per slot, status byte included.
    pub slot_len: usize,
    /// Slots per page.
    pub per_page: u64,
}

impl SlotMap {
    /// Slots of `body_len` bytes (plus status) in pages of `page_size`.
    pub fn new(body_len: usize, page_size: u32) -> SlotMap {
        let slot_len = body_len + 1;
        SlotMap {
            slot_len,
            per_page: ((page_size as usize - PAGE_HEADER) / slot_len) as u64,
        }
    }

    /// Page and byte offset of `recno`'s slot.
    pub fn locate(&self, recno: u64) -> (u64, usize) {
        let i = recno - 1;
        (
            FIRST_RECORD_PAGE + i / self.per_page,
            PAGE_HEADER + (i % self.per_page) as usize * self.slot_len,
        )
    }

    /// Reads `recno`'s slot: its status and body bytes.
    pub fn read(&self, file: &PageFile, recno: u64) -> Result<(SlotStatus, Vec<u8>)> {
        let (page, off) = self.locate(recno);
        let p = file.read(page)?;
        let status = slot_status(file, &p, page, off)?;
        Ok((status, p[off + 1..off + self.slot_len].to_vec()))
    }

    /// Calls `f` with `recno`'s status and body bytes, borrowed from the page
    /// (held for reading meanwhile): a read that decodes the slot at once
    /// copies nothing first. `f` must not read other pages.
    pub fn read_with<R>(
        &self,
        file: &PageFile,
        recno: u64,
        f: impl FnOnce(SlotStatus, &[u8]) -> R,
    ) -> Result<R> {
        let (page, off) = self.locate(recno);
        let p = file.read(page)?;
        let status = slot_status(file, &p, page, off)?;
        Ok(f(status, &p[off + 1..off + self.slot_len]))
    }

    /// Hints that `recno`'s slot will be read soon (see [`PageFile::prefetch`]).
    pub fn prefetch(&self, file: &PageFile, recno: u64) {
        let (page, off) = self.locate(recno);
        file.prefetch(page, off, self.slot_len);
    }

    /// The first stage of a prefetch of `recno`'s slot (see
    /// [`PageFile::prefetch_entry`]).
    pub fn prefetch_entry(&self, file: &PageFile, recno: u64) {
        file.prefetch_entry(self.locate(recno).0);
    }

    /// Reads only `recno`'s status.
    pub fn status(&self, file: &PageFile, recno: u64) -> Result<SlotStatus> {
        let (page, off) = self.locate(recno);
        let p = file.read(page)?;
        slot_status(file, &p, page, off)
    }

    /// Makes sure the page of `recno` exists, growing the file by one page if
    /// `recno` starts a new page. A full disk fails here, before anything changed.
    pub fn ensure_page(&self, file: &PageFile, recno: u64) -> Result<()> {
        let (page, _) = self.locate(recno);
        while file.page_count() <= page {
            file.allocate(PageType::Records)?;
        }
        Ok(())
    }

    /// Writes `recno`'s slot.
    pub fn write(
        &self,
        file: &PageFile,
        recno: u64,
        status: SlotStatus,
        body: &[u8],
    ) -> Result<()> {
        debug_assert_eq!(body.len() + 1, self.slot_len);
        let (page, off) = self.locate(recno);
        let mut p = file.write(page)?;
        if p[4] != PageType::Records as u8 {
            p[4] = PageType::Records as u8;
        }
        p[off] = status as u8;
        p[off + 1..off + self.slot_len].copy_from_slice(body);
        Ok(())
    }

    /// Changes only `recno`'s status.
    pub fn set_status(&self, file: &PageFile, recno: u64, status: SlotStatus) -> Result<()> {
        let (page, off) = self.locate(recno);
        let mut p = file.write(page)?;
        p[off] = status as u8;
        Ok(())
    }

    /// Formats record page `page` anew, every slot empty (its content could
    /// not be read; what it held is lost).
    pub fn reset_page(&self, file: &PageFile, page: u64) -> Result<()> {
        let mut p = file.write_fresh(page)?;
        crate::page::layout::format(&mut p, PageType::Records);
        Ok(())
    }

    /// Records the file has room for (whole record pages times slots).
    pub fn capacity(&self, file: &PageFile) -> u64 {
        file.page_count().saturating_sub(FIRST_RECORD_PAGE) * self.per_page
    }
}

fn slot_status(file: &PageFile, p: &[u8], page: u64, off: usize) -> Result<SlotStatus> {
    SlotStatus::from_byte(p[off]).ok_or_else(|| Error::CorruptPage {
        path: file.path().to_path_buf(),
        page,
        reason: format!("record slot at offset {off} has status byte {}", p[off]),
    })
}
