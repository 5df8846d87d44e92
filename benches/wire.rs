//! Wire-format parse/emit cost, against a same-run baseline: copying the same bytes.
//!
//! Run: `cargo bench -p vmbus-benches --bench wire`. The baseline (`memcpy`) is what any
//! parser must at least do once; the figures to read are the ratios.

// Benchmark harness code: criterion's macros generate undocumented items, and the
// inputs are built here, not received from a peer.
#![allow(missing_docs, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vmbus_proto::channel::{Message, OpenChannel};
use vmbus_proto::packet::{
    FLAG_COMPLETION_REQUESTED, Packet, PacketLimits, PacketType, emit_inband,
};

fn channel(c: &mut Criterion) {
    let open = Message::OpenChannel(
        OpenChannel {
            child_relid: 1,
            open_id: 1,
            ring_buffer_gpadl_handle: 0x10,
            target_vp: 0,
            downstream_ring_buffer_page_offset: 128,
            user_data: [0; 120],
        },
        None,
    );
    let (buf, n) = open.to_payload();
    let bytes = &buf[..n];
    let mut g = c.benchmark_group("channel_message_148B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_memcpy", |b| {
        let mut dst = [0u8; 240];
        b.iter(|| {
            dst[..n].copy_from_slice(black_box(bytes));
            black_box(&dst);
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| black_box(Message::parse(black_box(bytes))))
    });
    g.bench_function("emit", |b| {
        b.iter(|| black_box(black_box(&open).to_payload()))
    });
    g.finish();
}

fn packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_packet_parse");
    for size in [40usize, 1514] {
        let payload = vec![0xA5u8; size];
        let mut buf = vec![0u8; size + 64];
        let n = emit_inband(
            &mut buf,
            PacketType::DATA_INBAND,
            FLAG_COMPLETION_REQUESTED,
            7,
            &payload,
        )
        .expect("fits");
        let pkt = &buf[..n];
        let limits = PacketLimits::default();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("baseline_memcpy", size), &pkt, |b, p| {
            let mut dst = vec![0u8; p.len()];
            b.iter(|| {
                dst.copy_from_slice(black_box(p));
                black_box(&dst);
            })
        });
        g.bench_with_input(BenchmarkId::new("parse", size), &pkt, |b, p| {
            b.iter(|| black_box(Packet::parse(black_box(p), &limits)))
        });
    }
    g.finish();
}

criterion_group!(benches, channel, packets);
criterion_main!(benches);
