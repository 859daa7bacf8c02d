//! Indexes: definitions and key encoding, the B+tree, and one index file.
//!
//! An index entry's full key is the record's key followed by an 8-byte suffix:
//! - in an index allowing duplicates, the recno (so duplicates sort by recno);
//! - in a unique index, 0 for a live record and the recno for a deleted one — so
//!   live keys are unique while deleted records may repeat them (the xBase-on-SQL
//!   engines' recno-or-zero column).
//!
//! The entry's value is always the recno.

mod btree;
mod key;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use btree::key_cmp;
pub use btree::{Ahead, BTree, Pos, Stepped, TreeState, AHEAD};
pub use key::{CmpOp, Condition, IndexDef, KeySpec, Literal, Segment, MAX_KEY_LEN};

use crate::error::{Error, Result};
use crate::page::layout::{self, get_u32, get_u64, put_u32, put_u64};
use crate::page::{BufferPool, PageFile, PAGE_HEADER};
use crate::schema::Value;
use crate::storage::{OpenMode, Storage};

const MAGIC: &[u8; 8] = b"RAIZIDX\0";
const VERSION: u32 = 1;
/// Offset (after the page header) of the page count: pages past it were
/// allocated by a commit that never completed. 0 (older files): unknown.
const HDR_PAGES: usize = 72;

/// Why an index file cannot be used as it is (and must be rebuilt).
#[derive(Debug)]
pub enum Stale {
    /// The file does not exist.
    Missing,
    /// The file is not this index's or is damaged.
    Unreadable(Error),
    /// The file belongs to another state of the table.
    StampMismatch {
        /// Stamp in the index file.
        found: u64,
        /// Stamp the table expects.
        expected: u64,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Missing => f.write_str("index file is missing"),
            Stale::Unreadable(e) => write!(f, "index file is unreadable: {e}"),
            Stale::StampMismatch { found, expected } => {
                write!(
                    f,
                    "index file is stale (sync stamp {found}, table expects {expected})"
                )
            }
        }
    }
}

/// One open index.
#[derive(Debug)]
pub struct Index {
    /// The compiled definition.
    pub spec: KeySpec,
    /// The tree.
    pub tree: BTree,
    /// File name inside the rootpath.
    pub file_name: String,
    /// Identifies this file across re-creations under the same name.
    pub incarnation: u64,
}

impl Index {
    fn klen(spec: &KeySpec) -> usize {
        spec.key_len() + 8
    }

    /// Creates (or truncates) the index file, empty.
    pub fn create(
        storage: &Arc<dyn Storage>,
        pool: &Arc<BufferPool>,
        root: &Path,
        file_name: &str,
        page_size: u32,
        spec: KeySpec,
    ) -> Result<Index> {
        let path = root.join(file_name);
        let f = storage
            .open(&path, OpenMode::OpenOrCreate)
            .map_err(|e| Error::io(&path, e))?;
        f.set_len(0).map_err(|e| Error::io(&path, e))?;
        let file = PageFile::open(pool.clone(), f, &path, page_size)?;
        let idx = Index {
            tree: BTree::new(file, Self::klen(&spec), TreeState::default()),
            spec,
            file_name: file_name.to_owned(),
            incarnation: rand::random(),
        };
        idx.write_header(0)?;
        // The file's name must outlive a power cut once the table's header
        // names it (or the log holds its pages).
        storage.sync_dir(root).map_err(|e| Error::io(root, e))?;
        Ok(idx)
    }

    /// Opens an index file, checking it belongs to this state of the table.
    pub fn open(
        storage: &Arc<dyn Storage>,
        pool: &Arc<BufferPool>,
        root: &Path,
        file_name: &str,
        page_size: u32,
        spec: KeySpec,
        stamp: u64,
    ) -> Result<Index, Stale> {
        let path = root.join(file_name);
        let f = match storage.open(&path, OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Stale::Missing),
            Err(e) => return Err(Stale::Unreadable(Error::io(&path, e))),
        };
        let file = PageFile::open(pool.clone(), f, &path, page_size).map_err(Stale::Unreadable)?;
        let (state, incarnation) = read_header(&file, &path, Self::klen(&spec), stamp)?;
        Ok(Index {
            tree: BTree::new(file, Self::klen(&spec), state),
            spec,
            file_name: file_name.to_owned(),
            incarnation,
        })
    }

    /// The index's name.
    pub fn name(&self) -> &str {
        &self.spec.def.name
    }

    /// Writes the header (root, counts, free list, stamp).
    pub fn write_header(&self, stamp: u64) -> Result<()> {
        write_header_page(
            self.tree.file(),
            Self::klen(&self.spec) as u32,
            self.tree.state,
            stamp,
            self.incarnation,
            self.tree.file().page_count(),
        )
    }

    /// Writes back every page and the header, then syncs.
    pub fn flush(&self, stamp: u64) -> Result<()> {
        self.tree.file().write_dirty()?;
        self.write_header(stamp)?;
        self.tree.file().sync()
    }

    /// The full key of a record in this index, or None when its condition
    /// leaves the record out.
    pub fn entry_key(&self, values: &[Value], recno: u64, deleted: bool) -> Option<Vec<u8>> {
        if !self.spec.includes(values) {
            return None;
        }
        let mut k = self.spec.key(values);
        let suffix = if self.spec.def.unique && !deleted {
            0
        } else {
            recno
        };
        k.extend_from_slice(&suffix.to_be_bytes());
        Some(k)
    }

    /// The key a live record would take in a unique index (suffix 0).
    pub fn live_key(&self, values: &[Value]) -> Option<Vec<u8>> {
        self.entry_key(values, 0, false)
    }

    /// Rebuilds the tree from every record: `records` yields (recno, values,
    /// deleted). `progress` is told how many entries were placed.
    pub fn build(
        &mut self,
        records: impl Iterator<Item = Result<(u64, Vec<Value>, bool)>>,
        stamp: u64,
        progress: impl FnMut(u64),
    ) -> Result<()> {
        let mut entries = Vec::new();
        for r in records {
            let (recno, values, deleted) = r?;
            if let Some(k) = self.entry_key(&values, recno, deleted) {
                entries.push((k, recno));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::DuplicateKey {
                table: String::new(),
                index: self.name().to_owned(),
                key: describe_key(&w[0].0),
                recno: w[1].1,
            });
        }
        self.tree.bulk_load(&entries, progress)?;
        self.flush(stamp)
    }

    /// Path of the index file.
    pub fn path(&self) -> PathBuf {
        self.tree.file().path().to_path_buf()
    }
}

/// Writes an index file's header page.
pub fn write_header_page(
    file: &PageFile,
    klen: u32,
    st: TreeState,
    stamp: u64,
    incarnation: u64,
    pages: u64,
) -> Result<()> {
    let mut page = layout::file_header(file.page_size(), MAGIC, VERSION);
    put_u32(&mut page, PAGE_HEADER + 16, klen);
    put_u32(&mut page, PAGE_HEADER + 20, st.height);
    put_u64(&mut page, PAGE_HEADER + 24, st.root);
    put_u64(&mut page, PAGE_HEADER + 32, st.entries);
    put_u64(&mut page, PAGE_HEADER + 40, st.free_head);
    put_u64(&mut page, PAGE_HEADER + 48, st.free_pages);
    put_u64(&mut page, PAGE_HEADER + 56, stamp);
    put_u64(&mut page, PAGE_HEADER + 64, incarnation);
    put_u64(&mut page, PAGE_HEADER + HDR_PAGES, pages);
    file.write_direct(0, &mut page)
}

/// Reads an index file header's incarnation (None if the header is not sound).
pub fn read_incarnation(file: &PageFile) -> Option<u64> {
    let mut page = vec![0u8; file.page_size() as usize];
    file.read_direct(0, &mut page).ok()?;
    (&page[PAGE_HEADER..PAGE_HEADER + 8] == MAGIC).then(|| get_u64(&page, PAGE_HEADER + 64))
}

fn read_header(
    file: &PageFile,
    path: &Path,
    klen: usize,
    stamp: u64,
) -> Result<(TreeState, u64), Stale> {
    if file.page_count() == 0 {
        return Err(Stale::Unreadable(Error::CorruptPage {
            path: path.to_path_buf(),
            page: 0,
            reason: "index file has no header".into(),
        }));
    }
    let mut page = vec![0u8; file.page_size() as usize];
    file.read_direct(0, &mut page).map_err(Stale::Unreadable)?;
    let bad = |reason: String| {
        Stale::Unreadable(Error::CorruptPage {
            path: path.to_path_buf(),
            page: 0,
            reason,
        })
    };
    if &page[PAGE_HEADER..PAGE_HEADER + 8] != MAGIC {
        return Err(Stale::Unreadable(Error::BadMagic {
            path: path.to_path_buf(),
            kind: "index",
        }));
    }
    if get_u32(&page, PAGE_HEADER + 8) != VERSION {
        return Err(bad(format!(
            "index format version {}",
            get_u32(&page, PAGE_HEADER + 8)
        )));
    }
    if get_u32(&page, PAGE_HEADER + 12) != file.page_size()
        || get_u32(&page, PAGE_HEADER + 16) as usize != klen
    {
        return Err(bad("index file does not match its definition".into()));
    }
    let found = get_u64(&page, PAGE_HEADER + 56);
    if found != stamp {
        return Err(Stale::StampMismatch {
            found,
            expected: stamp,
        });
    }
    let st = TreeState {
        height: get_u32(&page, PAGE_HEADER + 20),
        root: get_u64(&page, PAGE_HEADER + 24),
        entries: get_u64(&page, PAGE_HEADER + 32),
        free_head: get_u64(&page, PAGE_HEADER + 40),
        free_pages: get_u64(&page, PAGE_HEADER + 48),
    };
    if st.root >= file.page_count()
        || st.free_head >= file.page_count()
        || st.height > 64
        || (st.root == 0) != (st.height == 0)
    {
        return Err(bad("index header points outside its file".into()));
    }
    let pages = get_u64(&page, PAGE_HEADER + HDR_PAGES);
    if pages > 0 && file.page_count() > pages {
        // Pages a commit cut short by a crash allocated: nothing refers to them.
        file.shrink_to(pages).map_err(Stale::Unreadable)?;
    }
    Ok((st, get_u64(&page, PAGE_HEADER + 64)))
}

/// A printable form of a key's bytes: text where it is text, hex elsewhere.
pub fn describe_key(k: &[u8]) -> String {
    let body = &k[..k.len().saturating_sub(8)];
    if body.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(body).trim_end())
    } else {
        body.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests;
