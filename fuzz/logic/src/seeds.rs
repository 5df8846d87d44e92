//! Built-in seed inputs: valid messages from the crates' own emitters plus a few
//! malformed ones, so that `cargo test` exercises each target's interesting paths and
//! `cargo fuzz` starts from a corpus that already parses.

use vmbus_proto::VmbusVersion;
use vmbus_proto::channel::gpadl::{GpaRange, split};
use vmbus_proto::channel::{
    ChildRelid, GpadlCreated, InitiateContact, Message, OpenChannel, VersionResponse,
    VersionResponseMessage,
};
use vmbus_proto::packet::{
    FLAG_COMPLETION_REQUESTED, PacketType, TransferPageRange, emit_inband, emit_transfer_pages,
};

fn framed(msgs: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        let (buf, n) = m.to_payload();
        out.push(n as u8);
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// The built-in seeds of `target` (empty for an unknown name).
pub fn builtin(target: &str) -> Vec<Vec<u8>> {
    match target {
        "channel_message" => channel_message(),
        "ring_packet" => ring_packet(),
        "hypercall_decode" => hypercall_decode(),
        "nvsp" => nvsp(),
        "rndis" => rndis(),
        "ring_hostile_peer" => ring_hostile_peer(),
        "vmbus_server" => vmbus_server(),
        "netvsp_guest" => netvsp_guest(),
        "netvsc_host" => netvsc_host(),
        "netvsp_offload" => netvsp_offload(),
        "mshv_exits" => mshv_exits(),
        _ => Vec::new(),
    }
}

fn channel_message() -> Vec<Vec<u8>> {
    let ic = InitiateContact {
        version_requested: VmbusVersion::V5_3.0,
        target_vcpu: 0,
        interrupt_page_or_target_info: InitiateContact::target_info(2, 0, 0),
        monitor_page1: 0,
        monitor_page2: 0,
    };
    let open = OpenChannel {
        child_relid: 1,
        open_id: 1,
        ring_buffer_gpadl_handle: 0x10,
        target_vp: 0,
        downstream_ring_buffer_page_offset: 128,
        user_data: [0; 120],
    };
    let (gh, gb) = split(1, 0x10, &[GpaRange::whole_pages((0x100..0x200).collect())])
        .unwrap_or_else(|_| unreachable!());
    let mut gpadl_seq: Vec<Message> = vec![Message::GpadlHeader(gh)];
    gpadl_seq.extend(gb.into_iter().map(Message::GpadlBody));
    vec![
        framed(&[Message::InitiateContact(ic, None)]),
        framed(&[Message::VersionResponse(VersionResponseMessage {
            response: VersionResponse {
                version_supported: 1,
                connection_state: 0,
                padding: 0,
                msg_conn_id: 4,
            },
            supported_features: None,
            monitor_pages: None,
        })]),
        framed(&[Message::RequestOffers, Message::AllOffersDelivered]),
        framed(&[Message::OpenChannel(open, None)]),
        framed(&gpadl_seq),
        framed(&[Message::GpadlCreated(GpadlCreated {
            child_relid: 1,
            gpadl: 0x10,
            status: 0,
        })]),
        framed(&[
            Message::CloseChannel(ChildRelid { child_relid: 1 }),
            Message::Unload,
        ]),
        vec![8, 30, 0, 0, 0, 0, 0, 0, 0],
        vec![],
    ]
}

fn ring_packet() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    if let Ok(n) = emit_inband(
        &mut buf,
        PacketType::DATA_INBAND,
        FLAG_COMPLETION_REQUESTED,
        1,
        &[1; 40],
    ) {
        out.push(buf[..n].to_vec());
    }
    if let Ok(n) = emit_inband(&mut buf, PacketType::COMPLETION, 0, 1, &[1; 8]) {
        out.push(buf[..n].to_vec());
    }
    let ranges = [
        TransferPageRange {
            byte_count: 60,
            byte_offset: 0,
        },
        TransferPageRange {
            byte_count: 60,
            byte_offset: 1728,
        },
    ];
    if let Ok(n) = emit_transfer_pages(
        &mut buf,
        FLAG_COMPLETION_REQUESTED,
        2,
        0xCAFE,
        &ranges,
        &[0; 40],
    ) {
        out.push(buf[..n].to_vec());
    }
    // GPA direct: one range of 5000 bytes at offset 100 (2 pages) + payload.
    let mut g = vec![
        9, 0, 6, 0, 8, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    g.extend_from_slice(&5000u32.to_le_bytes());
    g.extend_from_slice(&100u32.to_le_bytes());
    g.extend_from_slice(&0x1234u64.to_le_bytes());
    g.extend_from_slice(&0x1235u64.to_le_bytes());
    g.extend_from_slice(&[0xAB; 16]);
    out.push(g);
    out.push(vec![6, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

fn hypercall_decode() -> Vec<Vec<u8>> {
    let regs = |c: u64, i: u64, o: u64| {
        let mut v = Vec::new();
        v.extend_from_slice(&c.to_le_bytes());
        v.extend_from_slice(&i.to_le_bytes());
        v.extend_from_slice(&o.to_le_bytes());
        v
    };
    let mut post = regs(0x5C, 0x1000, 0);
    let mut input = vec![0u8; 256];
    input[0] = 4;
    input[8] = 1;
    input[12] = 12;
    input[16] = 14;
    post.extend_from_slice(&input);
    let mut slow_signal = regs(0x5D, 0x1000, 0);
    slow_signal.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
    vec![
        post,
        regs(0x1005D, 7, 0),
        slow_signal,
        regs(0x5C | 1 << 16, 0x1000, 0),
        regs(0x46, 0, 0),
        regs(0x1005D, 7 | 4000 << 32, 0),
    ]
}

fn nvsp() -> Vec<Vec<u8>> {
    use vmbus_proto::nvsp::{NdisVersion, NvspMessage, NvspSendIndirectionTable, NvspVersion};
    let mut out: Vec<Vec<u8>> = [
        NvspMessage::init(NvspVersion::V6_1),
        NvspMessage::init(NvspVersion::V1),
        NvspMessage::send_ndis_version(NdisVersion::new(6, 30)),
    ]
    .iter()
    .filter_map(|m| m.to_vec().ok())
    .collect();
    if let Ok(b) = NvspSendIndirectionTable::round_robin(4).to_vec(12) {
        out.push(b);
    }
    // SEND_RECV_BUF_COMPLETE claiming 2 sections in a 40-byte message.
    let mut b = vec![0u8; 40];
    b[0] = 102;
    b[4] = 1;
    b[8] = 2;
    out.push(b);
    out.push(vec![101, 0, 0, 0, 1, 0]);
    out.push(vec![]);
    out
}

fn rndis() -> Vec<Vec<u8>> {
    use vmbus_proto::rndis::{
        InfoComplete, NdisPkt8021qInfo, Oid, OidRequest, Ppi, RndisMessage, RndisStatus,
        packet_to_vec,
    };
    let mac = [0x00, 0x15, 0x5d, 1, 2, 3];
    let msgs = [
        RndisMessage::Query(OidRequest {
            req_id: 1,
            oid: Oid::OID_802_3_PERMANENT_ADDRESS,
            dev_vc_handle: 0,
            info: &[],
        }),
        RndisMessage::QueryComplete(InfoComplete {
            req_id: 1,
            status: RndisStatus::SUCCESS,
            info: &mac,
        }),
        RndisMessage::Set(OidRequest {
            req_id: 2,
            oid: Oid::OID_GEN_CURRENT_PACKET_FILTER,
            dev_vc_handle: 0,
            info: &[0xD, 0, 0, 0],
        }),
    ];
    let mut out: Vec<Vec<u8>> = msgs.iter().filter_map(|m| m.to_vec().ok()).collect();
    let vlan = Ppi::Vlan(NdisPkt8021qInfo::default().with_vlan_id(10));
    if let Ok(p) = packet_to_vec(&[vlan], &[0xEE; 60]) {
        // Two packets back to back, as a batched send.
        let mut two = p.clone();
        two.extend_from_slice(&p);
        out.push(p);
        out.push(two);
    }
    out.push(vec![1, 0, 0, 0, 0, 0, 0, 0]);
    out
}

fn ring_hostile_peer() -> Vec<Vec<u8>> {
    let ring = |w: u32, r: u32, data: &[u8]| {
        let mut v = Vec::new();
        for x in [w, r, 0, 0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.push(1);
        v.extend_from_slice(data);
        v
    };
    let mut pkt = vec![0u8; 64];
    let n = emit_inband(&mut pkt, PacketType::DATA_INBAND, 0, 1, &[7; 24]).unwrap_or(0);
    pkt.truncate(n);
    pkt.extend_from_slice(&[0; 8]);
    vec![
        ring(0, 0, &[]),
        ring(n as u32 + 8, 0, &pkt),
        ring(48, 0, &[6, 0, 2, 0, 200, 0, 0, 0]),
        ring(4096, 0, &[]),
        ring(24, 4072, &pkt),
        ring(8, 16, &[]),
    ]
}

fn vmbus_server() -> Vec<Vec<u8>> {
    // A full Linux-like session: contact, offers, GPADL, open, close, teardown, unload;
    // each message followed by a host-event byte (2 = nothing).
    let ic = InitiateContact {
        version_requested: VmbusVersion::V5_3.0,
        target_vcpu: 0,
        interrupt_page_or_target_info: InitiateContact::target_info(2, 0, 0),
        monitor_page1: 0,
        monitor_page2: 0,
    };
    let (gh, gb) = split(1, 0x10, &[GpaRange::whole_pages((0x100..0x108).collect())])
        .unwrap_or_else(|_| unreachable!());
    let open = OpenChannel {
        child_relid: 1,
        open_id: 1,
        ring_buffer_gpadl_handle: 0x10,
        target_vp: 0,
        downstream_ring_buffer_page_offset: 4,
        user_data: [0; 120],
    };
    let mut session = vec![
        Message::InitiateContact(ic, None),
        Message::RequestOffers,
        Message::GpadlHeader(gh),
    ];
    session.extend(gb.into_iter().map(Message::GpadlBody));
    session.extend([
        Message::OpenChannel(open, None),
        Message::CloseChannel(ChildRelid { child_relid: 1 }),
        Message::GpadlTeardown(vmbus_proto::channel::GpadlTeardown {
            child_relid: 1,
            gpadl: 0x10,
        }),
        Message::Unload,
    ]);
    let with_events = |msgs: &[Message], event: u8| {
        let mut out = Vec::new();
        for m in msgs {
            let (buf, n) = m.to_payload();
            out.push(n as u8);
            out.extend_from_slice(&buf[..n]);
            out.push(event);
        }
        out
    };
    // GPADLs against guest RAM with a hole (pages 0x100..0x400) and a seam at page
    // 0x440: in the hole, across a region's edge into the hole, past the last region
    // (all refused), and across the seam of two adjacent regions (accepted, then a
    // channel opened on it, paged: event 0x12).
    let gpadl_of = |id: u32, pfns: Vec<u64>| {
        let (gh, gb) =
            split(1, id, &[GpaRange::whole_pages(pfns)]).unwrap_or_else(|_| unreachable!());
        let mut v = vec![Message::GpadlHeader(gh)];
        v.extend(gb.into_iter().map(Message::GpadlBody));
        v
    };
    let mut memory_session = vec![Message::InitiateContact(ic, None), Message::RequestOffers];
    memory_session.extend(gpadl_of(0x20, (0x200..0x204).collect()));
    memory_session.extend(gpadl_of(0x21, (0xfe..0x102).collect()));
    memory_session.extend(gpadl_of(0x22, (0x44c..0x454).collect()));
    memory_session.extend(gpadl_of(0x23, vec![0x43e, 0x43f, 0x440, 0x441]));
    memory_session.push(Message::OpenChannel(
        OpenChannel {
            ring_buffer_gpadl_handle: 0x23,
            downstream_ring_buffer_page_offset: 2,
            ..open
        },
        None,
    ));
    memory_session.push(Message::CloseChannel(ChildRelid { child_relid: 1 }));
    vec![
        with_events(&session, 2),
        with_events(&session, 1),
        with_events(&session, 3),
        with_events(&session[..4], 0),
        with_events(&memory_session, 2),
        with_events(&memory_session, 0x12),
        vec![],
    ]
}

fn netvsp_guest() -> Vec<Vec<u8>> {
    use vmbus_proto::nvsp::{NvspChannelType, NvspMessage, NvspVersion};
    use vmbus_proto::rndis::{
        Oid, OidRequest, RndisInitializeRequest, RndisMessage, packet_to_vec,
    };
    let inband = |m: &NvspMessage, tid: u64| m.to_inband_packet(tid).unwrap_or_default();
    let framed = |packets: &[Vec<u8>], prefix: &[u8]| {
        let mut out = (prefix.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(prefix);
        for p in packets {
            out.extend_from_slice(&(p.len() as u16).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    };
    // The send buffer holds an RNDIS INIT in section 0, a MAC query in section 1 and a
    // data packet in section 2 (sections are 6144 bytes).
    let mut prefix = vec![0u8; 3 * 6144];
    let init = RndisMessage::Initialize(RndisInitializeRequest::new(1, 0x4000))
        .to_vec()
        .unwrap_or_default();
    prefix[..init.len()].copy_from_slice(&init);
    let q = RndisMessage::Query(OidRequest {
        req_id: 2,
        oid: Oid::OID_802_3_PERMANENT_ADDRESS,
        dev_vc_handle: 0,
        info: &[],
    })
    .to_vec()
    .unwrap_or_default();
    prefix[6144..6144 + q.len()].copy_from_slice(&q);
    let filter = RndisMessage::Set(OidRequest {
        req_id: 3,
        oid: Oid::OID_GEN_CURRENT_PACKET_FILTER,
        dev_vc_handle: 0,
        info: &[0xD, 0, 0, 0],
    })
    .to_vec()
    .unwrap_or_default();
    let frame = packet_to_vec(&[], &[0xAB; 100]).unwrap_or_default();
    prefix[2 * 6144..2 * 6144 + frame.len()].copy_from_slice(&frame);
    let mut prefix2 = prefix.clone();
    prefix2[..filter.len()].copy_from_slice(&filter);
    let rndis = |section: u32, size: usize, control: bool, tid: u64| {
        inband(
            &NvspMessage::SendRndisPacket {
                channel_type: if control {
                    NvspChannelType::RMC_CONTROL
                } else {
                    NvspChannelType::RMC_DATA
                },
                send_buf_section_index: section,
                send_buf_section_size: size as u32,
            },
            tid,
        )
    };
    let bring_up = vec![
        inband(&NvspMessage::init(NvspVersion::V6_1), 1),
        inband(
            &NvspMessage::SendReceiveBuffer {
                gpadl_handle: 1,
                id: 0xCAFE,
            },
            2,
        ),
        inband(
            &NvspMessage::SendSendBuffer {
                gpadl_handle: 2,
                id: 0,
            },
            3,
        ),
        rndis(0, init.len(), true, 4),
        rndis(1, q.len(), true, 5),
        rndis(2, frame.len(), false, 6),
    ];
    let mut with_filter = bring_up.clone();
    with_filter[3] = rndis(0, filter.len(), true, 4);
    let mut data_flood = bring_up.clone();
    for i in 0..40 {
        data_flood.push(rndis(2, frame.len(), false, 100 + i));
    }
    // Linux's batching: section 3 holds a padded packet and the RNDIS header of a
    // second whose 1,000-byte frame is in page buffers (guest page 70, right after
    // the sections), sent as one GPA-direct SEND_RNDIS_PKT naming the section.
    let mut batched = prefix2.clone();
    batched.resize(4 * 6144 + 1000, 0);
    let mut first = packet_to_vec(&[], &[0xCD; 90]).unwrap_or_default();
    let len = first.len();
    first.resize(len.next_multiple_of(8), 0);
    let _ = vmbus_proto::rndis::pad_message(&mut first, len, 8);
    let mut second = [0u8; 64];
    let hl = vmbus_proto::rndis::emit_packet_header(&mut second, &[], 1000).unwrap_or(0);
    let section_len = first.len() + hl;
    batched[3 * 6144..3 * 6144 + first.len()].copy_from_slice(&first);
    batched[3 * 6144 + first.len()..3 * 6144 + section_len].copy_from_slice(&second[..hl]);
    batched[4 * 6144..].fill(0xEF);
    let partial = {
        let m = NvspMessage::SendRndisPacket {
            channel_type: NvspChannelType::RMC_DATA,
            send_buf_section_index: 3,
            send_buf_section_size: section_len as u32,
        };
        let mut payload = [0u8; 40];
        let n = m.emit(&mut payload).unwrap_or(0);
        // reserved, range count 1; byte count, byte offset, one page number.
        let mut header = Vec::new();
        for w in [0u32, 1, 1000, 0] {
            header.extend_from_slice(&w.to_le_bytes());
        }
        header.extend_from_slice(&70u64.to_le_bytes());
        let mut p = vec![0u8; 16 + header.len() + 40];
        if let Ok(d) = vmbus_proto::packet::descriptor_for(
            PacketType::DATA_USING_GPA_DIRECT,
            FLAG_COMPLETION_REQUESTED,
            200,
            header.len(),
            n,
        ) {
            p.truncate(usize::from(d.length8) * 8);
            // The descriptor: type, data offset, length (both in 8-byte units),
            // flags, transaction id.
            p[0..2].copy_from_slice(&9u16.to_le_bytes());
            p[2..4].copy_from_slice(&d.data_offset8.to_le_bytes());
            p[4..6].copy_from_slice(&d.length8.to_le_bytes());
            p[6..8].copy_from_slice(&FLAG_COMPLETION_REQUESTED.to_le_bytes());
            p[8..16].copy_from_slice(&200u64.to_le_bytes());
            p[16..16 + header.len()].copy_from_slice(&header);
            let at = usize::from(d.data_offset8) * 8;
            p[at..at + n].copy_from_slice(&payload[..n]);
        }
        p
    };
    let mut with_batch = bring_up.clone();
    with_batch[3] = rndis(0, filter.len(), true, 4);
    with_batch.push(partial);
    // Data on the subchannels (the harness takes a packet's queue from the top byte
    // of its transaction id), and a control message and an INIT there (refused).
    let mut on_queues = with_filter.clone();
    for i in 0..12u64 {
        on_queues.push(rndis(2, frame.len(), false, (1 + i % 2) << 56 | (300 + i)));
    }
    on_queues.push(rndis(1, q.len(), true, 1 << 56 | 400));
    on_queues.push(inband(&NvspMessage::init(NvspVersion::V6_1), 2 << 56 | 401));
    vec![
        framed(&bring_up, &prefix),
        framed(&with_filter, &prefix2),
        framed(&data_flood, &prefix2),
        framed(&bring_up[..1], &[]),
        framed(&[vec![9, 0, 4, 0, 4, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]], &[]),
        framed(&with_batch, &batched),
        framed(&on_queues, &prefix2),
    ]
}

/// Hostile-host inputs for netvsc: an RNDIS packet and a link indication in the receive
/// buffer delivered by transfer pages (valid, then with ranges out of the buffer),
/// completions for unknown and made-up NVSP tids, and an empty input.
fn netvsc_host() -> Vec<Vec<u8>> {
    use vmbus_proto::rndis::{IndicateStatus, RndisMessage, RndisStatus, packet_to_vec};
    let mut rb = packet_to_vec(&[], &[0xab; 60]).unwrap_or_default();
    let off2 = rb.len() as u32;
    let mut ind = [0u8; 64];
    let n = RndisMessage::IndicateStatus(IndicateStatus {
        status: RndisStatus::MEDIA_DISCONNECT,
        buffer: &[],
    })
    .emit(&mut ind)
    .unwrap_or(0);
    rb.extend_from_slice(&ind[..n]);
    let xfer = |ranges: &[(u32, u32)], tid: u64| {
        // Transfer-page packet: descriptor (16) + pageset id, sender-owns, reserved,
        // range count (8), ranges (8 each), then an NVSP SEND_RNDIS_PKT payload.
        let hdr_len = 16 + 8 + 8 * ranges.len();
        let total = hdr_len + 16;
        let mut p = vec![0u8; (total + 7) & !7];
        p[0..2].copy_from_slice(&7u16.to_le_bytes());
        p[2..4].copy_from_slice(&((hdr_len / 8) as u16).to_le_bytes());
        let len8 = (p.len() / 8) as u16;
        p[4..6].copy_from_slice(&len8.to_le_bytes());
        p[6..8].copy_from_slice(&1u16.to_le_bytes());
        p[8..16].copy_from_slice(&tid.to_le_bytes());
        p[16..18].copy_from_slice(&0xcafeu16.to_le_bytes());
        p[20..24].copy_from_slice(&(ranges.len() as u32).to_le_bytes());
        for (i, (count, offset)) in ranges.iter().enumerate() {
            p[24 + 8 * i..28 + 8 * i].copy_from_slice(&count.to_le_bytes());
            p[28 + 8 * i..32 + 8 * i].copy_from_slice(&offset.to_le_bytes());
        }
        p[hdr_len..hdr_len + 4].copy_from_slice(&107u32.to_le_bytes());
        p
    };
    let completion = |tid: u64, payload: &[u8]| {
        let total = 16 + payload.len();
        let mut p = vec![0u8; (total + 7) & !7];
        p[0..2].copy_from_slice(&11u16.to_le_bytes());
        p[2..4].copy_from_slice(&2u16.to_le_bytes());
        let len8 = (p.len() / 8) as u16;
        p[4..6].copy_from_slice(&len8.to_le_bytes());
        p[8..16].copy_from_slice(&tid.to_le_bytes());
        p[16..16 + payload.len()].copy_from_slice(payload);
        p
    };
    let framed = |prefix: &[u8], packets: &[Vec<u8>]| {
        let mut out = (prefix.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(prefix);
        for p in packets {
            out.extend_from_slice(&(p.len() as u16).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    };
    let rndis_done = 108u32.to_le_bytes();
    vec![
        framed(&rb, &[xfer(&[(off2, 0), (n as u32, off2)], 9)]),
        framed(&rb, &[xfer(&[(u32::MAX, 0), (64, u32::MAX - 8)], 10)]),
        framed(
            &[],
            &[
                completion(1 << 62 | 999_999, &rndis_done),
                completion(1 << 61 | 7, &rndis_done),
                completion(12345, &[]),
            ],
        ),
        // The most ranges a transfer may carry, all pointing at the same packet.
        framed(&rb, &[xfer(&[(off2, 0); 375], 11)]),
        vec![],
    ]
}

/// Offload requests on well-formed IPv4/IPv6 TCP and UDP frames (LSO with a common
/// MSS, checksum, VLAN tag, IPv4 header checksum) and a bad offset and MSS.
fn netvsp_offload() -> Vec<Vec<u8>> {
    let frame = |v6: bool, tcp: bool, payload: usize| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let l4_len = if tcp { 20 } else { 8 } + payload;
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[if tcp { 6 } else { 17 }, 64]);
            f.extend_from_slice(&[0xfe; 32]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, if tcp { 6 } else { 17 }, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        }
        if tcp {
            f.extend_from_slice(&[
                0, 80, 0, 81, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 1, 0, 0, 0, 0, 0,
            ]);
        } else {
            f.extend_from_slice(&[0, 53, 0, 53]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        f.extend((0..payload).map(|i| i as u8));
        f
    };
    let seed = |flags: u8, mss: u16, l4: u8, tci: u16, f: Vec<u8>| {
        let mut s = vec![flags];
        s.extend_from_slice(&mss.to_le_bytes());
        s.push(l4);
        s.extend_from_slice(&tci.to_le_bytes());
        s.extend_from_slice(&f);
        s
    };
    vec![
        seed(0x14, 1448, 34, 0, frame(false, true, 5000)),
        seed(0x16, 1428, 54, 0, frame(true, true, 3000)),
        seed(0x01, 0, 34, 0, frame(false, false, 200)),
        seed(0x03, 0, 54, 0, frame(true, false, 200)),
        seed(0x2d, 0, 34, 0x2064, frame(false, true, 100)),
        seed(0x34, 1448, 34, 7, frame(false, true, 9000)),
        seed(0x14, 10, 34, 0, frame(false, true, 500)),
        seed(0x05, 0, 200, 0, frame(false, true, 50)),
    ]
}

/// Intercept sequences: a slow HvPostMessage whose input block is in the prefix, a
/// fast HvSignalEvent, COM1 output, a SINT-deliverable notification, a poweroff write,
/// an MMIO access and garbage types.
fn mshv_exits() -> Vec<Vec<u8>> {
    // One 128-byte chunk: type pick, then the payload's first 127 bytes.
    let chunk = |pick: u8, fill: &dyn Fn(&mut [u8; 127])| {
        let mut c = [0u8; 128];
        c[0] = pick;
        let mut body = [0u8; 127];
        fill(&mut body);
        c[1..].copy_from_slice(&body);
        c
    };
    // Header: vp 0 (bytes 0..4), instruction length at 4, RIP at 24.
    let hypercall = |rcx: u64, rdx: u64| {
        chunk(0, &move |b| {
            b[4] = 3;
            b[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
            b[56..64].copy_from_slice(&rcx.to_le_bytes());
            b[64..72].copy_from_slice(&rdx.to_le_bytes());
        })
    };
    let io = |port: u16, size: u8, write: bool| {
        chunk(1, &move |b| {
            b[4] = 1;
            b[5] = u8::from(write);
            b[40..42].copy_from_slice(&port.to_le_bytes());
            b[42] = size;
            b[48] = b'A';
        })
    };
    let deliverable = chunk(2, &|b| b[40] = 0x0f);
    let mut post_input = vec![0u8; 256];
    post_input[0] = 4; // connection 4
    post_input[8] = 1; // message type 1
    post_input[12] = 4; // payload size
    let seed = |prefix: &[u8], chunks: &[[u8; 128]]| {
        let mut s = (prefix.len() as u16).to_le_bytes().to_vec();
        s.extend_from_slice(prefix);
        for c in chunks {
            s.extend_from_slice(c);
        }
        s
    };
    vec![
        seed(
            &post_input,
            &[hypercall(0x5c, 0), deliverable, io(0x3f8, 1, true)],
        ),
        seed(
            &[],
            &[hypercall(0x1005d, 0x0000_0002_0000_0001), deliverable],
        ),
        seed(
            &[],
            &[io(0x3f8, 1, true), io(0x3fd, 1, false), io(0x604, 2, true)],
        ),
        seed(
            &[],
            &[deliverable, deliverable, chunk(6, &|b| b[56] = 0xfe)],
        ),
        seed(&[], &[chunk(0x81, &|_| {}), io(0x64, 4, false)]),
        seed(
            &post_input,
            &[hypercall(0x5c, 0), hypercall(0x99, 0), chunk(5, &|_| {})],
        ),
    ]
}
