//! The instructions a VMM completes when KVM's own emulator gives up on them
//! (`KVM_EXIT_INTERNAL_ERROR` with an emulation failure, seen on kvm_pvm, which runs
//! guest kernel code through that emulator). Decoding only: the VMM's vCPU loop
//! applies the result (the kvm backend's `emulation_fallback` shows how). Everything
//! else stays an error that stops the VM.
//!
//! The bytes come from guest memory at the guest's RIP: any value is possible, and a
//! form this decoder does not know is `None`, never a guess.

/// What to do in place of the instruction.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// `INT3` (`CC`): inject #BP with RIP past the instruction (Linux's alternatives
    /// self-test).
    Int3,
    /// `FWAIT` (`9B`) after `FNCLEX` in Linux's FPU code: no x87 exception can be
    /// pending, so it completes as a no-op.
    Fwait,
    /// `LDMXCSR m32` (`load`) or `STMXCSR m32` (`[REX] 0F AE /2`, `/3`) with a
    /// base-register operand plus displacement (Linux's `kernel_fpu_begin`).
    Mxcsr {
        /// LDMXCSR (else STMXCSR).
        load: bool,
        /// Base register number (0 = RAX ... 15 = R15).
        base: u8,
        /// Signed displacement.
        disp: i64,
        /// Instruction length in bytes.
        len: u8,
    },
}

/// Decodes the instruction at the start of `insn` (up to 15 bytes; fewer when the
/// page ends).
pub fn decode(insn: &[u8]) -> Option<Fallback> {
    match insn.first()? {
        0xcc => return Some(Fallback::Int3),
        0x9b => return Some(Fallback::Fwait),
        _ => {}
    }
    let (rex, rest): (u8, &[u8]) = match insn {
        [r @ 0x40..=0x4f, rest @ ..] => (*r, rest),
        rest => (0, rest),
    };
    let [0x0f, 0xae, modrm, tail @ ..] = rest else {
        return None;
    };
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 || !(reg == 2 || reg == 3) {
        return None;
    }
    let rex_b = (rex & 1) << 3;
    let (base, after) = if rm == 4 {
        let [sib, after @ ..] = tail else {
            return None;
        };
        // No index (100) only; base 101 with mod 00 is disp32 without a base.
        if (sib >> 3) & 7 != 4 || (sib & 7 == 5 && md == 0) {
            return None;
        }
        ((sib & 7) | rex_b, after)
    } else if rm == 5 && md == 0 {
        return None; // RIP-relative
    } else {
        (rm | rex_b, tail)
    };
    let (disp, dlen) = match (md, after) {
        (0, _) => (0i64, 0usize),
        (1, [d, ..]) => (i64::from(*d as i8), 1),
        (2, [a, b, c, d, ..]) => (i64::from(i32::from_le_bytes([*a, *b, *c, *d])), 4),
        _ => return None,
    };
    let len = usize::from(rex != 0) + 3 + usize::from(rm == 4) + dlen;
    Some(Fallback::Mxcsr {
        load: reg == 2,
        base,
        disp,
        len: len as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mxcsr(load: bool, base: u8, disp: i64, len: u8) -> Option<Fallback> {
        Some(Fallback::Mxcsr {
            load,
            base,
            disp,
            len,
        })
    }

    #[test]
    fn decodes_what_linux_runs() {
        assert_eq!(decode(&[0xcc, 0x90]), Some(Fallback::Int3));
        assert_eq!(decode(&[0x9b]), Some(Fallback::Fwait));
        // ldmxcsr -0x4(%rbp)
        assert_eq!(decode(&[0x0f, 0xae, 0x55, 0xfc]), mxcsr(true, 5, -4, 4));
        // stmxcsr 0x4(%rsp)
        assert_eq!(
            decode(&[0x0f, 0xae, 0x5c, 0x24, 0x04]),
            mxcsr(false, 4, 4, 5)
        );
        // ldmxcsr 0x8(%r12)
        assert_eq!(
            decode(&[0x41, 0x0f, 0xae, 0x54, 0x24, 0x08]),
            mxcsr(true, 12, 8, 6)
        );
        // ldmxcsr (%rdi); stmxcsr 0x100(%rax)
        assert_eq!(decode(&[0x0f, 0xae, 0x17]), mxcsr(true, 7, 0, 3));
        assert_eq!(
            decode(&[0x0f, 0xae, 0x98, 0x00, 0x01, 0x00, 0x00]),
            mxcsr(false, 0, 0x100, 7)
        );
    }

    #[test]
    fn refuses_other_forms_and_truncated_bytes() {
        for bytes in [
            &[][..],
            &[0x90],                         // NOP
            &[0x0f, 0xae, 0x05, 0, 0, 0, 0], // RIP-relative
            &[0x0f, 0xae, 0x14, 0x8d],       // SIB with an index
            &[0x0f, 0xae, 0x14, 0x25],       // SIB, no base, disp32
            &[0x0f, 0xae, 0xd0],             // register operand
            &[0x0f, 0xae, 0x00],             // FXSAVE
            &[0x0f, 0xae, 0x55],             // disp8 missing
            &[0x0f, 0xae, 0x95, 0x01],       // disp32 cut
            &[0x0f, 0xae, 0x54],             // SIB missing
            &[0x48, 0x0f],                   // cut after REX
        ] {
            assert_eq!(decode(bytes), None, "{bytes:02x?}");
        }
    }
}
