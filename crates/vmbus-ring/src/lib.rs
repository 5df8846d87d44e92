//! # vmbus-ring
//!
//! The Hyper-V VMBus shared-memory ring buffer (not yet implemented; see the issue tracker).
//!
//! This crate is a placeholder in the workspace layout described in the project's
//! `DESIGN.md`: it exports nothing yet, and nothing in it pretends to work.

#![forbid(unsafe_code)]
