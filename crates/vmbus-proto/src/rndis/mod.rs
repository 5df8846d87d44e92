//! RNDIS and the NDIS objects it carries, as NetVSC and NetVSP exchange them inside
//! NVSP `SEND_RNDIS_PKT` messages.
//!
//! - [`enums`]: open enums for message types, status codes, OIDs, per-packet-info
//!   types, NDIS object types, media; bitflags for device flags, packet filters and RSS;
//! - [`message`]: the RNDIS wire structs, [`RndisMessage`] (parse / emit), the
//!   [`RndisMessages`] iterator over a buffer of several messages, packet builders;
//! - [`ppi`]: per-packet info: header, checksum / LSO / VLAN / packet-id words, the
//!   [`PpiIter`] iterator and emitters;
//! - [`ndis`]: `NDIS_OFFLOAD`, `NDIS_OFFLOAD_PARAMETERS`, RSS capabilities and
//!   parameters, configuration parameters.
//!
//! Layouts follow Linux `drivers/net/hyperv/hyperv_net.h` and `include/linux/rndis.h`,
//! cross-checked with OpenVMM `netvsp/src/rndisprot.rs`; every struct has a compile-time
//! size assertion. Both peers are treated as hostile: every `msg_len`, offset and length
//! is checked before use, and nothing here panics, allocates from peer input or loops
//! without a bound.
//!
//! ```
//! use vmbus_proto::rndis::*;
//!
//! // Guest: query the MAC address.
//! let q = RndisMessage::Query(OidRequest {
//!     req_id: 1,
//!     oid: Oid::OID_802_3_PERMANENT_ADDRESS,
//!     dev_vc_handle: 0,
//!     info: &[],
//! });
//! let bytes = q.to_vec().unwrap();
//! assert_eq!(bytes.len(), 28);
//!
//! // Host: parse it and answer with the MAC at info_buf_offset 16.
//! let RndisMessage::Query(req) = RndisMessage::parse(&bytes).unwrap() else { unreachable!() };
//! let mac = [0x00, 0x15, 0x5d, 0x01, 0x02, 0x03];
//! let reply = RndisMessage::QueryComplete(InfoComplete {
//!     req_id: req.req_id,
//!     status: RndisStatus::SUCCESS,
//!     info: &mac,
//! });
//! let mut buf = [0u8; 64];
//! let n = reply.emit(&mut buf).unwrap();
//! assert_eq!(RndisMessage::parse(&buf[..n]).unwrap(), reply);
//!
//! // Data: a frame with a VLAN tag.
//! let frame = [0u8; 60];
//! let vlan = Ppi::Vlan(NdisPkt8021qInfo::default().with_vlan_id(10));
//! let pkt = packet_to_vec(&[vlan], &frame).unwrap();
//! let RndisMessage::Packet(p) = RndisMessage::parse(&pkt).unwrap() else { unreachable!() };
//! assert_eq!(p.ppis().next(), Some(Ok(vlan)));
//! ```

pub mod enums;
pub mod message;
pub mod ndis;
pub mod ppi;

pub use enums::*;
pub use message::*;
pub use ndis::*;
pub use ppi::*;
