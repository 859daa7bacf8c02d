//! A rootpath packed into one file, and unpacked again.
//!
//! Layout: the magic `RAIZSNAP`, a u32 version (1); then each file as a u16
//! name length (≥ 1), its name (`NAME` or `raiz.wal/NAME`), a u64 length, the
//! crc32 of its bytes (u32), the bytes; then a u16 0 and the u64 count of
//! files. All integers little-endian.
//!
//! Unpacking trusts nothing: every length is checked against what the file
//! holds, every name against the two shapes above (no `..`, no absolute
//! path), every file's crc32, and the count at the end — a snapshot cut short
//! or damaged in transit is an error naming the file and the offset, never a
//! partial rootpath.

use std::path::{Path, PathBuf};

use raiz_engine::log::WAL_DIR;
use raiz_engine::storage::{OpenMode, Storage, StorageFile};

use crate::error::{io, Error, Result};

const MAGIC: &[u8; 8] = b"RAIZSNAP";
const VERSION: u32 = 1;
const CHUNK: usize = 1 << 20;

/// Files of a rootpath that are not part of its data: its owner lock, its
/// epoch (a copy draws its own), a backup's manifest.
const LEFT_OUT: &[&str] = &[
    raiz_engine::db::OWNER_FILE,
    raiz_engine::feed::EPOCH_FILE,
    raiz_engine::backup::MANIFEST,
];

fn damaged(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Packs the files of rootpath `dir` (and of its log directory) into `out`,
/// which is synced. Returns the bytes written.
pub fn pack(
    storage: &dyn Storage,
    dir: &Path,
    out: &dyn StorageFile,
    out_path: &Path,
) -> Result<u64> {
    let mut names: Vec<String> = storage
        .list(dir)
        .map_err(io(dir))?
        .into_iter()
        .filter(|n| !LEFT_OUT.contains(&n.as_str()))
        .collect();
    let wal = dir.join(WAL_DIR);
    if storage.exists(&wal).map_err(io(&wal))? {
        for n in storage.list(&wal).map_err(io(&wal))? {
            names.push(format!("{WAL_DIR}/{n}"));
        }
    }
    names.sort();
    let mut at = 0u64;
    let put = |bytes: &[u8], at: &mut u64| -> Result<()> {
        out.write_at(*at, bytes).map_err(io(out_path))?;
        *at += bytes.len() as u64;
        Ok(())
    };
    put(MAGIC, &mut at)?;
    put(&VERSION.to_le_bytes(), &mut at)?;
    let mut buf = vec![0u8; CHUNK];
    for name in &names {
        let path = dir.join(name);
        let f = storage.open(&path, OpenMode::Existing).map_err(io(&path))?;
        let len = f.len().map_err(io(&path))?;
        let name_len = u16::try_from(name.len())
            .map_err(|_| damaged(&path, 0, "a file name longer than 65535 bytes"))?;
        put(&name_len.to_le_bytes(), &mut at)?;
        put(name.as_bytes(), &mut at)?;
        put(&len.to_le_bytes(), &mut at)?;
        // The crc goes before the bytes: it is computed first.
        let crc_at = at;
        put(&[0; 4], &mut at)?;
        let mut crc = crc32fast::Hasher::new();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            f.read_at(done, &mut buf[..n]).map_err(io(&path))?;
            crc.update(&buf[..n]);
            put(&buf[..n], &mut at)?;
            done += n as u64;
        }
        out.write_at(crc_at, &crc.finalize().to_le_bytes())
            .map_err(io(out_path))?;
    }
    put(&0u16.to_le_bytes(), &mut at)?;
    put(&(names.len() as u64).to_le_bytes(), &mut at)?;
    out.set_len(at).map_err(io(out_path))?;
    out.sync().map_err(io(out_path))?;
    Ok(at)
}

/// Where an archive's file goes under `dir`, if its name is one of the two
/// shapes a packed rootpath has.
fn target(dir: &Path, name: &str) -> Option<PathBuf> {
    let ok = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']);
    match name.split_once('/') {
        None if ok(name) => Some(dir.join(name)),
        Some((WAL_DIR, rest)) if ok(rest) => Some(dir.join(WAL_DIR).join(rest)),
        _ => None,
    }
}

/// Unpacks the archive `src` (at `src_path`) into the empty directory `dir`,
/// checking everything (see the module docs). Returns the files unpacked.
pub fn unpack(
    storage: &dyn Storage,
    src: &dyn StorageFile,
    src_path: &Path,
    dir: &Path,
) -> Result<usize> {
    let total = src.len().map_err(io(src_path))?;
    let mut at = 0u64;
    let take = |n: u64, at: &mut u64, what: &str| -> Result<Vec<u8>> {
        if total.saturating_sub(*at) < n {
            return Err(damaged(
                src_path,
                *at,
                format!(
                    "cut short: {what} needs {n} bytes, {} remain",
                    total.saturating_sub(*at)
                ),
            ));
        }
        let mut b = vec![0u8; n as usize];
        src.read_at(*at, &mut b).map_err(io(src_path))?;
        *at += n;
        Ok(b)
    };
    if take(8, &mut at, "the magic")? != MAGIC {
        return Err(damaged(src_path, 0, "not a raiz snapshot"));
    }
    let version = u32::from_le_bytes(take(4, &mut at, "the version")?.try_into().expect("4"));
    if version != VERSION {
        return Err(damaged(
            src_path,
            8,
            format!("snapshot version {version}, this raiz reads {VERSION}"),
        ));
    }
    storage
        .create_dir_all(&dir.join(WAL_DIR))
        .map_err(io(dir))?;
    let mut files = 0usize;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let entry_at = at;
        let name_len =
            u16::from_le_bytes(take(2, &mut at, "a name length")?.try_into().expect("2"));
        if name_len == 0 {
            break;
        }
        let name = String::from_utf8(take(u64::from(name_len), &mut at, "a name")?)
            .map_err(|_| damaged(src_path, entry_at, "a file name that is not UTF-8"))?;
        let path = target(dir, &name).ok_or_else(|| {
            damaged(
                src_path,
                entry_at,
                format!("a file name not of a rootpath: {name:?}"),
            )
        })?;
        let len = u64::from_le_bytes(take(8, &mut at, "a length")?.try_into().expect("8"));
        let want = u32::from_le_bytes(take(4, &mut at, "a crc")?.try_into().expect("4"));
        if total.saturating_sub(at) < len {
            return Err(damaged(
                src_path,
                at,
                format!(
                    "cut short in {name}: {len} bytes announced, {} remain",
                    total - at
                ),
            ));
        }
        let f = storage
            .open(&path, OpenMode::CreateNew)
            .map_err(io(&path))?;
        let mut crc = crc32fast::Hasher::new();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            src.read_at(at + done, &mut buf[..n])
                .map_err(io(src_path))?;
            crc.update(&buf[..n]);
            f.write_at(done, &buf[..n]).map_err(io(&path))?;
            done += n as u64;
        }
        if crc.finalize() != want {
            return Err(damaged(
                src_path,
                at,
                format!("{name} is damaged (crc32 mismatch)"),
            ));
        }
        f.sync().map_err(io(&path))?;
        at += len;
        files += 1;
    }
    let count = u64::from_le_bytes(take(8, &mut at, "the file count")?.try_into().expect("8"));
    if count != files as u64 {
        return Err(damaged(
            src_path,
            at,
            format!("{files} files, the end says {count}"),
        ));
    }
    if at != total {
        return Err(damaged(
            src_path,
            at,
            format!("{} bytes after the end", total - at),
        ));
    }
    storage
        .sync_dir(&dir.join(WAL_DIR))
        .and_then(|()| storage.sync_dir(dir))
        .map_err(io(dir))?;
    Ok(files)
}
