//! Hyper-V CPUID leaves 0x40000000..=0x40000006 and their bits.
//!
//! Bit names and positions from Linux `include/hyperv/hvgdk_mini.h` (x64) and, for leaf
//! 0x40000006 (which Linux does not name), OpenVMM's `hvdef` and the TLFS. What a Linux
//! guest checks, and which bits it must not see, is in Linux
//! `arch/x86/kernel/cpu/mshyperv.c` and `arch/x86/hyperv/hv_init.c` (see
//! `docs/architecture.md`, "A Linux guest on KVM"):
//! [`HvCpuid::for_linux_guest`] builds exactly that set.

use bitflags::bitflags;

/// Leaf: max leaf and vendor ("Microsoft Hv").
pub const LEAF_VENDOR: u32 = 0x4000_0000;
/// Leaf: interface signature ("Hv#1").
pub const LEAF_INTERFACE: u32 = 0x4000_0001;
/// Leaf: hypervisor version.
pub const LEAF_VERSION: u32 = 0x4000_0002;
/// Leaf: features (partition privileges in EAX/EBX, ECX, EDX features).
pub const LEAF_FEATURES: u32 = 0x4000_0003;
/// Leaf: implementation recommendations.
pub const LEAF_RECOMMENDATIONS: u32 = 0x4000_0004;
/// Leaf: implementation limits.
pub const LEAF_LIMITS: u32 = 0x4000_0005;
/// Leaf: hardware features in use.
pub const LEAF_HARDWARE_FEATURES: u32 = 0x4000_0006;

/// "Microsoft Hv" as EBX, ECX, EDX.
pub const VENDOR_MICROSOFT_HV: [u32; 3] = [0x7263_694D, 0x666F_736F, 0x7648_2074];
/// "Hv#1" (EAX of leaf 0x40000001), required by the TLFS.
pub const INTERFACE_HV1: u32 = 0x3123_7648;

bitflags! {
    /// Leaf 0x40000003 EAX: partition privilege mask, low half (MSR access).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FeaturesEax: u32 {
        /// `HV_MSR_VP_RUNTIME_AVAILABLE`.
        const VP_RUNTIME = 1 << 0;
        /// `HV_MSR_TIME_REF_COUNT_AVAILABLE`.
        const TIME_REF_COUNT = 1 << 1;
        /// `HV_MSR_SYNIC_AVAILABLE`.
        const SYNIC = 1 << 2;
        /// `HV_MSR_SYNTIMER_AVAILABLE`.
        const SYNTIMER = 1 << 3;
        /// `HV_MSR_APIC_ACCESS_AVAILABLE`.
        const APIC_ACCESS = 1 << 4;
        /// `HV_MSR_HYPERCALL_AVAILABLE` (Linux requires it).
        const HYPERCALL = 1 << 5;
        /// `HV_MSR_VP_INDEX_AVAILABLE` (Linux requires it).
        const VP_INDEX = 1 << 6;
        /// `HV_MSR_RESET_AVAILABLE`.
        const RESET = 1 << 7;
        /// `HV_MSR_STAT_PAGES_AVAILABLE`.
        const STAT_PAGES = 1 << 8;
        /// `HV_MSR_REFERENCE_TSC_AVAILABLE`.
        const REFERENCE_TSC = 1 << 9;
        /// `HV_MSR_GUEST_IDLE_AVAILABLE`.
        const GUEST_IDLE = 1 << 10;
        /// `HV_ACCESS_FREQUENCY_MSRS`.
        const FREQUENCY_MSRS = 1 << 11;
        /// Debug MSRs.
        const DEBUG_MSRS = 1 << 12;
        /// `HV_ACCESS_REENLIGHTENMENT`.
        const REENLIGHTENMENT = 1 << 13;
        /// Root scheduler MSR.
        const ROOT_SCHEDULER = 1 << 14;
        /// `HV_ACCESS_TSC_INVARIANT`.
        const TSC_INVARIANT = 1 << 15;
    }
}

bitflags! {
    /// Leaf 0x40000003 EBX: partition privilege mask, high half (hypercall access).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FeaturesEbx: u32 {
        /// `HV_CREATE_PARTITIONS`.
        const CREATE_PARTITIONS = 1 << 0;
        /// `HV_ACCESS_PARTITION_ID` (Linux then calls HvCallGetPartitionId).
        const ACCESS_PARTITION_ID = 1 << 1;
        /// `HV_ACCESS_MEMORY_POOL`.
        const ACCESS_MEMORY_POOL = 1 << 2;
        /// `HV_ADJUST_MESSAGE_BUFFERS`.
        const ADJUST_MESSAGE_BUFFERS = 1 << 3;
        /// `HV_POST_MESSAGES`.
        const POST_MESSAGES = 1 << 4;
        /// `HV_SIGNAL_EVENTS`.
        const SIGNAL_EVENTS = 1 << 5;
        /// `HV_CREATE_PORT`.
        const CREATE_PORT = 1 << 6;
        /// `HV_CONNECT_PORT`.
        const CONNECT_PORT = 1 << 7;
        /// `HV_ACCESS_STATS`.
        const ACCESS_STATS = 1 << 8;
        /// `HV_DEBUGGING`.
        const DEBUGGING = 1 << 11;
        /// `HV_CPU_MANAGEMENT` (root partition; a guest must not see it).
        const CPU_MANAGEMENT = 1 << 12;
        /// `HV_ENABLE_EXTENDED_HYPERCALLS`.
        const ENABLE_EXTENDED_HYPERCALLS = 1 << 20;
        /// `HV_ISOLATION` (isolated VM; a plain guest must not see it).
        const ISOLATION = 1 << 22;
    }
}

bitflags! {
    /// Leaf 0x40000003 EDX: miscellaneous features.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FeaturesEdx: u32 {
        /// `HV_X64_MWAIT_AVAILABLE`.
        const MWAIT = 1 << 0;
        /// `HV_X64_GUEST_DEBUGGING_AVAILABLE`.
        const GUEST_DEBUGGING = 1 << 1;
        /// `HV_X64_PERF_MONITOR_AVAILABLE`.
        const PERF_MONITOR = 1 << 2;
        /// `HV_X64_CPU_DYNAMIC_PARTITIONING_AVAILABLE`.
        const CPU_DYNAMIC_PARTITIONING = 1 << 3;
        /// `HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE` (fast calls with XMM input).
        const HYPERCALL_XMM_INPUT = 1 << 4;
        /// `HV_X64_GUEST_IDLE_STATE_AVAILABLE`.
        const GUEST_IDLE_STATE = 1 << 5;
        /// `HV_FEATURE_FREQUENCY_MSRS_AVAILABLE`.
        const FREQUENCY_MSRS = 1 << 8;
        /// `HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE`.
        const GUEST_CRASH_MSR = 1 << 10;
        /// `HV_FEATURE_DEBUG_MSRS_AVAILABLE`.
        const DEBUG_MSRS = 1 << 11;
        /// `HV_FEATURE_EXT_GVA_RANGES_FLUSH`.
        const EXT_GVA_RANGES_FLUSH = 1 << 14;
        /// `HV_X64_HYPERCALL_XMM_OUTPUT_AVAILABLE`.
        const HYPERCALL_XMM_OUTPUT = 1 << 15;
        /// `HV_STIMER_DIRECT_MODE_AVAILABLE`.
        const STIMER_DIRECT_MODE = 1 << 19;
    }
}

bitflags! {
    /// Leaf 0x40000004 EAX: implementation recommendations.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RecommendationsEax: u32 {
        /// `HV_X64_AS_SWITCH_RECOMMENDED`.
        const AS_SWITCH = 1 << 0;
        /// `HV_X64_LOCAL_TLB_FLUSH_RECOMMENDED` (enables flush hypercalls).
        const LOCAL_TLB_FLUSH = 1 << 1;
        /// `HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED` (enables flush hypercalls).
        const REMOTE_TLB_FLUSH = 1 << 2;
        /// `HV_X64_APIC_ACCESS_RECOMMENDED` (enables the APIC MSRs).
        const APIC_ACCESS = 1 << 3;
        /// `HV_X64_SYSTEM_RESET_RECOMMENDED`.
        const SYSTEM_RESET = 1 << 4;
        /// `HV_X64_RELAXED_TIMING_RECOMMENDED`.
        const RELAXED_TIMING = 1 << 5;
        /// `HV_DEPRECATING_AEOI_RECOMMENDED`: the guest clears auto-EOI in its SINTs and
        /// EOIs the APIC itself. Mandatory when SINTs arrive as MSIs (see linux-guest.md).
        const DEPRECATING_AEOI = 1 << 9;
        /// `HV_X64_CLUSTER_IPI_RECOMMENDED` (enables IPI hypercalls).
        const CLUSTER_IPI = 1 << 10;
        /// `HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED`.
        const EX_PROCESSOR_MASKS = 1 << 11;
        /// `HV_X64_HYPERV_NESTED`.
        const NESTED = 1 << 12;
        /// `HV_X64_ENLIGHTENED_VMCS_RECOMMENDED`.
        const ENLIGHTENED_VMCS = 1 << 14;
        /// `HV_X64_NO_NONARCH_CORESHARING`.
        const NO_NONARCH_CORESHARING = 1 << 18;
        /// `HV_X64_USE_MMIO_HYPERCALLS`.
        const USE_MMIO_HYPERCALLS = 1 << 21;
    }
}

bitflags! {
    /// Leaf 0x40000006 EAX: hardware features the hypervisor uses (names from OpenVMM
    /// `hvdef`; Linux does not name them).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct HardwareFeaturesEax: u32 {
        /// APIC overlay assist in use.
        const APIC_OVERLAY_ASSIST = 1 << 0;
        /// MSR bitmaps in use.
        const MSR_BITMAPS = 1 << 1;
        /// Architectural performance counters in use.
        const ARCH_PERF_COUNTERS = 1 << 2;
        /// Second-level address translation in use.
        const SLAT = 1 << 3;
        /// DMA remapping in use.
        const DMA_REMAPPING = 1 << 4;
        /// Interrupt remapping in use.
        const INTERRUPT_REMAPPING = 1 << 5;
        /// Memory patrol scrubber present.
        const MEMORY_PATROL_SCRUBBER = 1 << 6;
        /// DMA protection in use.
        const DMA_PROTECTION = 1 << 7;
        /// HPET requested.
        const HPET_REQUESTED = 1 << 8;
        /// Synthetic timers are volatile.
        const SYNTHETIC_TIMERS_VOLATILE = 1 << 9;
    }
}

/// One CPUID leaf's output registers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct CpuidLeaf {
    /// The leaf (EAX input).
    pub function: u32,
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

/// The Hyper-V CPUID leaves a VMM presents, as typed fields.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HvCpuid {
    /// Highest Hyper-V leaf (EAX of 0x40000000). Linux requires 0x40000005..=0x4000FFFF.
    pub max_leaf: u32,
    /// Leaf 0x40000002 EAX (build number), EBX (major << 16 | minor).
    pub version: (u32, u32),
    /// Leaf 0x40000003 EAX.
    pub features_eax: FeaturesEax,
    /// Leaf 0x40000003 EBX.
    pub features_ebx: FeaturesEbx,
    /// Leaf 0x40000003 EDX.
    pub features_edx: FeaturesEdx,
    /// Leaf 0x40000004 EAX.
    pub recommendations: RecommendationsEax,
    /// Leaf 0x40000004 EBX: long spin-wait retry count (0xFFFFFFFF = never notify).
    pub spin_retries: u32,
    /// Leaf 0x40000005 EAX: maximum virtual processors.
    pub max_vps: u32,
    /// Leaf 0x40000005 EBX: maximum logical processors.
    pub max_lps: u32,
    /// Leaf 0x40000006 EAX.
    pub hardware: HardwareFeaturesEax,
}

impl HvCpuid {
    /// What an unmodified Linux guest needs to bring up hv_vmbus over a user-space SynIC
    /// whose SINTs arrive as MSIs (Linux `ms_hyperv_init_platform`, `hyperv_init`): hypercall, VP
    /// index, SynIC, frequency MSRs and invariant TSC; PostMessages and SignalEvents; the
    /// frequency-MSR feature; and only the deprecating-AEOI recommendation. Nothing that
    /// would make the guest use flush/IPI hypercalls, APIC MSRs, XMM input, crash MSRs,
    /// root-partition or isolation paths.
    pub fn for_linux_guest(vcpus: u32) -> Self {
        Self {
            max_leaf: LEAF_HARDWARE_FEATURES,
            version: (0, 0x000A_0000),
            features_eax: FeaturesEax::HYPERCALL
                | FeaturesEax::VP_INDEX
                | FeaturesEax::SYNIC
                | FeaturesEax::FREQUENCY_MSRS
                | FeaturesEax::TSC_INVARIANT,
            features_ebx: FeaturesEbx::POST_MESSAGES | FeaturesEbx::SIGNAL_EVENTS,
            features_edx: FeaturesEdx::FREQUENCY_MSRS,
            recommendations: RecommendationsEax::DEPRECATING_AEOI,
            spin_retries: 0xFFFF_FFFF,
            max_vps: vcpus,
            max_lps: vcpus,
            hardware: HardwareFeaturesEax::empty(),
        }
    }

    /// Every leaf from 0x40000000 up to `max_leaf` (at most 0x40000006 are produced;
    /// leaves this type does not model read as zero), each defined explicitly because
    /// some KVM hosts answer undefined leaves with the highest basic leaf.
    pub fn leaves(&self) -> impl Iterator<Item = CpuidLeaf> + '_ {
        let last = self.max_leaf.clamp(LEAF_VENDOR, LEAF_HARDWARE_FEATURES);
        (LEAF_VENDOR..=last).map(move |function| {
            let mut l = CpuidLeaf {
                function,
                ..CpuidLeaf::default()
            };
            match function {
                LEAF_VENDOR => {
                    l.eax = self.max_leaf;
                    [l.ebx, l.ecx, l.edx] = VENDOR_MICROSOFT_HV;
                }
                LEAF_INTERFACE => l.eax = INTERFACE_HV1,
                LEAF_VERSION => (l.eax, l.ebx) = self.version,
                LEAF_FEATURES => {
                    l.eax = self.features_eax.bits();
                    l.ebx = self.features_ebx.bits();
                    l.edx = self.features_edx.bits();
                }
                LEAF_RECOMMENDATIONS => {
                    l.eax = self.recommendations.bits();
                    l.ebx = self.spin_retries;
                }
                LEAF_LIMITS => {
                    l.eax = self.max_vps;
                    l.ebx = self.max_lps;
                }
                LEAF_HARDWARE_FEATURES => l.eax = self.hardware.bits(),
                _ => {}
            }
            l
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_string() {
        let mut s = [0u8; 12];
        for (i, r) in VENDOR_MICROSOFT_HV.iter().enumerate() {
            s[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, b"Microsoft Hv");
        assert_eq!(&INTERFACE_HV1.to_le_bytes(), b"Hv#1");
    }

    #[test]
    fn linux_guest_leaves_match_reference() {
        let c = HvCpuid::for_linux_guest(2);
        let leaves: Vec<_> = c.leaves().collect();
        assert_eq!(leaves.len(), 7);
        let get = |f| *leaves.iter().find(|l| l.function == f).unwrap();
        let v = get(LEAF_VENDOR);
        assert!((0x4000_0005..=0x4000_FFFF).contains(&v.eax));
        let f = get(LEAF_FEATURES);
        // Bits 2, 5, 6, 11, 15 of EAX; 4 and 5 of EBX; 8 of EDX (linux-guest.md table).
        assert_eq!(f.eax, 1 << 2 | 1 << 5 | 1 << 6 | 1 << 11 | 1 << 15);
        assert_eq!(f.ebx, 1 << 4 | 1 << 5);
        assert_eq!(f.edx, 1 << 8);
        assert_eq!(f.ebx & (1 << 1 | 1 << 12 | 1 << 20 | 1 << 22), 0);
        assert_eq!(get(LEAF_RECOMMENDATIONS).eax, 1 << 9);
        assert_eq!(get(LEAF_LIMITS).eax, 2);
        assert_eq!(get(LEAF_INTERFACE).eax, INTERFACE_HV1);
    }
}
