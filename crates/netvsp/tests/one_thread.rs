//! A whole VM on the test's thread: a polled `HostBus` and a polled `Netvsp` on the
//! host side, a polled `GuestBus` on `SimPlatform::on_one_thread` and netvsc on the
//! guest side. Waiting for an interrupt in the guest runs the host, as a vCPU's halt
//! lets the hypervisor run. No thread is started by any of them; the NIC comes up as
//! Linux brings it up (NVSP 6.1, two queues) and frames cross both ways, every byte
//! checked. This is how a single-threaded guest (a unikernel, a bare-metal test guest)
//! runs netvsc: it never blocks on anything but its platform's interrupt wait.
//!
//! One test in this binary, so the harness runs no other test beside it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use hv_partition::SimPartition;
use hv_partition::gpadl::RingMapping;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::{NetEndpoint, Netvsp, NetvspConfig, Switch};
use std::sync::Arc;
use std::time::Duration;
use vmbus::{Doorbell, GuestBus, GuestConfig, Guid, HostBus, HostConfig, SimPlatform};
use vmbus_proto::nvsp::NvspVersion;

/// The process's threads.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Frame `i` of a run: broadcast from `src`, `len` bytes, a pattern that names `i`.
fn frame(i: usize, len: usize, src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
    for (j, b) in f[14..].iter_mut().enumerate() {
        *b = (i * 31 + j) as u8;
    }
    f
}

#[test]
fn a_vm_runs_on_one_thread_host_bus_nic_guest_bus_and_netvsc() {
    let before = thread_count();
    let mac = [2, 0, 0, 0, 0, 0x31];
    let peer_mac = [2, 0, 0, 0, 0, 0x32];
    let switch = Switch::new(1024);
    let (nic_port, _) = switch.port_with_mac(mac);
    let (mut peer, _) = switch.port_with_mac(peer_mac);

    // The host: polled, woken through a doorbell nobody waits on (this thread runs
    // the host whenever the guest waits).
    let partition = SimPartition::new(64 << 20, 2).unwrap();
    let wake = Arc::new(Doorbell::new());
    let host = Arc::new(HostBus::polled(
        partition.clone(),
        HostConfig::default(),
        wake.clone(),
    ));
    let (nic, poller) = Netvsp::polled(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c.max_queues = 2;
            c
        },
        Box::new(nic_port),
        wake,
    );
    let stats = nic.stats();
    host.offer(Netvsp::offer_params(Guid::ZERO), Box::new(nic))
        .unwrap();
    let run_host = {
        let host = host.clone();
        move || host.poll().merge(poller.poll())
    };

    // The guest, on the same thread.
    let platform = SimPlatform::on_one_thread(partition, RingMapping::Paged, Box::new(run_host));
    let bus = GuestBus::polled(Arc::new(platform), GuestConfig::default()).unwrap();
    assert!(bus.is_polled());
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = offers
        .iter()
        .find(|o| {
            let t = o.interface_type;
            t == vmbus::class::NETWORK
        })
        .copied()
        .unwrap();
    let mut nic = Netvsc::open(&bus, &offer, &{
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c.timeout = Duration::from_secs(30);
        c
    })
    .unwrap();
    assert_eq!(nic.nvsp_version(), NvspVersion::V6_1);
    assert_eq!(nic.queues(), 2, "the subchannel opened on the polled bus");
    assert_eq!(nic.mac(), mac);
    assert_eq!(
        thread_count(),
        before,
        "a polled host, a polled guest bus and netvsc start no thread"
    );

    // Guest to wire: sizes from the smallest frame to a full one.
    let sizes = [60, 64, 100, 512, 1000, 1514];
    let mut sent = Vec::new();
    for i in 0..300 {
        let f = frame(i, sizes[i % sizes.len()], mac);
        nic.send(&f).unwrap();
        sent.push(f);
        // The VMM's turn: the host runs while the guest waits (here, for nothing).
        nic.poll(Duration::ZERO).unwrap();
    }
    let mut buf = vec![0u8; 2048];
    let mut got = 0;
    for round in 0..10_000 {
        while let Some(n) = peer.receive(&mut buf) {
            assert_eq!(&buf[..n], &sent[got][..], "frame {got} changed on the way");
            got += 1;
        }
        if got == sent.len() {
            break;
        }
        assert!(
            round < 9_999,
            "{got} of {} frames reached the wire",
            sent.len()
        );
        nic.poll(Duration::from_millis(1)).unwrap();
    }
    assert_eq!(stats.snapshot().tx_frames, sent.len() as u64);

    // Wire to guest.
    let mut expect = Vec::new();
    for i in 0..300 {
        let f = frame(1000 + i, sizes[i % sizes.len()], peer_mac);
        assert!(peer.transmit(&f));
        expect.push(f);
    }
    for (i, f) in expect.iter().enumerate() {
        let n = nic
            .recv(&mut buf, Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|| panic!("frame {i} of the wire never reached the guest"));
        assert_eq!(&buf[..n], &f[..], "frame {i} changed on the way in");
    }
    assert!(nic.recv(&mut buf, Duration::ZERO).unwrap().is_none());

    let guest = bus.stats();
    assert!(guest.messages > 0 && guest.rejected == 0, "{guest:?}");
    nic.close(&bus).unwrap();
    drop(bus);
    assert_eq!(thread_count(), before);
}
