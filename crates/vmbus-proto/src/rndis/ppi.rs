//! Per-packet info (PPI): the header, the 4-byte checksum / LSO / VLAN / packet-id
//! payloads with typed bitfield accessors, a total iterator over a PPI region and the
//! emitter.
//!
//! Layouts from Linux `drivers/net/hyperv/hyperv_net.h` (`struct rndis_per_packet_info`,
//! `ndis_tcp_ip_checksum_info`, `ndis_tcp_lso_info`, `ndis_pkt_8021q_info`,
//! `rndis_pktinfo_id`); bit positions as gcc lays out the bitfields on x86-64
//! (gcc's layout).

use super::enums::{InternalPpiType, PpiType};
use crate::error::{Error, Result, put};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Generates getter, `set_*` and `with_*` accessors for bitfields of a `u32` newtype.
macro_rules! bitfield_accessors {
    ($t:ident { $( $(#[doc = $doc:literal])* $get:ident, $set:ident, $with:ident: $ty:tt @ $lo:literal, $width:literal; )* }) => {
        impl $t {
            $(
                $(#[doc = $doc])*
                #[doc = concat!("\n\nBit field at bit ", stringify!($lo), ", width ", stringify!($width), ".")]
                pub const fn $get(self) -> $ty {
                    bitfield_accessors!(@get $ty, self.0, $lo, $width)
                }
                #[doc = concat!("Sets [`Self::", stringify!($get), "`]; excess high bits of the value are dropped.")]
                pub fn $set(&mut self, v: $ty) {
                    let mask: u32 = ((1u64 << $width) - 1) as u32;
                    self.0 = (self.0 & !(mask << $lo)) | ((bitfield_accessors!(@raw $ty, v) & mask) << $lo);
                }
                #[doc = concat!("Returns a copy with [`Self::", stringify!($get), "`] set.")]
                #[must_use]
                pub fn $with(mut self, v: $ty) -> Self {
                    self.$set(v);
                    self
                }
            )*
        }
    };
    (@get bool, $v:expr, $lo:literal, $width:literal) => { ($v >> $lo) & 1 != 0 };
    (@get u32, $v:expr, $lo:literal, $width:literal) => { ($v >> $lo) & (((1u64 << $width) - 1) as u32) };
    (@raw bool, $v:expr) => { $v as u32 };
    (@raw u32, $v:expr) => { $v };
}

/// `struct rndis_per_packet_info` (12 bytes): one entry of the PPI region of a packet
/// message. `size` covers header and payload; `ppi_offset` is the payload's offset from
/// the start of this entry. A peer may send sizes smaller than the header, offsets past
/// the entry or sizes past the region: [`PpiIter`] rejects all of those.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RndisPerPacketInfo {
    /// Bytes of this entry, header included.
    pub size: u32,
    /// Bits 0..31: the type; bit 31: `internal` (see [`Self::ppi_type`]).
    pub type_word: u32,
    /// Offset of the payload from the start of this entry.
    pub ppi_offset: u32,
}

const _: () = assert!(size_of::<RndisPerPacketInfo>() == 12);
const _: () = assert!(core::mem::offset_of!(RndisPerPacketInfo, size) == 0);
const _: () = assert!(core::mem::offset_of!(RndisPerPacketInfo, type_word) == 4);
const _: () = assert!(core::mem::offset_of!(RndisPerPacketInfo, ppi_offset) == 8);

/// Bytes of a PPI header (`sizeof(struct rndis_per_packet_info)`).
pub const PPI_HEADER_SIZE: usize = size_of::<RndisPerPacketInfo>();
/// `NDIS_{VLAN,CSUM,LSO,HASH}_PPI_SIZE`: header plus a 4-byte payload.
pub const NDIS_PPI_SIZE_4: usize = PPI_HEADER_SIZE + 4;

const INTERNAL_BIT: u32 = 0x8000_0000;

impl RndisPerPacketInfo {
    /// The 31-bit type field (meaningful as [`PpiType`] when not internal, as
    /// [`InternalPpiType`] when internal).
    pub const fn ppi_type(&self) -> u32 {
        self.type_word & !INTERNAL_BIT
    }
    /// The `internal` bit (bit 31 of the type word).
    pub const fn internal(&self) -> bool {
        self.type_word & INTERNAL_BIT != 0
    }
    /// Builds the type word from a 31-bit type (bit 31 of `ppi_type` is dropped) and
    /// the internal bit.
    pub const fn type_word_of(ppi_type: u32, internal: bool) -> u32 {
        (ppi_type & !INTERNAL_BIT) | if internal { INTERNAL_BIT } else { 0 }
    }
}

/// `struct ndis_tcp_ip_checksum_info` (4 bytes): the TCPIP_CHKSUM PPI. On transmit the
/// guest asks for checksums (`tx_*`); on receive the host reports results (`rx_*`). The
/// two views overlap: the direction decides which accessors apply.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct NdisTcpIpChecksumInfo(pub u32);

const _: () = assert!(size_of::<NdisTcpIpChecksumInfo>() == 4);

bitfield_accessors!(NdisTcpIpChecksumInfo {
    /// Transmit: the packet is IPv4 (`transmit.is_ipv4`).
    tx_is_ipv4, set_tx_is_ipv4, with_tx_is_ipv4: bool @ 0, 1;
    /// Transmit: the packet is IPv6 (`transmit.is_ipv6`).
    tx_is_ipv6, set_tx_is_ipv6, with_tx_is_ipv6: bool @ 1, 1;
    /// Transmit: compute the TCP checksum (`transmit.tcp_checksum`).
    tx_tcp_checksum, set_tx_tcp_checksum, with_tx_tcp_checksum: bool @ 2, 1;
    /// Transmit: compute the UDP checksum (`transmit.udp_checksum`).
    tx_udp_checksum, set_tx_udp_checksum, with_tx_udp_checksum: bool @ 3, 1;
    /// Transmit: compute the IPv4 header checksum (`transmit.ip_header_checksum`).
    tx_ip_header_checksum, set_tx_ip_header_checksum, with_tx_ip_header_checksum: bool @ 4, 1;
    /// Transmit: offset of the TCP header in the frame (`transmit.tcp_header_offset`,
    /// 10 bits). A guest may put anything here: check it against the frame.
    tx_tcp_header_offset, set_tx_tcp_header_offset, with_tx_tcp_header_offset: u32 @ 16, 10;
    /// Receive: TCP checksum failed.
    rx_tcp_checksum_failed, set_rx_tcp_checksum_failed, with_rx_tcp_checksum_failed: bool @ 0, 1;
    /// Receive: UDP checksum failed.
    rx_udp_checksum_failed, set_rx_udp_checksum_failed, with_rx_udp_checksum_failed: bool @ 1, 1;
    /// Receive: IP checksum failed.
    rx_ip_checksum_failed, set_rx_ip_checksum_failed, with_rx_ip_checksum_failed: bool @ 2, 1;
    /// Receive: TCP checksum verified.
    rx_tcp_checksum_succeeded, set_rx_tcp_checksum_succeeded, with_rx_tcp_checksum_succeeded: bool @ 3, 1;
    /// Receive: UDP checksum verified.
    rx_udp_checksum_succeeded, set_rx_udp_checksum_succeeded, with_rx_udp_checksum_succeeded: bool @ 4, 1;
    /// Receive: IP checksum verified.
    rx_ip_checksum_succeeded, set_rx_ip_checksum_succeeded, with_rx_ip_checksum_succeeded: bool @ 5, 1;
    /// Receive: loopback.
    rx_loopback, set_rx_loopback, with_rx_loopback: bool @ 6, 1;
    /// Receive: the TCP checksum value is invalid.
    rx_tcp_checksum_value_invalid, set_rx_tcp_checksum_value_invalid, with_rx_tcp_checksum_value_invalid: bool @ 7, 1;
    /// Receive: the IP checksum value is invalid.
    rx_ip_checksum_value_invalid, set_rx_ip_checksum_value_invalid, with_rx_ip_checksum_value_invalid: bool @ 8, 1;
});

/// `struct ndis_tcp_lso_info` (4 bytes): the TCP_LARGESEND PPI. For LSOv2 transmit:
/// MSS, TCP header offset, type (1 = v2) and IP version; on completion of LSOv1 the
/// TCP payload byte count.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct NdisTcpLsoInfo(pub u32);

const _: () = assert!(size_of::<NdisTcpLsoInfo>() == 4);

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE`: value of [`NdisTcpLsoInfo::lso_type`] for LSOv2.
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE: u32 = 1;
/// `NDIS_TCP_LARGE_SEND_OFFLOAD_IPV4`: value of [`NdisTcpLsoInfo::ip_version`].
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_IPV4: u32 = 0;
/// `NDIS_TCP_LARGE_SEND_OFFLOAD_IPV6`: value of [`NdisTcpLsoInfo::ip_version`].
pub const NDIS_TCP_LARGE_SEND_OFFLOAD_IPV6: u32 = 1;

bitfield_accessors!(NdisTcpLsoInfo {
    /// Maximum segment size (`lso_v2_transmit.mss`, 20 bits). A guest may send 0 or
    /// an MSS larger than the frame: check it.
    mss, set_mss, with_mss: u32 @ 0, 20;
    /// Offset of the TCP header in the frame (10 bits).
    tcp_header_offset, set_tcp_header_offset, with_tcp_header_offset: u32 @ 20, 10;
    /// LSO type: 0 = v1, 1 = v2 ([`NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE`]).
    lso_type, set_lso_type, with_lso_type: u32 @ 30, 1;
    /// LSOv2 IP version: 0 = IPv4, 1 = IPv6.
    ip_version, set_ip_version, with_ip_version: u32 @ 31, 1;
    /// LSOv1 completion: TCP payload bytes sent (`lso_v1_transmit_complete.tcp_payload`,
    /// 30 bits).
    tcp_payload, set_tcp_payload, with_tcp_payload: u32 @ 0, 30;
});

/// `struct ndis_pkt_8021q_info` (4 bytes): the IEEE_8021Q PPI.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct NdisPkt8021qInfo(pub u32);

const _: () = assert!(size_of::<NdisPkt8021qInfo>() == 4);

bitfield_accessors!(NdisPkt8021qInfo {
    /// User priority (PCP, 3 bits).
    pri, set_pri, with_pri: u32 @ 0, 3;
    /// Canonical format indicator (DEI).
    cfi, set_cfi, with_cfi: bool @ 3, 1;
    /// VLAN id (12 bits).
    vlan_id, set_vlan_id, with_vlan_id: u32 @ 4, 12;
});

/// `struct rndis_pktinfo_id` (4 bytes): the internal RNDIS_PKTINFO_ID PPI, which marks
/// RSC fragments.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisPktinfoId {
    /// Version ([`RNDIS_PKTINFO_ID_V1`]).
    pub ver: u8,
    /// `RNDIS_PKTINFO_*` flags.
    pub flag: u8,
    /// Packet id.
    pub pkt_id: u16,
}

const _: () = assert!(size_of::<RndisPktinfoId>() == 4);
const _: () = assert!(core::mem::offset_of!(RndisPktinfoId, flag) == 1);
const _: () = assert!(core::mem::offset_of!(RndisPktinfoId, pkt_id) == 2);

/// `RNDIS_PKTINFO_ID_V1`.
pub const RNDIS_PKTINFO_ID_V1: u8 = 1;
/// `RNDIS_PKTINFO_SUBALLOC`: the frame is one fragment of a coalesced (RSC) packet.
pub const RNDIS_PKTINFO_SUBALLOC: u8 = 0x1;
/// `RNDIS_PKTINFO_1ST_FRAG`.
pub const RNDIS_PKTINFO_1ST_FRAG: u8 = 0x2;
/// `RNDIS_PKTINFO_LAST_FRAG`.
pub const RNDIS_PKTINFO_LAST_FRAG: u8 = 0x4;

/// One per-packet-info entry, typed where this crate knows the payload.
///
/// Typed variants are decoded from their first 4 payload bytes (a longer payload is
/// accepted and its tail ignored, as Linux does); emitting one writes the netvsc form:
/// `size` 16, `ppi_offset` 12.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ppi<'a> {
    /// TCPIP_CHKSUM.
    Checksum(NdisTcpIpChecksumInfo),
    /// TCP_LARGESEND.
    Lso(NdisTcpLsoInfo),
    /// IEEE_8021Q.
    Vlan(NdisPkt8021qInfo),
    /// NBL_HASH_VALUE: the RSS hash of the frame.
    HashValue(u32),
    /// Internal RNDIS_PKTINFO_ID.
    PktinfoId(RndisPktinfoId),
    /// Any other type (or a known type with the other `internal` bit): the raw payload
    /// (bytes from `ppi_offset` to `size`).
    Unknown {
        /// The 31-bit type.
        ppi_type: u32,
        /// The internal bit.
        internal: bool,
        /// The payload.
        data: &'a [u8],
    },
}

impl<'a> Ppi<'a> {
    /// Decodes one entry from its header and payload (`data` = bytes from `ppi_offset`
    /// to `size`). Errors if a known type's payload is shorter than 4 bytes.
    pub fn decode(header: &RndisPerPacketInfo, data: &'a [u8]) -> Result<Self> {
        let ty = header.ppi_type();
        let internal = header.internal();
        let word = || -> Result<[u8; 4]> {
            data.first_chunk::<4>().copied().ok_or(Error::Truncated {
                what: "per-packet info payload",
                need: 4,
                have: data.len(),
            })
        };
        Ok(match (internal, ty) {
            (false, t) if t == PpiType::TCPIP_CHKSUM.0 => {
                Self::Checksum(NdisTcpIpChecksumInfo(u32::from_le_bytes(word()?)))
            }
            (false, t) if t == PpiType::TCP_LARGESEND.0 => {
                Self::Lso(NdisTcpLsoInfo(u32::from_le_bytes(word()?)))
            }
            (false, t) if t == PpiType::IEEE_8021Q.0 => {
                Self::Vlan(NdisPkt8021qInfo(u32::from_le_bytes(word()?)))
            }
            (false, t) if t == PpiType::NBL_HASH_VALUE.0 => {
                Self::HashValue(u32::from_le_bytes(word()?))
            }
            (true, t) if t == InternalPpiType::RNDIS_PKTINFO_ID.0 => {
                Self::PktinfoId(RndisPktinfoId::read_from_bytes(&word()?).map_err(|_| {
                    Error::Truncated {
                        what: "rndis_pktinfo_id",
                        need: 4,
                        have: data.len(),
                    }
                })?)
            }
            (internal, ppi_type) => Self::Unknown {
                ppi_type,
                internal,
                data,
            },
        })
    }

    /// The 31-bit type and the internal bit of this entry.
    pub fn type_and_internal(&self) -> (u32, bool) {
        match self {
            Self::Checksum(_) => (PpiType::TCPIP_CHKSUM.0, false),
            Self::Lso(_) => (PpiType::TCP_LARGESEND.0, false),
            Self::Vlan(_) => (PpiType::IEEE_8021Q.0, false),
            Self::HashValue(_) => (PpiType::NBL_HASH_VALUE.0, false),
            Self::PktinfoId(_) => (InternalPpiType::RNDIS_PKTINFO_ID.0, true),
            Self::Unknown {
                ppi_type, internal, ..
            } => (*ppi_type, *internal),
        }
    }

    fn payload(&self) -> ([u8; 4], &[u8]) {
        match self {
            Self::Checksum(v) => (v.0.to_le_bytes(), &[]),
            Self::Lso(v) => (v.0.to_le_bytes(), &[]),
            Self::Vlan(v) => (v.0.to_le_bytes(), &[]),
            Self::HashValue(v) => (v.to_le_bytes(), &[]),
            Self::PktinfoId(v) => (zerocopy::transmute!(*v), &[]),
            Self::Unknown { data, .. } => ([0; 4], data),
        }
    }

    /// Bytes this entry occupies on the wire (header + payload).
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Unknown { data, .. } => PPI_HEADER_SIZE.saturating_add(data.len()),
            _ => NDIS_PPI_SIZE_4,
        }
    }

    /// Writes the entry at the front of `buf` (`ppi_offset` 12); returns its length.
    /// Fails if `buf` is too small or an unknown payload does not fit a u32 size.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.encoded_len();
        let size = u32::try_from(len).map_err(|_| Error::TooMany {
            what: "per-packet info size",
            count: len as u64,
            limit: u64::from(u32::MAX),
        })?;
        let (ty, internal) = self.type_and_internal();
        let header = RndisPerPacketInfo {
            size,
            type_word: RndisPerPacketInfo::type_word_of(ty, internal),
            ppi_offset: PPI_HEADER_SIZE as u32,
        };
        if buf.len() < len {
            return Err(Error::BufferTooSmall {
                what: "per-packet info",
                need: len,
                have: buf.len(),
            });
        }
        let at = put("per-packet info", buf, 0, header.as_bytes())?;
        let (word, data) = self.payload();
        match self {
            Self::Unknown { .. } => put("per-packet info", buf, at, data),
            _ => put("per-packet info", buf, at, &word),
        }
    }
}

/// Total length of the PPI region `ppis` encode to.
pub fn ppis_encoded_len(ppis: &[Ppi<'_>]) -> usize {
    ppis.iter()
        .fold(0usize, |acc, p| acc.saturating_add(p.encoded_len()))
}

/// Writes `ppis` back to back at the front of `buf`; returns the region length.
pub fn emit_ppis(buf: &mut [u8], ppis: &[Ppi<'_>]) -> Result<usize> {
    let mut at = 0usize;
    for p in ppis {
        let rest = buf.get_mut(at..).ok_or(Error::BufferTooSmall {
            what: "per-packet info",
            need: at,
            have: 0,
        })?;
        at = at.saturating_add(p.emit(rest)?);
    }
    Ok(at)
}

/// Iterator over a PPI region (the `per_pkt_info_offset`/`per_pkt_info_len` bytes of a
/// packet message).
///
/// Every entry must have `size >= 12` and fit the rest of the region, and
/// `12 <= ppi_offset <= size`; a violation yields one `Err` and ends the iteration.
/// Each step consumes at least 12 bytes, so a region of `n` bytes yields at most
/// `n / 12 + 1` items.
#[derive(Clone, Debug)]
pub struct PpiIter<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> PpiIter<'a> {
    /// Iterates over `region`.
    pub fn new(region: &'a [u8]) -> Self {
        Self {
            rest: region,
            done: false,
        }
    }

    fn next_entry(&mut self) -> Result<Ppi<'a>> {
        let (header, _) =
            RndisPerPacketInfo::read_from_prefix(self.rest).map_err(|_| Error::Truncated {
                what: "per-packet info header",
                need: PPI_HEADER_SIZE,
                have: self.rest.len(),
            })?;
        let size = header.size as usize;
        if size < PPI_HEADER_SIZE {
            return Err(Error::InvalidField {
                what: "per-packet info size",
                value: u64::from(header.size),
            });
        }
        let (entry, rest) = self.rest.split_at_checked(size).ok_or(Error::OutOfBounds {
            what: "per-packet info size",
            offset: 0,
            len: u64::from(header.size),
            bound: self.rest.len(),
        })?;
        let off = header.ppi_offset as usize;
        if off < PPI_HEADER_SIZE {
            return Err(Error::InvalidField {
                what: "per-packet info ppi_offset",
                value: u64::from(header.ppi_offset),
            });
        }
        let data = entry.get(off..).ok_or(Error::OutOfBounds {
            what: "per-packet info ppi_offset",
            offset: u64::from(header.ppi_offset),
            len: 0,
            bound: size,
        })?;
        self.rest = rest;
        Ppi::decode(&header, data)
    }
}

impl<'a> Iterator for PpiIter<'a> {
    type Item = Result<Ppi<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let r = self.next_entry();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl core::iter::FusedIterator for PpiIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_match_linux_positions() {
        // transmit.tcp_header_offset = bit16 w10; is_ipv4 bit0; tcp_checksum bit2.
        let c = NdisTcpIpChecksumInfo::default()
            .with_tx_is_ipv4(true)
            .with_tx_tcp_checksum(true)
            .with_tx_tcp_header_offset(34);
        assert_eq!(c.0, 0x0022_0005);
        assert!(c.tx_is_ipv4() && !c.tx_is_ipv6() && c.tx_tcp_checksum());
        assert_eq!(c.tx_tcp_header_offset(), 34);
        // receive.ip_checksum_value_invalid = bit8.
        assert!(NdisTcpIpChecksumInfo(0x100).rx_ip_checksum_value_invalid());
        assert!(NdisTcpIpChecksumInfo(0x8).rx_tcp_checksum_succeeded());

        // lso_v2_transmit: mss bit0 w20, tcp_header_offset bit20 w10, type bit30, ip_version bit31.
        let l = NdisTcpLsoInfo::default()
            .with_mss(1460)
            .with_tcp_header_offset(54)
            .with_lso_type(NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE)
            .with_ip_version(NDIS_TCP_LARGE_SEND_OFFLOAD_IPV6);
        assert_eq!(l.0, 1460 | 54 << 20 | 1 << 30 | 1 << 31);
        assert_eq!(
            (l.mss(), l.tcp_header_offset(), l.lso_type(), l.ip_version()),
            (1460, 54, 1, 1)
        );
        let mut l2 = l;
        l2.set_mss(0xFFF_FFFF); // truncated to 20 bits, neighbours untouched
        assert_eq!(l2.mss(), 0xF_FFFF);
        assert_eq!(l2.tcp_header_offset(), 54);

        // 8021q: pri bit0 w3, cfi bit3, vlanid bit4 w12.
        let v = NdisPkt8021qInfo::default()
            .with_pri(5)
            .with_cfi(true)
            .with_vlan_id(0xABC);
        assert_eq!(v.0, 5 | 1 << 3 | 0xABC << 4);
        assert_eq!((v.pri(), v.cfi(), v.vlan_id()), (5, true, 0xABC));
    }

    #[test]
    fn type_word_internal_bit() {
        let h = RndisPerPacketInfo {
            size: 16,
            type_word: 0x8000_0001,
            ppi_offset: 12,
        };
        assert_eq!((h.ppi_type(), h.internal()), (1, true));
        assert_eq!(RndisPerPacketInfo::type_word_of(6, false), 6);
        assert_eq!(RndisPerPacketInfo::type_word_of(1, true), 0x8000_0001);
    }

    #[test]
    fn iter_golden_and_roundtrip() {
        // VLAN 100 prio 3, then a hash value, then an internal pktinfo id.
        #[rustfmt::skip]
        let region: [u8; 48] = [
            0x10, 0, 0, 0,  0x06, 0, 0, 0,  0x0C, 0, 0, 0,  0x43, 0x06, 0, 0,
            0x10, 0, 0, 0,  0x08, 0, 0, 0,  0x0C, 0, 0, 0,  0x78, 0x56, 0x34, 0x12,
            0x10, 0, 0, 0,  0x01, 0, 0, 0x80, 0x0C, 0, 0, 0, 0x01, 0x07, 0x34, 0x12,
        ];
        let ppis: Vec<Ppi<'_>> = PpiIter::new(&region).collect::<Result<_>>().unwrap();
        assert_eq!(
            ppis,
            vec![
                Ppi::Vlan(NdisPkt8021qInfo::default().with_pri(3).with_vlan_id(100)),
                Ppi::HashValue(0x1234_5678),
                Ppi::PktinfoId(RndisPktinfoId {
                    ver: 1,
                    flag: 7,
                    pkt_id: 0x1234
                }),
            ]
        );
        let mut out = [0u8; 48];
        assert_eq!(emit_ppis(&mut out, &ppis).unwrap(), 48);
        assert_eq!(out, region);
        assert_eq!(ppis_encoded_len(&ppis), 48);
    }

    #[test]
    fn iter_rejects_bad_entries() {
        let mk = |size: u32, off: u32| {
            let mut v = Vec::new();
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&off.to_le_bytes());
            v.extend_from_slice(&[0; 4]);
            v
        };
        // size < 12 (would not advance)
        let r = mk(0, 12);
        assert!(matches!(
            PpiIter::new(&r).next(),
            Some(Err(Error::InvalidField { .. }))
        ));
        assert_eq!(PpiIter::new(&r).count(), 1);
        // size past the region
        let r = mk(17, 12);
        assert!(matches!(
            PpiIter::new(&r).next(),
            Some(Err(Error::OutOfBounds { .. }))
        ));
        // ppi_offset inside the header
        let r = mk(16, 4);
        assert!(matches!(
            PpiIter::new(&r).next(),
            Some(Err(Error::InvalidField { .. }))
        ));
        // ppi_offset past size
        let r = mk(16, 17);
        assert!(matches!(
            PpiIter::new(&r).next(),
            Some(Err(Error::OutOfBounds { .. }))
        ));
        // known type with a short payload (ppi_offset == size)
        let r = mk(16, 16);
        assert!(matches!(
            PpiIter::new(&r).next(),
            Some(Err(Error::Truncated { .. }))
        ));
        // trailing partial header after a good entry
        let mut r = mk(16, 12);
        r.extend_from_slice(&[1, 2, 3]);
        let items: Vec<_> = PpiIter::new(&r).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && items[1].is_err());
    }

    #[test]
    fn unknown_ppi_roundtrip() {
        let p = Ppi::Unknown {
            ppi_type: 11,
            internal: false,
            data: &[1, 2, 3],
        };
        let mut out = [0u8; 15];
        assert_eq!(p.emit(&mut out).unwrap(), 15);
        let got: Vec<_> = PpiIter::new(&out).collect::<Result<_>>().unwrap();
        assert_eq!(got, vec![p]);
        assert!(p.emit(&mut [0u8; 14]).is_err());
    }
}
