//! A B+tree of fixed-width entries on the pages of one index file.
//!
//! An entry is a full key (`K` bytes: the index key and an 8-byte suffix) and an
//! 8-byte value (the recno). Internal nodes hold the same shape: a separator key and
//! a child page. Node layout (payload offsets, after the page header):
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    2 | entry count                                             |
//! |      2 |    1 | level (0 = leaf)                                        |
//! |      8 |    8 | leaf: left sibling; internal: unused                    |
//! |     16 |    8 | leaf: right sibling; internal: leftmost child           |
//! |     24 |  E·n | entries, sorted by key, E = K + 8                       |
//!
//! Invariants: keys are unique and sorted within a node and along the leaf chain;
//! in an internal node, child `i` (entry `i`'s child, or the leftmost child for
//! `i = -1`) holds exactly the keys in `[sep_i, sep_{i+1})`; every node but the
//! root holds at least a quarter of its capacity after a delete (smaller nodes
//! are merged with or refilled from a sibling); the root of height > 1 has at least
//! one separator. Leaves are linked both ways.
//!
//! Page 0 is the index file's header: it is written at flush and trusted only after
//! a clean close (otherwise the index is rebuilt from the data).

use crate::error::{Error, Result};
use crate::page::layout::{self, get_u16, get_u64, put_u16, put_u64};
use crate::page::{PageFile, PageType, PAGE_HEADER};

const NODE: usize = PAGE_HEADER + 24;

/// Where a tree's root is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeState {
    /// Root page (0 = empty tree).
    pub root: u64,
    /// Levels (0 = empty, 1 = a single leaf).
    pub height: u32,
    /// Entries.
    pub entries: u64,
    /// Head of the free page list.
    pub free_head: u64,
    /// Pages on the free list.
    pub free_pages: u64,
}

/// A position in the leaf chain: page and entry index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Leaf page.
    pub page: u64,
    /// Entry index.
    pub idx: usize,
}

impl Pos {
    /// The slot after this one in the same leaf, which may be past its end:
    /// only [`BTree::entry_step`] takes such a position.
    pub fn after(self) -> Pos {
        Pos {
            page: self.page,
            idx: self.idx + 1,
        }
    }
}

/// An entry read by [`BTree::entry_step`]: key, value, where it is and
/// where the walk goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stepped {
    /// The entry's key.
    pub key: Vec<u8>,
    /// The entry's value.
    pub val: u64,
    /// Its position (within its leaf).
    pub at: Pos,
    /// The neighbour's position in the walk's direction, if any.
    pub then: Option<Pos>,
    /// The values of the entries that follow in the walk's direction within
    /// the same leaf, nearest first (at most [`AHEAD`]): what a walk will
    /// read next, so that a caller may prefetch what they point to. Empty
    /// from [`BTree::seek_step`]: a seek is often the last move, and then
    /// the prefetch would be paid for nothing.
    pub ahead: Ahead,
}

/// How many following values a [`Stepped`] carries.
pub const AHEAD: usize = 8;

/// Up to [`AHEAD`] values of the entries after a step, nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ahead {
    vals: [u64; AHEAD],
    len: usize,
}

impl Ahead {
    /// The values, nearest first.
    pub fn as_slice(&self) -> &[u64] {
        &self.vals[..self.len]
    }

    /// The values of the entries after `idx` in `n` in the walk's direction.
    fn of(n: &Node<'_>, idx: usize, forwards: bool) -> Ahead {
        let mut a = Ahead::default();
        let count = n.count();
        for d in 1..=AHEAD {
            let j = if forwards {
                idx + d
            } else if let Some(j) = idx.checked_sub(d) {
                j
            } else {
                break;
            };
            if j >= count {
                break;
            }
            a.vals[a.len] = n.val(j);
            a.len += 1;
        }
        a
    }
}

/// Source of tree versions: unique across every tree of the process, so a
/// version seen on one tree can never match another (a rebuilt index, say).
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The tree. Mutations need `&mut`; the table's lock serialises writers.
///
/// Invariant: `version` changes whenever entries may have moved (every
/// mutation, and [`BTree::touch`] after the state is set from outside), so a
/// [`Pos`] taken at one version is valid exactly while the version is the same.
/// The copy of the root a descent reads is dropped with every version.
#[derive(Debug)]
pub struct BTree {
    file: PageFile,
    klen: usize,
    cap: usize,
    version: u64,
    /// Root, height, counts.
    pub state: TreeState,
    /// Verified copies of the root node (an internal one) and, lazily, of
    /// its internal children, made by the first descents after a change:
    /// every seek starts there, and reading a copy takes no lock of the pool
    /// or the page — the root's frame, which every reader would otherwise pin
    /// and lock, is the line the cores fought over, and the level below is
    /// one pool lookup (and its cache misses) fewer per descent. Emptied by
    /// [`BTree::touch`]; copies of another root than `state.root` are not
    /// used.
    copies: std::sync::OnceLock<Copies>,
    /// Descents at this version that found no copies: the first goes
    /// without making them (a write's own descent, or a read between two
    /// writes, would pay for copies the next change drops), the second
    /// makes them.
    bare_descents: std::sync::atomic::AtomicU32,
}

/// See [`BTree::copies`].
#[derive(Debug)]
struct Copies {
    root: u64,
    bytes: Box<[u8]>,
    /// Per child of the root, its copy once read (empty when the root's
    /// children are leaves, or too many to copy: more than
    /// [`COPIED_CHILDREN`]).
    children: Box<[std::sync::OnceLock<Box<[u8]>>]>,
}

/// The most children of the root a tree keeps copies of (with 8 KiB pages,
/// 4 MiB of copies; a tree that large has millions of entries).
const COPIED_CHILDREN: usize = 512;

struct Node<'a> {
    b: &'a [u8],
    e: usize,
}

impl Node<'_> {
    fn count(&self) -> usize {
        usize::from(get_u16(self.b, PAGE_HEADER))
    }
    fn level(&self) -> u8 {
        self.b[PAGE_HEADER + 2]
    }
    fn left(&self) -> u64 {
        get_u64(self.b, PAGE_HEADER + 8)
    }
    fn right(&self) -> u64 {
        get_u64(self.b, PAGE_HEADER + 16)
    }
    fn key(&self, i: usize) -> &[u8] {
        let o = NODE + i * self.e;
        &self.b[o..o + self.e - 8]
    }
    fn val(&self, i: usize) -> u64 {
        get_u64(self.b, NODE + i * self.e + self.e - 8)
    }
    /// First index whose key is >= `k`.
    fn lower_bound(&self, k: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.count());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if key_less(self.key(mid), k) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
    /// Internal: which child holds `k` (-1 = leftmost), as (slot, page).
    fn child_for(&self, k: &[u8]) -> (isize, u64) {
        // Last separator <= k.
        let (mut lo, mut hi) = (0, self.count());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if !key_less(k, self.key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let slot = lo as isize - 1;
        (slot, self.child(slot))
    }
    fn child(&self, slot: isize) -> u64 {
        if slot < 0 {
            self.right()
        } else {
            self.val(slot as usize)
        }
    }
}

/// `a < b` as byte strings. Most comparisons of a search are decided by
/// the first eight bytes, compared as one number; only the rest go to the
/// C library's `memcmp`, whose call costs more than such a comparison.
#[inline]
pub(super) fn key_less(a: &[u8], b: &[u8]) -> bool {
    key_cmp(a, b).is_lt()
}

/// The byte order of two keys, as [`key_less`] finds it.
#[inline]
pub(crate) fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

/// An in-memory copy of a node, for the restructuring operations.
#[derive(Debug, Clone)]
struct Owned {
    level: u8,
    left: u64,
    right: u64,
    entries: Vec<(Vec<u8>, u64)>,
}

impl BTree {
    /// A tree over `file` with keys of `klen` bytes (suffix included).
    pub fn new(file: PageFile, klen: usize, state: TreeState) -> BTree {
        let cap = (file.page_size() as usize - NODE) / (klen + 8);
        BTree {
            file,
            klen,
            cap,
            version: VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            state,
            copies: std::sync::OnceLock::new(),
            bare_descents: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The version positions are valid for (see the type's invariant).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Invalidates every position taken so far.
    pub fn touch(&mut self) {
        self.version = VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.copies.take();
        *self.bare_descents.get_mut() = 0;
    }

    /// The copies of the root, an internal node, made now if there are
    /// none and this is not the first descent since the last change; None
    /// when the root is a leaf (a leaf changes without a descent through it,
    /// and is read once anyway) or on that first descent.
    fn copies(&self) -> Result<Option<&Copies>> {
        let root = self.state.root;
        if root == 0 || self.state.height < 2 {
            return Ok(None);
        }
        if let Some(c) = self.copies.get() {
            return Ok((c.root == root).then_some(c));
        }
        if self
            .bare_descents
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            return Ok(None);
        }
        let bytes: Box<[u8]> = Box::from(&self.node_at(root, 0)?[..]);
        let count = Node {
            b: &bytes,
            e: self.e(),
        }
        .count();
        // Children: the leftmost, then one per separator.
        let children = if self.state.height > 2 && count < COPIED_CHILDREN {
            (0..=count).map(|_| std::sync::OnceLock::new()).collect()
        } else {
            Box::default()
        };
        let c = self.copies.get_or_init(|| Copies {
            root,
            bytes,
            children,
        });
        Ok((c.root == root).then_some(c))
    }

    /// The file.
    pub fn file(&self) -> &PageFile {
        &self.file
    }

    /// Entries per node.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn e(&self) -> usize {
        self.klen + 8
    }

    fn corrupt(&self, page: u64, reason: impl Into<String>) -> Error {
        Error::CorruptPage {
            path: self.file.path().to_path_buf(),
            page,
            reason: reason.into(),
        }
    }

    fn load(&self, page: u64) -> Result<Owned> {
        let p = self.file.read(page)?;
        let n = Node { b: &p, e: self.e() };
        self.check_node(page, &n)?;
        Ok(Owned {
            level: n.level(),
            left: n.left(),
            right: n.right(),
            entries: (0..n.count())
                .map(|i| (n.key(i).to_vec(), n.val(i)))
                .collect(),
        })
    }

    fn check_node(&self, page: u64, n: &Node<'_>) -> Result<()> {
        if PageType::from_byte(layout::page_type(n.b)) != Some(PageType::Index) {
            return Err(self.corrupt(page, "expected an index node"));
        }
        if n.count() > self.cap {
            return Err(self.corrupt(
                page,
                format!("node holds {} entries, capacity {}", n.count(), self.cap),
            ));
        }
        Ok(())
    }

    fn store(&self, page: u64, node: &Owned) -> Result<()> {
        let mut p = self.file.write(page)?;
        layout::format(&mut p, PageType::Index);
        put_u16(&mut p, PAGE_HEADER, node.entries.len() as u16);
        p[PAGE_HEADER + 2] = node.level;
        put_u64(&mut p, PAGE_HEADER + 8, node.left);
        put_u64(&mut p, PAGE_HEADER + 16, node.right);
        let e = self.e();
        for (i, (k, v)) in node.entries.iter().enumerate() {
            let o = NODE + i * e;
            p[o..o + self.klen].copy_from_slice(k);
            put_u64(&mut p, o + self.klen, *v);
        }
        Ok(())
    }

    /// Makes sure `n` pages are on the free list, growing the file if needed, so
    /// a following insert cannot fail for lack of space half-way.
    pub fn reserve(&mut self, n: u64) -> Result<()> {
        self.touch();
        while self.state.free_pages < n {
            let (no, mut p) = self.file.allocate(PageType::Free)?;
            put_u64(&mut p, PAGE_HEADER, self.state.free_head);
            self.state.free_head = no;
            self.state.free_pages += 1;
        }
        Ok(())
    }

    /// Pages an insert may need (a split at every level and a new root).
    pub fn insert_reserve(&self) -> u64 {
        u64::from(self.state.height) + 1
    }

    fn alloc(&mut self) -> Result<u64> {
        if self.state.free_head != 0 {
            let no = self.state.free_head;
            let p = self.file.read(no)?;
            if PageType::from_byte(layout::page_type(&p)) != Some(PageType::Free) {
                self.state.free_head = 0;
                self.state.free_pages = 0;
                return Err(self.corrupt(no, "free-list page is in use"));
            }
            self.state.free_head = get_u64(&p, PAGE_HEADER);
            self.state.free_pages = self.state.free_pages.saturating_sub(1);
            return Ok(no);
        }
        Ok(self.file.allocate(PageType::Index)?.0)
    }

    fn release(&mut self, page: u64) -> Result<()> {
        let mut p = self.file.write(page)?;
        layout::format(&mut p, PageType::Free);
        put_u64(&mut p, PAGE_HEADER, self.state.free_head);
        self.state.free_head = page;
        self.state.free_pages += 1;
        Ok(())
    }

    /// Node `page`, read on the way down at `depth` (0: the root): checked
    /// to be an index node of the level that depth must have.
    fn node_at(&self, page: u64, depth: u32) -> Result<crate::page::PageRef> {
        let p = self.file.read(page)?;
        let n = Node { b: &p, e: self.e() };
        self.check_node(page, &n)?;
        let expect = (self.state.height - 1 - depth) as u8;
        if n.level() != expect {
            return Err(self.corrupt(
                page,
                format!("node at level {} where {expect} was expected", n.level()),
            ));
        }
        Ok(p)
    }

    /// Path from the root to the leaf that holds `k`: (page, slot taken in it).
    fn descend(&self, k: &[u8]) -> Result<Vec<(u64, isize)>> {
        let mut path = Vec::with_capacity(self.state.height as usize);
        let mut page = self.state.root;
        for depth in 0..self.state.height {
            let p = self.node_at(page, depth)?;
            let n = Node { b: &p, e: self.e() };
            if n.level() == 0 {
                path.push((page, 0));
                return Ok(path);
            }
            let (slot, child) = n.child_for(k);
            path.push((page, slot));
            page = child;
        }
        Err(self.corrupt(page, "tree is deeper than its recorded height"))
    }

    /// Position of the first entry with key >= `k` (None past the end). Reads
    /// each node on the way down once, keeping no path.
    pub fn seek(&self, k: &[u8]) -> Result<Option<Pos>> {
        let Some((leaf, page)) = self.leaf_for(k)? else {
            return Ok(None);
        };
        let n = Node {
            b: &leaf,
            e: self.e(),
        };
        let idx = n.lower_bound(k);
        if idx < n.count() {
            return Ok(Some(Pos { page, idx }));
        }
        drop(leaf);
        self.normalize(Pos { page, idx })
    }

    /// [`BTree::seek`] and [`BTree::entry_step`] forwards in one: the first
    /// entry with key >= `k`, read from the leaf the descent found.
    pub fn seek_step(&self, k: &[u8]) -> Result<Option<Stepped>> {
        let Some((leaf, page)) = self.leaf_for(k)? else {
            return Ok(None);
        };
        let n = Node {
            b: &leaf,
            e: self.e(),
        };
        let idx = n.lower_bound(k);
        if idx < n.count() {
            let at = Pos { page, idx };
            return Ok(Some(Stepped {
                key: n.key(idx).to_vec(),
                val: n.val(idx),
                at,
                then: Some(at.after()),
                ahead: Ahead::default(),
            }));
        }
        drop(leaf);
        match self.normalize(Pos { page, idx })? {
            Some(p) => self.entry_step(p, true),
            None => Ok(None),
        }
    }

    /// The leaf that holds `k` (held for reading) and its page number; None
    /// for an empty tree. Reads each node on the way down once.
    fn leaf_for(&self, k: &[u8]) -> Result<Option<(crate::page::PageRef, u64)>> {
        let mut page = self.state.root;
        if page == 0 {
            return Ok(None);
        }
        let mut from = 0;
        if let Some(c) = self.copies()? {
            let (i, child) = Node {
                b: &c.bytes,
                e: self.e(),
            }
            .child_for(k);
            page = child;
            from = 1;
            if let Some(slot) = c.children.get((i + 1) as usize) {
                let bytes = match slot.get() {
                    Some(b) => b,
                    None => {
                        let b: Box<[u8]> = Box::from(&self.node_at(page, 1)?[..]);
                        slot.get_or_init(|| b)
                    }
                };
                page = Node {
                    b: bytes,
                    e: self.e(),
                }
                .child_for(k)
                .1;
                from = 2;
            }
        }
        for depth in from..self.state.height {
            let p = self.node_at(page, depth)?;
            let n = Node { b: &p, e: self.e() };
            if n.level() == 0 {
                return Ok(Some((p, page)));
            }
            page = n.child_for(k).1;
        }
        Err(self.corrupt(page, "tree is deeper than its recorded height"))
    }

    /// The entry at `pos` — which may sit past the end of its leaf, as
    /// [`Pos::after`] leaves it: then the first of the next non-empty leaf —
    /// with its own position and the position of its neighbour in the
    /// walk's direction, reading the leaf once. Forwards that neighbour is
    /// left unchecked (the next call finds out); None: nothing at or after
    /// `pos` (forwards) or no entry before this one (backwards).
    pub fn entry_step(&self, mut pos: Pos, forwards: bool) -> Result<Option<Stepped>> {
        let mut hops = 0u64;
        loop {
            let p = self.file.read(pos.page)?;
            let n = Node { b: &p, e: self.e() };
            self.check_node(pos.page, &n)?;
            if pos.idx < n.count() {
                let key = n.key(pos.idx).to_vec();
                let val = n.val(pos.idx);
                let ahead = Ahead::of(&n, pos.idx, forwards);
                drop(p);
                let then = if forwards {
                    Some(pos.after())
                } else {
                    self.prev(pos)?
                };
                return Ok(Some(Stepped {
                    key,
                    val,
                    at: pos,
                    then,
                    ahead,
                }));
            }
            if n.right() == 0 {
                return Ok(None);
            }
            hops += 1;
            if hops > self.file.page_count() {
                return Err(self.corrupt(pos.page, "leaf chain loops"));
            }
            pos = Pos {
                page: n.right(),
                idx: 0,
            };
        }
    }

    /// Visits the entries of one leaf from `pos` on — `pos` may sit past
    /// the end of its leaf, as [`Pos::after`] leaves it: then the next
    /// non-empty leaf's from its first — calling `f` with each key and value
    /// until it returns false or the leaf ends, reading the leaf once.
    /// Returns the position of the first entry not visited (past the end of
    /// the leaf when all were), or None when nothing was at or after `pos`.
    pub fn leaf_entries(
        &self,
        mut pos: Pos,
        mut f: impl FnMut(&[u8], u64) -> bool,
    ) -> Result<Option<Pos>> {
        let mut hops = 0u64;
        loop {
            let p = self.file.read(pos.page)?;
            let n = Node { b: &p, e: self.e() };
            self.check_node(pos.page, &n)?;
            if pos.idx < n.count() {
                let mut idx = pos.idx;
                while idx < n.count() && f(n.key(idx), n.val(idx)) {
                    idx += 1;
                }
                return Ok(Some(Pos {
                    page: pos.page,
                    idx,
                }));
            }
            if n.right() == 0 {
                return Ok(None);
            }
            hops += 1;
            if hops > self.file.page_count() {
                return Err(self.corrupt(pos.page, "leaf chain loops"));
            }
            pos = Pos {
                page: n.right(),
                idx: 0,
            };
        }
    }

    /// Moves a position that sits past the end of its leaf to the next leaf.
    fn normalize(&self, pos: Pos) -> Result<Option<Pos>> {
        // The first entry at or after `pos`, visited not at all.
        self.leaf_entries(pos, |_, _| false)
    }

    /// The first entry.
    pub fn first(&self) -> Result<Option<Pos>> {
        self.seek(&[])
    }

    /// The last entry.
    pub fn last(&self) -> Result<Option<Pos>> {
        if self.state.root == 0 {
            return Ok(None);
        }
        let mut page = self.state.root;
        loop {
            let p = self.file.read(page)?;
            let n = Node { b: &p, e: self.e() };
            self.check_node(page, &n)?;
            if n.level() == 0 {
                if n.count() == 0 {
                    return self.prev(Pos { page, idx: 0 });
                }
                return Ok(Some(Pos {
                    page,
                    idx: n.count() - 1,
                }));
            }
            page = if n.count() == 0 {
                n.right()
            } else {
                n.val(n.count() - 1)
            };
        }
    }

    /// The entry after `pos`.
    pub fn next(&self, pos: Pos) -> Result<Option<Pos>> {
        self.normalize(Pos {
            page: pos.page,
            idx: pos.idx + 1,
        })
    }

    /// The entry before `pos`.
    pub fn prev(&self, pos: Pos) -> Result<Option<Pos>> {
        if pos.idx > 0 {
            return Ok(Some(Pos {
                page: pos.page,
                idx: pos.idx - 1,
            }));
        }
        let mut page = pos.page;
        let mut hops = 0u64;
        loop {
            let left = {
                let p = self.file.read(page)?;
                let n = Node { b: &p, e: self.e() };
                self.check_node(page, &n)?;
                n.left()
            };
            if left == 0 {
                return Ok(None);
            }
            hops += 1;
            if hops > self.file.page_count() {
                return Err(self.corrupt(page, "leaf chain loops"));
            }
            let p = self.file.read(left)?;
            let n = Node { b: &p, e: self.e() };
            self.check_node(left, &n)?;
            if n.count() > 0 {
                return Ok(Some(Pos {
                    page: left,
                    idx: n.count() - 1,
                }));
            }
            page = left;
        }
    }

    /// The key and value at `pos`.
    pub fn entry(&self, pos: Pos) -> Result<(Vec<u8>, u64)> {
        let p = self.file.read(pos.page)?;
        let n = Node { b: &p, e: self.e() };
        self.check_node(pos.page, &n)?;
        if pos.idx >= n.count() {
            return Err(self.corrupt(pos.page, format!("no entry {} in leaf", pos.idx)));
        }
        Ok((n.key(pos.idx).to_vec(), n.val(pos.idx)))
    }

    /// The value stored under exactly `k`, if any.
    pub fn get(&self, k: &[u8]) -> Result<Option<u64>> {
        match self.seek(k)? {
            Some(pos) => {
                let (key, v) = self.entry(pos)?;
                Ok((key == k).then_some(v))
            }
            None => Ok(None),
        }
    }

    /// Inserts `k → v`. Inserting a key that is present is a corruption error.
    pub fn insert(&mut self, k: &[u8], v: u64) -> Result<()> {
        match self.put(k, v)? {
            None => Ok(()),
            Some((leaf, _)) => Err(self.corrupt(leaf, "duplicate full key in index")),
        }
    }

    /// Inserts `k → v` unless `k` is present: then nothing changes and the
    /// value it holds is returned. One descent serves a unique index's check
    /// and its insertion.
    pub fn insert_new(&mut self, k: &[u8], v: u64) -> Result<Option<u64>> {
        Ok(self.put(k, v)?.map(|(_, held)| held))
    }

    /// Inserts `k → v`, or returns the leaf and value of `k` when present.
    fn put(&mut self, k: &[u8], v: u64) -> Result<Option<(u64, u64)>> {
        self.touch();
        debug_assert_eq!(k.len(), self.klen);
        if self.state.root == 0 {
            let root = self.alloc()?;
            self.store(
                root,
                &Owned {
                    level: 0,
                    left: 0,
                    right: 0,
                    entries: vec![(k.to_vec(), v)],
                },
            )?;
            self.state.root = root;
            self.state.height = 1;
            self.state.entries = 1;
            return Ok(None);
        }
        let path = self.descend(k)?;
        let (leaf_no, _) = *path.last().expect("non-empty");
        // Fast path: room in the leaf, so shift the entries in place.
        {
            let e = self.e();
            let mut p = self.file.write(leaf_no)?;
            let (count, at, dup) = {
                let n = Node { b: &p, e };
                self.check_node(leaf_no, &n)?;
                let at = n.lower_bound(k);
                let dup = (at < n.count() && n.key(at) == k).then(|| (leaf_no, n.val(at)));
                (n.count(), at, dup)
            };
            if dup.is_some() {
                return Ok(dup);
            }
            if count < self.cap {
                let o = NODE + at * e;
                p.copy_within(o..NODE + count * e, o + e);
                p[o..o + self.klen].copy_from_slice(k);
                put_u64(&mut p, o + self.klen, v);
                put_u16(&mut p, PAGE_HEADER, (count + 1) as u16);
                self.state.entries += 1;
                return Ok(None);
            }
        }
        let mut leaf = self.load(leaf_no)?;
        let at = leaf.entries.partition_point(|(e, _)| e.as_slice() < k);
        if let Some((_, held)) = leaf.entries.get(at).filter(|(e, _)| e == k) {
            return Ok(Some((leaf_no, *held)));
        }
        leaf.entries.insert(at, (k.to_vec(), v));
        self.state.entries += 1;
        let mut carry = self.fit(leaf_no, leaf, Some(at))?;
        // Walk back up, inserting separators of split nodes.
        for &(page, slot) in path.iter().rev().skip(1) {
            let Some((sep, right)) = carry else {
                return Ok(None);
            };
            let mut node = self.load(page)?;
            node.entries.insert((slot + 1) as usize, (sep, right));
            carry = self.fit(page, node, None)?;
        }
        if let Some((sep, right)) = carry {
            let root = self.alloc()?;
            let old = self.state.root;
            self.store(
                root,
                &Owned {
                    level: self.state.height as u8,
                    left: 0,
                    right: old,
                    entries: vec![(sep, right)],
                },
            )?;
            self.state.root = root;
            self.state.height += 1;
        }
        Ok(None)
    }

    /// Stores `node` at `page`, splitting it if it overflows. Returns the
    /// separator and page of the new right half. `at` is where a leaf took
    /// its new entry: a leaf that overflows at the end of the last leaf —
    /// keys arriving in ascending order, as order numbers and dates do —
    /// keeps 90 % of its entries (as a bulk load fills), not half, so such
    /// an index is not left half empty.
    fn fit(
        &mut self,
        page: u64,
        mut node: Owned,
        at: Option<usize>,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        if node.entries.len() <= self.cap {
            self.store(page, &node)?;
            return Ok(None);
        }
        let right_no = self.alloc()?;
        // The new node takes entries of this one: the log may copy them.
        self.file.note_source(right_no, page);
        let len = node.entries.len();
        let ascending = node.level == 0 && node.right == 0 && at == Some(len - 1);
        let mid = if ascending {
            (self.cap * 9 / 10).clamp(len / 2, len - 1)
        } else {
            len / 2
        };
        let mut upper = node.entries.split_off(mid);
        let (sep, right) = if node.level == 0 {
            let sep = upper[0].0.clone();
            let right = Owned {
                level: 0,
                left: page,
                right: node.right,
                entries: upper,
            };
            if node.right != 0 {
                let mut after = self.load(node.right)?;
                after.left = right_no;
                self.store(node.right, &after)?;
            }
            node.right = right_no;
            (sep, right)
        } else {
            let (sep, first_child) = upper.remove(0);
            (
                sep,
                Owned {
                    level: node.level,
                    left: 0,
                    right: first_child,
                    entries: upper,
                },
            )
        };
        self.store(page, &node)?;
        self.store(right_no, &right)?;
        Ok(Some((sep, right_no)))
    }

    /// Gives the entry with key `old` the key `new` where it stands, when
    /// `new` sorts between the entry's neighbours in the same leaf (as a
    /// record's unique key does when it is deleted and takes its recno as
    /// suffix): one descent instead of a removal and an insertion. Returns
    /// the entry's value, or None — with nothing changed — when `old` is
    /// absent or `new` belongs elsewhere.
    pub fn rekey_in_place(&mut self, old: &[u8], new: &[u8]) -> Result<Option<u64>> {
        debug_assert_eq!(new.len(), self.klen);
        let Some((p, leaf_no)) = self.leaf_for(old)? else {
            return Ok(None);
        };
        drop(p);
        let e = self.e();
        let mut p = self.file.write(leaf_no)?;
        let at = {
            let n = Node { b: &p, e };
            self.check_node(leaf_no, &n)?;
            let at = n.lower_bound(old);
            let found = at < n.count() && n.key(at) == old;
            // Strictly between the neighbours: the last entry of a leaf is
            // not rekeyed, its upper bound is the parent's separator.
            let fits = at + 1 < n.count()
                && n.key(at + 1) > new
                && (at == 0 || n.key(at - 1) < new)
                && (at > 0 || new >= old);
            if !found || !fits {
                return Ok(None);
            }
            at
        };
        self.touch();
        let o = NODE + at * e;
        p[o..o + self.klen].copy_from_slice(new);
        Ok(Some(get_u64(&p, o + self.klen)))
    }

    /// Removes the entry with key `k`; returns its value (None when absent).
    pub fn remove(&mut self, k: &[u8]) -> Result<Option<u64>> {
        self.touch();
        if self.state.root == 0 {
            return Ok(None);
        }
        let path = self.descend(k)?;
        let (leaf_no, _) = *path.last().expect("non-empty");
        // Fast path: the leaf stays full enough, so close the gap in place.
        {
            let e = self.e();
            let mut p = self.file.write(leaf_no)?;
            let (count, at, found) = {
                let n = Node { b: &p, e };
                self.check_node(leaf_no, &n)?;
                let at = n.lower_bound(k);
                (n.count(), at, at < n.count() && n.key(at) == k)
            };
            if !found {
                return Ok(None);
            }
            if (path.len() == 1 && count > 1) || count > self.min_fill() {
                let o = NODE + at * e;
                let v = get_u64(&p, o + self.klen);
                p.copy_within(o + e..NODE + count * e, o);
                put_u16(&mut p, PAGE_HEADER, (count - 1) as u16);
                self.state.entries -= 1;
                return Ok(Some(v));
            }
        }
        let mut leaf = self.load(leaf_no)?;
        let Ok(at) = leaf.entries.binary_search_by(|(e, _)| e.as_slice().cmp(k)) else {
            return Ok(None);
        };
        let (_, v) = leaf.entries.remove(at);
        self.state.entries -= 1;
        self.store(leaf_no, &leaf)?;
        self.rebalance(&path)?;
        Ok(Some(v))
    }

    fn min_fill(&self) -> usize {
        (self.cap / 4).max(1)
    }

    /// Restores the fill invariant bottom-up along `path` after a removal.
    fn rebalance(&mut self, path: &[(u64, isize)]) -> Result<()> {
        for depth in (0..path.len()).rev() {
            let (page, _) = path[depth];
            let node = self.load(page)?;
            if depth == 0 {
                // The root: an empty leaf empties the tree; an internal root with
                // no separator hands over to its only child.
                if node.level == 0 && node.entries.is_empty() {
                    self.release(page)?;
                    self.state.root = 0;
                    self.state.height = 0;
                } else if node.level > 0 && node.entries.is_empty() {
                    self.release(page)?;
                    self.state.root = node.right;
                    self.state.height -= 1;
                }
                return Ok(());
            }
            if node.entries.len() >= self.min_fill() {
                return Ok(());
            }
            let (parent_no, slot) = path[depth - 1];
            let mut parent = self.load(parent_no)?;
            // Pair the node with a sibling under the same parent: (left slot, right slot).
            let (ls, rs) = if slot + 1 < parent.entries.len() as isize {
                (slot, slot + 1)
            } else {
                (slot - 1, slot)
            };
            let child = |s: isize| {
                if s < 0 {
                    parent.right
                } else {
                    parent.entries[s as usize].1
                }
            };
            let (lno, rno) = (child(ls), child(rs));
            let mut left = if lno == page {
                node.clone()
            } else {
                self.load(lno)?
            };
            let mut right = if rno == page { node } else { self.load(rno)? };
            let sep_idx = rs as usize;
            let sep = parent.entries[sep_idx].0.clone();
            let extra = usize::from(left.level > 0);
            if left.entries.len() + right.entries.len() + extra <= self.cap {
                // Merge right into left.
                if left.level == 0 {
                    left.entries.append(&mut right.entries);
                    left.right = right.right;
                    if right.right != 0 {
                        let mut after = self.load(right.right)?;
                        after.left = lno;
                        self.store(right.right, &after)?;
                    }
                } else {
                    left.entries.push((sep, right.right));
                    left.entries.append(&mut right.entries);
                }
                self.store(lno, &left)?;
                self.release(rno)?;
                parent.entries.remove(sep_idx);
            } else {
                // Redistribute evenly and move the separator.
                if left.level == 0 {
                    let mut all = std::mem::take(&mut left.entries);
                    all.append(&mut right.entries);
                    let half = all.len() / 2;
                    right.entries = all.split_off(half);
                    left.entries = all;
                    parent.entries[sep_idx].0 = right.entries[0].0.clone();
                } else {
                    let mut all = std::mem::take(&mut left.entries);
                    all.push((sep, right.right));
                    all.append(&mut right.entries);
                    let half = all.len() / 2;
                    let mut upper = all.split_off(half);
                    let (new_sep, first_child) = upper.remove(0);
                    left.entries = all;
                    right.right = first_child;
                    right.entries = upper;
                    parent.entries[sep_idx].0 = new_sep;
                }
                self.store(lno, &left)?;
                self.store(rno, &right)?;
            }
            self.store(parent_no, &parent)?;
        }
        Ok(())
    }

    /// Replaces the tree with one built from `entries` (sorted, unique), filling
    /// nodes to about 90 %. `progress` is told how many entries were placed.
    pub fn bulk_load(
        &mut self,
        entries: &[(Vec<u8>, u64)],
        progress: impl FnMut(u64),
    ) -> Result<()> {
        self.touch();
        self.state = TreeState::default();
        self.file.truncate(1)?;
        self.build(entries, progress)
    }

    /// Builds the tree from `entries` (sorted, unique) on new pages at the end
    /// of the file, filling nodes to about 90 %. The tree must be empty, with
    /// nothing on its free list.
    pub fn build(
        &mut self,
        entries: &[(Vec<u8>, u64)],
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        debug_assert!(self.state.root == 0 && self.state.free_head == 0);
        self.touch();
        if entries.is_empty() {
            return Ok(());
        }
        let fill = (self.cap * 9 / 10).max(2).min(self.cap);
        // Leaves.
        let chunks: Vec<&[(Vec<u8>, u64)]> = entries.chunks(fill).collect();
        let first = self.file.page_count();
        let mut level: Vec<(Vec<u8>, u64)> = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let no = first + i as u64;
            let node = Owned {
                level: 0,
                left: if i == 0 { 0 } else { no - 1 },
                right: if i + 1 == chunks.len() { 0 } else { no + 1 },
                entries: chunk.to_vec(),
            };
            let got = self.file.allocate(PageType::Index)?.0;
            debug_assert_eq!(got, no);
            self.store(no, &node)?;
            level.push((chunk[0].0.clone(), no));
            progress(((i + 1) * fill).min(entries.len()) as u64);
        }
        let mut height = 1;
        // Internal levels: each node takes `fill + 1` children.
        while level.len() > 1 {
            let mut up = Vec::new();
            for group in level.chunks(fill + 1) {
                let no = self.file.allocate(PageType::Index)?.0;
                let node = Owned {
                    level: height,
                    left: 0,
                    right: group[0].1,
                    entries: group[1..].to_vec(),
                };
                self.store(no, &node)?;
                up.push((group[0].0.clone(), no));
            }
            level = up;
            height += 1;
        }
        self.state.root = level[0].1;
        self.state.height = u32::from(height);
        self.state.entries = entries.len() as u64;
        Ok(())
    }

    /// Walks the whole tree checking its invariants; returns every (key, value)
    /// in order. Problems are reported with the page they were found in.
    pub fn verify(&self) -> Result<Vec<(Vec<u8>, u64)>, String> {
        let mut out = Vec::new();
        if self.state.root == 0 {
            self.verify_pages(&[])?;
            return Ok(out);
        }
        let mut leaves = Vec::new();
        let mut nodes = Vec::new();
        self.verify_node(
            self.state.root,
            self.state.height - 1,
            None,
            None,
            (&mut leaves, &mut nodes),
            0,
        )?;
        self.verify_pages(&nodes)?;
        let mut prev_page = 0;
        for (i, &page) in leaves.iter().enumerate() {
            let node = self.load(page).map_err(|e| e.to_string())?;
            if node.left != prev_page {
                return Err(format!(
                    "page {page}: left link {} should be {prev_page}",
                    node.left
                ));
            }
            let next = leaves.get(i + 1).copied().unwrap_or(0);
            if node.right != next {
                return Err(format!(
                    "page {page}: right link {} should be {next}",
                    node.right
                ));
            }
            prev_page = page;
            out.extend(node.entries);
        }
        if out.len() as u64 != self.state.entries {
            return Err(format!(
                "tree holds {} entries, header says {}",
                out.len(),
                self.state.entries
            ));
        }
        Ok(out)
    }

    fn verify_node(
        &self,
        page: u64,
        level: u32,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        (leaves, nodes): (&mut Vec<u64>, &mut Vec<u64>),
        depth: u32,
    ) -> Result<(), String> {
        if depth > 64 {
            return Err(format!("page {page}: tree deeper than 64 levels"));
        }
        if nodes.len() as u64 >= self.file.page_count() {
            return Err(format!(
                "page {page}: the tree reaches more pages than the file holds"
            ));
        }
        nodes.push(page);
        let node = self.load(page).map_err(|e| e.to_string())?;
        if u32::from(node.level) != level {
            return Err(format!(
                "page {page}: level {} where {level} was expected",
                node.level
            ));
        }
        for w in node.entries.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err(format!(
                    "page {page}: keys out of order ({:02x?} before {:02x?})",
                    w[0].0, w[1].0
                ));
            }
        }
        if let (Some(lo), Some(first)) = (lo, node.entries.first()) {
            if first.0.as_slice() < lo {
                return Err(format!(
                    "page {page}: key {:02x?} below its separator",
                    first.0
                ));
            }
        }
        if let (Some(hi), Some(last)) = (hi, node.entries.last()) {
            if last.0.as_slice() >= hi {
                return Err(format!(
                    "page {page}: key {:02x?} at or above the next separator",
                    last.0
                ));
            }
        }
        if node.level == 0 {
            leaves.push(page);
            return Ok(());
        }
        let mut bound = lo.map(<[u8]>::to_vec);
        let mut child = node.right;
        for (sep, next) in &node.entries {
            self.verify_node(
                child,
                level - 1,
                bound.as_deref(),
                Some(sep),
                (&mut *leaves, &mut *nodes),
                depth + 1,
            )?;
            bound = Some(sep.clone());
            child = *next;
        }
        self.verify_node(
            child,
            level - 1,
            bound.as_deref(),
            hi,
            (leaves, nodes),
            depth + 1,
        )
    }

    /// Every page but the header is a node of the tree (`nodes`, each reached
    /// once) or on the free list, never both; the free list holds
    /// `free_pages` free pages and no loop.
    fn verify_pages(&self, nodes: &[u64]) -> Result<(), String> {
        let count = self.file.page_count();
        let mut owner = vec![0u8; count as usize];
        for &n in nodes {
            match owner.get_mut(n as usize) {
                Some(o) if n > 0 && *o == 0 => *o = 1,
                Some(_) if n > 0 => return Err(format!("page {n}: reached twice in the tree")),
                _ => return Err(format!("page {n}: a tree page outside the file")),
            }
        }
        let mut free = 0u64;
        let mut no = self.state.free_head;
        while no != 0 {
            match owner.get(no as usize) {
                None => return Err(format!("page {no}: the free list points outside the file")),
                Some(1) => return Err(format!("page {no}: both free and a node of the tree")),
                Some(2) => return Err(format!("page {no}: the free list loops")),
                _ => {}
            }
            owner[no as usize] = 2;
            free += 1;
            let p = self.file.read(no).map_err(|e| e.to_string())?;
            if PageType::from_byte(layout::page_type(&p)) != Some(PageType::Free) {
                return Err(format!("page {no}: on the free list but not a free page"));
            }
            no = get_u64(&p, PAGE_HEADER);
        }
        if free != self.state.free_pages {
            return Err(format!(
                "the free list holds {free} pages, the header says {}",
                self.state.free_pages
            ));
        }
        if let Some(lost) = (1..count).find(|&p| owner[p as usize] == 0) {
            let n = (1..count).filter(|&p| owner[p as usize] == 0).count();
            return Err(format!(
                "page {lost}: neither in the tree nor on the free list ({n} such pages lost)"
            ));
        }
        Ok(())
    }

    /// Entries from `pos` onwards while `keep(key)` holds — `keep` must hold
    /// for a prefix of the keys in order (an upper bound) —, counted without
    /// reading records, a whole leaf at a time.
    pub fn count_from(&self, mut pos: Option<Pos>, keep: impl Fn(&[u8]) -> bool) -> Result<u64> {
        let mut n = 0;
        while let Some(p) = pos {
            let page = self.file.read(p.page)?;
            let node = Node {
                b: &page,
                e: self.e(),
            };
            self.check_node(p.page, &node)?;
            let count = node.count();
            // `keep` holds for a prefix of the keys in order: a leaf whose last
            // key is kept is counted whole, without looking at each key.
            if p.idx < count && keep(node.key(count - 1)) {
                n += (count - p.idx) as u64;
            } else {
                let mut i = p.idx;
                while i < count {
                    if !keep(node.key(i)) {
                        return Ok(n);
                    }
                    n += 1;
                    i += 1;
                }
                if p.idx < count {
                    return Ok(n);
                }
            }
            pos = if node.right() == 0 {
                None
            } else {
                Some(Pos {
                    page: node.right(),
                    idx: 0,
                })
            };
        }
        Ok(n)
    }

    /// Fraction (0..=1) of the entries that sort before `k`, estimated from the
    /// positions taken on the way down (no leaf walk).
    pub fn rank_estimate(&self, k: &[u8]) -> Result<f64> {
        if self.state.root == 0 {
            return Ok(0.0);
        }
        let mut page = self.state.root;
        let (mut frac, mut width) = (0.0f64, 1.0f64);
        loop {
            let p = self.file.read(page)?;
            let n = Node { b: &p, e: self.e() };
            self.check_node(page, &n)?;
            if n.level() == 0 {
                let c = n.count().max(1) as f64;
                return Ok(frac + width * n.lower_bound(k) as f64 / c);
            }
            let (slot, child) = n.child_for(k);
            let kids = (n.count() + 1) as f64;
            frac += width * (slot + 1) as f64 / kids;
            width /= kids;
            page = child;
        }
    }
}
