//! # hv-partition
//!
//! Guest partition abstraction for VMBus hosts: guest memory, SynIC, GPADL mapping and the sim/kvm/mshv backends (not yet implemented).
//!
//! This crate is a placeholder in the workspace layout described in the project's
//! `DESIGN.md`: it exports nothing yet, and nothing in it pretends to work.

#![forbid(unsafe_code)]
