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

/// Linux features (`X86_FEATURE_*` numbers, word * 32 + bit, from Linux
/// `arch/x86/include/asm/cpufeatures.h`) that a guest under
/// [`CpuidPolicy::Baseline`] is told to ignore. On kvm_pvm the guest's own CPUID
/// instructions can see the host CPU's features rather than the table set with
/// KVM_SET_CPUID2 (observed: POPCNT and XSAVE detected although the table clears
/// them), so Linux is also told to ignore the features whose instructions the
/// emulator lacks. Every word here mirrors a CPUID register (1: 0x8000_0001 EDX,
/// 4: leaf 1 ECX, 9: leaf 7 EBX, 16: leaf 7 ECX), so the numbers are the same in
/// every Linux version, and Linux has accepted numbers since `clearcpuid=` exists.
pub const BASELINE_CLEARED: &[u16] = &[
    32 + 27,      // rdtscp
    4 * 32,       // pni (sse3)
    4 * 32 + 1,   // pclmulqdq
    4 * 32 + 9,   // ssse3
    4 * 32 + 13,  // cx16
    4 * 32 + 17,  // pcid
    4 * 32 + 19,  // sse4_1
    4 * 32 + 20,  // sse4_2
    4 * 32 + 22,  // movbe
    4 * 32 + 23,  // popcnt
    4 * 32 + 25,  // aes
    4 * 32 + 26,  // xsave
    4 * 32 + 28,  // avx
    4 * 32 + 30,  // rdrand
    9 * 32,       // fsgsbase
    9 * 32 + 3,   // bmi1
    9 * 32 + 5,   // avx2
    9 * 32 + 8,   // bmi2
    9 * 32 + 10,  // invpcid
    9 * 32 + 16,  // avx512f
    9 * 32 + 18,  // rdseed
    9 * 32 + 20,  // smap
    9 * 32 + 23,  // clflushopt
    9 * 32 + 24,  // clwb
    9 * 32 + 29,  // sha_ni
    16 * 32 + 3,  // pku
    16 * 32 + 4,  // ospke
    16 * 32 + 8,  // gfni
    16 * 32 + 9,  // vaes
    16 * 32 + 10, // vpclmulqdq
    16 * 32 + 22, // rdpid
];

/// The longest `clearcpuid=` argument Linux reads: `cpu_parse_early_param` copies it
/// into a 128-byte buffer, and the rest of the list is ignored without a word.
pub const CLEARCPUID_MAX: usize = 127;

/// The `clearcpuid=` word for [`BASELINE_CLEARED`] alone (see [`linux_cmdline`], which
/// also keeps a caller's own `clearcpuid=` list: Linux reads only the last such word).
pub const BASELINE_CMDLINE: &str = "clearcpuid=59,128,129,137,141,145,147,148,150,151,153,154,156,158,288,291,293,296,298,304,306,308,311,312,317,515,516,520,521,522,534";

/// A Linux command line is refused by [`linux_cmdline`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmdlineError {
    /// The merged `clearcpuid=` list is longer than Linux reads ([`CLEARCPUID_MAX`]):
    /// the features at its end would silently stay enabled.
    #[error("clearcpuid= list of {0} characters; Linux reads at most {CLEARCPUID_MAX}")]
    ClearCpuidTooLong(usize),
}

/// `cmdline` with, under `baseline`, the features of [`BASELINE_CLEARED`] cleared.
/// Linux honours only the last `clearcpuid=` word and only its first
/// [`CLEARCPUID_MAX`] characters, so every `clearcpuid=` word of `cmdline` is merged
/// with the baseline's into one word at the end (names and numbers both kept, each
/// once), and a list too long for Linux is an error rather than silently cut. The
/// baseline takes 122 of those 127 characters: a caller's own list under `baseline`
/// can add only a few (numbers already in [`BASELINE_CLEARED`] cost nothing).
pub fn linux_cmdline(cmdline: &str, baseline: bool) -> Result<String, CmdlineError> {
    let mut words = Vec::new();
    let mut cleared: Vec<String> = Vec::new();
    for word in cmdline.split_whitespace() {
        match word.strip_prefix("clearcpuid=") {
            Some(list) => {
                cleared.extend(list.split(',').filter(|s| !s.is_empty()).map(String::from))
            }
            None => words.push(word.to_string()),
        }
    }
    if baseline {
        cleared.extend(BASELINE_CLEARED.iter().map(|b| b.to_string()));
    }
    let mut seen = std::collections::HashSet::new();
    cleared.retain(|c| seen.insert(c.clone()));
    if !cleared.is_empty() {
        let list = cleared.join(",");
        if list.len() > CLEARCPUID_MAX {
            return Err(CmdlineError::ClearCpuidTooLong(list.len()));
        }
        words.push(format!("clearcpuid={list}"));
    }
    Ok(words.join(" "))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_fits_what_linux_reads() {
        let list = BASELINE_CMDLINE.strip_prefix("clearcpuid=").unwrap();
        assert!(list.len() <= CLEARCPUID_MAX, "{} characters", list.len());
        let numbers: Vec<u16> = list.split(',').map(|n| n.parse().unwrap()).collect();
        let mut sorted = BASELINE_CLEARED.to_vec();
        sorted.sort_unstable();
        assert_eq!(numbers, sorted);
        assert_eq!(linux_cmdline("", true).unwrap(), BASELINE_CMDLINE);
    }

    #[test]
    fn a_callers_clearcpuid_is_merged_into_one_last_word() {
        let c = linux_cmdline("console=ttyS0 clearcpuid=avx ip=x clearcpuid=59", true).unwrap();
        let words: Vec<&str> = c.split(' ').collect();
        assert_eq!(words[..2], ["console=ttyS0", "ip=x"]);
        assert_eq!(words.len(), 3);
        let list = words[2].strip_prefix("clearcpuid=").unwrap();
        assert!(list.starts_with("avx,59,128,"), "{list}");
        assert_eq!(list.matches("59").count(), 1);
        // The baseline leaves room for a few more characters only.
        assert_eq!(
            linux_cmdline("clearcpuid=avx,7", true),
            Err(CmdlineError::ClearCpuidTooLong(128))
        );
        assert_eq!(
            linux_cmdline("a clearcpuid=avx", false).unwrap(),
            "a clearcpuid=avx"
        );
        assert_eq!(linux_cmdline("a  b", false).unwrap(), "a b");
        let long = format!("clearcpuid={}", "x".repeat(40));
        assert_eq!(
            linux_cmdline(&long, true),
            Err(CmdlineError::ClearCpuidTooLong(
                40 + 1 + BASELINE_CMDLINE.len() - 11
            ))
        );
    }
}
