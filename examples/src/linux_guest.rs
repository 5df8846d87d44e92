//! Booting Debian's Linux on the kvm or mshv backend with a netvsp NIC, for
//! `examples/linux_guest.rs`, `examples/mshv_guest.rs` and the `linux_guest` test:
//! building the guest image, reading the console, the TAP-in-a-namespace network the
//! host side uses, and the traffic both examples and the test run.
//!
//! The guest runs `scripts/guest/init`, which reports on the console with lines
//! `HVTEST <event> ...`; its agent (`examples/guest-agent`) runs TCP transfers whose
//! bytes follow [`pattern::Pattern`], so both ends check every byte.

#[path = "../guest-agent/pattern.rs"]
pub mod pattern;

use hv_partition::Partition;
use hv_partition::kvm::{KvmConfig, KvmPartition};
use hv_partition::mshv::{MshvConfig, MshvPartition};
use hv_partition::pc::VmOutcome;
use netvsp::tap::Tap;
use netvsp::{NetEndpoint, Netvsp, NetvspConfig, NicCounters};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmbus::{HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::{Guid, class};

/// The repository root (where `scripts/` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The kernel and initramfs to boot.
#[derive(Clone, Debug)]
pub struct GuestImage {
    /// Uncompressed vmlinux (boots without the decompressor).
    pub kernel: PathBuf,
    /// initramfs with busybox, hv_vmbus.ko, hv_netvsc.ko, the init script and agent.
    pub initrd: PathBuf,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Builds the guest agent (plain `rustc`, static, std only) and runs
/// `scripts/guest-image.sh`, which fetches Debian's kernel and busybox (cached in
/// `target/guest`) and packs the initramfs.
pub fn prepare_image() -> Result<GuestImage, String> {
    let root = repo_root();
    let out = root.join("target/guest");
    let agent = build_guest_agent()?;
    run(Command::new(root.join("scripts/guest-image.sh"))
        .arg(&out)
        .arg(&agent))?;
    Ok(GuestImage {
        kernel: out.join("vmlinux"),
        initrd: out.join("initramfs.cpio.gz"),
    })
}

/// Builds the guest agent (`examples/guest-agent`, plain `rustc`, static, std only)
/// as target/guest/hv-guest-agent.
pub fn build_guest_agent() -> Result<PathBuf, String> {
    let root = repo_root();
    let out = root.join("target/guest");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let agent = out.join("hv-guest-agent");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    run(Command::new(rustc)
        .args([
            "-O",
            "--edition",
            "2021",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "strip=symbols", "-C", "debuginfo=0", "-o"])
        .arg(&agent)
        .arg(root.join("examples/guest-agent/main.rs")))?;
    Ok(agent)
}

/// The console as lines, for waiting on the guest's `HVTEST` reports.
pub struct Console {
    lines: Receiver<String>,
    last: Arc<Mutex<String>>,
}

/// The `Write` end the VM's serial port writes to: splits lines, forwards them to the
/// [`Console`] (dropping when nobody reads, never blocking the vCPU), and echoes them
/// to `echo` (all lines, or only `HVTEST` lines when `quiet`).
pub struct ConsoleSink {
    partial: Vec<u8>,
    tx: SyncSender<String>,
    echo: Box<dyn Write + Send>,
    log: Option<std::fs::File>,
    quiet: bool,
    last: Arc<Mutex<String>>,
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches('\r')
                    .to_string();
                self.partial.clear();
                if let Some(f) = self.log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if !self.quiet || line.starts_with("HVTEST") || line.contains("hv_") {
                    let _ = writeln!(self.echo, "{line}");
                }
                line.clone_into(&mut self.last.lock().unwrap_or_else(|e| e.into_inner()));
                let _ = self.tx.try_send(line);
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.echo.flush()
    }
}

/// A console: the sink for the VM and the line reader. `log` receives every line.
pub fn console(
    echo: Box<dyn Write + Send>,
    log: Option<&Path>,
    quiet: bool,
) -> (ConsoleSink, Console) {
    let (tx, rx) = sync_channel(100_000);
    let log = log.and_then(|p| std::fs::File::create(p).ok());
    let last = Arc::new(Mutex::new(String::new()));
    (
        ConsoleSink {
            partial: Vec::new(),
            tx,
            echo,
            log,
            quiet,
            last: last.clone(),
        },
        Console { lines: rx, last },
    )
}

impl Console {
    /// The last line the guest printed (its `[ seconds]` stamp is the guest's time).
    pub fn last_line(&self) -> String {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// [`Console::last_line`] for another thread.
    pub fn last_line_fn(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let last = self.last.clone();
        move || last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for a line starting with `prefix` (after the kernel's `[ seconds]`
    /// timestamp, if it has one); fails on a guest-reported failure, a kernel panic
    /// or the timeout.
    /// The VM's end also ends the wait. Every 30 s it prints how long it has waited
    /// and the guest's last line (a loaded machine slows an emulated guest a lot).
    pub fn wait_for(
        &self,
        prefix: &str,
        timeout: Duration,
        vm: &(impl VmStatus + ?Sized),
    ) -> Result<String, String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut next_progress = started + Duration::from_secs(30);
        loop {
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(30);
                eprintln!(
                    "  waiting for {prefix:?}: {} s of {} s; the guest's last line: {}",
                    started.elapsed().as_secs(),
                    timeout.as_secs(),
                    self.last_line()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(outcome) = vm.vm_outcome() {
                // Drain what the guest printed before it stopped.
                while let Ok(line) = self.lines.try_recv() {
                    if untimed(&line).starts_with(prefix) {
                        return Ok(line);
                    }
                }
                return Err(format!(
                    "the VM ended ({outcome:?}) while waiting for {prefix:?}"
                ));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(line) => {
                    if untimed(&line).starts_with(prefix) {
                        return Ok(line);
                    }
                    if line.starts_with("HVTEST fail")
                        || line.starts_with("HVTEST agent-error")
                        || line.contains("Kernel panic")
                    {
                        return Err(format!("guest failed while waiting for {prefix:?}: {line}"));
                    }
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "timed out after {timeout:?} waiting for {prefix:?}"
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("console closed while waiting for {prefix:?}"));
                }
            }
        }
    }
}

/// A console line without the kernel's `[    1.234567] ` timestamp.
/// (Leading spaces go too: the kernel indents continuation lines.)
fn untimed(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((stamp, rest)) if stamp.trim().parse::<f64>().is_ok() => rest.trim_start(),
        _ => line,
    }
}

/// A network namespace holding the host end of the guest's TAP; deleted on drop.
pub struct Netns {
    /// Its name (`ip netns` name).
    pub name: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

impl Netns {
    /// Runs `f` on a thread that has joined this namespace (sockets it creates live
    /// there).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<std::thread::JoinHandle<T>, String> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        Ok(std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace fd we hold open; it only changes this
            // thread's network namespace.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        }))
    }

    /// Runs a command inside the namespace (`ip netns exec`), returning its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .map_err(|e| format!("{args:?}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "{args:?} failed ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// Why the TAP network is unavailable (the caller skips or falls back).
#[derive(Debug)]
pub struct NoTap(pub String);

/// Creates a TAP device, moves it into a new namespace with `host_cidr` on it, and
/// returns the netvsp endpoint and the namespace.
pub fn tap_in_netns(tag: &str, host_cidr: &str) -> Result<(Tap, Netns), NoTap> {
    tap_in_netns_mtu(tag, host_cidr, 1500)
}

/// [`tap_in_netns`] with the TAP interface's MTU (and the frames the backend carries)
/// at `mtu`, for jumbo frames.
pub fn tap_in_netns_mtu(tag: &str, host_cidr: &str, mtu: u32) -> Result<(Tap, Netns), NoTap> {
    if !Path::new("/dev/net/tun").exists() {
        return Err(NoTap("/dev/net/tun is missing".into()));
    }
    for tool in ["ip", "ping"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Err(NoTap(format!("`{tool}` is not installed")));
        }
    }
    let id = std::process::id() % 100_000;
    let (tap_name, ns) = (format!("{tag}t{id}"), format!("{tag}n{id}"));
    // Receive queues for up to 4 guest queues: a multi-queue guest's subchannels then
    // pull theirs on their own threads, steered by its RSS.
    let max_frame = netvsp::backend::frame_size(mtu).max(netvsp::backend::MAX_FRAME);
    let tap = Tap::open_with_queues(&tap_name, max_frame, 4).map_err(|e| {
        NoTap(format!(
            "cannot create TAP {tap_name} ({e}); needs CAP_NET_ADMIN"
        ))
    })?;
    run(Command::new("ip").args(["netns", "add", &ns]))
        .map_err(|e| NoTap(format!("cannot create a network namespace: {e}")))?;
    let netns = Netns { name: ns.clone() };
    let mtu = mtu.to_string();
    let setup = [
        vec!["link", "set", &tap_name, "netns", &ns],
        vec!["-n", &ns, "link", "set", &tap_name, "mtu", &mtu],
        vec!["-n", &ns, "addr", "add", host_cidr, "dev", &tap_name],
        vec!["-n", &ns, "link", "set", &tap_name, "up"],
        vec!["-n", &ns, "link", "set", "lo", "up"],
    ];
    for args in setup {
        run(Command::new("ip").args(&args)).map_err(NoTap)?;
    }
    Ok((tap, netns))
}

/// What a guest test needs before it can run for real: a usable /dev/kvm and a TAP in a
/// new namespace with the host end at [`HOST_IP`]. `Err` is the reason to print as
/// SKIPPED.
pub fn kvm_and_tap(tag: &str) -> Result<(Tap, Netns), String> {
    kvm_and_tap_mtu(tag, 1500)
}

/// [`kvm_and_tap`] with the TAP's MTU at `mtu` ([`tap_in_netns_mtu`]).
pub fn kvm_and_tap_mtu(tag: &str, mtu: u32) -> Result<(Tap, Netns), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm is missing or not accessible ({e})"))?;
    ensure_tools(&[("ip", "iproute2"), ("ping", "iputils-ping")])?;
    tap_in_netns_mtu(tag, &format!("{HOST_IP}/24"), mtu)
        .map_err(|e| format!("no TAP network: {}", e.0))
}

/// Makes sure each `(command, Debian package)` is installed: installs the missing ones
/// with apt-get when it can (root, apt-get present). `Err` is the reason to print as
/// SKIPPED: a host without them, and no way to install them.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<(), String> {
    let have = |cmd: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let why = format!("needs {} (not installed)", missing.join(" and "));
    // The effective uid is the third field of /proc/self/status's Uid line.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root || !have("apt-get") {
        return Err(format!(
            "{why}; cannot install them here (root and apt-get needed)"
        ));
    }
    println!("installing {} with apt-get", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"])).map_err(|e| format!("{why}: {e}"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq"])
        .args(&missing))
    .map_err(|e| format!("{why}: {e}"))?;
    match tools.iter().find(|(cmd, _)| !have(cmd)) {
        Some((cmd, pkg)) => Err(format!("{cmd} still missing after installing {pkg}")),
        None => Ok(()),
    }
}

/// What to boot.
pub struct BootOptions {
    /// Kernel and initramfs.
    pub image: GuestImage,
    /// Guest RAM.
    pub memory_size: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// The NIC's MAC.
    pub mac: [u8; 6],
    /// Extra kernel command-line words (e.g. `hv.ip=...`, `hv.agent=...`).
    pub extra_cmdline: String,
}

/// How a VM ended, once it has: what waiting on its console needs.
pub trait VmStatus {
    /// The outcome, once decided.
    fn vm_outcome(&self) -> Option<VmOutcome>;
}

impl<V: GuestVm> VmStatus for V {
    fn vm_outcome(&self) -> Option<VmOutcome> {
        self.outcome()
    }
}

/// What the examples and the test need from a VM, on either hardware backend.
pub trait GuestVm: Partition + 'static {
    /// Starts the vCPUs.
    fn start(self: &Arc<Self>) -> Result<(), String>;
    /// How the VM ended, once it has.
    fn outcome(&self) -> Option<VmOutcome>;
    /// Waits for the end, up to `timeout`.
    fn wait(&self, timeout: Duration) -> VmOutcome;
    /// Stops the VM.
    fn stop(&self, timeout: Duration) -> VmOutcome;
    /// One line of exit counters.
    fn exit_counters(&self) -> String;
    /// Each vCPU's registers, where the backend can report them.
    fn dump_state(&self) -> Vec<String>;
    /// The kvm backend's exit counters (`None` on other backends).
    fn kvm_stats(&self) -> Option<hv_partition::kvm::KvmStats> {
        None
    }
}

/// The lifecycle methods both backends have under the same names.
macro_rules! lifecycle {
    ($ty:ty) => {
        fn start(self: &Arc<Self>) -> Result<(), String> {
            <$ty>::start(self).map_err(|e| e.to_string())
        }
        fn outcome(&self) -> Option<VmOutcome> {
            <$ty>::outcome(self)
        }
        fn wait(&self, timeout: Duration) -> VmOutcome {
            <$ty>::wait(self, Some(timeout))
        }
        fn stop(&self, timeout: Duration) -> VmOutcome {
            <$ty>::stop(self, timeout)
        }
    };
}

impl GuestVm for KvmPartition {
    lifecycle!(KvmPartition);
    fn exit_counters(&self) -> String {
        let s = self.stats();
        format!(
            "exits {} (port I/O {}, MSR {}, hypercalls {}, emulation fallbacks {}), SINT interrupts {} ({} blocked)",
            s.exits,
            s.io_exits,
            s.msr_exits,
            s.hypercalls,
            s.emulated,
            s.interrupts,
            s.interrupts_blocked,
        )
    }
    fn dump_state(&self) -> Vec<String> {
        KvmPartition::dump_state(self)
    }
    fn kvm_stats(&self) -> Option<hv_partition::kvm::KvmStats> {
        Some(self.stats())
    }
}

impl GuestVm for MshvPartition {
    lifecycle!(MshvPartition);
    fn exit_counters(&self) -> String {
        let s = self.stats();
        format!(
            "exits {} (port I/O {}, hypercalls {}), messages posted {} queued {} flushed {} dropped {}, events {}, hypervisor errors {}",
            s.exits,
            s.io_exits,
            s.hypercalls,
            s.posted,
            s.queued,
            s.flushed,
            s.dropped,
            s.events,
            s.hypervisor_errors,
        )
    }
    fn dump_state(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A running guest with its VMBus host and NIC.
pub struct LinuxGuest<V: GuestVm> {
    /// The VM.
    pub vm: Arc<V>,
    /// The VMBus host (same code as on the sim backend).
    pub host: HostBus<V>,
    /// The NIC's counters.
    pub nic: NicCounters,
}

impl<V: GuestVm> LinuxGuest<V> {
    /// One line of VM exit and NIC counters, for reports.
    pub fn counters(&self) -> String {
        let n = self.nic.snapshot();
        let queues = 1 + n.subchannels as usize;
        let per_queue = |c: &[u64]| {
            c.iter()
                .take(queues)
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        format!(
            "{}; NIC {} queue(s), tx {} ({} per queue, {} through subchannel threads' own transmit queues) rx {} ({} per queue, {} pulled by subchannel threads) rx_no_buffer {} bad {}, offloaded tx {} (LSO segments {}, native {}, refused {})",
            self.vm.exit_counters(),
            queues,
            n.tx_frames,
            per_queue(&n.tx_queue_packets),
            n.tx_own_queue,
            n.rx_frames,
            per_queue(&n.rx_queue_frames),
            n.rx_steered,
            n.rx_no_buffer,
            n.bad_packets,
            n.tx_offloaded,
            n.tx_lso_segments,
            n.tx_native_offloads,
            n.tx_offload_rejected,
        )
    }
}

/// The kernel command line both backends boot with.
fn cmdline(opts: &BootOptions) -> String {
    format!(
        "console=ttyS0 mitigations=off pci=off panic=-1 init_on_alloc=0 nosoftlockup cryptomgr.notests ipv6.disable=1 ignore_loglevel {}",
        opts.extra_cmdline
    )
}

/// Creates a kvm VM for `opts`.
pub fn create_kvm(opts: &BootOptions, console: ConsoleSink) -> Result<Arc<KvmPartition>, String> {
    let config = {
        let mut c = KvmConfig::new(opts.image.kernel.clone());
        c.memory_size = opts.memory_size;
        c.vcpus = opts.vcpus;
        c.initrd = Some(opts.image.initrd.clone());
        c.cmdline = cmdline(opts);
        c.cpuid = Default::default();
        c
    };
    KvmPartition::new(&config, Box::new(console)).map_err(|e| e.to_string())
}

/// Creates an mshv partition for `opts` (needs /dev/mshv).
pub fn create_mshv(opts: &BootOptions, console: ConsoleSink) -> Result<Arc<MshvPartition>, String> {
    let config = {
        let mut c = MshvConfig::new(opts.image.kernel.clone());
        c.memory_size = opts.memory_size;
        c.vcpus = opts.vcpus;
        c.initrd = Some(opts.image.initrd.clone());
        c.cmdline = cmdline(opts);
        c
    };
    MshvPartition::new(&config, Box::new(console)).map_err(|e| e.to_string())
}

/// Installs the VMBus host and a netvsp NIC (MAC `mac`, frames to `endpoint`) on
/// `vm`, and starts it.
pub fn attach<V: GuestVm>(
    vm: Arc<V>,
    mac: [u8; 6],
    endpoint: Box<dyn NetEndpoint>,
) -> Result<LinuxGuest<V>, String> {
    let mut config = NetvspConfig::default();
    config.mac = mac;
    attach_nic(vm, config, endpoint)
}

/// [`attach`] with the NIC's whole configuration.
pub fn attach_nic<V: GuestVm>(
    vm: Arc<V>,
    config: NetvspConfig,
    endpoint: Box<dyn NetEndpoint>,
) -> Result<LinuxGuest<V>, String> {
    let host = HostBus::new(vm.clone(), HostConfig::default()).map_err(|e| e.to_string())?;
    let nic = Netvsp::new(config, endpoint);
    let stats = nic.stats();
    host.offer(
        OfferParams::new(
            class::NETWORK,
            Guid {
                data1: 0x4e49_4330,
                ..Guid::ZERO
            },
        ),
        Box::new(nic),
    )
    .map_err(|e| e.to_string())?;
    vm.start()?;
    Ok(LinuxGuest {
        vm,
        host,
        nic: stats,
    })
}

/// Creates the kvm VM, its VMBus host and a netvsp NIC on `endpoint`, and starts it.
pub fn boot(
    opts: &BootOptions,
    endpoint: Box<dyn NetEndpoint>,
    console: ConsoleSink,
) -> Result<LinuxGuest<KvmPartition>, String> {
    attach(create_kvm(opts, console)?, opts.mac, endpoint)
}

/// The guest's address on the TAP network (`hv.ip=`).
pub const GUEST_IP: &str = "10.0.2.15";
/// The host end of the TAP network, inside the namespace.
pub const HOST_IP: &str = "10.0.2.1";

/// The guest agent's job for [`exchange`]: receive `bytes` on port 5001 (pattern
/// seed 1), then send `bytes` to the host's port 5002 (seed 2).
pub fn agent_cmdline(bytes: u64) -> String {
    format!(" hv.agent=recv,5001,{bytes},1,send,{HOST_IP}:5002,{bytes},2")
}

/// What [`exchange`] measured.
pub struct Exchange {
    /// The ping summary line ("N packets transmitted, N received, 0% packet loss...").
    pub ping_summary: String,
    /// Ping's rtt line.
    pub ping_rtt: String,
    /// Seconds the host took to send `bytes` to the guest.
    pub to_guest_s: f64,
    /// Seconds the host took to receive (and check) `bytes` from the guest.
    pub from_guest_s: f64,
}

/// The traffic the examples and the test run once the guest reported `HVTEST up`:
/// `pings` pings from the namespace, then `bytes` each way through the guest agent
/// started with [`agent_cmdline`], every byte checked on both ends. `step` is called
/// with each console line waited for.
pub fn exchange<V: GuestVm>(
    guest: &LinuxGuest<V>,
    console: &Console,
    netns: &Netns,
    pings: u32,
    bytes: u64,
    mut step: impl FnMut(&str),
) -> Result<Exchange, String> {
    let ping = netns.exec(&[
        "ping",
        "-c",
        &pings.to_string(),
        "-i",
        "0.05",
        "-W",
        "5",
        GUEST_IP,
    ])?;
    let find = |needle: &str| {
        ping.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    };
    let (ping_summary, ping_rtt) = (find("packet loss"), find("rtt"));
    let mut wait = |what: &str, secs: u64| -> Result<(), String> {
        let line = console.wait_for(what, Duration::from_secs(secs), guest.vm.as_ref())?;
        step(&line);
        Ok(())
    };
    wait("HVTEST listening 5001", 120)?;
    let sender = netns.run(move || -> Result<f64, String> {
        let mut s = TcpStream::connect((GUEST_IP, 5001)).map_err(|e| e.to_string())?;
        send_pattern(&mut s, bytes, 1)
    })?;
    // Listen before the guest's send step connects.
    let receiver = netns.run(move || -> Result<f64, String> {
        let l = TcpListener::bind((HOST_IP, 5002)).map_err(|e| e.to_string())?;
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        recv_pattern(&mut s, bytes, 2)
    })?;
    let limit = 120 + (bytes >> 20) * 20;
    wait("HVTEST recv-ok", limit)?;
    let to_guest_s = sender.join().map_err(|_| "sender panicked")??;
    wait("HVTEST send-ok", limit)?;
    let from_guest_s = receiver.join().map_err(|_| "receiver panicked")??;
    Ok(Exchange {
        ping_summary,
        ping_rtt,
        to_guest_s,
        from_guest_s,
    })
}

/// Which backend [`run_example`] boots on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// /dev/kvm, Hyper-V emulated in user space.
    Kvm,
    /// /dev/mshv, Hyper-V from the Microsoft Hypervisor.
    Mshv,
}

/// The body of `examples/linux_guest.rs` and `examples/mshv_guest.rs`: builds the
/// image, attaches the NIC to a TAP in a new namespace (or an empty switch port without
/// TAP), boots, pings and transfers `mib` MiB each way, and prints a report.
pub fn run_example(backend: Backend, mib: u64) -> Result<(), String> {
    let bytes = mib << 20;
    println!("building the guest image (scripts/guest-image.sh; cached in target/guest)");
    let image = prepare_image()?;
    let (endpoint, netns): (Box<dyn NetEndpoint>, _) =
        match tap_in_netns("hve", &format!("{HOST_IP}/24")) {
            Ok((tap, ns)) => (Box::new(tap), Some(ns)),
            Err(NoTap(why)) => {
                println!("no TAP network ({why}): the NIC goes to an empty in-process switch");
                let (port, _link) = netvsp::Switch::new(64).port();
                (Box::new(port), None)
            }
        };
    let agent = if netns.is_some() {
        agent_cmdline(bytes)
    } else {
        String::new()
    };
    let quiet = std::env::var_os("HV_QUIET").is_some();
    let log = repo_root().join("target/guest/console.log");
    let (sink, console) = console(Box::new(std::io::stdout()), Some(&log), quiet);
    let opts = BootOptions {
        image,
        memory_size: 256 << 20,
        // kvm_pvm stalls on the second vCPU (see hv_partition::kvm::is_kvm_pvm).
        vcpus: if backend == Backend::Kvm && hv_partition::kvm::is_kvm_pvm() {
            1
        } else {
            2
        },
        mac: [0x00, 0x15, 0x5d, 0x42, 0x00, 0x07],
        extra_cmdline: format!("hv.ip={GUEST_IP}/24{agent}"),
    };
    let started = Instant::now();
    match backend {
        Backend::Kvm => {
            let vm = create_kvm(&opts, sink)?;
            drive(
                attach(vm, opts.mac, endpoint)?,
                &console,
                netns.as_ref(),
                bytes,
                started,
            )
        }
        Backend::Mshv => {
            let vm = create_mshv(&opts, sink)?;
            drive(
                attach(vm, opts.mac, endpoint)?,
                &console,
                netns.as_ref(),
                bytes,
                started,
            )
        }
    }
}

fn drive<V: GuestVm>(
    guest: LinuxGuest<V>,
    console: &Console,
    netns: Option<&Netns>,
    bytes: u64,
    started: Instant,
) -> Result<(), String> {
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
    let wait = |what: &str, secs: u64| {
        console.wait_for(what, Duration::from_secs(secs), guest.vm.as_ref())
    };
    wait("HVTEST up", 3600)?;
    let mut report = vec![format!(
        "guest up (hv_vmbus and hv_netvsc bound, eth0 up) after {:.1} s",
        started.elapsed().as_secs_f64()
    )];
    if let Some(ns) = netns {
        let x = exchange(&guest, console, ns, 20, bytes, |l| {
            report.push(l.to_string())
        })?;
        let mib = bytes >> 20;
        let rate = |t: f64| bytes as f64 * 8.0 / t / 1e6;
        report.push(format!("ping: {}", x.ping_summary));
        report.push(format!("ping: {}", x.ping_rtt));
        report.push(format!(
            "host -> guest: {mib} MiB in {:.2} s = {:.1} Mbit/s",
            x.to_guest_s,
            rate(x.to_guest_s)
        ));
        report.push(format!(
            "guest -> host: {mib} MiB in {:.2} s = {:.1} Mbit/s (checked byte by byte)",
            x.from_guest_s,
            rate(x.from_guest_s)
        ));
    }
    report.push(wait("HVTEST unloaded", 300)?);
    let outcome = guest.vm.wait(Duration::from_secs(60));
    let nvsp = guest.nic.snapshot().nvsp_version;
    report.push(format!("VM outcome: {outcome:?}"));
    report.push(format!("NVSP version {}.{}", nvsp >> 16, nvsp & 0xffff));
    report.push(oid_report(&guest.nic));
    report.push(guest.counters());
    println!("\n== report");
    for l in report {
        println!("{l}");
    }
    Ok(())
}

/// The RNDIS requests the guest made, in order, as one report line.
pub fn oid_report(nic: &NicCounters) -> String {
    let oids: Vec<String> = nic
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
    format!("RNDIS requests: {}", oids.join(", "))
}

/// A shared buffer usable as a console echo target (for tests that print at the end).
#[derive(Clone, Default)]
pub struct SharedLog(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Formats a MAC as Linux prints it.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes `bytes` of `Pattern(seed)` to `s`; returns the seconds it took.
pub fn send_pattern(s: &mut impl Write, bytes: u64, seed: u64) -> Result<f64, String> {
    let t = Instant::now();
    let mut p = pattern::Pattern::new(seed);
    let mut buf = vec![0u8; 256 << 10];
    let mut sent = 0u64;
    while sent < bytes {
        let n = ((bytes - sent) as usize).min(buf.len());
        let chunk = buf.get_mut(..n).ok_or("chunk")?;
        p.fill(chunk);
        s.write_all(chunk)
            .map_err(|e| format!("write after {sent} bytes: {e}"))?;
        sent += n as u64;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Reads `bytes` from `s` and checks each against `Pattern(seed)`; returns the seconds
/// it took.
pub fn recv_pattern(s: &mut impl std::io::Read, bytes: u64, seed: u64) -> Result<f64, String> {
    let t = Instant::now();
    let mut p = pattern::Pattern::new(seed);
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read after {got} bytes: {e}"))?;
        if n == 0 {
            return Err(format!("EOF after {got} of {bytes} bytes"));
        }
        let n = n.min((bytes - got) as usize);
        p.check(buf.get(..n).ok_or("chunk")?)
            .map_err(|off| format!("corrupt byte at offset {off}"))?;
        got += n as u64;
    }
    Ok(t.elapsed().as_secs_f64())
}
