//! The engines compared, each with its documented durable setting and the
//! run's cache budget:
//!
//! | engine | durable rows | cache budget |
//! |---|---|---|
//! | raiz (logged) | commit returns after the log's fdatasync (group commit) | buffer pool |
//! | raiz (unlogged) | — (no log; durable rows not applicable) | buffer pool |
//! | redb | `Durability::Immediate` (the default: fsync at commit) | `set_cache_size` |
//! | SQLite (rusqlite, bundled) | `journal_mode=WAL`, `synchronous=FULL` | `cache_size` per connection |
//! | LMDB (heed) | default flags: fsync at commit | none: reads go through the OS page cache (mmap) |
//! | fjall | each write transaction `PersistMode::SyncAll` | `cache_size` |

pub mod fjall;
pub mod lmdb;
pub mod raiz;
pub mod redb;
pub mod sqlite;

use std::path::Path;

use super::Contender;

/// Every engine, in column order.
pub fn all() -> Vec<Contender> {
    vec![
        Contender {
            name: "raiz (logged)",
            open: |d, c| Ok(Box::new(raiz::Raiz::open(d, c, true)?)),
        },
        Contender {
            name: "raiz (unlogged)",
            open: |d, c| Ok(Box::new(raiz::Raiz::open(d, c, false)?)),
        },
        Contender {
            name: "redb",
            open: |d, c| Ok(Box::new(redb::Redb::open(d, c)?)),
        },
        Contender {
            name: "SQLite",
            open: |d, c| Ok(Box::new(sqlite::Sqlite::open(d, c)?)),
        },
        Contender {
            name: "LMDB (heed)",
            open: |d, c| Ok(Box::new(lmdb::Lmdb::open(d, c)?)),
        },
        Contender {
            name: "fjall",
            open: |d, c| Ok(Box::new(fjall::Fjall::open(d, c)?)),
        },
    ]
}

/// Bytes allocated on disk under `dir` (sparse files count what they use).
pub fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            total += disk_usage(&e.path())?;
        } else {
            total += m.blocks() * 512;
        }
    }
    Ok(total)
}
