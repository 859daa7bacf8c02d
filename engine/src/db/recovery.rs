//! Crash recovery: replay every complete commit found in the log segments.
//!
//! Recovery is redo-only. Commits reach the log as full images of the pages they
//! changed plus the tables' counters, written before anything of the commit may
//! reach a table file; uncommitted work never reaches the log or the files. So
//! replaying, in log order, each commit whose closing frame is intact restores
//! exactly the committed state: pages left torn by the crash are overwritten
//! whole, later evictions are overwritten with the same bytes. Replaying twice
//! gives the same result, so a crash during recovery is followed by the same
//! recovery. Only after every touched file is synced are the segments removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::TreeState;
use crate::log::record::{decode_all, Entry, FileRef, TableState};
use crate::log::{segment_name, segments, WAL_DIR};
use crate::page::{layout, BufferPool, PageFile};
use crate::storage::{OpenMode, Storage};
use crate::table::header;

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Log segments read.
    pub segments: usize,
    /// Bytes of log read.
    pub bytes: u64,
    /// Commits replayed.
    pub commits: u64,
    /// Page images written.
    pub pages: u64,
    /// Records skipped because their file no longer exists or was re-created.
    pub skipped: u64,
    /// A partial commit at the end of the log was ignored.
    pub torn_tail: bool,
    /// Segments older than a completed checkpoint, found again after a crash
    /// undid their removal, and not replayed.
    pub stale_segments: usize,
    /// The last segment number (new segments continue after it).
    pub last_segment: u64,
}

/// The incarnation of a data file, from its header.
pub fn data_incarnation(body: &header::HeaderBody) -> u64 {
    (body.file_id as u64) ^ (u64::from(body.file_gen) << 48) ^ ((body.file_id >> 64) as u64)
}

struct Files {
    storage: Arc<dyn Storage>,
    pool: Arc<BufferPool>,
    root: PathBuf,
    open: HashMap<String, Option<(PageFile, u64)>>,
}

impl Files {
    /// The file and its incarnation, or None when it does not exist.
    fn get(&mut self, f: &FileRef) -> Result<Option<&PageFile>> {
        if !self.open.contains_key(&f.file) {
            let path = self.root.join(&f.file);
            let opened = match self.storage.open(&path, OpenMode::Existing) {
                Ok(sf) => {
                    let is_data = f.file.ends_with(".rzd");
                    let (page_size, inc) = if is_data {
                        match header::read(sf.as_ref(), &path) {
                            Ok(h) => (h.page_size, Some(data_incarnation(&h.body))),
                            Err(e) => {
                                tracing::warn!(file = %path.display(), error = %e, "log names an unreadable data file; skipping its records");
                                (0, None)
                            }
                        }
                    } else {
                        (sniff_page_size(sf.as_ref()), None)
                    };
                    if page_size == 0 {
                        None
                    } else {
                        let pf = PageFile::open(self.pool.clone(), sf, &path, page_size)?;
                        let inc = inc.or_else(|| {
                            if f.file.ends_with(".rzb") {
                                crate::record::blob_incarnation(&pf)
                            } else {
                                crate::index::read_incarnation(&pf)
                            }
                        });
                        inc.map(|i| (pf, i))
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(&path, e)),
            };
            self.open.insert(f.file.clone(), opened);
        }
        Ok(match self.open.get(&f.file) {
            Some(Some((pf, inc))) if *inc == f.incarnation => Some(pf),
            _ => None,
        })
    }
}

/// Page size of a blob or index file, from its header page.
fn sniff_page_size(f: &dyn crate::storage::StorageFile) -> u32 {
    let mut b = [0u8; 40];
    if f.read_at(0, &mut b).is_err() {
        return 0;
    }
    let size = u32::from_le_bytes(b[36..40].try_into().expect("4 bytes"));
    if layout::valid_page_size(size) {
        size
    } else {
        0
    }
}

/// Replays the log of `root`, then removes its segments.
pub fn recover(storage: &Arc<dyn Storage>, root: &Path) -> Result<RecoveryReport> {
    let dir = root.join(WAL_DIR);
    let all = segments(storage.as_ref(), &dir)?;
    let mut report = RecoveryReport {
        last_segment: all.last().copied().unwrap_or(0),
        ..RecoveryReport::default()
    };
    if all.is_empty() {
        return Ok(report);
    }
    // Only the consecutive run ending with the newest segment: one before a
    // gap predates a completed checkpoint (see `log::wal`), and replaying its
    // page images would put back what later checkpoints wrote over.
    let start = (1..all.len())
        .rev()
        .find(|&i| all[i - 1] + 1 != all[i])
        .unwrap_or(0);
    let (stale, seqs) = all.split_at(start);
    if !stale.is_empty() {
        tracing::warn!(segments = ?stale, "log segments older than a completed checkpoint came back; not replayed");
        report.stale_segments = stale.len();
    }
    let started = std::time::Instant::now();
    let mut files = Files {
        storage: storage.clone(),
        pool: BufferPool::new(1 << 20),
        root: root.to_path_buf(),
        open: HashMap::new(),
    };
    let mut states: HashMap<String, TableState> = HashMap::new();
    let mut group: Vec<Entry> = Vec::new();
    'segments: for seq in seqs {
        let path = dir.join(segment_name(*seq));
        let f = storage
            .open(&path, OpenMode::Existing)
            .map_err(|e| Error::io(&path, e))?;
        let len = f.len().map_err(|e| Error::io(&path, e))?;
        let mut bytes = vec![0u8; len as usize];
        f.read_at(0, &mut bytes).map_err(|e| Error::io(&path, e))?;
        report.segments += 1;
        report.bytes += len;
        let (entries, used) = decode_all(&bytes);
        for e in entries {
            match e {
                Entry::Commit { .. } => {
                    for g in group.drain(..) {
                        match g {
                            Entry::Page {
                                file,
                                page,
                                mut image,
                            } => match files.get(&file)? {
                                Some(pf) if image.len() == pf.page_size() as usize => {
                                    pf.write_direct(page, &mut image)?;
                                    report.pages += 1;
                                }
                                _ => report.skipped += 1,
                            },
                            Entry::Delta {
                                file,
                                page,
                                offset,
                                bytes,
                            } => match files.get(&file)? {
                                Some(pf)
                                    if offset as usize + bytes.len() <= pf.page_size() as usize =>
                                {
                                    // The page's full image was replayed earlier in
                                    // this log, so the page on disk is sound now.
                                    let mut image = vec![0u8; pf.page_size() as usize];
                                    pf.read_direct(page, &mut image)?;
                                    image[offset as usize..offset as usize + bytes.len()]
                                        .copy_from_slice(&bytes);
                                    pf.write_direct(page, &mut image)?;
                                    report.pages += 1;
                                }
                                _ => report.skipped += 1,
                            },
                            // A sparse image builds the page from zeros; a
                            // patch, as a delta, applies over the page as this
                            // log rebuilt it (its full image came earlier).
                            Entry::Sparse { file, page, ops } => {
                                let ok = patch_page(&mut files, &file, page, &ops, false)?;
                                tally(&mut report, ok);
                            }
                            Entry::Patch { file, page, ops } => {
                                let ok = patch_page(&mut files, &file, page, &ops, true)?;
                                tally(&mut report, ok);
                            }
                            Entry::Derived {
                                file,
                                page,
                                source,
                                copies,
                                ops,
                            } => {
                                let ok =
                                    derived_page(&mut files, &file, page, source, &copies, &ops)?;
                                tally(&mut report, ok);
                            }
                            Entry::State(s) => {
                                states.insert(s.data.file.clone(), s);
                            }
                            Entry::StateV1(s) => {
                                states.insert(s.data.file.clone(), s.into());
                            }
                            Entry::Commit { .. } => {}
                        }
                    }
                    report.commits += 1;
                }
                other => group.push(other),
            }
        }
        // Zeros after the last commit are the segment's prepared space.
        if used < bytes.len() && bytes[used..].iter().any(|&b| b != 0) {
            // A damaged or partial frame ends the log: what follows it, in this
            // segment or later ones, was never acknowledged as durable after it.
            report.torn_tail = true;
            tracing::warn!(segment = %path.display(), at = used, "log ends with a partial commit; ignored");
            break 'segments;
        }
    }
    if !group.is_empty() {
        report.torn_tail = true;
    }
    for state in states.values() {
        apply_state(&mut files, state, &mut report)?;
    }
    for (pf, _) in files.open.values().flatten() {
        pf.sync()?;
    }
    drop(files);
    for seq in &all {
        let p = dir.join(segment_name(*seq));
        storage.remove(&p).map_err(|e| Error::io(&p, e))?;
    }
    storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    tracing::info!(
        commits = report.commits,
        pages = report.pages,
        bytes = report.bytes,
        secs = started.elapsed().as_secs_f64(),
        "recovery replayed the log"
    );
    Ok(report)
}

/// Writes a table's counters (after its pages were replayed) into its headers.
fn apply_state(files: &mut Files, s: &TableState, report: &mut RecoveryReport) -> Result<()> {
    let Some(data) = files.get(&s.data)? else {
        report.skipped += 1;
        return Ok(());
    };
    let loaded = header::read(data.storage().as_ref(), data.path())?;
    let mut body = loaded.body;
    body.record_count = s.record_count;
    body.deleted_count = s.deleted_count;
    body.filled_to = s.filled_to.min(s.record_count);
    if let (Some(serial), Some(next)) = (&mut body.serial, s.serial_next) {
        serial.next = next;
    }
    body.clean = true;
    for b in &mut body.indexes {
        b.sync_stamp = body.sync_stamp;
    }
    header::write(data, &body, loaded.generation + 1)?;
    header::write(data, &body, loaded.generation + 2)?;
    let stamp = body.sync_stamp;
    if let Some((f, free, fill, pages)) = &s.blobs {
        if let Some(pf) = files.get(f)? {
            crate::record::write_blob_header(pf, *free, *fill, f.incarnation, *pages)?;
        }
    }
    for (f, klen, st) in &s.indexes {
        if let Some(pf) = files.get(f)? {
            let tree = TreeState {
                root: st.root,
                height: st.height,
                entries: st.entries,
                free_head: st.free_head,
                free_pages: st.free_pages,
            };
            crate::index::write_header_page(pf, *klen, tree, stamp, f.incarnation, st.pages)?;
        }
    }
    Ok(())
}

/// Applies a patch's operations to `page` of `file` — over the page as it is
/// on disk (`over_disk`), or over zeros — and writes it; false when the file
/// is not one recovery knows or an operation reaches outside the page.
fn patch_page(
    files: &mut Files,
    file: &FileRef,
    page: u64,
    ops: &[crate::log::patch::PatchOp],
    over_disk: bool,
) -> Result<bool> {
    let Some(pf) = files.get(file)? else {
        return Ok(false);
    };
    let mut image = vec![0u8; pf.page_size() as usize];
    if over_disk {
        pf.read_direct(page, &mut image)?;
    }
    if !crate::log::patch::apply(&mut image, ops) {
        return Ok(false);
    }
    pf.write_direct(page, &mut image)?;
    Ok(true)
}

/// Builds `page` from zeros, the `copies` out of `source` as this log rebuilt
/// it so far (its image came earlier in the log, and the commit's own
/// changes to it come after), then `ops`. False when the log's ranges do not
/// fit the pages — a damaged log.
fn derived_page(
    files: &mut Files,
    file: &FileRef,
    page: u64,
    source: u64,
    copies: &[(u32, u32, u32)],
    ops: &[crate::log::patch::PatchOp],
) -> Result<bool> {
    let Some(pf) = files.get(file)? else {
        return Ok(false);
    };
    let size = pf.page_size() as usize;
    let mut from = vec![0u8; size];
    pf.read_direct(source, &mut from)?;
    let mut image = vec![0u8; size];
    if !crate::log::patch::copy_ranges(&from, &mut image, copies)
        || !crate::log::patch::apply(&mut image, ops)
    {
        return Ok(false);
    }
    pf.write_direct(page, &mut image)?;
    Ok(true)
}

/// Counts a page replayed, or skipped.
fn tally(report: &mut RecoveryReport, applied: bool) {
    match applied {
        true => report.pages += 1,
        false => report.skipped += 1,
    }
}
