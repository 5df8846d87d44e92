//! VMBus end to end in one process: a host offers an echo device over the simulated
//! partition, a guest connects, opens the channel, and measures round-trip latency and
//! streaming throughput.
//!
//! Run: `cargo run --release -p vmbus-examples --example vmbus_echo`

// Example code: inputs are built here.
#![allow(clippy::indexing_slicing)]

use hv_partition::SimPartition;
use std::error::Error;
use std::time::{Duration, Instant};
use vmbus::{EchoDevice, GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::guid::Guid;
use vmbus_ring::OutgoingPacket;

fn main() -> Result<(), Box<dyn Error>> {
    let partition = SimPartition::new(256 << 20, 2)?;
    let host = HostBus::new(partition.clone(), HostConfig::default())?;
    let instance = Guid::parse("9d1c2f7a-3b4e-4c5d-8e6f-0a1b2c3d4e5f")?;
    // A class of its own: offered as a network device, a real Linux guest would bind
    // hv_netvsc to it.
    let echo_class = Guid::parse("6c0e1b9a-8f3d-4f2a-9b71-4e5d3c2a1f00")?;
    let relid = host.offer(
        OfferParams::new(echo_class, instance),
        Box::new(EchoDevice::default()),
    )?;
    println!("host: offered echo device as relid {relid}");

    let guest = GuestBus::new(partition.clone(), GuestConfig::default())?;
    let version = guest.connect()?;
    println!(
        "guest: connected, VMBus {}.{}",
        version.major(),
        version.minor()
    );
    let offers = guest.request_offers()?;
    let offer = offers
        .iter()
        .find(|o| o.child_relid == relid)
        .ok_or("offer missing")?;
    println!(
        "guest: {} offer(s); opening relid {relid} ({:?})",
        offers.len(),
        { offer.interface_type }
    );
    let mut ch = guest.open(offer, 128, 1)?;

    // Round trips: one packet out, wait for its echo.
    let mut samples = Vec::with_capacity(20_000);
    let payload = [0x42u8; 64];
    for i in 0..20_000u64 {
        let t = Instant::now();
        ch.sender.send(&OutgoingPacket::inband(i, 0), &[&payload])?;
        let tid = ch.receiver.recv(|p| p.descriptor.transaction_id)?;
        samples.push(t.elapsed());
        assert_eq!(tid, i);
    }
    samples.sort_unstable();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "round trip, 64 B: median {:?}, p99 {:?}, min {:?} ({} samples)",
        pct(50),
        pct(99),
        samples[0],
        samples.len()
    );

    // Streaming: 1500-byte packets pipelined, echoes checked by transaction id.
    let count = 500_000u64;
    let vmbus::Channel {
        mut sender,
        mut receiver,
        ..
    } = ch;
    let start = Instant::now();
    let writer = std::thread::spawn(move || -> Result<(), vmbus::ChannelError> {
        let frame = [0x5Au8; 1500];
        for i in 0..count {
            sender.write(&OutgoingPacket::inband(i, 0), &[&frame])?;
            if i % 8 == 7 {
                sender.flush();
            }
        }
        sender.flush();
        Ok(())
    });
    let mut next = 0u64;
    while next < count {
        receiver.recv_batch(256, |p| {
            assert_eq!(p.descriptor.transaction_id, next);
            next += 1;
        })?;
    }
    writer.join().map_err(|_| "writer panicked")??;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "streaming, 1500 B through the echo: {:.2} Mpps each way, {:.2} Gbit/s of payload each way",
        count as f64 / secs / 1e6,
        count as f64 * 1500.0 * 8.0 / secs / 1e9
    );
    guest.close(relid)?;
    guest.unload()?;
    println!(
        "host: {} guest messages, {} rejected; guest: {} host messages, {} EOMs",
        host.stats().messages,
        host.stats().rejected,
        guest.stats().messages,
        guest.stats().eoms,
    );
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
