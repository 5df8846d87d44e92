//! No heap allocation per frame on the steady-state NIC path: netvsc send, netvsp
//! transmit to the backend, loopback, netvsp receive into the guest's buffer, netvsc
//! receive and completion. Every thread's allocations are counted during the window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hv_partition::SimPartition;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use std::time::Duration;
use test_support::{CountingAlloc, allocations_on_all_threads};
use vmbus::{GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::{Guid, class};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

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
    let ((), n) = allocations_on_all_threads(|| round(20_000));
    assert_eq!(n, 0, "{n} allocations while 20,000 frames looped");
    // The counter itself works.
    let (v, n) = allocations_on_all_threads(|| std::hint::black_box(Vec::<u8>::with_capacity(8)));
    drop(v);
    assert_eq!(n, 1);
}
