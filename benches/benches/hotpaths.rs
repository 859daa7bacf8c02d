//! The hot paths in isolation, so a regression shows where it is: record
//! encode/decode, key encoding, page checksum, B+tree search and steps, log
//! append, the page patch a commit logs, a transaction's appends (record
//! locks, the transaction's index overlay, the commit), seeks and deletes in a
//! transaction (its ordered overlay), a record lock, and a page read that
//! misses the pool (a frame evicted, its memory reused for the page loaded).
//!
//! `cargo bench -p raiz-benches --bench hotpaths`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raiz_benches::{row, schema, XorShift};
use raiz_engine::index::{BTree, IndexDef, KeySpec, Segment, TreeState};
use raiz_engine::log::record::{Entry, FileRef};
use raiz_engine::log::Wal;
use raiz_engine::page::{layout, BufferPool, PageFile};
use raiz_engine::record::Codec;
use raiz_engine::storage::{FileStorage, MemoryStorage, OpenMode, Storage};
use raiz_engine::RecordFormat;

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    for format in [RecordFormat::Fixed, RecordFormat::Variable] {
        let s = schema(100, false);
        let codec = Codec::new(&s, format);
        let values = row(42, 100, None);
        let mut buf = Vec::new();
        codec.encode(&values, &mut buf);
        let name = raiz_benches::format_name(format);
        g.bench_function(format!("encode_{name}_100B"), |b| {
            let mut out = Vec::with_capacity(256);
            b.iter(|| {
                out.clear();
                codec.encode(black_box(&values), &mut out);
            })
        });
        g.bench_function(format!("decode_{name}_100B"), |b| {
            b.iter(|| codec.decode(black_box(&buf), "t", 1).unwrap())
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let s = schema(100, false);
    let def = IndexDef::new(
        "k",
        vec![
            Segment::field("TEXT").upper(),
            Segment::field("DAY").descending(),
            Segment::field("AMOUNT"),
        ],
    );
    let spec = KeySpec::compile("t", &s, &def).unwrap();
    let values = row(7, 100, None);
    let mut g = c.benchmark_group("key");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_3_segments", |b| {
        b.iter(|| spec.key(black_box(&values)))
    });
    g.finish();
}

fn checksum(c: &mut Criterion) {
    let mut page = vec![0x5au8; 8192];
    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Bytes(8192));
    g.bench_function("checksum_8KiB", |b| {
        b.iter(|| layout::page_checksum(black_box(&page)))
    });
    g.bench_function("seal_8KiB", |b| b.iter(|| layout::seal(&mut page, 3)));
    g.finish();
}

const KLEN: usize = 24;

fn btree(c: &mut Criterion) {
    let storage = MemoryStorage::new();
    let p = Path::new("/bench.rzi");
    let f = storage.open(p, OpenMode::CreateNew).unwrap();
    let file = PageFile::open(BufferPool::new(256 << 20), f, p, 8192).unwrap();
    file.write_direct(0, &mut vec![0u8; 8192]).unwrap();
    let mut tree = BTree::new(file, KLEN, TreeState::default());
    let n = 200_000u64;
    let key = |i: u64| {
        let mut k = vec![0u8; KLEN];
        k[..8].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
        k
    };
    let mut entries: Vec<(Vec<u8>, u64)> = (0..n).map(|i| (key(i), i + 1)).collect();
    entries.sort();
    tree.bulk_load(&entries, |_| {}).unwrap();
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let mut g = c.benchmark_group("btree");
    g.throughput(Throughput::Elements(1));
    g.bench_function("search_200K_keys", |b| {
        b.iter(|| {
            let k = key(rng.next_in(n) - 1);
            tree.get(black_box(&k)).unwrap()
        })
    });
    g.bench_function("seek_then_next", |b| {
        b.iter(|| {
            let k = key(rng.next_in(n) - 1);
            let p = tree.seek(&k).unwrap().unwrap();
            tree.next(p).unwrap()
        })
    });
    // Navigation's path: the entry with the descent, then entry steps.
    g.bench_function("seek_step_then_9_steps", |b| {
        b.iter(|| {
            let k = key(rng.next_in(n) - 1);
            let mut step = tree.seek_step(&k).unwrap();
            for _ in 0..9 {
                let Some(then) = step.as_ref().and_then(|s| s.then) else {
                    break;
                };
                step = tree.entry_step(then, true).unwrap();
            }
            black_box(step)
        })
    });
    // A delete's unique entry taking its recno as suffix, and back (recall):
    // the entry changes where it stands.
    g.bench_function("rekey_in_place_and_back", |b| {
        b.iter(|| {
            let i = rng.next_in(n) - 1;
            let live = key(i);
            let mut dead = live.clone();
            dead[KLEN - 8..].copy_from_slice(&(i + 1).to_be_bytes());
            let moved = tree.rekey_in_place(&live, &dead).unwrap();
            if moved.is_some() {
                tree.rekey_in_place(&dead, &live).unwrap();
            }
            black_box(moved)
        })
    });
    g.finish();
}

/// A logged table on memory storage with a unique index on a 24-byte key.
fn kv_table(db: &raiz_engine::Database, s: &raiz_engine::Session) -> raiz_engine::Table {
    use raiz_engine::{Field, FieldType, Schema, TableOptions};
    let schema = Schema::new(vec![
        Field::new("KEY", FieldType::Binary(24)),
        Field::new("VAL", FieldType::Binary(150)),
    ]);
    db.create_table("kv", &schema, TableOptions::default())
        .unwrap();
    let mut t = s.open_table("kv").unwrap();
    t.create_index(&IndexDef::new("key", vec![Segment::field("KEY")]).unique())
        .unwrap();
    t
}

fn kv_row(i: u64) -> [raiz_engine::Value; 2] {
    let mut k = vec![0u8; 24];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..16].copy_from_slice(&i.to_be_bytes());
    [
        raiz_engine::Value::Binary(k),
        raiz_engine::Value::Binary(vec![7; 150]),
    ]
}

fn transactions(c: &mut Criterion) {
    use raiz_engine::{Database, Options};
    let mut g = c.benchmark_group("txn");
    g.throughput(Throughput::Elements(1_000));
    g.sample_size(20);
    // A thousand appends in one transaction, then its commit: each append
    // locks its record and checks its key against the transaction's overlay.
    g.bench_function("append_1000_in_one_transaction", |b| {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Database::open_with("/txn", Options::default().storage(storage)).unwrap();
        let s = db.session();
        let mut t = kv_table(&db, &s);
        let mut i = 0u64;
        b.iter(|| {
            s.begin().unwrap();
            for _ in 0..1_000 {
                t.append(&kv_row(i)).unwrap();
                i += 1;
            }
            s.commit().unwrap();
        })
    });
    // A thousand seeks and deletes by key in one transaction, then its
    // rollback: each seek merges the transaction's ordered overlay, which
    // each delete (moving the record's unique key to its deleted form) grows.
    g.bench_function("seek_and_delete_1000_in_one_transaction", |b| {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Database::open_with("/del", Options::default().storage(storage)).unwrap();
        let s = db.session();
        let mut t = kv_table(&db, &s);
        const ROWS: u64 = 100_000;
        s.begin().unwrap();
        for i in 0..ROWS {
            t.append(&kv_row(i)).unwrap();
        }
        s.commit().unwrap();
        t.set_order(Some("key")).unwrap();
        let mut rng = XorShift(0xde1e_7e00_0000_0001);
        b.iter(|| {
            s.begin().unwrap();
            for _ in 0..1_000 {
                let key = kv_row(rng.next_in(ROWS) - 1).into_iter().next().unwrap();
                if t.seek(&[key]).unwrap() && !t.is_deleted(t.recno()).unwrap() {
                    t.delete(t.recno()).unwrap();
                }
            }
            s.rollback().unwrap();
        })
    });
    g.finish();
    let mut g = c.benchmark_group("locks");
    g.throughput(Throughput::Elements(1));
    g.bench_function("record_lock_and_unlock", |b| {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Database::open_with("/locks", Options::default().storage(storage)).unwrap();
        let mut t = kv_table(&db, &db.session());
        for i in 0..1_000 {
            t.append(&kv_row(i)).unwrap();
        }
        let mut rng = XorShift(0x5151_7a7a_0101_3c3c);
        b.iter(|| {
            let r = rng.next_in(1_000);
            t.lock(r, std::time::Duration::ZERO).unwrap();
            t.unlock(r)
        })
    });
    g.finish();
}

fn log_append(c: &mut Criterion) {
    // A real file: the write a commit makes before its sync, plus the amortised
    // cost of extending the log with synced zeros 4 MiB at a time.
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::new());
    let wal = Wal::open(storage, dir.path(), 0).unwrap();
    let image = vec![0x33u8; 8192];
    let file = FileRef {
        file: "t.rzd".into(),
        incarnation: 1,
    };
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(8192));
    let mut txn = 0;
    g.bench_function("append_commit_with_one_8KiB_page", |b| {
        b.iter(|| {
            txn += 1;
            wal.append(&[
                Entry::Page {
                    file: file.clone(),
                    page: 5,
                    image: image.clone(),
                },
                Entry::Commit { txn },
            ])
            .unwrap()
        })
    });
    g.finish();
}

fn patch(c: &mut Criterion) {
    use raiz_engine::log::patch;
    // An 8 KiB leaf of 40-byte entries as a unique index stores them (a
    // 24-byte key, a zero suffix, the recno), half full, and the same leaf
    // with one entry inserted near its start (the entries after it shift,
    // and their zero bytes land on zero bytes).
    let entry = |i: u64| {
        let mut e = [0u8; 40];
        e[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        e[8..24].copy_from_slice(&i.rotate_left(29).to_le_bytes().repeat(2));
        e[32..].copy_from_slice(&(i + 1).to_le_bytes());
        e
    };
    let mut leaf = vec![0u8; 8192];
    for i in 0..100usize {
        leaf[24 + i * 40..24 + (i + 1) * 40].copy_from_slice(&entry(i as u64));
    }
    let mut inserted = leaf.clone();
    inserted.copy_within(24 + 3 * 40..24 + 100 * 40, 24 + 4 * 40);
    inserted[24 + 3 * 40..24 + 4 * 40].copy_from_slice(&entry(1000));
    inserted[0] = 101;
    // A data page: the header and a 176-byte record far apart.
    let data = vec![0u8; 8192];
    let mut appended = data.clone();
    appended[0..8].copy_from_slice(&46u64.to_le_bytes());
    appended[4000..4176].fill(7);
    let mut g = c.benchmark_group("patch");
    g.bench_function("diff_leaf_insert_8KiB", |b| {
        b.iter(|| patch::diff(black_box(&leaf), black_box(&inserted)))
    });
    g.bench_function("diff_data_page_append_8KiB", |b| {
        b.iter(|| patch::diff(black_box(&data), black_box(&appended)))
    });
    let ops = patch::diff(&leaf, &inserted);
    g.bench_function("apply_leaf_insert_8KiB", |b| {
        b.iter(|| {
            let mut p = leaf.clone();
            patch::apply(&mut p, black_box(&ops))
        })
    });
    g.finish();
}

/// A page read that misses the pool: eight frames for 1,000 pages, so each
/// read evicts a frame, and its memory (a chunk of the pool's slabs, zeroed
/// when handed out again) takes the page read from storage and verified.
fn pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));
    const PAGES: u64 = 1_000;
    let storage = MemoryStorage::new();
    let path = Path::new("/pool.rzd");
    let f = storage.open(path, OpenMode::CreateNew).unwrap();
    let file = PageFile::open(BufferPool::new(8 * 8192), f, path, 8192).unwrap();
    for _ in 0..PAGES {
        file.allocate(raiz_engine::page::PageType::Records).unwrap();
    }
    file.write_dirty().unwrap();
    let mut rng = XorShift(0x9001_0000_0000_0005);
    g.bench_function("miss_load_8KiB_page", |b| {
        b.iter(|| black_box(file.read(rng.next_in(PAGES) - 1).unwrap()[100]))
    });
    g.finish();
}

criterion_group!(
    benches,
    pool,
    records,
    keys,
    checksum,
    btree,
    log_append,
    patch,
    transactions
);
criterion_main!(benches);
