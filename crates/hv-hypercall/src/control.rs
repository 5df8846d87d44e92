//! The hypercall input value (control word, RCX on x64) and result value (RAX).
//!
//! Layout (TLFS "Hypercall Inputs"; Linux `HV_HYPERCALL_*` in `hvgdk_mini.h`):
//!
//! | bits  | field                                   |
//! |-------|-----------------------------------------|
//! | 0-15  | call code                               |
//! | 16    | fast (register-based) calling convention |
//! | 17-26 | variable header size, in 8-byte units   |
//! | 27-30 | reserved, must be zero                  |
//! | 31    | nested (to the L0 hypervisor)           |
//! | 32-43 | rep count                               |
//! | 44-47 | reserved, must be zero                  |
//! | 48-59 | rep start index                         |
//! | 60-63 | reserved, must be zero                  |
//!
//! The result value: bits 0-15 status, bits 32-43 reps completed, the rest zero.

use crate::HvStatus;

crate::open_enum! {
    /// A hypercall call code (bits 0-15 of the control word). Values from the TLFS and
    /// Linux `include/hyperv/hvgdk_mini.h` (`HVCALL_*`).
    pub struct HypercallCode(u16) {
        /// HvCallSwitchVirtualAddressSpace.
        SWITCH_VIRTUAL_ADDRESS_SPACE = 0x0001,
        /// HvCallFlushVirtualAddressSpace (Linux uses it only if remote TLB flush is
        /// recommended in CPUID 0x40000004).
        FLUSH_VIRTUAL_ADDRESS_SPACE = 0x0002,
        /// HvCallFlushVirtualAddressList.
        FLUSH_VIRTUAL_ADDRESS_LIST = 0x0003,
        /// HvCallNotifyLongSpinWait.
        NOTIFY_LONG_SPIN_WAIT = 0x0008,
        /// HvCallSendSyntheticClusterIpi (Linux uses it only if cluster IPI is recommended).
        SEND_IPI = 0x000B,
        /// HvCallFlushVirtualAddressSpaceEx.
        FLUSH_VIRTUAL_ADDRESS_SPACE_EX = 0x0013,
        /// HvCallFlushVirtualAddressListEx.
        FLUSH_VIRTUAL_ADDRESS_LIST_EX = 0x0014,
        /// HvCallSendSyntheticClusterIpiEx.
        SEND_IPI_EX = 0x0015,
        /// HvCallGetPartitionId (Linux calls it only with the AccessPartitionId privilege).
        GET_PARTITION_ID = 0x0046,
        /// HvCallGetVpRegisters.
        GET_VP_REGISTERS = 0x0050,
        /// HvCallSetVpRegisters.
        SET_VP_REGISTERS = 0x0051,
        /// HvCallPostMessage: the guest posts a SynIC message to a connection (VMBus
        /// channel-management messages travel this way).
        POST_MESSAGE = 0x005C,
        /// HvCallSignalEvent: the guest sets an event flag on a connection (VMBus channel
        /// signals travel this way, always with the fast convention in Linux).
        SIGNAL_EVENT = 0x005D,
        /// HvCallPostDebugData.
        POST_DEBUG_DATA = 0x0069,
        /// HvCallRetrieveDebugData.
        RETRIEVE_DEBUG_DATA = 0x006A,
        /// HvCallResetDebugSession.
        RESET_DEBUG_SESSION = 0x006B,
        /// HvCallRetargetDeviceInterrupt.
        RETARGET_INTERRUPT = 0x007E,
        /// HvCallFlushGuestPhysicalAddressSpace.
        FLUSH_GUEST_PHYSICAL_ADDRESS_SPACE = 0x00AF,
        /// HvCallFlushGuestPhysicalAddressList.
        FLUSH_GUEST_PHYSICAL_ADDRESS_LIST = 0x00B0,
        /// HvCallSignalEventDirect: the root partition sets an event flag in a guest VP's
        /// SIEFP (used by an MSHV root VMM).
        SIGNAL_EVENT_DIRECT = 0x00C0,
        /// HvCallPostMessageDirect: the root partition writes a message into a guest VP's
        /// SIMP slot (used by an MSHV root VMM).
        POST_MESSAGE_DIRECT = 0x00C1,
        /// HvCallModifySparseGpaPageHostVisibility (isolated VMs).
        MODIFY_SPARSE_GPA_PAGE_HOST_VISIBILITY = 0x00DB,
        /// HvCallMmioRead.
        MMIO_READ = 0x0106,
        /// HvCallMmioWrite.
        MMIO_WRITE = 0x0107,
        /// HvExtCallQueryCapabilities (extended hypercall; only with the
        /// EnableExtendedHypercalls privilege).
        EXT_QUERY_CAPABILITIES = 0x8001,
        /// HvExtCallMemoryHeatHint.
        EXT_MEMORY_HEAT_HINT = 0x8003,
    }
}

/// Bits of the control word that must be zero (27-30, 44-47, 60-63).
pub const CONTROL_RESERVED_MASK: u64 = (0xF << 27) | (0xF << 44) | (0xF << 60);

/// Maximum rep count and rep start index (12 bits each).
pub const MAX_REP: u16 = 0xFFF;

/// Maximum variable header size in 8-byte units (10 bits).
pub const MAX_VARIABLE_HEADER_QWORDS: u16 = 0x3FF;

/// The decoded hypercall input value (the control word the guest puts in RCX).
///
/// [`HypercallControl::from_u64`] is total: every 64-bit value decodes, and
/// [`HypercallControl::reserved_bits`] reports what the guest set that it should not have.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct HypercallControl {
    /// The call code.
    pub code: HypercallCode,
    /// Register-based ("fast") calling convention.
    pub fast: bool,
    /// Size of the variable header in 8-byte units (0..=1023).
    pub variable_header_size: u16,
    /// Nested hypercall (to the L0 hypervisor).
    pub nested: bool,
    /// Rep count (0..=4095); zero for a simple call.
    pub rep_count: u16,
    /// Rep start index (0..=4095).
    pub rep_start: u16,
    /// Reserved bits as the guest set them (already in position); zero when valid.
    pub reserved_bits: u64,
}

impl HypercallControl {
    /// A simple (non-rep, non-fast) call with this code.
    pub const fn new(code: HypercallCode) -> Self {
        Self {
            code,
            fast: false,
            variable_header_size: 0,
            nested: false,
            rep_count: 0,
            rep_start: 0,
            reserved_bits: 0,
        }
    }

    /// The same call with the fast flag set.
    pub const fn with_fast(mut self, fast: bool) -> Self {
        self.fast = fast;
        self
    }

    /// The same call as a rep call. Values are truncated to 12 bits.
    pub const fn with_rep(mut self, count: u16, start: u16) -> Self {
        self.rep_count = count & MAX_REP;
        self.rep_start = start & MAX_REP;
        self
    }

    /// The same call with a variable header of `qwords` 8-byte units (truncated to 10 bits).
    pub const fn with_variable_header_size(mut self, qwords: u16) -> Self {
        self.variable_header_size = qwords & MAX_VARIABLE_HEADER_QWORDS;
        self
    }

    /// Decodes a control word. Total: reserved bits are kept in `reserved_bits`.
    pub const fn from_u64(v: u64) -> Self {
        Self {
            code: HypercallCode(v as u16),
            fast: (v >> 16) & 1 != 0,
            variable_header_size: ((v >> 17) & 0x3FF) as u16,
            nested: (v >> 31) & 1 != 0,
            rep_count: ((v >> 32) & 0xFFF) as u16,
            rep_start: ((v >> 48) & 0xFFF) as u16,
            reserved_bits: v & CONTROL_RESERVED_MASK,
        }
    }

    /// Encodes the control word. Fields wider than their bit range are truncated.
    pub const fn to_u64(self) -> u64 {
        self.code.0 as u64
            | (self.fast as u64) << 16
            | ((self.variable_header_size & MAX_VARIABLE_HEADER_QWORDS) as u64) << 17
            | (self.nested as u64) << 31
            | ((self.rep_count & MAX_REP) as u64) << 32
            | ((self.rep_start & MAX_REP) as u64) << 48
            | (self.reserved_bits & CONTROL_RESERVED_MASK)
    }

    /// Whether this is a rep call (rep count non-zero).
    pub const fn is_rep(self) -> bool {
        self.rep_count != 0
    }
}

/// The hypercall result value returned in RAX.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct HypercallResult {
    /// The status.
    pub status: HvStatus,
    /// Reps completed (rep calls only; 0..=4095).
    pub reps_completed: u16,
}

impl HypercallResult {
    /// A result with this status and no reps completed.
    pub const fn new(status: HvStatus) -> Self {
        Self {
            status,
            reps_completed: 0,
        }
    }

    /// Encodes the result for RAX.
    pub const fn to_u64(self) -> u64 {
        self.status.0 as u64 | ((self.reps_completed & MAX_REP) as u64) << 32
    }

    /// Decodes a result value (ignores reserved bits).
    pub const fn from_u64(v: u64) -> Self {
        Self {
            status: HvStatus(v as u16),
            reps_completed: ((v >> 32) & 0xFFF) as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_signal_event_control_word() {
        // Linux hv_do_fast_hypercall8(HVCALL_SIGNAL_EVENT, ...) sets code | fast bit.
        let c = HypercallControl::from_u64(0x5D | 1 << 16);
        assert_eq!(c.code, HypercallCode::SIGNAL_EVENT);
        assert!(c.fast);
        assert!(!c.is_rep());
        assert_eq!(c.reserved_bits, 0);
        assert_eq!(c.to_u64(), 0x1005D);
    }

    #[test]
    fn fields_land_in_their_bits() {
        let c = HypercallControl::new(HypercallCode::FLUSH_VIRTUAL_ADDRESS_LIST)
            .with_rep(0xABC, 0x123)
            .with_variable_header_size(0x3FF)
            .with_fast(true);
        let v = c.to_u64();
        assert_eq!(v & 0xFFFF, 3);
        assert_eq!((v >> 16) & 1, 1);
        assert_eq!((v >> 17) & 0x3FF, 0x3FF);
        assert_eq!((v >> 32) & 0xFFF, 0xABC);
        assert_eq!((v >> 48) & 0xFFF, 0x123);
        assert_eq!(v & CONTROL_RESERVED_MASK, 0);
        assert_eq!(HypercallControl::from_u64(v), c);
    }

    #[test]
    fn reserved_bits_are_reported() {
        let c = HypercallControl::from_u64(0x5C | 1 << 27 | 1 << 63);
        assert_eq!(c.reserved_bits, 1 << 27 | 1 << 63);
        assert_eq!(c.code, HypercallCode::POST_MESSAGE);
    }

    #[test]
    fn result_value() {
        let r = HypercallResult {
            status: HvStatus::INSUFFICIENT_BUFFERS,
            reps_completed: 7,
        };
        assert_eq!(r.to_u64(), 0x13 | 7 << 32);
        assert_eq!(HypercallResult::from_u64(r.to_u64()), r);
    }

    proptest::proptest! {
        #[test]
        fn control_roundtrip(v: u64) {
            let c = HypercallControl::from_u64(v);
            // Every one of the 64 bits belongs to exactly one field, so decoding loses nothing.
            proptest::prop_assert_eq!(c.to_u64(), v);
            proptest::prop_assert_eq!(HypercallControl::from_u64(c.to_u64()), c);
        }
    }
}
