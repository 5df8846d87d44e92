//! The synthetic NIC: frames/s guest to host and host to guest through netvsc, VMBus
//! and netvsp, with one queue and with two (subchannel + RSS; frames are IPv4/TCP
//! with a port that changes every frame, so flows spread over the queues), beside the
//! raw vmbus-ring moving the same frame sizes one way in the same run (one ring, and
//! two rings at once as the per-queue baseline for the 2-queue rows). Guest to host
//! sends in bursts (`Netvsc::send_deferred`, so frames share send sections as Linux
//! packs them under `xmit_more`); `guest_to_host_1q_unbatched` sends one message per
//! frame. With 2 queues each guest queue runs on a thread of its own
//! (`Netvsc::take_queue`), as does each host queue (netvsp's per-subchannel workers),
//! and the bench backend is a multi-queue one: queue 1's frames are pulled by the
//! host's queue-1 thread (each flow's queue and hash worked out once from the NIC's
//! steering).
//!
//! Run: `cargo bench -p vmbus-benches --bench nic`. For profiling,
//! `NIC_BENCH_PROBE=1` runs each direction once outside criterion, and
//! `NIC_BENCH_PROBE=g2h` (or `h2g`) `NIC_BENCH_FRAMES=N` only one direction at 1514
//! B (`NIC_BENCH_SIZE=64`: another size), e.g. under `valgrind --tool=callgrind` (`NIC_BENCH_UNBATCHED=1`: g2h one frame
//! per message; `NIC_BENCH_QUEUES=2`: on the 2-queue NIC).

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
use netvsc::{Netvsc, NetvscQueue};
use netvsp::{FrameMeta, NetEndpoint, NetRxQueue, NetTxQueue, Steer};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use vmbus::{GuestBus, HostBus};
use vmbus_benches::{NicRig, nic_rig_with};
use vmbus_ring::{DoubleMappedRingMem, Wake};

/// Counts the guest's frames (guest to host) and produces frames on demand (host to
/// guest). With 2 queues it is a multi-queue backend: queue 1's frames come from its
/// own source, pulled by the NIC's queue-1 thread. Each flow's queue and hash are
/// worked out once when the NIC installs its steering (what a switch would compute per
/// frame on the sending side is not measured here).
struct Bench {
    sent_by_guest: Arc<Sent>,
    frames: Arc<Frames>,
    queues: u16,
}

/// Frames in flight host to guest: the backend is credited with more while the guest
/// has received all but `WINDOW / 2` of those credited, so the guest's receive buffer
/// is never exhausted (exhaustion drops frames by design; this measures delivery, not
/// drops) and the pipeline never drains while the guest catches up.
const WINDOW: u64 = 2048;

/// A counter on a cache line of its own (queues counting side by side must not
/// bounce one line between their threads).
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

impl std::ops::Deref for Counter {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

/// Frames the guest sent, counted per queue.
#[derive(Default)]
struct Sent([Counter; 2]);

impl Sent {
    fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Acquire)).sum()
    }
}

/// Queue 1's transmit side of the bench backend.
struct BenchTx(Arc<Sent>);

impl NetTxQueue for BenchTx {
    fn transmit_meta(&mut self, frame: &[u8], _meta: FrameMeta) -> bool {
        black_box(frame);
        self.0.0[1].fetch_add(1, Ordering::Release);
        true
    }
}

/// A receive queue's view of [`Frames`]: the flows steered to it and the frames it
/// may still hand out.
struct QueueState {
    generation: u64,
    flows: Vec<(u16, u32)>,
    /// Frames taken from the shared budget, a few at a time (not one atomic update
    /// of a line both queues share per frame).
    credit: u64,
}

impl QueueState {
    const fn new() -> Self {
        Self {
            generation: u64::MAX,
            flows: Vec::new(),
            credit: 0,
        }
    }
}

/// The frames the bench backend hands out, shared by its receive queues.
/// Each field written while frames flow is on a line of its own.
struct Frames {
    budget: Counter,
    size: AtomicU64,
    /// Per queue: the TCP source ports (flows) the NIC's steering sends there, with
    /// their hash; empty until steering is installed (then all go to queue 0).
    flows: Mutex<Vec<Vec<(u16, u32)>>>,
    generation: AtomicU64,
    /// The wakers of the queues taken by the NIC's subchannel threads (rung with the
    /// NIC's own when the budget is refilled).
    wakers: Mutex<Vec<Arc<dyn Wake>>>,
    /// The NIC's own waker.
    waker: Mutex<Option<Arc<dyn Wake>>>,
    /// Frames to deliver host to guest (cumulative over runs).
    target: AtomicU64,
    /// Frames credited to the budget (cumulative).
    given: Counter,
    /// Frames the guest's threads have received (cumulative).
    got: Counter,
}

impl Frames {
    /// The guest received `k` more frames: credit the backend while the window allows
    /// (any receiving thread may do it; one wins each step).
    fn received(&self, k: u64) {
        let got = self.got.fetch_add(k, Ordering::AcqRel) + k;
        loop {
            let target = self.target.load(Ordering::Acquire);
            let given = self.given.load(Ordering::Acquire);
            if given >= target || given.saturating_sub(got) > WINDOW / 2 {
                return;
            }
            let add = (target - given).min(WINDOW / 2);
            if self
                .given
                .compare_exchange(given, given + add, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.budget.fetch_add(add, Ordering::AcqRel);
                if let Some(w) = self.waker.lock().unwrap().as_ref() {
                    w.wake();
                }
                for w in self.wakers.lock().unwrap().iter() {
                    w.wake();
                }
            }
        }
    }

    /// The next frame for queue `q` (the budget is shared by all queues).
    fn next(&self, q: usize, st: &mut QueueState, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        if st.credit == 0 {
            let b = self
                .budget
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                    (b > 0).then(|| b - b.min(16))
                })
                .ok()?;
            st.credit = b.min(16);
        }
        st.credit -= 1;
        let b = st.credit;
        let g = self.generation.load(Ordering::Acquire);
        if st.generation != g {
            st.flows = self
                .flows
                .lock()
                .unwrap()
                .get(q)
                .cloned()
                .unwrap_or_default();
            st.generation = g;
        }
        let n = (self.size.load(Ordering::Relaxed) as usize).min(buf.len());
        let (port, hash) = match st.flows.len() {
            0 => (b as u16, None),
            len => {
                let (p, h) = st.flows[b as usize % len];
                (p, Some(h))
            }
        };
        buf[..54].copy_from_slice(&tcp_header(port));
        Some((
            n,
            FrameMeta {
                rss_hash: hash,
                ..Default::default()
            },
        ))
    }
}

/// Queue 1's frames of the bench backend.
struct BenchQueue {
    frames: Arc<Frames>,
    state: QueueState,
}

impl NetRxQueue for BenchQueue {
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.frames.next(1, &mut self.state, buf)
    }
}

impl NetEndpoint for Bench {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        black_box(frame);
        self.sent_by_guest.0[0].fetch_add(1, Ordering::Release);
        true
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.receive_meta(buf).map(|(n, _)| n)
    }
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        thread_local! {
            static STATE: std::cell::RefCell<QueueState> =
                const { std::cell::RefCell::new(QueueState::new()) };
        }
        STATE.with(|c| self.frames.next(0, &mut c.borrow_mut(), buf))
    }
    fn set_waker(&mut self, waker: Arc<dyn Wake>) {
        *self.frames.waker.lock().unwrap() = Some(waker);
    }
    fn link_up(&self) -> bool {
        true
    }
    fn rx_queues(&self) -> u16 {
        self.queues
    }
    fn take_rx_queue(&mut self, q: u16, waker: Arc<dyn Wake>) -> Option<Box<dyn NetRxQueue>> {
        (q == 1 && self.queues == 2).then(|| {
            self.frames.wakers.lock().unwrap().push(waker);
            Box::new(BenchQueue {
                frames: self.frames.clone(),
                state: QueueState::new(),
            }) as Box<dyn NetRxQueue>
        })
    }
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        (q == 1 && self.queues == 2)
            .then(|| Box::new(BenchTx(self.sent_by_guest.clone())) as Box<dyn NetTxQueue>)
    }
    fn set_steering(&mut self, steer: Option<Steer>) {
        let mut flows = vec![Vec::new(); usize::from(self.queues)];
        if let Some(steer) = steer {
            let mut frame = [0u8; 54];
            for port in 0..256u16 {
                frame.copy_from_slice(&tcp_header(port));
                if let Some((q, h)) = steer(&frame)
                    && let Some(f) = flows.get_mut(usize::from(q))
                {
                    f.push((port, h));
                }
            }
        }
        *self.frames.flows.lock().unwrap() = flows;
        self.frames.generation.fetch_add(1, Ordering::Release);
    }
}

/// Ethernet + IPv4 + TCP headers to the NIC's MAC, source port `port`.
fn tcp_header(port: u16) -> [u8; 54] {
    let mut h = [0u8; 54];
    h[..6].copy_from_slice(&[0x00, 0x15, 0x5D, 0, 0, 1]);
    h[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    h[14] = 0x45;
    h[23] = 6;
    h[26..34].copy_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
    h[34..36].copy_from_slice(&port.to_be_bytes());
    h[36..38].copy_from_slice(&5001u16.to_be_bytes());
    h[46] = 0x50;
    h
}

/// A guest thread driving one taken queue ([`Netvsc::take_queue`]).
struct QueueThread {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<()>,
}

enum Job {
    /// Send `count` frames of `size` bytes in bursts (64 flows), then flush.
    Send { size: usize, count: u64 },
    /// Receive until the guest has received `target` frames, reporting them to
    /// `frames`.
    Recv { target: u64, frames: Arc<Frames> },
}

impl QueueThread {
    fn spawn(mut q: NetvscQueue) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for job in rx {
                match job {
                    Job::Send { size, count } => {
                        let frames = flows(size, 1000);
                        for i in 0..count {
                            q.send_deferred(&frames[i as usize % frames.len()]).unwrap();
                        }
                        q.flush().unwrap();
                    }
                    Job::Recv { target, frames } => {
                        receive(&frames, target, |t| {
                            q.recv_with(t, |f| {
                                black_box(f.first());
                            })
                            .unwrap()
                            .is_some()
                        });
                    }
                }
                done_tx.send(()).unwrap();
            }
        });
        Self { jobs, done }
    }
}

/// Receives frames with `recv` (given a timeout, true if it got one) until the guest's
/// threads have received `target` frames in all,
/// reporting them to `frames` in batches (so two receiving threads do not bounce one
/// counter per frame) and whenever the queue is empty. The frame is read where it lies
/// (`recv_with`), as a stack processing it in place would; `recv` would add a copy.
fn receive(frames: &Frames, target: u64, mut recv: impl FnMut(Duration) -> bool) {
    let mut unreported = 0;
    while frames.got.load(Ordering::Acquire) < target {
        if recv(Duration::ZERO) {
            unreported += 1;
            if unreported == 64 {
                frames.received(unreported);
                unreported = 0;
            }
            continue;
        }
        if unreported > 0 {
            frames.received(unreported);
            unreported = 0;
        }
        if recv(Duration::from_millis(1)) {
            unreported += 1;
        }
    }
    frames.received(unreported);
}

/// 64 frames of `size` bytes, TCP source ports `first..first + 64` (64 flows).
fn flows(size: usize, first: u16) -> Vec<Vec<u8>> {
    (first..first + 64)
        .map(|p| {
            let mut f = vec![0xA5u8; size];
            f[..54].copy_from_slice(&tcp_header(p));
            // The guest sends them: from its own MAC (the host drops any other, as
            // spoofed), to the peer's.
            let (dst, src) = f.split_at_mut(6);
            dst.swap_with_slice(&mut src[..6]);
            f
        })
        .collect()
}

struct Nic {
    _host: Arc<HostBus<SimPartition>>,
    _bus: GuestBus,
    nic: Netvsc,
    /// With 2 queues: the subchannel's own guest thread.
    queue1: Option<QueueThread>,
    host_stats: netvsp::NicCounters,
    sent: Arc<Sent>,
    frames: Arc<Frames>,
    /// For a polled host, the bench's thread that polls it (dropped last).
    _poller: Option<vmbus_benches::Poller>,
}

fn nic(queues: u16) -> Nic {
    nic_with(queues, false)
}

/// [`nic`], the host side polled by one thread of the bench (`polled`) or on the
/// library's threads.
fn nic_with(queues: u16, polled: bool) -> Nic {
    let sent = Arc::new(Sent::default());
    let frames = Arc::new(Frames {
        budget: Counter::default(),
        size: AtomicU64::new(64),
        flows: Mutex::new(Vec::new()),
        generation: AtomicU64::new(1),
        wakers: Mutex::new(Vec::new()),
        waker: Mutex::new(None),
        target: AtomicU64::new(0),
        given: Counter::default(),
        got: Counter::default(),
    });
    let ep = Bench {
        sent_by_guest: sent.clone(),
        frames: frames.clone(),
        queues,
    };
    let NicRig {
        host,
        bus,
        mut nic,
        host_stats,
        poller,
    } = nic_rig_with(Box::new(ep), queues, polled);
    // Each queue on a guest thread of its own, as a multi-queue guest runs them.
    // (NIC_BENCH_ONE_GUEST_THREAD=1: one guest thread drives both, for comparison.)
    let queue1 = if std::env::var_os("NIC_BENCH_ONE_GUEST_THREAD").is_some() {
        None
    } else {
        nic.take_queue(1).map(QueueThread::spawn)
    };
    Nic {
        _host: host,
        _bus: bus,
        nic,
        queue1,
        host_stats,
        sent,
        frames,
        _poller: poller,
    }
}

/// Guest to host in bursts: frames deferred (Linux's `xmit_more`) so several share a
/// send section and a completion, flushed at the end.
fn guest_to_host(n: &mut Nic, size: usize, iters: u64) -> Duration {
    guest_to_host_with(n, size, iters, true)
}

fn guest_to_host_with(n: &mut Nic, size: usize, iters: u64, batched: bool) -> Duration {
    let frames = flows(size, 0);
    let target = n.sent.total() + iters;
    let start = Instant::now();
    // With 2 queues, half the frames go from the subchannel's own thread.
    let mine = match &n.queue1 {
        Some(t) => {
            t.jobs
                .send(Job::Send {
                    size,
                    count: iters / 2,
                })
                .unwrap();
            iters - iters / 2
        }
        None => iters,
    };
    for i in 0..mine {
        let f = &frames[i as usize % frames.len()];
        if batched {
            n.nic.send_deferred(f).unwrap();
        } else {
            n.nic.send(f).unwrap();
        }
    }
    n.nic.flush().unwrap();
    if let Some(t) = &n.queue1 {
        t.done.recv().unwrap();
    }
    let mut last = (Instant::now(), n.sent.total());
    while n.sent.total() < target {
        n.nic.poll(Duration::from_micros(50)).unwrap();
        let now = n.sent.total();
        if now != last.1 {
            last = (Instant::now(), now);
        } else if last.0.elapsed() > Duration::from_secs(10) {
            // Waiting on would hang the bench run: say where it stopped and end it.
            eprintln!(
                "guest to host stalled: {} of {iters} frames on the wire; guest {:?}; host {:?}",
                iters - (target - now),
                n.nic.stats(),
                n.host_stats.snapshot()
            );
            std::process::exit(1);
        }
    }
    start.elapsed()
}

fn host_to_guest(n: &mut Nic, size: usize, iters: u64) -> Duration {
    n.frames.size.store(size as u64, Ordering::Relaxed);
    let frames = n.frames.clone();
    let start_got = frames.got.load(Ordering::Acquire);
    let target = frames.target.fetch_add(iters, Ordering::AcqRel) + iters;
    let watchdog = {
        let (frames, host_stats) = (frames.clone(), n.host_stats.clone());
        std::thread::spawn(move || {
            let mut last = (Instant::now(), start_got);
            loop {
                let got = frames.got.load(Ordering::Acquire);
                if got >= target {
                    return;
                }
                if got != last.1 {
                    last = (Instant::now(), got);
                } else if last.0.elapsed() > Duration::from_secs(10) {
                    // The receiving threads would wait forever: end the process.
                    eprintln!(
                        "host to guest stalled: {} of {iters} frames received, host stats \
                         {host_stats:?}",
                        got - start_got
                    );
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    // With 2 queues, the subchannel's thread receives what RSS puts on it.
    if let Some(t) = &n.queue1 {
        t.jobs
            .send(Job::Recv {
                target,
                frames: frames.clone(),
            })
            .unwrap();
    }
    frames.received(0);
    let nic = &mut n.nic;
    receive(&frames, target, |t| {
        nic.recv_with(t, |f| {
            black_box(f.first());
        })
        .unwrap()
        .is_some()
    });
    let elapsed = start.elapsed();
    if let Some(t) = &n.queue1 {
        t.done.recv().unwrap();
    }
    watchdog.join().unwrap();
    elapsed
}

fn bench(c: &mut Criterion) {
    let mut n = nic(1);
    let mut n2 = nic(2);
    // The host side poll-driven: bus and NIC polled by one thread of the bench.
    let mut np = nic_with(1, true);
    // Probes run on one queue, or on two with NIC_BENCH_QUEUES=2.
    if std::env::var("NIC_BENCH_QUEUES").as_deref() == Ok("2") {
        std::mem::swap(&mut n, &mut n2);
    }
    let probe_size: usize = std::env::var("NIC_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1514);
    if std::env::var("NIC_BENCH_PROBE").as_deref() == Ok("g2h") {
        let frames = std::env::var("NIC_BENCH_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000_000u64);
        let before = n.nic.signals();
        let batched = std::env::var_os("NIC_BENCH_UNBATCHED").is_none();
        let d = guest_to_host_with(&mut n, probe_size, frames, batched);
        let after = n.nic.signals();
        let messages: u64 = n.host_stats.snapshot().tx_queue_packets[..2]
            .iter()
            .copied()
            .sum();
        println!(
            "probe {}q guest_to_host {probe_size}: {:.2} Mpps; {messages} messages; signals to host \
             {}, from host {} (primary channel)",
            n.nic.queues(),
            frames as f64 / 1e6 / d.as_secs_f64(),
            after.0 - before.0,
            after.1 - before.1
        );
        return;
    }
    if std::env::var("NIC_BENCH_PROBE").as_deref() == Ok("h2g") {
        let frames = std::env::var("NIC_BENCH_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000_000u64);
        let d = host_to_guest(&mut n, probe_size, frames);
        println!(
            "probe {}q host_to_guest {probe_size}: {:.2} Mpps",
            n.nic.queues(),
            frames as f64 / 1e6 / d.as_secs_f64()
        );
        return;
    }
    if std::env::var_os("NIC_BENCH_PROBE").is_some() {
        for (q, n) in [(1, &mut n), (2, &mut n2)] {
            for size in [64usize, 1514] {
                let d = guest_to_host(n, size, 200_000);
                println!(
                    "probe {q}q guest_to_host {size}: {:.2} Mpps",
                    0.2 / d.as_secs_f64()
                );
                let d = host_to_guest(n, size, 2_000_000);
                println!(
                    "probe {q}q host_to_guest {size}: {:.2} Mpps",
                    2.0 / d.as_secs_f64()
                );
            }
        }
        return;
    }
    let mem = Arc::new(DoubleMappedRingMem::new(128 * 4096).unwrap());
    let mems: Vec<_> = (0..2)
        .map(|_| Arc::new(DoubleMappedRingMem::new(128 * 4096).unwrap()))
        .collect();
    for size in [64usize, 1514] {
        let mut g = c.benchmark_group(format!("nic_{size}B"));
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        g.bench_function(BenchmarkId::new("guest_to_host_1q", size), |b| {
            b.iter_custom(|i| guest_to_host(&mut n, size, i))
        });
        g.bench_function(BenchmarkId::new("guest_to_host_1q_unbatched", size), |b| {
            b.iter_custom(|i| guest_to_host_with(&mut n, size, i, false))
        });
        g.bench_function(BenchmarkId::new("host_to_guest_1q", size), |b| {
            b.iter_custom(|i| host_to_guest(&mut n, size, i))
        });
        g.bench_function(BenchmarkId::new("guest_to_host_1q_polled", size), |b| {
            b.iter_custom(|i| guest_to_host(&mut np, size, i))
        });
        g.bench_function(BenchmarkId::new("host_to_guest_1q_polled", size), |b| {
            b.iter_custom(|i| host_to_guest(&mut np, size, i))
        });
        g.bench_function(BenchmarkId::new("guest_to_host_2q", size), |b| {
            b.iter_custom(|i| guest_to_host(&mut n2, size, i))
        });
        g.bench_function(BenchmarkId::new("host_to_guest_2q", size), |b| {
            b.iter_custom(|i| host_to_guest(&mut n2, size, i))
        });
        g.bench_function(BenchmarkId::new("baseline_raw_ring", size), |b| {
            b.iter_custom(|i| vmbus_benches::stream_raw(&mem, size, i))
        });
        // Two rings streaming at once on the same cores: per ring, the baseline for a
        // queue of the 2-queue rows.
        g.bench_function(BenchmarkId::new("baseline_raw_ring_x2", size), |b| {
            b.iter_custom(|i| vmbus_benches::stream_raw_parallel(&mems, size, i))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
