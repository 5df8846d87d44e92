//! Two smoltcp guests on a switch: ICMP echo and a TCP stream with every byte checked.
//! Addresses are from the documentation range (RFC 5737); frames never leave the process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use netvsp::*;
use smoltcp::iface::SocketSet;
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::{icmp, tcp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};
use std::time::{Duration, Instant};

struct Guest {
    _vm: Vm,
    dev: netvsc::phy::NetvscPhy,
    iface: smoltcp::iface::Interface,
}

fn guest(mac: [u8; 6], ip: [u8; 4], endpoint: Box<dyn NetEndpoint>) -> Guest {
    let vm = vm(mac, endpoint);
    let Stack { dev, iface } = stack(&vm, mac, ip);
    Guest {
        _vm: vm,
        dev,
        iface,
    }
}

#[test]
fn icmp_echo_and_tcp_stream_between_smoltcp_guests() {
    let switch = Switch::new(1024);
    let (pa, _) = switch.port();
    let (pb, _) = switch.port();
    let mut a = guest([2, 0, 0, 0, 0, 0xA], [192, 0, 2, 1], Box::new(pa));
    let mut b = guest([2, 0, 0, 0, 0, 0xB], [192, 0, 2, 2], Box::new(pb));
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

    const TOTAL: usize = 2 << 20;
    let pattern = |i: usize| (i * 131 + i / 7) as u8;
    let (mut pings_sent, mut pongs) = (0u16, 0u16);
    let (mut sent, mut received) = (0usize, 0usize);
    let mut connected = false;
    let deadline = Instant::now()
        + Duration::from_secs(
            std::env::var("SMOLTCP_TEST_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(120),
        );
    let start = Instant::now();
    while pongs < 5 || received < TOTAL {
        if Instant::now() >= deadline {
            let (x, y) = (a.dev.nic().stats(), b.dev.nic().stats());
            panic!(
                "stuck: pongs {pongs}, received {received}/{TOTAL}; A tx {} rx {} bad {}; B tx {} rx {} bad {}",
                x.tx_frames,
                x.rx_frames,
                x.bad_host_messages,
                y.tx_frames,
                y.rx_frames,
                y.bad_host_messages,
            );
        }
        let t = now();
        a.iface.poll(t, &mut a.dev, &mut sa);
        b.iface.poll(t, &mut b.dev, &mut sb);
        // ICMP echo, answered by B's stack.
        let s = sa.get_mut::<icmp::Socket>(icmp);
        if pings_sent < 5 && pings_sent == pongs && s.can_send() {
            let repr = Icmpv4Repr::EchoRequest {
                ident: 0x22,
                seq_no: pings_sent,
                data: b"hv-vmbus-rs ping",
            };
            let buf = s.send(repr.buffer_len(), b_addr).unwrap();
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            );
            pings_sent += 1;
        }
        while s.can_recv() {
            let (payload, from) = s.recv().unwrap();
            assert_eq!(from, b_addr);
            let p = Icmpv4Packet::new_checked(payload).unwrap();
            if let Ok(Icmpv4Repr::EchoReply { seq_no, data, .. }) =
                Icmpv4Repr::parse(&p, &ChecksumCapabilities::default())
            {
                assert_eq!(seq_no, pongs);
                assert_eq!(data, b"hv-vmbus-rs ping");
                pongs += 1;
            }
        }
        // TCP: A streams TOTAL bytes to B, which checks every one.
        let c = sa.get_mut::<tcp::Socket>(client);
        if !connected && pongs >= 1 {
            c.connect(a.iface.context(), (b_addr, 5001), 49152).unwrap();
            connected = true;
        }
        if c.can_send() && sent < TOTAL {
            sent += c
                .send(|buf| {
                    let n = buf.len().min(TOTAL - sent);
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
        // Give the hosts' workers time when nothing is pending.
        let _ = a.dev.capabilities();
        a.dev.wait(Duration::from_micros(200));
        b.dev.wait(Duration::ZERO);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "5 pings answered; {TOTAL} TCP bytes checked in {secs:.2} s ({:.1} Mbit/s)",
        TOTAL as f64 * 8.0 / secs / 1e6
    );
}
