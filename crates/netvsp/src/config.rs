//! What a VMM chooses for a NIC ([`NetvspConfig`]) and the sizes fixed by the protocol
//! or by Linux's netvsc: receive sub-allocations, send sections, frames per transfer.

use crate::frame::frame_size;

/// Receive-buffer sub-allocation size at the 1500-byte MTU (Linux
/// `NETVSC_RECV_SECTION_SIZE`); larger MTUs get [`recv_section_size`]. One frame of
/// up to 1514 bytes plus its RNDIS header fits.
pub const RECV_SECTION_SIZE: u32 = 1728;

/// Receive-buffer sub-allocation size for `mtu`: the largest frame plus room for the
/// RNDIS header and per-packet infos (the 210 bytes [`RECV_SECTION_SIZE`] leaves at
/// 1500), in 64-byte steps.
pub const fn recv_section_size(mtu: u32) -> u32 {
    let need = (frame_size(mtu) as u32 + (RECV_SECTION_SIZE - frame_size(1500) as u32))
        .next_multiple_of(64);
    if need > RECV_SECTION_SIZE {
        need
    } else {
        RECV_SECTION_SIZE
    }
}
/// Send-buffer section size offered to the guest (Linux `NETVSC_SEND_SECTION_SIZE`).
pub const SEND_SECTION_SIZE: u32 = 6144;

/// NIC configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetvspConfig {
    /// Permanent MAC address.
    pub mac: [u8; 6],
    /// Largest MTU offered to the guest (payload bytes per frame, 68 to
    /// [`crate::backend::MAX_MTU`], and never above what the backend carries,
    /// [`NetEndpoint::max_frame`](crate::NetEndpoint::max_frame)); receive-buffer sub-allocations are sized from it.
    /// The guest's own MTU (its NDIS config) may be smaller: longer frames toward it are
    /// dropped and counted.
    pub mtu: u32,
    /// Link speed reported to the guest, in bits per second.
    pub link_speed_bps: u64,
    /// Queues offered to the guest (1 to [`MAX_QUEUES`]): with more than one, RSS
    /// capabilities are reported and the guest may ask for `max_queues - 1`
    /// subchannels.
    pub max_queues: u16,
    /// RNDIS packets a guest may put in one message (INITIALIZE_COMPLETE
    /// `max_pkt_per_msg`): above 1, Linux packs the frames its stack hands over in a
    /// burst into one send section with one completion. Any count is accepted on
    /// receipt (a message is bounded by its section); this only invites batching.
    pub max_packets_per_message: u32,
    /// Let the guest send frames whose source MAC is not [`NetvspConfig::mac`]. Off by
    /// default, as on Hyper-V's switch: such frames are dropped and counted
    /// (`tx_spoofed`), so a guest cannot pose as another on the network.
    pub allow_mac_spoofing: bool,
}

/// Most queues (primary channel plus subchannels) a NIC supports.
pub const MAX_QUEUES: u16 = 16;

impl Default for NetvspConfig {
    fn default() -> Self {
        Self {
            mac: [0x00, 0x15, 0x5D, 0x00, 0x00, 0x01],
            mtu: 1500,
            link_speed_bps: 10_000_000_000,
            max_queues: 8,
            max_packets_per_message: 16,
            allow_mac_spoofing: false,
        }
    }
}

/// Frames per transfer-page packet (Linux accepts up to 375 ranges).
pub const FRAMES_PER_TRANSFER: usize = 32;
