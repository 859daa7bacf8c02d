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
    /// The blob file and its free-list head and fill page.
    pub blobs: Option<(FileRef, u64, u64)>,
    /// Each index file, its key length and its tree counters.
    pub indexes: Vec<(FileRef, u32, IndexState)>,
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
        /// The page's bytes (unsealed; recovery seals them).
        image: Vec<u8>,
    },
    /// A table's counters after a commit.
    State(TableState),
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
        bytes: Vec<u8>,
    },
}

/// Appends the frame of `e` to `out`.
pub fn encode(e: &Entry, out: &mut Vec<u8>) {
    let payload = postcard::to_allocvec(e).expect("log entries always encode");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Commits are padded with zeros to this boundary, so the next commit's write
/// starts on a fresh page instead of one the kernel may be writing back (which
/// would make it wait for the previous commit's sync).
pub const ALIGN: usize = 4096;

/// Bytes of zero padding that bring `len` to the next [`ALIGN`] boundary.
pub fn padding(len: usize) -> usize {
    (ALIGN - len % ALIGN) % ALIGN
}

/// Decodes the frames in `bytes` up to the first damaged or partial one.
/// Returns the entries and how many bytes they took.
pub fn decode_all(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at + FRAME_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 {
            // Padding to the next boundary, then more frames (or the end).
            let next = at + padding(at);
            if next == at || next > bytes.len() || bytes[at..next].iter().any(|&b| b != 0) {
                break;
            }
            at = next;
            continue;
        }
        if len > MAX_PAYLOAD || at + FRAME_HEADER + len > bytes.len() {
            break;
        }
        let payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match postcard::from_bytes::<Entry>(payload) {
            Ok(e) => out.push(e),
            Err(_) => break,
        }
        at += FRAME_HEADER + len;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_ignored() {
        let f = FileRef {
            file: "t.rzd".into(),
            incarnation: 7,
        };
        let entries = vec![
            Entry::Page {
                file: f.clone(),
                page: 3,
                image: vec![9; 100],
            },
            Entry::Commit { txn: 1 },
            Entry::Page {
                file: f,
                page: 4,
                image: vec![1; 50],
            },
        ];
        let mut buf = Vec::new();
        for e in &entries {
            encode(e, &mut buf);
        }
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
    fn padding_between_commits_is_skipped_and_garbage_is_not() {
        let mut buf = Vec::new();
        encode(&Entry::Commit { txn: 1 }, &mut buf);
        buf.resize(buf.len() + padding(buf.len()), 0);
        assert_eq!(buf.len(), ALIGN);
        encode(&Entry::Commit { txn: 2 }, &mut buf);
        let (got, used) = decode_all(&buf);
        assert_eq!(
            got,
            vec![Entry::Commit { txn: 1 }, Entry::Commit { txn: 2 }]
        );
        assert_eq!(used, buf.len());
        // A zero tail (preallocated or dropped) ends the log cleanly.
        let mut tail = buf.clone();
        tail.resize(3 * ALIGN + 100, 0);
        assert_eq!(decode_all(&tail).0.len(), 2);
        // Non-zero bytes in the padding are damage: stop there.
        let mut bad = buf.clone();
        bad[ALIGN - 5] = 1;
        assert_eq!(decode_all(&bad).0.len(), 1);
    }
}
