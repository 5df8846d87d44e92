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
    stats: NicCounters,
}

fn vm(mac: [u8; 6], endpoint: Box<dyn NetEndpoint>) -> (Vm, vmbus_proto::channel::OfferChannel) {
    vm_with(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c
        },
        endpoint,
    )
}

fn vm_with(
    config: NetvspConfig,
    endpoint: Box<dyn NetEndpoint>,
) -> (Vm, vmbus_proto::channel::OfferChannel) {
    let mac = config.mac;
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let nic = Netvsp::new(config, endpoint);
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

/// Sends `f` from `from` and checks `to` receives exactly it within 5 s.
fn deliver(from: &mut Netvsc, to: &mut Netvsc, f: &[u8]) {
    let mut buf = vec![0u8; MAX_JUMBO_FRAME];
    from.send(f).unwrap();
    let n = to
        .recv(&mut buf, Duration::from_secs(5))
        .unwrap()
        .expect("frame delivered");
    // (Not assert_eq: a jumbo frame would fill the log.)
    assert!(
        &buf[..n] == f,
        "got {n} bytes {:02x?}.., sent {} bytes {:02x?}..",
        &buf[..n.min(20)],
        f.len(),
        &f[..f.len().min(20)]
    );
}

type Guest = (Vm, vmbus_proto::channel::OfferChannel);

/// A host counter once it reached `want` (or after 5 s): the host counts a guest
/// message's frames when it is done with the message, so another guest may have
/// received them a moment before they are counted.
fn settled(counter: impl Fn() -> u64, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = counter();
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Guests A and B on one switch whose ports queue `depth` frames.
fn pair_on_a_switch(depth: usize) -> (Guest, Guest) {
    let switch = Switch::new(depth);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    (vm(A, Box::new(pa)), vm(B, Box::new(pb)))
}

#[test]
fn bring_up_like_linux_and_loopback() {
    let (endpoint, _link) = Loopback::new(256);
    let (vm, offer) = vm(A, Box::new(endpoint));
    let mut nic = Netvsc::open(&vm.bus, &offer, &NetvscConfig::default()).unwrap();
    assert_eq!(nic.nvsp_version(), NvspVersion::V6_1, "newest NVSP first");
    assert_eq!(
        vm.stats.snapshot().nvsp_version,
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
    assert_eq!(vm.stats.snapshot().tx_frames, 2000);
    assert_eq!(vm.stats.snapshot().rx_frames, 2000);
    assert_eq!(vm.stats.snapshot().bad_packets, 0);
    nic.close(&vm.bus).unwrap();
}

#[test]
fn deferred_sends_share_sections_and_arrive_in_order() {
    for max_packets_per_message in [16, 1] {
        let switch = Switch::new(4096);
        let (pa, _) = switch.port();
        let (pb, _) = switch.port();
        let config = |mac| {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c.max_packets_per_message = max_packets_per_message;
            c
        };
        let (a, oa) = vm_with(config(A), Box::new(pa));
        let (b, ob) = vm_with(config(B), Box::new(pb));
        let mut na = Netvsc::open(&a.bus, &oa, &NetvscConfig::default()).unwrap();
        let mut nb = Netvsc::open(&b.bus, &ob, &NetvscConfig::default()).unwrap();
        let mut buf = [0u8; 1518];

        // Deferred means not sent: nothing reaches B until A flushes (here: polls).
        let first = frame(B, A, 0, 100);
        na.send_deferred(&first).unwrap();
        if max_packets_per_message > 1 {
            assert_eq!(nb.recv(&mut buf, Duration::from_millis(50)).unwrap(), None);
            na.poll(Duration::ZERO).unwrap();
        }
        let n = nb.recv(&mut buf, Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(&buf[..n], &first[..]);

        // 600 frames of mixed sizes, received in order and intact.
        let frames: Vec<Vec<u8>> = (1..=600u32)
            .map(|seq| frame(B, A, seq, 60 + (seq as usize * 211) % 1455))
            .collect();
        for f in &frames {
            na.send_deferred(f).unwrap();
        }
        na.flush().unwrap();
        for (i, f) in frames.iter().enumerate() {
            let n = nb
                .recv(&mut buf, Duration::from_secs(5))
                .unwrap()
                .unwrap_or_else(|| panic!("frame {i} lost"));
            assert_eq!(&buf[..n], &f[..], "frame {i}");
        }
        let s = na.stats();
        let (frames_sent, messages) = (s.tx_frames, s.tx_messages);
        assert_eq!(frames_sent, 601);
        if max_packets_per_message == 1 {
            assert_eq!(messages, 601, "a host without batching gets one frame each");
        } else {
            // Mixed sizes average ~790 bytes: about 7 to a 6 KiB section.
            assert!(
                (601 / 16..=601 / 4).contains(&messages),
                "{messages} messages for 601 frames"
            );
        }
        assert_eq!(settled(|| a.stats.snapshot().tx_frames, 601), 601);
        assert_eq!(a.stats.snapshot().bad_packets, 0);
        assert_eq!(b.stats.snapshot().rx_no_buffer, 0);
        na.close(&a.bus).unwrap();
        nb.close(&b.bus).unwrap();
    }
}

#[test]
fn jumbo_frames_end_to_end_and_per_guest_mtu() {
    const C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0C];
    let switch = Switch::with_max_frame(256, frame_size(MAX_MTU));
    let jumbo_host = |mac| {
        let mut c = NetvspConfig::default();
        c.mac = mac;
        c.mtu = 9000;
        c
    };
    let (a, oa) = vm_with(jumbo_host(A), Box::new(switch.port().0));
    let (b, ob) = vm_with(jumbo_host(B), Box::new(switch.port().0));
    let (c, oc) = vm_with(jumbo_host(C), Box::new(switch.port().0));
    let jumbo = {
        let mut c = NetvscConfig::default();
        c.mtu = 9000;
        c
    };
    let mut na = Netvsc::open(&a.bus, &oa, &jumbo).unwrap();
    let mut nb = Netvsc::open(&b.bus, &ob, &jumbo).unwrap();
    // C runs at the standard MTU on the jumbo NIC.
    let mut nc = Netvsc::open(&c.bus, &oc, &NetvscConfig::default()).unwrap();
    assert_eq!((na.mtu(), na.max_frame()), (9000, 9018));
    // Sub-allocations: Linux's 1728 at 1500, a whole jumbo frame and its header at 9000.
    assert_eq!(netvsp::device::recv_section_size(1500), 1728);
    assert_eq!(netvsp::device::recv_section_size(9000), 9280);
    assert_eq!(nc.mtu(), 1500);
    // The switch learns A (its first frame is flooded to C too), B and C.
    deliver(&mut na, &mut nb, &frame(B, A, 0, 60));
    deliver(&mut nb, &mut na, &frame(A, B, 1, 60));
    deliver(&mut nc, &mut na, &frame(A, C, 2, 60));
    let mut buf = vec![0u8; 9018];
    assert!(nc.recv(&mut buf, Duration::from_secs(5)).unwrap().is_some());

    // Jumbo frames (untagged maximum, tagged maximum) and small ones, one at a time
    // and in a deferred burst, arrive intact.
    for (seq, len) in [9014usize, 9018, 60, 4000, 8999].into_iter().enumerate() {
        deliver(&mut na, &mut nb, &frame(B, A, seq as u32, len));
    }
    let burst: Vec<Vec<u8>> = (0..40u32)
        .map(|i| frame(B, A, 100 + i, [9014, 700, 5000, 1514][i as usize % 4]))
        .collect();
    for f in &burst {
        na.send_deferred(f).unwrap();
    }
    na.flush().unwrap();
    for (i, f) in burst.iter().enumerate() {
        let n = nb
            .recv(&mut buf, Duration::from_secs(5))
            .unwrap()
            .unwrap_or_else(|| panic!("burst frame {i} lost"));
        assert!(buf[..n] == f[..], "burst frame {i}");
    }

    // A jumbo frame for C (MTU 1500): its host drops and counts it; small ones pass.
    na.send(&frame(C, A, 200, 9014)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.stats.snapshot().oversize_frames == 0 {
        assert!(Instant::now() < deadline, "oversize frame not counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    deliver(&mut na, &mut nc, &frame(C, A, 201, 1514));
    assert_eq!(c.stats.snapshot().oversize_frames, 1);
    // C itself cannot send above its MTU.
    assert!(nc.send(&frame(A, C, 202, 2000)).is_err());
    assert_eq!(a.stats.snapshot().bad_packets, 0);
    assert_eq!(b.stats.snapshot().rx_no_buffer, 0);

    // A NIC configured for 9000 on a backend that carries 1518-byte frames offers
    // only 1500.
    let (endpoint, _link) = Loopback::new(16);
    let (d, od) = vm_with(jumbo_host(A), Box::new(endpoint));
    let mut nd = Netvsc::open(&d.bus, &od, &jumbo).unwrap();
    assert_eq!(nd.mtu(), 1500);
    assert!(nd.send(&frame(A, A, 300, 1600)).is_err());
    nd.close(&d.bus).unwrap();
    for (n, vm) in [(na, &a), (nb, &b), (nc, &c)] {
        n.close(&vm.bus).unwrap();
    }
}

#[test]
fn older_nvsp_versions() {
    for v in [NvspVersion::V1, NvspVersion::V4, NvspVersion::V5] {
        let (endpoint, _link) = Loopback::new(16);
        let (vm, offer) = vm(A, Box::new(endpoint));
        let config = {
            let mut c = NetvscConfig::default();
            c.versions = vec![v];
            c
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
    let ((vm_a, offer_a), (vm_b, offer_b)) = pair_on_a_switch(256);
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &NetvscConfig::default()).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &NetvscConfig::default()).unwrap();
    let mut buf = [0u8; 1518];
    for seq in 0..500u32 {
        deliver(&mut a, &mut b, &frame(B, A, seq, 1514));
        deliver(&mut b, &mut a, &frame(A, B, seq, 64));
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
    assert_eq!(vm_a.stats.snapshot().link_indications, 2);
    assert!(a.stats().link_changes >= 2);
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
    let small = {
        let mut c = NetvscConfig::default();
        c.recv_buffer_bytes = 16 * 1728;
        c.rx_queue = 4096;
        c
    };
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &small).unwrap();
    // Flood B while it does not read.
    for seq in 0..600u32 {
        a.send(&frame(B, A, seq, 1000)).unwrap();
        a.poll(Duration::ZERO).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while vm_b.stats.snapshot().rx_no_buffer == 0 {
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
    let dropped = vm_b.stats.snapshot().rx_no_buffer;
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

/// An IPv4/TCP frame from A to B with `payload` bytes, garbage in both checksums and,
/// as Linux sends LSO packets, IPv4 total length 0.
fn tcp4(payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&B);
    f.extend_from_slice(&A);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0, 0, 0, 0x10, 0x00, 0x40, 0, 64, 6, 0xde, 0xad]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 0, 0x10, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0xbe, 0xef, 0, 0]);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    f
}

fn recv_raw(port: &mut SwitchPort, buf: &mut [u8]) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(n) = port.receive(buf) {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn checksums_the_host_computed_reach_the_other_guest_as_verified() {
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
    let ((va, oa), (vb, ob)) = pair_on_a_switch(256);
    let mut a = Netvsc::open(&va.bus, &oa, &NetvscConfig::default()).unwrap();
    let mut b = Netvsc::open(&vb.bus, &ob, &NetvscConfig::default()).unwrap();
    let mut buf = vec![0u8; 1518];
    let got = |b: &mut Netvsc| {
        b.recv_with_info(Duration::from_secs(5), |f, info| (f.to_vec(), info))
            .unwrap()
            .expect("frame delivered")
    };

    // TCP with checksum offload: A's host computes it, B's host vouches for it.
    let csum = netvsc::TxOffload {
        checksum: true,
        ..Default::default()
    };
    let mut f = tcp4(600);
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    a.send_with(&f, &csum).unwrap();
    let (f, info) = got(&mut b);
    assert!(
        info.l4_checksum_valid && !info.ip_checksum_valid,
        "{info:?}"
    );
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(
        &IpAddress::from(ip.src_addr()),
        &IpAddress::from(ip.dst_addr())
    ));

    // LSO: every segment's checksums were computed by the host. (The IPv4 header
    // checksum is not reported: netvsc, like Linux, leaves that offload off.)
    let lso = netvsc::TxOffload {
        lso_mss: Some(1448),
        ..Default::default()
    };
    a.send_with(&tcp4(4000), &lso).unwrap();
    for i in 0..3 {
        let (_, info) = got(&mut b);
        assert!(
            info.l4_checksum_valid && !info.ip_checksum_valid,
            "segment {i}: {info:?}"
        );
    }

    // A frame the guest checksummed itself: nothing vouched for.
    a.send(&tcp4(100)).unwrap();
    let (_, info) = got(&mut b);
    assert_eq!(info, netvsc::RxInfo::default());
    let _ = b.recv(&mut buf, Duration::ZERO).unwrap();

    assert_eq!(b.stats().rx_checksum_valid, 4);
    assert_eq!(vb.stats.snapshot().rx_checksum_valid, 4);
    a.close(&va.bus).unwrap();
    b.close(&vb.bus).unwrap();
}

#[test]
fn offloads_negotiated_like_linux_and_done_by_the_host() {
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
    let switch = Switch::new(256);
    let (pa, _) = switch.port();
    let (mut wire, _) = switch.port();
    let (vm_a, offer_a) = vm(A, Box::new(pa));
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &NetvscConfig::default()).unwrap();
    let o = a.offloads();
    assert!(o.tcp4 && o.udp4 && o.tcp6 && o.udp6, "{o:?}");
    assert_eq!(
        (o.lso4_max, o.lso6_max),
        (offload::LSO_MAX_SIZE, offload::LSO_MAX_SIZE)
    );

    // LSO: 20000 bytes of payload, larger than a send section, so it travels
    // GPA-direct; the host cuts it into 14 checked segments.
    let big = tcp4(20_000);
    let lso = netvsc::TxOffload {
        lso_mss: Some(1448),
        ..Default::default()
    };
    a.send_with(&big, &lso).unwrap();
    let mut buf = [0u8; 1518];
    let mut payload = Vec::new();
    for i in 0..14 {
        let n = recv_raw(&mut wire, &mut buf).unwrap_or_else(|| panic!("segment {i}"));
        let ip = Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        assert!(ip.verify_checksum(), "segment {i}");
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(
            &IpAddress::from(ip.src_addr()),
            &IpAddress::from(ip.dst_addr())
        ));
        assert_eq!(tcp.seq_number().0 as usize, 0x1000 + i * 1448);
        assert_eq!(tcp.psh(), i == 13);
        payload.extend_from_slice(tcp.payload());
    }
    assert_eq!(payload, big[54..]);
    assert!(wire.receive(&mut buf).is_none(), "no 15th segment");

    // Checksum only, with a VLAN tag inserted by the host.
    let small = tcp4(100);
    let mut fixed = small.clone();
    fixed[16..18].copy_from_slice(&140u16.to_be_bytes()); // a valid total length
    let csum = netvsc::TxOffload {
        checksum: true,
        vlan_tci: Some(7),
        ..Default::default()
    };
    // The IPv4 header checksum is the sender's job with plain checksum offload.
    fixed[24..26].copy_from_slice(&[0, 0]);
    let sum = fixed[14..34]
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    fixed[24..26].copy_from_slice(&sum.to_be_bytes());
    a.send_with(&fixed, &csum).unwrap();
    let n = recv_raw(&mut wire, &mut buf).unwrap();
    assert_eq!(n, fixed.len() + 4);
    assert_eq!(&buf[12..16], &[0x81, 0x00, 0x00, 0x07]);
    let ip = Ipv4Packet::new_checked(&buf[18..n]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(
        &IpAddress::from(ip.src_addr()),
        &IpAddress::from(ip.dst_addr())
    ));

    // What the driver refuses before it reaches the host.
    let udp_lso = {
        let mut f = tcp4(10);
        f[23] = 17;
        f
    };
    assert!(a.send_with(&udp_lso, &lso).is_err());
    assert!(a.send(&big).is_err(), "no LSO: too large");

    let s = &vm_a.stats;
    // (Once the last message's frames are counted, so is everything before them.)
    assert_eq!(settled(|| s.snapshot().tx_frames, 15), 15);
    assert_eq!(s.snapshot().tx_offloaded, 2);
    assert_eq!(s.snapshot().tx_lso_segments, 14);
    assert_eq!(s.snapshot().tx_offload_rejected, 0);
    assert_eq!(s.snapshot().bad_packets, 0);
}

#[test]
fn traffic_spreads_over_several_queues() {
    let ((vm_a, offer_a), (vm_b, offer_b)) = pair_on_a_switch(1024);
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 4;
        c
    };
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &config).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &config).unwrap();
    assert_eq!((a.queues(), b.queues()), (4, 4));
    assert_eq!(vm_b.stats.snapshot().subchannels, 3);

    // 256 TCP flows from A to B (source port varies), one frame each, then back.
    for port in 0..256u16 {
        let mut f = tcp4(64);
        f[34..36].copy_from_slice(&(10_000 + port).to_be_bytes());
        deliver(&mut a, &mut b, &f);
    }
    let used = |counters: &[u64]| counters.iter().filter(|&&c| c > 0).count();
    let per_queue = |c: &[u64]| -> Vec<u64> { c[..4].to_vec() };
    // Receive: the host hashed each flow with B's key and table (4 queues in turn).
    let host_rx = per_queue(&vm_b.stats.snapshot().rx_queue_frames);
    let guest_rx = per_queue(&b.stats().rx_queue_frames);
    assert_eq!(
        host_rx, guest_rx,
        "each frame arrives on the queue the host chose"
    );
    assert_eq!(host_rx.iter().sum::<u64>(), 256);
    assert_eq!(
        used(&vm_b.stats.snapshot().rx_queue_frames),
        4,
        "{host_rx:?}"
    );
    assert!(
        host_rx.iter().all(|&n| n >= 32),
        "RSS spreads 256 flows: {host_rx:?}"
    );
    // Transmit: A followed the host's send indirection table.
    let guest_tx = per_queue(&a.stats().tx_queue_frames);
    let host_tx = per_queue(&vm_a.stats.snapshot().tx_queue_packets);
    assert_eq!(guest_tx, host_tx);
    assert_eq!(used(&a.stats().tx_queue_frames), 4, "{guest_tx:?}");

    // Close and reopen: the subchannels are withdrawn and offered again.
    a.close(&vm_a.bus).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let a = loop {
        match Netvsc::open(&vm_a.bus, &offer_a, &config) {
            Ok(a) => break a,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    assert_eq!(a.queues(), 4);
    assert_eq!(vm_b.stats.snapshot().bad_packets, 0);
}

#[test]
fn queues_taken_to_threads_of_their_own() {
    let ((vm_a, offer_a), (vm_b, offer_b)) = pair_on_a_switch(2048);
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c
    };
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &config).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &config).unwrap();
    assert!(a.take_queue(0).is_none() && a.take_queue(2).is_none());
    let mut a1 = a.take_queue(1).expect("subchannel 1");
    let mut b1 = b.take_queue(1).expect("subchannel 1");
    assert!(b.take_queue(1).is_none(), "taken once");
    assert_eq!((a1.index(), b.queues()), (1, 2));
    let flow = |port: u16, seq: u8| {
        let mut f = tcp4(100);
        f[34..36].copy_from_slice(&(10_000 + port).to_be_bytes());
        f[60] = seq;
        f
    };
    // B's subchannel receives on its own thread what RSS puts on it, in order per
    // flow; A sends 128 flows from its NIC and 128 more from its own queue 1 thread.
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1518];
        while let Some(n) = b1.recv(&mut buf, Duration::from_secs(2)).unwrap() {
            got.push(buf[..n].to_vec());
        }
        (b1, got)
    });
    let sender = std::thread::spawn(move || {
        for port in 128..256u16 {
            a1.send_deferred(&flow(port, 1)).unwrap();
            a1.send_deferred(&flow(port, 2)).unwrap();
        }
        a1.flush().unwrap();
        a1
    });
    for port in 0..128u16 {
        a.send(&flow(port, 1)).unwrap();
        a.send(&flow(port, 2)).unwrap();
    }
    let a1 = sender.join().unwrap();
    let mut on_b0 = Vec::new();
    let mut buf = [0u8; 1518];
    while let Some(n) = b.recv(&mut buf, Duration::from_secs(2)).unwrap() {
        on_b0.push(buf[..n].to_vec());
    }
    let (b1, on_b1) = receiver.join().unwrap();
    // Every frame arrived once, on the queue the host chose, each flow's two frames in
    // order on one queue.
    let host_rx: Vec<u64> = vm_b.stats.snapshot().rx_queue_frames[..2].to_vec();
    assert_eq!(host_rx, vec![on_b0.len() as u64, on_b1.len() as u64]);
    assert!(on_b0.len() >= 64 && on_b1.len() >= 64, "{host_rx:?}");
    let mut all: Vec<Vec<u8>> = on_b0.iter().chain(&on_b1).cloned().collect();
    assert_eq!(all.len(), 512);
    for got in [&on_b0, &on_b1] {
        for port in 0..256u16 {
            let seqs: Vec<u8> = got
                .iter()
                .filter(|f| f[34..36] == (10_000 + port).to_be_bytes())
                .map(|f| f[60])
                .collect();
            assert!(seqs.is_empty() || seqs == [1, 2], "flow {port}: {seqs:?}");
        }
    }
    all.sort();
    let mut want: Vec<Vec<u8>> = (0..256u16).flat_map(|p| [flow(p, 1), flow(p, 2)]).collect();
    want.sort();
    assert_eq!(all, want);
    // A's queue 1 carried what its thread sent (and nothing of the NIC's: the send
    // table's queue-1 flows went on the primary once the queue was taken).
    assert_eq!(a1.stats().tx_queue_frames[1], 256);
    assert!(vm_a.stats.snapshot().tx_queue_packets[1] > 0);
    // The host's queue-1 thread sent them through its own transmit queue of the switch.
    assert_eq!(settled(|| vm_a.stats.snapshot().tx_own_queue, 256), 256);
    assert_eq!(a.stats().tx_queue_frames[0], 256);
    assert_eq!(vm_a.stats.snapshot().bad_packets, 0);
    assert_eq!(vm_b.stats.snapshot().bad_packets, 0);
    assert_eq!(b.stats().bad_host_messages, 0);
    // Closing the NIC closes the taken queues' channels too: their calls then fail.
    drop(b1);
    a.close(&vm_a.bus).unwrap();
    let mut a1 = a1;
    let deadline = Instant::now() + Duration::from_secs(5);
    while a1.send(&flow(1, 1)).is_ok() {
        assert!(Instant::now() < deadline, "a closed queue kept sending");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends NVSP INITs (each owed a completion) on `sender` until the ring stays full
/// for 300 ms or `limit` went; returns how many went.
fn flood_inits(sender: &mut vmbus::Sender, limit: u64) -> u64 {
    use vmbus_proto::nvsp::NvspMessage;
    use vmbus_proto::packet::FLAG_COMPLETION_REQUESTED;
    use vmbus_ring::OutgoingPacket;
    let mut msg = [0u8; 40];
    let n = NvspMessage::init(NvspVersion::V6_1).emit(&mut msg).unwrap();
    let mut sent = 0;
    let mut full_since: Option<Instant> = None;
    while sent < limit {
        match sender.try_send(
            &OutgoingPacket::inband(sent, FLAG_COMPLETION_REQUESTED),
            &[&msg[..n]],
        ) {
            Ok(()) => {
                sent += 1;
                full_since = None;
            }
            Err(vmbus::ChannelError::Full { .. }) => {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    sent
}

#[test]
fn a_guest_that_never_reads_gets_backpressure_not_host_memory() {
    let (endpoint, _link) = Loopback::new(16);
    let (vm, offer) = vm(A, Box::new(endpoint));
    // A raw channel (8 data pages per ring): INITs go in, the completions owed pile
    // up in the host's ring and then in its queue, never read by this guest.
    let vmbus::Channel {
        mut sender,
        mut receiver,
        ..
    } = vm.bus.open(&offer, 8, 0).unwrap();
    let sent = flood_inits(&mut sender, 100_000);
    // The host stops reading once it owes 1,024 completions beyond its full ring:
    // about two rings' worth of packets and that backlog, not 100,000.
    assert!(
        sent < 5_000,
        "{sent} packets accepted from a guest that never reads"
    );
    // Reading the host's ring lets it go on.
    let mut completions = 0u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while completions < sent && Instant::now() < deadline {
        match receiver.try_recv(|_| ()) {
            Ok(()) => completions += 1,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert_eq!(completions, sent, "every packet read was completed");
    let more = flood_inits(&mut sender, 100);
    assert_eq!(more, 100, "the host reads again once the guest drains");
    assert_eq!(vm.stats.snapshot().bad_packets, 0);
}

#[test]
fn closing_a_nic_while_every_queue_is_busy() {
    // A's four queues (three on threads of their own) send to B as fast as they can
    // while B's four queues receive; A closes in the middle of it. Nothing may hang or
    // panic, the host's backend must come back for a reopen, and nothing the guests
    // sent before the close may count as malformed.
    let ((vm_a, offer_a), (vm_b, offer_b)) = pair_on_a_switch(256);
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 4;
        c
    };
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &config).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &config).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for q in 1..4 {
        let mut tx = a.take_queue(q).unwrap();
        let mut rx = b.take_queue(q).unwrap();
        let stop_tx = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop_tx.load(Ordering::Relaxed) {
                let mut f = tcp4(200);
                f[34..36].copy_from_slice(&(q as u16 * 1000 + (sent % 50) as u16).to_be_bytes());
                // Fails once A is closed: then this queue just stops.
                if tx.send_deferred(&f).is_err() || tx.flush().is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        }));
        let stop_rx = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut got = 0u64;
            let mut buf = [0u8; 1518];
            while !stop_rx.load(Ordering::Relaxed) {
                if let Ok(Some(_)) = rx.recv(&mut buf, Duration::from_millis(10)) {
                    got += 1;
                }
            }
            got
        }));
    }
    let mut sent0 = 0u64;
    let start = Instant::now();
    let mut buf = [0u8; 1518];
    while start.elapsed() < Duration::from_millis(700) {
        a.send_deferred(&tcp4(100)).unwrap();
        sent0 += 1;
        while b.recv(&mut buf, Duration::ZERO).unwrap().is_some() {}
    }
    assert_eq!(vm_a.stats.snapshot().bad_packets, 0);
    // (From here A's queue threads may still send naming the revoked send buffer:
    // those the host refuses and counts.)
    a.close(&vm_a.bus).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        sent0 > 0 && counts.iter().sum::<u64>() > 0,
        "{sent0} {counts:?}"
    );
    assert!(
        vm_b.stats.snapshot().rx_queue_frames[1..4]
            .iter()
            .all(|&c| c > 0),
        "every queue received"
    );
    b.close(&vm_b.bus).unwrap();
    // The backend came back: A opens again with its four queues.
    let deadline = Instant::now() + Duration::from_secs(5);
    let a = loop {
        match Netvsc::open(&vm_a.bus, &offer_a, &config) {
            Ok(a) => break a,
            Err(e) => {
                assert!(Instant::now() < deadline, "reopen: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(a.queues(), 4);
    assert_eq!(vm_b.stats.snapshot().bad_packets, 0);
}

#[test]
fn a_multi_queue_switch_feeds_each_queue_thread_directly() {
    // Ports with 4 receive queues: each of B's subchannel threads pulls its own, the
    // switch steering by B's RSS, so no frame passes through B's primary thread.
    let switch = Switch::with_queues(512, frame_size(1500), 4);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    let (vm_a, offer_a) = vm(A, Box::new(pa));
    let (vm_b, offer_b) = vm(B, Box::new(pb));
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 4;
        c
    };
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &config).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &config).unwrap();
    let flow = |port: u16, seq: u8| {
        let mut f = tcp4(100);
        f[34..36].copy_from_slice(&(20_000 + port).to_be_bytes());
        f[60] = seq;
        f
    };
    // The subchannel threads start (and take their backend queues) as B opens; give
    // the steering a moment to be in place for every queue.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut warm = 0u16;
    while vm_b.stats.snapshot().rx_steered == 0 {
        assert!(Instant::now() < deadline, "no frame was steered");
        a.send(&flow(1000 + warm % 64, 0)).unwrap();
        warm += 1;
        let mut buf = [0u8; 1518];
        while b
            .recv(&mut buf, Duration::from_millis(10))
            .unwrap()
            .is_some()
        {}
    }
    let steered_before = vm_b.stats.snapshot().rx_steered;
    let rx_before: Vec<u64> = vm_b.stats.snapshot().rx_queue_frames[..4].to_vec();
    for port in 0..128u16 {
        a.send_deferred(&flow(port, 1)).unwrap();
        a.send_deferred(&flow(port, 2)).unwrap();
    }
    a.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1518];
    while got.len() < 256 {
        match b.recv(&mut buf, Duration::from_secs(5)).unwrap() {
            // (A late warm-up frame is not one of them.)
            Some(n) if buf[60] != 0 => got.push(buf[..n].to_vec()),
            Some(_) => {}
            None => panic!("only {} of 256 frames arrived", got.len()),
        }
    }
    // Every frame once, each flow's two in order.
    for port in 0..128u16 {
        let seqs: Vec<u8> = got
            .iter()
            .filter(|f| f[34..36] == (20_000 + port).to_be_bytes())
            .map(|f| f[60])
            .collect();
        assert_eq!(seqs, [1, 2], "flow {port}");
    }
    let rx: Vec<u64> = vm_b.stats.snapshot().rx_queue_frames[..4]
        .iter()
        .zip(&rx_before)
        .map(|(c, b)| c - b)
        .collect();
    let steered = vm_b.stats.snapshot().rx_steered - steered_before;
    // Queues 1-3 got theirs straight from the switch; the primary only queue 0's.
    assert_eq!(steered, rx[1] + rx[2] + rx[3], "{rx:?}");
    assert!(rx.iter().all(|&n| n >= 16), "RSS spreads 128 flows: {rx:?}");
    let guest_rx: Vec<u64> = b.stats().rx_queue_frames[..4].to_vec();
    let host_rx: Vec<u64> = vm_b.stats.snapshot().rx_queue_frames[..4].to_vec();
    assert_eq!(guest_rx, host_rx, "each frame on the queue the host chose");
    // Close and reopen: the backend queues come back and are taken again.
    b.close(&vm_b.bus).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut b = loop {
        match Netvsc::open(&vm_b.bus, &offer_b, &config) {
            Ok(b) => break b,
            Err(e) => {
                assert!(Instant::now() < deadline, "reopen: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let before = vm_b.stats.snapshot().rx_steered;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut port = 0;
    while vm_b.stats.snapshot().rx_steered == before {
        assert!(
            Instant::now() < deadline,
            "no frame steered after the reopen"
        );
        a.send(&flow(port, 3)).unwrap();
        port += 1;
        while b
            .recv(&mut buf, Duration::from_millis(10))
            .unwrap()
            .is_some()
        {}
    }
    assert_eq!(vm_a.stats.snapshot().bad_packets, 0);
    assert_eq!(vm_b.stats.snapshot().bad_packets, 0);
}

/// An IPv4/TCP frame `dst` <- `src` from port `sport`, 100 payload bytes starting with
/// `tag` (lengths right, so tshark decodes it cleanly).
fn tcp_frame(dst: [u8; 6], src: [u8; 6], sport: u16, tag: u8) -> Vec<u8> {
    let mut f = tcp4(100);
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[54] = tag;
    f
}

/// The records of a pcap file written by [`pcap::Capture`] (checking its header).
fn pcap_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&bytes[..4], &[0xD4, 0xC3, 0xB2, 0xA1], "pcap magic");
    assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig, "nothing cut");
        out.push(bytes[at + 16..at + 16 + incl].to_vec());
        at += 16 + incl;
    }
    out
}

#[test]
fn a_capture_records_every_queue_and_tshark_reads_it() {
    // A's port has 2 queues and is captured: what A's subchannel transmits through its
    // own transmit queue and what its thread pulls from its own receive queue must be
    // in the file as well as what passes the endpoint itself.
    let path = std::env::temp_dir().join(format!("netvsp-e2e-{}.pcap", std::process::id()));
    let switch = Switch::with_queues(512, frame_size(1500), 2);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    let capture = pcap::Capture::new(pa, &path).unwrap();
    let handle = capture.handle();
    let (vm_a, offer_a) = vm(A, Box::new(capture));
    let (vm_b, offer_b) = vm(B, Box::new(pb));
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c
    };
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &config).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &config).unwrap();
    // Let A's queue-1 thread take its backend queue and the steering settle: B sends
    // until one of A's frames comes through it.
    let mut sent = Vec::new();
    let mut buf = [0u8; 1518];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut port = 0u16;
    while vm_a.stats.snapshot().rx_steered == 0 {
        assert!(Instant::now() < deadline, "nothing reached A's queue 1");
        let f = tcp_frame(A, B, 40_000 + port % 64, 0);
        b.send(&f).unwrap();
        sent.push(f);
        port += 1;
        while a
            .recv(&mut buf, Duration::from_millis(10))
            .unwrap()
            .is_some()
        {}
    }
    for port in 0..64u16 {
        let (to_b, to_a) = (tcp_frame(B, A, port, 1), tcp_frame(A, B, 30_000 + port, 2));
        a.send(&to_b).unwrap();
        b.send(&to_a).unwrap();
        sent.push(to_b);
        sent.push(to_a);
    }
    let want = sent.len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.frames() < want as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {want} frames recorded",
            handle.frames()
        );
        while a
            .recv(&mut buf, Duration::from_millis(10))
            .unwrap()
            .is_some()
        {}
        while b
            .recv(&mut buf, Duration::from_millis(10))
            .unwrap()
            .is_some()
        {}
    }
    // Both of A's queue-1 paths were used, so both wrappers recorded.
    assert!(settled(|| vm_a.stats.snapshot().tx_own_queue, 1) > 0);
    assert!(vm_a.stats.snapshot().rx_steered > 0);
    handle.flush().unwrap();
    assert_eq!(handle.write_errors(), 0);
    let bytes = std::fs::read(&path).unwrap();
    let mut recorded = pcap_records(&bytes);
    assert_eq!(recorded.len(), want);
    recorded.sort();
    sent.sort();
    assert!(
        recorded == sent,
        "the file holds exactly the frames A sent and got"
    );

    // Linux's own reader, when installed.
    match std::process::Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.len",
        ])
        .args(["-e", "eth.src", "-e", "tcp.srcport"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), want, "tshark read every frame: {text}");
            let from_a = lines
                .iter()
                .filter(|l| l.starts_with("154\t02:00:00:00:00:0a\t"))
                .count();
            assert_eq!(from_a, 64, "tshark decoded A's frames: {text}");
            let ports: std::collections::BTreeSet<&str> =
                lines.iter().filter_map(|l| l.split('\t').nth(2)).collect();
            assert!(ports.contains("0") && ports.contains("30063"), "{ports:?}");
        }
        Ok(out) => panic!(
            "tshark could not read the capture: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => println!("SKIPPED (the tshark check only): tshark is not installed"),
    }
    let _ = std::fs::remove_file(&path);
}
