//! Record writes: append, update, delete and recall, with every index maintained
//! in the same step.
//!
//! Order of a write (so that an error leaves record and indexes as they were):
//! 1. check the values and every unique index (nothing changed yet);
//! 2. reserve what may need new space: the record's page, index pages for splits
//!    (a full disk fails here, still before any change);
//! 3. write new blobs (memos, a variable body) — freed again on failure;
//! 4. change the index entries — undone on failure;
//! 5. write the record's slot.
//!
//! Blobs an update replaced: in a logged table they are freed in the same
//! commit (the log makes the new slot and the freed space durable together, so
//! every change to the blob free list is part of the commit that caused it); in
//! an unlogged table they are retired, not freed, until the data file's new
//! slots are synced (see `BlobStore::retire`).

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::index::describe_key;
use crate::record::{SlotStatus, VAR_SLOT_BODY};
use crate::schema::{check_value, FieldType, Memo, MemoRef, RecordFormat, Value, MAX_VAR_RECORD};

use super::core::{var_slot, TableCore};

/// One index change, for undo.
enum Done {
    Inserted(usize, Vec<u8>),
    Removed(usize, Vec<u8>, u64),
}

impl TableCore {
    /// Checks a whole record's values.
    pub(crate) fn check_values(&self, values: &[Value]) -> Result<()> {
        if values.len() != self.schema.len() {
            return Err(Error::FieldCount {
                table: self.name.clone(),
                expected: self.schema.len(),
                found: values.len(),
            });
        }
        for (f, v) in self.schema.fields().iter().zip(values) {
            check_value(&self.name, f, v)?;
        }
        Ok(())
    }

    /// Checks a record's values and puts them in their stored form (what a
    /// transaction keeps until its commit).
    pub(crate) fn check_and_normalize(&self, values: &mut [Value]) -> Result<()> {
        self.check_values(values)?;
        self.codec.normalize(values);
        Ok(())
    }

    /// Each index's full key for a record (None where its condition excludes it).
    fn keys(&self, values: &[Value], recno: u64, deleted: bool) -> Vec<Option<Vec<u8>>> {
        self.indexes
            .iter()
            .map(|i| i.entry_key(values, recno, deleted))
            .collect()
    }

    /// Refuses `new` keys that a live record other than `me` holds in a unique index.
    fn check_unique(&self, new: &[Option<Vec<u8>>], values: &[Value], me: u64) -> Result<()> {
        for (i, k) in new.iter().enumerate() {
            let idx = &self.indexes[i];
            let Some(k) = k else { continue };
            if !idx.spec.def.unique || k[k.len() - 8..] != [0; 8] {
                continue;
            }
            if let Some(owner) = idx.tree.get(k)? {
                if owner != me {
                    return Err(Error::DuplicateKey {
                        table: self.name.clone(),
                        index: idx.name().to_owned(),
                        key: self.describe(i, values, k),
                        recno: owner,
                    });
                }
            }
        }
        Ok(())
    }

    /// The error for `values` taking key `k` of unique index `i`, which
    /// record `owner` holds.
    pub(crate) fn duplicate(&self, i: usize, values: &[Value], k: &[u8], owner: u64) -> Error {
        Error::DuplicateKey {
            table: self.name.clone(),
            index: self.indexes[i].name().to_owned(),
            key: self.describe(i, values, k),
            recno: owner,
        }
    }

    /// A key printed as its segment values, `FIELD=value, …`.
    fn describe(&self, i: usize, values: &[Value], k: &[u8]) -> String {
        let segs = &self.indexes[i].spec.def.segments;
        let parts: Vec<String> = segs
            .iter()
            .filter_map(|s| {
                self.schema
                    .position(&s.field)
                    .map(|p| format!("{}={}", s.field, values[p]))
            })
            .collect();
        if parts.is_empty() {
            describe_key(k)
        } else {
            parts.join(", ")
        }
    }

    fn reserve_indexes(&mut self) -> Result<()> {
        for i in &mut self.indexes {
            let n = i.tree.insert_reserve();
            i.tree.reserve(n)?;
        }
        Ok(())
    }

    /// Moves every index from `old` keys to `new` keys for `recno`; on error the
    /// changes made so far are undone.
    fn apply_keys(
        &mut self,
        old: &[Option<Vec<u8>>],
        new: &[Option<Vec<u8>>],
        recno: u64,
        values: &[Value],
    ) -> Result<()> {
        let mut done = Vec::new();
        let result = (|| {
            for i in 0..self.indexes.len() {
                if old[i] == new[i] {
                    continue;
                }
                // A key that stays between its neighbours (a deleted record's
                // unique key taking its recno as suffix) changes in place.
                // The new key then cannot be held elsewhere: no check needed.
                if let (Some(o), Some(n)) = (&old[i], &new[i]) {
                    if let Some(v) = self.indexes[i].tree.rekey_in_place(o, n)? {
                        done.push(Done::Removed(i, o.clone(), v));
                        done.push(Done::Inserted(i, n.clone()));
                        continue;
                    }
                }
                if let Some(k) = &old[i] {
                    if let Some(v) = self.indexes[i].tree.remove(k)? {
                        done.push(Done::Removed(i, k.clone(), v));
                    }
                }
                if let Some(k) = &new[i] {
                    // A unique key (zero suffix) is checked by its insertion:
                    // one descent. Its holder, if another record, is the
                    // error; any other full key present twice is damage,
                    // which `insert` reports.
                    let unique = self.indexes[i].spec.def.unique && k[k.len() - 8..] == [0; 8];
                    let tree = &mut self.indexes[i].tree;
                    match if unique {
                        tree.insert_new(k, recno)?
                    } else {
                        None
                    } {
                        Some(owner) if owner != recno => {
                            return Err(self.duplicate(i, values, k, owner));
                        }
                        Some(_) => tree.insert(k, recno)?,
                        None if !unique => tree.insert(k, recno)?,
                        None => {}
                    }
                    done.push(Done::Inserted(i, k.clone()));
                }
            }
            Ok(())
        })();
        if result.is_err() {
            self.undo(done);
        }
        result
    }

    fn undo(&mut self, done: Vec<Done>) {
        for d in done.into_iter().rev() {
            let r = match d {
                Done::Inserted(i, k) => self.indexes[i].tree.remove(&k).map(|_| ()),
                Done::Removed(i, k, v) => self.indexes[i].tree.insert(&k, v),
            };
            if let Err(e) = r {
                tracing::error!(table = %self.name, error = %e, "could not undo an index change; run `raiz rebuild`");
            }
        }
    }

    fn put_blob(&self, recno: u64, field: Option<u16>, payload: &[u8]) -> Result<u64> {
        let mut bytes = Vec::with_capacity(payload.len() + 14);
        bytes.extend_from_slice(&recno.to_le_bytes());
        if let Some(f) = field {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        self.blobs()?.put(&bytes)
    }

    /// Stores new memos of `values` for `recno`; `old` are the record's current
    /// values (for an update). Returns the values with memos resolved, the blobs
    /// written (to free on failure) and the blobs replaced (to retire on success).
    /// The values are copied only when a memo changes (a record's values are
    /// otherwise stored as given).
    #[allow(clippy::type_complexity)]
    fn resolve_memos<'v>(
        &self,
        recno: u64,
        values: &'v [Value],
        old: Option<&[Value]>,
    ) -> Result<(Cow<'v, [Value]>, Vec<u64>, Vec<u64>)> {
        let mut out = Cow::Borrowed(values);
        let mut written = Vec::new();
        let mut replaced = Vec::new();
        for (i, f) in self.schema.fields().iter().enumerate() {
            if f.ty != FieldType::Memo {
                continue;
            }
            let current = match old.map(|o| &o[i]) {
                Some(Value::Memo(Memo::Stored(r))) => Some(*r),
                _ => None,
            };
            let new = match &values[i] {
                Value::Memo(Memo::Stored(r)) if Some(*r) == current => continue,
                Value::Memo(Memo::Stored(_)) => {
                    self.free_all(&written);
                    return Err(Error::InvalidValue {
                        table: self.name.clone(),
                        field: f.name.clone(),
                        value: values[i].to_string(),
                        reason: "a stored memo reference can only keep this record's own memo; pass Memo::Data to copy content".into(),
                    });
                }
                Value::Memo(Memo::Data(d)) if !d.is_empty() => {
                    match self.put_blob(recno, Some(i as u16), d) {
                        Ok(blob) => {
                            written.push(blob);
                            Value::Memo(Memo::Stored(MemoRef {
                                blob,
                                len: d.len() as u32,
                            }))
                        }
                        Err(e) => {
                            self.free_all(&written);
                            return Err(e);
                        }
                    }
                }
                _ => Value::Memo(Memo::Empty),
            };
            if let Some(r) = current {
                replaced.push(r.blob);
            }
            out.to_mut()[i] = new;
        }
        Ok((out, written, replaced))
    }

    /// Gives back the blobs an update replaced: freed now in a logged table
    /// (inside the commit, which the caller undoes whole if this fails);
    /// retired until the next sync of the data file in an unlogged one.
    fn replaced(&self, blobs: &[u64]) -> Result<()> {
        let Some(store) = &self.blobs else {
            return Ok(());
        };
        let logged = self.is_logged() && self.env_has_wal();
        for &b in blobs {
            if logged {
                match store.free(b) {
                    Ok(()) => {}
                    // The old value was unreadable already: its space leaks
                    // (until rebuild) rather than the update being refused.
                    Err(e) if e.is_corruption() => {
                        tracing::warn!(table = %self.name, blob = b, error = %e, "replaced blob is damaged; not freed");
                    }
                    Err(e) => return Err(e),
                }
            } else {
                store.retire(b);
            }
        }
        Ok(())
    }

    /// Frees blobs nothing durable points to (a failed write's new blobs).
    fn free_all(&self, blobs: &[u64]) {
        if let Some(store) = &self.blobs {
            for &b in blobs {
                if let Err(e) = store.free(b) {
                    tracing::warn!(table = %self.name, blob = b, error = %e, "could not free blob; space leaks until pack");
                }
            }
        }
    }

    /// Encodes `values` into a slot body, storing a variable record's body blob.
    pub(super) fn store_body(&self, recno: u64, values: &[Value]) -> Result<Vec<u8>> {
        let mut enc = Vec::with_capacity(self.codec.fixed_len());
        self.codec.encode(values, &mut enc);
        match self.body.format {
            RecordFormat::Fixed => Ok(enc),
            RecordFormat::Variable => {
                if enc.len() > MAX_VAR_RECORD {
                    return Err(Error::RecordTooLarge {
                        table: self.name.clone(),
                        len: enc.len(),
                        limit: MAX_VAR_RECORD,
                    });
                }
                let blob = self.put_blob(recno, None, &enc)?;
                let mut slot = Vec::with_capacity(VAR_SLOT_BODY);
                slot.extend_from_slice(&blob.to_le_bytes());
                slot.extend_from_slice(&(enc.len() as u32).to_le_bytes());
                Ok(slot)
            }
        }
    }

    fn free_body(&self, slot: &[u8]) {
        if self.body.format == RecordFormat::Variable {
            self.free_all(&[var_slot(slot).0]);
        }
    }

    /// The recno the next append takes.
    pub fn next_recno(&self) -> u64 {
        self.reserved.next(self.body.record_count)
    }

    /// Reserves a recno for a transaction's append (filled at its commit).
    pub fn reserve_recno(&mut self) -> u64 {
        self.reserved.reserve(self.body.record_count)
    }

    /// Appends a record; returns its recno. A serial field is filled by the engine.
    pub fn append(&mut self, values: &[Value]) -> Result<u64> {
        let recno = self.next_recno();
        let mut values = values.to_vec();
        self.assign_serial(&mut values);
        self.append_at(recno, &values, false)?;
        Ok(recno)
    }

    /// The position of the serial field, if the table has one.
    pub fn serial_field(&self) -> Option<usize> {
        self.body.serial.map(|s| usize::from(s.field))
    }

    /// Fills the serial field of `values` with the next number (never handed
    /// out again, even if the append is rolled back).
    pub fn assign_serial(&mut self, values: &mut [Value]) {
        if let Some(s) = &mut self.body.serial {
            values[usize::from(s.field)] = Value::Int64(s.next as i64);
            s.next += 1;
        }
    }

    /// Stores a new record at `recno` (the next one, or one reserved earlier),
    /// live or already deleted, with its serial field as given (see
    /// [`TableCore::assign_serial`]; a blank record keeps 0).
    pub fn append_at(&mut self, recno: u64, values: &[Value], deleted: bool) -> Result<()> {
        self.check_values(values)?;
        if recno == 0 || recno > self.next_recno() {
            return Err(self.no_such(recno));
        }
        if recno <= self.body.record_count
            && self.slots.status(&self.data, recno)? != SlotStatus::Empty
        {
            return Err(self.corrupt(recno, "a new record's recno is already taken"));
        }
        // Unique keys are checked as they are inserted (`apply_keys`).
        let keys = self.keys(values, recno, deleted);
        self.mark_dirty()?;
        self.slots.ensure_page(&self.data, recno)?;
        if !self.deferring() {
            self.reserve_indexes()?;
        }
        let (resolved, written, _) = self.resolve_memos(recno, values, None)?;
        let slot = match self.store_body(recno, &resolved) {
            Ok(s) => s,
            Err(e) => {
                self.free_all(&written);
                return Err(e);
            }
        };
        // A commit that defers its entries takes them once the slot is in
        // (`table::bulk`); otherwise they go in now, undone on failure.
        let deferring = self.deferring();
        let none = if deferring {
            Vec::new()
        } else {
            vec![None; keys.len()]
        };
        if !deferring {
            if let Err(e) = self.apply_keys(&none, &keys, recno, values) {
                self.free_body(&slot);
                self.free_all(&written);
                return Err(e);
            }
        }
        let status = if deleted {
            SlotStatus::Deleted
        } else {
            SlotStatus::Live
        };
        if let Err(e) = self.slots.write(&self.data, recno, status, &slot) {
            if !deferring {
                let _ = self.apply_keys(&keys, &none, recno, values);
            }
            self.free_body(&slot);
            self.free_all(&written);
            return Err(e);
        }
        if deferring {
            self.defer(keys, recno);
        }
        self.body.record_count = self.body.record_count.max(recno);
        self.body.deleted_count += u64::from(deleted);
        if let Some(s) = &mut self.body.serial {
            // Never below a number stored (a serial assigned before a crash
            // lost the counter's last value).
            if let Value::Int64(v) = values[usize::from(s.field)] {
                s.next = s.next.max(v.max(0) as u64 + 1);
            }
        }
        Ok(())
    }

    /// Replaces `recno`'s values (its deleted flag is kept).
    pub fn update(&mut self, recno: u64, values: &[Value]) -> Result<()> {
        self.check_recno(recno)?;
        self.check_values(values)?;
        let old = self.read(recno)?;
        if let Some(s) = self.body.serial {
            let f = usize::from(s.field);
            if values[f] != old.values()[f] {
                return Err(Error::InvalidValue {
                    table: self.name.clone(),
                    field: self.schema.fields()[f].name.clone(),
                    value: values[f].to_string(),
                    reason:
                        "is the serial field, assigned by the engine at append and never changed"
                            .into(),
                });
            }
        }
        let deleted = old.is_deleted();
        let (status, old_slot) = self.slots.read(&self.data, recno)?;
        let old_keys = self.keys(old.values(), recno, deleted);
        let new_keys = self.keys(values, recno, deleted);
        if !deleted {
            self.check_unique(&new_keys, values, recno)?;
        }
        self.mark_dirty()?;
        self.reserve_indexes()?;
        let (resolved, written, replaced) =
            self.resolve_memos(recno, values, Some(old.values()))?;
        let slot = match self.store_body(recno, &resolved) {
            Ok(s) => s,
            Err(e) => {
                self.free_all(&written);
                return Err(e);
            }
        };
        if let Err(e) = self.apply_keys(&old_keys, &new_keys, recno, values) {
            self.free_body(&slot);
            self.free_all(&written);
            return Err(e);
        }
        if let Err(e) = self.slots.write(&self.data, recno, status, &slot) {
            let _ = self.apply_keys(&new_keys, &old_keys, recno, old.values());
            self.free_body(&slot);
            self.free_all(&written);
            return Err(e);
        }
        let mut old_blobs = replaced;
        if self.body.format == RecordFormat::Variable {
            old_blobs.push(var_slot(&old_slot).0);
        }
        self.replaced(&old_blobs)
    }

    /// Stores a record as another database committed it (a cache node's
    /// copy of a server's table): at `recno` whatever is there, reserving the
    /// recnos before it that do not exist yet (their own changes fill them
    /// later). `values` None keeps the record's values (a new record gets a
    /// blank one); a memo given as `Memo::Stored` keeps this record's memo.
    /// `deleted` None keeps the flag (a new record is live).
    pub fn put(
        &mut self,
        recno: u64,
        values: Option<&[Value]>,
        deleted: Option<bool>,
    ) -> Result<()> {
        if recno == 0 {
            return Err(self.no_such(recno));
        }
        while self.next_recno() < recno {
            self.reserve_recno();
        }
        let filled = recno <= self.body.record_count
            && self.slots.status(&self.data, recno)? != SlotStatus::Empty;
        if !filled {
            let blank;
            let values = match values {
                Some(v) => v,
                None => {
                    blank = self.schema.empty_record();
                    &blank
                }
            };
            let values = self.keep_no_memo(values);
            self.append_at(recno, &values, deleted.unwrap_or(false))?;
            self.reserved.settle(recno);
            return Ok(());
        }
        if let Some(values) = values {
            let old = self.read(recno)?;
            let mut values = values.to_vec();
            for (i, v) in values.iter_mut().enumerate() {
                if let Value::Memo(Memo::Stored(_)) = v {
                    *v = old.values()[i].clone();
                }
            }
            if let Some(f) = self.serial_field() {
                // The source's serial, whatever this copy holds.
                if values[f] != old.values()[f] {
                    self.store_serial_change(recno, &values)?;
                    return self.set_flag(recno, deleted);
                }
            }
            self.update(recno, &values)?;
        }
        self.set_flag(recno, deleted)
    }

    fn set_flag(&mut self, recno: u64, deleted: Option<bool>) -> Result<()> {
        if let Some(d) = deleted {
            self.set_deleted(recno, d)?;
        }
        Ok(())
    }

    /// A new record cannot keep a memo it never had: `Memo::Stored` becomes
    /// empty (only an update's own memo can be kept).
    fn keep_no_memo(&self, values: &[Value]) -> Vec<Value> {
        values
            .iter()
            .map(|v| match v {
                Value::Memo(Memo::Stored(_)) => Value::Memo(Memo::Empty),
                v => v.clone(),
            })
            .collect()
    }

    /// A put that changes the serial field (a copy out of step with its
    /// source): the record is stored again under its recno.
    fn store_serial_change(&mut self, recno: u64, values: &[Value]) -> Result<()> {
        let serial = self.body.serial.take();
        let r = self.update(recno, values);
        self.body.serial = serial;
        r
    }

    /// Sets `recno`'s deleted flag. Returns false when it already had that state.
    /// Recalling a record whose unique key a live record now holds is refused.
    pub fn set_deleted(&mut self, recno: u64, deleted: bool) -> Result<bool> {
        let rec = self.read(recno)?;
        if rec.is_deleted() == deleted {
            return Ok(false);
        }
        let old_keys = self.keys(rec.values(), recno, !deleted);
        let new_keys = self.keys(rec.values(), recno, deleted);
        if !deleted {
            self.check_unique(&new_keys, rec.values(), recno)?;
        }
        self.mark_dirty()?;
        self.reserve_indexes()?;
        self.apply_keys(&old_keys, &new_keys, recno, rec.values())?;
        let want = if deleted {
            SlotStatus::Deleted
        } else {
            SlotStatus::Live
        };
        if let Err(e) = self.slots.set_status(&self.data, recno, want) {
            let _ = self.apply_keys(&new_keys, &old_keys, recno, rec.values());
            return Err(e);
        }
        if deleted {
            self.body.deleted_count += 1;
        } else {
            self.body.deleted_count -= 1;
        }
        Ok(true)
    }

    /// The full key of record `recno` in index `i` (None when not in it).
    pub fn key_of(&self, i: usize, values: &[Value], recno: u64, deleted: bool) -> Option<Vec<u8>> {
        self.indexes[i].entry_key(values, recno, deleted)
    }
}
