//! The server's watcher, twice a second:
//!
//! - re-reads `raiz.users` when its metadata changed; sessions of a user who
//!   is gone are ended with a message saying so, and every other session
//!   re-reads its user (groups, admin flag) at its next request;
//! - for each session whose request may be waiting for a lock, finds the
//!   sessions holding it (the monitor's "waits for"); a holder that has sent
//!   nothing for `lock_idle_secs` while others wait is ended, which rolls back
//!   its transaction and releases its locks (a client frozen with SIGSTOP
//!   would otherwise hold them until the idle timeout).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raiz_engine::LockKey;

use crate::Shared;

/// How often the watcher looks.
pub const PERIOD: Duration = Duration::from_millis(500);

/// Watches until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.subscribe();
    let mut seen = shared.users.generation();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        users(&shared, &mut seen);
        lock_waits(&shared);
    }
}

/// Ends the sessions of removed users once per new list (read here, or by a
/// login that came first).
fn users(shared: &Shared, seen: &mut u64) {
    shared.users.refresh();
    let generation = shared.users.generation();
    if generation == *seen {
        return;
    }
    *seen = generation;
    let users = shared.users.current();
    for e in shared.registry.entries() {
        if users.get(&e.user).is_none() {
            tracing::warn!(session = e.id, user = %e.user, "the user was removed; ending the session");
            e.end_because(crate::worker::removed(&e.user));
        }
    }
}

/// True when a lock held as `held` keeps another session from taking `wanted`.
fn conflicts(held: &LockKey, wanted: &LockKey) -> bool {
    match (wanted, held) {
        (LockKey::Record(t, r), LockKey::Record(u, s)) => t == u && r == s,
        (LockKey::Record(t, _) | LockKey::File(t), LockKey::File(u))
        | (LockKey::File(t), LockKey::Record(u, _)) => t == u,
        (LockKey::Name(a), LockKey::Name(b)) => a == b,
        _ => false,
    }
}

fn lock_waits(shared: &Shared) {
    let entries = shared.registry.entries();
    let waiting: Vec<_> = entries
        .iter()
        .filter_map(|e| {
            let key = e.waiting.lock().clone()?;
            e.busy.load(Ordering::Relaxed).then(|| (e.clone(), key))
        })
        .collect();
    if waiting.is_empty() {
        return;
    }
    let locks = shared.db.locks();
    let limit = shared.config.lock_idle_timeout();
    for (w, key) in waiting {
        let mut holders: Vec<u64> = locks
            .iter()
            .filter(|l| l.session != w.id && conflicts(&l.key, &key))
            .map(|l| l.session)
            .collect();
        holders.sort_unstable();
        holders.dedup();
        for &h in &holders {
            let Some(he) = entries.iter().find(|e| e.id == h) else {
                continue;
            };
            let idle = he.idle();
            if !he.busy.load(Ordering::Relaxed) && idle >= limit {
                tracing::warn!(session = h, user = %he.user, waiter = w.id, lock = %key, idle_secs = idle.as_secs(), "ending a session that holds a lock others wait for and sends nothing");
                he.end_because(format!(
                    "session {h} ended: it held a lock ({key}) that session {} waited for, and sent nothing for {} s (lock_idle_secs)",
                    w.id,
                    idle.as_secs()
                ));
            }
        }
        *w.blocked_by.lock() = holders;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_conflicts_follow_the_engine() {
        let r = |t: &str, n| LockKey::Record(t.into(), n);
        let f = |t: &str| LockKey::File(t.into());
        assert!(conflicts(&r("a", 1), &r("a", 1)));
        assert!(!conflicts(&r("a", 1), &r("a", 2)));
        assert!(conflicts(&f("a"), &r("a", 2)));
        assert!(conflicts(&r("a", 2), &f("a")));
        assert!(!conflicts(&r("b", 2), &f("a")));
        assert!(conflicts(
            &LockKey::Name("x".into()),
            &LockKey::Name("x".into())
        ));
        assert!(!conflicts(&LockKey::Name("a".into()), &f("a")));
    }
}
