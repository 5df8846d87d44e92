//! # vmbus-ring
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
//! The peer is hostile: every index it writes is validated (below the data size,
//! 8-aligned) and every packet length checked against the bytes written; a corrupt ring
//! gives [`RingError`], never a panic, out-of-bounds access or endless loop.
//!
//! ```
//! use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};
//! use std::sync::Arc;
//!
//! let mem = Arc::new(FlatRingMem::new(4096 * 4).unwrap());
//! let mut tx = OutgoingRing::new(mem.clone()).unwrap();
//! let mut rx = IncomingRing::new(mem).unwrap();
//! tx.try_write(&OutgoingPacket::inband(7, 0), &[b"hello, ", b"ring"]).unwrap();
//! assert!(tx.commit(), "empty to non-empty with interrupts unmasked: signal");
//! let p = rx.try_read().unwrap();
//! assert_eq!(p.descriptor.transaction_id, 7);
//! assert_eq!(&p.view().unwrap()[16..27], b"hello, ring");
//! assert!(!rx.commit(), "the writer was not waiting for space");
//! ```

#![deny(unsafe_code)]

pub mod control;
mod counters;
pub mod error;
pub mod mem;
pub mod ring;
#[cfg(target_os = "linux")]
mod sys;
pub mod wait;

pub use control::ControlPage;
pub use error::{ReadError, RingError, WriteError};
pub use mem::{DoubleMappedRingMem, FlatRingMem, PagedRingMem, RingMem, RingPage, SharedMemory};
pub use ring::{
    IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, ReaderStats, WriterStats,
};
#[cfg(target_os = "linux")]
pub use wait::EventFd;
pub use wait::{Doorbell, WaitPolicy, Wake, WakeFn, wait_readable, write_blocking};

#[cfg(test)]
mod tests;
