//! Guards on a cached page: [`PageRef`] holds its frame's lock shared,
//! [`PageMut`] exclusive.
//!
//! Each guard holds one `Arc` to the frame, whose lock and page pointer sit
//! beside its other fields: taking a page costs the pool's map entry, one
//! line of the frame and the page itself — the cache misses of a random read,
//! measured to matter (a library guard would need a second allocation for the
//! lock). While a guard exists its frame counts as pinned (see the pool).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use parking_lot::lock_api::RawRwLockDowngrade;

use super::pool::Frame;

/// Keeps a guard on the thread that took its lock, as the lock's own guards
/// are: the lock is released where it was taken.
type NotSend = PhantomData<*const ()>;

/// A page held for reading. Others may read it at the same time.
pub struct PageRef {
    frame: Arc<Frame>,
    _thread: NotSend,
}

impl PageRef {
    /// Takes the frame's lock shared, waiting for a writer or loader.
    pub(super) fn lock(frame: Arc<Frame>) -> PageRef {
        // The lock stays held until this guard drops (see `Drop`).
        std::mem::forget(frame.data.read());
        PageRef {
            frame,
            _thread: PhantomData,
        }
    }

    pub(super) fn frame(&self) -> &Arc<Frame> {
        &self.frame
    }
}

impl Deref for PageRef {
    type Target = [u8];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[u8] {
        // SAFETY: this guard holds the frame's lock shared from `lock` (or a
        // downgrade) until it drops, so no `&mut` to the data exists meanwhile.
        unsafe { &*self.frame.data.data_ptr() }
    }
}

impl Drop for PageRef {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the shared lock taken in `lock` (or kept by a downgrade) is
        // held by this guard alone and released exactly once, here.
        unsafe { self.frame.data.force_unlock_read() }
    }
}

/// A page held for writing. It is marked dirty and written back by a flush or
/// when evicted.
pub struct PageMut {
    frame: Arc<Frame>,
    /// The lock was handed on to a [`PageRef`]: nothing to release here.
    handed_on: bool,
    _thread: NotSend,
}

impl PageMut {
    /// Takes the frame's lock exclusive, waiting for readers and writers.
    pub(super) fn lock(frame: Arc<Frame>) -> PageMut {
        std::mem::forget(frame.data.write());
        PageMut {
            frame,
            handed_on: false,
            _thread: PhantomData,
        }
    }

    pub(super) fn frame(&self) -> &Arc<Frame> {
        &self.frame
    }

    /// Turns the exclusive hold into a shared one without letting a writer in.
    #[allow(unsafe_code)]
    pub(super) fn downgrade(mut self) -> PageRef {
        // SAFETY: this guard holds the lock exclusive; after the downgrade it
        // is held shared, and ownership of that hold passes to the PageRef
        // (`handed_on` stops this guard's drop from releasing it).
        unsafe { self.frame.data.raw().downgrade() };
        self.handed_on = true;
        PageRef {
            frame: self.frame.clone(),
            _thread: PhantomData,
        }
    }
}

impl Deref for PageMut {
    type Target = [u8];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[u8] {
        // SAFETY: this guard holds the frame's lock exclusive until it drops.
        unsafe { &*self.frame.data.data_ptr() }
    }
}

impl DerefMut for PageMut {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: this guard holds the frame's lock exclusive until it drops,
        // and `&mut self` makes this the only reference through it.
        unsafe { &mut *self.frame.data.data_ptr() }
    }
}

impl Drop for PageMut {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if !self.handed_on {
            // SAFETY: the exclusive lock taken in `lock` is held by this guard
            // alone and released exactly once, here.
            unsafe { self.frame.data.force_unlock_write() }
        }
    }
}
