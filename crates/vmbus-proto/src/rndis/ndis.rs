//! NDIS objects carried in OID information buffers: the object header, `NDIS_OFFLOAD`
//! (OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES / CURRENT_CONFIG), `NDIS_OFFLOAD_PARAMETERS`
//! (OID_TCP_OFFLOAD_PARAMETERS), `NDIS_OFFLOAD_ENCAPSULATION`, RSS capabilities and
//! parameters (OID_GEN_RECEIVE_SCALE_*), and the RNDIS configuration parameter
//! (OID_GEN_RNDIS_CONFIG_PARAMETER).
//!
//! Layouts from Linux `drivers/net/hyperv/hyperv_net.h` (sizes and offsets in
//! gcc's layout); `NDIS_OFFLOAD_ENCAPSULATION` from OpenVMM `rndisprot.rs`.
//! Where the C structs have implicit padding, explicit `reserved*` fields take its place
//! so the zerocopy types have the exact C size and offsets.

use super::enums::{
    ConfigParamType, NdisObjectType, OffloadParamChecksum, OffloadParamSimple, RssHashInfo,
    RssParamFlags,
};
use crate::error::{Error, Result, put, read_prefix};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `struct ndis_object_header` / `ndis_obj_header` (4 bytes): the header of every NDIS
/// object. `size` is the peer's claim: parsers here never trust it beyond the buffer.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisObjectHeader {
    /// Object type.
    pub object_type: NdisObjectType,
    /// Revision.
    pub revision: u8,
    /// Size of the object in bytes (this revision).
    pub size: u16,
}

impl NdisObjectHeader {
    /// A header.
    pub const fn new(object_type: NdisObjectType, revision: u8, size: u16) -> Self {
        Self {
            object_type,
            revision,
            size,
        }
    }
}

/// `struct ndis_csum_offload` (32 bytes): checksum-offload capabilities; each `*csum`
/// word holds [`offload_caps`](super::offload_caps) bits, each `*enc` word
/// [`encap`](super::encap) values.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisCsumOffload {
    /// IPv4 transmit encapsulation.
    pub ip4_txenc: u32,
    /// IPv4 transmit capabilities.
    pub ip4_txcsum: u32,
    /// IPv4 receive encapsulation.
    pub ip4_rxenc: u32,
    /// IPv4 receive capabilities.
    pub ip4_rxcsum: u32,
    /// IPv6 transmit encapsulation.
    pub ip6_txenc: u32,
    /// IPv6 transmit capabilities.
    pub ip6_txcsum: u32,
    /// IPv6 receive encapsulation.
    pub ip6_rxenc: u32,
    /// IPv6 receive capabilities.
    pub ip6_rxcsum: u32,
}

/// `struct ndis_lsov1_offload` (16 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisLsov1Offload {
    /// Encapsulation.
    pub encap: u32,
    /// Maximum offload size.
    pub maxsize: u32,
    /// Minimum segment count.
    pub minsegs: u32,
    /// Options.
    pub opts: u32,
}

/// `struct ndis_ipsecv1_offload` (28 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisIpsecv1Offload {
    /// Encapsulation.
    pub encap: u32,
    /// AH and ESP.
    pub ah_esp: u32,
    /// Transport and tunnel.
    pub xport_tun: u32,
    /// IPv4 options.
    pub ip4_opts: u32,
    /// Flags.
    pub flags: u32,
    /// IPv4 AH.
    pub ip4_ah: u32,
    /// IPv4 ESP.
    pub ip4_esp: u32,
}

/// `struct ndis_lsov2_offload` (28 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisLsov2Offload {
    /// IPv4 encapsulation.
    pub ip4_encap: u32,
    /// IPv4 maximum offload size.
    pub ip4_maxsz: u32,
    /// IPv4 minimum segment count.
    pub ip4_minsg: u32,
    /// IPv6 encapsulation.
    pub ip6_encap: u32,
    /// IPv6 maximum offload size.
    pub ip6_maxsz: u32,
    /// IPv6 minimum segment count.
    pub ip6_minsg: u32,
    /// IPv6 options (IP6EXT, TCP6OPT).
    pub ip6_opts: u32,
}

/// `struct ndis_ipsecv2_offload` (32 bytes; one pad byte after `extseq`).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisIpsecv2Offload {
    /// Encapsulation.
    pub encap: u32,
    /// IPv6.
    pub ip6: u8,
    /// IPv4 options.
    pub ip4opt: u8,
    /// IPv6 extension headers.
    pub ip6ext: u8,
    /// AH.
    pub ah: u8,
    /// ESP.
    pub esp: u8,
    /// AH and ESP.
    pub ah_esp: u8,
    /// Transport.
    pub xport: u8,
    /// Tunnel.
    pub tun: u8,
    /// Transport and tunnel.
    pub xport_tun: u8,
    /// LSO.
    pub lso: u8,
    /// Extended sequence numbers.
    pub extseq: u8,
    /// C alignment padding.
    pub reserved: u8,
    /// UDP-encapsulated ESP.
    pub udp_esp: u32,
    /// Authentication algorithms.
    pub auth: u32,
    /// Crypto algorithms.
    pub crypto: u32,
    /// SA capabilities.
    pub sa_caps: u32,
}

/// `struct ndis_rsc_offload` (2 bytes): receive-segment-coalescing support.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisRscOffload {
    /// IPv4.
    pub ip4: u8,
    /// IPv6.
    pub ip6: u8,
}

/// `struct ndis_encap_offload` (8 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisEncapOffload {
    /// Flags.
    pub flags: u32,
    /// Maximum header size.
    pub maxhdr: u32,
}

/// `struct ndis_offload` (156 bytes, NDIS 6.30): the answer to
/// OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES and OID_TCP_OFFLOAD_CURRENT_CONFIG. Older
/// revisions stop at [`NDIS_OFFLOAD_SIZE_6_0`] (112) or [`NDIS_OFFLOAD_SIZE_6_1`] (144).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisOffload {
    /// Header: type OFFLOAD (0xA7), revision 1..=3, size 112/144/156.
    pub header: NdisObjectHeader,
    /// Checksum offload.
    pub csum: NdisCsumOffload,
    /// LSOv1.
    pub lsov1: NdisLsov1Offload,
    /// IPsec v1.
    pub ipsecv1: NdisIpsecv1Offload,
    /// LSOv2.
    pub lsov2: NdisLsov2Offload,
    /// Flags.
    pub flags: u32,
    /// IPsec v2 (NDIS >= 6.1).
    pub ipsecv2: NdisIpsecv2Offload,
    /// RSC (NDIS >= 6.30).
    pub rsc: NdisRscOffload,
    /// C alignment padding before `encap_gre`.
    pub reserved: [u8; 2],
    /// NVGRE encapsulated-packet offload (NDIS >= 6.30).
    pub encap_gre: NdisEncapOffload,
}

/// `NDIS_OFFLOAD_SIZE_6_0` = `offsetof(struct ndis_offload, ipsecv2)`.
pub const NDIS_OFFLOAD_SIZE_6_0: usize = core::mem::offset_of!(NdisOffload, ipsecv2);
/// `NDIS_OFFLOAD_SIZE_6_1` = `offsetof(struct ndis_offload, rsc)`.
pub const NDIS_OFFLOAD_SIZE_6_1: usize = core::mem::offset_of!(NdisOffload, rsc);
/// `NDIS_OFFLOAD_SIZE` = `sizeof(struct ndis_offload)`.
pub const NDIS_OFFLOAD_SIZE: usize = size_of::<NdisOffload>();
/// `NDIS_OFFLOAD` header revision for the 6.0 size (netvsc with NVSP < 4).
pub const NDIS_OFFLOAD_REVISION_1: u8 = 1;
/// `NDIS_OFFLOAD` header revision for the 6.1 size (netvsc with NVSP 4).
pub const NDIS_OFFLOAD_REVISION_2: u8 = 2;
/// `NDIS_OFFLOAD` header revision for the full size (netvsc with NVSP >= 5).
pub const NDIS_OFFLOAD_REVISION_3: u8 = 3;

impl NdisOffload {
    /// An all-zero (no offload) object with a header of type OFFLOAD, `revision` and
    /// `size` (clamped to [`NDIS_OFFLOAD_SIZE`] when emitted).
    pub fn new(revision: u8, size: u16) -> Self {
        let mut o = Self::new_zeroed();
        o.header = NdisObjectHeader::new(NdisObjectType::OFFLOAD, revision, size);
        o
    }

    /// Parses an `NDIS_OFFLOAD` information buffer.
    ///
    /// Requires type OFFLOAD, revision >= 1, and `header.size` and the buffer both at
    /// least [`NDIS_OFFLOAD_SIZE_6_0`]; reads `min(header.size, buffer, 156)` bytes and
    /// zero-fills the rest (an older revision reads as "no 6.1/6.30 offloads"). The
    /// returned header keeps the peer's `size`.
    pub fn parse(info: &[u8]) -> Result<Self> {
        let (hdr, _) = read_prefix::<NdisObjectHeader>("ndis_offload header", info)?;
        if hdr.object_type != NdisObjectType::OFFLOAD {
            return Err(Error::InvalidField {
                what: "ndis_offload type",
                value: u64::from(hdr.object_type.0),
            });
        }
        if hdr.revision < NDIS_OFFLOAD_REVISION_1 {
            return Err(Error::InvalidField {
                what: "ndis_offload revision",
                value: u64::from(hdr.revision),
            });
        }
        if usize::from(hdr.size) < NDIS_OFFLOAD_SIZE_6_0 {
            return Err(Error::InvalidField {
                what: "ndis_offload size",
                value: u64::from(hdr.size),
            });
        }
        if info.len() < NDIS_OFFLOAD_SIZE_6_0 {
            return Err(Error::Truncated {
                what: "ndis_offload",
                need: NDIS_OFFLOAD_SIZE_6_0,
                have: info.len(),
            });
        }
        let n = usize::from(hdr.size).min(info.len()).min(NDIS_OFFLOAD_SIZE);
        Ok(zero_extend(info, n))
    }

    /// The wire bytes: the first `header.size` bytes (at most 156).
    pub fn as_wire(&self) -> &[u8] {
        let bytes = self.as_bytes();
        bytes.get(..usize::from(self.header.size)).unwrap_or(bytes)
    }

    /// Writes [`Self::as_wire`] at the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        put("ndis_offload", buf, 0, self.as_wire())
    }
}

/// Copies the first `n` bytes of `src` (clamped to both sizes) into a zeroed `T`.
fn zero_extend<T: FromBytes + IntoBytes>(src: &[u8], n: usize) -> T {
    let mut out = T::new_zeroed();
    let dst = out.as_mut_bytes();
    let n = n.min(dst.len()).min(src.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
    out
}

/// `struct ndis_offload_params` (28 bytes, natural alignment): the value of
/// OID_TCP_OFFLOAD_PARAMETERS. Each byte is a request; unknown values stay
/// representable and must be treated as "no change" or rejected by the device.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisOffloadParams {
    /// Header: type DEFAULT (0x80), revision 1..=3, size 20/22/28.
    pub header: NdisObjectHeader,
    /// IPv4 header checksum.
    pub ip_v4_csum: OffloadParamChecksum,
    /// TCP/IPv4 checksum.
    pub tcp_ip_v4_csum: OffloadParamChecksum,
    /// UDP/IPv4 checksum.
    pub udp_ip_v4_csum: OffloadParamChecksum,
    /// TCP/IPv6 checksum.
    pub tcp_ip_v6_csum: OffloadParamChecksum,
    /// UDP/IPv6 checksum.
    pub udp_ip_v6_csum: OffloadParamChecksum,
    /// LSOv1.
    pub lso_v1: OffloadParamSimple,
    /// IPsec v1.
    pub ip_sec_v1: u8,
    /// LSOv2 for IPv4.
    pub lso_v2_ipv4: OffloadParamSimple,
    /// LSOv2 for IPv6.
    pub lso_v2_ipv6: OffloadParamSimple,
    /// TCP connection offload, IPv4.
    pub tcp_connection_ip_v4: u8,
    /// TCP connection offload, IPv6.
    pub tcp_connection_ip_v6: u8,
    /// C alignment padding before `flags`.
    pub reserved: u8,
    /// Flags.
    pub flags: u32,
    /// IPsec v2 (revision 2).
    pub ip_sec_v2: u8,
    /// IPsec v2 for IPv4 (revision 2).
    pub ip_sec_v2_ip_v4: u8,
    /// RSC for IPv4 (revision 3).
    pub rsc_ip_v4: OffloadParamSimple,
    /// RSC for IPv6 (revision 3).
    pub rsc_ip_v6: OffloadParamSimple,
    /// Encapsulated-packet task offload (revision 3).
    pub encapsulated_packet_task_offload: u8,
    /// Encapsulation types (revision 3).
    pub encapsulation_types: u8,
    /// C alignment padding at the end.
    pub reserved2: [u8; 2],
}

/// `NDIS_OFFLOAD_PARAMETERS_REVISION_1`.
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_1: u8 = 1;
/// `NDIS_OFFLOAD_PARAMETERS_REVISION_2`.
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_2: u8 = 2;
/// `NDIS_OFFLOAD_PARAMETERS_REVISION_3`.
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_3: u8 = 3;
/// Size of the revision-1 form, up to and including `flags` (OpenVMM
/// `NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1`).
pub const NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_1: usize = 20;
/// `VERSION_4_OFFLOAD_SIZE`: what netvsc sends with NVSP <= 4 (through
/// `ip_sec_v2_ip_v4`).
pub const VERSION_4_OFFLOAD_SIZE: usize = 22;
/// `sizeof(struct ndis_offload_params)`.
pub const NDIS_OFFLOAD_PARAMETERS_SIZE: usize = size_of::<NdisOffloadParams>();

impl NdisOffloadParams {
    /// An all-NO_CHANGE object with a DEFAULT header, revision 3, size 28.
    pub fn new() -> Self {
        let mut p = Self::new_zeroed();
        p.header = NdisObjectHeader::new(
            NdisObjectType::DEFAULT,
            NDIS_OFFLOAD_PARAMETERS_REVISION_3,
            NDIS_OFFLOAD_PARAMETERS_SIZE as u16,
        );
        p
    }

    /// Parses an `NDIS_OFFLOAD_PARAMETERS` information buffer.
    ///
    /// Requires type DEFAULT and `min(header.size, buffer)` of at least 20 bytes (the
    /// revision-1 form; netvsc's 22-byte `VERSION_4_OFFLOAD_SIZE` form is accepted);
    /// reads at most 28 and zero-fills the rest (missing fields read as NO_CHANGE).
    pub fn parse(info: &[u8]) -> Result<Self> {
        let (hdr, _) = read_prefix::<NdisObjectHeader>("ndis_offload_params header", info)?;
        if hdr.object_type != NdisObjectType::DEFAULT {
            return Err(Error::InvalidField {
                what: "ndis_offload_params type",
                value: u64::from(hdr.object_type.0),
            });
        }
        let n = usize::from(hdr.size).min(info.len());
        if n < NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_1 {
            return Err(Error::Truncated {
                what: "ndis_offload_params",
                need: NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_1,
                have: n,
            });
        }
        Ok(zero_extend(info, n))
    }

    /// The wire bytes: the first `header.size` bytes (at most 28).
    pub fn as_wire(&self) -> &[u8] {
        let bytes = self.as_bytes();
        bytes.get(..usize::from(self.header.size)).unwrap_or(bytes)
    }

    /// Writes [`Self::as_wire`] at the front of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        put("ndis_offload_params", buf, 0, self.as_wire())
    }
}

/// `NDIS_OFFLOAD_ENCAPSULATION` (28 bytes, OpenVMM rndisprot.rs): the value of
/// OID_OFFLOAD_ENCAPSULATION.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisOffloadEncapsulation {
    /// Header: type OFFLOAD_ENCAPSULATION (0xA8), revision 1, size 28.
    pub header: NdisObjectHeader,
    /// IPv4 enabled (NDIS_OFFLOAD_SET_ON 1 / OFF 2).
    pub ipv4_enabled: u32,
    /// IPv4 encapsulation type.
    pub ipv4_encapsulation_type: u32,
    /// IPv4 header size.
    pub ipv4_header_size: u32,
    /// IPv6 enabled.
    pub ipv6_enabled: u32,
    /// IPv6 encapsulation type.
    pub ipv6_encapsulation_type: u32,
    /// IPv6 header size.
    pub ipv6_header_size: u32,
}

/// `struct ndis_recv_scale_cap` (18 bytes, `__packed` in Linux): the answer to
/// OID_GEN_RECEIVE_SCALE_CAPABILITIES. A host may report any queue and table counts:
/// cap them before sizing anything.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C, packed)]
pub struct NdisReceiveScaleCapabilities {
    /// Header: type RSS_CAPABILITIES (0x88), revision 2, size 18.
    pub hdr: NdisObjectHeader,
    /// [`RssCapsFlags`](super::RssCapsFlags) bits.
    pub cap_flag: u32,
    /// Interrupt messages.
    pub num_int_msg: u32,
    /// Receive queues (netvsc: the number of channels it may open).
    pub num_recv_que: u32,
    /// Indirection table entries.
    pub num_indirect_tabent: u16,
}

/// `NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_2`.
pub const NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_2: u8 = 2;
/// `NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2`.
pub const NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2: usize = 18;

impl NdisReceiveScaleCapabilities {
    /// Parses an `NDIS_RECEIVE_SCALE_CAPABILITIES` buffer (type RSS_CAPABILITIES, at
    /// least 18 bytes; extra bytes ignored).
    pub fn parse(info: &[u8]) -> Result<Self> {
        let (caps, _) = read_prefix::<Self>("ndis_recv_scale_cap", info)?;
        let ty = caps.hdr.object_type;
        if ty != NdisObjectType::RSS_CAPABILITIES {
            return Err(Error::InvalidField {
                what: "ndis_recv_scale_cap type",
                value: u64::from(ty.0),
            });
        }
        Ok(caps)
    }

    /// Writes the 18 bytes at the front of `buf`; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        put("ndis_recv_scale_cap", buf, 0, self.as_bytes())
    }
}

/// `struct ndis_recv_scale_param` (40 bytes, natural alignment): the fixed part of
/// OID_GEN_RECEIVE_SCALE_PARAMETERS. The indirection table and hash key follow at the
/// given offsets (from the start of this struct); see [`RssParams`].
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NdisReceiveScaleParameters {
    /// Header: type RSS_PARAMETERS (0x89), revision 2, size 40.
    pub hdr: NdisObjectHeader,
    /// [`RssParamFlags`] bits.
    pub flag: u16,
    /// Base CPU number.
    pub base_cpu_number: u16,
    /// [`RssHashInfo`] bits.
    pub hashinfo: u32,
    /// Indirection table size in bytes (4 per entry).
    pub indirect_tabsize: u16,
    /// C alignment padding.
    pub reserved0: u16,
    /// Indirection table offset.
    pub indirect_taboffset: u32,
    /// Hash key size in bytes.
    pub hashkey_size: u16,
    /// C alignment padding.
    pub reserved1: u16,
    /// Hash key offset (Linux spells it `kashkey_offset`).
    pub hashkey_offset: u32,
    /// Processor masks offset.
    pub processor_masks_offset: u32,
    /// Number of processor masks.
    pub num_processor_masks: u32,
    /// Processor mask entry size.
    pub processor_masks_entry_size: u32,
}

/// `NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_2`.
pub const NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_2: u8 = 2;
/// Size of the revision-1 form (OpenVMM `NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_1`).
pub const NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_1: usize = 28;
/// Size of the revision-2 form (`sizeof(struct ndis_recv_scale_param)`).
pub const NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2: usize =
    size_of::<NdisReceiveScaleParameters>();
/// Most indirection-table entries accepted (`ITAB_NUM_MAX` in current Linux).
pub const RSS_INDIRECTION_TABLE_MAX_ENTRIES: usize = 256;
/// Entries netvsc sends (`ITAB_NUM`).
pub const ITAB_NUM: usize = 128;
/// Longest hash key accepted (`NDIS_RSS_HASH_SECRET_KEY_MAX_SIZE_REVISION_2`,
/// `NETVSC_HASH_KEYLEN`).
pub const RSS_HASH_KEY_MAX_SIZE: usize = 40;

/// Parsed RSS parameters: the fixed part plus the validated indirection table and key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RssParams<'a> {
    /// The fixed part (zero-extended from a revision-1 buffer).
    pub params: NdisReceiveScaleParameters,
    /// The indirection table bytes: a whole number of little-endian u32 entries, at most
    /// [`RSS_INDIRECTION_TABLE_MAX_ENTRIES`].
    pub indirection_table: &'a [u8],
    /// The hash key, at most [`RSS_HASH_KEY_MAX_SIZE`] bytes.
    pub hash_key: &'a [u8],
}

impl<'a> RssParams<'a> {
    /// Parses an `NDIS_RECEIVE_SCALE_PARAMETERS` buffer.
    ///
    /// Requires type RSS_PARAMETERS and at least 28 bytes (`min(header.size, buffer)`,
    /// zero-extended to 40). A non-empty table must be a multiple of 4 bytes, at most 256
    /// entries and inside the buffer; a non-empty key at most 40 bytes and inside the
    /// buffer. Processor masks are not interpreted.
    pub fn parse(info: &'a [u8]) -> Result<Self> {
        let (hdr, _) = read_prefix::<NdisObjectHeader>("ndis_recv_scale_param header", info)?;
        if hdr.object_type != NdisObjectType::RSS_PARAMETERS {
            return Err(Error::InvalidField {
                what: "ndis_recv_scale_param type",
                value: u64::from(hdr.object_type.0),
            });
        }
        let n = usize::from(hdr.size).min(info.len());
        if n < NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_1 {
            return Err(Error::Truncated {
                what: "ndis_recv_scale_param",
                need: NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_1,
                have: n,
            });
        }
        let params: NdisReceiveScaleParameters = zero_extend(info, n);
        let table_len = usize::from(params.indirect_tabsize);
        if table_len % 4 != 0 {
            return Err(Error::InvalidField {
                what: "rss indirect_tabsize",
                value: u64::from(params.indirect_tabsize),
            });
        }
        if table_len / 4 > RSS_INDIRECTION_TABLE_MAX_ENTRIES {
            return Err(Error::TooMany {
                what: "rss indirection table entries",
                count: (table_len / 4) as u64,
                limit: RSS_INDIRECTION_TABLE_MAX_ENTRIES as u64,
            });
        }
        let key_len = usize::from(params.hashkey_size);
        if key_len > RSS_HASH_KEY_MAX_SIZE {
            return Err(Error::TooMany {
                what: "rss hash key bytes",
                count: key_len as u64,
                limit: RSS_HASH_KEY_MAX_SIZE as u64,
            });
        }
        let indirection_table = range(
            info,
            "rss indirect_taboffset/tabsize",
            params.indirect_taboffset,
            table_len,
        )?;
        let hash_key = range(
            info,
            "rss hashkey_offset/size",
            params.hashkey_offset,
            key_len,
        )?;
        Ok(Self {
            params,
            indirection_table,
            hash_key,
        })
    }

    /// The indirection table entries.
    pub fn indirection_entries(&self) -> impl Iterator<Item = u32> + 'a {
        self.indirection_table
            .chunks_exact(4)
            .filter_map(|c| c.first_chunk::<4>().map(|b| u32::from_le_bytes(*b)))
    }

    /// The flags.
    pub fn flags(&self) -> RssParamFlags {
        RssParamFlags::from_bits_retain(self.params.flag)
    }

    /// The hash information.
    pub fn hash_info(&self) -> RssHashInfo {
        RssHashInfo::from_bits_retain(self.params.hashinfo)
    }

    /// Bytes [`Self::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2
            .saturating_add(self.indirection_table.len())
            .saturating_add(self.hash_key.len())
    }

    /// Writes the parameters as netvsc lays them out: a revision-2 header (size 40),
    /// the table at offset 40, the key right after it. `flag`, `base_cpu_number`,
    /// `hashinfo` and the processor-mask fields come from `params`; sizes and offsets
    /// are recomputed. Fails if the table is not whole u32 entries, exceeds 256
    /// entries, the key exceeds 40 bytes, or `buf` is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        const WHAT: &str = "ndis_recv_scale_param";
        let table_len = self.indirection_table.len();
        if !table_len.is_multiple_of(4) {
            return Err(Error::InvalidField {
                what: "rss indirection table bytes",
                value: table_len as u64,
            });
        }
        if table_len / 4 > RSS_INDIRECTION_TABLE_MAX_ENTRIES {
            return Err(Error::TooMany {
                what: "rss indirection table entries",
                count: (table_len / 4) as u64,
                limit: RSS_INDIRECTION_TABLE_MAX_ENTRIES as u64,
            });
        }
        if self.hash_key.len() > RSS_HASH_KEY_MAX_SIZE {
            return Err(Error::TooMany {
                what: "rss hash key bytes",
                count: self.hash_key.len() as u64,
                limit: RSS_HASH_KEY_MAX_SIZE as u64,
            });
        }
        let total = self.encoded_len();
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                what: WHAT,
                need: total,
                have: buf.len(),
            });
        }
        let fixed = NdisReceiveScaleParameters {
            hdr: NdisObjectHeader::new(
                NdisObjectType::RSS_PARAMETERS,
                NDIS_RECEIVE_SCALE_PARAMETERS_REVISION_2,
                NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2 as u16,
            ),
            indirect_tabsize: table_len as u16,
            reserved0: 0,
            indirect_taboffset: NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2 as u32,
            hashkey_size: self.hash_key.len() as u16,
            reserved1: 0,
            hashkey_offset: (NDIS_SIZEOF_RECEIVE_SCALE_PARAMETERS_REVISION_2 + table_len) as u32,
            ..self.params
        };
        let at = put(WHAT, buf, 0, fixed.as_bytes())?;
        let at = put(WHAT, buf, at, self.indirection_table)?;
        put(WHAT, buf, at, self.hash_key)
    }
}

/// The `len` bytes at `offset` of `buf`; empty if `len` is 0.
fn range<'a>(buf: &'a [u8], what: &'static str, offset: u32, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    let start = offset as usize;
    start
        .checked_add(len)
        .and_then(|end| buf.get(start..end))
        .ok_or(Error::OutOfBounds {
            what,
            offset: u64::from(offset),
            len: len as u64,
            bound: buf.len(),
        })
}

/// `struct rndis_config_parameter_info` (20 bytes): the head of an
/// OID_GEN_RNDIS_CONFIG_PARAMETER set. Offsets count from the start of this struct.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisConfigParameterInfo {
    /// Name offset.
    pub parameter_name_offset: u32,
    /// Name length in bytes (UTF-16LE).
    pub parameter_name_length: u32,
    /// Value type.
    pub parameter_type: ConfigParamType,
    /// Value offset.
    pub parameter_value_offset: u32,
    /// Value length in bytes.
    pub parameter_value_length: u32,
}

/// A parsed configuration parameter (e.g. netvsc's "NetworkAddress" = 12 UTF-16 hex
/// digits).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConfigParameter<'a> {
    /// Value type.
    pub param_type: ConfigParamType,
    /// Name, UTF-16LE bytes (not validated as text).
    pub name: &'a [u8],
    /// Value bytes (UTF-16LE for STRING).
    pub value: &'a [u8],
}

impl<'a> ConfigParameter<'a> {
    /// Parses the information buffer of an OID_GEN_RNDIS_CONFIG_PARAMETER set; the name
    /// and value ranges must lie inside `info`.
    pub fn parse(info: &'a [u8]) -> Result<Self> {
        let (c, _) = read_prefix::<RndisConfigParameterInfo>("rndis_config_parameter_info", info)?;
        Ok(Self {
            param_type: c.parameter_type,
            name: range(
                info,
                "config parameter name",
                c.parameter_name_offset,
                c.parameter_name_length as usize,
            )?,
            value: range(
                info,
                "config parameter value",
                c.parameter_value_offset,
                c.parameter_value_length as usize,
            )?,
        })
    }

    /// Bytes [`Self::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        size_of::<RndisConfigParameterInfo>()
            .saturating_add(self.name.len())
            .saturating_add(self.value.len())
    }

    /// Writes the netvsc layout (name at offset 20, value right after); returns the
    /// length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        const WHAT: &str = "rndis_config_parameter_info";
        let total = self.encoded_len();
        if u32::try_from(total).is_err() {
            return Err(Error::TooMany {
                what: WHAT,
                count: total as u64,
                limit: u64::from(u32::MAX),
            });
        }
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                what: WHAT,
                need: total,
                have: buf.len(),
            });
        }
        let head = size_of::<RndisConfigParameterInfo>();
        let c = RndisConfigParameterInfo {
            parameter_name_offset: head as u32,
            parameter_name_length: self.name.len() as u32,
            parameter_type: self.param_type,
            parameter_value_offset: (head + self.name.len()) as u32,
            parameter_value_length: self.value.len() as u32,
        };
        let at = put(WHAT, buf, 0, c.as_bytes())?;
        let at = put(WHAT, buf, at, self.name)?;
        put(WHAT, buf, at, self.value)
    }
}

// Sizes and offsets as gcc lays out Linux's hyperv_net.h: ndis_object_header 4,
// ndis_csum_offload 32, ndis_lsov2_offload 28, ndis_ipsecv2_offload 32, ndis_offload 156,
// ndis_offload_params 28, ndis_recv_scale_cap 18 (also NDIS's
// NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2), ndis_recv_scale_param 40,
// rndis_config_parameter_info 20. lsov1 16, ipsecv1 28, rsc 2, encap 8 follow from the
// hyperv_net.h field lists (all u32 / u8); NDIS_OFFLOAD_ENCAPSULATION 28 from OpenVMM.
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<NdisObjectHeader>() == 4);
    assert!(offset_of!(NdisObjectHeader, revision) == 1);
    assert!(offset_of!(NdisObjectHeader, size) == 2);

    assert!(size_of::<NdisCsumOffload>() == 32);
    assert!(offset_of!(NdisCsumOffload, ip4_txcsum) == 4);
    assert!(offset_of!(NdisCsumOffload, ip4_rxcsum) == 12);
    assert!(offset_of!(NdisCsumOffload, ip6_txcsum) == 20);
    assert!(offset_of!(NdisCsumOffload, ip6_rxcsum) == 28);
    assert!(size_of::<NdisLsov1Offload>() == 16);
    assert!(size_of::<NdisIpsecv1Offload>() == 28);
    assert!(size_of::<NdisLsov2Offload>() == 28);
    assert!(offset_of!(NdisLsov2Offload, ip4_encap) == 0);
    assert!(offset_of!(NdisLsov2Offload, ip4_maxsz) == 4);
    assert!(offset_of!(NdisLsov2Offload, ip6_encap) == 12);
    assert!(offset_of!(NdisLsov2Offload, ip6_maxsz) == 16);
    assert!(offset_of!(NdisLsov2Offload, ip6_opts) == 24);
    assert!(size_of::<NdisIpsecv2Offload>() == 32);
    assert!(offset_of!(NdisIpsecv2Offload, extseq) == 14);
    assert!(offset_of!(NdisIpsecv2Offload, udp_esp) == 16);
    assert!(offset_of!(NdisIpsecv2Offload, sa_caps) == 28);
    assert!(size_of::<NdisRscOffload>() == 2);
    assert!(size_of::<NdisEncapOffload>() == 8);

    assert!(size_of::<NdisOffload>() == 156);
    assert!(offset_of!(NdisOffload, header) == 0);
    assert!(offset_of!(NdisOffload, csum) == 4);
    assert!(offset_of!(NdisOffload, lsov1) == 36);
    assert!(offset_of!(NdisOffload, ipsecv1) == 52);
    assert!(offset_of!(NdisOffload, lsov2) == 80);
    assert!(offset_of!(NdisOffload, flags) == 108);
    assert!(offset_of!(NdisOffload, ipsecv2) == 112);
    assert!(offset_of!(NdisOffload, rsc) == 144);
    assert!(offset_of!(NdisOffload, encap_gre) == 148);
    assert!(NDIS_OFFLOAD_SIZE_6_0 == 112);
    assert!(NDIS_OFFLOAD_SIZE_6_1 == 144);
    assert!(NDIS_OFFLOAD_SIZE == 156);

    assert!(size_of::<NdisOffloadParams>() == 28);
    assert!(offset_of!(NdisOffloadParams, ip_v4_csum) == 4);
    assert!(offset_of!(NdisOffloadParams, tcp_ip_v4_csum) == 5);
    assert!(offset_of!(NdisOffloadParams, udp_ip_v4_csum) == 6);
    assert!(offset_of!(NdisOffloadParams, tcp_ip_v6_csum) == 7);
    assert!(offset_of!(NdisOffloadParams, udp_ip_v6_csum) == 8);
    assert!(offset_of!(NdisOffloadParams, lso_v1) == 9);
    assert!(offset_of!(NdisOffloadParams, ip_sec_v1) == 10);
    assert!(offset_of!(NdisOffloadParams, lso_v2_ipv4) == 11);
    assert!(offset_of!(NdisOffloadParams, lso_v2_ipv6) == 12);
    assert!(offset_of!(NdisOffloadParams, tcp_connection_ip_v4) == 13);
    assert!(offset_of!(NdisOffloadParams, tcp_connection_ip_v6) == 14);
    assert!(offset_of!(NdisOffloadParams, flags) == 16);
    assert!(offset_of!(NdisOffloadParams, ip_sec_v2) == 20);
    assert!(offset_of!(NdisOffloadParams, ip_sec_v2_ip_v4) == 21);
    assert!(offset_of!(NdisOffloadParams, rsc_ip_v4) == 22);
    assert!(offset_of!(NdisOffloadParams, rsc_ip_v6) == 23);
    assert!(offset_of!(NdisOffloadParams, encapsulated_packet_task_offload) == 24);
    assert!(offset_of!(NdisOffloadParams, encapsulation_types) == 25);
    assert!(offset_of!(NdisOffloadParams, rsc_ip_v4) == VERSION_4_OFFLOAD_SIZE);

    assert!(size_of::<NdisOffloadEncapsulation>() == 28);

    assert!(size_of::<NdisReceiveScaleCapabilities>() == 18);
    assert!(offset_of!(NdisReceiveScaleCapabilities, cap_flag) == 4);
    assert!(offset_of!(NdisReceiveScaleCapabilities, num_int_msg) == 8);
    assert!(offset_of!(NdisReceiveScaleCapabilities, num_recv_que) == 12);
    assert!(offset_of!(NdisReceiveScaleCapabilities, num_indirect_tabent) == 16);

    assert!(size_of::<NdisReceiveScaleParameters>() == 40);
    assert!(offset_of!(NdisReceiveScaleParameters, flag) == 4);
    assert!(offset_of!(NdisReceiveScaleParameters, base_cpu_number) == 6);
    assert!(offset_of!(NdisReceiveScaleParameters, hashinfo) == 8);
    assert!(offset_of!(NdisReceiveScaleParameters, indirect_tabsize) == 12);
    assert!(offset_of!(NdisReceiveScaleParameters, indirect_taboffset) == 16);
    assert!(offset_of!(NdisReceiveScaleParameters, hashkey_size) == 20);
    assert!(offset_of!(NdisReceiveScaleParameters, hashkey_offset) == 24);
    assert!(offset_of!(NdisReceiveScaleParameters, processor_masks_offset) == 28);
    assert!(offset_of!(NdisReceiveScaleParameters, num_processor_masks) == 32);
    assert!(offset_of!(NdisReceiveScaleParameters, processor_masks_entry_size) == 36);

    assert!(size_of::<RndisConfigParameterInfo>() == 20);
    assert!(offset_of!(RndisConfigParameterInfo, parameter_name_length) == 4);
    assert!(offset_of!(RndisConfigParameterInfo, parameter_type) == 8);
    assert!(offset_of!(RndisConfigParameterInfo, parameter_value_offset) == 12);
    assert!(offset_of!(RndisConfigParameterInfo, parameter_value_length) == 16);
};

#[cfg(test)]
mod tests {
    use super::super::enums::{encap, offload_caps};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_ndis_offload_156() {
        // Header {0xA7, rev 3, size 156}; csum: ip4 tx/rx encap 802.3 with IP4 | TCP4 |
        // UDP4; lsov2 ip4 encap 802.3, maxsz 62780, minsg 2.
        let mut g = [0u8; 156];
        g[..4].copy_from_slice(&[0xA7, 3, 156, 0]);
        let caps = (offload_caps::IP4 | offload_caps::TCP4 | offload_caps::UDP4).to_le_bytes();
        g[4..8].copy_from_slice(&encap::IEEE_802_3.to_le_bytes()); // ip4_txenc
        g[8..12].copy_from_slice(&caps); // ip4_txcsum
        g[12..16].copy_from_slice(&encap::IEEE_802_3.to_le_bytes()); // ip4_rxenc
        g[16..20].copy_from_slice(&caps); // ip4_rxcsum
        g[80..84].copy_from_slice(&2u32.to_le_bytes()); // lsov2.ip4_encap
        g[84..88].copy_from_slice(&62780u32.to_le_bytes()); // lsov2.ip4_maxsz
        g[88..92].copy_from_slice(&2u32.to_le_bytes()); // lsov2.ip4_minsg
        g[144] = 1; // rsc.ip4

        let o = NdisOffload::parse(&g).unwrap();
        let mut expect = NdisOffload::new(NDIS_OFFLOAD_REVISION_3, 156);
        expect.csum.ip4_txenc = encap::IEEE_802_3;
        expect.csum.ip4_txcsum = 0x150;
        expect.csum.ip4_rxenc = encap::IEEE_802_3;
        expect.csum.ip4_rxcsum = 0x150;
        expect.lsov2.ip4_encap = 2;
        expect.lsov2.ip4_maxsz = 62780;
        expect.lsov2.ip4_minsg = 2;
        expect.rsc.ip4 = 1;
        assert_eq!(o, expect);
        assert_eq!(o.as_wire(), &g[..]);
        let mut out = [0u8; 156];
        assert_eq!(o.emit(&mut out).unwrap(), 156);
        assert_eq!(out, g);
    }

    #[test]
    fn ndis_offload_revisions() {
        // A 6.0-size object (112 bytes) parses with the tail zeroed.
        let mut g = [0u8; 112];
        g[..4].copy_from_slice(&[0xA7, 1, 112, 0]);
        g[108] = 0x55; // flags
        let o = NdisOffload::parse(&g).unwrap();
        assert_eq!(o.flags, 0x55);
        assert_eq!(o.ipsecv2, NdisIpsecv2Offload::default());
        assert_eq!(o.as_wire(), &g[..]);
        // Header claims 156 but only 112 bytes arrived: zero-extended.
        g[2] = 156;
        assert_eq!(NdisOffload::parse(&g).unwrap().flags, 0x55);
        // Header claims less than 6.0, wrong type, revision 0, short buffer.
        g[2] = 100;
        assert!(matches!(
            NdisOffload::parse(&g),
            Err(Error::InvalidField { .. })
        ));
        g[2] = 112;
        g[0] = 0x80;
        assert!(matches!(
            NdisOffload::parse(&g),
            Err(Error::InvalidField { .. })
        ));
        g[0] = 0xA7;
        g[1] = 0;
        assert!(matches!(
            NdisOffload::parse(&g),
            Err(Error::InvalidField { .. })
        ));
        g[1] = 1;
        assert!(matches!(
            NdisOffload::parse(&g[..111]),
            Err(Error::Truncated { .. })
        ));
        // A longer buffer than 156 reads 156.
        let mut big = [0u8; 200];
        big[..4].copy_from_slice(&[0xA7, 3, 0xFF, 0xFF]);
        big[155] = 9;
        assert_eq!(NdisOffload::parse(&big).unwrap().encap_gre.maxhdr, 9 << 24);
    }

    #[test]
    fn golden_offload_params() {
        // netvsc: header {0x80, 3, 28}; v4/v6 TCP+UDP csum TX_RX_ENABLED, LSOv2 enabled.
        let g: [u8; 28] = [
            0x80, 3, 28, 0, // header
            0, 4, 4, 4, 4, 0, 0, 2, 2, 0, 0,
            0, // csum, lso_v1, ipsec_v1, lsov2, tcp conn, pad
            0, 0, 0, 0, // flags
            0, 0, 2, 2, 0, 0, 0, 0, // ipsec v2, rsc v4/v6 enabled, encap, pad
        ];
        let p = NdisOffloadParams::parse(&g).unwrap();
        assert_eq!(p.tcp_ip_v4_csum, OffloadParamChecksum::TX_RX_ENABLED);
        assert_eq!(p.tcp_ip_v4_csum.tx_rx(), Some((true, true)));
        assert_eq!(p.lso_v2_ipv6, OffloadParamSimple::ENABLED);
        assert_eq!(p.rsc_ip_v6.enable(), Some(true));
        assert_eq!(p.as_wire(), &g[..]);
        let mut out = [0u8; 28];
        assert_eq!(p.emit(&mut out).unwrap(), 28);
        assert_eq!(out, g);

        // VERSION_4_OFFLOAD_SIZE (22): the RSC bytes are absent and read as NO_CHANGE.
        let mut v4 = [0u8; 22];
        v4.copy_from_slice(&g[..22]);
        v4[2] = 22;
        let p4 = NdisOffloadParams::parse(&v4).unwrap();
        assert_eq!(p4.rsc_ip_v4, OffloadParamSimple::NO_CHANGE);
        assert_eq!(p4.tcp_ip_v6_csum, OffloadParamChecksum::TX_RX_ENABLED);
        assert_eq!(p4.as_wire(), &v4[..]);
        // Too short, wrong type.
        assert!(matches!(
            NdisOffloadParams::parse(&v4[..19]),
            Err(Error::Truncated { .. })
        ));
        v4[0] = 0xA7;
        assert!(matches!(
            NdisOffloadParams::parse(&v4),
            Err(Error::InvalidField { .. })
        ));
        assert_eq!(NdisOffloadParams::new().as_wire().len(), 28);
    }

    #[test]
    fn golden_rss_caps() {
        // Packed 18 bytes: {0x88, 2, 18}, caps, 64 msgs, 8 queues, 128 entries.
        let g: [u8; 18] = [
            0x88, 2, 18, 0, 0x00, 0x01, 0x00, 0x01, 64, 0, 0, 0, 8, 0, 0, 0, 128, 0,
        ];
        let c = NdisReceiveScaleCapabilities::parse(&g).unwrap();
        let (q, t, f) = (c.num_recv_que, c.num_indirect_tabent, c.cap_flag);
        assert_eq!((q, t, f), (8, 128, 0x0100_0100));
        let mut out = [0u8; 18];
        assert_eq!(c.emit(&mut out).unwrap(), 18);
        assert_eq!(out, g);
        assert!(NdisReceiveScaleCapabilities::parse(&g[..17]).is_err());
        let mut bad = g;
        bad[0] = 0x89;
        assert!(NdisReceiveScaleCapabilities::parse(&bad).is_err());
    }

    fn rss_buf(table: &[u32], key: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&[0x89, 2, 40, 0]);
        v.extend_from_slice(&0u16.to_le_bytes()); // flag
        v.extend_from_slice(&0u16.to_le_bytes()); // base cpu
        v.extend_from_slice(&0x0000_3301u32.to_le_bytes()); // toeplitz | ipv4 | tcp4 | tcp6 | tcp6ex
        v.extend_from_slice(&((table.len() * 4) as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&40u32.to_le_bytes());
        v.extend_from_slice(&(key.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(40 + table.len() as u32 * 4).to_le_bytes());
        v.extend_from_slice(&[0; 12]);
        for e in table {
            v.extend_from_slice(&e.to_le_bytes());
        }
        v.extend_from_slice(key);
        v
    }

    #[test]
    fn golden_rss_params() {
        let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
        let key: Vec<u8> = (0..40).collect();
        let g = rss_buf(&table, &key);
        let p = RssParams::parse(&g).unwrap();
        assert_eq!(p.indirection_entries().collect::<Vec<_>>(), table);
        assert_eq!(p.hash_key, &key[..]);
        assert!(
            p.hash_info()
                .contains(RssHashInfo::FUNC_TOEPLITZ | RssHashInfo::TCP_IPV4)
        );
        assert_eq!(p.flags(), RssParamFlags::empty());
        let mut out = vec![0u8; p.encoded_len()];
        assert_eq!(p.emit(&mut out).unwrap(), g.len());
        assert_eq!(out, g);
    }

    #[test]
    fn rss_params_rejections() {
        let key = [7u8; 40];
        // 257 entries.
        let big: Vec<u32> = vec![0; 257];
        assert!(matches!(
            RssParams::parse(&rss_buf(&big, &key)),
            Err(Error::TooMany { .. })
        ));
        // Key of 41 bytes.
        assert!(matches!(
            RssParams::parse(&rss_buf(&[0; 4], &[0; 41])),
            Err(Error::TooMany { .. })
        ));
        // Table size not a multiple of 4.
        let mut g = rss_buf(&[1, 2], &key);
        g[12] = 7;
        assert!(matches!(
            RssParams::parse(&g),
            Err(Error::InvalidField { .. })
        ));
        // Table past the buffer.
        let mut g = rss_buf(&[1, 2], &key);
        g[16..20].copy_from_slice(&84u32.to_le_bytes()); // 84 + 8 > 88
        assert!(matches!(
            RssParams::parse(&g),
            Err(Error::OutOfBounds { .. })
        ));
        // Key offset overflowing.
        let mut g = rss_buf(&[1, 2], &key);
        g[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            RssParams::parse(&g),
            Err(Error::OutOfBounds { .. })
        ));
        // Short or wrongly typed.
        assert!(matches!(
            RssParams::parse(&g[..27]),
            Err(Error::Truncated { .. })
        ));
        let mut g = rss_buf(&[], &[]);
        g[0] = 0x88;
        assert!(matches!(
            RssParams::parse(&g),
            Err(Error::InvalidField { .. })
        ));
        // Empty table and key are fine whatever the offsets.
        let mut g = rss_buf(&[], &[]);
        g[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let p = RssParams::parse(&g).unwrap();
        assert!(p.indirection_table.is_empty() && p.hash_key.is_empty());
    }

    #[test]
    fn config_parameter_netvsc() {
        // "NetworkAddress" = "00155D010203", both UTF-16LE.
        let utf16 = |s: &str| {
            s.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        let name = utf16("NetworkAddress");
        let value = utf16("00155D010203");
        let c = ConfigParameter {
            param_type: ConfigParamType::STRING,
            name: &name,
            value: &value,
        };
        let mut buf = vec![0u8; c.encoded_len()];
        assert_eq!(c.emit(&mut buf).unwrap(), 20 + 28 + 24);
        assert_eq!(
            &buf[..20],
            &[
                20, 0, 0, 0, 28, 0, 0, 0, 2, 0, 0, 0, 48, 0, 0, 0, 24, 0, 0, 0
            ]
        );
        assert_eq!(ConfigParameter::parse(&buf).unwrap(), c);
        buf[12] = 60; // value offset past the end
        assert!(matches!(
            ConfigParameter::parse(&buf),
            Err(Error::OutOfBounds { .. })
        ));
    }

    proptest! {
        #[test]
        fn ndis_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = NdisOffload::parse(&bytes);
            let _ = NdisOffloadParams::parse(&bytes);
            let _ = NdisReceiveScaleCapabilities::parse(&bytes);
            if let Ok(p) = RssParams::parse(&bytes) {
                prop_assert!(p.indirection_entries().count() <= RSS_INDIRECTION_TABLE_MAX_ENTRIES);
                prop_assert!(p.hash_key.len() <= RSS_HASH_KEY_MAX_SIZE);
            }
            let _ = ConfigParameter::parse(&bytes);
        }

        #[test]
        fn rss_roundtrip(
            table in proptest::collection::vec(any::<u32>(), 0..=256),
            key in proptest::collection::vec(any::<u8>(), 0..=40),
            flag in any::<u16>(),
            hashinfo in any::<u32>(),
        ) {
            let params = NdisReceiveScaleParameters { flag, hashinfo, ..Default::default() };
            let tbytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
            let p = RssParams { params, indirection_table: &tbytes, hash_key: &key };
            let mut out = vec![0u8; p.encoded_len()];
            let n = p.emit(&mut out).unwrap();
            let back = RssParams::parse(&out[..n]).unwrap();
            prop_assert_eq!(back.indirection_entries().collect::<Vec<_>>(), table);
            prop_assert_eq!(back.hash_key, &key[..]);
            prop_assert_eq!(back.params.flag, flag);
            prop_assert_eq!(back.params.hashinfo, hashinfo);
        }

        #[test]
        fn offload_roundtrip(raw in proptest::collection::vec(any::<u8>(), 156)) {
            let mut o = NdisOffload::read_from_bytes(&raw).unwrap();
            o.header = NdisObjectHeader::new(NdisObjectType::OFFLOAD, 3, 156);
            let mut out = [0u8; 156];
            o.emit(&mut out).unwrap();
            prop_assert_eq!(NdisOffload::parse(&out).unwrap(), o);
        }
    }
}
