//! The SIMP (message) and SIEFP (event-flag) pages, accessed as shared memory.
//!
//! Both pages live in guest memory, so the other side can change any byte at any time.
//! Access therefore goes through [`SharedPage`], a page of 512 little-endian 64-bit words
//! with atomic loads, stores and read-modify-writes; never through a `&mut` the peer
//! could alias. A backend implements [`SharedPage`] over its mapping of guest memory;
//! [`AtomicPage`] is a host-memory implementation for tests and the simulated backend.
//!
//! Layouts: SIMP = 16 slots of one 256-byte [`HvMessage`] (`struct hv_message_page`);
//! SIEFP = 16 sets of 2048 flag bits, 256 bytes each (`struct hv_synic_event_flags_page`).

use crate::message::{
    HV_MESSAGE_FLAG_PENDING, HV_MESSAGE_SIZE, HV_SYNIC_SINT_COUNT, HvMessage, HvMessageType,
};
use core::sync::atomic::{AtomicU64, Ordering};

/// Size of a SynIC page.
pub const PAGE_SIZE: usize = 4096;
/// 64-bit words per page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 8;
/// Event flags per SINT (`HV_EVENT_FLAGS_COUNT`, 256 bytes * 8).
pub const HV_EVENT_FLAGS_COUNT: u32 = 2048;
const WORDS_PER_SLOT: usize = HV_MESSAGE_SIZE / 8;
const WORDS_PER_FLAG_SET: usize = HV_EVENT_FLAGS_COUNT as usize / 64;

/// A 4 KiB page of shared memory seen as 512 little-endian `u64` words.
///
/// `word` is always below [`PAGE_WORDS`] when called from this crate; an implementation
/// may treat a larger index as a bug (it is never derived from peer data).
pub trait SharedPage {
    /// Atomic load with acquire ordering.
    fn load(&self, word: usize) -> u64;
    /// Atomic store with release ordering.
    fn store(&self, word: usize, value: u64);
    /// Atomic OR (sequentially consistent); returns the previous value.
    fn fetch_or(&self, word: usize, value: u64) -> u64;
    /// Atomic AND (sequentially consistent); returns the previous value.
    fn fetch_and(&self, word: usize, value: u64) -> u64;
}

/// A page of host memory made of atomics: the [`SharedPage`] for tests and for the
/// simulated partition.
pub struct AtomicPage(pub [AtomicU64; PAGE_WORDS]);

impl AtomicPage {
    /// A zeroed page.
    pub fn new() -> Self {
        Self([const { AtomicU64::new(0) }; PAGE_WORDS])
    }
}

impl Default for AtomicPage {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedPage for AtomicPage {
    fn load(&self, word: usize) -> u64 {
        self.0.get(word).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store(&self, word: usize, value: u64) {
        if let Some(w) = self.0.get(word) {
            w.store(value, Ordering::Release);
        }
    }
    fn fetch_or(&self, word: usize, value: u64) -> u64 {
        self.0
            .get(word)
            .map_or(0, |w| w.fetch_or(value, Ordering::SeqCst))
    }
    fn fetch_and(&self, word: usize, value: u64) -> u64 {
        self.0
            .get(word)
            .map_or(0, |w| w.fetch_and(value, Ordering::SeqCst))
    }
}

/// A SINT number, checked to be below 16.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SintIndex(u8);

/// A SINT number of 16 or more.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SINT {0} is out of range (0..16)")]
pub struct InvalidSint(pub u32);

impl SintIndex {
    /// SINT 2, the one VMBus uses (`VMBUS_MESSAGE_SINT`).
    pub const VMBUS: Self = Self(2);

    /// Checks `sint < 16`.
    pub const fn new(sint: u32) -> Result<Self, InvalidSint> {
        if sint < HV_SYNIC_SINT_COUNT as u32 {
            Ok(Self(sint as u8))
        } else {
            Err(InvalidSint(sint))
        }
    }

    /// The index.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// An event-flag number, checked to be below 2048.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventFlag(u16);

/// An event-flag number of 2048 or more.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event flag {0} is out of range (0..2048)")]
pub struct InvalidEventFlag(pub u32);

impl EventFlag {
    /// Checks `flag < 2048`.
    pub const fn new(flag: u32) -> Result<Self, InvalidEventFlag> {
        if flag < HV_EVENT_FLAGS_COUNT {
            Ok(Self(flag as u16))
        } else {
            Err(InvalidEventFlag(flag))
        }
    }

    /// The flag number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

/// Outcome of [`SimpPage::try_post`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// The message is in the slot; raise the SINT.
    Delivered,
    /// The slot holds an unconsumed message. Message-pending is now set on it, so the
    /// guest will write EOM after consuming it: queue this message and retry then.
    SlotBusy,
}

/// The SIMP page: one message slot per SINT.
pub struct SimpPage<'a, P: SharedPage + ?Sized>(pub &'a P);

impl<P: SharedPage + ?Sized> SimpPage<'_, P> {
    /// Host side: places `msg` into the slot of `sint` if it is free.
    ///
    /// The body is written first and the header word holding the message type last
    /// (release), so a guest that sees a non-zero type sees the whole message. If the slot
    /// is busy, sets message-pending on the resident message and reports
    /// [`PostOutcome::SlotBusy`]. The check is race-free against a guest that empties the
    /// slot concurrently: the atomic OR that sets the flag also re-reads the type.
    pub fn try_post(&self, sint: SintIndex, msg: &HvMessage) -> PostOutcome {
        let base = usize::from(sint.0) * WORDS_PER_SLOT;
        let head = self.0.load(base);
        if head as u32 != HvMessageType::NONE.0 {
            let pending = u64::from(HV_MESSAGE_FLAG_PENDING) << 40;
            let prev = self.0.fetch_or(base, pending);
            if prev as u32 != HvMessageType::NONE.0 {
                return PostOutcome::SlotBusy;
            }
            // The guest emptied the slot between the load and the OR: it is ours.
        }
        let mut words = msg.to_words();
        // Never publish message-pending from the caller's image: only we set it.
        words[0] &= !(u64::from(HV_MESSAGE_FLAG_PENDING) << 40);
        for (i, w) in words.iter().enumerate().skip(1) {
            self.0.store(base + i, *w);
        }
        self.0.store(base, words[0]);
        PostOutcome::Delivered
    }

    /// Guest side: a copy of the message in the slot of `sint`, or `None` if the slot is
    /// empty. The copy is taken after an acquire load of the type; the caller must still
    /// treat `payload_size` as untrusted.
    pub fn read(&self, sint: SintIndex) -> Option<HvMessage> {
        let base = usize::from(sint.0) * WORDS_PER_SLOT;
        let head = self.0.load(base);
        if head as u32 == HvMessageType::NONE.0 {
            return None;
        }
        let mut words = [0u64; WORDS_PER_SLOT];
        words[0] = head;
        for (i, w) in words.iter_mut().enumerate().skip(1) {
            *w = self.0.load(base + i);
        }
        Some(HvMessage::from_words(&words))
    }

    /// Guest side: empties the slot of `sint` (type := NONE) and returns whether
    /// message-pending was set, in which case the guest must write the EOM MSR so the
    /// hypervisor (our host) redelivers.
    pub fn complete(&self, sint: SintIndex) -> bool {
        let base = usize::from(sint.0) * WORDS_PER_SLOT;
        let prev = self.0.fetch_and(base, !0xFFFF_FFFFu64);
        prev >> 40 & u64::from(HV_MESSAGE_FLAG_PENDING) != 0
    }
}

/// The SIEFP page: 2048 event flags per SINT.
pub struct SiefpPage<'a, P: SharedPage + ?Sized>(pub &'a P);

impl<P: SharedPage + ?Sized> SiefpPage<'_, P> {
    fn locate(sint: SintIndex, flag: EventFlag) -> (usize, u64) {
        let word = usize::from(sint.0) * WORDS_PER_FLAG_SET + usize::from(flag.0 / 64);
        (word, 1u64 << (flag.0 % 64))
    }

    /// Host side: sets `flag` for `sint`; returns true if it was clear (the guest has not
    /// yet seen an earlier signal, so a SINT must be raised either way, but a caller may
    /// count coalesced signals).
    pub fn set(&self, sint: SintIndex, flag: EventFlag) -> bool {
        let (word, bit) = Self::locate(sint, flag);
        self.0.fetch_or(word, bit) & bit == 0
    }

    /// Guest side: clears `flag` for `sint`; returns whether it was set.
    pub fn test_and_clear(&self, sint: SintIndex, flag: EventFlag) -> bool {
        let (word, bit) = Self::locate(sint, flag);
        self.0.fetch_and(word, !bit) & bit != 0
    }

    /// Guest side: atomically takes every set flag of `sint` and calls `f` with each flag
    /// number in ascending order. Bounded: 32 words, 2048 flags at most.
    pub fn drain(&self, sint: SintIndex, f: impl FnMut(EventFlag)) {
        self.drain_below(sint, HV_EVENT_FLAGS_COUNT as u16, f)
    }

    /// [`SiefpPage::drain`] of the flags below `limit` only (rounded up to a multiple
    /// of 64): a guest whose channels all have small relids scans one word instead of
    /// 32. Flags at or above the limit stay set for a later full drain.
    pub fn drain_below(&self, sint: SintIndex, limit: u16, mut f: impl FnMut(EventFlag)) {
        let base = usize::from(sint.0) * WORDS_PER_FLAG_SET;
        let words = usize::from(limit).div_ceil(64).min(WORDS_PER_FLAG_SET);
        for i in 0..words {
            if self.0.load(base + i) == 0 {
                continue;
            }
            let mut bits = self.0.fetch_and(base + i, 0);
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                f(EventFlag((i as u32 * 64 + b) as u16));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_read_complete_and_pending() {
        let page = AtomicPage::new();
        let simp = SimpPage(&page);
        let sint = SintIndex::VMBUS;
        let m1 = HvMessage::new(HvMessageType::VMBUS, b"first").unwrap();
        let m2 = HvMessage::new(HvMessageType::VMBUS, b"second").unwrap();
        assert_eq!(simp.read(sint), None);
        assert_eq!(simp.try_post(sint, &m1), PostOutcome::Delivered);
        // Slot 2 starts at byte 512 = word 64.
        assert_eq!(page.load(64) as u32, 1);
        assert_eq!(page.load(64) >> 32 & 0xFF, 5);
        assert_eq!(simp.try_post(sint, &m2), PostOutcome::SlotBusy);
        let seen = simp.read(sint).unwrap();
        assert!(seen.is_pending());
        assert_eq!(seen.payload().unwrap(), b"first");
        assert!(simp.complete(sint), "pending was set, guest must EOM");
        assert_eq!(simp.read(sint), None);
        assert_eq!(simp.try_post(sint, &m2), PostOutcome::Delivered);
        let seen = simp.read(sint).unwrap();
        assert!(!seen.is_pending());
        assert_eq!(seen.payload().unwrap(), b"second");
        assert!(!simp.complete(sint));
    }

    #[test]
    fn other_slots_untouched() {
        let page = AtomicPage::new();
        let simp = SimpPage(&page);
        let m = HvMessage::new(HvMessageType::VMBUS, &[0xFF; 240]).unwrap();
        assert_eq!(
            simp.try_post(SintIndex::new(15).unwrap(), &m),
            PostOutcome::Delivered
        );
        for w in 0..15 * 32 {
            assert_eq!(page.load(w), 0);
        }
        assert_eq!(page.load(511), u64::MAX);
    }

    #[test]
    fn event_flags() {
        let page = AtomicPage::new();
        let siefp = SiefpPage(&page);
        let sint = SintIndex::VMBUS;
        let f = |n| EventFlag::new(n).unwrap();
        assert!(siefp.set(sint, f(5)));
        assert!(!siefp.set(sint, f(5)));
        assert!(siefp.set(sint, f(2047)));
        // SINT 2's flags start at byte 512; flag 5 is bit 5 of that word.
        assert_eq!(page.load(64), 1 << 5);
        assert_eq!(page.load(64 + 31), 1 << 63);
        let mut got = [0u16; 4];
        let mut n = 0;
        siefp.drain(sint, |fl| {
            got[n] = fl.get();
            n += 1;
        });
        assert_eq!(&got[..n], &[5, 2047]);
        assert!(!siefp.test_and_clear(sint, f(5)));
        assert!(siefp.set(sint, f(0)));
        assert!(siefp.test_and_clear(sint, f(0)));

        // A bounded drain takes the words below its limit and leaves the rest.
        for n in [5, 63, 64, 100, 2047] {
            siefp.set(sint, f(n));
        }
        let mut seen = Vec::new();
        siefp.drain_below(sint, 6, |fl| seen.push(fl.get()));
        assert_eq!(seen, [5, 63], "the limit rounds up to a whole word");
        seen.clear();
        siefp.drain_below(sint, 0, |fl| seen.push(fl.get()));
        assert!(seen.is_empty());
        siefp.drain(sint, |fl| seen.push(fl.get()));
        assert_eq!(seen, [64, 100, 2047]);
    }

    #[test]
    fn index_validation() {
        assert!(SintIndex::new(16).is_err());
        assert!(EventFlag::new(2048).is_err());
        assert_eq!(EventFlag::new(2047).unwrap().get(), 2047);
    }
}
