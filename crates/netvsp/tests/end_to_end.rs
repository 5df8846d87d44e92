//! The synthetic NIC end to end over the simulated partition: netvsc guests, netvsp
//! hosts, loopback and switch backends.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use hv_partition::SimPartition;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vmbus::{GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::{Guid, class};
use vmbus_proto::nvsp::NvspVersion;

/// One guest with one NIC on `endpoint`.
struct Vm {
    _host: HostBus<SimPartition>,
    bus: GuestBus,
    stats: Arc<NicStats>,
}

fn vm(mac: [u8; 6], endpoint: Box<dyn NetEndpoint>) -> (Vm, vmbus_proto::channel::OfferChannel) {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let nic = Netvsp::new(
        NetvspConfig {
            mac,
            ..Default::default()
        },
        endpoint,
    );
    let stats = nic.stats();
    let relid = host
        .offer(
            OfferParams::new(
                class::NETWORK,
                Guid {
                    data1: u32::from(mac[5]),
                    ..Guid::ZERO
                },
            ),
            Box::new(nic),
        )
        .unwrap();
    let bus = GuestBus::new(partition, GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    (
        Vm {
            _host: host,
            bus,
            stats,
        },
        offer,
    )
}

fn frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes()); // local experimental ethertype
    f[14..18].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i) as u8;
    }
    f
}

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0A];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0B];

#[test]
fn bring_up_like_linux_and_loopback() {
    let (endpoint, _link) = Loopback::new(256);
    let (vm, offer) = vm(A, Box::new(endpoint));
    let mut nic = Netvsc::open(&vm.bus, &offer, &NetvscConfig::default()).unwrap();
    assert_eq!(nic.nvsp_version(), NvspVersion::V6_1, "newest NVSP first");
    assert_eq!(
        vm.stats.nvsp_version.load(Ordering::Relaxed),
        u64::from(NvspVersion::V6_1.0)
    );
    assert_eq!(nic.mac(), A);
    assert_eq!(nic.mtu(), 1500);
    assert!(nic.link_up());
    let mut buf = [0u8; 1518];
    for seq in 0..2000u32 {
        let len = 60 + (seq as usize * 13) % (1514 - 60);
        let f = frame(A, A, seq, len);
        nic.send(&f).unwrap();
        let n = nic
            .recv(&mut buf, Duration::from_secs(5))
            .unwrap()
            .expect("looped frame");
        assert_eq!(&buf[..n], &f[..], "frame {seq}");
    }
    assert_eq!(vm.stats.tx_frames.load(Ordering::Relaxed), 2000);
    assert_eq!(vm.stats.rx_frames.load(Ordering::Relaxed), 2000);
    assert_eq!(vm.stats.bad_packets.load(Ordering::Relaxed), 0);
    nic.close(&vm.bus).unwrap();
}

#[test]
fn older_nvsp_versions() {
    for v in [NvspVersion::V1, NvspVersion::V4, NvspVersion::V5] {
        let (endpoint, _link) = Loopback::new(16);
        let (vm, offer) = vm(A, Box::new(endpoint));
        let config = NetvscConfig {
            versions: vec![v],
            ..Default::default()
        };
        let mut nic = Netvsc::open(&vm.bus, &offer, &config).unwrap();
        assert_eq!(nic.nvsp_version(), v);
        nic.send(&frame(A, A, 1, 100)).unwrap();
        let mut buf = [0u8; 1518];
        assert_eq!(
            nic.recv(&mut buf, Duration::from_secs(5)).unwrap(),
            Some(100)
        );
    }
}

#[test]
fn two_guests_on_a_switch() {
    let switch = Switch::new(256);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    let (vm_a, offer_a) = vm(A, Box::new(pa));
    let (vm_b, offer_b) = vm(B, Box::new(pb));
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &NetvscConfig::default()).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &NetvscConfig::default()).unwrap();
    let mut buf = [0u8; 1518];
    for seq in 0..500u32 {
        let f = frame(B, A, seq, 1514);
        a.send(&f).unwrap();
        let n = b
            .recv(&mut buf, Duration::from_secs(5))
            .unwrap()
            .expect("frame to b");
        assert_eq!(&buf[..n], &f[..]);
        let g = frame(A, B, seq, 64);
        b.send(&g).unwrap();
        let n = a
            .recv(&mut buf, Duration::from_secs(5))
            .unwrap()
            .expect("frame to a");
        assert_eq!(&buf[..n], &g[..]);
    }
    // Broadcast reaches the other guest.
    a.send(&frame([0xFF; 6], A, 9999, 60)).unwrap();
    assert!(b.recv(&mut buf, Duration::from_secs(5)).unwrap().is_some());
}

#[test]
fn link_down_and_up() {
    let switch = Switch::new(64);
    let (pa, link_a) = switch.port();
    let (vm_a, offer_a) = vm(A, Box::new(pa));
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &NetvscConfig::default()).unwrap();
    assert!(a.link_up());
    link_a.set(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.link_up() {
        a.poll(Duration::from_millis(20)).unwrap();
        assert!(Instant::now() < deadline, "no disconnect indication");
    }
    link_a.set(true);
    while !a.link_up() {
        a.poll(Duration::from_millis(20)).unwrap();
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "no connect indication"
        );
    }
    assert_eq!(vm_a.stats.link_indications.load(Ordering::Relaxed), 2);
    assert!(a.stats().link_changes.load(Ordering::Relaxed) >= 2);
}

#[test]
fn receive_buffer_exhaustion_drops_and_recovers() {
    let switch = Switch::new(1024);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    let (vm_a, offer_a) = vm(A, Box::new(pa));
    let (vm_b, offer_b) = vm(B, Box::new(pb));
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &NetvscConfig::default()).unwrap();
    // B's receive buffer holds 16 sub-allocations of 1728 bytes.
    let small = NetvscConfig {
        recv_buffer_bytes: 16 * 1728,
        rx_queue: 4096,
        ..Default::default()
    };
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &small).unwrap();
    // Flood B while it does not read.
    for seq in 0..600u32 {
        a.send(&frame(B, A, seq, 1000)).unwrap();
        a.poll(Duration::ZERO).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while vm_b.stats.rx_no_buffer.load(Ordering::Relaxed) == 0 {
        a.poll(Duration::from_millis(5)).unwrap();
        assert!(Instant::now() < deadline, "no drop was counted");
    }
    // B now drains: every frame it gets is intact and in order.
    let mut buf = [0u8; 1518];
    let mut last = None;
    let mut got = 0;
    while let Some(n) = b.recv(&mut buf, Duration::from_millis(300)).unwrap() {
        let seq = u32::from_le_bytes(buf[14..18].try_into().unwrap());
        assert_eq!(&buf[..n], &frame(B, A, seq, 1000)[..], "frame {seq} intact");
        assert!(last.is_none_or(|l| seq > l), "order");
        last = Some(seq);
        got += 1;
    }
    assert!((16..600).contains(&got), "got {got}");
    let dropped = vm_b.stats.rx_no_buffer.load(Ordering::Relaxed);
    // Reception recovers: new frames arrive once sub-allocations are completed.
    for seq in 1000..1100u32 {
        a.send(&frame(B, A, seq, 500)).unwrap();
        let n = b
            .recv(&mut buf, Duration::from_secs(5))
            .unwrap()
            .expect("after recovery");
        assert_eq!(&buf[..n], &frame(B, A, seq, 500)[..]);
    }
    println!("received {got} of 600 during the flood, {dropped} dropped for lack of buffer");
}
