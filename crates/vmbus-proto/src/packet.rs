//! VMBus ring packets: the 16-byte descriptor, the per-type headers (transfer pages,
//! GPA direct), and the 8-byte trailer.
//!
//! Layout (Linux `include/linux/hyperv.h`): `struct vmpacket_descriptor` {u16 type,
//! u16 offset8, u16 len8, u16 flags, u64 trans_id}; `offset8` and `len8` count 8-byte
//! units from the start of the descriptor: data starts at `offset8 * 8`, the packet
//! (without trailer) is `len8 * 8` bytes. In the ring each packet is followed by a u64
//! trailer holding the writer's previous write index in its high 32 bits.
//!
//! [`Packet::parse`] takes the `len8 * 8` bytes of one packet and validates every
//! length and count against them; nothing the peer wrote is trusted.

use crate::error::{Error, Result, put, read_prefix};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

hv_hypercall::open_enum! {
    /// `enum vmbus_packet_type` (u16 at offset 0 of the descriptor).
    pub struct PacketType(u16) {
        /// `VM_PKT_INVALID`.
        INVALID = 0x0,
        /// `VM_PKT_SYNCH`.
        SYNCH = 0x1,
        /// `VM_PKT_ADD_XFER_PAGESET`.
        ADD_TRANSFER_PAGESET = 0x2,
        /// `VM_PKT_RM_XFER_PAGESET`.
        REMOVE_TRANSFER_PAGESET = 0x3,
        /// `VM_PKT_ESTABLISH_GPADL`.
        ESTABLISH_GPADL = 0x4,
        /// `VM_PKT_TEARDOWN_GPADL`.
        TEARDOWN_GPADL = 0x5,
        /// `VM_PKT_DATA_INBAND`: the payload is in the ring.
        DATA_INBAND = 0x6,
        /// `VM_PKT_DATA_USING_XFER_PAGES`: the payload is in a transfer page set
        /// (NetVSP's receive buffer), described by ranges.
        DATA_USING_TRANSFER_PAGES = 0x7,
        /// `VM_PKT_DATA_USING_GPADL`.
        DATA_USING_GPADL = 0x8,
        /// `VM_PKT_DATA_USING_GPA_DIRECT`: the payload is in guest pages listed in the
        /// packet.
        DATA_USING_GPA_DIRECT = 0x9,
        /// `VM_PKT_CANCEL_REQUEST`.
        CANCEL_REQUEST = 0xA,
        /// `VM_PKT_COMP`: completion of a packet that requested one.
        COMPLETION = 0xB,
        /// `VM_PKT_DATA_USING_ADDITIONAL_PKT`.
        DATA_USING_ADDITIONAL_PACKET = 0xC,
        /// `VM_PKT_ADDITIONAL_DATA`.
        ADDITIONAL_DATA = 0xD,
    }
}

/// `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`: the receiver must answer with a
/// [`PacketType::COMPLETION`] echoing the transaction id.
pub const FLAG_COMPLETION_REQUESTED: u16 = 0x1;

/// `struct vmpacket_descriptor` (16 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PacketDescriptor {
    /// Packet type.
    pub packet_type: PacketType,
    /// Offset of the data in 8-byte units (at least 2).
    pub data_offset8: u16,
    /// Packet length in 8-byte units, descriptor included, trailer excluded.
    pub length8: u16,
    /// Flags ([`FLAG_COMPLETION_REQUESTED`]).
    pub flags: u16,
    /// Transaction id, echoed by a completion.
    pub transaction_id: u64,
}

/// `struct vmtransfer_page_packet_header` after the descriptor (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TransferPageHeader {
    /// The transfer page set (NetVSP: 0xCAFE, the receive buffer id).
    pub transfer_pageset_id: u16,
    /// Whether the sender keeps ownership.
    pub sender_owns_set: u8,
    /// Reserved.
    pub reserved: u8,
    /// Number of ranges that follow.
    pub range_count: u32,
}

/// `struct vmtransfer_page_range`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TransferPageRange {
    /// Bytes in the range.
    pub byte_count: u32,
    /// Offset in the transfer page set.
    pub byte_offset: u32,
}

/// The GPA-direct header after the descriptor (`vmdata_gpa_direct`, 8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpaDirectHeader {
    /// Reserved.
    pub reserved: u32,
    /// Number of `gpa_range`s that follow.
    pub range_count: u32,
}

/// `struct gpa_range` header (followed by its page numbers).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpaRangeHeader {
    /// Bytes in the range.
    pub byte_count: u32,
    /// Offset into the first page.
    pub byte_offset: u32,
}

/// Size of the descriptor.
pub const DESCRIPTOR_SIZE: usize = 16;
/// Size of the ring trailer.
pub const TRAILER_SIZE: usize = 8;
/// Page size of GPA-direct page numbers.
pub const PAGE_SIZE: u64 = 4096;

const _: () = assert!(size_of::<PacketDescriptor>() == 16);
const _: () = assert!(core::mem::offset_of!(PacketDescriptor, data_offset8) == 2);
const _: () = assert!(core::mem::offset_of!(PacketDescriptor, length8) == 4);
const _: () = assert!(core::mem::offset_of!(PacketDescriptor, flags) == 6);
const _: () = assert!(core::mem::offset_of!(PacketDescriptor, transaction_id) == 8);
// vmtransfer_page_packet_header: xfer_pageset_id @16, sender_owns_set @18, range_cnt @20,
// ranges @24 (24 bytes with the descriptor).
const _: () = assert!(DESCRIPTOR_SIZE + size_of::<TransferPageHeader>() == 24);
const _: () =
    assert!(DESCRIPTOR_SIZE + core::mem::offset_of!(TransferPageHeader, range_count) == 20);
const _: () = assert!(size_of::<TransferPageRange>() == 8);
// vmdata_gpa_direct: reserved @16, range_cnt @20, range @24.
const _: () = assert!(DESCRIPTOR_SIZE + size_of::<GpaDirectHeader>() == 24);
const _: () = assert!(size_of::<GpaRangeHeader>() == 8);

/// The trailer value for a packet written at `write_index` (`(u64)index << 32`).
pub const fn trailer(write_index: u32) -> u64 {
    (write_index as u64) << 32
}

/// The write index stored in a trailer.
pub const fn trailer_index(trailer: u64) -> u32 {
    (trailer >> 32) as u32
}

/// Bytes a packet occupies in the ring: `len8 * 8` plus the trailer.
pub const fn ring_size(length8: u16) -> usize {
    length8 as usize * 8 + TRAILER_SIZE
}

/// Limits on what a packet may carry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PacketLimits {
    /// Maximum transfer-page ranges (NetVSP sends at most 375).
    pub max_transfer_ranges: usize,
    /// Maximum GPA ranges in a GPA-direct packet.
    pub max_gpa_ranges: usize,
}

impl Default for PacketLimits {
    fn default() -> Self {
        Self {
            max_transfer_ranges: 1024,
            max_gpa_ranges: 64,
        }
    }
}

/// A validated view of one packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The descriptor.
    pub descriptor: PacketDescriptor,
    /// What the type-specific header says.
    pub kind: PacketKind<'a>,
    /// The data: `data_offset8 * 8 .. length8 * 8`.
    pub payload: &'a [u8],
}

/// The type-specific part of a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketKind<'a> {
    /// In-band data.
    InBand,
    /// A completion.
    Completion,
    /// Transfer-page ranges.
    TransferPages {
        /// The header.
        header: TransferPageHeader,
        /// The ranges (validated count; contents still peer values).
        ranges: &'a [u8],
    },
    /// GPA-direct ranges.
    GpaDirect {
        /// Number of ranges.
        range_count: u32,
        /// The raw range array (walk it with [`GpaRanges`]).
        ranges: &'a [u8],
    },
    /// Another type; the bytes between the descriptor and the data.
    Other {
        /// Raw header bytes.
        header: &'a [u8],
    },
}

impl PacketKind<'_> {
    /// The transfer-page ranges, if this is a transfer-page packet.
    pub fn transfer_ranges(&self) -> impl Iterator<Item = TransferPageRange> + '_ {
        let bytes: &[u8] = match self {
            Self::TransferPages { ranges, .. } => ranges,
            _ => &[],
        };
        bytes
            .chunks_exact(8)
            .filter_map(|c| TransferPageRange::read_from_bytes(c).ok())
    }
}

impl<'a> Packet<'a> {
    /// Parses one packet from `bytes`, which must hold at least `length8 * 8` bytes
    /// (the trailer is not included; extra bytes are ignored).
    pub fn parse(bytes: &'a [u8], limits: &PacketLimits) -> Result<Self> {
        let (descriptor, _) = read_prefix::<PacketDescriptor>("packet descriptor", bytes)?;
        let len = usize::from(descriptor.length8) * 8;
        let off = usize::from(descriptor.data_offset8) * 8;
        if len < DESCRIPTOR_SIZE {
            return Err(Error::InvalidField {
                what: "packet length8",
                value: u64::from(descriptor.length8),
            });
        }
        if off < DESCRIPTOR_SIZE || off > len {
            return Err(Error::OutOfBounds {
                what: "packet data_offset8",
                offset: off as u64,
                len: 0,
                bound: len,
            });
        }
        let packet = bytes.get(..len).ok_or(Error::Truncated {
            what: "packet",
            need: len,
            have: bytes.len(),
        })?;
        let header = packet.get(DESCRIPTOR_SIZE..off).unwrap_or(&[]);
        let payload = packet.get(off..).unwrap_or(&[]);
        let kind = match descriptor.packet_type {
            PacketType::DATA_INBAND => PacketKind::InBand,
            PacketType::COMPLETION => PacketKind::Completion,
            PacketType::DATA_USING_TRANSFER_PAGES => {
                let (h, rest) = read_prefix::<TransferPageHeader>("transfer page header", header)?;
                let n = h.range_count as usize;
                if n > limits.max_transfer_ranges {
                    return Err(Error::TooMany {
                        what: "transfer page ranges",
                        count: n as u64,
                        limit: limits.max_transfer_ranges as u64,
                    });
                }
                let ranges = rest.get(..n * 8).ok_or(Error::Truncated {
                    what: "transfer page ranges",
                    need: n * 8,
                    have: rest.len(),
                })?;
                PacketKind::TransferPages { header: h, ranges }
            }
            PacketType::DATA_USING_GPA_DIRECT => {
                let (h, rest) = read_prefix::<GpaDirectHeader>("GPA direct header", header)?;
                if h.range_count as usize > limits.max_gpa_ranges {
                    return Err(Error::TooMany {
                        what: "GPA direct ranges",
                        count: u64::from(h.range_count),
                        limit: limits.max_gpa_ranges as u64,
                    });
                }
                // Validate the whole array now so that iteration cannot fail later.
                let mut it = GpaRanges {
                    bytes: rest,
                    remaining: h.range_count,
                };
                for r in it.by_ref() {
                    r?;
                }
                PacketKind::GpaDirect {
                    range_count: h.range_count,
                    ranges: rest,
                }
            }
            _ => PacketKind::Other { header },
        };
        Ok(Self {
            descriptor,
            kind,
            payload,
        })
    }

    /// Whether the sender asked for a completion.
    pub const fn completion_requested(&self) -> bool {
        self.descriptor.flags & FLAG_COMPLETION_REQUESTED != 0
    }

    /// The GPA ranges of a GPA-direct packet (empty otherwise).
    pub fn gpa_ranges(&self) -> GpaRanges<'a> {
        match self.kind {
            PacketKind::GpaDirect {
                range_count,
                ranges,
            } => GpaRanges {
                bytes: ranges,
                remaining: range_count,
            },
            _ => GpaRanges {
                bytes: &[],
                remaining: 0,
            },
        }
    }
}

/// One range of a GPA-direct packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GpaRange<'a> {
    /// Bytes in the range.
    pub byte_count: u32,
    /// Offset into the first page (below 4096).
    pub byte_offset: u32,
    /// Little-endian u64 page numbers (8 bytes each); their values are peer data that
    /// the memory layer must still check against guest RAM.
    pub pfns: &'a [u8],
}

impl GpaRange<'_> {
    /// The page numbers.
    pub fn pfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.pfns
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_le_bytes)
    }
}

/// Iterator over the `gpa_range`s of a GPA-direct packet; bounded by the range count
/// and the bytes available.
#[derive(Clone, Debug)]
pub struct GpaRanges<'a> {
    bytes: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for GpaRanges<'a> {
    type Item = Result<GpaRange<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let r = (|| {
            let (h, rest) = read_prefix::<GpaRangeHeader>("gpa_range", self.bytes)?;
            if u64::from(h.byte_offset) >= PAGE_SIZE || h.byte_count == 0 {
                return Err(Error::InvalidField {
                    what: "gpa_range",
                    value: u64::from(h.byte_count) | u64::from(h.byte_offset) << 32,
                });
            }
            let pages =
                (u64::from(h.byte_offset) + u64::from(h.byte_count)).div_ceil(PAGE_SIZE) as usize;
            let (pfns, rest) = rest.split_at_checked(pages * 8).ok_or(Error::Truncated {
                what: "gpa_range pfns",
                need: pages * 8,
                have: rest.len(),
            })?;
            self.bytes = rest;
            Ok(GpaRange {
                byte_count: h.byte_count,
                byte_offset: h.byte_offset,
                pfns,
            })
        })();
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }
}

/// Builds a descriptor for a packet whose type-specific header is `header_len` bytes
/// and whose payload is `payload_len` bytes; the payload is padded to 8. Returns the
/// descriptor, or an error if the packet would exceed the 16-bit length8 (512 KiB).
pub fn descriptor_for(
    packet_type: PacketType,
    flags: u16,
    transaction_id: u64,
    header_len: usize,
    payload_len: usize,
) -> Result<PacketDescriptor> {
    let off = DESCRIPTOR_SIZE + header_len.next_multiple_of(8);
    let total = off + payload_len.next_multiple_of(8);
    let too_big = |v: usize| Error::TooMany {
        what: "packet length",
        count: v as u64,
        limit: u64::from(u16::MAX) * 8,
    };
    Ok(PacketDescriptor {
        packet_type,
        data_offset8: u16::try_from(off / 8).map_err(|_| too_big(off))?,
        length8: u16::try_from(total / 8).map_err(|_| too_big(total))?,
        flags,
        transaction_id,
    })
}

/// Writes an in-band or completion packet (descriptor, payload, zero padding; no
/// trailer) into `buf`; returns the packet length (`length8 * 8`).
pub fn emit_inband(
    buf: &mut [u8],
    packet_type: PacketType,
    flags: u16,
    transaction_id: u64,
    payload: &[u8],
) -> Result<usize> {
    let d = descriptor_for(packet_type, flags, transaction_id, 0, payload.len())?;
    let end = usize::from(d.length8) * 8;
    let at = put("packet", buf, 0, d.as_bytes())?;
    let at = put("packet", buf, at, payload)?;
    let pad = buf.get_mut(at..end).ok_or(Error::BufferTooSmall {
        what: "packet",
        need: end,
        have: at,
    })?;
    pad.fill(0);
    Ok(end)
}

/// Writes a transfer-page packet (descriptor, header, ranges, then `payload` padded)
/// into `buf`; returns its length.
pub fn emit_transfer_pages(
    buf: &mut [u8],
    flags: u16,
    transaction_id: u64,
    transfer_pageset_id: u16,
    ranges: &[TransferPageRange],
    payload: &[u8],
) -> Result<usize> {
    let what = "transfer page packet";
    let header_len = size_of::<TransferPageHeader>() + ranges.len() * 8;
    let d = descriptor_for(
        PacketType::DATA_USING_TRANSFER_PAGES,
        flags,
        transaction_id,
        header_len,
        payload.len(),
    )?;
    let h = TransferPageHeader {
        transfer_pageset_id,
        sender_owns_set: 0,
        reserved: 0,
        range_count: u32::try_from(ranges.len()).map_err(|_| Error::TooMany {
            what,
            count: ranges.len() as u64,
            limit: u64::from(u32::MAX),
        })?,
    };
    let mut at = put(what, buf, 0, d.as_bytes())?;
    at = put(what, buf, at, h.as_bytes())?;
    for r in ranges {
        at = put(what, buf, at, r.as_bytes())?;
    }
    at = put(what, buf, at, payload)?;
    let end = usize::from(d.length8) * 8;
    let have = buf.len();
    buf.get_mut(at..end)
        .ok_or(Error::BufferTooSmall {
            what,
            need: end,
            have,
        })?
        .fill(0);
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn inband_golden() {
        // NVSP INIT as an in-band packet with completion requested: type 6, offset8 2,
        // len8 2 + 40/8 = 7, flags 1, trans_id; then 40 bytes of NVSP.
        let mut nvsp = vec![0u8; 40];
        nvsp[0] = 1;
        nvsp[4..8].copy_from_slice(&0x60001u32.to_le_bytes());
        nvsp[8..12].copy_from_slice(&0x60001u32.to_le_bytes());
        let mut want = hex("0600 0200 0700 0100 efbeadde00000000");
        want.extend_from_slice(&nvsp);
        let mut buf = [0u8; 64];
        let n = emit_inband(
            &mut buf,
            PacketType::DATA_INBAND,
            FLAG_COMPLETION_REQUESTED,
            0xDEADBEEF,
            &nvsp,
        )
        .unwrap();
        assert_eq!(&buf[..n], &want[..]);
        let p = Packet::parse(&want, &PacketLimits::default()).unwrap();
        assert_eq!(p.kind, PacketKind::InBand);
        assert!(p.completion_requested());
        assert_eq!(p.payload, &nvsp[..]);
        assert_eq!(ring_size(p.descriptor.length8), 64);
    }

    #[test]
    fn odd_payload_is_padded() {
        let mut buf = [0xFFu8; 64];
        let n = emit_inband(&mut buf, PacketType::COMPLETION, 0, 7, &[1, 2, 3]).unwrap();
        assert_eq!(n, 24);
        assert_eq!(&buf[16..24], &[1, 2, 3, 0, 0, 0, 0, 0]);
        let p = Packet::parse(&buf[..n], &PacketLimits::default()).unwrap();
        assert_eq!(p.kind, PacketKind::Completion);
        assert_eq!(p.payload.len(), 8);
    }

    #[test]
    fn transfer_pages_golden() {
        // NetVSP receive: type 7, set id 0xCAFE, 2 ranges, then NVSP 107 (40 bytes).
        let ranges = [
            TransferPageRange {
                byte_count: 100,
                byte_offset: 0,
            },
            TransferPageRange {
                byte_count: 200,
                byte_offset: 1728,
            },
        ];
        let nvsp = [0u8; 40];
        let mut buf = [0u8; 128];
        let n = emit_transfer_pages(
            &mut buf,
            FLAG_COMPLETION_REQUESTED,
            9,
            0xCAFE,
            &ranges,
            &nvsp,
        )
        .unwrap();
        let mut want = hex("0700 0500 0a00 0100 0900000000000000 feca 00 00 02000000");
        want.extend(hex("64000000 00000000 c8000000 c0060000"));
        want.extend_from_slice(&nvsp);
        assert_eq!(&buf[..n], &want[..]);
        let p = Packet::parse(&want, &PacketLimits::default()).unwrap();
        match p.kind {
            PacketKind::TransferPages { header, .. } => {
                assert_eq!(header.transfer_pageset_id, 0xCAFE)
            }
            ref k => panic!("{k:?}"),
        }
        assert_eq!(p.kind.transfer_ranges().collect::<Vec<_>>(), ranges);
        assert_eq!(p.payload.len(), 40);
    }

    #[test]
    fn gpa_direct_golden() {
        // Type 9, offset8 = (16 + 8 + 8 + 2*8)/8 = 6, one range of 5000 bytes at offset
        // 100 spanning 2 pages, then a 16-byte payload.
        let mut b = hex("0900 0600 0800 0100 0100000000000000 00000000 01000000");
        b.extend(hex("88130000 64000000 3412000000000000 3512000000000000"));
        b.extend([0xAB; 16]);
        let p = Packet::parse(&b, &PacketLimits::default()).unwrap();
        let r: Vec<_> = p.gpa_ranges().collect::<Result<_>>().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].byte_count, r[0].byte_offset), (5000, 100));
        assert_eq!(r[0].pfns().collect::<Vec<_>>(), vec![0x1234, 0x1235]);
        assert_eq!(p.payload, &[0xAB; 16]);
    }

    #[test]
    fn hostile_packets() {
        let l = PacketLimits::default();
        // length8 below the descriptor.
        assert!(Packet::parse(&hex("0600 0200 0100 0000 0000000000000000"), &l).is_err());
        // data offset before the descriptor end, and beyond the packet.
        assert!(Packet::parse(&hex("0600 0100 0200 0000 0000000000000000"), &l).is_err());
        assert!(Packet::parse(&hex("0600 0300 0200 0000 0000000000000000"), &l).is_err());
        // length8 beyond the bytes given.
        assert!(Packet::parse(&hex("0600 0200 0300 0000 0000000000000000"), &l).is_err());
        // transfer pages claiming more ranges than the header holds, or than the limit.
        let mut b = hex("0700 0400 0400 0000 0000000000000000 feca0000 02000000 0100000000000000");
        assert!(Packet::parse(&b, &l).is_err());
        b[20..24].copy_from_slice(&2000u32.to_le_bytes());
        assert!(Packet::parse(&b, &l).is_err());
        // GPA range whose pages run past the header; byte_offset >= 4096.
        let b = hex("0900 0400 0400 0000 0000000000000000 00000000 01000000 00200000 00000000");
        assert!(Packet::parse(&b, &l).is_err());
        let b = hex(
            "0900 0500 0500 0000 0000000000000000 00000000 01000000 01000000 00100000 0100000000000000",
        );
        assert!(Packet::parse(&b, &l).is_err());
    }

    #[test]
    fn trailer_layout() {
        assert_eq!(trailer(0x1234), 0x1234_0000_0000);
        assert_eq!(trailer_index(trailer(77)), 77);
    }

    proptest::proptest! {
        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(p) = Packet::parse(&bytes, &PacketLimits::default()) {
                for r in p.gpa_ranges() { let _ = r; }
                let _ = p.kind.transfer_ranges().count();
            }
        }

        #[test]
        fn inband_roundtrip(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), tid: u64, flags: u16) {
            let mut buf = [0u8; 128];
            let n = emit_inband(&mut buf, PacketType::DATA_INBAND, flags, tid, &payload).unwrap();
            let p = Packet::parse(&buf[..n], &PacketLimits::default()).unwrap();
            proptest::prop_assert_eq!(p.descriptor.transaction_id, tid);
            proptest::prop_assert_eq!(p.descriptor.flags, flags);
            proptest::prop_assert_eq!(&p.payload[..payload.len()], &payload[..]);
            proptest::prop_assert!(p.payload[payload.len()..].iter().all(|&b| b == 0));
        }
    }
}
