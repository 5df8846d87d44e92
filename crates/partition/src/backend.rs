//! The seam between the VMBus host and a hypervisor: what every backend (sim, kvm,
//! mshv) provides.

use crate::memory::GuestMemory;
use hv_hypercall::decode::{HypercallRegisters, HypercallRequest, decode};
use hv_hypercall::input::{PostMessage, SignalEvent};
use hv_hypercall::{HvMessage, HvStatus, HypercallResult};
use std::sync::Arc;

/// Why a host-to-guest delivery failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// No such VP.
    #[error("VP {0} does not exist")]
    InvalidVp(u32),
    /// The SynIC refused (queue full, SINT or flag out of range, pages disabled).
    #[error(transparent)]
    Synic(#[from] crate::synic::SynicError),
    /// The hypervisor refused (backend-specific).
    #[error("hypervisor error: {0}")]
    Hypervisor(&'static str),
}

/// Host to guest: what the VMBus server needs from a partition.
pub trait Partition: Send + Sync {
    /// Guest memory.
    fn memory(&self) -> &GuestMemory;

    /// Number of virtual processors (VP indices are `0..vp_count`).
    fn vp_count(&self) -> u32;

    /// Posts a SynIC message to `vp`'s `sint`. If the slot is busy the message is
    /// queued and delivered after the guest's EOM; an error means it was not accepted.
    fn post_message(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), PartitionError>;

    /// Sets event flag `flag` in `vp`'s SIEFP for `sint` and raises the SINT.
    fn signal_event(&self, vp: u32, sint: u8, flag: u16) -> Result<(), PartitionError>;

    /// Installs the handler of the guest's VMBus hypercalls (one per partition).
    fn set_hypercall_handler(&self, handler: Arc<dyn HypercallHandler>);

    /// Installs what to wake when a message slot may have freed (the guest wrote EOM
    /// or reprogrammed its SynIC): a host holding messages the guest's queue refused
    /// retries then instead of on a timer. Default: nothing is reported (the host
    /// retries on a slow timer).
    fn set_message_wake(&self, wake: Arc<dyn vmbus_ring::Wake>) {
        let _ = wake;
    }
}

/// Guest to host: the hypercalls VMBus traffic arrives through. A backend decodes and
/// validates them (see `hv_hypercall::decode`) and calls the handler from the vCPU
/// that made the call; the returned status goes back to the guest. Implementations
/// must be quick and must not block on the guest.
pub trait HypercallHandler: Send + Sync {
    /// HvPostMessage from `vp`. Return `SUCCESS`, `INVALID_CONNECTION_ID` (no such
    /// port) or `INSUFFICIENT_BUFFERS` (busy; the guest retries).
    fn post_message(&self, vp: u32, message: &PostMessage) -> HvStatus;

    /// HvSignalEvent from `vp`. Return `SUCCESS` or `INVALID_CONNECTION_ID`.
    fn signal_event(&self, vp: u32, event: &SignalEvent) -> HvStatus;
}

/// Runs one guest hypercall: decodes the registers and input block (every field and
/// GPA checked by `hv_hypercall::decode`), calls `handler` for PostMessage and
/// SignalEvent, and returns the value for the guest's RAX. Without a handler every call
/// fails with `INVALID_CONNECTION_ID`; other call codes get `INVALID_HYPERCALL_CODE`.
/// Every backend uses this, so sim, kvm and mshv guests see the same answers.
pub fn dispatch_hypercall(
    memory: &GuestMemory,
    handler: Option<&dyn HypercallHandler>,
    vp: u32,
    regs: &HypercallRegisters,
) -> u64 {
    let status = match decode(regs, memory) {
        Err(status) => status,
        Ok(req) => match (req, handler) {
            (_, None) => HvStatus::INVALID_CONNECTION_ID,
            (HypercallRequest::PostMessage(m), Some(h)) => h.post_message(vp, &m),
            (HypercallRequest::SignalEvent(e), Some(h)) => h.signal_event(vp, &e),
            (_, Some(_)) => HvStatus::INVALID_HYPERCALL_CODE,
        },
    };
    HypercallResult::new(status).to_u64()
}
