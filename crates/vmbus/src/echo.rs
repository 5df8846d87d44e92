//! [`EchoDevice`]: a device that sends every packet back, for tests, examples and
//! benchmarks.

use crate::channel::{Channel, Ring};
use crate::host::VmbusDevice;
use std::thread::JoinHandle;
use vmbus_proto::engine::server::OpenRequest;
use vmbus_ring::{IncomingPacket, OutgoingPacket};

/// Echoes every in-band packet's payload back with the same transaction id, from one
/// thread per open channel. Reads are committed before the echoes are written, so a
/// full outgoing ring cannot deadlock it against a guest that writes while it reads.
/// No allocation per packet: staging buffers are reused.
#[derive(Default)]
pub struct EchoDevice {
    threads: Vec<JoinHandle<()>>,
}

/// Appends the payload (bytes after the descriptor and header) of `p` to `out`.
pub fn append_payload(p: &IncomingPacket<'_, Ring>, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    let off = usize::from(p.descriptor.data_offset8) * 8;
    p.with_bytes(scratch, |b| {
        out.extend_from_slice(b.get(off..).unwrap_or(&[]))
    });
}

impl VmbusDevice for EchoDevice {
    fn open(
        &mut self,
        channel: Channel,
        _req: &OpenRequest,
        _ctx: &crate::host::DeviceContext,
    ) -> bool {
        let Channel {
            mut sender,
            mut receiver,
            ..
        } = channel;
        let spawned = std::thread::Builder::new()
            .name("vmbus-echo".into())
            .spawn(move || {
                let mut scratch = Vec::with_capacity(64 * 1024);
                let mut staged: Vec<(u64, usize, usize)> = Vec::with_capacity(256);
                let mut data: Vec<u8> = Vec::with_capacity(512 * 1024);
                loop {
                    staged.clear();
                    data.clear();
                    let r = receiver.recv_batch(256, |p| {
                        let start = data.len();
                        append_payload(p, &mut scratch, &mut data);
                        staged.push((p.descriptor.transaction_id, start, data.len()));
                    });
                    if r.is_err() {
                        return;
                    }
                    for &(tid, s, e) in &staged {
                        let payload = data.get(s..e).unwrap_or(&[]);
                        if sender
                            .write(&OutgoingPacket::inband(tid, 0), &[payload])
                            .is_err()
                        {
                            return;
                        }
                    }
                    sender.flush();
                }
            });
        match spawned {
            Ok(h) => {
                self.threads.push(h);
                true
            }
            Err(_) => false,
        }
    }

    fn close(&mut self, _relid: u32) {
        // The channel is closed: the thread's next receive fails and it exits.
        self.threads.retain(|t| !t.is_finished());
    }
}
