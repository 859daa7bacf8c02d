//! A table's part in a commit: apply changes, capture the pages they touched, and
//! either hand those pages to the log or put everything back.
//!
//! For a logged table the commit (see `txn::commit`) calls, under the table's
//! write lock: [`TableCore::begin_commit`] (snapshot the counters, start capturing
//! pages — captured pages stay in the pool), [`TableCore::apply_change`] for each
//! change, [`TableCore::end_commit`]; then either [`TableCore::log_entries`] and,
//! once they are written to the log, [`TableCore::release_commit`] (pages may now
//! be written back, after the log is durable up to the commit), or
//! [`TableCore::abort_commit`] (every captured page and counter restored).

use crate::error::Result;
use crate::index::TreeState;
use crate::log::record::{Entry, FileRef, IndexState, TableState};
use crate::page::PageFile;
use crate::schema::Durability;
use crate::txn::Change;

use super::core::TableCore;
use super::header::HeaderBody;

/// What a failed commit puts back.
#[derive(Debug)]
pub(crate) struct Undo {
    body: HeaderBody,
    trees: Vec<TreeState>,
    blobs: Option<(u64, u64, usize)>,
    /// Page counts of the files: pages a failed commit allocated are cut off.
    pages: Vec<(Which, u64)>,
}

/// Which file of the table a captured page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Data,
    Blobs,
    Index(usize),
}

/// Pages of one file a commit changed, with their images from before it (None
/// for pages it allocated).
type FilePages = Vec<(u64, Option<Vec<u8>>)>;

/// The pages a commit changed.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    files: Vec<(Which, FilePages)>,
}

impl TableCore {
    /// True for a table whose changes go through the log.
    pub fn is_logged(&self) -> bool {
        self.body.durability == Durability::Logged
    }

    /// True when the table's rootpath has a log.
    pub fn env_has_wal(&self) -> bool {
        self.env.wal.is_some()
    }

    /// The rootpath's log.
    pub fn wal(&self) -> Option<std::sync::Arc<crate::log::Wal>> {
        self.env.wal.clone()
    }

    fn files(&self) -> Vec<(Which, &PageFile)> {
        let mut v = vec![(Which::Data, &self.data)];
        if let Some(b) = &self.blobs {
            v.push((Which::Blobs, b.file()));
        }
        for (i, idx) in self.indexes.iter().enumerate() {
            v.push((Which::Index(i), idx.tree.file()));
        }
        v
    }

    fn file(&self, w: Which) -> &PageFile {
        match w {
            Which::Data => &self.data,
            Which::Blobs => self.blobs.as_ref().expect("captured a blob page").file(),
            Which::Index(i) => self.indexes[i].tree.file(),
        }
    }

    fn file_ref(&self, w: Which) -> FileRef {
        match w {
            Which::Data => FileRef {
                file: format!("{}.rzd", self.name),
                incarnation: crate::db::recovery::data_incarnation(&self.body),
            },
            Which::Blobs => FileRef {
                file: self.body.blob_file.clone().unwrap_or_default(),
                incarnation: self.blobs.as_ref().map_or(0, |b| b.incarnation()),
            },
            Which::Index(i) => FileRef {
                file: self.indexes[i].file_name.clone(),
                incarnation: self.indexes[i].incarnation,
            },
        }
    }

    /// Snapshots the counters and starts capturing changed pages.
    pub fn begin_commit(&mut self) -> Undo {
        self.reserved.begin();
        for (_, f) in self.files() {
            f.begin_capture();
        }
        Undo {
            body: self.body.clone(),
            trees: self.indexes.iter().map(|i| i.tree.state).collect(),
            blobs: self.blobs.as_ref().map(|b| {
                let (free, fill) = b.free_and_fill();
                (free, fill, b.retired())
            }),
            pages: self
                .files()
                .into_iter()
                .map(|(w, f)| (w, f.page_count()))
                .collect(),
        }
    }

    /// Applies one change (checks included: a taken unique key fails here).
    /// Returns the recno an append got.
    pub fn apply_change(&mut self, c: &Change) -> Result<u64> {
        match c {
            Change::Append { recno: 0, values } => self.append(values),
            Change::Append { recno, values } => {
                self.reserve_through(*recno);
                self.append_at(*recno, values, false)?;
                self.reserved.settle(*recno);
                Ok(*recno)
            }
            Change::Update { recno, values } => self.update(*recno, values).map(|()| *recno),
            Change::SetDeleted { recno, deleted } => {
                self.set_deleted(*recno, *deleted).map(|_| *recno)
            }
            Change::Put {
                recno,
                values,
                deleted,
            } => self
                .put(*recno, values.as_deref(), *deleted)
                .map(|()| *recno),
            Change::Blank { recno } => {
                self.reserve_through(*recno);
                let blank = self.schema.empty_record();
                self.append_at(*recno, &blank, true)?;
                self.reserved.settle(*recno);
                Ok(*recno)
            }
        }
    }

    /// Stops capturing; returns what was captured.
    pub fn end_commit(&self) -> Captured {
        Captured {
            files: self
                .files()
                .into_iter()
                .map(|(w, f)| (w, f.end_capture()))
                .collect(),
        }
    }

    /// The table's counters as the log records them.
    pub fn table_state(&self) -> TableState {
        TableState {
            data: self.file_ref(Which::Data),
            record_count: self.body.record_count,
            deleted_count: self.body.deleted_count,
            serial_next: self.body.serial.map(|s| s.next),
            filled_to: self.reserved.filled_to(self.body.record_count),
            blobs: self.blobs.as_ref().map(|b| {
                let (free, fill) = b.free_and_fill();
                (
                    self.file_ref(Which::Blobs),
                    free,
                    fill,
                    b.file().page_count(),
                )
            }),
            indexes: self
                .indexes
                .iter()
                .enumerate()
                .map(|(i, idx)| {
                    let st = idx.tree.state;
                    (
                        self.file_ref(Which::Index(i)),
                        (idx.spec.key_len() + 8) as u32,
                        IndexState {
                            root: st.root,
                            height: st.height,
                            entries: st.entries,
                            free_head: st.free_head,
                            free_pages: st.free_pages,
                            pages: idx.tree.file().page_count(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The log entries of a commit: each captured page — in full the first time
    /// since the last checkpoint, afterwards only the bytes that changed — then
    /// the counters.
    pub fn log_entries(&self, cap: &Captured) -> Result<Vec<Entry>> {
        // Pages built from another page's content before the commit come
        // first: replay must find that page as the commit found it.
        let mut derived = Vec::new();
        let mut out = Vec::new();
        for (w, pages) in &cap.files {
            let f = self.file(*w);
            let r = self.file_ref(*w);
            let before_of = |p: u64| {
                pages
                    .binary_search_by_key(&p, |(q, _)| *q)
                    .ok()
                    .and_then(|i| pages[i].1.as_deref())
            };
            for (page, before) in pages {
                let image = f.image(*page)?;
                let patch = match before {
                    Some(b) if f.fully_logged(*page) => {
                        let ops = crate::log::patch::diff(b, &image);
                        if ops.is_empty() {
                            continue;
                        }
                        Some(ops)
                    }
                    _ => None,
                };
                let zeros;
                let (ops, whole) = match patch {
                    Some(ops) => (ops, false),
                    None => {
                        zeros = vec![0u8; image.len()];
                        (crate::log::patch::diff(&zeros, &image), true)
                    }
                };
                let plain = crate::log::patch::payload(&ops);
                // A split's new node: copies of the node it came from, when
                // that node's image is in the log and the copies are shorter.
                let source = f
                    .source_of(*page)
                    .filter(|&s| s != *page && f.fully_logged(s))
                    .and_then(|s| before_of(s).map(|b| (s, b)));
                if let Some((s, b)) = source {
                    if let Some((copies, ops)) = crate::log::patch::derive(b, &image, plain) {
                        derived.push(Entry::Derived {
                            file: r.clone(),
                            page: *page,
                            source: s,
                            copies,
                            ops,
                        });
                        continue;
                    }
                }
                out.push(if !whole {
                    Entry::Patch {
                        file: r.clone(),
                        page: *page,
                        ops,
                    }
                // Whatever is shorter: a leaf or a page of variable records is
                // rarely full, and its zero tail need not be logged (a commit
                // then more often fits one block).
                } else if plain + 64 <= image.len() {
                    Entry::Sparse {
                        file: r.clone(),
                        page: *page,
                        ops,
                    }
                } else {
                    Entry::Page {
                        file: r.clone(),
                        page: *page,
                        image,
                    }
                });
            }
        }
        out.push(Entry::State(self.table_state()));
        derived.append(&mut out);
        Ok(derived)
    }

    /// Forgets which pages were logged in full (after a checkpoint).
    pub fn forget_logged(&self) {
        for (_, f) in self.files() {
            f.forget_logged();
        }
    }

    /// The commit's frames are in the log up to `lsn`: its pages may be written
    /// back once the log is durable that far.
    pub fn release_commit(&self, cap: &Captured, lsn: u64) {
        for (w, pages) in &cap.files {
            let f = self.file(*w);
            for (page, _) in pages {
                f.release(*page, lsn);
            }
        }
    }

    /// The commit of an unlogged table is in: its captured pages may be
    /// written back whenever the pool likes (no log to wait for).
    pub fn release_unlogged(&self, cap: &Captured) {
        for (w, pages) in &cap.files {
            let f = self.file(*w);
            for (page, _) in pages {
                f.unhold(*page);
            }
        }
    }

    /// Puts every captured page and counter back as they were before the commit.
    pub fn abort_commit(&mut self, cap: Captured, undo: Undo) {
        for (w, pages) in &cap.files {
            let f = self.file(*w);
            for (page, before) in pages {
                if let Err(e) = f.restore(*page, before.as_deref()) {
                    tracing::error!(table = %self.name, page, error = %e, "could not restore a page after a failed commit");
                }
            }
        }
        self.body = undo.body;
        for (i, st) in undo.trees.into_iter().enumerate() {
            if let Some(idx) = self.indexes.get_mut(i) {
                idx.tree.state = st;
                idx.tree.touch();
            }
        }
        if let (Some(b), Some((free, fill, retired))) = (&self.blobs, undo.blobs) {
            b.set_free_and_fill(free, fill);
            b.truncate_retired(retired);
        }
        self.reserved.undo();
        for (w, pages) in undo.pages {
            let f = self.file(w);
            if f.page_count() > pages {
                if let Err(e) = f.shrink_to(pages) {
                    tracing::error!(table = %self.name, file = %f.path().display(), error = %e, "could not give back the pages of a failed commit");
                }
            }
        }
    }
}
