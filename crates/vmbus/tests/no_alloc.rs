//! No heap allocation per packet on the steady-state path of the whole runtime: guest
//! send, host echo device, guest receive, signals through SIEFP flags, SINTs and
//! HvSignalEvent. Every thread's allocations are counted during the window.

// Test code unwraps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hv_partition::SimPartition;
use std::sync::atomic::{AtomicU64, Ordering};
#[path = "support/counting_alloc.rs"]
#[allow(dead_code)] // each test uses one of its two counters
mod counting_alloc;
use counting_alloc::{CountingAlloc, allocations_on_all_threads};
use vmbus::*;
use vmbus_proto::guid::{Guid, class};
use vmbus_ring::OutgoingPacket;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn steady_state_echo_allocates_nothing() {
    let partition = SimPartition::new(64 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let relid = host
        .offer(
            OfferParams::new(class::NETWORK, Guid::ZERO),
            Box::new(EchoDevice::default()),
        )
        .unwrap();
    let guest = GuestBus::new(partition.clone(), GuestConfig::default()).unwrap();
    guest.connect().unwrap();
    let offers = guest.request_offers().unwrap();
    let offer = offers.iter().find(|o| o.child_relid == relid).unwrap();
    let ch = guest.open(offer, 32, 1).unwrap();
    let Channel {
        mut sender,
        mut receiver,
        ..
    } = ch;
    // The echoes are read on their own thread, so neither side can block the other.
    const WARM: u64 = 10_000;
    const COUNTED: u64 = 50_000;
    let received = std::sync::Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let reader = std::thread::spawn(move || {
        let mut got = 0u64;
        while got < WARM + COUNTED {
            got += receiver
                .recv_batch(64, |p| assert!(p.len() >= 1500))
                .unwrap() as u64;
            r.store(got, Ordering::SeqCst);
        }
        receiver
    });
    let frame = [7u8; 1500];
    let mut send = |from: u64, n: u64| {
        for i in from..from + n {
            sender
                .write(&OutgoingPacket::inband(i, 0), &[&frame])
                .unwrap();
            if i % 8 == 7 {
                sender.flush();
            }
        }
        sender.flush();
    };
    let wait_for = |n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while received.load(Ordering::SeqCst) < n {
            assert!(std::time::Instant::now() < deadline, "echoes stopped");
            std::thread::yield_now();
        }
    };
    send(0, WARM); // warm up: staging buffers reach their size
    wait_for(WARM);
    let ((), n) = allocations_on_all_threads(|| {
        send(WARM, COUNTED);
        wait_for(WARM + COUNTED);
    });
    assert_eq!(n, 0, "{n} allocations while {COUNTED} packets were echoed");
    let _receiver = reader.join().unwrap();
    // The counter itself works: one allocation in a counted window is seen.
    let (v, n) = allocations_on_all_threads(|| std::hint::black_box(Vec::<u8>::with_capacity(16)));
    drop(v);
    assert_eq!(n, 1);
    guest.close(relid).unwrap();
}
