//! Sans-IO hypercall decoding: registers and guest memory in, a typed request out.
//!
//! A backend (kvm, mshv) that traps a guest hypercall hands the three argument
//! registers and a guest-memory reader to [`decode`]. It gets either a
//! [`HypercallRequest`] to route to the VMBus host, or an [`HvStatus`] to complete the
//! call with immediately. Every check a hypervisor makes before looking at the
//! connection is made here, so the host only answers questions about connections.
//!
//! x64 calling convention (TLFS "Hypercall Interface"): RCX = control word, RDX = input
//! GPA (slow) or first input value (fast), R8 = output GPA (slow) or second input value
//! (fast); RAX receives the [`crate::HypercallResult`].

use crate::HvStatus;
use crate::control::{HypercallCode, HypercallControl};
use crate::input::{
    CONNECTION_ID_MASK, PostMessage, PostMessageInputRaw, SignalEvent, SignalEventInputRaw,
};
use crate::message::{HV_MESSAGE_PAYLOAD_SIZE, HvMessageType};
use crate::pages::HV_EVENT_FLAGS_COUNT;
use zerocopy::FromBytes;

/// The argument registers of one hypercall (x64).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct HypercallRegisters {
    /// RCX: the control word.
    pub control: u64,
    /// RDX: input GPA, or the first 8 input bytes of a fast call.
    pub input: u64,
    /// R8: output GPA, or the second 8 input bytes of a fast call.
    pub output: u64,
}

/// Reading guest memory failed (the GPA range is not backed by guest RAM).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest physical range {gpa:#x}+{len} is not readable")]
pub struct GpaReadError {
    /// Start of the range.
    pub gpa: u64,
    /// Length of the range.
    pub len: usize,
}

/// Read access to guest physical memory, as the decoder needs it.
pub trait GuestMemoryRead {
    /// Copies `buf.len()` bytes at `gpa` into `buf`, or fails if any byte is outside
    /// guest RAM. Must not panic on any `gpa`.
    fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaReadError>;
}

/// A decoded hypercall the VMBus host must handle.
// One request lives on the stack per trapped call; boxing would need `alloc`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HypercallRequest {
    /// HvCallPostMessage. Answer `SUCCESS`, `INVALID_CONNECTION_ID` (no such port) or
    /// `INSUFFICIENT_BUFFERS` (queue full; the guest retries).
    PostMessage(PostMessage),
    /// HvCallSignalEvent. Answer `SUCCESS` or `INVALID_CONNECTION_ID`.
    SignalEvent(SignalEvent),
    /// A call this decoder does not handle; the backend may, or it completes the call with
    /// `INVALID_HYPERCALL_CODE`.
    Unsupported {
        /// The decoded control word.
        control: HypercallControl,
    },
}

/// Checks an input GPA for a slow call: 8-byte aligned and not crossing a page.
fn check_input_block(gpa: u64, len: usize) -> Result<(), HvStatus> {
    if !gpa.is_multiple_of(8) {
        return Err(HvStatus::INVALID_ALIGNMENT);
    }
    let end = gpa
        .checked_add(len as u64 - 1)
        .ok_or(HvStatus::INVALID_ALIGNMENT)?;
    if gpa >> 12 != end >> 12 {
        return Err(HvStatus::INVALID_ALIGNMENT);
    }
    Ok(())
}

/// Rejects rep counts, variable headers and reserved bits for a simple call.
fn check_simple(control: &HypercallControl) -> Result<(), HvStatus> {
    if control.reserved_bits != 0
        || control.rep_count != 0
        || control.rep_start != 0
        || control.variable_header_size != 0
    {
        return Err(HvStatus::INVALID_HYPERCALL_INPUT);
    }
    Ok(())
}

/// Decodes one hypercall. `Err(status)` means: complete the call with `status` now.
///
/// Checks, in the order a hypervisor makes them: reserved control bits, rep count and
/// variable header (`INVALID_HYPERCALL_INPUT`); calling convention (PostMessage has no
/// fast form: `INVALID_HYPERCALL_INPUT`); input alignment and page crossing
/// (`INVALID_ALIGNMENT`); readable input (`INVALID_ALIGNMENT`, as the TLFS lists a GPA
/// outside the address space under it); reserved input fields
/// (`INVALID_HYPERCALL_INPUT`); message type and payload size, flag number
/// (`INVALID_PARAMETER`). Nested calls are not supported here and are reported as
/// [`HypercallRequest::Unsupported`].
pub fn decode<M: GuestMemoryRead + ?Sized>(
    regs: &HypercallRegisters,
    mem: &M,
) -> Result<HypercallRequest, HvStatus> {
    let control = HypercallControl::from_u64(regs.control);
    if control.nested {
        return Ok(HypercallRequest::Unsupported { control });
    }
    match control.code {
        HypercallCode::POST_MESSAGE => {
            check_simple(&control)?;
            if control.fast {
                return Err(HvStatus::INVALID_HYPERCALL_INPUT);
            }
            check_input_block(regs.input, size_of::<PostMessageInputRaw>())?;
            let mut buf = [0u8; size_of::<PostMessageInputRaw>()];
            mem.read_gpa(regs.input, &mut buf)
                .map_err(|_| HvStatus::INVALID_ALIGNMENT)?;
            let raw = PostMessageInputRaw::read_from_bytes(&buf)
                .map_err(|_| HvStatus::INVALID_HYPERCALL_INPUT)?;
            validate_post_message(&raw).map(HypercallRequest::PostMessage)
        }
        HypercallCode::SIGNAL_EVENT => {
            check_simple(&control)?;
            let raw = if control.fast {
                let b = regs.input.to_le_bytes();
                SignalEventInputRaw::read_from_bytes(&b)
                    .map_err(|_| HvStatus::INVALID_HYPERCALL_INPUT)?
            } else {
                check_input_block(regs.input, size_of::<SignalEventInputRaw>())?;
                let mut b = [0u8; size_of::<SignalEventInputRaw>()];
                mem.read_gpa(regs.input, &mut b)
                    .map_err(|_| HvStatus::INVALID_ALIGNMENT)?;
                SignalEventInputRaw::read_from_bytes(&b)
                    .map_err(|_| HvStatus::INVALID_HYPERCALL_INPUT)?
            };
            validate_signal_event(&raw).map(HypercallRequest::SignalEvent)
        }
        _ => Ok(HypercallRequest::Unsupported { control }),
    }
}

/// Validates a PostMessage input block (TLFS HvCallPostMessage).
pub fn validate_post_message(raw: &PostMessageInputRaw) -> Result<PostMessage, HvStatus> {
    if raw.reserved != 0 || raw.connection_id & !CONNECTION_ID_MASK != 0 {
        return Err(HvStatus::INVALID_HYPERCALL_INPUT);
    }
    let message_type = HvMessageType(raw.message_type);
    if !message_type.is_guest_postable() {
        return Err(HvStatus::INVALID_PARAMETER);
    }
    let size = usize::try_from(raw.payload_size).map_err(|_| HvStatus::INVALID_PARAMETER)?;
    if size > HV_MESSAGE_PAYLOAD_SIZE {
        return Err(HvStatus::INVALID_PARAMETER);
    }
    let mut payload = [0u8; HV_MESSAGE_PAYLOAD_SIZE];
    if let (Some(dst), Some(src)) = (payload.get_mut(..size), raw.payload.get(..size)) {
        dst.copy_from_slice(src);
    }
    Ok(PostMessage {
        connection_id: raw.connection_id,
        message_type,
        payload_size: size as u8,
        payload,
    })
}

/// Validates a SignalEvent input (TLFS HvCallSignalEvent).
pub fn validate_signal_event(raw: &SignalEventInputRaw) -> Result<SignalEvent, HvStatus> {
    if raw.reserved != 0 || raw.connection_id & !CONNECTION_ID_MASK != 0 {
        return Err(HvStatus::INVALID_HYPERCALL_INPUT);
    }
    if u32::from(raw.flag_number) >= HV_EVENT_FLAGS_COUNT {
        return Err(HvStatus::INVALID_PARAMETER);
    }
    Ok(SignalEvent {
        connection_id: raw.connection_id,
        flag_number: raw.flag_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromZeros, IntoBytes};

    /// 64 KiB of "guest memory" at GPA 0x10000.
    struct Mem(Vec<u8>);
    const BASE: u64 = 0x10000;
    impl GuestMemoryRead for Mem {
        fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaReadError> {
            let err = GpaReadError {
                gpa,
                len: buf.len(),
            };
            let off = gpa.checked_sub(BASE).ok_or(err)? as usize;
            let src = self.0.get(off..off + buf.len()).ok_or(err)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn mem_with(gpa: u64, bytes: &[u8]) -> Mem {
        let mut m = Mem(vec![0; 0x10000]);
        let off = (gpa - BASE) as usize;
        m.0[off..off + bytes.len()].copy_from_slice(bytes);
        m
    }

    fn linux_post(conn: u32, payload: &[u8]) -> PostMessageInputRaw {
        let mut raw = PostMessageInputRaw::new_zeroed();
        raw.connection_id = conn;
        raw.message_type = 1;
        raw.payload_size = payload.len() as u32;
        raw.payload[..payload.len()].copy_from_slice(payload);
        raw
    }

    #[test]
    fn post_message_like_linux() {
        // INITIATE_CONTACT to connection 4, 40 bytes.
        let raw = linux_post(4, &[14, 0, 0, 0, 0, 0, 0, 0, 3, 0, 5, 0]);
        let mem = mem_with(0x12000, raw.as_bytes());
        let regs = HypercallRegisters {
            control: 0x5C,
            input: 0x12000,
            output: 0,
        };
        match decode(&regs, &mem).unwrap() {
            HypercallRequest::PostMessage(p) => {
                assert_eq!(p.connection_id, 4);
                assert_eq!(p.message_type, HvMessageType::VMBUS);
                assert_eq!(p.payload(), &[14, 0, 0, 0, 0, 0, 0, 0, 3, 0, 5, 0]);
                assert_eq!(p.to_raw(), raw);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn post_message_rejections() {
        let good = linux_post(1, &[1; 8]);
        let regs = |input| HypercallRegisters {
            control: 0x5C,
            input,
            output: 0,
        };
        let cases: Vec<(PostMessageInputRaw, u64, u64, HvStatus)> = vec![
            (good, 0x12004, 0x5C, HvStatus::INVALID_ALIGNMENT),
            (good, 0x12F08, 0x5C, HvStatus::INVALID_ALIGNMENT), // crosses a page
            (good, 0x9000, 0x5C, HvStatus::INVALID_ALIGNMENT),  // outside RAM
            (
                good,
                0x12000,
                0x5C | 1 << 16,
                HvStatus::INVALID_HYPERCALL_INPUT,
            ), // fast
            (
                good,
                0x12000,
                0x5C | 1 << 32,
                HvStatus::INVALID_HYPERCALL_INPUT,
            ), // rep
            (
                good,
                0x12000,
                0x5C | 1 << 17,
                HvStatus::INVALID_HYPERCALL_INPUT,
            ), // var hdr
            (
                good,
                0x12000,
                0x5C | 1 << 60,
                HvStatus::INVALID_HYPERCALL_INPUT,
            ), // reserved
            (
                PostMessageInputRaw {
                    payload_size: 241,
                    ..good
                },
                0x12000,
                0x5C,
                HvStatus::INVALID_PARAMETER,
            ),
            (
                PostMessageInputRaw {
                    payload_size: u32::MAX,
                    ..good
                },
                0x12000,
                0x5C,
                HvStatus::INVALID_PARAMETER,
            ),
            (
                PostMessageInputRaw {
                    message_type: 0,
                    ..good
                },
                0x12000,
                0x5C,
                HvStatus::INVALID_PARAMETER,
            ),
            (
                PostMessageInputRaw {
                    message_type: 0x8000_0001,
                    ..good
                },
                0x12000,
                0x5C,
                HvStatus::INVALID_PARAMETER,
            ),
            (
                PostMessageInputRaw {
                    reserved: 1,
                    ..good
                },
                0x12000,
                0x5C,
                HvStatus::INVALID_HYPERCALL_INPUT,
            ),
            (
                PostMessageInputRaw {
                    connection_id: 0x0100_0001,
                    ..good
                },
                0x12000,
                0x5C,
                HvStatus::INVALID_HYPERCALL_INPUT,
            ),
        ];
        for (raw, gpa, control, want) in cases {
            let mem = mem_with(0x12000, raw.as_bytes());
            let r = decode(
                &HypercallRegisters {
                    control,
                    ..regs(gpa)
                },
                &mem,
            );
            assert_eq!(
                r,
                Err(want),
                "gpa {gpa:#x} control {control:#x} raw {raw:?}"
            );
        }
    }

    #[test]
    fn signal_event_fast_and_slow() {
        let mem = mem_with(0x13000, &[7, 0, 0, 0, 3, 0, 0, 0]);
        let fast = HypercallRegisters {
            control: 0x1005D,
            input: 7 | 3 << 32,
            output: 0,
        };
        let slow = HypercallRegisters {
            control: 0x5D,
            input: 0x13000,
            output: 0,
        };
        let want = HypercallRequest::SignalEvent(SignalEvent {
            connection_id: 7,
            flag_number: 3,
        });
        assert_eq!(decode(&fast, &mem), Ok(want.clone()));
        assert_eq!(decode(&slow, &mem), Ok(want));
        assert_eq!(
            SignalEvent {
                connection_id: 7,
                flag_number: 3
            }
            .to_fast_value(),
            7 | 3 << 32
        );
        let bad_flag = HypercallRegisters {
            input: 7 | 2048 << 32,
            ..fast
        };
        assert_eq!(decode(&bad_flag, &mem), Err(HvStatus::INVALID_PARAMETER));
        let rsvd = HypercallRegisters {
            input: 7 | 1 << 48,
            ..fast
        };
        assert_eq!(decode(&rsvd, &mem), Err(HvStatus::INVALID_HYPERCALL_INPUT));
        let unaligned = HypercallRegisters {
            input: 0x13004,
            ..slow
        };
        assert_eq!(decode(&unaligned, &mem), Err(HvStatus::INVALID_ALIGNMENT));
    }

    #[test]
    fn other_calls_are_reported_not_failed() {
        let mem = Mem(vec![]);
        let r = decode(
            &HypercallRegisters {
                control: 0x46,
                input: 0,
                output: 0,
            },
            &mem,
        );
        match r {
            Ok(HypercallRequest::Unsupported { control }) => {
                assert_eq!(control.code, HypercallCode::GET_PARTITION_ID)
            }
            other => panic!("{other:?}"),
        }
        let nested = decode(
            &HypercallRegisters {
                control: 0x5C | 1 << 31,
                input: 0,
                output: 0,
            },
            &mem,
        );
        assert!(matches!(nested, Ok(HypercallRequest::Unsupported { .. })));
    }

    proptest::proptest! {
        #[test]
        fn decode_is_total(control: u64, input: u64, output: u64, bytes in proptest::collection::vec(0u8.., 0..300)) {
            let mem = mem_with(0x12000, &bytes);
            let _ = decode(&HypercallRegisters { control, input, output }, &mem);
            let _ = decode(&HypercallRegisters { control: control & 0xFFFF_FFFF_0001_FFFF, input: 0x12000, output }, &mem);
        }
    }
}
