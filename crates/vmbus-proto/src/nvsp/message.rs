//! [`NvspMessage`]: every NVSP message typed, with its parser (requests and completions
//! apart) and emitter; and the message-size checks that tie the bodies to Linux's union.

use super::*;
use crate::error::{Error, Result, put, read_prefix};
use alloc::vec::Vec;
use core::mem::offset_of;
use zerocopy::IntoBytes;

/// One NVSP message, decoded. Field names follow hyperv_net.h. Values are as the peer
/// sent them: open enums keep unknown values, and nothing here checks them against the
/// session state (a buffer id, a section index, a subchannel count) — the caller must.
///
/// Message types 133 (SUBCHANNEL) and 135 (PD_API) have one body in a request and
/// another in its completion packet: [`NvspMessage::parse`] decodes requests and
/// [`NvspMessage::parse_completion`] decodes completions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NvspMessage {
    /// INIT (1): guest -> host.
    Init {
        /// Lowest acceptable version.
        min_protocol_ver: NvspVersion,
        /// Highest acceptable version.
        max_protocol_ver: NvspVersion,
    },
    /// INIT_COMPLETE (2): host -> guest.
    InitComplete {
        /// Historical; ignored by netvsc.
        negotiated_protocol_ver: NvspVersion,
        /// Unused.
        max_mdl_chain_len: u32,
        /// SUCCESS if accepted.
        status: NvspStatus,
    },
    /// SEND_NDIS_VER (100): guest -> host (no completion).
    SendNdisVersion {
        /// NDIS major version.
        ndis_major_ver: u32,
        /// NDIS minor version.
        ndis_minor_ver: u32,
    },
    /// SEND_RECV_BUF (101): guest -> host.
    SendReceiveBuffer {
        /// GPADL of the receive buffer.
        gpadl_handle: u32,
        /// Buffer id (0xCAFE).
        id: u16,
    },
    /// SEND_RECV_BUF_COMPLETE (102): host -> guest. `num_sections` is `sections.len()`,
    /// at most [`MAX_RECEIVE_BUFFER_SECTIONS`].
    SendReceiveBufferComplete {
        /// SUCCESS if accepted.
        status: NvspStatus,
        /// The sections (Linux requires exactly one).
        sections: Vec<Nvsp1ReceiveBufferSection>,
    },
    /// REVOKE_RECV_BUF (103): guest -> host.
    RevokeReceiveBuffer {
        /// Buffer id.
        id: u16,
    },
    /// SEND_SEND_BUF (104): guest -> host.
    SendSendBuffer {
        /// GPADL of the send buffer.
        gpadl_handle: u32,
        /// Buffer id (0).
        id: u16,
    },
    /// SEND_SEND_BUF_COMPLETE (105): host -> guest.
    SendSendBufferComplete {
        /// SUCCESS if accepted.
        status: NvspStatus,
        /// Section size the host chose.
        section_size: u32,
    },
    /// REVOKE_SEND_BUF (106): guest -> host.
    RevokeSendBuffer {
        /// Buffer id.
        id: u16,
    },
    /// SEND_RNDIS_PKT (107): either direction.
    SendRndisPacket {
        /// Data or control.
        channel_type: NvspChannelType,
        /// Send-buffer section, or [`NETVSC_INVALID_INDEX`].
        send_buf_section_index: u32,
        /// Bytes used in the section.
        send_buf_section_size: u32,
    },
    /// SEND_RNDIS_PKT_COMPLETE (108): either direction.
    SendRndisPacketComplete {
        /// SUCCESS or a failure.
        status: NvspStatus,
    },
    /// ALLOC_RXBUF (120, deprecated).
    AllocRxbuf {
        /// Request id.
        alloc_id: u32,
        /// Requested length.
        len: u32,
    },
    /// ALLOC_RXBUF_COMP (121, deprecated).
    AllocRxbufComplete {
        /// NDIS_STATUS.
        status: u32,
        /// Request id.
        alloc_id: u32,
        /// GPADL of the buffer.
        gpadl_handle: u32,
        /// Receive buffer id.
        recv_buf_id: u64,
    },
    /// FREE_RXBUF (122, deprecated).
    FreeRxbuf {
        /// Receive buffer id.
        recv_buf_id: u64,
    },
    /// SEND_NDIS_CONFIG (125): guest -> host (no completion). The reserved word is
    /// ignored on parse and sent as zero.
    SendNdisConfig {
        /// MTU plus the Ethernet header.
        mtu: u32,
        /// Capabilities (unknown bits kept).
        capability: NdisConfigCapabilities,
    },
    /// SEND_VF_ASSOCIATION (128): host -> guest.
    SendVfAssociation {
        /// 1 if a VF is allocated.
        allocated: u32,
        /// VF serial number.
        serial: u32,
    },
    /// SWITCH_DATA_PATH (129).
    SwitchDataPath {
        /// The data path now active.
        active_datapath: NvspDataPath,
    },
    /// OID_QUERY_EX (131).
    OidQueryEx(Nvsp5OidQueryEx),
    /// OID_QUERY_EX_COMP (132).
    OidQueryExComplete(Nvsp5OidQueryExComplete),
    /// SUBCHANNEL (133) request: guest -> host.
    Subchannel {
        /// ALLOCATE.
        op: NvspSubchannelOp,
        /// Subchannels wanted (uncapped: the host must cap it).
        num_subchannels: u32,
    },
    /// SUBCHANNEL (133) completion: host -> guest, from
    /// [`NvspMessage::parse_completion`].
    SubchannelComplete {
        /// SUCCESS or FAIL.
        status: NvspStatus,
        /// Subchannels allocated (the guest must cap it).
        num_subchannels: u32,
    },
    /// SEND_INDIRECTION_TABLE (134): host -> guest. Only the fixed part; read the
    /// entries with [`NvspSendIndirectionTable::parse`] and send them with
    /// [`NvspSendIndirectionTable::emit`] (emitting this variant writes no entries).
    SendIndirectionTable {
        /// Number of entries.
        count: u32,
        /// Offset of the entries from the start of the message.
        offset: u32,
    },
    /// PD_API (135) request.
    PdApi(Nvsp6PdApiReq),
    /// PD_API (135) completion, from [`NvspMessage::parse_completion`].
    PdApiComplete(Nvsp6PdApiComp),
    /// PD_POST_BATCH (136): the `count` [`Nvsp6PdBuf`] entries that follow are not
    /// decoded here (and not emitted).
    PdPostBatch {
        /// Number of buffers.
        count: u16,
        /// [`PD_BATCH_GUEST_TO_HOST`] / [`PD_BATCH_IS_RECV`].
        flags: u16,
    },
    /// A type without a body layout here: unknown to the protocol, NONE, or a known type
    /// nobody defines a layout for (chimney, VMQ, uplink state; see
    /// [`NvspMessageType::has_body_layout`]). Not an error: answer or ignore it.
    Unknown {
        /// The type the peer sent.
        msg_type: NvspMessageType,
    },
}

const WHAT: &str = "nvsp_message";

impl NvspMessage {
    /// INIT as netvsc sends it: `min = max = version`.
    pub const fn init(version: NvspVersion) -> Self {
        Self::Init {
            min_protocol_ver: version,
            max_protocol_ver: version,
        }
    }

    /// SEND_NDIS_VER carrying `version` split into its two words.
    pub const fn send_ndis_version(version: NdisVersion) -> Self {
        Self::SendNdisVersion {
            ndis_major_ver: version.major() as u32,
            ndis_minor_ver: version.minor() as u32,
        }
    }

    /// The message type this value is sent as.
    pub const fn msg_type(&self) -> NvspMessageType {
        match self {
            Self::Init { .. } => NvspMessageType::INIT,
            Self::InitComplete { .. } => NvspMessageType::INIT_COMPLETE,
            Self::SendNdisVersion { .. } => NvspMessageType::SEND_NDIS_VER,
            Self::SendReceiveBuffer { .. } => NvspMessageType::SEND_RECV_BUF,
            Self::SendReceiveBufferComplete { .. } => NvspMessageType::SEND_RECV_BUF_COMPLETE,
            Self::RevokeReceiveBuffer { .. } => NvspMessageType::REVOKE_RECV_BUF,
            Self::SendSendBuffer { .. } => NvspMessageType::SEND_SEND_BUF,
            Self::SendSendBufferComplete { .. } => NvspMessageType::SEND_SEND_BUF_COMPLETE,
            Self::RevokeSendBuffer { .. } => NvspMessageType::REVOKE_SEND_BUF,
            Self::SendRndisPacket { .. } => NvspMessageType::SEND_RNDIS_PKT,
            Self::SendRndisPacketComplete { .. } => NvspMessageType::SEND_RNDIS_PKT_COMPLETE,
            Self::AllocRxbuf { .. } => NvspMessageType::ALLOC_RXBUF,
            Self::AllocRxbufComplete { .. } => NvspMessageType::ALLOC_RXBUF_COMP,
            Self::FreeRxbuf { .. } => NvspMessageType::FREE_RXBUF,
            Self::SendNdisConfig { .. } => NvspMessageType::SEND_NDIS_CONFIG,
            Self::SendVfAssociation { .. } => NvspMessageType::SEND_VF_ASSOCIATION,
            Self::SwitchDataPath { .. } => NvspMessageType::SWITCH_DATA_PATH,
            Self::OidQueryEx(_) => NvspMessageType::OID_QUERY_EX,
            Self::OidQueryExComplete(_) => NvspMessageType::OID_QUERY_EX_COMP,
            Self::Subchannel { .. } | Self::SubchannelComplete { .. } => {
                NvspMessageType::SUBCHANNEL
            }
            Self::SendIndirectionTable { .. } => NvspMessageType::SEND_INDIRECTION_TABLE,
            Self::PdApi(_) | Self::PdApiComplete(_) => NvspMessageType::PD_API,
            Self::PdPostBatch { .. } => NvspMessageType::PD_POST_BATCH,
            Self::Unknown { msg_type } => *msg_type,
        }
    }

    /// Checks that this message may be exchanged once `negotiated` is in force
    /// ([`NvspVersion::allows`]); `Error::NotAllowed` otherwise (including for
    /// [`NvspMessage::Unknown`]).
    pub fn check_allowed(&self, negotiated: NvspVersion) -> Result<()> {
        let msg_type = self.msg_type();
        if negotiated.allows(msg_type) {
            Ok(())
        } else {
            Err(Error::NotAllowed {
                what: msg_type.name().unwrap_or("unknown NVSP message"),
                version: negotiated.0,
            })
        }
    }

    /// Parses the payload of an in-band packet (header + body) as a request or
    /// notification. The payload may be as short as the header plus the body of its
    /// type (old guests send 28 bytes in a 32-byte packet, new ones 40) and may be longer
    /// (bytes past the body are ignored, except the extra sections of
    /// SEND_RECV_BUF_COMPLETE).
    ///
    /// Errors: `Truncated` if the header or the type's body is short; `TooMany` /
    /// `Truncated` for a SEND_RECV_BUF_COMPLETE whose `num_sections` exceeds
    /// [`MAX_RECEIVE_BUFFER_SECTIONS`] or the payload. An unknown type is
    /// `Ok(NvspMessage::Unknown)`.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        Self::parse_inner(payload, false)
    }

    /// Parses the payload of a completion packet: like [`NvspMessage::parse`], but type
    /// 133 is read as [`NvspMessage::SubchannelComplete`] and 135 as
    /// [`NvspMessage::PdApiComplete`].
    pub fn parse_completion(payload: &[u8]) -> Result<Self> {
        Self::parse_inner(payload, true)
    }

    fn parse_inner(payload: &[u8], completion: bool) -> Result<Self> {
        let (hdr, body) = read_prefix::<NvspMessageHeader>("nvsp_message_header", payload)?;
        let msg = match hdr.msg_type {
            NvspMessageType::INIT => {
                let (m, _) = read_prefix::<NvspMessageInit>("nvsp_message_init", body)?;
                Self::Init {
                    min_protocol_ver: m.min_protocol_ver,
                    max_protocol_ver: m.max_protocol_ver,
                }
            }
            NvspMessageType::INIT_COMPLETE => {
                let (m, _) =
                    read_prefix::<NvspMessageInitComplete>("nvsp_message_init_complete", body)?;
                Self::InitComplete {
                    negotiated_protocol_ver: m.negotiated_protocol_ver,
                    max_mdl_chain_len: m.max_mdl_chain_len,
                    status: m.status,
                }
            }
            NvspMessageType::SEND_NDIS_VER => {
                let (m, _) =
                    read_prefix::<Nvsp1SendNdisVersion>("nvsp_1_message_send_ndis_version", body)?;
                Self::SendNdisVersion {
                    ndis_major_ver: m.ndis_major_ver,
                    ndis_minor_ver: m.ndis_minor_ver,
                }
            }
            NvspMessageType::SEND_RECV_BUF => {
                let (m, _) = read_prefix::<Nvsp1SendReceiveBuffer>(
                    "nvsp_1_message_send_receive_buffer",
                    body,
                )?;
                Self::SendReceiveBuffer {
                    gpadl_handle: m.gpadl_handle,
                    id: m.id,
                }
            }
            NvspMessageType::SEND_RECV_BUF_COMPLETE => Self::parse_recv_buf_complete(body)?,
            NvspMessageType::REVOKE_RECV_BUF => {
                let (m, _) = read_prefix::<Nvsp1RevokeReceiveBuffer>(
                    "nvsp_1_message_revoke_receive_buffer",
                    body,
                )?;
                Self::RevokeReceiveBuffer { id: m.id }
            }
            NvspMessageType::SEND_SEND_BUF => {
                let (m, _) =
                    read_prefix::<Nvsp1SendSendBuffer>("nvsp_1_message_send_send_buffer", body)?;
                Self::SendSendBuffer {
                    gpadl_handle: m.gpadl_handle,
                    id: m.id,
                }
            }
            NvspMessageType::SEND_SEND_BUF_COMPLETE => {
                let (m, _) = read_prefix::<Nvsp1SendSendBufferComplete>(
                    "nvsp_1_message_send_send_buffer_complete",
                    body,
                )?;
                Self::SendSendBufferComplete {
                    status: m.status,
                    section_size: m.section_size,
                }
            }
            NvspMessageType::REVOKE_SEND_BUF => {
                let (m, _) = read_prefix::<Nvsp1RevokeSendBuffer>(
                    "nvsp_1_message_revoke_send_buffer",
                    body,
                )?;
                Self::RevokeSendBuffer { id: m.id }
            }
            NvspMessageType::SEND_RNDIS_PKT => {
                let (m, _) =
                    read_prefix::<Nvsp1SendRndisPacket>("nvsp_1_message_send_rndis_packet", body)?;
                Self::SendRndisPacket {
                    channel_type: m.channel_type,
                    send_buf_section_index: m.send_buf_section_index,
                    send_buf_section_size: m.send_buf_section_size,
                }
            }
            NvspMessageType::SEND_RNDIS_PKT_COMPLETE => {
                let (m, _) = read_prefix::<Nvsp1SendRndisPacketComplete>(
                    "nvsp_1_message_send_rndis_packet_complete",
                    body,
                )?;
                Self::SendRndisPacketComplete { status: m.status }
            }
            NvspMessageType::ALLOC_RXBUF => {
                let (m, _) = read_prefix::<Nvsp2AllocRxbuf>("nvsp_2_alloc_rxbuf", body)?;
                Self::AllocRxbuf {
                    alloc_id: m.alloc_id,
                    len: m.len,
                }
            }
            NvspMessageType::ALLOC_RXBUF_COMP => {
                let (m, _) = read_prefix::<Nvsp2AllocRxbufComp>("nvsp_2_alloc_rxbuf_comp", body)?;
                Self::AllocRxbufComplete {
                    status: m.status,
                    alloc_id: m.alloc_id,
                    gpadl_handle: m.gpadl_handle,
                    recv_buf_id: m.recv_buf_id,
                }
            }
            NvspMessageType::FREE_RXBUF => {
                let (m, _) = read_prefix::<Nvsp2FreeRxbuf>("nvsp_2_free_rxbuf", body)?;
                Self::FreeRxbuf {
                    recv_buf_id: m.recv_buf_id,
                }
            }
            NvspMessageType::SEND_NDIS_CONFIG => {
                let (m, _) = read_prefix::<Nvsp2SendNdisConfig>("nvsp_2_send_ndis_config", body)?;
                Self::SendNdisConfig {
                    mtu: m.mtu,
                    capability: NdisConfigCapabilities::from_bits_retain(m.capability),
                }
            }
            NvspMessageType::SEND_VF_ASSOCIATION => {
                let (m, _) =
                    read_prefix::<Nvsp4SendVfAssociation>("nvsp_4_send_vf_association", body)?;
                Self::SendVfAssociation {
                    allocated: m.allocated,
                    serial: m.serial,
                }
            }
            NvspMessageType::SWITCH_DATA_PATH => {
                let (m, _) = read_prefix::<Nvsp4SwDatapath>("nvsp_4_sw_datapath", body)?;
                Self::SwitchDataPath {
                    active_datapath: m.active_datapath,
                }
            }
            NvspMessageType::OID_QUERY_EX => {
                let (m, _) = read_prefix::<Nvsp5OidQueryEx>("nvsp_5_oid_query_ex", body)?;
                Self::OidQueryEx(m)
            }
            NvspMessageType::OID_QUERY_EX_COMP => {
                let (m, _) =
                    read_prefix::<Nvsp5OidQueryExComplete>("nvsp_5_oid_query_ex_complete", body)?;
                Self::OidQueryExComplete(m)
            }
            NvspMessageType::SUBCHANNEL if completion => {
                let (m, _) =
                    read_prefix::<Nvsp5SubchannelComplete>("nvsp_5_subchannel_complete", body)?;
                Self::SubchannelComplete {
                    status: m.status,
                    num_subchannels: m.num_subchannels,
                }
            }
            NvspMessageType::SUBCHANNEL => {
                let (m, _) =
                    read_prefix::<Nvsp5SubchannelRequest>("nvsp_5_subchannel_request", body)?;
                Self::Subchannel {
                    op: m.op,
                    num_subchannels: m.num_subchannels,
                }
            }
            NvspMessageType::SEND_INDIRECTION_TABLE => {
                let (m, _) =
                    read_prefix::<Nvsp5SendIndirectTable>("nvsp_5_send_indirect_table", body)?;
                Self::SendIndirectionTable {
                    count: m.count,
                    offset: m.offset,
                }
            }
            NvspMessageType::PD_API if completion => {
                let (m, _) = read_prefix::<Nvsp6PdApiComp>("nvsp_6_pd_api_comp", body)?;
                Self::PdApiComplete(m)
            }
            NvspMessageType::PD_API => {
                let (m, _) = read_prefix::<Nvsp6PdApiReq>("nvsp_6_pd_api_req", body)?;
                Self::PdApi(m)
            }
            NvspMessageType::PD_POST_BATCH => {
                // The batch struct includes the header.
                let (m, _) = read_prefix::<Nvsp6PdBatchMsg>("nvsp_6_pd_batch_msg", payload)?;
                Self::PdPostBatch {
                    count: m.count,
                    flags: m.flags,
                }
            }
            msg_type => Self::Unknown { msg_type },
        };
        Ok(msg)
    }

    fn parse_recv_buf_complete(body: &[u8]) -> Result<Self> {
        const SECTION: usize = size_of::<Nvsp1ReceiveBufferSection>();
        let (m, _) = read_prefix::<Nvsp1SendReceiveBufferComplete>(
            "nvsp_1_message_send_receive_buffer_complete",
            body,
        )?;
        let num_sections = m.num_sections;
        if num_sections as usize > MAX_RECEIVE_BUFFER_SECTIONS {
            return Err(Error::TooMany {
                what: "receive buffer sections",
                count: num_sections.into(),
                limit: MAX_RECEIVE_BUFFER_SECTIONS as u64,
            });
        }
        let n = num_sections as usize;
        // status + num_sections, then n sections; n <= 16, so no overflow.
        let fixed = offset_of!(Nvsp1SendReceiveBufferComplete, sections);
        let need = fixed + n * SECTION;
        let mut rest = body.get(fixed..need).ok_or(Error::Truncated {
            what: "nvsp_1_message_send_receive_buffer_complete sections",
            need,
            have: body.len(),
        })?;
        let mut sections = Vec::with_capacity(n);
        while !rest.is_empty() {
            let (s, tail) =
                read_prefix::<Nvsp1ReceiveBufferSection>("nvsp_1_receive_buffer_section", rest)?;
            sections.push(s);
            rest = tail;
        }
        Ok(Self::SendReceiveBufferComplete {
            status: m.status,
            sections,
        })
    }

    /// Bytes [`NvspMessage::emit`] writes: header + body, padded to
    /// [`NVSP_MESSAGE_SIZE`] (more only for a SEND_RECV_BUF_COMPLETE with several
    /// sections).
    pub fn emitted_len(&self) -> usize {
        let body = match self {
            Self::Init { .. } => size_of::<NvspMessageInit>(),
            Self::InitComplete { .. } => size_of::<NvspMessageInitComplete>(),
            Self::SendNdisVersion { .. } => size_of::<Nvsp1SendNdisVersion>(),
            Self::SendReceiveBuffer { .. } => size_of::<Nvsp1SendReceiveBuffer>(),
            Self::SendReceiveBufferComplete { sections, .. } => sections
                .len()
                .max(1)
                .saturating_mul(size_of::<Nvsp1ReceiveBufferSection>())
                .saturating_add(offset_of!(Nvsp1SendReceiveBufferComplete, sections)),
            Self::RevokeReceiveBuffer { .. } => size_of::<Nvsp1RevokeReceiveBuffer>(),
            Self::SendSendBuffer { .. } => size_of::<Nvsp1SendSendBuffer>(),
            Self::SendSendBufferComplete { .. } => size_of::<Nvsp1SendSendBufferComplete>(),
            Self::RevokeSendBuffer { .. } => size_of::<Nvsp1RevokeSendBuffer>(),
            Self::SendRndisPacket { .. } => size_of::<Nvsp1SendRndisPacket>(),
            Self::SendRndisPacketComplete { .. } => size_of::<Nvsp1SendRndisPacketComplete>(),
            Self::AllocRxbuf { .. } => size_of::<Nvsp2AllocRxbuf>(),
            Self::AllocRxbufComplete { .. } => size_of::<Nvsp2AllocRxbufComp>(),
            Self::FreeRxbuf { .. } => size_of::<Nvsp2FreeRxbuf>(),
            Self::SendNdisConfig { .. } => size_of::<Nvsp2SendNdisConfig>(),
            Self::SendVfAssociation { .. } => size_of::<Nvsp4SendVfAssociation>(),
            Self::SwitchDataPath { .. } => size_of::<Nvsp4SwDatapath>(),
            Self::OidQueryEx(_) => size_of::<Nvsp5OidQueryEx>(),
            Self::OidQueryExComplete(_) => size_of::<Nvsp5OidQueryExComplete>(),
            Self::Subchannel { .. } => size_of::<Nvsp5SubchannelRequest>(),
            Self::SubchannelComplete { .. } => size_of::<Nvsp5SubchannelComplete>(),
            Self::SendIndirectionTable { .. } => size_of::<Nvsp5SendIndirectTable>(),
            Self::PdApi(_) => size_of::<Nvsp6PdApiReq>(),
            Self::PdApiComplete(_) => size_of::<Nvsp6PdApiComp>(),
            Self::PdPostBatch { .. } => size_of::<Nvsp6PdBatchMsg>() - NVSP_HEADER_SIZE,
            Self::Unknown { .. } => 0,
        };
        body.saturating_add(NVSP_HEADER_SIZE).max(NVSP_MESSAGE_SIZE)
    }

    /// The message as a whole in-band ring packet (descriptor, message, padding; no
    /// trailer), with completion requested as a guest's NVSP requests are sent: for
    /// test peers, fuzz seeds and tools that script one side of the protocol.
    pub fn to_inband_packet(&self, transaction_id: u64) -> Result<Vec<u8>> {
        let mut msg = alloc::vec![0u8; self.emitted_len()];
        let n = self.emit(&mut msg)?;
        let mut packet = alloc::vec![0u8; crate::packet::DESCRIPTOR_SIZE + n.next_multiple_of(8)];
        let len = crate::packet::emit_inband(
            &mut packet,
            crate::packet::PacketType::DATA_INBAND,
            crate::packet::FLAG_COMPLETION_REQUESTED,
            transaction_id,
            msg.get(..n).unwrap_or(&[]),
        )?;
        packet.truncate(len);
        Ok(packet)
    }

    /// Writes the message at the start of `buf`: header, body, then zeros up to
    /// [`NVSP_MESSAGE_SIZE`] (40 bytes, what current Linux sends; never less than 32,
    /// because FreeBSD and DPDK peers reject shorter NVSP messages). Returns the length
    /// written ([`NvspMessage::emitted_len`]).
    ///
    /// Errors: `BufferTooSmall`; `TooMany` for a SEND_RECV_BUF_COMPLETE with more than
    /// [`MAX_RECEIVE_BUFFER_SECTIONS`] sections (which [`NvspMessage::parse`] would
    /// refuse).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let Self::SendReceiveBufferComplete { sections, .. } = self
            && sections.len() > MAX_RECEIVE_BUFFER_SECTIONS
        {
            return Err(Error::TooMany {
                what: "receive buffer sections",
                count: sections.len() as u64,
                limit: MAX_RECEIVE_BUFFER_SECTIONS as u64,
            });
        }
        let len = self.emitted_len();
        let have = buf.len();
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall {
            what: WHAT,
            need: len,
            have,
        })?;
        out.fill(0);
        let at = put(
            WHAT,
            out,
            0,
            NvspMessageHeader {
                msg_type: self.msg_type(),
            }
            .as_bytes(),
        )?;
        match *self {
            Self::Init {
                min_protocol_ver,
                max_protocol_ver,
            } => {
                let m = NvspMessageInit {
                    min_protocol_ver,
                    max_protocol_ver,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::InitComplete {
                negotiated_protocol_ver,
                max_mdl_chain_len,
                status,
            } => {
                let m = NvspMessageInitComplete {
                    negotiated_protocol_ver,
                    max_mdl_chain_len,
                    status,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendNdisVersion {
                ndis_major_ver,
                ndis_minor_ver,
            } => {
                let m = Nvsp1SendNdisVersion {
                    ndis_major_ver,
                    ndis_minor_ver,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendReceiveBuffer { gpadl_handle, id } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp1SendReceiveBuffer { gpadl_handle, id }.as_bytes(),
                )?;
            }
            Self::SendReceiveBufferComplete {
                status,
                ref sections,
            } => {
                // status and num_sections, then the sections (the zero padding already
                // stands in for the declared first section when there is none).
                let end = put(WHAT, out, at, status.as_bytes())?;
                let num_sections = sections.len() as u32;
                let mut end = put(WHAT, out, end, num_sections.as_bytes())?;
                for s in sections {
                    end = put(WHAT, out, end, s.as_bytes())?;
                }
            }
            Self::RevokeReceiveBuffer { id } => {
                put(WHAT, out, at, Nvsp1RevokeReceiveBuffer { id }.as_bytes())?;
            }
            Self::SendSendBuffer { gpadl_handle, id } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp1SendSendBuffer { gpadl_handle, id }.as_bytes(),
                )?;
            }
            Self::SendSendBufferComplete {
                status,
                section_size,
            } => {
                let m = Nvsp1SendSendBufferComplete {
                    status,
                    section_size,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::RevokeSendBuffer { id } => {
                put(WHAT, out, at, Nvsp1RevokeSendBuffer { id }.as_bytes())?;
            }
            Self::SendRndisPacket {
                channel_type,
                send_buf_section_index,
                send_buf_section_size,
            } => {
                let m = Nvsp1SendRndisPacket {
                    channel_type,
                    send_buf_section_index,
                    send_buf_section_size,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendRndisPacketComplete { status } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp1SendRndisPacketComplete { status }.as_bytes(),
                )?;
            }
            Self::AllocRxbuf { alloc_id, len } => {
                put(WHAT, out, at, Nvsp2AllocRxbuf { alloc_id, len }.as_bytes())?;
            }
            Self::AllocRxbufComplete {
                status,
                alloc_id,
                gpadl_handle,
                recv_buf_id,
            } => {
                let m = Nvsp2AllocRxbufComp {
                    status,
                    alloc_id,
                    gpadl_handle,
                    recv_buf_id,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::FreeRxbuf { recv_buf_id } => {
                put(WHAT, out, at, Nvsp2FreeRxbuf { recv_buf_id }.as_bytes())?;
            }
            Self::SendNdisConfig { mtu, capability } => {
                let m = Nvsp2SendNdisConfig {
                    mtu,
                    reserved: 0,
                    capability: capability.bits(),
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendVfAssociation { allocated, serial } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp4SendVfAssociation { allocated, serial }.as_bytes(),
                )?;
            }
            Self::SwitchDataPath { active_datapath } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp4SwDatapath { active_datapath }.as_bytes(),
                )?;
            }
            Self::OidQueryEx(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::OidQueryExComplete(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::Subchannel {
                op,
                num_subchannels,
            } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp5SubchannelRequest {
                        op,
                        num_subchannels,
                    }
                    .as_bytes(),
                )?;
            }
            Self::SubchannelComplete {
                status,
                num_subchannels,
            } => {
                let m = Nvsp5SubchannelComplete {
                    status,
                    num_subchannels,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendIndirectionTable { count, offset } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp5SendIndirectTable { count, offset }.as_bytes(),
                )?;
            }
            Self::PdApi(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::PdApiComplete(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::PdPostBatch { count, flags } => {
                let m = Nvsp6PdBatchMsg {
                    hdr: NvspMessageHeader {
                        msg_type: NvspMessageType::PD_POST_BATCH,
                    },
                    count,
                    flags,
                };
                put(WHAT, out, 0, m.as_bytes())?;
            }
            Self::Unknown { .. } => {}
        }
        Ok(len)
    }

    /// [`NvspMessage::emit`] into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = alloc::vec![0u8; self.emitted_len()];
        let n = self.emit(&mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

// nvsp_message = header + union of all bodies: 40 now (largest body nvsp_6_pd_api_comp),
// 28 before v6 (largest body send_receive_buffer_complete).
const _: () = assert!(NVSP_MESSAGE_SIZE == NVSP_HEADER_SIZE + size_of::<Nvsp6PdApiComp>());
const _: () = assert!(
    NVSP_MESSAGE_SIZE_PRE_V6 == NVSP_HEADER_SIZE + size_of::<Nvsp1SendReceiveBufferComplete>()
);
// Field offsets within nvsp_message that abi-linux.md lists (body at +4).
const _: () = assert!(NVSP_HEADER_SIZE + offset_of!(NvspMessageInit, max_protocol_ver) == 8);
const _: () =
    assert!(NVSP_HEADER_SIZE + offset_of!(Nvsp1SendRndisPacket, send_buf_section_index) == 8);
const _: () =
    assert!(NVSP_HEADER_SIZE + offset_of!(Nvsp1SendReceiveBufferComplete, sections) == 12);
const _: () = assert!(NVSP_HEADER_SIZE + offset_of!(Nvsp2SendNdisConfig, capability) == 12);
const _: () = assert!(
    SEND_INDIRECTION_TABLE_OFFSET as usize
        == NVSP_HEADER_SIZE + size_of::<Nvsp5SendIndirectTable>()
);
