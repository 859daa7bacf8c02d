//! Navigation of a [`Table`] handle, in physical order or in an index's order.
//!
//! In index order the handle remembers the full key of its entry and every move
//! starts from a fresh descent to that key, so moves stay correct while other
//! handles or sessions change the table in between. A record is visible when it
//! is inside the scope, passes the filter, and is not hidden as deleted.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::table::Table;
use super::txn_index::{Overlay, PendingView};
use crate::error::Result;
use crate::index::{Index, Pos, Stepped, AHEAD};
use crate::record::{Record, SlotStatus};
use crate::schema::Value;
use crate::table::TableCore;
use crate::txn::TableHandle;

/// Encoded lower and upper bounds of a key range.
type Bounds = (Option<Vec<u8>>, Option<Vec<u8>>);

/// How a seek positions the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeekMode {
    Exact,
    Soft,
    Last,
    LastSoft,
}

fn starts_with(k: &[u8], prefix: &[u8]) -> bool {
    k.len() >= prefix.len() && &k[..prefix.len()] == prefix
}

/// Where an index walk starts: at one end, or at a key (strictly after/before it,
/// or including it).
/// `Table::ahead_leaf` when nothing has been prefetched.
pub(super) const NO_LEAF: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
pub(super) enum From<'a> {
    End,
    Key(&'a [u8], bool),
}

/// `prefix` extended with 0xff to a full key: the last key that has the prefix.
fn prefix_end(idx: &Index, prefix: &[u8]) -> Vec<u8> {
    let mut probe = prefix.to_vec();
    probe.resize(idx.spec.key_len() + 8, 0xff);
    probe
}

impl Table {
    pub(super) fn in_lower(&self, k: &[u8]) -> bool {
        self.scope
            .0
            .as_ref()
            .is_none_or(|lo| &k[..lo.len().min(k.len())] >= lo.as_slice())
    }

    pub(super) fn in_upper(&self, k: &[u8]) -> bool {
        self.scope
            .1
            .as_ref()
            .is_none_or(|hi| &k[..hi.len().min(k.len())] <= hi.as_slice())
    }

    fn passes_filter(&self, core: &TableCore, recno: u64) -> Result<bool> {
        match &self.filter {
            None => Ok(true),
            Some(f) => Ok(f(&self.read_in(core, recno)?)),
        }
    }

    pub(super) fn visible_phys(&self, core: &TableCore, recno: u64) -> Result<bool> {
        match self.status_in(core, recno)? {
            // A recno reserved by another session's open transaction.
            SlotStatus::Empty => return Ok(false),
            SlotStatus::Deleted if self.hide_deleted() => return Ok(false),
            _ => {}
        }
        self.passes_filter(core, recno)
    }

    pub(super) fn visible_entry(
        &self,
        core: &TableCore,
        i: usize,
        key: &[u8],
        recno: u64,
    ) -> Result<bool> {
        if self.hide_deleted() {
            let deleted = if core.indexes[i].spec.def.unique
                && self.session.pending(&self.shared, recno).is_none()
            {
                key[key.len() - 8..] != [0; 8]
            } else {
                self.status_in(core, recno)? == SlotStatus::Deleted
            };
            if deleted {
                return Ok(false);
            }
        }
        self.passes_filter(core, recno)
    }

    /// This session's pending changes to the table as seen in index `i`, if its
    /// transaction has any. Cached in the transaction and brought up to date
    /// with the changes made since, so a move costs the same in a large
    /// transaction as in a small one.
    ///
    /// `ordered` asks for the entries in key order, as a move needs them; a
    /// write's unique check looks keys up only.
    pub(super) fn overlay(
        &self,
        core: &TableCore,
        i: usize,
        ordered: bool,
    ) -> Result<Option<Arc<Overlay>>> {
        let def = &core.indexes[i].spec.def;
        let shared = &self.shared;
        self.session
            .overlay_fold(shared, def, ordered, |o, r, txn| {
                // The record as this session sees it (as `read_in`, reading the
                // pending values in place).
                let key = match txn.pending_view(shared, r) {
                    None => {
                        let rec = core.view(r)?;
                        core.key_of(i, rec.values(), r, rec.is_deleted())
                    }
                    Some((PendingView::Values(v), deleted)) => {
                        // An update keeps the committed flag unless it changed too.
                        let committed = deleted.is_none()
                            && r <= core.record_count()
                            && core.view_status(r)? == SlotStatus::Deleted;
                        core.key_of(i, v, r, deleted.unwrap_or(committed))
                    }
                    Some((PendingView::Blank, deleted)) => {
                        core.key_of(i, &core.schema.empty_record(), r, deleted.unwrap_or(true))
                    }
                    Some((PendingView::Unchanged, deleted)) => {
                        let base = core.view(r)?;
                        core.key_of(i, base.values(), r, deleted.unwrap_or(base.is_deleted()))
                    }
                };
                o.set(r, key.map(Arc::from));
                Ok(())
            })
    }

    fn tree_start(&self, idx: &Index, from: From<'_>, forwards: bool) -> Result<Option<Pos>> {
        let tree = &idx.tree;
        Ok(match (from, forwards) {
            (From::End, true) => tree.first()?,
            (From::End, false) => tree.last()?,
            (From::Key(k, strict), true) => {
                let mut p = tree.seek(k)?;
                if let (true, Some(q)) = (strict, p) {
                    if tree.entry(q)?.0 == k {
                        // Unchecked: only `walk`'s `entry_step` reads it.
                        p = Some(q.after());
                    }
                }
                p
            }
            (From::Key(k, strict), false) => match tree.seek(k)? {
                Some(q) if !strict && tree.entry(q)?.0 == k => Some(q),
                Some(q) => tree.prev(q)?,
                None => tree.last()?,
            },
        })
    }

    /// First visible entry from `from`, moving forwards (stopping past the upper
    /// scope) or backwards (stopping before the lower scope). Inside a
    /// transaction, its own pending entries are merged in and the committed
    /// entries of the records it changed are skipped.
    pub(super) fn walk(
        &self,
        core: &TableCore,
        i: usize,
        from: From<'_>,
        forwards: bool,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        let idx = &core.indexes[i];
        let tree = &idx.tree;
        let overlay = self.overlay(core, i, true)?;
        let hidden = |r: u64| overlay.as_ref().is_some_and(|o| o.hides(r));
        // The transaction's own entries, merged with the tree's (none
        // outside a transaction: nothing to build).
        let mut adds: Option<Box<dyn Iterator<Item = (Vec<u8>, u64)>>> = match &overlay {
            Some(o) if !o.is_empty() => {
                let lower = match from {
                    From::Key(k, true) if forwards => Bound::Excluded(k),
                    From::Key(k, false) if forwards => Bound::Included(k),
                    _ => Bound::Unbounded,
                };
                let upper = match from {
                    From::Key(k, true) if !forwards => Bound::Excluded(k),
                    From::Key(k, false) if !forwards => Bound::Included(k),
                    _ => Bound::Unbounded,
                };
                let range = o
                    .range(lower, upper)
                    .expect("asked for in order")
                    .map(|(k, r)| (k.to_vec(), r));
                Some(if forwards {
                    Box::new(range)
                } else {
                    Box::new(range.rev())
                })
            }
            _ => None,
        };
        let mut next_add = adds.as_mut().and_then(|a| a.next());
        self.walked.set(None);
        // Stepping from the current entry: if the tree has not changed since
        // the handle landed there, its leaf position is still right.
        // A forward neighbour is left unchecked (`Pos::after`):
        // `entry_step` finds out, so a step reads its leaf once.
        let hinted = match (from, &self.hint, &self.ikey, &overlay) {
            (From::Key(k, true), Some((v, p)), Some(cur), None)
                if *v == tree.version() && k == cur.as_slice() =>
            {
                Some(if forwards {
                    Some(p.after())
                } else {
                    tree.prev(*p)?
                })
            }
            _ => None,
        };
        if hinted.is_none() {
            // A fresh position: no prefetch until the handle steps on.
            self.ahead_leaf.store(NO_LEAF, Ordering::Relaxed);
        }
        // A forward walk from a key starts with the entry the descent found
        // (its leaf read once).
        let mut first = None;
        let mut tp = match (hinted, from) {
            (Some(tp), _) => tp,
            (None, From::Key(k, false)) if forwards => {
                // Its own position, not the next: when the transaction's own
                // entry before it is taken instead, the walk reads it again.
                first = tree.seek_step(k)?;
                first.as_ref().map(|s| s.at)
            }
            (None, _) => self.tree_start(idx, from, forwards)?,
        };
        loop {
            let mut from_tree = None;
            loop {
                let step = match first.take() {
                    Some(step) => step,
                    None => {
                        let Some(p) = tp else { break };
                        let Some(step) = tree.entry_step(p, forwards)? else {
                            break;
                        };
                        self.prefetch_ahead(core, &step);
                        step
                    }
                };
                if hidden(step.val) {
                    tp = step.then;
                    continue;
                }
                from_tree = Some(step);
                break;
            }
            let take_tree = match (&from_tree, &next_add) {
                (Some(st), Some((ak, _))) => (st.key < *ak) == forwards,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return Ok(None),
            };
            let (k, r, at) = if take_tree {
                let st = from_tree.expect("chosen above");
                tp = st.then;
                (st.key, st.val, Some(st.at))
            } else {
                let (k, r) = next_add.take().expect("chosen above");
                next_add = adds.as_mut().and_then(|a| a.next());
                (k, r, None)
            };
            // Forwards, keys below the scope are stepped over into it; past
            // it the walk ends. Backwards, any key outside the scope ends it
            // (xBase: a backward skip that leaves the scope is bof).
            let (ahead, behind) = if forwards {
                (self.in_upper(&k), self.in_lower(&k))
            } else {
                (self.in_lower(&k) && self.in_upper(&k), true)
            };
            if !ahead {
                return Ok(None);
            }
            if behind && self.visible_entry(core, i, &k, r)? {
                self.walked.set(at.map(|p| (tree.version(), p)));
                return Ok(Some((k, r)));
            }
        }
    }

    /// Prefetches the records a walk that steps on will read next, so that
    /// a scan's random data-page reads overlap instead of each waiting on
    /// memory in turn. Two stages: the pool's entry for a record's page
    /// `AHEAD` steps before it is read, the record itself half as many
    /// (the second stage's lookup then finds its entry cached). On the
    /// first step in a leaf every record `ahead` of it is set going; then
    /// each step moves both stages on by one. A seek alone prefetches
    /// nothing (it is often a point read).
    fn prefetch_ahead(&self, core: &TableCore, step: &Stepped) {
        const NEAR: usize = AHEAD / 2;
        let ahead = step.ahead.as_slice();
        if self.ahead_leaf.load(Ordering::Relaxed) != step.at.page {
            self.ahead_leaf.store(step.at.page, Ordering::Relaxed);
            // Every entry lookup first, so their misses overlap.
            for &r in ahead {
                core.prefetch_entry(r);
            }
            for &r in ahead.iter().take(NEAR) {
                core.prefetch(r);
            }
            return;
        }
        if let Some(&r) = ahead.get(AHEAD - 1) {
            core.prefetch_entry(r);
        }
        if let Some(&r) = ahead.get(NEAR - 1) {
            core.prefetch(r);
        }
    }

    /// First visible record of `recnos`, in physical order.
    fn phys_find(
        &self,
        core: &TableCore,
        recnos: impl Iterator<Item = u64>,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        for r in recnos {
            if self.visible_phys(core, r)? {
                return Ok(Some((Vec::new(), r)));
            }
        }
        Ok(None)
    }

    pub(super) fn index_first(&self, core: &TableCore, i: usize) -> Result<Option<(Vec<u8>, u64)>> {
        let from = match &self.scope.0 {
            Some(lo) => From::Key(lo, false),
            None => From::End,
        };
        self.walk(core, i, from, true)
    }

    fn index_last(&self, core: &TableCore, i: usize) -> Result<Option<(Vec<u8>, u64)>> {
        match &self.scope.1 {
            Some(hi) => {
                let end = prefix_end(&core.indexes[i], hi);
                self.walk(core, i, From::Key(&end, false), false)
            }
            None => self.walk(core, i, From::End, false),
        }
    }

    fn land(&mut self, found: Option<(Vec<u8>, u64)>, count: u64, both_ends: bool) -> bool {
        self.found = false;
        let walked = self.walked.take();
        match found {
            Some((k, r)) => {
                self.set_on(r, Some(k));
                self.hint = walked;
            }
            None => {
                self.set_eof(count);
                if both_ends {
                    self.bof = true;
                }
            }
        }
        !self.eof
    }

    /// Moves to the first visible record. Returns false (bof and eof) if none.
    pub fn first(&mut self) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        let core = shared.core.read();
        let count = self.visible_count(&core);
        let found = match &self.order {
            None => self.phys_find(&core, 1..=count)?,
            Some(_) => {
                let i = self.order_index(&core)?;
                self.index_first(&core, i)?
            }
        };
        Ok(self.land(found, count, true))
    }

    /// Moves to the last visible record. Returns false (bof and eof) if none.
    pub fn last(&mut self) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        let core = shared.core.read();
        let count = self.visible_count(&core);
        let found = match &self.order {
            None => self.phys_find(&core, (1..=count).rev())?,
            Some(_) => {
                let i = self.order_index(&core)?;
                self.index_last(&core, i)?
            }
        };
        Ok(self.land(found, count, true))
    }

    /// The key of the record the handle stands on in index `i` as the
    /// record is now, when the session's own changes made it differ from the
    /// key the handle walked to: a handle follows its record through its own
    /// session's writes (through any handle) and their rollback. Another
    /// session's change to the current record's key does not move it: moves
    /// go on from the old key, so a scan sees each entry at most once.
    pub(super) fn key_now(&self, core: &TableCore, i: usize) -> Result<Option<Vec<u8>>> {
        let Some(cur) = &self.ikey else {
            return Ok(None);
        };
        let undone = self.session.undone.load(Ordering::Relaxed);
        if !self.positioned
            || (undone == self.undone_seen.load(Ordering::Relaxed)
                && !self.session.touched(&self.shared))
        {
            return Ok(None);
        }
        let Ok(rec) = self.read_in(core, self.recno) else {
            return Ok(None);
        };
        Ok(core
            .key_of(i, rec.values(), self.recno, rec.is_deleted())
            .filter(|k| k != cur))
    }

    /// Brings the handle's key up to its record (see [`Table::key_now`]).
    fn follow_record(&mut self, core: &TableCore, i: usize) -> Result<()> {
        if let Some(k) = self.key_now(core, i)? {
            self.ikey = Some(k);
            self.hint = None;
        }
        let undone = self.session.undone.load(Ordering::Relaxed);
        self.undone_seen.store(undone, Ordering::Relaxed);
        Ok(())
    }

    /// Moves to the next visible record; past the last one sets eof.
    // The xBase name; a cursor move that can fail is not an `Iterator`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        let core = shared.core.read();
        let count = self.visible_count(&core);
        if !self.positioned {
            // From the phantom record (or bof on it): still past the end.
            self.set_eof(count);
            self.bof = false;
            self.found = false;
            return Ok(false);
        }
        let found = match &self.order {
            None => self.phys_find(&core, self.recno + 1..=count)?,
            Some(_) => {
                let i = self.order_index(&core)?;
                self.follow_record(&core, i)?;
                match &self.ikey {
                    None => self.index_first(&core, i)?,
                    Some(cur) => self.walk(&core, i, From::Key(cur, true), true)?,
                }
            }
        };
        self.bof = false;
        Ok(self.land(found, count, false))
    }

    /// Moves to the previous visible record; from the phantom record this is
    /// the last one. Before the first visible record sets bof and stands on the
    /// first visible record (xBase: a skip back past the top goes top); with no
    /// visible record at all, bof on the phantom record. Never sets eof.
    pub fn prev(&mut self) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        let core = shared.core.read();
        let count = self.visible_count(&core);
        let found = if !self.positioned {
            match &self.order {
                None => self.phys_find(&core, (1..=count).rev())?,
                Some(_) => {
                    let i = self.order_index(&core)?;
                    self.index_last(&core, i)?
                }
            }
        } else {
            match &self.order {
                None => self.phys_find(&core, (1..self.recno).rev())?,
                Some(_) => {
                    let i = self.order_index(&core)?;
                    self.follow_record(&core, i)?;
                    match &self.ikey {
                        None => None,
                        Some(cur) => self.walk(&core, i, From::Key(cur, true), false)?,
                    }
                }
            }
        };
        self.found = false;
        if let Some((k, r)) = found {
            let walked = self.walked.take();
            let ikey = self.order.as_ref().map(|_| k);
            self.set_on(r, ikey);
            self.hint = walked;
            return Ok(true);
        }
        // Nothing before: go top, with bof.
        let top = match &self.order {
            None => self.phys_find(&core, 1..=count)?,
            Some(_) => {
                let i = self.order_index(&core)?;
                self.index_first(&core, i)?
            }
        };
        self.land(top, count, false);
        self.bof = true;
        self.eof = false;
        Ok(false)
    }

    /// Moves `n` visible records forward (or back when negative); stops at eof or
    /// bof. Returns true when it lands on a record without reaching either.
    pub fn skip(&mut self, n: i64) -> Result<bool> {
        if n == 0 {
            // xBase SKIP 0: stays, re-reading the record; only found is cleared.
            self.found = false;
            if self.positioned {
                self.rekey()?;
            }
            return Ok(!self.bof && !self.eof);
        }
        for _ in 0..n.unsigned_abs() {
            let moved = if n > 0 { self.next()? } else { self.prev()? };
            if !moved {
                return Ok(false);
            }
        }
        Ok(!self.bof && !self.eof)
    }

    /// A seek, as DBFCDX does it: the raw position of the key (first key ≥
    /// it, or for a last-seek the last key ≤ it), then the nearest visible
    /// record in the seek's direction. Found when that record's key starts
    /// with the key; otherwise a soft seek stays there and an exact one goes
    /// to the phantom record. bof is always cleared.
    fn seek_with(&mut self, key: &[Value], mode: SeekMode) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        let core = shared.core.read();
        let count = self.visible_count(&core);
        let i = self.order_index(&core)?;
        let idx = &core.indexes[i];
        let k = idx.spec.seek_key(&core.name, key)?;
        let (last, soft) = match mode {
            SeekMode::Exact => (false, false),
            SeekMode::Soft => (false, true),
            SeekMode::Last => (true, false),
            SeekMode::LastSoft => (true, true),
        };
        let end = if last {
            prefix_end(idx, &k)
        } else {
            Vec::new()
        };
        let hit = if last {
            self.walk(&core, i, From::Key(&end, false), false)?
        } else {
            let start = match &self.scope.0 {
                Some(lo) if lo.as_slice() > k.as_slice() => lo.as_slice(),
                _ => k.as_slice(),
            };
            self.walk(&core, i, From::Key(start, false), true)?
        };
        let walked = self.walked.take();
        let hit = match hit {
            // A soft last-seek that found nothing visible at or before the
            // key: if the key's raw position is inside the scope (only hidden
            // records there), xBase goes top; before every key or past the
            // scope, eof.
            None if last && soft => {
                let raw = match self.tree_start(idx, From::Key(&end, false), false)? {
                    Some(p) => Some(idx.tree.entry(p)?.0),
                    None => None,
                };
                match raw {
                    Some(rk) if self.in_upper(&rk) => self.index_first(&core, i)?,
                    _ => None,
                }
            }
            other => other,
        };
        let exact = hit.as_ref().is_some_and(|(fk, _)| starts_with(fk, &k));
        match hit {
            Some((fk, r)) if exact || soft => {
                self.set_on(r, Some(fk));
                self.hint = walked;
            }
            _ => self.set_eof(count),
        }
        self.bof = false;
        self.found = exact;
        Ok(exact)
    }

    /// Seeks the first visible record whose key starts with `key` (leading segment
    /// values; the last may be a prefix of a Char segment, or of a Date segment
    /// given as `YYYYMMDD` text). Not found: eof, on the phantom record.
    pub fn seek(&mut self, key: &[Value]) -> Result<bool> {
        self.seek_with(key, SeekMode::Exact)
    }

    /// Soft seek (xBase SOFTSEEK): positions on the first visible key >= `key`,
    /// eof if none. Returns true only when that key starts with `key`.
    pub fn seek_soft(&mut self, key: &[Value]) -> Result<bool> {
        self.seek_with(key, SeekMode::Soft)
    }

    /// Seeks the last visible record whose key starts with `key`. Not found: eof.
    pub fn seek_last(&mut self, key: &[Value]) -> Result<bool> {
        self.seek_with(key, SeekMode::Last)
    }

    /// Soft last-seek (xBase `dbSeek(key, .T., .T.)`): the last visible record
    /// whose key starts with `key`; when none does, the last visible key before
    /// it (true only in the first case).
    pub fn seek_last_soft(&mut self, key: &[Value]) -> Result<bool> {
        self.seek_with(key, SeekMode::LastSoft)
    }

    fn range_bounds(
        &self,
        core: &TableCore,
        i: usize,
        lower: Option<&[Value]>,
        upper: Option<&[Value]>,
    ) -> Result<Bounds> {
        let spec = &core.indexes[i].spec;
        Ok((
            lower.map(|v| spec.seek_key(&core.name, v)).transpose()?,
            upper.map(|v| spec.seek_key(&core.name, v)).transpose()?,
        ))
    }

    /// Exact number of entries of the current index between `lower` and `upper`
    /// (partial keys, inclusive), not counting hidden deleted records. Reads no
    /// record unless deleted records are hidden in an index allowing duplicates.
    pub fn count_range(&self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<u64> {
        let core = self.shared.core.read();
        let i = self.order_index(&core)?;
        let (lo, hi) = self.range_bounds(&core, i, lower, upper)?;
        let idx = &core.indexes[i];
        let start = match &lo {
            Some(lo) => idx.tree.seek(lo)?,
            None => idx.tree.first()?,
        };
        let in_hi = |k: &[u8]| {
            hi.as_ref()
                .is_none_or(|h| &k[..h.len().min(k.len())] <= h.as_slice())
        };
        if !self.hide_deleted() {
            return idx.tree.count_from(start, in_hi);
        }
        let unique = idx.spec.def.unique;
        let mut n = 0;
        let mut pos = start;
        while let Some(p) = pos {
            let (k, r) = idx.tree.entry(p)?;
            if !in_hi(&k) {
                break;
            }
            let deleted = if unique {
                k[k.len() - 8..] != [0; 8]
            } else {
                core.status(r)? == SlotStatus::Deleted
            };
            n += u64::from(!deleted);
            pos = idx.tree.next(p)?;
        }
        Ok(n)
    }

    /// Estimated number of entries of the current index between `lower` and
    /// `upper`, from the tree's shape alone (a few page reads, whatever the range).
    pub fn estimate_range(&self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<u64> {
        let core = self.shared.core.read();
        let i = self.order_index(&core)?;
        let (lo, hi) = self.range_bounds(&core, i, lower, upper)?;
        let idx = &core.indexes[i];
        let a = match &lo {
            Some(lo) => idx.tree.rank_estimate(lo)?,
            None => 0.0,
        };
        let b = match &hi {
            Some(hi) => {
                let mut probe = hi.clone();
                probe.resize(idx.spec.key_len() + 8, 0xff);
                idx.tree.rank_estimate(&probe)?
            }
            None => 1.0,
        };
        Ok(((b - a).max(0.0) * idx.tree.state.entries as f64).round() as u64)
    }

    /// Iterates the visible records of the current index between `lower` and
    /// `upper` (partial keys, inclusive), in key order. The iterator has its own
    /// position; the handle does not move.
    pub fn range(&self, lower: Option<&[Value]>, upper: Option<&[Value]>) -> Result<RangeIter> {
        let core = self.shared.core.read();
        let i = self.order_index(&core)?;
        let (lo, hi) = self.range_bounds(&core, i, lower, upper)?;
        Ok(RangeIter {
            shared: self.shared.clone(),
            index: core.indexes[i].name().to_owned(),
            index_at: i,
            hide_deleted: self.hide_deleted(),
            done: false,
            walk: RangeWalk {
                lower: lo,
                upper: hi,
                keys: Vec::with_capacity(FIRST_FILL * (core.indexes[i].spec.key_len() + 8)),
                recnos: Vec::with_capacity(FIRST_FILL),
                ..RangeWalk::default()
            },
        })
    }
}

/// How many entries a fresh [`RangeIter`] reads from the index at first.
const FIRST_FILL: usize = 16;

/// Records of an index range, in key order (see [`Table::range`]).
///
/// The iterator reads the index a leaf at a time: the keys and recnos from
/// where it is to the leaf's end (or the range's), then each record as it
/// is asked for, prefetching the data pages of the records a few entries on
/// so that their reads overlap. The buffered entries are used only while
/// the index is unchanged since they were read (its tree version); after
/// any change the iterator seeks again after the last key it returned, so
/// it returns each entry the index holds in the range at most once, in key
/// order, with each record as committed when it is returned.
pub struct RangeIter {
    shared: TableHandle,
    index: String,
    /// Where the index was in the table's list when the iterator was made
    /// (checked against its name at each step).
    index_at: usize,
    hide_deleted: bool,
    done: bool,
    walk: RangeWalk,
}

/// Where a [`RangeIter`] is, and the entries it has read ahead.
#[derive(Debug, Default)]
struct RangeWalk {
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
    /// Entries read from the tree and not returned yet: their keys back to
    /// back (`key_len` bytes each) and their recnos; `at` is the next one.
    keys: Vec<u8>,
    recnos: Vec<u64>,
    key_len: usize,
    at: usize,
    /// The tree version the buffered entries were read at.
    version: u64,
    /// Where the walk goes on after the buffer (valid at `version`).
    resume: Option<Pos>,
    /// The buffer holds the range's last entries: nothing after it.
    ended: bool,
}

impl std::fmt::Debug for RangeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeIter")
            .field("index", &self.index)
            .field("done", &self.done)
            .finish()
    }
}

impl RangeIter {
    /// The key of the last record returned (None before the first).
    pub fn last_key(&self) -> Option<Vec<u8>> {
        self.walk.last.clone()
    }

    /// Goes on after `key` (None: from the start of the range), as if the
    /// last record returned had that key: a server puts an iterator back
    /// where its client's application is after the client read ahead.
    pub fn restart_after(&mut self, key: Option<Vec<u8>>) {
        self.walk.last = key;
        self.done = false;
        self.walk.clear_buffer();
    }

    fn step(&mut self) -> Result<Option<Record>> {
        let core = self.shared.core.read();
        let i = match core.indexes.get(self.index_at) {
            Some(x) if x.name() == self.index => self.index_at,
            _ => core.index_pos(&self.index)?,
        };
        let tree = &core.indexes[i].tree;
        let w = &mut self.walk;
        loop {
            if w.at == w.recnos.len() || w.version != tree.version() {
                w.fill(tree)?;
                if w.recnos.is_empty() {
                    return Ok(None);
                }
                // Every entry lookup first, so their misses overlap.
                for &r in w.recnos.iter().take(AHEAD).skip(1) {
                    core.prefetch_entry(r);
                }
                for &r in w.recnos.iter().take(AHEAD / 2).skip(1) {
                    core.prefetch(r);
                }
            }
            let at = w.at;
            w.at += 1;
            if let Some(&r) = w.recnos.get(at + AHEAD - 1) {
                core.prefetch_entry(r);
            }
            if let Some(&r) = w.recnos.get(at + AHEAD / 2 - 1) {
                core.prefetch(r);
            }
            let key = &w.keys[at * w.key_len..(at + 1) * w.key_len];
            let last = w.last.get_or_insert_with(Vec::new);
            last.clear();
            last.extend_from_slice(key);
            let rec = core.read(w.recnos[at])?;
            if !(self.hide_deleted && rec.is_deleted()) {
                return Ok(Some(rec));
            }
        }
    }
}

impl RangeWalk {
    fn clear_buffer(&mut self) {
        self.keys.clear();
        self.recnos.clear();
        self.at = 0;
        self.resume = None;
        self.ended = false;
    }

    /// Reads the next entries into the buffer: from where the last buffer
    /// ended if the tree is unchanged, else after the last key returned.
    /// Leaves it empty at the end of the range.
    fn fill(&mut self, tree: &crate::index::BTree) -> Result<()> {
        let same = self.version == tree.version() && !self.recnos.is_empty();
        let resume = if same { self.resume } else { None };
        if same && self.ended {
            self.clear_buffer();
            self.ended = true;
            return Ok(());
        }
        self.clear_buffer();
        let start = match (resume, &self.last, &self.lower) {
            (Some(p), _, _) => Some(p),
            (None, Some(last), _) => {
                let mut p = tree.seek(last)?;
                if let Some(q) = p {
                    if tree.entry(q)?.0 == *last {
                        p = tree.next(q)?;
                    }
                }
                p
            }
            (None, None, Some(lo)) => tree.seek(lo)?,
            (None, None, None) => tree.first()?,
        };
        self.version = tree.version();
        let Some(start) = start else {
            self.ended = true;
            return Ok(());
        };
        // A fresh iterator reads few entries first: it may be taken for a
        // handful of records (a seek and the next few); then whole leaves.
        let limit = if self.last.is_none() && resume.is_none() {
            FIRST_FILL
        } else {
            usize::MAX
        };
        let upper = self.upper.as_deref();
        let (keys, recnos) = (&mut self.keys, &mut self.recnos);
        let mut key_len = 0;
        let mut past_upper = false;
        let next = tree.leaf_entries(start, |k, r| {
            if recnos.len() == limit {
                return false;
            }
            if let Some(hi) = upper {
                if &k[..hi.len().min(k.len())] > hi {
                    past_upper = true;
                    return false;
                }
            }
            key_len = k.len();
            keys.extend_from_slice(k);
            recnos.push(r);
            true
        })?;
        self.key_len = key_len;
        self.resume = next;
        self.ended = past_upper || next.is_none();
        Ok(())
    }
}

impl Iterator for RangeIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
