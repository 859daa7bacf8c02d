//! Accounting for every page of a blob file: `check` verifies it, and the
//! verification after an unclean close rebuilds it.
//!
//! Every page but the header is exactly one of: on the free list (type Free),
//! a slotted page (type Blobs) whose live slots are exactly the blobs records
//! refer to — or that is empty and is the fill page —, or an overflow page
//! (type Overflow) of exactly one referenced blob's chain. A page in two of
//! these, or in none ("lost"), is a problem.

use std::collections::{HashMap, HashSet};

use super::{BlobStore, State, DESCRIPTOR, F_OVERFLOW, SLOT, SLOT_AREA};
use crate::error::Result;
use crate::page::layout::{self, get_u16, get_u64, put_u16};
use crate::page::{PageType, PAGE_HEADER};

/// What the records refer to, page by page.
struct Referenced {
    /// Slotted page → its referenced slots.
    slots: HashMap<u64, HashSet<usize>>,
    /// Overflow page → the blob whose chain holds it.
    overflow: HashMap<u64, u64>,
    problems: Vec<String>,
}

impl BlobStore {
    fn describe(&self, page: u64) -> String {
        format!("{} page {page}", self.file.path().display())
    }

    /// The free list, as a set; problems for a loop, a page out of range or
    /// one that is not a free page.
    fn free_pages(&self, st: &State, problems: &mut Vec<String>) -> HashSet<u64> {
        let mut free = HashSet::new();
        let mut no = st.free_head;
        while no != 0 {
            if no >= self.file.page_count() {
                problems.push(format!(
                    "{}: free list points past the end of the file",
                    self.describe(no)
                ));
                break;
            }
            if !free.insert(no) {
                problems.push(format!("{}: free list loops", self.describe(no)));
                break;
            }
            match self.file.read(no) {
                Ok(p) if PageType::from_byte(layout::page_type(&p)) == Some(PageType::Free) => {
                    no = get_u64(&p, PAGE_HEADER);
                }
                Ok(_) => {
                    problems.push(format!(
                        "{}: on the free list but in use",
                        self.describe(no)
                    ));
                    break;
                }
                Err(e) => {
                    problems.push(format!("{}: {e}", self.describe(no)));
                    break;
                }
            }
        }
        free
    }

    /// Where the blobs `ids` live: their slots and overflow chains.
    fn referenced(&self, ids: &HashSet<u64>) -> Referenced {
        let mut r = Referenced {
            slots: HashMap::new(),
            overflow: HashMap::new(),
            problems: Vec::new(),
        };
        for &id in ids {
            let (no, slot) = (id >> 16, (id & 0xffff) as usize);
            if !r.slots.entry(no).or_default().insert(slot) {
                continue;
            }
            let (flags, bytes) = match self.slot(id) {
                Ok(x) => x,
                Err(e) => {
                    r.problems.push(format!("blob {id:#x}: {e}"));
                    continue;
                }
            };
            if flags != F_OVERFLOW || bytes.len() != DESCRIPTOR {
                continue;
            }
            let mut next = get_u64(&bytes, 8);
            let mut hops = 0;
            while next != 0 && hops <= self.file.page_count() {
                hops += 1;
                if let Some(other) = r.overflow.insert(next, id) {
                    r.problems.push(format!(
                        "{}: overflow page of blobs {other:#x} and {id:#x}",
                        self.describe(next)
                    ));
                    break;
                }
                next = match self.file.read(next) {
                    Ok(p) => get_u64(&p, PAGE_HEADER),
                    Err(e) => {
                        r.problems.push(format!("{}: {e}", self.describe(next)));
                        break;
                    }
                };
            }
        }
        r
    }

    /// Checks that every page is accounted for, given the ids of every blob a
    /// record refers to. Returns the problems found (at most `limit`).
    pub fn audit(&self, ids: &HashSet<u64>, limit: usize) -> Vec<String> {
        let st = self.state.lock();
        let mut problems = Vec::new();
        let free = self.free_pages(&st, &mut problems);
        let mut retired: HashSet<u64> = st.retired.iter().copied().collect();
        retired.extend(ids);
        let refs = self.referenced(&retired);
        problems.extend(refs.problems);
        for no in 1..self.file.page_count() {
            if problems.len() >= limit {
                break;
            }
            let page = match self.file.read(no) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{}: {e}", self.describe(no)));
                    continue;
                }
            };
            let ty = PageType::from_byte(layout::page_type(&page));
            let in_use = refs.slots.contains_key(&no) || refs.overflow.contains_key(&no);
            if free.contains(&no) {
                if in_use {
                    problems.push(format!(
                        "{}: both free and in use by a record",
                        self.describe(no)
                    ));
                }
                continue;
            }
            match ty {
                Some(PageType::Blobs) => {
                    let b = &page[PAGE_HEADER..];
                    let count = usize::from(get_u16(b, 0));
                    let wanted = refs.slots.get(&no);
                    let live: Vec<usize> = (0..count)
                        .filter(|&i| {
                            SLOT_AREA + i * SLOT + 6 <= b.len()
                                && get_u16(b, SLOT_AREA + i * SLOT + 4) != 0
                        })
                        .collect();
                    for s in &live {
                        if !wanted.is_some_and(|w| w.contains(s)) {
                            problems.push(format!(
                                "{}: blob slot {s} is allocated but no record refers to it (lost)",
                                self.describe(no)
                            ));
                        }
                    }
                    if usize::from(get_u16(b, 4)) != live.len() {
                        problems.push(format!(
                            "{}: counts {} live slots, holds {}",
                            self.describe(no),
                            get_u16(b, 4),
                            live.len()
                        ));
                    }
                    if live.is_empty() && st.fill != no {
                        problems.push(format!(
                            "{}: an empty blob page that is not on the free list (lost)",
                            self.describe(no)
                        ));
                    }
                }
                Some(PageType::Overflow) if refs.overflow.contains_key(&no) => {}
                Some(PageType::Overflow) => problems.push(format!(
                    "{}: an overflow page no blob refers to (lost)",
                    self.describe(no)
                )),
                Some(PageType::Free) => problems.push(format!(
                    "{}: a free page that is not on the free list (lost)",
                    self.describe(no)
                )),
                other => problems.push(format!(
                    "{}: unexpected page type {other:?} in a blob file",
                    self.describe(no)
                )),
            }
        }
        problems.truncate(limit);
        problems
    }

    /// Rebuilds the allocation from the blobs records refer to (`ids`, all
    /// readable): every other slot is freed, and every page that holds none of
    /// them — including unreadable ones — goes on a new free list. For the
    /// verification after an unclean close, when the free list on disk cannot
    /// be trusted. Returns the pages put on the free list.
    pub fn rebuild_allocation(&self, ids: &HashSet<u64>) -> Result<u64> {
        let refs = self.referenced(ids);
        let mut st = self.state.lock();
        st.free_head = 0;
        st.fill = 0;
        st.reusable.clear();
        st.retired.clear();
        let mut freed = 0;
        for no in (1..self.file.page_count()).rev() {
            let keep = match self.file.read(no) {
                Ok(page) => match PageType::from_byte(layout::page_type(&page)) {
                    Some(PageType::Blobs) => refs.slots.contains_key(&no),
                    Some(PageType::Overflow) => refs.overflow.contains_key(&no),
                    _ => false,
                },
                Err(_) => false,
            };
            if !keep {
                // An unreadable page is overwritten whole, never read.
                let mut p = self.file.write_fresh(no)?;
                layout::format(&mut p, PageType::Free);
                drop(p);
                self.release_page(&mut st, no)?;
                freed += 1;
                continue;
            }
            if let Some(wanted) = refs.slots.get(&no) {
                let mut p = self.file.write(no)?;
                let b = &mut p[PAGE_HEADER..];
                let count = usize::from(get_u16(b, 0));
                let mut live = 0;
                for i in 0..count {
                    let s = SLOT_AREA + i * SLOT;
                    if wanted.contains(&i) {
                        live += 1;
                    } else {
                        put_u16(b, s + 2, 0);
                        put_u16(b, s + 4, 0);
                    }
                }
                put_u16(b, 4, live);
            }
        }
        Ok(freed)
    }
}
