//! Every hypervisor call the mshv backend makes, behind two traits: [`VcpuOps`] (one
//! vCPU's run and register writes, used by its thread) and [`PartitionOps`] (the
//! partition-wide SynIC calls, used from any thread). [`MshvVcpuOps`] and
//! [`MshvPartitionOps`] implement them with mshv-ioctls; tests implement them with
//! recorded messages, so the run loop is tested on machines without /dev/mshv.

use hv_hypercall::{HvMessage, HvStatus};

/// Why a hypervisor call failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The call was interrupted (EINTR/EAGAIN: a kick); retry after checking for stop.
    #[error("interrupted")]
    Interrupted,
    /// The hypervisor returned this status.
    #[error("hypervisor status {0:?}")]
    Hv(HvStatus),
    /// The kernel returned this errno.
    #[error("errno {0}")]
    Os(i32),
}

impl OpError {
    /// Whether a direct post failed only because the target slot is occupied
    /// (INSUFFICIENT_BUFFERS or OBJECT_IN_USE): the message must wait for a
    /// SINT-deliverable notification.
    pub fn is_slot_busy(self) -> bool {
        matches!(
            self,
            OpError::Hv(HvStatus::INSUFFICIENT_BUFFERS) | OpError::Hv(HvStatus::OBJECT_IN_USE)
        )
    }
}

/// A register the run loop writes back after an intercept.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reg {
    /// RAX (hypercall status, IN result).
    Rax,
    /// RIP (past the intercepted instruction).
    Rip,
}

/// One vCPU's calls; owned by its thread.
pub trait VcpuOps: Send {
    /// Runs the vCPU until the hypervisor returns an intercept message.
    fn run(&mut self) -> Result<HvMessage, OpError>;
    /// Writes registers before the next run.
    fn set_registers(&mut self, regs: &[(Reg, u64)]) -> Result<(), OpError>;
}

/// Partition-wide SynIC calls; any thread.
pub trait PartitionOps: Send + Sync {
    /// HvPostMessageDirect: writes `message` into `vp`'s SIMP slot `sint` and raises
    /// the SINT. A busy slot fails with [`OpError::is_slot_busy`].
    fn post_message_direct(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), OpError>;
    /// HvSignalEventDirect: sets `flag` in `vp`'s SIEFP for `sint`; returns whether it
    /// was newly set.
    fn signal_event_direct(&self, vp: u32, sint: u8, flag: u16) -> Result<bool, OpError>;
    /// Asks for an `HVMSG_SYNIC_SINT_DELIVERABLE` on `vp` when one of `sints` can take
    /// a message (replaces the previous mask).
    fn register_deliverability(&self, vp: u32, sints: u16) -> Result<(), OpError>;
}

/// Maps an mshv-ioctls error.
pub(crate) fn op_error(e: &mshv_ioctls::MshvError) -> OpError {
    match e {
        mshv_ioctls::MshvError::Hypercall { status_raw, .. } => OpError::Hv(HvStatus(*status_raw)),
        mshv_ioctls::MshvError::Errno(e) => match e.errno() {
            libc::EINTR | libc::EAGAIN => OpError::Interrupted,
            n => OpError::Os(n),
        },
    }
}

/// The `HV_REGISTER_DELIVERABILITY_NOTIFICATIONS` value asking for `sints` (SINT mask
/// in bits 48..63, TLFS "Deliverability Notifications").
pub fn deliverability_value(sints: u16) -> u64 {
    u64::from(sints) << 48
}

/// Converts the hypervisor's message into the crate's 256-byte image.
fn to_message(m: &mshv_bindings::hv_message) -> HvMessage {
    const _: () = assert!(core::mem::size_of::<mshv_bindings::hv_message>() == 256);
    // SAFETY: `hv_message` is `repr(C)`, exactly 256 bytes (asserted above) of integer
    // fields and unions of integers with no padding (16-byte header of u32, u8, u8,
    // [u8; 2], u64; 240-byte payload), so every byte is initialized and any bit
    // pattern is a valid `[u8; 256]`.
    #[allow(unsafe_code)]
    let bytes: [u8; 256] = unsafe { core::mem::transmute_copy(m) };
    zerocopy::transmute!(bytes)
}

/// [`VcpuOps`] over an mshv-ioctls vCPU.
pub struct MshvVcpuOps(pub(crate) mshv_ioctls::VcpuFd);

impl VcpuOps for MshvVcpuOps {
    fn run(&mut self) -> Result<HvMessage, OpError> {
        self.0
            .run()
            .map(|m| to_message(&m))
            .map_err(|e| op_error(&e))
    }

    fn set_registers(&mut self, regs: &[(Reg, u64)]) -> Result<(), OpError> {
        let assocs: Vec<mshv_bindings::hv_register_assoc> = regs
            .iter()
            .map(|(r, v)| mshv_bindings::hv_register_assoc {
                name: match r {
                    Reg::Rax => mshv_bindings::hv_register_name_HV_X64_REGISTER_RAX,
                    Reg::Rip => mshv_bindings::hv_register_name_HV_X64_REGISTER_RIP,
                },
                value: mshv_bindings::hv_register_value { reg64: *v },
                ..Default::default()
            })
            .collect();
        self.0.set_reg(&assocs).map_err(|e| op_error(&e))
    }
}

/// [`PartitionOps`] over an mshv-ioctls partition.
pub struct MshvPartitionOps(pub(crate) mshv_ioctls::VmFd);

impl PartitionOps for MshvPartitionOps {
    fn post_message_direct(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), OpError> {
        use zerocopy::IntoBytes;
        self.0
            .post_message_direct(vp, sint, message.as_bytes())
            .map_err(|e| op_error(&e))
    }

    fn signal_event_direct(&self, vp: u32, sint: u8, flag: u16) -> Result<bool, OpError> {
        self.0
            .signal_event_direct(vp, sint, flag)
            .map_err(|e| op_error(&e))
    }

    fn register_deliverability(&self, vp: u32, sints: u16) -> Result<(), OpError> {
        self.0
            .register_deliverabilty_notifications(vp, deliverability_value(sints))
            .map_err(|e| op_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::errno;

    #[test]
    fn errors_map_to_busy_interrupted_and_os() {
        let busy = mshv_ioctls::MshvError::Hypercall {
            code: 0xc1,
            status_raw: 0x19,
            status: None,
        };
        assert!(op_error(&busy).is_slot_busy());
        let full = mshv_ioctls::MshvError::Hypercall {
            code: 0xc1,
            status_raw: 0x13,
            status: None,
        };
        assert!(op_error(&full).is_slot_busy());
        let bad_vp = mshv_ioctls::MshvError::Hypercall {
            code: 0xc1,
            status_raw: 0x0e,
            status: None,
        };
        assert_eq!(op_error(&bad_vp), OpError::Hv(HvStatus::INVALID_VP_INDEX));
        assert!(!op_error(&bad_vp).is_slot_busy());
        let intr = mshv_ioctls::MshvError::Errno(errno::Error::new(libc::EINTR));
        assert_eq!(op_error(&intr), OpError::Interrupted);
        let enoent = mshv_ioctls::MshvError::Errno(errno::Error::new(libc::ENOENT));
        assert_eq!(op_error(&enoent), OpError::Os(libc::ENOENT));
    }

    #[test]
    fn deliverability_mask_sits_in_the_top_16_bits() {
        assert_eq!(deliverability_value(0x4), 0x0004_0000_0000_0000);
        assert_eq!(deliverability_value(0xffff), 0xffff_0000_0000_0000);
    }

    #[test]
    fn hv_message_converts_byte_for_byte() {
        let mut m = mshv_bindings::hv_message::default();
        m.header.message_type = mshv_bindings::hv_message_type_HVMSG_HYPERCALL_INTERCEPT;
        m.header.payload_size = 240;
        let mut payload = [0u64; 30];
        payload[0] = 0x0000_0003_0000_0007; // vp_index 7, instruction length 3
        payload[7] = 0x5c; // rcx
        m.u.payload = payload;
        let ours = to_message(&m);
        assert_eq!(ours.header.message_type.0, 0x8000_0050);
        assert_eq!(ours.header.payload_size, 240);
        assert_eq!(&ours.payload[0..8], &payload[0].to_le_bytes());
        assert_eq!(&ours.payload[56..64], &0x5cu64.to_le_bytes());
        // The same bytes through mshv-bindings' own decoder.
        let info = m.to_hypercall_intercept_info().unwrap();
        assert_eq!((info.header.vp_index, info.rcx), (7, 0x5c));
        assert_eq!(info.header.instruction_length(), 3);
    }
}
