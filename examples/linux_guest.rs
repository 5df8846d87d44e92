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
//! test lines of the console.

use netvsp::{NetEndpoint, Switch};
use std::error::Error;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vmbus_examples::linux_guest::{
    BootOptions, NoTap, boot, console, prepare_image, recv_pattern, repo_root, send_pattern,
    tap_in_netns,
};

const GUEST_IP: &str = "10.0.2.15";
const HOST_IP: &str = "10.0.2.1";

fn main() -> Result<(), Box<dyn Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    let bytes = mib << 20;
    println!("building the guest image (scripts/guest-image.sh; cached in target/guest)");
    let image = prepare_image()?;
    let tap = tap_in_netns("hve", &format!("{HOST_IP}/24"));
    let (endpoint, netns): (Box<dyn NetEndpoint>, _) = match tap {
        Ok((tap, ns)) => (Box::new(tap), Some(ns)),
        Err(NoTap(why)) => {
            println!("no TAP network ({why}): the NIC goes to an empty in-process switch");
            let (port, _link) = Switch::new(64).port();
            (Box::new(port), None)
        }
    };
    let agent = if netns.is_some() {
        format!(" hv.agent=recv,5001,{bytes},1,send,{HOST_IP}:5002,{bytes},2")
    } else {
        String::new()
    };
    let quiet = std::env::var_os("HV_QUIET").is_some();
    let log = repo_root().join("target/guest/console.log");
    let (sink, console) = console(Box::new(std::io::stdout()), Some(&log), quiet);
    let mac = [0x00, 0x15, 0x5d, 0x42, 0x00, 0x07];
    let started = Instant::now();
    let guest = boot(
        &BootOptions {
            image,
            memory_size: 256 << 20,
            // kvm_pvm stalls on the second vCPU (see hv_partition::kvm::is_kvm_pvm).
            vcpus: if hv_partition::kvm::is_kvm_pvm() {
                1
            } else {
                2
            },
            mac,
            extra_cmdline: format!("hv.ip={GUEST_IP}/24{agent}"),
        },
        endpoint,
        sink,
    )?;
    if let Some(secs) = std::env::var("HV_DUMP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let vm = guest.vm.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(secs));
                for l in vm.dump_state() {
                    eprintln!("{l}");
                }
            }
        });
    }
    let wait = |what: &str, secs: u64| console.wait_for(what, Duration::from_secs(secs), &guest.vm);
    wait("HVTEST up", 3600)?;
    let booted = started.elapsed();
    let mut report = vec![format!(
        "guest up (hv_vmbus and hv_netvsc bound, eth0 up) after {:.1} s",
        booted.as_secs_f64()
    )];
    if let Some(ns) = &netns {
        let ping = ns.exec(&["ping", "-c", "20", "-i", "0.1", GUEST_IP])?;
        for l in ping
            .lines()
            .filter(|l| l.contains("packet loss") || l.contains("rtt"))
        {
            report.push(format!("ping: {l}"));
        }
        wait("HVTEST listening 5001", 120)?;
        let sender = ns.run(move || -> Result<f64, String> {
            let mut s = TcpStream::connect((GUEST_IP, 5001)).map_err(|e| e.to_string())?;
            send_pattern(&mut s, bytes, 1)
        })?;
        let receiver = ns.run(move || -> Result<f64, String> {
            let l = TcpListener::bind((HOST_IP, 5002)).map_err(|e| e.to_string())?;
            let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
            recv_pattern(&mut s, bytes, 2)
        })?;
        let limit = 120 + mib * 20;
        report.push(wait("HVTEST recv-ok", limit)?);
        let t = sender.join().map_err(|_| "sender panicked")??;
        report.push(format!(
            "host -> guest: {mib} MiB in {t:.2} s = {:.1} Mbit/s",
            bytes as f64 * 8.0 / t / 1e6
        ));
        report.push(wait("HVTEST send-ok", limit)?);
        let t = receiver.join().map_err(|_| "receiver panicked")??;
        report.push(format!(
            "guest -> host: {mib} MiB in {t:.2} s = {:.1} Mbit/s (checked byte by byte)",
            bytes as f64 * 8.0 / t / 1e6
        ));
    }
    report.push(wait("HVTEST unloaded", 300)?);
    let outcome = guest.vm.wait(Some(Duration::from_secs(60)));
    let nvsp = guest.nic.nvsp_version.load(Ordering::Relaxed);
    report.push(format!("VM outcome: {outcome:?}"));
    report.push(format!("NVSP version {}.{}", nvsp >> 16, nvsp & 0xffff));
    let oids: Vec<String> = guest
        .nic
        .oids()
        .iter()
        .map(|o| {
            format!(
                "{} {:#010x}{}",
                if o.set { "SET" } else { "QUERY" },
                o.oid,
                if o.status == 0 {
                    ""
                } else {
                    " (not supported)"
                }
            )
        })
        .collect();
    report.push(format!("RNDIS requests: {}", oids.join(", ")));
    report.push(guest.counters());
    println!("\n== report");
    for l in report {
        println!("{l}");
    }
    Ok(())
}
