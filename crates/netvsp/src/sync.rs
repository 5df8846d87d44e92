//! Locking that survives a thread that panicked while holding the lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, going on with the data if a thread panicked while holding it (every
/// update in this crate leaves the state consistent between statements).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
