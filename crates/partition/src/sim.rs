//! The simulated backend: a partition whose "guest" is threads in this process.
//!
//! The host side is the [`Partition`] implementation. The guest side is
//! [`SimVp`]: what a guest kernel does on one virtual processor: write SynIC MSRs,
//! issue hypercalls (with the real register convention and input blocks in guest
//! memory, decoded by `hv_hypercall::decode`), wait for its SINT interrupt, read SIMP
//! slots, write EOM and scan event flags.

use crate::backend::{HypercallHandler, Partition, PartitionError};
use crate::memory::GuestMemory;
use crate::synic::{SintMask, Synic};
use hv_hypercall::decode::HypercallRegisters;
use hv_hypercall::input::PostMessage;
use hv_hypercall::msr::HV_X64_MSR_VP_INDEX;
use hv_hypercall::pages::SintIndex;
use hv_hypercall::{
    HvMessage, HvMessageType, HvStatus, HypercallCode, HypercallControl, HypercallResult,
};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use vmbus_ring::Doorbell;
use zerocopy::IntoBytes;

struct VpState {
    synic: Mutex<Synic>,
    /// SINTs raised and not yet taken by the guest.
    pending: AtomicU16,
    interrupt: Doorbell,
}

/// A simulated partition.
pub struct SimPartition {
    memory: GuestMemory,
    vps: Vec<Arc<VpState>>,
    handler: RwLock<Option<Arc<dyn HypercallHandler>>>,
    message_wake: RwLock<Option<Arc<dyn vmbus_ring::Wake>>>,
}

impl SimPartition {
    /// A partition with `memory_size` bytes of guest memory (at GPA 0) and `vp_count`
    /// VPs.
    pub fn new(memory_size: u64, vp_count: u32) -> io::Result<Arc<Self>> {
        Self::with_memory(GuestMemory::new(memory_size)?, vp_count)
    }

    /// A partition over `memory` (e.g. regions around a hole, or a VMM's own RAM) with
    /// `vp_count` VPs.
    pub fn with_memory(memory: GuestMemory, vp_count: u32) -> io::Result<Arc<Self>> {
        if vp_count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "at least one VP",
            ));
        }
        let vps = (0..vp_count)
            .map(|_| {
                Arc::new(VpState {
                    synic: Mutex::new(Synic::default()),
                    pending: AtomicU16::new(0),
                    interrupt: Doorbell::new(),
                })
            })
            .collect();
        Ok(Arc::new(Self {
            memory,
            vps,
            handler: RwLock::new(None),
            message_wake: RwLock::new(None),
        }))
    }

    fn vp_state(&self, vp: u32) -> Result<&VpState, PartitionError> {
        self.vps
            .get(vp as usize)
            .map(|v| &**v)
            .ok_or(PartitionError::InvalidVp(vp))
    }

    fn raise(&self, vp: &VpState, mask: SintMask) {
        if mask != 0 {
            vp.pending.fetch_or(mask, Ordering::SeqCst);
            vp.interrupt.ring();
        }
    }

    /// The guest side of VP `index`.
    pub fn vp(self: &Arc<Self>, index: u32) -> Option<SimVp> {
        let state = self.vps.get(index as usize)?.clone();
        Some(SimVp {
            partition: self.clone(),
            state,
            index,
        })
    }

    /// A snapshot of a VP's SynIC counters.
    pub fn synic_stats(&self, vp: u32) -> Option<crate::synic::SynicStats> {
        self.vps
            .get(vp as usize)
            .map(|v| v.synic.lock().unwrap_or_else(|e| e.into_inner()).stats())
    }
}

impl Partition for SimPartition {
    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn vp_count(&self) -> u32 {
        self.vps.len() as u32
    }

    fn post_message(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), PartitionError> {
        let v = self.vp_state(vp)?;
        let sint = SintIndex::new(u32::from(sint))
            .map_err(|_| crate::synic::SynicError::InvalidSint(sint))?;
        let mask =
            v.synic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .post(&self.memory, sint, message)?;
        self.raise(v, mask);
        Ok(())
    }

    fn signal_event(&self, vp: u32, sint: u8, flag: u16) -> Result<(), PartitionError> {
        let v = self.vp_state(vp)?;
        let sint = SintIndex::new(u32::from(sint))
            .map_err(|_| crate::synic::SynicError::InvalidSint(sint))?;
        let mask = v
            .synic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .signal_event(&self.memory, sint, flag)?;
        self.raise(v, mask);
        Ok(())
    }

    fn set_hypercall_handler(&self, handler: Arc<dyn HypercallHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn set_message_wake(&self, wake: Arc<dyn vmbus_ring::Wake>) {
        *self.message_wake.write().unwrap_or_else(|e| e.into_inner()) = Some(wake);
    }
}

/// The guest side of one simulated VP.
#[derive(Clone)]
pub struct SimVp {
    partition: Arc<SimPartition>,
    state: Arc<VpState>,
    index: u32,
}

/// An MSR the simulated VP does not implement (a real CPU raises #GP).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("#GP: MSR {0:#x} not implemented")]
pub struct MsrFault(pub u32);

impl SimVp {
    /// The VP index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemory {
        &self.partition.memory
    }

    fn state(&self) -> &VpState {
        &self.state
    }

    /// WRMSR.
    pub fn write_msr(&self, msr: u32, value: u64) -> Result<(), MsrFault> {
        let v = self.state();
        let mask = v
            .synic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_msr(&self.partition.memory, msr, value)
            .ok_or(MsrFault(msr))?;
        self.partition.raise(v, mask);
        // EOM, SIMP, SCONTROL or a SINT: a slot or queue room may have freed.
        if let Some(w) = self
            .partition
            .message_wake
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.wake();
        }
        Ok(())
    }

    /// RDMSR.
    pub fn read_msr(&self, msr: u32) -> Result<u64, MsrFault> {
        if msr == HV_X64_MSR_VP_INDEX {
            return Ok(u64::from(self.index));
        }
        self.state()
            .synic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_msr(msr)
            .ok_or(MsrFault(msr))
    }

    /// A hypercall with the x64 register convention; returns RAX.
    pub fn hypercall(&self, regs: HypercallRegisters) -> u64 {
        let handler = self
            .partition
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        crate::backend::dispatch_hypercall(
            &self.partition.memory,
            handler.as_deref(),
            self.index,
            &regs,
        )
    }

    /// HvPostMessage as a guest issues it: writes the input block at `input_gpa` (a page
    /// the guest owns) and makes the call.
    pub fn post_message(&self, input_gpa: u64, connection_id: u32, payload: &[u8]) -> HvStatus {
        let mut p = [0u8; 240];
        let Some(dst) = p.get_mut(..payload.len()) else {
            return HvStatus::INVALID_PARAMETER;
        };
        dst.copy_from_slice(payload);
        let raw = PostMessage {
            connection_id,
            message_type: HvMessageType::VMBUS,
            payload_size: payload.len() as u8,
            payload: p,
        }
        .to_raw();
        if self
            .partition
            .memory
            .write(input_gpa, raw.as_bytes())
            .is_err()
        {
            return HvStatus::INVALID_ALIGNMENT;
        }
        let control = HypercallControl::new(HypercallCode::POST_MESSAGE).to_u64();
        HypercallResult::from_u64(self.hypercall(HypercallRegisters {
            control,
            input: input_gpa,
            output: 0,
        }))
        .status
    }

    /// HvSignalEvent as Linux issues it (fast call, connection id in RDX).
    pub fn signal_event(&self, connection_id: u32, flag: u16) -> HvStatus {
        let control = HypercallControl::new(HypercallCode::SIGNAL_EVENT)
            .with_fast(true)
            .to_u64();
        let input = hv_hypercall::input::SignalEvent {
            connection_id,
            flag_number: flag,
        }
        .to_fast_value();
        HypercallResult::from_u64(self.hypercall(HypercallRegisters {
            control,
            input,
            output: 0,
        }))
        .status
    }

    /// Waits for the VP's interrupt: returns the SINTs raised since the last call
    /// (empty on timeout).
    pub fn wait_interrupt(&self, timeout: Duration) -> SintMask {
        let v = self.state();
        let taken = v.pending.swap(0, Ordering::SeqCst);
        if taken != 0 {
            v.interrupt.take();
            return taken;
        }
        if timeout.is_zero() {
            return 0;
        }
        v.interrupt.wait(timeout);
        v.pending.swap(0, Ordering::SeqCst)
    }

    /// Raises an interrupt on this VP with no SINT (wakes a waiter, e.g. to stop it).
    pub fn kick(&self) {
        self.state().interrupt.ring();
    }
}
