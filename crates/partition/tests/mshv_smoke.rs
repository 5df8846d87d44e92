//! The mshv backend on a real MSHV root with the same 100-byte guest as the kvm smoke
//! test: it sets its guest OS id and hypercall page (both handled by the Microsoft
//! Hypervisor here), reads its VP index, makes a fast HvSignalEvent to connection
//! 0x1234 (unknown to the hypervisor, so the unknown-SynIC-connection intercept brings
//! it to our handler), prints both results on COM1 (port intercepts) and powers off
//! through ACPI PM1. Skips, printing why, without /dev/mshv — as on this project's CI
//! machine; on an MSHV root it runs for real.
#![cfg(all(feature = "mshv", target_os = "linux", target_arch = "x86_64"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::{CODE, Console, Recorder, check_smoke_run, write_kernel};
use hv_partition::Partition;
use hv_partition::mshv::{MshvConfig, MshvPartition, is_available};
use hv_partition::pc::VmOutcome;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn hypercall_intercept_console_and_poweroff_on_real_mshv() {
    if !is_available() {
        println!(
            "SKIPPED: /dev/mshv is missing (needs Linux as the root partition on the Microsoft Hypervisor)"
        );
        return;
    }
    let (dir, kernel) = write_kernel(CODE, "mshv-smoke");
    let console = Console::default();
    let vm = MshvPartition::new(
        &{
            let mut c = MshvConfig::new(kernel);
            c.memory_size = 64 << 20;
            c.vcpus = 1;
            c.initrd = None;
            c.cmdline = String::new();
            c
        },
        Box::new(console.clone()),
    )
    .expect("create the partition");
    std::fs::remove_dir_all(&dir).unwrap();
    let recorder = Arc::new(Recorder::default());
    vm.set_hypercall_handler(recorder.clone());
    vm.start().unwrap();
    let outcome = vm.wait(Some(Duration::from_secs(60)));
    check_smoke_run(outcome, VmOutcome::PowerOff, &console, &recorder);
    let s = vm.stats();
    assert_eq!(s.hypercalls, 1);
    assert_eq!(s.bad_messages, 0);
}
