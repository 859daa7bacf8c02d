//! The server's sessions, as `raiz monitor` lists them. Each connection owns
//! one entry; the entry's `end` signal is how an admin (or shutdown) stops the
//! connection's reader: an idle session closes at once, a busy one after the
//! request it is executing. An entry also says which lock its session waits
//! for and whose locks those are (kept by the server's watcher), so the
//! monitor shows who waits on whom.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use raiz_client::SessionInfo;
use raiz_engine::LockKey;
use tokio::sync::watch;

/// One session.
#[derive(Debug)]
pub struct Entry {
    /// Engine session id.
    pub id: u64,
    /// User.
    pub user: String,
    /// Peer address.
    pub address: String,
    /// Client name.
    pub client: String,
    /// Time of the last request.
    pub last: Mutex<Instant>,
    /// Executing a request.
    pub busy: AtomicBool,
    /// Requests served.
    pub requests: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Open table handles (names).
    pub tables: Mutex<Vec<String>>,
    /// When the open transaction began.
    pub txn_since: Mutex<Option<Instant>>,
    /// The lock the session's current request may be waiting for.
    pub waiting: Mutex<Option<LockKey>>,
    /// Sessions holding that lock, as the watcher last saw them.
    pub blocked_by: Mutex<Vec<u64>>,
    /// Why the session was ended, told to its client.
    reason: Mutex<Option<String>>,
    end: watch::Sender<bool>,
}

impl Entry {
    /// Asks the connection to end.
    pub fn end(&self) {
        self.end.send_replace(true);
    }

    /// Asks the connection to end, telling its client why.
    pub fn end_because(&self, reason: String) {
        self.reason.lock().get_or_insert(reason);
        self.end();
    }

    /// Whether the connection was asked to end.
    pub fn is_ended(&self) -> bool {
        *self.end.borrow()
    }

    /// Why the session was ended, if it was told.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    /// Seconds since the last request arrived.
    pub fn idle(&self) -> std::time::Duration {
        self.last.lock().elapsed()
    }

    /// A receiver that changes when the session is asked to end.
    pub fn ended(&self) -> watch::Receiver<bool> {
        self.end.subscribe()
    }

    /// Notes that a request arrived.
    pub fn touch(&self) {
        *self.last.lock() = Instant::now();
    }
}

/// All sessions.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

impl Registry {
    /// Registers a session.
    pub fn add(&self, id: u64, user: &str, address: &str, client: &str) -> Arc<Entry> {
        let (end, _) = watch::channel(false);
        let e = Arc::new(Entry {
            id,
            user: user.to_owned(),
            address: address.to_owned(),
            client: client.to_owned(),
            last: Mutex::new(Instant::now()),
            busy: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            tables: Mutex::new(Vec::new()),
            txn_since: Mutex::new(None),
            waiting: Mutex::new(None),
            blocked_by: Mutex::new(Vec::new()),
            reason: Mutex::new(None),
            end,
        });
        self.sessions.lock().insert(id, e.clone());
        e
    }

    /// Forgets a session.
    pub fn remove(&self, id: u64) {
        self.sessions.lock().remove(&id);
    }

    /// Asks one session to end; false if there is no such session.
    pub fn end(&self, id: u64) -> bool {
        match self.sessions.lock().get(&id) {
            Some(e) => {
                e.end();
                true
            }
            None => false,
        }
    }

    /// Asks every session to end.
    pub fn end_all(&self) {
        for e in self.sessions.lock().values() {
            e.end();
        }
    }

    /// Every session.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// True with no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `raiz monitor` shows; `locks` gives each session's locks.
    pub fn list(&self, locks: &dyn Fn(u64) -> Vec<String>) -> Vec<SessionInfo> {
        let now = Instant::now();
        self.sessions
            .lock()
            .values()
            .map(|e| SessionInfo {
                id: e.id,
                user: e.user.clone(),
                address: e.address.clone(),
                client: e.client.clone(),
                tables: e.tables.lock().clone(),
                locks: locks(e.id),
                transaction_secs: e.txn_since.lock().map(|t| (now - t).as_secs()),
                idle_secs: (now - *e.last.lock()).as_secs(),
                busy: e.busy.load(Ordering::Relaxed),
                requests: e.requests.load(Ordering::Relaxed),
                bytes_in: e.bytes_in.load(Ordering::Relaxed),
                bytes_out: e.bytes_out.load(Ordering::Relaxed),
                waiting_for: e.waiting.lock().as_ref().map(ToString::to_string),
                blocked_by: if e.busy.load(Ordering::Relaxed) {
                    e.blocked_by.lock().clone()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }
}
