//! An open channel: a ring pair plus event signalling, on either side of the bus.
//!
//! A [`Channel`] is a [`Sender`] (the ring this side writes) and a [`Receiver`] (the
//! ring it reads). They may be moved to different threads. One peer signal (an event
//! flag plus SINT towards the guest, HvSignalEvent towards the host) means "data or
//! space may be available" and wakes both halves; each half decides from the ring's
//! signal rules whether the peer must be signalled back.

use crate::sync::{Lock, lock};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use vmbus_ring::{
    Doorbell, IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, ReadError, RingError,
    RingMem, WaitPolicy, Wake, WriteError,
};

/// Ring memory as channels hold it.
pub type Ring = Arc<dyn RingMem>;

/// How a channel of a polled bus waits: runs the bus (handles the interrupts that
/// arrived, which ring the channel's doorbells) for up to the given time.
pub type Idle = Arc<dyn Fn(Duration) + Send + Sync>;

/// Why a channel operation failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel was closed (by either side, a rescind or an unload).
    #[error("channel closed")]
    Closed,
    /// Nothing to read (non-blocking receive).
    #[error("no packet available")]
    Empty,
    /// No space to write (non-blocking send); `needed` bytes must free up.
    #[error("ring full: {needed} bytes needed")]
    Full {
        /// Bytes needed.
        needed: usize,
    },
    /// The packet can never fit this ring.
    #[error("packet of {0} bytes can never fit")]
    TooLarge(usize),
    /// The peer corrupted the ring: close the channel.
    #[error("peer corrupted the ring: {0}")]
    Corrupt(RingError),
}

impl From<WriteError> for ChannelError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Full { needed } => Self::Full { needed },
            WriteError::TooLarge(n) => Self::TooLarge(n),
            WriteError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

impl From<RingError> for ChannelError {
    fn from(e: RingError) -> Self {
        Self::Corrupt(e)
    }
}

vmbus_ring::counters! {
    /// Counters of one channel side.
    pub struct ChannelStats;
    /// The atomics behind [`ChannelStats`].
    pub(crate) struct ChannelCounters;
    {
        /// Signals sent to the peer.
        signals_sent: one,
        /// Signals received from the peer.
        signals_received: one,
    }
}

/// State shared by the two halves of a channel and by the bus that routes the peer's
/// signals to it.
pub struct ChannelShared {
    rx_bell: Doorbell,
    tx_bell: Doorbell,
    waker: Lock<Option<Arc<dyn Wake>>>,
    closed: AtomicBool,
    signal: Box<dyn Fn() + Send + Sync>,
    /// Set on a polled bus: waits run the bus instead of sleeping on a doorbell.
    idle: Option<Idle>,
    /// Counters.
    stats: ChannelCounters,
    /// What must live as long as the channel (the lease on its ring GPADL).
    held: Lock<Vec<Arc<dyn core::any::Any + Send + Sync>>>,
}

impl ChannelShared {
    /// Shared state whose `signal` notifies the peer.
    pub fn new(signal: Box<dyn Fn() + Send + Sync>) -> Arc<Self> {
        Self::build(signal, None)
    }

    /// Shared state of a channel whose peer signals arrive only when someone runs the
    /// bus (a polled bus): every wait of the channel's halves, and
    /// [`ChannelShared::wait_bell`], calls `idle` instead of sleeping.
    pub fn with_idle(signal: Box<dyn Fn() + Send + Sync>, idle: Idle) -> Arc<Self> {
        Self::build(signal, Some(idle))
    }

    fn build(signal: Box<dyn Fn() + Send + Sync>, idle: Option<Idle>) -> Arc<Self> {
        Arc::new(Self {
            rx_bell: Doorbell::new(),
            tx_bell: Doorbell::new(),
            waker: Lock::new(None),
            closed: AtomicBool::new(false),
            signal,
            idle,
            stats: ChannelCounters::default(),
            held: Lock::new(Vec::new()),
        })
    }

    /// Keeps `value` alive as long as the channel (its halves and the bus's record).
    pub fn keep_alive(&self, value: Arc<dyn core::any::Any + Send + Sync>) {
        lock(&self.held).push(value);
    }

    /// The peer signalled: wake both halves (and the waker, if one is set).
    pub fn notify(&self) {
        self.stats.signals_received.fetch_add(1, Ordering::Relaxed);
        self.rx_bell.ring();
        self.tx_bell.ring();
        self.ring_waker();
    }

    fn ring_waker(&self) {
        if let Some(w) = lock(&self.waker).as_ref() {
            w.wake();
        }
    }

    /// Also wakes `waker` on every peer signal and on close: for a worker that waits
    /// for several sources (a channel and a network backend) on one doorbell, or a VMM
    /// that polls the channel's owner from its event loop (an [`vmbus_ring::EventFd`]).
    pub fn set_waker(&self, waker: Arc<dyn Wake>) {
        *lock(&self.waker) = Some(waker);
    }

    /// Marks the channel closed and wakes both halves, which then fail with
    /// [`ChannelError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.rx_bell.ring();
        self.tx_bell.ring();
        self.ring_waker();
    }

    /// A snapshot of the signal counters.
    pub fn stats(&self) -> ChannelStats {
        self.stats.snapshot()
    }

    /// Whether the channel was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for `bell` (this channel's waker, or one of the
    /// halves' doorbells) the way the channel's bus delivers signals: asleep on the
    /// doorbell, or, on a polled bus, running the bus until something arrives or the
    /// time is up. `true` if the bell rang.
    /// Without `std`, a channel made without `idle` cannot sleep: the call only
    /// takes the bell, and the caller's loop spins.
    pub fn wait_bell(&self, bell: &Doorbell, timeout: Duration) -> bool {
        match &self.idle {
            #[cfg(feature = "std")]
            None => bell.wait(timeout),
            #[cfg(not(feature = "std"))]
            None => {
                let _ = timeout;
                core::hint::spin_loop();
                bell.take()
            }
            Some(idle) => {
                if bell.take() {
                    return true;
                }
                idle(timeout);
                bell.take()
            }
        }
    }

    /// Whether waits run the bus ([`ChannelShared::with_idle`]).
    pub fn is_polled(&self) -> bool {
        self.idle.is_some()
    }

    fn signal_peer(&self) {
        self.stats.signals_sent.fetch_add(1, Ordering::Relaxed);
        (self.signal)();
    }
}

/// The writing half of a channel.
pub struct Sender {
    ring: OutgoingRing<Ring>,
    shared: Arc<ChannelShared>,
    policy: WaitPolicy,
}

/// The reading half of a channel.
pub struct Receiver {
    ring: IncomingRing<Ring>,
    shared: Arc<ChannelShared>,
    policy: WaitPolicy,
}

/// An open channel.
pub struct Channel {
    /// The channel's relid.
    pub relid: u32,
    /// Subchannel index (0 for a primary channel).
    pub subchannel_index: u16,
    /// The writing half.
    pub sender: Sender,
    /// The reading half.
    pub receiver: Receiver,
}

impl Channel {
    /// Builds a channel from its two rings. `outgoing` is the ring this side writes.
    pub fn new(
        relid: u32,
        subchannel_index: u16,
        outgoing: Ring,
        incoming: Ring,
        shared: Arc<ChannelShared>,
        policy: WaitPolicy,
    ) -> Result<Self, RingError> {
        Ok(Self {
            relid,
            subchannel_index,
            sender: Sender {
                ring: OutgoingRing::new(outgoing)?,
                shared: shared.clone(),
                policy,
            },
            receiver: Receiver {
                ring: IncomingRing::new(incoming)?,
                shared,
                policy,
            },
        })
    }

    /// The shared state (close, counters).
    pub fn shared(&self) -> &Arc<ChannelShared> {
        &self.sender.shared
    }
}

impl Sender {
    /// Writes a packet without publishing it (batching); waits for space if the ring is
    /// full. Call [`Sender::flush`] to publish.
    pub fn write(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<(), ChannelError> {
        let mut spins = 0u32;
        loop {
            if self.shared.is_closed() {
                return Err(ChannelError::Closed);
            }
            match self.ring.try_write(packet, payload) {
                Ok(()) => return Ok(()),
                Err(WriteError::Full { needed }) => {
                    self.flush();
                    if spins < self.policy.spin {
                        spins += 1;
                        core::hint::spin_loop();
                        continue;
                    }
                    if !self.ring.prepare_wait(needed)? {
                        self.shared
                            .wait_bell(&self.shared.tx_bell, self.policy.max_sleep);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Publishes written packets and signals the peer if the ring rules say so.
    pub fn flush(&mut self) {
        if self.ring.commit() {
            self.shared.signal_peer();
        }
    }

    /// Writes one packet (waiting for space) and publishes it.
    pub fn send(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<(), ChannelError> {
        self.write(packet, payload)?;
        self.flush();
        Ok(())
    }

    /// The shared state (close, waker, counters).
    pub fn shared(&self) -> &Arc<ChannelShared> {
        &self.shared
    }

    /// Writes one packet without publishing it if there is space now (no waiting).
    pub fn try_write(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<(), ChannelError> {
        if self.shared.is_closed() {
            return Err(ChannelError::Closed);
        }
        Ok(self.ring.try_write(packet, payload)?)
    }

    /// After [`Sender::try_write`] failed with [`ChannelError::Full`]: publishes what
    /// was written and asks the peer to signal once `needed` bytes are free (the ring's
    /// `pending_send_sz`; the signal rings the channel's waker). `Ok(true)`: the space
    /// is already there, write again now.
    pub fn arm_space_signal(&mut self, needed: usize) -> Result<bool, ChannelError> {
        self.flush();
        Ok(self.ring.prepare_wait(needed)?)
    }

    /// [`Sender::try_write`] that, when the ring is full, arms the space signal
    /// ([`Sender::arm_space_signal`]) and tries once more if the room turned up in
    /// between; `Ok(false)`: still full, the peer will signal.
    pub fn try_write_or_arm(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<bool, ChannelError> {
        match self.try_write(packet, payload) {
            Ok(()) => Ok(true),
            Err(ChannelError::Full { needed }) => {
                if !self.arm_space_signal(needed)? {
                    return Ok(false);
                }
                match self.try_write(packet, payload) {
                    Ok(()) => Ok(true),
                    Err(ChannelError::Full { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Writes and publishes one packet if there is space now.
    pub fn try_send(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<(), ChannelError> {
        if self.shared.is_closed() {
            return Err(ChannelError::Closed);
        }
        self.ring.try_write(packet, payload)?;
        self.flush();
        Ok(())
    }

    /// Ring counters.
    pub fn stats(&self) -> vmbus_ring::WriterStats {
        self.ring.stats()
    }
}

impl Receiver {
    /// The shared state (close, waker, counters).
    pub fn shared(&self) -> &Arc<ChannelShared> {
        &self.shared
    }

    /// Waits until a packet is available (bounded spin, then the interrupt-mask
    /// handshake and sleep).
    pub fn wait(&mut self) -> Result<(), ChannelError> {
        let mut spins = 0u32;
        loop {
            if self.ring.has_data()? {
                return Ok(());
            }
            if self.shared.is_closed() {
                return Err(ChannelError::Closed);
            }
            if spins < self.policy.spin {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            if self.ring.unmask_and_recheck()? {
                return Ok(());
            }
            self.shared
                .wait_bell(&self.shared.rx_bell, self.policy.max_sleep);
        }
    }

    /// Processes up to `max` available packets with `f` (no waiting), then publishes
    /// the read position and signals the peer if it was waiting for space. Returns the
    /// number processed.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&IncomingPacket<'_, Ring>),
    ) -> Result<usize, ChannelError> {
        let mut n = 0;
        self.ring.mask_interrupts();
        while n < max {
            match self.ring.try_read() {
                Ok(p) => {
                    f(&p);
                    n += 1;
                }
                Err(ReadError::Empty) => break,
                Err(ReadError::Corrupt(e)) => return Err(e.into()),
            }
        }
        if self.ring.commit() {
            self.shared.signal_peer();
        }
        Ok(n)
    }

    /// Waits for at least one packet, then processes up to `max` with `f`.
    pub fn recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&IncomingPacket<'_, Ring>),
    ) -> Result<usize, ChannelError> {
        loop {
            self.wait()?;
            let n = self.try_recv_batch(max, &mut f)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Waits for one packet and hands it to `f`.
    pub fn recv<R>(
        &mut self,
        f: impl FnOnce(&IncomingPacket<'_, Ring>) -> R,
    ) -> Result<R, ChannelError> {
        self.wait()?;
        self.try_recv(f)
    }

    /// Hands the next packet to `f` if one is available now.
    pub fn try_recv<R>(
        &mut self,
        f: impl FnOnce(&IncomingPacket<'_, Ring>) -> R,
    ) -> Result<R, ChannelError> {
        let r = match self.ring.try_read() {
            Ok(p) => f(&p),
            Err(ReadError::Empty) => {
                return Err(if self.shared.is_closed() {
                    ChannelError::Closed
                } else {
                    ChannelError::Empty
                });
            }
            Err(ReadError::Corrupt(e)) => return Err(e.into()),
        };
        if self.ring.commit() {
            self.shared.signal_peer();
        }
        Ok(r)
    }

    /// Ring counters.
    pub fn stats(&self) -> vmbus_ring::ReaderStats {
        self.ring.stats()
    }

    /// Before sleeping on an external waker: clears the interrupt mask and re-checks.
    /// `Ok(true)` means data arrived meanwhile (do not sleep).
    pub fn prepare_sleep(&mut self) -> Result<bool, ChannelError> {
        if self.shared.is_closed() {
            return Err(ChannelError::Closed);
        }
        Ok(self.ring.unmask_and_recheck()?)
    }
}
