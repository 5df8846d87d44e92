//! The synthetic NIC over the TAP backend: frames/s from the guest into the kernel and
//! from the kernel into the guest, through netvsc, VMBus, netvsp and a TAP interface in
//! a network namespace of its own, beside the TAP backend alone (the same frames written
//! to, or read from, a second TAP with no NIC behind it) as the baseline in the same
//! run. The difference is what the NIC path costs on top of the kernel's TAP.
//!
//! Guest to host: the guest sends UDP frames to a MAC no one has, so the kernel drops
//! each one at L2 just after the TAP hands it over: what is measured is the path into
//! the kernel, one `writev` per frame. Host to guest: a sender in the namespace (this
//! binary again, under `ip netns exec`) floods UDP datagrams to an address whose
//! neighbour entry is the guest's MAC; the kernel queues them on the TAP, and the rate
//! is what the guest receives per second (what the TAP's queue cannot take the kernel
//! drops, as a flooded NIC would).
//!
//! Needs root (CAP_NET_ADMIN), `/dev/net/tun` and `ip`; without them it prints why and
//! measures nothing. Run: `cargo bench -p vmbus-benches --bench tap`.

// Benchmark harness code: every input is built here.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use criterion::{BenchmarkId, Criterion, Throughput};
use netvsp::NetEndpoint;
use netvsp::tap::Tap;
use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_benches::{NicRig, nic_rig};
use vmbus_ring::Doorbell;

/// Set in the sender's environment: `ip:port:payload bytes`.
const SENDER: &str = "TAP_BENCH_SENDER";
/// The NIC's TAP subnet (the namespace's side) and the address standing for the guest.
const NIC_NET: (&str, &str) = ("192.0.2.100/24", "192.0.2.1");
/// The baseline TAP's subnet and the address behind it.
const BASE_NET: (&str, &str) = ("198.51.100.100/24", "198.51.100.1");
/// A MAC no one in the namespace has (guest to host frames are dropped at L2).
const NOBODY: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
/// Frames per criterion iteration.
const BATCH: u64 = 10_000;

fn main() {
    if let Ok(spec) = std::env::var(SENDER) {
        sender(&spec);
        return;
    }
    let Some(env) = Env::new() else {
        return;
    };
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, env);
    c.final_summary();
}

/// Floods UDP datagrams to `ip:port` with `payload` bytes each until killed.
fn sender(spec: &str) {
    let mut parts = spec.rsplitn(2, ':');
    let payload: usize = parts.next().unwrap().parse().unwrap();
    let to = parts.next().unwrap();
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let data = vec![0x5Au8; payload];
    loop {
        // A full device queue may refuse one (ENOBUFS): the next try goes on.
        let _ = socket.send_to(&data, to);
    }
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespace (deleted on drop).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        run(&["ip", "netns", "del", &self.0]);
    }
}

/// The namespace and its two TAPs.
struct Env {
    ns: Netns,
    nic_tap: Tap,
    base_tap: Tap,
}

impl Env {
    fn new() -> Option<Self> {
        if !std::path::Path::new("/dev/net/tun").exists() {
            println!("SKIPPED: /dev/net/tun is missing");
            return None;
        }
        if !run(&["ip", "-V"]) {
            println!("SKIPPED: `ip` (iproute2) is not installed");
            return None;
        }
        let id = std::process::id() % 100_000;
        let ns = format!("hvbench{id}");
        let names = [format!("hvbt{id}n"), format!("hvbt{id}b")];
        let (nic_tap, base_tap) = match (Tap::open(&names[0]), Tap::open(&names[1])) {
            (Ok(n), Ok(b)) => (n, b),
            (Err(e), _) | (_, Err(e)) => {
                println!(
                    "SKIPPED: cannot create a TAP interface ({e}); needs root / CAP_NET_ADMIN"
                );
                return None;
            }
        };
        if !run(&["ip", "netns", "add", &ns]) {
            println!("SKIPPED: cannot create a network namespace");
            return None;
        }
        let ns = Netns(ns);
        for (name, (addr, _)) in names.iter().zip([NIC_NET, BASE_NET]) {
            let ns = ns.0.as_str();
            for args in [
                vec!["ip", "link", "set", name, "netns", ns],
                vec!["ip", "-n", ns, "addr", "add", addr, "dev", name],
                vec!["ip", "-n", ns, "link", "set", name, "up"],
            ] {
                assert!(run(&args), "{args:?}");
            }
        }
        // The baseline's far end: a MAC no one has (its frames are only read off the TAP).
        ns.neighbour(BASE_NET.1, &mac_text(&NOBODY), &names[1]);
        Some(Self {
            ns,
            nic_tap,
            base_tap,
        })
    }
}

impl Netns {
    /// A permanent neighbour entry: datagrams to `ip` go out of `dev` to `mac`.
    fn neighbour(&self, ip: &str, mac: &str, dev: &str) {
        let args = [
            "ip",
            "-n",
            &self.0,
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ];
        assert!(run(&args), "{args:?}");
    }

    /// Starts a sender flooding `to` (port 9) with `payload`-byte datagrams.
    fn flood(&self, to: &str, payload: usize) -> Sender {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(exe)
            .env(SENDER, format!("{to}:9:{payload}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Sender(child)
    }
}

/// A running sender process, killed when dropped.
struct Sender(Child);

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// An IPv4/UDP frame of `size` bytes from `src` to `dst`.
fn udp_frame(size: usize, src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; size.max(60)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (f.len() - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..34].copy_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
    f[34..36].copy_from_slice(&5000u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// UDP payload bytes that make a `size`-byte frame.
fn payload_of(size: usize) -> usize {
    size.saturating_sub(42)
}

/// Receives with `recv` (a timeout; true if it got a frame) until nothing arrives for
/// 50 ms: what a finished run left behind does not count in the next.
fn drain(mut recv: impl FnMut(Duration) -> bool) {
    while recv(Duration::from_millis(50)) {}
}

/// Waits for the first frame (the sender is running), receives for 200 ms more so
/// every queue on the way is in its steady state (full, if the flood outruns the
/// receiver: frames buffered at the start then do not inflate the rate), then returns
/// the time `iters` more take to arrive.
fn time_arrivals(iters: u64, mut recv: impl FnMut(Duration) -> bool) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !recv(Duration::from_millis(10)) {
        assert!(
            Instant::now() < deadline,
            "no frame from the sender in 10 s"
        );
    }
    let settle = Instant::now() + Duration::from_millis(200);
    while Instant::now() < settle {
        recv(Duration::from_millis(10));
    }
    let start = Instant::now();
    let mut got = 0;
    let mut last = Instant::now();
    while got < iters {
        if recv(Duration::from_millis(10)) {
            got += 1;
            last = Instant::now();
        } else {
            assert!(
                last.elapsed() < Duration::from_secs(10),
                "the flood stopped: {got} of {iters} frames"
            );
        }
    }
    start.elapsed()
}

fn bench(c: &mut Criterion, env: Env) {
    let Env {
        ns,
        nic_tap: tap,
        mut base_tap,
    } = env;
    let tap_name = tap.name().to_string();
    let NicRig {
        host: _host,
        bus: _bus,
        mut nic,
        host_stats,
        ..
    } = nic_rig(Box::new(tap), 1);
    let guest_mac = nic.mac();
    ns.neighbour(NIC_NET.1, &mac_text(&guest_mac), &tap_name);
    if std::env::var_os("TAP_BENCH_PROBE").is_some() {
        // One second of each direction at 1514 B, with the counters (for profiling).
        for _ in 0..3 {
            let sender = ns.flood(NIC_NET.1, payload_of(1514));
            let mut got = 0u64;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) {
                if nic
                    .recv_with(Duration::from_millis(10), |f| black_box(f.len()))
                    .unwrap()
                    .is_some()
                {
                    got += 1;
                }
            }
            drop(sender);
            println!(
                "probe host_to_guest 1514: {got} frames in 1 s; host rx {} no buffer {}, \
                 guest {:?}",
                host_stats.snapshot().rx_frames,
                host_stats.snapshot().rx_no_buffer,
                nic.stats()
            );
        }
        return;
    }
    let base_waker = Arc::new(Doorbell::new());
    base_tap.set_waker(base_waker.clone());
    let mut base_buf = vec![0u8; 65536];
    for size in [64usize, 1514] {
        let mut g = c.benchmark_group(format!("tap_{size}B"));
        // An iteration is BATCH frames: a sample then spans many scheduler time
        // slices (4+ busy threads share 2 cores here), not a few frames.
        g.throughput(Throughput::Elements(BATCH));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        let frame = udp_frame(size, guest_mac, NOBODY);
        g.bench_function(BenchmarkId::new("guest_to_host", size), |b| {
            b.iter_custom(|iters| {
                let frames = iters * BATCH;
                let done = |s: &netvsp::NicCounters| {
                    let s = s.snapshot();
                    s.tx_frames + s.tx_dropped
                };
                let target = done(&host_stats) + frames;
                let start = Instant::now();
                for _ in 0..frames {
                    nic.send_deferred(&frame).unwrap();
                }
                nic.flush().unwrap();
                while done(&host_stats) < target {
                    nic.poll(Duration::from_micros(50)).unwrap();
                }
                start.elapsed()
            })
        });
        g.bench_function(BenchmarkId::new("baseline_tap_write", size), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters * BATCH {
                    black_box(base_tap.transmit(&frame));
                }
                start.elapsed()
            })
        });
        let mut guest_recv = |t: Duration| {
            nic.recv_with(t, |f| {
                black_box(f.first());
            })
            .unwrap()
            .is_some()
        };
        g.bench_function(BenchmarkId::new("host_to_guest", size), |b| {
            b.iter_custom(|iters| {
                let sender = ns.flood(NIC_NET.1, payload_of(size));
                let d = time_arrivals(iters * BATCH, &mut guest_recv);
                drop(sender);
                drain(&mut guest_recv);
                d
            })
        });
        let mut base_recv = |t: Duration| {
            let deadline = Instant::now() + t;
            loop {
                if base_tap.receive(&mut base_buf).is_some() {
                    return true;
                }
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                base_waker.wait(deadline - now);
            }
        };
        g.bench_function(BenchmarkId::new("baseline_tap_read", size), |b| {
            b.iter_custom(|iters| {
                let sender = ns.flood(BASE_NET.1, payload_of(size));
                let d = time_arrivals(iters * BATCH, &mut base_recv);
                drop(sender);
                drain(&mut base_recv);
                d
            })
        });
        g.finish();
    }
    println!(
        "tap: host stats after the runs: tx {} (dropped {}), rx {} (no receive buffer {})",
        host_stats.snapshot().tx_frames,
        host_stats.snapshot().tx_dropped,
        host_stats.snapshot().rx_frames,
        host_stats.snapshot().rx_no_buffer
    );
}
