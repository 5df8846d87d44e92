//! [`SimPlatform`]: the [`GuestPlatform`] of a guest running as threads of this
//! process over a [`SimPartition`].

use super::platform::{GuestPlatform, PlatformError};
use crate::PollStatus;
use hv_hypercall::HvStatus;
use hv_hypercall::pages::SharedPage;
use hv_partition::gpadl::{RingMapping, map_ring_pages};
use hv_partition::{GuestMemory, Partition, SimPartition, SimVp};
use std::sync::Arc;
use std::time::Duration;
use vmbus_ring::RingMem;

/// The guest's environment over a [`SimPartition`]: MSR writes and hypercalls go to
/// the partition's SynIC and hypercall handler, as a vCPU's would.
pub struct SimPlatform {
    partition: Arc<SimPartition>,
    vps: Vec<SimVp>,
    mapping: RingMapping,
    /// Set by [`SimPlatform::on_one_thread`]: runs the host side once.
    run_host: Option<RunHost>,
    /// Where [`GuestPlatform::now`] counts from.
    start: std::time::Instant,
}

/// Runs the host side of a partition once: what [`SimPlatform::on_one_thread`] calls
/// while the guest waits.
pub type RunHost = Box<dyn Fn() -> PollStatus + Send + Sync>;

impl SimPlatform {
    /// The platform of every VP of `partition`; rings are mapped as `mapping` says.
    pub fn new(partition: Arc<SimPartition>, mapping: RingMapping) -> Self {
        let vps = (0..partition.vp_count())
            .filter_map(|i| partition.vp(i))
            .collect();
        Self {
            partition,
            vps,
            mapping,
            run_host: None,
            start: std::time::Instant::now(),
        }
    }

    /// The platform of a guest that shares one thread with its host: waiting for an
    /// interrupt runs `run_host` (a polled [`HostBus`](crate::HostBus) and its
    /// devices' pollers) until the VP has one, or the host has nothing left to do, or
    /// the time is up. With a [`GuestBus::polled`](super::GuestBus::polled) bus on it,
    /// a whole VM (host bus, devices, guest bus, drivers) runs on the caller's thread:
    /// deterministic, so a test or a callgrind count sees the same run every time.
    pub fn on_one_thread(
        partition: Arc<SimPartition>,
        mapping: RingMapping,
        run_host: RunHost,
    ) -> Self {
        let mut me = Self::new(partition, mapping);
        me.run_host = Some(run_host);
        me
    }

    /// The partition.
    pub fn partition(&self) -> &Arc<SimPartition> {
        &self.partition
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemory {
        self.partition.memory()
    }

    fn vp(&self, vp: u32) -> Option<&SimVp> {
        self.vps.get(vp as usize)
    }
}

impl GuestPlatform for SimPlatform {
    fn vp_count(&self) -> u32 {
        self.vps.len() as u32
    }

    fn write_msr(&self, vp: u32, msr: u32, value: u64) -> Result<(), PlatformError> {
        self.vp(vp)
            .ok_or(PlatformError::NoVp(vp))?
            .write_msr(msr, value)
            .map_err(|_| PlatformError::Msr(msr))
    }

    fn post_message(
        &self,
        vp: u32,
        input_gpa: u64,
        connection_id: u32,
        payload: &[u8],
    ) -> HvStatus {
        match self.vp(vp) {
            Some(v) => v.post_message(input_gpa, connection_id, payload),
            None => HvStatus::INVALID_VP_INDEX,
        }
    }

    fn signal_event(&self, vp: u32, connection_id: u32, flag: u16) -> HvStatus {
        match self.vp(vp) {
            Some(v) => v.signal_event(connection_id, flag),
            None => HvStatus::INVALID_VP_INDEX,
        }
    }

    fn ram(&self) -> Vec<(u64, u64)> {
        self.memory().page_ranges()
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), PlatformError> {
        self.memory()
            .read(gpa, buf)
            .map_err(|_| PlatformError::Memory {
                gpa,
                len: buf.len() as u64,
            })
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), PlatformError> {
        self.memory()
            .write(gpa, data)
            .map_err(|_| PlatformError::Memory {
                gpa,
                len: data.len() as u64,
            })
    }

    fn write_gather(&self, gpa: u64, pieces: &[&[u8]]) -> Result<(), PlatformError> {
        self.memory()
            .write_gather(gpa, pieces)
            .map_err(|e| PlatformError::Memory {
                gpa: e.gpa,
                len: e.len,
            })
    }

    fn with_page(&self, gpa: u64, f: &mut dyn FnMut(&dyn SharedPage)) -> Result<(), PlatformError> {
        let page = self
            .memory()
            .page(gpa)
            .ok_or(PlatformError::Memory { gpa, len: 4096 })?;
        f(&page);
        Ok(())
    }

    fn map_ring(&self, pfns: &[u64]) -> Result<Arc<dyn RingMem>, PlatformError> {
        map_ring_pages(self.memory(), pfns, self.mapping)
            .map_err(|e| PlatformError::Ring(e.to_string()))
    }

    fn wait_interrupt(&self, vp: u32, timeout: Duration) -> bool {
        let Some(v) = self.vp(vp) else {
            return false;
        };
        let Some(run) = &self.run_host else {
            return v.wait_interrupt(timeout) != 0;
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if v.wait_interrupt(Duration::ZERO) != 0 {
                return true;
            }
            // Nothing pending: the host runs until it raises one or has no more work
            // (then nothing can raise one: this thread is the only one).
            let status = run();
            if v.wait_interrupt(Duration::ZERO) != 0 {
                return true;
            }
            if status != PollStatus::Busy || std::time::Instant::now() >= deadline {
                return false;
            }
        }
    }

    fn kick(&self, vp: u32) {
        if let Some(v) = self.vp(vp) {
            v.kick();
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}
