//! Hyper-V synthetic MSR numbers (x64). From Linux `include/hyperv/hvgdk_mini.h`
//! (`HV_X64_MSR_*`) and the TLFS.

/// Guest OS identity, written by the guest at boot.
pub const HV_X64_MSR_GUEST_OS_ID: u32 = 0x4000_0000;
/// Hypercall page enable and GPA ([`crate::HypercallPageRegister`]).
pub const HV_X64_MSR_HYPERCALL: u32 = 0x4000_0001;
/// The VP index of the reading processor.
pub const HV_X64_MSR_VP_INDEX: u32 = 0x4000_0002;
/// System reset.
pub const HV_X64_MSR_RESET: u32 = 0x4000_0003;
/// VP runtime in 100 ns units.
pub const HV_X64_MSR_VP_RUNTIME: u32 = 0x4000_0010;
/// Partition reference counter (100 ns). Every read exits: do not advertise it lightly.
pub const HV_X64_MSR_TIME_REF_COUNT: u32 = 0x4000_0020;
/// Reference TSC page.
pub const HV_X64_MSR_REFERENCE_TSC: u32 = 0x4000_0021;
/// TSC frequency in Hz.
pub const HV_X64_MSR_TSC_FREQUENCY: u32 = 0x4000_0022;
/// APIC timer frequency in Hz.
pub const HV_X64_MSR_APIC_FREQUENCY: u32 = 0x4000_0023;
/// Synthetic APIC EOI.
pub const HV_X64_MSR_EOI: u32 = 0x4000_0070;
/// Synthetic APIC ICR.
pub const HV_X64_MSR_ICR: u32 = 0x4000_0071;
/// Synthetic APIC TPR.
pub const HV_X64_MSR_TPR: u32 = 0x4000_0072;
/// VP assist page; Linux writes it unconditionally per CPU.
pub const HV_X64_MSR_VP_ASSIST_PAGE: u32 = 0x4000_0073;
/// SynIC control ([`crate::ScontrolRegister`]).
pub const HV_X64_MSR_SCONTROL: u32 = 0x4000_0080;
/// SynIC version; reads 1 ([`HV_SYNIC_VERSION_1`]).
pub const HV_X64_MSR_SVERSION: u32 = 0x4000_0081;
/// SynIC event-flags page ([`crate::SiefpRegister`]).
pub const HV_X64_MSR_SIEFP: u32 = 0x4000_0082;
/// SynIC message page ([`crate::SimpRegister`]).
pub const HV_X64_MSR_SIMP: u32 = 0x4000_0083;
/// End of message: the guest consumed a slot that had message-pending set.
pub const HV_X64_MSR_EOM: u32 = 0x4000_0084;
/// SynIC interrupt-request base page.
pub const HV_X64_MSR_SIRBP: u32 = 0x4000_0085;
/// SINT0; SINTx is `HV_X64_MSR_SINT0 + x` for x in 0..16 ([`crate::SintRegister`]).
pub const HV_X64_MSR_SINT0: u32 = 0x4000_0090;
/// SINT15.
pub const HV_X64_MSR_SINT15: u32 = 0x4000_009F;
/// Synthetic timer 0 config; timer n config is `+ 2n`, count `+ 2n + 1` (n in 0..4).
pub const HV_X64_MSR_STIMER0_CONFIG: u32 = 0x4000_00B0;
/// Guest idle.
pub const HV_X64_MSR_GUEST_IDLE: u32 = 0x4000_00F0;
/// Crash parameter 0 (P0..P4 are 0x40000100..=0x40000104).
pub const HV_X64_MSR_CRASH_P0: u32 = 0x4000_0100;
/// Crash control.
pub const HV_X64_MSR_CRASH_CTL: u32 = 0x4000_0105;
/// Reenlightenment control.
pub const HV_X64_MSR_REENLIGHTENMENT_CONTROL: u32 = 0x4000_0106;
/// TSC emulation control.
pub const HV_X64_MSR_TSC_EMULATION_CONTROL: u32 = 0x4000_0107;
/// TSC emulation status.
pub const HV_X64_MSR_TSC_EMULATION_STATUS: u32 = 0x4000_0108;
/// TSC invariant control; Linux writes 1 when CPUID 0x40000003 EAX bit 15 is set.
pub const HV_X64_MSR_TSC_INVARIANT_CONTROL: u32 = 0x4000_0118;

/// The value SVERSION reads.
pub const HV_SYNIC_VERSION_1: u64 = 1;
/// First valid SINT vector.
pub const HV_SYNIC_FIRST_VALID_VECTOR: u8 = 16;

/// The SINTx MSR number for `sint`, or `None` if `sint >= 16`.
pub const fn sint_msr(sint: u32) -> Option<u32> {
    if sint < 16 {
        Some(HV_X64_MSR_SINT0 + sint)
    } else {
        None
    }
}

/// The SINT index of an MSR in `SINT0..=SINT15`, else `None`.
pub const fn msr_to_sint(msr: u32) -> Option<u32> {
    if msr >= HV_X64_MSR_SINT0 && msr <= HV_X64_MSR_SINT15 {
        Some(msr - HV_X64_MSR_SINT0)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sint_numbers() {
        assert_eq!(sint_msr(2), Some(0x4000_0092));
        assert_eq!(sint_msr(16), None);
        assert_eq!(msr_to_sint(0x4000_0092), Some(2));
        assert_eq!(msr_to_sint(0x4000_00A0), None);
        assert_eq!(msr_to_sint(HV_X64_MSR_EOM), None);
    }
}
