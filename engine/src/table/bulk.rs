//! A commit that only appends many records to a table inserts their index
//! entries at the end, sorted, instead of one record at a time.
//!
//! Sorted, an index's new entries go to each leaf together, and into an empty
//! index (a table's first load) they are built bottom-up as a rebuild builds
//! them, leaves filled to about 90 %. What a commit guarantees is unchanged:
//! the entries are part of the commit (captured and logged with it), a unique
//! key taken twice — by two of its records, or by one of them and a committed
//! record — fails the commit with the same [`Error::DuplicateKey`] an
//! insertion one by one gives, and a failed commit puts everything back.
//!
//! Only pure appends qualify: an update or delete in the same commit could
//! read or move an entry that is not in its index yet.

use crate::error::{Error, Result};
use crate::index::key_cmp;

use super::core::TableCore;

/// One index's deferred entries: full key and recno.
pub(crate) type Entries = Vec<(Vec<u8>, u64)>;

/// Appends to one table in one commit from which its entries are deferred.
pub(crate) const DEFER_FROM: usize = 256;

impl TableCore {
    /// Starts deferring index entries: the commit's changes to this table are
    /// all appends, at least [`DEFER_FROM`] of them.
    pub fn defer_keys(&mut self) {
        if !self.indexes.is_empty() {
            self.deferred = Some(vec![Vec::new(); self.indexes.len()]);
        }
    }

    /// Forgets deferred entries (the commit failed).
    pub fn drop_deferred(&mut self) {
        self.deferred = None;
    }

    /// Queues record `recno`'s entries (taken, not copied).
    pub(super) fn defer(&mut self, keys: Vec<Option<Vec<u8>>>, recno: u64) {
        if let Some(lists) = &mut self.deferred {
            for (list, k) in lists.iter_mut().zip(keys) {
                if let Some(k) = k {
                    list.push((k, recno));
                }
            }
        }
    }

    /// True while a commit defers this table's entries.
    pub(super) fn deferring(&self) -> bool {
        self.deferred.is_some()
    }

    /// Inserts the deferred entries, index by index in key order.
    pub fn apply_deferred(&mut self) -> Result<()> {
        let Some(mut lists) = self.deferred.take() else {
            return Ok(());
        };
        for (i, list) in lists.iter_mut().enumerate() {
            list.sort_unstable_by(|a, b| key_cmp(&a.0, &b.0));
            // Equal full keys: a unique key two of the records took (other
            // keys end in their recno).
            if let Some(w) = list.windows(2).find(|w| w[0].0 == w[1].0) {
                let (holder, r) = (w[0].1.min(w[1].1), w[0].1.max(w[1].1));
                return Err(self.taken(i, r, &w[0].0, holder));
            }
            let tree = &mut self.indexes[i].tree;
            if tree.state.root == 0 && tree.state.free_head == 0 {
                tree.build(list, |_| {})?;
                continue;
            }
            for (k, r) in list.iter() {
                if let Some(owner) = self.indexes[i].tree.insert_new(k, *r)? {
                    return Err(self.taken(i, *r, k, owner));
                }
            }
        }
        Ok(())
    }

    /// The error for record `r` taking full key `k` of index `i`, which
    /// record `holder` has: a unique key taken twice, or damage.
    fn taken(&self, i: usize, r: u64, k: &[u8], holder: u64) -> Error {
        let unique = self.indexes[i].spec.def.unique && k[k.len() - 8..] == [0; 8];
        if !unique || holder == r {
            return self.corrupt(
                r,
                format!("index {} holds its key twice", self.indexes[i].name()),
            );
        }
        match self.read(r) {
            Ok(rec) => self.duplicate(i, rec.values(), k, holder),
            Err(e) => e,
        }
    }
}
