//! [`BareMetal`]: the [`GuestPlatform`] of this guest. Physical memory is identity
//! mapped, so a guest physical address is a pointer; MSRs are `wrmsr`; hypercalls go
//! through the hypercall page; there is one VP and interrupts stay off, so waiting for
//! an interrupt is a short spin after which the bus looks at the SynIC pages again.

#![allow(unsafe_code)]

use crate::x86;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use hv_hypercall::pages::{AtomicPage, SharedPage};
use hv_hypercall::{HvStatus, HypercallCode, HypercallControl, HypercallResult};
use vmbus::{GuestPlatform, PlatformError};
use vmbus_ring::{ControlPage, RingMem};

/// The guest's platform.
pub struct BareMetal {
    /// GPA of the hypercall page.
    pub hypercall_page: u64,
    /// RAM runs (first page, pages) from the e820 map.
    pub ram: Vec<(u64, u64)>,
    /// TSC ticks per second (HV_X64_MSR_TSC_FREQUENCY).
    pub tsc_hz: u64,
    /// TSC at boot.
    pub tsc_start: u64,
    /// Hypercalls made, for the exit count the host reports.
    pub hypercalls: AtomicU64,
}

impl BareMetal {
    fn in_ram(&self, gpa: u64, len: usize) -> Result<(), PlatformError> {
        let end = gpa.checked_add(len as u64);
        let ok = end.is_some_and(|end| {
            self.ram
                .iter()
                .any(|&(p, n)| gpa >= p * 4096 && end <= (p + n) * 4096)
        });
        if ok {
            Ok(())
        } else {
            Err(PlatformError::Memory {
                gpa,
                len: len as u64,
            })
        }
    }

    fn call(&self, control: HypercallControl, input: u64) -> HvStatus {
        self.hypercalls.fetch_add(1, Ordering::Relaxed);
        HypercallResult::from_u64(x86::hypercall(
            self.hypercall_page,
            control.to_u64(),
            input,
            0,
        ))
        .status
    }
}

impl GuestPlatform for BareMetal {
    fn vp_count(&self) -> u32 {
        1
    }

    fn write_msr(&self, vp: u32, msr: u32, value: u64) -> Result<(), PlatformError> {
        if vp != 0 {
            return Err(PlatformError::NoVp(vp));
        }
        x86::wrmsr(msr, value);
        Ok(())
    }

    fn post_message(
        &self,
        vp: u32,
        input_gpa: u64,
        connection_id: u32,
        payload: &[u8],
    ) -> HvStatus {
        if vp != 0 {
            return HvStatus::INVALID_VP_INDEX;
        }
        if payload.len() > 240 {
            return HvStatus::INVALID_PARAMETER;
        }
        // The input block: connection id, reserved, message type 1 (VMBus), payload
        // size, payload.
        let mut block = [0u8; 256];
        let fields: [(usize, &[u8]); 4] = [
            (0, &connection_id.to_le_bytes()),
            (8, &1u32.to_le_bytes()),
            (12, &(payload.len() as u32).to_le_bytes()),
            (16, payload),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = block.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        if self.write(input_gpa, &block).is_err() {
            return HvStatus::INVALID_ALIGNMENT;
        }
        self.call(
            HypercallControl::new(HypercallCode::POST_MESSAGE),
            input_gpa,
        )
    }

    fn signal_event(&self, vp: u32, connection_id: u32, flag: u16) -> HvStatus {
        if vp != 0 {
            return HvStatus::INVALID_VP_INDEX;
        }
        let input = hv_hypercall::input::SignalEvent {
            connection_id,
            flag_number: flag,
        }
        .to_fast_value();
        self.call(
            HypercallControl::new(HypercallCode::SIGNAL_EVENT).with_fast(true),
            input,
        )
    }

    fn ram(&self) -> Vec<(u64, u64)> {
        self.ram.clone()
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), PlatformError> {
        self.in_ram(gpa, buf.len())?;
        // SAFETY: the range is RAM, identity mapped; the host may write it meanwhile
        // (shared buffers), which only changes the bytes read.
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), PlatformError> {
        self.in_ram(gpa, data.len())?;
        // SAFETY: the range is RAM the bus allocated (never this program's own image,
        // which lies below `alloc_base`), identity mapped.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), gpa as *mut u8, data.len()) };
        Ok(())
    }

    fn with_page(&self, gpa: u64, f: &mut dyn FnMut(&dyn SharedPage)) -> Result<(), PlatformError> {
        if !gpa.is_multiple_of(4096) {
            return Err(PlatformError::Memory { gpa, len: 4096 });
        }
        self.in_ram(gpa, 4096)?;
        // SAFETY: a whole page of RAM, page aligned, identity mapped; AtomicPage is 512
        // AtomicU64 (valid for any bits) and is only accessed atomically.
        let page = unsafe { &*(gpa as *const AtomicPage) };
        f(page);
        Ok(())
    }

    fn map_ring(&self, pfns: &[u64]) -> Result<Arc<dyn RingMem>, PlatformError> {
        let (&ctl, data) = pfns
            .split_first()
            .ok_or_else(|| PlatformError::Ring("empty ring".to_string()))?;
        let first = *data
            .first()
            .ok_or_else(|| PlatformError::Ring("no data page".to_string()))?;
        // The bus allocates a ring's pages as one run: the data pages are contiguous
        // in physical, hence (identity) virtual memory.
        if data.iter().enumerate().any(|(i, &p)| p != first + i as u64) {
            return Err(PlatformError::Ring("data pages not contiguous".to_string()));
        }
        self.in_ram(ctl * 4096, 4096)?;
        self.in_ram(first * 4096, data.len() * 4096)?;
        Ok(Arc::new(RawRing {
            ctl: ctl * 4096,
            data: first * 4096,
            len: data.len() * 4096,
        }))
    }

    fn wait_interrupt(&self, _vp: u32, timeout: Duration) -> bool {
        // Interrupts are off: spin a little (the host runs on its own threads), then
        // let the bus look at the SynIC pages.
        let until = self.now() + timeout.min(Duration::from_micros(20));
        while self.now() < until {
            x86::pause();
        }
        false
    }

    fn kick(&self, _vp: u32) {}

    fn now(&self) -> Duration {
        // 64-bit arithmetic only: a 128-bit division is a library call of a few hundred
        // instructions, and on kvm_pvm every guest instruction is emulated (about 0.5
        // million a second), so the clock the main loop reads must be cheap.
        let ticks = x86::rdtsc().wrapping_sub(self.tsc_start);
        let hz = self.tsc_hz.max(1);
        let secs = ticks / hz;
        // (ticks % hz) < hz, so the product fits 64 bits for any TSC below 18 GHz.
        let nanos = (ticks % hz).saturating_mul(1_000_000_000) / hz;
        Duration::new(secs, nanos.min(999_999_999) as u32)
    }
}

/// A ring over physically contiguous, identity-mapped pages.
struct RawRing {
    ctl: u64,
    data: u64,
    len: usize,
}

// SAFETY: the ring's memory is plain RAM shared with the host; every access goes
// through atomics (the control page) or byte copies bounded by `len`.
unsafe impl Send for RawRing {}
// SAFETY: as above.
unsafe impl Sync for RawRing {}

impl RingMem for RawRing {
    fn control(&self) -> &ControlPage {
        // SAFETY: a whole page of RAM; ControlPage is 68 bytes of AtomicU32 (valid for
        // any bits, align 4), only accessed atomically.
        unsafe { &*(self.ctl as *const ControlPage) }
    }

    fn data_len(&self) -> usize {
        self.len
    }

    fn read_data(&self, off: usize, dst: &mut [u8]) {
        // Wraps at the end of the data area, as the trait asks; a request longer than
        // the area (the ring code never makes one) copies nothing.
        if off >= self.len || dst.len() > self.len {
            return;
        }
        let first = dst.len().min(self.len - off);
        let (a, b) = dst.split_at_mut(first);
        // SAFETY: `off + first <= len` and `b.len() < len`: both copies stay inside
        // the data pages.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self.data as *const u8).add(off),
                a.as_mut_ptr(),
                first,
            );
            core::ptr::copy_nonoverlapping(self.data as *const u8, b.as_mut_ptr(), b.len());
        }
    }

    fn write_data(&self, off: usize, src: &[u8]) {
        if off >= self.len || src.len() > self.len {
            return;
        }
        let first = src.len().min(self.len - off);
        let (a, b) = src.split_at(first);
        // SAFETY: as in `read_data`.
        unsafe {
            core::ptr::copy_nonoverlapping(a.as_ptr(), (self.data as *mut u8).add(off), first);
            core::ptr::copy_nonoverlapping(b.as_ptr(), self.data as *mut u8, b.len());
        }
    }

    fn data_view(&self, _off: usize, _len: usize) -> Option<&[u8]> {
        // No views over memory the host writes: the ring code copies instead.
        None
    }
}
