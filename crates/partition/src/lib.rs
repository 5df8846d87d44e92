//! # hv-partition
//!
//! A guest partition as a VMBus host (or a simulated guest) sees it:
//!
//! - [`memory`]: guest RAM, regions at guest-physical addresses: the VMM's own
//!   (through [`GuestRam`]; rust-vmm's `GuestMemoryMmap` with feature `vm-memory`) or
//!   memfds of ours; every GPA access bounds-checked;
//! - [`synic`]: one VP's SynIC: SCONTROL/SIMP/SIEFP/SINT registers, the message and
//!   event-flag pages in guest memory with the real layouts, a bounded queue per SINT
//!   with message-pending and EOM redelivery;
//! - [`gpadl`]: a channel's ring GPADL mapped as double-mapped or paged ring memory;
//! - [`backend`]: the [`Partition`] / [`HypercallHandler`] seam every backend
//!   implements (host-to-guest messages and events; guest-to-host hypercalls);
//! - [`sim`]: the simulated backend, whose guest runs as threads in this process and
//!   uses the real MSR and hypercall interfaces.
//!
//! - [`hyperv`]: a VP's Hyper-V registers (guest OS id, hypercall page, VP index,
//!   frequency MSRs, SynIC) for backends whose hypervisor does not emulate them;
//! - `kvm` (feature `kvm`, Linux x86-64): boots an unmodified Linux guest on KVM with
//!   Hyper-V emulated in user space.
//!
//! - `mshv` (feature `mshv`, Linux x86-64): a partition on the Microsoft Hypervisor
//!   through /dev/mshv, whose SynIC is the hypervisor's own; VMBus hypercalls arrive as
//!   intercepts, host messages leave through HvPostMessageDirect;
//! - `pc` (with `kvm` or `mshv`): the minimal PC both boot a Linux guest on (layout,
//!   kernel loader, ACPI tables, port devices).
//!
//! All backends implement the same [`Partition`] trait, so the VMBus host code above
//! does not change.

// Denied everywhere; the exceptions are the KVM memory-region registration, adopting
// vm-memory's mappings as guest memory, and the conversion of mshv-bindings'
// `hv_message` to bytes.
#![deny(unsafe_code)]

pub mod backend;
pub mod gpadl;
pub mod hyperv;
#[cfg(all(feature = "kvm", target_os = "linux", target_arch = "x86_64"))]
pub mod kvm;
pub mod memory;
#[cfg(all(feature = "mshv", target_os = "linux", target_arch = "x86_64"))]
pub mod mshv;
#[cfg(all(
    any(feature = "kvm", feature = "mshv"),
    target_os = "linux",
    target_arch = "x86_64"
))]
pub mod pc;
pub mod sim;
pub mod synic;
pub mod user_hv;

pub use backend::{HypercallHandler, Partition, PartitionError};
/// The registers of a guest's hypercall (RCX, RDX, R8), what [`UserHv::hypercall`] and
/// [`backend::dispatch_hypercall`] take.
pub use hv_hypercall::decode::HypercallRegisters;
pub use memory::{GuestMemory, GuestRam, RamRegion};
pub use sim::{SimPartition, SimVp};
pub use user_hv::{InterruptSink, UserHv};
