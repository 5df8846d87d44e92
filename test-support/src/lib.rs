//! Test-only helpers: a counting global allocator for the "no heap allocation per
//! packet" tests. Install it in a test binary with
//! `#[global_allocator] static A: test_support::CountingAlloc = test_support::CountingAlloc;`
//! and measure a closure with [`allocations_on_this_thread`] or
//! [`allocations_on_all_threads`].
//!
//! Implementing `GlobalAlloc` needs `unsafe`; this crate is never a dependency of a
//! library, only of tests.
//!
//! The published crates' tests cannot depend on this unpublished crate, so each of
//! them (`crates/{vmbus-ring,vmbus,netvsp}/tests/support/counting_alloc.rs`) holds a
//! symbolic link to this file, which `cargo package` turns into a copy: one source, and
//! every packaged crate's tests build from the package alone.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The system allocator, counting allocations and reallocations while a window is open.
pub struct CountingAlloc;

static ALL_COUNTING: AtomicBool = AtomicBool::new(false);
static ALL_COUNT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_COUNTING: Cell<bool> = const { Cell::new(false) };
    static THREAD_COUNT: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if ALL_COUNTING.load(Ordering::Relaxed) {
        ALL_COUNT.fetch_add(1, Ordering::Relaxed);
    }
    if THREAD_COUNTING.try_with(|c| c.get()).unwrap_or(false) {
        let _ = THREAD_COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Runs `f` and returns how many allocations this thread made meanwhile (other
/// threads, such as the test harness's, are not counted).
pub fn allocations_on_this_thread<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = THREAD_COUNT.with(|c| c.get());
    THREAD_COUNTING.with(|c| c.set(true));
    let r = f();
    THREAD_COUNTING.with(|c| c.set(false));
    (r, THREAD_COUNT.with(|c| c.get()) - before)
}

/// Runs `f` and returns how many allocations every thread of the process made
/// meanwhile. Only meaningful when no other test runs in the same binary at once.
pub fn allocations_on_all_threads<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALL_COUNT.load(Ordering::SeqCst);
    ALL_COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    ALL_COUNTING.store(false, Ordering::SeqCst);
    (r, ALL_COUNT.load(Ordering::SeqCst) - before)
}
