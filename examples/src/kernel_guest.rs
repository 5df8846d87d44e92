//! A Linux kernel with hv_vmbus and hv_netvsc built in, booted with no user space: the
//! kernel negotiates VMBus, binds hv_netvsc, configures eth0 itself (`ip=`) and then
//! waits for a root disk that never comes (`root=/dev/sda rootwait`), networking alive.
//! The host checks it by pinging from a network namespace. Built by
//! scripts/guest-kernel.sh from Debian's linux-source-6.1; for hosts whose KVM cannot
//! run guest user space (kvm_pvm).

use crate::linux_guest::{
    Console, GUEST_IP, HOST_IP, LinuxGuest, Netns, attach_nic, console, mac_string, repo_root,
};
use hv_partition::kvm::{KvmConfig, KvmPartition};
use netvsp::tap::Tap;
use netvsp::{
    FrameMeta, LinkControl, NetEndpoint, NetRxQueue, NetTxQueue, NetvspConfig, Steer, TxOffload,
    TxOffloadSupport,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vmbus_ring::Wake;

/// The console lines in which hv_vmbus or hv_netvsc complain (Linux logs what it finds
/// malformed in a host's messages: "Invalid per_pkt_info_len: 0" was one, for every
/// received frame).
pub fn driver_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("hv_netvsc") || l.contains("hv_vmbus"))
        .filter(|l| {
            let l = l.to_lowercase();
            ["invalid", "fail", "error", "unable", "timed out", "unknown"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

/// Builds (or finds cached) target/guest/tiny-smp/vmlinux with scripts/guest-kernel.sh.
pub fn build_kernel() -> Result<PathBuf, String> {
    let status = Command::new(repo_root().join("scripts/guest-kernel.sh"))
        .status()
        .map_err(|e| format!("scripts/guest-kernel.sh: {e}"))?;
    if !status.success() {
        return Err(format!("scripts/guest-kernel.sh failed: {status}"));
    }
    Ok(repo_root().join("target/guest/tiny-smp/vmlinux"))
}

/// One `ping` run from the host namespace.
#[derive(Clone, Debug)]
pub struct PingRun {
    /// ICMP payload bytes.
    pub size: usize,
    /// ping's summary line (`N packets transmitted, M received, ...`).
    pub summary: String,
    /// ping's rtt line.
    pub rtt: String,
    /// Whether every echo was answered.
    pub no_loss: bool,
}

/// What a run of the kernel guest showed.
pub struct KernelRun {
    /// The guest, still running (stop it with `vm.stop`).
    pub guest: LinuxGuest<KvmPartition>,
    /// hv_vmbus's version line.
    pub vmbus: String,
    /// The kernel's IP-Config device line (device, hwaddr, address).
    pub eth0: String,
    /// Seconds from VM creation to eth0 configured.
    pub booted_s: f64,
    /// One per ping size.
    pub pings: Vec<PingRun>,
    /// A TCP connection attempt to a closed port of the guest: `Ok` if the guest's
    /// reset arrived intact, or why not.
    pub tcp_reset: Result<(), String>,
    /// With [`KernelGuestConfig::link_flap`]: pings while the guest was told its link
    /// was down but frames still passed (Linux with its carrier down answers none),
    /// then the pings after the cable was pulled for real and plugged back (from the
    /// first one answered on), or why none was.
    pub after_flap: Option<Result<Flap, String>>,
}

/// What to boot and how to probe it.
pub struct KernelGuestConfig {
    /// The kernel image (from [`build_kernel`], or another build).
    pub kernel: PathBuf,
    /// vCPUs (with 2 or more Linux takes subchannels).
    pub vcpus: u32,
    /// Guest RAM in bytes: beyond 3 GiB, the rest lies above 4 GiB.
    pub memory_size: u64,
    /// The NIC's MAC.
    pub mac: [u8; 6],
    /// The largest MTU the NIC offers the guest (Linux starts at 1500 and may raise
    /// its MTU up to this; the TAP must carry such frames, see `kvm_and_tap_mtu`).
    pub mtu: u32,
    /// Extra kernel command-line words (e.g. `initcall_debug`).
    pub extra_cmdline: String,
    /// Pings per size.
    pub pings: u32,
    /// ICMP payload sizes, each sent with Don't Fragment.
    pub sizes: Vec<usize>,
    /// After the pings, tell the guest its link is down while frames still pass and
    /// ping (no answer expected), then pull the TAP's cable for real, plug it back
    /// (media connect) and ping again.
    pub link_flap: bool,
}

/// The TAP as the guest's NIC sees it, with a link state of its own: the guest can be
/// told the cable is out while frames still pass, so what Linux does with the carrier
/// shows (with the carrier down it sends nothing, so pings go unanswered).
struct IndicatedLink {
    tap: Tap,
    up: Arc<AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<Arc<dyn Wake>>>>,
}

/// Sets what [`IndicatedLink`] tells the guest.
struct Indicate {
    up: Arc<AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<Arc<dyn Wake>>>>,
}

impl Indicate {
    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.wake();
        }
    }
}

impl NetEndpoint for IndicatedLink {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.tap.transmit(frame)
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.tap.transmit_meta(frame, meta)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        self.tap.tx_offload_support()
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        self.tap.transmit_offload(frame, offload)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.tap.receive(buf)
    }
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        self.tap.receive_meta(buf)
    }
    fn set_waker(&mut self, waker: Arc<dyn Wake>) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
        self.tap.set_waker(waker)
    }
    fn link_up(&self) -> bool {
        self.up.load(Ordering::SeqCst) && self.tap.link_up()
    }
    fn max_frame(&self) -> usize {
        self.tap.max_frame()
    }
    fn rx_queues(&self) -> u16 {
        self.tap.rx_queues()
    }
    fn take_rx_queue(&mut self, q: u16, waker: Arc<dyn Wake>) -> Option<Box<dyn NetRxQueue>> {
        self.tap.take_rx_queue(q, waker)
    }
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        self.tap.take_tx_queue(q)
    }
    fn set_steering(&mut self, steer: Option<Steer>) {
        self.tap.set_steering(steer)
    }
}

/// `count` pings of `size` bytes (Don't Fragment) from `netns` to the guest.
/// `count` pings of `size` bytes (Don't Fragment) from `netns` to the guest.
pub fn ping(netns: &Netns, count: u32, size: usize) -> PingRun {
    let (count, size_arg) = (count.to_string(), size.to_string());
    let out = netns.exec(&[
        "ping", "-c", &count, "-i", "0.2", "-W", "5", "-M", "do", "-s", &size_arg, GUEST_IP,
    ]);
    let text = match &out {
        Ok(t) | Err(t) => t.clone(),
    };
    let line = |key: &str| {
        text.lines()
            .find(|l| l.contains(key))
            .unwrap_or_default()
            .to_string()
    };
    PingRun {
        size,
        summary: line("packets transmitted"),
        rtt: line("rtt"),
        no_loss: out.is_ok() && text.contains(" 0% packet loss"),
    }
}

/// What the link flap of [`KernelGuestConfig::link_flap`] showed.
#[derive(Clone, Debug)]
pub struct Flap {
    /// Pings while the guest was told its link was down (frames still passing).
    pub while_down: PingRun,
    /// Frames delivered to the guest meanwhile (the echo requests did reach it).
    pub delivered_while_down: u64,
    /// Pings after the cable was pulled for real and plugged back.
    pub after: PingRun,
}

/// The link flap of [`KernelGuestConfig::link_flap`].
fn flap(
    netns: &Netns,
    indicate: &Indicate,
    link: &LinkControl,
    stats: &netvsp::NicCounters,
    pings: u32,
) -> Result<Flap, String> {
    // Told the link is down, frames still passing: a guest that dropped its carrier
    // sends no reply.
    indicate.set(false);
    std::thread::sleep(Duration::from_secs(3));
    let before = stats.snapshot().rx_frames;
    let while_down = ping(netns, 3, 56);
    let delivered_while_down = stats.snapshot().rx_frames - before;
    indicate.set(true);
    // Then the cable out for real and back in.
    link.set(false);
    std::thread::sleep(Duration::from_secs(3));
    link.set(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ping(netns, 1, 56).no_loss {
        if Instant::now() > deadline {
            return Err("no ping answered within 60 s of the cable's return".to_string());
        }
    }
    Ok(Flap {
        while_down,
        delivered_while_down,
        after: ping(netns, pings, 56),
    })
}

/// A kernel guest booted up to eth0 configured (see [`boot`]).
pub struct Booted {
    /// The guest, running.
    pub guest: LinuxGuest<KvmPartition>,
    /// Its console.
    pub console: Console,
    /// hv_vmbus's version line.
    pub vmbus: String,
    /// The kernel's IP-Config device line (device, hwaddr, address).
    pub eth0: String,
    /// Seconds from VM creation to eth0 configured.
    pub booted_s: f64,
    indicate: Indicate,
    link: LinkControl,
}

/// Boots the kernel with a netvsp NIC on `tap` and waits (with a generous limit,
/// printing progress) until the kernel has configured eth0 with the MAC we offered.
/// The console goes to `echo` and target/guest/kernel-console.log.
pub fn boot(
    config: &KernelGuestConfig,
    tap: Tap,
    echo: Box<dyn Write + Send>,
) -> Result<Booted, String> {
    let log = repo_root().join("target/guest/kernel-console.log");
    let (sink, console) = console(echo, Some(&log), false);
    let mac = config.mac;
    let kvm = {
        let mut c = KvmConfig::new(config.kernel.clone());
        c.memory_size = config.memory_size;
        c.vcpus = config.vcpus;
        c.initrd = None;
        c.cmdline = format!(
            "console=ttyS0 earlyprintk=serial ignore_loglevel pci=off \
             root=/dev/sda rootwait ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off {}",
            config.extra_cmdline
        );
        c.cpuid = Default::default();
        c
    };
    let started = Instant::now();
    let vm = KvmPartition::new(&kvm, Box::new(sink)).map_err(|e| e.to_string())?;
    let link = tap.link_control();
    let (up, waker) = (Arc::new(AtomicBool::new(true)), Arc::default());
    let indicate = Indicate {
        up: up.clone(),
        waker: Arc::clone(&waker),
    };
    let nic = {
        let mut c = NetvspConfig::default();
        c.mac = mac;
        c.mtu = config.mtu;
        c
    };
    let guest = attach_nic(vm, nic, Box::new(IndicatedLink { tap, up, waker }))?;
    let wait = |what: &str, secs: u64| {
        console.wait_for(what, Duration::from_secs(secs), guest.vm.as_ref())
    };
    let vmbus = wait("hv_vmbus: Vmbus version", 1800)?;
    wait("IP-Config: Complete", 1800)?;
    let eth0 = wait("device=eth0", 60)?;
    let booted_s = started.elapsed().as_secs_f64();
    if !eth0.contains(&format!("hwaddr={}", mac_string(&mac))) {
        return Err(format!("eth0 does not have the MAC we offered: {eth0}"));
    }
    Ok(Booted {
        guest,
        console,
        vmbus,
        eth0,
        booted_s,
        indicate,
        link,
    })
}

/// Boots the kernel ([`boot`]), then pings it from `netns`, sends a SYN to a closed
/// port and, with [`KernelGuestConfig::link_flap`], flaps its link.
pub fn run(
    config: &KernelGuestConfig,
    tap: Tap,
    netns: &Netns,
    echo: Box<dyn Write + Send>,
) -> Result<KernelRun, String> {
    let Booted {
        guest,
        vmbus,
        eth0,
        booted_s,
        indicate,
        link,
        ..
    } = boot(config, tap, echo)?;
    let pings = config
        .sizes
        .iter()
        .map(|&size| ping(netns, config.pings, size))
        .collect();
    // A SYN to a port nobody listens on: the guest kernel answers with a reset (its
    // checksum computed by Linux itself: resets go out without checksum offload); a
    // corrupted frame would make the host's kernel drop it and the connect time out.
    let tcp_reset = netns
        .run(|| {
            let addr = std::net::SocketAddr::from(([10, 0, 2, 15], 5999));
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(20)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
                Err(e) => Err(format!("connect to a closed port: {e} (no valid reset)")),
                Ok(_) => Err("connected to a port nobody listens on".to_string()),
            }
        })?
        .join()
        .map_err(|_| "the connect thread panicked".to_string())?;
    // The cable out and back in: Linux must take both indications and, once the link
    // is back, answer again (the first pings may go while it brings the carrier up).
    let after_flap = config
        .link_flap
        .then(|| flap(netns, &indicate, &link, &guest.nic, config.pings));
    drop(indicate);
    Ok(KernelRun {
        guest,
        vmbus,
        eth0,
        booted_s,
        pings,
        tcp_reset,
        after_flap,
    })
}
