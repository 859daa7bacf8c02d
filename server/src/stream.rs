//! The change stream: the engine's change feed kept in a bounded window in
//! memory and sent to subscribed cache nodes.
//!
//! Invariants:
//! - **The window holds every entry after `floor`.** A pump thread moves the
//!   feed's entries (durable, in order) into the window and drops the oldest
//!   once it holds more than `window_bytes`; `floor` is the number of the last
//!   one dropped. A node positioned at or after `floor` can catch up from the
//!   window; one before it must reload.
//! - **Commits never wait for nodes.** A commit only queues its entry in the
//!   feed; the pump never blocks on a node. Each subscription runs on its
//!   session's thread and sends what its node reads; a node whose position
//!   falls out of the window (it stopped reading, or reads too slowly) is cut
//!   off and must catch up or reload. Server memory for the stream is the
//!   window plus each connection's reply budget.
//! - **Nothing unsent is lost.** A subscription sends, in order, every entry
//!   for its tables between its start and the window's end, with `after` and
//!   `upto` so the node can check nothing is missing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use raiz_client::proto::{Envelope, Reply, StreamPos, SubscriptionInfo, WireError};
use raiz_client::ErrorKind;
use raiz_engine::feed::{Feed, FeedEntry};

use crate::limits::Outbox;

/// Most bytes of entries one [`Reply::Changes`] carries (an entry larger
/// than this goes alone).
const MAX_MESSAGE: usize = 1 << 20;

/// How long a node positioned ahead of this server waits for it to apply
/// as far (a cluster member behind the one the node came from).
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// How often an idle stream says where it is.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Arc<FeedEntry>>,
    bytes: usize,
    /// Every entry numbered after it is in `entries`.
    floor: u64,
    /// The last entry's number (the stream's position).
    last: u64,
    /// Why the stream stopped, once it did.
    broken: Option<String>,
}

/// A subscription as the monitor shows it.
#[derive(Debug)]
pub struct Subscription {
    pub session: u64,
    pub user: String,
    pub peer: String,
    pub tables: Vec<String>,
    pub sent: AtomicU64,
    pub unread: AtomicU64,
}

/// The change stream of a server (see the module docs).
#[derive(Debug)]
pub struct Stream {
    feed: Arc<Feed>,
    window: Mutex<Window>,
    grew: Condvar,
    limit: usize,
    subs: Mutex<HashMap<u64, Arc<Subscription>>>,
}

/// Why a subscription ended.
pub enum End {
    /// The connection closed or the server is shutting down.
    Closed,
    /// The node fell out of the window, or the stream stopped: the error
    /// frame to send.
    Cut(WireError),
}

impl Stream {
    /// A stream over `feed` keeping up to `limit` bytes of entries, with its
    /// pump thread.
    pub fn start(feed: Arc<Feed>, limit: usize) -> Arc<Stream> {
        let last = feed.last_seq();
        let stream = Arc::new(Stream {
            feed,
            window: Mutex::new(Window {
                floor: last,
                last,
                ..Window::default()
            }),
            grew: Condvar::new(),
            limit: limit.max(1 << 20),
            subs: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&stream);
        let spawned = std::thread::Builder::new()
            .name("raiz-stream".into())
            .spawn(move || pump(weak));
        if let Err(e) = spawned {
            stream.window.lock().broken = Some(format!("no stream thread: {e}"));
        }
        stream
    }

    /// The server's epoch.
    pub fn epoch(&self) -> u64 {
        self.feed.epoch()
    }

    /// The stream's position: the last entry released.
    pub fn last(&self) -> u64 {
        self.window.lock().last
    }

    /// Subscribed nodes.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let last = self.last();
        let mut v: Vec<SubscriptionInfo> = self
            .subs
            .lock()
            .values()
            .map(|s| SubscriptionInfo {
                session: s.session,
                user: s.user.clone(),
                peer: s.peer.clone(),
                tables: s.tables.clone(),
                sent: s.sent.load(Ordering::Relaxed),
                last,
                unread: s.unread.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by_key(|s| s.session);
        v
    }

    /// Starts following `tables` for a node at `after`: where its stream
    /// starts, and the tables it must load afresh.
    pub fn subscribe(&self, tables: &[String], after: Option<StreamPos>) -> (u64, Vec<String>) {
        // Watch first: from here on every change to them is in the feed.
        let since: Vec<u64> = tables.iter().map(|t| self.feed.watch(t)).collect();
        let mut w = self.window.lock();
        // On a cluster member, a node resumes at the start of the log entry
        // it was in (it may come from another member: see `raiz_engine::feed`).
        let after = after.map(|a| StreamPos {
            epoch: a.epoch,
            seq: self.feed.resume_point(a.seq),
        });
        // A node coming from a member that had applied more than this one
        // has: this one applies the same entries shortly.
        if let Some(a) = after.filter(|a| a.epoch == self.feed.epoch()) {
            let until = Instant::now() + CATCH_UP_WAIT;
            while a.seq > w.last && w.broken.is_none() {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                self.grew.wait_for(&mut w, until - now);
            }
        }
        tracing::debug!(after = ?after, floor = w.floor, last = w.last, epoch = self.feed.epoch(), "subscription");
        let usable =
            after.filter(|a| a.epoch == self.feed.epoch() && a.seq >= w.floor && a.seq <= w.last);
        match usable {
            Some(a) => {
                let reload = tables
                    .iter()
                    .zip(&since)
                    .filter(|(_, &since)| since > a.seq)
                    .map(|(t, _)| t.clone())
                    .collect();
                (a.seq, reload)
            }
            None => (w.last, tables.to_vec()),
        }
    }

    /// Sends the stream after `start` for `tables` until the connection
    /// closes (`closed` turns true or the writer goes) or the node is cut off.
    #[allow(clippy::too_many_arguments)]
    pub fn serve(
        &self,
        id: u64,
        start: u64,
        sub: Arc<Subscription>,
        out: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
        outbox: &Outbox,
        closed: &dyn Fn() -> bool,
    ) -> End {
        self.subs.lock().insert(sub.session, sub.clone());
        let end = self.send_loop(id, start, &sub, out, outbox, closed);
        self.subs.lock().remove(&sub.session);
        end
    }

    fn send_loop(
        &self,
        id: u64,
        start: u64,
        sub: &Subscription,
        out: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
        outbox: &Outbox,
        closed: &dyn Fn() -> bool,
    ) -> End {
        let mut at = start;
        let mut last_sent = Instant::now() - HEARTBEAT;
        loop {
            if closed() {
                return End::Closed;
            }
            // Wait for room in what the node has not read, watching that its
            // position stays in the window meanwhile.
            loop {
                sub.unread.store(outbox.pending() as u64, Ordering::Relaxed);
                match outbox.wait_room_for(Duration::from_millis(100)) {
                    Some(true) => break,
                    Some(false) => return End::Closed,
                    None => {
                        if closed() {
                            return End::Closed;
                        }
                        if at < self.window.lock().floor {
                            return End::Cut(cut_off(at));
                        }
                    }
                }
            }
            let (entries, upto) = {
                let mut w = self.window.lock();
                if let Some(why) = &w.broken {
                    return End::Cut(WireError {
                        kind: ErrorKind::FeedStopped,
                        message: why.clone(),
                    });
                }
                if w.last == at {
                    let wait = HEARTBEAT.saturating_sub(last_sent.elapsed());
                    if !wait.is_zero() {
                        self.grew
                            .wait_for(&mut w, wait.min(Duration::from_millis(100)));
                        continue;
                    }
                }
                if at < w.floor {
                    return End::Cut(cut_off(at));
                }
                // Entries after `at` (every one after floor is there).
                let skip = w.entries.partition_point(|e| e.seq <= at);
                let mut bytes = 0;
                let mut upto = at;
                let mut entries = Vec::new();
                for e in w.entries.iter().skip(skip) {
                    if bytes > 0 && bytes + e.weight() > MAX_MESSAGE {
                        break;
                    }
                    upto = e.seq;
                    if e.tables().iter().any(|t| sub.tables.iter().any(|s| s == t)) {
                        bytes += e.weight();
                        entries.push((**e).clone());
                    }
                }
                if upto == at {
                    upto = w.last;
                }
                (entries, upto)
            };
            let body: Result<Reply, WireError> = Ok(Reply::Changes {
                after: at,
                upto,
                entries,
                now_ms: now_ms(),
            });
            let payload = raiz_client::proto::encode(&Envelope { id, body });
            outbox.queued(payload.len());
            if out.send(payload).is_err() {
                return End::Closed;
            }
            at = upto;
            last_sent = Instant::now();
            sub.sent.store(at, Ordering::Relaxed);
        }
    }
}

fn cut_off(at: u64) -> WireError {
    WireError {
        kind: ErrorKind::Closed,
        message: format!(
            "cut off from the change stream: the node fell behind the server's window (it was at {at}); catch up or reload"
        ),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Moves the feed's entries into the window until the stream is dropped.
fn pump(stream: std::sync::Weak<Stream>) {
    loop {
        let Some(s) = stream.upgrade() else {
            return;
        };
        let taken = s.feed.take(Duration::from_millis(50));
        let mut w = s.window.lock();
        match taken {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                for e in entries {
                    // Numbers are consecutive, except on a cluster member,
                    // where they follow the group's log (see
                    // `raiz_engine::feed`) and only increase.
                    let next = if s.feed.follows_group() {
                        e.seq > w.last
                    } else {
                        e.seq == w.last + 1
                    };
                    if !next {
                        tracing::error!(
                            expected = w.last + 1,
                            got = e.seq,
                            "change feed out of order"
                        );
                        w.broken = Some(format!(
                            "the change feed skipped from {} to {}",
                            w.last, e.seq
                        ));
                    }
                    w.last = e.seq;
                    w.bytes += e.weight();
                    w.entries.push_back(Arc::new(e));
                }
                while w.bytes > s.limit {
                    let Some(old) = w.entries.pop_front() else {
                        break;
                    };
                    w.bytes -= old.weight();
                    w.floor = old.seq;
                }
                s.grew.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %e, "the change feed stopped; cache nodes are cut off and reload after a restart");
                w.broken = Some(e.to_string());
                s.grew.notify_all();
                return;
            }
        }
    }
}
