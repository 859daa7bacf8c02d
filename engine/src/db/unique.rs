//! Unique keys checked when a transaction writes, not only when it commits:
//! a write that takes a key a live record holds — a committed record the
//! transaction has not moved off it, or one of the transaction's own pending
//! records — fails at once with [`Error::DuplicateKey`], so the application
//! can react at the offending line. (The commit checks again: another
//! session may commit the key in between.)

use super::table::Table;
use crate::error::Result;
use crate::schema::Value;

impl Table {
    /// Refuses `values` for record `me` (None: a new record) when a live
    /// record other than it holds one of their unique keys, as this session's
    /// open transaction sees the table. Outside a transaction the write
    /// itself checks.
    pub(super) fn check_unique_in_txn(&self, values: &[Value], me: Option<u64>) -> Result<()> {
        if !self.session.in_transaction() {
            return Ok(());
        }
        let shared = std::sync::Arc::clone(&self.shared);
        let core = shared.core.read();
        // A write that cannot happen says so first.
        core.check_can_write()?;
        for i in 0..core.indexes.len() {
            let idx = &core.indexes[i];
            if !idx.spec.def.unique {
                continue;
            }
            let Some(k) = idx.entry_key(values, 0, false) else {
                continue;
            };
            let overlay = self.overlay(&core, i, false)?;
            if let Some(owner) = overlay.as_ref().and_then(|o| o.owner(k.as_slice())) {
                if Some(owner) != me {
                    return Err(core.duplicate(i, values, &k, owner));
                }
            }
            if let Some(owner) = idx.tree.get(&k)? {
                let moved = overlay.as_ref().is_some_and(|o| o.hides(owner));
                if Some(owner) != me && !moved {
                    return Err(core.duplicate(i, values, &k, owner));
                }
            }
        }
        Ok(())
    }
}
