//! This machine's limits, measured in the same run as the engines: what a
//! durable commit and a scan could cost at best here.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::report::{Better, Report};
use super::Result;

/// The column these rows go in.
pub const COLUMN: &str = "this machine";

/// Measures fdatasync rates, write bandwidth and memory copy bandwidth.
pub fn measure(quick: bool, report: &mut Report) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let syncs = if quick { 50 } else { 1000 };
    // Appending 512 bytes then fdatasync: each sync also writes the size.
    let mut f = std::fs::File::create(dir.path().join("append"))?;
    let start = Instant::now();
    for _ in 0..syncs {
        f.write_all(&[7u8; 512])?;
        f.sync_data()?;
    }
    let r = syncs as f64 / start.elapsed().as_secs_f64();
    report.add(
        "fdatasync after a 512-byte append",
        "syncs/s",
        Better::Higher,
        COLUMN,
        r,
    );
    // Overwriting a preallocated, synced file: the sync writes data only.
    let f = std::fs::File::create(dir.path().join("prealloc"))?;
    f.set_len(64 << 20)?;
    f.write_all_at(&vec![0u8; 64 << 20], 0)?;
    f.sync_all()?;
    let start = Instant::now();
    for i in 0..syncs {
        f.write_all_at(&[7u8; 512], (i as u64 * 4096) % (64 << 20))?;
        f.sync_data()?;
    }
    let r = syncs as f64 / start.elapsed().as_secs_f64();
    report.add(
        "fdatasync after a 512-byte overwrite (preallocated)",
        "syncs/s",
        Better::Higher,
        COLUMN,
        r,
    );
    // Sequential write bandwidth, including the final fdatasync.
    let total: usize = if quick { 16 << 20 } else { 512 << 20 };
    let chunk = vec![0x5au8; 1 << 20];
    let mut f = std::fs::File::create(dir.path().join("seq"))?;
    let start = Instant::now();
    for _ in 0..total / chunk.len() {
        f.write_all(&chunk)?;
    }
    f.sync_data()?;
    let mb = total as f64 / 1e6 / start.elapsed().as_secs_f64();
    report.add(
        "sequential write + final fdatasync",
        "MB/s",
        Better::Higher,
        COLUMN,
        mb,
    );
    // Memory copy bandwidth.
    let src = vec![1u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    let rounds = if quick { 2 } else { 32 };
    let start = Instant::now();
    for i in 0..rounds {
        dst.copy_from_slice(&src);
        dst[i] = std::hint::black_box(dst[i]);
    }
    let gb = (rounds * src.len()) as f64 / 1e9 / start.elapsed().as_secs_f64();
    report.add(
        "memory copy (64 MiB blocks)",
        "GB/s",
        Better::Higher,
        COLUMN,
        gb,
    );
    Ok(())
}
