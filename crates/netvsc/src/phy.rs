//! smoltcp `phy::Device` for a [`Netvsc`] NIC (feature `smoltcp`).
//!
//! Frames are copied once between smoltcp's buffers and the NIC's buffers; no
//! allocation per frame.

use crate::Netvsc;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A [`Netvsc`] as a smoltcp device.
pub struct NetvscPhy {
    nic: Netvsc,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl NetvscPhy {
    /// Wraps a brought-up NIC.
    pub fn new(nic: Netvsc) -> Self {
        let max = nic.max_frame();
        Self {
            nic,
            rx: vec![0; max],
            tx: vec![0; max],
        }
    }

    /// The NIC.
    pub fn nic(&mut self) -> &mut Netvsc {
        &mut self.nic
    }

    /// Waits up to `timeout` for the host to send something.
    pub fn wait(&mut self, timeout: Duration) {
        let _ = self.nic.poll(timeout);
    }
}

/// Receive token: one frame copied out of the receive buffer.
pub struct RxToken<'a>(&'a [u8]);

/// Transmit token: builds the frame in place, then sends it.
pub struct TxToken<'a> {
    nic: &'a mut Netvsc,
    buf: &'a mut [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len());
        let frame = self.buf.get_mut(..len).unwrap_or(&mut []);
        let r = f(frame);
        if let Err(e) = self.nic.send(frame) {
            tracing::debug!(error = %e, "netvsc: smoltcp frame not sent");
        }
        r
    }
}

impl phy::Device for NetvscPhy {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let n = self.nic.recv(&mut self.rx, Duration::ZERO).ok()??;
        Some((
            RxToken(self.rx.get(..n)?),
            TxToken {
                nic: &mut self.nic,
                buf: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            nic: &mut self.nic,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.nic.mtu() as usize + 14;
        c
    }
}
