//! Hostile guests against the host bus, each written in the test: a guest that never
//! reads its SynIC messages, one that floods every message type the server accepts, one
//! whose ring GPADL names a page twice. And a hostile host against the polled guest bus
//! (what a no_std guest runs): garbage messages and stray event flags. The host's own requests (offer, rescind, drop)
//! must be served within a bound that does not depend on the guest, guest messages
//! beyond a bounded backlog refused and counted, and a stalled guest must not make the
//! bus spin.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use hv_partition::SimPartition;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus::{EchoDevice, GuestBus, GuestConfig, HostBus, HostConfig, OfferParams};
use vmbus_proto::channel::gpadl::{GpaRange, split};
use vmbus_proto::channel::*;
use vmbus_proto::guid::{Guid, class};

fn offer(n: u32) -> OfferParams {
    OfferParams::new(
        class::NETWORK,
        Guid {
            data1: n,
            ..Guid::ZERO
        },
    )
}

/// A one-VP partition with a host bus offering one echo channel, and its relid.
fn echo_host() -> (Arc<SimPartition>, HostBus<SimPartition>, u32) {
    let partition = SimPartition::new(64 << 20, 1).unwrap();
    let host = HostBus::new(partition.clone(), HostConfig::default()).unwrap();
    let relid = host
        .offer(offer(1), Box::new(EchoDevice::default()))
        .unwrap();
    (partition, host, relid)
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

/// A guest that never enables its message page and floods InitiateContact with a
/// version nobody speaks, each earning a VersionResponse it never reads.
#[test]
fn a_guest_that_never_reads_its_messages_does_not_wedge_the_bus() {
    let partition = SimPartition::new(64 << 20, 1).unwrap();
    let host = Arc::new(HostBus::new(partition.clone(), HostConfig::default()).unwrap());
    let vp = partition.vp(0).unwrap();
    let contact = Message::InitiateContact(
        InitiateContact {
            version_requested: 0x0077_0077,
            target_vcpu: 0,
            interrupt_page_or_target_info: InitiateContact::target_info(2, 0, 0),
            monitor_page1: 0,
            monitor_page2: 0,
        },
        None,
    );
    let (buf, n) = contact.to_payload();
    let (mut ok, mut busy) = (0u32, 0u32);
    for _ in 0..20_000 {
        match vp.post_message(0x1000, 4, &buf[..n]) {
            hv_hypercall::HvStatus::SUCCESS => ok += 1,
            hv_hypercall::HvStatus::INSUFFICIENT_BUFFERS => busy += 1,
            other => panic!("PostMessage: {other:?}"),
        }
    }
    // The bus takes a bounded backlog and then refuses (the guest would retry).
    assert!(busy > 0, "{ok} accepted, none refused");
    assert!(
        ok < 10_000,
        "{ok} of 20,000 accepted from a guest that reads nothing"
    );
    // The host's own requests are served at once.
    let h = host.clone();
    let relid = within(Duration::from_secs(5), "an offer", move || {
        h.offer(offer(1), Box::new(EchoDevice::default()))
    })
    .unwrap();
    let h = host.clone();
    within(Duration::from_secs(5), "a rescind", move || {
        h.rescind(relid)
    })
    .unwrap();
    // Stalled, the bus sleeps: a few polls a second, not thousands.
    std::thread::sleep(Duration::from_millis(300));
    let before = host.stats().polls;
    std::thread::sleep(Duration::from_secs(1));
    let polls = host.stats().polls - before;
    assert!(
        polls < 30,
        "{polls} polls in a second while the guest is stalled"
    );
    let s = host.stats();
    println!("accepted {ok}, refused {busy}; {s:?}");
    assert_eq!(s.busy, u64::from(busy));
    // And the bus goes away promptly.
    let host = Arc::into_inner(host).unwrap();
    within(Duration::from_secs(5), "dropping the bus", move || {
        drop(host)
    });
}

/// A connected guest floods every message type the server takes, then behaves: the
/// bus still answers, keeps its caps, and a channel opens and carries packets.
#[test]
fn a_guest_flooding_every_message_type_is_capped_and_the_bus_recovers() {
    let partition = SimPartition::new(256 << 20, 2).unwrap();
    let host = Arc::new(HostBus::new(partition.clone(), HostConfig::default()).unwrap());
    let relid = host
        .offer(offer(1), Box::new(EchoDevice::default()))
        .unwrap();
    let guest = GuestBus::new(partition, GuestConfig::default()).unwrap();
    guest.connect().unwrap();
    let offers = guest.request_offers().unwrap();
    let mut flood: Vec<Message> = vec![
        Message::RequestOffers,
        Message::OpenChannel(
            OpenChannel {
                child_relid: relid,
                open_id: 9,
                ring_buffer_gpadl_handle: 0xdead,
                target_vp: 7,
                downstream_ring_buffer_page_offset: 1,
                user_data: [0; 120],
            },
            None,
        ),
        Message::CloseChannel(ChildRelid { child_relid: 999 }),
        Message::GpadlTeardown(GpadlTeardown {
            child_relid: relid,
            gpadl: 0xbeef,
        }),
        Message::RelIdReleased(ChildRelid { child_relid: relid }),
        Message::ModifyChannel(ModifyChannel {
            child_relid: relid,
            target_vp: 1,
        }),
    ];
    // GPADL headers with fresh ids: the server caps how many it keeps.
    for id in 0..2000u32 {
        let (h, _) = split(
            relid,
            0x1_0000 + id,
            &[GpaRange::whole_pages(vec![0x100, 0x101])],
        )
        .unwrap();
        flood.push(Message::GpadlHeader(h));
    }
    let start = Instant::now();
    let mut refused = 0u64;
    for round in 0..300 {
        for m in &flood[..6] {
            if guest.post_raw(1, m) != hv_hypercall::HvStatus::SUCCESS {
                refused += 1;
            }
        }
        if round == 0 {
            for m in &flood[6..] {
                if guest.post_raw(1, m) != hv_hypercall::HvStatus::SUCCESS {
                    refused += 1;
                }
            }
        }
    }
    println!(
        "flood of {} messages in {:?}, {refused} refused",
        300 * 6 + 2000,
        start.elapsed()
    );
    // The host's requests are still served at once.
    let h = host.clone();
    within(
        Duration::from_secs(5),
        "an offer after the flood",
        move || h.offer(offer(2), Box::new(EchoDevice::default())),
    )
    .unwrap();
    // The guest behaves again: it tears its flood's GPADLs down (the ones the server
    // kept), and a channel opens and echoes.
    for id in 0..2000u32 {
        guest.post_raw(
            1,
            &Message::GpadlTeardown(GpadlTeardown {
                child_relid: relid,
                gpadl: 0x1_0000 + id,
            }),
        );
    }
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ch = loop {
        match guest.open(&offer, 4, 0) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                println!("open while the flood drains: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no open after the flood: {e}"),
        }
    };
    ch.sender
        .send(&vmbus_ring::OutgoingPacket::inband(1, 0), &[b"still here"])
        .unwrap();
    let echoed = ch.receiver.recv(|p| p.len()).unwrap();
    assert!(echoed >= 10);
    let s = host.stats();
    println!("{s:?}");
    assert!(s.rejected > 0);
    assert!(s.gpadls_created <= 1024 + 1, "GPADLs capped: {s:?}");
}

/// A ring GPADL that names a page twice (inside one ring, or shared by the two
/// rings) is refused at open, and counted.
#[test]
fn aliased_rings_are_refused() {
    let (partition, host, relid) = echo_host();
    let guest = GuestBus::new(partition, GuestConfig::default()).unwrap();
    guest.connect().unwrap();
    let _ = guest.request_offers().unwrap();
    let base = 0x2000u64;
    let cases: [(&str, Vec<u64>); 2] = [
        // Ring 1: control, data, data again; ring 2 fine.
        (
            "a page twice in one ring",
            vec![base, base + 1, base + 1, base + 2, base + 3],
        ),
        // The second ring is the first one again.
        (
            "the rings share pages",
            vec![base, base + 1, base, base + 1],
        ),
    ];
    for (i, (what, pfns)) in cases.iter().enumerate() {
        let id = 0x500 + i as u32;
        let (h, bodies) = split(relid, id, &[GpaRange::whole_pages(pfns.clone())]).unwrap();
        assert_eq!(
            guest.post_raw(1, &Message::GpadlHeader(h)),
            hv_hypercall::HvStatus::SUCCESS
        );
        for b in bodies {
            guest.post_raw(1, &Message::GpadlBody(b));
        }
        let split_at = if i == 0 { 3 } else { 2 };
        guest.post_raw(
            1,
            &Message::OpenChannel(
                OpenChannel {
                    child_relid: relid,
                    open_id: 1 + i as u32,
                    ring_buffer_gpadl_handle: id,
                    target_vp: 0,
                    downstream_ring_buffer_page_offset: split_at,
                    user_data: [0; 120],
                },
                None,
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while host.stats().aliased_rings < i as u64 + 1 {
            assert!(Instant::now() < deadline, "{what}: not refused");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let s = host.stats();
    assert_eq!((s.aliased_rings, s.opens), (2, 0), "{s:?}");
}

/// A host that, besides the real bus, writes garbage into the guest's SynIC: messages
/// of every length with random bytes (and random message types), and event flags for
/// relids that have no channel. The polled guest bus (the no_std guest's way of
/// running) rejects and counts each, never panics, and afterwards still opens a
/// channel and moves packets.
#[test]
fn a_hostile_host_cannot_break_the_polled_guest_bus() {
    use hv_hypercall::{HvMessage, HvMessageType};
    use hv_partition::Partition;
    use vmbus::SimPlatform;
    use vmbus_ring::OutgoingPacket;

    let (partition, _host, relid) = echo_host();
    let platform = Arc::new(SimPlatform::new(
        partition.clone(),
        vmbus::RingMapping::Paged,
    ));
    let guest = GuestBus::polled(platform, GuestConfig::default()).unwrap();
    guest.connect().unwrap();

    // xorshift: the same garbage every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let sint = vmbus_proto::engine::client::ClientConfig::default().sint;
    let mut posted = 0u64;
    for i in 0..2000u64 {
        let len = (next() % 241) as usize;
        let mut payload = vec![0u8; len];
        for b in payload.iter_mut() {
            *b = next() as u8;
        }
        // Mostly VMBus-typed messages (the engine parses those), some of other types.
        let kind = if i % 8 == 0 {
            HvMessageType((next() as u32) & 0x7fff_ffff)
        } else {
            HvMessageType::VMBUS
        };
        if let Ok(m) = HvMessage::new(kind, &payload)
            && partition.post_message(0, sint, &m).is_ok()
        {
            posted += 1;
        }
        // A flag for a relid with no channel (and, now and then, a high one).
        let flag = if i % 16 == 0 {
            2047
        } else {
            100 + (next() % 900) as u16
        };
        let _ = partition.signal_event(0, sint, flag);
        if i % 4 == 0 {
            guest.poll();
        }
    }
    for _ in 0..200 {
        guest.poll();
    }
    let st = guest.stats();
    println!("posted {posted} garbage messages; guest {st:?}");
    assert!(posted > 0);
    assert!(st.rejected > 0, "garbage was rejected and counted: {st:?}");
    assert!(st.stray_events > 0, "stray flags were counted: {st:?}");

    // The bus still works: offers, a channel, packets both ways.
    let offers = guest.request_offers().unwrap();
    let o = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    let mut ch = guest.open(&o, 8, 0).unwrap();
    for i in 0..100u64 {
        ch.sender
            .send(&OutgoingPacket::inband(i, 0), &[b"after the garbage"])
            .unwrap();
        let tid = ch.receiver.recv(|p| p.descriptor.transaction_id).unwrap();
        assert_eq!(tid, i);
    }
    drop(ch);
    guest.close(relid).unwrap();
}
