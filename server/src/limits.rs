//! What connections may hold, so no peer can grow the server without bound:
//!
//! - connections at once (`max_connections`): the excess gets a `Busy`
//!   prologue and is closed;
//! - connections not logged in yet, in total and per address: they may send
//!   one hello of at most [`raiz_client::proto::MAX_HELLO_FRAME`] bytes, so
//!   together they hold little;
//! - request frames read but not executed yet, across all connections
//!   (`frame_budget_mb`): a frame's bytes are reserved before its body is
//!   read and released when its request has run, so a reader waits while
//!   the budget is spent;
//! - replies not yet sent, per connection ([`REPLY_BUDGET`]): a session
//!   thread waits before its next request while its client has not read
//!   that much, so a client that pipelines without reading stops being read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Config;

/// Bytes of replies a connection may have unsent before its session thread
/// waits.
pub const REPLY_BUDGET: usize = 4 << 20;

/// The server's connection and buffer limits.
#[derive(Debug)]
pub struct Limits {
    max_connections: usize,
    open: AtomicUsize,
    max_pending: usize,
    max_pending_per_address: usize,
    pending: Mutex<(usize, HashMap<String, usize>)>,
    frames: Arc<Semaphore>,
}

/// Counts one open connection while it lives.
pub struct ConnSlot(Arc<Limits>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts one connection that has not logged in yet, while it lives.
pub struct PendingSlot {
    limits: Arc<Limits>,
    address: String,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut p = self.limits.pending.lock();
        p.0 -= 1;
        if let Some(n) = p.1.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                p.1.remove(&self.address);
            }
        }
    }
}

impl Limits {
    /// The limits a config sets.
    pub fn new(config: &Config) -> Limits {
        let (max_pending, max_pending_per_address) = config.max_unauthenticated();
        Limits {
            max_connections: config.max_connections(),
            open: AtomicUsize::new(0),
            max_pending,
            max_pending_per_address,
            pending: Mutex::new((0, HashMap::new())),
            frames: Arc::new(Semaphore::new(
                config.frame_budget().min(Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// A slot for a new connection, or None at `max_connections`.
    pub fn connect(self: &Arc<Self>) -> Option<ConnSlot> {
        let n = self.open.fetch_add(1, Ordering::AcqRel);
        let slot = ConnSlot(self.clone());
        (n < self.max_connections).then_some(slot)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A slot for a connection from `address` (an IP, or `unix`) until it
    /// logs in, or None when too many have not logged in yet.
    pub fn unauthenticated(self: &Arc<Self>, address: &str) -> Option<PendingSlot> {
        let mut p = self.pending.lock();
        let mine = p.1.get(address).copied().unwrap_or(0);
        if p.0 >= self.max_pending || mine >= self.max_pending_per_address {
            return None;
        }
        p.0 += 1;
        *p.1.entry(address.to_owned()).or_insert(0) += 1;
        Some(PendingSlot {
            limits: self.clone(),
            address: address.to_owned(),
        })
    }

    /// Reserves `len` bytes of the frame budget, waiting while it is spent
    /// (the budget is never below the frame limit, so any frame fits).
    pub async fn frame(&self, len: u32) -> Option<OwnedSemaphorePermit> {
        self.frames.clone().acquire_many_owned(len).await.ok()
    }

    /// Bytes of the frame budget not reserved now.
    pub fn frame_budget_free(&self) -> usize {
        self.frames.available_permits()
    }
}

/// Bytes of replies a connection has queued but not sent, shared by its
/// session thread (which adds) and its writer (which subtracts).
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<(usize, bool)>,
    sent: Condvar,
}

impl Outbox {
    /// Waits (on the session thread) until the unsent replies are within
    /// [`REPLY_BUDGET`]; false once the writer is gone.
    pub fn wait_room(&self) -> bool {
        let mut s = self.state.lock();
        while s.0 > REPLY_BUDGET && !s.1 {
            self.sent.wait(&mut s);
        }
        !s.1
    }

    /// [`Outbox::wait_room`] for at most `wait`: None when there is still no
    /// room.
    pub fn wait_room_for(&self, wait: std::time::Duration) -> Option<bool> {
        let mut s = self.state.lock();
        if s.0 > REPLY_BUDGET && !s.1 {
            self.sent.wait_for(&mut s, wait);
        }
        if s.1 {
            Some(false)
        } else if s.0 > REPLY_BUDGET {
            None
        } else {
            Some(true)
        }
    }

    /// Notes a reply queued.
    pub fn queued(&self, bytes: usize) {
        self.state.lock().0 += bytes;
    }

    /// Notes a reply sent.
    pub fn sent(&self, bytes: usize) {
        let mut s = self.state.lock();
        s.0 = s.0.saturating_sub(bytes);
        if s.0 <= REPLY_BUDGET {
            self.sent.notify_all();
        }
    }

    /// The writer is gone: nothing waits for room any more.
    pub fn close(&self) {
        self.state.lock().1 = true;
        self.sent.notify_all();
    }

    /// Bytes queued and not sent.
    pub fn pending(&self) -> usize {
        self.state.lock().0
    }
}
