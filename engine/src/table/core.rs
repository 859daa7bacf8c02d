//! One open table: its header, data file, blob file and record operations.
//!
//! Invariants:
//! - `body.record_count` is the highest recno; every slot `1..=record_count` is
//!   Live or Deleted, every slot above it Empty.
//! - The header on disk says `clean = false` before the first change after an open
//!   reaches the disk ([`TableCore::mark_dirty`]); it says `clean = true` only after
//!   every page was written back and synced ([`TableCore::close`]).
//! - A record write changes its slot last: memo and body blobs are written first
//!   and freed again if anything fails, so an error leaves the record as it was.
//! - Variable record bodies and memos start with the owning recno and a crc32 of
//!   their bytes, so a blob reached from the wrong place is detected, never returned.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::page::{BufferPool, PageFile, PAGE_HEADER};
use crate::record::{BlobStore, Codec, Record, SlotMap, SlotStatus, VAR_SLOT_BODY};
use crate::schema::{
    check_value, Durability, FieldType, Memo, MemoRef, RecordFormat, Schema, Value, MAX_VAR_RECORD,
};
use crate::storage::{OpenMode, Storage};

use super::header::{self, HeaderBody, RepairStats};
use super::TableOptions;

/// Bytes before a variable record body in its blob: recno u64, crc32 u32.
const BODY_PREFIX: usize = 12;
/// Bytes before a memo in its blob: recno u64, field u16, crc32 u32.
const MEMO_PREFIX: usize = 14;

/// Paths of a table's files.
#[derive(Debug, Clone)]
pub(crate) struct TablePaths {
    pub data: PathBuf,
    pub blobs: PathBuf,
}

impl TablePaths {
    pub fn new(root: &Path, name: &str) -> TablePaths {
        TablePaths {
            data: root.join(format!("{name}.rzd")),
            blobs: root.join(format!("{name}.rzb")),
        }
    }
}

fn needs_blobs(schema: &Schema, format: RecordFormat) -> bool {
    format == RecordFormat::Variable || schema.fields().iter().any(|f| f.ty == FieldType::Memo)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What opening a table repaired (see [`crate::Database::repairs`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// The table had not been closed cleanly and was verified.
    pub verified: bool,
    /// The table had moved; its stored path was updated.
    pub moved: bool,
    /// A damaged header copy was rewritten.
    pub header_repaired: bool,
    /// Slots lost in a crash, restored as deleted blank records.
    pub lost_slots: u64,
    /// Variable records whose body could not be read back.
    pub unreadable: u64,
}

/// An open table.
#[derive(Debug)]
pub(crate) struct TableCore {
    pub name: String,
    pub body: HeaderBody,
    generation: u64,
    pub data: PageFile,
    pub blobs: Option<BlobStore>,
    codec: Codec,
    slots: SlotMap,
    pub schema: Arc<Schema>,
    marked_dirty: bool,
}

impl TableCore {
    /// Creates the table's files. The data file appears under its final name only
    /// once complete, so a crash during create leaves no half table.
    pub fn create(
        storage: &Arc<dyn Storage>,
        pool: &Arc<BufferPool>,
        root: &Path,
        name: &str,
        schema: &Schema,
        opts: &TableOptions,
    ) -> Result<()> {
        if !crate::page::layout::valid_page_size(opts.page_size) {
            return Err(Error::InvalidSchema {
                table: name.to_owned(),
                reason: format!(
                    "page size {} is not a power of two in 4096..=65536",
                    opts.page_size
                ),
            });
        }
        if opts.durability != Durability::Unlogged {
            return Err(Error::Unsupported(format!(
                "{} tables need the write-ahead log, which this build does not include; create {name} as unlogged",
                opts.durability
            )));
        }
        let max_fixed = opts.page_size as usize - PAGE_HEADER - 1;
        schema.validate(name, opts.format, max_fixed)?;
        let paths = TablePaths::new(root, name);
        let abs = storage.canonicalize(root).map_err(|e| Error::io(root, e))?;
        let body = HeaderBody {
            file_id: rand::random(),
            table: name.to_owned(),
            path: abs
                .join(format!("{name}.rzd"))
                .to_string_lossy()
                .into_owned(),
            created_at: now_secs(),
            schema: schema.clone(),
            format: opts.format,
            durability: opts.durability,
            indexes: Vec::new(),
            record_count: 0,
            deleted_count: 0,
            sync_stamp: 1,
            clean: true,
            stats: RepairStats::default(),
        };
        // Encode first: a definition too large for the page fails before any file.
        header::encode(&body, opts.page_size, 0, &paths.data)?;
        let tmp = paths.data.with_extension("rzd.new");
        let result = (|| {
            if needs_blobs(schema, opts.format) {
                let f = storage
                    .open(&paths.blobs, OpenMode::OpenOrCreate)
                    .map_err(|e| Error::io(&paths.blobs, e))?;
                f.set_len(0).map_err(|e| Error::io(&paths.blobs, e))?;
                let file = PageFile::open(pool.clone(), f, &paths.blobs, opts.page_size)?;
                BlobStore::create(file)?.flush()?;
            }
            let f = storage
                .open(&tmp, OpenMode::OpenOrCreate)
                .map_err(|e| Error::io(&tmp, e))?;
            f.set_len(0).map_err(|e| Error::io(&tmp, e))?;
            let file = PageFile::open(pool.clone(), f, &tmp, opts.page_size)?;
            header::write(&file, &body, 0)?;
            header::write(&file, &body, 1)?;
            file.sync()?;
            drop(file);
            storage
                .rename(&tmp, &paths.data)
                .map_err(|e| Error::io(&paths.data, e))?;
            storage.sync_dir(root).map_err(|e| Error::io(root, e))
        })();
        if result.is_err() {
            let _ = storage.remove(&tmp);
            let _ = storage.remove(&paths.blobs);
        }
        result
    }

    /// Opens a table, repairing what a crash or a move left behind.
    pub fn open(
        storage: &Arc<dyn Storage>,
        pool: &Arc<BufferPool>,
        root: &Path,
        name: &str,
    ) -> Result<(TableCore, OpenReport)> {
        let paths = TablePaths::new(root, name);
        let f = storage.open(&paths.data, OpenMode::Existing).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::TableNotFound {
                    table: name.to_owned(),
                    root: root.to_path_buf(),
                }
            } else {
                Error::io(&paths.data, e)
            }
        })?;
        let loaded = header::read(f.as_ref(), &paths.data)?;
        let data = PageFile::open(pool.clone(), f, &paths.data, loaded.page_size)?;
        let mut body = loaded.body;
        let blobs = if needs_blobs(&body.schema, body.format) {
            let bf = storage
                .open(&paths.blobs, OpenMode::Existing)
                .map_err(|e| Error::io(&paths.blobs, e))?;
            let file = PageFile::open(pool.clone(), bf, &paths.blobs, loaded.page_size)?;
            Some(BlobStore::open(file, body.clean)?)
        } else {
            None
        };
        let body_len = match body.format {
            RecordFormat::Fixed => body.schema.fixed_len(),
            RecordFormat::Variable => VAR_SLOT_BODY,
        };
        let mut report = OpenReport {
            header_repaired: loaded.damaged_copy,
            ..OpenReport::default()
        };
        if loaded.damaged_copy {
            body.stats.header_repairs += 1;
        }
        let abs = storage
            .canonicalize(&paths.data)
            .map_err(|e| Error::io(&paths.data, e))?
            .to_string_lossy()
            .into_owned();
        if abs != body.path {
            tracing::info!(table = name, from = %body.path, to = %abs, "table moved; stored path updated");
            body.path = abs;
            body.stats.moves += 1;
            report.moved = true;
        }
        if body.table != name {
            tracing::info!(table = name, stored = %body.table, "data file was renamed; adopting its file name");
            body.table = name.to_owned();
        }
        let mut core = TableCore {
            name: name.to_owned(),
            codec: Codec::new(&body.schema, body.format),
            slots: SlotMap::new(body_len, loaded.page_size),
            schema: Arc::new(body.schema.clone()),
            body,
            generation: loaded.generation,
            data,
            blobs,
            marked_dirty: false,
        };
        if !core.body.clean {
            core.verify(&mut report)?;
        }
        if report != OpenReport::default() {
            // Repairs are written back before anyone uses the table.
            core.write_all()?;
            core.body.clean = true;
            core.persist_header()?;
        }
        Ok((core, report))
    }

    /// Recounts records after an unclean close and restores lost slots.
    fn verify(&mut self, report: &mut OpenReport) -> Result<()> {
        tracing::warn!(table = %self.name, "table was not closed cleanly; verifying");
        report.verified = true;
        self.body.stats.unclean_opens += 1;
        let capacity = self.slots.capacity(&self.data);
        let mut last = 0;
        let mut deleted = 0;
        let mut empty = Vec::new();
        for recno in 1..=capacity {
            match self.slots.status(&self.data, recno)? {
                SlotStatus::Empty => empty.push(recno),
                SlotStatus::Deleted => {
                    deleted += 1;
                    last = recno;
                }
                SlotStatus::Live => last = recno,
            }
        }
        empty.retain(|&r| r < last);
        self.body.record_count = last;
        self.marked_dirty = true;
        for &recno in &empty {
            let blank = self.schema.empty_record();
            let slot = self.store_body(recno, &blank)?;
            self.slots
                .write(&self.data, recno, SlotStatus::Deleted, &slot)?;
            deleted += 1;
        }
        if !empty.is_empty() {
            tracing::warn!(table = %self.name, lost = empty.len(), "record slots lost in a crash restored as deleted blank records");
        }
        self.body.stats.lost_slots_restored += empty.len() as u64;
        report.lost_slots = empty.len() as u64;
        self.body.deleted_count = deleted;
        if self.body.format == RecordFormat::Variable {
            for recno in 1..=last {
                if let Err(e) = self.read(recno) {
                    tracing::error!(table = %self.name, recno, error = %e, "record unreadable after crash");
                    report.unreadable += 1;
                }
            }
        }
        self.body.sync_stamp += 1;
        tracing::info!(table = %self.name, records = last, deleted, "verification done");
        Ok(())
    }

    fn persist_header(&mut self) -> Result<()> {
        self.generation += 1;
        header::write(&self.data, &self.body, self.generation)?;
        self.data.sync()
    }

    /// Marks the table not-clean on disk before its first change.
    fn mark_dirty(&mut self) -> Result<()> {
        self.data.check_writable()?;
        if let Some(b) = &self.blobs {
            b.file().check_writable()?;
        }
        if !self.marked_dirty {
            self.body.clean = false;
            self.persist_header()?;
            self.marked_dirty = true;
        }
        Ok(())
    }

    /// Records in the table, deleted included.
    pub fn record_count(&self) -> u64 {
        self.body.record_count
    }

    fn no_such(&self, recno: u64) -> Error {
        Error::NoSuchRecord {
            table: self.name.clone(),
            recno,
            count: self.body.record_count,
        }
    }

    fn check_recno(&self, recno: u64) -> Result<()> {
        if recno == 0 || recno > self.body.record_count {
            Err(self.no_such(recno))
        } else {
            Ok(())
        }
    }

    fn corrupt(&self, recno: u64, reason: impl Into<String>) -> Error {
        Error::CorruptRecord {
            table: self.name.clone(),
            recno,
            reason: reason.into(),
        }
    }

    fn blobs(&self) -> Result<&BlobStore> {
        self.blobs
            .as_ref()
            .ok_or_else(|| Error::Unsupported(format!("table {} has no blob file", self.name)))
    }

    /// Checks a whole record's values.
    fn check(&self, values: &[Value]) -> Result<()> {
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

    /// Status of `recno` (must exist).
    pub fn status(&self, recno: u64) -> Result<SlotStatus> {
        self.check_recno(recno)?;
        self.slots.status(&self.data, recno)
    }

    /// Reads `recno`'s values and deleted flag.
    pub fn read(&self, recno: u64) -> Result<Record> {
        self.check_recno(recno)?;
        let (status, slot) = self.slots.read(&self.data, recno)?;
        let deleted = match status {
            SlotStatus::Live => false,
            SlotStatus::Deleted => true,
            SlotStatus::Empty => return Err(self.corrupt(recno, "slot is empty")),
        };
        let values = match self.body.format {
            RecordFormat::Fixed => self.codec.decode(&slot, &self.name, recno)?,
            RecordFormat::Variable => {
                let (blob, len) = var_slot(&slot);
                let bytes = self.blobs()?.get(blob, len as u64 + BODY_PREFIX as u64)?;
                let body = self.unwrap_blob(recno, &bytes, None)?;
                self.codec.decode(body, &self.name, recno)?
            }
        };
        Ok(Record::new(recno, deleted, values, self.schema.clone()))
    }

    /// Checks a blob's owner prefix and checksum; returns its payload.
    fn unwrap_blob<'a>(&self, recno: u64, bytes: &'a [u8], field: Option<u16>) -> Result<&'a [u8]> {
        let prefix = if field.is_some() {
            MEMO_PREFIX
        } else {
            BODY_PREFIX
        };
        if bytes.len() < prefix {
            return Err(self.corrupt(recno, "blob shorter than its prefix"));
        }
        let owner = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if owner != recno {
            return Err(self.corrupt(recno, format!("blob belongs to record {owner}")));
        }
        if let Some(f) = field {
            let stored = u16::from_le_bytes([bytes[8], bytes[9]]);
            if stored != f {
                return Err(self.corrupt(recno, format!("memo belongs to field {stored}, not {f}")));
            }
        }
        let crc = u32::from_le_bytes(bytes[prefix - 4..prefix].try_into().expect("4 bytes"));
        let payload = &bytes[prefix..];
        if crc32fast::hash(payload) != crc {
            return Err(self.corrupt(recno, "blob checksum mismatch"));
        }
        Ok(payload)
    }

    /// Reads the memo in field `field` of `recno`.
    pub fn read_memo(&self, recno: u64, field: &str) -> Result<Vec<u8>> {
        let idx = self
            .schema
            .position(field)
            .ok_or_else(|| Error::NoSuchField {
                table: self.name.clone(),
                field: field.to_owned(),
            })?;
        if self.schema.fields()[idx].ty != FieldType::Memo {
            return Err(Error::InvalidValue {
                table: self.name.clone(),
                field: field.to_owned(),
                value: self.schema.fields()[idx].ty.to_string(),
                reason: "is not a Memo field".into(),
            });
        }
        let rec = self.read(recno)?;
        match &rec.values()[idx] {
            Value::Memo(Memo::Stored(r)) => {
                let bytes = self
                    .blobs()?
                    .get(r.blob, r.len as u64 + MEMO_PREFIX as u64)?;
                Ok(self.unwrap_blob(recno, &bytes, Some(idx as u16))?.to_vec())
            }
            _ => Ok(Vec::new()),
        }
    }

    fn put_blob(&self, recno: u64, field: Option<u16>, payload: &[u8]) -> Result<u64> {
        let mut bytes = Vec::with_capacity(payload.len() + MEMO_PREFIX);
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
    /// written (to free on failure) and the blobs replaced (to free on success).
    fn resolve_memos(
        &self,
        recno: u64,
        values: &[Value],
        old: Option<&[Value]>,
    ) -> Result<(Vec<Value>, Vec<u64>, Vec<u64>)> {
        let mut out = values.to_vec();
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
            out[i] = new;
        }
        Ok((out, written, replaced))
    }

    /// Schedules replaced blobs to be freed after the next sync of the data file.
    fn retire_all(&self, blobs: &[u64]) {
        if let Some(store) = &self.blobs {
            for &b in blobs {
                store.retire(b);
            }
        }
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
    fn store_body(&self, recno: u64, values: &[Value]) -> Result<Vec<u8>> {
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

    /// Appends a record; returns its recno.
    pub fn append(&mut self, values: &[Value]) -> Result<u64> {
        self.check(values)?;
        self.mark_dirty()?;
        let recno = self.body.record_count + 1;
        self.slots.ensure_page(&self.data, recno)?;
        let (resolved, written, _) = self.resolve_memos(recno, values, None)?;
        let slot = match self.store_body(recno, &resolved) {
            Ok(s) => s,
            Err(e) => {
                self.free_all(&written);
                return Err(e);
            }
        };
        if let Err(e) = self.slots.write(&self.data, recno, SlotStatus::Live, &slot) {
            self.free_body(&slot);
            self.free_all(&written);
            return Err(e);
        }
        self.body.record_count = recno;
        Ok(recno)
    }

    fn free_body(&self, slot: &[u8]) {
        if self.body.format == RecordFormat::Variable {
            self.free_all(&[var_slot(slot).0]);
        }
    }

    /// Replaces `recno`'s values (its deleted flag is kept).
    pub fn update(&mut self, recno: u64, values: &[Value]) -> Result<()> {
        self.check_recno(recno)?;
        self.check(values)?;
        let old = self.read(recno)?;
        let (status, old_slot) = self.slots.read(&self.data, recno)?;
        self.mark_dirty()?;
        let (resolved, written, replaced) =
            self.resolve_memos(recno, values, Some(old.values()))?;
        let slot = match self.store_body(recno, &resolved) {
            Ok(s) => s,
            Err(e) => {
                self.free_all(&written);
                return Err(e);
            }
        };
        if let Err(e) = self.slots.write(&self.data, recno, status, &slot) {
            self.free_body(&slot);
            self.free_all(&written);
            return Err(e);
        }
        if self.body.format == RecordFormat::Variable {
            self.retire_all(&[var_slot(&old_slot).0]);
        }
        self.retire_all(&replaced);
        Ok(())
    }

    /// Sets `recno`'s deleted flag. Returns false when it already had that state.
    pub fn set_deleted(&mut self, recno: u64, deleted: bool) -> Result<bool> {
        let status = self.status(recno)?;
        let want = if deleted {
            SlotStatus::Deleted
        } else {
            SlotStatus::Live
        };
        if status == want {
            return Ok(false);
        }
        self.mark_dirty()?;
        self.slots.set_status(&self.data, recno, want)?;
        if deleted {
            self.body.deleted_count += 1;
        } else {
            self.body.deleted_count -= 1;
        }
        Ok(true)
    }

    /// Writes blobs, then records, syncing each; then frees the blobs that
    /// updates replaced (no synced slot points to them any more).
    fn write_all(&mut self) -> Result<()> {
        if let Some(b) = &self.blobs {
            b.flush()?;
        }
        self.data.write_dirty()?;
        self.data.sync()?;
        if let Some(b) = &self.blobs {
            if b.retired() > 0 {
                b.release_retired()?;
                b.flush()?;
            }
        }
        Ok(())
    }

    /// Writes every change to disk and syncs (the table stays open, marked dirty).
    pub fn flush(&mut self) -> Result<()> {
        if !self.marked_dirty {
            return Ok(());
        }
        self.write_all()?;
        // The header's counters are brought up to date too (still marked dirty).
        self.persist_header()
    }

    /// Flushes and marks the table cleanly closed.
    pub fn close(&mut self) -> Result<()> {
        if !self.marked_dirty {
            return Ok(());
        }
        self.write_all()?;
        self.body.clean = true;
        self.persist_header()?;
        self.marked_dirty = false;
        Ok(())
    }
}

fn var_slot(slot: &[u8]) -> (u64, u32) {
    (
        u64::from_le_bytes(slot[..8].try_into().expect("slot has 12 bytes")),
        u32::from_le_bytes(slot[8..12].try_into().expect("slot has 12 bytes")),
    )
}
