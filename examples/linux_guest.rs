//! Boots Debian's own Linux kernel on the kvm backend (Hyper-V emulated in user space)
//! with our VMBus host and a netvsp NIC, and streams the guest's console.
//!
//! With /dev/net/tun (and root), the NIC is attached to a TAP device in a network
//! namespace this example creates (host side 10.0.2.1/24, guest 10.0.2.15/24); the host
//! pings the guest and runs a TCP transfer each way with every byte checked. Without
//! TAP, the NIC is attached to an in-process switch with no other port, and the
//! example shows the boot and driver bring-up only.
//!
//! ```sh
//! cargo run --release -p vmbus-examples --example linux_guest [MiB per direction]
//! ```
//!
//! The guest image (Debian's kernel and busybox, fetched with apt-get and cached in
//! target/guest) is built by scripts/guest-image.sh. Set `HV_QUIET=1` to print only the
//! test lines of the console, `HV_DUMP_SECS=N` to print the vCPUs' registers every N s.

use vmbus_examples::linux_guest::{Backend, run_example};

fn main() -> Result<(), String> {
    let mib = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    run_example(Backend::Kvm, mib)
}
