//! vmbus-ring throughput between two threads, beside three baselines measured in the
//! same run:
//!
//! - `mini_ring`: a minimal SPSC byte ring with the same framing (16-byte descriptor,
//!   payload padded to 8, 8-byte trailer) over the same memory, no validation, no
//!   signal logic, busy-polling: the ceiling for this framing on this machine. Both it
//!   and vmbus-ring run over the double-mapped memfd ring and over a flat heap ring
//!   (`_flat`), since the two memories differ (anonymous heap memory can be backed by
//!   transparent huge pages, a shared memfd mapping is not);
//! - `crossbeam`: crossbeam-channel `bounded(1024)` carrying `Vec<u8>`;
//! - `memcpy`: one thread copying the same sizes (what one copy costs).
//!
//! The `commit_*` groups commit per packet and per 16 on both sides, vmbus-ring beside
//! `baseline_mini_layout`: the minimal ring over the VMBus control page (both indices
//! and the interrupt mask on one cache line) paying, at each commit, the fence and the
//! reads the signal rules need. That is the floor for this layout; the plain `mini_ring`
//! with its indices alone is the floor for the framing.
//!
//! Both sides do the same work per packet: the writer copies the payload in, the reader
//! copies it out. Run: `cargo bench -p vmbus-benches --bench ring`.

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
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_ring::{
    Doorbell, DoubleMappedRingMem, FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing,
    ReadError, RingMem, WaitPolicy, WriteError, wait_readable, write_blocking,
};

const SIZES: [usize; 3] = [64, 1500, 16 * 1024];
const RING: usize = 256 * 1024;
/// The writer publishes at least every this many packets...
const BATCH: u64 = 8;
/// ...or this many bytes, so large packets reach the reader without delay.
const BATCH_BYTES: usize = 4096;

fn vmbus_busy<M: RingMem + 'static>(mem: &Arc<M>, size: usize, iters: u64) -> Duration {
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem.clone()).unwrap();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let payload = vec![0xA5u8; size];
        let pkt = OutgoingPacket::inband(0, 0);
        let mut n = 0;
        let mut pending = 0;
        while n < iters {
            match tx.try_write(&pkt, &[&payload]) {
                Ok(()) => {
                    n += 1;
                    pending += size;
                    if n % BATCH == 0 || pending >= BATCH_BYTES {
                        tx.commit();
                        pending = 0;
                    }
                }
                Err(WriteError::Full { .. }) => {
                    tx.commit();
                    pending = 0;
                    std::hint::spin_loop();
                }
                Err(e) => panic!("{e}"),
            }
        }
        tx.commit();
    });
    let mut dst = vec![0u8; size];
    let mut scratch = vec![0u8; size + 64];
    let mut got = 0;
    while got < iters {
        loop {
            match rx.try_read() {
                Ok(p) => {
                    // In place when contiguous (always with the double mapping).
                    match p.view() {
                        Some(v) => dst.copy_from_slice(&v[16..16 + size]),
                        None => {
                            p.copy_to(&mut scratch);
                            dst.copy_from_slice(&scratch[16..16 + size]);
                        }
                    }
                    got += 1;
                }
                Err(ReadError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        rx.commit();
        std::hint::spin_loop();
    }
    writer.join().unwrap();
    black_box(&dst);
    start.elapsed()
}

fn vmbus_wait(mem: &Arc<DoubleMappedRingMem>, size: usize, iters: u64) -> Duration {
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem.clone()).unwrap();
    let reader_bell = Arc::new(Doorbell::new());
    let writer_bell = Arc::new(Doorbell::new());
    let policy = WaitPolicy::SPIN_THEN_SLEEP;
    let (rb, wb) = (reader_bell.clone(), writer_bell.clone());
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let payload = vec![0xA5u8; size];
        let pkt = OutgoingPacket::inband(0, 0);
        let mut pending = 0;
        for n in 1..=iters {
            write_blocking(&mut tx, &pkt, &[&payload], &rb, &wb, policy).unwrap();
            pending += size;
            if n % BATCH == 0 || pending >= BATCH_BYTES {
                pending = 0;
                if tx.commit() {
                    rb.ring();
                }
            }
        }
        if tx.commit() {
            rb.ring();
        }
    });
    let mut dst = vec![0u8; size];
    let mut got = 0;
    while got < iters {
        wait_readable(&mut rx, &reader_bell, policy).unwrap();
        rx.mask_interrupts();
        while let Ok(p) = rx.try_read() {
            let v = p.view().expect("double mapping");
            dst.copy_from_slice(&v[16..16 + size]);
            got += 1;
        }
        if rx.commit() {
            writer_bell.ring();
        }
    }
    writer.join().unwrap();
    black_box(&dst);
    start.elapsed()
}

/// The minimal ring: same framing and memory, indices published per packet, the peer's
/// index cached, no validation and no signalling.
fn mini_ring<M: RingMem + 'static>(mem: &Arc<M>, size: usize, iters: u64) -> Duration {
    let cap = mem.data_len() as u32;
    let total = (16 + size.next_multiple_of(8) + 8) as u32;
    let used = move |w: u32, r: u32| if w >= r { w - r } else { cap - r + w };
    let wmem = mem.clone();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let payload = vec![0xA5u8; size];
        let ctl = wmem.control();
        let mut w = ctl.write_index();
        let mut r = ctl.read_index();
        let mut hdr = [0u8; 16];
        hdr[4..6].copy_from_slice(&((total - 8) as u16 / 8).to_le_bytes());
        for _ in 0..iters {
            while cap - used(w, r) <= total {
                r = ctl.read_index();
                std::hint::spin_loop();
            }
            wmem.write_data(w as usize, &hdr);
            wmem.write_data(((w + 16) % cap) as usize, &payload);
            let tail = ((w + total - 8) % cap) as usize;
            wmem.write_data(tail, &(u64::from(w) << 32).to_le_bytes());
            w = (w + total) % cap;
            ctl.set_write_index(w);
        }
    });
    let ctl = mem.control();
    let mut r = ctl.read_index();
    let mut w = ctl.write_index();
    let mut hdr = [0u8; 16];
    let mut dst = vec![0u8; size];
    for _ in 0..iters {
        while used(w, r) == 0 {
            w = ctl.write_index();
            std::hint::spin_loop();
        }
        mem.read_data(r as usize, &mut hdr);
        mem.read_data(((r + 16) % cap) as usize, &mut dst);
        r = (r + total) % cap;
        ctl.set_read_index(r);
    }
    writer.join().unwrap();
    black_box((&dst, &hdr));
    start.elapsed()
}

/// vmbus-ring between two busy-polling threads, committing every `every` packets on
/// both sides (the writer also when the ring is full, the reader when it runs dry).
fn vmbus_every<M: RingMem + 'static>(
    mem: &Arc<M>,
    size: usize,
    iters: u64,
    every: u64,
) -> Duration {
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem.clone()).unwrap();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let payload = vec![0xA5u8; size];
        let pkt = OutgoingPacket::inband(0, 0);
        let mut n = 0;
        while n < iters {
            match tx.try_write(&pkt, &[&payload]) {
                Ok(()) => {
                    n += 1;
                    if n % every == 0 {
                        black_box(tx.commit());
                    }
                }
                Err(WriteError::Full { .. }) => {
                    black_box(tx.commit());
                    std::hint::spin_loop();
                }
                Err(e) => panic!("{e}"),
            }
        }
        black_box(tx.commit());
    });
    let mut dst = vec![0u8; size];
    let mut got = 0;
    let mut since = 0;
    while got < iters {
        match rx.try_read() {
            Ok(p) => {
                let v = p.view().expect("double mapping");
                dst.copy_from_slice(&v[16..16 + size]);
                got += 1;
                since += 1;
                if since == every {
                    black_box(rx.commit());
                    since = 0;
                }
            }
            Err(ReadError::Empty) => {
                black_box(rx.commit());
                since = 0;
                std::hint::spin_loop();
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Publish the last reads: the next run starts from the control page.
    black_box(rx.commit());
    writer.join().unwrap();
    black_box(&dst);
    start.elapsed()
}

/// The floor for the VMBus control-page layout: the minimal ring (same framing, no
/// validation) over the same control page (write index, read index and interrupt mask
/// on one cache line), committing every `every` packets with what the signal rules
/// cost at a commit: the writer's full fence and its reads of `interrupt_mask` and
/// `read_index`, the reader's full fence and its read of `pending_send_sz`.
fn mini_layout<M: RingMem + 'static>(
    mem: &Arc<M>,
    size: usize,
    iters: u64,
    every: u64,
) -> Duration {
    use std::sync::atomic::{Ordering, fence};
    let cap = mem.data_len() as u32;
    let total = (16 + size.next_multiple_of(8) + 8) as u32;
    let used = move |w: u32, r: u32| if w >= r { w - r } else { cap - r + w };
    let wmem = mem.clone();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let payload = vec![0xA5u8; size];
        let ctl = wmem.control();
        let mut w = ctl.write_index();
        let mut r = ctl.read_index();
        let mut hdr = [0u8; 16];
        hdr[4..6].copy_from_slice(&((total - 8) as u16 / 8).to_le_bytes());
        let mut signals = 0u64;
        let mut commit = |w: u32, old: &mut u32| {
            if w == *old {
                return;
            }
            ctl.set_write_index(w);
            fence(Ordering::SeqCst);
            if ctl.interrupt_mask() == 0 && ctl.read_index() == *old {
                signals += 1;
            }
            *old = w;
        };
        let mut published = w;
        for n in 1..=iters {
            while cap - used(w, r) <= total {
                commit(w, &mut published);
                r = ctl.read_index();
                std::hint::spin_loop();
            }
            let at = w as usize;
            wmem.write_data(at, &hdr);
            wmem.write_data((at + 16) % cap as usize, &payload);
            let tail = ((w + total - 8) % cap) as usize;
            wmem.write_data(tail, &(u64::from(w) << 32).to_le_bytes());
            w = (w + total) % cap;
            if n % every == 0 {
                commit(w, &mut published);
            }
        }
        commit(w, &mut published);
        black_box(signals);
    });
    let ctl = mem.control();
    let mut r = ctl.read_index();
    let mut w = ctl.write_index();
    let mut hdr = [0u8; 16];
    let mut dst = vec![0u8; size];
    let mut wakes = 0u64;
    let commit = |r: u32, old: &mut u32, wakes: &mut u64| {
        if r == *old {
            return;
        }
        ctl.set_read_index(r);
        *old = r;
        fence(Ordering::SeqCst);
        if ctl.pending_send_size() != 0 {
            *wakes += 1;
        }
    };
    let mut published = r;
    let mut since = 0;
    for _ in 0..iters {
        while used(w, r) == 0 {
            commit(r, &mut published, &mut wakes);
            since = 0;
            w = ctl.write_index();
            std::hint::spin_loop();
        }
        mem.read_data(r as usize, &mut hdr);
        mem.read_data(((r + 16) % cap) as usize, &mut dst);
        r = (r + total) % cap;
        since += 1;
        if since == every {
            commit(r, &mut published, &mut wakes);
            since = 0;
        }
    }
    commit(r, &mut published, &mut wakes);
    writer.join().unwrap();
    black_box((&dst, &hdr, wakes));
    start.elapsed()
}

fn crossbeam(size: usize, iters: u64) -> Duration {
    let (s, r) = crossbeam_channel::bounded::<Vec<u8>>(1024);
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let payload = vec![0xA5u8; size];
        for _ in 0..iters {
            s.send(payload.clone()).unwrap();
        }
    });
    let mut dst = vec![0u8; size];
    for _ in 0..iters {
        let v = r.recv().unwrap();
        dst.copy_from_slice(&v);
    }
    writer.join().unwrap();
    black_box(&dst);
    start.elapsed()
}

fn memcpy(size: usize, iters: u64) -> Duration {
    let src = vec![0xA5u8; size];
    let mut dst = vec![0u8; size];
    let start = Instant::now();
    for _ in 0..iters {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    }
    start.elapsed()
}

fn ring(c: &mut Criterion) {
    let double = Arc::new(DoubleMappedRingMem::new(RING).unwrap());
    let flat = Arc::new(FlatRingMem::new(RING).unwrap());
    for size in SIZES {
        let mut g = c.benchmark_group(format!("ring_{size}B"));
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        g.bench_function(BenchmarkId::new("vmbus_ring_busy_poll", size), |b| {
            b.iter_custom(|iters| vmbus_busy(&double, size, iters))
        });
        g.bench_function(BenchmarkId::new("vmbus_ring_busy_poll_flat", size), |b| {
            b.iter_custom(|iters| vmbus_busy(&flat, size, iters))
        });
        g.bench_function(BenchmarkId::new("vmbus_ring_signal_wait", size), |b| {
            b.iter_custom(|iters| vmbus_wait(&double, size, iters))
        });
        g.bench_function(BenchmarkId::new("baseline_mini_ring", size), |b| {
            b.iter_custom(|iters| mini_ring(&double, size, iters))
        });
        g.bench_function(BenchmarkId::new("baseline_mini_ring_flat", size), |b| {
            b.iter_custom(|iters| mini_ring(&flat, size, iters))
        });
        g.bench_function(BenchmarkId::new("baseline_crossbeam_vec", size), |b| {
            b.iter_custom(|iters| crossbeam(size, iters))
        });
        g.bench_function(BenchmarkId::new("baseline_memcpy_1thread", size), |b| {
            b.iter_custom(|iters| memcpy(size, iters))
        });
        g.finish();
    }
}

/// Commit per packet and per 16, vmbus-ring against the floor of the VMBus control-page
/// layout ([`mini_layout`]), in the same run over the same double-mapped memory.
fn commit(c: &mut Criterion) {
    let double = Arc::new(DoubleMappedRingMem::new(RING).unwrap());
    for size in SIZES {
        let mut g = c.benchmark_group(format!("commit_{size}B"));
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        for every in [1u64, 16] {
            g.bench_function(
                BenchmarkId::new(format!("vmbus_ring_every{every}"), size),
                |b| b.iter_custom(|iters| vmbus_every(&double, size, iters, every)),
            );
            g.bench_function(
                BenchmarkId::new(format!("baseline_mini_layout_every{every}"), size),
                |b| b.iter_custom(|iters| mini_layout(&double, size, iters, every)),
            );
        }
        g.finish();
    }
}

criterion_group!(benches, ring, commit);
criterion_main!(benches);
