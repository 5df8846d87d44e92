#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! Every on-the-wire format of the Hyper-V VMBus and synthetic-NIC stack, with total
//! parsers and exact emitters, and no I/O:
//!
//! - [`guid`]: GUIDs in the mixed-endian wire layout and the device classes;
//! - [`version`]: VMBus versions and feature flags;
//! - [`channel`]: channel-management messages (types 1..=29, version-gated) and GPADL
//!   page-list splitting and reassembly;
//! - [`packet`]: ring packets (descriptor, transfer pages, GPA direct, trailer);
//! - [`nvsp`]: the NetVSC/NetVSP protocol (v1..v6.1);
//! - [`rndis`]: RNDIS messages, OIDs, per-packet info and the NDIS offload structures;
//! - [`engine`]: the sans-IO channel-management engines, server (host) and client
//!   (guest): bytes in, actions out.
//!
//! Conventions: wire structs are `#[repr(C)]` zerocopy types with compile-time size and
//! offset assertions against Linux's headers; discriminants are open enums (unknown
//! values stay representable); a parser takes `&[u8]`, checks every length and offset
//! once, and returns a typed value or an [`Error`]. The peer is assumed hostile: nothing
//! here panics, allocates beyond what the input length justifies, or loops without a
//! bound on peer input.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod channel;
pub mod engine;
pub mod error;
pub mod guid;
pub mod nvsp;
pub mod packet;
pub mod rndis;
pub mod version;

pub use error::{Error, Result};
pub use guid::Guid;
pub use version::{FeatureFlags, VmbusVersion};
