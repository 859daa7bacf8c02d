//! The node's thread: subscribe, load what is missing, apply the stream;
//! reconnect with backoff when the server goes away.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raiz_engine::feed::{FeedBody, RecordChange, TableEvent};
use raiz_engine::{TableInfo, TableOptions};

use super::state::{self, Saved, Status, STATE_TABLE};
use super::stream::{ChangeStream, Changes};
use super::{CacheStatus, CachedTableStatus, Entry, Node};
use crate::error::{Error, Result};
use crate::proto::StreamPos;
use crate::ErrorKind;

/// Records per load batch.
const LOAD_BATCH: u32 = 2000;

/// Puts the saved state in memory and drops local tables nothing refers to
/// (left by a crash between creating a copy and recording it).
pub(super) fn restore(node: &Node, saved: Saved) -> Result<()> {
    let mut st = node.state();
    st.epoch = saved.epoch;
    st.applied = saved.seq;
    st.server_last = saved.seq;
    st.next_local = saved.next_local;
    for row in &saved.tables {
        st.tables.insert(
            row.name.clone(),
            Entry {
                row: row.recno,
                local: row.local.clone(),
                status: row.status,
                generation: 1,
                disk_bytes: 0,
            },
        );
    }
    let wanted: Vec<String> = saved.tables.iter().map(|r| r.local.clone()).collect();
    drop(st);
    for t in node.db.list_tables()? {
        if t != STATE_TABLE && !wanted.contains(&t) {
            let _ = node.db.drop_table(&t);
        }
    }
    // A copy left by a node that crashed is checked before it is served.
    let mut st = node.state();
    let s = node.db.session();
    let names: Vec<String> = st.tables.keys().cloned().collect();
    for name in names {
        let e = st.tables.get_mut(&name).expect("listed");
        if e.status != Status::Ready {
            continue;
        }
        let ok = s
            .open_table(&e.local)
            .and_then(|t| t.check(1))
            .map(|c| c.problems.is_empty());
        if !matches!(ok, Ok(true)) {
            e.status = Status::Loading;
            st.event(format!(
                "table {name}: the copy does not check clean; reloading"
            ));
        }
    }
    Ok(())
}

/// Follows the server until the node stops.
pub(super) fn run(node: Arc<Node>) {
    let mut backoff = Duration::from_millis(50);
    while !node.stopping() {
        let began = Instant::now();
        let r = follow(&node);
        {
            let mut st = node.state();
            st.connected = false;
            if let Err(e) = &r {
                if !node.stopping() {
                    tracing::warn!(target: "raiz::cache", error = %e, "lost the server; retrying");
                    st.last_error = Some(e.to_string());
                }
            }
        }
        node.changed.notify_all();
        if began.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(50);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !node.stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A table being loaded: recno batches, then the stream until `until`.
struct Load {
    table: String,
    local: String,
    info: TableInfo,
    remote: Option<crate::Table>,
    after: u64,
    until: Option<u64>,
    began: Instant,
}

struct Applier<'a> {
    node: &'a Node,
    s: raiz_engine::Session,
    state: raiz_engine::Table,
    open: HashMap<String, raiz_engine::Table>,
    loads: VecDeque<Load>,
    garbage: Vec<String>,
    data: crate::Session,
}

fn follow(node: &Node) -> Result<()> {
    let cfg = &node.config;
    let data = crate::Connection::open_with(&cfg.server, cfg.options.clone())?.session()?;
    let silence = cfg.stale_after.max(Duration::from_secs(2));
    let after = {
        let st = node.state();
        (st.epoch != 0).then_some(StreamPos {
            epoch: st.epoch,
            seq: st.applied,
        })
    };
    let mut stream = ChangeStream::connect(&cfg.server, &cfg.options, &cfg.tables, after, silence)?;
    let (epoch, start, reload) = (
        stream.epoch,
        stream.start,
        std::mem::take(&mut stream.reload),
    );
    let s = node.db.session();
    s.set_delayed_durability(true);
    let state = s.open_table(STATE_TABLE)?;
    let mut ap = Applier {
        node,
        s,
        state,
        open: HashMap::new(),
        loads: VecDeque::new(),
        garbage: Vec::new(),
        data,
    };
    ap.begin(epoch, start, after, &reload)?;
    // The stream is read on a thread of its own, so loads and applies never
    // keep the server waiting on this connection.
    let (tx, rx) = sync_channel::<Result<Changes>>(64);
    std::thread::Builder::new()
        .name("raiz-cache-stream".into())
        .spawn(move || loop {
            let r = stream.next_changes();
            let end = r.is_err();
            if tx.send(r).is_err() || end {
                break;
            }
        })
        .map_err(|e| Error::Cache(format!("cannot start the stream reader: {e}")))?;
    ap.run(&rx)
}

impl Applier<'_> {
    /// Starts from what the server answered to the subscription.
    fn begin(
        &mut self,
        epoch: u64,
        start: u64,
        after: Option<StreamPos>,
        reload: &[String],
    ) -> Result<()> {
        let node = self.node;
        {
            let mut st = node.state();
            st.connected = true;
            st.last_error = None;
            match after {
                Some(a) if a.epoch != epoch => st.event(format!(
                    "the server's epoch changed ({:016x} → {epoch:016x}): reloading every table",
                    a.epoch
                )),
                // The server resumes a node at its position, or (a cluster
                // member) at the start of the log entry it was in; anything
                // else means its position is gone.
                Some(a)
                    if start > a.seq
                        || (start < a.seq && reload.len() == node.config.tables.len()) =>
                {
                    st.event(format!(
                        "position {} is no longer in the server's window: reloading every table",
                        a.seq
                    ))
                }
                Some(_) if !reload.is_empty() => st.event(format!(
                    "caught up from {start}; reloading {}",
                    reload.join(", ")
                )),
                Some(_) => {
                    node.counters.catch_ups.fetch_add(1, Ordering::Relaxed);
                    st.event(format!("catching up from {start}"));
                }
                None => st.event("first start: loading every table".into()),
            }
            st.epoch = epoch;
            st.applied = start;
            st.server_last = st.server_last.max(start);
        }
        let next = node.state().next_local;
        self.replicate(vec![], Some(state::position(epoch, start, next)))?;
        for t in &node.config.tables {
            let known = node.state().tables.get(t).map(|e| e.status);
            if reload.contains(t) || known.is_none() || known == Some(Status::Loading) {
                self.start_load(t, "loading")?;
            } else if known == Some(Status::Ready) {
                self.note_disk_bytes(t);
            }
        }
        node.changed.notify_all();
        Ok(())
    }

    fn run(&mut self, rx: &Receiver<Result<Changes>>) -> Result<()> {
        loop {
            if self.node.stopping() {
                return Ok(());
            }
            self.drain(rx, Vec::new())?;
            self.collect_garbage();
            if self.load_step()? {
                continue;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(msg) => self.drain(rx, vec![msg?])?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Cache("the stream reader stopped".into()))
                }
            }
        }
    }

    /// Applies `first` and whatever else the stream has queued (up to 256
    /// messages per commit of the copy).
    fn drain(&mut self, rx: &Receiver<Result<Changes>>, first: Vec<Changes>) -> Result<()> {
        let mut msgs = first;
        loop {
            while msgs.len() < 256 {
                match rx.try_recv() {
                    Ok(msg) => msgs.push(msg?),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if !msgs.is_empty() {
                            self.apply(std::mem::take(&mut msgs))?;
                        }
                        return Err(Error::Cache("the stream reader stopped".into()));
                    }
                }
            }
            if msgs.is_empty() {
                return Ok(());
            }
            let full = msgs.len() == 256;
            self.apply(std::mem::take(&mut msgs))?;
            if !full {
                return Ok(());
            }
        }
    }

    fn table(&mut self, local: &str) -> Result<&raiz_engine::Table> {
        if !self.open.contains_key(local) {
            let t = self.s.open_table(local)?;
            self.open.insert(local.to_owned(), t);
        }
        Ok(&self.open[local])
    }

    /// Applies `batch` (local table, changes) and the state records in one
    /// commit.
    fn replicate(
        &mut self,
        batch: Vec<(String, Vec<RecordChange>)>,
        position: Option<Vec<raiz_engine::Value>>,
    ) -> Result<()> {
        self.replicate_with(batch, position, vec![])
    }

    fn replicate_with(
        &mut self,
        batch: Vec<(String, Vec<RecordChange>)>,
        position: Option<Vec<raiz_engine::Value>>,
        rows: Vec<RecordChange>,
    ) -> Result<()> {
        for (local, _) in &batch {
            self.table(local)?;
        }
        let mut state_changes = rows;
        if let Some(p) = position {
            state_changes.push(state::put(1, p));
        }
        let n: u64 = batch.iter().map(|(_, c)| c.len() as u64).sum();
        let mut refs: Vec<(&raiz_engine::Table, &[RecordChange])> = batch
            .iter()
            .map(|(l, c)| (&self.open[l], c.as_slice()))
            .collect();
        refs.push((&self.state, state_changes.as_slice()));
        self.s.replicate(&refs)?;
        self.node
            .counters
            .applied_changes
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Applies stream messages in order, in as few commits of the copy as
    /// table events allow (under load, one commit covers many of the
    /// server's).
    fn apply(&mut self, msgs: Vec<Changes>) -> Result<()> {
        let mut at = self.node.state().applied;
        let mut batch: Vec<(String, Vec<RecordChange>)> = Vec::new();
        let mut sent_at = 0;
        for msg in msgs {
            let Changes {
                after,
                upto,
                entries,
                now_ms,
            } = msg;
            if after != at {
                return Err(Error::Cache(format!(
                    "a gap in the stream: the node is at {at}, the message starts after {after}"
                )));
            }
            for e in entries {
                match e.body {
                    FeedBody::Commit(tables) => {
                        for tc in tables {
                            let local = {
                                let st = self.node.state();
                                st.tables
                                    .get(&tc.table)
                                    .filter(|e| e.status != Status::Absent && !e.local.is_empty())
                                    .map(|e| e.local.clone())
                            };
                            if let Some(local) = local {
                                batch.push((local, tc.changes));
                            }
                        }
                    }
                    FeedBody::Table { table, event } => {
                        // What came before the event goes first.
                        self.replicate(std::mem::take(&mut batch), None)?;
                        match event {
                            TableEvent::Created | TableEvent::Rewritten => {
                                self.start_load(&table, &format!("{event:?} on the server"))?
                            }
                            TableEvent::Dropped => self.absent(&table, "dropped on the server")?,
                        }
                    }
                }
            }
            at = upto;
            sent_at = now_ms;
        }
        let (epoch, next) = {
            let st = self.node.state();
            (st.epoch, st.next_local)
        };
        self.replicate(batch, Some(state::position(epoch, at, next)))?;
        {
            let mut st = self.node.state();
            st.applied = at;
            st.server_last = st.server_last.max(at);
            let lag = super::now_ms().saturating_sub(sent_at);
            st.heard = Some((Instant::now(), lag));
        }
        self.node.changed.notify_all();
        Ok(())
    }

    /// Gives `table` a new, empty local copy and queues its load.
    fn start_load(&mut self, table: &str, why: &str) -> Result<()> {
        self.loads.retain(|l| l.table != table);
        let info = match self.data.open_table(table).map(|t| t.info()) {
            Ok(Ok(info)) => info,
            Ok(Err(e)) | Err(e) if e.kind() == ErrorKind::TableNotFound => {
                return self.absent(table, "not on the server")
            }
            Ok(Err(e)) | Err(e) => return Err(e),
        };
        let local = {
            let mut st = self.node.state();
            let n = st.next_local;
            st.next_local += 1;
            format!("t{n}")
        };
        let mut opts = TableOptions::default()
            .format(info.format)
            .page_size(info.page_size);
        if let Some((field, _)) = &info.serial {
            opts = opts.serial(field.clone());
        }
        if self.node.db.table_exists(&local)? {
            self.node.db.drop_table(&local)?;
        }
        self.node.db.create_table(&local, &info.schema, opts)?;
        self.set_row(table, &local, Status::Loading)?;
        self.node.counters.reloads.fetch_add(1, Ordering::Relaxed);
        self.node
            .state()
            .event(format!("table {table}: {why}; loading into {local}"));
        self.loads.push_back(Load {
            table: table.to_owned(),
            local,
            info,
            remote: None,
            after: 0,
            until: None,
            began: Instant::now(),
        });
        Ok(())
    }

    /// Records `table` as not on the server.
    fn absent(&mut self, table: &str, why: &str) -> Result<()> {
        self.loads.retain(|l| l.table != table);
        self.set_row(table, "", Status::Absent)?;
        self.node.state().event(format!("table {table}: {why}"));
        Ok(())
    }

    /// Stores `table`'s record (local copy and status) in the state table,
    /// and in memory; the old copy, if replaced, is dropped once unused.
    fn set_row(&mut self, table: &str, local: &str, status: Status) -> Result<()> {
        let (row, old, position) = {
            let st = self.node.state();
            let existing = st.tables.get(table);
            let row = existing.map(|e| e.row);
            let old = existing
                .map(|e| e.local.clone())
                .filter(|o| o != local && !o.is_empty());
            (
                row,
                old,
                state::position(st.epoch, st.applied, st.next_local),
            )
        };
        let values = state::table(table, local, status);
        let (row, change) = match row {
            Some(r) => (r, state::put(r, values)),
            None => {
                let r = self.state.record_count() + 1;
                (r, state::add(r, values))
            }
        };
        self.replicate_with(vec![], Some(position), vec![change])?;
        if let Some(old) = old {
            self.open.remove(&old);
            self.garbage.push(old);
        }
        let mut st = self.node.state();
        let generation = st.tables.get(table).map_or(1, |e| e.generation + 1);
        let disk_bytes = st.tables.get(table).map_or(0, |e| e.disk_bytes);
        st.tables.insert(
            table.to_owned(),
            Entry {
                row,
                local: local.to_owned(),
                status,
                generation,
                disk_bytes,
            },
        );
        drop(st);
        self.node.changed.notify_all();
        Ok(())
    }

    fn note_disk_bytes(&mut self, table: &str) {
        if let Ok(Ok(info)) = self.data.open_table(table).map(|t| t.info()) {
            if let Some(e) = self.node.state().tables.get_mut(table) {
                e.disk_bytes = info.bytes();
            }
        }
    }

    /// One step of the first load in the queue; false when there is nothing
    /// to do but wait for the stream.
    fn load_step(&mut self) -> Result<bool> {
        let Some(load) = self.loads.front_mut() else {
            return Ok(false);
        };
        if load.until.is_none() {
            if load.remote.is_none() {
                load.remote = Some(self.data.open_table(&load.table)?);
            }
            let remote = load.remote.as_ref().expect("opened");
            let (records, _count, done) = match remote.dump(load.after, LOAD_BATCH) {
                Ok(d) => d,
                Err(e) if e.kind() == ErrorKind::TableNotFound => {
                    let t = load.table.clone();
                    self.absent(&t, "dropped on the server while loading")?;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            };
            let mut changes = Vec::with_capacity(records.len());
            for r in records {
                load.after = r.recno();
                let deleted = r.is_deleted();
                let recno = r.recno();
                changes.push(RecordChange::Append {
                    recno,
                    values: r.into_values(),
                });
                if deleted {
                    changes.push(RecordChange::SetDeleted {
                        recno,
                        deleted: true,
                    });
                }
            }
            let local = load.local.clone();
            if done {
                // Everything the batches read was committed by then.
                let until = self.data.feed_position()?;
                self.loads.front_mut().expect("front").until = Some(until);
            }
            self.replicate(vec![(local, changes)], None)?;
            return Ok(true);
        }
        let until = load.until.expect("set");
        if self.node.state().applied < until {
            return Ok(false);
        }
        // Consistent now: give it its indexes and serve it.
        let load = self.loads.pop_front().expect("front");
        let t = self.table(&load.local)?;
        let _ = t;
        let mut t = self.s.open_table(&load.local)?;
        for (def, _) in &load.info.indexes {
            t.create_index(def)?;
        }
        let rows = t.record_count();
        drop(t);
        self.open.remove(&load.local);
        self.set_row(&load.table, &load.local, Status::Ready)?;
        if let Some(e) = self.node.state().tables.get_mut(&load.table) {
            e.disk_bytes = load.info.bytes();
        }
        self.node.state().event(format!(
            "table {}: loaded {rows} records in {} ms",
            load.table,
            load.began.elapsed().as_millis()
        ));
        Ok(true)
    }

    fn collect_garbage(&mut self) {
        self.garbage.retain(|g| {
            !matches!(
                self.node.db.drop_table(g),
                Err(raiz_engine::Error::TableInUse { .. })
            )
        });
    }
}

/// The node's state for `raiz cache status`.
pub(super) fn status(node: &Node) -> CacheStatus {
    let st = node.state();
    let s = node.db.session();
    let mut tables: Vec<CachedTableStatus> = node
        .config
        .tables
        .iter()
        .map(|name| {
            let e = st.tables.get(name);
            let (rows, memory) = match e {
                Some(e) if !e.local.is_empty() => s
                    .open_table(&e.local)
                    .map(|t| {
                        let info = t.info();
                        (info.record_count, info.bytes())
                    })
                    .unwrap_or((0, 0)),
                _ => (0, 0),
            };
            CachedTableStatus {
                name: name.clone(),
                status: match e.map(|e| e.status) {
                    Some(Status::Ready) => "ready",
                    Some(Status::Loading) | None => "loading",
                    Some(Status::Absent) => "absent",
                }
                .into(),
                rows,
                memory_bytes: memory,
                disk_bytes: e.map_or(0, |e| e.disk_bytes),
            }
        })
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let c = &node.counters;
    CacheStatus {
        server: node.config.server.to_string(),
        connected: st.connected,
        epoch: format!("{:016x}", st.epoch),
        applied: st.applied,
        server_last: st.server_last,
        lag_changes: st.server_last.saturating_sub(st.applied),
        lag_ms: st.heard.map_or(0, |h| h.1),
        silent_ms: st.heard.map(|h| h.0.elapsed().as_millis() as u64),
        local_reads: c.local_reads.load(Ordering::Relaxed),
        passed_reads: c.passed.load(Ordering::Relaxed),
        reloads: c.reloads.load(Ordering::Relaxed),
        catch_ups: c.catch_ups.load(Ordering::Relaxed),
        applied_changes: c.applied_changes.load(Ordering::Relaxed),
        last_error: st.last_error.clone(),
        events: st.events.iter().cloned().collect(),
        tables,
    }
}
