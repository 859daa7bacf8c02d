//! Page guards under contention and eviction: writer threads rewrite pages
//! they own, reader threads read any page, a flusher writes dirty pages back,
//! all through a pool far smaller than the pages in play — so frames are
//! loaded, written back and evicted all the time. A page is rewritten in two
//! steps under its guard (version first, then the body); a reader that ever
//! saw the two disagree, a page that lost a write, or a checksum failure on a
//! written-back page would mean the guards let two sides in at once. The
//! same runs on two files of different page sizes sharing one pool while
//! short-lived files come and go, so frames' memory (slabs per page size,
//! chunks handed out, given back and handed out again) is shared the same way.
//!
//! `RAIZ_GUARD_ROUNDS` sets the writes per writer (default 3,000).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raiz_engine::page::{BufferPool, PageFile, PageType, PAGE_HEADER};
use raiz_engine::storage::{FileStorage, OpenMode, Storage};

const PAGE: u32 = 4096;
const PAGES: u64 = 240;
const WRITERS: u64 = 3;
const READERS: usize = 3;

fn rounds() -> u64 {
    std::env::var("RAIZ_GUARD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

/// `RAIZ_GUARD_SEED`, or this test's default; printed with the rounds.
fn seed(default: u64) -> u64 {
    let seed = std::env::var("RAIZ_GUARD_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    println!(
        "seed {seed} (RAIZ_GUARD_SEED), {} writes per writer",
        rounds()
    );
    seed
}

/// A page's body for `version`: the version, then its low byte repeated.
fn fill(p: &mut [u8], version: u64) {
    p[PAGE_HEADER..PAGE_HEADER + 8].copy_from_slice(&version.to_le_bytes());
    p[PAGE_HEADER + 8..].fill(version as u8);
}

/// The version a page holds, checking its body agrees with it.
fn version_of(p: &[u8], page: u64) -> u64 {
    let v = u64::from_le_bytes(p[PAGE_HEADER..PAGE_HEADER + 8].try_into().unwrap());
    let body = &p[PAGE_HEADER + 8..];
    assert!(
        body.iter().all(|&b| b == v as u8),
        "page {page}: version {v} with a body of another version (a torn read)"
    );
    v
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn guards_never_let_a_reader_see_half_a_write_through_eviction_and_write_back() {
    let seed = seed(0x9a6e_5eed_u64);
    let dir = tempfile::tempdir().unwrap();
    // Sixteen 4 KiB frames for 240 pages: nearly every access loads or evicts.
    let pool = BufferPool::new(16 * PAGE as usize);
    scenario(&pool, dir.path(), PAGE, seed);
}

/// Two files of different page sizes share one small pool (their frames come
/// from slabs of two sizes, handed out, given back and handed out again),
/// while a third thread keeps creating, filling and dropping files of a third
/// size, whose frames go back with them: no page may see another's bytes, a
/// fresh page must read as zeros, and every write must survive.
#[test]
fn frames_of_several_page_sizes_share_a_pool_through_eviction_and_dropped_files() {
    let seed = seed(0x51ab_5eed_u64);
    let dir = tempfile::tempdir().unwrap();
    let pool = BufferPool::new(16 * 4096 + 16 * 16384);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (pool, stop, root) = (pool.clone(), stop.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut files = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = root.join(format!("churn{}.rzd", files % 4));
                let _ = std::fs::remove_file(&path);
                let f = FileStorage.open(&path, OpenMode::CreateNew).unwrap();
                let file = PageFile::open(pool.clone(), f, &path, 8192).unwrap();
                for n in 0..24u64 {
                    let (no, mut p) = file.allocate(PageType::Records).unwrap();
                    assert!(
                        p[PAGE_HEADER..].iter().all(|&b| b == 0),
                        "a new page of file {files} holds another page's bytes"
                    );
                    fill(&mut p, n + 1);
                    drop(p);
                    assert_eq!(version_of(&file.read(no).unwrap(), no), n + 1);
                }
                drop(file);
                files += 1;
            }
            files
        })
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| scenario(&pool, &dir.path().join("a"), 4096, seed));
        let b = s.spawn(|| scenario(&pool, &dir.path().join("b"), 16384, seed ^ 0xb));
        a.join().unwrap();
        b.join().unwrap();
    });
    stop.store(true, Ordering::Relaxed);
    let files = churn.join().unwrap();
    assert!(files > 0);
    println!("{files} short-lived files");
}

/// Writers, readers and a flusher on one file of `page` bytes a page in
/// `pool`; then every write is checked through the pool and on disk.
fn scenario(pool: &Arc<BufferPool>, dir: &Path, page: u32, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("pages.rzd");
    let storage = FileStorage;
    let f = storage.open(&path, OpenMode::CreateNew).unwrap();
    let file = Arc::new(PageFile::open(pool.clone(), f, Path::new(&path), page).unwrap());
    for _ in 0..PAGES {
        let (no, mut p) = file.allocate(PageType::Records).unwrap();
        fill(&mut p, 0);
        drop(p);
        assert!(no < PAGES);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = rounds();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let file = file.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut writes: HashMap<u64, u64> = HashMap::new();
                for _ in 0..rounds {
                    // Writer w owns the pages congruent to w.
                    let page = (rng.next() % (PAGES / WRITERS)) * WRITERS + w;
                    let mut p = file.write(page).unwrap();
                    let v = version_of(&p, page);
                    assert_eq!(
                        v,
                        writes.get(&page).copied().unwrap_or(0),
                        "page {page} lost a write"
                    );
                    // Two steps under the guard: readers must see neither alone.
                    p[PAGE_HEADER..PAGE_HEADER + 8].copy_from_slice(&(v + 1).to_le_bytes());
                    std::hint::black_box(&p[..]);
                    p[PAGE_HEADER + 8..].fill((v + 1) as u8);
                    drop(p);
                    writes.insert(page, v + 1);
                }
                writes
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (file, stop) = (file.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (r as u64 + 101).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let page = rng.next() % PAGES;
                    let p = file.read(page).unwrap();
                    version_of(&p, page);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let flusher = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                file.write_dirty().unwrap();
                std::thread::yield_now();
            }
        })
    };
    let mut want: HashMap<u64, u64> = HashMap::new();
    for w in writers {
        want.extend(w.join().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    flusher.join().unwrap();
    assert!(reads > 0);
    let stats = pool.stats();
    assert!(stats.evictions > 0 && stats.writebacks > 0, "{stats:?}");
    // Every write is there: through the pool, then from the file alone.
    for page in 0..PAGES {
        let p = file.read(page).unwrap();
        assert_eq!(version_of(&p, page), want.get(&page).copied().unwrap_or(0));
    }
    file.write_dirty().unwrap();
    file.sync().unwrap();
    drop(file);
    let f = storage.open(&path, OpenMode::Existing).unwrap();
    let reopened = PageFile::open(BufferPool::new(16 * page as usize), f, &path, page).unwrap();
    for page in 0..PAGES {
        let p = reopened.read(page).unwrap();
        assert_eq!(
            version_of(&p, page),
            want.get(&page).copied().unwrap_or(0),
            "page {page} on disk"
        );
    }
    println!("{reads} reads, {stats:?}");
}
