//! The 100-byte guest the kvm and mshv smoke tests boot (hand-assembled, loaded as an
//! ELF "kernel"), and the handler and console they observe it with.
#![allow(dead_code)] // each test file uses its own subset

use hv_hypercall::HvStatus;
use hv_hypercall::input::{PostMessage, SignalEvent};
use hv_partition::HypercallHandler;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The guest, entered in long mode with identity paging.
#[rustfmt::skip]
pub const CODE: &[u8] = &[
    0xB9, 0x00, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_GUEST_OS_ID
    0xB8, 0x01, 0x00, 0x00, 0x00,       // mov eax, 1
    0x31, 0xD2,                         // xor edx, edx
    0x0F, 0x30,                         // wrmsr
    0xB9, 0x01, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_HYPERCALL
    0xB8, 0x01, 0x30, 0x00, 0x00,       // mov eax, 0x3000 | enable
    0x31, 0xD2,                         // xor edx, edx
    0x0F, 0x30,                         // wrmsr
    0xB9, 0x02, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_VP_INDEX
    0x0F, 0x32,                         // rdmsr
    0x04, 0x30,                         // add al, '0'
    0xBA, 0xF8, 0x03, 0x00, 0x00,       // mov edx, 0x3f8
    0xEE,                               // out dx, al
    0xB9, 0x5D, 0x00, 0x01, 0x00,       // mov ecx, HvCallSignalEvent | fast
    0xBA, 0x34, 0x12, 0x00, 0x00,       // mov edx, connection id 0x1234
    0x45, 0x31, 0xC0,                   // xor r8d, r8d
    0xB8, 0x00, 0x30, 0x00, 0x00,       // mov eax, 0x3000
    0xFF, 0xD0,                         // call rax (the hypercall page)
    0x04, 0x30,                         // add al, '0'
    0xBA, 0xF8, 0x03, 0x00, 0x00,       // mov edx, 0x3f8
    0xEE,                               // out dx, al
    0xBA, 0x04, 0x06, 0x00, 0x00,       // mov edx, PM1a_CNT
    0x66, 0xB8, 0x00, 0x20,             // mov ax, SLP_EN
    0x66, 0xEF,                         // out dx, ax
    0xF4,                               // hlt
    0xEB, 0xFE,                         // jmp $
];

pub const ENTRY: u64 = 0x20_0000;

pub fn elf(code: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    // ELF64 header.
    f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&ENTRY.to_le_bytes());
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // phnum
    f.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    // PT_LOAD, R+X.
    let off = 64 + 56u64;
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&off.to_le_bytes());
    f.extend_from_slice(&ENTRY.to_le_bytes()); // vaddr
    f.extend_from_slice(&ENTRY.to_le_bytes()); // paddr
    f.extend_from_slice(&(code.len() as u64).to_le_bytes());
    f.extend_from_slice(&(code.len() as u64).to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<(u32, u32, u16)>>);

impl HypercallHandler for Recorder {
    fn post_message(&self, _vp: u32, _m: &PostMessage) -> HvStatus {
        HvStatus::INVALID_PARAMETER
    }
    fn signal_event(&self, vp: u32, e: &SignalEvent) -> HvStatus {
        self.0
            .lock()
            .unwrap()
            .push((vp, e.connection_id, e.flag_number));
        // A status the guest prints: '0' + 0x13 = 'C'.
        HvStatus::INSUFFICIENT_BUFFERS
    }
}

#[derive(Clone, Default)]
pub struct Console(pub Arc<Mutex<Vec<u8>>>);
impl Write for Console {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `code` as an ELF kernel into a fresh temporary directory; returns the
/// directory (remove it once the VM is created) and the kernel's path.
pub fn write_kernel(code: &[u8], tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("hv-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("guest.elf");
    std::fs::write(&kernel, elf(code)).unwrap();
    (dir, kernel)
}

/// What the smoke guest ([`CODE`]) must leave behind on any backend: it powered off,
/// printed its VP index 0 and the handler's status 0x13, and the handler saw one fast
/// HvSignalEvent from VP 0 to connection 0x1234.
pub fn check_smoke_run<O: std::fmt::Debug + PartialEq>(
    outcome: O,
    poweroff: O,
    console: &Console,
    recorder: &Recorder,
) {
    let out = console.0.lock().unwrap().clone();
    assert_eq!(outcome, poweroff, "console: {out:?}");
    assert_eq!(out, b"0C", "VP index 0, then status 0x13 from the handler");
    assert_eq!(*recorder.0.lock().unwrap(), vec![(0, 0x1234, 0)]);
}
