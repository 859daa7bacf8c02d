//! The verification after an unclean close (an unlogged table after a crash, or
//! a table whose newest header copy was damaged).
//!
//! Nothing on disk can be trusted but what reads back with a good checksum and
//! a matching owner: pages may have reached the disk in any order. What it
//! guarantees afterwards: the table opens, every record that reads back is
//! kept, and `check` passes —
//! - a data page that cannot be read is formatted anew, its slots lost;
//! - the record count is the highest slot holding a record, and never less
//!   than the count the header had (records are never removed but by pack),
//!   so no recno is handed out twice;
//! - an empty slot below it (lost in the crash, or reserved by a transaction
//!   the crash ended) and a record that cannot be read back in full (a
//!   damaged body or memo, a blob reference left dangling) become deleted
//!   blank records, as a rollback makes them: no record shows a state that
//!   was never written (`rebuild`, run by hand, keeps what it can of such a
//!   record instead);
//! - the blob file's free list is rebuilt from the blobs the records refer
//!   to, so no page is both free and in use and none is lost;
//! - the caller then rebuilds every index from the records.

use std::collections::HashSet;

use crate::error::Result;
use crate::record::{SlotStatus, FIRST_RECORD_PAGE};
use crate::schema::{FieldType, Memo, RecordFormat, Value};

use super::core::{var_slot, OpenReport, TableCore};

impl TableCore {
    /// Repairs the table after an unclean close (see the module docs).
    pub(super) fn verify(&mut self, report: &mut OpenReport) -> Result<()> {
        tracing::warn!(table = %self.name, "table was not closed cleanly; verifying");
        report.verified = true;
        self.body.stats.unclean_opens += 1;
        self.marked_dirty = true;
        let (statuses, damaged) = self.slot_statuses()?;
        report.damaged_pages = damaged;
        let highest = statuses
            .iter()
            .rposition(|s| *s != SlotStatus::Empty)
            .map_or(0, |i| i as u64 + 1);
        let last = highest.max(self.body.record_count.min(statuses.len() as u64));
        self.body.record_count = last;
        let mut blanks = Vec::new();
        let mut blobs = HashSet::new();
        for recno in 1..=last {
            if statuses[recno as usize - 1] == SlotStatus::Empty {
                report.lost_slots += 1;
                blanks.push(recno);
            } else if !self.salvage(recno, &mut blobs)? {
                report.unreadable += 1;
                blanks.push(recno);
            }
        }
        if let Some(store) = &self.blobs {
            let freed = store.rebuild_allocation(&blobs)?;
            tracing::info!(table = %self.name, freed, "blob free list rebuilt");
        }
        for recno in blanks {
            let blank = self.schema.empty_record();
            let slot = self.store_body(recno, &blank)?;
            self.slots
                .write(&self.data, recno, SlotStatus::Deleted, &slot)?;
        }
        if report.lost_slots > 0 {
            tracing::warn!(table = %self.name, lost = report.lost_slots, "record slots lost in a crash restored as deleted blank records");
        }
        self.body.stats.lost_slots_restored += report.lost_slots;
        self.recount()?;
        self.body.sync_stamp += 1;
        tracing::info!(table = %self.name, records = last, deleted = self.body.deleted_count,
            unreadable = report.unreadable,
            damaged_pages = report.damaged_pages, "verification done");
        Ok(())
    }

    /// The status of every slot the file has room for; a data page that cannot
    /// be read is formatted anew (its slots empty). Returns the statuses and
    /// the number of pages formatted.
    fn slot_statuses(&mut self) -> Result<(Vec<SlotStatus>, u64)> {
        let capacity = self.slots.capacity(&self.data);
        let mut statuses = Vec::with_capacity(capacity as usize);
        let mut damaged = 0;
        let mut recno = 1;
        while recno <= capacity {
            match self.slots.status(&self.data, recno) {
                Ok(s) => {
                    statuses.push(s);
                    recno += 1;
                }
                Err(e) => {
                    let (page, _) = self.slots.locate(recno);
                    tracing::error!(table = %self.name, page, error = %e, "data page unreadable after a crash; its records are lost");
                    self.slots.reset_page(&self.data, page)?;
                    damaged += 1;
                    let end = (page - FIRST_RECORD_PAGE + 1) * self.slots.per_page;
                    while recno <= end.min(capacity) {
                        statuses.push(SlotStatus::Empty);
                        recno += 1;
                    }
                }
            }
        }
        Ok((statuses, damaged))
    }

    /// Reads record `recno` back in full, memos included: true when it does,
    /// noting the blobs it holds in `blobs`.
    fn salvage(&self, recno: u64, blobs: &mut HashSet<u64>) -> Result<bool> {
        let unreadable = |e: crate::Error| -> Result<bool> {
            if e.is_corruption() {
                tracing::error!(table = %self.name, recno, error = %e, "record unreadable after a crash; kept as a deleted blank record");
                Ok(false)
            } else {
                Err(e)
            }
        };
        let rec = match self.read(recno) {
            Ok(rec) => rec,
            Err(e) => return unreadable(e),
        };
        let mut held = Vec::new();
        if self.body.format == RecordFormat::Variable {
            held.push(var_slot(&self.slots.read(&self.data, recno)?.1).0);
        }
        for (i, f) in self.schema.fields().iter().enumerate() {
            if f.ty != FieldType::Memo {
                continue;
            }
            if let Value::Memo(Memo::Stored(m)) = rec.values()[i] {
                if let Err(e) = self.memo_of(&rec, i) {
                    return unreadable(e);
                }
                held.push(m.blob);
            }
        }
        blobs.extend(held);
        Ok(true)
    }

    /// Recounts deleted records and the next serial number from the slots.
    fn recount(&mut self) -> Result<()> {
        let mut deleted = 0;
        let mut serial_next = self.body.serial.map_or(1, |s| s.next);
        let want_serial = self.body.serial.is_some();
        for recno in 1..=self.body.record_count {
            if self.slots.status(&self.data, recno)? == SlotStatus::Deleted {
                deleted += 1;
            }
            if let (true, Some(s)) = (want_serial, self.body.serial) {
                let rec = self.read(recno)?;
                if let Value::Int64(v) = rec.values()[usize::from(s.field)] {
                    serial_next = serial_next.max(v.max(0) as u64 + 1);
                }
            }
        }
        self.body.deleted_count = deleted;
        if let Some(s) = &mut self.body.serial {
            s.next = serial_next;
        }
        Ok(())
    }
}
