//! The loopback backend: what the guest sends comes back to it.

use super::{FrameMeta, LinkControl, MAX_FRAME, NetEndpoint, NetTxQueue, Port};
use std::sync::Arc;

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
    /// [`frame_size`](super::frame_size) of the MTU, at most [`MAX_JUMBO_FRAME`](super::MAX_JUMBO_FRAME)).
    pub fn with_max_frame(depth: usize, max_frame: usize) -> (Self, LinkControl) {
        Self::with_queues(depth, max_frame, 1)
    }

    /// [`Loopback::with_max_frame`] with `queues` receive queues of `depth` frames
    /// each (see [`NetEndpoint::rx_queues`]).
    pub fn with_queues(depth: usize, max_frame: usize, queues: u16) -> (Self, LinkControl) {
        let port = Port::new(depth, max_frame, queues);
        let link = LinkControl::of(&port);
        (Self { port }, link)
    }
}

/// A transmit queue of a [`Loopback`].
struct LoopbackTx(Arc<Port>);

impl NetTxQueue for LoopbackTx {
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.0.is_up() && self.0.deliver(frame, meta)
    }
}

impl NetEndpoint for Loopback {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.transmit_meta(frame, FrameMeta::default())
    }
    fn take_tx_queue(&mut self, _q: u16) -> Option<Box<dyn NetTxQueue>> {
        Some(Box::new(LoopbackTx(self.port.clone())))
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.port.is_up() && self.port.deliver(frame, meta)
    }
    fn link_up(&self) -> bool {
        self.port.is_up()
    }
    inbound_methods!(port.rx);
}
