//! The driver's queue of received frames: preallocated slots a frame is read into
//! once, straight from the host-shared receive buffer.

use crate::RxInfo;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes per receive slot at the 1500-byte MTU: a whole RNDIS message carrying a full
/// frame (header, PPIs, frame) fits, so a message is read from guest memory straight
/// into its slot. Larger MTUs get [`rx_slot_size`].
const RX_SLOT: usize = 2048;
/// Room in a slot for the RNDIS header and per-packet infos before the frame.
const RX_HEADER_ROOM: usize = 256;

/// Receive slot size for frames of up to `max_frame` bytes.
pub(crate) fn rx_slot_size(max_frame: usize) -> usize {
    (max_frame + RX_HEADER_ROOM)
        .next_multiple_of(64)
        .max(RX_SLOT)
}

/// A queued frame's infos: decoded, or where its per-packet infos lie in its slot
/// (decoded only if asked for).
#[derive(Copy, Clone, Debug)]
pub(crate) enum SlotInfo {
    Known(RxInfo),
    Ppi { off: u16, len: u16 },
}

/// Bounded queue of received frames in preallocated slots; each slot remembers where
/// in it the frame is.
#[derive(Default)]
pub(crate) struct RxQueue {
    slots: Vec<u8>,
    pub(crate) slot_size: usize,
    /// Longest frame accepted (frames above the MTU are refused).
    pub(crate) max_frame: usize,
    spans: Vec<(u16, u16)>,
    infos: Vec<SlotInfo>,
    head: usize,
    pub(crate) len: usize,
}

impl RxQueue {
    pub(crate) fn new(n: usize, max_frame: usize) -> Self {
        let slot_size = rx_slot_size(max_frame);
        Self {
            slots: vec![0; n.max(1) * slot_size],
            slot_size,
            max_frame,
            spans: vec![(0, 0); n.max(1)],
            infos: vec![SlotInfo::Known(RxInfo::default()); n.max(1)],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.spans.len()
    }

    /// The slot the next frame goes into, or `None` when the queue is full.
    pub(crate) fn next_slot(&mut self) -> Option<&mut [u8]> {
        let cap = self.capacity();
        if self.len == cap {
            return None;
        }
        let at = (self.head + self.len) % cap * self.slot_size;
        self.slots.get_mut(at..at + self.slot_size)
    }

    /// Queues the frame at `off..off + len` of the slot [`RxQueue::next_slot`] gave.
    pub(crate) fn commit(&mut self, off: usize, len: usize, info: SlotInfo) -> bool {
        let cap = self.capacity();
        if self.len == cap || len > self.max_frame || off + len > self.slot_size {
            return false;
        }
        let i = (self.head + self.len) % cap;
        match (self.spans.get_mut(i), self.infos.get_mut(i)) {
            (Some(span), Some(slot_info)) => {
                *span = (off as u16, len as u16);
                *slot_info = info;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn push(&mut self, f: &[u8], info: SlotInfo) -> bool {
        let max = self.max_frame;
        match self.next_slot().and_then(|s| s.get_mut(..f.len())) {
            Some(d) if f.len() <= max => {
                d.copy_from_slice(f);
                self.commit(0, f.len(), info)
            }
            _ => false,
        }
    }

    /// Hands the oldest frame and, if `want_info`, its infos (decoded now) to `f` in
    /// its slot and frees the slot.
    pub(crate) fn pop_with<R>(
        &mut self,
        want_info: bool,
        f: impl FnOnce(&[u8], RxInfo) -> R,
    ) -> Option<R> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.len -= 1;
        // An empty queue starts over at slot 0: a queue that drains as it fills keeps
        // reusing its first slots (cache-hot) instead of cycling through all of them
        // (4,096 slots of 2 KiB are 8 MiB: every frame would land in cold memory).
        self.head = if self.len == 0 {
            0
        } else {
            (i + 1) % self.capacity()
        };
        let (off, len) = *self.spans.get(i)?;
        let base = i * self.slot_size;
        let info = match self.infos.get(i) {
            Some(SlotInfo::Known(info)) => *info,
            Some(&SlotInfo::Ppi { off, len }) if want_info => {
                let at = base + usize::from(off);
                RxInfo::of(self.slots.get(at..at + usize::from(len)).unwrap_or(&[]))
            }
            _ => RxInfo::default(),
        };
        let at = base + usize::from(off);
        Some(f(self.slots.get(at..at + usize::from(len))?, info))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pop(q: &mut RxQueue) -> Option<Vec<u8>> {
        q.pop_with(false, |f, _| f.to_vec())
    }

    #[test]
    fn frames_come_out_in_order_across_the_wrap_and_an_empty_queue_starts_over() {
        let mut q = RxQueue::new(4, 1514);
        let info = SlotInfo::Known(RxInfo::default());
        for b in [1u8, 2, 3] {
            assert!(q.push(&[b; 60], info));
        }
        assert_eq!(pop(&mut q).unwrap(), vec![1; 60]);
        // Slots 3 and 0: the ring wraps.
        assert!(q.push(&[4; 61], info));
        assert!(q.push(&[5; 62], info));
        assert!(!q.push(&[6; 60], info), "a full queue refuses");
        for (b, n) in [(2u8, 60), (3, 60), (4, 61), (5, 62)] {
            assert_eq!(pop(&mut q).unwrap(), vec![b; n]);
        }
        assert_eq!(pop(&mut q), None);
        assert_eq!(q.head, 0, "an empty queue reuses its first slot");
        assert!(q.push(&[7; 60], info));
        assert_eq!(pop(&mut q).unwrap(), vec![7; 60]);
    }

    #[test]
    fn a_frame_above_the_mtu_is_refused() {
        let mut q = RxQueue::new(2, 1514);
        let info = SlotInfo::Known(RxInfo::default());
        assert!(!q.push(&[0; 1515], info));
        assert!(q.push(&[0; 1514], info));
        assert_eq!(q.len, 1);
    }
}
