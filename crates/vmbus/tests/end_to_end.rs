//! VMBus end to end over the simulated partition: a HostBus and a GuestBus in one
//! process, talking through SynIC pages, hypercalls and rings in guest memory.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use hv_partition::SimPartition;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus::channel::Ring;
use vmbus::*;
use vmbus_proto::VmbusVersion;
use vmbus_proto::channel::OfferChannel;
use vmbus_proto::engine::client::ClientConfig;
use vmbus_proto::engine::server::ServerConfig;
use vmbus_proto::guid::{Guid, class};
use vmbus_ring::{IncomingPacket, OutgoingPacket};

type Echo = EchoDevice;

fn payload_of(p: &IncomingPacket<'_, Ring>, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    vmbus::echo::append_payload(p, scratch, out)
}

struct Setup {
    partition: Arc<SimPartition>,
    host: HostBus<SimPartition>,
    guest: GuestBus,
}

fn setup(vps: u32, server: ServerConfig, client: ClientConfig) -> Setup {
    let partition = SimPartition::new(256 << 20, vps).unwrap();
    let host = HostBus::new(partition.clone(), {
        let mut c = HostConfig::default();
        c.server = server;
        c
    })
    .unwrap();
    let guest = GuestBus::new(partition.clone(), {
        let mut c = GuestConfig::default();
        c.client = client;
        c
    })
    .unwrap();
    Setup {
        partition,
        host,
        guest,
    }
}

fn nic(n: u32) -> OfferParams {
    OfferParams::new(
        class::NETWORK,
        Guid {
            data1: n,
            ..Guid::ZERO
        },
    )
}

/// Packet `i`: 8 + i % 248 bytes derived from i.
fn packet(i: u64, buf: &mut [u8; 256]) -> usize {
    let n = 8 + (i % 248) as usize;
    buf[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in buf[8..n].iter_mut().enumerate() {
        *b = (i as usize * 31 + k) as u8;
    }
    n
}

/// Streams `count` packets through `channel` and checks every echo, from two threads.
fn stream(channel: Channel, count: u64) -> Channel {
    let Channel {
        relid,
        subchannel_index,
        mut sender,
        mut receiver,
    } = channel;
    let writer = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for i in 0..count {
            let n = packet(i, &mut buf);
            sender
                .write(&OutgoingPacket::inband(i, 0), &[&buf[..n]])
                .unwrap();
            if i % 16 == 15 {
                sender.flush();
            }
        }
        sender.flush();
        sender
    });
    let mut expect = 0u64;
    let mut scratch = Vec::new();
    let mut got = Vec::with_capacity(512);
    let mut want = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(300);
    while expect < count {
        receiver
            .recv_batch(256, |p| {
                assert_eq!(p.descriptor.transaction_id, expect, "echo order");
                got.clear();
                payload_of(p, &mut scratch, &mut got);
                let n = packet(expect, &mut want);
                assert_eq!(&got[..n], &want[..n], "echo of packet {expect}");
                expect += 1;
            })
            .unwrap();
        assert!(Instant::now() < deadline, "stuck at {expect}");
    }
    let sender = writer.join().unwrap();
    Channel {
        relid,
        subchannel_index,
        sender,
        receiver,
    }
}

fn find(offers: &[OfferChannel], relid: u32) -> OfferChannel {
    *offers.iter().find(|o| o.child_relid == relid).unwrap()
}

#[test]
fn million_packets_echoed_close_and_reopen() {
    let s = setup(2, ServerConfig::default(), ClientConfig::default());
    let relid = s.host.offer(nic(1), Box::new(Echo::default())).unwrap();
    assert_eq!(s.guest.connect().unwrap(), VmbusVersion::V5_3);
    let offers = s.guest.request_offers().unwrap();
    let offer = find(&offers, relid);
    assert_eq!({ offer.interface_type }, class::NETWORK);
    let ch = s.guest.open(&offer, 64, 1).unwrap();
    let start = Instant::now();
    let ch = stream(ch, 1_000_000);
    println!("1M packets echoed in {:?}", start.elapsed());
    assert!(ch.shared().stats().signals_received > 0);
    drop(ch);
    s.guest.close(relid).unwrap();
    // Reopen the same offer and stream again.
    let ch = s.guest.open(&offer, 8, 0).unwrap();
    let ch = stream(ch, 10_000);
    drop(ch);
    s.guest.close(relid).unwrap();
    assert_eq!(s.host.stats().rejected, 0);
    assert_eq!(s.guest.stats().rejected, 0);
    let st = s.partition.synic_stats(0).unwrap();
    println!("VP0 SynIC: {st:?}");
}

#[test]
fn version_negotiation() {
    // A guest that only speaks 2.4.
    let s = setup(1, ServerConfig::default(), {
        let mut c = ClientConfig::default();
        c.versions = vec![VmbusVersion::V2_4];
        c
    });
    assert_eq!(s.guest.connect().unwrap(), VmbusVersion::V2_4);
    let relid = s.host.offer(nic(1), Box::new(Echo::default())).unwrap();
    let offers = s.guest.request_offers().unwrap();
    let ch = s.guest.open(&find(&offers, relid), 4, 0).unwrap();
    stream(ch, 1000);
    // A host that refuses everything newer than 4.0: the guest walks down to it.
    let s = setup(
        1,
        {
            let mut c = ServerConfig::default();
            c.versions = vec![VmbusVersion::V4_0];
            c
        },
        ClientConfig::default(),
    );
    assert_eq!(s.guest.connect().unwrap(), VmbusVersion::V4_0);
    assert_eq!(
        s.host.stats().rejected,
        5,
        "5.3, 5.2, 5.1, 5.0, 4.1 refused"
    );
    // A host that refuses every version the guest has.
    let s = setup(
        1,
        {
            let mut c = ServerConfig::default();
            c.versions = vec![VmbusVersion::V6_0];
            c
        },
        ClientConfig::default(),
    );
    assert_eq!(s.guest.connect(), Err(GuestError::ConnectFailed));
}

#[test]
fn rescind_while_open() {
    let s = setup(1, ServerConfig::default(), ClientConfig::default());
    let relid = s.host.offer(nic(1), Box::new(Echo::default())).unwrap();
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    let ch = s.guest.open(&find(&offers, relid), 4, 0).unwrap();
    let mut ch = stream(ch, 100);
    s.host.rescind(relid).unwrap();
    s.guest.wait_rescind(relid).unwrap();
    assert_eq!(
        ch.sender.send(&OutgoingPacket::inband(0, 0), &[b"x"]),
        Err(ChannelError::Closed)
    );
    assert_eq!(ch.receiver.recv(|_| ()), Err(ChannelError::Closed));
    // The relid was released: a new offer can take it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        if let Ok(r) = s.host.offer(nic(2), Box::new(Echo::default())) {
            if r == relid {
                break r;
            }
            s.host.rescind(r).unwrap();
        }
        assert!(Instant::now() < deadline, "relid never released");
        std::thread::sleep(Duration::from_millis(10));
    };
    let offer = s.guest.wait_offer(|o| o.child_relid == again).unwrap();
    stream(s.guest.open(&offer, 4, 0).unwrap(), 100);
}

#[test]
fn unload_and_reconnect() {
    let s = setup(1, ServerConfig::default(), ClientConfig::default());
    let relid = s.host.offer(nic(1), Box::new(Echo::default())).unwrap();
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    let ch = s.guest.open(&find(&offers, relid), 4, 0).unwrap();
    let mut ch = stream(ch, 100);
    s.guest.unload().unwrap();
    assert_eq!(
        ch.sender.send(&OutgoingPacket::inband(0, 0), &[b"x"]),
        Err(ChannelError::Closed)
    );
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    stream(s.guest.open(&find(&offers, relid), 4, 0).unwrap(), 1000);
}

#[test]
fn hundred_channels_at_once() {
    let s = setup(2, ServerConfig::default(), ClientConfig::default());
    let relids: Vec<u32> = (0..100)
        .map(|i| s.host.offer(nic(i), Box::new(Echo::default())).unwrap())
        .collect();
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    assert_eq!(offers.len(), 100);
    let channels: Vec<Channel> = relids
        .iter()
        .enumerate()
        .map(|(i, r)| s.guest.open(&find(&offers, *r), 2, (i % 2) as u32).unwrap())
        .collect();
    // Traffic on all of them at once, each from its own thread.
    let handles: Vec<_> = channels
        .into_iter()
        .map(|c| std::thread::spawn(move || stream(c, 200)))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn channel_with_64_subchannels() {
    let s = setup(2, ServerConfig::default(), ClientConfig::default());
    let instance = Guid {
        data1: 0x5EED,
        ..Guid::ZERO
    };
    let mut relids = vec![];
    for i in 0..=64u16 {
        let p = OfferParams {
            subchannel_index: i,
            ..OfferParams::new(class::NETWORK, instance)
        };
        relids.push(s.host.offer(p, Box::new(Echo::default())).unwrap());
    }
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    let subs: Vec<u16> = offers
        .iter()
        .filter(|o| { o.interface_instance } == instance)
        .map(|o| o.subchannel_index)
        .collect();
    assert_eq!(subs, (0..=64).collect::<Vec<_>>());
    for r in relids {
        let c = s.guest.open(&find(&offers, r), 2, r % 2).unwrap();
        assert_eq!(
            u32::from(c.subchannel_index),
            r - relids_first(&offers, instance)
        );
        stream(c, 20);
    }
}

fn relids_first(offers: &[OfferChannel], instance: Guid) -> u32 {
    offers
        .iter()
        .filter(|o| { o.interface_instance } == instance)
        .map(|o| o.child_relid)
        .min()
        .unwrap()
}

#[test]
fn hostile_guest_messages_do_not_break_the_host() {
    let s = setup(1, ServerConfig::default(), ClientConfig::default());
    let relid = s.host.offer(nic(1), Box::new(Echo::default())).unwrap();
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    use vmbus_proto::channel::*;
    // Garbage and out-of-state messages on the message connection; a bad connection id.
    let bad = [
        Message::OpenChannel(
            OpenChannel {
                child_relid: 77,
                open_id: 1,
                ring_buffer_gpadl_handle: 5,
                target_vp: 0,
                downstream_ring_buffer_page_offset: 1,
                user_data: [0; 120],
            },
            None,
        ),
        Message::GpadlBody(
            GpadlBodyMessage::new(
                GpadlBody {
                    msg_number: 1,
                    gpadl: 999,
                },
                &[1, 2],
            )
            .unwrap(),
        ),
        Message::CloseChannel(ChildRelid { child_relid: relid }),
        Message::RelIdReleased(ChildRelid { child_relid: relid }),
        Message::OfferChannel(*offers.first().unwrap()),
    ];
    for m in &bad {
        assert_eq!(s.guest.post_raw(1, m), hv_hypercall::HvStatus::SUCCESS);
    }
    assert_eq!(
        s.guest.post_raw(0x77, &Message::Unload),
        hv_hypercall::HvStatus::INVALID_CONNECTION_ID
    );
    // The bus still works.
    stream(s.guest.open(&find(&offers, relid), 4, 0).unwrap(), 100);
    assert!(s.host.stats().rejected >= 5);
}

/// Guest RAM with a hole: 64 MiB at 0 and 64 MiB at 4 GiB. GPADLs naming the hole, a
/// region's edge or past the last region are refused and counted; the guest's SynIC
/// pages and rings above 4 GiB work.
#[test]
fn gpadls_outside_guest_ram_are_refused_and_rings_above_4g_work() {
    let memory =
        hv_partition::GuestMemory::with_layout(&[(0, 64 << 20), (4 << 30, 64 << 20)]).unwrap();
    let partition = SimPartition::with_memory(memory, 1).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let guest = GuestBus::new(partition.clone(), {
        let mut c = GuestConfig::default();
        // Everything the guest allocates (SynIC pages, rings) above 4 GiB.
        c.alloc_base = 4 << 30;
        c
    })
    .unwrap();
    let relid = host.offer(nic(1), Box::new(Echo::default())).unwrap();
    guest.connect().unwrap();
    let offers = guest.request_offers().unwrap();
    let low_end = (64 << 20) / 4096;
    let high = (4u64 << 30) / 4096;
    let high_end = high + (64 << 20) / 4096;
    for (what, start, pages) in [
        ("in the hole", low_end + 100, 4),
        ("across low RAM's edge", low_end - 2, 4),
        ("below high RAM", high - 1, 2),
        ("past the last region", high_end - 1, 2),
        ("far beyond", 1 << 40, 1),
    ] {
        assert_eq!(
            guest.create_gpadl(relid, start, pages),
            Err(vmbus::GuestError::Refused("GPADL")),
            "{what}"
        );
    }
    assert_eq!(host.stats().gpadls_outside_ram, 5);
    // RAM on both sides of the hole is fine.
    let g = guest.create_gpadl(relid, low_end - 4, 4).unwrap();
    guest.teardown_gpadl(g).unwrap();
    // Rings above 4 GiB carry packets.
    let ch = guest.open(&find(&offers, relid), 4, 0).unwrap();
    stream(ch, 1000);
    assert_eq!(host.stats().open_failures, 0);
    assert_eq!(host.stats().gpadls_outside_ram, 5);
}

#[test]
fn modify_channel_moves_interrupts() {
    let s = setup(2, ServerConfig::default(), ClientConfig::default());
    let relid = s.host.offer(nic(1), Box::new(Echo::default())).unwrap();
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    let ch = s.guest.open(&find(&offers, relid), 4, 0).unwrap();
    let ch = stream(ch, 100);
    let before = s.partition.synic_stats(1).unwrap().events;
    s.guest.modify_channel(relid, 1).unwrap();
    // The host applies the retarget on its worker; traffic then raises VP 1's SINT.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ch = ch;
    while s.partition.synic_stats(1).unwrap().events == before {
        ch = stream(ch, 10);
        assert!(Instant::now() < deadline, "events never moved to VP 1");
    }
}

/// A device that, once opened, offers two subchannels of its own channel from its
/// thread (as a NIC does when the guest asks), then rescinds the second on request.
struct SubchannelMaker {
    rescind: Arc<std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>>,
    relids: std::sync::mpsc::Sender<Result<Vec<u32>, String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl VmbusDevice for SubchannelMaker {
    fn open(&mut self, channel: Channel, req: &OpenRequest, context: &DeviceContext) -> bool {
        let context = context.clone();
        let relids = self.relids.clone();
        let rescind = self.rescind.lock().unwrap().take();
        let _primary = channel;
        let _ = req;
        self.threads.push(std::thread::spawn(move || {
            // Index 0 is the primary itself: refused.
            let zero = context.offer_subchannel(0, Box::new(Echo::default()));
            if !matches!(zero, Err(HostError::Subchannel(_))) {
                let _ = relids.send(Err("index 0 accepted".into()));
                return;
            }
            let pending: Vec<PendingOffer> = (1..=2)
                .map(|i| {
                    context
                        .offer_subchannel(i, Box::new(Echo::default()))
                        .unwrap()
                })
                .collect();
            let mut got = Vec::new();
            for p in &pending {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    match p.try_relid() {
                        Some(Ok(r)) => break got.push(r),
                        Some(Err(e)) => return drop(relids.send(Err(e.to_string()))),
                        None if Instant::now() > deadline => {
                            return drop(relids.send(Err("no answer".into())));
                        }
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }
            let _ = relids.send(Ok(got));
            if let Some(r) = rescind
                && r.recv().is_ok()
            {
                context.rescind_subchannel(2);
            }
        }));
        true
    }

    fn close(&mut self, _relid: u32) {}
}

#[test]
fn a_device_offers_and_rescinds_its_subchannels() {
    // Without a bus there is nothing to offer on.
    let lone = DeviceContext::new(
        hv_partition::GuestMemory::new(1 << 20).unwrap(),
        Arc::default(),
    );
    assert!(matches!(
        lone.offer_subchannel(1, Box::new(Echo::default())),
        Err(HostError::Subchannel(_))
    ));

    let s = setup(2, ServerConfig::default(), ClientConfig::default());
    let (relid_tx, relid_rx) = std::sync::mpsc::channel();
    let (rescind_tx, rescind_rx) = std::sync::mpsc::channel();
    let primary = s
        .host
        .offer(
            nic(77),
            Box::new(SubchannelMaker {
                rescind: Arc::new(std::sync::Mutex::new(Some(rescind_rx))),
                relids: relid_tx,
                threads: Vec::new(),
            }),
        )
        .unwrap();
    s.guest.connect().unwrap();
    let offers = s.guest.request_offers().unwrap();
    let _p = s.guest.open(&find(&offers, primary), 2, 0).unwrap();
    let subs = relid_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(subs.len(), 2);
    for (i, relid) in subs.iter().enumerate() {
        let offer = s.guest.wait_offer(|o| o.child_relid == *relid).unwrap();
        assert_eq!(
            ({ offer.interface_instance }, offer.subchannel_index),
            (nic(77).interface_instance, i as u16 + 1)
        );
        let c = s.guest.open(&offer, 2, 1).unwrap();
        assert_eq!(c.subchannel_index, i as u16 + 1);
        let c = stream(c, 50);
        drop(c);
    }
    rescind_tx.send(()).unwrap();
    s.guest.wait_rescind(subs[1]).unwrap();
}

#[test]
fn polled_guest_bus_streams_on_both_vps_without_interrupt_threads() {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let platform = Arc::new(SimPlatform::new(
        partition.clone(),
        vmbus::RingMapping::Paged,
    ));
    // (That it starts no thread is checked in netvsp's one_thread test, alone in its
    // binary; here other tests' buses run beside it.)
    let guest = GuestBus::polled(platform, GuestConfig::default()).unwrap();
    assert!(guest.is_polled());
    let a = host.offer(nic(1), Box::new(Echo::default())).unwrap();
    let b = host.offer(nic(2), Box::new(Echo::default())).unwrap();
    assert_eq!(guest.connect().unwrap(), VmbusVersion::V5_3);
    let offers = guest.request_offers().unwrap();
    // Channel a interrupts VP 0 (the message VP), channel b VP 1: a polled wait on
    // one VP still sees the other's events.
    let ca = guest.open(&find(&offers, a), 8, 0).unwrap();
    let cb = guest.open(&find(&offers, b), 8, 1).unwrap();
    assert!(ca.shared().is_polled());
    let t = std::thread::spawn(move || stream(cb, 20_000));
    let ca = stream(ca, 20_000);
    let cb = t.join().unwrap();
    assert!(cb.shared().stats().signals_received > 0);
    drop((ca, cb));
    guest.close(a).unwrap();
    guest.close(b).unwrap();
    // Nothing pending once both are closed; the bus still answers.
    guest.unload().unwrap();
    assert_eq!(guest.stats().rejected, 0);
    assert_eq!(host.stats().rejected, 0);
}

#[test]
fn dropping_the_buses_releases_the_partition() {
    // Threaded and polled hosts, with a guest that opened a channel and used it: once
    // the buses and the channel are dropped nothing may hold the partition (a cycle
    // through its hypercall handler once did, leaking a whole VM per host bus).
    for polled in [false, true] {
        let partition = SimPartition::new(64 << 20, 1).unwrap();
        let host = if polled {
            HostBus::polled(
                partition.clone(),
                HostConfig::default(),
                Arc::new(Doorbell::new()),
            )
        } else {
            HostBus::new(partition.clone(), HostConfig::default()).unwrap()
        };
        let relid = host.offer(nic(1), Box::new(Echo::default())).unwrap();
        if !polled {
            let guest = GuestBus::new(partition.clone(), GuestConfig::default()).unwrap();
            guest.connect().unwrap();
            let offers = guest.request_offers().unwrap();
            let ch = guest.open(&find(&offers, relid), 8, 0).unwrap();
            let ch = stream(ch, 100);
            drop(ch);
            guest.close(relid).unwrap();
            drop(guest);
        }
        drop(host);
        // The host's worker thread lets go of its clone as it exits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&partition) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            Arc::strong_count(&partition),
            1,
            "something still holds the partition (polled host: {polled})"
        );
    }
}
