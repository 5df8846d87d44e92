//! The synthetic NIC end to end on the simulated backend: two guests, each a VMBus
//! guest with a netvsc NIC and a smoltcp IP stack, attached through their hosts' netvsp
//! to one in-process L2 switch. Guest A pings guest B, then sends it a TCP stream whose
//! every byte B checks. Prints the negotiated versions, link state, frame and drop
//! counters and throughput. Addresses are from the documentation range (RFC 5737); no
//! frame leaves the process.
//!
//! Run: `cargo run --release -p vmbus-examples --example nic_demo [MiB] [--pcap FILE]`
//! (`--pcap`: guest A's frames, both directions and every queue, go to FILE for
//! `tshark -r FILE` or Wireshark; a 256 MiB run writes about 280 MB).

// Example code: inputs are built here.
#![allow(clippy::indexing_slicing)]

use netvsc::phy::NetvscPhy;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::{NetEndpoint, Netvsp, NetvspConfig, NicCounters, Switch};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
};
use std::error::Error;
use std::time::{Duration, Instant};
// The host side needs vmbus and netvsp only (the guest side, netvsc).
use vmbus::{GuestBus, GuestConfig, Guid, HostBus, HostConfig, SimPartition};

struct Guest {
    host: HostBus<SimPartition>,
    _bus: GuestBus,
    host_stats: NicCounters,
    dev: NetvscPhy,
    iface: Interface,
    vmbus: String,
}

fn now() -> SInstant {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SInstant::from_micros(d.as_micros() as i64)
}

fn guest(
    name: &str,
    mac: [u8; 6],
    ip: [u8; 4],
    endpoint: Box<dyn NetEndpoint>,
) -> Result<Guest, Box<dyn Error>> {
    let partition = SimPartition::new(128 << 20, 2)?;
    let host = HostBus::new(partition.clone(), HostConfig::default())?;
    let nic = Netvsp::new(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c
        },
        endpoint,
    );
    let host_stats = nic.stats();
    let instance = Guid {
        data1: u32::from(mac[5]),
        ..Guid::ZERO
    };
    let relid = host.offer(Netvsp::offer_params(instance), Box::new(nic))?;
    let bus = GuestBus::new(partition, GuestConfig::default())?;
    let v = bus.connect()?;
    let offers = bus.request_offers()?;
    let offer = offers
        .iter()
        .find(|o| o.child_relid == relid)
        .ok_or("no NIC offer")?;
    // Two queues: the driver asks for a subchannel and sets RSS, as Linux does.
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c
    };
    let nic = Netvsc::open(&bus, offer, &config)?;
    let nvsp = nic.nvsp_version();
    let o = nic.offloads();
    println!(
        "{name}: VMBus {}.{}, NVSP {}.{}, MAC {}, MTU {}, link {}, {} queues, offloads: checksum {}, LSO {} bytes",
        v.major(),
        v.minor(),
        nvsp.major(),
        nvsp.minor(),
        nic.mac()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        nic.mtu(),
        if nic.link_up() { "up" } else { "down" },
        nic.queues(),
        if o.tcp4 && o.udp4 && o.tcp6 && o.udp6 {
            "TCP/UDP over IPv4/IPv6"
        } else {
            "partial"
        },
        o.lso4_max
    );
    let mut dev = NetvscPhy::new(nic);
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut dev,
        now(),
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24));
    });
    Ok(Guest {
        host,
        _bus: bus,
        host_stats,
        dev,
        iface,
        vmbus: format!("{}.{}", v.major(), v.minor()),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut mib = 256usize;
    let mut pcap_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pcap" => pcap_path = Some(args.next().ok_or("--pcap needs a file name")?),
            n => mib = n.parse().map_err(|_| format!("not a size in MiB: {n}"))?,
        }
    }
    let total = mib << 20;
    // Two receive queues per port: each NIC's subchannel thread pulls its own, the
    // switch steering frames by the receiving guest's RSS.
    let switch = Switch::with_queues(1024, netvsp::backend::MAX_FRAME, 2);
    // Each port may send from its guest's MAC only (a guest cannot pose as another).
    let (mac_a, mac_b) = (
        [0x00, 0x15, 0x5D, 0, 0, 0x0A],
        [0x00, 0x15, 0x5D, 0, 0, 0x0B],
    );
    let (pa, _link_a) = switch.port_with_mac(mac_a);
    let (pb, _link_b) = switch.port_with_mac(mac_b);
    let (port_a, capture): (Box<dyn NetEndpoint>, _) = match &pcap_path {
        Some(path) => {
            let c = netvsp::pcap::Capture::new(pa, path)?;
            let handle = c.handle();
            (Box::new(c), Some(handle))
        }
        None => (Box::new(pa), None),
    };
    let mut a = guest("guest A", mac_a, [192, 0, 2, 1], port_a)?;
    let mut b = guest("guest B", mac_b, [192, 0, 2, 2], Box::new(pb))?;
    let b_addr = IpAddress::v4(192, 0, 2, 2);

    let mut sa = SocketSet::new(vec![]);
    let mut sb = SocketSet::new(vec![]);
    let icmp = sa.add(icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
    ));
    let client = sa.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
    ));
    let server = sb.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
    ));
    sb.get_mut::<tcp::Socket>(server).listen(5001)?;
    sa.get_mut::<icmp::Socket>(icmp)
        .bind(icmp::Endpoint::Ident(0x77))?;

    let pattern = |i: usize| (i * 131 + i / 7) as u8;
    let (mut pings, mut pongs) = (0u16, 0u16);
    let mut ping_sent_at = Instant::now();
    let mut rtts = Vec::new();
    let (mut sent, mut received, mut connected) = (0usize, 0usize, false);
    let mut tcp_start = None;
    let mut last_report = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while pongs < 5 || received < total {
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        let t = now();
        a.iface.poll(t, &mut a.dev, &mut sa);
        b.iface.poll(t, &mut b.dev, &mut sb);
        let s = sa.get_mut::<icmp::Socket>(icmp);
        if pings < 5 && pings == pongs && s.can_send() {
            let repr = Icmpv4Repr::EchoRequest {
                ident: 0x77,
                seq_no: pings,
                data: b"hv-vmbus-rs nic_demo",
            };
            let buf = s.send(repr.buffer_len(), b_addr)?;
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            );
            ping_sent_at = Instant::now();
            pings += 1;
        }
        while s.can_recv() {
            let (payload, _) = s.recv()?;
            let p = Icmpv4Packet::new_checked(payload)?;
            if let Ok(Icmpv4Repr::EchoReply { seq_no, .. }) =
                Icmpv4Repr::parse(&p, &ChecksumCapabilities::default())
                && seq_no == pongs
            {
                rtts.push(ping_sent_at.elapsed());
                pongs += 1;
                println!(
                    "ping 192.0.2.2: icmp_seq={seq_no} time={:?}",
                    rtts[rtts.len() - 1]
                );
            }
        }
        let c = sa.get_mut::<tcp::Socket>(client);
        if !connected && pongs == 5 {
            c.connect(a.iface.context(), (b_addr, 5001), 49152)?;
            connected = true;
            tcp_start = Some(Instant::now());
        }
        if c.can_send() && sent < total {
            sent += c.send(|buf| {
                let n = buf.len().min(total - sent);
                for (i, x) in buf[..n].iter_mut().enumerate() {
                    *x = pattern(sent + i);
                }
                (n, n)
            })?;
        }
        let srv = sb.get_mut::<tcp::Socket>(server);
        if srv.can_recv() {
            let base = received;
            let (n, bad) = srv.recv(|buf| {
                let bad = buf
                    .iter()
                    .enumerate()
                    .position(|(i, x)| *x != pattern(base + i));
                (buf.len(), (buf.len(), bad))
            })?;
            if let Some(i) = bad {
                return Err(format!("TCP byte {} corrupted", base + i).into());
            }
            received += n;
        }
        if last_report.elapsed() > Duration::from_secs(2) && received < total {
            println!("  TCP: {} / {} MiB checked", received >> 20, total >> 20);
            last_report = Instant::now();
        }
        a.dev.wait(Duration::from_micros(100));
        b.dev.wait(Duration::ZERO);
    }
    let secs = tcp_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!("\nreport");
    println!("  VMBus: guest A {}, guest B {}", a.vmbus, b.vmbus);
    println!(
        "  ping: 5/5 answered, min rtt {:?}",
        rtts.iter().min().copied().unwrap_or_default()
    );
    println!(
        "  TCP A -> B: {} MiB, every byte checked, {:.2} s, {:.0} Mbit/s",
        total >> 20,
        secs,
        total as f64 * 8.0 / secs / 1e6
    );
    for (name, g) in [("A", &mut a), ("B", &mut b)] {
        let h = g.host_stats.snapshot();
        let gs = g.dev.nic().stats();
        let queues = g.dev.nic().queues();
        let per_queue = |c: &[u64]| {
            c[..queues]
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let (tx_q, rx_q) = (
            per_queue(&gs.tx_queue_frames),
            per_queue(&gs.rx_queue_frames),
        );
        println!(
            "  NIC {name}: guest tx {} ({tx_q} per queue) rx {} ({rx_q} per queue; rx queue drops {}), host tx {} rx {} ({} pulled by subchannel threads), drops: no receive buffer {}, backend {}, bad packets {}, link {}",
            gs.tx_frames,
            gs.rx_frames,
            gs.rx_dropped,
            h.tx_frames,
            h.rx_frames,
            h.rx_steered,
            h.rx_no_buffer,
            h.tx_dropped,
            h.bad_packets,
            if g.dev.nic().link_up() { "up" } else { "down" },
        );
        // Every drop and refusal that happened, by counter (none in a clean run).
        let mut drops: Vec<String> = h
            .drops()
            .into_iter()
            .map(|(n, v)| format!("host {n} {v}"))
            .collect();
        drops.extend(
            g.host
                .stats()
                .problems()
                .into_iter()
                .map(|(n, v)| format!("bus {n} {v}")),
        );
        for (n, v) in [
            ("guest rx_dropped", gs.rx_dropped),
            ("guest bad_host_messages", gs.bad_host_messages),
            ("guest unknown_completions", gs.unknown_completions),
        ] {
            if v != 0 {
                drops.push(format!("{n} {v}"));
            }
        }
        println!(
            "  NIC {name} non-zero drop counters: {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        );
    }
    if switch.spoofed() > 0 {
        println!("  switch: {} spoofed frames dropped", switch.spoofed());
    }
    if let (Some(c), Some(path)) = (capture, pcap_path) {
        c.flush()?;
        println!(
            "  capture: {} frames of guest A in {path} ({} not written); read it with `tshark -r {path}`",
            c.frames(),
            c.write_errors()
        );
    }
    Ok(())
}
