//! The Hyper-V registers of one virtual processor as an unmodified guest kernel sees
//! them, emulated in software (sans-IO): guest OS id, hypercall page, VP index, VP
//! assist page, the frequency and invariant-TSC MSRs, and the SynIC.
//!
//! A backend whose hypervisor has no Hyper-V emulation of its own (KVM here) routes the
//! guest's RDMSR/WRMSR in the Hyper-V range to [`HvVp`] and raises the SINTs it
//! returns. The MSR set is the one Linux's `hyperv_init` and `hv_synic_enable_regs` use for the
//! CPUID features of `HvCpuid::for_linux_guest`; anything else is a #GP, which Linux's
//! `rdmsrl_safe`/`wrmsrl` survive.

use crate::memory::{GuestMemory, PAGE_SIZE};
use crate::synic::{SintMask, Synic};
use hv_hypercall::HypercallPageRegister;
use hv_hypercall::msr::*;

/// The I/O port the hypercall stub writes to. One byte (an `out imm8, al` operand),
/// not 0x80 or 0xED (Linux's io_delay ports) and not a legacy PC device.
pub const HYPERCALL_PORT: u8 = 0x99;

/// The code placed at the start of the guest's hypercall page: `out HYPERCALL_PORT,
/// al; ret`. The OUT exits to the VMM, which reads RCX/RDX/R8, runs the call and writes
/// RAX; `ret` returns to the caller. OUT rather than IN because completing an IN would
/// overwrite AL after the VMM has set RAX.
pub const HYPERCALL_STUB: [u8; 3] = [0xE6, HYPERCALL_PORT, 0xC3];

/// The guest accessed an MSR this VP does not implement, or wrote a value the register
/// does not accept: the backend injects #GP.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("#GP: Hyper-V MSR {0:#x} not implemented or value refused")]
pub struct MsrFault(pub u32);

/// Counters of what the guest did to the Hyper-V registers.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HvVpStats {
    /// MSR reads and writes handled.
    pub msr_accesses: u64,
    /// Accesses answered with #GP.
    pub msr_faults: u64,
    /// Times the hypercall page was (re)written.
    pub hypercall_page_writes: u64,
}

/// The partition-wide Hyper-V registers (TLFS: the guest OS id and the hypercall page
/// belong to the partition, not to a VP): every [`HvVp`] of a partition shares one.
/// Linux writes them on the boot CPU and reads the hypercall MSR back on whichever CPU
/// runs `hv_is_hyperv_initialized()`; kept per VP, a read on another CPU saw a
/// disabled page and hv_vmbus gave up (found booting Linux with 2 vCPUs).
#[derive(Debug, Default)]
pub struct HvPartitionRegs {
    guest_os_id: u64,
    hypercall: HypercallPageRegister,
}

/// The [`HvPartitionRegs`] the VPs of one partition share.
pub type SharedHvRegs = std::sync::Arc<std::sync::Mutex<HvPartitionRegs>>;

/// One VP's Hyper-V registers.
#[derive(Debug)]
pub struct HvVp {
    index: u32,
    tsc_hz: u64,
    apic_hz: u64,
    partition: SharedHvRegs,
    vp_assist: u64,
    tsc_invariant: u64,
    /// The VP's SynIC.
    pub synic: Synic,
    stats: HvVpStats,
}

impl HvVp {
    /// VP `index`, whose TSC runs at `tsc_hz` and local-APIC timer at `apic_hz` (what the
    /// frequency MSRs report; KVM's APIC bus is 1 GHz), alone in its partition.
    pub fn new(index: u32, tsc_hz: u64, apic_hz: u64) -> Self {
        Self::in_partition(index, tsc_hz, apic_hz, SharedHvRegs::default())
    }

    /// [`HvVp::new`] for one VP of a partition whose VPs share `partition`.
    pub fn in_partition(index: u32, tsc_hz: u64, apic_hz: u64, partition: SharedHvRegs) -> Self {
        Self {
            index,
            tsc_hz,
            apic_hz,
            partition,
            vp_assist: 0,
            tsc_invariant: 0,
            synic: Synic::default(),
            stats: HvVpStats::default(),
        }
    }

    /// The VP index.
    pub fn index(&self) -> u32 {
        self.index
    }

    fn regs(&self) -> std::sync::MutexGuard<'_, HvPartitionRegs> {
        self.partition.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guest OS id the guest wrote (0 until it identifies itself).
    pub fn guest_os_id(&self) -> u64 {
        self.regs().guest_os_id
    }

    /// Whether the guest enabled its hypercall page.
    pub fn hypercall_enabled(&self) -> bool {
        self.regs().hypercall.enabled()
    }

    /// Counters.
    pub fn stats(&self) -> HvVpStats {
        self.stats
    }

    fn fault(&mut self, msr: u32) -> MsrFault {
        self.stats.msr_faults += 1;
        MsrFault(msr)
    }

    /// RDMSR of a Hyper-V MSR.
    pub fn read_msr(&mut self, msr: u32) -> Result<u64, MsrFault> {
        self.stats.msr_accesses += 1;
        let v = match msr {
            HV_X64_MSR_GUEST_OS_ID => self.regs().guest_os_id,
            HV_X64_MSR_HYPERCALL => self.regs().hypercall.0,
            HV_X64_MSR_VP_INDEX => u64::from(self.index),
            HV_X64_MSR_VP_ASSIST_PAGE => self.vp_assist,
            HV_X64_MSR_TSC_FREQUENCY => self.tsc_hz,
            HV_X64_MSR_APIC_FREQUENCY => self.apic_hz,
            HV_X64_MSR_TSC_INVARIANT_CONTROL => self.tsc_invariant,
            _ => match self.synic.read_msr(msr) {
                Some(v) => v,
                None => return Err(self.fault(msr)),
            },
        };
        Ok(v)
    }

    /// WRMSR of a Hyper-V MSR. Returns the SINTs whose interrupt the backend must raise
    /// (enabling the SynIC or an EOM can make queued messages deliverable).
    ///
    /// Enabling the hypercall page writes [`HYPERCALL_STUB`] at its GPA; per the TLFS
    /// the page stays disabled while the guest OS id is 0, and a GPA outside guest
    /// memory is refused with #GP.
    pub fn write_msr(
        &mut self,
        mem: &GuestMemory,
        msr: u32,
        value: u64,
    ) -> Result<SintMask, MsrFault> {
        self.stats.msr_accesses += 1;
        match msr {
            HV_X64_MSR_GUEST_OS_ID => {
                let mut regs = self.regs();
                regs.guest_os_id = value;
                if value == 0 {
                    // Clearing the OS id disables the hypercall page (TLFS 3.13).
                    regs.hypercall = HypercallPageRegister(regs.hypercall.0 & !1);
                }
            }
            HV_X64_MSR_HYPERCALL => {
                let r = HypercallPageRegister(value);
                let mut regs = self.regs();
                if r.enabled() && regs.guest_os_id != 0 {
                    if !mem.contains(r.gpa(), PAGE_SIZE)
                        || mem.write(r.gpa(), &HYPERCALL_STUB).is_err()
                    {
                        drop(regs);
                        return Err(self.fault(msr));
                    }
                    regs.hypercall = r;
                    drop(regs);
                    self.stats.hypercall_page_writes += 1;
                } else {
                    regs.hypercall = HypercallPageRegister(value & !1);
                }
            }
            // Read-only.
            HV_X64_MSR_VP_INDEX | HV_X64_MSR_TSC_FREQUENCY | HV_X64_MSR_APIC_FREQUENCY => {
                return Err(self.fault(msr));
            }
            // Linux writes it on every CPU; nothing here uses the page (no enlightened
            // VMCS or APIC EOI assist is advertised).
            HV_X64_MSR_VP_ASSIST_PAGE => self.vp_assist = value,
            HV_X64_MSR_TSC_INVARIANT_CONTROL => self.tsc_invariant = value,
            _ => {
                return match self.synic.write_msr(mem, msr, value) {
                    Some(mask) => Ok(mask),
                    None => Err(self.fault(msr)),
                };
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux sets the OS id and hypercall page on the boot CPU and may read them back
    /// on any other: the two are partition-wide, the VP index and VP assist page not.
    #[test]
    fn guest_os_id_and_hypercall_page_are_partition_wide() {
        let mem = GuestMemory::new(1 << 20).unwrap();
        let shared = SharedHvRegs::default();
        let mut bsp = HvVp::in_partition(0, 1, 1, shared.clone());
        let mut ap = HvVp::in_partition(1, 1, 1, shared);
        bsp.write_msr(&mem, HV_X64_MSR_GUEST_OS_ID, 0x8100_0006_0100_0000)
            .unwrap();
        bsp.write_msr(&mem, HV_X64_MSR_HYPERCALL, 0x3000 | 1)
            .unwrap();
        bsp.write_msr(&mem, HV_X64_MSR_VP_ASSIST_PAGE, 0x5001)
            .unwrap();
        assert_eq!(ap.read_msr(HV_X64_MSR_HYPERCALL), Ok(0x3001));
        assert!(ap.hypercall_enabled());
        assert_eq!(
            ap.read_msr(HV_X64_MSR_GUEST_OS_ID),
            Ok(0x8100_0006_0100_0000)
        );
        assert_eq!(ap.read_msr(HV_X64_MSR_VP_INDEX), Ok(1));
        assert_eq!(ap.read_msr(HV_X64_MSR_VP_ASSIST_PAGE), Ok(0));
        // Clearing the OS id on any VP disables the page for all.
        ap.write_msr(&mem, HV_X64_MSR_GUEST_OS_ID, 0).unwrap();
        assert!(!bsp.hypercall_enabled());
        // A separate partition shares nothing.
        let other = HvVp::new(0, 1, 1);
        assert_eq!(other.guest_os_id(), 0);
    }

    #[test]
    fn linux_hyperv_init_sequence() {
        let mem = GuestMemory::new(16 * 4096).unwrap();
        let mut vp = HvVp::new(1, 2_100_000_000, 1_000_000_000);
        assert_eq!(vp.read_msr(HV_X64_MSR_VP_INDEX), Ok(1));
        assert_eq!(vp.read_msr(HV_X64_MSR_TSC_FREQUENCY), Ok(2_100_000_000));
        assert_eq!(vp.read_msr(HV_X64_MSR_APIC_FREQUENCY), Ok(1_000_000_000));
        // Before the OS id is set the page cannot be enabled.
        assert_eq!(vp.write_msr(&mem, HV_X64_MSR_HYPERCALL, 0x3000 | 1), Ok(0));
        assert!(!vp.hypercall_enabled());
        let mut b = [0u8; 3];
        mem.read(0x3000, &mut b).unwrap();
        assert_eq!(b, [0; 3]);
        vp.write_msr(&mem, HV_X64_MSR_GUEST_OS_ID, 0x8100_0006_0100_0000)
            .unwrap();
        let r = vp.read_msr(HV_X64_MSR_HYPERCALL).unwrap();
        vp.write_msr(&mem, HV_X64_MSR_HYPERCALL, r | 0x3000 | 1)
            .unwrap();
        assert!(vp.hypercall_enabled());
        assert_eq!(vp.read_msr(HV_X64_MSR_HYPERCALL), Ok(0x3001));
        mem.read(0x3000, &mut b).unwrap();
        assert_eq!(b, HYPERCALL_STUB);
        // A page outside memory is refused.
        assert_eq!(
            vp.write_msr(&mem, HV_X64_MSR_HYPERCALL, 0x10_0000 | 1),
            Err(MsrFault(HV_X64_MSR_HYPERCALL))
        );
        // Per-CPU init: VP assist page and invariant TSC accepted, read back.
        vp.write_msr(&mem, HV_X64_MSR_VP_ASSIST_PAGE, 0x5001)
            .unwrap();
        vp.write_msr(&mem, HV_X64_MSR_TSC_INVARIANT_CONTROL, 1)
            .unwrap();
        assert_eq!(vp.read_msr(HV_X64_MSR_TSC_INVARIANT_CONTROL), Ok(1));
        // SynIC registers go to the SynIC.
        vp.write_msr(&mem, HV_X64_MSR_SIMP, 0x6000 | 1).unwrap();
        assert_eq!(vp.read_msr(HV_X64_MSR_SIMP), Ok(0x6001));
        assert_eq!(vp.read_msr(HV_X64_MSR_SVERSION), Ok(1));
        // Read-only and unknown MSRs fault and are counted.
        assert!(vp.write_msr(&mem, HV_X64_MSR_VP_INDEX, 3).is_err());
        assert!(vp.read_msr(HV_X64_MSR_CRASH_CTL).is_err());
        assert!(vp.read_msr(HV_X64_MSR_TIME_REF_COUNT).is_err());
        assert_eq!(vp.stats().msr_faults, 4);
        assert_eq!(vp.stats().hypercall_page_writes, 1);
        // Clearing the OS id disables the page.
        vp.write_msr(&mem, HV_X64_MSR_GUEST_OS_ID, 0).unwrap();
        assert!(!vp.hypercall_enabled());
    }
}
