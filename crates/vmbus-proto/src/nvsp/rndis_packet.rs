//! SEND_RNDIS_PKT and its completion: an RNDIS message in a send-buffer section or in
//! the packet's page buffers, or (host to guest) in transfer pages.

use super::*;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct nvsp_1_message_send_rndis_packet` (12 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendRndisPacket {
    /// Data or control.
    pub channel_type: NvspChannelType,
    /// Send-buffer section holding the RNDIS message, or [`NETVSC_INVALID_INDEX`]. The
    /// guest may name a section past the buffer: check it.
    pub send_buf_section_index: u32,
    /// Bytes used in that section (0 when not using the send buffer); may exceed the
    /// section size when sent by a hostile guest.
    pub send_buf_section_size: u32,
}

/// `struct nvsp_1_message_send_rndis_packet_complete` (4 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp1SendRndisPacketComplete {
    /// SUCCESS, or FAIL/INVALID_RNDIS_PKT.
    pub status: NvspStatus,
}

const _: () = assert!(size_of::<Nvsp1SendRndisPacket>() == 12);
const _: () = assert!(offset_of!(Nvsp1SendRndisPacket, send_buf_section_index) == 4);
const _: () = assert!(offset_of!(Nvsp1SendRndisPacket, send_buf_section_size) == 8);
const _: () = assert!(size_of::<Nvsp1SendRndisPacketComplete>() == 4);
