//! The operating-system calls behind [`crate::wait::EventFd`] (Linux): creating an
//! eventfd and waiting for it to become readable. With [`crate::mem`], the only place
//! of the crate with `unsafe` code.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A new non-blocking, close-on-exec eventfd with its counter at 0.
pub(crate) fn eventfd() -> std::io::Result<File> {
    // SAFETY: eventfd takes an initial value and flags; it returns a new fd or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// Adds 1 to the counter. A full counter (2^64 - 2 unread wakes) already wakes the
/// reader, so a failure is of no consequence.
pub(crate) fn eventfd_write(f: &File) {
    let _ = (&*f).write(&1u64.to_ne_bytes());
}

/// Reads the counter back to 0; whether it was non-zero.
pub(crate) fn eventfd_read(f: &File) -> bool {
    let mut v = [0u8; 8];
    matches!((&*f).read(&mut v), Ok(8)) && u64::from_ne_bytes(v) != 0
}

/// Waits up to `timeout` for `f` to become readable.
pub(crate) fn poll_readable(f: &File, timeout: Duration) {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call; the fd is open (borrowed).
    unsafe { libc::poll(&mut p, 1, ms) };
}
