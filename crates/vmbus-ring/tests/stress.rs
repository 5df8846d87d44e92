//! Two threads, one writer and one reader, move a million packets of varying sizes
//! through a ring in each wait mode; the reader checks every byte and the order.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_ring::*;

const PACKETS: u64 = 1_000_000;

/// Packet `seq` carries `seq % 300` bytes, each `(seq + i) as u8`, after the seq itself.
fn fill(seq: u64, buf: &mut [u8; 308]) -> usize {
    let n = (seq % 300) as usize;
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..8 + n].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    8 + n
}

fn run(
    mem: Arc<dyn RingMem>,
    policy: WaitPolicy,
) -> (WriterStats, ReaderStats, (u64, u64), (u64, u64)) {
    let reader_bell = Arc::new(Doorbell::new());
    let writer_bell = Arc::new(Doorbell::new());
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    let mut rx = IncomingRing::new(mem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (rb, wb) = (reader_bell.clone(), writer_bell.clone());
    let writer = std::thread::spawn(move || {
        let mut buf = [0u8; 308];
        for seq in 0..PACKETS {
            let n = fill(seq, &mut buf);
            let pkt = OutgoingPacket::inband(seq, 0);
            write_blocking(&mut tx, &pkt, &[&buf[..n]], &rb, &wb, policy).unwrap();
            // Commit in batches of varying size.
            if seq % 7 == 0 && tx.commit() {
                rb.ring();
            }
            assert!(Instant::now() < deadline, "writer stuck");
        }
        if tx.commit() {
            rb.ring();
        }
        tx.stats()
    });
    let mut expect = 0u64;
    let mut scratch = Vec::new();
    let mut want = [0u8; 308];
    while expect < PACKETS {
        wait_readable(&mut rx, &reader_bell, policy).unwrap();
        rx.mask_interrupts();
        loop {
            let p = match rx.try_read() {
                Ok(p) => p,
                Err(ReadError::Empty) => break,
                Err(e) => panic!("corrupt: {e}"),
            };
            assert_eq!(p.descriptor.transaction_id, expect, "order");
            let n = fill(expect, &mut want);
            p.with_bytes(&mut scratch, |b| {
                let data = &b[usize::from(p.descriptor.data_offset8) * 8..];
                assert_eq!(&data[..n], &want[..n], "bytes of packet {expect}");
            });
            expect += 1;
        }
        if rx.commit() {
            writer_bell.ring();
        }
        assert!(Instant::now() < deadline, "reader stuck at {expect}");
    }
    let w = writer.join().unwrap();
    (w, rx.stats(), reader_bell.counts(), writer_bell.counts())
}

#[test]
fn million_packets_busy_poll() {
    let mem: Arc<dyn RingMem> = Arc::new(DoubleMappedRingMem::new(64 * 1024).unwrap());
    let (w, r, rb, wb) = run(mem, WaitPolicy::BUSY_POLL);
    assert_eq!((w.packets, r.packets), (PACKETS, PACKETS));
    println!("busy-poll: writer {w:?} reader {r:?} reader bell {rb:?} writer bell {wb:?}");
}

#[test]
fn million_packets_signal_and_wait() {
    // No spinning at all: every wait goes through the interrupt-mask / pending-send-size
    // handshake and a real sleep, so a lost wake-up would show as a 100 ms stall per
    // occurrence and trip the deadline.
    let mem: Arc<dyn RingMem> = Arc::new(FlatRingMem::new(64 * 1024).unwrap());
    let policy = WaitPolicy {
        spin: 0,
        max_sleep: Duration::from_secs(5),
    };
    let start = Instant::now();
    let (w, r, rb, wb) = run(mem, policy);
    assert_eq!((w.packets, r.packets), (PACKETS, PACKETS));
    assert!(w.signals > 0 && rb.0 > 0, "the reader was woken by signals");
    // With 5 s sleeps a single lost wake-up costs 5 s; the whole run takes far less.
    assert!(start.elapsed() < Duration::from_secs(60));
    println!("signal-and-wait: writer {w:?} reader {r:?} reader bell {rb:?} writer bell {wb:?}");
}
