//! Running shell commands on a `raiz_client` session: the same calls
//! embedded and against a server.

use std::collections::BTreeMap;
use std::time::Duration;

use raiz_client::index::IndexDef;
use raiz_client::{Memo, Record, Savepoint, Session, Table, Value};
use raiz_engine::{Field, FieldType, Schema};

use super::output::{bool_cell, num_cell, text_cell, Flags, Out, Row};
use super::parse::{Cmd, LockTarget, SeekMode};
use crate::error::{CliError, CliResult};
use crate::values::{json_string, schema_text, to_value, type_text, Cell};

/// Whether the shell goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// `quit`.
    Quit,
}

/// A shell session: the open tables (one handle each, as xBase work
/// areas), the current one, the savepoints of the open transaction.
pub struct Shell {
    session: Session,
    tables: BTreeMap<String, Table>,
    current: Option<String>,
    savepoints: Vec<Savepoint>,
    timeout: Duration,
    /// Where results go.
    pub out: Out,
}

/// The command list `help` prints.
pub const HELP: &str = "\
tables                                   list the tables
create table NAME (FIELD TYPE, …) [variable] [unlogged|temporary] [serial FIELD]
                                         types: C(n) N(len[,dec]) I F D L M Binary(n)
drop table NAME
create index TABLE NAME on FIELD[,upper|fold|desc|part=OFF:LEN][+FIELD…] [unique]
drop index [TABLE] NAME
use TABLE                                open a table (on its first record)
order INDEX|none                         navigate by an index, or by recno
first | last | skip [n] | goto RECNO     move
seek [soft|last|last soft] KEY…          seek in the current order (partial keys)
display                                  the current record
browse [n]                               n records (20) from the current one on
count                                    records visible in the order and scope
scope LO HI | scope LO… .. HI… | scope off
append FIELD=value …                     a new record (it becomes current)
replace FIELD=value …                    change fields of the current record
delete | recall                          the current record
set deleted on|off                       hide deleted records from navigation
set timeout MS                           how long lock requests wait (0)
lock | unlock                            the current record
lock file | unlock file                  the current table
lock name X | unlock name X              a named lock
begin | commit | rollback | savepoint | rollback to N
info [TABLE] | check [TABLE]
help | quit";

impl Shell {
    /// A shell on `session`, writing to `out`.
    pub fn new(session: Session, out: Out) -> Shell {
        Shell {
            session,
            tables: BTreeMap::new(),
            current: None,
            savepoints: Vec::new(),
            timeout: Duration::ZERO,
            out,
        }
    }

    /// True while a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.session.in_transaction().unwrap_or(false)
    }

    fn cur_name(&self) -> CliResult<String> {
        self.current
            .clone()
            .ok_or_else(|| CliError::Usage("no table in use: `use TABLE` first".into()))
    }

    fn cur(&mut self) -> CliResult<&mut Table> {
        let name = self.cur_name()?;
        Ok(self
            .tables
            .get_mut(&name)
            .expect("the current table is open"))
    }

    /// Runs `f` on the handle of `table` (the open one, or a handle opened
    /// for the call).
    fn with_table<T>(
        &mut self,
        table: &str,
        f: impl FnOnce(&mut Table) -> raiz_client::Result<T>,
    ) -> CliResult<T> {
        let key = table.to_ascii_lowercase();
        if let Some(t) = self.tables.get_mut(&key) {
            return Ok(f(t)?);
        }
        let mut t = self.session.open_table(table)?;
        let r = f(&mut t);
        t.close()?;
        Ok(r?)
    }

    /// A record with its memos read, as the output shows it.
    fn row(t: &Table, rec: &Record) -> CliResult<Row> {
        let schema = t.schema();
        let mut fields = Vec::with_capacity(schema.len());
        for (f, v) in schema.fields().iter().zip(rec.values()) {
            let memo = match v {
                Value::Memo(Memo::Stored(r)) if !r.is_empty() => {
                    Some(t.read_memo(rec.recno(), &f.name)?)
                }
                Value::Memo(Memo::Data(d)) => Some(d.clone()),
                Value::Memo(_) => Some(Vec::new()),
                _ => None,
            };
            fields.push((f.name.clone(), f.ty, v.clone(), memo));
        }
        Ok(Row {
            recno: rec.recno(),
            deleted: rec.is_deleted(),
            fields,
        })
    }

    fn show_position(&mut self, sought: bool) -> CliResult {
        let t = self.cur()?;
        let row = if t.on_record() {
            Some(Self::row(t, &t.record()?)?)
        } else {
            None
        };
        let flags = Flags {
            bof: t.bof(),
            eof: t.eof(),
            found: t.found(),
            sought,
        };
        let recno = t.recno();
        self.out.position(row.as_ref(), recno, flags);
        Ok(())
    }

    /// The fields of the current order's segments.
    fn key_fields(t: &Table) -> CliResult<Vec<Field>> {
        let Some(order) = t.order().map(str::to_owned) else {
            return Err(CliError::Usage(
                "seeks and scopes need an order: `order INDEX` first".into(),
            ));
        };
        let info = t.info()?;
        let (def, _) = info
            .indexes
            .iter()
            .find(|(d, _)| d.name.eq_ignore_ascii_case(&order))
            .ok_or_else(|| CliError::Data(format!("index {order} is gone")))?;
        def.segments
            .iter()
            .map(|s| {
                info.schema
                    .fields()
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(&s.field))
                    .cloned()
                    .ok_or_else(|| CliError::Data(format!("index {order}: no field {}", s.field)))
            })
            .collect()
    }

    /// Key words as values of the order's segments: a Char part may be a
    /// prefix, a Date part `YYYY-MM-DD` or `YYYYMMDD` digits (or a prefix).
    fn key(t: &Table, words: &[String]) -> CliResult<Vec<Value>> {
        let fields = Self::key_fields(t)?;
        if words.len() > fields.len() {
            return Err(CliError::Usage(format!(
                "the key has {} part(s), the order {} segment(s)",
                words.len(),
                fields.len()
            )));
        }
        words
            .iter()
            .zip(&fields)
            .map(|(w, f)| match f.ty {
                FieldType::Char(_) => Ok(Value::Char(w.clone())),
                FieldType::Date if w.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Value::Char(w.clone()))
                }
                _ => to_value(Cell::Text(w.clone()), f).map_err(|e| CliError::Data(e.to_string())),
            })
            .collect()
    }

    fn values(schema: &Schema, assigns: &[(String, String)]) -> CliResult<Vec<(String, Value)>> {
        assigns
            .iter()
            .map(|(name, text)| {
                let f = schema
                    .fields()
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| CliError::Data(format!("no field {name}")))?;
                // A memo typed in the shell is its text, whatever it starts with.
                let cell = match f.ty {
                    FieldType::Memo => Cell::Bytes(text.clone().into_bytes()),
                    _ => Cell::Text(text.clone()),
                };
                let v = to_value(cell, f).map_err(|e| CliError::Data(e.to_string()))?;
                Ok((f.name.clone(), v))
            })
            .collect()
    }

    fn on_record(&mut self) -> CliResult<u64> {
        let t = self.cur()?;
        if !t.on_record() {
            return Err(CliError::Data(format!(
                "no current record (eof, recno {})",
                t.recno()
            )));
        }
        Ok(t.recno())
    }

    /// Runs one command.
    pub fn run(&mut self, cmd: Cmd) -> CliResult<Flow> {
        match cmd {
            Cmd::Tables => {
                let names = self.session.list_tables()?;
                let rows: Vec<Vec<(String, String)>> =
                    names.iter().map(|n| vec![text_cell(n)]).collect();
                self.out.rows(&["table"], &[false], &rows);
            }
            Cmd::CreateTable {
                name,
                schema,
                options,
            } => {
                self.session.create_table(&name, &schema, options)?;
                self.out.message(&format!("table {name} created"));
            }
            Cmd::DropTable(name) => {
                let key = name.to_ascii_lowercase();
                if let Some(t) = self.tables.remove(&key) {
                    t.close()?;
                    if self.current.as_deref() == Some(key.as_str()) {
                        self.current = None;
                    }
                }
                self.session.drop_table(&name)?;
                self.out.message(&format!("table {name} dropped"));
            }
            Cmd::CreateIndex {
                table,
                name,
                segments,
                unique,
            } => {
                let mut def = IndexDef::new(&name, segments);
                if unique {
                    def = def.unique();
                }
                self.with_table(&table, |t| t.create_index(&def))?;
                self.out
                    .message(&format!("index {name} created on {table}"));
            }
            Cmd::DropIndex { table, name } => {
                let table = match table {
                    Some(t) => t,
                    None => self.cur_name()?,
                };
                self.with_table(&table, |t| t.drop_index(&name))?;
                self.out
                    .message(&format!("index {name} dropped from {table}"));
            }
            Cmd::Use(name) => {
                let key = name.to_ascii_lowercase();
                if let Some(old) = self.tables.remove(&key) {
                    old.close()?;
                }
                let t = self.session.open_table(&name)?;
                let n = t.record_count()?;
                self.tables.insert(key.clone(), t);
                self.current = Some(key.clone());
                self.out.message(&format!(
                    "{key}: {n} record{}",
                    if n == 1 { "" } else { "s" }
                ));
            }
            Cmd::Order(index) => {
                let t = self.cur()?;
                t.set_order(index.as_deref())?;
                let shown = t.order().unwrap_or("none").to_owned();
                self.out.message(&format!("order {shown}"));
            }
            Cmd::First => {
                self.cur()?.first()?;
                self.show_position(false)?;
            }
            Cmd::Last => {
                self.cur()?.last()?;
                self.show_position(false)?;
            }
            Cmd::Skip(n) => {
                self.cur()?.skip(n)?;
                self.show_position(false)?;
            }
            Cmd::Goto(r) => {
                self.cur()?.goto(r)?;
                self.show_position(false)?;
            }
            Cmd::Seek(mode, words) => {
                let t = self.cur()?;
                let key = Self::key(t, &words)?;
                match mode {
                    SeekMode::Exact => t.seek(&key)?,
                    SeekMode::Soft => t.seek_soft(&key)?,
                    SeekMode::Last => t.seek_last(&key)?,
                    SeekMode::LastSoft => t.seek_last_soft(&key)?,
                };
                self.show_position(true)?;
            }
            Cmd::Display => self.show_position(false)?,
            Cmd::Browse(n) => {
                let t = self.cur()?;
                let mut rows = Vec::new();
                while (rows.len() as u64) < n && t.on_record() {
                    rows.push(Self::row(t, &t.record()?)?);
                    t.next()?;
                }
                self.out.records(&rows);
            }
            Cmd::Count => {
                let n = self.cur()?.key_count()?;
                self.out.scalar("count", n);
            }
            Cmd::Scope(None) => {
                self.cur()?.clear_scope()?;
                self.out.message("scope off");
            }
            Cmd::Scope(Some((lo, hi))) => {
                let t = self.cur()?;
                let lo_v = Self::key(t, &lo)?;
                let hi_v = Self::key(t, &hi)?;
                t.set_scope(
                    (!lo_v.is_empty()).then_some(&lo_v[..]),
                    (!hi_v.is_empty()).then_some(&hi_v[..]),
                )?;
                self.out.message(
                    &format!("scope {} .. {}", lo.join(" "), hi.join(" ")).replace("  ", " "),
                );
            }
            Cmd::Append(assigns) => {
                let t = self.cur()?;
                let schema = t.schema();
                let mut values = schema.empty_record();
                for (name, v) in Self::values(&schema, &assigns)? {
                    let i = schema.position(&name).expect("checked by values()");
                    values[i] = v;
                }
                t.append(&values)?;
                self.show_position(false)?;
            }
            Cmd::Replace(assigns) => {
                let recno = self.on_record()?;
                let t = self.cur()?;
                let values = Self::values(&t.schema(), &assigns)?;
                let fields: Vec<(&str, Value)> = values
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.clone()))
                    .collect();
                t.update_fields(recno, &fields)?;
                self.show_position(false)?;
            }
            Cmd::Delete => {
                let recno = self.on_record()?;
                self.cur()?.delete(recno)?;
                self.show_position(false)?;
            }
            Cmd::Recall => {
                let recno = self.on_record()?;
                self.cur()?.recall(recno)?;
                self.show_position(false)?;
            }
            Cmd::SetDeleted(on) => {
                self.session.set_hide_deleted(on)?;
                self.out
                    .message(if on { "deleted on" } else { "deleted off" });
            }
            Cmd::SetTimeout(ms) => {
                self.timeout = Duration::from_millis(ms);
                self.session.set_lock_timeout(self.timeout)?;
                self.out.message(&format!("timeout {ms} ms"));
            }
            Cmd::Lock(target) => {
                let msg = match target {
                    LockTarget::Record => {
                        let recno = self.on_record()?;
                        let timeout = self.timeout;
                        self.cur()?.lock(recno, timeout)?;
                        format!("record {recno} locked")
                    }
                    LockTarget::File => {
                        let timeout = self.timeout;
                        let name = self.cur_name()?;
                        self.cur()?.lock_file(timeout)?;
                        format!("table {name} locked")
                    }
                    LockTarget::Name(n) => {
                        self.session.lock_name(&n)?;
                        format!("name {n} locked")
                    }
                };
                self.out.message(&msg);
            }
            Cmd::Unlock(target) => {
                let (what, released) = match target {
                    LockTarget::Record => {
                        let recno = self.on_record()?;
                        (format!("record {recno}"), self.cur()?.unlock(recno)?)
                    }
                    LockTarget::File => {
                        let name = self.cur_name()?;
                        (format!("table {name}"), self.cur()?.unlock_file()?)
                    }
                    LockTarget::Name(n) => {
                        let r = self.session.unlock_name(&n)?;
                        (format!("name {n}"), r)
                    }
                };
                self.out.message(&if released {
                    format!("{what} unlocked")
                } else {
                    format!("{what} was not locked (or is kept until the transaction ends)")
                });
            }
            Cmd::Begin => {
                self.session.begin()?;
                self.savepoints.clear();
                self.out.message("transaction begun");
            }
            Cmd::Commit => {
                self.savepoints.clear();
                self.session.commit()?;
                self.out.message("committed");
            }
            Cmd::Rollback => {
                self.savepoints.clear();
                self.session.rollback()?;
                self.out.message("rolled back");
            }
            Cmd::Savepoint => {
                let sp = self.session.savepoint()?;
                self.savepoints.push(sp);
                self.out
                    .message(&format!("savepoint {}", self.savepoints.len()));
            }
            Cmd::RollbackTo(n) => {
                let sp = *n
                    .checked_sub(1)
                    .and_then(|i| self.savepoints.get(i))
                    .ok_or_else(|| {
                        CliError::Data(format!(
                            "no savepoint {n} in this transaction ({} taken)",
                            self.savepoints.len()
                        ))
                    })?;
                self.session.rollback_to(sp)?;
                self.savepoints.truncate(n);
                self.out.message(&format!("rolled back to savepoint {n}"));
            }
            Cmd::Info(table) => {
                let table = match table {
                    Some(t) => t,
                    None => self.cur_name()?,
                };
                let info = self.with_table(&table, |t| t.info())?;
                self.info(&info);
            }
            Cmd::Check(table) => {
                let table = match table {
                    Some(t) => t,
                    None => self.cur_name()?,
                };
                let r = self.with_table(&table, |t| t.check(20))?;
                for p in &r.problems {
                    self.out.message(p);
                }
                if !r.is_ok() {
                    return Err(CliError::Data(format!(
                        "check found {} problem(s) in {table}",
                        r.problems.len()
                    )));
                }
                self.out.message(&format!(
                    "{}: {} records, {} index{} checked, ok",
                    table.to_ascii_lowercase(),
                    r.records,
                    r.indexes,
                    if r.indexes == 1 { "" } else { "es" }
                ));
            }
            Cmd::Help => {
                let rows: Vec<Vec<(String, String)>> =
                    HELP.lines().map(|l| vec![text_cell(l)]).collect();
                if self.out.json() {
                    self.out.rows(&["help"], &[false], &rows);
                } else {
                    for l in HELP.lines() {
                        self.out.line(l);
                    }
                }
            }
            Cmd::Quit => return Ok(Flow::Quit),
        }
        Ok(Flow::Continue)
    }

    fn info(&mut self, i: &raiz_client::TableInfo) {
        let format = match i.format {
            raiz_client::RecordFormat::Fixed => "fixed",
            raiz_client::RecordFormat::Variable => "variable",
        };
        let indexes: Vec<(String, String, bool, u64)> = i
            .indexes
            .iter()
            .map(|(d, n)| (d.name.clone(), crate::commands::key_text(d), d.unique, *n))
            .collect();
        if self.out.json() {
            let mut s = String::from("{\"table\":");
            json_string(&mut s, &i.name);
            s.push_str(&format!(
                ",\"format\":\"{format}\",\"durability\":\"{}\",\"records\":{},\"deleted\":{},\"schema\":",
                i.durability, i.record_count, i.deleted_count
            ));
            json_string(&mut s, &schema_text(&i.schema));
            s.push_str(",\"indexes\":[");
            for (k, (name, key, unique, n)) in indexes.iter().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                s.push_str("{\"name\":");
                json_string(&mut s, name);
                s.push_str(",\"key\":");
                json_string(&mut s, key);
                s.push_str(&format!(",\"unique\":{unique},\"entries\":{n}}}"));
            }
            s.push_str("]}");
            self.out.line(&s);
            return;
        }
        self.out.line(&format!("table       {}", i.name));
        self.out
            .line(&format!("format      {format}, {}", i.durability));
        self.out.line(&format!(
            "records     {} ({} deleted)",
            i.record_count, i.deleted_count
        ));
        let fields: Vec<Vec<(String, String)>> = i
            .schema
            .fields()
            .iter()
            .map(|f| vec![text_cell(&f.name), text_cell(&type_text(f.ty))])
            .collect();
        self.out.rows(&["field", "type"], &[false, false], &fields);
        if !indexes.is_empty() {
            let rows: Vec<Vec<(String, String)>> = indexes
                .iter()
                .map(|(name, key, unique, n)| {
                    vec![
                        text_cell(name),
                        text_cell(key),
                        bool_cell(*unique, "unique"),
                        num_cell(n),
                    ]
                })
                .collect();
            self.out.rows(
                &["index", "key", "unique", "entries"],
                &[false, false, false, true],
                &rows,
            );
        }
    }
}
