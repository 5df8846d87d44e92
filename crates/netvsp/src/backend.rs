//! Network backends: where a NIC's frames go and come from.
//!
//! A backend hands each NIC a [`NetEndpoint`]. Frames are copied into bounded queues of
//! preallocated slots ([`FrameQueue`]), so the steady state allocates nothing; a full
//! queue drops (and counts) rather than grows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vmbus_ring::Doorbell;

/// Largest frame at the standard 1500-byte MTU (Ethernet with a VLAN tag, no FCS): the
/// default slot size of [`FrameQueue`] and the backends.
pub const MAX_FRAME: usize = 1518;
/// Largest MTU a NIC supports (jumbo frames, as Hyper-V's 9000).
pub const MAX_MTU: u32 = 9000;
/// Largest frame at [`MAX_MTU`] (with a VLAN tag, no FCS).
pub const MAX_JUMBO_FRAME: usize = MAX_MTU as usize + 18;

/// The largest frame at `mtu` (Ethernet header and a VLAN tag added).
pub const fn frame_size(mtu: u32) -> usize {
    mtu as usize + 18
}

/// What a backend can finish itself on a transmitted frame; netvsp then hands it the
/// frame with that work left (see [`TxOffload`]) instead of doing it in software.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOffloadSupport {
    /// Complete a TCP or UDP checksum ([`TxOffload::csum`]).
    pub checksum: bool,
    /// Segment TCP over IPv4 ([`TxOffload::gso`]).
    pub tso4: bool,
    /// Segment TCP over IPv6.
    pub tso6: bool,
}

/// Segmentation left to the backend (virtio-net header `gso_*` semantics).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Gso {
    /// TCP over IPv6 (else IPv4).
    pub ipv6: bool,
    /// Payload bytes per segment.
    pub mss: u16,
    /// Bytes of Ethernet, IP and TCP headers each segment repeats.
    pub hdr_len: u16,
}

/// Work left on one frame handed to [`NetEndpoint::transmit_offload`]: the frame's IP
/// headers are final (lengths and IPv4 checksum set for the whole packet), its L4
/// checksum field holds the pseudo-header sum.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// (start, offset): fold the one's-complement sum of `frame[start..]` into the 16
    /// bits at `start + offset`.
    pub csum: Option<(u16, u16)>,
    /// Segment the packet (the checksum is then done per segment).
    pub gso: Option<Gso>,
}

/// What a backend knows about a frame beyond its bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// The TCP or UDP checksum is known to be correct: netvsp computed it (a guest's
    /// checksum or LSO offload), or the backend's source verified it (virtio-net
    /// `DATA_VALID` from the kernel). A guest that enabled receive checksum offload is
    /// told so and skips its own check.
    pub l4_checksum_valid: bool,
    /// The IPv4 header checksum is known to be correct (same sources).
    pub ip4_checksum_valid: bool,
}

/// One NIC's attachment to a network.
pub trait NetEndpoint: Send + 'static {
    /// A frame the guest sent. Returns false if it was dropped.
    fn transmit(&mut self, frame: &[u8]) -> bool;
    /// [`NetEndpoint::transmit`] with what netvsp knows about the frame (default: the
    /// knowledge is dropped). A backend that delivers frames to other NICs keeps it for
    /// [`NetEndpoint::receive_meta`].
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        let _ = meta;
        self.transmit(frame)
    }
    /// What [`NetEndpoint::transmit_offload`] can do (default: nothing, so every
    /// offload is done in software before [`NetEndpoint::transmit`]).
    fn tx_offload_support(&self) -> TxOffloadSupport {
        TxOffloadSupport::default()
    }
    /// A frame (possibly larger than [`MAX_FRAME`] when `offload.gso` is set) with the
    /// work in `offload` left to do; only called within
    /// [`NetEndpoint::tx_offload_support`]. Returns false if it was dropped.
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        let _ = offload;
        self.transmit(frame)
    }
    /// Copies the next frame for the guest into `buf`; returns its length.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// [`NetEndpoint::receive`] with what the backend knows about the frame (default:
    /// nothing).
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.receive(buf).map(|n| (n, FrameMeta::default()))
    }
    /// Doorbell to ring when a frame arrives or the link changes.
    fn set_waker(&mut self, waker: Arc<Doorbell>);
    /// Whether the link is up.
    fn link_up(&self) -> bool;
    /// The largest frame the backend carries (default [`MAX_FRAME`], the 1500-byte
    /// MTU): netvsp never offers the guest an MTU above it.
    fn max_frame(&self) -> usize {
        MAX_FRAME
    }
}

/// A bounded FIFO of frames in preallocated slots.
pub struct FrameQueue {
    slots: Vec<u8>,
    slot_size: usize,
    lens: Vec<u16>,
    metas: Vec<FrameMeta>,
    head: usize,
    len: usize,
}

impl FrameQueue {
    /// A queue of `capacity` frames of up to [`MAX_FRAME`] bytes.
    pub fn new(capacity: usize) -> Self {
        Self::with_max_frame(capacity, MAX_FRAME)
    }

    /// A queue of `capacity` frames of up to `max_frame` bytes (at most
    /// [`MAX_JUMBO_FRAME`]).
    pub fn with_max_frame(capacity: usize, max_frame: usize) -> Self {
        let slot_size = max_frame.clamp(60, MAX_JUMBO_FRAME);
        Self {
            slots: vec![0u8; capacity.max(1) * slot_size],
            slot_size,
            lens: vec![0; capacity.max(1)],
            metas: vec![FrameMeta::default(); capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    /// The largest frame a slot holds.
    pub fn max_frame(&self) -> usize {
        self.slot_size
    }

    /// Appends a copy of `frame`; false if the queue is full or the frame too long.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        self.push_meta(frame, FrameMeta::default())
    }

    /// [`FrameQueue::push`] keeping `meta` with the frame.
    pub fn push_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        let cap = self.lens.len();
        if self.len == cap || frame.len() > self.slot_size {
            return false;
        }
        let i = (self.head + self.len) % cap;
        let at = i * self.slot_size;
        if let (Some(dst), Some(l), Some(m)) = (
            self.slots.get_mut(at..at + frame.len()),
            self.lens.get_mut(i),
            self.metas.get_mut(i),
        ) {
            dst.copy_from_slice(frame);
            *l = frame.len() as u16;
            *m = meta;
            self.len += 1;
            return true;
        }
        false
    }

    /// Copies the oldest frame into `buf` (truncating if `buf` is short) and removes it.
    pub fn pop(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.pop_meta(buf).map(|(n, _)| n)
    }

    /// [`FrameQueue::pop`] with the frame's meta (cleared when the frame was cut).
    pub fn pop_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (self.head + 1) % self.lens.len();
        self.len -= 1;
        let n = usize::from(*self.lens.get(i)?);
        let at = i * self.slot_size;
        let m = n.min(buf.len());
        buf.get_mut(..m)?
            .copy_from_slice(self.slots.get(at..at + m)?);
        let meta = if m == n {
            self.metas.get(i).copied().unwrap_or_default()
        } else {
            FrameMeta::default()
        };
        Some((m, meta))
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Shared state of one port: its inbound queue, waker and link.
struct Port {
    queue: Mutex<FrameQueue>,
    waker: Mutex<Option<Arc<Doorbell>>>,
    link: AtomicBool,
    mac: Mutex<Option<[u8; 6]>>,
    dropped: AtomicU64,
}

impl Port {
    fn new(depth: usize, max_frame: usize) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(FrameQueue::with_max_frame(depth, max_frame)),
            waker: Mutex::new(None),
            link: AtomicBool::new(true),
            mac: Mutex::new(None),
            dropped: AtomicU64::new(0),
        })
    }

    fn deliver(&self, frame: &[u8], meta: FrameMeta) -> bool {
        let ok = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_meta(frame, meta);
        if ok {
            self.wake();
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn wake(&self) {
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.ring();
        }
    }
}

impl Port {
    fn pop(&self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_meta(buf)
    }

    fn set_waker(&self, waker: Arc<Doorbell>) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }

    fn is_up(&self) -> bool {
        self.link.load(Ordering::SeqCst)
    }

    fn max_frame(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max_frame()
    }
}

/// Sets a port's link state from outside (tests, management).
#[derive(Clone)]
pub struct LinkControl(Arc<Port>);

impl LinkControl {
    /// Sets the link up or down and wakes the NIC so it can tell the guest.
    pub fn set(&self, up: bool) {
        self.0.link.store(up, Ordering::SeqCst);
        self.0.wake();
    }

    /// Frames dropped because the port's queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Loopback: every frame the guest sends comes back to it.
pub struct Loopback {
    port: Arc<Port>,
}

impl Loopback {
    /// A loopback endpoint with a queue of `depth` frames, and its link control.
    pub fn new(depth: usize) -> (Self, LinkControl) {
        Self::with_max_frame(depth, MAX_FRAME)
    }

    /// [`Loopback::new`] carrying frames of up to `max_frame` bytes (jumbo frames:
    /// [`frame_size`] of the MTU, at most [`MAX_JUMBO_FRAME`]).
    pub fn with_max_frame(depth: usize, max_frame: usize) -> (Self, LinkControl) {
        let port = Port::new(depth, max_frame);
        (Self { port: port.clone() }, LinkControl(port))
    }
}

impl NetEndpoint for Loopback {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.transmit_meta(frame, FrameMeta::default())
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.port.is_up() && self.port.deliver(frame, meta)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.port.pop(buf).map(|(n, _)| n)
    }
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.port.pop(buf)
    }
    fn set_waker(&mut self, waker: Arc<Doorbell>) {
        self.port.set_waker(waker)
    }
    fn link_up(&self) -> bool {
        self.port.is_up()
    }
    fn max_frame(&self) -> usize {
        self.port.max_frame()
    }
}

/// An in-process L2 switch with MAC learning: unicast to the port that last sent from
/// the destination MAC, flood broadcast, multicast and unknown destinations.
pub struct Switch {
    ports: Mutex<Vec<Arc<Port>>>,
    depth: usize,
    max_frame: usize,
}

impl Switch {
    /// A switch whose ports queue `depth` frames each.
    pub fn new(depth: usize) -> Arc<Self> {
        Self::with_max_frame(depth, MAX_FRAME)
    }

    /// [`Switch::new`] carrying frames of up to `max_frame` bytes (jumbo frames:
    /// [`frame_size`] of the MTU, at most [`MAX_JUMBO_FRAME`]); longer frames are
    /// dropped and counted.
    pub fn with_max_frame(depth: usize, max_frame: usize) -> Arc<Self> {
        Arc::new(Self {
            ports: Mutex::new(Vec::new()),
            depth,
            max_frame,
        })
    }

    /// A new port.
    pub fn port(self: &Arc<Self>) -> (SwitchPort, LinkControl) {
        let port = Port::new(self.depth, self.max_frame);
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(port.clone());
        (
            SwitchPort {
                switch: self.clone(),
                port: port.clone(),
            },
            LinkControl(port),
        )
    }

    fn forward(&self, from: &Arc<Port>, frame: &[u8], meta: FrameMeta) -> bool {
        let (Some(dst), Some(src)) = (frame.get(0..6), frame.get(6..12)) else {
            return false;
        };
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(src);
        *from.mac.lock().unwrap_or_else(|e| e.into_inner()) = Some(src_mac);
        let ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let flood = dst.first().is_some_and(|b| b & 1 != 0);
        if !flood
            && let Some(p) = ports.iter().find(|p| {
                !Arc::ptr_eq(p, from)
                    && p.mac
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                        .is_some_and(|m| m == dst)
            })
        {
            return p.link.load(Ordering::SeqCst) && p.deliver(frame, meta);
        }
        let mut any = false;
        for p in ports
            .iter()
            .filter(|p| !Arc::ptr_eq(p, from) && p.link.load(Ordering::SeqCst))
        {
            any |= p.deliver(frame, meta);
        }
        any
    }
}

/// One port of a [`Switch`].
pub struct SwitchPort {
    switch: Arc<Switch>,
    port: Arc<Port>,
}

impl NetEndpoint for SwitchPort {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.transmit_meta(frame, FrameMeta::default())
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.port.is_up() && self.switch.forward(&self.port, frame, meta)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.port.pop(buf).map(|(n, _)| n)
    }
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.port.pop(buf)
    }
    fn set_waker(&mut self, waker: Arc<Doorbell>) {
        self.port.set_waker(waker)
    }
    fn link_up(&self) -> bool {
        self.port.is_up()
    }
    fn max_frame(&self) -> usize {
        self.port.max_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: u8, src: u8, tag: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f[14] = tag;
        f
    }

    #[test]
    fn switch_learns_and_floods() {
        let sw = Switch::new(8);
        let (mut a, _) = sw.port();
        let (mut b, _) = sw.port();
        let (mut c, lc) = sw.port();
        let mut buf = [0u8; 1518];
        // Unknown destination: flooded to b and c.
        assert!(a.transmit(&frame(2, 1, 1)));
        assert_eq!(b.receive(&mut buf), Some(60));
        assert_eq!(c.receive(&mut buf), Some(60));
        // b answers a: a's MAC was learned, so only a gets it.
        assert!(b.transmit(&frame(1, 2, 2)));
        assert_eq!(a.receive(&mut buf), Some(60));
        assert_eq!(buf[14], 2);
        assert_eq!(c.receive(&mut buf), None);
        // A port with its link down receives nothing.
        lc.set(false);
        assert!(
            a.transmit(&frame(0xFF, 1, 3)),
            "b still receives the broadcast"
        );
        assert_eq!(c.receive(&mut buf), None);
        assert_eq!(b.receive(&mut buf), Some(60));
    }

    #[test]
    fn queues_are_bounded() {
        let (mut l, lc) = Loopback::new(2);
        assert!(l.transmit(&[1; 60]));
        assert!(l.transmit(&[2; 60]));
        assert!(!l.transmit(&[3; 60]));
        assert_eq!(lc.dropped(), 1);
        let mut buf = [0u8; 100];
        assert_eq!(l.receive(&mut buf), Some(60));
        assert_eq!(buf[0], 1);
        assert!(!l.transmit(&[0; MAX_FRAME + 1]));
    }

    #[test]
    fn jumbo_queues_carry_their_frame_size_and_no_more() {
        let mut q = FrameQueue::with_max_frame(2, frame_size(MAX_MTU));
        assert_eq!(q.max_frame(), MAX_JUMBO_FRAME);
        let big: Vec<u8> = (0..MAX_JUMBO_FRAME).map(|i| i as u8).collect();
        assert!(q.push(&big));
        assert!(!q.push(&[0; MAX_JUMBO_FRAME + 1]));
        assert!(q.push(&[7; 60]));
        let mut buf = vec![0u8; MAX_JUMBO_FRAME];
        assert_eq!(q.pop(&mut buf), Some(MAX_JUMBO_FRAME));
        assert_eq!(buf, big);
        assert_eq!(q.pop(&mut buf), Some(60));
        assert_eq!(q.pop(&mut buf), None);
        // A switch port reports its size to the NIC.
        let sw = Switch::with_max_frame(4, 4000);
        assert_eq!(sw.port().0.max_frame(), 4000);
        assert_eq!(Loopback::new(4).0.max_frame(), MAX_FRAME);
    }
}
