//! Hypercall input and output blocks for the calls VMBus uses.
//!
//! Layouts: TLFS; Linux `drivers/hv/hyperv_vmbus.h` (`hv_input_post_message`) and
//! `include/hyperv/hvhdk.h` (`hv_input_post_message_direct`,
//! `hv_input_signal_event_direct`, `hv_output_signal_event_direct`).

use crate::message::{HV_MESSAGE_PAYLOAD_SIZE, HV_MESSAGE_SIZE, HvMessageType};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A connection id (`union hv_connection_id`): 24-bit id, 8 reserved bits.
pub const CONNECTION_ID_MASK: u32 = 0x00FF_FFFF;

/// `HV_INPUT_POST_MESSAGE` (256 bytes, 8-byte aligned in guest memory).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PostMessageInputRaw {
    /// Connection id (low 24 bits) plus reserved bits.
    pub connection_id: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The message type (VMBus uses 1).
    pub message_type: u32,
    /// Payload bytes (at most 240).
    pub payload_size: u32,
    /// Payload.
    pub payload: [u8; HV_MESSAGE_PAYLOAD_SIZE],
}

/// `HV_INPUT_SIGNAL_EVENT` (8 bytes; in a fast call, the same bits in RDX).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SignalEventInputRaw {
    /// Connection id (low 24 bits) plus reserved bits.
    pub connection_id: u32,
    /// Flag number relative to the port's base flag.
    pub flag_number: u16,
    /// Reserved, zero.
    pub reserved: u16,
}

/// `HV_INPUT_POST_MESSAGE_DIRECT` (280 bytes, as Linux declares it; the root posts a
/// whole 256-byte message image into a guest VP's SIMP slot).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct PostMessageDirectInput {
    /// Target partition id.
    pub partition_id: u64,
    /// Target VP index.
    pub vp_index: u32,
    /// Target VTL.
    pub vtl: u8,
    /// Padding.
    pub padding: [u8; 3],
    /// Target SINT.
    pub sint_index: u32,
    /// The message image, header included.
    pub message: [u8; HV_MESSAGE_SIZE],
    /// Padding to a multiple of 8.
    pub padding2: u32,
}

/// `HV_INPUT_SIGNAL_EVENT_DIRECT` (16 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SignalEventDirectInput {
    /// Target partition id.
    pub target_partition: u64,
    /// Target VP index.
    pub target_vp: u32,
    /// Target VTL.
    pub target_vtl: u8,
    /// Target SINT.
    pub target_sint: u8,
    /// Flag number.
    pub flag_number: u16,
}

/// `HV_OUTPUT_SIGNAL_EVENT_DIRECT` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SignalEventDirectOutput {
    /// Non-zero if the flag was clear before.
    pub newly_signaled: u8,
    /// Reserved.
    pub reserved: [u8; 7],
}

const _: () = assert!(size_of::<PostMessageInputRaw>() == 256);
const _: () = assert!(core::mem::offset_of!(PostMessageInputRaw, message_type) == 8);
const _: () = assert!(core::mem::offset_of!(PostMessageInputRaw, payload_size) == 12);
const _: () = assert!(core::mem::offset_of!(PostMessageInputRaw, payload) == 16);
const _: () = assert!(size_of::<SignalEventInputRaw>() == 8);
const _: () = assert!(core::mem::offset_of!(SignalEventInputRaw, flag_number) == 4);
const _: () = assert!(size_of::<PostMessageDirectInput>() == 280);
const _: () = assert!(core::mem::offset_of!(PostMessageDirectInput, sint_index) == 16);
const _: () = assert!(core::mem::offset_of!(PostMessageDirectInput, message) == 20);
const _: () = assert!(size_of::<SignalEventDirectInput>() == 16);
const _: () = assert!(core::mem::offset_of!(SignalEventDirectInput, target_sint) == 13);
const _: () = assert!(core::mem::offset_of!(SignalEventDirectInput, flag_number) == 14);
const _: () = assert!(size_of::<SignalEventDirectOutput>() == 8);

/// A validated HvPostMessage input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PostMessage {
    /// The 24-bit connection id. Whether a port is connected under it is the host's
    /// question (answer `INVALID_CONNECTION_ID` if not).
    pub connection_id: u32,
    /// The message type, guest-postable (non-zero, bit 31 clear).
    pub message_type: HvMessageType,
    /// Payload length, at most 240.
    pub payload_size: u8,
    /// The payload; bytes past `payload_size` are zero.
    pub payload: [u8; HV_MESSAGE_PAYLOAD_SIZE],
}

impl PostMessage {
    /// The meaningful payload bytes.
    pub fn payload(&self) -> &[u8] {
        self.payload
            .get(..usize::from(self.payload_size))
            .unwrap_or(&[])
    }

    /// The raw input block for this message (what a guest writes before the call).
    pub fn to_raw(&self) -> PostMessageInputRaw {
        PostMessageInputRaw {
            connection_id: self.connection_id,
            reserved: 0,
            message_type: self.message_type.0,
            payload_size: u32::from(self.payload_size),
            payload: self.payload,
        }
    }
}

/// A validated HvSignalEvent input.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignalEvent {
    /// The 24-bit connection id.
    pub connection_id: u32,
    /// The flag number. The decoder only checks it against the SIEFP size (2048); the
    /// host must check it against the connection's flag count.
    pub flag_number: u16,
}

impl SignalEvent {
    /// The fast-call register value (RDX): connection id, flag number at bits 32-47.
    pub const fn to_fast_value(self) -> u64 {
        self.connection_id as u64 | (self.flag_number as u64) << 32
    }
}
