//! `raiz sql`: read-only SQL over a rootpath's tables, embedded (`--root`)
//! or through a server's SQL listener (`--connect postgresql://…`), printed
//! as an aligned table or as JSON lines.

use std::io::{BufRead, Write};

use raiz_sql::{SqlSession, SqlValue};

use crate::error::CliError;

/// How rows are printed.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns aligned under their names, then the row count.
    Aligned,
    /// One JSON object per row.
    Json,
}

/// Where statements run.
pub enum Source {
    /// An embedded session over an open rootpath.
    Embedded(Box<SqlSession>),
    /// A server's SQL listener.
    Remote(Box<postgres::Client>),
}

/// A statement's result: column names, rows, and a warning to show.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<SqlValue>>,
    warning: Option<String>,
}

impl Source {
    /// Connects to a server's SQL listener (`postgresql://user:pw@host:port`;
    /// the password may come from `PGPASSWORD` instead).
    pub fn connect(url: &str) -> Result<Source, CliError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| CliError::Usage(format!("{url}: {e}")))?;
        if config.get_password().is_none() {
            if let Ok(p) = std::env::var("PGPASSWORD").or_else(|_| std::env::var("RAIZ_PASSWORD")) {
                config.password(p);
            }
        }
        if config.get_dbname().is_none() {
            config.dbname("raiz");
        }
        let client = config
            .connect(postgres::NoTls)
            .map_err(|e| CliError::Io(format!("{url}: {e}")))?;
        Ok(Source::Remote(Box::new(client)))
    }

    fn run(&mut self, sql: &str) -> Result<Table, CliError> {
        match self {
            Source::Embedded(s) => {
                let r = s
                    .query(sql, &[])
                    .map_err(|e| CliError::Data(e.to_string()))?;
                Ok(Table {
                    columns: r.columns.into_iter().map(|c| c.name).collect(),
                    warning: (!r.consistent).then(|| {
                        "tables changed while the statement read them: each record is \
                         committed, but records may come from different commits"
                            .to_owned()
                    }),
                    rows: r.rows,
                })
            }
            Source::Remote(c) => {
                let rows = c
                    .query(sql, &[])
                    .map_err(|e| CliError::Data(pg_message(&e)))?;
                let columns = match rows.first() {
                    Some(r) => r.columns().iter().map(|c| c.name().to_owned()).collect(),
                    None => c
                        .prepare(sql)
                        .map(|s| s.columns().iter().map(|c| c.name().to_owned()).collect())
                        .unwrap_or_default(),
                };
                let rows = rows.iter().map(remote_row).collect();
                Ok(Table {
                    columns,
                    rows,
                    warning: None,
                })
            }
        }
    }
}

fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

fn remote_row(row: &postgres::Row) -> Vec<SqlValue> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            let v = if *ty == Type::INT8 {
                row.get::<_, Option<i64>>(i).map(SqlValue::Integer)
            } else if *ty == Type::FLOAT8 {
                row.get::<_, Option<f64>>(i).map(SqlValue::Real)
            } else if *ty == Type::BOOL {
                row.get::<_, Option<bool>>(i)
                    .map(|b| SqlValue::Integer(b.into()))
            } else if *ty == Type::BYTEA {
                row.get::<_, Option<Vec<u8>>>(i).map(SqlValue::Blob)
            } else {
                row.try_get::<_, Option<String>>(i)
                    .ok()
                    .flatten()
                    .map(SqlValue::Text)
            };
            v.unwrap_or(SqlValue::Null)
        })
        .collect()
}

fn text(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => String::new(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("\\x{hex}")
        }
    }
}

fn json(v: &SqlValue) -> serde_json::Value {
    match v {
        SqlValue::Null => serde_json::Value::Null,
        SqlValue::Integer(i) => (*i).into(),
        SqlValue::Real(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        SqlValue::Text(s) => s.clone().into(),
        SqlValue::Blob(_) => text(v).into(),
    }
}

fn print(out: &mut impl Write, t: &Table, format: Output) -> std::io::Result<()> {
    match format {
        Output::Json => {
            for r in &t.rows {
                let obj: serde_json::Map<String, serde_json::Value> = t
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), json(v)))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(obj))?;
            }
        }
        Output::Aligned => {
            let cells: Vec<Vec<String>> = t
                .rows
                .iter()
                .map(|r| r.iter().map(text).collect())
                .collect();
            let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
            for r in &cells {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let numeric: Vec<bool> = (0..t.columns.len())
                .map(|i| {
                    t.rows.iter().all(|r| {
                        matches!(
                            r[i],
                            SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Null
                        )
                    })
                })
                .collect();
            let line = |cols: &[String]| {
                cols.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if numeric[i] {
                            format!("{c:>w$}", w = widths[i])
                        } else {
                            format!("{c:<w$}", w = widths[i])
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            writeln!(out, "{}", line(&t.columns).trim_end())?;
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            writeln!(out, "{}", rule.join("-+-"))?;
            for r in &cells {
                writeln!(out, "{}", line(r).trim_end())?;
            }
            let n = t.rows.len();
            writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })?;
        }
    }
    Ok(())
}

/// Runs `command`, or every statement read from standard input (each ended
/// by a `;` at the end of a line), printing each result.
pub fn run(mut source: Source, command: Option<String>, format: Output) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| CliError::Io(e.to_string());
    let mut one = |sql: &str, out: &mut std::io::StdoutLock<'_>| -> Result<(), CliError> {
        let t = source.run(sql)?;
        if let Some(w) = &t.warning {
            eprintln!("warning: {w}");
        }
        print(out, &t, format).map_err(io)
    };
    if let Some(sql) = command {
        return one(&sql, &mut out);
    }
    let mut pending = String::new();
    let mut failed = 0u8;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(io)?;
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            let sql = std::mem::take(&mut pending);
            if let Err(e) = one(sql.trim(), &mut out) {
                eprintln!("error: {e}");
                failed = 3;
            }
        }
    }
    if !pending.trim().is_empty() {
        if let Err(e) = one(pending.trim(), &mut out) {
            eprintln!("error: {e}");
            failed = 3;
        }
    }
    if failed != 0 {
        return Err(CliError::Reported(failed));
    }
    Ok(())
}
