#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! The VMBus ring buffer, compatible bit for bit with Linux's `hv_ring_buffer` and
//! Hyper-V's: a 4 KiB control page (`write_index`, `read_index`, `interrupt_mask`,
//! `pending_send_sz`, `feature_bits`) followed by a data area of packets, each a
//! 16-byte descriptor, the payload padded to 8 bytes, and an 8-byte trailer holding the
//! previous write index in its high 32 bits. Eight bytes always stay free.
//!
//! - [`OutgoingRing`] writes packets gathered from several slices with no allocation,
//!   in batches published by [`OutgoingRing::commit`], which returns whether the reader
//!   must be signalled (empty to non-empty while `interrupt_mask` is clear);
//! - [`IncomingRing`] reads packets as zero-copy views where the mapping allows and as
//!   copies otherwise; [`IncomingRing::commit`] returns whether the writer must be
//!   signalled (free space crossing `pending_send_sz`);
//! - [`mem`] holds the memory behind a ring: flat heap, paged (a GPADL page list) and
//!   double-mapped (the zero-copy path). It and the eventfd calls are the only
//!   `unsafe` code;
//! - [`wait`] has the [`Wake`] trait, a doorbell and an eventfd behind it, and the
//!   spin-then-sleep loops for threads.
//!
//! **`no_std`.** The ring protocol (`ring`, `control`, `error`, the [`RingMem`] and
//! [`Wake`] traits) needs only `core` and `alloc`. The default feature `std` adds the
//! memory implementations (heap, memfd and mmap), the doorbell and eventfd wake-ups and
//! the blocking loops; without it the crate builds for `x86_64-unknown-none`.
//!
//! The peer is hostile: every index it writes is validated (below the data size,
//! 8-aligned) and every packet length checked against the bytes written; a corrupt ring
//! gives [`RingError`], never a panic, out-of-bounds access or endless loop.

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod control;
mod counters;
pub mod error;
pub mod mem;
pub mod ring;
#[cfg(all(feature = "std", target_os = "linux"))]
mod sys;
pub mod wait;
pub mod wake;

pub use control::ControlPage;
pub use error::{ReadError, RingError, WriteError};
#[cfg(feature = "std")]
pub use mem::FlatRingMem;
pub use mem::RingMem;
#[cfg(all(feature = "std", target_os = "linux"))]
pub use mem::{DoubleMappedRingMem, PagedRingMem, RingPage, SharedMemory};
pub use ring::{
    IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, ReaderStats, WriterStats,
};
#[cfg(all(feature = "std", target_os = "linux"))]
pub use wait::EventFd;
pub use wait::{Doorbell, WaitPolicy};
#[cfg(feature = "std")]
pub use wait::{wait_readable, write_blocking};
pub use wake::{Wake, WakeFn};

#[cfg(test)]
mod tests;
