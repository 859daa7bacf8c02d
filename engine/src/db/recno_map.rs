//! A map keyed by recno, for what a transaction keeps per record it changed.
//!
//! A transaction that appends gets consecutive recnos (its reservations are
//! taken in order), and one that loads a table appends millions: there a hash
//! map pays a hash, a probe and, as it grows, a rehash of everything for each
//! record. Recnos from the first one inserted up to a little past the
//! highest are kept in a vector indexed from that first recno; any other
//! recno goes to a hash map beside it. Invariant: a recno is in at most one
//! of the two (the vector takes over the recnos it comes to span), and
//! `dense[i]` is the value of recno `base + i`.

use ahash::AHashMap as HashMap;

/// The most absent recnos the vector takes to reach a new one (recnos other
/// sessions reserved between this transaction's).
const GAP: u64 = 64;

#[derive(Debug, Clone)]
pub(crate) struct RecnoMap<V> {
    base: u64,
    dense: Vec<Option<V>>,
    sparse: HashMap<u64, V>,
}

impl<V> Default for RecnoMap<V> {
    fn default() -> Self {
        RecnoMap {
            base: 0,
            dense: Vec::new(),
            sparse: HashMap::default(),
        }
    }
}

impl<V> RecnoMap<V> {
    /// Where `r` goes in the vector: its index, when it is in the vector's
    /// span or close enough after it to extend it.
    fn slot(&mut self, r: u64) -> Option<usize> {
        // Only the first recno: the hash map is empty until the vector is not.
        if self.dense.is_empty() {
            self.base = r;
        }
        let i = r.checked_sub(self.base)?;
        let len = self.dense.len() as u64;
        if i < len {
            return Some(i as usize);
        }
        if i - len > GAP {
            return None;
        }
        let old = self.dense.len();
        self.dense.resize_with(i as usize + 1, || None);
        // Recnos the vector now spans move into it from the hash map.
        if !self.sparse.is_empty() {
            for j in old..self.dense.len() {
                if let Some(v) = self.sparse.remove(&(self.base + j as u64)) {
                    self.dense[j] = Some(v);
                }
            }
        }
        Some(i as usize)
    }

    fn dense_index(&self, r: u64) -> Option<usize> {
        let i = r.checked_sub(self.base)?;
        (i < self.dense.len() as u64).then_some(i as usize)
    }

    pub fn get(&self, r: &u64) -> Option<&V> {
        match self.dense_index(*r) {
            Some(i) => self.dense[i].as_ref(),
            None => self.sparse.get(r),
        }
    }

    pub fn contains_key(&self, r: &u64) -> bool {
        self.get(r).is_some()
    }

    /// Sets `r`'s value; returns the one it had.
    pub fn insert(&mut self, r: u64, v: V) -> Option<V> {
        match self.slot(r) {
            Some(i) => self.dense[i].replace(v),
            None => self.sparse.insert(r, v),
        }
    }

    /// `r`'s value, made the default first if it has none.
    pub fn get_or_default(&mut self, r: u64) -> &mut V
    where
        V: Default,
    {
        match self.slot(r) {
            Some(i) => self.dense[i].get_or_insert_with(V::default),
            None => self.sparse.entry(r).or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap as Model;

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(
            ops in proptest::collection::vec(
                (0u8..3, prop_oneof![0u64..40, 1_000u64..1_300, 5_000u64..5_010]),
                1..400,
            )
        ) {
            let mut m: RecnoMap<u64> = RecnoMap::default();
            let mut model: Model<u64, u64> = Model::new();
            for (n, (op, r)) in ops.into_iter().enumerate() {
                let n = n as u64;
                match op {
                    0 => prop_assert_eq!(m.insert(r, n), model.insert(r, n)),
                    1 => {
                        *m.get_or_default(r) += n;
                        *model.entry(r).or_default() += n;
                    }
                    _ => prop_assert_eq!(m.get(&r), model.get(&r)),
                }
                prop_assert_eq!(m.contains_key(&r), model.contains_key(&r));
            }
            for (r, v) in &model {
                prop_assert_eq!(m.get(r), Some(v));
            }
            for r in 0..5_100u64 {
                prop_assert_eq!(m.get(&r), model.get(&r));
            }
        }
    }

    #[test]
    fn consecutive_recnos_stay_in_the_vector() {
        let mut m = RecnoMap::default();
        for r in 100..10_100u64 {
            m.insert(r, r);
        }
        // With gaps other sessions' reservations leave.
        for r in (10_150..20_000u64).step_by(7) {
            m.insert(r, r);
        }
        assert!(m.sparse.is_empty());
        m.insert(7, 7);
        m.insert(1 << 40, 1);
        assert_eq!(m.sparse.len(), 2);
        assert_eq!(m.get(&7), Some(&7));
        assert_eq!(m.get(&10_157), Some(&10_157));
        assert_eq!(m.get(&10_156), None);

        // A recno put in the hash map (too far ahead) is taken over when the
        // vector comes to span it.
        let mut m = RecnoMap::default();
        m.insert(0, 0);
        m.insert(100, 100);
        assert_eq!(m.sparse.len(), 1);
        for r in 1..100 {
            m.insert(r, r);
        }
        assert_eq!(*m.get_or_default(101), 0);
        assert!(m.sparse.is_empty());
        assert_eq!(m.get(&100), Some(&100));
        assert_eq!(m.insert(100, 7), Some(100));
    }
}
