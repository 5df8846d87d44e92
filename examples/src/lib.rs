//! Shared helpers for the examples and their tests: booting Debian's Linux on the kvm
//! backend ([`linux_guest`]).

pub mod linux_guest;
