//! Packet capture: a [`Capture`] endpoint wraps another and writes every frame in both
//! directions to a pcap file (libpcap format 2.4, link type Ethernet), readable by
//! tshark and Wireshark.

use crate::backend::NetEndpoint;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vmbus_ring::Doorbell;

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

/// An endpoint that records every frame it passes, in both directions.
pub struct Capture<E> {
    inner: E,
    writer: PcapWriter<BufWriter<File>>,
    /// Frames that could not be written to the file (the frame itself still passes).
    pub write_errors: u64,
}

impl<E: NetEndpoint> Capture<E> {
    /// Wraps `inner`, writing to a new pcap file at `path`.
    pub fn new(inner: E, path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            inner,
            writer: PcapWriter::new(BufWriter::new(File::create(path)?))?,
            write_errors: 0,
        })
    }

    fn record(&mut self, frame: &[u8]) {
        if self.writer.write_frame(frame).is_err() {
            self.write_errors += 1;
        }
    }
}

impl<E: NetEndpoint> NetEndpoint for Capture<E> {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.record(frame);
        self.inner.transmit(frame)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let n = self.inner.receive(buf)?;
        if let Some(f) = buf.get(..n) {
            self.record(f);
        }
        Some(n)
    }
    fn set_waker(&mut self, waker: Arc<Doorbell>) {
        self.inner.set_waker(waker)
    }
    fn link_up(&self) -> bool {
        self.inner.link_up()
    }
}

impl<E> Drop for Capture<E> {
    fn drop(&mut self) {
        let _ = self.writer.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Loopback;

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
