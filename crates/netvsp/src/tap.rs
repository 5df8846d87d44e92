//! TAP backend (Linux): frames go to and come from a `/dev/net/tun` TAP interface, so a
//! guest shares a network with the host's own stack (in a namespace, typically).
//!
//! The interface is opened with virtio-net headers (`IFF_VNET_HDR`), so the guest's
//! checksum and LSO requests go to the kernel as they are (`VIRTIO_NET_HDR_F_NEEDS_CSUM`,
//! `GSO_TCPV4`/`TCPV6`): one write per LSO packet instead of one per segment, and the
//! kernel checksums or segments only if the packet leaves through a device that cannot.
//! Offloads toward the guest are not enabled (`TUNSETOFFLOAD` is left at none), so the
//! kernel hands this side finished frames.
//!
//! Several queues ([`Tap::open_with_queues`]): the interface gets a kernel queue per
//! NIC queue (`IFF_MULTI_QUEUE`), each read by a thread of its own that steers frames
//! by the guest's RSS (the kernel keeps a flow on one of its queues, so a flow stays
//! in order), and each NIC queue writes to a kernel queue of its own.
//!
//! This module is the crate's only `unsafe`: the TUNSETIFF ioctl and raw `read`/`write`
//! on the TAP fd, each with a SAFETY comment.

#![allow(unsafe_code)]

use crate::backend::{
    FrameMeta, MAX_FRAME, NetEndpoint, NetRxQueue, NetTxQueue, RxQueues, Steer, TxOffload,
    TxOffloadSupport, inbound_methods,
};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use vmbus_ring::Doorbell;

/// `TUNSETIFF` (`_IOW('T', 202, int)`), `IFF_TAP`, `IFF_NO_PI` from linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54CA;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
/// `IFF_VNET_HDR`: every read and write starts with a `struct virtio_net_hdr`.
const IFF_VNET_HDR: i16 = 0x4000;
/// `sizeof(struct virtio_net_hdr)` (the default header size with `IFF_VNET_HDR`).
const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel verified the frame's checksums.
const VNET_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_TCPV4` / `TCPV6`.
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;

/// `struct virtio_net_hdr` (little-endian, the tun default on little-endian hosts).
fn vnet_header(offload: &TxOffload) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    let (start, offset) = offload.csum.unwrap_or((0, 0));
    if offload.csum.is_some() {
        h[0] = VNET_F_NEEDS_CSUM;
    }
    if let Some(g) = offload.gso {
        h[1] = if g.ipv6 {
            VNET_GSO_TCPV6
        } else {
            VNET_GSO_TCPV4
        };
        h[2..4].copy_from_slice(&g.hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&g.mss.to_le_bytes());
    }
    h[6..8].copy_from_slice(&start.to_le_bytes());
    h[8..10].copy_from_slice(&offset.to_le_bytes());
    h
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (40 bytes in all).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    pad: [u8; 22],
}

struct Shared {
    rx: Arc<RxQueues>,
    stop: AtomicBool,
    /// Frames from the kernel with a GSO or partial-checksum header (not enabled, so
    /// not expected), dropped.
    offloaded_rx: AtomicU64,
}

/// A TAP interface as a NIC endpoint. A reader thread per kernel queue moves frames
/// from the interface into bounded queues (dropping and counting when one is full) and
/// wakes the NIC; with several queues ([`Tap::open_with_queues`]) each frame goes to
/// the queue the NIC's RSS picks, so a multi-queue guest's queues copy in parallel.
pub struct Tap {
    /// One fd per kernel queue, shared with the reader threads and the transmit queues
    /// ([`NetEndpoint::take_tx_queue`]); a write is always a whole frame.
    files: Vec<Arc<File>>,
    name: String,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

/// `IFF_MULTI_QUEUE`: every fd attached with it is one kernel queue of the interface.
const IFF_MULTI_QUEUE: i16 = 0x0100;
/// Most kernel queues opened (Linux allows 256).
const MAX_KERNEL_QUEUES: u16 = 16;

/// Opens `/dev/net/tun` and attaches it to interface `name` (creating it on the first
/// call) as one queue. Non-blocking: the reader drains the queue with one `read` per
/// frame and polls only when it is empty (a write to a TAP never waits anyway).
fn open_queue(name: &str, multi_queue: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | if multi_queue { IFF_MULTI_QUEUE } else { 0 },
        pad: [0; 22],
    };
    if let Some(d) = req.name.get_mut(..name.len()) {
        d.copy_from_slice(name.as_bytes());
    }
    // SAFETY: TUNSETIFF reads (and writes back the final name into) a struct ifreq;
    // `req` is a properly sized, initialized, exclusively borrowed ifreq.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// One kernel queue's reader: frames from `file` into the NIC's receive queues, until
/// the TAP is dropped.
fn read_loop(file: &File, s: &Shared, max_frame: usize) {
    let fd = file.as_raw_fd();
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    while !s.stop.load(Ordering::SeqCst) {
        match read_frame(fd, &mut buf) {
            Ok(n) if n > VNET_HDR_LEN && n <= max_frame + VNET_HDR_LEN => {
                let (Some(&flags), Some(&gso)) = (buf.first(), buf.get(1)) else {
                    continue;
                };
                // flags (NEEDS_CSUM) or gso_type: work this side did not ask the
                // kernel to leave undone.
                if flags & VNET_F_NEEDS_CSUM != 0 || gso != 0 {
                    s.offloaded_rx.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let valid = flags & VNET_F_DATA_VALID != 0;
                let meta = FrameMeta {
                    l4_checksum_valid: valid,
                    ip4_checksum_valid: valid,
                    rss_hash: None,
                };
                // (A full queue drops and counts it.)
                if let Some(f) = buf.get(VNET_HDR_LEN..n) {
                    s.rx.deliver(f, meta);
                }
            }
            Ok(_) => {
                s.rx.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Empty: wait until a frame comes (100 ms at most, to see `stop`).
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, 100 ms timeout.
                unsafe { libc::poll(&mut pfd, 1, 100) };
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

fn read_frame(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable buffer of `buf.len()` bytes; `fd` is an open
    // file descriptor owned by the caller for the duration of the call.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Tap {
    /// Creates (or attaches to) TAP interface `name` (at most 15 bytes). Needs
    /// CAP_NET_ADMIN. The interface still has to be brought up and addressed.
    pub fn open(name: &str) -> io::Result<Self> {
        Self::open_with_max_frame(name, MAX_FRAME)
    }

    /// [`Tap::open`] carrying frames of up to `max_frame` bytes (for jumbo frames give
    /// [`crate::backend::frame_size`] of the MTU, at most
    /// [`crate::backend::MAX_JUMBO_FRAME`], and set the interface's MTU to match); longer
    /// frames from the kernel are dropped and counted.
    pub fn open_with_max_frame(name: &str, max_frame: usize) -> io::Result<Self> {
        Self::open_with_queues(name, max_frame, 1)
    }

    /// [`Tap::open_with_max_frame`] with `queues` receive queues of 1,024 frames each
    /// (see [`NetEndpoint::rx_queues`]). With more than one the interface gets as many
    /// kernel queues (`IFF_MULTI_QUEUE`), each read by a thread of its own, which steers
    /// its frames to the NIC queue the guest's RSS picks; transmit queues
    /// ([`NetEndpoint::take_tx_queue`]) write to them in turn.
    pub fn open_with_queues(name: &str, max_frame: usize, queues: u16) -> io::Result<Self> {
        if name.is_empty() || name.len() > 15 || name.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad interface name",
            ));
        }
        let queues = queues.clamp(1, MAX_KERNEL_QUEUES);
        let files = (0..queues)
            .map(|_| open_queue(name, queues > 1).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            rx: RxQueues::new(1024, max_frame, queues),
            stop: AtomicBool::new(false),
            offloaded_rx: AtomicU64::new(0),
        });
        let max_frame = max_frame.clamp(60, crate::backend::MAX_JUMBO_FRAME);
        let mut tap = Self {
            files,
            name: name.to_string(),
            shared,
            readers: Vec::new(),
        };
        for (i, file) in tap.files.iter().enumerate() {
            let (file, s) = (file.clone(), tap.shared.clone());
            // (On an error here, dropping `tap` stops the readers already started.)
            let reader = std::thread::Builder::new()
                .name(format!("tap-{name}-{i}"))
                .spawn(move || read_loop(&file, &s, max_frame))?;
            tap.readers.push(reader);
        }
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames dropped (queue full or oversize).
    pub fn dropped(&self) -> u64 {
        self.shared.rx.dropped.load(Ordering::Relaxed)
    }
}

/// Writes a virtio-net header and `frame` to `file` in one `writev`.
fn write_with_header(file: &File, header: &[u8; VNET_HDR_LEN], frame: &[u8]) -> bool {
    let iov = [
        libc::iovec {
            iov_base: header.as_ptr() as *mut libc::c_void,
            iov_len: header.len(),
        },
        libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        },
    ];
    // SAFETY: two iovecs over live, readable buffers (`writev` only reads them); the
    // fd is owned by `file`, borrowed for the call.
    let n = unsafe { libc::writev(file.as_raw_fd(), iov.as_ptr(), 2) };
    n == (header.len() + frame.len()) as isize
}

/// The offloads the kernel finishes from a virtio-net header.
const TAP_OFFLOADS: TxOffloadSupport = TxOffloadSupport {
    checksum: true,
    tso4: true,
    tso6: true,
};

/// A transmit queue of a [`Tap`]: the same fd, written from a NIC queue's own thread.
struct TapTx(Arc<File>);

impl NetTxQueue for TapTx {
    fn transmit_meta(&mut self, frame: &[u8], _meta: FrameMeta) -> bool {
        write_with_header(&self.0, &[0; VNET_HDR_LEN], frame)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        TAP_OFFLOADS
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        write_with_header(&self.0, &vnet_header(offload), frame)
    }
}

impl NetEndpoint for Tap {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.files
            .first()
            .is_some_and(|f| write_with_header(f, &[0; VNET_HDR_LEN], frame))
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        TAP_OFFLOADS
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        self.files
            .first()
            .is_some_and(|f| write_with_header(f, &vnet_header(offload), frame))
    }
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        let file = self.files.get(usize::from(q) % self.files.len().max(1))?;
        Some(Box::new(TapTx(file.clone())))
    }
    fn link_up(&self) -> bool {
        true
    }
    inbound_methods!(shared.rx);
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}
