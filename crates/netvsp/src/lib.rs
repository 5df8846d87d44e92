//! # netvsp
//!
//! Hyper-V synthetic NIC host service (NetVSP) over VMBus (not yet implemented).
//!
//! This crate is a placeholder in the workspace layout described in the project's
//! `DESIGN.md`: it exports nothing yet, and nothing in it pretends to work.

#![forbid(unsafe_code)]
