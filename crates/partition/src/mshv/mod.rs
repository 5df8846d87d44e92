//! The MSHV backend (feature `mshv`, Linux x86-64): a guest partition on the
//! Microsoft Hypervisor, created through `/dev/mshv` by a Linux kernel running as the
//! root partition (CONFIG_MSHV_ROOT), using rust-vmm's mshv-ioctls 0.7.1.
//!
//! Unlike kvm, the hypervisor itself provides Hyper-V: CPUID leaves, the hypercall
//! page, VP index, the SynIC with its SIMP/SIEFP overlay pages and the local APIC. What
//! the VMM adds is the VMBus host's end of the SynIC (Linux `include/uapi/linux/mshv.h`,
//! `drivers/hv/mshv_root_main.c`; rust-vmm's mshv-ioctls):
//!
//! - guest to host: the hypercall intercept (type 8) and the unknown-SynIC-connection
//!   intercept (type 13, without which the hypervisor drops HvPostMessage and
//!   HvSignalEvent to connections it does not know) turn the guest's VMBus hypercalls
//!   into `HVMSG_HYPERCALL_INTERCEPT` exits; the vCPU thread decodes them with
//!   [`dispatch_hypercall`] (the same path sim and kvm use) and writes RAX and RIP back
//!   with HvSetVpRegisters (`set_reg`; the mmapped register page would save that
//!   hypercall and is not used yet);
//! - host to guest: [`Partition::post_message`] calls HvPostMessageDirect; when the
//!   SIMP slot is busy the message waits in a bounded per-SINT queue and the VP is
//!   registered for deliverability notifications; the `HVMSG_SYNIC_SINT_DELIVERABLE`
//!   exit flushes the queue in order. [`Partition::signal_event`] is
//!   HvSignalEventDirect.
//! - port I/O: COM1 (output; no serial interrupt, see below), the ACPI PM1 blocks
//!   (poweroff) and the i8042 reset, shared with kvm ([`crate::pc::devices`]).
//!
//! Every hypervisor call goes through [`ops::VcpuOps`] / [`ops::PartitionOps`]; the
//! unit tests drive the run loop with recorded intercept messages, so all of the above
//! is tested without /dev/mshv. Not verified on a real MSHV root (none was available):
//! partition creation, memory mapping, the initial register state and the intercept
//! installation are written from mshv-ioctls' API and Cloud Hypervisor's and OpenVMM's
//! use of it.
//!
//! Not implemented (each ends the VM with a [`VmOutcome::Failed`] naming it): MMIO
//! (no IOAPIC or other MMIO device is emulated, and the MADT lists none), string port
//! I/O (INS/OUTS), message types other than the ones above. COM1 raises no interrupt
//! (there is no interrupt controller model for it), so the guest's kernel console
//! works but a user-space console through the 8250 driver can stall.

pub mod message;
pub mod ops;

use crate::backend::{HypercallHandler, Partition, PartitionError, dispatch_hypercall};
use crate::memory::GuestMemory;
use crate::pc::devices::{PortAction, Ports, StopReason};
use crate::pc::{VcpuThreads, VmOutcome, boot, layout};
use crate::synic::{DEFAULT_QUEUE_DEPTH, SynicError};
use hv_hypercall::HvMessage;
use hv_hypercall::message::HV_SYNIC_SINT_COUNT;
use message::{Exit, decode};
use ops::{MshvPartitionOps, MshvVcpuOps, OpError, PartitionOps, Reg, VcpuOps};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

/// Event flags per SINT in the SIEFP (TLFS: 2048 bits per 256-byte SINT slot).
const EVENT_FLAGS_PER_SINT: u16 = 2048;

/// `HvInterceptTypeUnknownSynicConnection`: not named in mshv-bindings 0.7.1 (13 is
/// its `HV_INTERCEPT_TYPE_MAX` there); value from OpenVMM's hvdef and PR #3273.
const INTERCEPT_TYPE_UNKNOWN_SYNIC_CONNECTION: u32 = 0xd;

/// The synthetic processor features the partition gets (TLFS
/// `HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES`, bit positions checked against
/// mshv-bindings' setters in the tests): hypervisor present, Hv1, reference counter,
/// SynIC, synthetic timers, interrupt-control, hypercall and VP-index MSRs, reference
/// TSC, guest idle, frequency MSRs, direct synthetic timers, TLB-flush hypercalls,
/// cluster IPIs, VP registers.
pub const SYNTHETIC_FEATURES: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 22)
    | (1 << 25)
    | (1 << 26)
    | (1 << 38);

/// What to boot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MshvConfig {
    /// Guest RAM in bytes ([`layout::MIN_MEMORY`]..=[`layout::MAX_MEMORY`]).
    pub memory_size: u64,
    /// Number of vCPUs (1..=[`layout::MAX_VCPUS`]).
    pub vcpus: u32,
    /// A bzImage or an uncompressed x86-64 vmlinux.
    pub kernel: PathBuf,
    /// An initramfs, or none.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (e.g. `console=ttyS0 pci=off`).
    pub cmdline: String,
}

impl MshvConfig {
    /// Booting `kernel` with 256 MiB of RAM on one vCPU, no initramfs, and the
    /// command line `console=ttyS0`; change the fields as needed.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            memory_size: 256 << 20,
            vcpus: 1,
            kernel: kernel.into(),
            initrd: None,
            cmdline: "console=ttyS0".into(),
        }
    }
}

/// Why the backend could not be created or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MshvError {
    /// /dev/mshv is missing or unusable.
    #[error(
        "MSHV unavailable ({0}): the mshv backend needs /dev/mshv, i.e. a Linux kernel with \
         CONFIG_MSHV_ROOT running as the root partition on the Microsoft Hypervisor"
    )]
    Unavailable(String),
    /// An mshv ioctl or root hypercall failed.
    #[error("MSHV {what}: {source}")]
    Mshv {
        /// The operation.
        what: &'static str,
        /// The error.
        source: ops::OpError,
    },
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

fn mshv_err(what: &'static str) -> impl FnOnce(mshv_ioctls::MshvError) -> MshvError {
    move |e| MshvError::Mshv {
        what,
        source: ops::op_error(&e),
    }
}

/// Whether `/dev/mshv` exists (the backend may still fail to create a partition).
pub fn is_available() -> bool {
    std::path::Path::new("/dev/mshv").exists()
}

vmbus_ring::counters! {
    /// Counters; every refusal and drop is counted here (and logged).
    pub struct MshvStats;
    /// The atomics behind [`MshvStats`].
    pub(crate) struct MshvCounters;
    {
        /// Run returns (intercept messages).
        exits: one,
        /// Hypercall intercepts dispatched.
        hypercalls: one,
        /// Port I/O intercepts.
        io_exits: one,
        /// Messages posted directly (slot was free).
        posted: one,
        /// Messages queued behind a busy slot.
        queued: one,
        /// Queued messages posted after a deliverability notification.
        flushed: one,
        /// SINT-deliverable exits.
        deliverable_exits: one,
        /// Messages refused because their SINT's queue was full.
        queue_full: one,
        /// Queued messages dropped because the hypervisor refused them with an error other
        /// than a busy slot.
        dropped: one,
        /// Events signalled.
        events: one,
        /// Hypervisor calls that failed (post, signal, deliverability registration).
        hypervisor_errors: one,
        /// Intercept messages with out-of-range fields.
        bad_messages: one,
    }
}

struct Vp {
    /// Messages waiting for a free SIMP slot, per SINT.
    queues: Mutex<[VecDeque<HvMessage>; HV_SYNIC_SINT_COUNT]>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An MSHV partition. Implements [`Partition`], so `vmbus::HostBus` runs on it exactly
/// as on the sim and kvm backends.
pub struct MshvPartition {
    // Declared before `memory`: the partition (and its mapping of guest RAM) goes away
    // before the RAM is unmapped.
    ops: Box<dyn PartitionOps>,
    memory: GuestMemory,
    vps: Vec<Vp>,
    queue_depth: usize,
    handler: RwLock<Option<Arc<dyn HypercallHandler>>>,
    ports: Mutex<Ports>,
    vcpus: Mutex<Vec<Box<dyn VcpuOps>>>,
    run: VcpuThreads,
    stats: MshvCounters,
}

impl MshvPartition {
    /// Creates the partition on `/dev/mshv`: memory, the VMBus intercepts, vCPUs and the
    /// loaded kernel (console written to `console`). Nothing runs until
    /// [`MshvPartition::start`]; install the VMBus host in between. Without /dev/mshv
    /// this returns [`MshvError::Unavailable`].
    pub fn new(
        config: &MshvConfig,
        console: Box<dyn Write + Send>,
    ) -> Result<Arc<Self>, MshvError> {
        check_config(config)?;
        let mshv = mshv_ioctls::Mshv::new()
            .map_err(|e| MshvError::Unavailable(format!("/dev/mshv: {e}")))?;
        // mshv-ioctls' helper unwraps these two queries; ask first so a kernel that
        // refuses them gives an error instead of a panic.
        for code in [
            mshv_bindings::hv_partition_property_code_HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0,
            mshv_bindings::hv_partition_property_code_HV_PARTITION_PROPERTY_PROCESSOR_FEATURES1,
        ] {
            mshv.get_host_partition_property(code)
                .map_err(mshv_err("query host processor features"))?;
        }
        let args = mshv.make_default_partition_create_arg(mshv_ioctls::VmType::Normal);
        let vm = loop {
            match mshv.create_vm_with_args(&args) {
                Err(e) if op_interrupted(&e) => continue,
                r => break r.map_err(mshv_err("create partition"))?,
            }
        };
        vm.set_partition_property(
            mshv_bindings::hv_partition_property_code_HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES,
            SYNTHETIC_FEATURES,
        )
        .map_err(mshv_err("set synthetic processor features"))?;
        vm.initialize().map_err(mshv_err("initialize partition"))?;
        vm.set_partition_property(
            mshv_bindings::hv_partition_property_code_HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION,
            u64::from(
                mshv_bindings::hv_unimplemented_msr_action_HV_UNIMPLEMENTED_MSR_ACTION_IGNORE_WRITE_READ_ZERO,
            ),
        )
        .map_err(mshv_err("set unimplemented-MSR action"))?;
        for intercept_type in [
            mshv_bindings::hv_intercept_type_HV_INTERCEPT_TYPE_HYPERCALL,
            INTERCEPT_TYPE_UNKNOWN_SYNIC_CONNECTION,
        ] {
            vm.install_intercept(mshv_bindings::mshv_install_intercept {
                access_type_mask: mshv_bindings::HV_INTERCEPT_ACCESS_MASK_EXECUTE,
                intercept_type,
                intercept_parameter: Default::default(),
            })
            .map_err(mshv_err("install intercept"))?;
        }

        // RAM below the MMIO hole and, beyond 3 GiB, above 4 GiB.
        let memory = GuestMemory::with_layout(&crate::pc::layout::ram_layout(config.memory_size))?;
        for (gpa, region) in memory.regions() {
            vm.map_user_memory(mshv_bindings::mshv_user_mem_region {
                size: region.len() as u64,
                guest_pfn: gpa / crate::memory::PAGE_SIZE,
                userspace_addr: region.host_address(),
                flags: (1 << mshv_bindings::MSHV_SET_MEM_BIT_WRITABLE)
                    | (1 << mshv_bindings::MSHV_SET_MEM_BIT_EXECUTABLE),
                ..Default::default()
            })
            .map_err(mshv_err("map guest memory"))?;
        }
        // No IOAPIC: nothing here would answer its MMIO.
        let info = boot::load(
            &memory,
            &config.kernel,
            config.initrd.as_deref(),
            &config.cmdline,
            config.vcpus,
            false,
        )?;

        let mut vcpus: Vec<Box<dyn VcpuOps>> = Vec::new();
        for id in 0..config.vcpus {
            let fd = vm.create_vcpu(id as u8).map_err(mshv_err("create vCPU"))?;
            if id == 0 {
                boot_cpu_state(&fd, info.entry)?;
            }
            vcpus.push(Box::new(MshvVcpuOps(fd)));
        }
        crate::pc::install_kick_handler()?;
        tracing::info!(
            vcpus = config.vcpus,
            memory_mib = config.memory_size >> 20,
            entry = format_args!("{:#x}", info.entry),
            "mshv: partition created"
        );
        Self::with_ops(Box::new(MshvPartitionOps(vm)), vcpus, memory, console)
    }

    /// A partition over any [`PartitionOps`] and [`VcpuOps`] (one per VP): the seam the
    /// unit tests use to replay recorded intercepts, and a way to run a VMBus host
    /// against a scripted hypervisor. `memory` is the guest RAM the ops' guest uses.
    pub fn with_ops(
        ops: Box<dyn PartitionOps>,
        vcpus: Vec<Box<dyn VcpuOps>>,
        memory: GuestMemory,
        console: Box<dyn Write + Send>,
    ) -> Result<Arc<Self>, MshvError> {
        let vps = (0..vcpus.len())
            .map(|_| Vp {
                queues: Mutex::new(std::array::from_fn(|_| VecDeque::new())),
            })
            .collect();
        // COM1's interrupt goes nowhere (see the module docs); the serial model still
        // needs a trigger.
        let irq = EventFd::new(libc::EFD_NONBLOCK)?;
        Ok(Arc::new(Self {
            ops,
            memory,
            vps,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            handler: RwLock::new(None),
            ports: Mutex::new(Ports::new(irq, console)),
            vcpus: Mutex::new(vcpus),
            run: VcpuThreads::new("mshv"),
            stats: MshvCounters::default(),
        }))
    }

    /// Starts one thread per vCPU.
    pub fn start(self: &Arc<Self>) -> Result<(), MshvError> {
        let vcpus = std::mem::take(&mut *lock(&self.vcpus));
        if vcpus.is_empty() {
            return Err(MshvError::AlreadyStarted);
        }
        let me = self.clone();
        self.run
            .spawn(vcpus, move |i, vcpu| me.run_vcpu(i as u32, vcpu))?;
        Ok(())
    }

    /// Asks every vCPU to stop and waits up to `timeout` for the threads.
    pub fn stop(&self, timeout: Duration) -> VmOutcome {
        self.run.stop(timeout)
    }

    /// Waits until the VM ends or `timeout` passes; returns the outcome, or
    /// [`VmOutcome::Stopped`] if it was not decided yet.
    pub fn wait(&self, timeout: Option<Duration>) -> VmOutcome {
        self.run.wait(timeout)
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<VmOutcome> {
        self.run.outcome()
    }

    /// Counters.
    pub fn stats(&self) -> MshvStats {
        self.stats.snapshot()
    }

    /// Messages waiting for a free slot on `vp`'s `sint`.
    pub fn queued(&self, vp: u32, sint: u8) -> usize {
        self.vps
            .get(vp as usize)
            .and_then(|v| lock(&v.queues).get(usize::from(sint)).map(VecDeque::len))
            .unwrap_or(0)
    }

    fn finish(&self, outcome: VmOutcome) {
        self.run.finish(outcome);
    }

    /// Runs VP `vp` on the calling thread until the VM ends (what each thread of
    /// [`MshvPartition::start`] does).
    pub fn run_vcpu(&self, vp: u32, mut vcpu: Box<dyn VcpuOps>) {
        while !self.run.stopping() {
            let msg = match vcpu.run() {
                Ok(m) => m,
                Err(OpError::Interrupted) => continue,
                Err(e) => {
                    self.finish(VmOutcome::Failed(format!("vCPU {vp}: run: {e}")));
                    break;
                }
            };
            self.stats.exits.fetch_add(1, Ordering::Relaxed);
            if let Err(outcome) = self.handle_exit(vp, vcpu.as_mut(), &msg) {
                self.finish(outcome);
                break;
            }
        }
    }

    /// Handles one intercept message of VP `vp`; an `Err` ends the VM.
    fn handle_exit(
        &self,
        vp: u32,
        vcpu: &mut dyn VcpuOps,
        msg: &HvMessage,
    ) -> Result<(), VmOutcome> {
        let exit = decode(vp, msg).map_err(|e| {
            self.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            VmOutcome::Failed(format!("vCPU {vp}: {e}"))
        })?;
        let complete = |vcpu: &mut dyn VcpuOps, regs: &[(Reg, u64)]| {
            vcpu.set_registers(regs)
                .map_err(|e| VmOutcome::Failed(format!("vCPU {vp}: set registers: {e}")))
        };
        match exit {
            Exit::Hypercall { regs, next_rip } => {
                self.stats.hypercalls.fetch_add(1, Ordering::Relaxed);
                let handler = self
                    .handler
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let rax = dispatch_hypercall(&self.memory, handler.as_deref(), vp, &regs);
                complete(vcpu, &[(Reg::Rax, rax), (Reg::Rip, next_rip)])
            }
            Exit::IoPort {
                port, string: true, ..
            } => Err(VmOutcome::Failed(format!(
                "vCPU {vp}: string I/O (INS/OUTS) on port {port:#x} is not supported"
            ))),
            Exit::IoPort {
                port,
                size,
                write: true,
                rax,
                next_rip,
                ..
            } => {
                self.stats.io_exits.fetch_add(1, Ordering::Relaxed);
                let bytes = rax.to_le_bytes();
                let data = bytes.get(..usize::from(size)).unwrap_or(&bytes);
                let action = lock(&self.ports).write(port, data);
                complete(vcpu, &[(Reg::Rip, next_rip)])?;
                match action {
                    PortAction::None => Ok(()),
                    PortAction::Stop(StopReason::PowerOff) => Err(VmOutcome::PowerOff),
                    PortAction::Stop(StopReason::Reset) => Err(VmOutcome::Reset),
                }
            }
            Exit::IoPort {
                port,
                size,
                rax,
                next_rip,
                ..
            } => {
                self.stats.io_exits.fetch_add(1, Ordering::Relaxed);
                let mut data = [0u8; 4];
                let n = usize::from(size).min(4);
                lock(&self.ports).read(port, data.get_mut(..n).unwrap_or(&mut []));
                let value = u64::from(u32::from_le_bytes(data));
                // IN AL/AX keeps the rest of RAX; IN EAX zero-extends (64-bit mode).
                let rax = match size {
                    1 => (rax & !0xff) | value,
                    2 => (rax & !0xffff) | value,
                    _ => value,
                };
                complete(vcpu, &[(Reg::Rax, rax), (Reg::Rip, next_rip)])
            }
            Exit::SintDeliverable { sints } => {
                self.stats.deliverable_exits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(vp, sints, "mshv: SINTs deliverable");
                self.flush(vp);
                Ok(())
            }
            Exit::Mmio { gpa, write, rip } => Err(VmOutcome::Failed(format!(
                "vCPU {vp}: MMIO {} at GPA {gpa:#x} (rip {rip:#x}): no MMIO device is emulated",
                if write { "write" } else { "read" }
            ))),
            Exit::Halt { rip } => {
                tracing::info!(vp, rip, "mshv: vCPU halted with interrupts disabled");
                Err(VmOutcome::Halted)
            }
            Exit::UnrecoverableException { rip } => {
                tracing::warn!(vp, rip, "mshv: triple fault");
                Err(VmOutcome::Reset)
            }
            Exit::Unexpected { message_type } => Err(VmOutcome::Failed(format!(
                "vCPU {vp}: unexpected intercept message type {message_type:#x}"
            ))),
        }
    }

    /// Posts what waits in `vp`'s queues, in order, until a slot is busy; registers for
    /// deliverability again if anything is left.
    fn flush(&self, vp: u32) {
        let Some(v) = self.vps.get(vp as usize) else {
            return;
        };
        let mut queues = lock(&v.queues);
        for (sint, q) in queues.iter_mut().enumerate() {
            while let Some(m) = q.front() {
                match self.ops.post_message_direct(vp, sint as u8, m) {
                    Ok(()) => {
                        q.pop_front();
                        self.stats.flushed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_slot_busy() => break,
                    Err(e) => {
                        q.pop_front();
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        self.stats.hypervisor_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(vp, sint, "mshv: queued message dropped: {e}");
                    }
                }
            }
        }
        let pending = pending_mask(&queues);
        if pending != 0
            && let Err(e) = self.ops.register_deliverability(vp, pending)
        {
            self.stats.hypervisor_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(vp, pending, "mshv: deliverability registration failed: {e}");
        }
    }

    fn vp(&self, vp: u32) -> Result<&Vp, PartitionError> {
        self.vps
            .get(vp as usize)
            .ok_or(PartitionError::InvalidVp(vp))
    }
}

fn pending_mask(queues: &[VecDeque<HvMessage>; HV_SYNIC_SINT_COUNT]) -> u16 {
    queues
        .iter()
        .enumerate()
        .filter(|(_, q)| !q.is_empty())
        .fold(0u16, |m, (i, _)| m | (1 << i))
}

fn op_interrupted(e: &mshv_ioctls::MshvError) -> bool {
    ops::op_error(e) == OpError::Interrupted
}

fn check_config(config: &MshvConfig) -> Result<(), MshvError> {
    if !(layout::MIN_MEMORY..=layout::MAX_MEMORY).contains(&config.memory_size) {
        return Err(MshvError::Config(format!(
            "memory_size {:#x} outside {:#x}..={:#x}",
            config.memory_size,
            layout::MIN_MEMORY,
            layout::MAX_MEMORY
        )));
    }
    // vCPU ids are a u8 in mshv-ioctls and one byte in the MADT.
    if config.vcpus == 0 || config.vcpus > layout::MAX_VCPUS {
        return Err(MshvError::Config(format!(
            "vcpus {} outside 1..={}",
            config.vcpus,
            layout::MAX_VCPUS
        )));
    }
    Ok(())
}

/// The boot CPU in long mode at the kernel's 64-bit entry (the same state the kvm
/// backend sets; see [`boot`]).
fn boot_cpu_state(fd: &mshv_ioctls::VcpuFd, entry: u64) -> Result<(), MshvError> {
    use mshv_bindings::{SegmentRegister, StandardRegisters};
    fd.set_regs(&StandardRegisters {
        rflags: 2,
        rip: entry,
        rsp: layout::BOOT_STACK_GPA,
        rbp: layout::BOOT_STACK_GPA,
        rsi: layout::BOOT_PARAMS_GPA,
        ..Default::default()
    })
    .map_err(mshv_err("set registers"))?;
    let seg = |index: u16| {
        let entry = boot::GDT.get(usize::from(index)).copied().unwrap_or(0);
        let s = boot::gdt_segment(index, entry);
        SegmentRegister {
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
    };
    let mut s = fd.get_sregs().map_err(mshv_err("get special registers"))?;
    s.gdt.base = layout::GDT_GPA;
    s.gdt.limit = (boot::GDT.len() * 8 - 1) as u16;
    s.idt.base = layout::IDT_GPA;
    s.idt.limit = 7;
    let data = seg(2);
    s.cs = seg(1);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = seg(3);
    s.cr0 |= boot::CR0_PE_PG;
    s.cr3 = layout::PML4_GPA;
    s.cr4 |= boot::CR4_PAE;
    s.efer |= boot::EFER_LME_LMA;
    fd.set_sregs(&s).map_err(mshv_err("set special registers"))
}

impl Partition for MshvPartition {
    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn vp_count(&self) -> u32 {
        self.vps.len() as u32
    }

    fn post_message(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), PartitionError> {
        let v = self.vp(vp)?;
        if usize::from(sint) >= HV_SYNIC_SINT_COUNT {
            return Err(SynicError::InvalidSint(sint).into());
        }
        let mut queues = lock(&v.queues);
        let Some(q) = queues.get_mut(usize::from(sint)) else {
            return Err(SynicError::InvalidSint(sint).into());
        };
        // Behind queued messages a new one must wait its turn (VMBus relies on order).
        if q.is_empty() {
            match self.ops.post_message_direct(vp, sint, message) {
                Ok(()) => {
                    self.stats.posted.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if e.is_slot_busy() => {}
                Err(e) => {
                    self.stats.hypervisor_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(vp, sint, "mshv: HvPostMessageDirect failed: {e}");
                    return Err(PartitionError::Hypervisor("HvPostMessageDirect failed"));
                }
            }
        }
        if q.len() >= self.queue_depth {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(SynicError::QueueFull(sint).into());
        }
        q.push_back(*message);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let pending = pending_mask(&queues);
        if let Err(e) = self.ops.register_deliverability(vp, pending) {
            // Without the notification the message would wait forever: take it back.
            if let Some(q) = queues.get_mut(usize::from(sint)) {
                q.pop_back();
            }
            self.stats.hypervisor_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(vp, sint, "mshv: deliverability registration failed: {e}");
            return Err(PartitionError::Hypervisor(
                "deliverability notification registration failed",
            ));
        }
        Ok(())
    }

    fn signal_event(&self, vp: u32, sint: u8, flag: u16) -> Result<(), PartitionError> {
        self.vp(vp)?;
        if usize::from(sint) >= HV_SYNIC_SINT_COUNT {
            return Err(SynicError::InvalidSint(sint).into());
        }
        if flag >= EVENT_FLAGS_PER_SINT {
            return Err(SynicError::InvalidFlag(flag).into());
        }
        match self.ops.signal_event_direct(vp, sint, flag) {
            Ok(_) => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.hypervisor_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(vp, sint, flag, "mshv: HvSignalEventDirect failed: {e}");
                Err(PartitionError::Hypervisor("HvSignalEventDirect failed"))
            }
        }
    }

    fn set_hypercall_handler(&self, handler: Arc<dyn HypercallHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }
}

impl Drop for MshvPartition {
    fn drop(&mut self) {
        self.run.stop_quietly();
    }
}

#[cfg(test)]
mod tests;
