//! A snapshot's bytes as openraft streams them: a file of the member's
//! [`Storage`], read and written at a position.
//!
//! openraft sends a snapshot in chunks read from its `SnapshotData` and
//! writes the chunks it receives into one, seeking between them, so the data
//! must be `AsyncRead + AsyncWrite + AsyncSeek`. [`SnapshotFile`] answers
//! each call with one positioned read or write of the storage file: those
//! are local and short (a chunk is a few MiB at most), so they run in the
//! poll rather than on another thread. Going through [`Storage`] keeps
//! snapshot files under the same fault injection as the log and the tables.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use raiz_engine::storage::{OpenMode, Storage, StorageFile};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A snapshot file with a position (see the module docs).
#[derive(Debug)]
pub struct SnapshotFile {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    pos: u64,
    /// Set to the time (ms since the Unix epoch) of each write, when given.
    written: Option<Arc<AtomicU64>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SnapshotFile {
    /// Opens `path` of `storage` (`mode` as for any storage file).
    pub fn open(storage: &dyn Storage, path: &Path, mode: OpenMode) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: storage.open(path, mode)?,
            path: path.to_path_buf(),
            pos: 0,
            written: None,
        })
    }

    /// Records the time of every write in `at` (a member watching a
    /// snapshot arrive).
    pub fn note_writes(mut self, at: Arc<AtomicU64>) -> SnapshotFile {
        at.store(now_ms(), Ordering::Relaxed);
        self.written = Some(at);
        self
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The storage file.
    pub fn file(&self) -> &Arc<dyn StorageFile> {
        &self.file
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let len = me.file.len()?;
        let n = (len.saturating_sub(me.pos)).min(buf.remaining() as u64) as usize;
        if n > 0 {
            let dst = buf.initialize_unfilled_to(n);
            me.file.read_at(me.pos, &mut dst[..n])?;
            buf.advance(n);
            me.pos += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.file.write_at(me.pos, data)?;
        me.pos += data.len() as u64;
        if let Some(at) = &me.written {
            at.store(now_ms(), Ordering::Relaxed);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The last chunk is in: the file is made durable before openraft hands
    /// it to the state machine.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.file.sync())
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let me = self.get_mut();
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => me.file.len()?.checked_add_signed(d),
            SeekFrom::Current(d) => me.pos.checked_add_signed(d),
        };
        me.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: seek before the start", me.path.display()),
            )
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
