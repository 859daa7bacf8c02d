//! Log records and their framing.
//!
//! A frame is `[payload length u32][crc32 of payload u32][payload]`, the payload a
//! postcard-encoded [`Entry`]. A commit is a run of `Page` and `State` entries
//! closed by a `Commit` entry; recovery applies a run only when its `Commit` frame
//! is intact, so a torn or partial tail is ignored as a whole.

use serde::{Deserialize, Serialize};

/// Frame header bytes.
pub const FRAME_HEADER: usize = 8;
/// Largest payload accepted when reading (a page image plus its names).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Where a logged page belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// File name inside the rootpath.
    pub file: String,
    /// The file's incarnation: a record is applied only to the same incarnation,
    /// never to a file that was since dropped and created again under that name.
    pub incarnation: u64,
}

/// The persistent counters of an index after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    /// Root page.
    pub root: u64,
    /// Levels.
    pub height: u32,
    /// Entries.
    pub entries: u64,
    /// Free list head.
    pub free_head: u64,
    /// Free pages.
    pub free_pages: u64,
    /// Pages in the file: any beyond were allocated by a commit that never
    /// completed, and are cut off.
    pub pages: u64,
}

/// [`IndexState`] as logs written before `pages` existed hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStateV1 {
    /// Root page.
    pub root: u64,
    /// Levels.
    pub height: u32,
    /// Entries.
    pub entries: u64,
    /// Free list head.
    pub free_head: u64,
    /// Free pages.
    pub free_pages: u64,
}

/// A table's header counters after a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    /// The data file.
    pub data: FileRef,
    /// Records, deleted included.
    pub record_count: u64,
    /// Deleted records.
    pub deleted_count: u64,
    /// Next serial number, if the table has a serial field.
    pub serial_next: Option<u64>,
    /// The blob file, its free-list head, fill page and page count.
    pub blobs: Option<(FileRef, u64, u64, u64)>,
    /// Each index file, its key length and its tree counters.
    pub indexes: Vec<(FileRef, u32, IndexState)>,
    /// Every recno up to this one holds a record (see the data header's
    /// `filled_to`).
    pub filled_to: u64,
}

/// [`TableState`] as logs written before `filled_to` existed hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStateV1 {
    /// The data file.
    pub data: FileRef,
    /// Records, deleted included.
    pub record_count: u64,
    /// Deleted records.
    pub deleted_count: u64,
    /// Next serial number.
    pub serial_next: Option<u64>,
    /// The blob file, free-list head, fill page.
    pub blobs: Option<(FileRef, u64, u64)>,
    /// Each index file, key length, tree counters.
    pub indexes: Vec<(FileRef, u32, IndexStateV1)>,
}

impl From<TableStateV1> for TableState {
    fn from(v: TableStateV1) -> TableState {
        TableState {
            data: v.data,
            record_count: v.record_count,
            deleted_count: v.deleted_count,
            serial_next: v.serial_next,
            // Page counts unknown: nothing is cut off.
            blobs: v.blobs.map(|(f, free, fill)| (f, free, fill, 0)),
            indexes: v
                .indexes
                .into_iter()
                .map(|(f, klen, s)| {
                    let st = IndexState {
                        root: s.root,
                        height: s.height,
                        entries: s.entries,
                        free_head: s.free_head,
                        free_pages: s.free_pages,
                        pages: 0,
                    };
                    (f, klen, st)
                })
                .collect(),
            // Unknown: the table is scanned for empty slots at its next open.
            filled_to: 0,
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// The full image of a page after a commit.
    Page {
        /// The file.
        file: FileRef,
        /// The page number.
        page: u64,
        /// The page's bytes (unsealed; recovery seals them). Serialized as one
        /// byte string (the same postcard bytes as a sequence of u8, written
        /// with one copy instead of one call per byte).
        #[serde(with = "serde_bytes")]
        image: Vec<u8>,
    },
    /// A table's counters after a commit, as older logs hold them (read only;
    /// its position in this enum is its tag on disk).
    StateV1(TableStateV1),
    /// Closes a commit.
    Commit {
        /// The transaction's id.
        txn: u64,
    },
    /// The changed bytes of a page whose full image was logged earlier in the
    /// same log (since the last checkpoint).
    Delta {
        /// The file.
        file: FileRef,
        /// The page number.
        page: u64,
        /// Where the changed bytes start in the page.
        offset: u32,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A table's counters after a commit.
    State(TableState),
    /// What changed in a page whose full image was logged earlier in the same
    /// log (since the last checkpoint), as operations applied in order.
    Patch {
        /// The file.
        file: FileRef,
        /// The page number.
        page: u64,
        /// The operations.
        ops: Vec<super::patch::PatchOp>,
    },
    /// The full image of a page, as the operations that build it from a page
    /// of zeros (written when shorter than the page: its empty tail is left
    /// out).
    Sparse {
        /// The file.
        file: FileRef,
        /// The page number.
        page: u64,
        /// The operations.
        ops: Vec<super::patch::PatchOp>,
    },
    /// The full image of a new page (or one not logged since the last
    /// checkpoint) built mostly from another page of the same file as it was
    /// before this commit — a split's new node, which takes half of the old
    /// one's entries: a page of zeros, the `copies` (`from` in `source`, `to`
    /// here, `len` bytes), then `ops`. Written only when `source`'s image is
    /// in the log since the last checkpoint, and ahead of every other change
    /// of the commit, so replay finds `source` as the commit found it.
    Derived {
        /// The file.
        file: FileRef,
        /// The page built.
        page: u64,
        /// The page copied from.
        source: u64,
        /// (from, to, len) byte ranges copied.
        copies: Vec<(u32, u32, u32)>,
        /// The operations applied after the copies.
        ops: Vec<super::patch::PatchOp>,
    },
}

/// Appends the frame of `e` to `out`.
pub fn encode(e: &Entry, out: &mut Vec<u8>) {
    // Serialised in place after a header filled in afterwards: no buffer of
    // its own per entry (a large commit has many).
    let at = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    let mut buf = postcard::to_extend(e, std::mem::take(out)).expect("log entries always encode");
    let payload = &buf[at + FRAME_HEADER..];
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    *out = buf;
}

/// A log sync pads the log with zeros up to this boundary, so the commits
/// written after it start on a fresh page instead of one the kernel may be
/// writing back (which would make them wait for that sync). Commits written
/// between two syncs follow each other directly. (Logs written before this
/// padded every commit; they read the same.)
pub const ALIGN: usize = 4096;

/// Bytes of zero padding that bring `len` to the next [`ALIGN`] boundary.
pub fn padding(len: usize) -> usize {
    (ALIGN - len % ALIGN) % ALIGN
}

/// The entry framed at `at`, and where its frame ends; None when there is no
/// whole, intact frame there.
fn frame_at(bytes: &[u8], at: usize) -> Option<(Entry, usize)> {
    if at + FRAME_HEADER > bytes.len() {
        return None;
    }
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_PAYLOAD || at + FRAME_HEADER + len > bytes.len() {
        return None;
    }
    let payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let entry = postcard::from_bytes::<Entry>(payload).ok()?;
    Some((entry, at + FRAME_HEADER + len))
}

/// Decodes the frames in `bytes` up to the first damaged or partial one (or the
/// zeros after the last commit). Returns the entries and how many bytes they took.
///
/// After a commit comes either the next frame at once (commits written
/// before one sync) or zeros to the boundary (a sync's padding, or the
/// prepared end of the log). A frame is looked for first: its length is never
/// zero, so padding cannot pass for one, while a frame starting just before a
/// boundary may begin with zero bytes.
pub fn decode_all(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    let mut after_commit = false;
    loop {
        if let Some((entry, end)) = frame_at(bytes, at) {
            after_commit = matches!(entry, Entry::Commit { .. });
            out.push(entry);
            at = end;
            continue;
        }
        if after_commit {
            after_commit = false;
            let next = (at + padding(at)).min(bytes.len());
            if next > at && bytes[at..next].iter().all(|&b| b == 0) {
                at = next;
                continue;
            }
        }
        break;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as the log writes them: zeros after each commit to the boundary.
    fn write(entries: &[Entry]) -> Vec<u8> {
        let mut buf = Vec::new();
        for e in entries {
            encode(e, &mut buf);
            if matches!(e, Entry::Commit { .. }) {
                buf.resize(buf.len() + padding(buf.len()), 0);
            }
        }
        buf
    }

    fn page(file: &str, page: u64, fill: u8, len: usize) -> Entry {
        Entry::Page {
            file: FileRef {
                file: file.into(),
                incarnation: 7,
            },
            page,
            image: vec![fill; len],
        }
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_ignored() {
        let entries = vec![
            page("t.rzd", 3, 9, 100),
            Entry::Commit { txn: 1 },
            page("t.rzd", 4, 1, 50),
        ];
        let buf = write(&entries);
        let (got, used) = decode_all(&buf);
        assert_eq!(got, entries);
        assert_eq!(used, buf.len());
        for cut in 1..buf.len() {
            let (got, used) = decode_all(&buf[..cut]);
            assert!(got.len() < 3 && used <= cut);
        }
        let mut bad = buf.clone();
        bad[20] ^= 1;
        assert!(decode_all(&bad).0.is_empty());
    }

    #[test]
    fn padding_after_commits_is_skipped_and_garbage_in_it_is_not() {
        let buf = write(&[Entry::Commit { txn: 1 }, Entry::Commit { txn: 2 }]);
        assert_eq!(buf.len(), 2 * ALIGN);
        let (got, used) = decode_all(&buf);
        assert_eq!(
            got,
            vec![Entry::Commit { txn: 1 }, Entry::Commit { txn: 2 }]
        );
        assert_eq!(used, buf.len());
        // A zero tail (a preallocated or dropped end) ends the log cleanly.
        let mut tail = buf.clone();
        tail.resize(3 * ALIGN + 100, 0);
        assert_eq!(decode_all(&tail).0.len(), 2);
        // Non-zero bytes in the padding are damage: stop there.
        let mut bad = buf.clone();
        bad[ALIGN - 5] = 1;
        assert_eq!(decode_all(&bad).0.len(), 1);
        // A commit ending a byte before the boundary, then a frame whose length
        // starts with a zero byte: both read correctly.
        // Grow a page image until the commit after it ends exactly 1 byte short.
        let n = (0..ALIGN)
            .find(|&n| {
                let mut t = Vec::new();
                encode(&page("a", 1, 1, n), &mut t);
                encode(&Entry::Commit { txn: 3 }, &mut t);
                t.len() % ALIGN == ALIGN - 1
            })
            .expect("some image length ends there");
        let tight = write(&[
            page("a", 1, 1, n),
            Entry::Commit { txn: 3 },
            page("b", 2, 2, 256),
        ]);
        assert_eq!(decode_all(&tight).0.len(), 3);
    }

    #[test]
    fn commits_between_syncs_follow_each_other_unpadded() {
        // Two commits back to back, then a sync's padding, then another.
        let mut buf = Vec::new();
        encode(&page("a", 1, 1, 100), &mut buf);
        encode(&Entry::Commit { txn: 1 }, &mut buf);
        encode(&Entry::Commit { txn: 2 }, &mut buf);
        buf.resize(buf.len() + padding(buf.len()), 0);
        encode(&Entry::Commit { txn: 3 }, &mut buf);
        let (got, _) = decode_all(&buf);
        assert_eq!(got.len(), 4);
        // A commit ending 1 to 3 bytes before a boundary, then at once a frame
        // whose length begins with zero bytes (256 bytes of payload and more):
        // not mistaken for padding.
        for short in 1..4 {
            let n = (0..ALIGN)
                .find(|&n| {
                    let mut t = Vec::new();
                    encode(&page("a", 1, 1, n), &mut t);
                    encode(&Entry::Commit { txn: 3 }, &mut t);
                    t.len() % ALIGN == ALIGN - short
                })
                .expect("some image length ends there");
            let mut t = Vec::new();
            encode(&page("a", 1, 1, n), &mut t);
            encode(&Entry::Commit { txn: 3 }, &mut t);
            let big = page("b", 2, 2, 1024);
            encode(&big, &mut t);
            encode(&Entry::Commit { txn: 4 }, &mut t);
            let (got, used) = decode_all(&t);
            assert_eq!(got.len(), 4, "{short} bytes short");
            assert_eq!(got[2], big);
            assert_eq!(used, t.len());
        }
    }
}
