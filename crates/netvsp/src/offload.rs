//! Transmit offloads: what the NIC advertises in OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
//! what the guest enables with OID_TCP_OFFLOAD_PARAMETERS, and the per-packet work a
//! guest asks for with the TCPIP_CHKSUM, TCP_LARGESEND (LSOv2) and IEEE_8021Q
//! per-packet infos, done here in software for every backend:
//!
//! - checksums: IPv4 header, TCP and UDP over IPv4 and IPv6, computed from scratch
//!   (whatever the guest left in the checksum field is ignored);
//! - LSOv2: a TCP packet of up to [`LSO_MAX_SIZE`] bytes cut into segments of the
//!   guest's MSS, each with its own IPv4 length, id and header checksum (IPv6 payload
//!   length), sequence number, flags (FIN/PSH on the last, CWR on the first only) and
//!   TCP checksum, the way Linux hv_netvsc expects a Hyper-V host to do it (it sends
//!   IPv4 total length and header checksum 0);
//! - VLAN: the 802.1Q tag from the PPI inserted after the source MAC.
//!
//! Everything in a request is checked against the frame (a guest may put any offset,
//! MSS or flag in a PPI): a request this NIC did not negotiate, or that does not fit
//! the frame, is an [`OffloadError`] and the packet is dropped and counted. Buffers are
//! allocated once per NIC; nothing is allocated per packet.

use crate::frame::{FrameMeta, Gso, MAX_FRAME, MAX_JUMBO_FRAME, TxOffload, TxOffloadSupport};
use vmbus_proto::rndis::ppi::{
    NDIS_TCP_LARGE_SEND_OFFLOAD_IPV6, NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE, NdisTcpIpChecksumInfo,
    Ppi,
};
use vmbus_proto::rndis::{NdisOffload, NdisOffloadParams, encap, offload_caps};

/// Largest LSO packet the NIC accepts (reported as the LSOv2 maximum offload size;
/// Linux caps its GSO size to it). Fits with its RNDIS header in one 64 KiB message.
pub const LSO_MAX_SIZE: u32 = 62_768;
/// Longest packet with work left a backend may hand over ([`TxEngine::for_receive`]):
/// an IP packet of 64 KiB (Linux's default GSO limit for a device) behind an Ethernet
/// header and a VLAN tag.
pub const GSO_MAX_PACKET: usize = 65_536 + 18;
/// Smallest MSS of a received GSO packet cut here: below Linux's `tcp_min_snd_mss`
/// default (48), and at most ~2,000 frames per packet.
pub const GSO_MIN_MSS: u32 = 32;
/// Smallest MSS honoured: bounds a packet to ~1000 segments.
pub const LSO_MIN_MSS: u32 = 64;
/// Fewest segments an LSO packet may have (reported as the minimum segment count).
const LSO_MIN_SEGMENTS: u32 = 2;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The transmit offloads enabled by the guest (all off until it sets
/// OID_TCP_OFFLOAD_PARAMETERS).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct OffloadConfig {
    /// IPv4 header checksum.
    pub ip4_header: bool,
    /// TCP over IPv4.
    pub tcp4: bool,
    /// UDP over IPv4.
    pub udp4: bool,
    /// TCP over IPv6.
    pub tcp6: bool,
    /// UDP over IPv6.
    pub udp6: bool,
    /// LSOv2 over IPv4.
    pub lso4: bool,
    /// LSOv2 over IPv6.
    pub lso6: bool,
    /// Receive: report verified IPv4 header checksums.
    pub rx_ip4_header: bool,
    /// Receive: report verified TCP checksums over IPv4.
    pub rx_tcp4: bool,
    /// Receive: report verified UDP checksums over IPv4.
    pub rx_udp4: bool,
    /// Receive: report verified TCP checksums over IPv6.
    pub rx_tcp6: bool,
    /// Receive: report verified UDP checksums over IPv6.
    pub rx_udp6: bool,
}

impl OffloadConfig {
    /// Applies an OID_TCP_OFFLOAD_PARAMETERS request: each field either leaves its
    /// offload alone (NO_CHANGE or a value the NIC does not know) or turns transmit
    /// and receive on or off.
    pub fn apply(&mut self, p: &NdisOffloadParams) {
        let set = |tx_field: &mut bool, rx_field: &mut bool, v: Option<(bool, bool)>| {
            if let Some((tx, rx)) = v {
                *tx_field = tx;
                *rx_field = rx;
            }
        };
        set(
            &mut self.ip4_header,
            &mut self.rx_ip4_header,
            p.ip_v4_csum.tx_rx(),
        );
        set(&mut self.tcp4, &mut self.rx_tcp4, p.tcp_ip_v4_csum.tx_rx());
        set(&mut self.udp4, &mut self.rx_udp4, p.udp_ip_v4_csum.tx_rx());
        set(&mut self.tcp6, &mut self.rx_tcp6, p.tcp_ip_v6_csum.tx_rx());
        set(&mut self.udp6, &mut self.rx_udp6, p.udp_ip_v6_csum.tx_rx());
        if let Some(on) = p.lso_v2_ipv4.enable() {
            self.lso4 = on;
        }
        if let Some(on) = p.lso_v2_ipv6.enable() {
            self.lso6 = on;
        }
    }

    /// The OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES reply: every checksum and LSOv2 over
    /// 802.3 framing, IPv6 with extension headers and TCP options (what Linux requires
    /// before it enables them). `revision`/`size` follow the negotiated NVSP version.
    pub fn capabilities(revision: u8, size: u16) -> NdisOffload {
        let mut o = NdisOffload::new(revision, size);
        o.csum.ip4_txenc = encap::IEEE_802_3;
        o.csum.ip4_txcsum = offload_caps::IP4OPT
            | offload_caps::TCP4OPT
            | offload_caps::TCP4
            | offload_caps::UDP4
            | offload_caps::IP4;
        o.csum.ip6_txenc = encap::IEEE_802_3;
        o.csum.ip6_txcsum =
            offload_caps::IP6EXT | offload_caps::TCP6OPT | offload_caps::TCP6 | offload_caps::UDP6;
        // Receive: the NIC reports checksums it knows to be good (FrameMeta); the rest
        // reach the guest unmarked and it checks them itself.
        o.csum.ip4_rxenc = encap::IEEE_802_3;
        o.csum.ip4_rxcsum = o.csum.ip4_txcsum;
        o.csum.ip6_rxenc = encap::IEEE_802_3;
        o.csum.ip6_rxcsum = o.csum.ip6_txcsum;
        o.lsov2.ip4_encap = encap::IEEE_802_3;
        o.lsov2.ip4_maxsz = LSO_MAX_SIZE;
        o.lsov2.ip4_minsg = LSO_MIN_SEGMENTS;
        o.lsov2.ip6_encap = encap::IEEE_802_3;
        o.lsov2.ip6_maxsz = LSO_MAX_SIZE;
        o.lsov2.ip6_minsg = LSO_MIN_SEGMENTS;
        // NDIS_LSOV2_CAP_IP6EXT | NDIS_LSOV2_CAP_TCP6OPT.
        o.lsov2.ip6_opts = offload_caps::IP6EXT | offload_caps::TCP6OPT;
        o
    }

    /// The receive TCPIP_CHKSUM info to send with `frame`: which of its checksums
    /// `meta` vouches for and the guest asked to hear about, or `None`. Only whole
    /// IPv4 datagrams (no fragment) and IPv6 packets whose next header is TCP or UDP
    /// get an L4 result.
    pub fn rx_checksum_info(&self, frame: &[u8], meta: FrameMeta) -> Option<NdisTcpIpChecksumInfo> {
        if !meta.l4_checksum_valid && !meta.ip4_checksum_valid {
            return None;
        }
        let mut l3 = 14;
        let mut ethertype = get16(frame, 12)?;
        if ethertype == ETHERTYPE_VLAN {
            ethertype = get16(frame, 16)?;
            l3 = 18;
        }
        let (ip_ok, proto, v6) = match ethertype {
            ETHERTYPE_IPV4 => {
                let whole = get16(frame, l3 + 6)? & 0x3fff == 0;
                let proto = frame.get(l3 + 9).copied().filter(|_| whole);
                (meta.ip4_checksum_valid && self.rx_ip4_header, proto, false)
            }
            ETHERTYPE_IPV6 => (false, frame.get(l3 + 6).copied(), true),
            _ => return None,
        };
        let l4 = meta.l4_checksum_valid;
        let tcp_ok = l4 && proto == Some(PROTO_TCP) && if v6 { self.rx_tcp6 } else { self.rx_tcp4 };
        let udp_ok = l4 && proto == Some(PROTO_UDP) && if v6 { self.rx_udp6 } else { self.rx_udp4 };
        if !(ip_ok || tcp_ok || udp_ok) {
            return None;
        }
        let mut c = NdisTcpIpChecksumInfo(0);
        c.set_rx_ip_checksum_succeeded(ip_ok);
        c.set_rx_tcp_checksum_succeeded(tcp_ok);
        c.set_rx_udp_checksum_succeeded(udp_ok);
        Some(c)
    }
}

/// The offload work one transmitted packet asks for, from its per-packet infos.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxRequest {
    /// Compute the L4 checksum: (IPv6, TCP rather than UDP, L4 offset).
    pub l4_csum: Option<(bool, bool, u16)>,
    /// Compute the IPv4 header checksum.
    pub ip_header_csum: bool,
    /// Segment: (IPv6, MSS, TCP header offset).
    pub lso: Option<(bool, u32, u16)>,
    /// Insert this 802.1Q tag control word.
    pub vlan_tci: Option<u16>,
}

impl TxRequest {
    /// Whether the packet needs no work.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// What the frames this request produces in software are known to carry: the
    /// checksums netvsp computes itself.
    pub fn meta(&self) -> FrameMeta {
        FrameMeta {
            l4_checksum_valid: self.l4_csum.is_some() || self.lso.is_some(),
            ip4_checksum_valid: self.ip_header_csum || self.lso.is_some_and(|(v6, _, _)| !v6),
            rss_hash: None,
        }
    }
}

/// Why an offload request was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The guest asked for an offload it did not enable (or the NIC does not offer).
    #[error("offload not negotiated: {0}")]
    NotNegotiated(&'static str),
    /// A PPI's values are inconsistent (both or neither IP version, LSOv1, ...).
    #[error("bad per-packet info: {0}")]
    BadPpi(&'static str),
    /// The frame does not hold the headers the request names.
    #[error("frame does not match the request: {0}")]
    BadFrame(&'static str),
    /// An MSS below [`LSO_MIN_MSS`], a segment longer than a frame, or a packet above
    /// [`LSO_MAX_SIZE`].
    #[error("LSO out of range: {0}")]
    LsoRange(&'static str),
}

/// Reads a packet's PPIs into a request, refusing what `config` does not allow.
/// Unknown PPI types are ignored (as Windows does); a known type twice is an error.
pub fn parse_request<'a>(
    ppis: impl Iterator<Item = Result<Ppi<'a>, vmbus_proto::Error>>,
    config: &OffloadConfig,
) -> Result<TxRequest, OffloadError> {
    let mut r = TxRequest::default();
    let (mut seen_csum, mut seen_lso, mut seen_vlan) = (false, false, false);
    for ppi in ppis {
        match ppi.map_err(|_| OffloadError::BadPpi("malformed per-packet info"))? {
            Ppi::Checksum(c) => {
                if std::mem::replace(&mut seen_csum, true) {
                    return Err(OffloadError::BadPpi("two checksum PPIs"));
                }
                if c.0 == 0 {
                    continue;
                }
                let (v4, v6) = (c.tx_is_ipv4(), c.tx_is_ipv6());
                if v4 == v6 {
                    return Err(OffloadError::BadPpi(
                        "checksum PPI names no single IP version",
                    ));
                }
                if c.tx_tcp_checksum() && c.tx_udp_checksum() {
                    return Err(OffloadError::BadPpi("checksum PPI asks for TCP and UDP"));
                }
                if c.tx_ip_header_checksum() {
                    if !v4 {
                        return Err(OffloadError::BadPpi("IPv4 header checksum on IPv6"));
                    }
                    if !config.ip4_header {
                        return Err(OffloadError::NotNegotiated("IPv4 header checksum"));
                    }
                    r.ip_header_csum = true;
                }
                if c.tx_tcp_checksum() || c.tx_udp_checksum() {
                    let tcp = c.tx_tcp_checksum();
                    let allowed = match (v6, tcp) {
                        (false, true) => config.tcp4,
                        (false, false) => config.udp4,
                        (true, true) => config.tcp6,
                        (true, false) => config.udp6,
                    };
                    if !allowed {
                        return Err(OffloadError::NotNegotiated("L4 checksum"));
                    }
                    r.l4_csum = Some((v6, tcp, c.tx_tcp_header_offset() as u16));
                }
            }
            Ppi::Lso(l) => {
                if std::mem::replace(&mut seen_lso, true) {
                    return Err(OffloadError::BadPpi("two LSO PPIs"));
                }
                if l.lso_type() != NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE {
                    return Err(OffloadError::NotNegotiated("LSOv1"));
                }
                let v6 = l.ip_version() == NDIS_TCP_LARGE_SEND_OFFLOAD_IPV6;
                if !(if v6 { config.lso6 } else { config.lso4 }) {
                    return Err(OffloadError::NotNegotiated("LSOv2"));
                }
                r.lso = Some((v6, l.mss(), l.tcp_header_offset() as u16));
            }
            Ppi::Vlan(v) => {
                if std::mem::replace(&mut seen_vlan, true) {
                    return Err(OffloadError::BadPpi("two VLAN PPIs"));
                }
                let tci = (v.pri() << 13) | (u32::from(v.cfi()) << 12) | v.vlan_id();
                r.vlan_tci = Some(tci as u16);
            }
            _ => {}
        }
    }
    Ok(r)
}

/// The RFC 1071 one's-complement sum of `data` (big-endian 16-bit words, an odd last
/// byte padded with zero), folded to 16 bits but not complemented: the Internet
/// checksum of `data` is `!internet_sum(data)`.
///
/// Reads 4 bytes at a time into a 64-bit accumulator (the sum is byte-order
/// independent, RFC 1071 section 2(B), so it adds native-order words and swaps once at
/// the end); the loop vectorises. No input can overflow it: 2^32 words of 4 bytes
/// would be 16 GiB.
#[inline]
pub fn internet_sum(data: &[u8]) -> u16 {
    let (words, rest) = data.as_chunks::<4>();
    let mut acc: u64 = 0;
    for w in words {
        acc += u64::from(u32::from_ne_bytes(*w));
    }
    // The tail keeps its position in a 4-byte word, so an odd byte lands in the high
    // half of its big-endian 16-bit word.
    let mut tail = [0u8; 4];
    if let Some(t) = tail.get_mut(..rest.len()) {
        t.copy_from_slice(rest);
    }
    acc += u64::from(u32::from_ne_bytes(tail));
    let mut s = (acc & 0xffff_ffff) + (acc >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    let mut s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    u16::from_be(s as u16)
}

/// [`internet_sum`] of `data` added to a partial sum (fold before use).
#[inline]
fn sum_bytes(sum: u32, data: &[u8]) -> u32 {
    u32::from(fold(sum)) + u32::from(internet_sum(data))
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn get16(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..)
        .and_then(|s| s.first_chunk::<2>())
        .map(|s| u16::from_be_bytes(*s))
}

fn put16(b: &mut [u8], off: usize, v: u16) -> Option<()> {
    b.get_mut(off..off + 2)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// Where the headers are in a frame.
#[derive(Copy, Clone, Debug)]
struct Layout {
    l3: usize,
    v6: bool,
    l4: usize,
    /// Bytes of L3+L4 that count (IPv4 total length, or the frame for IPv6/LSO).
    l3_end: usize,
}

fn layout(frame: &[u8], v6: bool, l4: usize, lso: bool) -> Result<Layout, OffloadError> {
    let bad = OffloadError::BadFrame;
    let mut l3 = 14;
    let mut ethertype = get16(frame, 12).ok_or(bad("short Ethernet header"))?;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = get16(frame, 16).ok_or(bad("short VLAN header"))?;
        l3 = 18;
    }
    let want = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    if ethertype != want {
        return Err(bad("EtherType does not match the IP version"));
    }
    let l3_end = if v6 {
        if frame.get(l3).map(|b| b >> 4) != Some(6) || l4 < l3 + 40 {
            return Err(bad("IPv6 header"));
        }
        frame.len()
    } else {
        let vihl = *frame.get(l3).ok_or(bad("IPv4 header"))?;
        let ihl = usize::from(vihl & 0xf) * 4;
        if vihl >> 4 != 4 || ihl < 20 || l4 != l3 + ihl {
            return Err(bad("IPv4 header or L4 offset"));
        }
        let total = usize::from(get16(frame, l3 + 2).ok_or(bad("IPv4 header"))?);
        // Linux sends LSO packets with total length 0; otherwise it bounds the packet
        // (a short frame may carry Ethernet padding after it).
        if lso || total == 0 {
            frame.len()
        } else if l3 + total <= frame.len() && total >= ihl {
            l3 + total
        } else {
            return Err(bad("IPv4 total length"));
        }
    };
    if l4 > l3_end {
        return Err(bad("L4 offset past the packet"));
    }
    Ok(Layout { l3, v6, l4, l3_end })
}

/// The pseudo-header sum for an L4 segment of `l4_len` bytes.
fn pseudo_sum(pkt: &[u8], lay: &Layout, proto: u8, l4_len: usize) -> Option<u32> {
    let mut s = 0u32;
    if lay.v6 {
        s = sum_bytes(s, pkt.get(lay.l3 + 8..lay.l3 + 40)?);
        s = s.wrapping_add((l4_len >> 16) as u32 + (l4_len & 0xffff) as u32);
    } else {
        s = sum_bytes(s, pkt.get(lay.l3 + 12..lay.l3 + 20)?);
        s = s.wrapping_add(l4_len as u32);
    }
    Some(s.wrapping_add(u32::from(proto)))
}

/// Writes the L4 checksum of `pkt[lay.l4..lay.l3_end]` (computed from scratch).
fn l4_checksum(pkt: &mut [u8], lay: &Layout, tcp: bool) -> Option<()> {
    let l4_len = lay.l3_end.checked_sub(lay.l4)?;
    let (field, min) = if tcp { (16, 20) } else { (6, 8) };
    if l4_len < min {
        return None;
    }
    put16(pkt, lay.l4 + field, 0)?;
    let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
    let s = pseudo_sum(pkt, lay, proto, l4_len)?;
    let mut c = !fold(sum_bytes(s, pkt.get(lay.l4..lay.l3_end)?));
    if !tcp && c == 0 {
        c = 0xffff;
    }
    put16(pkt, lay.l4 + field, c)
}

/// Writes the IPv4 header checksum.
fn ip4_checksum(pkt: &mut [u8], lay: &Layout) -> Option<()> {
    put16(pkt, lay.l3 + 10, 0)?;
    let c = !fold(sum_bytes(0, pkt.get(lay.l3..lay.l4)?));
    put16(pkt, lay.l3 + 10, c)
}

/// Counters of the software engine.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Frames handed to the backend and accepted.
    pub sent: u32,
    /// Frames the backend refused.
    pub dropped: u32,
}

/// Does the offload work of [`TxRequest`]s in software, with buffers allocated once.
pub struct TxEngine {
    work: Vec<u8>,
    tagged: Vec<u8>,
    max_frame: usize,
    /// Longest packet [`TxEngine::process`] segments.
    max_packet: usize,
    /// Smallest MSS it segments at.
    min_mss: u32,
}

impl Default for TxEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl TxEngine {
    /// An engine with room for the largest LSO packet, producing frames of up to
    /// [`MAX_FRAME`] bytes (the 1500-byte MTU).
    pub fn new() -> Self {
        Self::with_max_frame(MAX_FRAME)
    }

    /// [`TxEngine::new`] producing frames of up to `max_frame` bytes (at most
    /// [`MAX_JUMBO_FRAME`]): a VLAN-tagged frame or an LSO segment longer than that is
    /// refused.
    pub fn with_max_frame(max_frame: usize) -> Self {
        let max_frame = max_frame.clamp(60, MAX_JUMBO_FRAME);
        Self {
            work: Vec::with_capacity(LSO_MAX_SIZE as usize + 256),
            tagged: Vec::with_capacity(max_frame),
            max_frame,
            max_packet: LSO_MAX_SIZE as usize + 256,
            min_mss: LSO_MIN_MSS,
        }
    }

    /// An engine for packets a backend received with work left (a TAP's GSO packets
    /// from the kernel's stack, up to [`GSO_MAX_PACKET`], at an MSS down to
    /// [`GSO_MIN_MSS`]: the kernel's own TCP at a small MTU), cut into frames of up to
    /// `max_frame` bytes.
    pub fn for_receive(max_frame: usize) -> Self {
        Self {
            max_packet: GSO_MAX_PACKET,
            min_mss: GSO_MIN_MSS,
            ..Self::with_max_frame(max_frame)
        }
    }

    /// Turns one guest packet into the frames for the wire, calling `emit` for each
    /// (it returns whether the backend took the frame).
    pub fn process(
        &mut self,
        frame: &[u8],
        req: &TxRequest,
        emit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<TxOutcome, OffloadError> {
        let mut out = TxOutcome::default();
        if let Some((v6, mss, l4)) = req.lso {
            return self.segment(frame, req, v6, mss, usize::from(l4), emit);
        }
        if frame.len() > self.max_frame {
            return Err(OffloadError::BadFrame("frame longer than the MTU allows"));
        }
        if req.l4_csum.is_none() && !req.ip_header_csum {
            self.emit(frame, req.vlan_tci, emit, &mut out)?;
            return Ok(out);
        }
        let mut work = std::mem::take(&mut self.work);
        work.clear();
        work.extend_from_slice(frame);
        let result = (|| {
            if let Some((v6, tcp, l4)) = req.l4_csum {
                let lay = layout(&work, v6, usize::from(l4), false)?;
                l4_checksum(&mut work, &lay, tcp)
                    .ok_or(OffloadError::BadFrame("L4 header past the packet"))?;
                if req.ip_header_csum {
                    ip4_checksum(&mut work, &lay).ok_or(OffloadError::BadFrame("IPv4"))?;
                }
            } else {
                // IPv4 header checksum alone: the L4 offset is the header length.
                let l3 = if get16(&work, 12) == Some(ETHERTYPE_VLAN) {
                    18
                } else {
                    14
                };
                let ihl = usize::from(work.get(l3).copied().unwrap_or(0) & 0xf) * 4;
                let lay = layout(&work, false, l3 + ihl, false)?;
                ip4_checksum(&mut work, &lay).ok_or(OffloadError::BadFrame("IPv4"))?;
            }
            Ok(())
        })();
        let r = result.and_then(|()| self.emit(&work, req.vlan_tci, emit, &mut out));
        self.work = work;
        r.map(|()| out)
    }

    /// For a backend that finishes offloads itself: whether `support` covers `req`,
    /// and if so the frame to hand it (VLAN tag inserted, IP lengths and IPv4 header
    /// checksum final, the L4 checksum field holding the pseudo-header sum) with the
    /// work left. `Ok(None)`: do it in software with [`TxEngine::process`].
    pub fn prepare_native(
        &mut self,
        frame: &[u8],
        req: &TxRequest,
        support: TxOffloadSupport,
    ) -> Result<Option<(&[u8], TxOffload)>, OffloadError> {
        let (v6, tcp, l4, mss) = match (req.lso, req.l4_csum) {
            (Some((v6, mss, l4)), _) if (v6 && support.tso6) || (!v6 && support.tso4) => {
                (v6, true, usize::from(l4), Some(mss))
            }
            (None, Some((v6, tcp, l4))) if support.checksum => (v6, tcp, usize::from(l4), None),
            _ => return Ok(None),
        };
        let vlan_extra = if req.vlan_tci.is_some() { 4 } else { 0 };
        if mss.is_none() && frame.len() + vlan_extra > self.max_frame {
            return Err(OffloadError::BadFrame("frame longer than the MTU allows"));
        }
        if frame.len() > self.max_packet {
            return Err(OffloadError::LsoRange(
                "packet above the maximum offload size",
            ));
        }
        // Build the frame, tagged if asked (every offset moves by the tag).
        let mut work = std::mem::take(&mut self.work);
        work.clear();
        let shift = match req.vlan_tci {
            Some(tci) => {
                let (head, rest) = frame
                    .split_at_checked(12)
                    .ok_or(OffloadError::BadFrame("short Ethernet header"))?;
                work.extend_from_slice(head);
                work.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                work.extend_from_slice(&tci.to_be_bytes());
                work.extend_from_slice(rest);
                4
            }
            None => {
                work.extend_from_slice(frame);
                0
            }
        };
        let result = (|| {
            let l4 = l4 + shift;
            let lay = layout(&work, v6, l4, mss.is_some())?;
            let bad = OffloadError::BadFrame;
            let (field, min) = if tcp { (16, 20) } else { (6, 8) };
            let l4_len = lay.l3_end.checked_sub(l4).filter(|n| *n >= min);
            let l4_len = l4_len.ok_or(bad("L4 header past the packet"))?;
            let mut gso = None;
            if let Some(mss) = mss {
                if mss < LSO_MIN_MSS {
                    return Err(OffloadError::LsoRange("MSS below the minimum"));
                }
                let thlen = usize::from(work.get(l4 + 12).copied().unwrap_or(0) >> 4) * 4;
                if thlen < 20 || l4 + thlen > work.len() {
                    return Err(bad("TCP header"));
                }
                // `work` carries the tag already.
                if l4 + thlen + mss as usize > self.max_frame {
                    return Err(OffloadError::LsoRange("segment longer than a frame"));
                }
                gso = Some(Gso {
                    ipv6: v6,
                    mss: u16::try_from(mss).map_err(|_| OffloadError::LsoRange("MSS"))?,
                    hdr_len: (l4 + thlen) as u16,
                });
                // Whole-packet lengths; the backend fixes them per segment.
                let ip_len = if v6 {
                    work.len() - lay.l3 - 40
                } else {
                    work.len() - lay.l3
                };
                let ip_len = u16::try_from(ip_len).map_err(|_| OffloadError::LsoRange("length"))?;
                put16(&mut work, lay.l3 + if v6 { 4 } else { 2 }, ip_len).ok_or(bad("IP"))?;
            }
            if !v6 && (mss.is_some() || req.ip_header_csum) {
                ip4_checksum(&mut work, &lay).ok_or(bad("IPv4"))?;
            }
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let pseudo = pseudo_sum(&work, &lay, proto, l4_len).ok_or(bad("IP addresses"))?;
            put16(&mut work, l4 + field, fold(pseudo)).ok_or(bad("L4 header"))?;
            Ok(TxOffload {
                csum: Some((l4 as u16, field as u16)),
                gso,
            })
        })();
        self.work = work;
        match result {
            Ok(off) => Ok(Some((&self.work, off))),
            Err(e) => Err(e),
        }
    }

    fn emit(
        &mut self,
        frame: &[u8],
        vlan: Option<u16>,
        emit: &mut dyn FnMut(&[u8]) -> bool,
        out: &mut TxOutcome,
    ) -> Result<(), OffloadError> {
        let ok = match vlan {
            None => emit(frame),
            Some(tci) => {
                let (head, rest) = frame
                    .split_at_checked(12)
                    .ok_or(OffloadError::BadFrame("short Ethernet header"))?;
                if frame.len() + 4 > self.max_frame {
                    return Err(OffloadError::BadFrame("tagged frame too long"));
                }
                self.tagged.clear();
                self.tagged.extend_from_slice(head);
                self.tagged.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                self.tagged.extend_from_slice(&tci.to_be_bytes());
                self.tagged.extend_from_slice(rest);
                emit(&self.tagged)
            }
        };
        if ok {
            out.sent += 1;
        } else {
            out.dropped += 1;
        }
        Ok(())
    }

    fn segment(
        &mut self,
        frame: &[u8],
        req: &TxRequest,
        v6: bool,
        mss: u32,
        l4: usize,
        emit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<TxOutcome, OffloadError> {
        let mut out = TxOutcome::default();
        if frame.len() > self.max_packet {
            return Err(OffloadError::LsoRange(
                "packet above the maximum offload size",
            ));
        }
        if mss < self.min_mss {
            return Err(OffloadError::LsoRange("MSS below the minimum"));
        }
        let lay = layout(frame, v6, l4, true)?;
        let thlen = usize::from(frame.get(l4 + 12).copied().unwrap_or(0) >> 4) * 4;
        let hdr = l4 + thlen;
        if thlen < 20 || hdr > frame.len() {
            return Err(OffloadError::BadFrame("TCP header"));
        }
        let mss = mss as usize;
        let vlan_extra = if req.vlan_tci.is_some() { 4 } else { 0 };
        if hdr + mss + vlan_extra > self.max_frame {
            return Err(OffloadError::LsoRange("segment longer than a frame"));
        }
        let payload = frame.get(hdr..).unwrap_or(&[]);
        let seq0 = frame
            .get(l4 + 4..)
            .and_then(|s| s.first_chunk::<4>())
            .map(|s| u32::from_be_bytes(*s))
            .unwrap_or(0);
        let id0 = if v6 {
            0
        } else {
            get16(frame, lay.l3 + 4).unwrap_or(0)
        };
        let flags = frame.get(l4 + 13).copied().unwrap_or(0);
        let count = payload.len().div_ceil(mss).max(1);
        let mut work = std::mem::take(&mut self.work);
        let mut result = Ok(());
        for (i, chunk) in payload
            .chunks(mss)
            .chain(payload.is_empty().then_some(&[][..]))
            .enumerate()
        {
            work.clear();
            work.extend_from_slice(frame.get(..hdr).unwrap_or(&[]));
            work.extend_from_slice(chunk);
            let seg = Layout {
                l3_end: work.len(),
                ..lay
            };
            let len = work.len();
            let fix = (|| {
                if v6 {
                    put16(&mut work, lay.l3 + 4, (len - lay.l3 - 40) as u16)?;
                } else {
                    put16(&mut work, lay.l3 + 2, (len - lay.l3) as u16)?;
                    put16(&mut work, lay.l3 + 4, id0.wrapping_add(i as u16))?;
                }
                let seq = seq0.wrapping_add((i * mss) as u32);
                work.get_mut(l4 + 4..l4 + 8)?
                    .copy_from_slice(&seq.to_be_bytes());
                let mut f = flags;
                if i + 1 < count {
                    f &= !(TCP_FIN | TCP_PSH);
                }
                if i > 0 {
                    f &= !TCP_CWR;
                }
                *work.get_mut(l4 + 13)? = f;
                l4_checksum(&mut work, &seg, true)?;
                if !v6 {
                    ip4_checksum(&mut work, &seg)?;
                }
                Some(())
            })();
            if fix.is_none() {
                result = Err(OffloadError::BadFrame("segment headers"));
                break;
            }
            if let Err(e) = self.emit(&work, req.vlan_tci, emit, &mut out) {
                result = Err(e);
                break;
            }
        }
        self.work = work;
        result.map(|()| out)
    }
}

#[cfg(test)]
mod tests;
