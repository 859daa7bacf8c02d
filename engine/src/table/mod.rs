//! Tables: the self-describing header, an open table's reads, writes, commits and
//! maintenance. The handle sessions use is [`crate::Table`].

mod bulk;
mod check;
mod commit;
mod core;
pub mod header;
mod maint;
mod reserve;
mod verify;
mod write;

use serde::{Deserialize, Serialize};

pub use self::core::OpenReport;
pub use header::{IndexBinding, RepairStats};

pub use check::CheckReport;
pub use maint::RewriteReport;

pub(crate) use bulk::DEFER_FROM;
pub(crate) use commit::{Captured, Undo};

pub(crate) use self::core::{is_table_file, Env, TableCore, TablePaths};

use crate::page::DEFAULT_PAGE_SIZE;
use crate::schema::{Durability, RecordFormat};

/// Choices made when a table is created.
///
/// ```
/// use raiz_engine::{RecordFormat, TableOptions};
/// let opts = TableOptions::default().format(RecordFormat::Variable).page_size(16384);
/// assert_eq!(opts.page_size, 16384);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    /// Fixed or variable-length records.
    pub format: RecordFormat,
    /// Page size in bytes: a power of two in 4096..=65536.
    pub page_size: u32,
    /// How the table survives a crash.
    pub durability: Durability,
    /// An Int64 field the engine fills at append with an ever-increasing number.
    pub serial: Option<String>,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            format: RecordFormat::Fixed,
            page_size: DEFAULT_PAGE_SIZE,
            durability: Durability::Logged,
            serial: None,
        }
    }
}

impl TableOptions {
    /// Sets the record format.
    pub fn format(mut self, format: RecordFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the page size.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Names the serial field (Int64), filled by the engine at append.
    pub fn serial(mut self, field: impl Into<String>) -> Self {
        self.serial = Some(field.into());
        self
    }

    /// Sets the durability level.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// What `info` reports about a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// The table's name.
    pub name: String,
    /// Unique id of its data file.
    pub file_id: u128,
    /// Absolute path of the data file as recorded in its header.
    pub path: String,
    /// Record format.
    pub format: RecordFormat,
    /// Durability level.
    pub durability: Durability,
    /// Page size.
    pub page_size: u32,
    /// Records, deleted ones included.
    pub record_count: u64,
    /// Logically deleted records.
    pub deleted_count: u64,
    /// Fields.
    pub schema: crate::schema::Schema,
    /// Repair counters.
    pub stats: RepairStats,
    /// Pages in the data file.
    pub data_pages: u64,
    /// Pages in the blob file (0 if none).
    pub blob_pages: u64,
    /// Pages in the index files, all indexes together.
    pub index_pages: u64,
    /// Bound indexes: name, definition, entries.
    pub indexes: Vec<(crate::index::IndexDef, u64)>,
    /// The serial field and the next number it hands out.
    pub serial: Option<(String, u64)>,
}

impl TableInfo {
    /// Bytes of the table's files: data, memos and indexes.
    pub fn bytes(&self) -> u64 {
        (self.data_pages + self.blob_pages + self.index_pages) * u64::from(self.page_size)
    }
}
