//! Sessions: the unit that owns table handles and, later, locks and transactions.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Database;
use crate::error::Result;
use crate::schema::Schema;
use crate::table::CursorOptions;
use crate::table::{Table, TableOptions};

/// A session on a database. Cheap to create; each has its own options and
/// opens its own table handles.
///
/// ```
/// use raiz_engine::Database;
/// # let dir = tempfile::tempdir().unwrap();
/// let db = Database::open(dir.path())?;
/// let s = db.session();
/// s.set_hide_deleted(true); // xBase SET DELETED ON
/// # Ok::<(), raiz_engine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    db: Database,
    opts: Arc<CursorOptions>,
}

impl Session {
    pub(super) fn new(db: Database) -> Session {
        Session {
            db,
            opts: Arc::new(CursorOptions::default()),
        }
    }

    /// The database this session works on.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Hides deleted records from navigation in every handle of this session.
    pub fn set_hide_deleted(&self, on: bool) {
        self.opts.hide_deleted.store(on, Ordering::Relaxed);
    }

    /// True when deleted records are hidden from navigation.
    pub fn hide_deleted(&self) -> bool {
        self.opts.hide_deleted.load(Ordering::Relaxed)
    }

    /// Opens a handle on table `name`, positioned before the first record.
    pub fn open_table(&self, name: &str) -> Result<Table> {
        let shared = self.db.open_shared(name)?;
        Ok(Table::new(shared, self.opts.clone()))
    }

    /// Creates a table (see [`Database::create_table`]).
    pub fn create_table(&self, name: &str, schema: &Schema, opts: TableOptions) -> Result<()> {
        self.db.create_table(name, schema, opts)
    }
}
