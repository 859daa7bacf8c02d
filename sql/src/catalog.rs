//! `information_schema` and a small `pg_catalog`: the tables a user may read
//! and their columns, for tools that list them before they query.
//!
//! Both are ordinary tables in attached in-memory databases, filled again
//! from the tables' definitions each time a statement names either schema
//! (so they are never stale, and cost nothing otherwise). `pg_catalog`
//! holds `pg_namespace`, `pg_class`, `pg_attribute`, `pg_type` and
//! `pg_tables` with the columns tools read most; PostgreSQL's operators and
//! functions in catalog queries (`~`, `::regclass`, `pg_table_is_visible`)
//! are not SQLite's, so psql's `\d` commands do not work.

use raiz_engine::{Database, FieldType};
use rusqlite::Connection;

use crate::error::Result;

/// Whether `sql` names a catalog schema.
pub fn named(sql: &str) -> bool {
    let s = sql.to_ascii_lowercase();
    s.contains("information_schema") || s.contains("pg_")
}

pub(crate) fn create(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE information_schema.tables(
            table_catalog TEXT, table_schema TEXT, table_name TEXT, table_type TEXT);
         CREATE TABLE information_schema.columns(
            table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT,
            ordinal_position INTEGER, column_default TEXT, is_nullable TEXT, data_type TEXT,
            character_maximum_length INTEGER, numeric_precision INTEGER, numeric_scale INTEGER);
         CREATE TABLE information_schema.schemata(catalog_name TEXT, schema_name TEXT);
         CREATE TABLE pg_catalog.pg_namespace(oid INTEGER PRIMARY KEY, nspname TEXT);
         CREATE TABLE pg_catalog.pg_class(
            oid INTEGER PRIMARY KEY, relname TEXT, relnamespace INTEGER, relkind TEXT,
            reltuples REAL);
         CREATE TABLE pg_catalog.pg_attribute(
            attrelid INTEGER, attname TEXT, atttypid INTEGER, attnum INTEGER,
            attnotnull INTEGER, attisdropped INTEGER);
         CREATE TABLE pg_catalog.pg_type(oid INTEGER PRIMARY KEY, typname TEXT);
         CREATE TABLE pg_catalog.pg_tables(schemaname TEXT, tablename TEXT, tableowner TEXT);
         INSERT INTO pg_catalog.pg_namespace VALUES (11, 'pg_catalog'), (2200, 'public'),
            (13000, 'information_schema');
         INSERT INTO pg_catalog.pg_type VALUES (16, 'bool'), (17, 'bytea'), (20, 'int8'),
            (25, 'text'), (701, 'float8'), (1043, 'varchar'), (1082, 'date'), (1700, 'numeric');
         INSERT INTO information_schema.schemata VALUES ('raiz', 'public'),
            ('raiz', 'information_schema'), ('raiz', 'pg_catalog');",
    )?;
    Ok(())
}

/// The PostgreSQL type (oid, name) a field's values are given as.
pub fn pg_type(ty: &FieldType) -> (u32, &'static str) {
    match ty {
        FieldType::Char(_) => (1043, "character varying"),
        FieldType::Numeric { dec: 0, len } if *len <= 18 => (20, "bigint"),
        FieldType::Numeric { .. } => (1700, "numeric"),
        FieldType::Date => (1082, "date"),
        FieldType::Logical => (16, "boolean"),
        FieldType::Memo => (25, "text"),
        FieldType::Int64 => (20, "bigint"),
        FieldType::Float64 => (701, "double precision"),
        FieldType::Binary(_) => (17, "bytea"),
    }
}

/// Fills the catalogs with `tables` (those the user may read).
pub(crate) fn fill(conn: &Connection, db: &Database, tables: &[String]) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "DELETE FROM information_schema.tables; DELETE FROM information_schema.columns;
         DELETE FROM pg_catalog.pg_class; DELETE FROM pg_catalog.pg_attribute;
         DELETE FROM pg_catalog.pg_tables;",
    )?;
    let session = db.session();
    for (n, name) in tables.iter().enumerate() {
        // A table dropped meanwhile is simply not listed.
        let Ok(t) = session.open_table(name) else {
            continue;
        };
        let oid = 16384 + n as i64;
        tx.execute(
            "INSERT INTO information_schema.tables VALUES ('raiz', 'public', ?1, 'BASE TABLE')",
            [name],
        )?;
        tx.execute(
            "INSERT INTO pg_catalog.pg_class VALUES (?1, ?2, 2200, 'r', ?3)",
            rusqlite::params![oid, name, t.record_count() as f64],
        )?;
        tx.execute(
            "INSERT INTO pg_catalog.pg_tables VALUES ('public', ?1, 'raiz')",
            [name],
        )?;
        let schema = t.schema();
        let mut cols: Vec<(String, FieldType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name.to_ascii_lowercase(), f.ty))
            .collect();
        cols.push(("recno".into(), FieldType::Int64));
        cols.push(("deleted".into(), FieldType::Logical));
        for (i, (col, ty)) in cols.iter().enumerate() {
            let (len, prec, scale) = match *ty {
                FieldType::Char(n) => (Some(i64::from(n)), None, None),
                FieldType::Numeric { len, dec } => {
                    (None, Some(i64::from(len)), Some(i64::from(dec)))
                }
                FieldType::Int64 => (None, Some(64), Some(0)),
                _ => (None, None, None),
            };
            let (type_oid, type_name) = pg_type(ty);
            tx.execute(
                "INSERT INTO information_schema.columns VALUES
                 ('raiz', 'public', ?1, ?2, ?3, NULL, 'YES', ?4, ?5, ?6, ?7)",
                rusqlite::params![name, col, i as i64 + 1, type_name, len, prec, scale],
            )?;
            tx.execute(
                "INSERT INTO pg_catalog.pg_attribute VALUES (?1, ?2, ?3, ?4, 0, 0)",
                rusqlite::params![oid, col, type_oid, i as i64 + 1],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}
