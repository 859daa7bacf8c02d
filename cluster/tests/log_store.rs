//! The Raft log as openraft's log storage, driven through openraft's own
//! traits: appends (with openraft's flush callback), the log state, reads of
//! ranges, the vote, a suffix cut and a prefix purge — and after a power cut
//! on a fault-injecting storage, everything openraft was told is durable is
//! still there.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, TokioRuntime, Vote,
};
use raiz_cluster::{LogStore, RaftLog, RaftLogOptions};
use raiz_engine::storage::{CrashMode, FaultStorage};

openraft::declare_raft_types!(
    /// A cluster whose entries carry text.
    pub Text:
        D = String,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<Text>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
);

fn id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<Text> {
    Entry {
        log_id: id(term, index),
        payload: EntryPayload::Normal(format!("change set {index} of term {term}")),
    }
}

fn open(storage: &FaultStorage) -> LogStore<Text> {
    let opts = RaftLogOptions {
        segment_bytes: 512,
        ..RaftLogOptions::default()
    };
    let log = RaftLog::open(Arc::new(storage.clone()), Path::new("/m/raft"), opts).unwrap();
    LogStore::new(log)
}

async fn indexes(store: &mut LogStore<Text>) -> Vec<u64> {
    store
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_reads_back_what_it_was_told_is_durable_through_a_power_cut() {
    let storage = FaultStorage::new();
    let mut store = open(&storage);
    let state = store.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
    assert_eq!(store.read_vote().await.unwrap(), None);

    // Term 1 writes 1..=20 in three batches, crossing segments.
    store
        .blocking_append((1..=5).map(|i| entry(1, i)))
        .await
        .unwrap();
    store
        .blocking_append((6..=12).map(|i| entry(1, i)))
        .await
        .unwrap();
    store
        .blocking_append((13..=20).map(|i| entry(1, i)))
        .await
        .unwrap();
    let vote = Vote::new(2, 3);
    store.save_vote(&vote).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(id(1, 20)));
    let got = store.try_get_log_entries(4..=6).await.unwrap();
    assert_eq!(got, vec![entry(1, 4), entry(1, 5), entry(1, 6)]);

    // A new leader of term 2 overrules 15.. and writes its own.
    store.truncate(id(1, 15)).await.unwrap();
    store
        .blocking_append((15..=17).map(|i| entry(2, i)))
        .await
        .unwrap();
    // A snapshot covers up to 8.
    store.purge(id(1, 8)).await.unwrap();

    // Power cut: every unsynced write dropped.
    drop(store);
    let storage = storage.crash(CrashMode::DropUnsynced);
    let mut store = open(&storage);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(id(1, 8)));
    assert_eq!(state.last_log_id, Some(id(2, 17)));
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(indexes(&mut store).await, (9..=17).collect::<Vec<_>>());
    let all = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(all[5], entry(1, 14));
    assert_eq!(all[6], entry(2, 15));
    // A reader (what replication tasks use) sees the same.
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(16..).await.unwrap(),
        vec![entry(2, 16), entry(2, 17)]
    );

    // Purged past the end (a snapshot installed from the leader): empty,
    // and the next entry follows the snapshot.
    store.purge(id(3, 30)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(id(3, 30)));
    assert_eq!(state.last_log_id, Some(id(3, 30)));
    assert!(indexes(&mut store).await.is_empty());
    store.blocking_append([entry(3, 31)]).await.unwrap();
    assert_eq!(indexes(&mut store).await, vec![31]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fails_the_append_and_openraft_is_told() {
    let storage = FaultStorage::new();
    let mut store = open(&storage);
    store
        .blocking_append((1..=3).map(|i| entry(1, i)))
        .await
        .unwrap();
    storage.fail_next_syncs(1);
    assert!(store.blocking_append([entry(1, 4)]).await.is_err());
    // Writes stay refused until the log is reopened.
    assert!(store.blocking_append([entry(1, 5)]).await.is_err());
    drop(store);
    let mut store = open(&storage.crash(CrashMode::DropUnsynced));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(id(1, 3)));
}
