//! A tour of the wire formats a Linux guest and a VMBus host exchange to bring up a
//! synthetic NIC: the hypercall that carries a channel message, the VMBus connection and
//! channel setup, the ring packet, the NVSP handshake and the RNDIS bring-up.
//!
//! Every message is built with the crates' types, emitted to bytes, parsed back from
//! those bytes, printed field by field with its hex beside it, and re-emitted to check
//! that the bytes are identical.
//!
//! Run: `cargo run -p vmbus-examples --example wire_tour`

// Example code: every input is built here, none comes from a peer.
#![allow(clippy::indexing_slicing)]

use hv_hypercall::decode::{
    GpaReadError, GuestMemoryRead, HypercallRegisters, HypercallRequest, decode,
};
use hv_hypercall::input::PostMessage;
use hv_hypercall::{HvMessageType, HvStatus, HypercallCode, HypercallControl, HypercallResult};
use std::error::Error;
use vmbus_proto::VmbusVersion;
use vmbus_proto::channel::gpadl::{GpaRange, split};
use vmbus_proto::channel::{
    InitiateContact, Message, OfferChannel, OpenChannel, OpenResult, VersionResponse,
    VersionResponseMessage, offer_flags,
};
use vmbus_proto::guid::{Guid, class};
use vmbus_proto::nvsp::{
    NdisConfigCapabilities, Nvsp1ReceiveBufferSection, NvspMessage, NvspStatus, NvspVersion,
};
use vmbus_proto::packet::{
    FLAG_COMPLETION_REQUESTED, Packet, PacketLimits, PacketType, emit_inband,
};
use vmbus_proto::rndis::{
    InfoComplete, NdisPkt8021qInfo, Oid, OidRequest, Ppi, RndisInitializeComplete,
    RndisInitializeRequest, RndisMedium, RndisMessage, RndisStatus, packet_to_vec,
};
use zerocopy::IntoBytes;

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// One decoded field: name, byte offset, length, decoded value.
type Field = (&'static str, usize, usize, String);

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let mut s = shown.join(" ");
    if bytes.len() > 12 {
        s.push_str(" …");
    }
    s
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Prints `fields` of `bytes` with the hex of each beside it.
fn show(title: &str, bytes: &[u8], fields: &[Field]) {
    println!("\n== {title} ({} bytes)", bytes.len());
    for (name, off, len, value) in fields {
        let raw = bytes.get(*off..off + len).unwrap_or(&[]);
        println!("  +{off:<4} {:<38} {name:<28} {value}", hex(raw));
    }
}

fn check(what: &str, original: &[u8], reemitted: &[u8]) -> Res {
    if original != reemitted {
        return Err(format!("{what}: re-emitted bytes differ").into());
    }
    println!(
        "  parsed back and re-emitted: {} identical bytes",
        original.len()
    );
    Ok(())
}

fn version(v: u32) -> String {
    let name = VmbusVersion(v).name().unwrap_or("?");
    format!("{}.{} ({name})", v >> 16, v & 0xFFFF)
}

fn channel_message(
    title: &str,
    m: &Message,
    fields: impl Fn(&Message) -> Vec<Field>,
) -> Res<Message> {
    let (buf, n) = m.to_payload();
    let bytes = &buf[..n];
    let parsed = Message::parse(bytes)?;
    let mut f = vec![("message_type", 0, 4, format!("{:?}", parsed.message_type()))];
    f.extend(fields(&parsed));
    show(title, bytes, &f);
    let (again, n2) = parsed.to_payload();
    check(title, bytes, &again[..n2])?;
    Ok(parsed)
}

/// Guest memory for the hypercall demo: one page at GPA 0x5000.
struct OnePage(Vec<u8>);
impl GuestMemoryRead for OnePage {
    fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaReadError> {
        let err = GpaReadError {
            gpa,
            len: buf.len(),
        };
        let off = gpa.checked_sub(0x5000).ok_or(err)? as usize;
        buf.copy_from_slice(self.0.get(off..off + buf.len()).ok_or(err)?);
        Ok(())
    }
}

fn hypercall(initiate: &Message) -> Res {
    println!("\n### 2. How the first of those messages travels: HvCallPostMessage");
    let (payload, n) = initiate.to_payload();
    let raw = PostMessage {
        connection_id: 4,
        message_type: HvMessageType::VMBUS,
        payload_size: n as u8,
        payload: {
            let mut p = [0u8; 240];
            p.copy_from_slice(&payload);
            p
        },
    }
    .to_raw();
    let mut page = vec![0u8; 4096];
    page[..256].copy_from_slice(raw.as_bytes());
    let regs = HypercallRegisters {
        control: HypercallControl::new(HypercallCode::POST_MESSAGE).to_u64(),
        input: 0x5000,
        output: 0,
    };
    println!(
        "  RCX = {:#018x} (control: code POST_MESSAGE, slow, no reps)",
        regs.control
    );
    println!("  RDX = {:#018x} (input block GPA)", regs.input);
    let bytes = &raw.as_bytes()[..16 + n];
    match decode(&regs, &OnePage(page))? {
        HypercallRequest::PostMessage(p) => {
            show(
                "HV_INPUT_POST_MESSAGE (header + used payload)",
                bytes,
                &[
                    ("connection_id", 0, 4, format!("{}", p.connection_id)),
                    ("reserved", 4, 4, "0".into()),
                    ("message_type", 8, 4, format!("{:?}", p.message_type)),
                    ("payload_size", 12, 4, format!("{}", p.payload_size)),
                    (
                        "payload",
                        16,
                        n,
                        format!("{:?}", Message::parse(p.payload())?.message_type()),
                    ),
                ],
            );
            let rax = HypercallResult::new(HvStatus::SUCCESS).to_u64();
            println!(
                "  decoded to a PostMessage request; the host answers RAX = {rax:#x} (SUCCESS)"
            );
        }
        other => return Err(format!("unexpected decode: {other:?}").into()),
    }
    let bad = HypercallRegisters {
        input: 0x5004,
        ..regs
    };
    println!(
        "  the same call with a misaligned input GPA is refused before the host sees it: {:?}",
        decode(&bad, &OnePage(vec![0; 4096])).err()
    );
    Ok(())
}

fn vmbus() -> Res<Message> {
    println!("\n### 1. VMBus connection and channel setup (SynIC message payloads)");
    let ic = Message::InitiateContact(
        InitiateContact {
            version_requested: VmbusVersion::V5_3.0,
            target_vcpu: 0,
            interrupt_page_or_target_info: InitiateContact::target_info(2, 0, 0),
            monitor_page1: 0x7000,
            monitor_page2: 0x8000,
        },
        None,
    );
    channel_message(
        "guest -> host: INITIATE_CONTACT to connection 4",
        &ic,
        |m| match m {
            Message::InitiateContact(c, _) => vec![
                ("version_requested", 8, 4, version(c.version_requested)),
                ("target_vcpu", 12, 4, c.target_vcpu.to_string()),
                ("msg_sint", 16, 1, c.msg_sint().to_string()),
                ("msg_vtl", 17, 1, c.msg_vtl().to_string()),
                ("monitor_page1", 24, 8, format!("{:#x}", c.monitor_page1)),
                ("monitor_page2", 32, 8, format!("{:#x}", c.monitor_page2)),
            ],
            _ => vec![],
        },
    )?;
    let vr = Message::VersionResponse(VersionResponseMessage {
        response: VersionResponse {
            version_supported: 1,
            connection_state: 0,
            padding: 0,
            msg_conn_id: 1,
        },
        supported_features: None,
        monitor_pages: None,
    });
    channel_message(
        "host -> guest: VERSION_RESPONSE in SIMP slot 2",
        &vr,
        |m| match m {
            Message::VersionResponse(r) => vec![
                (
                    "version_supported",
                    8,
                    1,
                    r.response.version_supported.to_string(),
                ),
                (
                    "connection_state",
                    9,
                    1,
                    r.response.connection_state.to_string(),
                ),
                ("msg_conn_id", 12, 4, r.response.msg_conn_id.to_string()),
            ],
            _ => vec![],
        },
    )?;
    let offer = Message::OfferChannel(OfferChannel {
        interface_type: class::NETWORK,
        interface_instance: Guid::parse("5e2c3b8a-0d1f-4a43-9c8e-6f0d9b0a1c22")?,
        interrupt_latency: 0,
        reserved2: 0,
        flags: offer_flags::ENUMERATE_DEVICE_INTERFACE,
        mmio_megabytes: 0,
        user_defined: [0; 120],
        subchannel_index: 0,
        mmio_megabytes_optional: 0,
        child_relid: 1,
        monitor_id: 0,
        monitor_allocated: 0,
        is_dedicated_interrupt: 1,
        connection_id: 0x2001,
    });
    channel_message(
        "host -> guest: OFFERCHANNEL (synthetic NIC)",
        &offer,
        |m| match m {
            Message::OfferChannel(o) => {
                let (t, i, relid, conn) = (
                    o.interface_type,
                    o.interface_instance,
                    o.child_relid,
                    o.connection_id,
                );
                vec![
                    ("if_type", 8, 16, format!("{t:?}")),
                    ("if_instance", 24, 16, format!("{i}")),
                    ("chn_flags", 56, 2, format!("{:#x}", { o.flags })),
                    (
                        "sub_channel_index",
                        180,
                        2,
                        format!("{}", { o.subchannel_index }),
                    ),
                    ("child_relid", 184, 4, relid.to_string()),
                    ("monitor_allocated", 189, 1, o.monitor_allocated.to_string()),
                    (
                        "is_dedicated_interrupt",
                        190,
                        2,
                        format!("{}", { o.is_dedicated_interrupt }),
                    ),
                    ("connection_id", 192, 4, format!("{conn:#x}")),
                ]
            }
            _ => vec![],
        },
    )?;
    // The ring GPADL: 2 x 128 pages, as hv_netvsc allocates.
    let (header, bodies) = split(
        1,
        0xE1E10,
        &[GpaRange::whole_pages((0x10000..0x10100).collect())],
    )?;
    channel_message(
        &format!(
            "guest -> host: GPADL_HEADER (256 pages; {} GPADL_BODY messages follow)",
            bodies.len()
        ),
        &Message::GpadlHeader(header),
        |m| match m {
            Message::GpadlHeader(h) => vec![
                ("child_relid", 8, 4, h.header.child_relid.to_string()),
                ("gpadl", 12, 4, format!("{:#x}", h.header.gpadl)),
                ("range_buflen", 16, 2, h.header.range_buflen.to_string()),
                ("rangecount", 18, 2, h.header.range_count.to_string()),
                (
                    "range[0].byte_count",
                    20,
                    4,
                    format!("{}", h.words()[0] as u32),
                ),
                (
                    "range[0].byte_offset",
                    24,
                    4,
                    format!("{}", h.words()[0] >> 32),
                ),
                (
                    "range[0].pfn_array (26)",
                    28,
                    208,
                    format!("{:#x}..", h.words()[1]),
                ),
            ],
            _ => vec![],
        },
    )?;
    let open = Message::OpenChannel(
        OpenChannel {
            child_relid: 1,
            open_id: 1,
            ring_buffer_gpadl_handle: 0xE1E10,
            target_vp: 0,
            downstream_ring_buffer_page_offset: 128,
            user_data: [0; 120],
        },
        None,
    );
    channel_message("guest -> host: OPENCHANNEL", &open, |m| match m {
        Message::OpenChannel(o, _) => vec![
            ("child_relid", 8, 4, o.child_relid.to_string()),
            ("openid", 12, 4, o.open_id.to_string()),
            (
                "ringbuffer_gpadlhandle",
                16,
                4,
                format!("{:#x}", o.ring_buffer_gpadl_handle),
            ),
            ("target_vp", 20, 4, o.target_vp.to_string()),
            (
                "downstream_ringbuffer_pageoffset",
                24,
                4,
                o.downstream_ring_buffer_page_offset.to_string(),
            ),
        ],
        _ => vec![],
    })?;
    let result = Message::OpenResult(OpenResult {
        child_relid: 1,
        open_id: 1,
        status: 0,
    });
    channel_message("host -> guest: OPENCHANNEL_RESULT", &result, |m| match m {
        Message::OpenResult(r) => vec![
            ("child_relid", 8, 4, r.child_relid.to_string()),
            ("openid", 12, 4, r.open_id.to_string()),
            ("status", 16, 4, format!("{:#x}", r.status)),
        ],
        _ => vec![],
    })?;
    Ok(ic)
}

fn nvsp_message(title: &str, m: &NvspMessage, fields: Vec<Field>) -> Res {
    let bytes = m.to_vec()?;
    let parsed = NvspMessage::parse(&bytes).or_else(|_| NvspMessage::parse_completion(&bytes))?;
    if &parsed != m {
        return Err(format!("{title}: parsed value differs").into());
    }
    let mut f = vec![("msg_type", 0, 4, format!("{:?}", parsed.msg_type()))];
    f.extend(fields);
    show(title, &bytes, &f);
    check(title, &bytes, &parsed.to_vec()?)
}

fn nvsp() -> Res {
    println!("\n### 3. The ring packet that carries NVSP, and the NVSP handshake");
    let init = NvspMessage::init(NvspVersion::V6_1);
    let payload = init.to_vec()?;
    let mut buf = [0u8; 64];
    let n = emit_inband(
        &mut buf,
        PacketType::DATA_INBAND,
        FLAG_COMPLETION_REQUESTED,
        0x1001,
        &payload,
    )?;
    let p = Packet::parse(&buf[..n], &PacketLimits::default())?;
    let d = p.descriptor;
    show(
        "guest -> host ring packet: VM_PKT_DATA_INBAND carrying NVSP INIT",
        &buf[..n],
        &[
            ("type", 0, 2, format!("{:?}", d.packet_type)),
            (
                "offset8",
                2,
                2,
                format!("{} (data at byte {})", d.data_offset8, d.data_offset8 * 8),
            ),
            (
                "len8",
                4,
                2,
                format!(
                    "{} ({} bytes + 8-byte trailer in the ring)",
                    d.length8,
                    d.length8 * 8
                ),
            ),
            (
                "flags",
                6,
                2,
                format!("{:#x} (completion requested)", d.flags),
            ),
            ("trans_id", 8, 8, format!("{:#x}", d.transaction_id)),
            (
                "payload (NVSP)",
                16,
                p.payload.len(),
                format!("{:?}", NvspMessage::parse(p.payload)?.msg_type()),
            ),
        ],
    );
    nvsp_message(
        "NVSP INIT (guest tries 6.1 first)",
        &init,
        vec![
            ("min_protocol_ver", 4, 4, format!("{:?}", NvspVersion::V6_1)),
            ("max_protocol_ver", 8, 4, format!("{:?}", NvspVersion::V6_1)),
        ],
    )?;
    nvsp_message(
        "NVSP INIT_COMPLETE",
        &NvspMessage::InitComplete {
            negotiated_protocol_ver: NvspVersion::V6_1,
            max_mdl_chain_len: 0,
            status: NvspStatus::SUCCESS,
        },
        vec![
            ("negotiated_protocol_ver", 4, 4, "6.1".into()),
            ("status", 12, 4, "SUCCESS".into()),
        ],
    )?;
    let caps = NdisConfigCapabilities::IEEE8021Q
        | NdisConfigCapabilities::SRIOV
        | NdisConfigCapabilities::TEAMING;
    nvsp_message(
        "NVSP SEND_NDIS_CONFIG",
        &NvspMessage::SendNdisConfig {
            mtu: 1514,
            capability: caps,
        },
        vec![
            ("mtu", 4, 4, "1514".into()),
            ("capability", 12, 8, format!("{caps:?}")),
        ],
    )?;
    nvsp_message(
        "NVSP SEND_RECV_BUF (16 MiB receive buffer GPADL)",
        &NvspMessage::SendReceiveBuffer {
            gpadl_handle: 0xE1E11,
            id: 0xCAFE,
        },
        vec![
            ("gpadl_handle", 4, 4, "0xe1e11".into()),
            ("id", 8, 2, "0xcafe".into()),
        ],
    )?;
    let section = Nvsp1ReceiveBufferSection {
        offset: 0,
        sub_alloc_size: 1728,
        num_sub_allocs: 9709,
        end_offset: 9709 * 1728,
    };
    nvsp_message(
        "NVSP SEND_RECV_BUF_COMPLETE",
        &NvspMessage::SendReceiveBufferComplete {
            status: NvspStatus::SUCCESS,
            sections: vec![section],
        },
        vec![
            ("status", 4, 4, "SUCCESS".into()),
            ("num_sections", 8, 4, "1".into()),
            ("sections[0].sub_alloc_size", 16, 4, "1728".into()),
            ("sections[0].num_sub_allocs", 20, 4, "9709".into()),
        ],
    )
}

fn rndis_message(title: &str, m: &RndisMessage<'_>, fields: Vec<Field>) -> Res {
    let bytes = m.to_vec()?;
    let parsed = RndisMessage::parse(&bytes)?;
    if &parsed != m {
        return Err(format!("{title}: parsed value differs").into());
    }
    let mut f = vec![
        ("ndis_msg_type", 0, 4, format!("{:?}", parsed.msg_type())),
        ("msg_len", 4, 4, u32_at(&bytes, 4).to_string()),
    ];
    f.extend(fields);
    show(title, &bytes, &f);
    check(title, &bytes, &parsed.to_vec()?)
}

fn rndis() -> Res {
    println!("\n### 4. RNDIS bring-up and a data packet (inside NVSP SEND_RNDIS_PKT)");
    let init = RndisInitializeRequest::new(1, 0x4000);
    rndis_message(
        "guest -> host: REMOTE_NDIS_INITIALIZE_MSG",
        &RndisMessage::Initialize(init),
        vec![
            ("req_id", 8, 4, "1".into()),
            (
                "major_ver.minor_ver",
                12,
                8,
                format!("{}.{}", init.major_ver, init.minor_ver),
            ),
            ("max_xfer_size", 20, 4, format!("{:#x}", init.max_xfer_size)),
        ],
    )?;
    let done = RndisInitializeComplete {
        req_id: 1,
        status: RndisStatus::SUCCESS,
        major_ver: 1,
        minor_ver: 0,
        dev_flags: 1,
        medium: RndisMedium::default(),
        max_pkt_per_msg: 1,
        max_xfer_size: 0x4000,
        pkt_alignment_factor: 3,
        af_list_offset: 0,
        af_list_size: 0,
    };
    rndis_message(
        "host -> guest: REMOTE_NDIS_INITIALIZE_CMPLT",
        &RndisMessage::InitializeComplete(done),
        vec![
            ("req_id", 8, 4, "1".into()),
            ("status", 12, 4, format!("{:?}", done.status)),
            ("medium", 28, 4, format!("{:?}", done.medium)),
            ("max_pkt_per_msg", 32, 4, "1".into()),
            ("pkt_alignment_factor", 40, 4, "3 (8-byte alignment)".into()),
        ],
    )?;
    rndis_message(
        "guest -> host: REMOTE_NDIS_QUERY_MSG",
        &RndisMessage::Query(OidRequest {
            req_id: 2,
            oid: Oid::OID_802_3_PERMANENT_ADDRESS,
            dev_vc_handle: 0,
            info: &[],
        }),
        vec![
            ("req_id", 8, 4, "2".into()),
            (
                "oid",
                12,
                4,
                format!(
                    "{:?} ({:#010x})",
                    Oid::OID_802_3_PERMANENT_ADDRESS,
                    Oid::OID_802_3_PERMANENT_ADDRESS.0
                ),
            ),
            ("info_buflen", 16, 4, "0".into()),
            ("info_buf_offset", 20, 4, "20".into()),
        ],
    )?;
    let mac = [0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c];
    rndis_message(
        "host -> guest: REMOTE_NDIS_QUERY_CMPLT with the MAC",
        &RndisMessage::QueryComplete(InfoComplete {
            req_id: 2,
            status: RndisStatus::SUCCESS,
            info: &mac,
        }),
        vec![
            ("req_id", 8, 4, "2".into()),
            ("status", 12, 4, "SUCCESS".into()),
            ("info_buflen", 16, 4, "6".into()),
            ("info_buf_offset", 20, 4, "16 (from the body start)".into()),
            (
                "info_buf (MAC)",
                24,
                6,
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
        ],
    )?;
    let vlan = NdisPkt8021qInfo::default().with_vlan_id(10);
    let frame = [0xEEu8; 60];
    let pkt = packet_to_vec(&[Ppi::Vlan(vlan)], &frame)?;
    let RndisMessage::Packet(p) = RndisMessage::parse(&pkt)? else {
        return Err("not a packet".into());
    };
    let first_ppi = p.ppis().next().transpose()?;
    show(
        "guest -> host: REMOTE_NDIS_PACKET_MSG with an 802.1Q PPI",
        &pkt,
        &[
            ("ndis_msg_type", 0, 4, "PACKET".into()),
            ("msg_len", 4, 4, pkt.len().to_string()),
            (
                "data_offset",
                8,
                4,
                format!(
                    "{} (frame at byte {})",
                    u32_at(&pkt, 8),
                    u32_at(&pkt, 8) + 8
                ),
            ),
            ("data_len", 12, 4, p.data.len().to_string()),
            ("per_pkt_info_offset", 28, 4, u32_at(&pkt, 28).to_string()),
            ("per_pkt_info_len", 32, 4, p.ppi.len().to_string()),
            ("ppi[0]", 44, 16, format!("{first_ppi:?}")),
            ("frame", 60, frame.len(), format!("{} bytes", p.data.len())),
        ],
    );
    check(
        "packet",
        &pkt,
        &packet_to_vec(&p.ppis().collect::<Result<Vec<_>, _>>()?, p.data)?,
    )
}

fn main() -> Res {
    println!("hv-vmbus-rs wire tour: build, emit, parse back, re-emit");
    let ic = vmbus()?;
    hypercall(&ic)?;
    nvsp()?;
    rndis()?;
    println!("\nall messages parsed back and re-emitted identically");
    Ok(())
}
