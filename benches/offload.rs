//! Software offload cost: the Internet checksum and LSO segmentation of a 64 KiB
//! packet (LSO: the largest, 62,782 bytes), beside a same-run memcpy of the same bytes.
//!
//! Run: `cargo bench -p vmbus-benches --bench offload`. Read the throughput ratios:
//! `checksum` against `baseline_memcpy` (a checksum reads the bytes once, a copy reads
//! and writes them), and `lso_max_61KiB` (one copy into the engine, 44 segments each copied
//! into a frame with its headers and checksums) against the copy.

#![allow(missing_docs, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netvsp::offload::{LSO_MAX_SIZE, TxEngine, TxRequest, internet_sum};
use std::hint::black_box;

const LEN: usize = 64 * 1024;

/// The loop netvsp used before: one big-endian 16-bit word at a time.
fn bytewise_sum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        if sum > 0xffff_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn data() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An Ethernet + IPv4 + TCP packet of `total` bytes (headers 54), as a guest hands it
/// to LSO: lengths and checksums left for the host.
fn lso_packet(total: usize) -> Vec<u8> {
    let mut p = vec![0u8; total];
    p[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    p[6..12].copy_from_slice(&[0x00, 0x15, 0x5d, 0, 0, 2]);
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    p[14] = 0x45;
    p[22] = 64;
    p[23] = 6;
    p[26..30].copy_from_slice(&[10, 0, 0, 2]);
    p[30..34].copy_from_slice(&[10, 0, 0, 1]);
    p[34..36].copy_from_slice(&40000u16.to_be_bytes());
    p[36..38].copy_from_slice(&5201u16.to_be_bytes());
    p[46] = 5 << 4;
    p[47] = 0x18;
    for (i, b) in p[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn checksum(c: &mut Criterion) {
    let src = data();
    let mut g = c.benchmark_group("checksum_64KiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("baseline_memcpy", |b| {
        let mut dst = vec![0u8; LEN];
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.bench_function("internet_sum", |b| {
        b.iter(|| black_box(internet_sum(black_box(&src))))
    });
    g.bench_function("bytewise_sum_before", |b| {
        b.iter(|| black_box(bytewise_sum(black_box(&src))))
    });
    g.finish();

    // The largest packet LSO takes: 62,768 bytes past the Ethernet header (what
    // netvsp offers in OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES), 44 segments at MSS 1448.
    let pkt = lso_packet(LSO_MAX_SIZE as usize + 14);
    let req = TxRequest {
        lso: Some((false, 1448, 34)),
        ..TxRequest::default()
    };
    let mut g = c.benchmark_group("lso_max_61KiB");
    g.throughput(Throughput::Bytes(pkt.len() as u64));
    g.bench_function("baseline_memcpy", |b| {
        let mut dst = vec![0u8; pkt.len()];
        b.iter(|| {
            dst.copy_from_slice(black_box(&pkt));
            black_box(&dst);
        })
    });
    g.bench_function("segment_mss1448", |b| {
        let mut engine = TxEngine::new();
        let mut frames = 0u32;
        b.iter(|| {
            let out = engine
                .process(black_box(&pkt), &req, &mut |f| {
                    black_box(f);
                    frames += 1;
                    true
                })
                .expect("segments");
            black_box(out);
        });
        black_box(frames);
    });
    g.finish();
}

criterion_group!(benches, checksum);
criterion_main!(benches);
