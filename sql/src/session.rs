//! A SQL session: one SQLite connection whose tables are the raiz tables its
//! user may read.
//!
//! The connection's own databases hold nothing: raiz tables are virtual
//! tables in an attached database named `public` (so `orders` and
//! `public.orders` both work), created the first time a statement names
//! them, and `information_schema` / `pg_catalog` are small attached
//! databases filled from the tables' definitions when a statement names
//! them. No further database can be attached, and a statement that is not
//! read-only is refused before it runs.
//!
//! Like an ISAM session's open tables, the session keeps a handle on each
//! table it has a virtual table for (a table whose last handle goes is
//! closed, and reopening it reads its headers and index pages), so a drop,
//! `pack`, `rebuild` or `alter` of such a table is refused as in use until
//! the handles go: [`SqlSession::release_tables`] lets them go (the server
//! calls it when a connection has been idle for two seconds); the next
//! statement takes them again.
//!
//! # What a query sees
//!
//! Each record a query reads is as some commit left it — never a change
//! still in a transaction, never half of a record's commit. The session
//! notes each table's commit count when a statement first reads it, and
//! after the statement ran checks that no commit changed any of those
//! tables since: then every table was read as it stood at that moment, one
//! committed state across all of them. When a commit did change one, the
//! statement runs again (up to [`Options::attempts`] in all); a statement
//! whose tables never held still that long returns what it read with
//! [`QueryResult::consistent`] false — each record committed, but records
//! of different tables (or of one table, read at different moments) may
//! come from different commits. The statement never blocks a commit, and
//! no commit waits for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use raiz_engine::Database;
use rusqlite::{Connection, OpenFlags};

use crate::catalog;
use crate::error::{Error, Result};
use crate::value::SqlValue;
use crate::vtab::{Access, RaizTab, Shared};

/// Settings of a SQL session.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest result a statement may return, in MiB (results are built in
    /// memory before they are sent, so that a statement can run again).
    pub max_result_mb: u64,
    /// Runs of a statement to get one that no commit interleaved.
    pub attempts: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_result_mb: 256,
            attempts: 3,
        }
    }
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name as the statement gives it.
    pub name: String,
    /// Its declared type when it is a table's column (`VARCHAR(6)`,
    /// `NUMERIC(12,2)`, `DATE`, …), none for an expression.
    pub declared: Option<String>,
}

/// What a statement returned.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows.
    pub rows: Vec<Vec<SqlValue>>,
    /// No commit changed a table the statement read while it read it (see
    /// the module's documentation).
    pub consistent: bool,
    /// How many times the statement ran.
    pub attempts: u32,
}

/// A SQL session over a database (see the module's documentation).
///
/// ```
/// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
/// use raiz_sql::{SqlSession, SqlValue};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// let schema = Schema::new(vec![
///     Field::new("CODE", FieldType::Char(6)),
///     Field::new("PRICE", FieldType::Numeric { len: 10, dec: 2 }),
/// ]);
/// db.create_table("items", &schema, TableOptions::default())?;
/// let mut t = db.session().open_table("items")?;
/// t.append(&[Value::from("A1"), Value::Numeric("2.50".parse().unwrap())])?;
/// t.append(&[Value::from("B2"), Value::Numeric("4.50".parse().unwrap())])?;
///
/// let mut sql = SqlSession::open(&db, raiz_sql::everything(), Default::default())?;
/// let r = sql.query("SELECT code, price FROM items WHERE price > 3", &[])?;
/// assert_eq!(r.rows, vec![vec![SqlValue::Text("B2".into()), SqlValue::Real(4.5)]]);
/// assert!(sql.query("DELETE FROM items", &[]).is_err()); // read-only
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqlSession {
    conn: Connection,
    db: Database,
    shared: Arc<Shared>,
    options: Options,
    /// Tables with a virtual table in `public`.
    attached: Vec<String>,
    /// Statements already prepared once with every table they name attached
    /// (and found read-only, single): they skip the checks while nothing
    /// was detached since. Bounded.
    checked: std::collections::HashSet<String>,
}

/// Statements remembered as checked (and kept prepared by SQLite's cache).
const CHECKED: usize = 256;

impl std::fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSession")
            .field("tables", &self.attached)
            .finish()
    }
}

/// An [`Access`] that lets every table be read (an embedded session).
pub fn everything() -> Access {
    Arc::new(|_| true)
}

/// Names that are no table of the user's: raiz's own tables.
fn internal(name: &str) -> bool {
    name.starts_with("_raiz")
}

impl SqlSession {
    /// Opens a session over `db`, reading the tables `access` allows.
    pub fn open(db: &Database, access: Access, options: Options) -> Result<SqlSession> {
        let conn = Connection::open_with_flags(
            ":memory:",
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_MEMORY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        let session = db.session();
        session.set_hide_deleted(false);
        session.set_name("sql");
        let shared = Arc::new(Shared::new(session, access));
        conn.create_module(
            "raiz",
            rusqlite::vtab::read_only_module::<RaizTab>(),
            Some(shared.clone()),
        )?;
        conn.execute_batch(
            "ATTACH DATABASE ':memory:' AS public;
             ATTACH DATABASE ':memory:' AS information_schema;
             ATTACH DATABASE ':memory:' AS pg_catalog;",
        )?;
        catalog::create(&conn)?;
        // No statement may attach a file (or anything else) from here on.
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0);
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
            false,
        )?;
        Ok(SqlSession {
            conn,
            db: db.clone(),
            shared,
            options,
            attached: Vec::new(),
            checked: std::collections::HashSet::new(),
        })
    }

    /// Records read from raiz tables since the session opened (what an
    /// index pushdown saves shows here).
    pub fn records_read(&self) -> u64 {
        self.shared.records_read.load(Ordering::Relaxed)
    }

    /// A handle that cancels the running statement from another thread.
    pub fn interrupt_handle(&self) -> rusqlite::InterruptHandle {
        self.conn.get_interrupt_handle()
    }

    /// The engine session the queries read through.
    pub fn session(&self) -> &raiz_engine::Session {
        &self.shared.session
    }

    /// The tables the session may read, in name order.
    pub fn tables(&self) -> Result<Vec<String>> {
        Ok(self
            .db
            .list_tables()?
            .into_iter()
            .filter(|t| !internal(t) && (self.shared.access)(t))
            .collect())
    }

    /// Creates the virtual table of `name` if the user may read it.
    fn attach(&mut self, name: &str) -> Result<()> {
        let lower = name.to_ascii_lowercase();
        let known = raiz_engine::validate_table_name(&lower).is_ok()
            && !internal(&lower)
            && (self.shared.access)(&lower)
            && self.db.table_exists(&lower)?;
        if !known || self.attached.contains(&lower) {
            return Err(Error::NoTable(name.to_owned()));
        }
        self.conn.execute_batch(&format!(
            "CREATE VIRTUAL TABLE public.\"{lower}\" USING raiz(\"{lower}\")"
        ))?;
        self.shared.keep(&lower)?;
        self.attached.push(lower);
        Ok(())
    }

    /// Drops the virtual table of `name` (redefined, dropped, or no longer
    /// readable); the next statement naming it creates it again.
    fn detach(&mut self, name: &str) -> Result<()> {
        self.attached.retain(|t| t != name);
        self.shared.release(name);
        self.checked.clear();
        self.conn.flush_prepared_statement_cache();
        self.conn
            .execute_batch(&format!("DROP TABLE IF EXISTS public.\"{name}\""))?;
        Ok(())
    }

    /// Lets every table this session keeps open close (see the module's
    /// documentation); the next statement opens them again.
    pub fn release_tables(&mut self) {
        self.shared.release_all();
    }

    /// Drops virtual tables whose table is no longer readable by the user,
    /// or was found gone or redefined by the last statement; opens again
    /// the tables [`SqlSession::release_tables`] let go.
    fn refresh(&mut self) -> Result<()> {
        for t in &self.attached {
            if !self.shared.is_kept(t) && self.shared.keep(t).is_err() {
                // Dropped meanwhile (or redefined: the open works, the
                // cursor finds the new definition).
                self.shared.mark_stale(t);
            }
        }
        let mut gone = self.shared.take_stale();
        for t in &self.attached {
            if !(self.shared.access)(t) {
                gone.push(t.clone());
            }
        }
        for t in gone {
            self.detach(&t)?;
        }
        Ok(())
    }

    /// Prepares `sql` once, creating the virtual tables it names; returns
    /// its columns and number of parameters.
    pub fn describe(&mut self, sql: &str) -> Result<(Vec<Column>, usize)> {
        self.prepare_tables(sql)?;
        let stmt = self.conn.prepare(sql)?;
        Ok((columns(&stmt), stmt.parameter_count()))
    }

    fn prepare_tables(&mut self, sql: &str) -> Result<()> {
        self.refresh()?;
        let catalogs = catalog::named(sql);
        if !catalogs && self.checked.contains(sql) {
            return Ok(());
        }
        if catalogs {
            let tables = self.tables()?;
            catalog::fill(&self.conn, &self.db, &tables)?;
        }
        // Each failure names one missing table: create it and try again
        // (a statement names a bounded number of tables).
        for _ in 0..1000 {
            let missing = match self.conn.prepare(sql) {
                Ok(stmt) => {
                    if !stmt.readonly() {
                        return Err(Error::ReadOnly(first_words(sql)));
                    }
                    drop(stmt);
                    // SQLite prepares the first statement of a text and
                    // leaves the rest: refuse a second rather than drop it.
                    let mut batch = rusqlite::Batch::new(&self.conn, sql);
                    let _first = batch.next();
                    if !matches!(batch.next(), Ok(None)) {
                        return Err(Error::Sql("one statement at a time, please".into()));
                    }
                    if self.checked.len() >= CHECKED {
                        self.checked.clear();
                    }
                    self.checked.insert(sql.to_owned());
                    return Ok(());
                }
                Err(e) => match missing_table(&e) {
                    Some(t) => t,
                    // SQLite's words for a write to a virtual table
                    // without writes.
                    None if e.to_string().contains("may not be modified") => {
                        return Err(Error::ReadOnly(first_words(sql)))
                    }
                    None => return Err(e.into()),
                },
            };
            self.attach(&missing)?;
        }
        Err(Error::Sql("too many tables in one statement".into()))
    }

    /// Runs one statement with `params` (`?`, `?1` or `$1` placeholders)
    /// and returns its whole result (see the module's documentation for
    /// what it sees).
    pub fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<QueryResult> {
        let mut redefined = 0;
        let mut attempt = 0;
        loop {
            self.prepare_tables(sql)?;
            attempt += 1;
            self.shared.begin_statement();
            let run = self.run(sql, params);
            let consistent = self.shared.end_statement();
            let (columns, rows) = match run {
                Ok(r) => r,
                // A table dropped or redefined since its virtual table
                // was made: once more, with the table as it is now.
                Err(_) if self.shared.has_stale() && redefined < 3 => {
                    redefined += 1;
                    attempt -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if consistent || attempt >= self.options.attempts.max(1) {
                if !consistent {
                    tracing::debug!(
                        sql,
                        attempt,
                        "tables changed under every run of the statement"
                    );
                }
                return Ok(QueryResult {
                    columns,
                    rows,
                    consistent,
                    attempts: attempt,
                });
            }
        }
    }

    fn run(&mut self, sql: &str, params: &[SqlValue]) -> Result<(Vec<Column>, Vec<Vec<SqlValue>>)> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = columns(&stmt);
        let expected = stmt.parameter_count();
        if params.len() != expected {
            return Err(Error::Sql(format!(
                "the statement takes {expected} parameter(s), {} given",
                params.len()
            )));
        }
        let limit = self.options.max_result_mb.saturating_mul(1 << 20);
        let mut size = 0u64;
        let mut out = Vec::new();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(row) = rows.next()? {
            let mut r = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                let v = SqlValue::from(row.get_ref(i)?);
                size += v.size() as u64;
                r.push(v);
            }
            if size > limit {
                return Err(Error::TooLarge {
                    limit_mb: self.options.max_result_mb,
                });
            }
            out.push(r);
        }
        Ok((columns, out))
    }
}

fn columns(stmt: &rusqlite::Statement<'_>) -> Vec<Column> {
    stmt.columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            declared: c.decl_type().map(str::to_owned),
        })
        .collect()
}

/// The table an error says is missing (`no such table: public.x` → `x`).
fn missing_table(e: &rusqlite::Error) -> Option<String> {
    let msg = match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m,
        _ => return None,
    };
    let name = msg.strip_prefix("no such table: ")?;
    let name = name
        .strip_prefix("public.")
        .or_else(|| name.strip_prefix("main."))
        .unwrap_or(name);
    (!name.contains('.')).then(|| name.to_owned())
}

/// The first words of a statement, for a message.
fn first_words(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().take(3).collect();
    words.join(" ")
}
