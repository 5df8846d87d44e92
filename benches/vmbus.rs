//! One VMBus channel over the runtime (sim partition, HostBus, GuestBus): streaming
//! throughput guest to host and round-trip latency, beside the raw vmbus-ring doing the
//! same work in the same run (same ring size, same wait policy, same copies).
//!
//! Run: `cargo bench -p vmbus-benches --bench vmbus`. `VMBUS_BENCH_PROBE=rtt` (or
//! `stream`) with `VMBUS_BENCH_ITERS=N` runs N round trips (packets) once, for
//! `scripts/icount.sh`.

// Benchmark harness code: criterion's macros generate undocumented items, and every
// input is built here.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hv_partition::SimPartition;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmbus::{
    Channel, EchoDevice, GuestBus, GuestConfig, HostBus, HostConfig, OfferParams, OpenRequest,
    VmbusDevice,
};
use vmbus_proto::guid::{Guid, class};
use vmbus_ring::{
    Doorbell, DoubleMappedRingMem, IncomingRing, OutgoingPacket, OutgoingRing, WaitPolicy,
    wait_readable,
};

const SIZE: usize = 1500;
/// Data pages per ring (the same for the runtime and the raw ring).
const RING_PAGES: usize = 64;

/// Reads every packet, copies its payload out, and counts.
struct Sink(Arc<AtomicU64>);

impl VmbusDevice for Sink {
    fn open(
        &mut self,
        channel: Channel,
        _req: &OpenRequest,
        _ctx: &vmbus::host::DeviceContext,
    ) -> bool {
        let count = self.0.clone();
        let Channel { mut receiver, .. } = channel;
        std::thread::spawn(move || {
            let mut dst = vec![0u8; 64 * 1024];
            let mut scratch = vec![0u8; 64 * 1024];
            loop {
                let r = receiver.recv_batch(256, |p| {
                    let n = p.len();
                    match p.view() {
                        Some(v) => dst[..n].copy_from_slice(v),
                        None => {
                            p.copy_to(&mut scratch);
                        }
                    }
                });
                match r {
                    Ok(n) => {
                        count.fetch_add(n as u64, Ordering::Release);
                    }
                    Err(_) => return,
                }
            }
        });
        true
    }
    fn close(&mut self, _relid: u32) {}
}

struct Bus {
    _host: HostBus<SimPartition>,
    _guest: GuestBus,
    sink: Channel,
    sink_count: Arc<AtomicU64>,
    echo: Channel,
}

fn bus() -> Bus {
    let partition = SimPartition::new(256 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let sink_count = Arc::new(AtomicU64::new(0));
    let sink_relid = host
        .offer(
            OfferParams::new(
                class::NETWORK,
                Guid {
                    data1: 1,
                    ..Guid::ZERO
                },
            ),
            Box::new(Sink(sink_count.clone())),
        )
        .unwrap();
    let echo_relid = host
        .offer(
            OfferParams::new(
                class::NETWORK,
                Guid {
                    data1: 2,
                    ..Guid::ZERO
                },
            ),
            Box::new(EchoDevice::default()),
        )
        .unwrap();
    let guest = GuestBus::new(partition, GuestConfig::default()).unwrap();
    guest.connect().unwrap();
    let offers = guest.request_offers().unwrap();
    let find = |r| offers.iter().find(|o| o.child_relid == r).unwrap();
    let sink = guest.open(find(sink_relid), RING_PAGES as u32, 1).unwrap();
    let echo = guest.open(find(echo_relid), RING_PAGES as u32, 1).unwrap();
    Bus {
        _host: host,
        _guest: guest,
        sink,
        sink_count,
        echo,
    }
}

fn stream_runtime(b: &mut Bus, iters: u64) -> Duration {
    let frame = [0xA5u8; SIZE];
    let target = b.sink_count.load(Ordering::Acquire) + iters;
    let start = Instant::now();
    let mut pending = 0;
    for i in 0..iters {
        b.sink
            .sender
            .write(&OutgoingPacket::inband(i, 0), &[&frame])
            .unwrap();
        pending += SIZE;
        if i % 8 == 7 || pending >= 4096 {
            b.sink.sender.flush();
            pending = 0;
        }
    }
    b.sink.sender.flush();
    while b.sink_count.load(Ordering::Acquire) < target {
        std::hint::spin_loop();
    }
    start.elapsed()
}

fn rtt_runtime(b: &mut Bus, iters: u64) -> Duration {
    let payload = [0x42u8; 64];
    let start = Instant::now();
    for i in 0..iters {
        b.echo
            .sender
            .send(&OutgoingPacket::inband(i, 0), &[&payload])
            .unwrap();
        let tid = b
            .echo
            .receiver
            .recv(|p| p.descriptor.transaction_id)
            .unwrap();
        assert_eq!(tid, i);
    }
    start.elapsed()
}

/// The raw-ring ping-pong: two rings, an echo thread, the same wait policy.
fn rtt_raw(iters: u64) -> Duration {
    let a = Arc::new(DoubleMappedRingMem::new(RING_PAGES * 4096).unwrap());
    let z = Arc::new(DoubleMappedRingMem::new(RING_PAGES * 4096).unwrap());
    let (mut ping_tx, mut ping_rx) = (
        OutgoingRing::new(a.clone()).unwrap(),
        IncomingRing::new(a).unwrap(),
    );
    let (mut pong_tx, mut pong_rx) = (
        OutgoingRing::new(z.clone()).unwrap(),
        IncomingRing::new(z).unwrap(),
    );
    let bell_a = Arc::new(Doorbell::new());
    let bell_z = Arc::new(Doorbell::new());
    let policy = WaitPolicy::default();
    let (ba, bz) = (bell_a.clone(), bell_z.clone());
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        for _ in 0..iters {
            wait_readable(&mut ping_rx, &ba, policy).unwrap();
            let (tid, n) = {
                let p = ping_rx.try_read().unwrap();
                (p.descriptor.transaction_id, p.copy_to(&mut buf))
            };
            ping_rx.commit();
            pong_tx
                .try_write(&OutgoingPacket::inband(tid, 0), &[&buf[16..n]])
                .unwrap();
            if pong_tx.commit() {
                bz.ring();
            }
        }
    });
    let payload = [0x42u8; 64];
    let start = Instant::now();
    for i in 0..iters {
        ping_tx
            .try_write(&OutgoingPacket::inband(i, 0), &[&payload])
            .unwrap();
        if ping_tx.commit() {
            bell_a.ring();
        }
        wait_readable(&mut pong_rx, &bell_z, policy).unwrap();
        let tid = pong_rx.try_read().unwrap().descriptor.transaction_id;
        assert_eq!(tid, i);
        pong_rx.commit();
    }
    let d = start.elapsed();
    echo.join().unwrap();
    d
}

fn runtime(c: &mut Criterion) {
    let mut b = bus();
    // `VMBUS_BENCH_PROBE=rtt VMBUS_BENCH_ITERS=N`: N round trips once, outside
    // criterion (for scripts/icount.sh under callgrind); `stream`: N packets one way.
    let probe_iters = || {
        std::env::var("VMBUS_BENCH_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000u64)
    };
    match std::env::var("VMBUS_BENCH_PROBE").as_deref() {
        Ok("rtt") => {
            let n = probe_iters();
            let d = rtt_runtime(&mut b, n);
            println!("probe rtt: {:.2} us", d.as_secs_f64() * 1e6 / n as f64);
            return;
        }
        Ok("stream") => {
            let n = probe_iters();
            let d = stream_runtime(&mut b, n);
            println!("probe stream: {:.2} Mpps", n as f64 / 1e6 / d.as_secs_f64());
            return;
        }
        _ => {}
    }
    let raw = Arc::new(DoubleMappedRingMem::new(RING_PAGES * 4096).unwrap());
    let mut g = c.benchmark_group("channel_stream_1500B");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function(BenchmarkId::new("vmbus_runtime", SIZE), |bch| {
        bch.iter_custom(|n| stream_runtime(&mut b, n))
    });
    g.bench_function(BenchmarkId::new("baseline_raw_ring", SIZE), |bch| {
        bch.iter_custom(|n| vmbus_benches::stream_raw(&raw, SIZE, n))
    });
    g.finish();
    let mut g = c.benchmark_group("channel_round_trip_64B");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("vmbus_runtime", |bch| {
        bch.iter_custom(|n| rtt_runtime(&mut b, n))
    });
    g.bench_function("baseline_raw_ring", |bch| bch.iter_custom(rtt_raw));
    g.finish();
}

criterion_group!(benches, runtime);
criterion_main!(benches);
