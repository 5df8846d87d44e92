//! The steady-state path allocates nothing: write, commit, read (view or copy into a
//! reused scratch buffer), commit, and ring a doorbell, under a counting allocator.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// A counting global allocator has to implement an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use vmbus_ring::*;

struct Counting;

thread_local! {
    /// Only the measuring thread counts, into its own counter: the test harness and the
    /// other test run on other threads.
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

fn allocs() -> u64 {
    ALLOCS.with(|a| a.get())
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn steady_state(mem: Arc<dyn RingMem>) -> u64 {
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem).unwrap();
    let bell = Doorbell::new();
    let mut scratch = Vec::with_capacity(4096);
    let payload = [0xA5u8; 1500];
    let header = [0u8; 40];
    let mut sum = 0u64;
    let mut round = |tx: &mut OutgoingRing<_>, rx: &mut IncomingRing<_>, scratch: &mut Vec<u8>| {
        for i in 0..8u64 {
            tx.try_write(
                &OutgoingPacket::inband(i, 1),
                &[&header, &payload[..(i as usize * 150)]],
            )
            .unwrap();
        }
        if tx.commit() {
            bell.ring();
        }
        bell.take();
        rx.mask_interrupts();
        while let Ok(p) = rx.try_read() {
            sum += p.with_bytes(scratch, |b| u64::from(b[b.len() - 1]));
        }
        rx.commit();
        rx.unmask_and_recheck().unwrap();
    };
    // Warm up (the scratch buffer reaches its size, lazy statics initialize).
    for _ in 0..100 {
        round(&mut tx, &mut rx, &mut scratch);
    }
    let before = allocs();
    COUNTING.with(|c| c.set(true));
    for _ in 0..10_000 {
        round(&mut tx, &mut rx, &mut scratch);
    }
    COUNTING.with(|c| c.set(false));
    let n = allocs() - before;
    assert!(sum > 0);
    n
}

#[test]
fn no_allocation_per_packet() {
    for (name, mem) in [
        (
            "flat",
            Arc::new(FlatRingMem::new(16 * 4096).unwrap()) as Arc<dyn RingMem>,
        ),
        (
            "double",
            Arc::new(DoubleMappedRingMem::new(16 * 4096).unwrap()) as Arc<dyn RingMem>,
        ),
    ] {
        let n = steady_state(mem);
        assert_eq!(n, 0, "{name}: {n} allocations in 80,000 packets");
    }
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocs();
    COUNTING.with(|c| c.set(true));
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert_eq!(allocs() - before, 1);
}
