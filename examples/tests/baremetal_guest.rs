//! The guest side off the simulator: `examples/baremetal-guest`, a bare-metal x86-64
//! program (no OS, one vCPU, interrupts off) built for `x86_64-unknown-none`, boots
//! as the kernel of a kvm-backend VM. It enables Hyper-V (guest OS id, hypercall
//! page), runs the `no_std` VMBus client (`GuestBus::polled` on its own
//! `GuestPlatform`) against our `HostBus`, opens the offered NIC with the `no_std`
//! netvsc against our netvsp on a TAP, and runs smoltcp. The host then pings it from
//! a network namespace (no loss allowed) and sends 1 MiB to its TCP echo service,
//! checking every byte that comes back. Boot time, VM exits per frame and throughput
//! are printed.
//!
//! Runs when /dev/kvm is usable and a TAP device in a network namespace can be created
//! (root); otherwise prints SKIPPED and why. Installs the `x86_64-unknown-none` target
//! with rustup when it is missing. Console: target/guest/baremetal-console.log.

use hv_partition::kvm::{KvmConfig, KvmPartition};
use netvsp::NetvspConfig;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_examples::kernel_guest::ping;
use vmbus_examples::linux_guest::{
    SharedLog, attach_nic, console, kvm_and_tap, mac_string, repo_root,
};

const TARGET: &str = "x86_64-unknown-none";

/// Builds the guest; returns the ELF's path.
fn build_guest() -> Result<PathBuf, String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("rustup target add {TARGET} failed"));
        }
    }
    let root = repo_root();
    let target_dir = root.join("target/baremetal");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "vmbus-baremetal-guest",
            "--release",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the guest failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir
        .join(TARGET)
        .join("release/vmbus-baremetal-guest"))
}

/// Byte `i` of the test stream.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 11)) as u8
}

#[test]
fn baremetal_guest_boots_on_kvm_and_serves_ping_and_tcp_over_netvsc() {
    let (tap, netns) = match kvm_and_tap("hvbm") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let elf = build_guest().unwrap_or_else(|e| panic!("{e}"));
    let log = repo_root().join("target/guest/baremetal-console.log");
    let _ = std::fs::create_dir_all(repo_root().join("target/guest"));
    let shared = SharedLog::default();
    let (sink, console) = console(Box::new(shared.clone()), Some(&log), false);
    let fail = |what: String| -> ! {
        let text = shared.0.lock().unwrap_or_else(|p| p.into_inner());
        panic!("{what}\nconsole:\n{}", String::from_utf8_lossy(&text));
    };

    let started = Instant::now();
    let kvm = {
        let mut c = KvmConfig::new(elf);
        c.memory_size = 256 << 20;
        c.vcpus = 1;
        c.cmdline = String::new();
        c
    };
    let vm = KvmPartition::new(&kvm, Box::new(sink)).unwrap_or_else(|e| fail(e.to_string()));
    let mac = [0x00, 0x15, 0x5d, 0x42, 0x00, 0x0c];
    let mut nic = NetvspConfig::default();
    nic.mac = mac;
    let guest = attach_nic(vm, nic, Box::new(tap)).unwrap_or_else(|e| fail(e));
    let vm: &Arc<KvmPartition> = &guest.vm;
    let wait = |what: &str, secs: u64| {
        console
            .wait_for(what, Duration::from_secs(secs), vm.as_ref())
            .unwrap_or_else(|e| fail(e))
    };
    let vmbus = wait("baremetal-guest: VMBus", 600);
    let up = wait("baremetal-guest: netvsc up", 600);
    let ready = wait("baremetal-guest: ready", 600);
    let boot_s = started.elapsed().as_secs_f64();
    println!("{vmbus}\n{up}\n{ready}");
    println!("booted to ready in {boot_s:.2} s (VM creation to the guest's ready line)");
    assert!(vmbus.contains("V5_3") || vmbus.contains("5.3"), "{vmbus}");
    assert!(up.contains("V6_1") || up.contains("6.1"), "NVSP 6.1: {up}");
    assert!(up.contains(&mac_string(&mac)), "{up}");

    // Ping, no loss.
    let p = ping(&netns, 20, 56);
    println!("ping: {}; {}", p.summary, p.rtt);
    assert!(p.no_loss, "ping: {} {}", p.summary, p.rtt);
    let p = ping(&netns, 5, 1472);
    println!("ping -s 1472: {}; {}", p.summary, p.rtt);
    assert!(p.no_loss, "ping -s 1472: {} {}", p.summary, p.rtt);

    // 1 MiB to the echo service and back, every byte checked.
    const BYTES: usize = 1 << 20;
    let before = (vm.stats(), guest.nic.snapshot());
    let t0 = Instant::now();
    let result = netns
        .run(move || -> Result<(), String> {
            let addr = std::net::SocketAddr::from(([10, 0, 2, 15], 7));
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(60))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(120)))
                .map_err(|e| e.to_string())?;
            let mut w = s.try_clone().map_err(|e| e.to_string())?;
            let writer = std::thread::spawn(move || -> Result<(), String> {
                let data: Vec<u8> = (0..BYTES).map(pattern).collect();
                w.write_all(&data).map_err(|e| format!("send: {e}"))?;
                w.shutdown(std::net::Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))
            });
            let mut got = 0usize;
            let mut buf = vec![0u8; 65536];
            while got < BYTES {
                let n = s
                    .read(&mut buf)
                    .map_err(|e| format!("receive at {got}: {e}"))?;
                if n == 0 {
                    return Err(format!("echo ended after {got} of {BYTES} bytes"));
                }
                for (k, &b) in buf[..n].iter().enumerate() {
                    if b != pattern(got + k) {
                        return Err(format!("byte {} came back changed", got + k));
                    }
                }
                got += n;
            }
            writer.join().map_err(|_| "writer panicked".to_string())?
        })
        .unwrap_or_else(|e| fail(e))
        .join()
        .unwrap_or_else(|_| fail("the client thread panicked".into()));
    if let Err(e) = result {
        fail(format!("TCP echo: {e}"));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (after, nic) = (vm.stats(), guest.nic.snapshot());
    let frames = (nic.tx_frames - before.1.tx_frames) + (nic.rx_frames - before.1.rx_frames);
    let exits = after.exits - before.0.exits;
    println!(
        "TCP echo: {BYTES} bytes each way in {secs:.2} s ({:.2} MB/s each way); \
         {frames} frames, {exits} VM exits ({:.2} per frame: {} hypercalls, {} MSR, {} \
         port I/O, {} interrupts)",
        BYTES as f64 / secs / 1e6,
        exits as f64 / frames.max(1) as f64,
        after.hypercalls - before.0.hypercalls,
        after.msr_exits - before.0.msr_exits,
        after.io_exits - before.0.io_exits,
        after.interrupts - before.0.interrupts,
    );
    println!("{}", guest.counters());
    let _ = vm.stop(Duration::from_secs(10));
}
