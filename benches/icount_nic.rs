//! The netvsp core per frame, on one thread, for `scripts/icount.sh`: a [`NicCore`]
//! (the NIC's protocol core without rings or threads, as the fuzzers drive it) brought
//! up the way Linux does it (NVSP 6.1, receive and send buffers, RNDIS initialize,
//! packet filter), on a port of an in-process switch whose other port is the wire.
//!
//! - guest to host: a SEND_RNDIS_PKT naming a send-buffer section with one frame, its
//!   completion taken, the frame taken off the wire; on the primary channel or on a
//!   subchannel (the path each further queue's thread runs);
//! - host to guest: frames put on the wire in batches of 32, pulled by the core into
//!   the receive buffer, the transfer-page packets taken and completed.
//!
//! Not counted: the VMBus rings and the guest's driver (the full NIC rows of
//! `scripts/icount.sh nic` count those, threaded).

use netvsp::{NetEndpoint, NetvspConfig, NicCore, NicCounters, Switch, SwitchPort};
use std::hint::black_box;
use vmbus::{DeviceContext, GuestMemory};
use vmbus_proto::nvsp::{NvspChannelType, NvspMessage, NvspVersion};
use vmbus_proto::packet::{PacketType, emit_inband};
use vmbus_proto::rndis::{Oid, OidRequest, RndisInitializeRequest, RndisMessage, packet_to_vec};

const SECTION: u64 = 6144;
/// Guest pages: receive buffer 16..528 (2 MiB), send buffer 600..632 (21 sections).
const RECV: (u32, u64, u64) = (1, 16, 512);
const SEND: (u32, u64, u64) = (2, 600, 32);
const MAC: [u8; 6] = [0x00, 0x15, 0x5D, 0x00, 0x00, 0x01];

fn inband(m: &NvspMessage, tid: u64) -> Vec<u8> {
    m.to_inband_packet(tid).unwrap()
}

fn completion(tid: u64) -> Vec<u8> {
    let mut buf = [0u8; 16];
    let n = emit_inband(&mut buf, PacketType::COMPLETION, 0, tid, &[]).unwrap();
    buf[..n].to_vec()
}

fn send_rndis(section: u32, size: usize, control: bool, tid: u64) -> Vec<u8> {
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
}

/// Takes every packet the core owes the guest on queue `q`, completing its
/// transfer-page packets; returns how many were taken.
fn drain_on(core: &mut NicCore, q: u16) -> usize {
    let mut transfers = Vec::new();
    let mut n = 0;
    while core.pop_outgoing_on(q, |p, _| {
        if p.packet_type == PacketType::DATA_USING_TRANSFER_PAGES {
            transfers.push(p.transaction_id);
        }
        true
    }) {
        n += 1;
    }
    for tid in transfers {
        core.handle_packet_on(q, &completion(tid));
    }
    n
}

fn drain(core: &mut NicCore) -> usize {
    drain_on(core, 0)
}

/// A NIC brought up on a switch port, the switch's other port (the wire), and the
/// guest memory of its buffers.
fn nic() -> (NicCore, SwitchPort, GuestMemory, NicCounters) {
    let memory = GuestMemory::new(4 << 20).unwrap();
    let context = DeviceContext::with_page_runs(memory.clone(), 1, &[RECV, SEND]);
    let switch = Switch::new(256);
    let (port, _link) = switch.port();
    let (wire, _) = switch.port();
    let mut config = NetvspConfig::default();
    config.mac = MAC;
    let stats = NicCounters::default();
    let mut core = NicCore::new(config, 1, context, Box::new(port), stats.clone());
    let send_base = SEND.1 * 4096;
    let init = RndisMessage::Initialize(RndisInitializeRequest::new(1, 0x4000))
        .to_vec()
        .unwrap();
    memory.write(send_base, &init).unwrap();
    let filter = RndisMessage::Set(OidRequest {
        req_id: 2,
        oid: Oid::OID_GEN_CURRENT_PACKET_FILTER,
        dev_vc_handle: 0,
        info: &[0xD, 0, 0, 0],
    })
    .to_vec()
    .unwrap();
    memory.write(send_base + SECTION, &filter).unwrap();
    for p in [
        inband(&NvspMessage::init(NvspVersion::V6_1), 1),
        inband(
            &NvspMessage::SendReceiveBuffer {
                gpadl_handle: RECV.0,
                id: 0xCAFE,
            },
            2,
        ),
        inband(
            &NvspMessage::SendSendBuffer {
                gpadl_handle: SEND.0,
                id: 0,
            },
            3,
        ),
        send_rndis(0, init.len(), true, 4),
        send_rndis(1, filter.len(), true, 5),
    ] {
        core.handle_packet(&p);
        core.poll_link();
        drain(&mut core);
    }
    (core, wire, memory, stats)
}

/// An Ethernet frame of `size` bytes from `src` to `dst` (IPv4 ethertype).
fn frame(size: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x5Au8; size];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

/// Guest to host on queue `q` (0: the primary channel; above: a subchannel, opened
/// first, as the guest's SUBCHANNEL request and channel open would).
pub fn g2h(size: usize, frames: u64, q: u16) {
    let (mut core, mut wire, memory, _stats) = nic();
    if q > 0 {
        core.set_queue_open(q, true);
    }
    let f = frame(size, [0xFF; 6], MAC);
    let msg = packet_to_vec(&[], &f).unwrap();
    memory.write(SEND.1 * 4096 + 2 * SECTION, &msg).unwrap();
    let pkt = send_rndis(2, msg.len(), false, 7);
    let mut buf = vec![0u8; 2048];
    let mut got = 0u64;
    for _ in 0..frames {
        core.handle_packet_on(q, black_box(&pkt));
        black_box(drain_on(&mut core, q));
        if wire.receive(&mut buf).is_some() {
            got += 1;
        }
    }
    assert_eq!(got, frames, "every frame reached the wire");
}

pub fn h2g(size: usize, frames: u64) {
    let (mut core, mut wire, _memory, stats) = nic();
    let f = frame(size, MAC, [0x02, 0, 0, 0, 0, 0x77]);
    let mut sent = 0u64;
    while sent < frames {
        let batch = 32.min(frames - sent);
        for _ in 0..batch {
            assert!(wire.transmit(black_box(&f)));
        }
        core.deliver_frames();
        black_box(drain(&mut core));
        sent += batch;
    }
    let rx = stats.snapshot().rx_frames;
    assert!(
        rx >= frames,
        "every frame reached the guest ({rx} of {frames})"
    );
}
