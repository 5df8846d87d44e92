//! Version 4's VF association and data-path switch, and version 6's PD-API (the
//! Windows-only polled data path; parsed so a peer that sends it gets an answer).

use super::*;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct nvsp_4_send_vf_association` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp4SendVfAssociation {
    /// 1: a VF is allocated and `serial` is valid; 0: none. Other values are garbage.
    pub allocated: u32,
    /// Serial number of the VF to team with.
    pub serial: u32,
}

/// `struct nvsp_4_sw_datapath` (4 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp4SwDatapath {
    /// The data path now active in the VM.
    pub active_datapath: NvspDataPath,
}

/// `struct grp_affinity` (16 bytes): a Windows `GROUP_AFFINITY`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct GrpAffinity {
    /// Processor mask within the group.
    pub mask: u64,
    /// Processor group.
    pub grp: u16,
    /// Reserved.
    pub reserved: [u16; 3],
}

/// Size of the parameter union of `struct nvsp_6_pd_api_req`.
pub const PD_API_REQ_PARAMS_SIZE: usize = 30;
/// Size of the parameter union of `struct nvsp_6_pd_api_comp`.
pub const PD_API_COMP_PARAMS_SIZE: usize = 28;

/// `struct nvsp_6_pd_api_req` (34 bytes, packed): a PacketDirect API request. The
/// operation-specific union is kept as bytes; read it with the accessors.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReq {
    /// The operation.
    pub op: NvspPdApiOp,
    /// The operation's parameters (a union in Linux).
    pub params: [u8; PD_API_REQ_PARAMS_SIZE],
}

/// `config` member of the `nvsp_6_pd_api_req` union (14 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReqConfig {
    /// MMIO physical address.
    pub mmio_pa: u64,
    /// MMIO length.
    pub mmio_len: u32,
    /// Number of PD queues the VM can support.
    pub num_subchn: u16,
}

/// `cr_q` (create queue) member of the `nvsp_6_pd_api_req` union (30 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReqCreateQueue {
    /// Provider id.
    pub prov_id: u32,
    /// Queue id.
    pub q_id: u16,
    /// Queue size.
    pub q_size: u16,
    /// Whether this is a receive queue.
    pub is_recv_q: u8,
    /// Whether this is an RSS queue.
    pub is_rss_q: u8,
    /// Receive data length.
    pub recv_data_len: u32,
    /// Processor affinity.
    pub affy: GrpAffinity,
}

/// `free_com_buf` member of the `nvsp_6_pd_api_req` union (19 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReqFreeComBuf {
    /// Length.
    pub len: u32,
    /// Physical address.
    pub pa: u64,
    /// Preferred NUMA node.
    pub pf_node: u32,
    /// Region id.
    pub region_id: u16,
    /// Cache type.
    pub cache_type: u8,
}

impl Nvsp6PdApiReq {
    /// The parameters read as the `config` member.
    pub fn config(&self) -> Nvsp6PdApiReqConfig {
        read_union(&self.params)
    }
    /// The parameters read as the `cr_q` member.
    pub fn create_queue(&self) -> Nvsp6PdApiReqCreateQueue {
        read_union(&self.params)
    }
    /// The parameters read as the `free_com_buf` member.
    pub fn free_com_buf(&self) -> Nvsp6PdApiReqFreeComBuf {
        read_union(&self.params)
    }
}

/// `struct nvsp_6_pd_api_comp` (36 bytes, packed; the largest NVSP body, which makes
/// `nvsp_message` 40 bytes): completion of a PacketDirect API request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiComp {
    /// The operation.
    pub op: NvspPdApiOp,
    /// An NT status code.
    pub status: u32,
    /// Operation-specific results (a union in Linux).
    pub params: [u8; PD_API_COMP_PARAMS_SIZE],
}

/// `config` member of the `nvsp_6_pd_api_comp` union (5 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiCompConfig {
    /// PD queues allocated to the VM.
    pub num_pd_q: u16,
    /// Receive RSS PD queues.
    pub num_rss_q: u8,
    /// Supported by the VSP.
    pub is_supported: u8,
    /// Enabled by the VSP.
    pub is_enabled: u8,
}

/// `cr_q` member of the `nvsp_6_pd_api_comp` union (28 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiCompCreateQueue {
    /// Provider id.
    pub prov_id: u32,
    /// Queue id.
    pub q_id: u16,
    /// Queue size.
    pub q_size: u16,
    /// Receive data length.
    pub recv_data_len: u32,
    /// Processor affinity.
    pub affy: GrpAffinity,
}

/// `alloc_com_buf` member of the `nvsp_6_pd_api_comp` union (19 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiCompAllocComBuf {
    /// Physical address.
    pub pa: u64,
    /// Length.
    pub len: u32,
    /// Preferred NUMA node.
    pub pf_node: u32,
    /// Region id.
    pub region_id: u16,
    /// Cache type.
    pub cache_type: u8,
}

impl Nvsp6PdApiComp {
    /// The results read as the `config` member.
    pub fn config(&self) -> Nvsp6PdApiCompConfig {
        read_union(&self.params)
    }
    /// The results read as the `cr_q` member.
    pub fn create_queue(&self) -> Nvsp6PdApiCompCreateQueue {
        read_union(&self.params)
    }
    /// The results read as the `alloc_com_buf` member.
    pub fn alloc_com_buf(&self) -> Nvsp6PdApiCompAllocComBuf {
        read_union(&self.params)
    }
}

/// Reads a union member from the front of a parameter array (always long enough; the
/// zero fallback only keeps the code free of `unwrap`).
fn read_union<T: FromBytes>(params: &[u8]) -> T {
    T::read_from_prefix(params).map_or_else(|_| T::new_zeroed(), |(v, _)| v)
}

/// `nvsp_6_pd_buf.is_partial` (bit 0 of `flags`).
pub const PD_BUF_IS_PARTIAL: u16 = 1 << 0;

/// `struct nvsp_6_pd_buf` (8 bytes): one PacketDirect buffer of a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdBuf {
    /// Offset in the region.
    pub region_offset: u32,
    /// Region id.
    pub region_id: u16,
    /// Bit 0 `is_partial` ([`PD_BUF_IS_PARTIAL`]), 15 reserved bits.
    pub flags: u16,
}

/// `nvsp_6_pd_batch_msg.guest2host` (bit 0 of `flags`).
pub const PD_BATCH_GUEST_TO_HOST: u16 = 1 << 0;
/// `nvsp_6_pd_batch_msg.is_recv` (bit 1 of `flags`).
pub const PD_BATCH_IS_RECV: u16 = 1 << 1;

/// `struct nvsp_6_pd_batch_msg` (8 bytes, header included; `count`
/// [`Nvsp6PdBuf`] entries follow it).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdBatchMsg {
    /// The NVSP header (PD_POST_BATCH).
    pub hdr: NvspMessageHeader,
    /// Number of [`Nvsp6PdBuf`] entries that follow.
    pub count: u16,
    /// [`PD_BATCH_GUEST_TO_HOST`], [`PD_BATCH_IS_RECV`], 14 reserved bits.
    pub flags: u16,
}

const _: () = assert!(size_of::<Nvsp4SendVfAssociation>() == 8);
const _: () = assert!(offset_of!(Nvsp4SendVfAssociation, serial) == 4);
const _: () = assert!(size_of::<Nvsp4SwDatapath>() == 4);
const _: () = assert!(size_of::<GrpAffinity>() == 16);
const _: () = assert!(offset_of!(GrpAffinity, grp) == 8);
const _: () = assert!(offset_of!(GrpAffinity, reserved) == 10);
const _: () = assert!(size_of::<Nvsp6PdApiReq>() == 34);
const _: () = assert!(offset_of!(Nvsp6PdApiReq, params) == 4);
// Union members: abi-linux.md gives offsets within nvsp_6_pd_api_req (params at +4).
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqConfig, mmio_pa) == 4);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqConfig, mmio_len) == 12);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqConfig, num_subchn) == 16);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqCreateQueue, recv_data_len) == 14);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqCreateQueue, affy) == 18);
const _: () = assert!(size_of::<Nvsp6PdApiReqCreateQueue>() == PD_API_REQ_PARAMS_SIZE);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqFreeComBuf, pa) == 8);
const _: () = assert!(size_of::<Nvsp6PdApiReqConfig>() <= PD_API_REQ_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdApiReqFreeComBuf>() <= PD_API_REQ_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdApiComp>() == 36);
const _: () = assert!(offset_of!(Nvsp6PdApiComp, status) == 4);
const _: () = assert!(offset_of!(Nvsp6PdApiComp, params) == 8);
const _: () = assert!(8 + offset_of!(Nvsp6PdApiCompConfig, num_pd_q) == 8);
const _: () = assert!(8 + offset_of!(Nvsp6PdApiCompCreateQueue, affy) == 20);
const _: () = assert!(size_of::<Nvsp6PdApiCompCreateQueue>() == PD_API_COMP_PARAMS_SIZE);
const _: () = assert!(8 + offset_of!(Nvsp6PdApiCompAllocComBuf, pa) == 8);
const _: () = assert!(size_of::<Nvsp6PdApiCompConfig>() <= PD_API_COMP_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdApiCompAllocComBuf>() <= PD_API_COMP_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdBuf>() == 8);
const _: () = assert!(offset_of!(Nvsp6PdBuf, region_id) == 4);
const _: () = assert!(offset_of!(Nvsp6PdBuf, flags) == 6);
const _: () = assert!(size_of::<Nvsp6PdBatchMsg>() == 8);
const _: () = assert!(offset_of!(Nvsp6PdBatchMsg, count) == 4);
const _: () = assert!(offset_of!(Nvsp6PdBatchMsg, flags) == 6);
