//! Shared helpers for the examples and their tests: booting Debian's Linux on the kvm
//! backend ([`linux_guest`]), and a Linux kernel with the Hyper-V drivers built in that
//! needs no user space ([`kernel_guest`]).

pub mod datapath;
pub mod kernel_agent;
pub mod kernel_guest;
pub mod linux_guest;
