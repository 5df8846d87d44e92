//! The intercept messages `MSHV_RUN_VP` returns, decoded from the raw 256-byte
//! `hv_message` into an [`Exit`].
//!
//! Layouts: TLFS "Intercept Messages" and Linux `include/hyperv/hvhdk.h`
//! (`hv_x64_intercept_message_header`, `hv_x64_hypercall_intercept_message`,
//! `hv_x64_io_port_intercept_message`, `hv_x64_memory_intercept_message`,
//! `hv_x64_sint_deliverable_message`); the offsets are checked against mshv-bindings
//! 0.7.1 in the tests. Offsets below are from the start of the 240-byte payload.
//!
//! The message comes from the hypervisor, not the guest, but it describes what the
//! guest did (port, access size, instruction length), so every field is range-checked
//! and a bad one is a [`MessageError`], never a panic.

use hv_hypercall::HvMessage;
use hv_hypercall::decode::HypercallRegisters;

/// `HVMSG_UNMAPPED_GPA`: the guest touched a GPA no memory is mapped at (MMIO).
pub const HVMSG_UNMAPPED_GPA: u32 = 0x8000_0000;
/// `HVMSG_GPA_INTERCEPT`: an access the partition's GPA protections intercept.
pub const HVMSG_GPA_INTERCEPT: u32 = 0x8000_0001;
/// `HVMSG_UNRECOVERABLE_EXCEPTION`: the guest triple-faulted.
pub const HVMSG_UNRECOVERABLE_EXCEPTION: u32 = 0x8000_0021;
/// `HVMSG_HYPERCALL_INTERCEPT`: a hypercall the hypervisor hands to the VMM (with the
/// hypercall and unknown-SynIC-connection intercepts installed: the guest's
/// HvPostMessage/HvSignalEvent to connections the hypervisor does not know).
pub const HVMSG_HYPERCALL_INTERCEPT: u32 = 0x8000_0050;
/// `HVMSG_SYNIC_SINT_DELIVERABLE`: SINTs registered for deliverability can take a
/// message again.
pub const HVMSG_SYNIC_SINT_DELIVERABLE: u32 = 0x8000_0062;
/// `HVMSG_X64_IO_PORT_INTERCEPT`: IN/OUT to a port.
pub const HVMSG_X64_IO_PORT_INTERCEPT: u32 = 0x8001_0000;
/// `HVMSG_X64_HALT`: HLT the hypervisor does not handle itself.
pub const HVMSG_X64_HALT: u32 = 0x8001_0007;

// hv_x64_intercept_message_header: vp_index u32, instruction_length:4 | cr8:4,
// intercept_access_type u8, execution_state u16, cs_segment (16 bytes), rip, rflags.
const HDR_VP_INDEX: usize = 0;
const HDR_INSTRUCTION_LENGTH: usize = 4;
const HDR_ACCESS_TYPE: usize = 5;
const HDR_RIP: usize = 24;
/// Size of `hv_x64_intercept_message_header`.
const HDR_SIZE: usize = 40;
// hv_x64_hypercall_intercept_message: header, rax, rbx, rcx, rdx, r8, ...
const HC_RCX: usize = HDR_SIZE + 16;
const HC_RDX: usize = HDR_SIZE + 24;
const HC_R8: usize = HDR_SIZE + 32;
// hv_x64_io_port_intercept_message: header, port u16, access_info u8
// (access_size:3 | string_op:1 | rep_prefix:1), instruction_byte_count u8, reserved u32,
// rax.
const IO_PORT: usize = HDR_SIZE;
const IO_ACCESS_INFO: usize = HDR_SIZE + 2;
const IO_RAX: usize = HDR_SIZE + 8;
// hv_x64_memory_intercept_message: header, cache_type u32, instruction_byte_count u8,
// memory_access_info u8, tpr u8, reserved u8, gva u64, gpa u64.
const MEM_GPA: usize = HDR_SIZE + 16;
// hv_x64_sint_deliverable_message: header, deliverable_sints u16.
const SD_SINTS: usize = HDR_SIZE;

/// `intercept_access_type` values (TLFS `HV_INTERCEPT_ACCESS_TYPE`).
const ACCESS_WRITE: u8 = 1;

/// What a vCPU exit asks the VMM to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// A hypercall: decode `regs`, write the status to RAX and resume at `next_rip`.
    Hypercall {
        /// RCX, RDX, R8 at the VMCALL.
        regs: HypercallRegisters,
        /// The instruction after the VMCALL.
        next_rip: u64,
    },
    /// IN or OUT of `size` bytes (1, 2 or 4) at `port`.
    IoPort {
        /// The port.
        port: u16,
        /// 1, 2 or 4.
        size: u8,
        /// OUT (the value is the low bytes of `rax`) rather than IN.
        write: bool,
        /// INS/OUTS (with or without REP): not supported by this backend.
        string: bool,
        /// RAX at the instruction.
        rax: u64,
        /// The instruction after the IN/OUT.
        next_rip: u64,
    },
    /// Messages can be posted again to the SINTs in the mask.
    SintDeliverable {
        /// A bit per SINT.
        sints: u16,
    },
    /// An access to unmapped GPA (MMIO) at `rip`.
    Mmio {
        /// The guest-physical address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
        /// The faulting instruction.
        rip: u64,
    },
    /// HLT the hypervisor returned to the VMM (interrupts disabled: the guest stopped).
    Halt {
        /// The instruction after the HLT (as reported).
        rip: u64,
    },
    /// Triple fault.
    UnrecoverableException {
        /// Where.
        rip: u64,
    },
    /// A message type this backend does not handle.
    Unexpected {
        /// `header.message_type`.
        message_type: u32,
    },
}

/// A field of an intercept message is out of range.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The instruction length (a 4-bit field) is 0: the VMM cannot step past the
    /// instruction.
    #[error("intercept message type {message_type:#x}: instruction length {length}")]
    InstructionLength {
        /// The message type.
        message_type: u32,
        /// The reported length.
        length: u8,
    },
    /// An I/O access size other than 1, 2 or 4.
    #[error("I/O port {port:#x}: access size {size}")]
    AccessSize {
        /// The port.
        port: u16,
        /// The reported size.
        size: u8,
    },
    /// The message names a different VP than the one that ran.
    #[error("intercept for VP {reported} returned by VP {ran}")]
    WrongVp {
        /// The VP whose run returned the message.
        ran: u32,
        /// The VP index in the message.
        reported: u32,
    },
}

fn u16_at(p: &[u8], off: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(s) = p.get(off..off + 2) {
        b.copy_from_slice(s);
    }
    u16::from_le_bytes(b)
}

fn u32_at(p: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = p.get(off..off + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

fn u64_at(p: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = p.get(off..off + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fn u8_at(p: &[u8], off: usize) -> u8 {
    p.get(off).copied().unwrap_or(0)
}

/// The RIP after the intercepted instruction, from the header.
fn next_rip(p: &[u8], message_type: u32) -> Result<u64, MessageError> {
    let length = u8_at(p, HDR_INSTRUCTION_LENGTH) & 0xf;
    if length == 0 {
        return Err(MessageError::InstructionLength {
            message_type,
            length,
        });
    }
    Ok(u64_at(p, HDR_RIP).wrapping_add(u64::from(length)))
}

/// Decodes the message `MSHV_RUN_VP` returned on VP `vp`.
pub fn decode(vp: u32, msg: &HvMessage) -> Result<Exit, MessageError> {
    let message_type = msg.header.message_type.0;
    let p = &msg.payload[..];
    let is_intercept = matches!(
        message_type,
        HVMSG_HYPERCALL_INTERCEPT
            | HVMSG_X64_IO_PORT_INTERCEPT
            | HVMSG_UNMAPPED_GPA
            | HVMSG_GPA_INTERCEPT
            | HVMSG_X64_HALT
            | HVMSG_UNRECOVERABLE_EXCEPTION
            | HVMSG_SYNIC_SINT_DELIVERABLE
    );
    if is_intercept {
        let reported = u32_at(p, HDR_VP_INDEX);
        if reported != vp {
            return Err(MessageError::WrongVp { ran: vp, reported });
        }
    }
    Ok(match message_type {
        HVMSG_HYPERCALL_INTERCEPT => Exit::Hypercall {
            regs: HypercallRegisters {
                control: u64_at(p, HC_RCX),
                input: u64_at(p, HC_RDX),
                output: u64_at(p, HC_R8),
            },
            next_rip: next_rip(p, message_type)?,
        },
        HVMSG_X64_IO_PORT_INTERCEPT => {
            let port = u16_at(p, IO_PORT);
            let info = u8_at(p, IO_ACCESS_INFO);
            let size = info & 0x7;
            if !matches!(size, 1 | 2 | 4) {
                return Err(MessageError::AccessSize { port, size });
            }
            Exit::IoPort {
                port,
                size,
                write: u8_at(p, HDR_ACCESS_TYPE) == ACCESS_WRITE,
                string: info & 0x18 != 0,
                rax: u64_at(p, IO_RAX),
                next_rip: next_rip(p, message_type)?,
            }
        }
        HVMSG_SYNIC_SINT_DELIVERABLE => Exit::SintDeliverable {
            sints: u16_at(p, SD_SINTS),
        },
        HVMSG_UNMAPPED_GPA | HVMSG_GPA_INTERCEPT => Exit::Mmio {
            gpa: u64_at(p, MEM_GPA),
            write: u8_at(p, HDR_ACCESS_TYPE) == ACCESS_WRITE,
            rip: u64_at(p, HDR_RIP),
        },
        HVMSG_X64_HALT => Exit::Halt {
            rip: u64_at(p, HDR_RIP),
        },
        HVMSG_UNRECOVERABLE_EXCEPTION => Exit::UnrecoverableException {
            rip: u64_at(p, HDR_RIP),
        },
        other => Exit::Unexpected {
            message_type: other,
        },
    })
}

/// Builders of intercept messages with the layouts above, for tests of the run loop
/// (the "recorded" messages a real hypervisor would return).
#[cfg(test)]
pub(crate) mod build {
    use super::*;
    use hv_hypercall::message::HvMessageType;

    fn message(message_type: u32, vp: u32, rip: u64, instruction_length: u8) -> HvMessage {
        let mut m = HvMessage::EMPTY;
        m.header.message_type = HvMessageType(message_type);
        m.header.payload_size = 240;
        m.payload[HDR_VP_INDEX..HDR_VP_INDEX + 4].copy_from_slice(&vp.to_le_bytes());
        m.payload[HDR_INSTRUCTION_LENGTH] = instruction_length;
        m.payload[HDR_RIP..HDR_RIP + 8].copy_from_slice(&rip.to_le_bytes());
        m
    }

    fn put64(m: &mut HvMessage, off: usize, v: u64) {
        m.payload[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A VMCALL (3 bytes) at `rip` with RCX/RDX/R8.
    pub fn hypercall(vp: u32, rip: u64, rcx: u64, rdx: u64, r8: u64) -> HvMessage {
        let mut m = message(HVMSG_HYPERCALL_INTERCEPT, vp, rip, 3);
        put64(&mut m, HC_RCX, rcx);
        put64(&mut m, HC_RDX, rdx);
        put64(&mut m, HC_R8, r8);
        m
    }

    /// `out dx, al` (1 byte) or `in al, dx` at `rip`.
    pub fn io(vp: u32, rip: u64, port: u16, size: u8, write: bool, rax: u64) -> HvMessage {
        let mut m = message(HVMSG_X64_IO_PORT_INTERCEPT, vp, rip, 1);
        m.payload[HDR_ACCESS_TYPE] = u8::from(write);
        m.payload[IO_PORT..IO_PORT + 2].copy_from_slice(&port.to_le_bytes());
        m.payload[IO_ACCESS_INFO] = size;
        put64(&mut m, IO_RAX, rax);
        m
    }

    /// SINT-deliverable notification for `sints`.
    pub fn sint_deliverable(vp: u32, sints: u16) -> HvMessage {
        let mut m = message(HVMSG_SYNIC_SINT_DELIVERABLE, vp, 0, 0);
        m.payload[SD_SINTS..SD_SINTS + 2].copy_from_slice(&sints.to_le_bytes());
        m
    }

    /// Any other message type with a header.
    pub fn raw(message_type: u32, vp: u32, rip: u64, instruction_length: u8) -> HvMessage {
        message(message_type, vp, rip, instruction_length)
    }

    /// An MMIO access to `gpa`.
    pub fn mmio(vp: u32, rip: u64, gpa: u64) -> HvMessage {
        let mut m = message(HVMSG_UNMAPPED_GPA, vp, rip, 0);
        put64(&mut m, MEM_GPA, gpa);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use mshv_bindings as mb;

    #[test]
    fn layouts_match_mshv_bindings() {
        assert_eq!(
            core::mem::size_of::<mb::hv_x64_intercept_message_header>(),
            HDR_SIZE
        );
        assert_eq!(offset_of!(mb::hv_x64_intercept_message_header, vp_index), 0);
        assert_eq!(
            offset_of!(mb::hv_x64_intercept_message_header, _bitfield_1),
            HDR_INSTRUCTION_LENGTH
        );
        assert_eq!(
            offset_of!(mb::hv_x64_intercept_message_header, intercept_access_type),
            HDR_ACCESS_TYPE
        );
        assert_eq!(
            offset_of!(mb::hv_x64_intercept_message_header, rip),
            HDR_RIP
        );
        assert_eq!(
            offset_of!(mb::hv_x64_hypercall_intercept_message, rcx),
            HC_RCX
        );
        assert_eq!(
            offset_of!(mb::hv_x64_hypercall_intercept_message, rdx),
            HC_RDX
        );
        assert_eq!(
            offset_of!(mb::hv_x64_hypercall_intercept_message, r8),
            HC_R8
        );
        assert_eq!(
            offset_of!(mb::hv_x64_io_port_intercept_message, port_number),
            IO_PORT
        );
        assert_eq!(
            offset_of!(mb::hv_x64_io_port_intercept_message, access_info),
            IO_ACCESS_INFO
        );
        assert_eq!(
            offset_of!(mb::hv_x64_io_port_intercept_message, rax),
            IO_RAX
        );
        assert_eq!(
            offset_of!(mb::hv_x64_memory_intercept_message, guest_physical_address),
            MEM_GPA
        );
        assert_eq!(
            offset_of!(mb::hv_x64_sint_deliverable_message, deliverable_sints),
            SD_SINTS
        );
        assert_eq!(core::mem::size_of::<mb::hv_message>(), 256);
        assert_eq!(offset_of!(mb::hv_message, u), 16);
        for (ours, theirs) in [
            (HVMSG_UNMAPPED_GPA, mb::hv_message_type_HVMSG_UNMAPPED_GPA),
            (HVMSG_GPA_INTERCEPT, mb::hv_message_type_HVMSG_GPA_INTERCEPT),
            (
                HVMSG_UNRECOVERABLE_EXCEPTION,
                mb::hv_message_type_HVMSG_UNRECOVERABLE_EXCEPTION,
            ),
            (
                HVMSG_HYPERCALL_INTERCEPT,
                mb::hv_message_type_HVMSG_HYPERCALL_INTERCEPT,
            ),
            (
                HVMSG_SYNIC_SINT_DELIVERABLE,
                mb::hv_message_type_HVMSG_SYNIC_SINT_DELIVERABLE,
            ),
            (
                HVMSG_X64_IO_PORT_INTERCEPT,
                mb::hv_message_type_HVMSG_X64_IO_PORT_INTERCEPT,
            ),
            (HVMSG_X64_HALT, mb::hv_message_type_HVMSG_X64_HALT),
        ] {
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn access_info_and_instruction_length_bits_match_bindgen() {
        // The bitfield setters mshv-bindings generates put the fields where we read them.
        let mut info = mb::hv_x64_io_port_access_info__bindgen_ty_1::default();
        info.set_access_size(4);
        info.set_string_op(1);
        assert_eq!(info._bitfield_1.get(0, 8), 4 | 0x8);
        let mut info = mb::hv_x64_io_port_access_info__bindgen_ty_1::default();
        info.set_rep_prefix(1);
        assert_eq!(info._bitfield_1.get(0, 8), 0x10);
        let mut hdr = mb::hv_x64_intercept_message_header::default();
        hdr.set_instruction_length(3);
        hdr.set_cr8(0xf);
        assert_eq!(hdr._bitfield_1.get(0, 8), 0xf3);
    }

    #[test]
    fn decodes_each_exit() {
        let m = build::hypercall(2, 0x1000, 0x5c, 0x2000, 0);
        assert_eq!(
            decode(2, &m),
            Ok(Exit::Hypercall {
                regs: HypercallRegisters {
                    control: 0x5c,
                    input: 0x2000,
                    output: 0
                },
                next_rip: 0x1003
            })
        );
        let m = build::io(0, 0x10, 0x3f8, 1, true, 0x41);
        assert_eq!(
            decode(0, &m),
            Ok(Exit::IoPort {
                port: 0x3f8,
                size: 1,
                write: true,
                string: false,
                rax: 0x41,
                next_rip: 0x11
            })
        );
        assert_eq!(
            decode(1, &build::sint_deliverable(1, 0x4)),
            Ok(Exit::SintDeliverable { sints: 0x4 })
        );
        assert_eq!(
            decode(0, &build::mmio(0, 0x20, 0xfec0_0000)),
            Ok(Exit::Mmio {
                gpa: 0xfec0_0000,
                write: false,
                rip: 0x20
            })
        );
        assert_eq!(
            decode(0, &build::raw(HVMSG_X64_HALT, 0, 0x30, 1)),
            Ok(Exit::Halt { rip: 0x30 })
        );
        assert_eq!(
            decode(0, &build::raw(0x8001_0001, 0, 0, 2)),
            Ok(Exit::Unexpected {
                message_type: 0x8001_0001
            })
        );
    }

    #[test]
    fn rejects_out_of_range_fields() {
        let mut m = build::io(0, 0x10, 0x3f8, 3, false, 0);
        assert_eq!(
            decode(0, &m),
            Err(MessageError::AccessSize {
                port: 0x3f8,
                size: 3
            })
        );
        m = build::hypercall(0, 0x1000, 0x5c, 0, 0);
        m.payload[HDR_INSTRUCTION_LENGTH] = 0xf0; // cr8 set, length 0
        assert_eq!(
            decode(0, &m),
            Err(MessageError::InstructionLength {
                message_type: HVMSG_HYPERCALL_INTERCEPT,
                length: 0
            })
        );
        assert_eq!(
            decode(1, &build::hypercall(3, 0, 0, 0, 0)),
            Err(MessageError::WrongVp {
                ran: 1,
                reported: 3
            })
        );
    }
}
