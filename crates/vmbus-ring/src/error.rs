//! Ring errors: "empty" and "full" are ordinary outcomes, "corrupt" means the peer
//! broke the protocol and the channel should be closed.

/// The peer wrote something the ring protocol forbids.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// An index in the control page is beyond the data area or not 8-byte aligned.
    #[error("peer's {which} {value:#x} is invalid for a {size}-byte ring")]
    InvalidIndex {
        /// `read_index` or `write_index`.
        which: &'static str,
        /// The value the peer wrote.
        value: u32,
        /// The data-area size.
        size: u32,
    },
    /// A packet descriptor is inconsistent with itself or with the bytes available.
    #[error("corrupt packet at ring offset {offset:#x}: {reason}")]
    InvalidPacket {
        /// Data offset of the packet.
        offset: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The ring memory is unusable (data area not a non-zero multiple of 8 below 2 GiB).
    #[error("ring data area of {0} bytes is unusable")]
    InvalidSize(usize),
}

/// Why [`crate::IncomingRing::try_read`] returned no packet. (Closed on purpose: a
/// read finds a packet, nothing, or garbage; nothing else can happen.)
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No packet is available: wait for a signal.
    #[error("ring is empty")]
    Empty,
    /// The peer corrupted the ring.
    #[error(transparent)]
    Corrupt(#[from] RingError),
}

/// Why [`crate::OutgoingRing::try_write`] did not write. (Closed on purpose: a write
/// fits, waits for room, can never fit, or meets garbage.)
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Not enough free space now; `needed` bytes (packet plus trailer) must be free
    /// beyond the 8 that always stay free. Wait for the reader.
    #[error("ring is full: {needed} bytes needed")]
    Full {
        /// Bytes the packet occupies in the ring.
        needed: usize,
    },
    /// The packet can never fit this ring, or its type-specific header is not a
    /// multiple of 8 bytes.
    #[error("packet of {0} bytes can never be written to this ring")]
    TooLarge(usize),
    /// The peer corrupted the ring.
    #[error(transparent)]
    Corrupt(#[from] RingError),
}
