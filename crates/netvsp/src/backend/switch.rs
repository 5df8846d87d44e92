//! An in-process L2 switch: NICs (and test peers) on ports, MAC learning, floods,
//! and at most one permitted source MAC per port.

use super::{FrameMeta, LinkControl, MAX_FRAME, NetEndpoint, NetTxQueue, Port};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An in-process L2 switch with MAC learning: unicast to the port that last sent from
/// the destination MAC, flood broadcast, multicast and unknown destinations.
pub struct Switch {
    ports: Mutex<Vec<Arc<Port>>>,
    depth: usize,
    max_frame: usize,
    queues: u16,
    /// Frames a port sent from a MAC it may not use, dropped.
    spoofed: AtomicU64,
}

impl Switch {
    /// A switch whose ports queue `depth` frames each.
    pub fn new(depth: usize) -> Arc<Self> {
        Self::with_max_frame(depth, MAX_FRAME)
    }

    /// [`Switch::new`] carrying frames of up to `max_frame` bytes (jumbo frames:
    /// [`frame_size`](super::frame_size) of the MTU, at most [`MAX_JUMBO_FRAME`](super::MAX_JUMBO_FRAME)); longer frames are
    /// dropped and counted.
    pub fn with_max_frame(depth: usize, max_frame: usize) -> Arc<Self> {
        Self::with_queues(depth, max_frame, 1)
    }

    /// [`Switch::with_max_frame`] whose ports have `queues` receive queues of `depth`
    /// frames each: a multi-queue NIC on a port pulls each from its own thread, and
    /// the switch steers every frame to the queue the NIC's RSS picks.
    pub fn with_queues(depth: usize, max_frame: usize, queues: u16) -> Arc<Self> {
        Arc::new(Self {
            ports: Mutex::new(Vec::new()),
            depth,
            max_frame,
            queues,
            spoofed: AtomicU64::new(0),
        })
    }

    /// A new port that may send from any source MAC; the switch learns each as it
    /// comes (a port may then take another's traffic: prefer [`Switch::port_with_mac`]
    /// for guests).
    pub fn port(self: &Arc<Self>) -> (SwitchPort, LinkControl) {
        self.add_port(None)
    }

    /// A new port that may send only from `mac`: the switch learns `mac` for it and
    /// drops (and counts, [`Switch::spoofed`]) frames from any other source MAC, so
    /// one guest cannot steal another's unicast.
    pub fn port_with_mac(self: &Arc<Self>, mac: [u8; 6]) -> (SwitchPort, LinkControl) {
        self.add_port(Some(mac))
    }

    /// Frames dropped because a port sent them from a MAC it may not use.
    pub fn spoofed(&self) -> u64 {
        self.spoofed.load(Ordering::Relaxed)
    }

    fn add_port(self: &Arc<Self>, permitted: Option<[u8; 6]>) -> (SwitchPort, LinkControl) {
        let mut port = Port::new(self.depth, self.max_frame, self.queues);
        if let Some(p) = Arc::get_mut(&mut port) {
            p.permitted = permitted;
            p.mac = Mutex::new(permitted);
        }
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(port.clone());
        (
            SwitchPort {
                switch: self.clone(),
                port: port.clone(),
            },
            LinkControl::of(&port),
        )
    }

    fn forward(&self, from: &Arc<Port>, frame: &[u8], meta: FrameMeta) -> bool {
        let (Some(dst), Some(src)) = (frame.get(0..6), frame.get(6..12)) else {
            return false;
        };
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(src);
        match from.permitted {
            Some(p) if p != src_mac => {
                self.spoofed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Some(_) => {}
            None => *from.mac.lock().unwrap_or_else(|e| e.into_inner()) = Some(src_mac),
        }
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

/// A transmit queue of a [`SwitchPort`].
struct SwitchTx {
    switch: Arc<Switch>,
    port: Arc<Port>,
}

impl NetTxQueue for SwitchTx {
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.port.is_up() && self.switch.forward(&self.port, frame, meta)
    }
}

impl NetEndpoint for SwitchPort {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.transmit_meta(frame, FrameMeta::default())
    }
    fn take_tx_queue(&mut self, _q: u16) -> Option<Box<dyn NetTxQueue>> {
        Some(Box::new(SwitchTx {
            switch: self.switch.clone(),
            port: self.port.clone(),
        }))
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.port.is_up() && self.switch.forward(&self.port, frame, meta)
    }
    fn link_up(&self) -> bool {
        self.port.is_up()
    }
    inbound_methods!(port.rx);
}
