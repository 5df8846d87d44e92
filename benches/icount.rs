//! Deterministic per-packet work for `scripts/icount.sh`, which runs it under valgrind's
//! callgrind and divides instruction counts: one thread plays both ends of a ring
//! (write, commit, read, commit), so every run of the same binary executes the same
//! instructions whatever the machine's load.
//!
//! ```text
//! icount RING SIZE COMMIT_EVERY PACKETS
//!   RING: mini (the minimal ring below), flat, double or paged (vmbus-ring over each
//!         memory); SIZE: payload bytes; COMMIT_EVERY: packets per commit
//! icount nic-g2h|nic-g2h-sub|nic-h2g SIZE 1 FRAMES
//!   the netvsp core alone, one direction (see icount_nic.rs); -sub: on a subchannel
//! icount vm-g2h|vm-h2g SIZE BATCH FRAMES [QUEUES]
//!   the whole NIC, host and guest, on one thread (see icount_vm.rs)
//! ```
//!
//! The minimal ring is the baseline of the issue that asked for these counts: the same
//! framing (16-byte descriptor, payload padded to 8, 8-byte trailer), Acquire/Release
//! indices on separate cache lines, each side caching the other's index, one copy in
//! and one out, nothing else (no validation, no signalling).

#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

#[path = "icount_nic.rs"]
mod icount_nic;
#[path = "icount_vm.rs"]
mod icount_vm;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use vmbus_ring::{
    DoubleMappedRingMem, FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing, PagedRingMem,
    RingMem, SharedMemory,
};

/// Ring data bytes: room for 16 packets of 16 KiB between commits.
const RING: usize = 1024 * 1024;

#[repr(align(64))]
struct Line(AtomicU32);

/// The minimal SPSC ring (see the module docs).
struct Mini {
    buf: Vec<u8>,
    write: Line,
    read: Line,
}

struct MiniWriter {
    w: u32,
    cached_r: u32,
}

struct MiniReader {
    r: u32,
    cached_w: u32,
}

impl Mini {
    fn cap(&self) -> u32 {
        self.buf.len() as u32
    }
    fn copy_in(&mut self, at: u32, src: &[u8]) {
        let at = at as usize;
        let first = src.len().min(self.buf.len() - at);
        self.buf[at..at + first].copy_from_slice(&src[..first]);
        if first < src.len() {
            self.buf[..src.len() - first].copy_from_slice(&src[first..]);
        }
    }
    fn copy_out(&self, at: u32, dst: &mut [u8]) {
        let at = at as usize;
        let first = dst.len().min(self.buf.len() - at);
        dst[..first].copy_from_slice(&self.buf[at..at + first]);
        if first < dst.len() {
            let n = dst.len() - first;
            dst[first..].copy_from_slice(&self.buf[..n]);
        }
    }
    fn wrap(&self, v: u32) -> u32 {
        if v >= self.cap() { v - self.cap() } else { v }
    }
}

impl MiniWriter {
    fn write(&mut self, ring: &mut Mini, payload: &[u8]) -> bool {
        let padded = payload.len().next_multiple_of(8) as u32;
        let total = 16 + padded + 8;
        let cap = ring.cap();
        let used = |w: u32, r: u32| if w >= r { w - r } else { cap - r + w };
        if cap - used(self.w, self.cached_r) <= total {
            self.cached_r = ring.read.0.load(Ordering::Acquire);
            if cap - used(self.w, self.cached_r) <= total {
                return false;
            }
        }
        let mut hdr = [0u8; 16];
        hdr[0..2].copy_from_slice(&6u16.to_le_bytes());
        hdr[2..4].copy_from_slice(&2u16.to_le_bytes());
        hdr[4..6].copy_from_slice(&(((total - 8) / 8) as u16).to_le_bytes());
        ring.copy_in(self.w, &hdr);
        let at = ring.wrap(self.w + 16);
        ring.copy_in(at, payload);
        let trailer = (u64::from(self.w) << 32).to_le_bytes();
        let at = ring.wrap(self.w + 16 + padded);
        ring.copy_in(at, &trailer);
        self.w = ring.wrap(self.w + total);
        true
    }
    fn commit(&self, ring: &Mini) {
        ring.write.0.store(self.w, Ordering::Release);
    }
}

impl MiniReader {
    fn read(&mut self, ring: &Mini, dst: &mut [u8]) -> bool {
        if self.r == self.cached_w {
            self.cached_w = ring.write.0.load(Ordering::Acquire);
            if self.r == self.cached_w {
                return false;
            }
        }
        let mut hdr = [0u8; 16];
        ring.copy_out(self.r, &mut hdr);
        let len = u32::from(u16::from_le_bytes([hdr[4], hdr[5]])) * 8;
        let n = (len as usize - 16).min(dst.len());
        ring.copy_out(ring.wrap(self.r + 16), &mut dst[..n]);
        self.r = ring.wrap(self.r + len + 8);
        true
    }
    fn commit(&self, ring: &Mini) {
        ring.read.0.store(self.r, Ordering::Release);
    }
}

fn mini(size: usize, every: u64, packets: u64) {
    let mut ring = Mini {
        buf: vec![0u8; RING],
        write: Line(AtomicU32::new(0)),
        read: Line(AtomicU32::new(0)),
    };
    let mut w = MiniWriter { w: 0, cached_r: 0 };
    let mut r = MiniReader { r: 0, cached_w: 0 };
    let payload = vec![0xA5u8; size];
    let mut dst = vec![0u8; size.next_multiple_of(8)];
    let mut n = 0;
    while n < packets {
        let batch = every.min(packets - n);
        for _ in 0..batch {
            assert!(w.write(&mut ring, black_box(&payload)));
        }
        w.commit(&ring);
        for _ in 0..batch {
            assert!(r.read(&ring, &mut dst));
        }
        r.commit(&ring);
        n += batch;
    }
    black_box(&dst);
}

fn vmbus<M: RingMem + Clone>(mem: M, size: usize, every: u64, packets: u64) {
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem).unwrap();
    let payload = vec![0xA5u8; size];
    let pkt = OutgoingPacket::inband(0, 0);
    let mut dst = vec![0u8; size];
    let mut n = 0;
    while n < packets {
        let batch = every.min(packets - n);
        for _ in 0..batch {
            tx.try_write(&pkt, &[black_box(&payload)]).unwrap();
        }
        black_box(tx.commit());
        for _ in 0..batch {
            let p = rx.try_read().unwrap();
            match p.view() {
                Some(v) => dst.copy_from_slice(&v[16..16 + size]),
                None => {
                    p.copy_from(16, &mut dst);
                }
            }
        }
        black_box(rx.commit());
        n += batch;
    }
    black_box(&dst);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: icount mini|flat|double|paged|nic-g2h|nic-g2h-sub|nic-h2g|vm-g2h|vm-h2g SIZE COMMIT_EVERY|BATCH PACKETS [QUEUES]";
    let (args, queues) = match &args[..] {
        [a @ .., q] if args.len() == 5 => (a, q.parse::<u16>().expect("QUEUES")),
        a => (a, 1),
    };
    let [kind, size, every, packets] = args else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("SIZE");
    let every: u64 = every.parse().expect("COMMIT_EVERY");
    let packets: u64 = packets.parse().expect("PACKETS");
    match kind.as_str() {
        "mini" => mini(size, every, packets),
        "nic-g2h" => icount_nic::g2h(size, packets, 0),
        "nic-g2h-sub" => icount_nic::g2h(size, packets, 1),
        "nic-h2g" => icount_nic::h2g(size, packets),
        "vm-g2h" => icount_vm::g2h(size, queues, every, packets),
        "vm-h2g" => icount_vm::h2g(size, queues, every, packets),
        "flat" => vmbus(
            Arc::new(FlatRingMem::new(RING).unwrap()),
            size,
            every,
            packets,
        ),
        "double" => vmbus(
            Arc::new(DoubleMappedRingMem::new(RING).unwrap()),
            size,
            every,
            packets,
        ),
        "paged" => {
            // Pages in reverse order, as a GPADL may list them: no two data pages are
            // adjacent in the mapping.
            let pages = RING / 4096;
            let region = Arc::new(SharedMemory::new((2 * pages + 3) * 4096).unwrap());
            let data: Vec<u64> = (0..pages as u64).rev().map(|p| p * 2 + 1).collect();
            let mem = PagedRingMem::new(region, (2 * pages + 2) as u64, &data).unwrap();
            vmbus(Arc::new(mem), size, every, packets)
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
