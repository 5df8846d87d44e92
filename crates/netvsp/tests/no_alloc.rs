//! No heap allocation per frame on the steady-state NIC path: netvsc send, netvsp
//! transmit to the backend, loopback, netvsp receive into the guest's buffer, netvsc
//! receive and completion; and the same with two queues (RSS, send indirection table)
//! and transmit offloads (LSO packets sent GPA-direct and segmented by the host,
//! checksum requests). Every thread's allocations are counted during the window, so
//! the scenarios run one after the other in one test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hv_partition::SimPartition;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use std::time::Duration;
#[path = "support/counting_alloc.rs"]
#[allow(dead_code)] // each test uses one of its two counters
mod counting_alloc;
use counting_alloc::{CountingAlloc, allocations_on_all_threads};
use vmbus::{GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::{Guid, class};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// A guest NIC whose host side loops every frame back to it.
fn nic_on_loopback(config: &NetvscConfig) -> (HostBus<SimPartition>, GuestBus, Netvsc) {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let (endpoint, _link) = Loopback::new(1024);
    let relid = host
        .offer(
            OfferParams::new(class::NETWORK, Guid::ZERO),
            Box::new(Netvsp::new(
                {
                    // The frames here come from no MAC in particular.
                    let mut c = NetvspConfig::default();
                    c.allow_mac_spoofing = true;
                    c
                },
                Box::new(endpoint),
            )),
        )
        .unwrap();
    let bus = GuestBus::new(partition, GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    let nic = Netvsc::open(&bus, &offer, config).unwrap();
    (host, bus, nic)
}

#[test]
fn steady_state_frames_allocate_nothing() {
    let (_host, _bus, mut nic) = nic_on_loopback(&NetvscConfig::default());
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
    offloads_over_two_queues_allocate_nothing();
    // The counter itself works.
    let (v, n) = allocations_on_all_threads(|| std::hint::black_box(Vec::<u8>::with_capacity(8)));
    drop(v);
    assert_eq!(n, 1);
}

/// An IPv4/TCP frame with `payload` bytes on flow `port`.
fn tcp4(port: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![0x00, 0x15, 0x5D, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
    ]);
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[
        0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.extend((0..payload).map(|i| i as u8));
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f
}

fn offloads_over_two_queues_allocate_nothing() {
    let (_host, _bus, mut nic) = nic_on_loopback(&{
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c
    });
    assert_eq!(nic.queues(), 2);
    // Four flows: an LSO packet of 8000 bytes (6 segments) and a checksum request each.
    let lso: Vec<Vec<u8>> = (0..4).map(|p| tcp4(1000 + p, 8000)).collect();
    let small: Vec<Vec<u8>> = (0..4).map(|p| tcp4(2000 + p, 200)).collect();
    let lso_req = netvsc::TxOffload {
        lso_mss: Some(1448),
        ..Default::default()
    };
    let csum_req = netvsc::TxOffload {
        checksum: true,
        ..Default::default()
    };
    let mut buf = [0u8; 1518];
    let mut round = |n: usize| {
        for i in 0..n {
            nic.send_with(&lso[i % 4], &lso_req).unwrap();
            nic.send_with(&small[i % 4], &csum_req).unwrap();
            for _ in 0..7 {
                assert!(
                    nic.recv(&mut buf, Duration::from_secs(5))
                        .unwrap()
                        .is_some()
                );
            }
        }
    };
    round(500);
    let ((), n) = allocations_on_all_threads(|| round(3000));
    assert_eq!(
        n, 0,
        "{n} allocations while 3,000 LSO + checksum rounds looped"
    );
    let rx = nic.stats().rx_queue_frames[..2].to_vec();
    assert!(rx.iter().all(|&n| n > 0), "both queues received: {rx:?}");
}
