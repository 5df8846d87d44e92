#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! The VMBus runtime over an [`hv_partition`] backend:
//!
//! - [`HostBus`] runs the server engine of `vmbus-proto` on a worker thread, offers
//!   [`VmbusDevice`]s and hands each an open [`Channel`] when the guest opens it;
//!   guest hypercalls reach it through the partition's `HypercallHandler` seam, so the
//!   same host code serves the sim, kvm and mshv backends;
//! - [`GuestBus`] is the guest side: SynIC setup, the VMBus SINT's handler, offers,
//!   GPADLs and channel opens, over a [`GuestPlatform`] (what the guest's environment
//!   provides: MSRs, hypercalls, memory, waiting for an interrupt; [`SimPlatform`] is
//!   the simulated partition's), with an interrupt thread per VP or polled from the
//!   caller's loop ([`GuestBus::polled`]);
//! - [`Channel`] is a ring pair plus event signalling with blocking, non-blocking and
//!   batch send/receive; its halves can live on different threads.
//!
//! Host to guest, a channel signals by setting its relid's event flag in the target
//! VP's SIEFP and raising the SINT; guest to host, by HvSignalEvent on the channel's
//! connection id, exactly as Linux's hv_vmbus does.

//!
//! ## Without `std`
//!
//! With `default-features = false` the crate is `no_std + alloc` and holds the guest
//! side only: [`GuestBus::polled`] on a [`GuestPlatform`] the guest implements, and
//! [`Channel`]s whose waits run the bus through that platform. The host side, the
//! threaded guest and [`SimPlatform`] need `std` (and Linux, through `hv-partition`).

#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod channel;
#[cfg(feature = "std")]
pub mod echo;
pub mod guest;
#[cfg(feature = "std")]
pub mod host;
mod sync;

/// What a poll of a [`HostBus`] (or of a device's poller) found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollStatus {
    /// More work is ready: poll again (after other work, to stay fair to it).
    Busy,
    /// Nothing to do until the wake-up fires; with `Some(d)`, poll again after `d` at
    /// the latest even if it does not (a timed retry, or a guard against a peer that
    /// fails to signal).
    Idle(Option<core::time::Duration>),
}

impl PollStatus {
    /// The status of two pollers polled together: busy if either is, else idle until
    /// the earlier of their deadlines (for a VMM loop, or a one-thread VM's
    /// `SimPlatform::on_one_thread` hook, that polls a bus and its devices).
    pub fn merge(self, other: Self) -> Self {
        match (self, other) {
            (Self::Busy, _) | (_, Self::Busy) => Self::Busy,
            (Self::Idle(a), Self::Idle(b)) => Self::Idle(match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }),
        }
    }
}

pub use channel::{Channel, ChannelError, ChannelShared, Receiver, Sender};
#[cfg(feature = "std")]
pub use echo::EchoDevice;
#[cfg(feature = "std")]
pub use guest::SimPlatform;
pub use guest::{GuestBus, GuestConfig, GuestError, GuestPlatform, PlatformError};
#[cfg(feature = "std")]
pub use host::{
    DeviceContext, GpadlTable, HostBus, HostConfig, HostError, HostStats, PendingOffer, VmbusDevice,
};
#[cfg(feature = "std")]
pub use vmbus_proto::engine::server::{OfferParams, OpenRequest};

// What a VMM needs besides the bus, so that hosting a device takes this crate (and the
// device's) only: the partition (guest memory, backends, user-space Hyper-V), wake-ups,
// device identities.
#[cfg(feature = "std")]
pub use hv_partition::{
    GuestMemory, GuestRam, Partition, RamRegion, SimPartition, UserHv, gpadl::RingMapping,
};
pub use vmbus_proto::guid::{Guid, class};
#[cfg(all(feature = "std", target_os = "linux"))]
pub use vmbus_ring::EventFd;
pub use vmbus_ring::{Doorbell, Wake, WakeFn};

/// The partition crate ([`hv_partition`]): backends, SynIC, guest memory, PC pieces.
#[cfg(feature = "std")]
pub use hv_partition as partition;
/// The wire formats and sans-IO engines ([`vmbus_proto`]).
pub use vmbus_proto as proto;
/// The ring buffer ([`vmbus_ring`]).
pub use vmbus_ring as ring;

#[cfg(test)]
mod tests {
    use super::PollStatus;
    use core::time::Duration;

    #[test]
    fn poll_status_merge_is_busy_if_either_is_else_the_earlier_deadline() {
        let (ms1, ms5) = (Duration::from_millis(1), Duration::from_millis(5));
        let idle = PollStatus::Idle;
        assert_eq!(PollStatus::Busy.merge(idle(None)), PollStatus::Busy);
        assert_eq!(idle(Some(ms1)).merge(PollStatus::Busy), PollStatus::Busy);
        assert_eq!(idle(Some(ms5)).merge(idle(Some(ms1))), idle(Some(ms1)));
        assert_eq!(idle(None).merge(idle(Some(ms5))), idle(Some(ms5)));
        assert_eq!(idle(None).merge(idle(None)), idle(None));
    }
}
