//! No heap allocation per frame on the steady-state NIC path: netvsc send, netvsp
//! transmit to the backend, loopback, netvsp receive into the guest's buffer, netvsc
//! receive and completion. Every thread's allocations are counted during the window.

#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use hv_partition::SimPartition;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use vmbus::{GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::{Guid, class};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_frames_allocate_nothing() {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let (endpoint, _link) = Loopback::new(256);
    let relid = host
        .offer(
            OfferParams::new(class::NETWORK, Guid::ZERO),
            Box::new(Netvsp::new(NetvspConfig::default(), Box::new(endpoint))),
        )
        .unwrap();
    let bus = GuestBus::new(partition, GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    let mut nic = Netvsc::open(&bus, &offer, &NetvscConfig::default()).unwrap();
    let frame = [0x5Au8; 1514];
    let mut buf = [0u8; 1518];
    let mut round = |n: usize| {
        for _ in 0..n {
            nic.send(&frame).unwrap();
            assert_eq!(
                nic.recv(&mut buf, Duration::from_secs(5)).unwrap(),
                Some(1514)
            );
        }
    };
    round(3000); // warm up: queues and staging buffers reach their size
    COUNTING.store(true, Ordering::SeqCst);
    round(20_000);
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(n, 0, "{n} allocations while 20,000 frames looped");
    // The counter itself works.
    COUNTING.store(true, Ordering::SeqCst);
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(8));
    COUNTING.store(false, Ordering::SeqCst);
    drop(v);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 1);
}
