//! The B+tree against a BTreeMap, with pages small enough that every operation
//! splits, merges and redistributes.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::{BTree, TreeState};
use crate::page::{BufferPool, PageFile};
use crate::storage::{MemoryStorage, OpenMode, Storage};

const KLEN: usize = 200;

fn tree() -> BTree {
    let s = MemoryStorage::new();
    let p = Path::new("/i.rzi");
    let f = s.open(p, OpenMode::CreateNew).unwrap();
    let file = PageFile::open(BufferPool::new(64 << 10), f, p, 4096).unwrap();
    file.write_direct(0, &mut vec![0u8; 4096]).unwrap();
    BTree::new(file, KLEN, TreeState::default())
}

fn key(n: u32) -> Vec<u8> {
    let mut k = vec![0u8; KLEN];
    k[..4].copy_from_slice(&n.to_be_bytes());
    k
}

fn check(t: &BTree, model: &BTreeMap<u32, u64>) {
    let all = t.verify().unwrap_or_else(|e| panic!("{e}"));
    let want: Vec<(Vec<u8>, u64)> = model.iter().map(|(k, v)| (key(*k), *v)).collect();
    assert_eq!(all, want);
    // Walk both ways through the cursor API.
    let mut fwd = vec![];
    let mut pos = t.first().unwrap();
    while let Some(p) = pos {
        fwd.push(t.entry(p).unwrap().1);
        pos = t.next(p).unwrap();
    }
    assert_eq!(fwd, model.values().copied().collect::<Vec<_>>());
    let mut back = vec![];
    let mut pos = t.last().unwrap();
    while let Some(p) = pos {
        back.push(t.entry(p).unwrap().1);
        pos = t.prev(p).unwrap();
    }
    back.reverse();
    assert_eq!(back, fwd);
    // And through `entry_step`, which reads each leaf once per entry and
    // takes the unchecked positions it hands out.
    for forwards in [true, false] {
        let mut seen = vec![];
        let mut pos = if forwards { t.first() } else { t.last() }.unwrap();
        while let Some(p) = pos {
            let Some(st) = t.entry_step(p, forwards).unwrap() else {
                break;
            };
            assert_eq!(t.entry(st.at).unwrap(), (st.key.clone(), st.val));
            seen.push(st.val);
            pos = st.then;
        }
        if !forwards {
            seen.reverse();
        }
        assert_eq!(seen, fwd, "entry_step forwards={forwards}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32),
    InsertNew(u32),
    Remove(u32),
    Rekey(u32, u32),
    Seek(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u32..3000).prop_map(Op::Insert),
        2 => (0u32..3000).prop_map(Op::InsertNew),
        4 => (0u32..3000).prop_map(Op::Remove),
        // Mostly near moves, as a deleted unique key's suffix makes.
        2 => (0u32..3000, -12i32..12).prop_map(|(k, d)| Op::Rekey(k, k.saturating_add_signed(d))),
        1 => (0u32..3000).prop_map(Op::Seek),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_model(bulk in 0u32..600, ops in proptest::collection::vec(op(), 1..700)) {
        let mut t = tree();
        let mut model = BTreeMap::new();
        let entries: Vec<(Vec<u8>, u64)> = (0..bulk).map(|i| (key(i * 5), u64::from(i))).collect();
        t.bulk_load(&entries, |_| {}).unwrap();
        for i in 0..bulk {
            model.insert(i * 5, u64::from(i));
        }
        check(&t, &model);
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert(k) => match model.entry(k) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        prop_assert!(t.insert(&key(k), 1).is_err());
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        t.reserve(t.insert_reserve()).unwrap();
                        t.insert(&key(k), n as u64).unwrap();
                        slot.insert(n as u64);
                    }
                },
                Op::InsertNew(k) => {
                    t.reserve(t.insert_reserve()).unwrap();
                    let held = t.insert_new(&key(k), n as u64).unwrap();
                    prop_assert_eq!(held, model.get(&k).copied());
                    model.entry(k).or_insert(n as u64);
                }
                Op::Remove(k) => {
                    prop_assert_eq!(t.remove(&key(k)).unwrap(), model.remove(&k));
                }
                Op::Rekey(a, b) => {
                    let before = t.state;
                    match t.rekey_in_place(&key(a), &key(b)).unwrap() {
                        Some(v) => {
                            // Only a present key moves, never onto another.
                            prop_assert_eq!(model.remove(&a), Some(v));
                            prop_assert!(a == b || !model.contains_key(&b));
                            model.insert(b, v);
                        }
                        None => prop_assert_eq!(t.state, before),
                    }
                }
                Op::Seek(k) => {
                    let got = t.seek(&key(k)).unwrap().map(|p| t.entry(p).unwrap().1);
                    let want = model.range(k..).next().map(|(_, v)| *v);
                    prop_assert_eq!(got, want);
                    let step = t.seek_step(&key(k)).unwrap();
                    prop_assert_eq!(step.as_ref().map(|s| s.val), want);
                    if let Some(s) = step {
                        prop_assert_eq!(Some(s.at), t.seek(&key(k)).unwrap());
                        prop_assert_eq!(t.entry(s.at).unwrap(), (s.key, s.val));
                    }
                    prop_assert_eq!(t.get(&key(k)).unwrap(), model.get(&k).copied());
                }
            }
        }
        check(&t, &model);
        prop_assert_eq!(t.state.entries, model.len() as u64);
    }
}

#[test]
fn growing_and_shrinking_keeps_the_tree_shallow() {
    let mut t = tree();
    for i in 0..5000u32 {
        t.reserve(t.insert_reserve()).unwrap();
        t.insert(&key(i), u64::from(i)).unwrap();
    }
    let tall = t.state.height;
    assert!(tall >= 3, "height {tall}");
    for i in 0..5000u32 {
        if i % 50 != 0 {
            assert_eq!(t.remove(&key(i)).unwrap(), Some(u64::from(i)));
        }
    }
    let model: BTreeMap<u32, u64> = (0..5000u32)
        .filter(|i| i % 50 == 0)
        .map(|i| (i, u64::from(i)))
        .collect();
    check(&t, &model);
    assert!(t.state.height < tall, "height stayed {tall}");
    // Freed pages are reused rather than growing the file.
    let pages = t.file().page_count();
    for i in 0..2000u32 {
        if i % 50 != 0 {
            t.reserve(t.insert_reserve()).unwrap();
            t.insert(&key(i), 1).unwrap();
        }
    }
    assert_eq!(t.file().page_count(), pages);
    for i in (0..5000u32)
        .filter(|i| i % 50 == 0)
        .chain((0..2000).filter(|i| i % 50 != 0))
    {
        t.remove(&key(i)).unwrap().unwrap();
    }
    assert_eq!(t.state.root, 0);
    assert_eq!(t.state.entries, 0);
}

#[test]
fn rank_estimates_track_positions() {
    let mut t = tree();
    let entries: Vec<(Vec<u8>, u64)> = (0..10_000u32).map(|i| (key(i), u64::from(i))).collect();
    t.bulk_load(&entries, |_| {}).unwrap();
    for probe in [0u32, 2500, 5000, 9999] {
        let r = t.rank_estimate(&key(probe)).unwrap();
        assert!(
            (r - f64::from(probe) / 10_000.0).abs() < 0.05,
            "{probe}: {r}"
        );
    }
    let n = t
        .count_from(t.seek(&key(100)).unwrap(), |k| k < key(200).as_slice())
        .unwrap();
    assert_eq!(n, 100);
}

#[test]
fn ascending_inserts_fill_leaves_as_a_bulk_load_does() {
    let mut t = tree();
    let mut model = BTreeMap::new();
    for n in 0..3000u32 {
        t.insert(&key(n), u64::from(n)).unwrap();
        model.insert(n, u64::from(n));
    }
    check(&t, &model);
    // Entries of 208 bytes in 4 KiB pages: 19 per leaf. Split in halves,
    // 3000 ascending keys take about 3000 / 10 leaves; kept 90 % full,
    // about 3000 / 17.
    let cap = t.capacity();
    let pages = t.file().page_count();
    let full = 3000 / (cap * 9 / 10);
    assert!(
        pages < full as u64 * 5 / 4,
        "{pages} pages for 3000 ascending keys ({cap} per leaf)"
    );
    // Out-of-order inserts into those full leaves still split and stay sorted.
    let mut all: Vec<(Vec<u8>, u64)> = model.iter().map(|(k, v)| (key(*k), *v)).collect();
    for n in (0..3000u32).step_by(7) {
        let mut k = key(n);
        k[4] = 1; // between n and n + 1
        t.insert(&k, 1).unwrap();
        all.push((k, 1));
    }
    all.sort();
    assert_eq!(t.verify().unwrap(), all);
}

proptest! {
    /// The search's comparison is the byte strings' order, whatever their
    /// lengths and however they share a prefix.
    #[test]
    fn key_less_and_key_cmp_are_the_byte_order(
        prefix in proptest::collection::vec(any::<u8>(), 0..12),
        a in proptest::collection::vec(any::<u8>(), 0..12),
        b in proptest::collection::vec(0u8..4, 0..12),
    ) {
        let a: Vec<u8> = prefix.iter().chain(&a).copied().collect();
        let b: Vec<u8> = prefix.iter().chain(&b).copied().collect();
        prop_assert_eq!(super::btree::key_less(&a, &b), a < b);
        prop_assert_eq!(super::btree::key_less(&b, &a), b < a);
        prop_assert!(!super::btree::key_less(&a, &a));
        prop_assert_eq!(super::btree::key_cmp(&a, &b), a.cmp(&b));
        prop_assert_eq!(super::btree::key_cmp(&b, &a), b.cmp(&a));
    }
}
