//! openraft's log storage over a member's [`RaftLog`].
//!
//! [`LogStore`] stores each entry as its postcard encoding under its index,
//! the vote and the purge point in the log's meta file. An append is durable
//! before openraft hears of it: the entries are written and synced, then the
//! flush callback fires (one sync per `append` call, which carries every
//! entry openraft has batched). The committed index is not saved: the state
//! machine keeps the index it applied with what it applied, which openraft
//! documents as the alternative.
//!
//! The log's file I/O blocks; on a multi-threaded tokio runtime it runs in
//! `block_in_place`, so the runtime's other tasks move to another worker
//! meanwhile.

// openraft's traits return its `StorageError`, large as it is.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig,
    StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::log::RaftLog;

/// openraft's log storage (see the module docs). Clones share the log; a
/// clone is also the reader replication tasks use.
///
/// ```
/// use std::{io::Cursor, path::Path, sync::Arc};
/// use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
/// use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, TokioRuntime};
/// use raiz_cluster::{LogStore, RaftLog, RaftLogOptions};
/// use raiz_engine::storage::MemoryStorage;
///
/// openraft::declare_raft_types!(pub Text: D = String, R = (), NodeId = u64,
///     Node = BasicNode, Entry = Entry<Text>, SnapshotData = Cursor<Vec<u8>>,
///     AsyncRuntime = TokioRuntime);
///
/// let log = RaftLog::open(Arc::new(MemoryStorage::new()), Path::new("/m/raft"),
///     RaftLogOptions::default())?;
/// let mut store = LogStore::<Text>::new(log);
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let last = rt.block_on(async {
///     let log_id = LogId::new(CommittedLeaderId::new(1, 1), 1);
///     let entry = Entry { log_id, payload: EntryPayload::Normal("a change set".to_owned()) };
///     store.blocking_append([entry]).await?;
///     Ok::<_, openraft::StorageError<u64>>(store.get_log_state().await?.last_log_id)
/// })?;
/// assert_eq!(last.map(|id| id.index), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LogStore<C> {
    log: Arc<Mutex<RaftLog>>,
    _types: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            log: self.log.clone(),
            _types: PhantomData,
        }
    }
}

impl<C> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl<C> LogStore<C> {
    /// openraft's storage over `log`.
    pub fn new(log: RaftLog) -> LogStore<C> {
        LogStore {
            log: Arc::new(Mutex::new(log)),
            _types: PhantomData,
        }
    }
}

/// Runs blocking file I/O without stalling a multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(v)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

fn err<NID: openraft::NodeId>(
    make: fn(AnyError) -> StorageIOError<NID>,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NID> {
    StorageError::IO {
        source: make(AnyError::new(e)),
    }
}

fn read_logs<NID: openraft::NodeId>(e: AnyError) -> StorageIOError<NID> {
    StorageIOError::read_logs(e)
}

fn write_logs<NID: openraft::NodeId>(e: AnyError) -> StorageIOError<NID> {
    StorageIOError::write_logs(e)
}

fn read_vote<NID: openraft::NodeId>(e: AnyError) -> StorageIOError<NID> {
    StorageIOError::read_vote(e)
}

fn write_vote<NID: openraft::NodeId>(e: AnyError) -> StorageIOError<NID> {
    StorageIOError::write_vote(e)
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    fn entries(&self, from: u64, to: u64) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let raw = blocking(|| self.log.lock().read(from, to)).map_err(|e| err(read_logs, &e))?;
        raw.iter()
            .map(|(_, b)| decode(b).map_err(|e| err(read_logs, &e)))
            .collect()
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        self.entries(from, to)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let (purged, last) = {
            let log = self.log.lock();
            (log.meta().purged.clone(), log.last_index())
        };
        let last_purged_log_id: Option<LogId<C::NodeId>> = match purged {
            Some((_, id)) => Some(decode(&id).map_err(|e| err(read_logs, &e))?),
            None => None,
        };
        let last_log_id = match last {
            Some(i) => self
                .entries(i, i + 1)?
                .first()
                .map(|e| e.get_log_id().clone())
                .or_else(|| last_purged_log_id.clone()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let bytes = encode(vote).map_err(|e| err(write_vote, &e))?;
        blocking(|| self.log.lock().save_vote(bytes)).map_err(|e| err(write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        let bytes = self.log.lock().meta().vote.clone();
        match bytes {
            Some(b) => Ok(Some(decode(&b).map_err(|e| err(read_vote, &e))?)),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.get_log_id().index, encode(&e)?)))
            .collect::<Result<Vec<(u64, Vec<u8>)>, postcard::Error>>()
            .map_err(|e| err(write_logs, &e))?;
        let result = blocking(|| {
            let mut log = self.log.lock();
            log.append(encoded.iter().map(|(i, b)| (*i, &b[..])))?;
            log.sync()
        });
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err(write_logs, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        blocking(|| self.log.lock().truncate(log_id.index)).map_err(|e| err(write_logs, &e))
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let id = encode(&log_id).map_err(|e| err(write_logs, &e))?;
        blocking(|| self.log.lock().purge(log_id.index, id)).map_err(|e| err(write_logs, &e))
    }
}
