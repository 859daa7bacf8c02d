//! raiz embedded: a fixed-length table (KEY Binary(24), VAL Binary(150)) with
//! a unique index on KEY; logged or unlogged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{
    Database, Durability, Field, FieldType, Options, Schema, Session, Table, TableOptions, Value,
};

use super::super::data::{IsamRow, Row};
use super::super::{Engine, Result};

struct Handles {
    session: Session,
    kv: Table,
    isam: Option<Table>,
}

/// raiz under test.
pub struct Raiz {
    db: Database,
    dir: PathBuf,
    logged: bool,
    /// Idle handles, one list per thread slot: an application gives each
    /// thread its own session, so threads must not meet on one list here.
    pool: Vec<Mutex<Vec<Handles>>>,
    /// Serialises the creation of the ISAM table.
    create: Mutex<()>,
}

/// Lists of idle handles; a thread uses the list of its slot.
const POOL_LISTS: usize = 8;

fn thread_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % POOL_LISTS;
    }
    SLOT.with(|s| *s)
}

fn options(logged: bool) -> TableOptions {
    TableOptions::default().durability(if logged {
        Durability::Logged
    } else {
        Durability::Unlogged
    })
}

impl Raiz {
    /// A rootpath in `dir` with a `cache`-byte buffer pool.
    pub fn open(dir: &Path, cache: usize, logged: bool) -> Result<Raiz> {
        let db = Database::open_with(dir, Options::default().pool_bytes(cache))?;
        let schema = Schema::new(vec![
            Field::new("KEY", FieldType::Binary(24)),
            Field::new("VAL", FieldType::Binary(150)),
        ]);
        db.create_table("kv", &schema, options(logged))?;
        let mut t = db.session().open_table("kv")?;
        t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())?;
        Ok(Raiz {
            db,
            dir: dir.to_path_buf(),
            logged,
            pool: (0..POOL_LISTS).map(|_| Mutex::new(Vec::new())).collect(),
            create: Mutex::new(()),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Handles) -> Result<T>) -> Result<T> {
        let list = &self.pool[thread_slot()];
        let h = list.lock().pop();
        let mut h = match h {
            Some(h) => h,
            None => {
                let session = self.db.session();
                session.set_lock_timeout(Duration::from_secs(30));
                let mut kv = session.open_table("kv")?;
                kv.set_order(Some("key"))?;
                Handles {
                    session,
                    kv,
                    isam: None,
                }
            }
        };
        let r = f(&mut h);
        list.lock().push(h);
        r
    }

    fn isam(&self, h: &mut Handles) -> Result<()> {
        if h.isam.is_some() {
            return Ok(());
        }
        let _guard = self.create.lock();
        if !self.db.table_exists("isam")? {
            let schema = Schema::new(vec![
                Field::new("KEY", FieldType::Binary(24)),
                Field::new("GRP", FieldType::Char(8)),
                Field::new("DAY", FieldType::Int64),
                Field::new("NAME", FieldType::Char(20)),
                Field::new("REST", FieldType::Char(100)),
            ]);
            self.db
                .create_table("isam", &schema, options(self.logged))?;
            let mut t = self.db.session().open_table("isam")?;
            t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())?;
            t.create_index(&IndexDef::new(
                "grp_day",
                vec![Segment::field("GRP"), Segment::field("DAY")],
            ))?;
            t.create_index(&IndexDef::new("name", vec![Segment::field("NAME")]))?;
        }
        let mut t = h.session.open_table("isam")?;
        t.set_order(Some("grp_day"))?;
        h.isam = Some(t);
        Ok(())
    }
}

fn values(r: &Row) -> [Value; 2] {
    [
        Value::Binary(r.key.to_vec()),
        Value::Binary(r.value.to_vec()),
    ]
}

fn text(b: &[u8]) -> Value {
    Value::Char(String::from_utf8_lossy(b).trim_end().to_owned())
}

impl Engine for Raiz {
    fn load(&self, rows: &[Row]) -> Result<()> {
        self.with(|h| {
            h.session.begin()?;
            for r in rows {
                h.kv.append(&values(r))?;
            }
            h.session.commit()?;
            Ok(())
        })
    }

    fn commit(&self, rows: &[Row]) -> Result<()> {
        self.with(|h| {
            if rows.len() == 1 {
                // Autocommit: one durable transaction.
                h.kv.append(&values(&rows[0]))?;
                return Ok(());
            }
            h.session.begin()?;
            for r in rows {
                h.kv.append(&values(r))?;
            }
            h.session.commit()?;
            Ok(())
        })
    }

    fn get(&self, key: &[u8]) -> Result<bool> {
        self.with(|h| {
            if !h.kv.seek(&[Value::Binary(key.to_vec())])? {
                return Ok(false);
            }
            std::hint::black_box(h.kv.record()?);
            Ok(true)
        })
    }

    fn range10(&self, key: &[u8]) -> Result<usize> {
        // The range iterator (what an application reading a range uses; a
        // cursor's seek + next reads the same records, one move at a time).
        self.with(|h| {
            let mut n = 0;
            for r in
                h.kv.range(Some(&[Value::Binary(key.to_vec())]), None)?
                    .take(10)
            {
                std::hint::black_box(r?);
                n += 1;
            }
            Ok(n)
        })
    }

    fn scan(&self) -> Result<usize> {
        self.with(|h| {
            let mut n = 0;
            for r in h.kv.range(None, None)? {
                std::hint::black_box(r?);
                n += 1;
            }
            Ok(n)
        })
    }

    fn remove(&self, keys: &[[u8; 24]]) -> Result<()> {
        self.with(|h| {
            h.session.begin()?;
            for k in keys {
                if h.kv.seek(&[Value::Binary(k.to_vec())])? {
                    let r = h.kv.recno();
                    h.kv.delete(r)?;
                }
            }
            h.session.commit()?;
            Ok(())
        })
    }

    fn compact(&self) -> Result<bool> {
        // pack needs the only handle on the table.
        for list in &self.pool {
            let handles: Vec<Handles> = std::mem::take(&mut *list.lock());
            drop(handles);
        }
        let mut t = self.db.session().open_table("kv")?;
        t.pack()?;
        drop(t);
        self.db.checkpoint()?;
        Ok(true)
    }

    fn size(&self) -> Result<u64> {
        Ok(super::disk_usage(&self.dir)?)
    }

    fn isam_append(&self, rows: &[IsamRow]) -> Result<()> {
        self.with(|h| {
            self.isam(h)?;
            let t = h.isam.as_mut().ok_or("no isam table")?;
            h.session.begin()?;
            for r in rows {
                t.append(&[
                    Value::Binary(r.key.to_vec()),
                    text(&r.group),
                    Value::Int64(i64::from(r.day)),
                    text(&r.name),
                    text(&r.rest),
                ])?;
            }
            h.session.commit()?;
            Ok(())
        })
    }

    fn isam_seek(&self, group: &[u8; 8], day: u32) -> Result<bool> {
        self.with(|h| {
            self.isam(h)?;
            let t = h.isam.as_mut().ok_or("no isam table")?;
            if !t.seek(&[text(group), Value::Int64(i64::from(day))])? {
                return Ok(false);
            }
            std::hint::black_box(t.record()?);
            Ok(true)
        })
    }

    fn durable(&self) -> bool {
        self.logged
    }

    fn log_end(&self) -> Option<u64> {
        self.logged.then(|| self.db.log_end())
    }
}
