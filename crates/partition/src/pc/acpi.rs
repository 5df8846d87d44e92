//! The ACPI tables a Linux guest needs to find its CPUs, interrupt controllers and the
//! VMBus: RSDP, XSDT, FADT (not hardware-reduced: legacy IRQs such as the serial
//! port's must keep working), MADT, and a DSDT with the `VMBus` device.
//!
//! hv_vmbus binds only through ACPI on x86 (Debian 6.1 has no device tree) and walks
//! the device's `_CRS`; a missing `_CRS` fails its probe (Linux
//! `drivers/hv/vmbus_drv.c`, `vmbus_acpi_add`).

use crate::pc::layout;
use acpi_tables::Aml;
use acpi_tables::aml;
use acpi_tables::fadt::FADTBuilder;
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;

const OEM_ID: [u8; 6] = *b"HVRUST";
const OEM_TABLE: [u8; 8] = *b"HVVMBUS ";

/// One table to copy into guest memory.
pub struct Table {
    /// Guest physical address.
    pub gpa: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

fn aml_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// The DSDT body: `\_SB.VMBS` (`_HID "VMBus"`, `_UID 0`, empty `_CRS`) and `\_S5`
/// so that a guest poweroff writes SLP_EN to PM1a_CNT.
fn dsdt() -> Vec<u8> {
    let hid = aml::Name::new("_HID".into(), &"VMBus");
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs_template = aml::ResourceTemplate::new(vec![]);
    let crs = aml::Name::new("_CRS".into(), &crs_template);
    let dev = aml::Device::new("VMBS".into(), vec![&hid, &uid, &crs]);
    let sb = aml::Scope::new("\\_SB_".into(), vec![&dev]);
    let s5_pkg = aml::Package::new(vec![&5u8, &5u8, &0u8, &0u8]);
    let s5 = aml::Name::new("\\_S5_".into(), &s5_pkg);
    let mut body = aml_bytes(&sb);
    body.extend(aml_bytes(&s5));
    let mut sdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE, 1);
    sdt.append_slice(&body);
    sdt.as_slice().to_vec()
}

fn fadt(dsdt_gpa: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE, 1).dsdt_64(dsdt_gpa);
    b.sci_int = 9.into();
    b.pm1a_evt_blk = u32::from(layout::PM1A_EVT_PORT).into();
    b.pm1_evt_len = 4;
    b.pm1a_cnt_blk = u32::from(layout::PM1A_CNT_PORT).into();
    b.pm1_cnt_len = 2;
    // IA-PC boot architecture: no VGA (bit 2), no CMOS RTC (bit 5); no 8042 (bit 1
    // clear) so the guest does not probe a keyboard controller.
    b.iapc_boot_arch = ((1u16 << 2) | (1 << 5)).into();
    aml_bytes(&b.finalize())
}

fn madt(vcpus: u32, ioapic: bool) -> Vec<u8> {
    let mut m = MADT::new(
        OEM_ID,
        OEM_TABLE,
        1,
        LocalInterruptController::Address(layout::LAPIC_GPA as u32),
    );
    for i in 0..vcpus {
        m.add_structure(ProcessorLocalApic::new(
            i as u8,
            i as u8,
            EnabledStatus::Enabled,
        ));
    }
    if ioapic {
        m.add_structure(IoApic::new(vcpus as u8, layout::IOAPIC_GPA as u32, 0));
    }
    aml_bytes(&m)
}

/// All tables, laid out from [`layout::ACPI_GPA`] (RSDP first, 16-byte aligned).
/// `vcpus` must be at most [`layout::MAX_VCPUS`]. The MADT lists an IOAPIC only when
/// `ioapic` (a backend without one must not advertise it: the guest would program it
/// through MMIO nobody answers).
pub fn tables(vcpus: u32, ioapic: bool) -> Vec<Table> {
    let align = |x: u64| (x + 15) & !15;
    let rsdp_gpa = layout::ACPI_GPA;
    let xsdt_gpa = align(rsdp_gpa + Rsdp::len() as u64);
    let dsdt = dsdt();
    // XSDT with three entries: header 36 + 3 * 8.
    let fadt_gpa = align(xsdt_gpa + 36 + 3 * 8);
    let dsdt_gpa_placeholder = 0;
    let fadt_len = fadt(dsdt_gpa_placeholder).len() as u64;
    let madt_gpa = align(fadt_gpa + fadt_len);
    let madt = madt(vcpus, ioapic);
    let dsdt_gpa = align(madt_gpa + madt.len() as u64);
    let fadt = fadt(dsdt_gpa);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(fadt_gpa);
    xsdt.add_entry(madt_gpa);
    let xsdt_bytes = aml_bytes(&xsdt);
    vec![
        Table {
            gpa: rsdp_gpa,
            bytes: aml_bytes(&Rsdp::new(OEM_ID, xsdt_gpa)),
        },
        Table {
            gpa: xsdt_gpa,
            bytes: xsdt_bytes,
        },
        Table {
            gpa: fadt_gpa,
            bytes: fadt,
        },
        Table {
            gpa: madt_gpa,
            bytes: madt,
        },
        Table {
            gpa: dsdt_gpa,
            bytes: dsdt,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    #[test]
    fn tables_are_well_formed_and_linked() {
        let t = tables(2, true);
        let rsdp = &t[0].bytes;
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(rsdp));
        let xsdt_gpa = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        assert_eq!(xsdt_gpa, t[1].gpa);
        for table in &t[1..] {
            let len = u32::from_le_bytes(table.bytes[4..8].try_into().unwrap()) as usize;
            assert_eq!(len, table.bytes.len(), "{:?}", &table.bytes[..4]);
            assert!(checksum_ok(&table.bytes), "{:?}", &table.bytes[..4]);
            assert!(table.gpa + len as u64 <= layout::ACPI_GPA + layout::ACPI_SIZE);
        }
        let xsdt = &t[1].bytes;
        let e0 = u64::from_le_bytes(xsdt[36..44].try_into().unwrap());
        let e1 = u64::from_le_bytes(xsdt[44..52].try_into().unwrap());
        assert_eq!((e0, e1), (t[2].gpa, t[3].gpa));
        let fadt = &t[2].bytes;
        assert_eq!(&fadt[..4], b"FACP");
        // X_DSDT at offset 140; flags at 112 must not say HW_REDUCED_ACPI (bit 20).
        let x_dsdt = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        assert_eq!(x_dsdt, t[4].gpa);
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_eq!(flags & (1 << 20), 0);
        // MADT: two local APICs (type 0, len 8) and one IOAPIC (type 1, len 12).
        let madt = &t[3].bytes;
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(madt.len(), 44 + 2 * 8 + 12);
        let dsdt = &t[4].bytes;
        assert_eq!(&dsdt[..4], b"DSDT");
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"VMBS") && has(b"VMBus\0") && has(b"_CRS") && has(b"_S5_"));
    }

    #[test]
    fn madt_without_ioapic_lists_only_local_apics() {
        let t = tables(3, false);
        let madt = &t[3].bytes;
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(madt.len(), 44 + 3 * 8);
        assert!(checksum_ok(madt));
        // Every structure after the 44-byte header is a local APIC (type 0).
        assert!(madt[44..].chunks(8).all(|c| c[0] == 0 && c[1] == 8));
    }
}
