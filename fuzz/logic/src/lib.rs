//! Bodies of the fuzz targets, shared by `cargo fuzz` (nightly, `fuzz/`) and
//! `cargo test` (stable, over a seed corpus), so CI exercises every target.
//!
//! Each function takes arbitrary bytes, runs the parser the target is named after,
//! and checks the invariants that must hold for any input: no panic, and for every
//! input that parses, emitting and re-parsing gives the same value. A violated
//! invariant panics, which the fuzzer reports as a crash.

#![forbid(unsafe_code)]
// A fuzz body reports a violated invariant by panicking: that is its whole purpose.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use hv_hypercall::decode::{
    GpaReadError, GuestMemoryRead, HypercallRegisters, HypercallRequest, decode,
};
use vmbus_proto::channel::Message;
use vmbus_proto::channel::gpadl::{GpadlAccumulator, GpadlLimits};
use vmbus_proto::packet::{Packet, PacketLimits};
use vmbus_proto::{FeatureFlags, VmbusVersion};

pub mod seeds;

/// A fuzz-target body.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: &[(&str, Target)] = &[
    ("channel_message", channel_message),
    ("ring_packet", ring_packet),
    ("hypercall_decode", hypercall_decode),
    ("nvsp", nvsp),
    ("rndis", rndis),
    ("ring_hostile_peer", ring_hostile_peer),
    ("vmbus_server", vmbus_server),
    ("netvsp_guest", netvsp_guest),
    ("netvsc_host", netvsc_host),
    ("netvsp_offload", netvsp_offload),
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    ("mshv_exits", mshv_exits),
];

/// Channel-management messages: parse (plain and at every version), emit, re-parse;
/// and a GPADL reassembly driven by a sequence of messages.
pub fn channel_message(data: &[u8]) {
    // Treat the input as a sequence of messages separated by a length byte, so the
    // fuzzer can also drive GPADL header/body reassembly.
    let mut acc: Option<GpadlAccumulator> = None;
    let limits = GpadlLimits {
        max_words: 512,
        max_ranges: 8,
    };
    let mut rest = data;
    let mut steps = 0;
    while let Some((&len, tail)) = rest.split_first() {
        steps += 1;
        assert!(steps <= data.len(), "message loop must advance");
        let n = usize::from(len).min(tail.len());
        let (msg, tail) = tail.split_at(n);
        rest = tail;
        let parsed = Message::parse(msg);
        for v in VmbusVersion::ALL {
            let gated = Message::parse_for(msg, Some(v), FeatureFlags::all());
            if gated.is_ok() {
                assert!(
                    parsed.is_ok(),
                    "gated parse accepted what plain parse rejected"
                );
            }
        }
        let Ok(m) = parsed else { continue };
        let (buf, len) = m.to_payload();
        assert!(len <= 240);
        assert_eq!(
            Message::parse(&buf[..len]).unwrap(),
            m,
            "emit/parse roundtrip"
        );
        match m {
            Message::GpadlHeader(h) => acc = GpadlAccumulator::new(&h, &limits).ok(),
            Message::GpadlBody(b) => {
                if let Some(a) = acc.as_mut()
                    && a.push_body(&b).is_err()
                {
                    acc = None;
                }
            }
            _ => {}
        }
        if acc.as_ref().is_some_and(|a| a.is_complete())
            && let Some(Ok(g)) = acc.take().map(|a| a.finish())
        {
            assert!(g.page_count() <= limits.max_words);
            assert!(g.ranges.len() <= limits.max_ranges);
        }
    }
}

/// Ring packets: parse with limits, walk every range, check the payload bounds.
pub fn ring_packet(data: &[u8]) {
    let limits = PacketLimits {
        max_transfer_ranges: 64,
        max_gpa_ranges: 8,
    };
    if let Ok(p) = Packet::parse(data, &limits) {
        let len = usize::from(p.descriptor.length8) * 8;
        assert!(len <= data.len());
        assert!(p.payload.len() <= len);
        assert!(p.kind.transfer_ranges().count() <= limits.max_transfer_ranges);
        let mut n = 0;
        for r in p.gpa_ranges() {
            let r = r.expect("ranges were validated by parse");
            assert!(r.byte_offset < 4096);
            n += 1;
        }
        assert!(n <= limits.max_gpa_ranges);
    }
}

/// NVSP messages (as request and as completion) and the send indirection table: parse,
/// emit, re-parse.
pub fn nvsp(data: &[u8]) {
    use vmbus_proto::nvsp::{NvspMessage, NvspSendIndirectionTable, NvspVersion};
    for parsed in [
        NvspMessage::parse(data),
        NvspMessage::parse_completion(data),
    ] {
        let Ok(m) = parsed else { continue };
        if matches!(m, NvspMessage::Unknown { .. }) {
            continue;
        }
        let bytes = m.to_vec().expect("a parsed message can be emitted");
        assert!(
            bytes.len() >= 32,
            "emitted NVSP messages are at least 32 bytes"
        );
        let again = NvspMessage::parse(&bytes)
            .ok()
            .filter(|a| *a == m)
            .or_else(|| {
                NvspMessage::parse_completion(&bytes)
                    .ok()
                    .filter(|a| *a == m)
            });
        assert!(again.is_some(), "emit/parse roundtrip for {m:?}");
        for v in NvspVersion::ALL {
            let _ = m.check_allowed(v);
        }
    }
    for t in [
        NvspSendIndirectionTable::parse(data),
        NvspSendIndirectionTable::parse_linux_compat(data, NvspVersion::V6),
    ]
    .into_iter()
    .flatten()
    {
        {
            assert!(t.entries().len() <= 16);
            let b = t.to_vec(12).expect("emit");
            assert_eq!(
                NvspSendIndirectionTable::parse(&b)
                    .expect("re-parse")
                    .entries(),
                t.entries()
            );
        }
    }
}

/// RNDIS: every message in the buffer (as NetVSP receives a batch), emitted and
/// re-parsed; PPIs walked; NDIS objects in OID buffers parsed.
pub fn rndis(data: &[u8]) {
    use vmbus_proto::rndis::{
        NdisOffload, NdisOffloadParams, NdisReceiveScaleCapabilities, RndisMessage, RndisMessages,
        RssParams,
    };
    let mut count = 0;
    for m in RndisMessages::new(data) {
        count += 1;
        assert!(count <= data.len() / 8 + 1, "message iteration is bounded");
        let Ok(m) = m else { continue };
        let bytes = m.to_vec().expect("a parsed message can be emitted");
        let again = RndisMessage::parse(&bytes).expect("emitted message parses");
        assert_eq!(again.msg_type(), m.msg_type());
        if let RndisMessage::Packet(p) = m {
            let mut n = 0;
            for ppi in p.ppis() {
                n += 1;
                assert!(n <= p.ppi.len() / 12 + 1, "PPI iteration is bounded");
                let _ = ppi;
            }
        }
        let info: &[u8] = match m {
            RndisMessage::Query(r) | RndisMessage::Set(r) | RndisMessage::SetEx(r) => r.info,
            RndisMessage::QueryComplete(c) | RndisMessage::SetExComplete(c) => c.info,
            _ => &[],
        };
        let _ = NdisOffload::parse(info);
        let _ = NdisOffloadParams::parse(info);
        let _ = NdisReceiveScaleCapabilities::parse(info);
        if let Ok(r) = RssParams::parse(info) {
            assert!(r.indirection_entries().count() <= 256);
        }
    }
}

/// A hostile peer owns a ring: the first 16 bytes are its control-page fields
/// (write_index, read_index, interrupt_mask, pending_send_sz), byte 16 the feature bits,
/// the rest the data area (one page). Our reader must stop with a value or an error
/// within a bounded number of steps, and our writer must never write outside the ring.
pub fn ring_hostile_peer(data: &[u8]) {
    use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing, RingMem};
    const SIZE: usize = 4096;
    let Ok(mem) = FlatRingMem::new(SIZE) else {
        return;
    };
    let word = |i: usize| {
        let mut b = [0u8; 4];
        if let Some(s) = data.get(i * 4..i * 4 + 4) {
            b.copy_from_slice(s);
        }
        u32::from_le_bytes(b)
    };
    let ctl = mem.control();
    ctl.set_write_index(word(0));
    ctl.set_read_index(word(1));
    ctl.set_interrupt_mask(word(2));
    ctl.set_pending_send_size(word(3));
    ctl.set_feature_bits(u32::from(data.get(16).copied().unwrap_or(0)));
    let body = data.get(17..).unwrap_or(&[]);
    mem.write_data(0, body.get(..SIZE.min(body.len())).unwrap_or(&[]));

    if let Ok(mut rx) = IncomingRing::new(&mem) {
        let mut scratch = Vec::new();
        let limits = PacketLimits::default();
        let mut reads = 0;
        // Ends on Empty or Corrupt.
        while let Ok(p) = rx.try_read() {
            reads += 1;
            assert!(p.len() >= 16 && p.len() <= SIZE);
            p.with_bytes(&mut scratch, |b| {
                assert_eq!(b.len(), p.len());
                let _ = Packet::parse(b, &limits);
            });
            // Each packet consumes at least 24 bytes of a 4096-byte ring.
            assert!(reads <= SIZE / 24, "reader loop must be bounded");
        }
        let _ = rx.commit();
        let _ = rx.unmask_and_recheck();
    }
    // Our writer on the same hostile control page.
    ctl.set_read_index(word(1));
    if let Ok(mut tx) = OutgoingRing::new(&mem) {
        for i in 0..8u64 {
            let len = usize::from(data.get(20 + i as usize).copied().unwrap_or(0)) * 8;
            let payload = vec![0xAB; len];
            match tx.try_write(&OutgoingPacket::inband(i, 0), &[&payload]) {
                Ok(()) | Err(vmbus_ring::WriteError::Full { .. }) => {}
                Err(_) => break,
            }
        }
        let _ = tx.commit();
        let _ = tx.prepare_wait(100);
    }
}

/// The guest RAM of [`vmbus_server`]: 256 pages at 0, a hole, 64 pages at page 0x400
/// and 16 more right after them (a seam between two regions), made once.
fn server_memory() -> Option<&'static hv_partition::GuestMemory> {
    static MEM: std::sync::OnceLock<Option<hv_partition::GuestMemory>> = std::sync::OnceLock::new();
    MEM.get_or_init(|| {
        hv_partition::GuestMemory::with_layout(&[
            (0, 256 * 4096),
            (0x400 * 4096, 64 * 4096),
            (0x440 * 4096, 16 * 4096),
        ])
        .ok()
    })
    .as_ref()
}

/// A hostile guest drives the VMBus server engine: the input is a sequence of
/// length-prefixed channel messages, each followed by a host-event byte (offer, rescind,
/// open completion outcome). The server must keep its invariants and caps.
///
/// Guest RAM has a hole and a seam (`server_memory`): a GPADL naming a page in the
/// hole, past a region's edge or past the last region must be refused (and counted);
/// every GPADL the server accepts is mapped as a buffer and, when a channel opens on
/// it, as rings (double-mapped or paged by the event byte), touching only RAM.
pub fn vmbus_server(data: &[u8]) {
    use hv_partition::gpadl::{GpadlBuffer, RingMapping, map_channel_rings};
    use vmbus_proto::engine::server::{Action, OfferParams, Server, ServerConfig};
    let Some(memory) = server_memory() else {
        return;
    };
    let config = {
        let mut c = ServerConfig::default();
        c.vp_count = 2;
        c.max_gpadls = 8;
        c.max_gpadl_pages = 64;
        c.max_channels = 8;
        c.guest_ram = memory.page_ranges();
        c.defer_gpadl_teardown = true;
        c
    };
    let mut s = Server::new(config);
    let offer = |i: u8| {
        OfferParams::new(
            vmbus_proto::guid::class::NETWORK,
            vmbus_proto::Guid {
                data1: u32::from(i),
                ..vmbus_proto::Guid::ZERO
            },
        )
    };
    for i in 0..3 {
        let _ = s.offer(offer(i));
    }
    let mut gpadls: std::collections::BTreeMap<u32, vmbus_proto::channel::gpadl::Gpadl> =
        Default::default();
    let mut deferred: Vec<u32> = Vec::new();
    let mut rest = data;
    let mut steps = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        steps += 1;
        assert!(steps <= data.len());
        let n = usize::from(len).min(tail.len());
        let (msg, tail) = tail.split_at(n);
        let (event, tail) = tail.split_first().map_or((0, &[][..]), |(e, t)| (*e, t));
        rest = tail;
        let _ = s.handle_message(msg);
        // Teardowns held since the last message complete now.
        for id in std::mem::take(&mut deferred) {
            s.complete_gpadl_teardown(id);
        }
        match event % 8 {
            0 => {
                let _ = s.offer(offer(event));
            }
            1 => {
                let _ = s.rescind(u32::from(event / 8 % 4));
            }
            _ => {}
        }
        let mut actions = 0;
        while let Some(a) = s.poll_action() {
            actions += 1;
            assert!(actions < 10_000, "action storm");
            match a {
                Action::Open(o) => {
                    let how = if event & 0x10 == 0 {
                        RingMapping::DoubleMapped
                    } else {
                        RingMapping::Paged
                    };
                    let mapped = map_channel_rings(memory, &o.gpadl, o.downstream_page_offset, how);
                    if let Ok(rings) = &mapped {
                        // The guest's ring indices are garbage: the ring refuses them
                        // or reads only what lies inside.
                        if let Ok(mut rx) =
                            vmbus_ring::IncomingRing::new(rings.guest_to_host.clone())
                        {
                            let _ = rx.try_read().map(|p| p.len());
                        }
                    }
                    s.open_complete(o.relid, o.open_id, mapped.is_ok() && event % 2 == 0);
                }
                Action::GpadlReady { id, gpadl, .. } => {
                    // Accepted: every page is RAM.
                    for r in &gpadl.ranges {
                        for &pfn in &r.pfns {
                            assert!(
                                memory.contains(pfn * 4096, 4096),
                                "GPADL page {pfn:#x} outside RAM accepted"
                            );
                        }
                    }
                    if let Ok(buf) = GpadlBuffer::new(memory, &gpadl) {
                        let mut b = [0u8; 64];
                        let end = buf.len();
                        for off in [
                            0,
                            end / 2,
                            end.saturating_sub(64),
                            end.saturating_sub(1),
                            end,
                        ] {
                            let _ = buf.read_at(off, &mut b);
                            let _ = buf.write_at(off, &b);
                        }
                    }
                    gpadls.insert(id, gpadl);
                }
                Action::GpadlReleased { gpadl } => {
                    gpadls.remove(&gpadl);
                }
                // The host holds the pages for a while (by the event byte), then lets go.
                Action::GpadlTeardownRequested { gpadl } => {
                    if event & 0x20 == 0 {
                        s.complete_gpadl_teardown(gpadl);
                    } else {
                        deferred.push(gpadl);
                    }
                }
                _ => {}
            }
        }
        s.check_invariants().expect("server invariants");
        assert!(s.gpadl_count() <= 8 && s.channel_count() <= 8);
    }
}

/// The mshv backend's vCPU loop on hostile intercept messages (what the guest controls:
/// hypercall registers and input blocks, ports, access sizes, values) over a scripted
/// hypervisor whose SIMP slot is busy every other post, with host messages posted
/// between exits so the busy-slot queue and deliverability flushes run too.
///
/// Input: `u16` length of a prefix written at GPA 0 (hypercall inputs point there),
/// then 128-byte chunks: byte 0 picks the message type (known types mostly), the rest
/// is the payload's start (VP index forced to 0 unless byte 1 is odd). Checks: the
/// loop ends with an outcome, queues stay bounded, nothing panics.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn mshv_exits(data: &[u8]) {
    use hv_hypercall::message::HvMessageType;
    use hv_hypercall::{HvMessage, HvStatus};
    use hv_partition::mshv::MshvPartition;
    use hv_partition::mshv::ops::{OpError, PartitionOps, Reg, VcpuOps};
    use hv_partition::{GuestMemory, HypercallHandler, Partition};
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Hv(AtomicU64);
    impl PartitionOps for Hv {
        fn post_message_direct(&self, _: u32, _: u8, _: &HvMessage) -> Result<(), OpError> {
            if self.0.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                Ok(())
            } else {
                Err(OpError::Hv(HvStatus::OBJECT_IN_USE))
            }
        }
        fn signal_event_direct(&self, _: u32, _: u8, _: u16) -> Result<bool, OpError> {
            Ok(true)
        }
        fn register_deliverability(&self, _: u32, _: u16) -> Result<(), OpError> {
            Ok(())
        }
    }
    struct Vcpu(VecDeque<HvMessage>, Arc<AtomicU64>);
    impl VcpuOps for Vcpu {
        fn run(&mut self) -> Result<HvMessage, OpError> {
            self.0.pop_front().ok_or(OpError::Os(libc_eio()))
        }
        fn set_registers(&mut self, regs: &[(Reg, u64)]) -> Result<(), OpError> {
            self.1.fetch_add(regs.len() as u64, Ordering::Relaxed);
            Ok(())
        }
    }
    struct Handler;
    impl HypercallHandler for Handler {
        fn post_message(&self, _: u32, m: &hv_hypercall::input::PostMessage) -> HvStatus {
            if m.payload_size.is_multiple_of(2) {
                HvStatus::SUCCESS
            } else {
                HvStatus::INSUFFICIENT_BUFFERS
            }
        }
        fn signal_event(&self, _: u32, _: &hv_hypercall::input::SignalEvent) -> HvStatus {
            HvStatus::SUCCESS
        }
    }
    fn libc_eio() -> i32 {
        5
    }
    const KNOWN: [u32; 7] = [
        0x8000_0050, // hypercall
        0x8001_0000, // port I/O
        0x8000_0062, // SINT deliverable
        0x8000_0050,
        0x8001_0000,
        0x8001_0007, // halt
        0x8000_0000, // unmapped GPA
    ];

    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Ok(memory) = GuestMemory::new(1 << 20) else {
        return;
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (prefix, rest) = rest.split_at(n);
    let _ = memory.write(0, prefix);
    let mut script = VecDeque::new();
    for chunk in rest.chunks(128).take(512) {
        let mut m = HvMessage::EMPTY;
        let (pick, body) = chunk.split_first().map_or((0, &[][..]), |(p, b)| (*p, b));
        m.header.message_type = HvMessageType(if pick & 0x80 == 0 {
            KNOWN
                .get(usize::from(pick) % KNOWN.len())
                .copied()
                .unwrap_or(0)
        } else {
            u32::from_le_bytes([pick, pick, 0, 0x80])
        });
        for (d, s) in m.payload.iter_mut().zip(body) {
            *d = *s;
        }
        if body.first().is_none_or(|b| b % 2 == 0) {
            for d in m.payload.iter_mut().take(4) {
                *d = 0;
            }
        }
        script.push_back(m);
    }
    let completions = Arc::new(AtomicU64::new(0));
    let Ok(vm) = MshvPartition::with_ops(
        Box::new(Hv(AtomicU64::new(0))),
        Vec::new(),
        memory,
        Box::new(std::io::sink()),
    ) else {
        return;
    };
    vm.set_hypercall_handler(Arc::new(Handler));
    // Host messages before and during the run: every other one finds the slot busy.
    for i in 0..8u8 {
        let _ = vm.post_message(0, i % 4, &HvMessage::EMPTY);
    }
    vm.run_vcpu(0, Box::new(Vcpu(script, completions.clone())));
    assert!(vm.outcome().is_some(), "the loop ended without an outcome");
    for sint in 0..16 {
        assert!(vm.queued(0, sint) <= 64, "unbounded queue");
    }
}

/// The NetVSP software offload engine on guest-chosen frames and requests: checksum
/// (IPv4/IPv6, TCP/UDP, any L4 offset), LSOv2 (any MSS and TCP offset), VLAN tags.
///
/// Input: flags byte (bit 0 checksum, 1 IPv6, 2 TCP, 3 IPv4 header checksum, 4 LSO,
/// 5 VLAN), MSS `u16`, L4 offset byte, tag `u16`, then the frame. Checks: a refused
/// request emits nothing; otherwise an LSO packet gives at most ~1000 frames of at
/// most `MAX_FRAME` bytes, anything else exactly one frame of the input's length
/// (plus 4 with a tag).
pub fn netvsp_offload(data: &[u8]) {
    use netvsp::backend::MAX_FRAME;
    use netvsp::offload::{LSO_MIN_MSS, TxEngine, TxRequest};
    let Some((head, frame)) = data.split_first_chunk::<6>() else {
        return;
    };
    let [flags, m0, m1, l4, t0, t1] = *head;
    let bit = |b: u8| flags & (1 << b) != 0;
    let l4 = u16::from(l4);
    let req = TxRequest {
        l4_csum: bit(0).then_some((bit(1), bit(2), l4)),
        ip_header_csum: bit(3),
        lso: bit(4).then_some((bit(1), u32::from(u16::from_le_bytes([m0, m1])), l4)),
        vlan_tci: bit(5).then_some(u16::from_le_bytes([t0, t1])),
    };
    thread_local! {
        static ENGINE: std::cell::RefCell<TxEngine> = std::cell::RefCell::new(TxEngine::new());
    }
    let mut frames = Vec::new();
    let result = ENGINE.with(|e| {
        e.borrow_mut().process(frame, &req, &mut |f| {
            frames.push(f.len());
            true
        })
    });
    match result {
        Err(_) => assert!(
            frames.is_empty() || req.lso.is_some(),
            "a refused request emitted frames"
        ),
        Ok(out) => {
            assert_eq!(out.sent as usize, frames.len());
            if req.lso.is_some() {
                let max = 65_536 / LSO_MIN_MSS as usize + 1;
                assert!(frames.len() <= max, "{} segments", frames.len());
                assert!(frames.iter().all(|&n| n <= MAX_FRAME), "{frames:?}");
            } else {
                let tag = if req.vlan_tci.is_some() { 4 } else { 0 };
                assert_eq!(frames, vec![frame.len() + tag]);
            }
        }
    }
}

/// A hostile guest drives a NetVSP channel core: control path (NVSP and RNDIS messages)
/// and data path (RNDIS packets in send-buffer sections or GPA-direct ranges with
/// arbitrary offsets, lengths and per-packet info, GPA ranges outside guest memory,
/// completions for unknown transaction ids).
///
/// Input: `u16` length of a prefix copied into the send buffer (GPADL 2), then
/// length-prefixed (`u16`) ring packets. Guest memory is 1 MiB; GPADL 1 (pages 16..48)
/// is a receive buffer, GPADL 2 (pages 64..80) a send buffer, both of relid 1. Every
/// other transfer the core sends is completed, so sub-allocations recycle. Three
/// queues are open: a packet goes to queue (top byte of its transaction id) % 3, so
/// the subchannel paths (data and completions only; anything else refused) see
/// hostile input too.
pub fn netvsp_guest(data: &[u8]) {
    use hv_partition::GuestMemory;
    use netvsp::{Loopback, NetvspConfig, NicCore, NicCounters};
    use vmbus::DeviceContext;
    use vmbus_proto::packet::emit_inband;

    let Ok(memory) = GuestMemory::new(1 << 20) else {
        return;
    };
    // GPADL 1: the receive buffer (pages 16..48); GPADL 2: the send buffer (64..80).
    let context = DeviceContext::with_page_runs(memory.clone(), 1, &[(1, 16, 32), (2, 64, 16)]);
    let (endpoint, link) = Loopback::new(16);
    let stats = NicCounters::default();
    let (prefix_len, rest) = match data.split_first_chunk::<2>() {
        Some((l, r)) => (usize::from(u16::from_le_bytes(*l)), r),
        None => return,
    };
    // Half the inputs may send from any MAC (the transmit and offload paths), half
    // only from the NIC's (spoofed frames dropped).
    let mut config = NetvspConfig::default();
    config.allow_mac_spoofing = prefix_len % 2 == 1;
    let mut core = NicCore::new(
        config,
        1,
        context.clone(),
        Box::new(endpoint),
        stats.clone(),
    );
    const QUEUES: u16 = 3;
    for q in 1..QUEUES {
        core.set_queue_open(q, true);
    }

    let n = prefix_len.min(rest.len()).min(16 * 4096);
    let (prefix, mut rest) = rest.split_at(n);
    let _ = memory.write(64 * 4096, prefix);

    let mut steps = 0usize;
    let mut to_complete: Vec<u64> = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        steps += 1;
        assert!(steps <= data.len(), "loop must advance");
        let n = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (packet, tail) = tail.split_at(n);
        rest = tail;
        let q = packet.get(15).map_or(0, |b| u16::from(*b) % QUEUES);
        core.handle_packet_on(q, packet);
        // What a worker would offer on the bus: nothing here, but taking it must
        // leave no request behind.
        if let Some((from, to)) = core.take_offer_request() {
            assert!(from >= 1 && to < 16, "subchannels {from}..={to}");
            assert!(core.take_offer_request().is_none());
        }
        if steps.is_multiple_of(7) {
            link.set(!steps.is_multiple_of(14));
        }
        // Queue 2's channel closes and reopens now and then.
        if steps.is_multiple_of(11) {
            core.set_queue_open(2, !steps.is_multiple_of(22));
        }
        // Now and then the guest tears a buffer's GPADL down without revoking it: the
        // core must let go of it within one round.
        let torn = (steps.is_multiple_of(13) && packet.get(16).is_some_and(|b| b & 1 == 1))
            .then(|| 1 + (steps / 13 % 2) as u32);
        if let Some(id) = torn {
            context.tear_down_gpadl(id);
        }
        core.poll_link();
        core.deliver_frames();
        if let Some(id) = torn {
            assert!(
                !context.gpadl_held(id),
                "GPADL {id} still held after a round"
            );
        }
        // Drain what the core owes the guest; check each packet is well formed.
        let mut drained = 0;
        for q in 0..QUEUES {
            while core.pop_outgoing_on(q, |p, payload| {
                assert_eq!(p.header.len() % 8, 0);
                if p.packet_type == vmbus_proto::packet::PacketType::DATA_USING_TRANSFER_PAGES {
                    to_complete.push(p.transaction_id);
                }
                let _ = payload;
                true
            }) {
                drained += 1;
                assert!(drained <= 100_000, "outgoing queue must be bounded");
            }
        }
        // Complete every other transfer (the rest stay in flight: exhaustion).
        for (i, tid) in std::mem::take(&mut to_complete).into_iter().enumerate() {
            if i % 2 == 0 {
                let mut buf = [0u8; 64];
                if let Ok(n) = emit_inband(
                    &mut buf,
                    vmbus_proto::packet::PacketType::COMPLETION,
                    0,
                    tid,
                    &[],
                ) {
                    core.handle_packet_on(i as u16 % QUEUES, &buf[..n]);
                }
            }
        }
        if let Some((free, in_flight, total)) = core.recv_slots() {
            assert_eq!(
                free + in_flight,
                total,
                "every sub-allocation is free or in flight"
            );
        }
    }
}

struct FuzzMemory<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl GuestMemoryRead for FuzzMemory<'_> {
    fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaReadError> {
        let err = GpaReadError {
            gpa,
            len: buf.len(),
        };
        let off = usize::try_from(gpa.checked_sub(self.base).ok_or(err)?).map_err(|_| err)?;
        let src = self
            .bytes
            .get(off..off.checked_add(buf.len()).ok_or(err)?)
            .ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Hypercall decoding: the first 24 bytes are RCX, RDX, R8; the rest is guest memory
/// at GPA 0x1000. Checks the validated request's invariants.
pub fn hypercall_decode(data: &[u8]) {
    let mut regs = [0u64; 3];
    for (i, r) in regs.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        if let Some(src) = data.get(i * 8..i * 8 + 8) {
            b.copy_from_slice(src);
        }
        *r = u64::from_le_bytes(b);
    }
    let mem = FuzzMemory {
        base: 0x1000,
        bytes: data.get(24..).unwrap_or(&[]),
    };
    let regs = HypercallRegisters {
        control: regs[0],
        input: regs[1],
        output: regs[2],
    };
    // Also try with the input pointed at the memory, so the fuzzer reaches the parsers.
    let aimed = HypercallRegisters {
        input: 0x1000,
        ..regs
    };
    for r in [regs, aimed] {
        match decode(&r, &mem) {
            Ok(HypercallRequest::PostMessage(p)) => {
                assert!(p.payload().len() <= 240);
                assert!(p.connection_id <= 0x00FF_FFFF);
                assert!(p.message_type.is_guest_postable());
            }
            Ok(HypercallRequest::SignalEvent(s)) => {
                assert!(s.connection_id <= 0x00FF_FFFF);
                assert!(s.flag_number < 2048);
            }
            Ok(_) | Err(_) => {}
        }
    }
}

/// Runs `f` over every seed of `target`: the built-in seeds plus any files under
/// `fuzz/seeds/<target>/` and `fuzz/corpus/<target>/` (the fuzzer's corpus, if one was
/// kept). Returns how many inputs ran.
pub fn run_corpus(target: &str, f: fn(&[u8])) -> usize {
    let mut n = 0;
    for s in seeds::builtin(target) {
        f(&s);
        n += 1;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                f(&bytes);
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_runs_its_corpus() {
        for (name, f) in TARGETS {
            let n = run_corpus(name, *f);
            assert!(n >= 5, "{name}: only {n} seeds");
            println!("{name}: {n} inputs");
        }
    }
}

/// netvsc (the guest NIC driver) against a hostile host: after a real bring-up against
/// netvsp on the sim backend (once per thread; host and guest on that thread, the
/// guest bus polled as a no_std guest runs it), each input overwrites the start of the
/// receive buffer and hands the driver arbitrary ring packets (completions with any
/// tid, transfer pages with any ranges, RNDIS messages of any shape), then sends and
/// polls. `Netvsc::fuzz_host_input` checks that send sections are never freed twice,
/// that the response and control queues stay bounded, and the receive queue too.
///
/// Input: `u16` length of the receive-buffer prefix, the prefix, then `u16`-length-
/// prefixed ring packets.
pub fn netvsc_host(data: &[u8]) {
    use std::cell::RefCell;
    use std::time::Duration;
    thread_local! {
        static NIC: RefCell<Option<netvsc_harness::Harness>> = const { RefCell::new(None) };
    }
    let (prefix, mut rest) = match data {
        [a, b, tail @ ..] => {
            let n = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
            tail.split_at(n)
        }
        _ => (&[][..], &[][..]),
    };
    NIC.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = netvsc_harness::Harness::new();
        }
        let Some(h) = slot.as_mut() else {
            return;
        };
        let mut first = true;
        while let [a, b, tail @ ..] = rest {
            let n = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
            let (packet, tail) = tail.split_at(n);
            rest = tail;
            h.nic
                .fuzz_host_input(if first { prefix } else { &[] }, packet);
            first = false;
        }
        let _ = h.nic.send(&[0x5a; 60]);
        let _ = h.nic.poll(Duration::ZERO);
        let mut buf = [0u8; 2048];
        while let Ok(Some(_)) = h.nic.recv(&mut buf, Duration::ZERO) {}
    });
}

mod netvsc_harness {
    use hv_partition::SimPartition;
    use hv_partition::gpadl::RingMapping;
    use netvsc::{Netvsc, NetvscConfig};
    use netvsp::{Loopback, Netvsp, NetvspConfig};
    use std::sync::Arc;
    use vmbus::{Doorbell, GuestBus, GuestConfig, HostBus, HostConfig, OfferParams, SimPlatform};
    use vmbus_proto::guid::{Guid, class};

    /// A brought-up NIC and what keeps its host alive: the whole VM on the fuzzing
    /// thread (a polled host, a polled guest bus on `SimPlatform::on_one_thread`), so
    /// a run is deterministic (a crash reproduces), and netvsc runs as a no_std guest
    /// runs it: on a polled bus, waiting through its platform.
    pub struct Harness {
        pub nic: Netvsc,
        _bus: GuestBus,
    }

    impl Harness {
        pub fn new() -> Option<Self> {
            let partition = SimPartition::new(64 << 20, 1).ok()?;
            let wake = Arc::new(Doorbell::new());
            let host = HostBus::polled(partition.clone(), HostConfig::default(), wake.clone());
            let (lo, _link) = Loopback::new(64);
            let (dev, poller) = Netvsp::polled(NetvspConfig::default(), Box::new(lo), wake);
            let relid = host
                .offer(OfferParams::new(class::NETWORK, Guid::ZERO), Box::new(dev))
                .ok()?;
            let run_host = move || host.poll().merge(poller.poll());
            let platform = SimPlatform::on_one_thread(
                partition,
                RingMapping::DoubleMapped,
                Box::new(run_host),
            );
            let bus = GuestBus::polled(Arc::new(platform), GuestConfig::default()).ok()?;
            bus.connect().ok()?;
            let offers = bus.request_offers().ok()?;
            let offer = *offers.iter().find(|o| o.child_relid == relid)?;
            let nic = Netvsc::open(&bus, &offer, &NetvscConfig::default()).ok()?;
            Some(Self { nic, _bus: bus })
        }
    }
}
