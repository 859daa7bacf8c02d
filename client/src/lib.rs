//! # raiz-client
//!
//! The Session / Table API an application writes once and runs in every mode,
//! chosen by a connection string:
//!
//! | string                             | mode                                       |
//! |------------------------------------|--------------------------------------------|
//! | `file:/data/root`                  | embedded, opening the rootpath in-process  |
//! | `raiz://user@host:7070`            | a `raiz serve` over TCP                    |
//! | `raizs://user@host:7070?ca=ca.pem` | a `raiz serve` over TCP with TLS           |
//! | `raiz+unix://user@/run/raiz.sock`  | a `raiz serve` over its Unix socket        |
//!
//! Embedded, every call goes straight to [`raiz_engine`]. Remote, each
//! [`Session`] is one authenticated connection to the server (its locks and
//! transaction live exactly as long as the connection), and each call is a
//! request in the [`proto`] wire protocol; errors keep their [`ErrorKind`], so
//! an application matches `err.kind()` the same way in both modes. Navigation
//! reads ahead (see [`Table`]), range iterators fetch growing batches and
//! [`Table::batch`] reads, deletes or updates a whole key range in one request;
//! [`Session::round_trips`] counts what that saves.
//!
//! ```
//! use raiz_client::ConnectionString;
//! let c: ConnectionString = "raiz://ana@db1:7070".parse().unwrap();
//! assert!(matches!(c, ConnectionString::Tcp { port: 7070, tls: false, .. }));
//! ```
//!
//! The engine's data types are re-exported here ([`Value`], [`Schema`],
//! [`Decimal`], [`Record`], [`index::IndexDef`]…), so an application depends
//! on `raiz-client` alone:
//!
//! ```
//! use raiz_client::index::{IndexDef, Segment};
//! use raiz_client::{
//!     Connection, Date, Decimal, Field, FieldType, Rounding, Schema, TableOptions, Value,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let root = dir.path().display();
//! // "raiz://user@host:7070" runs the same code against a server.
//! let conn = Connection::connect(&format!("file:{root}"))?;
//! let s = conn.session()?;
//! s.create_table(
//!     "sa1",
//!     &Schema::new(vec![
//!         Field::new("A1_COD", FieldType::Char(6)),
//!         Field::new("A1_NOME", FieldType::Char(40)),
//!         Field::new("A1_LC", FieldType::Numeric { len: 14, dec: 2 }),
//!         Field::new("A1_DTCAD", FieldType::Date),
//!     ]),
//!     TableOptions::default(),
//! )?;
//! let mut sa1 = s.open_table("sa1")?;
//! sa1.create_index(&IndexDef::new("sa1_1", vec![Segment::field("A1_COD")]).unique())?;
//! sa1.create_index(&IndexDef::new("sa1_2", vec![Segment::field("A1_NOME").fold()]))?;
//!
//! for (cod, nome, lc) in [("000001", "Érico Souza", "1500"), ("000002", "Ângela Lima", "2500.50")] {
//!     let new = sa1
//!         .schema()
//!         .blank()
//!         .set("A1_COD", cod)?
//!         .set("A1_NOME", nome)?
//!         .set("A1_LC", lc.parse::<Decimal>()?)?
//!         .set("A1_DTCAD", Date::ymd(2024, 5, 1))?;
//!     sa1.append(new.values())?;
//! }
//!
//! // dbSetOrder(2); dbSeek("ANGELA"): the folded index ignores accents and case.
//! sa1.set_order(Some("sa1_2"))?;
//! assert!(sa1.seek(&[Value::from("angela")])?);
//! let rec = sa1.record()?;
//! assert_eq!(rec.str("A1_NOME")?, "Ângela Lima");
//! let limit = rec.dec("A1_LC")?;
//! let monthly = limit.try_div(Decimal::from(12), 2, Rounding::HalfUp)?;
//! assert_eq!(monthly.to_string(), "208.38");
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod cache;
mod error;
mod failover;
pub mod proto;
mod raw;
mod remote;
mod session;
mod table;
mod url;

pub use error::{Error, ErrorKind, Result};
pub use proto::{BatchAction, BatchOutcome, BatchRequest, Permissions, Rights, SessionInfo};
pub use raw::RawSession;
pub use session::{Connection, Retry, Savepoint, Session};
pub use table::{RangeIter, Table, MAX_READ_AHEAD};
pub use url::{ConnectOptions, ConnectionString, DEFAULT_PORT};

pub use raiz_engine::schema::{DecimalError, ParseDecimalError, RecordBuilder, Rounding};
pub use raiz_engine::table::{CheckReport, RewriteReport};
pub use raiz_engine::{
    Date, Decimal, Durability, Field, FieldType, LogOptions, Memo, MemoRef, Record, RecordFormat,
    Schema, TableInfo, TableOptions, Value,
};

/// Index definitions, as the engine defines them: [`Table::create_index`]
/// takes an [`IndexDef`](index::IndexDef) of [`Segment`](index::Segment)s and
/// an optional [`Condition`](index::Condition).
pub mod index {
    pub use raiz_engine::index::{CmpOp, Condition, IndexDef, Literal, Segment};
}
