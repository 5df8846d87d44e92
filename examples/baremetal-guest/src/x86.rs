//! The few instructions the guest needs, the entry point, the serial console and the
//! panic handler.

#![allow(unsafe_code)]

use core::arch::{asm, global_asm};
use core::fmt::Write;

/// Bytes of the boot stack.
const STACK_BYTES: usize = 512 * 1024;

/// The boot stack (the loader's is a few KiB below the page tables).
#[repr(C, align(4096))]
struct Stack([u8; STACK_BYTES]);

#[unsafe(no_mangle)]
static mut BOOT_STACK: Stack = Stack([0; STACK_BYTES]);

// The kernel entry: the loader enters here in long mode with interrupts off and RSI
// pointing at boot_params. Switch to our stack and call `guest::main(boot_params)`.
global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "    lea rsp, [rip + {stack} + {size}]",
    "    xor ebp, ebp",
    "    mov rdi, rsi",
    "    call {main}",
    "2:  hlt",
    "    jmp 2b",
    stack = sym BOOT_STACK,
    size = const STACK_BYTES,
    main = sym crate::guest::main,
);

/// WRMSR.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the guest's own MSR write; a #GP would triple-fault (no IDT) and stop
    // the VM, which the host reports.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags));
    }
}

/// RDMSR.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: as for `wrmsr`.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi,
             options(nostack, preserves_flags));
    }
    u64::from(hi) << 32 | u64::from(lo)
}

/// CPUID leaf `leaf`: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A hypercall through the hypercall page at `page`: RCX control, RDX input (a GPA or,
/// for a fast call, the value), R8 output GPA; returns RAX.
pub fn hypercall(page: u64, control: u64, input: u64, output: u64) -> u64 {
    let rax: u64;
    // SAFETY: `page` holds the hypervisor's hypercall code (enabled through
    // HV_X64_MSR_HYPERCALL before any call); it follows the calling convention of the
    // TLFS, clobbering only RAX (and, as a call, the caller-saved registers).
    unsafe {
        asm!("call {page}", page = in(reg) page,
             inout("rcx") control => _, inout("rdx") input => _, inout("r8") output => _,
             out("rax") rax, out("rsi") _, out("rdi") _, out("r9") _, out("r10") _,
             out("r11") _);
    }
    rax
}

/// OUT of one byte.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the VMM's devices (serial, i8042).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags));
    }
}

/// A spin-wait hint.
pub fn pause() {
    core::hint::spin_loop();
}

/// COM1, the VMM's console.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                outb(0x3f8, b'\r');
            }
            outb(0x3f8, b);
        }
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::x86::Serial, $($arg)*);
    }};
}

/// Resets the VM through the i8042 (the host sees the VM stop).
pub fn reset() -> ! {
    outb(0x64, 0xfe);
    loop {
        // SAFETY: halting with interrupts off stops this vCPU for good.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Serial, "baremetal-guest: PANIC: {info}");
    reset()
}
