//! The CPUID a Linux guest of the kvm and mshv-style backends sees, hypervisor-neutral:
//! the host's leaves minus anything that identifies another hypervisor, plus Hyper-V's
//! (reference: Linux `arch/x86/kernel/cpu/mshyperv.c`, TLFS section 2.4), and the
//! baseline feature set for KVM's instruction emulator (kvm_pvm).

use hv_hypercall::cpuid::HvCpuid;

/// Which CPU features the guest sees besides the Hyper-V leaves.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CpuidPolicy {
    /// [`CpuidPolicy::Baseline`] on kvm_pvm (detected through
    /// /sys/module/kvm_pvm), [`CpuidPolicy::Host`] elsewhere.
    #[default]
    Auto,
    /// Everything KVM supports.
    Host,
    /// Only features whose instructions KVM's instruction emulator handles. kvm_pvm,
    /// the software KVM some cloud VMs (Firecracker hosts without VMX) expose, runs
    /// guest kernel code through that emulator; an instruction it lacks (CMPXCHG16B,
    /// XRSTOR, POPCNT, RDRAND, VERW, RDGSBASE, ...) stops the VM with a KVM internal
    /// error. Linux then uses its generic fallbacks.
    Baseline,
}

/// Whether /dev/kvm is kvm_pvm (software virtualization; see [`CpuidPolicy`]). On it
/// a second vCPU comes up but then stops answering IPIs (observed with Debian's 6.1:
/// CPU 0 waits forever in `csd_lock_wait`), so callers should boot one vCPU there.
pub fn is_kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

impl CpuidPolicy {
    /// Whether the guest gets only the baseline features (on kvm_pvm for `Auto`).
    pub fn baseline(self) -> bool {
        match self {
            CpuidPolicy::Auto => is_kvm_pvm(),
            CpuidPolicy::Host => false,
            CpuidPolicy::Baseline => true,
        }
    }
}

/// Appended to a Linux guest's command line under [`CpuidPolicy::Baseline`]. On
/// kvm_pvm the guest's own CPUID instructions can see the host CPU's features rather
/// than the table set with KVM_SET_CPUID2 (observed: POPCNT and XSAVE detected although
/// the table clears them), so Linux is also told to ignore the features whose
/// instructions the emulator lacks. Linux 5.19+ accepts these names.
pub const BASELINE_CMDLINE: &str = "clearcpuid=xsave,popcnt,pni,ssse3,sse4_1,sse4_2,cx16,rdrand,rdseed,fsgsbase,smap,invpcid,pcid,rdtscp,rdpid,pku,ospke,clflushopt,clwb,movbe,bmi1,bmi2,avx,avx2,avx512f,aes,pclmulqdq,sha_ni,vaes,vpclmulqdq,gfni";

/// Leaf 1 ECX bits kept by [`CpuidPolicy::Baseline`]: SSE3, SSSE3, SSE4.1, SSE4.2,
/// x2APIC, TSC-deadline (user-mode code runs natively; the kernel does not use the SSE
/// ones outside crypto).
pub(crate) const BASELINE_1_ECX: u32 =
    (1 << 0) | (1 << 9) | (1 << 19) | (1 << 20) | (1 << 21) | (1 << 24);
/// Leaf 7 EBX bits kept by [`CpuidPolicy::Baseline`]: SMEP, ERMS.
const BASELINE_7_EBX: u32 = (1 << 7) | (1 << 9);

/// One CPUID leaf (what KVM calls `kvm_cpuid_entry2`), hypervisor-neutral.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// EAX input (leaf).
    pub function: u32,
    /// ECX input (subleaf).
    pub index: u32,
    /// The hypervisor's flags for the entry (KVM: `KVM_CPUID_FLAG_*`), passed through.
    pub flags: u32,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

#[cfg(feature = "kvm")]
impl From<&kvm_bindings::kvm_cpuid_entry2> for CpuidEntry {
    fn from(e: &kvm_bindings::kvm_cpuid_entry2) -> Self {
        Self {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}

#[cfg(feature = "kvm")]
impl From<CpuidEntry> for kvm_bindings::kvm_cpuid_entry2 {
    fn from(e: CpuidEntry) -> Self {
        Self {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            ..Default::default()
        }
    }
}

/// The CPUID table a Linux guest gets for vCPU `apic_id` of `vcpus`, from the leaves
/// the hypervisor supports (`host`): without any 0x4xxxxxxx leaf (a KVM signature
/// would outrank Hyper-V), with the Hyper-V leaves
/// ([`HvCpuid::for_linux_guest`]), the hypervisor bit, the APIC id, and the
/// invariant-TSC bit Linux needs to trust the TSC under Hyper-V; with `baseline`,
/// only the features of [`CpuidPolicy::Baseline`].
pub fn for_linux_guest(
    host: &[CpuidEntry],
    vcpus: u32,
    apic_id: u32,
    baseline: bool,
) -> Vec<CpuidEntry> {
    let mut v: Vec<CpuidEntry> = host
        .iter()
        .filter(|e| !(0x4000_0000..=0x4fff_ffff).contains(&e.function))
        .copied()
        .collect();
    for e in v.iter_mut() {
        match e.function {
            1 => {
                if baseline {
                    e.ecx &= BASELINE_1_ECX;
                }
                e.ecx |= 1 << 31;
                e.ebx = (e.ebx & 0x00ff_ffff) | (apic_id << 24);
            }
            7 if baseline && e.index == 0 => {
                e.ebx &= BASELINE_7_EBX;
                e.ecx = 0;
                e.edx = 0;
            }
            0x8000_0001 if baseline => {
                // Keep LAHF/SAHF, SYSCALL, NX, 1 GiB pages, long mode; drop LZCNT,
                // PREFETCHW, RDTSCP and the rest.
                e.ecx &= 1;
                e.edx &= (1 << 11) | (1 << 20) | (1 << 26) | (1 << 29);
            }
            0xb | 0x1f => e.edx = apic_id,
            0x8000_0007 => e.edx |= 1 << 8,
            _ => {}
        }
    }
    for l in HvCpuid::for_linux_guest(vcpus).leaves() {
        v.push(CpuidEntry {
            function: l.function,
            eax: l.eax,
            ebx: l.ebx,
            ecx: l.ecx,
            edx: l.edx,
            ..Default::default()
        });
    }
    v
}
