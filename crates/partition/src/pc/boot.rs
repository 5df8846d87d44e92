//! Loading a Linux kernel for the x86-64 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the kernel (a bzImage, or an uncompressed
//! vmlinux ELF, which skips the decompressor), the initramfs and command line, the
//! `boot_params` page with the e820 map and the RSDP address, identity-mapped page
//! tables and a GDT; the boot CPU starts in long mode at the 64-bit entry point with
//! RSI pointing at `boot_params`.
//!
//! The image loaders are rust-vmm's linux-loader, writing through vm-memory onto a
//! second mapping of the same memfd that backs [`GuestMemory`].

use crate::memory::GuestMemory;
use crate::pc::layout::*;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use vm_memory::{Bytes, GuestAddress};

/// What went wrong while loading the guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel is neither a bzImage nor an x86-64 ELF, or does not fit.
    #[error("kernel image: {0}")]
    Kernel(String),
    /// The initramfs does not fit below the kernel's limit.
    #[error("initramfs of {0} bytes does not fit in guest memory")]
    InitrdTooLarge(u64),
    /// The command line is longer than [`CMDLINE_MAX`] - 1 bytes or contains NUL.
    #[error("kernel command line too long or contains NUL")]
    Cmdline,
    /// Guest memory could not be mapped or written.
    #[error("guest memory: {0}")]
    Memory(String),
}

/// What the boot CPU needs to start.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// The 64-bit entry point.
    pub entry: u64,
    /// Where the kernel image ends (for the log).
    pub kernel_end: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn mem_err(e: impl std::fmt::Display) -> BootError {
    BootError::Memory(e.to_string())
}

fn is_elf(f: &mut File) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    f.seek(SeekFrom::Start(0))?;
    let n = f.read(&mut magic)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(n == 4 && magic == *b"\x7fELF")
}

/// The e820 map of `mem`: its regions as RAM, with the BIOS area below 1 MiB
/// (EBDA, VGA hole, the ACPI tables) reserved. Regions are whole pages; the first
/// starts at 0 (checked by the caller).
fn e820(mem: &GuestMemory) -> Vec<boot_e820_entry> {
    const RAM: u32 = 1;
    const RESERVED: u32 = 2;
    let mut map = Vec::new();
    for (gpa, region) in mem.regions() {
        let end = gpa + region.len() as u64;
        if gpa < HIGH_MEMORY_GPA {
            map.push(boot_e820_entry {
                addr: gpa,
                size: EBDA_GPA.min(end).saturating_sub(gpa),
                r#type: RAM,
            });
            map.push(boot_e820_entry {
                addr: EBDA_GPA,
                size: HIGH_MEMORY_GPA - EBDA_GPA,
                r#type: RESERVED,
            });
            if end > HIGH_MEMORY_GPA {
                map.push(boot_e820_entry {
                    addr: HIGH_MEMORY_GPA,
                    size: end - HIGH_MEMORY_GPA,
                    r#type: RAM,
                });
            }
        } else {
            map.push(boot_e820_entry {
                addr: gpa,
                size: end - gpa,
                r#type: RAM,
            });
        }
    }
    map.retain(|e| e.size > 0);
    map
}

/// Identity-maps the first 4 GiB with 2 MiB pages: PML4 -> one PDPT -> four PDs.
fn page_tables(mem: &GuestMemory) -> Result<(), BootError> {
    let pdpt = PML4_GPA + 0x1000;
    mem.write(PML4_GPA, &(pdpt | 3).to_le_bytes())
        .map_err(mem_err)?;
    for i in 0..4u64 {
        let pd = pdpt + 0x1000 * (i + 1);
        mem.write(pdpt + i * 8, &(pd | 3).to_le_bytes())
            .map_err(mem_err)?;
        let mut entries = [0u8; 4096];
        for (j, e) in entries.chunks_exact_mut(8).enumerate() {
            let addr = (i << 30) | ((j as u64) << 21);
            e.copy_from_slice(&(addr | 0x83).to_le_bytes());
        }
        mem.write(pd, &entries).map_err(mem_err)?;
    }
    Ok(())
}

/// The boot GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18).
pub const GDT: [u64; 4] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x008f_8b00_0000_ffff,
];

/// One segment register as the boot CPU must hold it, decoded from a [`GDT`] entry
/// (the fields every hypervisor's segment-register struct has).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit in bytes (granularity applied).
    pub limit: u32,
    /// Selector (`index * 8`).
    pub selector: u16,
    /// Type (4 bits).
    pub type_: u8,
    /// Present.
    pub present: u8,
    /// Privilege level.
    pub dpl: u8,
    /// Default operation size (32-bit).
    pub db: u8,
    /// Code/data (1) or system (0).
    pub s: u8,
    /// 64-bit code.
    pub l: u8,
    /// 4 KiB granularity.
    pub g: u8,
    /// Available to software.
    pub avl: u8,
}

/// Decodes GDT entry `index` (`entry` is its 8 bytes as a little-endian u64).
pub fn gdt_segment(index: u16, entry: u64) -> Segment {
    let limit = (entry & 0xffff) | (((entry >> 48) & 0xf) << 16);
    let g = ((entry >> 55) & 1) as u8;
    Segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: if g == 1 {
            ((limit << 12) | 0xfff) as u32
        } else {
            limit as u32
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
    }
}

/// CR0 bits the 64-bit entry needs: protection enable, paging.
pub const CR0_PE_PG: u64 = 1 | (1 << 31);
/// CR4 bit the 64-bit entry needs: PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER bits the 64-bit entry needs: long mode enable and active.
pub const EFER_LME_LMA: u64 = (1 << 8) | (1 << 10);

/// Loads `kernel` (bzImage or ELF vmlinux), `initrd` and `cmdline` into `mem` and
/// writes `boot_params`, the page tables, the GDT and the ACPI tables for `vcpus`
/// (with an IOAPIC in the MADT when `ioapic`).
pub fn load(
    mem: &GuestMemory,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    vcpus: u32,
    ioapic: bool,
) -> Result<BootInfo, BootError> {
    if cmdline.len() >= CMDLINE_MAX || cmdline.contains('\0') {
        return Err(BootError::Cmdline);
    }
    // Low memory must hold the boot structures, the kernel and the initramfs.
    let low_end = mem
        .regions()
        .next()
        .filter(|(gpa, _)| *gpa == 0)
        .map(|(_, r)| r.len() as u64)
        .filter(|&end| end >= MIN_MEMORY)
        .ok_or_else(|| {
            BootError::Memory("guest memory must start with at least 64 MiB at GPA 0".into())
        })?;
    let vm_mem = mem.vm_memory_view().map_err(mem_err)?;
    let mut kf = File::open(kernel).map_err(io_err(kernel))?;
    let elf = is_elf(&mut kf).map_err(io_err(kernel))?;
    let high = Some(GuestAddress(HIGH_MEMORY_GPA));
    let (entry, kernel_end, mut params) = if elf {
        let r = Elf::load(&vm_mem, None, &mut kf, high)
            .map_err(|e| BootError::Kernel(format!("ELF: {e}")))?;
        let mut p = boot_params::default();
        p.hdr.boot_flag = 0xaa55;
        p.hdr.header = 0x5372_6448; // "HdrS"
        p.hdr.kernel_alignment = 0x0100_0000;
        p.hdr.initrd_addr_max = 0x37ff_ffff;
        (r.kernel_load.0, r.kernel_end, p)
    } else {
        let r = BzImage::load(&vm_mem, None, &mut kf, high)
            .map_err(|e| BootError::Kernel(format!("bzImage: {e}")))?;
        let p = boot_params {
            hdr: r
                .setup_header
                .ok_or_else(|| BootError::Kernel("bzImage without setup header".into()))?,
            ..Default::default()
        };
        // The 64-bit entry point is 0x200 past the protected-mode code (boot.rst).
        (r.kernel_load.0 + 0x200, r.kernel_end, p)
    };
    params.hdr.type_of_loader = 0xff;
    params.hdr.cmd_line_ptr = CMDLINE_GPA as u32;
    params.hdr.cmdline_size = cmdline.len() as u32 + 1;
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    mem.write(CMDLINE_GPA, &line).map_err(mem_err)?;

    if let Some(path) = initrd {
        let data = std::fs::read(path).map_err(io_err(path))?;
        let size = data.len() as u64;
        let limit = low_end.min(u64::from(params.hdr.initrd_addr_max) + 1);
        let addr = limit
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|a| *a >= kernel_end.max(HIGH_MEMORY_GPA))
            .ok_or(BootError::InitrdTooLarge(size))?;
        mem.write(addr, &data).map_err(mem_err)?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let map = e820(mem);
    if map.len() > params.e820_table.len() {
        return Err(BootError::Memory(format!("{} e820 entries", map.len())));
    }
    for (dst, src) in params.e820_table.iter_mut().zip(&map) {
        *dst = *src;
    }
    params.e820_entries = map.len() as u8;
    params.acpi_rsdp_addr = ACPI_GPA;
    vm_mem
        .write_obj(params, GuestAddress(BOOT_PARAMS_GPA))
        .map_err(mem_err)?;

    page_tables(mem)?;
    let gdt: Vec<u8> = GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write(GDT_GPA, &gdt).map_err(mem_err)?;
    mem.write(IDT_GPA, &[0u8; 8]).map_err(mem_err)?;
    for t in crate::pc::acpi::tables(vcpus, ioapic) {
        mem.write(t.gpa, &t.bytes).map_err(mem_err)?;
    }
    Ok(BootInfo { entry, kernel_end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tables_identity_map_4g() {
        let mem = GuestMemory::new(MIN_MEMORY).unwrap();
        page_tables(&mem).unwrap();
        let rd = |gpa: u64| {
            let mut b = [0u8; 8];
            mem.read(gpa, &mut b).unwrap();
            u64::from_le_bytes(b)
        };
        let pdpt = rd(PML4_GPA) & !0xfff;
        let pd3 = rd(pdpt + 3 * 8) & !0xfff;
        // The last 2 MiB page of the 4th GiB.
        assert_eq!(rd(pd3 + 511 * 8), 0xffe0_0000 | 0x83);
        assert_eq!(rd(rd(pdpt) & !0xfff), 0x83);
    }

    #[test]
    fn e820_covers_memory() {
        let mem = GuestMemory::new(256 << 20).unwrap();
        let m = e820(&mem);
        assert_eq!(m.iter().map(|e| e.size).sum::<u64>(), 256 << 20);
        // RAM split around the hole: below 3 GiB and from 4 GiB.
        let layout = ram_layout(5 << 30);
        assert_eq!(layout, vec![(0, 3 << 30), (4 << 30, 2 << 30)]);
        let mem = GuestMemory::with_layout(&layout).unwrap();
        let m = e820(&mem);
        let ram: u64 = m.iter().filter(|e| e.r#type == 1).map(|e| e.size).sum();
        assert_eq!(ram, (5 << 30) - (HIGH_MEMORY_GPA - EBDA_GPA));
        let last = m.last().unwrap();
        assert_eq!((last.addr, last.size, last.r#type), (4 << 30, 2 << 30, 1));
        assert!(
            m.iter()
                .all(|e| e.addr + e.size <= MMIO_HOLE_GPA || e.addr >= 4 << 30)
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mem = GuestMemory::new(MIN_MEMORY).unwrap();
        let dir = std::env::temp_dir().join(format!("hv-boot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk");
        std::fs::write(&junk, [0u8; 8192]).unwrap();
        assert!(matches!(
            load(&mem, &junk, None, "console=ttyS0", 1, true),
            Err(BootError::Kernel(_))
        ));
        assert!(matches!(
            load(&mem, &dir.join("missing"), None, "", 1, true),
            Err(BootError::Io { .. })
        ));
        assert!(matches!(
            load(&mem, &junk, None, &"x".repeat(CMDLINE_MAX), 1, true),
            Err(BootError::Cmdline)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
