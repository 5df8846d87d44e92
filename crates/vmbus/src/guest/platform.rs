//! What a guest's environment must provide for the VMBus client to run: the
//! [`GuestPlatform`] trait. [`GuestBus`](super::GuestBus) does everything else (SynIC
//! page handling, the client engine, page allocation, GPADLs, rings) on top of it.
//!
//! Implementations: [`SimPlatform`](super::SimPlatform) (a guest thread over the
//! simulated partition) and whatever a guest kernel, a unikernel or a test harness
//! writes for itself. The trait names only `core`/`alloc` types and the
//! `hv-hypercall`/`vmbus-ring` ABI types, so a `no_std` guest can implement it: MSR
//! writes become `wrmsr`, the hypercalls go through the hypercall page, memory access is
//! a copy through the guest's own mapping of its physical memory, and waiting for an
//! interrupt is `sti; hlt` (or a bounded spin in a polled guest).
//!
//! A platform runs on the guest's side of the trust boundary; everything it reads from
//! pages the host writes (SIMP slots, event flags, rings) is checked by the bus and the
//! ring code, not by the platform.

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;
use hv_hypercall::HvStatus;
use hv_hypercall::pages::SharedPage;
use vmbus_ring::RingMem;

/// Why a platform operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The MSR write faulted (#GP): the hypervisor does not implement it, or refused
    /// the value.
    #[error("MSR {0:#x} refused (#GP)")]
    Msr(u32),
    /// The range is not guest memory the platform can reach.
    #[error("guest physical range {gpa:#x}+{len:#x} is not reachable memory")]
    Memory {
        /// First byte.
        gpa: u64,
        /// Length in bytes.
        len: u64,
    },
    /// No such VP.
    #[error("no VP {0}")]
    NoVp(u32),
    /// Ring pages could not be mapped.
    #[error("ring mapping failed: {0}")]
    Ring(alloc::string::String),
}

/// What a guest's environment provides to [`GuestBus`](super::GuestBus).
///
/// VP numbers are the hypervisor's VP indexes (`0..vp_count()`). Every call may come
/// from any thread of a threaded guest (the bus's interrupt threads, channel users);
/// a single-threaded guest calls everything from its one loop. No method may block
/// except [`GuestPlatform::wait_interrupt`], and that one for at most its timeout.
pub trait GuestPlatform: Send + Sync {
    /// How many VPs the guest has.
    fn vp_count(&self) -> u32;

    /// Writes synthetic MSR `msr` on VP `vp` (guest OS id, SIMP, SIEFP, SINTx,
    /// SCONTROL, EOM).
    fn write_msr(&self, vp: u32, msr: u32, value: u64) -> Result<(), PlatformError>;

    /// HvPostMessage from VP `vp` with message type 1 (VMBus): the platform writes the
    /// input block into the page at `input_gpa` (a page the bus allocated for this VP's
    /// hypercall input) and makes the call. `payload` is at most 240 bytes.
    fn post_message(&self, vp: u32, input_gpa: u64, connection_id: u32, payload: &[u8])
    -> HvStatus;

    /// HvSignalEvent from VP `vp` (fast call): sets event flag `flag` of the host's
    /// `connection_id`.
    fn signal_event(&self, vp: u32, connection_id: u32, flag: u16) -> HvStatus;

    /// The guest's RAM as runs of `(first page number, pages)`: where the bus may
    /// allocate SynIC pages, hypercall input pages, rings and buffers shared with the
    /// host (the bus is told from which address on in
    /// [`GuestConfig::alloc_base`](super::GuestConfig)).
    fn ram(&self) -> Vec<(u64, u64)>;

    /// Copies guest memory at `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), PlatformError>;

    /// Copies `data` into guest memory at `gpa`.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), PlatformError>;

    /// Copies `pieces` back to back into guest memory from `gpa` (a message's header
    /// and payload, say). Default: [`GuestPlatform::write`] per piece; a platform whose
    /// address look-up costs something does it once for the run.
    fn write_gather(&self, gpa: u64, pieces: &[&[u8]]) -> Result<(), PlatformError> {
        let mut at = gpa;
        for p in pieces {
            self.write(at, p)?;
            at += p.len() as u64;
        }
        Ok(())
    }

    /// Runs `f` on the page at `gpa` (4 KiB aligned) with atomic word access: the
    /// SIMP and SIEFP pages, which the host writes while the guest reads them.
    fn with_page(&self, gpa: u64, f: &mut dyn FnMut(&dyn SharedPage)) -> Result<(), PlatformError>;

    /// Maps one ring: its control page and data pages, in ring order (the first page
    /// number is the control page). The pages stay shared with the host until the
    /// returned memory is dropped and the ring's GPADL is torn down.
    fn map_ring(&self, pfns: &[u64]) -> Result<Arc<dyn RingMem>, PlatformError>;

    /// Waits until VP `vp` takes an interrupt (a SINT the host raised, or a
    /// [`GuestPlatform::kick`]) or `timeout` passes; `true` if a SINT fired (a kick
    /// may return `false`). A
    /// platform that runs the host itself (a single-threaded harness) runs it here; a
    /// polled bare-metal guest spins or halts.
    fn wait_interrupt(&self, vp: u32, timeout: Duration) -> bool;

    /// Wakes a [`GuestPlatform::wait_interrupt`] on VP `vp` (used to stop the bus).
    fn kick(&self, vp: u32);

    /// Monotonic time since some fixed point (boot, the platform's creation): what
    /// timeouts are measured against (Hyper-V's reference counter, the TSC, a clock).
    fn now(&self) -> Duration;
}
