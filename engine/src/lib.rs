//! # raiz-engine
//!
//! The embedded engine of raiz, a transactional ISAM storage engine in the
//! tradition of the c-tree engines under ERP application servers.
//!
//! Layers, bottom up:
//!
//! - [`storage`] — the storage trait, with real, in-memory and fault-injecting files;
//! - [`page`] — page layout and checksums, the bounded buffer pool, paged files;
//! - [`schema`] — field types, values and their validation;
//! - [`index`] — index definitions, order-preserving keys, the B+tree;
//! - [`record`] — record encoding, recno-addressed slots, the blob file for memos
//!   and variable-length records;
//! - [`log`] — the write-ahead log: frames, segments, group commit;
//! - [`table`] — the self-describing header, an open table's reads, writes, its
//!   part in commits, maintenance (check, rebuild, pack, alter);
//! - `txn` (internal) — transactions' commit across tables, locks, checkpoints;
//! - [`db`] — the rootpath, its owner lock, recovery at open, sessions and
//!   transactions, the [`Table`] handle and its navigation.
//!
//! The table layer writes its commits' pages to the log, and recovery (in `db`)
//! reads the table header format; otherwise each layer only uses those above it
//! in this list.
//!
//! ```
//! use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value, Memo};
//! # let dir = tempfile::tempdir().unwrap();
//! let db = Database::open(dir.path())?;
//! let schema = Schema::new(vec![
//!     Field::new("CODE", FieldType::Char(6)),
//!     Field::new("PRICE", FieldType::Numeric { len: 12, dec: 2 }),
//!     Field::new("NOTES", FieldType::Memo),
//! ]);
//! db.create_table("sb1", &schema, TableOptions::default())?;
//! let mut t = db.session().open_table("sb1")?;
//! let r = t.append(&[
//!     Value::from("A001"),
//!     Value::Numeric("19.90".parse().unwrap()),
//!     Value::Memo(Memo::Data(b"long text".to_vec())),
//! ])?;
//! assert_eq!(t.read_memo(r, "NOTES")?, b"long text");
//! t.delete(r)?;
//! assert!(t.read(r)?.is_deleted());
//! # Ok::<(), raiz_engine::Error>(())
//! ```

#![warn(missing_docs)]

pub mod backup;
pub mod db;
pub mod error;
pub mod feed;
pub mod index;
pub mod log;
pub mod page;
pub mod record;
pub mod schema;
pub mod stats;
pub mod storage;
pub mod table;
pub(crate) mod txn;

pub use db::Table;
pub use db::{validate_table_name, Database, Options, Session};
pub use error::{Error, Result};
pub use record::Record;
pub use schema::{
    Date, Decimal, DecimalError, Durability, Field, FieldType, Memo, MemoRef, RecordBuilder,
    RecordFormat, Rounding, Schema, Value,
};
pub use table::{TableInfo, TableOptions};
pub use txn::{LockInfo, LockKey, LogOptions};
