//! The self-describing data file header.
//!
//! Pages 0 and 1 of a data file hold two copies of the header. Each write goes to
//! the copy with the older generation, so a write torn by a crash leaves the other
//! copy intact; open takes the valid copy with the newest generation.
//!
//! | offset | size | field                                          |
//! |-------:|-----:|------------------------------------------------|
//! |      0 |   24 | page header (checksum, type = Header, page no) |
//! |     24 |    8 | magic `RAIZDAT\0`                              |
//! |     32 |    4 | format version                                 |
//! |     36 |    4 | page size                                      |
//! |     40 |    8 | generation                                     |
//! |     48 |    4 | body length                                    |
//! |     52 |    … | body: [`HeaderBody`], postcard-encoded          |

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::page::layout::{self, get_u32, get_u64, put_u32, put_u64, valid_page_size};
use crate::page::{PageFile, PAGE_HEADER};
use crate::schema::{Durability, RecordFormat, Schema};
use crate::storage::StorageFile;

/// Magic bytes of a data file.
pub const MAGIC: &[u8; 8] = b"RAIZDAT\0";
/// The data file format this build writes. Version 1 (no `filled_to`) is
/// still read: such a header says nothing of reserved recnos, so its table is
/// scanned for them once, at its first open.
pub const FORMAT_VERSION: u32 = 2;
const BODY: usize = PAGE_HEADER + 28;

/// An index bound to the table: registered here so it can never be forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBinding {
    /// The index's name.
    pub name: String,
    /// Its file, relative to the rootpath.
    pub file: String,
    /// Must equal the data file's stamp, or the index is stale and is rebuilt.
    pub sync_stamp: u64,
    /// The definition, encoded by the index layer.
    pub definition: Vec<u8>,
}

/// Repairs and checks counted over the table's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStats {
    /// Opens that found the table not closed cleanly (and verified it).
    pub unclean_opens: u64,
    /// Opens that found the table moved to another directory.
    pub moves: u64,
    /// Header copies found damaged and rewritten.
    pub header_repairs: u64,
    /// Record slots lost in a crash and restored as deleted blank records.
    pub lost_slots_restored: u64,
    /// Indexes rebuilt because their file was missing, stale or damaged.
    pub index_rebuilds: u64,
}

/// The engine-assigned serial number of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialState {
    /// The Int64 field the engine fills.
    pub field: u16,
    /// The next number to hand out (never reused).
    pub next: u64,
}

/// Everything the header describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderBody {
    /// Unique id of this data file.
    pub file_id: u128,
    /// The table's name.
    pub table: String,
    /// Absolute path of the data file when it was created (or last moved).
    pub path: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// The fields.
    pub schema: Schema,
    /// Fixed or variable records.
    pub format: RecordFormat,
    /// Crash behaviour.
    pub durability: Durability,
    /// Bound indexes.
    pub indexes: Vec<IndexBinding>,
    /// The blob file (memos, variable bodies), relative to the rootpath.
    pub blob_file: Option<String>,
    /// Generation of the file set: pack, rebuild and alter write a new one.
    pub file_gen: u32,
    /// The serial field, if any.
    pub serial: Option<SerialState>,
    /// Records in the table, deleted ones included (the next recno is this + 1).
    pub record_count: u64,
    /// Of which logically deleted.
    pub deleted_count: u64,
    /// Changes whenever the data changes under indexes' feet; indexes carry it.
    pub sync_stamp: u64,
    /// True when the file was closed cleanly.
    pub clean: bool,
    /// Repair counters.
    pub stats: RepairStats,
    /// Every slot `1..=filled_to` holds a record (live or deleted). Slots above
    /// it, up to `record_count`, may be empty: recnos reserved by transactions
    /// still open when this header was written. A crash ends those
    /// transactions, so opening the table turns such empty slots into deleted
    /// blank records, as a rollback does.
    pub filled_to: u64,
}

/// A version-1 header body: [`HeaderBody`] without `filled_to`.
#[derive(Deserialize)]
struct HeaderBodyV1 {
    file_id: u128,
    table: String,
    path: String,
    created_at: u64,
    schema: Schema,
    format: RecordFormat,
    durability: Durability,
    indexes: Vec<IndexBinding>,
    blob_file: Option<String>,
    file_gen: u32,
    serial: Option<SerialState>,
    record_count: u64,
    deleted_count: u64,
    sync_stamp: u64,
    clean: bool,
    stats: RepairStats,
}

impl From<HeaderBodyV1> for HeaderBody {
    fn from(v: HeaderBodyV1) -> HeaderBody {
        HeaderBody {
            file_id: v.file_id,
            table: v.table,
            path: v.path,
            created_at: v.created_at,
            schema: v.schema,
            format: v.format,
            durability: v.durability,
            indexes: v.indexes,
            blob_file: v.blob_file,
            file_gen: v.file_gen,
            serial: v.serial,
            record_count: v.record_count,
            deleted_count: v.deleted_count,
            sync_stamp: v.sync_stamp,
            clean: v.clean,
            stats: v.stats,
            filled_to: 0,
        }
    }
}

/// A header read from disk, and which copy it came from.
#[derive(Debug)]
pub struct LoadedHeader {
    /// The page size recorded in the file.
    pub page_size: u32,
    /// Generation of the copy used.
    pub generation: u64,
    /// The decoded body.
    pub body: HeaderBody,
    /// True when one copy was damaged (the next write repairs it).
    pub damaged_copy: bool,
}

fn bad_header(path: &Path, page: u64, reason: impl Into<String>) -> Error {
    Error::CorruptPage {
        path: path.to_path_buf(),
        page,
        reason: reason.into(),
    }
}

/// Encodes a header copy for page `slot` (0 or 1).
pub fn encode(body: &HeaderBody, page_size: u32, generation: u64, path: &Path) -> Result<Vec<u8>> {
    let bytes = postcard::to_allocvec(body).map_err(|e| Error::InvalidSchema {
        table: body.table.clone(),
        reason: format!("header does not encode: {e}"),
    })?;
    let mut page = vec![0u8; page_size as usize];
    if BODY + bytes.len() > page.len() {
        return Err(Error::InvalidSchema {
            table: body.table.clone(),
            reason: format!(
                "the definition takes {} bytes, more than a {page_size}-byte header page holds; \
                 choose a larger page size ({})",
                bytes.len(),
                path.display()
            ),
        });
    }
    page.copy_from_slice(&layout::file_header(page_size, MAGIC, FORMAT_VERSION));
    put_u64(&mut page, PAGE_HEADER + 16, generation);
    put_u32(&mut page, PAGE_HEADER + 24, bytes.len() as u32);
    page[BODY..BODY + bytes.len()].copy_from_slice(&bytes);
    Ok(page)
}

/// Writes header `generation` into the copy it belongs to (`generation % 2`).
pub fn write(file: &PageFile, body: &HeaderBody, generation: u64) -> Result<()> {
    let mut page = encode(body, file.page_size(), generation, file.path())?;
    file.write_direct(generation % 2, &mut page)
}

enum Copy {
    Good(u64, HeaderBody),
    Bad(Error),
}

fn read_copy(file: &dyn StorageFile, path: &Path, page_no: u64, page_size: u32) -> Copy {
    let mut page = vec![0u8; page_size as usize];
    if let Err(e) = file.read_at(page_no * page_size as u64, &mut page) {
        return Copy::Bad(Error::io(path, e));
    }
    if let Err(f) = layout::verify(&page, page_no) {
        return Copy::Bad(crate::page::fault_error(path, page_no, f));
    }
    if &page[PAGE_HEADER..PAGE_HEADER + 8] != MAGIC {
        return Copy::Bad(Error::BadMagic {
            path: path.to_path_buf(),
            kind: "data",
        });
    }
    let version = get_u32(&page, PAGE_HEADER + 8);
    if version != FORMAT_VERSION && version != 1 {
        return Copy::Bad(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if get_u32(&page, PAGE_HEADER + 12) != page_size {
        return Copy::Bad(bad_header(
            path,
            page_no,
            "page size disagrees with the other copy",
        ));
    }
    let generation = get_u64(&page, PAGE_HEADER + 16);
    let len = get_u32(&page, PAGE_HEADER + 24) as usize;
    if BODY + len > page.len() {
        return Copy::Bad(bad_header(
            path,
            page_no,
            "header body longer than its page",
        ));
    }
    let bytes = &page[BODY..BODY + len];
    let decoded = if version == 1 {
        postcard::from_bytes::<HeaderBodyV1>(bytes).map(HeaderBody::from)
    } else {
        postcard::from_bytes::<HeaderBody>(bytes)
    };
    match decoded {
        Ok(body) => Copy::Good(generation, body),
        Err(e) => Copy::Bad(bad_header(
            path,
            page_no,
            format!("header body does not decode: {e}"),
        )),
    }
}

/// Reads the newest valid header copy of a data file.
pub fn read(file: &dyn StorageFile, path: &Path) -> Result<LoadedHeader> {
    let len = file.len().map_err(|e| Error::io(path, e))?;
    let mut prefix = [0u8; BODY];
    if len < BODY as u64 {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            kind: "data",
        });
    }
    file.read_at(0, &mut prefix)
        .map_err(|e| Error::io(path, e))?;
    let stated = get_u32(&prefix, PAGE_HEADER + 12);
    // The page size is read from copy 0; if that copy is damaged there, try every
    // legal size for copy 1.
    let mut sizes = vec![stated];
    sizes.extend((12..=16).map(|s| 1u32 << s).filter(|&s| s != stated));
    let mut first_error = None;
    for size in sizes.into_iter().filter(|&s| valid_page_size(s)) {
        if (2 * size as u64) > len {
            continue;
        }
        let a = read_copy(file, path, 0, size);
        let b = read_copy(file, path, 1, size);
        let pick = match (a, b) {
            (Copy::Good(ga, a), Copy::Good(gb, b)) => Some(if ga >= gb {
                (ga, a, false)
            } else {
                (gb, b, false)
            }),
            (Copy::Good(g, h), Copy::Bad(e)) | (Copy::Bad(e), Copy::Good(g, h)) => {
                tracing::warn!(file = %path.display(), error = %e, "one header copy is damaged; using the other");
                Some((g, h, true))
            }
            (Copy::Bad(e), Copy::Bad(_)) => {
                first_error.get_or_insert(e);
                None
            }
        };
        if let Some((generation, body, damaged_copy)) = pick {
            return Ok(LoadedHeader {
                page_size: size,
                generation,
                body,
                damaged_copy,
            });
        }
    }
    if &prefix[PAGE_HEADER..PAGE_HEADER + 8] != MAGIC {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            kind: "data",
        });
    }
    Err(first_error.unwrap_or_else(|| bad_header(path, 0, "file too short for its header pages")))
}
