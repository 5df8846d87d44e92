//! A virtual processor's SynIC, emulated in software: registers, the SIMP and SIEFP
//! pages in guest memory, a bounded message queue per SINT with message-pending and EOM
//! redelivery, and event flags.
//!
//! Every method returns the set of SINTs whose interrupt must be raised (a bit mask);
//! raising it is the backend's job (a doorbell in `sim`, an MSI in `kvm`).

use crate::memory::GuestMemory;
use hv_hypercall::message::HV_SYNIC_SINT_COUNT;
use hv_hypercall::msr::*;
use hv_hypercall::pages::{EventFlag, PostOutcome, SiefpPage, SimpPage, SintIndex};
use hv_hypercall::{HvMessage, ScontrolRegister, SiefpRegister, SimpRegister, SintRegister};
use std::collections::VecDeque;

/// A bit per SINT whose interrupt must be raised.
pub type SintMask = u16;

/// Default capacity of each SINT's message queue.
pub const DEFAULT_QUEUE_DEPTH: usize = 64;

/// Why a message or event could not be accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SynicError {
    /// The SINT's queue is full (the guest is not consuming messages).
    #[error("message queue of SINT {0} is full")]
    QueueFull(u8),
    /// SINT number of 16 or more.
    #[error("invalid SINT {0}")]
    InvalidSint(u8),
    /// Event flag of 2048 or more.
    #[error("invalid event flag {0}")]
    InvalidFlag(u16),
    /// The SynIC, or its SIEFP page, is disabled: the event is lost.
    #[error("SynIC or event-flag page disabled")]
    Disabled,
}

/// Counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SynicStats {
    /// Messages written to a SIMP slot.
    pub delivered: u64,
    /// Messages that found the slot busy and were queued.
    pub queued: u64,
    /// EOM writes.
    pub eoms: u64,
    /// Event flags set.
    pub events: u64,
    /// Events dropped because the SIEFP was disabled.
    pub events_dropped: u64,
}

/// One VP's SynIC.
#[derive(Debug)]
pub struct Synic {
    scontrol: ScontrolRegister,
    simp: SimpRegister,
    siefp: SiefpRegister,
    sints: [SintRegister; HV_SYNIC_SINT_COUNT],
    queues: [VecDeque<HvMessage>; HV_SYNIC_SINT_COUNT],
    depth: usize,
    stats: SynicStats,
}

impl Default for Synic {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE_DEPTH)
    }
}

impl Synic {
    /// A SynIC in its reset state (disabled, SINTs masked), queues of `depth` messages.
    pub fn new(depth: usize) -> Self {
        Self {
            scontrol: ScontrolRegister(0),
            simp: SimpRegister(0),
            siefp: SiefpRegister(0),
            sints: [SintRegister::RESET; HV_SYNIC_SINT_COUNT],
            queues: Default::default(),
            depth,
            stats: SynicStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> SynicStats {
        self.stats
    }

    /// The SINT register of `sint`.
    pub fn sint(&self, sint: SintIndex) -> SintRegister {
        self.sints
            .get(usize::from(sint.get()))
            .copied()
            .unwrap_or(SintRegister::RESET)
    }

    /// Messages queued behind a busy slot on `sint`.
    pub fn queued(&self, sint: SintIndex) -> usize {
        self.queues
            .get(usize::from(sint.get()))
            .map_or(0, |q| q.len())
    }

    fn interrupt_bit(&self, sint: SintIndex) -> SintMask {
        let r = self.sint(sint);
        if self.scontrol.enabled() && !r.masked() && !r.polling() && r.has_valid_vector() {
            1 << sint.get()
        } else {
            0
        }
    }

    fn simp_page<'m>(&self, mem: &'m GuestMemory) -> Option<crate::memory::GuestPage<'m>> {
        if self.scontrol.enabled() && self.simp.enabled() {
            mem.page(self.simp.gpa())
        } else {
            None
        }
    }

    fn siefp_page<'m>(&self, mem: &'m GuestMemory) -> Option<crate::memory::GuestPage<'m>> {
        if self.scontrol.enabled() && self.siefp.enabled() {
            mem.page(self.siefp.gpa())
        } else {
            None
        }
    }

    /// Moves queued messages into free slots; returns the SINTs to interrupt.
    fn flush(&mut self, mem: &GuestMemory) -> SintMask {
        let Some(page) = self.simp_page(mem) else {
            return 0;
        };
        let simp = SimpPage(&page);
        let mut raise = 0;
        for s in 0..HV_SYNIC_SINT_COUNT as u32 {
            let Ok(sint) = SintIndex::new(s) else {
                continue;
            };
            let Some(q) = self.queues.get_mut(s as usize) else {
                continue;
            };
            // Deliver the head; if more are queued, the next attempt finds the slot busy
            // and sets message-pending on what was just delivered, so the guest EOMs.
            // Bounded: at most one delivery, then one busy attempt.
            while let Some(head) = q.front() {
                if simp.try_post(sint, head) != PostOutcome::Delivered {
                    break;
                }
                q.pop_front();
                self.stats.delivered += 1;
                raise |= 1 << s;
            }
        }
        raise & self.interrupt_masks()
    }

    fn interrupt_masks(&self) -> SintMask {
        (0..HV_SYNIC_SINT_COUNT as u32)
            .filter_map(|s| SintIndex::new(s).ok())
            .fold(0, |m, s| m | self.interrupt_bit(s))
    }

    /// Posts `msg` to `sint`: into the slot if it is free and nothing is queued ahead,
    /// otherwise behind the queue (message-pending is set on the resident message, so
    /// the guest writes EOM). If the SIMP is disabled, the message waits in the queue
    /// until it is enabled. Fails only when the queue is full.
    pub fn post(
        &mut self,
        mem: &GuestMemory,
        sint: SintIndex,
        msg: &HvMessage,
    ) -> Result<SintMask, SynicError> {
        let i = usize::from(sint.get());
        let depth = self.depth;
        let queue_empty = self.queues.get(i).is_some_and(|q| q.is_empty());
        if queue_empty && let Some(page) = self.simp_page(mem) {
            match SimpPage(&page).try_post(sint, msg) {
                PostOutcome::Delivered => {
                    self.stats.delivered += 1;
                    return Ok(self.interrupt_bit(sint));
                }
                PostOutcome::SlotBusy => {}
            }
        }
        let q = self
            .queues
            .get_mut(i)
            .ok_or(SynicError::InvalidSint(sint.get()))?;
        if q.len() >= depth {
            return Err(SynicError::QueueFull(sint.get()));
        }
        q.push_back(*msg);
        self.stats.queued += 1;
        // Retry the head now: this also sets message-pending on a busy slot, so the guest
        // will write EOM.
        Ok(self.flush(mem))
    }

    /// The guest wrote EOM: redeliver queued messages into free slots.
    pub fn eom(&mut self, mem: &GuestMemory) -> SintMask {
        self.stats.eoms += 1;
        self.flush(mem)
    }

    /// Sets event flag `flag` of `sint` in the SIEFP page; returns the SINT to interrupt.
    pub fn signal_event(
        &mut self,
        mem: &GuestMemory,
        sint: SintIndex,
        flag: u16,
    ) -> Result<SintMask, SynicError> {
        let flag = EventFlag::new(u32::from(flag)).map_err(|_| SynicError::InvalidFlag(flag))?;
        let Some(page) = self.siefp_page(mem) else {
            self.stats.events_dropped += 1;
            return Err(SynicError::Disabled);
        };
        SiefpPage(&page).set(sint, flag);
        self.stats.events += 1;
        Ok(self.interrupt_bit(sint))
    }

    /// Reads a SynIC MSR; `None` if `msr` is not one (the caller raises #GP).
    pub fn read_msr(&self, msr: u32) -> Option<u64> {
        Some(match msr {
            HV_X64_MSR_SCONTROL => self.scontrol.0,
            HV_X64_MSR_SVERSION => HV_SYNIC_VERSION_1,
            HV_X64_MSR_SIMP => self.simp.0,
            HV_X64_MSR_SIEFP => self.siefp.0,
            HV_X64_MSR_EOM => 0,
            _ => self.sints.get(msr_to_sint(msr)? as usize)?.0,
        })
    }

    /// Writes a SynIC MSR. Returns the SINTs to interrupt (enabling the SIMP or
    /// unmasking a SINT can make queued messages deliverable), or `None` if `msr` is not
    /// a SynIC MSR.
    pub fn write_msr(&mut self, mem: &GuestMemory, msr: u32, value: u64) -> Option<SintMask> {
        match msr {
            HV_X64_MSR_SCONTROL => self.scontrol = ScontrolRegister(value),
            HV_X64_MSR_SVERSION => {}
            HV_X64_MSR_SIMP => self.simp = SimpRegister(value),
            HV_X64_MSR_SIEFP => self.siefp = SiefpRegister(value),
            HV_X64_MSR_EOM => return Some(self.eom(mem)),
            _ => *self.sints.get_mut(msr_to_sint(msr)? as usize)? = SintRegister(value),
        }
        Some(self.flush(mem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv_hypercall::HvMessageType;

    fn enabled(mem: &GuestMemory) -> Synic {
        let mut s = Synic::new(4);
        s.write_msr(mem, HV_X64_MSR_SIMP, 0x1000 | 1);
        s.write_msr(mem, HV_X64_MSR_SIEFP, 0x2000 | 1);
        s.write_msr(mem, HV_X64_MSR_SINT0 + 2, 0xF3);
        s.write_msr(mem, HV_X64_MSR_SCONTROL, 1);
        s
    }

    fn msg(b: u8) -> HvMessage {
        HvMessage::new(HvMessageType::VMBUS, &[b]).unwrap()
    }

    #[test]
    fn busy_slot_queues_and_eom_redelivers() {
        let mem = GuestMemory::new(4 * 4096).unwrap();
        let mut s = enabled(&mem);
        let sint = SintIndex::VMBUS;
        assert_eq!(s.post(&mem, sint, &msg(1)).unwrap(), 1 << 2);
        assert_eq!(
            s.post(&mem, sint, &msg(2)).unwrap(),
            0,
            "slot busy: queued, no interrupt"
        );
        assert_eq!(s.post(&mem, sint, &msg(3)).unwrap(), 0);
        let page = mem.page(0x1000).unwrap();
        let simp = SimpPage(&page);
        let seen = simp.read(sint).unwrap();
        assert_eq!(seen.payload().unwrap(), &[1]);
        assert!(seen.is_pending(), "guest must EOM");
        // The guest consumes the slot; EOM delivers the next one.
        assert!(simp.complete(sint));
        assert_eq!(s.write_msr(&mem, HV_X64_MSR_EOM, 0), Some(1 << 2));
        assert_eq!(simp.read(sint).unwrap().payload().unwrap(), &[2]);
        assert!(simp.complete(sint));
        s.eom(&mem);
        assert_eq!(simp.read(sint).unwrap().payload().unwrap(), &[3]);
        assert_eq!(s.queued(sint), 0);
        // Queue depth is bounded.
        for i in 0..4 {
            s.post(&mem, sint, &msg(10 + i)).unwrap();
        }
        assert_eq!(s.post(&mem, sint, &msg(99)), Err(SynicError::QueueFull(2)));
    }

    #[test]
    fn messages_wait_for_the_simp_and_masked_sints_do_not_interrupt() {
        let mem = GuestMemory::new(4 * 4096).unwrap();
        let mut s = Synic::new(4);
        assert_eq!(s.post(&mem, SintIndex::VMBUS, &msg(1)).unwrap(), 0);
        assert_eq!(s.queued(SintIndex::VMBUS), 1);
        s.write_msr(&mem, HV_X64_MSR_SIMP, 0x1000 | 1);
        assert_eq!(
            s.write_msr(&mem, HV_X64_MSR_SCONTROL, 1),
            Some(0),
            "delivered but SINT masked"
        );
        assert_eq!(s.queued(SintIndex::VMBUS), 0);
        assert_eq!(s.read_msr(HV_X64_MSR_SINT0 + 2), Some(1 << 16));
        assert_eq!(s.read_msr(HV_X64_MSR_SVERSION), Some(1));
        assert_eq!(s.read_msr(0x4000_0000), None);
    }

    #[test]
    fn event_flags() {
        let mem = GuestMemory::new(4 * 4096).unwrap();
        let mut s = Synic::new(4);
        assert_eq!(
            s.signal_event(&mem, SintIndex::VMBUS, 5),
            Err(SynicError::Disabled)
        );
        let mut s = enabled(&mem);
        assert_eq!(s.signal_event(&mem, SintIndex::VMBUS, 5), Ok(1 << 2));
        assert_eq!(
            s.signal_event(&mem, SintIndex::VMBUS, 2048),
            Err(SynicError::InvalidFlag(2048))
        );
        let page = mem.page(0x2000).unwrap();
        assert!(SiefpPage(&page).test_and_clear(SintIndex::VMBUS, EventFlag::new(5).unwrap()));
    }
}
