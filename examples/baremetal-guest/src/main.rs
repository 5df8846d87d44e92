//! A bare-metal x86-64 guest: no OS, one vCPU, interrupts off, everything polled.
//!
//! Booted by the kvm backend as an ELF kernel (long mode, the first 4 GiB identity
//! mapped, RSI pointing at Linux's `boot_params`), it
//!
//! 1. sets up Hyper-V as a guest kernel does: checks the hypervisor's CPUID, writes
//!    the guest OS id, enables the hypercall page, reads the TSC frequency;
//! 2. runs `vmbus::GuestBus::polled` on `platform::BareMetal` (MSRs with `wrmsr`,
//!    hypercalls through the hypercall page, memory through the identity map, ring
//!    memory over its own pages): connects, finds the NIC's offer;
//! 3. opens it with netvsc (NVSP and RNDIS bring-up, no_std) and runs smoltcp on it:
//!    it answers ping and echoes whatever a TCP client sends to port 7.
//!
//! Progress and failures go to the serial console (COM1). A panic resets the VM
//! (i8042), so the host sees it stop. Build:
//! `cargo build -p vmbus-baremetal-guest --release --target x86_64-unknown-none`.
//! The guest treats the host as hostile exactly as netvsc and the bus do: every
//! length and index from the host is checked there; this file adds no parsing of its
//! own beyond `boot_params`' e820 table, which the VMM (trusted here) writes.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod x86;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "vmbus-baremetal-guest runs as a VM's kernel: build it with \
         `cargo build -p vmbus-baremetal-guest --release --target x86_64-unknown-none` \
         and boot the ELF with the kvm backend (examples/tests/baremetal_guest.rs)"
    );
}
