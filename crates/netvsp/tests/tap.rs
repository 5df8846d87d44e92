//! TAP backend in a network namespace of our own: Linux's `ping` reaches a smoltcp guest
//! with no loss, and a TCP stream from Linux arrives intact, at MTU 1500 and 9000; a
//! TAP with two receive queues steers Linux's frames to a 2-queue guest's queue threads. Skipped (with the reason
//! printed) without /dev/net/tun, root, `ip`, `ping` or `python3`. Addresses are from
//! the documentation range (RFC 5737) inside the namespace this test creates. The VMM
//! pulls a TAP's cable and plugs it back (the guest hears both; nothing passes while
//! it is out).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use hv_partition::SimPartition;
use netvsc::phy::NetvscPhy;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::tap::Tap;
use netvsp::*;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmbus::{GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::{Guid, class};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A TAP interface (opened by `open` under a name made from `tag`) moved into a
/// network namespace of its own, addressed 192.0.2.100/24 and up: the TAP, its name and
/// the namespace (deleted on drop). `None` (with the reason printed) when this machine
/// cannot: no /dev/net/tun, a missing tool, no CAP_NET_ADMIN.
fn tap_in_namespace(
    tag: &str,
    tools: &[&str],
    open: impl FnOnce(&str) -> std::io::Result<Tap>,
) -> Option<(Tap, String, Netns)> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED: /dev/net/tun is missing");
        return None;
    }
    for tool in tools {
        if !have(tool) {
            println!("SKIPPED: `{tool}` is not installed");
            return None;
        }
    }
    let id = std::process::id() % 100_000;
    let (tap_name, ns) = (format!("hvtap{id}{tag}"), format!("hvns{id}{tag}"));
    let tap = match open(&tap_name) {
        Ok(t) => t,
        Err(e) => {
            println!("SKIPPED: cannot create a TAP interface ({e}); needs root / CAP_NET_ADMIN");
            return None;
        }
    };
    if !run(&["ip", "netns", "add", &ns]) {
        println!("SKIPPED: cannot create a network namespace");
        return None;
    }
    let guard = Netns(ns.clone());
    for args in [
        vec!["ip", "link", "set", &tap_name, "netns", &ns],
        vec![
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "192.0.2.100/24",
            "dev",
            &tap_name,
        ],
        vec!["ip", "-n", &ns, "link", "set", &tap_name, "up"],
    ] {
        assert!(run(&args), "{args:?}");
    }
    Some((tap, tap_name, guard))
}

/// A simulated partition whose host offers a NetVSP on `tap` and whose guest bus is
/// connected: the host (keep it alive), the guest bus, the NIC's offer and counters.
fn guest_on(
    config: NetvspConfig,
    tap: Tap,
) -> (
    HostBus<SimPartition>,
    GuestBus,
    vmbus_proto::channel::OfferChannel,
    NicCounters,
) {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let netvsp = Netvsp::new(config, Box::new(tap));
    let stats = netvsp.stats();
    let relid = host
        .offer(
            OfferParams::new(class::NETWORK, Guid::ZERO),
            Box::new(netvsp),
        )
        .unwrap();
    let bus = GuestBus::new(partition, GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    (host, bus, offer, stats)
}

/// Checks that `buf` is the stream's bytes from `offset` on.
fn check(buf: &[u8], offset: usize) {
    for (i, x) in buf.iter().enumerate() {
        let k = offset + i;
        assert_eq!(*x, ((k * 131 + k / 7) & 255) as u8, "byte {k}");
    }
}

fn now() -> SInstant {
    SInstant::from_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    )
}

#[test]
fn linux_ping_and_tcp_reach_a_smoltcp_guest_through_tap() {
    tap_test(1500);
}

/// The same at MTU 9000: jumbo pings that must not fragment, and a TCP stream whose
/// segments are jumbo frames.
#[test]
fn jumbo_frames_through_tap() {
    tap_test(9000);
}

fn tap_test(mtu: u32) {
    let Some((tap, tap_name, guard)) =
        tap_in_namespace(&format!("m{mtu}"), &["ip", "ping", "python3"], |name| {
            Tap::open_with_max_frame(name, frame_size(mtu))
        })
    else {
        return;
    };
    let ns = guard.0.clone();
    let mtu_arg = mtu.to_string();
    assert!(run(&[
        "ip", "-n", &ns, "link", "set", &tap_name, "mtu", &mtu_arg
    ]));
    assert!(run(&["ip", "-n", &ns, "link", "set", "lo", "up"]));

    // The guest: netvsp on the TAP, netvsc + smoltcp at 192.0.2.1.
    let tap_stats = tap.stats();
    let mac = [0x02, 0x15, 0x5D, 0, 0, 0x42];
    let (_host, bus, offer, nic_stats) = guest_on(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c.mtu = mtu;
            c
        },
        tap,
    );
    let config = {
        let mut c = NetvscConfig::default();
        c.mtu = mtu;
        c
    };
    let mut dev = NetvscPhy::new(Netvsc::open(&bus, &offer, &config).unwrap());
    assert_eq!(dev.nic().mtu(), mtu);
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut dev,
        now(),
    );
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(192, 0, 2, 1), 24))
            .unwrap()
    });
    let mut sockets = SocketSet::new(vec![]);
    let server = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    sockets.get_mut::<tcp::Socket>(server).listen(5001).unwrap();

    let mut pump_until =
        |child: &mut Child, mut on_poll: Box<dyn FnMut(&mut SocketSet<'_>) + '_>| {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                iface.poll(now(), &mut dev, &mut sockets);
                on_poll(&mut sockets);
                if let Some(status) = child.try_wait().unwrap() {
                    return status;
                }
                assert!(Instant::now() < deadline, "child did not finish");
                dev.wait(Duration::from_millis(1));
            }
        };

    // 1. Linux's ping, no loss: full-size packets that may not be fragmented.
    let size = (mtu - 28).to_string();
    let mut ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &size,
            "192.0.2.1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = pump_until(&mut ping, Box::new(|_| {}));
    let mut out = String::new();
    std::io::Read::read_to_string(ping.stdout.as_mut().unwrap(), &mut out).unwrap();
    println!("{out}");
    assert!(status.success(), "ping failed: {out}");
    assert!(out.contains(" 0% packet loss"), "{out}");

    // 2. A TCP stream from Linux, every byte checked by the guest.
    const TOTAL: usize = 1 << 20;
    let script = format!(
        "import socket\ns=socket.create_connection(('192.0.2.1',5001),timeout=30)\ndata=bytes(((i*131+i//7)&255) for i in range({TOTAL}))\ns.sendall(data)\ns.close()"
    );
    let mut client = Command::new("ip")
        .args(["netns", "exec", &ns, "python3", "-c", &script])
        .spawn()
        .unwrap();
    let mut received = 0usize;
    let status = pump_until(
        &mut client,
        Box::new(|sockets| {
            let s = sockets.get_mut::<tcp::Socket>(server);
            while s.can_recv() {
                received += s
                    .recv(|buf| {
                        check(buf, received);
                        (buf.len(), buf.len())
                    })
                    .unwrap();
            }
        }),
    );
    assert!(status.success(), "TCP client failed");
    // Drain what arrived after the client closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received < TOTAL && Instant::now() < deadline {
        iface.poll(now(), &mut dev, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(server);
        while s.can_recv() {
            received += s
                .recv(|buf| {
                    check(buf, received);
                    (buf.len(), buf.len())
                })
                .unwrap();
        }
        dev.wait(Duration::from_millis(1));
    }
    assert_eq!(received, TOTAL, "TCP bytes received");
    // 1 MiB takes over 700 frames at MTU 1500, about 120 at 9000.
    let rx = nic_stats.snapshot().rx_frames;
    if mtu > 1500 {
        assert!(
            rx < 400,
            "{rx} frames: the stream did not use jumbo segments"
        );
    } else {
        assert!(rx > 700, "{rx} frames for 1 MiB at MTU 1500");
    }
    // Linux's TCP left segmentation and checksums to the TAP (TUNSETOFFLOAD): its GSO
    // packets were cut here, every byte of them checked above.
    println!(
        "ping: 5/5, no loss; TCP: {TOTAL} bytes from Linux checked; {} packets from the \
         kernel finished here (GSO or partial checksum), {} refused",
        tap_stats.offloaded_rx(),
        tap_stats.offload_errors()
    );
    assert!(tap_stats.offloaded_rx() > 0, "no GSO packet from Linux");
    assert_eq!(tap_stats.offload_errors(), 0);

    // 3. Offloads through the virtio-net header: a UDP datagram whose checksum the
    // guest left to the host reaches a Linux socket; an LSO TCP packet of 20000 bytes
    // goes to the kernel in one write and its TCP answers (a reset: nobody listens on
    // port 5003), so the kernel took the GSO header.
    let tap_mac = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "cat",
            &format!("/sys/class/net/{tap_name}/address"),
        ])
        .output()
        .unwrap();
    let tap_mac: Vec<u8> = String::from_utf8_lossy(&tap_mac.stdout)
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut udp_server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "python3",
            "-c",
            "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('192.0.2.100',5002))\nprint('ready',flush=True)\ns.settimeout(20)\nd,a=s.recvfrom(2000)\nprint(len(d),d[:8].hex(),a[0],flush=True)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(udp_server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let ip4 = |proto: u8, l4: &[u8]| {
        let mut f = tap_mac.clone();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 100]);
        // A valid IPv4 header checksum (checksum offload covers L4 only).
        let sum = f[14..34]
            .chunks(2)
            .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(l4);
        f
    };
    let mut udp = vec![0x30, 0x39, 0x13, 0x8a, 0, 0, 0xde, 0xad]; // checksum garbage
    udp.extend((0..600).map(|i| (i % 256) as u8));
    let udp_len = udp.len() as u16;
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let csum = netvsc::TxOffload {
        checksum: true,
        ..Default::default()
    };
    dev.nic().send_with(&ip4(17, &udp), &csum).unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(udp_server.wait().unwrap().success(), "UDP server: {line}");
    assert_eq!(line.trim(), "600 0001020304050607 192.0.2.1", "{line}");

    let mut tcp = vec![
        0x30, 0x39, 0x13, 0x8b, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
    ];
    tcp.extend_from_slice(&[0xbe, 0xef, 0, 0]);
    tcp.extend((0..20_000).map(|i| (i % 251) as u8));
    let lso = netvsc::TxOffload {
        lso_mss: Some(1448),
        ..Default::default()
    };
    dev.nic().send_with(&ip4(6, &tcp), &lso).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; frame_size(mtu)];
    let reset = loop {
        assert!(Instant::now() < deadline, "no TCP reset from Linux");
        let Some(n) = dev.nic().recv(&mut buf, Duration::from_millis(50)).unwrap() else {
            continue;
        };
        let f = &buf[..n];
        if n >= 54 && f[12..14] == [0x08, 0x00] && f[23] == 6 && f[34..36] == [0x13, 0x8b] {
            break f[47];
        }
    };
    assert_ne!(reset & 0x04, 0, "RST flag in {reset:#x}");
    let native = nic_stats.snapshot().tx_native_offloads;
    assert_eq!(
        native, 2,
        "both went to the kernel with a virtio-net header"
    );
    println!("offloads: UDP checksum and a 20000-byte LSO packet handed to the kernel");
}

/// A 2-queue guest on a TAP with 2 receive queues: the TAP's reader steers each frame
/// from Linux by the guest's RSS, and queue 1's frames are pulled by its own thread.
#[test]
fn tap_steers_frames_to_the_guests_queue_threads() {
    let Some((tap, tap_name, guard)) = tap_in_namespace("q", &["ip", "python3"], |name| {
        Tap::open_with_queues(name, frame_size(1500), 2)
    }) else {
        return;
    };
    let ns = guard.0.clone();
    assert_eq!(tap.rx_queues(), 2);
    let mac = [0x02, 0x15, 0x5D, 0, 0, 0x43];
    // The guest has no stack to answer ARP: its MAC is given.
    assert!(run(&[
        "ip",
        "-n",
        &ns,
        "neigh",
        "add",
        "192.0.2.1",
        "lladdr",
        "02:15:5d:00:00:43",
        "dev",
        &tap_name,
    ]));
    // Two kernel queues (IFF_MULTI_QUEUE), each read by a thread of its own.
    let sys = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ls",
            &format!("/sys/class/net/{tap_name}/queues"),
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&sys.stdout).to_string();
    assert_eq!(
        listing
            .split_whitespace()
            .filter(|q| q.starts_with("rx-"))
            .count(),
        2,
        "{listing}"
    );
    let (_host, bus, offer, stats) = guest_on(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c
        },
        tap,
    );
    let config = {
        let mut c = NetvscConfig::default();
        c.queues = 2;
        c
    };
    let mut nic = Netvsc::open(&bus, &offer, &config).unwrap();
    assert_eq!(nic.queues(), 2);
    // 64 TCP connection attempts from Linux: 64 flows (their SYNs, and the retries).
    let script = "import socket\nfor p in range(2000, 2064):\n    s = socket.socket()\n    s.setblocking(False)\n    try:\n        s.connect(('192.0.2.1', p))\n    except BlockingIOError:\n        pass\n    s.close()\n";
    let status = Command::new("ip")
        .args(["netns", "exec", &ns, "python3", "-c", script])
        .status()
        .unwrap();
    assert!(status.success());
    let mut syns = 0;
    let mut buf = [0u8; 1518];
    let deadline = Instant::now() + Duration::from_secs(10);
    while syns < 64 && Instant::now() < deadline {
        if let Some(n) = nic.recv(&mut buf, Duration::from_millis(100)).unwrap() {
            // IPv4/TCP with only SYN set, to the guest.
            if n >= 54 && buf[12..14] == [8, 0] && buf[23] == 6 && buf[47] == 0x02 {
                syns += 1;
            }
        }
    }
    assert!(syns >= 64, "{syns} SYNs arrived");
    let per_queue: Vec<u64> = stats.snapshot().rx_queue_frames[..2].to_vec();
    let steered = stats.snapshot().rx_steered;
    println!("per queue {per_queue:?}, pulled by queue 1's thread {steered}");
    assert!(
        per_queue.iter().all(|&n| n >= 8),
        "RSS spread: {per_queue:?}"
    );
    assert_eq!(
        steered, per_queue[1],
        "queue 1's frames came from its own TAP queue"
    );
    assert_eq!(stats.snapshot().bad_packets, 0);
}

/// Waits up to 5 s for `cond`, polling the guest's NIC meanwhile.
fn wait_for(nic: &mut Netvsc, what: &str, mut cond: impl FnMut(&Netvsc) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond(nic) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        nic.poll(Duration::from_millis(10)).unwrap();
    }
}

#[test]
fn the_vmm_pulls_and_plugs_a_taps_cable() {
    let Some((tap, _tap_name, guard)) = tap_in_namespace("link", &["ip", "ping"], Tap::open) else {
        return;
    };
    let link = tap.link_control();
    let mac = [0x02, 0x15, 0x5D, 0, 0, 0x43];
    let (_host, bus, offer, stats) = guest_on(
        {
            let mut c = NetvspConfig::default();
            c.mac = mac;
            c
        },
        tap,
    );
    let mut nic = Netvsc::open(&bus, &offer, &NetvscConfig::default()).unwrap();
    assert!(nic.link_up());
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());

    // Pulled: the guest hears of it, what it sends is dropped, and what the kernel
    // sends it (Linux's ARP for a ping) is not delivered.
    link.set(false);
    wait_for(&mut nic, "the disconnect indication", |n| !n.link_up());
    assert!(stats.snapshot().link_indications >= 1);
    // What the kernel sent before the pull (IPv6 neighbour discovery, MLD) may have
    // reached the guest ahead of the indication; from here on nothing may.
    let mut buf = [0u8; 1518];
    let mut before_pull = 0;
    while nic.recv(&mut buf, Duration::ZERO).unwrap().is_some() {
        before_pull += 1;
        assert!(before_pull < 1024, "frames keep coming with the link down");
    }
    let (sent, dropped) = (stats.snapshot().tx_frames, stats.snapshot().tx_dropped);
    nic.send(&frame).unwrap();
    wait_for(&mut nic, "the drop", |_| {
        stats.snapshot().tx_dropped > dropped
    });
    assert_eq!(stats.snapshot().tx_frames, sent);
    let before = link.dropped();
    let ns = guard.0.clone();
    let ping = |count: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "ping",
                "-c",
                count,
                "-W",
                "1",
                "192.0.2.1",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
    };
    // (No one answers it either way: what counts is where Linux's ARP went.)
    ping("1");
    assert!(link.dropped() > before, "the kernel's frames were dropped");
    assert_eq!(
        nic.recv(&mut buf, Duration::from_millis(100)).unwrap(),
        None
    );

    // Plugged back: the guest sees the link and its frames go out again.
    link.set(true);
    wait_for(&mut nic, "the connect indication", |n| n.link_up());
    nic.send(&frame).unwrap();
    wait_for(&mut nic, "the frame to go out", |_| {
        stats.snapshot().tx_frames > sent
    });
    nic.close(&bus).unwrap();
}
