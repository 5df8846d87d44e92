//! What a frame is between netvsp and a backend: the size limits, and what travels
//! with a frame besides its bytes (checksums known good, RSS hash, offload work left).

/// Largest frame at the standard 1500-byte MTU (Ethernet with a VLAN tag, no FCS): the
/// default slot size of the backends' frame queues.
pub const MAX_FRAME: usize = 1518;
/// Largest MTU a NIC supports (jumbo frames, as Hyper-V's 9000).
pub const MAX_MTU: u32 = 9000;
/// Largest frame at [`MAX_MTU`] (with a VLAN tag, no FCS).
pub const MAX_JUMBO_FRAME: usize = MAX_MTU as usize + 18;

/// The largest frame at `mtu` (Ethernet header and a VLAN tag added).
pub const fn frame_size(mtu: u32) -> usize {
    mtu as usize + 18
}

/// What a backend can finish itself on a transmitted frame; netvsp then hands it the
/// frame with that work left (see [`TxOffload`]) instead of doing it in software.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOffloadSupport {
    /// Complete a TCP or UDP checksum ([`TxOffload::csum`]).
    pub checksum: bool,
    /// Segment TCP over IPv4 ([`TxOffload::gso`]).
    pub tso4: bool,
    /// Segment TCP over IPv6.
    pub tso6: bool,
}

/// Segmentation left to the backend (virtio-net header `gso_*` semantics).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Gso {
    /// TCP over IPv6 (else IPv4).
    pub ipv6: bool,
    /// Payload bytes per segment.
    pub mss: u16,
    /// Bytes of Ethernet, IP and TCP headers each segment repeats.
    pub hdr_len: u16,
}

/// Work left on one frame handed to [`NetEndpoint::transmit_offload`](crate::backend::NetEndpoint::transmit_offload): the frame's IP
/// headers are final (lengths and IPv4 checksum set for the whole packet), its L4
/// checksum field holds the pseudo-header sum.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// (start, offset): fold the one's-complement sum of `frame[start..]` into the 16
    /// bits at `start + offset`.
    pub csum: Option<(u16, u16)>,
    /// Segment the packet (the checksum is then done per segment).
    pub gso: Option<Gso>,
}

/// What a backend knows about a frame beyond its bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// The TCP or UDP checksum is known to be correct: netvsp computed it (a guest's
    /// checksum or LSO offload), or the backend's source verified it (virtio-net
    /// `DATA_VALID` from the kernel). A guest that enabled receive checksum offload is
    /// told so and skips its own check.
    pub l4_checksum_valid: bool,
    /// The IPv4 header checksum is known to be correct (same sources).
    pub ip4_checksum_valid: bool,
    /// The RSS hash the receiving NIC's [`Steer`](crate::backend::Steer) computed when a multi-queue backend
    /// steered the frame (the NIC sends it to the guest without hashing again).
    pub rss_hash: Option<u32>,
}
