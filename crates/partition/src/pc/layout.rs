//! Where things are in the guest's physical address space and I/O ports.
//!
//! RAM starts at 0; up to 3 GiB of it lies below the MMIO hole ([`MMIO_HOLE_GPA`]..4
//! GiB: IOAPIC, LAPIC, KVM's TSS), the rest from 4 GiB up ([`ram_layout`]). Low memory
//! holds the boot structures; 0x9FC00..0x100000 is reported reserved (EBDA, VGA hole,
//! ACPI tables in the BIOS area).

/// GDT for the 64-bit boot: null, code, data, TSS.
pub const GDT_GPA: u64 = 0x500;
/// Empty IDT (interrupts stay disabled until the kernel installs its own).
pub const IDT_GPA: u64 = 0x520;
/// Linux's `boot_params` ("zero page").
pub const BOOT_PARAMS_GPA: u64 = 0x7000;
/// Initial stack pointer for the boot CPU.
pub const BOOT_STACK_GPA: u64 = 0x8ff0;
/// PML4; the PDPT and four page directories (identity map of 4 GiB with 2 MiB pages)
/// follow it page by page.
pub const PML4_GPA: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_GPA: u64 = 0x2_0000;
/// Longest command line accepted.
pub const CMDLINE_MAX: usize = 4096;
/// End of conventional low memory (start of the EBDA).
pub const EBDA_GPA: u64 = 0x9_fc00;
/// ACPI tables (RSDP first), in the BIOS area where a guest may also search for it.
pub const ACPI_GPA: u64 = 0xe_0000;
/// Room for the ACPI tables.
pub const ACPI_SIZE: u64 = 0x1_0000;
/// Where high memory (and a bzImage's protected-mode kernel) starts.
pub const HIGH_MEMORY_GPA: u64 = 0x10_0000;
/// Start of the MMIO hole below 4 GiB (IOAPIC, LAPIC, KVM's TSS): RAM beyond it goes
/// above 4 GiB.
pub const MMIO_HOLE_GPA: u64 = 0xc000_0000;
/// Where RAM above the hole starts.
pub const HIGH_RAM_GPA: u64 = 0x1_0000_0000;
/// Largest guest RAM accepted (1 TiB).
pub const MAX_MEMORY: u64 = 1 << 40;

/// The RAM regions (GPA, bytes) for `size` bytes of RAM: below the MMIO hole, and the
/// rest from 4 GiB.
pub fn ram_layout(size: u64) -> Vec<(u64, u64)> {
    let low = size.min(MMIO_HOLE_GPA);
    let mut v = vec![(0, low)];
    if size > low {
        v.push((HIGH_RAM_GPA, size - low));
    }
    v
}
/// Smallest guest RAM accepted.
pub const MIN_MEMORY: u64 = 64 << 20;
/// IOAPIC (in-kernel).
pub const IOAPIC_GPA: u64 = 0xfec0_0000;
/// Local APIC (in-kernel).
pub const LAPIC_GPA: u64 = 0xfee0_0000;
/// The KVM TSS (three pages) and identity-map page, just below the IOAPIC.
pub const KVM_TSS_GPA: u64 = 0xfeff_d000;
/// See [`KVM_TSS_GPA`].
pub const KVM_IDENTITY_MAP_GPA: u64 = 0xfeff_c000;
/// Most vCPUs supported (APIC ids and ACPI UIDs are one byte).
pub const MAX_VCPUS: u32 = 64;

/// COM1.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u32 = 4;
/// ACPI PM1a event block (status, enable), 4 bytes.
pub const PM1A_EVT_PORT: u16 = 0x600;
/// ACPI PM1a control block, 2 bytes; SLP_EN (bit 13) powers off.
pub const PM1A_CNT_PORT: u16 = 0x604;
/// The i8042 command port; 0xFE written to it resets the machine.
pub const I8042_CMD_PORT: u16 = 0x64;
