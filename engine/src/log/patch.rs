//! Page patches: what a commit changed in a page whose full image the log
//! already holds, as a short list of operations instead of one byte range.
//!
//! A single range from the first to the last changed byte is large for the
//! two commonest changes: a record appended to a data page changes the page
//! header and the record far apart, and a key inserted into an index leaf
//! shifts every entry after it. A patch names each changed run separately,
//! a stretch that is the old bytes shifted becomes a move plus the bytes that
//! are really new, and a cleared stretch one run of zeros. A split's new node
//! is mostly a copy of another page: [`derive()`] describes it as ranges copied
//! from that page, then a patch.
//!
//! Invariants: [`apply`] of [`diff`]`(before, after)` on `before` gives
//! `after`, byte for byte; [`copy_ranges`] of a [`derive()`]d page's ranges
//! from its source onto zeros, then [`apply`] of its operations, gives the
//! page. Recovery applies a patch only over the page as the log itself
//! rebuilt it (its full image comes first in the same log), and copies from a
//! source page only as the log rebuilt it too, so a move — unlike a byte
//! write — need not be idempotent.

use serde::{Deserialize, Serialize};

/// One operation of a patch, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatchOp {
    /// These bytes at `offset`.
    Bytes {
        /// Where they go.
        offset: u32,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The `len` bytes at `from` copied to `to` (overlap allowed).
    Move {
        /// Source offset.
        from: u32,
        /// Destination offset.
        to: u32,
        /// Bytes moved.
        len: u32,
    },
    /// `len` zero bytes at `offset` (entries a split or a merge moved out).
    Zero {
        /// Where they go.
        offset: u32,
        /// How many.
        len: u32,
    },
}

/// Unchanged gaps shorter than this are written over rather than split on:
/// an operation costs a few bytes of its own.
const GAP: usize = 12;
/// Runs shorter than this are not searched for a shift.
const SHIFT_MIN: usize = 48;
/// The largest shift looked for (an index entry, a small record).
const SHIFT_MAX: usize = 1024;
/// Shifts looked for per page at most (a page with a shift has it within
/// its first few runs: a header, then the entry moved).
const SHIFT_TRIES: usize = 8;

/// The operations that turn `before` into `after` (pages of one size).
///
/// At the start of each changed run, the diff looks for the old bytes
/// shifted (a key inserted into a leaf moves the entries after it right; a
/// key removed moves them left) and takes the longest shifted stretch as one
/// move, however many short runs the shifted bytes would otherwise make
/// (shifted entries equal the old ones in places — a zero suffix over a zero
/// suffix). A stretch the change cleared is one run of zeros.
pub fn diff(before: &[u8], after: &[u8]) -> Vec<PatchOp> {
    debug_assert_eq!(before.len(), after.len());
    let n = before.len().min(after.len());
    let last = last_change(before, after, n);
    let mut ops = Vec::new();
    let mut tries = 0;
    let mut i = 0;
    while i < last {
        i = next_change(before, after, i, n);
        if i >= last {
            break;
        }
        let lo = i;
        if last - lo >= SHIFT_MIN && tries < SHIFT_TRIES {
            tries += 1;
            if let Some(end) = shift_at(before, after, lo, last, &mut ops) {
                i = end;
                continue;
            }
        }
        // A run of changes, with short unchanged gaps inside it.
        let hi = run_end(before, after, i + 1, n);
        // Bytes cleared (entries a split or a merge moved out): one run of
        // zeros to the end of the cleared stretch, whatever old zeros it
        // passes over (they would otherwise cut it into many runs).
        if after[lo..hi].iter().all(|&b| b == 0) {
            let mut z = hi;
            while z < last && after[z] == 0 {
                z += 1;
            }
            ops.push(PatchOp::Zero {
                offset: lo as u32,
                len: (z - lo) as u32,
            });
            i = z;
            continue;
        }
        ops.push(bytes_op(after, lo, hi));
        i = hi;
    }
    ops
}

/// What the plain runs of `lo..hi` cost in a patch.
fn plain_cost(before: &[u8], after: &[u8], lo: usize, hi: usize) -> usize {
    let mut cost = 0;
    let mut i = next_change(before, after, lo, hi);
    while i < hi {
        let h = run_end(before, after, i + 1, hi);
        cost += h - i + 6;
        i = next_change(before, after, h, hi);
    }
    cost
}

/// One past the last changed byte (0 when nothing changed).
fn last_change(before: &[u8], after: &[u8], n: usize) -> usize {
    let mut j = n;
    while j >= 8 && before[j - 8..j] == after[j - 8..j] {
        j -= 8;
    }
    while j > 0 && before[j - 1] == after[j - 1] {
        j -= 1;
    }
    j
}

/// At the changed byte `lo`: the longest stretch (at least [`SHIFT_MIN`]
/// bytes, before `limit`) of the old bytes shifted right (an insert: a move
/// and the new bytes) or left (a removal: a move). Pushes its operations and
/// returns where it ends.
fn shift_at(
    before: &[u8],
    after: &[u8],
    lo: usize,
    limit: usize,
    ops: &mut Vec<PatchOp>,
) -> Option<usize> {
    // A shift is taken only where it is cheaper than the plain runs of the
    // same stretch (zeros that stayed zeros shift onto themselves for free).
    let right = longest(&before[lo..limit], &after[lo..limit])
        .filter(|&(k, m)| k + 14 + 16 < plain_cost(before, after, lo, lo + k + m));
    let left = longest(&after[lo..limit], &before[lo..limit])
        .filter(|&(_, m)| 8 + 16 < plain_cost(before, after, lo, lo + m));
    match (right, left) {
        (Some((k, m)), l) if l.is_none_or(|(_, lm)| m >= lm) => {
            ops.push(PatchOp::Move {
                from: lo as u32,
                to: (lo + k) as u32,
                len: m as u32,
            });
            ops.push(bytes_op(after, lo, lo + k));
            Some(lo + k + m)
        }
        (_, Some((k, m))) => {
            ops.push(PatchOp::Move {
                from: (lo + k) as u32,
                to: lo as u32,
                len: m as u32,
            });
            Some(lo + m)
        }
        _ => None,
    }
}

/// The shift `k` (1..=[`SHIFT_MAX`]) and length `m` of the longest stretch
/// with `to[k..k + m] == from[..m]`, `m` at least [`SHIFT_MIN`]. The first
/// eight bytes of `from` are searched for in `to` (a `memmem`), and only the
/// first few places they occur are compared, so a failed search costs little
/// even over bytes alike everywhere.
fn longest(from: &[u8], to: &[u8]) -> Option<(usize, usize)> {
    const CANDIDATES: usize = 16;
    let len = from.len().min(to.len());
    if len < SHIFT_MIN {
        return None;
    }
    let max = SHIFT_MAX.min(len - SHIFT_MIN);
    if max == 0 {
        return None;
    }
    memchr::memmem::find_iter(&to[1..max + 8], &from[..8])
        .take(CANDIDATES)
        .map(|p| {
            let k = p + 1;
            let m = from[..len - k]
                .iter()
                .zip(&to[k..len])
                .take_while(|(a, b)| a == b)
                .count();
            (k, m)
        })
        .filter(|&(_, m)| m >= SHIFT_MIN)
        .max_by_key(|&(k, m)| (m, std::cmp::Reverse(k)))
}

/// The end of a run of changes whose last changed byte so far is `hi - 1`:
/// the run ends where `GAP` unchanged bytes follow it (or at `n`). Eight
/// bytes are compared at a time: a shifted region differs almost everywhere,
/// and a byte loop over a whole leaf cost more than the rest of the diff.
fn run_end(before: &[u8], after: &[u8], mut hi: usize, n: usize) -> usize {
    let mut j = hi;
    while j < n {
        if j + 8 <= n {
            let word = |p: &[u8]| u64::from_le_bytes(p[j..j + 8].try_into().expect("8 bytes"));
            let x = word(before) ^ word(after);
            if x == 0 {
                if j + 8 - hi >= GAP {
                    break;
                }
            } else {
                // Little-endian: byte k of the word is bits 8k..8k + 8.
                let first = j + x.trailing_zeros() as usize / 8;
                if first - hi >= GAP {
                    break;
                }
                hi = j + 7 - x.leading_zeros() as usize / 8 + 1;
            }
            j += 8;
        } else {
            if before[j] != after[j] {
                if j - hi >= GAP {
                    break;
                }
                hi = j + 1;
            } else if j + 1 - hi >= GAP {
                break;
            }
            j += 1;
        }
    }
    hi
}

/// The first changed byte at or after `i` (or `n`): equal stretches are
/// skipped a chunk at a time (a slice comparison is a `memcmp`).
fn next_change(before: &[u8], after: &[u8], mut i: usize, n: usize) -> usize {
    const CHUNK: usize = 64;
    while i + CHUNK <= n && before[i..i + CHUNK] == after[i..i + CHUNK] {
        i += CHUNK;
    }
    while i < n && before[i] == after[i] {
        i += 1;
    }
    i
}

/// `after[lo..hi]` as an operation: a run of zeros costs a few bytes.
fn bytes_op(after: &[u8], lo: usize, hi: usize) -> PatchOp {
    if hi - lo > 8 && after[lo..hi].iter().all(|&b| b == 0) {
        PatchOp::Zero {
            offset: lo as u32,
            len: (hi - lo) as u32,
        }
    } else {
        PatchOp::Bytes {
            offset: lo as u32,
            bytes: after[lo..hi].to_vec(),
        }
    }
}

/// Applies `ops` to `page`; false (and `page` unspecified) when an operation
/// reaches outside it — a damaged log.
pub fn apply(page: &mut [u8], ops: &[PatchOp]) -> bool {
    let n = page.len();
    for op in ops {
        match op {
            PatchOp::Bytes { offset, bytes } => {
                let at = *offset as usize;
                if at > n || bytes.len() > n - at {
                    return false;
                }
                page[at..at + bytes.len()].copy_from_slice(bytes);
            }
            PatchOp::Move { from, to, len } => {
                let (from, to, len) = (*from as usize, *to as usize, *len as usize);
                if from > n || to > n || len > n - from || len > n - to {
                    return false;
                }
                page.copy_within(from..from + len, to);
            }
            PatchOp::Zero { offset, len } => {
                let (at, len) = (*offset as usize, *len as usize);
                if at > n || len > n - at {
                    return false;
                }
                page[at..at + len].fill(0);
            }
        }
    }
    true
}

/// A page as byte ranges copied from another page — `(from, to, len)` —
/// then operations.
pub type Derivation = (Vec<(u32, u32, u32)>, Vec<PatchOp>);

/// Copies each `(from, to, len)` range of `source` into `page`; false (and
/// `page` unspecified) when a range reaches outside either.
pub fn copy_ranges(source: &[u8], page: &mut [u8], copies: &[(u32, u32, u32)]) -> bool {
    for &(from, to, len) in copies {
        let (from, to, len) = (from as usize, to as usize, len as usize);
        if from > source.len()
            || len > source.len() - from
            || to > page.len()
            || len > page.len() - to
        {
            return false;
        }
        page[to..to + len].copy_from_slice(&source[from..from + len]);
    }
    true
}

/// A new page mostly made of runs of an old one (`before`, another page's
/// content before the commit): the ranges to copy, and the operations that
/// finish the page from there — when that is much smaller than building it
/// from zeros (`plain` bytes). Runs of at least 64 bytes are looked for,
/// each found from its first 16 bytes with `memmem`. Invariant: building
/// from zeros, [`copy_ranges`] then [`apply`] give `image`.
pub fn derive(before: &[u8], image: &[u8], plain: usize) -> Option<Derivation> {
    const RUN_MIN: usize = 64;
    const NEEDLE: usize = 16;
    const MAX_COPIES: usize = 8;
    // Searches at most this many places: a page that is not a split's costs
    // little.
    const MAX_TRIES: usize = 128;
    let n = image.len().min(before.len());
    let mut copies = Vec::new();
    let mut built = vec![0u8; image.len()];
    let mut i = next_change(&built, image, 0, n);
    let mut tries = 0;
    while i + RUN_MIN <= n && copies.len() < MAX_COPIES && tries < MAX_TRIES {
        tries += 1;
        let needle = &image[i..i + NEEDLE];
        // The longest run starting at one of the first few places the
        // needle occurs.
        let best = memchr::memmem::find_iter(before, needle)
            .take(4)
            .map(|at| {
                let len = before[at..]
                    .iter()
                    .zip(&image[i..])
                    .take_while(|(a, b)| a == b)
                    .count();
                (len, at)
            })
            .max();
        match best {
            Some((len, at)) if len >= RUN_MIN => {
                built[i..i + len].copy_from_slice(&before[at..at + len]);
                copies.push((at as u32, i as u32, len as u32));
                i = next_change(&built, image, i + len, n);
            }
            // No run here: look from the next byte that differs.
            _ => i = next_change(&built, image, i + 1, n),
        }
    }
    if copies.is_empty() {
        return None;
    }
    let ops = diff(&built, image);
    let cost = copies.len() * 12 + payload(&ops);
    (cost * 2 < plain).then_some((copies, ops))
}

/// The bytes a patch carries (for a size comparison with a plain range).
pub fn payload(ops: &[PatchOp]) -> usize {
    ops.iter()
        .map(|op| match op {
            PatchOp::Bytes { bytes, .. } => bytes.len() + 6,
            PatchOp::Move { .. } => 8,
            PatchOp::Zero { .. } => 6,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(before: &[u8], after: &[u8]) -> Vec<PatchOp> {
        let ops = diff(before, after);
        let mut page = before.to_vec();
        assert!(apply(&mut page, &ops));
        assert_eq!(page, after);
        ops
    }

    /// A page of sorted 32-byte entries after a 16-byte header.
    fn leaf(entries: &[u64]) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[..8].copy_from_slice(&(entries.len() as u64).to_le_bytes());
        for (i, e) in entries.iter().enumerate() {
            let at = 16 + i * 32;
            p[at..at + 8].copy_from_slice(&e.to_be_bytes());
            p[at + 8..at + 32].copy_from_slice(&[(*e % 251) as u8; 24]);
        }
        p
    }

    #[test]
    fn an_insert_into_a_leaf_is_a_move_and_the_new_entry() {
        let old: Vec<u64> = (0..100).map(|i| i * 10).collect();
        let mut new = old.clone();
        new.insert(3, 25);
        let ops = check(&leaf(&old), &leaf(&new));
        assert!(payload(&ops) < 100, "{ops:?}");
        // And a removal.
        let ops = check(&leaf(&new), &leaf(&old));
        assert!(payload(&ops) < 100, "{ops:?}");
    }

    /// Entries whose shifted copies match the old bytes in places (zero
    /// suffixes, a constant field): still one move.
    #[test]
    fn an_insert_among_entries_alike_in_places_is_still_one_move() {
        let entry = |e: u64| {
            let mut v = vec![0u8; 42];
            v[0] = 24;
            v[2..10].copy_from_slice(&e.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            v[10..26].fill(1);
            v[34..42].copy_from_slice(&(e + 1).to_be_bytes());
            v
        };
        let page = |es: &[u64]| {
            let mut p = vec![0u8; 8192];
            p[24..26].copy_from_slice(&(es.len() as u16).to_le_bytes());
            for (i, e) in es.iter().enumerate() {
                p[48 + i * 42..48 + (i + 1) * 42].copy_from_slice(&entry(*e));
            }
            p
        };
        let old: Vec<u64> = (0..150).collect();
        let mut new = old.clone();
        new.insert(20, 1000);
        let ops = check(&page(&old), &page(&new));
        assert!(payload(&ops) < 100, "{ops:?}");
        let ops = check(&page(&new), &page(&old));
        assert!(payload(&ops) < 100, "{ops:?}");
    }

    /// A leaf split keeps the lower half and clears the upper one: a few
    /// bytes, not the cleared half.
    #[test]
    fn a_cleared_half_is_one_run_of_zeros() {
        let entries: Vec<u64> = (0..120).map(|i| i * 7).collect();
        let ops = check(&leaf(&entries), &leaf(&entries[..60]));
        assert!(payload(&ops) < 40, "{ops:?}");
    }

    fn derived(before: &[u8], image: &[u8]) -> Option<usize> {
        let plain = payload(&diff(&vec![0u8; image.len()], image));
        let (copies, ops) = derive(before, image, plain)?;
        let mut page = vec![0u8; image.len()];
        assert!(copy_ranges(before, &mut page, &copies));
        assert!(apply(&mut page, &ops));
        assert_eq!(page, image);
        Some(copies.len() * 12 + payload(&ops))
    }

    /// A split's new node is the upper half of the old one (with, maybe, the
    /// key that caused the split): copies and a few bytes.
    #[test]
    fn a_split_node_is_copies_of_the_old_one() {
        let entries: Vec<u64> = (0..120).map(|i| i * 7 + 1).collect();
        let old = leaf(&entries);
        let cost = derived(&old, &leaf(&entries[60..])).expect("derived");
        assert!(cost < 100, "{cost}");
        let mut upper = entries[60..].to_vec();
        upper.insert(20, 500);
        let cost = derived(&old, &leaf(&upper)).expect("derived");
        assert!(cost < 150, "{cost}");
        // Nothing in common: not derived.
        let other: Vec<u64> = (0..60).map(|i| i * 11 + 100_000).collect();
        assert_eq!(derived(&old, &leaf(&other)), None);
    }

    #[test]
    fn far_apart_changes_are_separate_runs() {
        let before = vec![0u8; 4096];
        let mut after = before.clone();
        after[4] = 1;
        after[3000..3150].fill(9);
        let ops = check(&before, &after);
        assert_eq!(ops.len(), 2);
        assert!(payload(&ops) < 170);
        assert!(check(&before, &before).is_empty());
    }

    #[test]
    fn operations_outside_the_page_are_refused() {
        let mut p = vec![0u8; 64];
        assert!(!apply(
            &mut p,
            &[PatchOp::Bytes {
                offset: 60,
                bytes: vec![1; 8]
            }]
        ));
        assert!(!apply(
            &mut p,
            &[PatchOp::Move {
                from: 10,
                to: 40,
                len: 30
            }]
        ));
        assert!(!apply(
            &mut p,
            &[PatchOp::Move {
                from: u32::MAX,
                to: 0,
                len: 1
            }]
        ));
        assert!(!apply(&mut p, &[PatchOp::Zero { offset: 60, len: 5 }]));
        // A damaged derivation: a range outside the source or the page.
        let source = vec![1u8; 64];
        assert!(!copy_ranges(&source, &mut p, &[(60, 0, 8)]));
        assert!(!copy_ranges(&source, &mut p, &[(0, 60, 8)]));
        assert!(!copy_ranges(&source, &mut p, &[(u32::MAX, 0, 2)]));
        assert!(copy_ranges(&source, &mut p, &[(0, 56, 8)]));
        assert_eq!(&p[56..], &[1u8; 8]);
    }

    proptest! {
        #[test]
        fn applying_a_diff_gives_the_new_page(
            seed in proptest::collection::vec(any::<u8>(), 512),
            edits in proptest::collection::vec((0usize..512, 0usize..80, any::<u8>(), 0u8..4), 0..6),
        ) {
            let before = seed;
            let mut after = before.clone();
            for (at, len, byte, kind) in edits {
                let at = at.min(after.len() - 1);
                let len = len.min(after.len() - at);
                match kind {
                    // Overwrite.
                    0 => after[at..at + len].fill(byte),
                    // Insert `len` bytes, shifting the rest right.
                    1 => {
                        let n = after.len();
                        after.copy_within(at..n - len, at + len);
                        after[at..at + len].fill(byte);
                    }
                    // Remove `len` bytes, shifting the rest left.
                    2 => {
                        let n = after.len();
                        after.copy_within(at + len..n, at);
                        after[n - len..].fill(byte);
                    }
                    _ => after[at] = byte,
                }
            }
            check(&before, &after);
        }

        /// Whatever two pages are, a derivation (when one is offered)
        /// rebuilds the second from the first.
        #[test]
        fn a_derived_page_is_rebuilt_exactly(
            base in proptest::collection::vec(any::<u8>(), 512),
            cuts in proptest::collection::vec((0usize..512, 0usize..200, any::<u8>()), 0..4),
        ) {
            let mut image = vec![0u8; 512];
            for (at, len, byte) in cuts {
                let at = at.min(511);
                let len = len.min(512 - at);
                let from = (at + len / 2) % (512 - len.max(1) + 1);
                image[at..at + len].copy_from_slice(&base[from..from + len]);
                if len > 0 {
                    image[at] = byte;
                }
            }
            derived(&base, &image);
        }

        /// Leaves of entries alike in places, entries inserted and removed
        /// anywhere, the count in the header: the diff rebuilds the new page
        /// and is small when one entry changed.
        #[test]
        fn diffs_of_leaves_rebuild_them(
            keys in proptest::collection::btree_set(any::<u32>(), 0..120),
            edits in proptest::collection::vec((any::<u32>(), any::<bool>()), 1..4),
        ) {
            let page = |ks: &std::collections::BTreeSet<u32>| {
                let mut p = vec![0u8; 8192];
                p[24..26].copy_from_slice(&(ks.len() as u16).to_le_bytes());
                for (i, k) in ks.iter().enumerate() {
                    let at = 48 + i * 42;
                    p[at] = 24;
                    p[at + 2..at + 6].copy_from_slice(&k.to_be_bytes());
                    p[at + 6..at + 26].fill(0x20);
                    p[at + 34..at + 42].copy_from_slice(&u64::from(*k).to_le_bytes());
                }
                p
            };
            let mut after = keys.clone();
            for (k, insert) in &edits {
                if *insert {
                    after.insert(*k);
                } else if let Some(&first) = after.iter().nth(*k as usize % (after.len() + 1)) {
                    after.remove(&first);
                }
            }
            let ops = check(&page(&keys), &page(&after));
            if edits.len() == 1 {
                prop_assert!(payload(&ops) < 120, "{:?}", ops);
            }
        }
    }
}
