//! Boots Debian's own Linux kernel as a guest of the Microsoft Hypervisor through
//! /dev/mshv, with our VMBus host and a netvsp NIC: the same guest image, network and
//! checks as `linux_guest`, on the mshv backend (the hypervisor provides the SynIC; the
//! guest's VMBus hypercalls reach this process as intercepts).
//!
//! ```sh
//! cargo run --release -p vmbus-examples --example mshv_guest [MiB per direction]
//! ```
//!
//! Needs an MSHV root: Linux running as the root partition on the Microsoft Hypervisor
//! with /dev/mshv (CONFIG_MSHV_ROOT), e.g. an Azure Linux / Cloud Hypervisor MSHV host;
//! see the README. Without /dev/mshv it stops with an error naming what is missing.
//! Not yet run on such a host: see hv_partition::mshv for what is verified.

use vmbus_examples::linux_guest::{Backend, run_example};

fn main() -> Result<(), String> {
    if !hv_partition::mshv::is_available() {
        return Err(
            "/dev/mshv is missing: this example needs Linux running as the root \
                    partition on the Microsoft Hypervisor (CONFIG_MSHV_ROOT); on other hosts \
                    run `--example linux_guest` (KVM) or `--example nic_demo` (simulated)"
                .into(),
        );
    }
    let mib = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    run_example(Backend::Mshv, mib)
}
