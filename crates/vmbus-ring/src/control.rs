//! The ring control page (`struct hv_ring_buffer`, Linux `include/linux/hyperv.h`).
//!
//! Only the first 68 bytes are defined: `write_index` @0, `read_index` @4,
//! `interrupt_mask` @8, `pending_send_sz` @12, `feature_bits` @64 (bit 0:
//! `feat_pending_send_sz`). The page is 4 KiB and the data area starts right after it.
//! Every field is shared with the peer, so each is an atomic and every value read from
//! the peer's fields is validated by the ring before use.

use core::sync::atomic::{AtomicU32, Ordering};

/// Size of the control page.
pub const CONTROL_PAGE_SIZE: usize = 4096;

/// `feature_bits` bit 0: the ring's writer honours `pending_send_sz`.
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// The defined part of the control page.
#[repr(C)]
pub struct ControlPage {
    write_index: AtomicU32,
    read_index: AtomicU32,
    interrupt_mask: AtomicU32,
    pending_send_size: AtomicU32,
    reserved: [AtomicU32; 12],
    feature_bits: AtomicU32,
}

const _: () = assert!(size_of::<ControlPage>() == 68);
const _: () = assert!(core::mem::offset_of!(ControlPage, read_index) == 4);
const _: () = assert!(core::mem::offset_of!(ControlPage, interrupt_mask) == 8);
const _: () = assert!(core::mem::offset_of!(ControlPage, pending_send_size) == 12);
const _: () = assert!(core::mem::offset_of!(ControlPage, feature_bits) == 64);

impl ControlPage {
    /// `write_index` (acquire): where the writer will put its next packet.
    #[inline]
    pub fn write_index(&self) -> u32 {
        self.write_index.load(Ordering::Acquire)
    }
    /// Publishes `write_index` (release).
    #[inline]
    pub fn set_write_index(&self, v: u32) {
        self.write_index.store(v, Ordering::Release)
    }
    /// `read_index` (acquire): where the reader will read next.
    #[inline]
    pub fn read_index(&self) -> u32 {
        self.read_index.load(Ordering::Acquire)
    }
    /// Publishes `read_index` (release).
    #[inline]
    pub fn set_read_index(&self, v: u32) {
        self.read_index.store(v, Ordering::Release)
    }
    /// `interrupt_mask`: non-zero while the reader does not want signals.
    #[inline]
    pub fn interrupt_mask(&self) -> u32 {
        self.interrupt_mask.load(Ordering::Acquire)
    }
    /// Sets `interrupt_mask`.
    #[inline]
    pub fn set_interrupt_mask(&self, v: u32) {
        self.interrupt_mask.store(v, Ordering::Release)
    }
    /// `pending_send_sz`: bytes the blocked writer needs (0: not blocked).
    #[inline]
    pub fn pending_send_size(&self) -> u32 {
        self.pending_send_size.load(Ordering::Acquire)
    }
    /// Sets `pending_send_sz`.
    #[inline]
    pub fn set_pending_send_size(&self, v: u32) {
        self.pending_send_size.store(v, Ordering::Release)
    }
    /// `feature_bits`.
    #[inline]
    pub fn feature_bits(&self) -> u32 {
        self.feature_bits.load(Ordering::Acquire)
    }
    /// Sets `feature_bits`.
    #[inline]
    pub fn set_feature_bits(&self, v: u32) {
        self.feature_bits.store(v, Ordering::Release)
    }
    /// Zeroes the defined fields (a fresh ring).
    pub fn reset(&self) {
        for a in [
            &self.write_index,
            &self.read_index,
            &self.interrupt_mask,
            &self.pending_send_size,
            &self.feature_bits,
        ] {
            a.store(0, Ordering::Release);
        }
        for a in &self.reserved {
            a.store(0, Ordering::Relaxed);
        }
    }
}
