//! Guest messages driven straight into a `NicCore`: several RNDIS packets in one (a
//! send section packed the way Linux batches (`xmit_more`, packets padded to the
//! alignment the host reported), Linux's "cp_partial" form (the last packet's header in
//! the section, its data in GPA-direct page buffers), and the hostile variants), and
//! control answers while the guest leaves its receive buffer full.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use hv_partition::GuestMemory;
use netvsp::device::SEND_SECTION_SIZE;
use netvsp::{NetEndpoint, NetvspConfig, NicCore, NicCounters};
use std::sync::{Arc, Mutex};
use vmbus::DeviceContext;
use vmbus_proto::nvsp::{NvspChannelType, NvspMessage, NvspStatus, NvspVersion};
use vmbus_proto::packet::{FLAG_COMPLETION_REQUESTED, PacketType, descriptor_for, emit_inband};
use vmbus_proto::rndis::{
    RndisMessage, RndisMessages, emit_packet_header, packet_to_vec, pad_message,
};
use vmbus_ring::Wake;
use zerocopy::IntoBytes;

/// Records what the guest transmits; delivers what the test queues in `inbound`, with
/// the link state in `up`.
struct Recorder {
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    inbound: Arc<Mutex<std::collections::VecDeque<Vec<u8>>>>,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl NetEndpoint for Recorder {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.sent.lock().unwrap().push(frame.to_vec());
        true
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.inbound.lock().unwrap().pop_front()?;
        buf[..f.len()].copy_from_slice(&f);
        Some(f.len())
    }
    fn set_waker(&mut self, _waker: Arc<dyn Wake>) {}
    fn link_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Send buffer: GPADL 2 over guest pages 64.. (32 pages, 5 sections).
const SEND_PAGE: u64 = 64;
/// Free guest pages for GPA-direct data.
const DATA_PAGE: u64 = 128;

struct Host {
    core: NicCore,
    memory: GuestMemory,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    inbound: Arc<Mutex<std::collections::VecDeque<Vec<u8>>>>,
    up: Arc<std::sync::atomic::AtomicBool>,
    stats: NicCounters,
}

fn host() -> Host {
    let memory = GuestMemory::new(1 << 20).unwrap();
    // GPADL 1: the receive buffer (pages 16..48); GPADL 2: the send buffer.
    let context =
        DeviceContext::with_page_runs(memory.clone(), 1, &[(1, 16, 32), (2, SEND_PAGE, 32)]);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let inbound = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stats = NicCounters::default();
    let mut config = NetvspConfig::default();
    // These frames are patterns, not from the NIC's MAC.
    config.allow_mac_spoofing = true;
    let core = NicCore::new(
        config,
        1,
        context,
        Box::new(Recorder {
            sent: sent.clone(),
            inbound: inbound.clone(),
            up: up.clone(),
        }),
        stats.clone(),
    );
    let mut h = Host {
        core,
        memory,
        sent,
        inbound,
        up,
        stats,
    };
    for (tid, m) in [
        (1, NvspMessage::init(NvspVersion::V6_1)),
        (
            2,
            NvspMessage::SendReceiveBuffer {
                gpadl_handle: 1,
                id: 0xCAFE,
            },
        ),
        (
            3,
            NvspMessage::SendSendBuffer {
                gpadl_handle: 2,
                id: 0,
            },
        ),
    ] {
        h.core.handle_packet(&inband(&m, tid));
    }
    assert_eq!(h.completions().len(), 3, "the bring-up answers");
    h
}

fn inband(m: &NvspMessage, tid: u64) -> Vec<u8> {
    m.to_inband_packet(tid).unwrap()
}

/// SEND_RNDIS_PKT (data) naming `section` with `size` bytes, as a GPA-direct packet
/// with one range over `pages` (first byte `offset`, `len` bytes) when given.
fn send_rndis(tid: u64, section: u32, size: u32, range: Option<(&[u64], u32, u32)>) -> Vec<u8> {
    let m = NvspMessage::SendRndisPacket {
        channel_type: NvspChannelType::RMC_DATA,
        send_buf_section_index: section,
        send_buf_section_size: size,
    };
    let Some((pages, offset, len)) = range else {
        return inband(&m, tid);
    };
    let mut payload = [0u8; 64];
    let n = m.emit(&mut payload).unwrap();
    // GPA-direct header: reserved, range count; then byte count, byte offset, pfns.
    let mut header = Vec::new();
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&offset.to_le_bytes());
    for p in pages {
        header.extend_from_slice(&p.to_le_bytes());
    }
    let d = descriptor_for(
        PacketType::DATA_USING_GPA_DIRECT,
        FLAG_COMPLETION_REQUESTED,
        tid,
        header.len(),
        n,
    )
    .unwrap();
    let mut p = vec![0u8; usize::from(d.length8) * 8];
    p[..16].copy_from_slice(d.as_bytes());
    p[16..16 + header.len()].copy_from_slice(&header);
    let at = usize::from(d.data_offset8) * 8;
    p[at..at + n].copy_from_slice(&payload[..n]);
    p
}

impl Host {
    /// The SEND_RNDIS_PKT completions (and others) owed to the guest: (tid, status).
    fn completions(&mut self) -> Vec<(u64, Option<NvspStatus>)> {
        let mut out = Vec::new();
        while self.core.pop_outgoing(|p, payload| {
            assert_eq!(p.packet_type, PacketType::COMPLETION);
            let status = match NvspMessage::parse(payload) {
                Ok(NvspMessage::SendRndisPacketComplete { status }) => Some(status),
                _ => None,
            };
            out.push((p.transaction_id, status));
            true
        }) {}
        out
    }

    fn section_gpa(section: u32) -> u64 {
        SEND_PAGE * 4096 + u64::from(section) * u64::from(SEND_SECTION_SIZE)
    }

    fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

fn frame(seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seq).collect()
}

/// Packs `frames` into one section the way Linux does with `xmit_more`: each RNDIS
/// packet padded to 8 bytes (the alignment netvsp reports) except the last.
fn packed(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut section = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let mut m = packet_to_vec(&[], f).unwrap();
        if i + 1 < frames.len() {
            let len = m.len();
            m.resize(len.next_multiple_of(8), 0xEE);
            let padded = pad_message(&mut m, len, 8).unwrap();
            assert_eq!(padded, m.len());
        }
        section.extend_from_slice(&m);
    }
    section
}

#[test]
fn initialize_complete_invites_batching() {
    let mut h = host();
    let init = RndisMessage::Initialize(vmbus_proto::rndis::RndisInitializeRequest::new(7, 0x4000))
        .to_vec()
        .unwrap();
    h.memory.write(Host::section_gpa(0), &init).unwrap();
    h.core.handle_packet(&inband(
        &NvspMessage::SendRndisPacket {
            channel_type: NvspChannelType::RMC_CONTROL,
            send_buf_section_index: 0,
            send_buf_section_size: init.len() as u32,
        },
        9,
    ));
    // The answer goes through the receive buffer (GPADL 1, guest pages 16..).
    let mut answer = None;
    while h.core.pop_outgoing(|p, _| {
        if p.packet_type == PacketType::DATA_USING_TRANSFER_PAGES {
            // One range: (byte_count, byte_offset) after the 8-byte header.
            let count = u32::from_le_bytes(p.header[8..12].try_into().unwrap());
            let offset = u32::from_le_bytes(p.header[12..16].try_into().unwrap());
            answer = Some((offset, count));
        }
        true
    }) {}
    let (offset, count) = answer.expect("INITIALIZE_COMPLETE delivered");
    let mut bytes = vec![0u8; count as usize];
    h.memory
        .read(16 * 4096 + u64::from(offset), &mut bytes)
        .unwrap();
    match RndisMessage::parse(&bytes).unwrap() {
        RndisMessage::InitializeComplete(c) => {
            assert_eq!(
                c.max_pkt_per_msg,
                NetvspConfig::default().max_packets_per_message
            );
            assert!(c.max_pkt_per_msg > 1);
            assert_eq!(c.pkt_alignment_factor, 3);
        }
        other => panic!("expected INITIALIZE_COMPLETE, got {other:?}"),
    }
}

#[test]
fn a_packed_section_sends_every_frame_with_one_completion() {
    let mut h = host();
    let frames: Vec<Vec<u8>> = [60usize, 1514, 61, 1000, 63]
        .iter()
        .enumerate()
        .map(|(i, &l)| frame(i as u8, l))
        .collect();
    let section = packed(&frames);
    assert!(section.len() <= SEND_SECTION_SIZE as usize);
    // Messages parse back with their padding.
    assert_eq!(RndisMessages::new(&section).count(), frames.len());
    h.memory.write(Host::section_gpa(1), &section).unwrap();
    h.core
        .handle_packet(&send_rndis(40, 1, section.len() as u32, None));
    assert_eq!(h.take_sent(), frames);
    assert_eq!(h.completions(), vec![(40, Some(NvspStatus::SUCCESS))]);
    assert_eq!(h.stats.snapshot().tx_frames, 5);
    assert_eq!(h.stats.snapshot().bad_packets, 0);
}

#[test]
fn cp_partial_joins_the_section_and_the_page_buffers() {
    let mut h = host();
    // Two whole packets in the section (both padded: neither is the last), then the
    // third one's RNDIS header; its 1400-byte frame lies in guest pages, starting
    // 100 bytes before a page end.
    let first = [frame(1, 200), frame(2, 1514)];
    let third = frame(3, 1400);
    let filler = packet_to_vec(&[], &[0u8; 60]).unwrap().len();
    let mut s = packed(&[first[0].clone(), first[1].clone(), vec![0u8; 60]]);
    s.truncate(s.len() - filler);
    let mut hdr = [0u8; 64];
    let hl = emit_packet_header(&mut hdr, &[], third.len()).unwrap();
    s.extend_from_slice(&hdr[..hl]);
    h.memory.write(Host::section_gpa(2), &s).unwrap();
    let offset = 4096 - 100;
    h.memory
        .write(DATA_PAGE * 4096 + offset as u64, &third)
        .unwrap();
    h.core.handle_packet(&send_rndis(
        41,
        2,
        s.len() as u32,
        Some((&[DATA_PAGE, DATA_PAGE + 1], offset, third.len() as u32)),
    ));
    assert_eq!(
        h.take_sent(),
        vec![first[0].clone(), first[1].clone(), third]
    );
    assert_eq!(h.completions(), vec![(41, Some(NvspStatus::SUCCESS))]);
    assert_eq!(h.stats.snapshot().bad_packets, 0);
}

#[test]
fn hostile_multi_packet_messages_are_refused_and_counted() {
    let mut h = host();
    let frames = vec![frame(1, 100), frame(2, 100)];
    let section = packed(&frames);
    h.memory.write(Host::section_gpa(0), &section).unwrap();

    // Page buffers outside guest memory after a valid section: refused, counted.
    h.core.handle_packet(&send_rndis(
        50,
        0,
        section.len() as u32,
        Some((&[1 << 40], 0, 100)),
    ));
    assert_eq!(
        h.completions(),
        vec![(50, Some(NvspStatus::INVALID_RNDIS_PKT))]
    );
    assert_eq!(h.stats.snapshot().bad_packets, 1);
    h.take_sent();

    // A size beyond the section: refused.
    h.core
        .handle_packet(&send_rndis(51, 0, SEND_SECTION_SIZE + 8, None));
    assert_eq!(
        h.completions(),
        vec![(51, Some(NvspStatus::INVALID_RNDIS_PKT))]
    );
    assert!(h.take_sent().is_empty());

    // A section cut inside the second packet: the first goes, the rest is refused.
    h.core
        .handle_packet(&send_rndis(52, 0, section.len() as u32 - 10, None));
    assert_eq!(
        h.completions(),
        vec![(52, Some(NvspStatus::INVALID_RNDIS_PKT))]
    );
    assert_eq!(h.take_sent(), vec![frames[0].clone()]);

    // Page buffers adding more than the largest RNDIS message: refused, nothing read
    // past the limit.
    let many: Vec<u64> = (0..17).map(|i| DATA_PAGE + i).collect();
    h.core.handle_packet(&send_rndis(
        53,
        0,
        section.len() as u32,
        Some((&many, 0, 17 * 4096)),
    ));
    assert_eq!(
        h.completions(),
        vec![(53, Some(NvspStatus::INVALID_RNDIS_PKT))]
    );
    assert!(h.take_sent().is_empty());
    assert_eq!(h.stats.snapshot().bad_packets, 4);
}

#[test]
fn a_subchannel_carries_data_and_completions_only() {
    let mut h = host();
    // Data packets on queue 1: sent, completed on queue 1, counted per queue.
    let frames = vec![frame(1, 300), frame(2, 1514)];
    let section = packed(&frames);
    h.memory.write(Host::section_gpa(1), &section).unwrap();
    h.core
        .handle_packet_on(1, &send_rndis(50, 1, section.len() as u32, None));
    assert_eq!(h.take_sent(), frames);
    let mut on_q1 = Vec::new();
    while h.core.pop_outgoing_on(1, |p, payload| {
        on_q1.push((p.transaction_id, NvspMessage::parse(payload).ok()));
        true
    }) {}
    assert_eq!(
        on_q1,
        vec![(
            50,
            Some(NvspMessage::SendRndisPacketComplete {
                status: NvspStatus::SUCCESS
            })
        )]
    );
    assert_eq!(h.completions(), vec![], "nothing on the primary");
    assert_eq!(h.stats.snapshot().tx_queue_packets[1], 1);

    // RNDIS control belongs on the primary: refused on a subchannel, not answered.
    let init = RndisMessage::Initialize(vmbus_proto::rndis::RndisInitializeRequest::new(7, 0x4000))
        .to_vec()
        .unwrap();
    h.memory.write(Host::section_gpa(0), &init).unwrap();
    let control = NvspMessage::SendRndisPacket {
        channel_type: NvspChannelType::RMC_CONTROL,
        send_buf_section_index: 0,
        send_buf_section_size: init.len() as u32,
    };
    h.core.handle_packet_on(1, &inband(&control, 51));
    // So is NVSP setup (an INIT) and a completion for a transfer never sent.
    h.core
        .handle_packet_on(1, &inband(&NvspMessage::init(NvspVersion::V6_1), 52));
    let mut statuses = Vec::new();
    while h.core.pop_outgoing_on(1, |p, payload| {
        assert_eq!(p.packet_type, PacketType::COMPLETION);
        statuses.push((p.transaction_id, NvspMessage::parse(payload).ok()));
        true
    }) {}
    assert_eq!(
        statuses,
        vec![
            (
                51,
                Some(NvspMessage::SendRndisPacketComplete {
                    status: NvspStatus::INVALID_RNDIS_PKT
                })
            ),
            (52, None),
        ]
    );
    assert_eq!(h.stats.snapshot().bad_packets, 2);
    assert_eq!(h.stats.snapshot().control_requests, 0);
    assert!(h.completions().is_empty(), "no RNDIS answer on the primary");
    let mut completion = [0u8; 16];
    let d = descriptor_for(PacketType::COMPLETION, 0, 0xdead_0000_0007, 0, 0).unwrap();
    completion.copy_from_slice(d.as_bytes());
    h.core.handle_packet_on(1, &completion);
    assert_eq!(h.stats.snapshot().unknown_completions, 1);
    // A queue the NIC does not have.
    h.core.handle_packet_on(99, &completion);
    assert_eq!(h.stats.snapshot().bad_packets, 3);
}

/// What the host wrote into the receive buffer, per transfer-page packet: (tid, the
/// RNDIS messages of its ranges).
fn transfers(h: &mut Host) -> Vec<(u64, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    let memory = h.memory.clone();
    while h.core.pop_outgoing(|p, _| {
        if p.packet_type == PacketType::DATA_USING_TRANSFER_PAGES {
            let count = u32::from_le_bytes(p.header[4..8].try_into().unwrap()) as usize;
            let mut msgs = Vec::new();
            for r in 0..count {
                let at = 8 + 8 * r;
                let len = u32::from_le_bytes(p.header[at..at + 4].try_into().unwrap());
                let off = u32::from_le_bytes(p.header[at + 4..at + 8].try_into().unwrap());
                let mut m = vec![0u8; len as usize];
                memory.read(16 * 4096 + u64::from(off), &mut m).unwrap();
                msgs.push(m);
            }
            out.push((p.transaction_id, msgs));
        }
        true
    }) {}
    out
}

/// The guest's completion of transfer `tid` (what gives its sub-allocations back).
fn complete(h: &mut Host, tid: u64) {
    let m = NvspMessage::SendRndisPacketComplete {
        status: NvspStatus::SUCCESS,
    };
    let mut payload = [0u8; 64];
    let n = m.emit(&mut payload).unwrap();
    let mut buf = [0u8; 128];
    let n = emit_inband(&mut buf, PacketType::COMPLETION, 0, tid, &payload[..n]).unwrap();
    h.core.handle_packet(&buf[..n]);
}

/// An RNDIS control message through send section 0.
fn control(h: &mut Host, m: &RndisMessage<'_>, tid: u64) {
    let bytes = m.to_vec().unwrap();
    h.memory.write(Host::section_gpa(0), &bytes).unwrap();
    h.core.handle_packet(&inband(
        &NvspMessage::SendRndisPacket {
            channel_type: NvspChannelType::RMC_CONTROL,
            send_buf_section_index: 0,
            send_buf_section_size: bytes.len() as u32,
        },
        tid,
    ));
}

/// A guest that leaves its receive buffer full: the answer to its query and the link
/// changes meanwhile are held, not dropped, and reach it in order (answer first, then
/// one indication of the latest link state) as it frees sub-allocations.
#[test]
fn control_answers_and_link_state_wait_for_receive_space() {
    use vmbus_proto::rndis::{Oid, OidRequest, RndisStatus};
    let mut h = host();
    control(
        &mut h,
        &RndisMessage::Initialize(vmbus_proto::rndis::RndisInitializeRequest::new(1, 0x4000)),
        10,
    );
    control(
        &mut h,
        &RndisMessage::Set(OidRequest {
            req_id: 2,
            oid: Oid::OID_GEN_CURRENT_PACKET_FILTER,
            dev_vc_handle: 0,
            info: &[0xD, 0, 0, 0],
        }),
        11,
    );
    for (tid, _) in transfers(&mut h) {
        complete(&mut h, tid);
    }
    // Frames until no sub-allocation is free; the guest completes none of them.
    let (free, _, total) = h.core.recv_slots().unwrap();
    assert_eq!(free, total);
    h.inbound
        .lock()
        .unwrap()
        .extend((0..total + 40).map(|i| frame(i as u8, 200)));
    while h.core.deliver_frames() {}
    let held = transfers(&mut h);
    assert_eq!(h.core.recv_slots().unwrap().0, 0, "the buffer is full");
    assert!(h.stats.snapshot().rx_no_buffer > 0);
    // A query and three link changes while it is full: nothing can be written.
    control(
        &mut h,
        &RndisMessage::Query(OidRequest {
            req_id: 77,
            oid: Oid::OID_GEN_MAXIMUM_FRAME_SIZE,
            dev_vc_handle: 0,
            info: &[],
        }),
        12,
    );
    for up in [false, true, false] {
        h.up.store(up, std::sync::atomic::Ordering::SeqCst);
        h.core.poll_link();
    }
    h.core.deliver_frames();
    assert!(transfers(&mut h).is_empty());
    assert_eq!(
        h.stats.snapshot().control_deferred,
        2,
        "the answer and one link"
    );
    // The guest frees its sub-allocations one transfer at a time.
    let mut control_msgs = Vec::new();
    for (tid, _) in held {
        complete(&mut h, tid);
        h.core.deliver_frames();
        for (t, msgs) in transfers(&mut h) {
            control_msgs.extend(msgs);
            complete(&mut h, t);
        }
    }
    let parsed: Vec<String> = control_msgs
        .iter()
        .map(|m| match RndisMessage::parse(m).unwrap() {
            RndisMessage::QueryComplete(c) => format!("query {} {:?}", c.req_id, c.status),
            RndisMessage::IndicateStatus(i) => format!("indicate {:?}", i.status),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        parsed,
        vec![
            format!("query 77 {:?}", RndisStatus::SUCCESS),
            format!("indicate {:?}", RndisStatus::MEDIA_DISCONNECT),
        ]
    );
    let s = h.stats.snapshot();
    assert_eq!((s.control_dropped, s.link_indications), (0, 1));
}
