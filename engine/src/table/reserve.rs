//! Recnos reserved by open transactions.
//!
//! An append inside a transaction takes its recno at once (xBase code reads
//! `recno()` right after an append) and stores the record at commit; a rollback
//! stores a deleted blank record there instead, so recnos are dense and never
//! reused. Meanwhile other sessions may commit higher recnos, so the slot of an
//! open reservation can be an empty slot below `record_count`.
//!
//! Invariants:
//! - Every recno up to `max(record_count, high)` is either committed (its slot
//!   holds a live or deleted record) or in `open`.
//! - [`Reservations::filled_to`] is below every open reservation, so every
//!   slot up to it holds a record. Headers and logged counters carry it; after a
//!   crash (which ends every transaction) the empty slots above it become
//!   deleted blank records when the table is next opened.
//! - An *orphan* is an open reservation whose transaction has ended (rolled
//!   back, or its commit failed) but whose deleted blank record could not be
//!   stored (a full disk, a failed log write). Readers see it as the deleted
//!   blank record it is (`TableCore::view`), and the next commit on the table
//!   stores it before its own changes (`txn::commit`). Until then it stays
//!   open, so `filled_to` stays below it.

use std::collections::BTreeSet;

/// Recnos reserved by open transactions on one table.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    /// Highest recno ever reserved while the table has been open.
    high: u64,
    /// Reserved and not yet stored by a commit.
    open: BTreeSet<u64>,
    /// Settled by the commit under way, and whether each was an orphan (put
    /// back if it fails).
    settled: Vec<(u64, bool)>,
    /// Open reservations no transaction owns any more (see the module doc);
    /// always a subset of `open`.
    orphans: BTreeSet<u64>,
}

impl Reservations {
    /// The recno the next append takes.
    pub fn next(&self, record_count: u64) -> u64 {
        record_count.max(self.high) + 1
    }

    /// Reserves the next recno.
    pub fn reserve(&mut self, record_count: u64) -> u64 {
        let r = self.next(record_count);
        self.high = r;
        self.open.insert(r);
        r
    }

    /// True while `recno` is reserved and not yet stored.
    pub fn is_open(&self, recno: u64) -> bool {
        self.open.contains(&recno)
    }

    /// `recno` was stored (its append or its blank) by the commit under way.
    pub fn settle(&mut self, recno: u64) {
        if self.open.remove(&recno) {
            let orphan = self.orphans.remove(&recno);
            self.settled.push((recno, orphan));
        }
    }

    /// A commit starts.
    pub fn begin(&mut self) {
        self.settled.clear();
    }

    /// The transaction that reserved `recno` ended without storing it: it is a
    /// deleted blank record from now on, stored by the table's next commit.
    pub fn orphan(&mut self, recno: u64) {
        if self.open.contains(&recno) {
            self.orphans.insert(recno);
        }
    }

    /// True when `recno` is an orphan (reads see a deleted blank record).
    pub fn is_orphan(&self, recno: u64) -> bool {
        self.orphans.contains(&recno)
    }

    /// The orphans, in recno order.
    pub fn orphans(&self) -> Vec<u64> {
        self.orphans.iter().copied().collect()
    }

    /// How many orphans there are.
    pub fn orphan_count(&self) -> u64 {
        self.orphans.len() as u64
    }

    /// The highest orphan (0 when there is none).
    pub fn orphan_high(&self) -> u64 {
        self.orphans.last().copied().unwrap_or(0)
    }

    /// The commit under way failed: its reservations are open again.
    pub fn undo(&mut self) {
        for (recno, orphan) in self.settled.drain(..) {
            self.open.insert(recno);
            if orphan {
                self.orphans.insert(recno);
            }
        }
    }

    /// Every recno up to this one holds a record.
    pub fn filled_to(&self, record_count: u64) -> u64 {
        match self.open.first() {
            Some(&first) => record_count.min(first - 1),
            None => record_count,
        }
    }
}

impl super::TableCore {
    /// Empty slots at or below the record count, where the header allows them
    /// (above `filled_to`): recnos whose transactions a crash ended. Filling
    /// them with deleted blank records is the caller's (a logged commit).
    pub(crate) fn unfilled(&self) -> crate::Result<Vec<u64>> {
        let mut out = Vec::new();
        for recno in self.body.filled_to + 1..=self.body.record_count {
            if self.slots.status(&self.data, recno)? == crate::record::SlotStatus::Empty {
                out.push(recno);
            }
        }
        Ok(out)
    }

    /// True when `recno` holds a stored record (live or deleted).
    pub fn is_stored(&self, recno: u64) -> crate::Result<bool> {
        Ok(recno >= 1
            && recno <= self.body.record_count
            && self.slots.status(&self.data, recno)? != crate::record::SlotStatus::Empty)
    }

    /// Ends every reservation (a cluster's new term: no transaction of the
    /// last one can store them any more). Returns the recnos reserved at or
    /// below the record count and not stored, which the caller stores as
    /// deleted blank records; those above it are forgotten, so the next
    /// append takes the recno after the last stored record.
    pub fn forget_reservations(&mut self) -> Vec<u64> {
        let count = self.body.record_count;
        let gaps: Vec<u64> = self.reserved.open.range(..=count).copied().collect();
        self.reserved = Reservations {
            high: count,
            open: gaps.iter().copied().collect(),
            ..Reservations::default()
        };
        gaps
    }

    /// Reserves every recno up to `recno` not reserved yet: a change that
    /// another database's session appended there (a cluster member applying
    /// the group's entries).
    pub(crate) fn reserve_through(&mut self, recno: u64) {
        while self.next_recno() <= recno {
            self.reserve_recno();
        }
    }

    /// Records in the header that every slot holds a record (after
    /// [`Self::unfilled`] found none empty).
    pub(crate) fn mark_filled(&mut self) -> crate::Result<()> {
        if self.body.filled_to < self.body.record_count {
            self.persist_header()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_to_stays_below_the_oldest_open_reservation() {
        let mut r = Reservations::default();
        assert_eq!(r.filled_to(10), 10);
        let a = r.reserve(10);
        assert_eq!(a, 11);
        assert_eq!(r.filled_to(10), 10);
        // Another session commits 12 past the open 11.
        assert_eq!(r.next(10), 12);
        assert_eq!(r.filled_to(12), 10);
        r.begin();
        r.settle(a);
        assert_eq!(r.filled_to(12), 12);
        r.undo();
        assert!(r.is_open(a));
        assert_eq!(r.filled_to(12), 10);
    }

    #[test]
    fn an_orphan_stays_open_until_a_commit_stores_it_and_comes_back_if_that_fails() {
        let mut r = Reservations::default();
        let a = r.reserve(0);
        let b = r.reserve(0);
        r.orphan(b);
        r.orphan(99); // never reserved: not an orphan
        assert!(r.is_orphan(b) && !r.is_orphan(a) && !r.is_orphan(99));
        assert_eq!((r.orphans(), r.orphan_high()), (vec![b], b));
        assert_eq!(r.filled_to(0), 0);
        // A commit stores it, then fails: an orphan again.
        r.begin();
        r.settle(b);
        assert!(!r.is_orphan(b));
        r.undo();
        assert!(r.is_orphan(b));
        // A commit stores it for good.
        r.begin();
        r.settle(b);
        r.begin();
        assert_eq!((r.orphans(), r.orphan_high()), (vec![], 0));
        assert!(r.is_open(a));
    }
}
