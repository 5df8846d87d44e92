//! Hyper-V for a hypervisor that has none: the guest-visible Hyper-V registers and the
//! SynIC of every VP emulated in user space, as a [`Partition`] a VMM plugs into its
//! own vCPU loop.
//!
//! [`UserHv`] is what the kvm backend is built on, and what a VMM on KVM (or another
//! hypervisor without a SynIC) uses to host the VMBus with its own VM, vCPU threads and
//! interrupt controller:
//!
//! - trap the Hyper-V MSRs (0x40000000..=0x400001FF: [`is_hv_msr`]) and call
//!   [`UserHv::rdmsr`] / [`UserHv::wrmsr`] from the vCPU thread; an error means #GP;
//! - put the hypercall page's stub in place (done by [`UserHv::wrmsr`] when the guest
//!   enables the page: [`crate::hyperv::HYPERCALL_STUB`], `out 0x99, al; ret`) and, on
//!   the port-0x99 exit ([`crate::hyperv::HYPERCALL_PORT`]), call [`UserHv::hypercall`]
//!   with RCX, RDX and R8 and write the value it returns to RAX;
//! - inject what the [`InterruptSink`] asks for (a fixed interrupt with the SINT's
//!   vector to the VP's local APIC: an MSI on KVM);
//! - present the Hyper-V CPUID leaves ([`hv_hypercall::cpuid::HvCpuid`]).
//!
//! A hypervisor with a SynIC of its own (KVM's in-kernel Hyper-V, MSHV) does not need
//! this: see the crate documentation for how such a VMM implements [`Partition`].

use crate::backend::{HypercallHandler, Partition, PartitionError, dispatch_hypercall};
use crate::hyperv::{HvVp, HvVpStats, MsrFault, SharedHvRegs};
use crate::memory::GuestMemory;
use crate::synic::{SintMask, SynicError, SynicStats};
use hv_hypercall::HvMessage;
use hv_hypercall::decode::HypercallRegisters;
use hv_hypercall::pages::SintIndex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Whether `msr` is in the Hyper-V synthetic MSR range a VMM routes to
/// [`UserHv::rdmsr`] / [`UserHv::wrmsr`] (0x40000000..=0x400001FF, TLFS section 2.4).
pub fn is_hv_msr(msr: u32) -> bool {
    (0x4000_0000..=0x4000_01ff).contains(&msr)
}

/// Raises an interrupt on a VP: the VMM's interrupt controller. Called with the vector
/// the guest programmed into the SINT register, from whatever thread delivered the
/// message or event (a vCPU thread, the bus, a device). Must not block for long.
pub trait InterruptSink: Send + Sync {
    /// Raise `vector` on VP `vp` (a fixed-delivery interrupt to its local APIC).
    /// Returns false if the interrupt could not be delivered (counted).
    fn raise(&self, vp: u32, vector: u8) -> bool;
}

impl<F: Fn(u32, u8) -> bool + Send + Sync> InterruptSink for F {
    fn raise(&self, vp: u32, vector: u8) -> bool {
        self(vp, vector)
    }
}

/// Counters of a [`UserHv`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserHvStats {
    /// Hypercalls run.
    pub hypercalls: u64,
    /// MSR accesses handled (#GP ones included).
    pub msr_accesses: u64,
    /// SINT interrupts raised.
    pub interrupts: u64,
    /// Interrupts the sink could not deliver.
    pub interrupts_failed: u64,
}

/// Hyper-V emulated in user space for every VP of a partition: the registers a guest
/// kernel uses (guest OS id, hypercall page, VP index, frequencies, SynIC), the SIMP and
/// SIEFP pages in guest memory with the real layouts, message queues with EOM
/// redelivery, and the guest's VMBus hypercalls dispatched to the installed
/// [`HypercallHandler`] (the VMBus host).
pub struct UserHv {
    memory: GuestMemory,
    vps: Vec<Mutex<HvVp>>,
    handler: RwLock<Option<Arc<dyn HypercallHandler>>>,
    message_wake: RwLock<Option<Arc<dyn vmbus_ring::Wake>>>,
    interrupts: Box<dyn InterruptSink>,
    hypercalls: AtomicU64,
    msr_accesses: AtomicU64,
    raised: AtomicU64,
    failed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl UserHv {
    /// `vp_count` VPs over `memory`, whose TSC runs at `tsc_hz` and local-APIC timer at
    /// `apic_hz` (what the frequency MSRs report; KVM's APIC bus is 1 GHz); SINT
    /// interrupts go to `interrupts`.
    pub fn new(
        memory: GuestMemory,
        vp_count: u32,
        tsc_hz: u64,
        apic_hz: u64,
        interrupts: impl InterruptSink + 'static,
    ) -> Self {
        let shared = SharedHvRegs::default();
        Self {
            memory,
            vps: (0..vp_count)
                .map(|i| Mutex::new(HvVp::in_partition(i, tsc_hz, apic_hz, shared.clone())))
                .collect(),
            handler: RwLock::new(None),
            message_wake: RwLock::new(None),
            interrupts: Box::new(interrupts),
            hypercalls: AtomicU64::new(0),
            msr_accesses: AtomicU64::new(0),
            raised: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn vp(&self, vp: u32) -> Result<&Mutex<HvVp>, PartitionError> {
        self.vps
            .get(vp as usize)
            .ok_or(PartitionError::InvalidVp(vp))
    }

    /// Raises the interrupts of `mask` on `vp` (vectors from its SINT registers).
    fn raise(&self, vp: u32, hv: &HvVp, mask: SintMask) {
        for s in 0..16u32 {
            if mask & (1 << s) == 0 {
                continue;
            }
            let Ok(sint) = SintIndex::new(s) else {
                continue;
            };
            self.raised.fetch_add(1, Ordering::Relaxed);
            if !self.interrupts.raise(vp, hv.synic.sint(sint).vector()) {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// RDMSR of a Hyper-V MSR on VP `vp`, from its vCPU thread. `Err`: inject #GP.
    pub fn rdmsr(&self, vp: u32, msr: u32) -> Result<u64, MsrFault> {
        self.msr_accesses.fetch_add(1, Ordering::Relaxed);
        let v = self.vp(vp).map_err(|_| MsrFault(msr))?;
        lock(v).read_msr(msr)
    }

    /// WRMSR of a Hyper-V MSR on VP `vp`, from its vCPU thread: raises the SINTs the
    /// write made deliverable (enabling the SynIC, an EOM). `Err`: inject #GP.
    pub fn wrmsr(&self, vp: u32, msr: u32, value: u64) -> Result<(), MsrFault> {
        self.msr_accesses.fetch_add(1, Ordering::Relaxed);
        let v = self.vp(vp).map_err(|_| MsrFault(msr))?;
        let mut hv = lock(v);
        let mask = hv.write_msr(&self.memory, msr, value)?;
        self.raise(vp, &hv, mask);
        drop(hv);
        // EOM or the SynIC reprogrammed: a slot or queue room may have freed.
        if (hv_hypercall::msr::HV_X64_MSR_SCONTROL..=hv_hypercall::msr::HV_X64_MSR_SINT0 + 15)
            .contains(&msr)
            && let Some(w) = self
                .message_wake
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            w.wake();
        }
        Ok(())
    }

    /// The guest on VP `vp` called the hypercall page: `regs` are its RCX (control),
    /// RDX (input GPA or fast value) and R8 (output); returns the value for its RAX.
    /// Every field and input block is checked (`hv_hypercall::decode`); HvPostMessage
    /// and HvSignalEvent go to the installed handler, anything else is refused.
    pub fn hypercall(&self, vp: u32, regs: HypercallRegisters) -> u64 {
        self.hypercalls.fetch_add(1, Ordering::Relaxed);
        let handler = self
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        dispatch_hypercall(&self.memory, handler.as_deref(), vp, &regs)
    }

    /// A snapshot of VP `vp`'s SynIC counters.
    pub fn synic_stats(&self, vp: u32) -> Option<SynicStats> {
        self.vps.get(vp as usize).map(|v| lock(v).synic.stats())
    }

    /// A snapshot of VP `vp`'s Hyper-V register counters.
    pub fn hv_stats(&self, vp: u32) -> Option<HvVpStats> {
        self.vps.get(vp as usize).map(|v| lock(v).stats())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> UserHvStats {
        UserHvStats {
            hypercalls: self.hypercalls.load(Ordering::Relaxed),
            msr_accesses: self.msr_accesses.load(Ordering::Relaxed),
            interrupts: self.raised.load(Ordering::Relaxed),
            interrupts_failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

impl Partition for UserHv {
    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn vp_count(&self) -> u32 {
        self.vps.len() as u32
    }

    fn post_message(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), PartitionError> {
        let s = SintIndex::new(u32::from(sint)).map_err(|_| SynicError::InvalidSint(sint))?;
        let mut hv = lock(self.vp(vp)?);
        let mask = hv.synic.post(&self.memory, s, message)?;
        self.raise(vp, &hv, mask);
        Ok(())
    }

    fn signal_event(&self, vp: u32, sint: u8, flag: u16) -> Result<(), PartitionError> {
        let s = SintIndex::new(u32::from(sint)).map_err(|_| SynicError::InvalidSint(sint))?;
        let mut hv = lock(self.vp(vp)?);
        let mask = hv.synic.signal_event(&self.memory, s, flag)?;
        self.raise(vp, &hv, mask);
        Ok(())
    }

    fn set_hypercall_handler(&self, handler: Arc<dyn HypercallHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn set_message_wake(&self, wake: Arc<dyn vmbus_ring::Wake>) {
        *self.message_wake.write().unwrap_or_else(|e| e.into_inner()) = Some(wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv_hypercall::msr::*;
    use hv_hypercall::pages::{SiefpPage, SimpPage};
    use hv_hypercall::{HvMessageType, HvStatus, HypercallCode, HypercallControl};

    /// A guest kernel's bring-up through the component alone: hypercall page, SynIC
    /// on both VPs, a message and an event delivered as interrupts with the guest's
    /// vector, EOM redelivery, hypercalls dispatched.
    #[test]
    fn a_vmm_drives_the_synic_through_msrs_and_hypercalls() {
        let memory = GuestMemory::new(1 << 20).unwrap();
        let raised = Arc::new(Mutex::new(Vec::new()));
        let r = raised.clone();
        let hv = UserHv::new(
            memory.clone(),
            2,
            1_000_000_000,
            1_000_000_000,
            move |vp, v| {
                r.lock().unwrap().push((vp, v));
                true
            },
        );
        assert!(is_hv_msr(HV_X64_MSR_SIMP) && !is_hv_msr(0x1b));
        hv.wrmsr(0, HV_X64_MSR_GUEST_OS_ID, 0x8100_0006_0100_0000)
            .unwrap();
        hv.wrmsr(0, HV_X64_MSR_HYPERCALL, 0x1000 | 1).unwrap();
        assert_eq!(hv.rdmsr(1, HV_X64_MSR_HYPERCALL), Ok(0x1001));
        assert_eq!(hv.rdmsr(1, HV_X64_MSR_VP_INDEX), Ok(1));
        assert!(hv.rdmsr(2, HV_X64_MSR_VP_INDEX).is_err(), "no VP 2");
        for vp in 0..2u64 {
            let base = 0x10_000 + vp * 0x2000;
            hv.wrmsr(vp as u32, HV_X64_MSR_SIMP, base | 1).unwrap();
            hv.wrmsr(vp as u32, HV_X64_MSR_SIEFP, (base + 0x1000) | 1)
                .unwrap();
            hv.wrmsr(vp as u32, HV_X64_MSR_SINT0 + 2, 0xF3).unwrap();
            hv.wrmsr(vp as u32, HV_X64_MSR_SCONTROL, 1).unwrap();
        }
        let m = |b| HvMessage::new(HvMessageType::VMBUS, &[b]).unwrap();
        hv.post_message(1, 2, &m(1)).unwrap();
        hv.post_message(1, 2, &m(2)).unwrap();
        hv.signal_event(0, 2, 9).unwrap();
        assert_eq!(*raised.lock().unwrap(), vec![(1, 0xF3), (0, 0xF3)]);
        // The guest takes VP 1's message and writes EOM: the second is delivered.
        let page = memory.page(0x12_000).unwrap();
        let simp = SimpPage(&page);
        assert_eq!(
            simp.read(SintIndex::VMBUS).unwrap().payload().unwrap(),
            &[1]
        );
        assert!(simp.complete(SintIndex::VMBUS));
        hv.wrmsr(1, HV_X64_MSR_EOM, 0).unwrap();
        assert_eq!(
            simp.read(SintIndex::VMBUS).unwrap().payload().unwrap(),
            &[2]
        );
        assert_eq!(raised.lock().unwrap().len(), 3);
        let siefp = memory.page(0x11_000).unwrap();
        assert!(SiefpPage(&siefp).test_and_clear(
            SintIndex::VMBUS,
            hv_hypercall::pages::EventFlag::new(9).unwrap()
        ));
        // Without a handler, a hypercall is refused; unknown codes too.
        let control = HypercallControl::new(HypercallCode::SIGNAL_EVENT)
            .with_fast(true)
            .to_u64();
        let rax = hv.hypercall(
            0,
            HypercallRegisters {
                control,
                input: 5,
                output: 0,
            },
        );
        assert_eq!(
            hv_hypercall::HypercallResult::from_u64(rax).status,
            HvStatus::INVALID_CONNECTION_ID
        );
        assert_eq!(hv.stats().hypercalls, 1);
        assert_eq!(hv.stats().interrupts, 3);
        assert_eq!(hv.synic_stats(1).unwrap().eoms, 1);
    }
}
