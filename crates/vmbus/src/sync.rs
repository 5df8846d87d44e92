//! The runtime's lock: std's mutex with `std` (a poisoned lock is taken over: what it
//! guards is consistent at every unlock), a spin lock without (a `no_std` guest has no
//! scheduler to sleep in, and its locks are held for a few instructions).

#[cfg(feature = "std")]
pub(crate) type Lock<T> = std::sync::Mutex<T>;
#[cfg(feature = "std")]
pub(crate) type LockGuard<'a, T> = std::sync::MutexGuard<'a, T>;

/// Takes `l`.
#[cfg(feature = "std")]
pub(crate) fn lock<T>(l: &Lock<T>) -> LockGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(not(feature = "std"))]
pub(crate) type Lock<T> = spin::mutex::SpinMutex<T>;
#[cfg(not(feature = "std"))]
pub(crate) type LockGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;

/// Takes `l`.
#[cfg(not(feature = "std"))]
pub(crate) fn lock<T>(l: &Lock<T>) -> LockGuard<'_, T> {
    l.lock()
}
