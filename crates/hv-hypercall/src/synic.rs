//! SynIC and hypercall-page MSR formats as typed bitfields.
//!
//! Layouts from Linux `include/hyperv/hvgdk_mini.h` / `hvhdk.h` (`union hv_synic_sint`,
//! `hv_synic_simp`, `hv_synic_siefp`, `hv_synic_scontrol`,
//! `hv_x64_msr_hypercall_contents`). Each type wraps the raw 64-bit MSR value so that a
//! guest's write is kept exactly (reserved bits included) and read back unchanged.

macro_rules! bit_accessors {
    ($($(#[$m:meta])* $get:ident, $set:ident: $bit:expr;)*) => {
        $(
            $(#[$m])*
            pub const fn $get(self) -> bool {
                self.0 >> $bit & 1 != 0
            }
            #[doc = concat!("Returns a copy with `", stringify!($get), "` set to `v`.")]
            pub const fn $set(self, v: bool) -> Self {
                Self(self.0 & !(1u64 << $bit) | (v as u64) << $bit)
            }
        )*
    };
}

/// A SINTx MSR (`HV_X64_MSR_SINT0 + x`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SintRegister(pub u64);

impl SintRegister {
    /// The reset value: masked, vector 0.
    pub const RESET: Self = Self(1 << 16);

    /// The interrupt vector (bits 0-7). Vectors below 16 are invalid
    /// (`HV_SYNIC_FIRST_VALID_VECTOR`); check with [`SintRegister::has_valid_vector`].
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }
    /// Returns a copy with the vector set.
    pub const fn with_vector(self, v: u8) -> Self {
        Self(self.0 & !0xFF | v as u64)
    }
    /// Whether the vector is at least 16.
    pub const fn has_valid_vector(self) -> bool {
        self.vector() >= 16
    }
    bit_accessors! {
        /// Masked (bit 16): no interrupt is raised for this SINT.
        masked, with_masked: 16;
        /// Auto-EOI (bit 17). A Linux guest clears it when CPUID 0x40000004 EAX bit 9
        /// (deprecating AEOI) is set, and then EOIs the APIC itself.
        auto_eoi, with_auto_eoi: 17;
        /// Polling (bit 18): the guest polls the slot; no interrupt.
        polling, with_polling: 18;
        /// As-intercept (bit 19).
        as_intercept, with_as_intercept: 19;
        /// Proxy (bit 20).
        proxy, with_proxy: 20;
    }
}

/// The SCONTROL MSR.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScontrolRegister(pub u64);

impl ScontrolRegister {
    bit_accessors! {
        /// The SynIC is enabled (bit 0).
        enabled, with_enabled: 0;
    }
}

/// A register holding an enable bit and a page-aligned GPA: SIMP, SIEFP, and the
/// hypercall-page MSR share this shape.
macro_rules! page_register {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            bit_accessors! {
                /// Enabled (bit 0).
                enabled, with_enabled: 0;
            }
            /// The page's guest-physical address (bits 12-63, 4 KiB aligned).
            pub const fn gpa(self) -> u64 {
                self.0 & !0xFFF
            }
            /// The page's guest page number.
            pub const fn gpn(self) -> u64 {
                self.0 >> 12
            }
            /// Returns a copy pointing at `gpa` (the low 12 bits are dropped).
            pub const fn with_gpa(self, gpa: u64) -> Self {
                Self(self.0 & 0xFFF | gpa & !0xFFF)
            }
        }
    };
}

page_register! {
    /// The SIMP MSR: the guest's message page.
    SimpRegister
}
page_register! {
    /// The SIEFP MSR: the guest's event-flags page.
    SiefpRegister
}
page_register! {
    /// `HV_X64_MSR_HYPERCALL`: the hypercall page. On enable the hypervisor fills the
    /// page with the calling stub; reads must keep returning enabled.
    HypercallPageRegister
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_sint2_write() {
        // Linux hv_synic_enable_regs with the AEOI-deprecated hint: vector 0xF3,
        // masked=0, auto_eoi=0.
        let v = SintRegister::RESET
            .with_masked(false)
            .with_vector(0xF3)
            .with_auto_eoi(false);
        assert_eq!(v.0, 0xF3);
        assert!(v.has_valid_vector());
        let aeoi = v.with_auto_eoi(true);
        assert_eq!(aeoi.0, 0xF3 | 1 << 17);
        assert!(SintRegister(1 << 18).polling());
        assert!(SintRegister(1 << 19).as_intercept());
        assert!(SintRegister(1 << 20).proxy());
        assert!(!SintRegister(5).has_valid_vector());
    }

    #[test]
    fn page_registers() {
        let r = SimpRegister(0x1234_5000 | 1);
        assert!(r.enabled());
        assert_eq!(r.gpa(), 0x1234_5000);
        assert_eq!(r.gpn(), 0x12345);
        let r = r.with_gpa(0xABC_DEF0_0FFF).with_enabled(false);
        assert_eq!(r.0, 0xABC_DEF0_0000);
        assert!(ScontrolRegister(1).enabled());
        assert_eq!(HypercallPageRegister(0x7000_0001).gpa(), 0x7000_0000);
    }
}
