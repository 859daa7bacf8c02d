//! # raiz-sql
//!
//! SQL over live raiz tables: each table a user may read is an SQLite
//! virtual table, so reports run joins, aggregates, `GROUP BY` and
//! `ORDER BY` over the very records the ISAM application writes, with no
//! export and no copy.
//!
//! - [`value`] — how raiz types appear in SQL;
//! - [`plan`] — which index a query reads through (`best_index`), and the
//!   safe bounds derived from its values;
//! - `vtab` (internal) — the virtual table module and its cursors;
//! - [`catalog`] — `information_schema` and a small `pg_catalog`;
//! - [`session`] — a SQL session: its tables, its read-only guard, and what
//!   a query sees while others commit.
//!
//! SQL is read-only here: writes stay on the ISAM API, where locks,
//! transactions and the change feed keep every copy coherent.

#![warn(missing_docs)]

pub mod catalog;
pub mod error;
pub mod plan;
pub mod session;
pub mod value;
mod vtab;

pub use error::{Error, Result};
pub use rusqlite::InterruptHandle;
pub use session::{everything, Column, Options, QueryResult, SqlSession};
pub use value::SqlValue;
pub use vtab::Access;
