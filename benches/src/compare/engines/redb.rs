//! redb: one table of key → value; the ISAM rows add two tables of index
//! entries (key → ()), written in the same transaction.

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};

use super::super::data::{IsamRow, Row};
use super::super::{Engine, Result};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const ISAM: TableDefinition<&[u8], &[u8]> = TableDefinition::new("isam");
const I2: TableDefinition<&[u8], ()> = TableDefinition::new("isam_grp_day");
const I3: TableDefinition<&[u8], ()> = TableDefinition::new("isam_name");

/// redb under test (`Durability::Immediate`, the default).
pub struct Redb {
    // compact() needs `&mut Database`.
    db: RwLock<Database>,
    dir: PathBuf,
}

impl Redb {
    /// A database file in `dir`.
    pub fn open(dir: &Path, cache: usize) -> Result<Redb> {
        let db = Database::builder()
            .set_cache_size(cache)
            .create(dir.join("redb.db"))?;
        let tx = db.begin_write()?;
        tx.open_table(KV)?;
        tx.open_table(ISAM)?;
        tx.open_table(I2)?;
        tx.open_table(I3)?;
        tx.commit()?;
        Ok(Redb {
            db: RwLock::new(db),
            dir: dir.to_path_buf(),
        })
    }

    fn insert(&self, rows: &[Row]) -> Result<()> {
        let db = self.db.read();
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(KV)?;
            for r in rows {
                t.insert(&r.key[..], &r.value[..])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn load(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn commit(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn get(&self, key: &[u8]) -> Result<bool> {
        let db = self.db.read();
        let tx = db.begin_read()?;
        let t = tx.open_table(KV)?;
        let v = t.get(key)?;
        Ok(std::hint::black_box(v).is_some())
    }

    fn range10(&self, key: &[u8]) -> Result<usize> {
        let db = self.db.read();
        let tx = db.begin_read()?;
        let t = tx.open_table(KV)?;
        let mut n = 0;
        for e in t.range(key..)?.take(10) {
            std::hint::black_box(e?);
            n += 1;
        }
        Ok(n)
    }

    fn scan(&self) -> Result<usize> {
        let db = self.db.read();
        let tx = db.begin_read()?;
        let t = tx.open_table(KV)?;
        let mut n = 0;
        for e in t.iter()? {
            std::hint::black_box(e?);
            n += 1;
        }
        Ok(n)
    }

    fn remove(&self, keys: &[[u8; 24]]) -> Result<()> {
        let db = self.db.read();
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(KV)?;
            for k in keys {
                t.remove(&k[..])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn compact(&self) -> Result<bool> {
        Ok(self.db.write().compact()?)
    }

    fn size(&self) -> Result<u64> {
        Ok(super::disk_usage(&self.dir)?)
    }

    fn isam_append(&self, rows: &[IsamRow]) -> Result<()> {
        let db = self.db.read();
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(ISAM)?;
            let mut i2 = tx.open_table(I2)?;
            let mut i3 = tx.open_table(I3)?;
            for r in rows {
                if t.insert(&r.key[..], r.encode().as_slice())?.is_some() {
                    return Err("duplicate key".into());
                }
                i2.insert(r.index2().as_slice(), ())?;
                i3.insert(r.index3().as_slice(), ())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn isam_seek(&self, group: &[u8; 8], day: u32) -> Result<bool> {
        let db = self.db.read();
        let tx = db.begin_read()?;
        let i2 = tx.open_table(I2)?;
        let mut prefix = group.to_vec();
        prefix.extend_from_slice(&day.to_be_bytes());
        let Some(e) = i2.range(prefix.as_slice()..)?.next() else {
            return Ok(false);
        };
        let (k, _) = e?;
        let k = k.value();
        if !k.starts_with(&prefix) {
            return Ok(false);
        }
        let t = tx.open_table(ISAM)?;
        let v = t.get(&k[12..])?;
        Ok(std::hint::black_box(v).is_some())
    }
}
