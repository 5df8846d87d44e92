//! Helpers shared by the benchmarks: the raw-ring baselines that the runtime and NIC
//! benchmarks measure themselves against.

// Benchmark code: every input is built here.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_ring::{
    Doorbell, DoubleMappedRingMem, IncomingRing, OutgoingPacket, OutgoingRing, WaitPolicy,
    wait_readable, write_blocking,
};

/// Streams `iters` packets of `size` payload bytes through the raw ring in `mem`, from a
/// writer (this thread) to a reader thread that copies each packet out, with the
/// default spin-then-sleep policy and commits every 8 packets or 4 KiB. Returns the
/// time until the reader has seen them all.
pub fn stream_raw(mem: &Arc<DoubleMappedRingMem>, size: usize, iters: u64) -> Duration {
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem.clone()).unwrap();
    let rb = Arc::new(Doorbell::new());
    let wb = Arc::new(Doorbell::new());
    let policy = WaitPolicy::default();
    let (rb2, wb2) = (rb.clone(), wb.clone());
    let reader = std::thread::spawn(move || {
        let mut dst = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < iters {
            wait_readable(&mut rx, &rb2, policy).unwrap();
            rx.mask_interrupts();
            while let Ok(p) = rx.try_read() {
                let n = p.len();
                dst[..n].copy_from_slice(p.view().unwrap());
                got += 1;
            }
            if rx.commit() {
                wb2.ring();
            }
        }
        black_box(&dst);
    });
    let frame = vec![0xA5u8; size];
    let start = Instant::now();
    let mut pending = 0;
    for i in 0..iters {
        write_blocking(
            &mut tx,
            &OutgoingPacket::inband(i, 0),
            &[&frame],
            &rb,
            &wb,
            policy,
        )
        .unwrap();
        pending += size;
        if i % 8 == 7 || pending >= 4096 {
            pending = 0;
            if tx.commit() {
                rb.ring();
            }
        }
    }
    if tx.commit() {
        rb.ring();
    }
    reader.join().unwrap();
    start.elapsed()
}

/// [`stream_raw`] on every ring in `mems` at once (a writer and a reader thread per
/// ring), `iters` packets in total: the baseline for a device with that many queues
/// on the same cores. Returns the time until every reader is done.
pub fn stream_raw_parallel(mems: &[Arc<DoubleMappedRingMem>], size: usize, iters: u64) -> Duration {
    let n = mems.len().max(1) as u64;
    let start = Instant::now();
    let writers: Vec<_> = mems
        .iter()
        .enumerate()
        .map(|(i, mem)| {
            let mem = mem.clone();
            // The first ring takes the remainder.
            let share = iters / n + if i == 0 { iters % n } else { 0 };
            std::thread::spawn(move || stream_raw(&mem, size, share))
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    start.elapsed()
}

/// A NIC on a simulated partition: netvsp over `endpoint` on the host bus, netvsc on
/// the guest bus, opened with `queues` queues, a 16 MiB receive buffer and a
/// 4,096-frame receive queue.
pub struct NicRig {
    /// The host bus (kept alive while the NIC runs).
    pub host: Arc<vmbus::HostBus<hv_partition::SimPartition>>,
    /// The guest bus (kept alive while the NIC runs).
    pub bus: vmbus::GuestBus,
    /// The guest's driver.
    pub nic: netvsc::Netvsc,
    /// The host NIC's counters.
    pub host_stats: netvsp::NicCounters,
    /// For a polled host: the thread that polls it (the VMM's, in a real one).
    pub poller: Option<Poller>,
}

/// The bench's own "VMM" thread, polling a polled bus and NIC whenever their eventfd
/// fires; stopped and joined on drop.
pub struct Poller {
    stop: Arc<std::sync::atomic::AtomicBool>,
    wake: Arc<vmbus_ring::EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        use vmbus_ring::Wake;
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Builds a [`NicRig`] over `endpoint`, the host side on the library's threads.
pub fn nic_rig(endpoint: Box<dyn netvsp::NetEndpoint>, queues: u16) -> NicRig {
    nic_rig_with(endpoint, queues, false)
}

/// Builds a [`NicRig`] over `endpoint`; with `polled`, the bus and the NIC start no
/// thread and one thread of the bench polls them both when their eventfd fires.
pub fn nic_rig_with(endpoint: Box<dyn netvsp::NetEndpoint>, queues: u16, polled: bool) -> NicRig {
    use std::sync::atomic::{AtomicBool, Ordering};
    use vmbus_proto::guid::{Guid, class};
    let partition = hv_partition::SimPartition::new(256 << 20, 2).unwrap();
    let wake = Arc::new(vmbus_ring::EventFd::new().unwrap());
    let (host, netvsp, nic_poller) = if polled {
        let host = vmbus::HostBus::polled(
            partition.clone(),
            vmbus::HostConfig::default(),
            wake.clone(),
        );
        let (n, p) =
            netvsp::Netvsp::polled(netvsp::NetvspConfig::default(), endpoint, wake.clone());
        (host, n, Some(p))
    } else {
        let host = vmbus::HostBus::new(partition.clone(), vmbus::HostConfig::default()).unwrap();
        (
            host,
            netvsp::Netvsp::new(netvsp::NetvspConfig::default(), endpoint),
            None,
        )
    };
    let host = Arc::new(host);
    let host_stats = netvsp.stats();
    let poller = nic_poller.map(|p| {
        let stop = Arc::new(AtomicBool::new(false));
        let (h, w, s) = (host.clone(), wake.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let mut busy = false;
                let mut timeout = Duration::from_millis(100);
                for st in [h.poll(), p.poll()] {
                    match st {
                        vmbus::PollStatus::Busy => busy = true,
                        vmbus::PollStatus::Idle(Some(t)) => timeout = timeout.min(t),
                        _ => {}
                    }
                }
                if !busy {
                    w.wait(timeout);
                }
            }
        });
        Poller {
            stop,
            wake,
            thread: Some(thread),
        }
    });
    let relid = host
        .offer(
            vmbus::OfferParams::new(class::NETWORK, Guid::ZERO),
            Box::new(netvsp),
        )
        .unwrap();
    let bus = vmbus::GuestBus::new(partition, vmbus::GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    let config = {
        let mut c = netvsc::NetvscConfig::default();
        c.recv_buffer_bytes = 16 << 20;
        c.rx_queue = 4096;
        c.queues = queues;
        c
    };
    let nic = netvsc::Netvsc::open(&bus, &offer, &config).unwrap();
    assert_eq!(nic.queues(), usize::from(queues));
    NicRig {
        host,
        bus,
        nic,
        host_stats,
        poller,
    }
}
