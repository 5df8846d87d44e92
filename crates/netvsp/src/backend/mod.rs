//! Network backends: where a NIC's frames go and come from.
//!
//! A backend hands each NIC a [`NetEndpoint`]. Frames are copied into bounded queues of
//! preallocated slots ([`FrameQueue`]), so the steady state allocates nothing; a full
//! queue drops (and counts) rather than grows.

use crate::sync::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vmbus_ring::Wake;

pub use crate::frame::{
    FrameMeta, Gso, MAX_FRAME, MAX_JUMBO_FRAME, MAX_MTU, TxOffload, TxOffloadSupport, frame_size,
};

/// How a multi-queue backend spreads received frames over a NIC's queues: the queue
/// for a frame and its RSS hash (`None`: queue 0, no hash). The NIC builds it from the
/// guest's RSS settings and installs it with [`NetEndpoint::set_steering`]; the backend
/// calls it on whatever thread delivers the frame.
pub type Steer = Arc<dyn Fn(&[u8]) -> Option<(u16, u32)> + Send + Sync>;

/// A transmit queue of a backend ([`NetEndpoint::take_tx_queue`]): a NIC queue's thread
/// sends through it without sharing the endpoint (and its lock) with the other queues.
/// The endpoint itself is one too (for the queues that have none of their own).
pub trait NetTxQueue: Send + 'static {
    /// A frame the guest sent, with what netvsp knows about it; false if dropped.
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool;
    /// What [`NetTxQueue::transmit_offload`] can do (default: nothing).
    fn tx_offload_support(&self) -> TxOffloadSupport {
        TxOffloadSupport::default()
    }
    /// A frame with `offload` work left, as [`NetEndpoint::transmit_offload`].
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        let _ = offload;
        self.transmit_meta(frame, FrameMeta::default())
    }
}

/// A backend chosen at run time is one too (so it can be wrapped, e.g. in a
/// [`crate::pcap::Capture`]): every method goes to the boxed one.
impl NetEndpoint for Box<dyn NetEndpoint> {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        (**self).transmit(frame)
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        (**self).transmit_meta(frame, meta)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        (**self).tx_offload_support()
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        (**self).transmit_offload(frame, offload)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        (**self).receive(buf)
    }
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        (**self).receive_meta(buf)
    }
    fn receive_with(&mut self, scratch: &mut [u8], f: &mut dyn FnMut(&[u8], FrameMeta)) -> bool {
        (**self).receive_with(scratch, f)
    }
    fn set_waker(&mut self, waker: Arc<dyn Wake>) {
        (**self).set_waker(waker)
    }
    fn link_up(&self) -> bool {
        (**self).link_up()
    }
    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }
    fn rx_queues(&self) -> u16 {
        (**self).rx_queues()
    }
    fn take_rx_queue(&mut self, q: u16, waker: Arc<dyn Wake>) -> Option<Box<dyn NetRxQueue>> {
        (**self).take_rx_queue(q, waker)
    }
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        (**self).take_tx_queue(q)
    }
    fn set_steering(&mut self, steer: Option<Steer>) {
        (**self).set_steering(steer)
    }
}

impl NetTxQueue for Box<dyn NetEndpoint> {
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        (**self).transmit_meta(frame, meta)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        (**self).tx_offload_support()
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        (**self).transmit_offload(frame, offload)
    }
}

/// One receive queue of a multi-queue backend ([`NetEndpoint::take_rx_queue`]), pulled
/// by the NIC queue's own thread.
pub trait NetRxQueue: Send + 'static {
    /// Copies the next frame of this queue into `buf`; its length and meta.
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)>;
    /// Hands the next frame to `f`; whether there was one. See
    /// [`NetEndpoint::receive_with`].
    fn receive_with(&mut self, scratch: &mut [u8], f: &mut dyn FnMut(&[u8], FrameMeta)) -> bool {
        lend_copied(self.receive_meta(scratch), scratch, f)
    }
}

/// [`NetEndpoint::receive_with`] for a backend that can only copy: the frame copied
/// into `scratch` goes to `f`.
fn lend_copied(
    received: Option<(usize, FrameMeta)>,
    scratch: &[u8],
    f: &mut dyn FnMut(&[u8], FrameMeta),
) -> bool {
    match received {
        Some((n, meta)) => {
            f(scratch.get(..n).unwrap_or(&[]), meta);
            true
        }
        None => false,
    }
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
    /// Hands the next frame for the guest, with its meta, to `f`; returns whether
    /// there was one. A backend that queues frames in its own memory lends the frame
    /// where it lies (the NIC then copies it once, into the guest's buffer), holding
    /// that queue while `f` runs; the default copies it into `scratch` (at least
    /// [`NetEndpoint::max_frame`] bytes) with [`NetEndpoint::receive_meta`] first.
    fn receive_with(&mut self, scratch: &mut [u8], f: &mut dyn FnMut(&[u8], FrameMeta)) -> bool {
        let received = self.receive_meta(scratch);
        lend_copied(received, scratch, f)
    }
    /// What to wake when a frame arrives or the link changes.
    fn set_waker(&mut self, waker: Arc<dyn Wake>);
    /// Whether the link is up.
    fn link_up(&self) -> bool;
    /// The largest frame the backend carries (default [`MAX_FRAME`], the 1500-byte
    /// MTU): netvsp never offers the guest an MTU above it.
    fn max_frame(&self) -> usize {
        MAX_FRAME
    }
    /// Receive queues the backend has (default 1: every frame comes through
    /// [`NetEndpoint::receive_meta`]). With more, a multi-queue NIC takes queue `q` for
    /// its subchannel `q` ([`NetEndpoint::take_rx_queue`]), so received frames are
    /// pulled and copied into the guest in parallel, and tells the backend how to
    /// spread them ([`NetEndpoint::set_steering`]).
    fn rx_queues(&self) -> u16 {
        1
    }
    /// Receive queue `q` (1 to `rx_queues() - 1`) for another thread; `waker` is rung
    /// when a frame arrives there. `None`: no such queue, or it is taken. Dropping the
    /// queue gives it back.
    fn take_rx_queue(&mut self, q: u16, waker: Arc<dyn Wake>) -> Option<Box<dyn NetRxQueue>> {
        let _ = (q, waker);
        None
    }
    /// A transmit queue for NIC queue `q` (1 and up), used from that queue's thread while
    /// the endpoint is used elsewhere (default `None`: every queue transmits through the
    /// endpoint, one at a time).
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        let _ = q;
        None
    }
    /// How to spread received frames from now on (`None`: all to queue 0, no hash).
    /// The NIC sends a new one whenever the guest's RSS settings or its set of running
    /// queues change; a frame steered to a queue nobody took goes to queue 0.
    fn set_steering(&mut self, steer: Option<Steer>) {
        let _ = steer;
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
        self.pop_with(|frame, meta| {
            let m = frame.len().min(buf.len());
            if let (Some(d), Some(f)) = (buf.get_mut(..m), frame.get(..m)) {
                d.copy_from_slice(f);
            }
            (
                m,
                if m == frame.len() {
                    meta
                } else {
                    FrameMeta::default()
                },
            )
        })
    }

    /// Hands the oldest frame and its meta to `f` where it lies, then removes it;
    /// `None` if the queue is empty.
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&[u8], FrameMeta) -> R) -> Option<R> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.len -= 1;
        // An empty queue starts over at slot 0, so one that drains as it fills stays on
        // its first (cache-hot) slots rather than cycling through all of them.
        self.head = if self.len == 0 {
            0
        } else {
            (i + 1) % self.lens.len()
        };
        let n = usize::from(*self.lens.get(i)?);
        let at = i * self.slot_size;
        let meta = self.metas.get(i).copied().unwrap_or_default();
        Some(f(self.slots.get(at..at + n)?, meta))
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every frame; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.head = 0;
        self.len = 0;
        n
    }
}

/// The receive-side [`NetEndpoint`] methods of an endpoint whose inbound side is the
/// [`RxQueues`] at `self.$field` (or `self.$a.$b`).
macro_rules! inbound_methods {
    ($($field:ident).+) => {
        fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
            self.$($field).+.pop(0, buf).map(|(n, _)| n)
        }
        fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, $crate::backend::FrameMeta)> {
            self.$($field).+.pop(0, buf)
        }
        fn receive_with(
            &mut self,
            _scratch: &mut [u8],
            f: &mut dyn FnMut(&[u8], $crate::backend::FrameMeta),
        ) -> bool {
            self.$($field).+.pop_with(0, f)
        }
        fn set_waker(&mut self, waker: ::std::sync::Arc<dyn vmbus_ring::Wake>) {
            self.$($field).+.set_waker(waker)
        }
        fn max_frame(&self) -> usize {
            self.$($field).+.max_frame()
        }
        fn rx_queues(&self) -> u16 {
            self.$($field).+.count()
        }
        fn take_rx_queue(&mut self, q: u16, waker: ::std::sync::Arc<dyn vmbus_ring::Wake>) -> Option<Box<dyn $crate::backend::NetRxQueue>> {
            self.$($field).+.take(q, waker)
        }
        fn set_steering(&mut self, steer: Option<$crate::backend::Steer>) {
            self.$($field).+.set_steering(steer);
        }
    };
}

/// A receive queue's waker, and whether a NIC queue took it.
type QueueWaker = (Option<Arc<dyn Wake>>, bool);

/// A backend's inbound side: one bounded queue per receive queue, their wakers, and
/// the NIC's steering between them. A frame goes to the queue the steering names if a
/// NIC queue took it, else to queue 0.
pub(crate) struct RxQueues {
    queues: Vec<Mutex<FrameQueue>>,
    /// Per queue: the waker, and whether a NIC queue took it (queue 0 always counts).
    wakers: Mutex<Vec<QueueWaker>>,
    steer: Mutex<Option<Steer>>,
    /// The link (the backend's cable): while it is down nothing is queued.
    link: Arc<AtomicBool>,
    /// Frames dropped because their queue was full, they were too long, or the link
    /// was down.
    pub(crate) dropped: AtomicU64,
}

impl RxQueues {
    /// Queues of `depth` frames of up to `max_frame` bytes, taking frames while `link`
    /// is up.
    pub(crate) fn new(
        depth: usize,
        max_frame: usize,
        queues: u16,
        link: Arc<AtomicBool>,
    ) -> Arc<Self> {
        let n = usize::from(queues.max(1));
        Arc::new(Self {
            queues: (0..n)
                .map(|_| Mutex::new(FrameQueue::with_max_frame(depth, max_frame)))
                .collect(),
            wakers: Mutex::new(vec![(None, false); n]),
            steer: Mutex::new(None),
            link,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a frame where the steering says and wakes its reader; false (counted) if
    /// that queue is full, the frame too long or the link down.
    pub(crate) fn deliver(&self, frame: &[u8], mut meta: FrameMeta) -> bool {
        meta.rss_hash = None;
        let mut q = 0;
        if self.queues.len() > 1
            && let Some(steer) = lock(&self.steer).clone()
            && let Some((to, hash)) = steer(frame)
        {
            meta.rss_hash = Some(hash);
            if lock(&self.wakers)
                .get(usize::from(to))
                .is_some_and(|(_, taken)| *taken)
            {
                q = usize::from(to);
            }
        }
        // The link is read under the queue's lock, so once `set_link(false)` has
        // emptied a queue nothing more lands in it.
        let ok = self.queues.get(q).is_some_and(|fq| {
            let mut fq = lock(fq);
            self.link.load(Ordering::SeqCst) && fq.push_meta(frame, meta)
        });
        if ok {
            self.wake(q);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Sets the link; taking it down drops (and counts) what the queues still hold, so
    /// the guest gets no frame that arrived before the cable was pulled after it hears
    /// of the pull. Wakes queue 0 so the NIC can tell the guest.
    pub(crate) fn set_link(&self, up: bool) {
        self.link.store(up, Ordering::SeqCst);
        if !up {
            for fq in &self.queues {
                let n = lock(fq).clear();
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        self.wake(0);
    }

    pub(crate) fn wake(&self, q: usize) {
        if let Some((Some(w), _)) = lock(&self.wakers).get(q) {
            w.wake();
        }
    }

    pub(crate) fn pop(&self, q: usize, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        lock(self.queues.get(q)?).pop_meta(buf)
    }

    /// Lends queue `q`'s oldest frame to `f` (queue locked meanwhile); whether there
    /// was one.
    pub(crate) fn pop_with(&self, q: usize, f: &mut dyn FnMut(&[u8], FrameMeta)) -> bool {
        self.queues
            .get(q)
            .and_then(|fq| lock(fq).pop_with(f))
            .is_some()
    }

    /// Queue 0's waker (the NIC's).
    pub(crate) fn set_waker(&self, waker: Arc<dyn Wake>) {
        if let Some(w) = lock(&self.wakers).first_mut() {
            *w = (Some(waker), true);
        }
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.queues
            .first()
            .map_or(MAX_FRAME, |q| lock(q).max_frame())
    }

    pub(crate) fn count(&self) -> u16 {
        self.queues.len() as u16
    }

    pub(crate) fn set_steering(&self, steer: Option<Steer>) {
        *lock(&self.steer) = steer;
    }

    /// Hands out receive queue `q` (1..) to a NIC queue's thread.
    pub(crate) fn take(
        self: &Arc<Self>,
        q: u16,
        waker: Arc<dyn Wake>,
    ) -> Option<Box<dyn NetRxQueue>> {
        let mut wakers = lock(&self.wakers);
        let slot = wakers.get_mut(usize::from(q)).filter(|_| q > 0)?;
        if slot.1 {
            return None;
        }
        *slot = (Some(waker), true);
        Some(Box::new(TakenQueue {
            rx: self.clone(),
            q: usize::from(q),
        }))
    }
}

/// Shared state of one port: its inbound queues, link and learned MAC.
struct Port {
    rx: Arc<RxQueues>,
    link: Arc<AtomicBool>,
    mac: Mutex<Option<[u8; 6]>>,
    /// The only source MAC the port may send from (`None`: any, learned as it comes).
    permitted: Option<[u8; 6]>,
}

impl Port {
    fn new(depth: usize, max_frame: usize, queues: u16) -> Arc<Self> {
        let link = Arc::new(AtomicBool::new(true));
        Arc::new(Self {
            rx: RxQueues::new(depth, max_frame, queues, link.clone()),
            link,
            mac: Mutex::new(None),
            permitted: None,
        })
    }

    fn deliver(&self, frame: &[u8], meta: FrameMeta) -> bool {
        self.rx.deliver(frame, meta)
    }

    fn is_up(&self) -> bool {
        self.link.load(Ordering::SeqCst)
    }
}

/// One taken receive queue; dropping it gives the queue back (frames steered there
/// then go to queue 0, and what it still held moves to queue 0).
struct TakenQueue {
    rx: Arc<RxQueues>,
    q: usize,
}

impl NetRxQueue for TakenQueue {
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.rx.pop(self.q, buf)
    }
    fn receive_with(&mut self, _scratch: &mut [u8], f: &mut dyn FnMut(&[u8], FrameMeta)) -> bool {
        self.rx.pop_with(self.q, f)
    }
}

impl Drop for TakenQueue {
    fn drop(&mut self) {
        if let Some(slot) = lock(&self.rx.wakers).get_mut(self.q) {
            *slot = (None, false);
        }
        if let (Some(from), Some(q0)) = (self.rx.queues.get(self.q), self.rx.queues.first()) {
            let mut buf = vec![0u8; MAX_JUMBO_FRAME];
            loop {
                // One lock at a time.
                let popped = lock(from).pop_meta(&mut buf);
                let Some((n, meta)) = popped else { break };
                if let Some(f) = buf.get(..n) {
                    lock(q0).push_meta(f, meta);
                }
            }
        }
        self.rx.wake(0);
    }
}

/// Sets a backend's link state from outside (the VMM's "cable", tests): a switch
/// port's, a loopback's or a TAP's. While it is down the backend neither delivers nor
/// sends frames, and the NIC tells the guest (media disconnect).
#[derive(Clone)]
pub struct LinkControl {
    rx: Arc<RxQueues>,
}

impl LinkControl {
    /// The control of `rx`'s link.
    pub(crate) fn new(rx: Arc<RxQueues>) -> Self {
        Self { rx }
    }

    fn of(port: &Port) -> Self {
        Self::new(port.rx.clone())
    }

    /// Sets the link up or down and wakes the NIC so it can tell the guest. Frames
    /// still queued for the guest when the link goes down are dropped and counted in
    /// [`LinkControl::dropped`]; those the NIC has already taken reach the guest
    /// before the media-disconnect indication.
    pub fn set(&self, up: bool) {
        self.rx.set_link(up);
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.rx.link.load(Ordering::SeqCst)
    }

    /// Frames dropped because a receive queue was full, they were too long, or they
    /// arrived (or were still queued) while the link was down.
    pub fn dropped(&self) -> u64 {
        self.rx.dropped.load(Ordering::Relaxed)
    }
}

mod loopback;
pub mod pcap;
mod switch;
#[cfg(target_os = "linux")]
pub mod tap;

pub use loopback::Loopback;
pub use switch::{Switch, SwitchPort};

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
    fn pulling_the_cable_drops_what_was_queued_and_counts_it() {
        let port = Port::new(8, MAX_FRAME, 1);
        let link = LinkControl::of(&port);
        let mut buf = [0u8; 1518];
        assert!(port.deliver(&frame(2, 1, 1), FrameMeta::default()));
        assert!(port.deliver(&frame(2, 1, 2), FrameMeta::default()));
        link.set(false);
        assert_eq!(link.dropped(), 2, "the two queued frames were dropped");
        assert_eq!(port.rx.pop(0, &mut buf), None);
        // Delivered straight to the queues (as a TAP's reader does): refused while down.
        assert!(!port.deliver(&frame(2, 1, 3), FrameMeta::default()));
        assert_eq!(link.dropped(), 3);
        link.set(true);
        assert!(port.deliver(&frame(2, 1, 4), FrameMeta::default()));
        assert_eq!(port.rx.pop(0, &mut buf).map(|(n, _)| n), Some(60));
        assert_eq!(buf[14], 4);
    }

    #[test]
    fn frames_are_lent_in_order_with_their_meta() {
        let sw = Switch::new(8);
        let (mut a, _) = sw.port();
        let (b, _) = sw.port();
        let mut b: Box<dyn NetEndpoint> = Box::new(b);
        let meta = FrameMeta {
            l4_checksum_valid: true,
            ip4_checksum_valid: true,
            rss_hash: None,
        };
        assert!(a.transmit_meta(&frame(0xFF, 1, 1), meta));
        assert!(a.transmit(&frame(0xFF, 1, 2)));
        let mut got = Vec::new();
        // No scratch needed: the switch's queue lends its slot.
        while b.receive_with(&mut [], &mut |f, m| got.push((f[14], f.len(), m))) {}
        assert_eq!(
            got,
            [(1, 60, meta), (2, 60, FrameMeta::default())],
            "both frames, in order, each with its meta"
        );
        // A backend that only copies gets the default: into the scratch, then lent.
        let (mut l, _) = Loopback::new(4);
        assert!(l.transmit(&frame(0xFF, 1, 3)));
        let mut copied = Copying(Box::new(l));
        let mut scratch = [0u8; MAX_FRAME];
        let mut seen = None;
        assert!(copied.receive_with(&mut scratch, &mut |f, _| seen = Some((f[14], f.len()))));
        assert_eq!(seen, Some((3, 60)));
        assert!(!copied.receive_with(&mut scratch, &mut |_, _| panic!("no frame left")));
    }

    /// An endpoint with only the required receive method.
    struct Copying(Box<dyn NetEndpoint>);

    impl NetEndpoint for Copying {
        fn transmit(&mut self, frame: &[u8]) -> bool {
            self.0.transmit(frame)
        }
        fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
            self.0.receive(buf)
        }
        fn set_waker(&mut self, waker: Arc<dyn Wake>) {
            self.0.set_waker(waker)
        }
        fn link_up(&self) -> bool {
            self.0.link_up()
        }
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
    fn a_frame_queue_keeps_order_across_the_wrap_and_starts_over_when_empty() {
        let mut q = FrameQueue::new(3);
        let mut buf = [0u8; MAX_FRAME];
        assert!(q.push(&[1; 60]) && q.push(&[2; 61]));
        assert_eq!(q.pop(&mut buf), Some(60));
        // Slots 2 and 0: the ring wraps; a fourth frame does not fit.
        assert!(q.push(&[3; 62]) && q.push(&[4; 63]));
        assert!(!q.push(&[5; 60]));
        for (b, n) in [(2u8, 61), (3, 62), (4, 63)] {
            assert_eq!(q.pop(&mut buf), Some(n));
            assert_eq!(buf[0], b);
        }
        assert_eq!(q.pop(&mut buf), None);
        assert_eq!(q.head, 0, "an empty queue reuses its first slot");
        assert!(q.push(&[6; 60]));
        assert_eq!(q.pop(&mut buf), Some(60));
        assert_eq!(buf[0], 6);
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

    #[test]
    fn a_multi_queue_port_steers_to_taken_queues() {
        let sw = Switch::with_queues(8, MAX_FRAME, 3);
        let (mut a, _) = sw.port();
        let (mut b, _) = sw.port();
        assert_eq!((b.rx_queues(), Switch::new(8).port().0.rx_queues()), (3, 1));
        let waker = Arc::new(vmbus_ring::Doorbell::new());
        let mut q1 = b.take_rx_queue(1, waker.clone()).expect("queue 1");
        assert!(b.take_rx_queue(1, waker.clone()).is_none(), "taken once");
        assert!(
            b.take_rx_queue(0, waker.clone()).is_none(),
            "0 is the endpoint's"
        );
        assert!(b.take_rx_queue(3, waker.clone()).is_none(), "no queue 3");
        // Steering by the tag byte: 1 -> queue 1, 2 -> queue 2 (not taken), else none.
        b.set_steering(Some(Arc::new(|f: &[u8]| match f.get(14) {
            Some(&1) => Some((1, 0x11)),
            Some(&2) => Some((2, 0x22)),
            _ => None,
        })));
        let mut buf = [0u8; 1518];
        let _ = waker.take();
        for tag in [1, 2, 3, 1] {
            assert!(a.transmit(&frame(0xFF, 1, tag)));
        }
        assert!(waker.take(), "queue 1's waker rang");
        let got = |r: Option<(usize, FrameMeta)>, buf: &[u8]| r.map(|(_, m)| (buf[14], m.rss_hash));
        let r = q1.receive_meta(&mut buf);
        assert_eq!(got(r, &buf), Some((1, Some(0x11))));
        let r = q1.receive_meta(&mut buf);
        assert_eq!(got(r, &buf), Some((1, Some(0x11))));
        assert!(q1.receive_meta(&mut buf).is_none());
        // Queue 2 is not taken: its frame went to queue 0, hash kept; no hash for 3.
        let r = b.receive_meta(&mut buf);
        assert_eq!(got(r, &buf), Some((2, Some(0x22))));
        let r = b.receive_meta(&mut buf);
        assert_eq!(got(r, &buf), Some((3, None)));
        // Giving queue 1 back moves what it still held to queue 0.
        assert!(a.transmit(&frame(0xFF, 1, 1)));
        drop(q1);
        let r = b.receive_meta(&mut buf);
        assert_eq!(got(r, &buf), Some((1, Some(0x11))));
        assert!(a.transmit(&frame(0xFF, 1, 1)));
        let r = b.receive_meta(&mut buf);
        assert_eq!(got(r, &buf), Some((1, Some(0x11))), "now to queue 0");
        assert!(b.take_rx_queue(1, waker).is_some(), "free to take again");
    }
}
