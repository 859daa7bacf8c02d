//! The write-ahead log and crash recovery.
//!
//! One log per rootpath, in segments under `raiz.wal/`. Logged tables apply a
//! transaction's changes at commit; the commit writes the full image of every page
//! it changed the first time after a checkpoint (later, a patch of what changed),
//! the tables' counters, then a commit frame, and returns once the log is synced up
//! to that frame (concurrent commits share the sync, and a sync pads the log to a
//! 4 KiB boundary). No page a
//! commit changed may be written to its table file before the commit's frames are
//! durable. Checkpoints write every changed page to the table files and start a
//! new segment, bounding recovery; recovery (`db::recovery`) replays the complete
//! commits found.

pub mod patch;
pub mod record;
mod wal;

pub use wal::{segment_name, segments, SegmentCut, SegmentPin, Wal, WAL_DIR};
