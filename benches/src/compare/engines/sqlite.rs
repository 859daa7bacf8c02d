//! SQLite through rusqlite's bundled build: `journal_mode=WAL`,
//! `synchronous=FULL`, a `WITHOUT ROWID` table keyed by the 24-byte key, and
//! for the ISAM rows two ordinary SQL indexes. One connection per thread,
//! taken from a pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::super::data::{IsamRow, Row};
use super::super::{Engine, Result};

/// SQLite under test.
pub struct Sqlite {
    path: PathBuf,
    dir: PathBuf,
    cache: usize,
    pool: Mutex<Vec<Connection>>,
}

impl Sqlite {
    /// A database file in `dir`.
    pub fn open(dir: &Path, cache: usize) -> Result<Sqlite> {
        let s = Sqlite {
            path: dir.join("sqlite.db"),
            dir: dir.to_path_buf(),
            cache,
            pool: Mutex::new(Vec::new()),
        };
        s.with(|c| {
            c.execute_batch(
                "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
                 CREATE TABLE isam (k BLOB PRIMARY KEY, grp TEXT, day INTEGER, name TEXT, rest TEXT) WITHOUT ROWID;
                 CREATE INDEX isam_grp_day ON isam (grp, day);
                 CREATE INDEX isam_name ON isam (name);",
            )?;
            Ok(())
        })?;
        Ok(s)
    }

    fn connect(&self) -> Result<Connection> {
        let c = Connection::open(&self.path)?;
        c.busy_timeout(Duration::from_secs(60))?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
        c.pragma_update(None, "cache_size", -((self.cache / 1024) as i64))?;
        Ok(c)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let c = self.pool.lock().pop();
        let mut c = match c {
            Some(c) => c,
            None => self.connect()?,
        };
        let r = f(&mut c);
        self.pool.lock().push(c);
        r
    }

    /// Runs a query and reads the value of every row it returns.
    fn read_rows(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<usize> {
        self.with(|c| {
            let mut st = c.prepare_cached(sql)?;
            let mut rows = st.query(params)?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                let v: Vec<u8> = r.get(1)?;
                std::hint::black_box(v);
                n += 1;
            }
            Ok(n)
        })
    }

    fn insert(&self, rows: &[Row]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached("INSERT INTO kv (k, v) VALUES (?1, ?2)")?;
                for r in rows {
                    st.execute(params![&r.key[..], &r.value[..]])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}

impl Engine for Sqlite {
    fn load(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn commit(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn get(&self, key: &[u8]) -> Result<bool> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
            let v: Option<Vec<u8>> = st.query_row([key], |r| r.get(0)).optional()?;
            Ok(std::hint::black_box(v).is_some())
        })
    }

    fn range10(&self, key: &[u8]) -> Result<usize> {
        self.read_rows(
            "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT 10",
            &[&key],
        )
    }

    fn scan(&self) -> Result<usize> {
        self.read_rows("SELECT k, v FROM kv ORDER BY k", &[])
    }

    fn remove(&self, keys: &[[u8; 24]]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached("DELETE FROM kv WHERE k = ?1")?;
                for k in keys {
                    st.execute([&k[..]])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn compact(&self) -> Result<bool> {
        self.with(|c| {
            c.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(true)
        })
    }

    fn size(&self) -> Result<u64> {
        Ok(super::disk_usage(&self.dir)?)
    }

    fn isam_append(&self, rows: &[IsamRow]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO isam (k, grp, day, name, rest) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for r in rows {
                    st.execute(params![
                        &r.key[..],
                        std::str::from_utf8(&r.group)?,
                        r.day,
                        std::str::from_utf8(&r.name)?,
                        std::str::from_utf8(&r.rest)?,
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn isam_seek(&self, group: &[u8; 8], day: u32) -> Result<bool> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT k, grp, day, name, rest FROM isam WHERE grp = ?1 AND day = ?2 ORDER BY grp, day LIMIT 1",
            )?;
            let v: Option<String> = st
                .query_row(params![std::str::from_utf8(group)?, day], |r| r.get(4))
                .optional()?;
            Ok(std::hint::black_box(v).is_some())
        })
    }
}
