#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! The host side of the Hyper-V synthetic NIC: a [`Netvsp`] device, offered on a
//! `vmbus::HostBus` with the network device class, speaks NVSP (versions 1 through 6.1)
//! and RNDIS the way Linux's hv_netvsc expects (`drivers/net/hyperv/netvsc.c` and
//! `rndis_filter.c`):
//! receive buffer in sub-allocations delivered as transfer-page packets and recycled on
//! completion, send buffer in sections and GPA-direct packets for guest transmit,
//! RNDIS bring-up with the OIDs netvsc queries, link-status indications. Guests may
//! pack several RNDIS packets into one message
//! ([`NetvspConfig::max_packets_per_message`]), including Linux's form with the last
//! packet's data in page buffers after the section. MTUs from 68 to 9000
//! ([`NetvspConfig::mtu`]): receive sub-allocations are sized from it, never above
//! what the backend carries ([`NetEndpoint::max_frame`]; [`Switch::with_max_frame`] and
//! the like for jumbo frames), and frames above the guest's own MTU are dropped and
//! counted.
//!
//! Network [`backend`]s: loopback, an in-process L2 switch with MAC learning, and
//! [`tap::Tap`] (Linux `/dev/net/tun`);
//! [`pcap::Capture`] records any endpoint's frames (both directions, every queue) to a
//! pcap file and passes everything else through.
//!
//! Transmit [`offload`]s (checksums, LSOv2, VLAN tag insertion) are offered to the guest
//! and done in software for backends that cannot do them.
//!
//! Multi-queue: with [`NetvspConfig::max_queues`] above 1 the NIC reports RSS
//! capabilities, grants the guest's SUBCHANNEL request (offering the subchannels on the
//! bus), sends the send indirection table, and spreads received frames over the open
//! queues by the Toeplitz hash of the guest's [`rss`] key and indirection table (the
//! hash goes with each frame as a per-packet info). Each subchannel has a worker thread
//! of its own for what the guest sends on it (gathering, software offloads, the
//! backend's transmit, receive completions) and for writing its received frames into
//! the guest's buffer. A backend that hands out transmit queues
//! ([`NetEndpoint::take_tx_queue`]: the switch, loopback and TAP do) lets each
//! subchannel thread send without the lock the endpoint is otherwise shared under.
//! Received frames reach a queue's thread one of two ways: a
//! multi-queue backend ([`NetEndpoint::rx_queues`]; [`Switch::with_queues`],
//! [`Loopback::with_queues`], [`tap::Tap::open_with_queues`]) gives each subchannel its own receive queue and steers
//! frames into them by the guest's RSS ([`Steer`]), so pulls run in parallel too;
//! otherwise the primary channel's thread pulls and classifies every frame and hands
//! each subchannel's to its thread with its buffer (no extra copy). The primary keeps
//! the control path. A subchannel carries data packets and completions only: RNDIS
//! control or NVSP setup on it is refused and counted.
//!
//! A backend that can finish offloads itself says so ([`NetEndpoint::tx_offload_support`])
//! and gets the packet with the work left ([`TxOffload`]): the TAP backend passes
//! checksum and LSO requests to the kernel in virtio-net headers. The other way, the
//! TAP takes the kernel's checksum and TSO work (its stack's TCP arrives as 64 KiB GSO
//! packets) and cuts the packets into frames itself.
//!
//! Receive checksum offload: frames whose checksums netvsp computed itself (a guest's
//! checksum or LSO offload, carried through the loopback and switch backends as
//! [`FrameMeta`]) or that the kernel verified (TAP `DATA_VALID`) reach a guest that
//! enabled it with a TCPIP_CHKSUM info saying so; other frames go unmarked.
//!
//! Not implemented (see the issue tracker): receive segment coalescing (RSC).

// Denied everywhere but the TAP module (ioctl and raw read/write on its fd).
#![deny(unsafe_code)]

pub mod backend;
mod config;
pub mod device;
mod frame;
pub mod offload;
mod queue;
mod rndis;
pub mod rss;
mod rxpath;
mod shared;
mod stats;
mod sync;

pub use backend::pcap;
#[cfg(target_os = "linux")]
pub use backend::tap;
pub use backend::{
    FrameMeta, Gso, LinkControl, Loopback, MAX_JUMBO_FRAME, MAX_MTU, NetEndpoint, NetRxQueue,
    NetTxQueue, Steer, Switch, SwitchPort, TxOffload, TxOffloadSupport, frame_size,
};
pub use device::{
    EVENT_LOG_CAP, Netvsp, NetvspConfig, NicCore, NicCounters, NicEvent, NicPoller, NicStats,
    OidRequestRecord,
};
