//! The 256-byte SynIC message (`HV_MESSAGE`) and its header.
//!
//! Layout from Linux `include/hyperv/hvgdk_mini.h` (`struct hv_message_header`,
//! `struct hv_message`), which matches the hypervisor; note that TLFS 6.0b prints the
//! header with `PayloadSize` and `Reserved` swapped (MicrosoftDocs issue #1624).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of one SynIC message, header included (`HV_MESSAGE_SIZE`).
pub const HV_MESSAGE_SIZE: usize = 256;
/// Maximum payload of one SynIC message (`HV_MESSAGE_PAYLOAD_BYTE_COUNT`).
pub const HV_MESSAGE_PAYLOAD_SIZE: usize = 240;
/// Number of SINTs per virtual processor (`HV_SYNIC_SINT_COUNT`).
pub const HV_SYNIC_SINT_COUNT: usize = 16;

crate::open_enum! {
    /// `HV_MESSAGE_TYPE`. Values with bit 31 set are reserved for the hypervisor; a guest's
    /// HvPostMessage may only use values in 1..=0x7FFF_FFFF.
    pub struct HvMessageType(u32) {
        /// The slot is empty (`HVMSG_NONE`).
        NONE = 0x0000_0000,
        /// The type VMBus uses for channel-management messages in both directions
        /// (Linux `vmbus_post_msg` passes 1 to `hv_post_message`). Not a TLFS name.
        VMBUS = 0x0000_0001,
        /// `HVMSG_UNMAPPED_GPA`.
        UNMAPPED_GPA = 0x8000_0000,
        /// `HVMSG_GPA_INTERCEPT`.
        GPA_INTERCEPT = 0x8000_0001,
        /// `HVMSG_TIMER_EXPIRED`.
        TIMER_EXPIRED = 0x8000_0010,
        /// `HVMSG_INVALID_VP_REGISTER_VALUE`.
        INVALID_VP_REGISTER_VALUE = 0x8000_0020,
        /// `HVMSG_UNRECOVERABLE_EXCEPTION`.
        UNRECOVERABLE_EXCEPTION = 0x8000_0021,
        /// `HVMSG_UNSUPPORTED_FEATURE`.
        UNSUPPORTED_FEATURE = 0x8000_0022,
        /// `HVMSG_EVENTLOG_BUFFERCOMPLETE`.
        EVENTLOG_BUFFERCOMPLETE = 0x8000_0040,
        /// `HVMSG_HYPERCALL_INTERCEPT` (MSHV root: a guest hypercall to handle).
        HYPERCALL_INTERCEPT = 0x8000_0050,
        /// `HVMSG_SYNIC_EVENT_INTERCEPT`.
        SYNIC_EVENT_INTERCEPT = 0x8000_0060,
        /// `HVMSG_SYNIC_SINT_DELIVERABLE` (MSHV root: a busy SINT slot freed).
        SYNIC_SINT_DELIVERABLE = 0x8000_0062,
        /// `HVMSG_X64_IO_PORT_INTERCEPT`.
        X64_IO_PORT_INTERCEPT = 0x8001_0000,
        /// `HVMSG_X64_MSR_INTERCEPT`.
        X64_MSR_INTERCEPT = 0x8001_0001,
        /// `HVMSG_X64_CPUID_INTERCEPT`.
        X64_CPUID_INTERCEPT = 0x8001_0002,
        /// `HVMSG_X64_EXCEPTION_INTERCEPT`.
        X64_EXCEPTION_INTERCEPT = 0x8001_0003,
        /// `HVMSG_X64_APIC_EOI`.
        X64_APIC_EOI = 0x8001_0004,
        /// `HVMSG_X64_LEGACY_FP_ERROR`.
        X64_LEGACY_FP_ERROR = 0x8001_0005,
        /// `HVMSG_X64_HALT`.
        X64_HALT = 0x8001_0007,
    }
}

impl HvMessageType {
    /// Whether a guest may post this type with HvPostMessage (non-zero, bit 31 clear).
    pub const fn is_guest_postable(self) -> bool {
        self.0 != 0 && self.0 & 0x8000_0000 == 0
    }
}

/// `hv_message_flags`: bit 0 is `msg_pending`, the rest reserved.
pub const HV_MESSAGE_FLAG_PENDING: u8 = 0x01;

/// `struct hv_message_header` (16 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvMessageHeader {
    /// The message type; writing it non-zero hands the slot to the receiver.
    pub message_type: HvMessageType,
    /// Payload bytes used (0..=240). A peer may put anything here: check it.
    pub payload_size: u8,
    /// Flags; bit 0 is message-pending ([`HV_MESSAGE_FLAG_PENDING`]).
    pub message_flags: u8,
    /// Reserved.
    pub reserved: u16,
    /// Sender (port id in the low 32 bits, of which 24 are the id) or partition id.
    pub sender: u64,
}

/// `struct hv_message`: one 256-byte SIMP slot or HvPostMessage image.
#[derive(Copy, Clone, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvMessage {
    /// The header.
    pub header: HvMessageHeader,
    /// The payload; only the first `header.payload_size` bytes are meaningful.
    pub payload: [u8; HV_MESSAGE_PAYLOAD_SIZE],
}

const _: () = assert!(core::mem::size_of::<HvMessageHeader>() == 16);
const _: () = assert!(core::mem::size_of::<HvMessage>() == HV_MESSAGE_SIZE);
const _: () = assert!(core::mem::offset_of!(HvMessageHeader, payload_size) == 4);
const _: () = assert!(core::mem::offset_of!(HvMessageHeader, message_flags) == 5);
const _: () = assert!(core::mem::offset_of!(HvMessageHeader, sender) == 8);
const _: () = assert!(core::mem::offset_of!(HvMessage, payload) == 16);

/// The payload given to [`HvMessage::new`] is longer than 240 bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SynIC message payload of {0} bytes exceeds 240")]
pub struct PayloadTooLarge(pub usize);

impl HvMessage {
    /// An empty slot image (type NONE, all zero).
    pub const EMPTY: Self = Self {
        header: HvMessageHeader {
            message_type: HvMessageType::NONE,
            payload_size: 0,
            message_flags: 0,
            reserved: 0,
            sender: 0,
        },
        payload: [0; HV_MESSAGE_PAYLOAD_SIZE],
    };

    /// A message of `message_type` carrying `payload` (at most 240 bytes).
    pub fn new(message_type: HvMessageType, payload: &[u8]) -> Result<Self, PayloadTooLarge> {
        let mut m = Self::EMPTY;
        let dst = m
            .payload
            .get_mut(..payload.len())
            .ok_or(PayloadTooLarge(payload.len()))?;
        dst.copy_from_slice(payload);
        m.header.message_type = message_type;
        m.header.payload_size = payload.len() as u8;
        Ok(m)
    }

    /// The meaningful payload bytes, or `None` if the header claims more than 240.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.get(..usize::from(self.header.payload_size))
    }

    /// Whether the message-pending flag is set.
    pub const fn is_pending(&self) -> bool {
        self.header.message_flags & HV_MESSAGE_FLAG_PENDING != 0
    }

    /// The message as 32 little-endian 64-bit words (the unit of shared-page access).
    pub fn to_words(&self) -> [u64; HV_MESSAGE_SIZE / 8] {
        let mut w = [0u64; HV_MESSAGE_SIZE / 8];
        for (dst, chunk) in w.iter_mut().zip(self.as_bytes().chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *dst = u64::from_le_bytes(b);
        }
        w
    }

    /// The message from 32 little-endian 64-bit words.
    pub fn from_words(words: &[u64; HV_MESSAGE_SIZE / 8]) -> Self {
        let mut m = Self::EMPTY;
        for (chunk, w) in m.as_mut_bytes().chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        m
    }
}

impl core::fmt::Debug for HvMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let shown = usize::from(self.header.payload_size).min(HV_MESSAGE_PAYLOAD_SIZE);
        f.debug_struct("HvMessage")
            .field("header", &self.header)
            .field("payload", &self.payload.get(..shown).unwrap_or(&[]))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header_bytes() {
        let mut m = HvMessage::new(HvMessageType::VMBUS, &[0xAA, 0xBB]).unwrap();
        m.header.message_flags = HV_MESSAGE_FLAG_PENDING;
        m.header.sender = 0x0102_0304_0506_0708;
        let b = m.as_bytes();
        assert_eq!(
            &b[..18],
            &[1, 0, 0, 0, 2, 1, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0xAA, 0xBB]
        );
        assert!(m.is_pending());
        assert_eq!(m.payload().unwrap(), &[0xAA, 0xBB]);
        assert_eq!(HvMessage::from_words(&m.to_words()), m);
    }

    #[test]
    fn oversize_payload_is_rejected() {
        assert_eq!(
            HvMessage::new(HvMessageType::VMBUS, &[0; 241]),
            Err(PayloadTooLarge(241))
        );
        let mut m = HvMessage::EMPTY;
        m.header.payload_size = 241;
        assert_eq!(m.payload(), None);
    }

    #[test]
    fn postable_types() {
        assert!(HvMessageType::VMBUS.is_guest_postable());
        assert!(!HvMessageType::NONE.is_guest_postable());
        assert!(!HvMessageType::TIMER_EXPIRED.is_guest_postable());
    }
}
