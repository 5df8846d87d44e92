//! Packet capture: a [`Capture`] endpoint wraps another and writes every frame in both
//! directions, on every queue, to a pcap file (libpcap format 2.4, link type Ethernet,
//! microsecond timestamps), readable by tshark and Wireshark.

use crate::backend::{
    FrameMeta, NetEndpoint, NetRxQueue, NetTxQueue, Steer, TxOffload, TxOffloadSupport,
};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use vmbus_ring::Wake;

/// pcap magic for microsecond timestamps, written little-endian.
const PCAP_MAGIC: u32 = 0xA1B2_C3D4;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length written in the header.
const SNAPLEN: u32 = 65535;

/// A pcap writer.
pub struct PcapWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&PCAP_MAGIC.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out, records: 0 })
    }

    /// Appends one frame with the current time.
    pub fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl = len.min(SNAPLEN);
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&(now.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&now.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out
            .write_all(frame.get(..incl as usize).unwrap_or(frame))?;
        self.records += 1;
        Ok(())
    }

    /// Frames written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The file a [`Capture`] and the queues it hands out write to.
struct CaptureFile {
    writer: Mutex<PcapWriter<BufWriter<File>>>,
    /// Frames that could not be written (the frames themselves still passed).
    errors: AtomicU64,
}

impl CaptureFile {
    fn record(&self, frame: &[u8]) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.write_frame(frame).is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CaptureFile {
    fn drop(&mut self) {
        let _ = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .flush();
    }
}

/// An endpoint that records every frame it passes, in both directions, and otherwise
/// behaves exactly like the endpoint it wraps: offloads, frame size, receive and
/// transmit queues and steering all pass through, and frames on the queues it hands
/// out ([`NetEndpoint::take_rx_queue`], [`NetEndpoint::take_tx_queue`]) are recorded
/// too. A frame sent with work left to the backend ([`NetEndpoint::transmit_offload`],
/// e.g. an LSO packet to a TAP) is recorded as it was handed over, larger than the MTU,
/// as a capture on a NIC with TSO shows it. Every queue writes through one lock: a
/// capture is for looking, not for line rate.
pub struct Capture<E> {
    inner: E,
    file: Arc<CaptureFile>,
}

/// A handle on a [`Capture`]'s file that stays with the caller after the capture went
/// to the NIC.
#[derive(Clone)]
pub struct CaptureHandle(Arc<CaptureFile>);

impl CaptureHandle {
    /// Frames recorded so far.
    pub fn frames(&self) -> u64 {
        self.0
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records()
    }

    /// Frames that could not be written to the file (they still passed).
    pub fn write_errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }

    /// Writes out what is buffered, so the file can be read while the NIC runs (it is
    /// also flushed when the capture and its queues are gone).
    pub fn flush(&self) -> io::Result<()> {
        self.0
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush()
    }
}

impl<E: NetEndpoint> Capture<E> {
    /// Wraps `inner`, writing to a new pcap file at `path`.
    pub fn new(inner: E, path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            inner,
            file: Arc::new(CaptureFile {
                writer: Mutex::new(PcapWriter::new(BufWriter::new(File::create(path)?))?),
                errors: AtomicU64::new(0),
            }),
        })
    }

    /// A handle on the file (frames recorded, errors, flush).
    pub fn handle(&self) -> CaptureHandle {
        CaptureHandle(self.file.clone())
    }
}

impl<E: NetEndpoint> NetEndpoint for Capture<E> {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.file.record(frame);
        self.inner.transmit(frame)
    }
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.file.record(frame);
        self.inner.transmit_meta(frame, meta)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        self.inner.tx_offload_support()
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        self.file.record(frame);
        self.inner.transmit_offload(frame, offload)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.receive_meta(buf).map(|(n, _)| n)
    }
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        let (n, meta) = self.inner.receive_meta(buf)?;
        self.file.record(buf.get(..n).unwrap_or(&[]));
        Some((n, meta))
    }
    fn set_waker(&mut self, waker: Arc<dyn Wake>) {
        self.inner.set_waker(waker)
    }
    fn link_up(&self) -> bool {
        self.inner.link_up()
    }
    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }
    fn rx_queues(&self) -> u16 {
        self.inner.rx_queues()
    }
    fn take_rx_queue(&mut self, q: u16, waker: Arc<dyn Wake>) -> Option<Box<dyn NetRxQueue>> {
        let inner = self.inner.take_rx_queue(q, waker)?;
        Some(Box::new(CaptureRx {
            inner,
            file: self.file.clone(),
        }))
    }
    fn take_tx_queue(&mut self, q: u16) -> Option<Box<dyn NetTxQueue>> {
        let inner = self.inner.take_tx_queue(q)?;
        Some(Box::new(CaptureTx {
            inner,
            file: self.file.clone(),
        }))
    }
    fn set_steering(&mut self, steer: Option<Steer>) {
        self.inner.set_steering(steer)
    }
}

/// A receive queue of a captured endpoint: its frames are recorded too.
struct CaptureRx {
    inner: Box<dyn NetRxQueue>,
    file: Arc<CaptureFile>,
}

impl NetRxQueue for CaptureRx {
    fn receive_meta(&mut self, buf: &mut [u8]) -> Option<(usize, FrameMeta)> {
        let (n, meta) = self.inner.receive_meta(buf)?;
        self.file.record(buf.get(..n).unwrap_or(&[]));
        Some((n, meta))
    }
}

/// A transmit queue of a captured endpoint: its frames are recorded too.
struct CaptureTx {
    inner: Box<dyn NetTxQueue>,
    file: Arc<CaptureFile>,
}

impl NetTxQueue for CaptureTx {
    fn transmit_meta(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.file.record(frame);
        self.inner.transmit_meta(frame, meta)
    }
    fn tx_offload_support(&self) -> TxOffloadSupport {
        self.inner.tx_offload_support()
    }
    fn transmit_offload(&mut self, frame: &[u8], offload: &TxOffload) -> bool {
        self.file.record(frame);
        self.inner.transmit_offload(frame, offload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Loopback;

    #[test]
    fn a_capture_of_a_boxed_backend_keeps_what_the_backend_offers() {
        use crate::backend::{Switch, frame_size};
        let path =
            std::env::temp_dir().join(format!("netvsp-capture-b{}.pcap", std::process::id()));
        let sw = Switch::with_queues(8, frame_size(9000), 3);
        let (port, _) = sw.port();
        let boxed: Box<dyn NetEndpoint> = Box::new(port);
        let mut cap = Capture::new(boxed, &path).unwrap();
        assert_eq!(cap.max_frame(), frame_size(9000));
        assert_eq!(cap.rx_queues(), 3);
        let waker = Arc::new(vmbus_ring::Doorbell::new());
        assert!(cap.take_rx_queue(1, waker).is_some());
        assert!(cap.take_tx_queue(1).is_some());
        drop(cap);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn capture_file_has_the_pcap_layout() {
        let path = std::env::temp_dir().join(format!("netvsp-capture-{}.pcap", std::process::id()));
        let (lo, _) = Loopback::new(4);
        let mut cap = Capture::new(lo, &path).unwrap();
        let frame: Vec<u8> = (0..60u8).collect();
        assert!(cap.transmit(&frame));
        let mut buf = [0u8; 1518];
        assert_eq!(cap.receive(&mut buf), Some(60));
        drop(cap);
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(&bytes[..4], &[0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 2);
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 4);
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
        // Two records (transmit and receive) of 16 + 60 bytes.
        assert_eq!(bytes.len(), 24 + 2 * (16 + 60));
        for r in 0..2 {
            let at = 24 + r * 76;
            assert_eq!(
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
                60
            );
            assert_eq!(&bytes[at + 16..at + 76], &frame[..]);
        }
    }
}
