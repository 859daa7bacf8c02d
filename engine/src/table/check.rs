//! `check`: reads every record (memos and variable bodies included), verifies
//! the counters, every index against the records, and the free lists of the
//! blob and index files. It changes nothing.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::index::describe_key;
use crate::record::{SlotStatus, VAR_SLOT_BODY};
use crate::schema::{FieldType, Memo, RecordFormat, Value};

use super::core::{var_slot, TableCore};

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// Records read.
    pub records: u64,
    /// Indexes checked.
    pub indexes: usize,
    /// Problems, each naming the file, page, record or key concerned (at most
    /// the limit asked for).
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl TableCore {
    /// Checks every record and index; stops collecting after `limit` problems.
    pub fn check(&self, limit: usize) -> Result<CheckReport> {
        let mut report = CheckReport {
            records: self.body.record_count,
            indexes: self.indexes.len(),
            problems: Vec::new(),
        };
        let full = |r: &CheckReport| r.problems.len() >= limit;
        let mut deleted = 0;
        let mut blobs = HashSet::new();
        for r in 1..=self.body.record_count {
            match self.read(r) {
                Ok(rec) => {
                    deleted += u64::from(rec.is_deleted());
                    self.check_blobs(&rec, &mut blobs, &mut report.problems)?;
                }
                // A recno reserved by a transaction still open: filled at its end.
                Err(Error::NoSuchRecord { .. }) if self.reserved.is_open(r) => {}
                Err(e) => report.problems.push(format!("record {r}: {e}")),
            }
            if full(&report) {
                report.problems.truncate(limit);
                return Ok(report);
            }
        }
        if deleted != self.body.deleted_count && report.problems.is_empty() {
            report.problems.push(format!(
                "{}: header counts {} deleted records, the slots hold {deleted}",
                self.data.path().display(),
                self.body.deleted_count
            ));
        }
        self.check_beyond_count(&mut report.problems)?;
        if let Some(store) = &self.blobs {
            let left = limit.saturating_sub(report.problems.len());
            report.problems.extend(store.audit(&blobs, left));
        }
        for i in 0..self.indexes.len() {
            if full(&report) {
                break;
            }
            let left = limit.saturating_sub(report.problems.len());
            report.problems.extend(self.check_index(i, left)?);
        }
        report.problems.truncate(limit);
        Ok(report)
    }

    /// Reads every memo of `rec` and notes the blobs the record holds.
    fn check_blobs(
        &self,
        rec: &crate::Record,
        blobs: &mut HashSet<u64>,
        problems: &mut Vec<String>,
    ) -> Result<()> {
        let recno = rec.recno();
        if self.body.format == RecordFormat::Variable {
            let (_, slot) = self.slots.read(&self.data, recno)?;
            if slot.len() >= VAR_SLOT_BODY {
                blobs.insert(var_slot(&slot).0);
            }
        }
        for (i, f) in self.schema.fields().iter().enumerate() {
            if f.ty != FieldType::Memo {
                continue;
            }
            if let Value::Memo(Memo::Stored(m)) = &rec.values()[i] {
                match self.memo_of(rec, i) {
                    Ok(_) => {
                        blobs.insert(m.blob);
                    }
                    Err(e) => problems.push(format!("record {recno}, memo {}: {e}", f.name)),
                }
            }
        }
        Ok(())
    }

    /// Slots past the record count must be empty.
    fn check_beyond_count(&self, problems: &mut Vec<String>) -> Result<()> {
        let capacity = self.slots.capacity(&self.data);
        for recno in self.body.record_count + 1..=capacity {
            match self.slots.status(&self.data, recno) {
                Ok(SlotStatus::Empty) => {}
                Ok(_) => {
                    problems.push(format!(
                        "{}: slot {recno} holds a record past the record count {}",
                        self.data.path().display(),
                        self.body.record_count
                    ));
                    return Ok(());
                }
                Err(e) => {
                    problems.push(format!("slot {recno}: {e}"));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Checks one index: its tree's invariants, then exactly one entry per record
    /// it admits, each pointing to a record with that key.
    pub(super) fn check_index(&self, i: usize, limit: usize) -> Result<Vec<String>> {
        let idx = &self.indexes[i];
        let file = idx.path();
        let name = idx.name();
        let mut problems = Vec::new();
        let entries = match idx.tree.verify() {
            Ok(e) => e,
            Err(msg) => return Ok(vec![format!("index {name} ({}): {msg}", file.display())]),
        };
        let mut expected = Vec::new();
        for r in 1..=self.body.record_count {
            if let Ok(rec) = self.read(r) {
                if let Some(k) = idx.entry_key(rec.values(), r, rec.is_deleted()) {
                    expected.push((k, r));
                }
            }
        }
        expected.sort_unstable();
        let (mut a, mut b) = (0, 0);
        while (a < entries.len() || b < expected.len()) && problems.len() < limit {
            match (entries.get(a), expected.get(b)) {
                (Some(got), Some(want)) if got.0 == want.0 => {
                    if got.1 != want.1 {
                        problems.push(format!(
                            "index {name} ({}): key {} points to record {}, expected {}",
                            file.display(),
                            describe_key(&got.0),
                            got.1,
                            want.1
                        ));
                    }
                    a += 1;
                    b += 1;
                }
                (Some(got), w) if w.is_none_or(|want| got.0 < want.0) => {
                    problems.push(format!(
                        "index {name} ({}): entry {} for record {} matches no record",
                        file.display(),
                        describe_key(&got.0),
                        got.1
                    ));
                    a += 1;
                }
                (_, Some(want)) => {
                    problems.push(format!(
                        "index {name} ({}): no entry for record {} (key {})",
                        file.display(),
                        want.1,
                        describe_key(&want.0)
                    ));
                    b += 1;
                }
                _ => break,
            }
        }
        Ok(problems)
    }
}
