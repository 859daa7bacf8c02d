//! The page header every page of every raiz file starts with.
//!
//! | offset | size | field                                                     |
//! |-------:|-----:|-----------------------------------------------------------|
//! |      0 |    4 | crc32 (crc32fast) of bytes `4..page_size`, little-endian   |
//! |      4 |    1 | page type ([`PageType`])                                  |
//! |      5 |    3 | reserved, zero                                            |
//! |      8 |    8 | LSN of the last logged change applied to the page         |
//! |     16 |    8 | the page's own number (catches misdirected writes)        |
//! |     24 |    … | payload, laid out by the page type's owner                |
//!
//! Invariants: a page on disk either has a matching checksum and its own page
//! number, or is reported as corrupt ([`crate::Error::Checksum`] /
//! [`crate::Error::CorruptPage`]). An all-zero page is a page that was allocated
//! but never written back (its checksum is not checked, it reads as [`PageType::Free`]).
//! All integers on disk are little-endian.

/// Bytes taken by the page header.
pub const PAGE_HEADER: usize = 24;

/// Smallest page size accepted.
pub const MIN_PAGE_SIZE: u32 = 4096;
/// Largest page size accepted (offsets inside a page fit in a `u16`).
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Page size used when a table does not choose one.
pub const DEFAULT_PAGE_SIZE: u32 = 8192;

/// What a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Unused (all zeros, or on a free list).
    Free = 0,
    /// A file header copy.
    Header = 1,
    /// Record slots of a data file.
    Records = 2,
    /// A slotted page of small blobs.
    Blobs = 3,
    /// One piece of a large blob's chain.
    Overflow = 4,
    /// A B+tree node of an index.
    Index = 5,
}

impl PageType {
    /// Decodes the type byte.
    pub fn from_byte(b: u8) -> Option<PageType> {
        Some(match b {
            0 => PageType::Free,
            1 => PageType::Header,
            2 => PageType::Records,
            3 => PageType::Blobs,
            4 => PageType::Overflow,
            5 => PageType::Index,
            _ => return None,
        })
    }
}

/// True for page sizes raiz accepts: a power of two in `4 KiB..=64 KiB`.
pub fn valid_page_size(size: u32) -> bool {
    size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size)
}

/// Reads a little-endian `u16` at `off`.
#[inline]
pub fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian `u32` at `off`.
#[inline]
pub fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian `u64` at `off`.
#[inline]
pub fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Writes a little-endian `u16` at `off`.
#[inline]
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian `u32` at `off`.
#[inline]
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian `u64` at `off`.
#[inline]
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Checksum of a page image (everything after the checksum field).
#[inline]
pub fn page_checksum(page: &[u8]) -> u32 {
    crc32fast::hash(&page[4..])
}

/// Fills in the header of `page` and seals it with its checksum.
pub fn seal(page: &mut [u8], page_no: u64) {
    put_u64(page, 16, page_no);
    let crc = page_checksum(page);
    put_u32(page, 0, crc);
}

/// Starts a fresh page of `ty` (zeroes it, sets the type).
pub fn format(page: &mut [u8], ty: PageType) {
    page.fill(0);
    page[4] = ty as u8;
}

/// A new file-header page image: page type Header, then at the payload's start
/// the file's magic, format version and page size (the layout every raiz file
/// header begins with; the rest is the file kind's own).
pub fn file_header(page_size: u32, magic: &[u8; 8], version: u32) -> Vec<u8> {
    let mut page = vec![0u8; page_size as usize];
    format(&mut page, PageType::Header);
    page[PAGE_HEADER..PAGE_HEADER + 8].copy_from_slice(magic);
    put_u32(&mut page, PAGE_HEADER + 8, version);
    put_u32(&mut page, PAGE_HEADER + 12, page_size);
    page
}

/// The type byte of a page image.
pub fn page_type(page: &[u8]) -> u8 {
    page[4]
}

/// The LSN stored in a page image.
pub fn page_lsn(page: &[u8]) -> u64 {
    get_u64(page, 8)
}

/// Sets the LSN of a page image.
pub fn set_page_lsn(page: &mut [u8], lsn: u64) {
    put_u64(page, 8, lsn);
}

/// What [`verify`] found wrong with a page image.
#[derive(Debug, PartialEq, Eq)]
pub enum PageFault {
    /// The checksum does not match.
    Checksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// The page says it is another page.
    Misplaced {
        /// The number stored in the page.
        found: u64,
    },
    /// Unknown page type byte.
    BadType(u8),
}

/// Checks a page image read from disk as page `page_no`. All-zero pages pass.
pub fn verify(page: &[u8], page_no: u64) -> Result<(), PageFault> {
    let stored = get_u32(page, 0);
    if stored == 0 && page.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let computed = page_checksum(page);
    if stored != computed {
        return Err(PageFault::Checksum { stored, computed });
    }
    let found = get_u64(page, 16);
    if found != page_no {
        return Err(PageFault::Misplaced { found });
    }
    if PageType::from_byte(page[4]).is_none() {
        return Err(PageFault::BadType(page[4]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_page_verifies_and_a_flipped_byte_does_not() {
        let mut p = vec![0u8; 4096];
        format(&mut p, PageType::Records);
        p[100] = 7;
        seal(&mut p, 9);
        assert_eq!(verify(&p, 9), Ok(()));
        assert_eq!(verify(&p, 8), Err(PageFault::Misplaced { found: 9 }));
        p[200] ^= 1;
        assert!(matches!(verify(&p, 9), Err(PageFault::Checksum { .. })));
    }

    #[test]
    fn zero_page_is_free() {
        let p = vec![0u8; 4096];
        assert_eq!(verify(&p, 3), Ok(()));
        assert_eq!(PageType::from_byte(page_type(&p)), Some(PageType::Free));
    }

    #[test]
    fn page_sizes() {
        assert!(valid_page_size(8192));
        assert!(!valid_page_size(8000));
        assert!(!valid_page_size(2048));
        assert!(!valid_page_size(131072));
    }
}
