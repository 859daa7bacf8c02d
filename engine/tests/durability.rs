//! Logged tables under simulated power loss and device faults (fault-injecting
//! storage): recovery yields exactly the acknowledged commits (plus, after a power
//! cut, possibly the one in flight, whole), never a torn transaction; a failed fsync is never reported as a commit; a full disk fails the
//! writer, keeps the data and serving reads, and writes resume once space is freed.
//!
//! `RAIZ_FAULT_SEEDS` sets the number of seeded crash points (default 40).

mod common;

use common::bank::{committed_prefix, setup, transfer, ACCOUNTS};

use std::sync::Arc;
use std::time::Duration;

use raiz_engine::storage::{CrashMode, FaultStorage, FaultTrigger};
use raiz_engine::{Database, Error, LogOptions, Options};

/// The seeds to run: `RAIZ_FAULT_SEED` replays one, `RAIZ_FAULT_SEEDS` sets
/// how many (default 40).
fn seeds() -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    match var("RAIZ_FAULT_SEED") {
        Some(one) => one..one + 1,
        None => 0..var("RAIZ_FAULT_SEEDS").unwrap_or(40),
    }
}

fn open(storage: &FaultStorage, checkpoint_bytes: u64) -> Database {
    let log = LogOptions {
        checkpoint_bytes,
        ..LogOptions::default()
    };
    Database::open_with(
        "/root",
        Options::default()
            .storage(Arc::new(storage.clone()))
            .pool_bytes(64 << 10)
            .log(log),
    )
    .unwrap()
}

#[test]
fn power_loss_at_seeded_points_keeps_exactly_the_acknowledged_commits() {
    let mut crashed_mid_checkpoint_window = 0;
    for seed in seeds() {
        let storage = FaultStorage::new();
        let db = open(&storage, 96 << 10);
        setup(&db);
        let s = db.session();
        let (trigger, _) = storage.arm_seeded(seed, 600);
        let mut acked = 0;
        for k in 1..=400 {
            match transfer(&s, k) {
                Ok(()) => acked = k,
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            Error::Io { .. }
                                | Error::DiskFull { .. }
                                | Error::SyncFailed { .. }
                                | Error::Poisoned { .. }
                        ),
                        "seed {seed}: {e}"
                    );
                    break;
                }
            }
        }
        if storage.injected_faults() > 0 {
            crashed_mid_checkpoint_window += 1;
        }
        // The power goes: unsynced writes are dropped, kept or torn at random.
        let after = storage.crash(CrashMode::Random { seed });
        drop(s);
        drop(db);
        let db = open(&after, 96 << 10);
        let j = committed_prefix(&db);
        // Every acknowledged commit is there. The one in flight when the power
        // went (its log write done, its sync cut) is in doubt: its frames may or
        // may not have reached the disk, and either outcome is whole.
        assert!(
            j == acked || (j == acked + 1 && trigger == FaultTrigger::PowerCut),
            "seed {seed} ({trigger:?}): recovered {j} transfers, {acked} were acknowledged"
        );
        // A write after recovery works, and every table still checks clean.
        transfer(&db.session(), j + 1).unwrap();
        assert_eq!(committed_prefix(&db), j + 1, "seed {seed}");
    }
    assert!(crashed_mid_checkpoint_window > 0);
}

#[test]
fn delayed_durability_loses_at_most_the_window_never_half_a_transaction() {
    let storage = FaultStorage::new();
    let db = {
        let log = LogOptions {
            sync_delay: Duration::from_millis(200),
            ..LogOptions::default()
        };
        Database::open_with(
            "/root",
            Options::default()
                .storage(Arc::new(storage.clone()))
                .log(log),
        )
        .unwrap()
    };
    setup(&db);
    let s = db.session();
    s.set_delayed_durability(true);
    for k in 1..=50 {
        transfer(&s, k).unwrap();
    }
    let early = storage.crash(CrashMode::Random { seed: 9 });
    std::thread::sleep(Duration::from_millis(600));
    let late = storage.crash(CrashMode::DropUnsynced);
    drop(s);
    drop(db);
    let j = committed_prefix(&open(&early, 1 << 30));
    assert!(j <= 50);
    assert_eq!(
        committed_prefix(&open(&late, 1 << 30)),
        50,
        "synced within the delay"
    );
}

#[test]
fn a_failed_fsync_is_never_a_successful_commit() {
    let storage = FaultStorage::new();
    let db = open(&storage, 1 << 30);
    setup(&db);
    let s = db.session();
    for k in 1..=5 {
        transfer(&s, k).unwrap();
    }
    storage.fail_next_syncs(1);
    assert!(matches!(transfer(&s, 6), Err(Error::SyncFailed { .. })));
    // Refused from now on, until reopened; reads go on.
    match transfer(&s, 6) {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert_eq!(
        s.open_table("acc").unwrap().snapshot().unwrap().len(),
        ACCOUNTS as usize
    );
    let after = storage.crash(CrashMode::DropUnsynced);
    drop(s);
    drop(db);
    assert_eq!(committed_prefix(&open(&after, 1 << 30)), 5);
}

#[test]
fn a_full_disk_fails_the_writer_keeps_the_data_and_recovers_without_reopen() {
    let storage = FaultStorage::new();
    let db = open(&storage, 1 << 30);
    setup(&db);
    let s = db.session();
    for k in 1..=10 {
        transfer(&s, k).unwrap();
    }
    storage.fill_disk();
    // The log's prepared (zeroed) space and the tables' free pages still take
    // commits; once they are used up, commits fail with DiskFull.
    let mut acked = 10;
    let mut failed = 0;
    for k in 11..=3000 {
        match transfer(&s, k) {
            Ok(()) => {
                assert_eq!(
                    failed, 0,
                    "no commit succeeds after the disk was found full"
                );
                acked = k;
            }
            Err(Error::DiskFull { .. }) => {
                failed += 1;
                if failed == 5 {
                    break;
                }
            }
            Err(e) => panic!("expected DiskFull, got {e}"),
        }
    }
    assert_eq!(failed, 5, "the disk filled up");
    // Reads see exactly the committed data.
    assert_eq!(committed_prefix(&db), acked);
    storage.set_capacity(None);
    for k in acked + 1..=acked + 5 {
        transfer(&s, k).unwrap();
    }
    let total = acked + 5;
    assert_eq!(committed_prefix(&db), total);
    let after = storage.crash(CrashMode::DropUnsynced);
    drop(s);
    drop(db);
    assert_eq!(committed_prefix(&open(&after, 1 << 30)), total);
}

#[test]
fn recovery_is_idempotent_even_when_it_crashes() {
    let storage = FaultStorage::new();
    let db = open(&storage, 1 << 30);
    setup(&db);
    let s = db.session();
    for k in 1..=60 {
        transfer(&s, k).unwrap();
    }
    let crashed = storage.crash(CrashMode::DropUnsynced);
    drop(s);
    drop(db);
    for cut in [5u64, 40, 120, 400] {
        // Recovery itself loses power after `cut` operations …
        let image = crashed.crash(CrashMode::KeepAll);
        image.arm(FaultTrigger::PowerCut, cut);
        let attempt =
            Database::open_with("/root", Options::default().storage(Arc::new(image.clone())));
        drop(attempt);
        // … and the next recovery gives the same result.
        let again = image.crash(CrashMode::Random { seed: cut });
        assert_eq!(committed_prefix(&open(&again, 1 << 30)), 60, "cut at {cut}");
    }
}

/// The bytes of every log segment now, by name.
fn segments_now(storage: &FaultStorage) -> Vec<(String, Vec<u8>)> {
    use raiz_engine::storage::Storage;
    let dir = std::path::Path::new("/root/raiz.wal");
    let mut out = Vec::new();
    for name in storage.list(dir).unwrap() {
        let f = storage
            .open(&dir.join(&name), raiz_engine::storage::OpenMode::Existing)
            .unwrap();
        let mut bytes = vec![0u8; f.len().unwrap() as usize];
        f.read_at(0, &mut bytes).unwrap();
        out.push((name, bytes));
    }
    out
}

#[test]
fn a_log_segment_that_comes_back_after_later_checkpoints_is_not_replayed() {
    use raiz_engine::storage::Storage;
    let storage = FaultStorage::new();
    let db = open(&storage, 1 << 30);
    setup(&db);
    let s = db.session();
    for k in 1..=30 {
        transfer(&s, k).unwrap();
    }
    // A segment holding transfers 1..=30, as it was before two checkpoints.
    let old = segments_now(&storage);
    db.checkpoint().unwrap();
    for k in 31..=60 {
        transfer(&s, k).unwrap();
    }
    db.checkpoint().unwrap();
    for k in 61..=70 {
        transfer(&s, k).unwrap();
    }
    let image = storage.crash(CrashMode::KeepAll);
    drop(s);
    drop(db);
    // The removal of the old segment did not survive (a file system that lost
    // it): its pages would put back the state of transfer 30 where later
    // checkpoints wrote transfers 31..=60.
    for (name, bytes) in &old {
        let p = std::path::Path::new("/root/raiz.wal").join(name);
        let f = image
            .open(&p, raiz_engine::storage::OpenMode::CreateNew)
            .unwrap();
        f.write_at(0, bytes).unwrap();
        f.sync().unwrap();
    }
    image
        .sync_dir(std::path::Path::new("/root/raiz.wal"))
        .unwrap();
    let db = open(&image, 1 << 30);
    assert!(db.recovery().stale_segments > 0, "{:?}", db.recovery());
    assert_eq!(committed_prefix(&db), 70);
}
