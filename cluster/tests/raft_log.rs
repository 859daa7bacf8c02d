//! The Raft log against a model, through crashes.
//!
//! Random schedules of appends, syncs, truncations, purges, vote saves,
//! clean reopens and power cuts (every unsynced write dropped, or each one
//! dropped, kept or torn at random) run on a fault-injecting storage with
//! small segments, so entries cross segment boundaries and purges delete
//! whole segments. After every step the log must hold exactly the model's
//! entries; after a power cut, every entry synced (or made durable by a cut
//! or a segment roll) must be there, nothing may be there that was never
//! appended, and what survives must be a run of consecutive entries the
//! next append continues.
//!
//! `RAIZ_RAFT_LOG_CASES` sets the number of schedules (default 64).

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use raiz_cluster::{Error, RaftLog, RaftLogOptions};
use raiz_engine::storage::{CrashMode, FaultStorage, OpenMode, Storage};

fn cases() -> u32 {
    std::env::var("RAIZ_RAFT_LOG_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn opts() -> RaftLogOptions {
    RaftLogOptions {
        segment_bytes: 600,
        max_entry: 4096,
    }
}

fn payload(index: u64, salt: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(37).wrapping_add(salt.wrapping_mul(11)) % 90) as usize;
    (0..len)
        .map(|i| {
            (index as usize)
                .wrapping_mul(7)
                .wrapping_add(i)
                .wrapping_add(salt as usize) as u8
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8, u64),
    Sync,
    Truncate(u8),
    Purge(u8),
    Vote(u8),
    Reopen,
    CutPower,
    CutPowerRandom(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..6, any::<u64>()).prop_map(|(n, s)| Op::Append(n, s)),
        3 => Just(Op::Sync),
        1 => (0u8..12).prop_map(Op::Truncate),
        1 => (0u8..12).prop_map(Op::Purge),
        1 => any::<u8>().prop_map(Op::Vote),
        1 => Just(Op::Reopen),
        1 => Just(Op::CutPower),
        1 => any::<u64>().prop_map(Op::CutPowerRandom),
    ]
}

/// What the log must hold.
#[derive(Debug, Default)]
struct Model {
    /// Entries present, in order.
    entries: Vec<(u64, Vec<u8>)>,
    /// Entries up to here are durable (None: none yet).
    durable: Option<u64>,
    purged: Option<u64>,
    vote: Option<Vec<u8>>,
    /// Where the next append goes.
    next: u64,
}

impl Model {
    fn last(&self) -> Option<u64> {
        self.entries.last().map(|e| e.0)
    }
}

fn check(log: &RaftLog, m: &Model) {
    assert_eq!(
        log.first_index(),
        m.entries.first().map(|e| e.0),
        "first index"
    );
    assert_eq!(log.last_index(), m.last(), "last index");
    assert_eq!(log.purged(), m.purged, "purge point");
    assert_eq!(log.meta().vote, m.vote, "vote");
    assert_eq!(log.read(0, u64::MAX).unwrap(), m.entries, "entries");
    // A window in the middle.
    if m.entries.len() > 2 {
        let (a, b) = (m.entries[1].0, m.entries[m.entries.len() - 1].0);
        assert_eq!(log.read(a, b).unwrap(), m.entries[1..m.entries.len() - 1]);
    }
}

fn run(ops: Vec<Op>) {
    let dir = Path::new("/member/log");
    let mut storage = FaultStorage::new();
    let mut log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
    let mut m = Model {
        next: 1,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Append(n, salt) => {
                let batch: Vec<(u64, Vec<u8>)> = (m.next..m.next + u64::from(n))
                    .map(|i| (i, payload(i, salt)))
                    .collect();
                log.append(batch.iter().map(|(i, p)| (*i, &p[..]))).unwrap();
                m.next += u64::from(n);
                m.entries.extend(batch);
                // A wrong index is refused and changes nothing.
                let wrong = m.next + 1;
                assert!(matches!(
                    log.append([(wrong, &b"x"[..])]),
                    Err(Error::Index { .. })
                ));
            }
            Op::Sync => {
                log.sync().unwrap();
                m.durable = m.last().or(m.durable);
            }
            Op::Truncate(k) => {
                let Some(first) = m.entries.first().map(|e| e.0) else {
                    continue;
                };
                let from = first + u64::from(k);
                let cut = m.last().is_some_and(|l| from <= l);
                log.truncate(from).unwrap();
                if cut {
                    m.entries.retain(|e| e.0 < from);
                    m.next = from;
                    // The cut syncs what stays.
                    m.durable = m.last().or(m.purged);
                }
            }
            Op::Purge(k) => {
                let base = m.purged.unwrap_or(0);
                let to = m.entries.first().map_or(base, |e| e.0) + u64::from(k);
                if m.purged.is_some_and(|p| to < p) {
                    continue;
                }
                log.purge(to, to.to_le_bytes().to_vec()).unwrap();
                m.purged = Some(to);
                m.entries.retain(|e| e.0 > to);
                m.next = m.next.max(to + 1);
                m.durable = m.durable.map(|d| d.max(to)).or(Some(to));
            }
            Op::Vote(v) => {
                log.save_vote(vec![v; 3]).unwrap();
                m.vote = Some(vec![v; 3]);
            }
            Op::Reopen => {
                drop(log);
                log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
            }
            Op::CutPower | Op::CutPowerRandom(_) => {
                let mode = match op {
                    Op::CutPowerRandom(seed) => CrashMode::Random { seed },
                    _ => CrashMode::DropUnsynced,
                };
                drop(log);
                storage = storage.crash(mode);
                log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
                let last = log.last_index();
                // Every durable entry survived; nothing beyond what was
                // appended appeared.
                let floor = m.durable.filter(|d| m.purged.is_none_or(|p| *d > p));
                assert!(
                    floor.is_none_or(|d| last.is_some_and(|l| l >= d)),
                    "durable entry {floor:?} lost: the log ends at {last:?}"
                );
                assert!(last.is_none_or(|l| m.last().is_some_and(|ml| l <= ml)));
                m.entries.retain(|e| last.is_some_and(|l| e.0 <= l));
                m.next = match (last, m.purged) {
                    (Some(l), _) => l + 1,
                    (None, Some(p)) => p + 1,
                    // Nothing durable, nothing purged: the log starts over.
                    (None, None) => 1,
                };
                m.durable = last.or(m.purged);
            }
        }
        check(&log, &m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_log_keeps_what_it_made_durable_through_crashes(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(ops);
    }
}

#[test]
fn damage_before_the_tail_is_an_error_and_a_torn_tail_is_cut() {
    let dir = Path::new("/member/log");
    let storage = FaultStorage::new();
    let mut log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
    let entries: Vec<(u64, Vec<u8>)> = (1..=40).map(|i| (i, payload(i, 3))).collect();
    log.append(entries.iter().map(|(i, p)| (*i, &p[..])))
        .unwrap();
    log.sync().unwrap();
    drop(log);
    let mut segs = storage.list(dir).unwrap();
    segs.retain(|n| n.ends_with(".seg"));
    segs.sort();
    assert!(segs.len() >= 3, "small segments: {segs:?}");

    // A flipped byte in the last segment's last record: cut there.
    let last = dir.join(segs.last().unwrap());
    let f = storage.open(&last, OpenMode::Existing).unwrap();
    let len = f.len().unwrap();
    storage.corrupt_byte(&last, len - 1).unwrap();
    let log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
    assert_eq!(log.last_index(), Some(39));
    assert_eq!(log.read(0, 100).unwrap(), entries[..39]);
    drop(log);

    // The same in an earlier segment: entries synced long ago would be
    // dropped, so opening refuses, naming the file.
    let first = dir.join(&segs[0]);
    storage.corrupt_byte(&first, 20).unwrap();
    match RaftLog::open(Arc::new(storage.clone()), dir, opts()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, first),
        other => panic!("expected a corrupt segment, got {other:?}"),
    }
}

#[test]
fn oversized_entries_and_holes_are_refused_and_a_failed_sync_stops_writes() {
    let dir = Path::new("/member/log");
    let storage = FaultStorage::new();
    let mut log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
    let big = vec![0u8; 5000];
    assert!(matches!(
        log.append([(1, &big[..])]),
        Err(Error::TooLarge {
            len: 5000,
            max: 4096
        })
    ));
    log.append([(1, &b"a"[..]), (2, &b"b"[..])]).unwrap();
    assert!(matches!(
        log.append([(4, &b"d"[..])]),
        Err(Error::Index { index: 4, .. })
    ));
    log.sync().unwrap();
    log.purge(1, b"id1".to_vec()).unwrap();
    assert!(matches!(
        log.truncate(1),
        Err(Error::Index { index: 1, .. })
    ));
    storage.fail_next_syncs(1);
    log.append([(3, &b"c"[..])]).unwrap();
    assert!(log.sync().is_err());
    assert!(log.append([(4, &b"d"[..])]).is_err());
    assert!(log.sync().is_err());
    // Reopened, it works again, and entry 2 (synced) is there.
    drop(log);
    let mut log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
    assert_eq!(log.read(0, 10).unwrap()[0], (2, b"b".to_vec()));
    let next = log.last_index().unwrap() + 1;
    log.append([(next, &b"z"[..])]).unwrap();
    log.sync().unwrap();
}

#[test]
fn a_damaged_meta_file_or_segment_header_is_refused_naming_the_file() {
    let dir = Path::new("/member/log");
    let storage = FaultStorage::new();
    let mut log = RaftLog::open(Arc::new(storage.clone()), dir, opts()).unwrap();
    log.append((1..=30).map(|i| (i, &b"entry"[..]))).unwrap();
    log.sync().unwrap();
    log.save_vote(b"vote".to_vec()).unwrap();
    drop(log);
    let meta = dir.join("meta");
    let open = || RaftLog::open(Arc::new(storage.clone()), dir, opts());

    // A flipped byte in the vote: the checksum catches it.
    let len = storage
        .open(&meta, OpenMode::Existing)
        .unwrap()
        .len()
        .unwrap();
    storage.corrupt_byte(&meta, len - 1).unwrap();
    match open() {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, meta),
        other => panic!("expected a corrupt meta file, got {other:?}"),
    }
    // Cut short: refused too, and the segments are untouched.
    let f = storage.open(&meta, OpenMode::Existing).unwrap();
    f.set_len(10).unwrap();
    assert!(matches!(open(), Err(Error::Corrupt { .. })));
    storage.remove(&meta).unwrap();
    assert_eq!(open().unwrap().last_index(), Some(30));

    // A segment whose header is not raiz's (not a crash's zeros).
    let mut segs = storage.list(dir).unwrap();
    segs.retain(|n| n.ends_with(".seg"));
    segs.sort();
    let first = dir.join(&segs[0]);
    storage.corrupt_byte(&first, 0).unwrap();
    match open() {
        Err(Error::Corrupt {
            path, offset: 0, ..
        }) => assert_eq!(path, first),
        other => panic!("expected a corrupt segment header, got {other:?}"),
    }
}
