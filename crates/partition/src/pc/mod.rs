//! The minimal PC the hardware backends (kvm, mshv) present to a Linux guest: the
//! guest-physical layout, the kernel loader (64-bit boot protocol), ACPI tables with
//! the VMBus device, and the port-I/O devices (COM1, ACPI PM1, i8042 reset).
//!
//! Everything here is backend-neutral: it writes guest memory and answers port
//! accesses; the backend decides how exits reach it.

pub mod acpi;
pub mod boot;
pub mod devices;
pub mod layout;

/// How a VM ended (kvm and mshv backends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmOutcome {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest reset itself (i8042 pulse, triple fault or a reset event).
    Reset,
    /// The VMM asked the VM to stop.
    Stopped,
    /// A vCPU halted with interrupts disabled and the hypervisor handed the HLT to the
    /// VMM (mshv): the guest stopped itself without powering off.
    Halted,
    /// A vCPU failed; the reason.
    Failed(String),
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The real-time signal that interrupts a vCPU thread blocked in the hypervisor's run
/// ioctl (which then returns EINTR).
pub(crate) fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

/// Installs the (empty) handler of [`kick_signal`], so the signal interrupts the run
/// ioctl instead of killing the process.
pub(crate) fn install_kick_handler() -> std::io::Result<()> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}
