//! Maintenance: index create and drop, `check`, and the rewrites — `rebuild`,
//! `pack`, `alter` — that write a new file set and swap it in.
//!
//! A rewrite writes a complete new generation of files (`NAME.rzd.new`, and blob
//! and index files named with the new generation), syncs it, and commits by
//! renaming `NAME.rzd.new` over `NAME.rzd`: the data file's header names the blob
//! and index files of its generation, so the rename switches the whole set at
//! once. Until then the original is untouched; a crash before it leaves files that
//! the next open of the rootpath or the table removes.

use std::cell::Cell;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::index::{Index, IndexDef, KeySpec};
use crate::schema::{Date, Decimal, FieldType, Memo, Schema, Value};

use super::core::{blob_name, index_name, needs_blobs, TableCore, TablePaths};
use super::header::IndexBinding;
use super::TableOptions;

/// What a rewrite did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RewriteReport {
    /// Records read from the original.
    pub records_in: u64,
    /// Records written to the new file set.
    pub records_out: u64,
    /// Records that could not be read and were kept as deleted blank records.
    pub salvaged: u64,
    /// Memos that could not be read and were emptied.
    pub memos_lost: u64,
}

/// A record for the new file set: values with memos as data, and its flag.
struct NewRecord {
    values: Vec<Value>,
    deleted: bool,
}

impl TableCore {
    /// Creates an index on the table, building it from every record.
    pub fn create_index(
        &mut self,
        def: &IndexDef,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let mut def = def.clone();
        def.name = def.name.to_ascii_lowercase();
        let spec = KeySpec::compile(&self.name, &self.schema, &def)?;
        if self.indexes.iter().any(|i| i.name() == def.name) {
            return Err(Error::IndexExists {
                table: self.name.clone(),
                index: def.name,
            });
        }
        let file = index_name(&self.name, &def.name, self.body.file_gen);
        let env = self.env.clone();
        let mut index = Index::create(
            &env.storage,
            &env.pool,
            &env.root,
            &file,
            self.data.page_size(),
            spec,
        )?;
        if let Err(e) = self.build_index_with(&mut index, progress) {
            drop(index);
            let _ = env.storage.remove(&env.root.join(&file));
            return Err(e);
        }
        self.body.indexes.push(IndexBinding {
            name: def.name.clone(),
            file,
            sync_stamp: self.body.sync_stamp,
            definition: postcard::to_allocvec(&def).map_err(|e| Error::InvalidSchema {
                table: self.name.clone(),
                reason: format!("index definition does not encode: {e}"),
            })?,
        });
        self.indexes.push(index);
        self.attach_wal();
        if let Err(e) = self.persist_header() {
            self.indexes.pop();
            self.body.indexes.pop();
            return Err(e);
        }
        tracing::info!(table = %self.name, index = %def.name, entries = self.indexes.last().map_or(0, |i| i.tree.state.entries), "index created");
        Ok(())
    }

    /// Drops an index and removes its file.
    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        let i = self.index_pos(name)?;
        let index = self.indexes.remove(i);
        let binding = self.body.indexes.remove(i);
        self.persist_header()?;
        let path = index.path();
        drop(index);
        self.env
            .storage
            .remove(&path)
            .map_err(|e| Error::io(&path, e))?;
        tracing::info!(table = %self.name, index = %binding.name, "index dropped");
        Ok(())
    }

    /// Re-creates every index from the data, and recovers what the data pages
    /// still hold: a record that cannot be read is kept as a deleted blank record
    /// (so recnos stay stable), a memo that cannot be read is emptied.
    pub fn rebuild(&mut self) -> Result<RewriteReport> {
        let schema = (*self.schema).clone();
        let lost = Cell::new(0);
        let salvaged = Cell::new(0);
        let this = &*self;
        let records = (1..=self.body.record_count).map(|r| match this.read(r) {
            Ok(rec) => Ok(NewRecord {
                values: this.with_memo_data(&rec, &lost),
                deleted: rec.is_deleted(),
            }),
            Err(e) => {
                tracing::warn!(table = %this.name, recno = r, error = %e, "record unreadable; kept as a deleted blank record");
                salvaged.set(salvaged.get() + 1);
                Ok(NewRecord {
                    values: schema.empty_record(),
                    deleted: true,
                })
            }
        });
        let mut report = RewriteReport {
            records_in: self.body.record_count,
            ..RewriteReport::default()
        };
        let set = this.write_generation(&schema, records, &mut report)?;
        report.salvaged = salvaged.get();
        report.memos_lost = lost.get();
        self.swap_in(set)?;
        Ok(report)
    }

    /// Removes deleted records for good, renumbering the rest, and rebuilds the
    /// indexes.
    pub fn pack(&mut self) -> Result<RewriteReport> {
        let schema = (*self.schema).clone();
        let lost = Cell::new(0);
        let this = &*self;
        let records = (1..=self.body.record_count).filter_map(|r| match this.read(r) {
            Ok(rec) if rec.is_deleted() => None,
            Ok(rec) => Some(Ok(NewRecord {
                values: this.with_memo_data(&rec, &lost),
                deleted: false,
            })),
            Err(e) => Some(Err(e)),
        });
        let mut report = RewriteReport {
            records_in: self.body.record_count,
            ..RewriteReport::default()
        };
        let set = this.write_generation(&schema, records, &mut report)?;
        report.memos_lost = lost.get();
        self.swap_in(set)?;
        Ok(report)
    }

    /// Changes the table's fields: a field of the new schema takes the value of
    /// the old field of the same name, converted where the data allows (Char
    /// digits to Numeric and back, widening, …), or its empty value when new.
    /// Any value that does not convert aborts the alter with the table untouched.
    pub fn alter(&mut self, new_schema: &Schema) -> Result<RewriteReport> {
        let max_fixed = self.data.page_size() as usize - crate::page::PAGE_HEADER - 1;
        new_schema.validate(&self.name, self.body.format, max_fixed)?;
        for b in &self.body.indexes {
            let def: IndexDef =
                postcard::from_bytes(&b.definition).map_err(|e| Error::InvalidSchema {
                    table: self.name.clone(),
                    reason: format!("index {} does not decode: {e}", b.name),
                })?;
            KeySpec::compile(&self.name, new_schema, &def).map_err(|e| Error::InvalidSchema {
                table: self.name.clone(),
                reason: format!(
                    "index {} does not fit the new fields ({e}); drop it first",
                    b.name
                ),
            })?;
        }
        let map: Vec<Option<usize>> = new_schema
            .fields()
            .iter()
            .map(|f| self.schema.position(&f.name))
            .collect();
        let lost = Cell::new(0);
        let this = &*self;
        let records =
            (1..=self.body.record_count).map(|r| -> Result<NewRecord> {
                let rec = this.read(r)?;
                let old = this.with_memo_data(&rec, &lost);
                let mut values = Vec::with_capacity(new_schema.len());
                for (f, src) in new_schema.fields().iter().zip(&map) {
                    values.push(match src {
                        None => f.ty.empty_value(),
                        Some(i) => convert(&old[*i], this.schema.fields()[*i].ty, f.ty).map_err(
                            |reason| Error::InvalidValue {
                                table: this.name.clone(),
                                field: f.name.clone(),
                                value: format!("{} in record {r}", old[*i]),
                                reason,
                            },
                        )?,
                    });
                }
                Ok(NewRecord {
                    values,
                    deleted: rec.is_deleted(),
                })
            });
        let mut report = RewriteReport {
            records_in: self.body.record_count,
            ..RewriteReport::default()
        };
        let set = this.write_generation(new_schema, records, &mut report)?;
        report.memos_lost = lost.get();
        self.swap_in(set)?;
        Ok(report)
    }

    /// A record's values with every stored memo replaced by its bytes.
    fn with_memo_data(&self, rec: &crate::Record, lost: &Cell<u64>) -> Vec<Value> {
        let mut values = rec.values().to_vec();
        for (i, v) in values.iter_mut().enumerate() {
            if let Value::Memo(Memo::Stored(_)) = v {
                *v = match self.memo_of(rec, i) {
                    Ok(bytes) => Value::Memo(Memo::Data(bytes)),
                    Err(e) => {
                        tracing::warn!(table = %self.name, recno = rec.recno(), error = %e, "memo unreadable; emptied");
                        lost.set(lost.get() + 1);
                        Value::Memo(Memo::Empty)
                    }
                };
            }
        }
        values
    }

    /// Writes `records` (in recno order) as a new file set with `schema` and the
    /// same indexes, fully synced but not yet in use. On error nothing of it is left.
    fn write_generation(
        &self,
        schema: &Schema,
        records: impl Iterator<Item = Result<NewRecord>>,
        report: &mut RewriteReport,
    ) -> Result<NewSet> {
        let env = self.env.clone();
        let gen = self.body.file_gen + 1;
        let page_size = self.data.page_size();
        let name = self.name.clone();
        let serial_field = self
            .body
            .serial
            .map(|s| self.schema.fields()[usize::from(s.field)].name.clone());
        let opts = TableOptions {
            format: self.body.format,
            page_size,
            durability: self.body.durability,
            serial: serial_field
                .clone()
                .filter(|f| schema.position(f).is_some()),
        };
        let mut body = TableCore::new_body(&env, &name, schema, &opts)?;
        body.file_id = self.body.file_id;
        body.path = self.body.path.clone();
        body.created_at = self.body.created_at;
        body.stats = self.body.stats;
        body.file_gen = gen;
        body.blob_file = needs_blobs(schema, self.body.format).then(|| blob_name(&name, gen));
        body.sync_stamp = self.body.sync_stamp + 1;
        let serial = body.serial.take().map(|mut s| {
            s.next = self.body.serial.map_or(1, |o| o.next);
            s
        });
        let defs: Vec<IndexDef> = self
            .body
            .indexes
            .iter()
            .map(|b| postcard::from_bytes(&b.definition))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::InvalidSchema {
                table: name.clone(),
                reason: format!("an index definition does not decode: {e}"),
            })?;
        let tmp = TablePaths::new(&env.root, &name)
            .data
            .with_extension("rzd.new");
        let mut files: Vec<PathBuf> = vec![tmp.clone()];
        files.extend(body.blob_file.iter().map(|b| env.root.join(b)));
        files.extend(
            defs.iter()
                .map(|d| env.root.join(index_name(&name, &d.name, gen))),
        );
        let result = (|| -> Result<()> {
            TableCore::create_files(&env, &tmp, &body, page_size)?;
            let (mut new, _) = TableCore::open_at(&env, &name, &tmp, false)?;
            let started = std::time::Instant::now();
            for (n, rec) in records.enumerate() {
                let rec = rec?;
                let recno = new.append(&rec.values)?;
                if rec.deleted {
                    new.set_deleted(recno, true)?;
                }
                if n % 100_000 == 99_999 {
                    tracing::info!(table = %name, written = n + 1, "rewriting table");
                }
            }
            report.records_out = new.body.record_count;
            new.body.serial = serial;
            for def in &defs {
                new.create_index(def, &mut |_, _| {})?;
            }
            new.close()?;
            tracing::info!(table = %name, records = report.records_out, secs = started.elapsed().as_secs_f64(), "new file set written");
            Ok(())
        })();
        if let Err(e) = result {
            for f in &files {
                let _ = env.storage.remove(f);
            }
            return Err(e);
        }
        Ok(NewSet { tmp, files })
    }

    /// Commits a new file set: renames its data file over the table's, reopens,
    /// and removes the previous generation's files.
    fn swap_in(&mut self, set: NewSet) -> Result<()> {
        let env = self.env.clone();
        let final_path = TablePaths::new(&env.root, &self.name).data;
        if let Err(e) = env
            .storage
            .rename(&set.tmp, &final_path)
            .map_err(|e| Error::io(&final_path, e))
        {
            for f in &set.files {
                let _ = env.storage.remove(f);
            }
            return Err(e);
        }
        // Committed: from here the new set is the table, whatever fails next.
        if let Err(e) = env.storage.sync_dir(&env.root) {
            tracing::warn!(root = %env.root.display(), error = %e, "directory sync after a rewrite failed");
        }
        let old_files: Vec<PathBuf> = self
            .body
            .blob_file
            .iter()
            .map(|b| env.root.join(b))
            .chain(self.body.indexes.iter().map(|b| env.root.join(&b.file)))
            .collect();
        let reopened = match TableCore::open(&env, &self.name) {
            Ok((core, _)) => core,
            Err(e) => {
                // This handle's files were replaced: never write through it again.
                self.data.poison();
                if let Some(b) = &self.blobs {
                    b.file().poison();
                }
                for i in &self.indexes {
                    i.tree.file().poison();
                }
                return Err(e);
            }
        };
        drop(std::mem::replace(self, reopened));
        for f in old_files {
            if !set.files.contains(&f) {
                if let Err(e) = env.storage.remove(&f) {
                    tracing::warn!(file = %f.display(), error = %e, "could not remove a file of the previous generation");
                }
            }
        }
        Ok(())
    }
}

/// A written, synced file set waiting to be swapped in.
struct NewSet {
    tmp: PathBuf,
    files: Vec<PathBuf>,
}

/// Converts a value between field types where the data allows.
fn convert(v: &Value, from: FieldType, to: FieldType) -> Result<Value, String> {
    use FieldType as T;
    let text = |v: &Value| -> String {
        match v {
            Value::Char(s) => s.trim().to_owned(),
            other => other.to_string(),
        }
    };
    Ok(match (from, to, v) {
        (T::Char(_), T::Char(_), _)
        | (T::Numeric { .. }, T::Numeric { .. }, _)
        | (T::Date, T::Date, _)
        | (T::Logical, T::Logical, _)
        | (T::Memo, T::Memo, _)
        | (T::Int64, T::Int64, _)
        | (T::Float64, T::Float64, _)
        | (T::Binary(_), T::Binary(_), _) => v.clone(),
        (T::Char(_), T::Numeric { .. }, _) => {
            let t = text(v);
            if t.is_empty() {
                Value::Numeric(Decimal::ZERO)
            } else {
                Value::Numeric(t.parse().map_err(|_| format!("{t:?} is not a number"))?)
            }
        }
        (T::Char(_), T::Int64, _) => {
            let t = text(v);
            Value::Int64(if t.is_empty() {
                0
            } else {
                t.parse().map_err(|_| format!("{t:?} is not an integer"))?
            })
        }
        (T::Char(_), T::Date, _) => Value::Date(
            Date::parse(&text(v)).ok_or_else(|| format!("{:?} is not a date", text(v)))?,
        ),
        (T::Char(_), T::Logical, _) => {
            Value::Logical(match text(v).to_ascii_uppercase().as_str() {
                "T" | "Y" | "S" | "1" | ".T." | "TRUE" => true,
                "F" | "N" | "0" | ".F." | "FALSE" | "" => false,
                other => return Err(format!("{other:?} is not a logical")),
            })
        }
        (T::Char(_), T::Memo, _) => Value::Memo(Memo::Data(text(v).into_bytes())),
        (T::Numeric { .. } | T::Int64 | T::Float64, T::Char(_), _) => Value::Char(text(v)),
        (T::Date, T::Char(_), Value::Date(d)) => Value::Char(if d.is_empty() {
            String::new()
        } else {
            d.yyyymmdd().to_string()
        }),
        (T::Logical, T::Char(_), Value::Logical(b)) => {
            Value::Char(if *b { "T" } else { "F" }.into())
        }
        (T::Memo, T::Char(_), Value::Memo(Memo::Data(b))) => Value::Char(
            String::from_utf8(b.clone()).map_err(|_| "the memo is not UTF-8 text".to_owned())?,
        ),
        (T::Memo, T::Char(_), Value::Memo(_)) => Value::Char(String::new()),
        (T::Int64, T::Numeric { .. }, Value::Int64(i)) => Value::Numeric(Decimal::from(*i)),
        (T::Numeric { .. }, T::Int64, Value::Numeric(d)) => {
            let whole = d.rescale(0).ok_or_else(|| format!("{d} has decimals"))?;
            Value::Int64(
                i64::try_from(whole.mantissa()).map_err(|_| format!("{d} does not fit Int64"))?,
            )
        }
        (T::Float64, T::Numeric { .. }, Value::Float64(f)) => Value::Numeric(
            format!("{f}")
                .parse()
                .map_err(|_| format!("{f} is not a finite decimal"))?,
        ),
        (T::Numeric { .. }, T::Float64, Value::Numeric(d)) => {
            let f = d.to_f64();
            let back: Decimal = format!("{f}")
                .parse()
                .map_err(|_| format!("{d} does not fit Float64"))?;
            if back.rescale(d.scale()) != Some(*d) {
                return Err(format!("{d} cannot be held exactly by a Float64"));
            }
            Value::Float64(f)
        }
        (T::Int64, T::Float64, Value::Int64(i)) => {
            if i.unsigned_abs() > 1 << 53 {
                return Err(format!("{i} cannot be held exactly by a Float64"));
            }
            Value::Float64(*i as f64)
        }
        _ => return Err(format!("cannot convert {from} to {to}")),
    })
}
