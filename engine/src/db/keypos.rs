//! Key count and key position (xBase `ordKeyCount()`, `ordKeyNo()`): how many
//! records are visible through the handle's current order — inside its scope,
//! not hidden as deleted, passing the filter — and where the current record
//! stands among them.
//!
//! Without a filter, without hidden deleted records and without this session's
//! pending changes to the table, both come from the index alone, counted a
//! leaf at a time (no record is read; physical order needs no reading at all).
//! Otherwise the visible records are walked as navigation would.

use super::nav::From;
use super::table::Table;
use crate::error::Result;
use crate::table::TableCore;

impl Table {
    /// True when the counts can come from the tree alone.
    fn counts_are_raw(&self) -> bool {
        self.filter.is_none() && !self.hide_deleted() && !self.session.touched(&self.shared)
    }

    /// Records visible through the current order (xBase `ordKeyCount()`).
    ///
    /// ```
    /// use raiz_engine::{Database, Field, FieldType, Schema, TableOptions, Value};
    /// use raiz_engine::index::{IndexDef, Segment};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = Database::open(dir.path())?;
    /// db.create_table("t", &Schema::new(vec![Field::new("K", FieldType::Int64)]), TableOptions::default())?;
    /// let mut t = db.session().open_table("t")?;
    /// for k in [5, 1, 3, 9] {
    ///     t.append(&[Value::Int64(k)])?;
    /// }
    /// t.create_index(&IndexDef::new("by_k", vec![Segment::field("K")]))?;
    /// t.set_order(Some("by_k"))?;
    /// t.set_scope(Some(&[Value::Int64(2)]), Some(&[Value::Int64(6)]))?;
    /// assert_eq!(t.key_count()?, 2);                 // 3 and 5
    /// assert!(t.seek(&[Value::Int64(5)])?);
    /// assert_eq!(t.key_no()?, 2);
    /// # Ok::<(), raiz_engine::Error>(())
    /// ```
    pub fn key_count(&self) -> Result<u64> {
        let shared = std::sync::Arc::clone(&self.shared);
        let core = shared.core.read();
        if self.order.is_none() {
            let count = self.visible_count(&core);
            if self.counts_are_raw() {
                return Ok(count);
            }
            let mut n = 0;
            for r in 1..=count {
                n += u64::from(self.visible_phys(&core, r)?);
            }
            return Ok(n);
        }
        let i = self.order_index(&core)?;
        if self.counts_are_raw() {
            let tree = &core.indexes[i].tree;
            if self.scope == (None, None) {
                return Ok(tree.state.entries);
            }
            let start = self.raw_scope_start(&core, i)?;
            return tree.count_from(start, |k| self.in_upper(k));
        }
        let mut n = 0;
        let mut at = self.index_first(&core, i)?;
        while let Some((k, _)) = at {
            n += 1;
            at = self.walk(&core, i, From::Key(&k, true), true)?;
        }
        Ok(n)
    }

    /// The current record's position among the records visible through the
    /// current order, from 1 (xBase `ordKeyNo()`); 0 on the phantom record or
    /// on a record the order does not show (outside the scope, hidden).
    pub fn key_no(&self) -> Result<u64> {
        if !self.positioned {
            return Ok(0);
        }
        let shared = std::sync::Arc::clone(&self.shared);
        let core = shared.core.read();
        let Some(_) = &self.order else {
            if !self.visible_phys(&core, self.recno)? {
                return Ok(0);
            }
            if self.counts_are_raw() {
                return Ok(self.recno);
            }
            let mut n = 0;
            for r in 1..=self.recno {
                n += u64::from(self.visible_phys(&core, r)?);
            }
            return Ok(n);
        };
        let i = self.order_index(&core)?;
        let Some(cur) = self.key_now(&core, i)?.or_else(|| self.ikey.clone()) else {
            return Ok(0);
        };
        if !(self.in_lower(&cur)
            && self.in_upper(&cur)
            && self.visible_entry(&core, i, &cur, self.recno)?)
        {
            return Ok(0);
        }
        if self.counts_are_raw() {
            let start = self.raw_scope_start(&core, i)?;
            return core.indexes[i]
                .tree
                .count_from(start, |k| k <= cur.as_slice());
        }
        let mut n = 0;
        let mut at = self.index_first(&core, i)?;
        while let Some((k, _)) = at {
            n += 1;
            if k == cur {
                return Ok(n);
            }
            at = self.walk(&core, i, From::Key(&k, true), true)?;
        }
        Ok(0)
    }

    /// The first raw entry at or after the current order's lower scope.
    fn raw_scope_start(&self, core: &TableCore, i: usize) -> Result<Option<crate::index::Pos>> {
        let tree = &core.indexes[i].tree;
        match &self.scope.0 {
            Some(lo) => tree.seek(lo),
            None => tree.first(),
        }
    }
}
