//! Waking and waiting: the [`Wake`] trait every wake-up source implements, a
//! [`Doorbell`] (Condvar) for the library's own threads, an [`EventFd`] for a VMM that
//! polls from epoll, and the spin-then-sleep loops that follow the ring's signal
//! decisions.
//!
//! Measured on two cores (`cargo bench -p vmbus-benches --bench ring`), busy-polling
//! wins while each thread has a core but collapses when a third thread competes, so
//! both loops spin a bounded number of times and then sleep on a [`Doorbell`], after
//! the handshake that guarantees no lost wake-up: the reader clears `interrupt_mask`
//! and re-checks before sleeping; the writer sets `pending_send_sz` and re-checks.
//!
//! **Who wakes whom.** A peer's signal, a network backend with new frames, a queued
//! control request: each calls [`Wake::wake`] on what the worker that must act gave
//! it. Threads of the library give a [`Doorbell`] and sleep on it; a VMM that drives
//! the bus and the NIC from its own event loop (their `poll` APIs) gives an
//! [`EventFd`] (or its own [`Wake`], e.g. one that wakes an async task), registers
//! the fd with epoll, and polls when it fires.
//!
//! Without `std` only the parts that do not sleep remain: [`Doorbell`] can be rung and
//! taken (a polled guest waits through its platform instead), and [`WaitPolicy`].
#[cfg(feature = "std")]
use crate::error::{RingError, WriteError};
#[cfg(feature = "std")]
use crate::mem::RingMem;
#[cfg(feature = "std")]
use crate::ring::{IncomingRing, OutgoingPacket, OutgoingRing};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
#[cfg(feature = "std")]
use std::sync::atomic::AtomicU32;
#[cfg(feature = "std")]
use std::sync::{Condvar, Mutex};

pub use crate::wake::{Wake, WakeFn};

/// A wake-up flag one side rings and the other waits on (the in-process stand-in for
/// an event flag plus interrupt, or HvSignalEvent). Rings are not counted: several
/// rings before a wait wake it once.
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: AtomicBool,
    /// Waiters between registering under the lock and waking up. A ring only takes the
    /// lock (a syscall-free but contended operation) when someone may be asleep.
    #[cfg(feature = "std")]
    sleepers: AtomicU32,
    #[cfg(feature = "std")]
    lock: Mutex<()>,
    #[cfg(feature = "std")]
    cv: Condvar,
    rings: AtomicU64,
    sleeps: AtomicU64,
}

impl Doorbell {
    /// A doorbell that has not been rung.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rings: wakes a waiter, or makes the next wait return at once.
    pub fn ring(&self) {
        self.rings.fetch_add(1, Ordering::Relaxed);
        self.rung.store(true, Ordering::SeqCst);
        // Dekker-style handshake with `wait`: a waiter registers in `sleepers` before
        // checking `rung`, we set `rung` before checking `sleepers` (both SeqCst), so
        // either we see the waiter and notify under the lock, or it sees the ring.
        #[cfg(feature = "std")]
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    /// Consumes a pending ring without waiting; returns whether there was one.
    pub fn take(&self) -> bool {
        self.rung.swap(false, Ordering::SeqCst)
    }

    /// Waits until rung (consuming the ring) or `timeout` passes; returns whether it
    /// was rung.
    #[cfg(feature = "std")]
    pub fn wait(&self, timeout: Duration) -> bool {
        if self.take() {
            return true;
        }
        self.sleeps.fetch_add(1, Ordering::Relaxed);
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + timeout;
        let rung = loop {
            if self.take() {
                break true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break false;
            }
            g = match self.cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        rung
    }

    /// Times rung and times a waiter actually slept.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.rings.load(Ordering::Relaxed),
            self.sleeps.load(Ordering::Relaxed),
        )
    }
}

impl Wake for Doorbell {
    fn wake(&self) {
        self.ring()
    }
}

/// A Linux eventfd as a [`Wake`]: [`Wake::wake`] makes the fd readable, so a VMM's
/// epoll (or an irqfd/ioeventfd-style loop) sees the work; [`EventFd::take`] reads it
/// back. Non-blocking throughout.
///
/// Wakes between two takes write the fd once: a wake that finds one already pending
/// makes no system call. So the owner must call [`EventFd::take`] each time before it
/// polls what the fd stands for (as [`EventFd::wait`] does): `take`, poll, and wait
/// for the fd only when the poll found nothing.
#[cfg(all(feature = "std", target_os = "linux"))]
#[derive(Debug)]
pub struct EventFd {
    file: std::fs::File,
    /// A wake is pending (written, or about to be, and not yet taken).
    pending: AtomicBool,
    wakes: AtomicU64,
    writes: AtomicU64,
}

#[cfg(all(feature = "std", target_os = "linux"))]
impl EventFd {
    /// A new eventfd (non-blocking, close-on-exec) with its counter at 0.
    pub fn new() -> std::io::Result<Self> {
        crate::sys::eventfd().map(|file| Self {
            file,
            pending: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    /// Reads the fd back to not-readable; returns whether it was woken since the last
    /// take. Call it before polling what the fd stands for.
    pub fn take(&self) -> bool {
        // Read first, clear second: a wake that skipped its write (seeing one pending)
        // came before the clear, so the poll that follows this take sees its work;
        // every wake after the clear writes again.
        let read = crate::sys::eventfd_read(&self.file);
        self.pending.swap(false, Ordering::SeqCst) || read
    }

    /// Waits until rung (consuming it) or `timeout` passes; returns whether it was
    /// rung. For a thread that waits on the fd itself rather than through epoll.
    pub fn wait(&self, timeout: Duration) -> bool {
        if self.take() {
            return true;
        }
        crate::sys::poll_readable(&self.file, timeout);
        self.take()
    }

    /// Times [`Wake::wake`] was called.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Times a wake wrote the fd (a system call); the rest found a wake pending.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

#[cfg(all(feature = "std", target_os = "linux"))]
impl std::os::fd::AsFd for EventFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(all(feature = "std", target_os = "linux"))]
impl std::os::fd::AsRawFd for EventFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(all(feature = "std", target_os = "linux"))]
impl Wake for EventFd {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        if !self.pending.swap(true, Ordering::SeqCst) {
            self.writes.fetch_add(1, Ordering::Relaxed);
            crate::sys::eventfd_write(&self.file);
        }
    }
}

/// How long to spin before sleeping, and how long one sleep may last before the
/// condition is re-checked (a guard against a peer that never signals).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Polls before sleeping (0: sleep at once; `u32::MAX`: pure busy-poll).
    pub spin: u32,
    /// Upper bound of one sleep.
    pub max_sleep: Duration,
}

impl WaitPolicy {
    /// Pure busy-polling: never sleeps (only sensible with a core per thread).
    pub const BUSY_POLL: Self = Self {
        spin: u32::MAX,
        max_sleep: Duration::from_millis(100),
    };
    /// Spin briefly, then sleep: the default.
    pub const SPIN_THEN_SLEEP: Self = Self {
        spin: 200,
        max_sleep: Duration::from_millis(100),
    };
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self::SPIN_THEN_SLEEP
    }
}

/// Reader side: returns once `ring` has a packet. Spins `policy.spin` times, then
/// clears `interrupt_mask`, re-checks, and sleeps on `bell` (which the writer rings when
/// its commit says so). Leaves `interrupt_mask` clear; a reader that drains in batches
/// masks while draining.
#[cfg(feature = "std")]
pub fn wait_readable<M: RingMem>(
    ring: &mut IncomingRing<M>,
    bell: &Doorbell,
    policy: WaitPolicy,
) -> Result<(), RingError> {
    let mut spins = 0u32;
    loop {
        if ring.has_data()? {
            return Ok(());
        }
        if spins < policy.spin {
            spins += 1;
            std::hint::spin_loop();
            continue;
        }
        if ring.unmask_and_recheck()? {
            return Ok(());
        }
        bell.wait(policy.max_sleep);
    }
}

/// Writer side: writes one packet, waiting for space if the ring is full. On full it
/// first publishes what is pending (ringing `reader_bell` if the commit says so), spins,
/// then sets `pending_send_sz`, re-checks and sleeps on `writer_bell` (which the reader
/// rings when its commit says so). Returns only after the packet is written (not yet
/// committed).
#[cfg(feature = "std")]
pub fn write_blocking<M: RingMem>(
    ring: &mut OutgoingRing<M>,
    packet: &OutgoingPacket<'_>,
    payload: &[&[u8]],
    reader_bell: &Doorbell,
    writer_bell: &Doorbell,
    policy: WaitPolicy,
) -> Result<(), WriteError> {
    let mut spins = 0u32;
    loop {
        match ring.try_write(packet, payload) {
            Ok(()) => return Ok(()),
            Err(WriteError::Full { needed }) => {
                if ring.commit() {
                    reader_bell.ring();
                }
                if spins < policy.spin {
                    spins += 1;
                    std::hint::spin_loop();
                    continue;
                }
                if !ring.prepare_wait(needed)? {
                    writer_bell.wait(policy.max_sleep);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Wakes between takes write once; a take reports them; nothing is lost when a
    /// thread publishes work and wakes while the owner takes, polls and waits.
    #[test]
    fn eventfd_coalesces_wakes_and_loses_none() {
        let e = EventFd::new().unwrap();
        assert!(!e.take());
        e.wake();
        e.wake();
        assert_eq!((e.wakes(), e.writes()), (2, 1));
        assert!(e.take());
        assert!(!e.take());
        e.wake();
        assert!(e.wait(Duration::from_secs(1)), "readable after a take");

        let e = Arc::new(EventFd::new().unwrap());
        let work = Arc::new(AtomicU64::new(0));
        const N: u64 = 200_000;
        let producer = {
            let (e, work) = (e.clone(), work.clone());
            std::thread::spawn(move || {
                for _ in 0..N {
                    work.fetch_add(1, Ordering::SeqCst);
                    e.wake();
                }
            })
        };
        let mut seen = 0;
        while seen < N {
            e.take();
            let now = work.load(Ordering::SeqCst);
            if now == seen {
                // Nothing new: a pending wake must be on the fd.
                let start = std::time::Instant::now();
                e.wait(Duration::from_secs(5));
                assert!(
                    start.elapsed() < Duration::from_secs(5) || work.load(Ordering::SeqCst) == N,
                    "a wake was lost at {seen}"
                );
            }
            seen = now;
        }
        producer.join().unwrap();
        assert!(e.writes() <= N);
    }
}
