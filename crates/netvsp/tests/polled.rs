//! The host side driven by the VMM instead of the library's threads: two polled
//! `HostBus`es and two polled `Netvsp`s (two queues each) run from one thread of this
//! test, which waits on one eventfd they all wake, while two smoltcp guests (the main
//! example's setup: netvsc over the simulated partition) ping and stream TCP both ways
//! through an in-process switch, every byte checked. The library starts no thread for
//! the host side: the process's threads are counted before and during the run.
//!
//! One test in this binary, so the harness runs no other test beside it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use hv_partition::SimPartition;
use netvsc::phy::NetvscPhy;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::{icmp, tcp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmbus::{GuestBus, GuestConfig, HostBus, HostConfig, OfferParams, PollStatus};
use vmbus_proto::guid::{Guid, class};
use vmbus_ring::EventFd;

/// The process's threads, with their names.
fn threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?;
            Some(
                std::fs::read_to_string(t.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )
        })
        .collect()
}

/// One host: a polled bus and a polled NIC offered on it.
struct Host {
    partition: Arc<SimPartition>,
    bus: HostBus<SimPartition>,
    nic: NicPoller,
    stats: NicCounters,
    relid: u32,
}

fn host(mac: [u8; 6], endpoint: Box<dyn NetEndpoint>, wake: &Arc<EventFd>) -> Host {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let bus = HostBus::polled(partition.clone(), HostConfig::default(), wake.clone());
    let (nic, poller) = Netvsp::polled(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c.max_queues = 2;
            c
        },
        endpoint,
        wake.clone(),
    );
    let stats = nic.stats();
    let relid = bus
        .offer(OfferParams::new(class::NETWORK, Guid::ZERO), Box::new(nic))
        .unwrap();
    Host {
        partition,
        bus,
        nic: poller,
        stats,
        relid,
    }
}

struct Guest {
    _bus: GuestBus,
    dev: NetvscPhy,
    iface: Interface,
}

fn guest(partition: Arc<SimPartition>, relid: u32, mac: [u8; 6], ip: [u8; 4]) -> Guest {
    let bus = GuestBus::new(partition, GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    let nic = Netvsc::open(&bus, &offer, &{
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c
    })
    .unwrap();
    assert_eq!(nic.queues(), 2, "a subchannel, offered by the polled NIC");
    let Stack { dev, iface } = stack_on(nic, mac, ip);
    Guest {
        _bus: bus,
        dev,
        iface,
    }
}

#[test]
fn polled_bus_and_nics_carry_frames_with_no_thread_of_their_own() {
    let before = threads();
    let wake = Arc::new(EventFd::new().unwrap());
    let switch = Switch::new(1024);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    let (ma, mb) = ([2, 0, 0, 0, 0, 0xA], [2, 0, 0, 0, 0, 0xB]);
    let ha = host(ma, Box::new(pa), &wake);
    let hb = host(mb, Box::new(pb), &wake);
    let (pa_part, pb_part, relid_a, relid_b) = (
        ha.partition.clone(),
        hb.partition.clone(),
        ha.relid,
        hb.relid,
    );
    assert_eq!(
        threads().len(),
        before.len(),
        "the polled buses and NICs started a thread: {:?}",
        threads()
    );

    // The VMM's thread: one eventfd, every bus and NIC polled when it fires.
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let vmm = {
        let (stop, polls, wake) = (stop.clone(), polls.clone(), wake.clone());
        std::thread::Builder::new()
            .name("test-vmm".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let mut busy = false;
                    let mut timeout = Duration::from_millis(100);
                    for s in [ha.bus.poll(), hb.bus.poll(), ha.nic.poll(), hb.nic.poll()] {
                        match s {
                            PollStatus::Busy => busy = true,
                            PollStatus::Idle(Some(t)) => timeout = timeout.min(t),
                            _ => {}
                        }
                    }
                    polls.fetch_add(1, Ordering::Relaxed);
                    if !busy {
                        wake.wait(timeout);
                    }
                }
                (ha, hb)
            })
            .unwrap()
    };

    let mut a = guest(pa_part, relid_a, ma, [192, 0, 2, 1]);
    let mut b = guest(pb_part, relid_b, mb, [192, 0, 2, 2]);
    // The test's VMM thread and the simulated guests' interrupt threads (one per VP
    // of each partition): nothing else.
    let guest_isrs = 2 * 2;
    let during = threads();
    assert_eq!(
        during.len(),
        before.len() + 1 + guest_isrs,
        "threads before {before:?}, during {during:?}"
    );
    assert!(
        !during
            .iter()
            .any(|t| t.starts_with("vmbus-host") || t.starts_with("netvsp")),
        "{during:?}"
    );

    let mut sa = SocketSet::new(vec![]);
    let mut sb = SocketSet::new(vec![]);
    let icmp = sa.add(icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
    ));
    let client = sa.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    let server = sb.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    sb.get_mut::<tcp::Socket>(server).listen(5001).unwrap();
    let b_addr = IpAddress::v4(192, 0, 2, 2);
    sa.get_mut::<icmp::Socket>(icmp)
        .bind(icmp::Endpoint::Ident(0x22))
        .unwrap();

    // Each way: A to B and B to A on one connection, every byte checked.
    const TOTAL: usize = 1 << 20;
    let to_b = |i: usize| (i * 131 + i / 7) as u8;
    let to_a = |i: usize| (i * 17 + i / 3 + 5) as u8;
    let (mut pings_sent, mut pongs) = (0u16, 0u16);
    let (mut a_sent, mut b_got, mut b_sent, mut a_got) = (0usize, 0usize, 0usize, 0usize);
    let mut connected = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let start = Instant::now();
    while pongs < 5 || b_got < TOTAL || a_got < TOTAL {
        assert!(
            Instant::now() < deadline,
            "stuck: pongs {pongs}, B got {b_got}, A got {a_got} of {TOTAL}"
        );
        let t = now();
        a.iface.poll(t, &mut a.dev, &mut sa);
        b.iface.poll(t, &mut b.dev, &mut sb);
        let s = sa.get_mut::<icmp::Socket>(icmp);
        if pings_sent < 5 && pings_sent == pongs && s.can_send() {
            let repr = Icmpv4Repr::EchoRequest {
                ident: 0x22,
                seq_no: pings_sent,
                data: b"polled ping",
            };
            let buf = s.send(repr.buffer_len(), b_addr).unwrap();
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            );
            pings_sent += 1;
        }
        while s.can_recv() {
            let (payload, _) = s.recv().unwrap();
            let p = Icmpv4Packet::new_checked(payload).unwrap();
            if let Ok(Icmpv4Repr::EchoReply { seq_no, data, .. }) =
                Icmpv4Repr::parse(&p, &ChecksumCapabilities::default())
            {
                assert_eq!((seq_no, data), (pongs, &b"polled ping"[..]));
                pongs += 1;
            }
        }
        let c = sa.get_mut::<tcp::Socket>(client);
        if !connected && pongs >= 1 {
            c.connect(a.iface.context(), (b_addr, 5001), 49152).unwrap();
            connected = true;
        }
        if c.can_send() && a_sent < TOTAL {
            a_sent += c
                .send(|buf| {
                    let n = buf.len().min(TOTAL - a_sent);
                    for (i, x) in buf[..n].iter_mut().enumerate() {
                        *x = to_b(a_sent + i);
                    }
                    (n, n)
                })
                .unwrap();
        }
        if c.can_recv() {
            a_got += c
                .recv(|buf| {
                    for (i, x) in buf.iter().enumerate() {
                        assert_eq!(*x, to_a(a_got + i), "byte {} to A", a_got + i);
                    }
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
        let srv = sb.get_mut::<tcp::Socket>(server);
        if srv.can_recv() {
            b_got += srv
                .recv(|buf| {
                    for (i, x) in buf.iter().enumerate() {
                        assert_eq!(*x, to_b(b_got + i), "byte {} to B", b_got + i);
                    }
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
        if srv.can_send() && b_sent < TOTAL {
            b_sent += srv
                .send(|buf| {
                    let n = buf.len().min(TOTAL - b_sent);
                    for (i, x) in buf[..n].iter_mut().enumerate() {
                        *x = to_a(b_sent + i);
                    }
                    (n, n)
                })
                .unwrap();
        }
        let _ = a.dev.capabilities();
        a.dev.wait(Duration::from_micros(200));
        b.dev.wait(Duration::ZERO);
    }
    let secs = start.elapsed().as_secs_f64();
    let after = threads();
    stop.store(true, Ordering::Release);
    use vmbus_ring::Wake;
    wake.wake();
    let (ha, hb) = vmm.join().unwrap();
    println!(
        "5 pings answered; {TOTAL} TCP bytes each way checked in {secs:.2} s; {} polls, {} wakes",
        polls.load(Ordering::Relaxed),
        wake.wakes()
    );
    assert_eq!(after.len(), during.len(), "{after:?}");
    // Both queues of both NICs carried frames, and nothing was refused.
    for (name, h) in [("A", &ha), ("B", &hb)] {
        let s = h.stats.snapshot();
        println!(
            "host {name}: rx per queue {:?}, tx packets per queue {:?}",
            &s.rx_queue_frames[..2],
            &s.tx_queue_packets[..2]
        );
        assert_eq!(s.subchannels, 1);
        assert!(s.rx_queue_frames[..2].iter().all(|&n| n > 0));
        assert!(s.tx_queue_packets[..2].iter().all(|&n| n > 0));
        assert_eq!(s.bad_packets, 0);
        assert_eq!(s.rx_no_buffer, 0);
        assert!(s.rx_frames > 700);
        assert!(s.tx_frames > 700);
        assert_eq!(h.bus.stats().rejected, 0);
    }
    drop((ha, hb));
}
