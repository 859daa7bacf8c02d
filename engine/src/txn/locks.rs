//! Record, file and named locks, with timeouts and deadlock detection.
//!
//! Every lock is exclusive and owned by a session. A record lock conflicts with
//! another session's lock on the same record or on the record's table (a file
//! lock); a file lock conflicts with another session's file lock or any of its
//! record locks on that table. Readers never take locks: a locked record can
//! still be read by everyone.
//!
//! Invariants: `held` maps each lock to its one owner; `waiting` records what a
//! blocked session waits for. Before a session blocks, the wait-for graph is
//! searched from the lock's holders: if it leads back to the requester, the
//! requester gets [`Error::Deadlock`] at once instead of waiting, so no cycle of
//! waiting sessions can form.

// aHash: keyed per process (lock names come from users), far cheaper than SipHash
// on the path of every record lock.
use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// What a lock protects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKey {
    /// One record of a table.
    Record(Arc<str>, u64),
    /// A whole table.
    File(Arc<str>),
    /// Any string (a business key, a job name…).
    Name(Arc<str>),
}

impl std::fmt::Display for LockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockKey::Record(t, r) => write!(f, "record {r} of table {t}"),
            LockKey::File(t) => write!(f, "table {t}"),
            LockKey::Name(n) => write!(f, "named lock {n:?}"),
        }
    }
}

/// A lock and its owner, as listed by [`crate::Database::locks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// The lock.
    pub key: LockKey,
    /// The owning session.
    pub session: u64,
}

#[derive(Debug, Default)]
struct Table {
    held: HashMap<LockKey, u64>,
    by_session: HashMap<u64, HashSet<LockKey>>,
    waiting: HashMap<u64, LockKey>,
    /// File locks in `held`: while there are none, a record lock need not
    /// look for its table's.
    file_locks: usize,
}

impl Table {
    /// Gives `key` to `session`.
    fn take(&mut self, key: &LockKey, session: u64) {
        if matches!(key, LockKey::File(_)) {
            self.file_locks += 1;
        }
        self.held.insert(key.clone(), session);
        self.by_session
            .entry(session)
            .or_default()
            .insert(key.clone());
    }

    /// Removes `key` from `held` (its owner's set is the caller's business).
    fn forget(&mut self, key: &LockKey) {
        if self.held.remove(key).is_some() && matches!(key, LockKey::File(_)) {
            self.file_locks -= 1;
        }
    }

    /// Sessions other than `me` whose locks conflict with `key`.
    fn blockers(&self, key: &LockKey, me: u64) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some(&h) = self.held.get(key) {
            if h != me {
                out.push(h);
            }
        }
        match key {
            LockKey::Record(..) if self.file_locks == 0 => {}
            LockKey::Record(t, _) => {
                if let Some(&h) = self.held.get(&LockKey::File(t.clone())) {
                    if h != me {
                        out.push(h);
                    }
                }
            }
            LockKey::File(t) => {
                for (k, &h) in &self.held {
                    if h != me && matches!(k, LockKey::Record(kt, _) if kt == t) {
                        out.push(h);
                    }
                }
            }
            LockKey::Name(_) => {}
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// True when `from`'s blockers lead, through the sessions they wait for,
    /// back to `me`.
    fn leads_to(&self, from: &[u64], me: u64) -> bool {
        let mut seen = HashSet::new();
        let mut stack: Vec<u64> = from.to_vec();
        while let Some(s) = stack.pop() {
            if s == me {
                return true;
            }
            if !seen.insert(s) {
                continue;
            }
            if let Some(k) = self.waiting.get(&s) {
                stack.extend(self.blockers(k, s));
            }
        }
        false
    }
}

/// The locks of one database.
#[derive(Debug, Default)]
pub struct LockManager {
    table: Mutex<Table>,
    changed: Condvar,
    /// What to call a session in messages (`ana@10.0.0.7:51234`).
    names: Mutex<HashMap<u64, String>>,
    /// Waits, timeouts and deadlocks, for monitoring (relaxed atomics).
    pub(crate) stats: crate::stats::LockCounters,
}

impl LockManager {
    /// Names `session` for lock messages (a server names its sessions after
    /// their user and address).
    pub fn set_name(&self, session: u64, name: &str) {
        self.names.lock().insert(session, name.to_owned());
    }

    /// Forgets a session's name (the session ended).
    pub fn forget_name(&self, session: u64) {
        self.names.lock().remove(&session);
    }

    /// `session N`, with its name when it has one.
    pub fn describe(&self, session: u64) -> String {
        match self.names.lock().get(&session) {
            Some(n) => format!("session {session} ({n})"),
            None => format!("session {session}"),
        }
    }

    /// Takes `key` for `session`, waiting up to `timeout` for other sessions to
    /// release it. Returns false when the session already held it.
    pub fn lock(&self, session: u64, key: &LockKey, timeout: Duration) -> Result<bool> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut waited = false;
        let stats = &self.stats;
        let waited_for = |waited: bool| {
            if waited {
                stats.wait_micros.fetch_add(
                    started.elapsed().as_micros() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        };
        let mut t = self.table.lock();
        loop {
            if t.held.get(key) == Some(&session) {
                return Ok(false);
            }
            let blockers = t.blockers(key, session);
            if blockers.is_empty() {
                t.take(key, session);
                if waited {
                    t.waiting.remove(&session);
                }
                waited_for(waited);
                return Ok(true);
            }
            if t.leads_to(&blockers, session) {
                t.waiting.remove(&session);
                tracing::info!(session, lock = %key, "deadlock detected; the requester is refused");
                waited_for(waited);
                stats
                    .deadlocks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(Error::Deadlock {
                    lock: key.to_string(),
                    holder: blockers[0],
                    holder_name: self.describe(blockers[0]),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                t.waiting.remove(&session);
                waited_for(waited);
                stats
                    .timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(if timeout.is_zero() {
                    Error::LockConflict {
                        lock: key.to_string(),
                        holder: blockers[0],
                        holder_name: self.describe(blockers[0]),
                    }
                } else {
                    Error::LockTimeout {
                        lock: key.to_string(),
                        holder: blockers[0],
                        holder_name: self.describe(blockers[0]),
                        waited_ms: timeout.as_millis() as u64,
                    }
                });
            }
            t.waiting.insert(session, key.clone());
            if !waited {
                waited = true;
                stats
                    .waits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Wake up periodically too: a deadlock may form after we started
            // waiting, through a session that blocked later.
            let slice = (deadline - now).min(Duration::from_millis(50));
            self.changed.wait_for(&mut t, slice);
        }
    }

    /// Releases one lock of `session` (false if it did not hold it).
    pub fn unlock(&self, session: u64, key: &LockKey) -> bool {
        let mut t = self.table.lock();
        if t.held.get(key) != Some(&session) {
            return false;
        }
        t.forget(key);
        if let Some(set) = t.by_session.get_mut(&session) {
            set.remove(key);
        }
        drop(t);
        self.changed.notify_all();
        true
    }

    /// Releases every lock of `session`; returns how many.
    pub fn release_all(&self, session: u64) -> usize {
        let mut t = self.table.lock();
        let keys = t.by_session.remove(&session).unwrap_or_default();
        for k in &keys {
            t.forget(k);
        }
        t.waiting.remove(&session);
        drop(t);
        self.changed.notify_all();
        keys.len()
    }

    /// The session other than `me` holding exactly `key`, if any (an append
    /// only needs the table not to be file-locked by someone else).
    pub fn holder_other_than(&self, key: &LockKey, me: u64) -> Option<u64> {
        let t = self.table.lock();
        if matches!(key, LockKey::File(_)) && t.file_locks == 0 {
            return None;
        }
        t.held.get(key).copied().filter(|&h| h != me)
    }

    /// Every lock held now, sorted.
    pub fn list(&self) -> Vec<LockInfo> {
        let t = self.table.lock();
        let mut v: Vec<LockInfo> = t
            .held
            .iter()
            .map(|(k, &s)| LockInfo {
                key: k.clone(),
                session: s,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec(r: u64) -> LockKey {
        LockKey::Record("t".into(), r)
    }

    #[test]
    fn conflicts_timeouts_and_file_locks() {
        let m = LockManager::default();
        assert!(m.lock(1, &rec(1), Duration::ZERO).unwrap());
        assert!(!m.lock(1, &rec(1), Duration::ZERO).unwrap());
        assert!(matches!(
            m.lock(2, &rec(1), Duration::ZERO),
            Err(Error::LockConflict { holder: 1, .. })
        ));
        let t0 = Instant::now();
        assert!(matches!(
            m.lock(2, &rec(1), Duration::from_millis(80)),
            Err(Error::LockTimeout { .. })
        ));
        assert!(t0.elapsed() >= Duration::from_millis(80));
        assert!(matches!(
            m.lock(2, &LockKey::File("t".into()), Duration::ZERO),
            Err(Error::LockConflict { .. })
        ));
        m.lock(2, &rec(2), Duration::ZERO).unwrap();
        assert_eq!(m.release_all(1), 1);
        assert!(
            m.lock(3, &LockKey::File("t".into()), Duration::ZERO)
                .is_err(),
            "2 still holds record 2"
        );
        m.unlock(2, &rec(2));
        m.lock(3, &LockKey::File("t".into()), Duration::ZERO)
            .unwrap();
        assert!(matches!(
            m.lock(1, &rec(9), Duration::ZERO),
            Err(Error::LockConflict { holder: 3, .. })
        ));
        assert_eq!(m.list().len(), 1);
    }

    /// Record locks skip the look-up of their table's lock while no file
    /// lock exists: the count must follow every way a file lock ends.
    #[test]
    fn a_file_lock_blocks_records_until_it_ends_however_it_ends() {
        let m = LockManager::default();
        let file = |t: &str| LockKey::File(t.into());
        for round in 0..3 {
            m.lock(1, &file("t"), Duration::ZERO).unwrap();
            // Taken again by its holder: still one lock.
            assert!(!m.lock(1, &file("t"), Duration::ZERO).unwrap());
            m.lock(1, &file("u"), Duration::ZERO).unwrap();
            assert!(
                matches!(
                    m.lock(2, &rec(5), Duration::ZERO),
                    Err(Error::LockConflict { holder: 1, .. })
                ),
                "round {round}"
            );
            assert_eq!(m.holder_other_than(&file("t"), 2), Some(1));
            match round {
                0 => {
                    assert!(m.unlock(1, &file("t")));
                    assert!(!m.unlock(1, &file("t")), "not held twice");
                    assert!(!m.unlock(2, &file("u")), "not 2's to release");
                    m.unlock(1, &file("u"));
                }
                _ => {
                    m.release_all(1);
                }
            }
            assert_eq!(m.holder_other_than(&file("t"), 2), None);
            assert!(m.lock(2, &rec(5), Duration::ZERO).unwrap(), "round {round}");
            assert!(matches!(
                m.lock(1, &file("t"), Duration::ZERO),
                Err(Error::LockConflict { holder: 2, .. })
            ));
            m.release_all(2);
        }
        assert!(m.list().is_empty());
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_is_released() {
        let m = Arc::new(LockManager::default());
        m.lock(1, &LockKey::Name("job".into()), Duration::ZERO)
            .unwrap();
        let m2 = m.clone();
        let h = std::thread::spawn(move || {
            m2.lock(2, &LockKey::Name("job".into()), Duration::from_secs(5))
        });
        std::thread::sleep(Duration::from_millis(50));
        m.release_all(1);
        assert!(h.join().unwrap().unwrap());
    }

    #[test]
    fn deadlocks_are_refused_not_waited_on() {
        let m = Arc::new(LockManager::default());
        m.lock(1, &rec(1), Duration::ZERO).unwrap();
        m.lock(2, &rec(2), Duration::ZERO).unwrap();
        let m2 = m.clone();
        // Session 2 waits for record 1 …
        let h = std::thread::spawn(move || m2.lock(2, &rec(1), Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        // … so session 1 asking for record 2 would close the cycle.
        let t0 = Instant::now();
        assert!(matches!(
            m.lock(1, &rec(2), Duration::from_secs(10)),
            Err(Error::Deadlock { .. })
        ));
        assert!(t0.elapsed() < Duration::from_secs(1));
        m.release_all(1);
        assert!(h.join().unwrap().unwrap());
    }
}
