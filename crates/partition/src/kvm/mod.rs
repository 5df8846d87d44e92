//! The KVM backend (feature `kvm`, Linux x86-64): a VM that boots an unmodified Linux
//! kernel whose own hv_vmbus and hv_netvsc talk to the VMBus host in this process.
//!
//! KVM does the CPU, memory, PIC/IOAPIC/LAPIC and PIT. Hyper-V is emulated in user
//! space, so it works on hosts whose KVM has no Hyper-V support at all
//! (`docs/architecture.md`, "A Linux guest on KVM"):
//!
//! - CPUID: KVM's supported leaves minus every 0x4xxxxxxx leaf (a KVM signature would
//!   outrank Hyper-V), plus the Hyper-V leaves and the hypervisor bit
//!   ([`crate::pc::cpuid::for_linux_guest`]);
//! - MSRs: user-space MSR exits plus a deny filter over 0x40000000..0x400001FF, so
//!   every Hyper-V MSR access reaches [`UserHv`] (even on a KVM with Hyper-V built in);
//! - hypercalls: the hypercall page holds `out 0x99, al; ret`; the port exit is decoded
//!   by `hv_hypercall::decode` and dispatched to the same [`HypercallHandler`] the sim
//!   backend uses, RAX written back with `KVM_SET_REGS`;
//! - SINTs: the SynIC pages live in guest memory with the real layouts; an interrupt is
//!   a `KVM_SIGNAL_MSI` to the VP's local APIC with the SINT's vector (the guest runs
//!   without auto-EOI: the CPUID recommends it, so the MSI's EOI is the guest's own).
//!
//! On kvm_pvm (software KVM without VT-x) guest kernel code runs through KVM's
//! instruction emulator: see [`CpuidPolicy`] and `emulation_fallback`. Debian's kernel
//! boots to user space there but the first user-space SYSCALL faults (a kvm_pvm
//! limitation this VMM cannot see or fix), so real Linux guests need hardware KVM.
//!
//! Failures stop the VM, never the process: a vCPU that faults (triple fault, failed
//! entry, internal error) or a guest that writes garbage to the SynIC or hypercall
//! inputs gets an error status, a #GP or a stopped VM with the reason in
//! [`VmOutcome`].

use crate::pc::cpuid::CpuidEntry;
use crate::pc::emulate::{self, Fallback};
pub use crate::pc::{boot, layout};

use crate::backend::{HypercallHandler, Partition, PartitionError};
use crate::hyperv::{HYPERCALL_PORT, HvVpStats};
use crate::memory::GuestMemory;
use crate::pc::devices::{PortAction, Ports, StopReason};
use crate::user_hv::UserHv;
use hv_hypercall::HvMessage;
use hv_hypercall::decode::HypercallRegisters;
use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, Msrs, kvm_cpuid_entry2, kvm_enable_cap,
    kvm_fpu, kvm_msi, kvm_msr_entry, kvm_pit_config, kvm_regs, kvm_segment,
    kvm_userspace_memory_region,
};
use kvm_ioctls::{
    Kvm, MsrExitReason, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VcpuExit,
    VcpuFd, VmFd,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// What to boot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KvmConfig {
    /// Guest RAM in bytes ([`layout::MIN_MEMORY`]..=[`layout::MAX_MEMORY`]).
    pub memory_size: u64,
    /// Number of vCPUs (1..=[`layout::MAX_VCPUS`]).
    pub vcpus: u32,
    /// A bzImage or an uncompressed x86-64 vmlinux (faster: no decompressor).
    pub kernel: PathBuf,
    /// An initramfs (cpio, optionally compressed), or none.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (e.g. `console=ttyS0 pci=off`).
    pub cmdline: String,
    /// Which CPU features to present.
    pub cpuid: CpuidPolicy,
}

impl KvmConfig {
    /// Booting `kernel` with 256 MiB of RAM on one vCPU, no initramfs, and the
    /// command line `console=ttyS0`; change the fields as needed.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            memory_size: 256 << 20,
            vcpus: 1,
            kernel: kernel.into(),
            initrd: None,
            cmdline: "console=ttyS0".into(),
            cpuid: CpuidPolicy::default(),
        }
    }
}

/// Why the backend could not be created or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvmError {
    /// /dev/kvm is missing or unusable.
    #[error("KVM unavailable ({0}): the kvm backend needs /dev/kvm, readable and writable")]
    Unavailable(String),
    /// A KVM ioctl failed.
    #[error("KVM {what}: {source}")]
    Kvm {
        /// The operation.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A KVM capability this backend needs is missing.
    #[error("KVM lacks {0}")]
    MissingCapability(&'static str),
    /// The configuration is out of range.
    #[error("bad configuration: {0}")]
    Config(String),
    /// Loading the kernel failed.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// Guest memory or a thread could not be created.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `start` was called twice.
    #[error("the VM was already started")]
    AlreadyStarted,
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |e| KvmError::Kvm {
        what,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

pub use crate::pc::VmOutcome;

/// Exit counters, as [`KvmPartition::stats`] reads them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvmStats {
    /// KVM_RUN returns.
    pub exits: u64,
    /// Port I/O exits (hypercalls excluded).
    pub io_exits: u64,
    /// MMIO exits (answered with all-ones).
    pub mmio_exits: u64,
    /// MSR exits.
    pub msr_exits: u64,
    /// Hypercalls.
    pub hypercalls: u64,
    /// SINT interrupts injected.
    pub interrupts: u64,
    /// Interrupts KVM refused (the guest's APIC blocked the MSI).
    pub interrupts_blocked: u64,
    /// Instructions KVM failed to emulate that the VMM completed (INT3).
    pub emulated: u64,
}

/// The counters the vCPU threads update.
#[derive(Debug, Default)]
struct ExitCounters {
    exits: AtomicU64,
    io_exits: AtomicU64,
    mmio_exits: AtomicU64,
    msr_exits: AtomicU64,
    emulated: AtomicU64,
}

/// A KVM partition. Implements [`Partition`], so `vmbus::HostBus` runs on it exactly
/// as on the sim backend.
pub struct KvmPartition {
    /// The VM (also held by the interrupt sink).
    _vm: Arc<VmFd>,
    memory: GuestMemory,
    /// Hyper-V and the SynIC, emulated in user space; interrupts are MSIs.
    hv: UserHv,
    ports: Mutex<Ports>,
    vcpu_fds: Mutex<Vec<VcpuFd>>,
    run: VcpuThreads,
    /// Bit per vCPU: report its registers at the next exit.
    dump: AtomicU64,
    dumps: Mutex<Vec<String>>,
    stats: ExitCounters,
    _kvm: Kvm,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

use crate::pc::VcpuThreads;

/// General-purpose register `n` (0 = RAX ... 15 = R15, the x86 encoding).
fn gpr(regs: &kvm_regs, n: u8) -> u64 {
    match n {
        0 => regs.rax,
        1 => regs.rcx,
        2 => regs.rdx,
        3 => regs.rbx,
        4 => regs.rsp,
        5 => regs.rbp,
        6 => regs.rsi,
        7 => regs.rdi,
        8 => regs.r8,
        9 => regs.r9,
        10 => regs.r10,
        11 => regs.r11,
        12 => regs.r12,
        13 => regs.r13,
        14 => regs.r14,
        _ => regs.r15,
    }
}

fn segment(index: u16, entry: u64) -> kvm_segment {
    let s = boot::gdt_segment(index, entry);
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: u8::from(s.present == 0),
        padding: 0,
    }
}

pub use crate::pc::cpuid::{BASELINE_CMDLINE, CpuidPolicy, is_kvm_pvm, linux_cmdline};

/// The CPUID table for vCPU `apic_id` of `vcpus` ([`crate::pc::cpuid::for_linux_guest`]
/// over KVM's supported leaves).
fn cpuid_for(
    base: &[kvm_cpuid_entry2],
    vcpus: u32,
    apic_id: u32,
    baseline: bool,
) -> Vec<kvm_cpuid_entry2> {
    let host: Vec<CpuidEntry> = base.iter().map(CpuidEntry::from).collect();
    crate::pc::cpuid::for_linux_guest(&host, vcpus, apic_id, baseline)
        .into_iter()
        .map(kvm_cpuid_entry2::from)
        .collect()
}

/// RIP and the control registers, for failure reports.
fn cpu_state(vcpu: &VcpuFd) -> String {
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(r), Ok(s)) => format!(
            "rip {:#x} rsp {:#x} rflags {:#x} rax {:#x} rcx {:#x} rdx {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x}",
            r.rip, r.rsp, r.rflags, r.rax, r.rcx, r.rdx, s.cr0, s.cr3, s.cr4, s.efer
        ),
        _ => "(registers unreadable)".into(),
    }
}

impl KvmPartition {
    /// Creates the VM: memory, in-kernel interrupt controllers and PIT, the Hyper-V
    /// CPUID and MSR interception, the console (written to `console`), vCPUs, and the
    /// loaded kernel. Nothing runs until [`KvmPartition::start`]; install the VMBus
    /// host (e.g. `vmbus::HostBus::new`) in between.
    pub fn new(config: &KvmConfig, console: Box<dyn Write + Send>) -> Result<Arc<Self>, KvmError> {
        if !(layout::MIN_MEMORY..=layout::MAX_MEMORY).contains(&config.memory_size) {
            return Err(KvmError::Config(format!(
                "memory_size {:#x} outside {:#x}..={:#x}",
                config.memory_size,
                layout::MIN_MEMORY,
                layout::MAX_MEMORY
            )));
        }
        if config.vcpus == 0 || config.vcpus > layout::MAX_VCPUS {
            return Err(KvmError::Config(format!(
                "vcpus {} outside 1..={}",
                config.vcpus,
                layout::MAX_VCPUS
            )));
        }
        let kvm = Kvm::new().map_err(|e| KvmError::Unavailable(format!("/dev/kvm: {e}")))?;
        for (cap, name) in [
            (kvm_ioctls::Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (kvm_ioctls::Cap::SignalMsi, "KVM_CAP_SIGNAL_MSI"),
            (
                kvm_ioctls::Cap::X86UserSpaceMsr,
                "KVM_CAP_X86_USER_SPACE_MSR",
            ),
            (kvm_ioctls::Cap::X86MsrFilter, "KVM_CAP_X86_MSR_FILTER"),
            (kvm_ioctls::Cap::Irqfd, "KVM_CAP_IRQFD"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCapability(name));
            }
        }
        let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
        vm.set_tss_address(layout::KVM_TSS_GPA as usize)
            .map_err(kvm_err("set TSS address"))?;
        vm.set_identity_map_address(layout::KVM_IDENTITY_MAP_GPA)
            .map_err(kvm_err("set identity map address"))?;
        // Before any vCPU exists (KVM refuses it afterwards).
        vm.create_irq_chip().map_err(kvm_err("create irqchip"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        })
        .map_err(kvm_err("create PIT"))?;
        let mut cap = kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
            ..Default::default()
        };
        cap.args[0] = u64::from(
            (MsrExitReason::Unknown | MsrExitReason::Inval | MsrExitReason::Filter).bits(),
        );
        vm.enable_cap(&cap)
            .map_err(kvm_err("enable user-space MSR exits"))?;
        let bitmap = [0u8; 0x200 / 8];
        vm.set_msr_filter(
            MsrFilterDefaultAction::ALLOW,
            &[MsrFilterRange {
                flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
                base: 0x4000_0000,
                msr_count: 0x200,
                bitmap: &bitmap,
            }],
        )
        .map_err(kvm_err("set MSR filter"))?;

        // RAM below the MMIO hole and, beyond 3 GiB, above 4 GiB: a KVM slot each.
        let memory = GuestMemory::with_layout(&layout::ram_layout(config.memory_size))?;
        for (slot, (gpa, region)) in memory.regions().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: gpa,
                memory_size: region.len() as u64,
                userspace_addr: region.host_address(),
            };
            // SAFETY: the region is a whole memfd mapping owned by `memory`, which the
            // returned partition keeps as long as the VM fd, and it is never unmapped
            // or resized while the VM exists.
            #[allow(unsafe_code)]
            unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("set memory region"))?;
        }

        let baseline = config.cpuid.baseline();
        let cmdline = linux_cmdline(&config.cmdline, baseline)
            .map_err(|e| KvmError::Config(e.to_string()))?;
        let info = boot::load(
            &memory,
            &config.kernel,
            config.initrd.as_deref(),
            &cmdline,
            config.vcpus,
            true,
        )?;

        let com1_irq = EventFd::new(libc::EFD_NONBLOCK)?;
        vm.register_irqfd(&com1_irq, layout::COM1_IRQ)
            .map_err(kvm_err("register COM1 irqfd"))?;

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("get supported CPUID"))?;
        let mut vcpu_fds: Vec<VcpuFd> = Vec::new();
        for id in 0..config.vcpus {
            let vcpu = vm
                .create_vcpu(u64::from(id))
                .map_err(kvm_err("create vCPU"))?;
            let entries = cpuid_for(supported.as_slice(), config.vcpus, id, baseline);
            let cpuid = CpuId::from_entries(&entries)
                .map_err(|_| KvmError::Config("too many CPUID entries".into()))?;
            vcpu.set_cpuid2(&cpuid).map_err(kvm_err("set CPUID"))?;
            let msrs = Msrs::from_entries(&[
                // IA32_MISC_ENABLE: fast strings.
                kvm_msr_entry {
                    index: 0x1a0,
                    data: 1,
                    ..Default::default()
                },
                // IA32_MTRR_DEF_TYPE: MTRRs enabled, default write-back.
                kvm_msr_entry {
                    index: 0x2ff,
                    data: (1 << 11) | 6,
                    ..Default::default()
                },
            ])
            .map_err(|_| KvmError::Config("MSR list".into()))?;
            vcpu.set_msrs(&msrs).map_err(kvm_err("set MSRs"))?;
            let mut lapic = vcpu.get_lapic().map_err(kvm_err("get LAPIC"))?;
            for (off, mode) in [(0x350usize, 7u32), (0x360, 4)] {
                if let Some(reg) = lapic.regs.get_mut(off..off + 4) {
                    let mut b = [0u8; 4];
                    for (d, s) in b.iter_mut().zip(reg.iter()) {
                        *d = *s as u8;
                    }
                    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
                    for (d, s) in reg.iter_mut().zip(v.to_le_bytes()) {
                        *d = s as libc::c_char;
                    }
                }
            }
            vcpu.set_lapic(&lapic).map_err(kvm_err("set LAPIC"))?;
            vcpu.set_fpu(&kvm_fpu {
                fcw: 0x37f,
                mxcsr: 0x1f80,
                ..Default::default()
            })
            .map_err(kvm_err("set FPU"))?;
            if id == 0 {
                vcpu.set_regs(&kvm_regs {
                    rflags: 2,
                    rip: info.entry,
                    rsp: layout::BOOT_STACK_GPA,
                    rbp: layout::BOOT_STACK_GPA,
                    rsi: layout::BOOT_PARAMS_GPA,
                    ..Default::default()
                })
                .map_err(kvm_err("set registers"))?;
                let mut s = vcpu.get_sregs().map_err(kvm_err("get sregs"))?;
                let gdt = boot::GDT;
                s.gdt.base = layout::GDT_GPA;
                s.gdt.limit = (gdt.len() * 8 - 1) as u16;
                s.idt.base = layout::IDT_GPA;
                s.idt.limit = 7;
                let code = segment(1, gdt[1]);
                let data = segment(2, gdt[2]);
                s.cs = code;
                s.ds = data;
                s.es = data;
                s.fs = data;
                s.gs = data;
                s.ss = data;
                s.tr = segment(3, gdt[3]);
                s.cr0 |= boot::CR0_PE_PG;
                s.cr3 = layout::PML4_GPA;
                s.cr4 |= boot::CR4_PAE;
                s.efer |= boot::EFER_LME_LMA;
                vcpu.set_sregs(&s).map_err(kvm_err("set sregs"))?;
            }
            vcpu_fds.push(vcpu);
        }
        let tsc_khz = vcpu_fds
            .first()
            .and_then(|v| v.get_tsc_khz().ok())
            .filter(|k| *k != 0)
            .ok_or(KvmError::MissingCapability("KVM_GET_TSC_KHZ"))?;
        // The frequency MSRs: the TSC as KVM runs it, and KVM's 1 GHz APIC bus. A SINT
        // is a fixed MSI to the VP's local APIC (APIC id = VP index).
        let vm = Arc::new(vm);
        let msi_vm = vm.clone();
        let hv = UserHv::new(
            memory.clone(),
            config.vcpus,
            u64::from(tsc_khz) * 1000,
            1_000_000_000,
            move |vp: u32, vector: u8| {
                let msi = kvm_msi {
                    address_lo: 0xfee0_0000 | (vp << 12),
                    address_hi: 0,
                    data: u32::from(vector),
                    ..Default::default()
                };
                matches!(msi_vm.signal_msi(msi), Ok(n) if n > 0)
            },
        );
        crate::pc::install_kick_handler()?;
        tracing::info!(
            vcpus = config.vcpus,
            memory_mib = config.memory_size >> 20,
            entry = format_args!("{:#x}", info.entry),
            tsc_khz,
            "kvm: VM created"
        );
        Ok(Arc::new(Self {
            _vm: vm,
            memory,
            hv,
            ports: Mutex::new(Ports::new(com1_irq, console)),
            vcpu_fds: Mutex::new(vcpu_fds),
            run: VcpuThreads::new("kvm"),
            dump: AtomicU64::new(0),
            dumps: Mutex::new(Vec::new()),
            stats: ExitCounters::default(),
            _kvm: kvm,
        }))
    }

    /// Starts one thread per vCPU.
    pub fn start(self: &Arc<Self>) -> Result<(), KvmError> {
        let fds = std::mem::take(&mut *lock(&self.vcpu_fds));
        if fds.is_empty() {
            return Err(KvmError::AlreadyStarted);
        }
        let me = self.clone();
        self.run
            .spawn(fds, move |i, fd| me.clone().vcpu_loop(i as u32, fd))?;
        Ok(())
    }

    /// Asks every vCPU to stop (the outcome is [`VmOutcome::Stopped`] unless the VM
    /// already ended) and waits up to `timeout` for the vCPU threads.
    pub fn stop(&self, timeout: Duration) -> VmOutcome {
        self.run.stop(timeout)
    }

    /// Waits until the VM ends (all vCPU threads returned) or `timeout` passes; returns
    /// the outcome, or [`VmOutcome::Stopped`] if it was not decided yet.
    pub fn wait(&self, timeout: Option<Duration>) -> VmOutcome {
        self.run.wait(timeout)
    }

    /// Logs every vCPU's RIP and control registers (at `warn`) and returns them, one
    /// line per vCPU, for diagnosing a guest that stopped making progress. Waits up to
    /// one second for the vCPU threads to answer.
    pub fn dump_state(&self) -> Vec<String> {
        let n = self.hv.vp_count().min(64);
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        self.dump.store(all, Ordering::SeqCst);
        lock(&self.dumps).clear();
        let start = Instant::now();
        while self.dump.load(Ordering::SeqCst) != 0 && start.elapsed() < Duration::from_secs(1) {
            self.run.kick();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut v = lock(&self.dumps).clone();
        v.sort();
        v
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<VmOutcome> {
        self.run.outcome()
    }

    /// A snapshot of the exit counters.
    pub fn stats(&self) -> KvmStats {
        let c = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let hv = self.hv.stats();
        KvmStats {
            exits: load(&c.exits),
            io_exits: load(&c.io_exits),
            mmio_exits: load(&c.mmio_exits),
            msr_exits: load(&c.msr_exits),
            hypercalls: hv.hypercalls,
            interrupts: hv.interrupts,
            interrupts_blocked: hv.interrupts_failed,
            emulated: load(&c.emulated),
        }
    }

    /// A snapshot of a VP's SynIC counters.
    pub fn synic_stats(&self, vp: u32) -> Option<crate::synic::SynicStats> {
        self.hv.synic_stats(vp)
    }

    /// A VP's Hyper-V register counters.
    pub fn hv_stats(&self, vp: u32) -> Option<HvVpStats> {
        self.hv.hv_stats(vp)
    }

    fn finish(&self, outcome: VmOutcome) {
        self.run.finish(outcome);
    }

    fn vcpu_loop(self: Arc<Self>, index: u32, mut vcpu: VcpuFd) {
        while !self.run.stopping() {
            let mut hypercall = false;
            let result = vcpu.run();
            self.stats.exits.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(vcpu = index, exit = ?result, "kvm: vCPU exit");
            match result {
                Ok(VcpuExit::IoOut(port, data)) => {
                    if port == u16::from(HYPERCALL_PORT) {
                        hypercall = true;
                    } else {
                        self.stats.io_exits.fetch_add(1, Ordering::Relaxed);
                        match lock(&self.ports).write(port, data) {
                            PortAction::None => {}
                            PortAction::Stop(StopReason::PowerOff) => {
                                self.finish(VmOutcome::PowerOff)
                            }
                            PortAction::Stop(StopReason::Reset) => self.finish(VmOutcome::Reset),
                        }
                    }
                }
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.stats.io_exits.fetch_add(1, Ordering::Relaxed);
                    lock(&self.ports).read(port, data);
                }
                Ok(VcpuExit::MmioRead(_, data)) => {
                    self.stats.mmio_exits.fetch_add(1, Ordering::Relaxed);
                    data.fill(0xff);
                }
                Ok(VcpuExit::MmioWrite(..)) => {
                    self.stats.mmio_exits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(VcpuExit::X86Rdmsr(exit)) => {
                    self.stats.msr_exits.fetch_add(1, Ordering::Relaxed);
                    match self.hv.rdmsr(index, exit.index) {
                        Ok(v) => *exit.data = v,
                        Err(_) => *exit.error = 1,
                    }
                }
                Ok(VcpuExit::X86Wrmsr(exit)) => {
                    self.stats.msr_exits.fetch_add(1, Ordering::Relaxed);
                    if self.hv.wrmsr(index, exit.index, exit.data).is_err() {
                        *exit.error = 1;
                    }
                }
                Ok(VcpuExit::Hlt) | Ok(VcpuExit::Intr) => {}
                Ok(VcpuExit::Shutdown) => {
                    tracing::warn!(
                        "kvm: vCPU {index} shut down (triple fault?) at {}",
                        cpu_state(&vcpu)
                    );
                    self.finish(VmOutcome::Reset)
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    // KVM_SYSTEM_EVENT_SHUTDOWN = 1, RESET = 2.
                    self.finish(if kind == 1 {
                        VmOutcome::PowerOff
                    } else {
                        VmOutcome::Reset
                    })
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => self.finish(VmOutcome::Failed(format!(
                    "vCPU {index}: entry failed, hardware reason {reason:#x} on CPU {cpu}"
                ))),
                Ok(VcpuExit::InternalError) => {
                    if !self.emulation_fallback(&vcpu) {
                        self.finish(VmOutcome::Failed(format!(
                            "vCPU {index}: KVM internal error (instruction emulation failed?) at {}",
                            cpu_state(&vcpu)
                        )))
                    }
                }
                Ok(other) => self.finish(VmOutcome::Failed(format!(
                    "vCPU {index}: unexpected exit {other:?}"
                ))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => self.finish(VmOutcome::Failed(format!("vCPU {index}: KVM_RUN: {e}"))),
            }
            if hypercall {
                self.hypercall(index, &vcpu);
            }
            let bit = 1u64 << index.min(63);
            if self.dump.load(Ordering::SeqCst) & bit != 0 {
                let line = format!("vCPU {index}: {}", cpu_state(&vcpu));
                tracing::warn!("kvm: {line}");
                lock(&self.dumps).push(line);
                self.dump.fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }

    /// KVM could not emulate an instruction (kvm_pvm runs guest kernel code through
    /// KVM's emulator, which has gaps): complete it here if [`emulate::decode`] knows
    /// it (INT3, FWAIT, LDMXCSR/STMXCSR). Returns false for anything else.
    fn emulation_fallback(&self, vcpu: &VcpuFd) -> bool {
        let Ok(mut regs) = vcpu.get_regs() else {
            return false;
        };
        let Ok(t) = vcpu.translate_gva(regs.rip) else {
            return false;
        };
        if t.valid == 0 {
            return false;
        }
        // The instruction may cross into the next page; read what is contiguous.
        let mut insn = [0u8; 15];
        let avail = (4096 - (t.physical_address & 0xfff)).min(15) as usize;
        let Some(bytes) = insn.get_mut(..avail) else {
            return false;
        };
        if self.memory.read(t.physical_address, bytes).is_err() {
            return false;
        }
        let done = match emulate::decode(bytes) {
            Some(Fallback::Int3) => {
                let Ok(mut events) = vcpu.get_vcpu_events() else {
                    return false;
                };
                regs.rip += 1;
                events.exception.injected = 1;
                events.exception.nr = 3;
                events.exception.has_error_code = 0;
                events.exception.pending = 0;
                vcpu.set_regs(&regs).is_ok() && vcpu.set_vcpu_events(&events).is_ok()
            }
            Some(Fallback::Fwait) => {
                regs.rip += 1;
                vcpu.set_regs(&regs).is_ok()
            }
            Some(Fallback::Mxcsr {
                load,
                base,
                disp,
                len,
            }) => {
                let addr = gpr(&regs, base).wrapping_add(disp as u64);
                self.mxcsr(vcpu, &mut regs, load, addr, len)
            }
            None => false,
        };
        if done {
            self.stats.emulated.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    /// Completes LDMXCSR (`load`) / STMXCSR of the 4 bytes at guest-virtual `addr`.
    fn mxcsr(&self, vcpu: &VcpuFd, regs: &mut kvm_regs, load: bool, addr: u64, len: u8) -> bool {
        let Ok(t) = vcpu.translate_gva(addr) else {
            return false;
        };
        if t.valid == 0 || (t.physical_address & 0xfff) > 0xffc {
            return false;
        }
        let Ok(mut fpu) = vcpu.get_fpu() else {
            return false;
        };
        if load {
            let mut v = [0u8; 4];
            if self.memory.read(t.physical_address, &mut v).is_err() {
                return false;
            }
            fpu.mxcsr = u32::from_le_bytes(v);
            if vcpu.set_fpu(&fpu).is_err() {
                return false;
            }
        } else if self
            .memory
            .write(t.physical_address, &fpu.mxcsr.to_le_bytes())
            .is_err()
        {
            return false;
        }
        regs.rip += u64::from(len);
        vcpu.set_regs(regs).is_ok()
    }

    /// The guest executed the hypercall stub: run the call and write RAX. RIP is written
    /// back as read (KVM completes the OUT itself).
    fn hypercall(&self, index: u32, vcpu: &VcpuFd) {
        let mut regs = match vcpu.get_regs() {
            Ok(r) => r,
            Err(e) => {
                return self.finish(VmOutcome::Failed(format!("vCPU {index}: get regs: {e}")));
            }
        };
        regs.rax = self.hv.hypercall(
            index,
            HypercallRegisters {
                control: regs.rcx,
                input: regs.rdx,
                output: regs.r8,
            },
        );
        if let Err(e) = vcpu.set_regs(&regs) {
            self.finish(VmOutcome::Failed(format!("vCPU {index}: set regs: {e}")));
        }
    }
}

impl Partition for KvmPartition {
    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn vp_count(&self) -> u32 {
        self.hv.vp_count()
    }

    fn post_message(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), PartitionError> {
        self.hv.post_message(vp, sint, message)
    }

    fn signal_event(&self, vp: u32, sint: u8, flag: u16) -> Result<(), PartitionError> {
        self.hv.signal_event(vp, sint, flag)
    }

    fn set_hypercall_handler(&self, handler: Arc<dyn HypercallHandler>) {
        self.hv.set_hypercall_handler(handler)
    }

    fn set_message_wake(&self, wake: Arc<dyn vmbus_ring::Wake>) {
        self.hv.set_message_wake(wake)
    }
}

impl Drop for KvmPartition {
    fn drop(&mut self) {
        self.run.stop_quietly();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_segments_decode() {
        let cs = segment(1, boot::GDT[1]);
        assert_eq!(
            (cs.selector, cs.l, cs.present, cs.type_, cs.s),
            (8, 1, 1, 0xb, 1)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = segment(2, boot::GDT[2]);
        assert_eq!((ds.selector, ds.db, ds.type_), (16, 1, 3));
        let tr = segment(3, boot::GDT[3]);
        assert_eq!((tr.type_, tr.s), (0xb, 0));
    }

    #[test]
    fn cpuid_hides_kvm_and_presents_hyper_v() {
        let base = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0x0102_0304,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x4000_0000,
                ebx: 0x4b4d_564b,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x4000_0100,
                ..Default::default()
            },
        ];
        let v = cpuid_for(&base, 2, 1, false);
        let leaf = |f: u32| v.iter().find(|e| e.function == f).copied().unwrap();
        assert_eq!(leaf(1).ecx >> 31, 1);
        assert_eq!(leaf(1).ebx, 0x0102_0304 & 0x00ff_ffff | (1 << 24));
        assert_eq!(
            leaf(0x4000_0000).ebx,
            0x7263_694D,
            "Microsoft Hv, not KVMKVMKVM"
        );
        assert!(v.iter().all(|e| e.function != 0x4000_0100));
        assert_eq!(leaf(0x4000_0001).eax, 0x3123_7648);
        assert_eq!(
            leaf(0x4000_0004).eax,
            1 << 9,
            "only the deprecating-AEOI hint"
        );
        let b = [kvm_cpuid_entry2 {
            function: 1,
            ecx: u32::MAX,
            ..Default::default()
        }];
        let v = cpuid_for(&b, 1, 0, true);
        assert_eq!(
            v[0].ecx,
            crate::pc::cpuid::BASELINE_1_ECX | (1 << 31),
            "no POPCNT, XSAVE, CX16, RDRAND"
        );
    }
}
