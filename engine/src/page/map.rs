//! The pool's page map: an open-addressing hash table from (file id, page
//! number) to a value, with linear probing.
//!
//! The pool needs one thing a library map does not give: the address of the
//! bucket a key will be found in, known before the probe, so that a walk
//! can ask the CPU to fetch it while it still works on earlier records (see
//! [`PageMap::bucket_addr`]). Invariants:
//!
//! - The capacity is a power of two and at least twice the number of
//!   entries, so a probe ends at an empty bucket.
//! - An entry sits at its home bucket or after it with no empty bucket in
//!   between (removal shifts later entries back to keep this true).

/// One bucket: the key and its value.
type Bucket<V> = Option<(u64, u64, V)>;

/// An open-addressing map keyed by (file id, page number).
#[derive(Debug)]
pub(super) struct PageMap<V> {
    buckets: Box<[Bucket<V>]>,
    len: usize,
}

impl<V> Default for PageMap<V> {
    fn default() -> Self {
        PageMap::with_buckets(16)
    }
}

/// The home bucket's hash of a key. Its low bits pick the bucket, so they
/// must depend on every bit of both numbers (the pool picks shards with a
/// different hash).
fn hash(file: u64, page: u64) -> u64 {
    let mut x = file.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ page;
    x ^= x >> 32;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 32;
    x
}

/// Where a map's buckets were (see [`PageMap::layout`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Layout {
    pub(super) base: usize,
    pub(super) mask: usize,
}

impl Layout {
    /// The address of the bucket where a probe for the key starts (the
    /// memory a lookup reads first), for buckets of `V`.
    pub(super) fn bucket_addr<V>(self, file: u64, page: u64) -> usize {
        let i = hash(file, page) as usize & self.mask;
        self.base
            .wrapping_add(i.wrapping_mul(std::mem::size_of::<Bucket<V>>()))
    }
}

impl<V> PageMap<V> {
    fn with_buckets(n: usize) -> PageMap<V> {
        debug_assert!(n.is_power_of_two());
        PageMap {
            buckets: (0..n).map(|_| None).collect(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    fn home(&self, file: u64, page: u64) -> usize {
        hash(file, page) as usize & self.mask()
    }

    /// The bucket of a key, or of the empty bucket where it would go.
    fn find(&self, file: u64, page: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(file, page);
        loop {
            match &self.buckets[i] {
                None => return (i, false),
                Some((f, p, _)) if *f == file && *p == page => return (i, true),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The value of a key.
    pub(super) fn get(&self, key: &(u64, u64)) -> Option<&V> {
        match self.find(key.0, key.1) {
            (i, true) => self.buckets[i].as_ref().map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// Sets a key's value; returns the value it replaced.
    pub(super) fn insert(&mut self, key: (u64, u64), value: V) -> Option<V> {
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        let (i, found) = self.find(key.0, key.1);
        let old = self.buckets[i].replace((key.0, key.1, value));
        if !found {
            self.len += 1;
        }
        old.map(|(_, _, v)| v)
    }

    /// Removes a key; returns its value.
    pub(super) fn remove(&mut self, key: &(u64, u64)) -> Option<V> {
        let (mut hole, found) = self.find(key.0, key.1);
        if !found {
            return None;
        }
        let removed = self.buckets[hole].take().map(|(_, _, v)| v);
        self.len -= 1;
        // Shift back each later entry of the run that may move into the
        // hole: one whose home is not cyclically in (hole, i].
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let home = match &self.buckets[i] {
                None => break,
                Some((f, p, _)) => self.home(*f, *p),
            };
            let home_in_between = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !home_in_between {
                self.buckets[hole] = self.buckets[i].take();
                hole = i;
            }
        }
        removed
    }

    /// The keys held, in no particular order.
    pub(super) fn keys(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().flatten().map(|(f, p, _)| (*f, *p))
    }

    /// How many keys are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Where the buckets are and the mask of their count, from which
    /// [`bucket_addr`] finds the bucket a probe for a key starts at. Both
    /// change when the map grows: only meaningful as a prefetch hint.
    pub(super) fn layout(&self) -> Layout {
        Layout {
            base: self.buckets.as_ptr() as usize,
            mask: self.mask(),
        }
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, PageMap::with_buckets(self.buckets.len() * 2));
        for (f, p, v) in old.buckets.into_vec().into_iter().flatten() {
            let (i, _) = self.find(f, p);
            self.buckets[i] = Some((f, p, v));
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64, u32),
        Remove(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few files and pages, so keys repeat and runs collide.
        prop_oneof![
            (0u64..3, 0u64..200, any::<u32>()).prop_map(|(f, p, v)| Op::Insert(f, p, v)),
            (0u64..3, 0u64..200).prop_map(|(f, p)| Op::Remove(f, p)),
        ]
    }

    proptest! {
        /// Every sequence of inserts and removals leaves the map holding
        /// what a `HashMap` holds.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..2000)) {
            let mut m = PageMap::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(f, p, v) => {
                        prop_assert_eq!(m.insert((f, p), v), model.insert((f, p), v));
                    }
                    Op::Remove(f, p) => {
                        prop_assert_eq!(m.remove(&(f, p)), model.remove(&(f, p)));
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            for (k, v) in &model {
                prop_assert_eq!(m.get(k), Some(v));
            }
            for f in 0..3 {
                for p in 0..200 {
                    prop_assert_eq!(m.get(&(f, p)), model.get(&(f, p)));
                }
            }
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort_unstable();
            let mut want: Vec<_> = model.keys().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(keys, want);
        }
    }

    #[test]
    fn the_bucket_address_is_where_a_probe_starts() {
        let mut m = PageMap::default();
        for p in 0..100u64 {
            m.insert((1, p), p);
        }
        let layout = m.layout();
        for p in 0..100u64 {
            let addr = layout.bucket_addr::<u64>(1, p);
            let first = m.buckets.as_ptr() as usize;
            let i = (addr - first) / std::mem::size_of::<Bucket<u64>>();
            assert!(i < m.buckets.len());
            // The key is in that bucket or later in its run.
            let mut j = i;
            while m.buckets[j].as_ref().map(|b| (b.0, b.1)) != Some((1, p)) {
                assert!(m.buckets[j].is_some(), "run broken before key {p}");
                j = (j + 1) & m.mask();
            }
        }
    }
}
