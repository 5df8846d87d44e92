//! A real Linux kernel's own hv_vmbus and hv_netvsc against this workspace's VMBus host
//! and NetVSP, with no guest user space: scripts/guest-kernel.sh builds Linux 6.1
//! (Debian's linux-source) with both drivers built in and IP autoconfiguration. The
//! kernel negotiates VMBus, binds hv_netvsc, brings eth0 up by itself (`ip=`), then
//! waits for a root disk that never comes (`root=/dev/sda rootwait`) with networking
//! alive; the host pings it from a network namespace through a TAP device.
//!
//! For hosts whose KVM cannot run guest user space (kvm_pvm, where the Debian guest of
//! `linux_guest` never gets to load its modules). Needs /dev/kvm, /dev/net/tun and
//! root.
//!
//! ```sh
//! cargo run --release -p vmbus-examples --example kernel_guest [pings per size]
//! ```
//!
//! `HV_KERNEL=path` boots another kernel image, `HV_VCPUS=n` with n vCPUs (default 2),
//! `HV_MEMORY_MIB=n` with n MiB of RAM (default 256; beyond 3 GiB it lies above 4 GiB),
//! `HV_CMDLINE=...` adds kernel command-line words.

use std::time::Duration;
use vmbus_examples::kernel_guest::{KernelGuestConfig, build_kernel, run};
use vmbus_examples::linux_guest::{HOST_IP, oid_report, tap_in_netns};

fn main() -> Result<(), String> {
    let count: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    // HV_KERNEL / HV_VCPUS: another kernel image (e.g. one built with SMP) and vCPU count.
    let kernel = match std::env::var_os("HV_KERNEL") {
        Some(k) => k.into(),
        None => {
            println!(
                "building the guest kernel (scripts/guest-kernel.sh; cached in target/guest/tiny-smp)"
            );
            build_kernel()?
        }
    };
    let vcpus = std::env::var("HV_VCPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let (tap, netns) = tap_in_netns("hvk", &format!("{HOST_IP}/24"))
        .map_err(|e| format!("no TAP network: {}", e.0))?;
    let config = KernelGuestConfig {
        kernel,
        vcpus,
        mac: [0x00, 0x15, 0x5d, 0x42, 0x00, 0x09],
        mtu: 1500,
        extra_cmdline: std::env::var("HV_CMDLINE").unwrap_or_default(),
        pings: count,
        sizes: vec![56, 1000, 1472],
        link_flap: true,
        memory_size: std::env::var("HV_MEMORY_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(256)
            << 20,
    };
    let r = run(&config, tap, &netns, Box::new(std::io::stdout()))?;
    let nvsp = r.guest.nic.snapshot().nvsp_version;
    println!("\n== report");
    println!("{}", r.vmbus.trim());
    println!(
        "eth0 configured by the guest kernel after {:.1} s: {}",
        r.booted_s,
        r.eth0.trim()
    );
    for p in &r.pings {
        println!("ping -s {}: {}; {}", p.size, p.summary, p.rtt);
    }
    println!("TCP SYN to a closed port: {:?}", r.tcp_reset);
    match &r.after_flap {
        Some(Ok(f)) => {
            println!(
                "told the link is down: {} ({} frames delivered to it meanwhile)",
                f.while_down.summary, f.delivered_while_down
            );
            println!(
                "after the cable was pulled and plugged back: {}",
                f.after.summary
            );
        }
        Some(Err(e)) => println!("after the cable was pulled and plugged back: {e}"),
        None => {}
    }
    println!("NVSP version {}.{}", nvsp >> 16, nvsp & 0xffff);
    println!(
        "receive buffer: {} pages, {} of them above 4 GiB",
        r.guest.nic.snapshot().recv_buffer_pages,
        r.guest.nic.snapshot().recv_buffer_pages_above_4g
    );
    println!("{}", oid_report(&r.guest.nic));
    println!("{}", r.guest.counters());
    println!("VM stopped: {:?}", r.guest.vm.stop(Duration::from_secs(10)));
    if !r.pings.iter().all(|p| p.no_loss) {
        return Err("pings were lost".into());
    }
    r.tcp_reset
}
