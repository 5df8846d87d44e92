#![doc = include_str!("../README.md")]
//!
//! ## Overview
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
//! - [`user_hv`]: [`UserHv`], Hyper-V and the SynIC emulated in user space as a
//!   [`Partition`] for a VMM's own vCPU loop (what the kvm backend is built on).
//!
//! All backends implement the same [`Partition`] trait, so the VMBus host code above
//! does not change.
//!
//! # Hosting the VMBus in your own VMM
//!
//! A VMM keeps its VM, vCPU threads, guest memory and event loop; the bus needs a
//! [`Partition`]: guest memory ([`GuestMemory::from_ram`] over the VMM's regions),
//! a way to post a SynIC message and set an event flag in the guest, and to hand the
//! guest's HvPostMessage / HvSignalEvent to the [`HypercallHandler`] the bus installs.
//!
//! **The hypervisor has no SynIC** (KVM without its Hyper-V emulation, or the VMM
//! prefers its own): use [`UserHv`]. Route the guest's RDMSR/WRMSR of
//! 0x40000000..=0x400001FF to [`UserHv::rdmsr`] / [`UserHv::wrmsr`], the hypercall
//! port's exit to [`UserHv::hypercall`] (RCX, RDX, R8 in; the returned value to RAX),
//! and give it an [`InterruptSink`] that raises a vector on a VP (an MSI on KVM). The
//! `byo_vmm` example of this workspace is such a VMM, on kvm-ioctls and vm-memory.
//!
//! **The hypervisor has a SynIC of its own**: implement [`Partition`] over it. The
//! guest's SynIC pages are then the hypervisor's business; the VMM only delivers:
//!
//! - *KVM's in-kernel Hyper-V* (as QEMU's VMBus does, `hw/hyperv/`): enable
//!   `KVM_CAP_HYPERV_SYNIC2` on each vCPU; KVM reports the guest's SCONTROL, SIMP and
//!   SIEFP writes as `KVM_EXIT_HYPERV` (type `KVM_EXIT_HYPERV_SYNIC`), so the VMM knows
//!   where the message and event-flag pages are. `post_message` writes the 256-byte
//!   message into the SIMP slot in guest memory (message type last; if the slot is
//!   busy, set its message-pending flag and queue), `signal_event` sets the bit in the
//!   SIEFP page; both then raise the SINT through a GSI routed with
//!   `KVM_IRQ_ROUTING_HV_SINT` (vcpu, sint) and an irqfd on it. Register that irqfd with
//!   a resample eventfd: KVM signals it when the guest acknowledges the SINT (EOM or
//!   EOI), which is when queued messages are retried. HvPostMessage arrives as
//!   `KVM_EXIT_HYPERV` of type `KVM_EXIT_HYPERV_HCALL` (input GPA in the exit's
//!   params): decode it with [`backend::dispatch_hypercall`] and put the result in the
//!   exit's `result`. HvSignalEvent is handled in the kernel when the connection id has
//!   an eventfd registered with `KVM_HYPERV_EVENTFD`: register one per channel
//!   connection id and, when it fires, call the handler's `signal_event` (or leave
//!   them unregistered and take them as `KVM_EXIT_HYPERV_HCALL` exits).
//! - *The Microsoft Hypervisor* (MSHV): the `mshv` backend here is the worked example:
//!   intercepts for the hypercall and for unknown SynIC connections bring
//!   HvPostMessage and HvSignalEvent to user space; messages leave through
//!   HvPostMessageDirect (a busy slot is queued until the SINT-deliverable
//!   notification) and events through HvSignalEventDirect.

// Denied everywhere; the exceptions are the KVM memory-region registration, adopting
// vm-memory's mappings as guest memory, and the conversion of mshv-bindings'
// `hv_message` to bytes.
#![deny(unsafe_code)]

// Guest memory is a set of memfd mappings (or a VMM's mmap'd regions) and the hardware
// backends are Linux ioctls: everything above this crate (vmbus, netvsp, netvsc) needs
// Linux through it. The wire formats and the ring (hv-hypercall, vmbus-proto,
// vmbus-ring without `std`) build anywhere, bare metal included.
#[cfg(not(target_os = "linux"))]
compile_error!("hv-partition runs on Linux only (memfd guest memory, KVM and MSHV ioctls)");

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
