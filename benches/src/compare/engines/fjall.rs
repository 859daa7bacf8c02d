//! fjall (LSM-tree): a transactional keyspace with one partition of key →
//! value; the ISAM rows add two partitions of index entries written in the
//! same transaction. Durable rows: `PersistMode::SyncAll` on each commit.

use std::path::{Path, PathBuf};

use fjall::{Config, PartitionCreateOptions, PersistMode, TxKeyspace, TxPartitionHandle};

use super::super::data::{IsamRow, Row};
use super::super::{Engine, Result};

/// fjall under test.
pub struct Fjall {
    ks: TxKeyspace,
    kv: TxPartitionHandle,
    isam: TxPartitionHandle,
    i2: TxPartitionHandle,
    i3: TxPartitionHandle,
    dir: PathBuf,
}

impl Fjall {
    /// A keyspace in `dir` with a `cache`-byte block cache.
    pub fn open(dir: &Path, cache: usize) -> Result<Fjall> {
        let ks = Config::new(dir.join("fjall"))
            .cache_size(cache as u64)
            .open_transactional()?;
        let p = |n: &str| ks.open_partition(n, PartitionCreateOptions::default());
        Ok(Fjall {
            kv: p("kv")?,
            isam: p("isam")?,
            i2: p("isam_grp_day")?,
            i3: p("isam_name")?,
            ks,
            dir: dir.to_path_buf(),
        })
    }

    fn insert(&self, rows: &[Row]) -> Result<()> {
        let mut tx = self.ks.write_tx().durability(Some(PersistMode::SyncAll));
        for r in rows {
            tx.insert(&self.kv, r.key, r.value);
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Fjall {
    fn load(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn commit(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn get(&self, key: &[u8]) -> Result<bool> {
        let v = self.ks.read_tx().get(&self.kv, key)?;
        Ok(std::hint::black_box(v).is_some())
    }

    fn range10(&self, key: &[u8]) -> Result<usize> {
        let tx = self.ks.read_tx();
        let mut n = 0;
        for e in tx.range(&self.kv, key..).take(10) {
            std::hint::black_box(e?);
            n += 1;
        }
        Ok(n)
    }

    fn scan(&self) -> Result<usize> {
        let tx = self.ks.read_tx();
        let mut n = 0;
        for e in tx.iter(&self.kv) {
            std::hint::black_box(e?);
            n += 1;
        }
        Ok(n)
    }

    fn remove(&self, keys: &[[u8; 24]]) -> Result<()> {
        let mut tx = self.ks.write_tx().durability(Some(PersistMode::SyncAll));
        for k in keys {
            tx.remove(&self.kv, *k);
        }
        tx.commit()?;
        Ok(())
    }

    fn compact(&self) -> Result<bool> {
        self.kv.inner().major_compact()?;
        Ok(true)
    }

    fn size(&self) -> Result<u64> {
        Ok(super::disk_usage(&self.dir)?)
    }

    fn isam_append(&self, rows: &[IsamRow]) -> Result<()> {
        let mut tx = self.ks.write_tx().durability(Some(PersistMode::SyncAll));
        for r in rows {
            if tx.get(&self.isam, r.key)?.is_some() {
                return Err("duplicate key".into());
            }
            tx.insert(&self.isam, r.key, r.encode());
            tx.insert(&self.i2, r.index2(), []);
            tx.insert(&self.i3, r.index3(), []);
        }
        tx.commit()?;
        Ok(())
    }

    fn isam_seek(&self, group: &[u8; 8], day: u32) -> Result<bool> {
        let tx = self.ks.read_tx();
        let mut prefix = group.to_vec();
        prefix.extend_from_slice(&day.to_be_bytes());
        let Some(e) = tx.prefix(&self.i2, &prefix).next() else {
            return Ok(false);
        };
        let (k, _) = e?;
        let v = tx.get(&self.isam, &k[12..])?;
        Ok(std::hint::black_box(v).is_some())
    }
}
