//! The receive and send buffers: the guest's GPADLs announced (SEND_RECV_BUF,
//! SEND_SEND_BUF), the host's answers (its sub-allocation sections, the send section
//! size), revocation, and v2's ALLOC_RXBUF / FREE_RXBUF.

use super::*;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct nvsp_1_message_send_receive_buffer` (6 bytes, packed): the body of
/// SEND_RECV_BUF.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendReceiveBuffer {
    /// The GPADL the guest created for the buffer. The host must check it names a GPADL
    /// of this channel.
    pub gpadl_handle: u32,
    /// The buffer id ([`NETVSC_RECEIVE_BUFFER_ID`]), echoed as `xfer_pageset_id`.
    pub id: u16,
}

/// `struct nvsp_1_receive_buffer_section` (16 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1ReceiveBufferSection {
    /// Byte offset of the section in the receive buffer.
    pub offset: u32,
    /// Size of each sub-allocation; every RNDIS message the host sends must fit in it.
    pub sub_alloc_size: u32,
    /// Number of sub-allocations.
    pub num_sub_allocs: u32,
    /// End of the section. A hostile host may send values outside the buffer or
    /// inconsistent with the other fields: check them.
    pub end_offset: u32,
}

/// `struct nvsp_1_message_send_receive_buffer_complete` (24 bytes, with the one section
/// Linux declares; more sections may follow in the packet).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendReceiveBufferComplete {
    /// SUCCESS if the host accepted the buffer.
    pub status: NvspStatus,
    /// Number of sections (Linux requires 1).
    pub num_sections: u32,
    /// The first section (`sections[1]` in Linux).
    pub sections: [Nvsp1ReceiveBufferSection; 1],
}

/// `struct nvsp_1_message_revoke_receive_buffer` (2 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp1RevokeReceiveBuffer {
    /// The buffer id given in SEND_RECV_BUF.
    pub id: u16,
}

/// `struct nvsp_1_message_send_send_buffer` (6 bytes, packed).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendSendBuffer {
    /// The GPADL of the send buffer.
    pub gpadl_handle: u32,
    /// The buffer id ([`NETVSC_SEND_BUFFER_ID`]).
    pub id: u16,
}

/// `struct nvsp_1_message_send_send_buffer_complete` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendSendBufferComplete {
    /// SUCCESS if the host accepted the buffer.
    pub status: NvspStatus,
    /// The section size the host chose ([`NETVSC_SEND_SECTION_SIZE`]); a hostile host
    /// may send 0 or more than the buffer.
    pub section_size: u32,
}

/// `struct nvsp_1_message_revoke_send_buffer` (2 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp1RevokeSendBuffer {
    /// The buffer id given in SEND_SEND_BUF.
    pub id: u16,
}

/// `struct nvsp_2_alloc_rxbuf` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2AllocRxbuf {
    /// Matches request and response.
    pub alloc_id: u32,
    /// Length of the buffer to allocate.
    pub len: u32,
}

/// `struct nvsp_2_alloc_rxbuf_comp` (20 bytes, packed: the u64 sits at offset 12).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2AllocRxbufComp {
    /// An NDIS_STATUS code.
    pub status: u32,
    /// The request's `alloc_id`.
    pub alloc_id: u32,
    /// GPADL of the allocated buffer.
    pub gpadl_handle: u32,
    /// Receive buffer id.
    pub recv_buf_id: u64,
}

/// `struct nvsp_2_free_rxbuf` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2FreeRxbuf {
    /// Receive buffer id.
    pub recv_buf_id: u64,
}

const _: () = assert!(size_of::<Nvsp1SendReceiveBuffer>() == 6);
const _: () = assert!(offset_of!(Nvsp1SendReceiveBuffer, id) == 4);
const _: () = assert!(size_of::<Nvsp1ReceiveBufferSection>() == 16);
const _: () = assert!(offset_of!(Nvsp1ReceiveBufferSection, sub_alloc_size) == 4);
const _: () = assert!(offset_of!(Nvsp1ReceiveBufferSection, num_sub_allocs) == 8);
const _: () = assert!(offset_of!(Nvsp1ReceiveBufferSection, end_offset) == 12);
const _: () = assert!(size_of::<Nvsp1SendReceiveBufferComplete>() == 24);
const _: () = assert!(offset_of!(Nvsp1SendReceiveBufferComplete, num_sections) == 4);
const _: () = assert!(offset_of!(Nvsp1SendReceiveBufferComplete, sections) == 8);
const _: () = assert!(size_of::<Nvsp1RevokeReceiveBuffer>() == 2);
const _: () = assert!(size_of::<Nvsp1SendSendBuffer>() == 6);
const _: () = assert!(offset_of!(Nvsp1SendSendBuffer, id) == 4);
const _: () = assert!(size_of::<Nvsp1SendSendBufferComplete>() == 8);
const _: () = assert!(offset_of!(Nvsp1SendSendBufferComplete, section_size) == 4);
const _: () = assert!(size_of::<Nvsp1RevokeSendBuffer>() == 2);
const _: () = assert!(size_of::<Nvsp2AllocRxbuf>() == 8);
const _: () = assert!(offset_of!(Nvsp2AllocRxbuf, len) == 4);
const _: () = assert!(size_of::<Nvsp2AllocRxbufComp>() == 20);
const _: () = assert!(offset_of!(Nvsp2AllocRxbufComp, alloc_id) == 4);
const _: () = assert!(offset_of!(Nvsp2AllocRxbufComp, gpadl_handle) == 8);
const _: () = assert!(offset_of!(Nvsp2AllocRxbufComp, recv_buf_id) == 12);
const _: () = assert!(size_of::<Nvsp2FreeRxbuf>() == 8);
