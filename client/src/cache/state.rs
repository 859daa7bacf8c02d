//! What a node's copy holds, kept in the copy itself: the table `raiz_node`
//! of the node's local rootpath (`DIR/dbCache`).
//!
//! Record 1 is the position: the server's epoch and the last sequence number
//! applied. Every other record is one followed table: its local table and
//! whether it is ready. The position is updated in the same commit as the
//! changes it covers (`Session::replicate`), so after a crash of the node its
//! copy and its position agree: the log replays both or neither.

use raiz_engine::feed::RecordChange;
use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};

use crate::error::{Error, Result};

/// The local table holding the node's position and tables.
pub const STATE_TABLE: &str = "raiz_node";

/// Layout version of [`STATE_TABLE`]; a copy with another is reloaded.
const LAYOUT: i64 = 1;

/// Where a followed table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Loaded and current: reads are served from the copy.
    Ready,
    /// Being loaded: reads go to the server.
    Loading,
    /// Not on the server (dropped, or never created): reads go to the server.
    Absent,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Loading => "loading",
            Status::Absent => "absent",
        }
    }

    fn parse(s: &str) -> Status {
        match s.trim() {
            "ready" => Status::Ready,
            "loading" => Status::Loading,
            _ => Status::Absent,
        }
    }
}

/// A followed table as the state table records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its record in the state table.
    pub recno: u64,
    /// The server's name.
    pub name: String,
    /// The local table holding the copy ("" when none).
    pub local: String,
    /// Where it is.
    pub status: Status,
}

/// The node's state as last committed.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    /// The server's epoch (0: no copy yet).
    pub epoch: u64,
    /// The last sequence number applied.
    pub seq: u64,
    /// The number of the next local table.
    pub next_local: u64,
    /// The followed tables.
    pub tables: Vec<Row>,
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("KIND", FieldType::Char(8)),
        Field::new("NAME", FieldType::Char(64)),
        Field::new("LOCAL", FieldType::Char(64)),
        Field::new("STATUS", FieldType::Char(8)),
        Field::new("EPOCH", FieldType::Char(16)),
        Field::new("SEQ", FieldType::Int64),
        Field::new("NEXT", FieldType::Int64),
        Field::new("LAYOUT", FieldType::Int64),
    ])
}

/// The position record's values.
pub fn position(epoch: u64, seq: u64, next_local: u64) -> Vec<Value> {
    vec![
        Value::from("position"),
        Value::from(""),
        Value::from(""),
        Value::from(""),
        Value::from(format!("{epoch:016x}").as_str()),
        Value::Int64(seq as i64),
        Value::Int64(next_local as i64),
        Value::Int64(LAYOUT),
    ]
}

/// A table record's values.
pub fn table(name: &str, local: &str, status: Status) -> Vec<Value> {
    vec![
        Value::from("table"),
        Value::from(name),
        Value::from(local),
        Value::from(status.as_str()),
        Value::from(""),
        Value::Int64(0),
        Value::Int64(0),
        Value::Int64(LAYOUT),
    ]
}

/// The change that stores `values` in state record `recno`.
pub fn put(recno: u64, values: Vec<Value>) -> RecordChange {
    RecordChange::Update { recno, values }
}

/// The change that adds a table record at `recno`.
pub fn add(recno: u64, values: Vec<Value>) -> RecordChange {
    RecordChange::Append { recno, values }
}

fn text(v: &Value) -> String {
    match v {
        Value::Char(s) => s.trim_end().to_owned(),
        _ => String::new(),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int64(i) => *i,
        _ => -1,
    }
}

/// Reads the state of a copy, creating an empty one when there is none.
/// Fails when the state table is damaged or of another layout (the caller
/// then discards the copy).
pub fn load(db: &Database) -> Result<Saved> {
    if !db.table_exists(STATE_TABLE)? {
        db.create_table(STATE_TABLE, &schema(), TableOptions::default())?;
        let s = db.session();
        let mut t = s.open_table(STATE_TABLE)?;
        t.append(&position(0, 0, 1))?;
        return Ok(Saved {
            next_local: 1,
            ..Saved::default()
        });
    }
    let s = db.session();
    let t = s.open_table(STATE_TABLE)?;
    let check = t.check(1)?;
    if !check.problems.is_empty() {
        return Err(damaged(format!("{:?}", check.problems[0])));
    }
    let records = t.snapshot()?;
    let Some(first) = records.first() else {
        return Err(damaged("no position record".into()));
    };
    let v = first.values();
    if v.len() != schema().fields().len() || text(&v[0]) != "position" || int(&v[7]) != LAYOUT {
        return Err(damaged("not a position record of this layout".into()));
    }
    let epoch = u64::from_str_radix(&text(&v[4]), 16)
        .map_err(|_| damaged(format!("bad epoch {:?}", text(&v[4]))))?;
    let mut saved = Saved {
        epoch,
        seq: int(&v[5]).max(0) as u64,
        next_local: int(&v[6]).max(1) as u64,
        tables: Vec::new(),
    };
    for r in &records[1..] {
        let v = r.values();
        if r.is_deleted() || text(&v[0]) != "table" {
            continue;
        }
        saved.tables.push(Row {
            recno: r.recno(),
            name: text(&v[1]),
            local: text(&v[2]),
            status: Status::parse(&text(&v[3])),
        });
    }
    Ok(saved)
}

fn damaged(why: String) -> Error {
    Error::Cache(format!("the cache's state table is damaged: {why}"))
}
