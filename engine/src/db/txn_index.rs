//! What an open transaction has done to each table, indexed so that reads,
//! navigation and writes inside a large transaction cost the same as outside
//! one: the changes stay in order in [`Txn::changes`] (for commit and
//! savepoints), and [`TxnIndex`] folds them per table and record.
//!
//! Invariants: after every [`Txn::push`] or [`Txn::rollback_to`], the index
//! describes exactly `changes` and `blanks` — per record its latest values (as
//! the position of the change that carried them, or blank), its latest deleted
//! flag and whether this transaction appended it; per table the recnos of its
//! changes in order and the highest appended recno. An append rolled back to a
//! savepoint is a deleted blank record from then on, in this transaction as it
//! will be for everyone after its end. An [`Overlay`] cached for an index has folded the
//! first `applied` entries of that table's `order`; it is dropped whenever the
//! changes are truncated.

use std::collections::BTreeMap;
use std::ops::Bound;

// aHash: keyed per process, far cheaper than SipHash on the path of every
// write in a transaction.
use ahash::AHashMap as HashMap;
use std::sync::Arc;

use super::recno_map::RecnoMap;
use crate::index::IndexDef;
use crate::schema::Value;
use crate::txn::{Change, TableHandle, TableShared};

/// A transaction's own view of one index: the entries its pending changes add,
/// and the records whose committed entries they hide. A key is shared by
/// the maps (one allocation per changed record).
///
/// The entries are kept by key in a hash map, which is all a write's unique
/// check needs; the same entries in key order are built only when a move
/// through the index asks for them, and kept up to date from then on — a
/// bulk load that never navigates never pays for sorting its keys one
/// insertion at a time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overlay {
    /// Entry key → record, for every entry the transaction's records take.
    by_key: HashMap<Arc<[u8]>, u64>,
    /// The same entries in key order, once asked for.
    sorted: Option<BTreeMap<SortKey, u64>>,
    /// Every record the transaction changed (its committed entry is
    /// hidden), with its pending key when it has one in this index.
    key_of: RecnoMap<Option<Arc<[u8]>>>,
}

impl Overlay {
    /// True when the transaction changed record `r`: its committed entry
    /// does not count.
    pub fn hides(&self, r: u64) -> bool {
        self.key_of.contains_key(&r)
    }

    /// The record of the transaction's own that holds entry key `k`.
    pub fn owner(&self, k: &[u8]) -> Option<u64> {
        self.by_key.get(k).copied()
    }

    /// True when the transaction's records take no entry of this index.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Record `r` takes entry `k` (None: no entry) instead of the one it
    /// took before, if any.
    pub fn set(&mut self, r: u64, k: Option<Arc<[u8]>>) {
        if let Some(Some(old)) = self.key_of.insert(r, k.clone()) {
            // Only r's own entry: another record may hold the key by now.
            if self.by_key.get(&old) == Some(&r) {
                self.by_key.remove(&old);
                if let Some(m) = &mut self.sorted {
                    m.remove(&SortKey::new(old));
                }
            }
        }
        if let Some(k) = k {
            if let Some(m) = &mut self.sorted {
                m.insert(SortKey::new(k.clone()), r);
            }
            self.by_key.insert(k, r);
        }
    }

    /// Builds the ordered view if it is not there yet.
    pub fn sort(&mut self) {
        if self.sorted.is_none() {
            self.sorted = Some(
                self.by_key
                    .iter()
                    .map(|(k, r)| (SortKey::new(k.clone()), *r))
                    .collect(),
            );
        }
    }

    /// True once [`Overlay::sort`] built the ordered view.
    pub fn is_sorted(&self) -> bool {
        self.sorted.is_some()
    }

    /// The entries between two bounds in key order (None until
    /// [`Overlay::sort`]). At most one bound may be set.
    pub fn range(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> Option<impl DoubleEndedIterator<Item = (&[u8], u64)>> {
        let bound = |b: Bound<&[u8]>| b.map(|k| SortKey::new(Arc::from(k)));
        let m = self.sorted.as_ref()?;
        Some(
            m.range((bound(lower), bound(upper)))
                .map(|(k, r)| (&k.key[..], *r)),
        )
    }
}

/// A key of the ordered view with its first eight bytes (zero-padded) as a
/// number beside it: a search compares those in the map's node and follows
/// the pointer to the key's bytes only when they are equal — comparing the
/// bytes behind each `Arc` made every step of a seek a cache miss. The order
/// is the bytes' order: zero padding keeps it, and equal prefixes fall back
/// to the bytes.
#[derive(Debug, Clone)]
struct SortKey {
    prefix: u64,
    key: Arc<[u8]>,
}

impl SortKey {
    fn new(key: Arc<[u8]>) -> SortKey {
        let mut b = [0u8; 8];
        let n = key.len().min(8);
        b[..n].copy_from_slice(&key[..n]);
        SortKey {
            prefix: u64::from_be_bytes(b),
            key,
        }
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.key[..].cmp(&other.key[..]))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SortKey {}

/// What the transaction makes of one record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pending {
    /// Position in `changes` of the latest change carrying values.
    pub values_at: Option<usize>,
    /// An append rolled back to a savepoint: a deleted blank record.
    pub blank: bool,
    /// Latest deleted flag set by the transaction.
    pub deleted: Option<bool>,
    /// The transaction appended this recno.
    pub appended: bool,
}

/// One table's part of the index.
#[derive(Debug, Default)]
pub(crate) struct TableTxn {
    pub records: RecnoMap<Pending>,
    /// Recno of each change to this table, in order.
    pub order: Vec<u64>,
    pub max_append: u64,
    /// Per index name: its definition, the `order` entries folded, the overlay.
    pub overlays: HashMap<String, (IndexDef, usize, Arc<Overlay>)>,
}

/// The values a transaction gives a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PendingValues {
    /// Only the deleted flag changed: the committed values stand.
    Unchanged,
    /// New values.
    Values(Vec<Value>),
    /// A deleted blank record (an append rolled back to a savepoint).
    Blank,
}

/// [`PendingValues`] borrowed from the transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PendingView<'a> {
    /// Only the deleted flag changed.
    Unchanged,
    /// New values.
    Values(&'a [Value]),
    /// A deleted blank record.
    Blank,
}

/// What a transaction makes of a record: its values, and its deleted flag
/// (None: unchanged).
pub(crate) type PendingRecord = (PendingValues, Option<bool>);

/// Per table (by the address of its shared state).
pub(crate) type TxnIndex = HashMap<usize, TableTxn>;

pub(crate) fn key(shared: &Arc<TableShared>) -> usize {
    Arc::as_ptr(shared) as usize
}

/// An open transaction.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    pub id: u64,
    pub changes: Vec<(TableHandle, Change)>,
    /// Reserved recnos whose appends were rolled back to a savepoint.
    pub blanks: Vec<(TableHandle, u64)>,
    pub index: TxnIndex,
    /// On a cluster member, the term its writes were taken under.
    pub token: Option<u64>,
}

fn fold(index: &mut TxnIndex, shared: &Arc<TableShared>, at: usize, change: &Change) {
    let t = index.entry(key(shared)).or_default();
    let recno = change.recno();
    t.order.push(recno);
    let p = t.records.get_or_default(recno);
    match change {
        Change::Append { .. } => {
            p.values_at = Some(at);
            p.blank = false;
            p.deleted = Some(false);
            p.appended = true;
            t.max_append = t.max_append.max(recno);
        }
        Change::Update { .. } => {
            p.values_at = Some(at);
            p.blank = false;
        }
        Change::SetDeleted { deleted, .. } => p.deleted = Some(*deleted),
        // Replicated changes never enter a transaction.
        Change::Blank { .. } | Change::Put { .. } => {}
    }
}

impl Txn {
    /// Records a change.
    pub fn push(&mut self, shared: TableHandle, change: Change) {
        fold(&mut self.index, &shared, self.changes.len(), &change);
        self.changes.push((shared, change));
    }

    /// A recno reserved for an append that did not happen: a deleted blank
    /// record from now on.
    pub fn add_blank(&mut self, shared: TableHandle, recno: u64) {
        self.blanks.push((shared, recno));
        self.fold_blanks();
    }

    fn fold_blanks(&mut self) {
        for (shared, recno) in &self.blanks {
            let t = self.index.entry(key(shared)).or_default();
            if t.records.get(recno).is_some_and(|p| p.blank) {
                continue;
            }
            t.order.push(*recno);
            t.max_append = t.max_append.max(*recno);
            t.records.insert(
                *recno,
                Pending {
                    values_at: None,
                    blank: true,
                    deleted: Some(true),
                    appended: true,
                },
            );
        }
    }

    /// Drops the changes from `at` on (rollback to a savepoint): the recnos
    /// they appended become blanks. Rebuilds the index.
    pub fn rollback_to(&mut self, at: usize) {
        for (shared, change) in self.changes.drain(at..) {
            if let Change::Append { recno, .. } = change {
                self.blanks.push((shared, recno));
            }
        }
        // Blanks first: whatever the transaction did to a blanked recno
        // afterwards is in `changes` (everything before was rolled back).
        self.index.clear();
        self.fold_blanks();
        for (i, (shared, change)) in self.changes.iter().enumerate() {
            fold(&mut self.index, shared, i, change);
        }
    }

    /// The table's part, if the transaction changed it.
    pub fn table(&self, shared: &Arc<TableShared>) -> Option<&TableTxn> {
        self.index.get(&key(shared))
    }

    /// What the transaction makes of `recno`: its pending values (None: only
    /// the flag changed) and flag (None: unchanged).
    pub fn pending(&self, shared: &Arc<TableShared>, recno: u64) -> Option<PendingRecord> {
        let (view, deleted) = self.pending_view(shared, recno)?;
        let values = match view {
            PendingView::Unchanged => PendingValues::Unchanged,
            PendingView::Values(v) => PendingValues::Values(v.to_vec()),
            PendingView::Blank => PendingValues::Blank,
        };
        Some((values, deleted))
    }

    /// [`Txn::pending`] without copying the values.
    pub fn pending_view(
        &self,
        shared: &Arc<TableShared>,
        recno: u64,
    ) -> Option<(PendingView<'_>, Option<bool>)> {
        let p = self.table(shared)?.records.get(&recno)?;
        let values = if p.blank {
            PendingView::Blank
        } else {
            match p.values_at.map(|i| &self.changes[i].1) {
                Some(Change::Append { values, .. } | Change::Update { values, .. }) => {
                    PendingView::Values(values)
                }
                _ => PendingView::Unchanged,
            }
        };
        Some((values, p.deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ordered view's keys sort as their bytes, whatever their
        /// lengths (shorter than the eight-byte prefix too) and shared
        /// prefixes.
        #[test]
        fn sort_keys_order_as_their_bytes(
            prefix in proptest::collection::vec(0u8..3, 0..10),
            a in proptest::collection::vec(0u8..3, 0..10),
            b in proptest::collection::vec(0u8..3, 0..10),
        ) {
            let a: Vec<u8> = prefix.iter().chain(&a).copied().collect();
            let b: Vec<u8> = prefix.iter().chain(&b).copied().collect();
            let (x, y) = (SortKey::new(Arc::from(&a[..])), SortKey::new(Arc::from(&b[..])));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
        }
    }

    #[test]
    fn an_overlay_ranges_over_its_entries_in_key_order_both_ways() {
        let mut o = Overlay::default();
        let keys: [&[u8]; 5] = [b"b", b"a\x00", b"abcdefghij", b"abcdefghi", b""];
        for (r, k) in keys.iter().enumerate() {
            o.set(r as u64, Some(Arc::from(*k)));
        }
        assert!(o.range(Bound::Unbounded, Bound::Unbounded).is_none());
        o.sort();
        // Record 0 moves from "b" to "c"; record 4 loses its entry.
        o.set(0, Some(Arc::from(&b"c"[..])));
        o.set(4, None);
        let all: Vec<(&[u8], u64)> = o
            .range(Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .collect();
        let want: Vec<(&[u8], u64)> = vec![
            (b"a\x00", 1),
            (b"abcdefghi", 3),
            (b"abcdefghij", 2),
            (b"c", 0),
        ];
        assert_eq!(all, want);
        let from: Vec<u64> = o
            .range(Bound::Excluded(&b"abcdefghi"[..]), Bound::Unbounded)
            .unwrap()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(from, [2, 0]);
        let back: Vec<u64> = o
            .range(Bound::Unbounded, Bound::Included(&b"abcdefghij"[..]))
            .unwrap()
            .rev()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(back, [2, 3, 1]);
        assert!(o.hides(4) && o.owner(b"b").is_none() && o.owner(b"c") == Some(0));
    }
}
