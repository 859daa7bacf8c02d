//! Records: their encoding, the slots that address them by recno, and the blob
//! file that holds memos and the bodies of variable-length records.

mod access;
mod blob;
mod codec;
mod slots;

use std::sync::Arc;

pub use blob::{
    read_incarnation as blob_incarnation, write_header_page as write_blob_header, BlobStore,
};
pub use codec::Codec;
pub use slots::{SlotMap, SlotStatus, FIRST_RECORD_PAGE, VAR_SLOT_BODY};

use crate::schema::{Schema, Value};

/// A record read from a table.
///
/// Its fields are read by name, typed: [`Record::str`], [`Record::dec`],
/// [`Record::int`], [`Record::date`], [`Record::bool`], [`Record::memo`]…
/// (see `record/access.rs`), or as [`Value`]s with [`Record::get`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    recno: u64,
    deleted: bool,
    values: Vec<Value>,
    schema: Arc<Schema>,
}

impl Record {
    pub(crate) fn new(
        recno: u64,
        deleted: bool,
        values: Vec<Value>,
        schema: Arc<Schema>,
    ) -> Record {
        Record {
            recno,
            deleted,
            values,
            schema,
        }
    }

    /// A record from its parts, as a client rebuilds one received over the
    /// network. `values` must follow `schema`; writing it back goes through the
    /// same validation as any other write.
    pub fn from_parts(
        recno: u64,
        deleted: bool,
        values: Vec<Value>,
        schema: Arc<Schema>,
    ) -> Record {
        Record::new(recno, deleted, values, schema)
    }

    /// The record number (1-based, stable until the table is packed).
    pub fn recno(&self) -> u64 {
        self.recno
    }

    /// True when the record is logically deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// All values, in schema order. Memo fields hold a reference, not the bytes.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Takes the values (for an update).
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// The value of the field named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.schema.position(name).and_then(|i| self.values.get(i))
    }

    /// The table's schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}
