//! The steady-state path allocates nothing: write, commit, read (view or copy into a
//! reused scratch buffer), commit, and ring a doorbell, under a counting allocator.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use std::sync::Arc;
#[path = "support/counting_alloc.rs"]
#[allow(dead_code)] // each test uses one of its two counters
mod counting_alloc;
use counting_alloc::{CountingAlloc, allocations_on_this_thread};
use vmbus_ring::*;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

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
    let ((), n) = allocations_on_this_thread(|| {
        for _ in 0..10_000 {
            round(&mut tx, &mut rx, &mut scratch);
        }
    });
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
    let (v, n) = allocations_on_this_thread(|| std::hint::black_box(Vec::<u8>::with_capacity(10)));
    drop(v);
    assert_eq!(n, 1);
}
