//! The kvm backend on real KVM with a 100-byte guest (hand-assembled, loaded as an ELF
//! "kernel"): it identifies itself, enables the hypercall page, reads its VP index,
//! makes a fast HvSignalEvent through the stub, prints both results on COM1 and powers
//! off through ACPI. Checks the MSR exits, the hypercall round trip (registers in,
//! status in RAX out), the console and the poweroff path in seconds, without a Linux
//! image. Skips (printing why) without a usable /dev/kvm.
#![cfg(all(feature = "kvm", target_os = "linux", target_arch = "x86_64"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hv_partition::Partition;
use hv_partition::kvm::{KvmConfig, KvmPartition, VmOutcome};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{CODE, Console, Recorder, check_smoke_run, write_kernel};

fn kvm_usable() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        println!("SKIPPED: /dev/kvm is missing or not accessible");
    }
    ok
}

fn boot(code: &[u8], tag: &str) -> (Arc<KvmPartition>, Console) {
    let (dir, kernel) = write_kernel(code, &format!("kvm-{tag}"));
    let console = Console::default();
    let vm = KvmPartition::new(
        &{
            let mut c = KvmConfig::new(kernel);
            c.memory_size = 64 << 20;
            c.vcpus = 1;
            c.initrd = None;
            c.cmdline = String::new();
            c.cpuid = Default::default();
            c
        },
        Box::new(console.clone()),
    )
    .expect("create VM");
    std::fs::remove_dir_all(&dir).unwrap();
    (vm, console)
}

#[test]
fn msr_hypercall_console_and_poweroff_on_real_kvm() {
    if !kvm_usable() {
        return;
    }
    let (vm, console) = boot(CODE, "smoke");
    let recorder = Arc::new(Recorder::default());
    vm.set_hypercall_handler(recorder.clone());
    vm.start().unwrap();
    let outcome = vm.wait(Some(Duration::from_secs(60)));
    check_smoke_run(outcome, VmOutcome::PowerOff, &console, &recorder);
    let hv = vm.hv_stats(0).unwrap();
    assert_eq!(hv.hypercall_page_writes, 1);
    assert_eq!(hv.msr_faults, 0);
    let mut stub = [0u8; 3];
    vm.memory().read(0x3000, &mut stub).unwrap();
    assert_eq!(stub, hv_partition::hyperv::HYPERCALL_STUB);
    let s = vm.stats();
    assert_eq!(s.hypercalls, 1);
    assert_eq!(s.msr_exits, 3);
}

/// A guest that enables its SynIC (SIMP at 0x4000, SINT2 vector 0xF3, SCONTROL), says
/// 'R' on COM1, polls SIMP slot 2 with interrupts off until a message arrives, prints
/// its first payload byte, frees the slot and writes EOM (as Linux's vmbus_signal_eom
/// does), polls again for the next message and prints it, then polls its SIEFP (0x5000)
/// until SINT2's event flags are non-zero, prints the low byte + 0x40 and powers off.
#[rustfmt::skip]
const SYNIC_CODE: &[u8] = &[
    0xB9, 0x83, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_SIMP
    0xB8, 0x01, 0x40, 0x00, 0x00,       // mov eax, 0x4000 | enable
    0x31, 0xD2,                         // xor edx, edx
    0x0F, 0x30,                         // wrmsr
    0xB9, 0x82, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_SIEFP
    0xB8, 0x01, 0x50, 0x00, 0x00,       // mov eax, 0x5000 | enable
    0x0F, 0x30,                         // wrmsr
    0xB9, 0x92, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_SINT2
    0xB8, 0xF3, 0x00, 0x00, 0x00,       // mov eax, vector 0xF3 (unmasked)
    0x0F, 0x30,                         // wrmsr
    0xB9, 0x80, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_SCONTROL
    0xB8, 0x01, 0x00, 0x00, 0x00,       // mov eax, 1
    0x0F, 0x30,                         // wrmsr
    0xBA, 0xF8, 0x03, 0x00, 0x00,       // mov edx, 0x3f8
    0xB0, b'R',                         // mov al, 'R'
    0xEE,                               // out dx, al
    0x8B, 0x04, 0x25, 0x00, 0x42, 0x00, 0x00, // poll: mov eax, [0x4200] (slot 2 type)
    0x85, 0xC0,                         // test eax, eax
    0x74, 0xF5,                         // jz poll
    0x8A, 0x04, 0x25, 0x10, 0x42, 0x00, 0x00, // mov al, [0x4210] (payload[0])
    0xEE,                               // out dx, al
    0xC7, 0x04, 0x25, 0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // mov dword [0x4200], 0
    0xB9, 0x84, 0x00, 0x00, 0x40,       // mov ecx, HV_X64_MSR_EOM
    0x31, 0xC0,                         // xor eax, eax
    0x31, 0xD2,                         // xor edx, edx
    0x0F, 0x30,                         // wrmsr (the host redelivers a queued message)
    0x8B, 0x04, 0x25, 0x00, 0x42, 0x00, 0x00, // poll2: mov eax, [0x4200]
    0x85, 0xC0,                         // test eax, eax
    0x74, 0xF5,                         // jz poll2
    0x8A, 0x04, 0x25, 0x10, 0x42, 0x00, 0x00, // mov al, [0x4210]
    0xBA, 0xF8, 0x03, 0x00, 0x00,       // mov edx, 0x3f8
    0xEE,                               // out dx, al
    0x8B, 0x04, 0x25, 0x00, 0x52, 0x00, 0x00, // poll3: mov eax, [0x5200] (SINT2 flags)
    0x85, 0xC0,                         // test eax, eax
    0x74, 0xF5,                         // jz poll3
    0x04, 0x40,                         // add al, 0x40 (flag 5 -> 0x20 + 0x40 = 'a'-1 = 0x60)
    0xEE,                               // out dx, al
    0xBA, 0x04, 0x06, 0x00, 0x00,       // mov edx, PM1a_CNT
    0x66, 0xB8, 0x00, 0x20,             // mov ax, SLP_EN
    0x66, 0xEF,                         // out dx, ax
    0xF4,                               // hlt
    0xEB, 0xFE,                         // jmp $
];

#[test]
fn synic_messages_eom_redelivery_and_event_flags_on_a_real_kvm_guest() {
    if !kvm_usable() {
        return;
    }
    let (vm, console) = boot(SYNIC_CODE, "synic");
    vm.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !console.0.lock().unwrap().contains(&b'R') {
        assert!(
            std::time::Instant::now() < deadline,
            "guest never enabled its SynIC"
        );
        assert!(vm.outcome().is_none(), "{:?}", vm.outcome());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two messages back to back: the second normally finds the slot busy, is queued
    // with message-pending set, and is redelivered on the guest's EOM.
    for b in [b"M", b"N"] {
        let msg = hv_hypercall::HvMessage::new(hv_hypercall::HvMessageType::VMBUS, b).unwrap();
        vm.post_message(0, 2, &msg).unwrap();
    }
    // Event flag 5 of SINT2 (a channel's relid): bit 5 of the slot -> 0x20 + 0x40.
    vm.signal_event(0, 2, 5).unwrap();
    let outcome = vm.wait(Some(Duration::from_secs(60)));
    assert_eq!(
        outcome,
        VmOutcome::PowerOff,
        "console {:?}",
        console.0.lock().unwrap()
    );
    assert_eq!(*console.0.lock().unwrap(), b"RMN`");
    let s = vm.stats();
    assert_eq!(
        s.interrupts, 3,
        "one SINT2 MSI per delivered message and one for the event"
    );
    let st = vm.hv_stats(0).unwrap();
    assert_eq!(st.msr_faults, 0);
    let syn = vm.synic_stats(0).unwrap();
    assert_eq!((syn.delivered, syn.eoms, syn.events), (2, 1, 1));
    println!("SynIC: {syn:?} (queued 1 = the second message waited for the EOM)");
}
