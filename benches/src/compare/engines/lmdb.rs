//! LMDB through heed: one database of key → value; the ISAM rows add two
//! databases of index entries written in the same transaction. Default
//! environment flags: every commit is synced.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use heed::types::{Bytes, Unit};
use heed::{CompactionOption, Database, Env, EnvOpenOptions};
use parking_lot::RwLock;

use super::super::data::{IsamRow, Row};
use super::super::{Engine, Result};

struct Open {
    env: Env,
    kv: Database<Bytes, Bytes>,
    isam: Database<Bytes, Bytes>,
    i2: Database<Bytes, Unit>,
    i3: Database<Bytes, Unit>,
    path: PathBuf,
}

/// LMDB under test.
pub struct Lmdb {
    // compact() swaps in the compacted copy.
    open: RwLock<Open>,
    dir: PathBuf,
}

fn open_env(path: &Path) -> Result<Open> {
    std::fs::create_dir_all(path)?;
    #[allow(unsafe_code)]
    // SAFETY: heed's contract for opening an environment: the files are not
    // opened twice in this process and nobody else truncates them; each
    // environment of this benchmark gets its own fresh directory.
    let env = unsafe {
        EnvOpenOptions::new()
            .map_size(64 << 30)
            .max_dbs(8)
            .open(path)?
    };
    let mut tx = env.write_txn()?;
    let kv = env.create_database(&mut tx, Some("kv"))?;
    let isam = env.create_database(&mut tx, Some("isam"))?;
    let i2 = env.create_database(&mut tx, Some("isam_grp_day"))?;
    let i3 = env.create_database(&mut tx, Some("isam_name"))?;
    tx.commit()?;
    Ok(Open {
        env,
        kv,
        isam,
        i2,
        i3,
        path: path.to_path_buf(),
    })
}

impl Lmdb {
    /// An environment in `dir` (LMDB has no cache setting of its own).
    pub fn open(dir: &Path, _cache: usize) -> Result<Lmdb> {
        Ok(Lmdb {
            open: RwLock::new(open_env(&dir.join("env0"))?),
            dir: dir.to_path_buf(),
        })
    }

    fn insert(&self, rows: &[Row]) -> Result<()> {
        let o = self.open.read();
        let mut tx = o.env.write_txn()?;
        for r in rows {
            o.kv.put(&mut tx, &r.key, &r.value)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Lmdb {
    fn load(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn commit(&self, rows: &[Row]) -> Result<()> {
        self.insert(rows)
    }

    fn get(&self, key: &[u8]) -> Result<bool> {
        let o = self.open.read();
        let tx = o.env.read_txn()?;
        let v = o.kv.get(&tx, key)?;
        Ok(std::hint::black_box(v).is_some())
    }

    fn range10(&self, key: &[u8]) -> Result<usize> {
        let o = self.open.read();
        let tx = o.env.read_txn()?;
        let range = (Bound::Included(key), Bound::Unbounded);
        let mut n = 0;
        for e in o.kv.range(&tx, &range)?.take(10) {
            std::hint::black_box(e?);
            n += 1;
        }
        Ok(n)
    }

    fn scan(&self) -> Result<usize> {
        let o = self.open.read();
        let tx = o.env.read_txn()?;
        let mut n = 0;
        for e in o.kv.iter(&tx)? {
            std::hint::black_box(e?);
            n += 1;
        }
        Ok(n)
    }

    fn remove(&self, keys: &[[u8; 24]]) -> Result<()> {
        let o = self.open.read();
        let mut tx = o.env.write_txn()?;
        for k in keys {
            o.kv.delete(&mut tx, k)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn compact(&self) -> Result<bool> {
        let mut o = self.open.write();
        let next = self.dir.join(format!(
            "env{}",
            o.path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("env"))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
                + 1
        ));
        std::fs::create_dir_all(&next)?;
        o.env
            .copy_to_file(next.join("data.mdb"), CompactionOption::Enabled)?;
        let fresh = open_env(&next)?;
        let old = std::mem::replace(&mut *o, fresh);
        let old_path = old.path.clone();
        old.env.prepare_for_closing().wait();
        std::fs::remove_dir_all(old_path)?;
        Ok(true)
    }

    fn size(&self) -> Result<u64> {
        Ok(super::disk_usage(&self.dir)?)
    }

    fn isam_append(&self, rows: &[IsamRow]) -> Result<()> {
        let o = self.open.read();
        let mut tx = o.env.write_txn()?;
        for r in rows {
            if o.isam.get(&tx, &r.key)?.is_some() {
                return Err("duplicate key".into());
            }
            o.isam.put(&mut tx, &r.key, &r.encode())?;
            o.i2.put(&mut tx, &r.index2(), &())?;
            o.i3.put(&mut tx, &r.index3(), &())?;
        }
        tx.commit()?;
        Ok(())
    }

    fn isam_seek(&self, group: &[u8; 8], day: u32) -> Result<bool> {
        let o = self.open.read();
        let tx = o.env.read_txn()?;
        let mut prefix = group.to_vec();
        prefix.extend_from_slice(&day.to_be_bytes());
        let Some(e) = o.i2.prefix_iter(&tx, &prefix)?.next() else {
            return Ok(false);
        };
        let (k, ()) = e?;
        let v = o.isam.get(&tx, &k[12..])?;
        Ok(std::hint::black_box(v).is_some())
    }
}
