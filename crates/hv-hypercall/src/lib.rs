#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! The Hyper-V Top-Level Functional Specification (TLFS) ABI that VMBus rides on, as
//! plain data with total decoders and no I/O:
//!
//! - [`control`]: the hypercall control word, call codes and the result value;
//! - [`HvStatus`]: hypercall status codes as an open enum;
//! - [`input`]: HvPostMessage / HvSignalEvent (and their `Direct` root variants) input
//!   blocks, with validated typed forms;
//! - [`message`]: the 256-byte SynIC message and message types;
//! - [`pages`]: the SIMP and SIEFP pages accessed as shared memory through
//!   [`pages::SharedPage`];
//! - [`synic`]: SCONTROL, SIMP, SIEFP, SINT and hypercall-page MSR bitfields;
//! - [`msr`]: synthetic MSR numbers; [`cpuid`]: the 0x4000000x leaves;
//! - [`decode`]: sans-IO decoding of a trapped hypercall (registers plus a guest-memory
//!   reader in, a typed request or the status to return out), shared by the kvm and
//!   mshv backends.
//!
//! Everything the guest controls (control words, input blocks, message headers) is
//! decoded totally: unknown values stay representable, and invalid ones produce the
//! status a hypervisor would return, never a panic.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod open_enum;

pub mod control;
pub mod cpuid;
pub mod decode;
pub mod input;
pub mod message;
pub mod msr;
pub mod pages;
pub mod status;
pub mod synic;

pub use control::{HypercallCode, HypercallControl, HypercallResult};
pub use message::{HvMessage, HvMessageHeader, HvMessageType};
pub use status::HvStatus;
pub use synic::{
    HypercallPageRegister, ScontrolRegister, SiefpRegister, SimpRegister, SintRegister,
};

/// What [`open_enum!`] expands to needs, reachable through `$crate`.
#[doc(hidden)]
pub mod __private {
    pub use zerocopy as __hv_zerocopy;
}
