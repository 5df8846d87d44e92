//! Hostile guests against NetVSP, each written in the test: one that tears down its
//! buffers' GPADLs without revoking them, one that keeps the NIC's worker busy with
//! packets that need no answer while the host closes it, one that sends with another
//! guest's MAC, and one that closes, reopens and unloads in the middle of traffic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

/// A frame from `src` to `dst` with payload byte `tag`.
fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 200];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());
    f
}

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0A];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0B];
const C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0C];

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The guest tears down its receive buffer's GPADL (then its send buffer's) without
/// RevokeReceiveBuffer: the host lets go of the buffer first, answers the teardown
/// only then, and never writes those pages afterwards.
#[test]
fn buffers_torn_down_without_revoke_are_let_go_before_the_answer() {
    let switch = Switch::new(256);
    let (port, _) = switch.port_with_mac(A);
    let (mut peer, _) = switch.port();
    let vm = vm(A, Box::new(port));
    let offer = vm.offer;
    let mut nic = Netvsc::open(&vm.bus, &offer, &NetvscConfig::default()).unwrap();
    // Reception works.
    assert!(peer.transmit(&frame(A, C, 1)));
    let mut buf = [0u8; 1518];
    assert_eq!(
        nic.recv(&mut buf, Duration::from_secs(5)).unwrap(),
        Some(200)
    );
    let [(rgpa, rlen, rgpadl), (_, _, sgpadl)] = nic.buffers();
    // The teardown is answered (the guest's call returns) once the host let go.
    let bus = Arc::new(vm.bus);
    let b = bus.clone();
    within(
        Duration::from_secs(5),
        "the receive buffer's teardown",
        move || b.teardown_gpadl(rgpadl),
    )
    .unwrap();
    let hs = vm.host.stats();
    assert_eq!(hs.teardowns_deferred, 1, "{hs:?}");
    // The guest reuses the pages; frames that arrive now must not touch them.
    let pattern = vec![0xEEu8; rlen as usize];
    bus.platform().write(rgpa, &pattern).unwrap();
    let not_ready = vm.stats.snapshot().rx_not_ready;
    for i in 0..50 {
        assert!(peer.transmit(&frame(A, C, i)));
    }
    wait_until("the frames to be dropped", || {
        vm.stats.snapshot().rx_not_ready >= not_ready + 50
    });
    let mut after = vec![0u8; rlen as usize];
    bus.platform().read(rgpa, &mut after).unwrap();
    assert!(
        after == pattern,
        "the host wrote a torn-down receive buffer"
    );
    // The send buffer too.
    let b = bus.clone();
    within(
        Duration::from_secs(5),
        "the send buffer's teardown",
        move || b.teardown_gpadl(sgpadl),
    )
    .unwrap();
    let s = vm.stats.snapshot();
    assert_eq!(vm.host.stats().teardowns_deferred, 2);
    assert!(s.bad_packets >= 2, "counted: {s:?}");
    drop(nic);
}

/// A guest that keeps its NIC's worker busy with packets that need no answer, without
/// pause: the host still rescinds the NIC, and drops the bus, at once.
#[test]
fn a_guest_keeping_the_worker_busy_cannot_delay_its_close() {
    use vmbus_proto::nvsp::{NvspMessage, NvspVersion};
    use vmbus_ring::OutgoingPacket;
    let (endpoint, _link) = Loopback::new(16);
    let vm = vm(A, Box::new(endpoint));
    let offer = vm.offer;
    let vmbus::Channel {
        mut sender,
        receiver,
        ..
    } = vm.bus.open(&offer, 32, 0).unwrap();
    // NDIS version messages ask for no completion: the worker always has work.
    let mut msg = [0u8; 40];
    let n = NvspMessage::init(NvspVersion::V6_1).emit(&mut msg).unwrap();
    sender
        .send(&OutgoingPacket::inband(0, 0), &[&msg[..n]])
        .unwrap();
    let m = NvspMessage::SendNdisVersion {
        ndis_major_ver: 6,
        ndis_minor_ver: 30,
    };
    let n = m.emit(&mut msg).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let flooder = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !s2.load(Ordering::Relaxed) {
            match sender.try_send(&OutgoingPacket::inband(sent, 0), &[&msg[..n]]) {
                Ok(()) => sent += 1,
                Err(vmbus::ChannelError::Closed) => break,
                Err(_) => std::hint::spin_loop(),
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    let host = vm.host.clone();
    let relid = vm.relid;
    let start = Instant::now();
    within(
        Duration::from_secs(3),
        "rescinding the busy NIC",
        move || host.rescind(relid),
    )
    .unwrap();
    println!("rescinded in {:?}", start.elapsed());
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    println!("the guest sent {sent} packets");
    assert!(sent > 1000);
    drop(receiver);
    let host = vm.host.clone();
    drop(vm.bus);
    drop(vm.host);
    let host = Arc::into_inner(host).unwrap();
    within(Duration::from_secs(3), "dropping the bus", move || {
        drop(host)
    });
}

/// A guest sending with another guest's source MAC: netvsp drops and counts it, the
/// switch never learns it, and the victim's unicast still reaches the victim only.
#[test]
fn a_guest_cannot_send_with_another_guests_mac() {
    let switch = Switch::new(256);
    let (pa, _) = switch.port_with_mac(A);
    let (pb, _) = switch.port_with_mac(B);
    let (mut pc, _) = switch.port();
    let vm_a = vm(A, Box::new(pa));
    let offer_a = vm_a.offer;
    let vm_b = vm(B, Box::new(pb));
    let offer_b = vm_b.offer;
    let mut a = Netvsc::open(&vm_a.bus, &offer_a, &NetvscConfig::default()).unwrap();
    let mut b = Netvsc::open(&vm_b.bus, &offer_b, &NetvscConfig::default()).unwrap();
    let mut buf = [0u8; 1518];
    // B speaks first, so the switch knows where B is.
    b.send(&frame(C, B, 1)).unwrap();
    wait_until("B's frame at C", || pc.receive(&mut buf).is_some());
    // (C was unknown: the switch flooded it to A too.)
    while a
        .recv(&mut buf, Duration::from_millis(100))
        .unwrap()
        .is_some()
    {}
    // A claims to be B, many times.
    for i in 0..20 {
        a.send(&frame(C, B, i)).unwrap();
    }
    wait_until("A's spoofed frames dropped", || {
        vm_a.stats.snapshot().tx_spoofed == 20
    });
    // C sends to B: B gets it, A does not.
    assert!(pc.transmit(&frame(B, C, 9)));
    assert_eq!(b.recv(&mut buf, Duration::from_secs(5)).unwrap(), Some(200));
    assert_eq!(&buf[..12], &frame(B, C, 9)[..12]);
    assert_eq!(a.recv(&mut buf, Duration::from_millis(200)).unwrap(), None);
    // A raw port pretending to be B is dropped by the switch too (A's own port).
    let (mut pa2, _) = switch.port_with_mac(A);
    assert!(!pa2.transmit(&frame(C, B, 3)));
    assert_eq!(switch.spoofed(), 1);
    let s = vm_a.stats.snapshot();
    assert_eq!((s.tx_spoofed, s.tx_frames), (20, 0), "{s:?}");
}

/// A guest that closes, reopens and unloads while frames flow both ways: no hang, no
/// panic, the NIC works after each reopen, nothing counted as malformed.
#[test]
fn close_reopen_and_unload_in_the_middle_of_traffic() {
    let switch = Switch::new(256);
    let (pa, _) = switch.port_with_mac(A);
    let (mut peer, _) = switch.port();
    let vm = vm(A, Box::new(pa));
    let offer = vm.offer;
    let stop = Arc::new(AtomicBool::new(false));
    // The peer floods A all along.
    let s2 = stop.clone();
    let flood = std::thread::spawn(move || {
        let mut i = 0u8;
        while !s2.load(Ordering::Relaxed) {
            peer.transmit(&frame(A, C, i));
            i = i.wrapping_add(1);
            std::thread::sleep(Duration::from_micros(50));
        }
    });
    let mut buf = [0u8; 1518];
    for round in 0..5 {
        let mut nic = Netvsc::open(&vm.bus, &offer, &NetvscConfig::default()).unwrap();
        // Traffic both ways for a moment.
        let start = Instant::now();
        let mut got = 0;
        while start.elapsed() < Duration::from_millis(100) {
            nic.send(&frame(C, A, round)).unwrap();
            if nic
                .recv(&mut buf, Duration::from_millis(1))
                .unwrap()
                .is_some()
            {
                got += 1;
            }
        }
        assert!(got > 0, "round {round}: nothing received");
        // Close in the middle of it (the host's frames keep coming).
        let t = Instant::now();
        nic.close(&vm.bus).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "close took {:?}",
            t.elapsed()
        );
    }
    // Finally the guest unloads with the NIC open.
    let _nic = Netvsc::open(&vm.bus, &offer, &NetvscConfig::default()).unwrap();
    vm.bus.unload().unwrap();
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let s = vm.stats.snapshot();
    assert_eq!(s.bad_packets, 0, "{s:?}");
    let hs = vm.host.stats();
    assert_eq!((hs.open_failures, hs.rejected), (0, 0), "{hs:?}");
}

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = &stat[stat.rfind(") ").unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// A guest that stops answering entirely (brought up, then never again reads its rings
/// or completes a transfer) while frames keep coming for it: the host's backlog stays
/// bounded, its NIC sleeps instead of spinning, and the host still closes it at once.
#[test]
fn a_guest_that_stops_answering_costs_no_cpu_and_closes_at_once() {
    let switch = Switch::new(256);
    let (pa, _) = switch.port_with_mac(A);
    let (mut peer, _) = switch.port();
    let vm = vm(A, Box::new(pa));
    let offer = vm.offer;
    let nic = Netvsc::open(&vm.bus, &offer, &NetvscConfig::default()).unwrap();
    // Frames for it, far more than its receive buffer and rings hold.
    for i in 0..20_000u32 {
        peer.transmit(&frame(A, C, i as u8));
        if i % 256 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = vm.stats.snapshot();
    println!(
        "delivered {} before the guest's buffer filled; {:?}",
        s.rx_frames,
        s.drops()
    );
    assert!(s.rx_no_buffer > 0, "{s:?}");
    // Stalled: the process (host bus, NIC workers, the idle guest) sleeps.
    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time() - before;
    println!("CPU used in a stalled second: {used:?}");
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in a stalled second"
    );
    let host = vm.host.clone();
    let relid = vm.relid;
    within(
        Duration::from_secs(3),
        "rescinding the stalled NIC",
        move || host.rescind(relid),
    )
    .unwrap();
    drop(nic);
}
