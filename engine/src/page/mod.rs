//! Pages: the fixed-size unit of every raiz file, its header and checksum, the
//! bounded buffer pool, and a file seen as pages through that pool.

mod arena;
mod file;
mod guard;
pub mod layout;
mod map;
mod pool;

pub use file::{PageFile, PageMut, PageRef};
pub use layout::{PageType, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_PAGE_SIZE, PAGE_HEADER};
pub use pool::{BufferPool, PoolStats, MIN_POOL_BYTES};

pub(crate) use file::fault_error;
