//! RNDIS control: the answers to INITIALIZE, QUERY, SET, RESET, KEEPALIVE and HALT,
//! for the OIDs Linux and Windows guests use.

use crate::config::NetvspConfig;
use crate::offload::OffloadConfig;
use crate::rss::Rss;
use crate::stats::Counters;
use std::sync::atomic::Ordering;
use vmbus_proto::nvsp::NvspVersion;
use vmbus_proto::rndis::{
    DeviceFlags, ITAB_NUM, IndicateStatus, InfoComplete,
    NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_2, NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2,
    NdisObjectHeader, NdisObjectType, NdisOffloadParams, NdisReceiveScaleCapabilities, Oid,
    OidRequest, RndisInitializeComplete, RndisKeepaliveComplete, RndisMedium, RndisMessage,
    RndisResetComplete, RndisSetComplete, RndisStatus, RssCapsFlags, RssParams,
};

/// Largest transfer the host accepts in one RNDIS message.
const MAX_XFER_SIZE: u32 = 0x4000;
/// Alignment (a shift) of RNDIS packets sharing one guest message: 8 bytes.
const PKT_ALIGNMENT_FACTOR: u32 = 3;

/// The OIDs answered by QUERY (reported by OID_GEN_SUPPORTED_LIST).
const SUPPORTED: &[Oid] = &[
    Oid::OID_GEN_SUPPORTED_LIST,
    Oid::OID_GEN_HARDWARE_STATUS,
    Oid::OID_GEN_MEDIA_SUPPORTED,
    Oid::OID_GEN_MEDIA_IN_USE,
    Oid::OID_GEN_PHYSICAL_MEDIUM,
    Oid::OID_GEN_MAXIMUM_LOOKAHEAD,
    Oid::OID_GEN_MAXIMUM_FRAME_SIZE,
    Oid::OID_GEN_MAXIMUM_TOTAL_SIZE,
    Oid::OID_GEN_TRANSMIT_BLOCK_SIZE,
    Oid::OID_GEN_RECEIVE_BLOCK_SIZE,
    Oid::OID_GEN_LINK_SPEED,
    Oid::OID_GEN_MEDIA_CONNECT_STATUS,
    Oid::OID_GEN_CURRENT_PACKET_FILTER,
    Oid::OID_GEN_MAC_OPTIONS,
    Oid::OID_GEN_MAXIMUM_SEND_PACKETS,
    Oid::OID_GEN_VENDOR_ID,
    Oid::OID_GEN_VENDOR_DESCRIPTION,
    Oid::OID_GEN_VENDOR_DRIVER_VERSION,
    Oid::OID_GEN_DRIVER_VERSION,
    Oid::OID_GEN_FRIENDLY_NAME,
    Oid::OID_GEN_XMIT_OK,
    Oid::OID_GEN_RCV_OK,
    Oid::OID_GEN_XMIT_ERROR,
    Oid::OID_GEN_RCV_ERROR,
    Oid::OID_GEN_RCV_NO_BUFFER,
    Oid::OID_802_3_PERMANENT_ADDRESS,
    Oid::OID_802_3_CURRENT_ADDRESS,
    Oid::OID_802_3_MAXIMUM_LIST_SIZE,
    Oid::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
    Oid::OID_GEN_RECEIVE_SCALE_CAPABILITIES,
];

/// RNDIS control state of one NIC.
pub(crate) struct RndisControl {
    config: NetvspConfig,
    nvsp: NvspVersion,
    initialized: bool,
    filter: u32,
    reported_link: Option<bool>,
    info: [u8; 256],
    /// Transmit offloads the guest enabled.
    pub(crate) offload: OffloadConfig,
    /// The guest's RSS configuration.
    pub(crate) rss: Option<Rss>,
}

fn u32b(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

impl RndisControl {
    pub(crate) fn new(config: NetvspConfig) -> Self {
        Self {
            config,
            nvsp: NvspVersion::V1,
            initialized: false,
            filter: 0,
            reported_link: None,
            info: [0; 256],
            offload: OffloadConfig::default(),
            rss: None,
        }
    }

    pub(crate) fn set_nvsp_version(&mut self, v: NvspVersion) {
        self.nvsp = v;
    }

    /// Whether frames may be indicated to the guest (initialized, packet filter set).
    pub(crate) fn receiving(&self) -> bool {
        self.initialized && self.filter != 0
    }

    /// The link state to indicate, if it differs from what the guest last learned.
    pub(crate) fn link_change(&mut self, up: bool) -> Option<bool> {
        match self.reported_link {
            Some(r) if self.initialized && r != up => {
                self.reported_link = Some(up);
                Some(up)
            }
            _ => None,
        }
    }

    /// An INDICATE_STATUS for a link change.
    pub(crate) fn link_indication(up: bool, out: &mut [u8]) -> Option<usize> {
        let status = if up {
            RndisStatus::MEDIA_CONNECT
        } else {
            RndisStatus::MEDIA_DISCONNECT
        };
        RndisMessage::IndicateStatus(IndicateStatus {
            status,
            buffer: &[],
        })
        .emit(out)
        .ok()
    }

    fn query(
        &mut self,
        q: &OidRequest<'_>,
        link_up: bool,
        stats: &Counters,
    ) -> (RndisStatus, usize) {
        let c = self.config;
        let stat = |a: &std::sync::atomic::AtomicU64| u32b(a.load(Ordering::Relaxed) as u32);
        let mut small = [0u8; 8];
        let value: &[u8] = match q.oid {
            Oid::OID_GEN_SUPPORTED_LIST => {
                let mut n = 0;
                for (i, oid) in SUPPORTED.iter().enumerate() {
                    if let Some(d) = self.info.get_mut(i * 4..i * 4 + 4) {
                        d.copy_from_slice(&oid.0.to_le_bytes());
                        n = i * 4 + 4;
                    }
                }
                return (RndisStatus::SUCCESS, n);
            }
            Oid::OID_GEN_HARDWARE_STATUS
            | Oid::OID_GEN_MEDIA_SUPPORTED
            | Oid::OID_GEN_MEDIA_IN_USE
            | Oid::OID_GEN_PHYSICAL_MEDIUM => &u32b(0)[..],
            Oid::OID_GEN_MAXIMUM_LOOKAHEAD | Oid::OID_GEN_MAXIMUM_FRAME_SIZE => {
                small[..4].copy_from_slice(&u32b(c.mtu));
                &small[..4]
            }
            Oid::OID_GEN_MAXIMUM_TOTAL_SIZE
            | Oid::OID_GEN_TRANSMIT_BLOCK_SIZE
            | Oid::OID_GEN_RECEIVE_BLOCK_SIZE => {
                small[..4].copy_from_slice(&u32b(c.mtu + 14));
                &small[..4]
            }
            Oid::OID_GEN_LINK_SPEED => {
                // In units of 100 bit/s.
                small[..4].copy_from_slice(&u32b(
                    (c.link_speed_bps / 100).min(u64::from(u32::MAX)) as u32,
                ));
                &small[..4]
            }
            Oid::OID_GEN_MEDIA_CONNECT_STATUS => {
                self.reported_link = Some(link_up);
                small[..4].copy_from_slice(&u32b(if link_up { 0 } else { 1 }));
                &small[..4]
            }
            Oid::OID_GEN_CURRENT_PACKET_FILTER => {
                small[..4].copy_from_slice(&u32b(self.filter));
                &small[..4]
            }
            Oid::OID_GEN_MAC_OPTIONS => &u32b(0)[..],
            Oid::OID_GEN_MAXIMUM_SEND_PACKETS => &u32b(1)[..],
            Oid::OID_GEN_VENDOR_ID => &u32b(0x00FF_FFFF)[..],
            Oid::OID_GEN_VENDOR_DESCRIPTION => b"hv-vmbus-rs NetVSP\0",
            Oid::OID_GEN_VENDOR_DRIVER_VERSION | Oid::OID_GEN_DRIVER_VERSION => {
                &u32b(0x0001_0000)[..]
            }
            Oid::OID_GEN_FRIENDLY_NAME => {
                // UCS-2, NUL-terminated.
                let name = "Network Adapter";
                let mut n = 0;
                for (i, ch) in name.encode_utf16().chain(core::iter::once(0)).enumerate() {
                    if let Some(d) = self.info.get_mut(i * 2..i * 2 + 2) {
                        d.copy_from_slice(&ch.to_le_bytes());
                        n = i * 2 + 2;
                    }
                }
                return (RndisStatus::SUCCESS, n);
            }
            Oid::OID_GEN_XMIT_OK => &stat(&stats.tx_frames)[..],
            Oid::OID_GEN_RCV_OK => &stat(&stats.rx_frames)[..],
            Oid::OID_GEN_XMIT_ERROR => &stat(&stats.tx_dropped)[..],
            Oid::OID_GEN_RCV_ERROR => &stat(&stats.bad_packets)[..],
            Oid::OID_GEN_RCV_NO_BUFFER => &stat(&stats.rx_no_buffer)[..],
            Oid::OID_802_3_PERMANENT_ADDRESS | Oid::OID_802_3_CURRENT_ADDRESS => &c.mac[..],
            Oid::OID_802_3_MAXIMUM_LIST_SIZE => &u32b(32)[..],
            Oid::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES => {
                // Checksums and LSOv2 (done in software when the backend cannot). The
                // revision and size follow what netvsc expects for the negotiated NVSP
                // version (rev 3/156 from NVSP 5, 2/144 at 4, 1/112 before).
                let (rev, size) = if self.nvsp.0 >= NvspVersion::V5.0 {
                    (3, 156)
                } else if self.nvsp.0 >= NvspVersion::V4.0 {
                    (2, 144)
                } else {
                    (1, 112)
                };
                let n = OffloadConfig::capabilities(rev, size)
                    .emit(&mut self.info)
                    .unwrap_or(0);
                return (RndisStatus::SUCCESS, n);
            }
            Oid::OID_GEN_RECEIVE_SCALE_CAPABILITIES if c.max_queues > 1 => {
                // Toeplitz over TCP/IPv4 and TCP/IPv6 (and addresses alone for the
                // rest); one queue per channel.
                let caps = NdisReceiveScaleCapabilities {
                    hdr: NdisObjectHeader::new(
                        NdisObjectType::RSS_CAPABILITIES,
                        NDIS_RECEIVE_SCALE_CAPABILITIES_REVISION_2,
                        NDIS_SIZEOF_RECEIVE_SCALE_CAPABILITIES_REVISION_2 as u16,
                    ),
                    cap_flag: (RssCapsFlags::HASH_TYPE_TCP_IPV4 | RssCapsFlags::HASH_TYPE_TCP_IPV6)
                        .bits(),
                    num_int_msg: 1,
                    num_recv_que: u32::from(c.max_queues),
                    num_indirect_tabent: ITAB_NUM as u16,
                };
                let n = caps.emit(&mut self.info).unwrap_or(0);
                return (RndisStatus::SUCCESS, n);
            }
            _ => return (RndisStatus::NOT_SUPPORTED, 0),
        };
        let n = value.len().min(self.info.len());
        if let (Some(d), Some(s)) = (self.info.get_mut(..n), value.get(..n)) {
            d.copy_from_slice(s);
        }
        (RndisStatus::SUCCESS, n)
    }

    fn set(&mut self, s: &OidRequest<'_>) -> RndisStatus {
        match s.oid {
            Oid::OID_GEN_CURRENT_PACKET_FILTER => match s.info.first_chunk::<4>() {
                Some(v) => {
                    self.filter = u32::from_le_bytes(*v);
                    RndisStatus::SUCCESS
                }
                None => RndisStatus::INVALID_LENGTH,
            },
            Oid::OID_TCP_OFFLOAD_PARAMETERS => match NdisOffloadParams::parse(s.info) {
                // Transmit and receive halves both kept: receive checksum results are
                // reported only where the guest asked for them.
                Ok(p) => {
                    self.offload.apply(&p);
                    RndisStatus::SUCCESS
                }
                Err(_) => RndisStatus::INVALID_DATA,
            },
            Oid::OID_GEN_RECEIVE_SCALE_PARAMETERS if self.config.max_queues > 1 => {
                match RssParams::parse(s.info)
                    .ok()
                    .map(|p| Rss::apply(self.rss.as_ref(), &p, self.config.max_queues))
                {
                    Some(Ok(rss)) => {
                        self.rss = rss;
                        RndisStatus::SUCCESS
                    }
                    Some(Err(e)) => {
                        tracing::debug!("netvsp: RSS parameters refused: {e}");
                        RndisStatus::INVALID_DATA
                    }
                    None => RndisStatus::INVALID_DATA,
                }
            }
            Oid::OID_GEN_RNDIS_CONFIG_PARAMETER
            | Oid::OID_GEN_NETWORK_LAYER_ADDRESSES
            | Oid::OID_802_3_MULTICAST_LIST
            | Oid::OID_GEN_CURRENT_LOOKAHEAD
            | Oid::OID_OFFLOAD_ENCAPSULATION => RndisStatus::SUCCESS,
            _ => RndisStatus::NOT_SUPPORTED,
        }
    }

    /// Handles a control message; writes the reply (if the message has one) into `out`
    /// and returns its length.
    pub(crate) fn handle(
        &mut self,
        m: &RndisMessage<'_>,
        link_up: bool,
        stats: &Counters,
        out: &mut [u8],
    ) -> Option<usize> {
        let reply = match m {
            RndisMessage::Initialize(i) => {
                self.initialized = true;
                self.reported_link = Some(link_up);
                RndisMessage::InitializeComplete(RndisInitializeComplete {
                    req_id: i.req_id,
                    status: RndisStatus::SUCCESS,
                    major_ver: 1,
                    minor_ver: 0,
                    dev_flags: DeviceFlags::CONNECTIONLESS.bits(),
                    medium: RndisMedium::MEDIUM_802_3,
                    max_pkt_per_msg: self.config.max_packets_per_message.max(1),
                    max_xfer_size: MAX_XFER_SIZE,
                    // Packets sharing a message start 8-byte aligned (the guest pads).
                    pkt_alignment_factor: PKT_ALIGNMENT_FACTOR,
                    af_list_offset: 0,
                    af_list_size: 0,
                })
            }
            RndisMessage::Query(q) => {
                let (status, n) = self.query(q, link_up, stats);
                stats.record_oid(false, q.oid.0, status.0);
                let info = self.info;
                let reply = RndisMessage::QueryComplete(InfoComplete {
                    req_id: q.req_id,
                    status,
                    info: info.get(..n).unwrap_or(&[]),
                });
                return reply.emit(out).ok();
            }
            RndisMessage::Set(s) => {
                let status = self.set(s);
                stats.record_oid(true, s.oid.0, status.0);
                RndisMessage::SetComplete(RndisSetComplete {
                    req_id: s.req_id,
                    status,
                })
            }
            RndisMessage::Reset(_) => {
                self.filter = 0;
                self.offload = OffloadConfig::default();
                self.rss = None;
                RndisMessage::ResetComplete(RndisResetComplete {
                    status: RndisStatus::SUCCESS,
                    addressing_reset: 0,
                })
            }
            RndisMessage::Keepalive(k) => RndisMessage::KeepaliveComplete(RndisKeepaliveComplete {
                req_id: k.req_id,
                status: RndisStatus::SUCCESS,
            }),
            RndisMessage::Halt(_) => {
                self.initialized = false;
                self.filter = 0;
                return None;
            }
            _ => return None,
        };
        reply.emit(out).ok()
    }
}
