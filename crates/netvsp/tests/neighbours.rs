//! Neighbours are isolated: two well-behaved smoltcp guests (the main example's setup)
//! stream TCP through a switch while a third guest on the same switch, with its own
//! host bus and NIC, runs one attack after another. The stream must never stall or
//! lose a byte; its throughput beside each attack, against the stream alone, is printed
//! (measured, not asserted: this machine's timing is noisy).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use hv_partition::SimPartition;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::*;
use smoltcp::iface::SocketSet;
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vmbus::{GuestBus, HostBus, HostConfig};
use vmbus_proto::channel::{
    GpadlTeardown, InitiateContact, Message, OpenChannel,
    gpadl::{GpaRange, split},
};

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0A];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0B];
const X: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0E];

/// Streams `total` bytes from A to B on a new connection (port `port`), every byte
/// checked; returns Mbit/s. Fails if the stream stalls for 30 s.
fn stream(a: &mut Stack, b: &mut Stack, port: u16, total: usize) -> f64 {
    let mut sa = SocketSet::new(vec![]);
    let mut sb = SocketSet::new(vec![]);
    let client = sa.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    let server = sb.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    sb.get_mut::<tcp::Socket>(server).listen(port).unwrap();
    let pattern = |i: usize| (i * 131 + i / 7 + usize::from(port)) as u8;
    let (mut sent, mut received) = (0usize, 0usize);
    let mut connected = false;
    let start = Instant::now();
    let mut last_progress = (Instant::now(), 0usize);
    while received < total {
        if received != last_progress.1 {
            last_progress = (Instant::now(), received);
        }
        assert!(
            last_progress.0.elapsed() < Duration::from_secs(30),
            "the good stream stalled at {received} of {total} bytes"
        );
        let t = now();
        a.iface.poll(t, &mut a.dev, &mut sa);
        b.iface.poll(t, &mut b.dev, &mut sb);
        let c = sa.get_mut::<tcp::Socket>(client);
        if !connected {
            c.connect(
                a.iface.context(),
                (IpAddress::v4(192, 0, 2, 2), port),
                40000 + port,
            )
            .unwrap();
            connected = true;
        }
        if c.can_send() && sent < total {
            sent += c
                .send(|buf| {
                    let n = buf.len().min(total - sent);
                    for (i, x) in buf[..n].iter_mut().enumerate() {
                        *x = pattern(sent + i);
                    }
                    (n, n)
                })
                .unwrap();
        }
        let srv = sb.get_mut::<tcp::Socket>(server);
        if srv.can_recv() {
            received += srv
                .recv(|buf| {
                    for (i, x) in buf.iter().enumerate() {
                        assert_eq!(*x, pattern(received + i), "byte {}", received + i);
                    }
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
        let _ = a.dev.capabilities();
        a.dev.wait(Duration::from_micros(200));
        b.dev.wait(Duration::ZERO);
    }
    sa.get_mut::<tcp::Socket>(client).abort();
    let t = now();
    a.iface.poll(t, &mut a.dev, &mut sa);
    total as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6
}

/// Runs `attack` on a thread until the returned flag is set; the thread returns how
/// many rounds it made.
fn run_attack(
    attack: impl FnMut() + Send + 'static,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut attack = attack;
    let h = std::thread::spawn(move || {
        let mut rounds = 0;
        while !s.load(Ordering::Relaxed) {
            attack();
            rounds += 1;
        }
        rounds
    });
    (stop, h)
}

#[test]
fn a_good_stream_beside_each_attack_of_a_neighbour() {
    const TOTAL: usize = 4 << 20;
    let switch = Switch::new(1024);
    let (pa, _) = switch.port_with_mac(A);
    let (pb, _) = switch.port_with_mac(B);
    let (px, _) = switch.port_with_mac(X);
    let vm_a = vm(A, Box::new(pa));
    let vm_b = vm(B, Box::new(pb));
    let mut a = stack(&vm_a, A, [192, 0, 2, 1]);
    let mut b = stack(&vm_b, B, [192, 0, 2, 2]);
    let alone = stream(&mut a, &mut b, 5001, TOTAL);
    println!("alone: {alone:.0} Mbit/s");
    let x = Arc::new(vm(X, Box::new(px)));
    let mut ratios = Vec::new();
    let mut port = 5002;
    let mut measure = |name: &str,
                       a: &mut Stack,
                       b: &mut Stack,
                       stop: Arc<AtomicBool>,
                       h: std::thread::JoinHandle<u64>| {
        let beside = stream(a, b, port, TOTAL);
        port += 1;
        stop.store(true, Ordering::Relaxed);
        let rounds = h.join().unwrap();
        println!(
            "beside {name}: {beside:.0} Mbit/s, ratio {:.2} ({rounds} attack rounds)",
            beside / alone
        );
        ratios.push((name.to_string(), beside / alone));
    };

    // 1. A guest that never reads its SynIC messages (it never set up its SynIC),
    // flooding InitiateContact at its own bus.
    {
        let raw = SimPartition::new(64 << 20, 1).unwrap();
        let raw_host = HostBus::new(raw.clone(), HostConfig::default()).unwrap();
        let vp = raw.vp(0).unwrap();
        let contact = Message::InitiateContact(
            InitiateContact {
                version_requested: 0x0077_0077,
                target_vcpu: 0,
                interrupt_page_or_target_info: InitiateContact::target_info(2, 0, 0),
                monitor_page1: 0,
                monitor_page2: 0,
            },
            None,
        );
        let (buf, n) = contact.to_payload();
        let (stop, h) = run_attack(move || {
            let _ = vp.post_message(0x3000, 4, &buf[..n]);
        });
        measure(
            "a guest flooding messages it never reads",
            &mut a,
            &mut b,
            stop,
            h,
        );
        let s = raw_host.stats();
        println!("  its bus: {s:?}");
        assert!(s.busy > 0);
    }
    // 2. A guest whose NIC's worker is kept busy by packets that need no answer.
    {
        use vmbus_proto::nvsp::NvspMessage;
        use vmbus_ring::OutgoingPacket;
        let vmbus::Channel {
            mut sender,
            receiver,
            ..
        } = x.bus.open(&x.offer, 32, 0).unwrap();
        let mut msg = [0u8; 40];
        let n = NvspMessage::SendNdisVersion {
            ndis_major_ver: 6,
            ndis_minor_ver: 30,
        }
        .emit(&mut msg)
        .unwrap();
        let (stop, h) = run_attack(move || {
            let _ = sender.try_send(&OutgoingPacket::inband(0, 0), &[&msg[..n]]);
            let _ = &receiver;
        });
        measure(
            "a guest keeping its NIC's worker busy",
            &mut a,
            &mut b,
            stop,
            h,
        );
        x.bus.close(x.offer.child_relid).unwrap();
    }
    // 3. A guest sending with B's MAC as fast as it can.
    {
        let nic = Arc::new(std::sync::Mutex::new(
            Netvsc::open(&x.bus, &x.offer, &NetvscConfig::default()).unwrap(),
        ));
        let mut f = vec![0u8; 1000];
        f[..6].copy_from_slice(&A);
        f[6..12].copy_from_slice(&B);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let n2 = nic.clone();
        let (stop, h) = run_attack(move || {
            let mut n = n2.lock().unwrap();
            let _ = n.send_deferred(&f);
            let _ = n.flush();
        });
        measure("a guest sending with B's MAC", &mut a, &mut b, stop, h);
        let nic = Arc::into_inner(nic).unwrap().into_inner().unwrap();
        nic.close(&x.bus).unwrap();
    }
    // 4. A guest tearing its buffers' GPADLs down without revoking, again and again.
    {
        let xb = x.clone();
        let (stop, h) = run_attack(move || {
            match Netvsc::open(&xb.bus, &xb.offer, &NetvscConfig::default()) {
                Ok(nic) => {
                    for (_, _, gpadl) in nic.buffers() {
                        let _ = xb.bus.teardown_gpadl(gpadl);
                    }
                    let _ = xb.bus.close(xb.offer.child_relid);
                    // The driver never revoked: give its buffers' pages back by hand.
                    for (gpa, len, _) in nic.buffers() {
                        xb.bus.free_pages(gpa / 4096, len / 4096);
                    }
                    drop(nic);
                }
                Err(e) => panic!("open: {e}"),
            }
        });
        measure(
            "a guest tearing its buffers down under the NIC",
            &mut a,
            &mut b,
            stop,
            h,
        );
    }
    // 5. A guest opening rings whose GPADL names a page twice, again and again (each
    // message posted until the bus takes it).
    {
        let _ = x.bus.close(x.offer.child_relid);
        let xb = x.clone();
        let post = |bus: &GuestBus, m: &Message| {
            while bus.post_raw(1, m) == hv_hypercall::HvStatus::INSUFFICIENT_BUFFERS {
                std::thread::yield_now();
            }
        };
        let mut id = 0x9000u32;
        let (stop, h) = run_attack(move || {
            id += 1;
            let (hdr, _) = split(
                xb.offer.child_relid,
                id,
                &[GpaRange::whole_pages(vec![0x3000, 0x3001, 0x3000, 0x3001])],
            )
            .unwrap();
            post(&xb.bus, &Message::GpadlHeader(hdr));
            post(
                &xb.bus,
                &Message::OpenChannel(
                    OpenChannel {
                        child_relid: xb.offer.child_relid,
                        open_id: id,
                        ring_buffer_gpadl_handle: id,
                        target_vp: 0,
                        downstream_ring_buffer_page_offset: 2,
                        user_data: [0; 120],
                    },
                    None,
                ),
            );
            post(
                &xb.bus,
                &Message::GpadlTeardown(GpadlTeardown {
                    child_relid: xb.offer.child_relid,
                    gpadl: id,
                }),
            );
        });
        measure("a guest opening aliased rings", &mut a, &mut b, stop, h);
    }
    let xs = x.host.stats();
    println!("attacker's bus: {xs:?}");
    assert!(xs.aliased_rings > 0 && xs.teardowns_deferred > 0, "{xs:?}");
    assert!(
        switch.spoofed() == 0,
        "netvsp dropped the spoofed frames first"
    );
    for (name, r) in &ratios {
        println!("ratio {r:.2}: {name}");
    }
    drop(vm_a.host);
    drop(vm_b.host);
}
