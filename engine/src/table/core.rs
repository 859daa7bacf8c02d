//! One open table: its header, data file, blob file, indexes, and reads.
//! Writes are in `write.rs`, maintenance in `maint.rs`.
//!
//! Invariants:
//! - `body.record_count` is the highest recno; every slot `1..=record_count` is
//!   Live or Deleted, every slot above it Empty.
//! - The header on disk says `clean = false` before the first change after an open
//!   reaches the disk ([`TableCore::mark_dirty`]); it says `clean = true` only after
//!   every page — data, blobs, indexes — was written back and synced.
//! - Every index holds exactly one entry per record its condition admits, keyed as
//!   `index::Index::entry_key` says. Index files carry the table's sync stamp: a
//!   file whose stamp differs (a stale copy), a missing or damaged file, and every
//!   index after an unclean close are rebuilt at open.
//! - A record write changes its slot last: blobs and index entries first, undone
//!   if a later step fails, so an error leaves the record and its indexes as they were.
//! - Variable record bodies and memos start with the owning recno and a crc32 of
//!   their bytes, so a blob reached from the wrong place is detected, never returned.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::{Index, IndexDef, KeySpec, Stale};
use crate::page::{BufferPool, PageFile, PAGE_HEADER};
use crate::record::{BlobStore, Codec, Record, SlotMap, SlotStatus, VAR_SLOT_BODY};
use crate::schema::{Durability, FieldType, Memo, RecordFormat, Schema, Value};
use crate::storage::{OpenMode, Storage};

use super::header::{self, HeaderBody, RepairStats, SerialState};
use super::TableOptions;

/// Bytes before a variable record body in its blob: recno u64, crc32 u32.
pub(super) const BODY_PREFIX: usize = 12;
/// Bytes before a memo in its blob: recno u64, field u16, crc32 u32.
pub(super) const MEMO_PREFIX: usize = 14;

/// Paths of a table's files.
#[derive(Debug, Clone)]
pub(crate) struct TablePaths {
    pub data: PathBuf,
}

impl TablePaths {
    pub fn new(root: &Path, name: &str) -> TablePaths {
        TablePaths {
            data: root.join(format!("{name}.rzd")),
        }
    }
}

/// True for the files that belong to table `name` (data, blobs, indexes).
pub(crate) fn is_table_file(name: &str, file: &str) -> bool {
    file == format!("{name}.rzd")
        || (file.starts_with(&format!("{name}."))
            && (file.ends_with(".rzb") || file.ends_with(".rzi")))
}

pub(super) fn needs_blobs(schema: &Schema, format: RecordFormat) -> bool {
    format == RecordFormat::Variable || schema.fields().iter().any(|f| f.ty == FieldType::Memo)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// File names of a file set of generation `gen`.
pub(super) fn blob_name(table: &str, gen: u32) -> String {
    if gen == 0 {
        format!("{table}.rzb")
    } else {
        format!("{table}.g{gen}.rzb")
    }
}

pub(super) fn index_name(table: &str, index: &str, gen: u32) -> String {
    if gen == 0 {
        format!("{table}.{index}.rzi")
    } else {
        format!("{table}.{index}.g{gen}.rzi")
    }
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
    /// Records that could not be read back in full (a damaged body or memo),
    /// kept as deleted blank records.
    pub unreadable: u64,
    /// Data pages that could not be read, whose slots became deleted blank
    /// records.
    pub damaged_pages: u64,
    /// Indexes rebuilt (missing, stale, damaged, or after an unclean close).
    pub indexes_rebuilt: u64,
}

/// Where an open table lives, for the operations that create files.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub storage: Arc<dyn Storage>,
    pub pool: Arc<BufferPool>,
    pub root: PathBuf,
    /// The rootpath's log (None for a database of temporary tables).
    pub wal: Option<Arc<crate::log::Wal>>,
}

/// An open table.
#[derive(Debug)]
pub(crate) struct TableCore {
    pub name: String,
    pub body: HeaderBody,
    pub(super) generation: u64,
    pub data: PageFile,
    pub blobs: Option<BlobStore>,
    pub indexes: Vec<Index>,
    pub(super) codec: Codec,
    pub(super) slots: SlotMap,
    pub schema: Arc<Schema>,
    pub(super) marked_dirty: bool,
    pub(super) env: Env,
    /// Recnos reserved by open transactions' appends.
    pub(crate) reserved: super::reserve::Reservations,
    /// During a commit that only appends: per index, the entries its records
    /// take, inserted in key order at the end (see `table::bulk`).
    pub(super) deferred: Option<Vec<super::bulk::Entries>>,
    /// Commits that changed the table since it was opened: a reader that
    /// finds it unchanged across its reads saw no commit in between (it
    /// moves under the table's write lock, with the commit's changes).
    pub(crate) commits: u64,
}

impl TableCore {
    /// Checks a definition and builds the header of a new, empty table.
    pub fn new_body(
        env: &Env,
        name: &str,
        schema: &Schema,
        opts: &TableOptions,
    ) -> Result<HeaderBody> {
        if !crate::page::layout::valid_page_size(opts.page_size) {
            return Err(Error::InvalidSchema {
                table: name.to_owned(),
                reason: format!(
                    "page size {} is not a power of two in 4096..=65536",
                    opts.page_size
                ),
            });
        }
        if opts.durability == Durability::Logged && env.wal.is_none() {
            return Err(Error::Unsupported(format!(
                "table {name}: logged tables need a rootpath with a log; temporary rootpaths hold unlogged tables only"
            )));
        }
        let max_fixed = opts.page_size as usize - PAGE_HEADER - 1;
        schema.validate(name, opts.format, max_fixed)?;
        let serial = match &opts.serial {
            None => None,
            Some(f) => {
                let idx = schema.position(f).ok_or_else(|| Error::NoSuchField {
                    table: name.to_owned(),
                    field: f.clone(),
                })?;
                if schema.fields()[idx].ty != FieldType::Int64 {
                    return Err(Error::InvalidSchema {
                        table: name.to_owned(),
                        reason: format!("serial field {f} must be Int64"),
                    });
                }
                Some(SerialState {
                    field: idx as u16,
                    next: 1,
                })
            }
        };
        let abs = env
            .storage
            .canonicalize(&env.root)
            .map_err(|e| Error::io(&env.root, e))?;
        Ok(HeaderBody {
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
            blob_file: needs_blobs(schema, opts.format).then(|| blob_name(name, 0)),
            file_gen: 0,
            serial,
            record_count: 0,
            deleted_count: 0,
            sync_stamp: 1,
            clean: true,
            stats: RepairStats::default(),
            filled_to: 0,
        })
    }

    /// Writes the files of an empty table described by `body` with its data file
    /// at `data_path`. On error, whatever was created is removed.
    pub fn create_files(
        env: &Env,
        data_path: &Path,
        body: &HeaderBody,
        page_size: u32,
    ) -> Result<()> {
        header::encode(body, page_size, 0, data_path)?;
        let storage = &env.storage;
        let blob_path = body.blob_file.as_ref().map(|b| env.root.join(b));
        let result = (|| {
            if let Some(bp) = &blob_path {
                let f = storage
                    .open(bp, OpenMode::OpenOrCreate)
                    .map_err(|e| Error::io(bp, e))?;
                f.set_len(0).map_err(|e| Error::io(bp, e))?;
                let file = PageFile::open(env.pool.clone(), f, bp, page_size)?;
                BlobStore::create(file)?.flush()?;
            }
            let f = storage
                .open(data_path, OpenMode::OpenOrCreate)
                .map_err(|e| Error::io(data_path, e))?;
            f.set_len(0).map_err(|e| Error::io(data_path, e))?;
            let file = PageFile::open(env.pool.clone(), f, data_path, page_size)?;
            header::write(&file, body, 0)?;
            header::write(&file, body, 1)?;
            file.sync()
        })();
        if result.is_err() {
            let _ = storage.remove(data_path);
            if let Some(bp) = &blob_path {
                let _ = storage.remove(bp);
            }
        }
        result
    }

    /// Creates table `name`. The data file appears under its final name only once
    /// complete, so a crash during create leaves no half table.
    pub fn create(env: &Env, name: &str, schema: &Schema, opts: &TableOptions) -> Result<()> {
        let body = Self::new_body(env, name, schema, opts)?;
        let final_path = TablePaths::new(&env.root, name).data;
        let tmp = final_path.with_extension("rzd.new");
        Self::create_files(env, &tmp, &body, opts.page_size)?;
        let commit = env
            .storage
            .rename(&tmp, &final_path)
            .map_err(|e| Error::io(&final_path, e))
            .and_then(|()| {
                env.storage
                    .sync_dir(&env.root)
                    .map_err(|e| Error::io(&env.root, e))
            });
        if commit.is_err() {
            let _ = env.storage.remove(&tmp);
            if let Some(b) = &body.blob_file {
                let _ = env.storage.remove(&env.root.join(b));
            }
        }
        commit
    }

    /// Opens table `name`, repairing what a crash, a move or a lost index left.
    pub fn open(env: &Env, name: &str) -> Result<(TableCore, OpenReport)> {
        let data_path = TablePaths::new(&env.root, name).data;
        Self::open_at(env, name, &data_path, true)
    }

    /// Opens the table whose data file is `data_path` (the final path, or a
    /// rewrite's temporary one when `is_final` is false).
    pub fn open_at(
        env: &Env,
        name: &str,
        data_path: &Path,
        is_final: bool,
    ) -> Result<(TableCore, OpenReport)> {
        let storage = &env.storage;
        let f = storage.open(data_path, OpenMode::Existing).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::TableNotFound {
                    table: name.to_owned(),
                    root: env.root.clone(),
                }
            } else {
                Error::io(data_path, e)
            }
        })?;
        let loaded = header::read(f.as_ref(), data_path)?;
        let data = PageFile::open(env.pool.clone(), f, data_path, loaded.page_size)?;
        let mut body = loaded.body;
        let blobs = match &body.blob_file {
            Some(b) => {
                let bp = env.root.join(b);
                let bf = storage
                    .open(&bp, OpenMode::Existing)
                    .map_err(|e| Error::io(&bp, e))?;
                let file = PageFile::open(env.pool.clone(), bf, &bp, loaded.page_size)?;
                Some(BlobStore::open(file, body.clean)?)
            }
            None => None,
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
        if is_final {
            let abs = storage
                .canonicalize(data_path)
                .map_err(|e| Error::io(data_path, e))?
                .to_string_lossy()
                .into_owned();
            if abs != body.path {
                tracing::info!(table = name, from = %body.path, to = %abs, "table moved; stored path updated");
                body.path = abs;
                body.stats.moves += 1;
                report.moved = true;
            }
        }
        if body.table != name {
            tracing::info!(table = name, stored = %body.table, "data file was renamed; adopting its file name");
            body.table = name.to_owned();
        }
        // After a failed sync the files may lag the log: nothing may be written
        // (no repair, no rebuild) until the rootpath is reopened and recovered.
        let poisoned = body.durability == Durability::Logged
            && env.wal.as_ref().is_some_and(|w| w.is_poisoned());
        let mut core = TableCore {
            name: name.to_owned(),
            codec: Codec::new(&body.schema, body.format),
            slots: SlotMap::new(body_len, loaded.page_size),
            schema: Arc::new(body.schema.clone()),
            body,
            generation: loaded.generation,
            data,
            blobs,
            indexes: Vec::new(),
            marked_dirty: false,
            env: env.clone(),
            reserved: Default::default(),
            deferred: None,
            commits: 0,
        };
        // A header read from the older copy may be a generation behind: its
        // counters are rebuilt from the slots as after an unclean close.
        let clean = core.body.clean && !loaded.damaged_copy;
        let refuse = || Error::Poisoned {
            path: env.root.join(crate::log::WAL_DIR),
        };
        if poisoned && (!clean || report.moved) {
            return Err(refuse());
        }
        if !clean {
            core.verify(&mut report)?;
        } else if !poisoned {
            core.cut_unused_data_pages()?;
        }
        core.open_indexes(clean, &mut report)?;
        if poisoned && report != OpenReport::default() {
            return Err(refuse());
        }
        core.attach_wal();
        if report.moved && clean {
            core.check_indexes_after_move(&mut report)?;
        }
        if is_final {
            core.remove_orphans();
        }
        if report != OpenReport::default() {
            // Repairs are written back before anyone uses the table. The
            // header keeps its `filled_to`: slots a crash left empty below it
            // are filled (and `filled_to` raised) when the table is
            // registered; recomputing it here, with no reservation open,
            // would claim them filled and leave them empty for good.
            core.write_all()?;
            core.body.clean = true;
            core.generation += 1;
            header::write(&core.data, &core.body, core.generation)?;
            core.data.sync()?;
            core.marked_dirty = false;
        }
        Ok((core, report))
    }

    /// Removes files of this table that its header does not name: what an
    /// interrupted pack, rebuild or alter (or a dropped index) left behind.
    fn remove_orphans(&self) {
        let Ok(names) = self.env.storage.list(&self.env.root) else {
            return;
        };
        let keep: Vec<&str> = self
            .body
            .blob_file
            .iter()
            .map(String::as_str)
            .chain(self.body.indexes.iter().map(|b| b.file.as_str()))
            .collect();
        for f in names {
            if is_table_file(&self.name, &f) && !f.ends_with(".rzd") && !keep.contains(&f.as_str())
            {
                tracing::info!(table = %self.name, file = %f, "removing a file no longer part of the table");
                let _ = self.env.storage.remove(&self.env.root.join(&f));
            }
        }
    }

    /// Opens every bound index, rebuilding those that cannot be trusted.
    fn open_indexes(&mut self, clean: bool, report: &mut OpenReport) -> Result<()> {
        let page_size = self.data.page_size();
        for b in self.body.indexes.clone() {
            let def: IndexDef =
                postcard::from_bytes(&b.definition).map_err(|e| Error::CorruptPage {
                    path: self.data.path().to_path_buf(),
                    page: 0,
                    reason: format!("definition of index {} does not decode: {e}", b.name),
                })?;
            let spec = KeySpec::compile(&self.name, &self.schema, &def)?;
            let opened = if !clean {
                Err(Stale::Unreadable(Error::Unsupported(
                    "the table was not closed cleanly".into(),
                )))
            } else if b.sync_stamp != self.body.sync_stamp {
                Err(Stale::StampMismatch {
                    found: b.sync_stamp,
                    expected: self.body.sync_stamp,
                })
            } else {
                // Every page of the index is checked at open, so a damaged index
                // is rebuilt now rather than failing a read later.
                Index::open(
                    &self.env.storage,
                    &self.env.pool,
                    &self.env.root,
                    &b.file,
                    page_size,
                    spec.clone(),
                    b.sync_stamp,
                )
                .and_then(|i| match i.tree.file().verify_all(1) {
                    Ok(()) => Ok(i),
                    Err(e) => Err(Stale::Unreadable(e)),
                })
            };
            let index = match opened {
                Ok(i) => i,
                Err(why) => {
                    if self.is_logged() && self.env.wal.as_ref().is_some_and(|w| w.is_poisoned()) {
                        return Err(Error::Poisoned {
                            path: self.env.root.join(crate::log::WAL_DIR),
                        });
                    }
                    tracing::warn!(table = %self.name, index = %b.name, reason = %why, "rebuilding index");
                    let mut i = Index::create(
                        &self.env.storage,
                        &self.env.pool,
                        &self.env.root,
                        &b.file,
                        page_size,
                        spec,
                    )?;
                    self.build_index(&mut i)?;
                    self.body.stats.index_rebuilds += 1;
                    report.indexes_rebuilt += 1;
                    i
                }
            };
            self.indexes.push(index);
        }
        Ok(())
    }

    /// After a move the indexes are checked in full; any with a problem is rebuilt.
    fn check_indexes_after_move(&mut self, report: &mut OpenReport) -> Result<()> {
        for i in 0..self.indexes.len() {
            let problems = self.check_index(i, 1)?;
            if !problems.is_empty() {
                tracing::warn!(table = %self.name, index = %self.indexes[i].name(), problem = %problems[0], "index failed its check after a move; rebuilding");
                let fresh = self.placeholder_index(i)?;
                let mut idx = std::mem::replace(&mut self.indexes[i], fresh);
                self.build_index(&mut idx)?;
                self.indexes[i] = idx;
                self.body.stats.index_rebuilds += 1;
                report.indexes_rebuilt += 1;
            }
        }
        Ok(())
    }

    /// A fresh empty index with the same definition and file (to rebuild into).
    pub(super) fn placeholder_index(&self, i: usize) -> Result<Index> {
        let old = &self.indexes[i];
        Index::create(
            &self.env.storage,
            &self.env.pool,
            &self.env.root,
            &old.file_name,
            self.data.page_size(),
            old.spec.clone(),
        )
    }

    /// Fills `index` from every record of the table.
    pub(super) fn build_index(&self, index: &mut Index) -> Result<()> {
        let name = self.name.clone();
        let iname = index.name().to_owned();
        let mut last = 0;
        self.build_index_with(index, &mut |done, total| {
            if total >= 100_000 && done * 10 / total > last {
                last = done * 10 / total;
                tracing::info!(table = %name, index = %iname, done, total, "building index");
            }
        })
    }

    /// Fills `index` from every record, telling `progress` (records read, total).
    pub(super) fn build_index_with(
        &self,
        index: &mut Index,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let count = self.body.record_count;
        let records = (1..=count).filter_map(|r| {
            if r % 4096 == 0 || r == count {
                progress(r, count);
            }
            match self.read(r) {
                Ok(rec) => Some(Ok((r, rec.values().to_vec(), rec.is_deleted()))),
                // A recno an open transaction reserved: its commit (or its
                // rollback's blank) adds the entry, as to every index then.
                Err(Error::NoSuchRecord { .. }) if self.reserved.is_open(r) => None,
                Err(e) => Some(Err(e)),
            }
        });
        index
            .build(records, self.body.sync_stamp, |_| {})
            .map_err(|e| match e {
                Error::DuplicateKey {
                    index, key, recno, ..
                } => Error::DuplicateKey {
                    table: self.name.clone(),
                    index,
                    key,
                    recno,
                },
                e => e,
            })
    }

    /// Cuts off record pages past the record count: what a commit that a crash
    /// cut short allocated (no committed record lives there).
    fn cut_unused_data_pages(&self) -> Result<()> {
        let needed =
            crate::record::FIRST_RECORD_PAGE + self.body.record_count.div_ceil(self.slots.per_page);
        if self.data.page_count() > needed {
            self.data.shrink_to(needed)?;
        }
        Ok(())
    }

    pub(super) fn persist_header(&mut self) -> Result<()> {
        self.body.filled_to = self.reserved.filled_to(self.body.record_count);
        self.generation += 1;
        header::write(&self.data, &self.body, self.generation)?;
        self.data.sync()
    }

    /// Makes page write-backs of a logged table obey the write-ahead rule.
    pub(super) fn attach_wal(&self) {
        if let (true, Some(wal)) = (self.is_logged(), &self.env.wal) {
            self.data.set_wal(wal.clone());
            if let Some(b) = &self.blobs {
                b.file().set_wal(wal.clone());
            }
            for i in &self.indexes {
                i.tree.file().set_wal(wal.clone());
            }
        }
    }

    /// Marks the table not-clean on disk before its first change. A logged
    /// table stays marked clean: the log, not a verification, repairs it.
    /// Refuses writes to a table whose files or log failed a sync.
    pub(crate) fn check_can_write(&self) -> Result<()> {
        self.data.check_writable()?;
        if let Some(b) = &self.blobs {
            b.file().check_writable()?;
        }
        if let Some(w) = &self.env.wal {
            if self.is_logged() && w.is_poisoned() {
                return Err(Error::Poisoned {
                    path: w.dir().to_path_buf(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn mark_dirty(&mut self) -> Result<()> {
        self.check_can_write()?;
        if self.is_logged() {
            // The stamp still moves, so an index file copied from before this
            // change is recognised as stale; the header is written at checkpoint.
            if !self.marked_dirty {
                self.body.sync_stamp += 1;
                self.marked_dirty = true;
            }
            return Ok(());
        }
        if !self.marked_dirty {
            self.body.clean = false;
            self.body.sync_stamp += 1;
            self.persist_header()?;
            self.marked_dirty = true;
        }
        Ok(())
    }

    /// Records in the table as readers see them, deleted included: the stored
    /// count, or the highest orphan if higher (see `reserve`).
    pub fn record_count(&self) -> u64 {
        self.body.record_count.max(self.reserved.orphan_high())
    }

    /// Deleted records as readers see them (orphans included).
    pub fn deleted_count(&self) -> u64 {
        self.body.deleted_count + self.reserved.orphan_count()
    }

    pub(super) fn no_such(&self, recno: u64) -> Error {
        Error::NoSuchRecord {
            table: self.name.clone(),
            recno,
            count: self.body.record_count,
        }
    }

    pub(super) fn check_recno(&self, recno: u64) -> Result<()> {
        if recno == 0 || recno > self.body.record_count {
            Err(self.no_such(recno))
        } else {
            Ok(())
        }
    }

    pub(super) fn corrupt(&self, recno: u64, reason: impl Into<String>) -> Error {
        Error::CorruptRecord {
            table: self.name.clone(),
            recno,
            reason: reason.into(),
        }
    }

    pub(super) fn blobs(&self) -> Result<&BlobStore> {
        self.blobs
            .as_ref()
            .ok_or_else(|| Error::Unsupported(format!("table {} has no blob file", self.name)))
    }

    /// Status of `recno` (must exist).
    pub fn status(&self, recno: u64) -> Result<SlotStatus> {
        self.check_recno(recno)?;
        self.slots.status(&self.data, recno)
    }

    /// Status of `recno` as readers see it: an orphan is deleted.
    pub fn view_status(&self, recno: u64) -> Result<SlotStatus> {
        if self.reserved.is_orphan(recno) {
            return Ok(SlotStatus::Deleted);
        }
        self.status(recno)
    }

    /// `recno` as readers see it: the stored record, or for an orphan (a
    /// recno an ended transaction left unstored) the deleted blank record it
    /// is. [`TableCore::read`] reads only what is stored.
    pub fn view(&self, recno: u64) -> Result<Record> {
        if self.reserved.is_orphan(recno) {
            return Ok(Record::new(
                recno,
                true,
                self.schema.empty_record(),
                self.schema.clone(),
            ));
        }
        self.read(recno)
    }

    /// Hints that `recno` will be read soon: its slot, if its page is
    /// cached, starts moving into the CPU's caches. Recnos not stored are
    /// ignored; nothing is read or changed.
    pub fn prefetch(&self, recno: u64) {
        if recno >= 1 && recno <= self.body.record_count {
            self.slots.prefetch(&self.data, recno);
        }
    }

    /// The first stage of a prefetch, for a record wanted a little later
    /// than [`TableCore::prefetch`]'s: readies the lookup of its page.
    pub fn prefetch_entry(&self, recno: u64) {
        if recno >= 1 && recno <= self.body.record_count {
            self.slots.prefetch_entry(&self.data, recno);
        }
    }

    /// Reads `recno`'s values and deleted flag, as stored.
    pub fn read(&self, recno: u64) -> Result<Record> {
        self.check_recno(recno)?;
        if self.body.format == RecordFormat::Fixed {
            // Decoded straight from the page: no copy of the slot first.
            let (deleted, values) =
                self.slots.read_with(&self.data, recno, |status, slot| {
                    let deleted = match status {
                        SlotStatus::Live => false,
                        SlotStatus::Deleted => true,
                        SlotStatus::Empty => return Err(self.no_such(recno)),
                    };
                    Ok((deleted, self.codec.decode(slot, &self.name, recno)?))
                })??;
            return Ok(Record::new(recno, deleted, values, self.schema.clone()));
        }
        let (status, slot) = self.slots.read(&self.data, recno)?;
        let deleted = match status {
            SlotStatus::Live => false,
            SlotStatus::Deleted => true,
            // A recno reserved by a transaction that has not committed yet.
            SlotStatus::Empty => return Err(self.no_such(recno)),
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
    pub(super) fn unwrap_blob<'a>(
        &self,
        recno: u64,
        bytes: &'a [u8],
        field: Option<u16>,
    ) -> Result<&'a [u8]> {
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
        let idx = self.memo_index(field)?;
        let rec = self.view(recno)?;
        self.memo_of(&rec, idx)
    }

    /// The position of Memo field `field`.
    pub fn memo_index(&self, field: &str) -> Result<usize> {
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
        Ok(idx)
    }

    pub(super) fn memo_of(&self, rec: &Record, idx: usize) -> Result<Vec<u8>> {
        match &rec.values()[idx] {
            Value::Memo(Memo::Stored(r)) => {
                let bytes = self
                    .blobs()?
                    .get(r.blob, r.len as u64 + MEMO_PREFIX as u64)?;
                Ok(self
                    .unwrap_blob(rec.recno(), &bytes, Some(idx as u16))?
                    .to_vec())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The index named `name`.
    pub fn index_pos(&self, name: &str) -> Result<usize> {
        self.indexes
            .iter()
            .position(|i| i.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::NoSuchIndex {
                table: self.name.clone(),
                index: name.to_owned(),
            })
    }

    /// Writes blobs, records and indexes, syncing each; then frees the blobs that
    /// updates replaced (no synced slot points to them any more).
    pub(super) fn write_all(&mut self) -> Result<()> {
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
        let stamp = self.body.sync_stamp;
        for i in &self.indexes {
            i.flush(stamp)?;
        }
        for b in &mut self.body.indexes {
            b.sync_stamp = stamp;
        }
        Ok(())
    }

    /// Writes every change to disk and syncs (the table stays open, marked dirty).
    pub fn flush(&mut self) -> Result<()> {
        if !self.marked_dirty {
            return Ok(());
        }
        self.write_all()?;
        // The header's counters are brought up to date too. An unlogged table stays
        // marked dirty (a crash before close still needs verification); a logged
        // table is consistent on disk now and is not rewritten until it changes.
        self.persist_header()?;
        if self.is_logged() {
            self.marked_dirty = false;
        }
        Ok(())
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

pub(super) fn var_slot(slot: &[u8]) -> (u64, u32) {
    (
        u64::from_le_bytes(slot[..8].try_into().expect("slot has 12 bytes")),
        u32::from_le_bytes(slot[8..12].try_into().expect("slot has 12 bytes")),
    )
}
