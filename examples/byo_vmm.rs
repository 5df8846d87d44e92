//! Bring your own VMM: a VMM written here, on rust-vmm's kvm-ioctls and vm-memory
//! alone, that hosts this workspace's VMBus and synthetic NIC through their public API
//! and boots a real Linux kernel (6.1, hv_vmbus and hv_netvsc built in; see the
//! `kernel_guest` example) that brings its NIC up and answers pings.
//!
//! It does not use `hv_partition::kvm::KvmPartition`. What it owns, as any VMM does:
//!
//! - guest memory: a vm-memory `GuestMemoryMmap` of two regions, 256 MiB of anonymous
//!   memory at 0 and 64 MiB of a shared file at 4 GiB (the guest's rings in the first
//!   are read page by page, those in the second double-mapped), handed to the bus as
//!   `GuestMemory::from_ram`;
//! - the VM, its vCPUs and their threads, with its own exit loop: Hyper-V MSR exits go
//!   to `UserHv::rdmsr`/`wrmsr`, the hypercall port's exit to `UserHv::hypercall`
//!   (RAX out), SINTs come back as MSIs from the interrupt sink it gives `UserHv`;
//! - its event loop: one thread waits in epoll on eventfds, and polls the `HostBus`
//!   and the `Netvsp` (both started in their poll-driven mode: the library starts no
//!   thread for them) when theirs fires.
//!
//! From the library it takes only the PC pieces (`hv_partition::pc`: kernel loader,
//! ACPI tables, COM1 and power-off ports, the CPUID table, the decoder of the few
//! instructions kvm_pvm's emulator leaves to the VMM).
//!
//! ```sh
//! sudo cargo run --release -p vmbus-examples --example byo_vmm [pings per size]
//! ```
//!
//! Needs /dev/kvm and root (a TAP in a network namespace). The kernel is built by
//! scripts/guest-kernel.sh on first use.

// A VMM on kvm-ioctls registers its memory slots with an unsafe call (the kernel
// then writes the memory): the one unsafe operation here.
#![allow(unsafe_code)]
// The test includes this file as a module and does not call `main`.
#![allow(dead_code)]
// Example code: the slices indexed here are built here.
#![allow(clippy::indexing_slicing)]

// This workspace: the bus (with the partition pieces it re-exports) and the NIC.
use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, Msrs, kvm_cpuid_entry2, kvm_enable_cap,
    kvm_fpu, kvm_msi, kvm_msr_entry, kvm_pit_config, kvm_regs, kvm_segment,
    kvm_userspace_memory_region,
};
use kvm_ioctls::{
    Kvm, MsrExitReason, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VcpuExit,
    VcpuFd, VmFd,
};
use netvsp::{NetEndpoint, Netvsp, NetvspConfig, NicCounters, NicPoller};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};
use vmbus::partition::HypercallRegisters;
use vmbus::partition::hyperv::HYPERCALL_PORT;
use vmbus::partition::pc::cpuid::{CpuidEntry, CpuidPolicy, for_linux_guest, linux_cmdline};
use vmbus::partition::pc::devices::{PortAction, Ports};
use vmbus::partition::pc::emulate::{Fallback, decode};
use vmbus::partition::pc::{VmOutcome, boot, layout};
use vmbus::partition::user_hv::is_hv_msr;
use vmbus::{EventFd, GuestMemory, Guid, HostBus, HostConfig, Partition, PollStatus, UserHv};
use vmbus_examples::linux_guest::VmStatus;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

/// What to boot.
pub struct ByoConfig {
    /// The kernel (scripts/guest-kernel.sh's vmlinux).
    pub kernel: PathBuf,
    /// vCPUs.
    pub vcpus: u32,
    /// The NIC's MAC.
    pub mac: [u8; 6],
    /// The kernel command line.
    pub cmdline: String,
}

/// The VMM: its VM, its guest's Hyper-V, its threads.
pub struct Vmm {
    vm: Arc<VmFd>,
    /// The guest's RAM as rust-vmm maps it.
    pub guest_ram: GuestMemoryMmap,
    /// Hyper-V emulated in user space (the `Partition` the bus runs on).
    pub hv: Arc<UserHv>,
    ports: Mutex<Ports>,
    stop: AtomicBool,
    outcome: Mutex<Option<VmOutcome>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The bus, polled by the event loop.
    pub bus: HostBus<UserHv>,
    /// The NIC's counters.
    pub nic: NicCounters,
    _kvm: Kvm,
}

fn err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> String {
    move |e| format!("KVM {what}: {e}")
}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 2
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Guest RAM: 256 MiB of anonymous memory at 0 and 64 MiB of a file at 4 GiB.
fn guest_ram() -> Result<GuestMemoryMmap, String> {
    let path = std::env::temp_dir().join(format!("byo-vmm-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    file.set_len(64 << 20).map_err(|e| e.to_string())?;
    GuestMemoryMmap::from_ranges_with_files([
        (GuestAddress(0), 256 << 20, None),
        (
            GuestAddress(layout::HIGH_RAM_GPA),
            64 << 20,
            Some(FileOffset::new(file, 0)),
        ),
    ])
    .map_err(|e| e.to_string())
}

impl Vmm {
    /// Builds the VM and its devices, the VMBus host and a NIC on `endpoint`; the
    /// vCPUs do not run yet.
    pub fn new(
        config: &ByoConfig,
        endpoint: Box<dyn NetEndpoint>,
        console: Box<dyn Write + Send>,
    ) -> Result<(Arc<Self>, NicPoller, Arc<EventFd>), String> {
        let kvm = Kvm::new().map_err(err("open /dev/kvm"))?;
        let vm = Arc::new(kvm.create_vm().map_err(err("create VM"))?);
        vm.set_tss_address(layout::KVM_TSS_GPA as usize)
            .map_err(err("TSS"))?;
        vm.set_identity_map_address(layout::KVM_IDENTITY_MAP_GPA)
            .map_err(err("identity map"))?;
        vm.create_irq_chip().map_err(err("irqchip"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(err("PIT"))?;
        // Hyper-V's MSRs exit to this process.
        let mut cap = kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
            ..Default::default()
        };
        cap.args[0] = u64::from(
            (MsrExitReason::Unknown | MsrExitReason::Inval | MsrExitReason::Filter).bits(),
        );
        vm.enable_cap(&cap).map_err(err("user-space MSRs"))?;
        vm.set_msr_filter(
            MsrFilterDefaultAction::ALLOW,
            &[MsrFilterRange {
                flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
                base: 0x4000_0000,
                msr_count: 0x200,
                bitmap: &[0u8; 0x200 / 8],
            }],
        )
        .map_err(err("MSR filter"))?;

        // Guest memory: ours, handed to the bus as it is.
        let guest_ram = guest_ram()?;
        let memory = GuestMemory::from_ram(&guest_ram).map_err(|e| e.to_string())?;
        for (slot, (gpa, region)) in memory.regions().enumerate() {
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: gpa,
                memory_size: region.len() as u64,
                userspace_addr: region.host_address(),
            };
            // SAFETY: each region is a mapping of `guest_ram`, which lives in the
            // returned Vmm as long as the VM fd and is never unmapped meanwhile.
            unsafe { vm.set_user_memory_region(r) }.map_err(err("memory slot"))?;
        }
        let baseline = CpuidPolicy::Auto.baseline();
        let cmdline = linux_cmdline(&config.cmdline, baseline).map_err(|e| e.to_string())?;
        let boot = boot::load(&memory, &config.kernel, None, &cmdline, config.vcpus, true)
            .map_err(|e| e.to_string())?;
        let com1 =
            vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(|e| e.to_string())?;
        vm.register_irqfd(&com1, layout::COM1_IRQ)
            .map_err(err("COM1 irqfd"))?;

        let vcpus = Self::vcpus(&kvm, &vm, config.vcpus, boot.entry, baseline)?;
        let tsc_khz = vcpus
            .first()
            .and_then(|v| v.get_tsc_khz().ok())
            .ok_or("no TSC frequency")?;
        // Hyper-V in user space; a SINT is an MSI to the VP's local APIC.
        let msi_vm = vm.clone();
        let hv = Arc::new(UserHv::new(
            memory,
            config.vcpus,
            u64::from(tsc_khz) * 1000,
            1_000_000_000,
            move |vp: u32, vector: u8| {
                let msi = kvm_msi {
                    address_lo: 0xfee0_0000 | (vp << 12),
                    data: u32::from(vector),
                    ..Default::default()
                };
                matches!(msi_vm.signal_msi(msi), Ok(n) if n > 0)
            },
        ));

        // The bus and the NIC, driven by this VMM's event loop through one eventfd.
        let wake = Arc::new(EventFd::new().map_err(|e| e.to_string())?);
        let bus = HostBus::polled(hv.clone(), HostConfig::default(), wake.clone());
        let (nic, poller) = Netvsp::polled(
            {
                let mut c = NetvspConfig::default();
                c.mac = config.mac;
                c
            },
            endpoint,
            wake.clone(),
        );
        let nic_stats = nic.stats();
        let instance = Guid {
            data1: 0x4279_6f00,
            ..Guid::ZERO
        };
        bus.offer(Netvsp::offer_params(instance), Box::new(nic))
            .map_err(|e| e.to_string())?;

        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| e.to_string())?;
        let vmm = Arc::new(Self {
            vm,
            guest_ram,
            hv,
            ports: Mutex::new(Ports::new(com1, console)),
            stop: AtomicBool::new(false),
            outcome: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            bus,
            nic: nic_stats,
            _kvm: kvm,
        });
        let mut threads = Vec::new();
        for (i, vcpu) in vcpus.into_iter().enumerate() {
            let me = vmm.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("byo-vcpu{i}"))
                    .spawn(move || me.run_vcpu(i as u32, vcpu))
                    .map_err(|e| e.to_string())?,
            );
        }
        *vmm.threads.lock().map_err(|_| "poisoned")? = threads;
        Ok((vmm, poller, wake))
    }

    /// The vCPUs, with the Hyper-V CPUID, and the boot CPU in long mode at `entry`.
    fn vcpus(
        kvm: &Kvm,
        vm: &VmFd,
        count: u32,
        entry: u64,
        baseline: bool,
    ) -> Result<Vec<VcpuFd>, String> {
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(err("CPUID"))?;
        let host: Vec<CpuidEntry> = supported.as_slice().iter().map(CpuidEntry::from).collect();
        let mut vcpus = Vec::new();
        for id in 0..count {
            let vcpu = vm.create_vcpu(u64::from(id)).map_err(err("vCPU"))?;
            let entries: Vec<kvm_cpuid_entry2> = for_linux_guest(&host, count, id, baseline)
                .into_iter()
                .map(kvm_cpuid_entry2::from)
                .collect();
            let cpuid = CpuId::from_entries(&entries).map_err(|_| "CPUID table")?;
            vcpu.set_cpuid2(&cpuid).map_err(err("set CPUID"))?;
            // Fast strings; MTRRs on, write-back by default.
            let msrs = Msrs::from_entries(&[
                kvm_msr_entry {
                    index: 0x1a0,
                    data: 1,
                    ..Default::default()
                },
                kvm_msr_entry {
                    index: 0x2ff,
                    data: (1 << 11) | 6,
                    ..Default::default()
                },
            ])
            .map_err(|_| "MSR list")?;
            vcpu.set_msrs(&msrs).map_err(err("MSRs"))?;
            // LINT0 ExtINT, LINT1 NMI.
            let mut lapic = vcpu.get_lapic().map_err(err("LAPIC"))?;
            for (off, mode) in [(0x350usize, 7u32), (0x360, 4)] {
                let reg = &mut lapic.regs[off..off + 4];
                let v =
                    u32::from_le_bytes([reg[0] as u8, reg[1] as u8, reg[2] as u8, reg[3] as u8]);
                let v = (v & !0x700) | (mode << 8);
                for (d, s) in reg.iter_mut().zip(v.to_le_bytes()) {
                    *d = s as libc::c_char;
                }
            }
            vcpu.set_lapic(&lapic).map_err(err("LAPIC"))?;
            vcpu.set_fpu(&kvm_fpu {
                fcw: 0x37f,
                mxcsr: 0x1f80,
                ..Default::default()
            })
            .map_err(err("FPU"))?;
            if id == 0 {
                vcpu.set_regs(&kvm_regs {
                    rflags: 2,
                    rip: entry,
                    rsp: layout::BOOT_STACK_GPA,
                    rbp: layout::BOOT_STACK_GPA,
                    rsi: layout::BOOT_PARAMS_GPA,
                    ..Default::default()
                })
                .map_err(err("registers"))?;
                let mut s = vcpu.get_sregs().map_err(err("sregs"))?;
                let seg = |i: u16| {
                    let g = boot::gdt_segment(i, boot::GDT[usize::from(i)]);
                    kvm_segment {
                        base: g.base,
                        limit: g.limit,
                        selector: g.selector,
                        type_: g.type_,
                        present: g.present,
                        dpl: g.dpl,
                        db: g.db,
                        s: g.s,
                        l: g.l,
                        g: g.g,
                        avl: g.avl,
                        unusable: u8::from(g.present == 0),
                        padding: 0,
                    }
                };
                s.gdt.base = layout::GDT_GPA;
                s.gdt.limit = (boot::GDT.len() * 8 - 1) as u16;
                s.idt.base = layout::IDT_GPA;
                s.idt.limit = 7;
                (s.cs, s.tr) = (seg(1), seg(3));
                (s.ds, s.es, s.fs, s.gs, s.ss) = (seg(2), seg(2), seg(2), seg(2), seg(2));
                s.cr0 |= boot::CR0_PE_PG;
                s.cr3 = layout::PML4_GPA;
                s.cr4 |= boot::CR4_PAE;
                s.efer |= boot::EFER_LME_LMA;
                vcpu.set_sregs(&s).map_err(err("sregs"))?;
            }
            vcpus.push(vcpu);
        }
        Ok(vcpus)
    }

    fn finish(&self, outcome: VmOutcome) {
        let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        o.get_or_insert(outcome);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// One vCPU's exit loop.
    fn run_vcpu(&self, index: u32, mut vcpu: VcpuFd) {
        while !self.stop.load(Ordering::SeqCst) {
            let (mut hypercall, mut unemulated) = (false, false);
            match vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) if port == u16::from(HYPERCALL_PORT) => {
                    hypercall = true;
                    let _ = data;
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    let action = self
                        .ports
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .write(port, data);
                    if let PortAction::Stop(_) = action {
                        self.finish(VmOutcome::PowerOff);
                    }
                }
                Ok(VcpuExit::IoIn(port, data)) => self
                    .ports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(port, data),
                Ok(VcpuExit::MmioRead(_, data)) => data.fill(0xff),
                Ok(VcpuExit::MmioWrite(..) | VcpuExit::Hlt | VcpuExit::Intr) => {}
                // Hyper-V's MSRs: to the user-space Hyper-V; an error is a #GP.
                Ok(VcpuExit::X86Rdmsr(exit)) if is_hv_msr(exit.index) => {
                    match self.hv.rdmsr(index, exit.index) {
                        Ok(v) => *exit.data = v,
                        Err(_) => *exit.error = 1,
                    }
                }
                Ok(VcpuExit::X86Wrmsr(exit)) if is_hv_msr(exit.index) => {
                    if self.hv.wrmsr(index, exit.index, exit.data).is_err() {
                        *exit.error = 1;
                    }
                }
                Ok(VcpuExit::X86Rdmsr(exit)) => *exit.error = 1,
                Ok(VcpuExit::X86Wrmsr(exit)) => *exit.error = 1,
                Ok(VcpuExit::Shutdown | VcpuExit::SystemEvent(..)) => self.finish(VmOutcome::Reset),
                Ok(VcpuExit::InternalError) => unemulated = true,
                Ok(other) => self.finish(VmOutcome::Failed(format!("vCPU {index}: {other:?}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => self.finish(VmOutcome::Failed(format!("vCPU {index}: {e}"))),
            }
            if unemulated && !self.emulate(&vcpu) {
                self.finish(VmOutcome::Failed(format!(
                    "vCPU {index}: KVM could not emulate an instruction"
                )));
            }
            if hypercall {
                // RCX, RDX, R8 in; RAX out. (RIP already points past the OUT.)
                match vcpu.get_regs() {
                    Ok(mut regs) => {
                        let r = HypercallRegisters {
                            control: regs.rcx,
                            input: regs.rdx,
                            output: regs.r8,
                        };
                        regs.rax = self.hv.hypercall(index, r);
                        if vcpu.set_regs(&regs).is_err() {
                            self.finish(VmOutcome::Failed("set regs".into()));
                        }
                    }
                    Err(e) => self.finish(VmOutcome::Failed(format!("get regs: {e}"))),
                }
            }
        }
    }

    /// kvm_pvm's emulator gave up on an instruction: complete INT3 and FWAIT, the two
    /// a Linux guest's boot needs here (LDMXCSR/STMXCSR left out: not seen with this
    /// kernel). False: the VM fails.
    fn emulate(&self, vcpu: &VcpuFd) -> bool {
        let Ok(mut regs) = vcpu.get_regs() else {
            return false;
        };
        let Ok(t) = vcpu.translate_gva(regs.rip) else {
            return false;
        };
        let mut insn = [0u8; 15];
        let avail = (4096 - (t.physical_address & 0xfff)).min(15) as usize;
        if t.valid == 0
            || self
                .hv
                .memory()
                .read(t.physical_address, &mut insn[..avail])
                .is_err()
        {
            return false;
        }
        match decode(&insn[..avail]) {
            Some(Fallback::Int3) => {
                let Ok(mut events) = vcpu.get_vcpu_events() else {
                    return false;
                };
                regs.rip += 1;
                events.exception.injected = 1;
                events.exception.nr = 3;
                events.exception.has_error_code = 0;
                vcpu.set_regs(&regs).is_ok() && vcpu.set_vcpu_events(&events).is_ok()
            }
            Some(Fallback::Fwait) => {
                regs.rip += 1;
                vcpu.set_regs(&regs).is_ok()
            }
            _ => false,
        }
    }

    /// Stops the vCPUs (kicking them out of KVM_RUN) and waits for their threads.
    pub fn shutdown(&self, timeout: Duration) -> VmOutcome {
        self.finish(VmOutcome::Stopped);
        let deadline = std::time::Instant::now() + timeout;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            use vmm_sys_util::signal::Killable;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                let _ = t.kill(kick_signal());
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(VmOutcome::Stopped)
    }
}

impl VmStatus for Vmm {
    fn vm_outcome(&self) -> Option<VmOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The VMM's event loop: epoll on the eventfd the bus and the NIC wake, and on `stop`;
/// polls both whenever it fires (and when a poll asked to be called back).
pub fn event_loop(
    vmm: Arc<Vmm>,
    nic: NicPoller,
    wake: Arc<EventFd>,
    stop: Arc<EventFd>,
) -> Result<JoinHandle<()>, String> {
    use std::os::fd::AsRawFd;
    let epoll = Epoll::new().map_err(|e| e.to_string())?;
    for (fd, token) in [(wake.as_raw_fd(), 1u64), (stop.as_raw_fd(), 2)] {
        epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )
            .map_err(|e| e.to_string())?;
    }
    std::thread::Builder::new()
        .name("byo-events".into())
        .spawn(move || {
            let mut events = [EpollEvent::default(); 4];
            let mut timeout_ms = 0i32;
            loop {
                let n = epoll.wait(timeout_ms, &mut events).unwrap_or(0);
                if events[..n].iter().any(|e| e.data() == 2) {
                    return;
                }
                wake.take();
                let mut next = Duration::from_secs(1);
                let mut busy = false;
                for s in [vmm.bus.poll(), nic.poll()] {
                    match s {
                        PollStatus::Busy => busy = true,
                        PollStatus::Idle(Some(t)) => next = next.min(t),
                        _ => {}
                    }
                }
                timeout_ms = if busy {
                    0
                } else {
                    next.as_millis().max(1) as i32
                };
            }
        })
        .map_err(|e| e.to_string())
}

#[cfg(not(test))]
fn main() -> Result<(), String> {
    use vmbus::Wake;
    use vmbus_examples::kernel_guest::{build_kernel, ping};
    use vmbus_examples::linux_guest::{GUEST_IP, HOST_IP, console, kvm_and_tap};
    let pings: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let (tap, netns) = kvm_and_tap("hvb")?;
    let kernel = build_kernel()?;
    let (sink, console) = console(Box::new(std::io::stdout()), None, true);
    let config = ByoConfig {
        kernel,
        vcpus: 2,
        mac: [0x00, 0x15, 0x5d, 0x42, 0x00, 0x0c],
        cmdline: format!(
            "console=ttyS0 ignore_loglevel pci=off root=/dev/sda rootwait \
             ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off"
        ),
    };
    let (vmm, nic, wake) = Vmm::new(&config, Box::new(tap), Box::new(sink))?;
    let stop = Arc::new(EventFd::new().map_err(|e| e.to_string())?);
    let events = event_loop(vmm.clone(), nic, wake, stop.clone())?;
    let wait = |what: &str| console.wait_for(what, Duration::from_secs(1800), vmm.as_ref());
    println!("{}", wait("hv_vmbus: Vmbus version")?);
    println!("{}", wait("device=eth0")?);
    for size in [56, 1000, 1472] {
        let p = ping(&netns, pings, size);
        println!("ping -s {size}: {}; {}", p.summary, p.rtt);
    }
    println!("{:?}", vmm.shutdown(Duration::from_secs(5)));
    stop.wake();
    let _ = events.join();
    Ok(())
}
