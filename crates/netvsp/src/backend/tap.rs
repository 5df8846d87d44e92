//! TAP backend (Linux): frames go to and come from a `/dev/net/tun` TAP interface, so a
//! guest shares a network with the host's own stack (in a namespace, typically).
//!
//! The interface is opened with virtio-net headers (`IFF_VNET_HDR`), so the guest's
//! checksum and LSO requests go to the kernel as they are (`VIRTIO_NET_HDR_F_NEEDS_CSUM`,
//! `GSO_TCPV4`/`TCPV6`): one write per LSO packet instead of one per segment, and the
//! kernel checksums or segments only if the packet leaves through a device that cannot.
//! Toward the guest the kernel may leave work too (`TUNSETOFFLOAD` with checksum, TSO4
//! and TSO6): its stack's TCP then comes as one read per GSO packet of up to 64 KiB
//! instead of one per segment, and a partial checksum is finished here. The reader
//! thread cuts a GSO packet into MSS-sized frames and computes each one's checksums
//! with the same engine that does a guest's LSO ([`TxEngine::for_receive`]); the
//! frames reach the guest marked as checksum-verified. What does not fit that work
//! (another GSO type, inconsistent headers) is dropped and counted
//! ([`TapStats::offload_errors`]).
//!
//! Several queues ([`Tap::open_with_queues`]): the interface gets a kernel queue per
//! NIC queue (`IFF_MULTI_QUEUE`), each read by a thread of its own that steers frames
//! by the guest's RSS (the kernel keeps a flow on one of its queues, so a flow stays
//! in order), and each NIC queue writes to a kernel queue of its own.
//!
//! The link is the VMM's to set ([`Tap::link_control`]): down, the guest gets a media
//! disconnect and no frame passes either way.
//!
//! This module is the crate's only `unsafe`: the TUNSETIFF ioctl and raw `read`/`write`
//! on the TAP fd, each with a SAFETY comment.

#![allow(unsafe_code)]

use crate::backend::{
    FrameMeta, LinkControl, MAX_FRAME, NetEndpoint, NetTxQueue, RxQueues, TxOffload,
    TxOffloadSupport,
};
use crate::offload::{GSO_MAX_PACKET, TxEngine, TxRequest};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

// linux/if_tun.h, as libc exports it: `TUNSETIFF`, `IFF_TAP`, `IFF_NO_PI`,
// `IFF_VNET_HDR` (every read and write starts with a `struct virtio_net_hdr`),
// `IFF_MULTI_QUEUE` (every fd attached with it is one kernel queue of the interface),
// `TUNSETOFFLOAD` and the offloads this side takes from the kernel (`TUN_F_*`).
use libc::{
    IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6,
    TUNSETIFF, TUNSETOFFLOAD,
};
/// `sizeof(struct virtio_net_hdr)` (the default header size with `IFF_VNET_HDR`).
const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel verified the frame's checksums.
const VNET_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_TCPV4` / `TCPV6`.
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
/// Offset of the TCP and UDP checksum fields in their headers (`csum_offset`).
const TCP_CSUM_OFFSET: u16 = 16;
const UDP_CSUM_OFFSET: u16 = 6;

/// The work a frame read from the kernel leaves (its virtio-net header), as the
/// offload engine's request; `None` if it is not work this side can do.
fn receive_request(hdr: &[u8], frame: &[u8]) -> Option<TxRequest> {
    let (&flags, &gso) = (hdr.first()?, hdr.get(1)?);
    let le16 = |at: usize| Some(u16::from_le_bytes(*hdr.get(at..)?.first_chunk::<2>()?));
    let (gso_size, csum_start, csum_offset) = (le16(4)?, le16(6)?, le16(8)?);
    let ethertype = {
        let t = u16::from_be_bytes(*frame.get(12..)?.first_chunk::<2>()?);
        if t == 0x8100 {
            u16::from_be_bytes(*frame.get(16..)?.first_chunk::<2>()?)
        } else {
            t
        }
    };
    let v6 = match ethertype {
        0x0800 => false,
        0x86dd => true,
        _ => return None,
    };
    let ip4 = !v6;
    match gso {
        0 if flags & VNET_F_NEEDS_CSUM != 0 => {
            let tcp = match csum_offset {
                TCP_CSUM_OFFSET => true,
                UDP_CSUM_OFFSET => false,
                _ => return None,
            };
            Some(TxRequest {
                l4_csum: Some((v6, tcp, csum_start)),
                ip_header_csum: ip4,
                ..TxRequest::default()
            })
        }
        VNET_GSO_TCPV4 | VNET_GSO_TCPV6 if (gso == VNET_GSO_TCPV6) == v6 => Some(TxRequest {
            lso: Some((v6, u32::from(gso_size), csum_start)),
            ..TxRequest::default()
        }),
        _ => None,
    }
}

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
    /// The link as the VMM set it ([`Tap::link_control`]); up when opened.
    link: Arc<AtomicBool>,
    stop: AtomicBool,
    /// Packets from the kernel with work left (GSO or a partial checksum) done here.
    offloaded_rx: AtomicU64,
    /// Packets from the kernel with work left that this side cannot do, dropped.
    offload_errors: AtomicU64,
}

/// A TAP interface as a NIC endpoint. A reader thread per kernel queue moves frames
/// from the interface into bounded queues (dropping and counting when one is full) and
/// wakes the NIC; with several queues ([`Tap::open_with_queues`]) each frame goes to
/// the queue the NIC's RSS picks, so a multi-queue guest's queues copy in parallel.
pub struct Tap {
    /// One fd per kernel queue, shared with the reader threads and the transmit queues
    /// ([`NetEndpoint::take_tx_queue`]); a write is always a whole frame.
    files: Vec<Arc<File>>,
    /// Queue 0's transmit side, the endpoint's own.
    tx0: TapTx,
    name: String,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

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
        // The flags are a C short in struct ifreq; every one fits.
        flags: (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | if multi_queue { IFF_MULTI_QUEUE } else { 0 })
            as i16,
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
    let offloads = libc::c_ulong::from(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    // SAFETY: TUNSETOFFLOAD takes its flags by value; no memory is passed.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD as _, offloads) } < 0 {
        // The kernel then finishes its frames itself: slower, still correct.
        tracing::warn!(
            error = %io::Error::last_os_error(),
            "tap: TUNSETOFFLOAD refused; the kernel segments and checksums for the guest"
        );
    }
    Ok(file)
}

/// One kernel queue's reader: frames from `file` into the NIC's receive queues, until
/// the TAP is dropped.
fn read_loop(file: &File, s: &Shared, max_frame: usize) {
    let fd = file.as_raw_fd();
    let mut buf = vec![0u8; GSO_MAX_PACKET + VNET_HDR_LEN];
    let mut engine = TxEngine::for_receive(max_frame);
    while !s.stop.load(Ordering::SeqCst) {
        match read_frame(fd, &mut buf) {
            // A NIC whose cable is out receives nothing.
            Ok(_) if !s.link.load(Ordering::Relaxed) => {
                s.rx.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // (A read that fills the buffer may have been cut: dropped below.)
            Ok(n) if n > VNET_HDR_LEN && n < buf.len() => {
                let (Some(&flags), Some(&gso)) = (buf.first(), buf.get(1)) else {
                    continue;
                };
                // A partial checksum or a GSO packet: finished here, each frame then
                // known good.
                if flags & VNET_F_NEEDS_CSUM != 0 || gso != 0 {
                    let (hdr, frame) = buf.split_at(VNET_HDR_LEN);
                    let frame = frame.get(..n - VNET_HDR_LEN).unwrap_or(&[]);
                    let done = receive_request(hdr, frame).and_then(|req| {
                        engine
                            .process(frame, &req, &mut |f| s.rx.deliver(f, req.meta()))
                            .ok()
                    });
                    let counter = if done.is_some() {
                        &s.offloaded_rx
                    } else {
                        &s.offload_errors
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if n > max_frame + VNET_HDR_LEN {
                    s.rx.dropped.fetch_add(1, Ordering::Relaxed);
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
        let link = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(Shared {
            rx: RxQueues::new(1024, max_frame, queues, link.clone()),
            link,
            stop: AtomicBool::new(false),
            offloaded_rx: AtomicU64::new(0),
            offload_errors: AtomicU64::new(0),
        });
        let max_frame = max_frame.clamp(60, crate::backend::MAX_JUMBO_FRAME);
        let tx0 = TapTx {
            file: files.first().ok_or(io::ErrorKind::InvalidInput)?.clone(),
            link: shared.link.clone(),
        };
        let mut tap = Self {
            files,
            tx0,
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
        self.stats().dropped()
    }

    /// The link's control: set it down and the guest sees its cable pulled (a media
    /// disconnect indication); nothing is sent or received until it is up again. A
    /// TAP opens with its link up. (The interface's own state in the kernel is not
    /// followed: a write to an interface that is down fails and is counted as a
    /// transmit drop.)
    pub fn link_control(&self) -> LinkControl {
        LinkControl::new(self.shared.rx.clone())
    }

    /// The TAP's counters, readable after the TAP went to a NIC.
    pub fn stats(&self) -> TapStats {
        TapStats(self.shared.clone())
    }
}

/// A TAP's receive-side counters ([`Tap::stats`]).
#[derive(Clone)]
pub struct TapStats(Arc<Shared>);

impl TapStats {
    /// Frames dropped (queue full or oversize).
    pub fn dropped(&self) -> u64 {
        self.0.rx.dropped.load(Ordering::Relaxed)
    }

    /// Packets the kernel handed over with work left (a GSO packet to cut, a partial
    /// checksum to finish) that were finished here.
    pub fn offloaded_rx(&self) -> u64 {
        self.0.offloaded_rx.load(Ordering::Relaxed)
    }

    /// Packets the kernel handed over with work this side cannot do (another GSO type,
    /// headers that do not match), dropped.
    pub fn offload_errors(&self) -> u64 {
        self.0.offload_errors.load(Ordering::Relaxed)
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

/// A transmit queue of a [`Tap`]: one of its fds, written from a NIC queue's own
/// thread (the endpoint itself writes through queue 0's). Nothing goes out while the
/// link is down.
struct TapTx {
    file: Arc<File>,
    link: Arc<AtomicBool>,
}

impl NetTxQueue for TapTx {
    fn transmit_meta(&mut self, frame: &[u8], _meta: FrameMeta) -> bool {
        self.link.load(Ordering::Relaxed)
            && write_with_header(&self.file, &[0; VNET_HDR_LEN], frame)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        TAP_OFFLOADS
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        self.link.load(Ordering::Relaxed)
            && write_with_header(&self.file, &vnet_header(offload), frame)
    }
}

impl Tap {
    /// The transmit queue writing to kernel queue `q` (modulo the queues there are).
    fn tx(&self, q: u16) -> Option<TapTx> {
        let file = self.files.get(usize::from(q) % self.files.len().max(1))?;
        Some(TapTx {
            file: file.clone(),
            link: self.shared.link.clone(),
        })
    }
}

impl NetEndpoint for Tap {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.tx0.transmit_meta(frame, FrameMeta::default())
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        TAP_OFFLOADS
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        self.tx0.transmit_offload(frame, offload)
    }
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        Some(Box::new(self.tx(q)?))
    }
    fn link_up(&self) -> bool {
        self.shared.link.load(Ordering::SeqCst)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A virtio-net header: flags, gso type, hdr_len, gso_size, csum_start, csum_offset.
    fn vnet(flags: u8, gso: u8, gso_size: u16, start: u16, offset: u16) -> [u8; VNET_HDR_LEN] {
        let mut h = [0u8; VNET_HDR_LEN];
        h[0] = flags;
        h[1] = gso;
        h[4..6].copy_from_slice(&gso_size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&offset.to_le_bytes());
        h
    }

    /// An IPv4/TCP packet with `payload` bytes, lengths right, checksums zero (as the
    /// kernel leaves a GSO packet's to the device: only the pseudo-header part, which
    /// the engine ignores).
    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 54 + payload];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[18..20].copy_from_slice(&7u16.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..34].copy_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
        f[34..38].copy_from_slice(&[0x13, 0x88, 0x13, 0x89]);
        f[38..42].copy_from_slice(&1000u32.to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x18; // PSH, ACK
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        f
    }

    fn sum(data: &[u8], mut s: u32) -> u32 {
        for c in data.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        s
    }

    fn fold(mut s: u32) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn the_kernels_gso_packets_become_mss_sized_frames_with_good_checksums() {
        let packet = tcp4(3500);
        let hdr = vnet(VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 1000, 34, TCP_CSUM_OFFSET);
        let req = receive_request(&hdr, &packet).unwrap();
        assert_eq!(req.lso, Some((false, 1000, 34)));
        let mut engine = TxEngine::for_receive(MAX_FRAME);
        let mut frames = Vec::new();
        let out = engine
            .process(&packet, &req, &mut |f| {
                frames.push(f.to_vec());
                true
            })
            .unwrap();
        assert_eq!((out.sent, frames.len()), (4, 4));
        let mut payload = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let len = f.len() - 54;
            assert_eq!(len, if i < 3 { 1000 } else { 500 });
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, 40 + len);
            let seq = u32::from_be_bytes(f[38..42].try_into().unwrap());
            assert_eq!(seq, 1000 + 1000 * i as u32);
            // PSH only on the last segment.
            assert_eq!(f[47] & 0x08 != 0, i == 3);
            assert_eq!(fold(sum(&f[14..34], 0)), 0xffff, "IPv4 header checksum");
            let pseudo = sum(&f[26..34], 6 + (20 + len) as u32);
            assert_eq!(fold(sum(&f[34..], pseudo)), 0xffff, "TCP checksum");
            payload.extend_from_slice(&f[54..]);
        }
        assert_eq!(payload, packet[54..]);
    }

    #[test]
    fn what_the_kernel_may_leave_is_read_from_its_header() {
        let v4 = tcp4(10);
        // A partial TCP or UDP checksum.
        let r = receive_request(&vnet(VNET_F_NEEDS_CSUM, 0, 0, 34, TCP_CSUM_OFFSET), &v4);
        assert_eq!(r.unwrap().l4_csum, Some((false, true, 34)));
        assert!(r.unwrap().ip_header_csum);
        let r = receive_request(&vnet(VNET_F_NEEDS_CSUM, 0, 0, 34, UDP_CSUM_OFFSET), &v4);
        assert_eq!(r.unwrap().l4_csum, Some((false, false, 34)));
        // Not work this side does: an unknown checksum place, UDP GSO (3), a TCPv6 GSO
        // type on an IPv4 packet, a non-IP frame.
        assert!(receive_request(&vnet(VNET_F_NEEDS_CSUM, 0, 0, 34, 10), &v4).is_none());
        assert!(receive_request(&vnet(VNET_F_NEEDS_CSUM, 3, 1000, 34, 6), &v4).is_none());
        let v6_on_v4 = vnet(VNET_F_NEEDS_CSUM, VNET_GSO_TCPV6, 1000, 34, TCP_CSUM_OFFSET);
        assert!(receive_request(&v6_on_v4, &v4).is_none());
        let mut arp = v4.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let hdr = vnet(VNET_F_NEEDS_CSUM, 0, 0, 34, TCP_CSUM_OFFSET);
        assert!(receive_request(&hdr, &arp).is_none());
        // Truncated input is refused, not a panic.
        assert!(receive_request(&hdr[..5], &v4).is_none());
        assert!(receive_request(&hdr, &v4[..13]).is_none());
    }
}
