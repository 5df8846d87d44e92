//! The judge that matters: Debian's own Linux kernel, with its hv_vmbus and hv_netvsc
//! drivers, booted on the kvm backend, talks to our VMBus host and NetVSP.
//!
//! Runs when /dev/kvm is usable, the guest image can be built (Debian's packages via
//! apt-get) and a TAP device in a network namespace can be created (root); otherwise
//! it prints SKIPPED and why. Checks: the guest boots and hv_vmbus negotiates; hv_netvsc
//! binds and eth0 has the MAC we offered; the host pings the guest 100 times with no
//! loss; a TCP transfer each way arrives with every byte checked; the guest unloads
//! both drivers and powers off.
//!
//! The transfer size is `HV_KVM_TEST_MIB` MiB each way (default 100). The full console
//! is written to target/guest/console.log.

use std::path::Path;

use std::time::{Duration, Instant};
use vmbus_examples::linux_guest::{
    BootOptions, GUEST_IP, agent_cmdline, boot, console, exchange, kvm_and_tap, mac_string,
    prepare_image, repo_root,
};

// Not run by default: on this project's CI host /dev/kvm is kvm_pvm, where Debian's
// kernel needs ~20 minutes to reach user space and then the first SYSCALL of /init
// faults (kvm_pvm moves RIP to the guest's entry_SYSCALL_64 but stays in user mode:
// "init[1]: segfault at ffffffff81c00080 ... error 15"), so no module can be loaded.
// On a hardware KVM run it with
// `cargo test -p vmbus-examples --test linux_guest -- --ignored --nocapture`.
#[test]
#[ignore = "needs hardware KVM: kvm_pvm cannot run a non-PVM guest's user space"]
fn debian_linux_guest_uses_our_vmbus_and_netvsp() {
    let (tap, netns) = match kvm_and_tap("hvk") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let image = match prepare_image() {
        Ok(i) => i,
        Err(e) if e.contains("needs apt-get") => {
            println!("SKIPPED: cannot build the guest image: {e}");
            return;
        }
        Err(e) => panic!("guest image: {e}"),
    };
    let mib: u64 = std::env::var("HV_KVM_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let bytes = mib << 20;
    let mac = [0x00, 0x15, 0x5d, 0x42, 0x00, 0x07];
    let log = repo_root().join("target/guest/console.log");
    let (sink, console) = console(Box::new(std::io::stdout()), Some(&log), true);
    let opts = BootOptions {
        image,
        memory_size: 256 << 20,
        // kvm_pvm stalls on the second vCPU (see hv_partition::kvm::is_kvm_pvm).
        vcpus: if hv_partition::kvm::is_kvm_pvm() {
            1
        } else {
            2
        },
        mac,
        extra_cmdline: format!("hv.ip={GUEST_IP}/24{}", agent_cmdline(bytes)),
    };
    let started = Instant::now();
    let guest = boot(&opts, Box::new(tap), sink).expect("boot");
    let step = |what: &str, timeout_s: u64| {
        let line = console
            .wait_for(what, Duration::from_secs(timeout_s), guest.vm.as_ref())
            .unwrap_or_else(|e| {
                let outcome = guest.vm.stop(Duration::from_secs(5));
                panic!("{e} (VM: {outcome:?}; console in {})", log.display())
            });
        println!("[{:6.1} s] {line}", started.elapsed().as_secs_f64());
        line
    };

    // Boot, hv_vmbus, hv_netvsc.
    let vmbus = step("HVTEST vmbus", 3600);
    assert!(vmbus.contains("Vmbus version:"), "{vmbus}");
    let eth0 = step("HVTEST eth0", 300);
    assert_eq!(eth0, format!("HVTEST eth0 {}", mac_string(&mac)));
    step("HVTEST up", 300);
    println!(
        "NVSP version negotiated: {:#x}",
        guest.nic.snapshot().nvsp_version
    );

    // 100 pings, then the transfers each way (every byte checked on both ends).
    let x = exchange(&guest, &console, &netns, 100, bytes, |l| {
        println!("[{:6.1} s] {l}", started.elapsed().as_secs_f64())
    })
    .unwrap_or_else(|e| {
        let outcome = guest.vm.stop(Duration::from_secs(5));
        panic!("{e} (VM: {outcome:?}; console in {})", log.display())
    });
    println!("ping: {}\nping: {}", x.ping_summary, x.ping_rtt);
    assert!(
        x.ping_summary
            .contains("100 packets transmitted, 100 received, 0% packet loss"),
        "{}",
        x.ping_summary
    );
    let rate = |t: f64| bytes as f64 * 8.0 / t / 1e6;
    println!(
        "host -> guest: {mib} MiB in {:.2} s = {:.1} Mbit/s (host side)",
        x.to_guest_s,
        rate(x.to_guest_s)
    );
    println!(
        "guest -> host: {mib} MiB in {:.2} s = {:.1} Mbit/s (host side, every byte checked)",
        x.from_guest_s,
        rate(x.from_guest_s)
    );

    // Clean unload and poweroff.
    step("HVTEST unloaded", 300);
    let outcome = guest.vm.wait(Some(Duration::from_secs(120)));
    assert_eq!(outcome, hv_partition::pc::VmOutcome::PowerOff);
    println!("{}", guest.counters());
    assert_eq!(guest.nic.snapshot().bad_packets, 0);
    let _ = Path::new(&log);
}

/// The data-path steps of `kernel_datapath` (`vmbus_examples::datapath`), from user
/// space: Debian's kernel and modules, `hv-guest-agent serve` driving eth0 with `ip`,
/// the ethtool ioctl and sysfs. Needs hardware KVM, as the test above.
#[test]
#[ignore = "needs hardware KVM: kvm_pvm cannot run a non-PVM guest's user space"]
fn debian_linux_guest_runs_the_datapath_steps() {
    use vmbus_examples::datapath;
    use vmbus_examples::kernel_agent::AGENT_PORT;
    use vmbus_examples::linux_guest::{attach_nic, create_kvm, kvm_and_tap_mtu};

    let (tap, netns) = match kvm_and_tap_mtu("hvu", 9000) {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let image = match prepare_image() {
        Ok(i) => i,
        Err(e) if e.contains("needs apt-get") => {
            println!("SKIPPED: cannot build the guest image: {e}");
            return;
        }
        Err(e) => panic!("guest image: {e}"),
    };
    let mac = [0x00, 0x15, 0x5d, 0x42, 0x00, 0x0e];
    let log = repo_root().join("target/guest/console.log");
    let (sink, console) = console(Box::new(std::io::stdout()), Some(&log), true);
    let opts = BootOptions {
        image,
        memory_size: 512 << 20,
        vcpus: 2,
        mac,
        extra_cmdline: format!("hv.ip={GUEST_IP}/24 hv.agent=serve,{AGENT_PORT},{GUEST_IP}/24"),
    };
    let vm = create_kvm(&opts, sink).expect("VM");
    let mut nic = netvsp::NetvspConfig::default();
    nic.mac = mac;
    nic.mtu = 9000;
    let guest = attach_nic(vm, nic, Box::new(tap)).expect("attach");
    console
        .wait_for("HVTEST ready", Duration::from_secs(3600), guest.vm.as_ref())
        .unwrap_or_else(|e| panic!("{e} (console in {})", log.display()));
    let report = datapath::run(&guest, &console, &netns, 64 << 20)
        .unwrap_or_else(|e| panic!("{e} (console in {})", log.display()));
    println!("{}\n{}", report.summary(), guest.counters());
    let end = guest.nic.snapshot();
    let unexplained: Vec<_> = end
        .drops()
        .into_iter()
        .filter(|(name, _)| *name != "rx_not_ready")
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:?}");
    assert!(report.powered_off, "the VM did not power off");
}
