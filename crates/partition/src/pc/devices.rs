//! The few legacy devices a Linux guest needs besides what KVM emulates in the kernel
//! (PIC, IOAPIC, LAPIC, PIT): COM1 (rust-vmm's vm-superio 8250, interrupt through an
//! irqfd), the ACPI PM1 blocks (poweroff), the i8042 reset command, and all-ones for
//! every other port (PCI configuration included: the guest runs with `pci=off`).

use crate::pc::layout::*;
use std::io::Write;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// An irqfd that raises COM1's IRQ.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// What a port access asks the VMM to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortAction {
    /// Nothing more.
    None,
    /// The guest powered off (ACPI S5) or asked for a reset (i8042 0xFE).
    Stop(StopReason),
}

/// Why the guest stopped itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// ACPI sleep state 5 through PM1a_CNT.
    PowerOff,
    /// i8042 reset pulse.
    Reset,
}

/// The port-I/O devices.
pub struct Ports {
    serial: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
    pm1_enable: u16,
    unhandled: u64,
}

impl Ports {
    /// The devices, with the console written to `console`.
    pub fn new(irq: EventFd, console: Box<dyn Write + Send>) -> Self {
        Self {
            serial: Serial::new(IrqTrigger(irq), console),
            pm1_enable: 0,
            unhandled: 0,
        }
    }

    /// Accesses to ports nobody emulates (answered with all-ones, or ignored).
    pub fn unhandled(&self) -> u64 {
        self.unhandled
    }

    /// IN from `port` into `data` (1, 2 or 4 bytes).
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        let v: u32 = match port {
            p if (COM1_PORT..COM1_PORT + 8).contains(&p) => {
                u32::from(self.serial.read((p - COM1_PORT) as u8))
            }
            // PM1 status reads 0; enable reads back.
            p if p == PM1A_EVT_PORT => 0,
            p if p == PM1A_EVT_PORT + 2 => u32::from(self.pm1_enable),
            // SCI_EN: ACPI mode is always on (the FADT has no SMI command port).
            p if p == PM1A_CNT_PORT => 1,
            _ => {
                self.unhandled += 1;
                u32::MAX
            }
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = (v >> (8 * i.min(3))) as u8;
        }
    }

    /// OUT of `data` to `port`.
    pub fn write(&mut self, port: u16, data: &[u8]) -> PortAction {
        let v = data
            .iter()
            .take(4)
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (u32::from(*b) << (8 * i)));
        match port {
            p if (COM1_PORT..COM1_PORT + 8).contains(&p) => {
                // An output error (closed pipe) loses console text, not the VM.
                let _ = self.serial.write((p - COM1_PORT) as u8, v as u8);
            }
            p if p == PM1A_EVT_PORT + 2 => self.pm1_enable = v as u16,
            p if p == PM1A_EVT_PORT => {}
            p if p == PM1A_CNT_PORT && v & (1 << 13) != 0 => {
                return PortAction::Stop(StopReason::PowerOff);
            }
            p if p == PM1A_CNT_PORT => {}
            p if p == I8042_CMD_PORT && v as u8 == 0xfe => {
                return PortAction::Stop(StopReason::Reset);
            }
            _ => {
                self.unhandled += 1;
            }
        }
        PortAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn console_poweroff_reset_and_unknown_ports() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let irq = EventFd::new(0).unwrap();
        let mut p = Ports::new(irq, Box::new(Sink(out.clone())));
        for b in b"hi\n" {
            assert_eq!(p.write(COM1_PORT, &[*b]), PortAction::None);
        }
        assert_eq!(&*out.lock().unwrap(), b"hi\n");
        let mut d = [0u8; 2];
        p.read(PM1A_CNT_PORT, &mut d);
        assert_eq!(d, [1, 0]);
        assert_eq!(
            p.write(PM1A_CNT_PORT, &[0, 0x20 | 0x14]),
            PortAction::Stop(StopReason::PowerOff)
        );
        assert_eq!(p.write(PM1A_CNT_PORT, &[1, 0]), PortAction::None);
        assert_eq!(
            p.write(I8042_CMD_PORT, &[0xfe]),
            PortAction::Stop(StopReason::Reset)
        );
        let mut d4 = [0u8; 4];
        p.read(0xcfc, &mut d4);
        assert_eq!(d4, [0xff; 4]);
        assert_eq!(p.unhandled(), 1);
    }
}
