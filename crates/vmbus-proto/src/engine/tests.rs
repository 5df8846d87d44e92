//! The client and server engines wired to each other, with no runtime in between.

use super::client::{Client, ClientAction, ClientConfig};
use super::server::{Action, OfferParams, Server, ServerConfig};
use super::*;
use crate::channel::gpadl::GpaRange;
use crate::channel::{Message, MessageType};
use crate::guid::{Guid, class};
use alloc::vec;
use alloc::vec::Vec;

struct Wire {
    server: Server,
    client: Client,
    /// Non-message server actions, in order.
    host: Vec<Action>,
    /// Non-message client actions, in order.
    guest: Vec<ClientAction>,
    /// Connection ids the client posted on.
    posted_on: Vec<u32>,
    /// Rejections seen by either side.
    rejections: usize,
    auto_open: bool,
}

impl Wire {
    fn new(sc: ServerConfig, cc: ClientConfig) -> Self {
        Self {
            server: Server::new(sc),
            client: Client::new(cc),
            host: vec![],
            guest: vec![],
            posted_on: vec![],
            rejections: 0,
            auto_open: true,
        }
    }

    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            while let Some(a) = self.server.poll_action() {
                progress = true;
                match a {
                    Action::Send { vp, sint, message } => {
                        assert_eq!((vp, sint), (0, 2));
                        let (buf, n) = message.to_payload();
                        if self.client.handle_message(&buf[..n]).is_err() {
                            self.rejections += 1;
                        }
                    }
                    Action::Open(o) if self.auto_open => {
                        self.server.open_complete(o.relid, o.open_id, true);
                        self.host.push(Action::Open(o));
                    }
                    other => self.host.push(other),
                }
            }
            while let Some(a) = self.client.poll_action() {
                progress = true;
                match a {
                    ClientAction::Send {
                        connection_id,
                        message,
                    } => {
                        assert!(MESSAGE_CONNECTION_IDS.contains(&connection_id));
                        self.posted_on.push(connection_id);
                        let (buf, n) = message.to_payload();
                        if self.server.handle_message(&buf[..n]).is_err() {
                            self.rejections += 1;
                        }
                    }
                    other => self.guest.push(other),
                }
            }
            if !progress {
                self.server.check_invariants().unwrap();
                return;
            }
        }
        panic!("engines did not settle");
    }

    fn connect(&mut self) {
        self.client.connect();
        self.pump();
        self.client.request_offers().unwrap();
        self.pump();
    }

    fn offered(&self) -> Vec<u32> {
        self.guest
            .iter()
            .filter_map(|a| match a {
                ClientAction::Offer(o) => Some(o.child_relid),
                _ => None,
            })
            .collect()
    }

    /// GPADL of 4 + 4 pages for `relid`, then open; returns the GPADL id.
    fn open(&mut self, relid: u32) -> u32 {
        let base = u64::from(relid) * 100;
        let g = self
            .client
            .create_gpadl(relid, &[GpaRange::whole_pages((base..base + 8).collect())])
            .unwrap();
        self.pump();
        assert!(self.guest.contains(&ClientAction::GpadlCreated {
            relid,
            gpadl: g,
            ok: true
        }));
        self.client.open(relid, g, 4, 0, [0; 120]).unwrap();
        self.pump();
        assert!(
            self.guest
                .contains(&ClientAction::Opened { relid, ok: true })
        );
        g
    }
}

fn nic(n: u8) -> OfferParams {
    OfferParams::new(
        class::NETWORK,
        Guid {
            data1: u32::from(n),
            ..Guid::ZERO
        },
    )
}

#[test]
fn negotiates_newest_version_on_connection_4() {
    let mut w = Wire::new(ServerConfig::default(), ClientConfig::default());
    w.connect();
    assert_eq!(w.server.version(), Some(VmbusVersion::V5_3));
    assert_eq!(w.client.version(), Some(VmbusVersion::V5_3));
    assert_eq!(w.posted_on[0], MESSAGE_CONNECTION_ID_4);
    assert_eq!(
        w.posted_on[1], MESSAGE_CONNECTION_ID,
        "later messages use msg_conn_id"
    );
    assert!(w.guest.contains(&ClientAction::Connected {
        version: VmbusVersion::V5_3
    }));
    assert!(w.guest.contains(&ClientAction::AllOffersDelivered));
}

#[test]
fn guest_that_only_speaks_2_4() {
    let cc = ClientConfig {
        versions: vec![VmbusVersion::V2_4],
        ..Default::default()
    };
    let mut w = Wire::new(ServerConfig::default(), cc);
    w.connect();
    assert_eq!(w.server.version(), Some(VmbusVersion::V2_4));
    assert_eq!(
        w.posted_on[0], MESSAGE_CONNECTION_ID,
        "pre-5.0 InitiateContact goes to connection 1"
    );
}

#[test]
fn host_refuses_newer_versions() {
    let sc = ServerConfig {
        versions: vec![VmbusVersion::V4_0],
        ..Default::default()
    };
    let mut w = Wire::new(sc, ClientConfig::default());
    w.connect();
    assert_eq!(w.client.version(), Some(VmbusVersion::V4_0));
    // 5.3, 5.2, 5.1, 5.0, 4.1 were refused.
    assert_eq!(w.server.stats().rejected, 5);
    let sc = ServerConfig {
        versions: vec![VmbusVersion::V6_0],
        ..Default::default()
    };
    let mut w = Wire::new(sc, ClientConfig::default());
    w.client.connect();
    w.pump();
    assert!(w.guest.contains(&ClientAction::ConnectFailed));
    assert_eq!(w.client.version(), None);
    assert_eq!(w.server.version(), None);
}

#[test]
fn offer_gpadl_open_close_reopen_teardown() {
    let mut w = Wire::new(ServerConfig::default(), ClientConfig::default());
    let relid = w.server.offer(nic(1)).unwrap();
    w.connect();
    assert_eq!(w.offered(), vec![relid]);
    let g = w.open(relid);
    let open = w.host.iter().find_map(|a| match a {
        Action::Open(o) => Some(o.clone()),
        _ => None,
    });
    let open = open.unwrap();
    assert_eq!(open.downstream_page_offset, 4);
    assert_eq!(open.gpadl.page_count(), 8);
    assert_eq!(open.connection_id, CHANNEL_CONNECTION_ID_BASE + relid);
    assert!(w.server.is_open(relid));
    // Opening again is refused with a failed OpenResult.
    w.client.close(relid).unwrap();
    w.pump();
    assert!(w.host.contains(&Action::Close { relid }));
    assert!(!w.server.is_open(relid));
    // Reopen on the same GPADL.
    w.client.open(relid, g, 4, 0, [0; 120]).unwrap();
    w.pump();
    assert!(w.server.is_open(relid));
    // Teardown while open is deferred until close.
    w.client.teardown_gpadl(g).unwrap();
    w.pump();
    assert_eq!(w.server.gpadl_count(), 1);
    w.client.close(relid).unwrap();
    w.pump();
    assert_eq!(w.server.gpadl_count(), 0);
    assert!(w.guest.contains(&ClientAction::GpadlTorndown { gpadl: g }));
    assert!(w.host.contains(&Action::GpadlReleased { gpadl: g }));
    assert_eq!(w.rejections, 0);
}

#[test]
fn refused_gpadls_and_opens_are_answered() {
    let sc = ServerConfig {
        max_gpadl_pages: 16,
        ..Default::default()
    };
    let mut w = Wire::new(sc, ClientConfig::default());
    let relid = w.server.offer(nic(1)).unwrap();
    w.connect();
    // Too many pages: the client hears a failed GpadlCreated rather than nothing.
    let big = w
        .client
        .create_gpadl(relid, &[GpaRange::whole_pages((0..17).collect())])
        .unwrap();
    w.pump();
    assert!(w.guest.contains(&ClientAction::GpadlCreated {
        relid,
        gpadl: big,
        ok: false
    }));
    // A ring GPADL too small to split.
    let small = w
        .client
        .create_gpadl(relid, &[GpaRange::whole_pages((0..3).collect())])
        .unwrap();
    w.pump();
    w.client.open(relid, small, 2, 0, [0; 120]).unwrap();
    w.pump();
    assert!(w.guest.contains(&ClientAction::Opened { relid, ok: false }));
    // Target VP out of range.
    let ok = w
        .client
        .create_gpadl(relid, &[GpaRange::whole_pages((0..8).collect())])
        .unwrap();
    w.pump();
    w.client.open(relid, ok, 4, 7, [0; 120]).unwrap();
    w.pump();
    assert_eq!(
        w.guest
            .iter()
            .filter(|a| **a == ClientAction::Opened { relid, ok: false })
            .count(),
        2
    );
    assert!(!w.server.is_open(relid));
    assert!(w.server.stats().rejected >= 3);
}

#[test]
fn rescind_while_open_then_release() {
    let mut w = Wire::new(ServerConfig::default(), ClientConfig::default());
    let relid = w.server.offer(nic(1)).unwrap();
    w.connect();
    w.open(relid);
    w.server.rescind(relid).unwrap();
    w.pump();
    assert!(w.host.contains(&Action::Close { relid }));
    assert!(w.guest.contains(&ClientAction::Rescinded { relid }));
    // The relid stays reserved until released.
    assert_eq!(w.server.channel_count(), 1);
    w.client.release_relid(relid).unwrap();
    w.pump();
    assert!(w.host.contains(&Action::Released { relid }));
    assert_eq!(w.server.channel_count(), 0);
    assert_eq!(w.server.gpadl_count(), 0);
    // A new offer may reuse the relid.
    assert_eq!(w.server.offer(nic(2)).unwrap(), relid);
}

#[test]
fn unload_and_reconnect() {
    let mut w = Wire::new(ServerConfig::default(), ClientConfig::default());
    let a = w.server.offer(nic(1)).unwrap();
    let b = w.server.offer(nic(2)).unwrap();
    w.connect();
    w.open(a);
    w.open(b);
    w.client.unload().unwrap();
    w.pump();
    assert!(w.guest.contains(&ClientAction::Unloaded));
    assert!(
        w.host.contains(&Action::Close { relid: a })
            && w.host.contains(&Action::Close { relid: b })
    );
    assert!(w.host.contains(&Action::Disconnected));
    assert_eq!(w.server.gpadl_count(), 0);
    assert_eq!(w.server.version(), None);
    w.guest.clear();
    w.connect();
    assert_eq!(w.offered(), vec![a, b], "offers survive the unload");
    w.open(a);
}

#[test]
fn hundred_channels_and_64_subchannels() {
    let mut w = Wire::new(ServerConfig::default(), ClientConfig::default());
    let relids: Vec<u32> = (0..100).map(|i| w.server.offer(nic(i)).unwrap()).collect();
    let instance = Guid {
        data1: 0xABCD,
        ..Guid::ZERO
    };
    let mut subs = vec![];
    for i in 0..=64u16 {
        let p = OfferParams {
            subchannel_index: i,
            ..OfferParams::new(class::NETWORK, instance)
        };
        subs.push(w.server.offer(p).unwrap());
    }
    w.connect();
    assert_eq!(w.offered().len(), 165);
    for r in relids.iter().chain(&subs) {
        w.open(*r);
    }
    assert!(relids.iter().chain(&subs).all(|r| w.server.is_open(*r)));
    let sub_offers: Vec<u16> = w
        .guest
        .iter()
        .filter_map(|a| match a {
            ClientAction::Offer(o) if { o.interface_instance } == instance => {
                Some(o.subchannel_index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(sub_offers, (0..=64).collect::<Vec<_>>());
    // Subchannels offered after connection arrive at once.
    let late = w
        .server
        .offer(OfferParams {
            subchannel_index: 65,
            ..OfferParams::new(class::NETWORK, instance)
        })
        .unwrap();
    w.pump();
    assert!(w.offered().contains(&late));
    assert_eq!(w.rejections, 0);
}

#[test]
fn modify_channel() {
    let sc = ServerConfig {
        vp_count: 2,
        ..Default::default()
    };
    let mut w = Wire::new(sc, ClientConfig::default());
    let relid = w.server.offer(nic(1)).unwrap();
    w.connect();
    w.open(relid);
    w.client.modify_channel(relid, 1).unwrap();
    w.pump();
    assert!(w.host.contains(&Action::Retarget {
        relid,
        target_vp: 1
    }));
    assert!(
        w.guest
            .contains(&ClientAction::Modified { relid, ok: true })
    );
}

#[test]
fn hostile_host_messages_are_rejected_by_the_client() {
    let mut c = Client::new(ClientConfig::default());
    let bad = [
        Message::OpenResult(crate::channel::OpenResult {
            child_relid: 1,
            open_id: 1,
            status: 0,
        }),
        Message::UnloadResponse,
        Message::GpadlTorndown(crate::channel::GpadlTorndown { gpadl: 5 }),
    ];
    for m in bad {
        let (buf, n) = m.to_payload();
        assert!(c.handle_message(&buf[..n]).is_err());
    }
    assert_eq!(c.stats().rejected, 3);
    assert!(c.poll_action().is_none());
}

fn arb_message() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    // Mostly well-formed messages with small relids and GPADL ids, so the fuzzer walks
    // deep into the state machine; sometimes raw bytes.
    let relid = 0u32..4;
    let gpadl = 0u32..4;
    prop_oneof![
        (
            prop_oneof![Just(0x0002_0004u32), Just(0x0005_0003u32), any::<u32>()],
            0u32..3,
            0u8..20
        )
            .prop_map(|(v, vp, sint)| {
                let ic = crate::channel::InitiateContact {
                    version_requested: v,
                    target_vcpu: vp,
                    interrupt_page_or_target_info: crate::channel::InitiateContact::target_info(
                        sint, 0, 0,
                    ),
                    monitor_page1: 0,
                    monitor_page2: 0,
                };
                Message::InitiateContact(ic, None)
            }),
        Just(Message::RequestOffers),
        Just(Message::Unload),
        (
            relid.clone(),
            gpadl.clone(),
            0u16..80,
            0u16..3,
            proptest::collection::vec(any::<u64>(), 0..27)
        )
            .prop_map(|(r, g, len, count, words)| {
                let h = crate::channel::GpadlHeader {
                    child_relid: r,
                    gpadl: g,
                    range_buflen: len * 8,
                    range_count: count,
                };
                Message::GpadlHeader(crate::channel::GpadlHeaderMessage::new(h, &words).unwrap())
            }),
        (
            gpadl.clone(),
            proptest::collection::vec(0u64..0x2000, 0..28)
        )
            .prop_map(|(g, words)| {
                Message::GpadlBody(
                    crate::channel::GpadlBodyMessage::new(
                        crate::channel::GpadlBody {
                            msg_number: 1,
                            gpadl: g,
                        },
                        &words,
                    )
                    .unwrap(),
                )
            }),
        (relid.clone(), gpadl.clone(), 0u32..10, 0u32..3).prop_map(|(r, g, off, vp)| {
            Message::OpenChannel(
                crate::channel::OpenChannel {
                    child_relid: r,
                    open_id: r,
                    ring_buffer_gpadl_handle: g,
                    target_vp: vp,
                    downstream_ring_buffer_page_offset: off,
                    user_data: [0; 120],
                },
                None,
            )
        }),
        relid
            .clone()
            .prop_map(|r| Message::CloseChannel(crate::channel::ChildRelid { child_relid: r })),
        relid
            .clone()
            .prop_map(|r| Message::RelIdReleased(crate::channel::ChildRelid { child_relid: r })),
        (relid.clone(), gpadl).prop_map(|(r, g)| Message::GpadlTeardown(
            crate::channel::GpadlTeardown {
                child_relid: r,
                gpadl: g
            }
        )),
        (relid, 0u32..3).prop_map(|(r, vp)| Message::ModifyChannel(
            crate::channel::ModifyChannel {
                child_relid: r,
                target_vp: vp
            }
        )),
    ]
    .prop_map(|m| {
        let (buf, n) = m.to_payload();
        buf[..n].to_vec()
    })
    .boxed()
    .prop_union(proptest::collection::vec(any::<u8>(), 0..64).boxed())
}

proptest::proptest! {
    /// A hostile guest: arbitrary sequences of channel-management messages and host
    /// events. The server never panics, keeps its invariants, and stays bounded.
    #[test]
    fn hostile_guest(steps in proptest::collection::vec((arb_message(), 0u8..10), 1..60)) {
        let sc = ServerConfig { vp_count: 2, max_gpadls: 8, max_gpadl_pages: 64, max_channels: 8, ..Default::default() };
        let mut s = Server::new(sc);
        for i in 0..3 { let _ = s.offer(nic(i)); }
        let mut actions = 0usize;
        for (bytes, host_event) in steps {
            let _ = s.handle_message(&bytes);
            match host_event {
                0 => { let _ = s.offer(nic(9)); }
                1 => { let _ = s.rescind(1); }
                _ => {}
            }
            while let Some(a) = s.poll_action() {
                actions += 1;
                match a {
                    Action::Open(o) => s.open_complete(o.relid, o.open_id, o.relid % 2 == 0),
                    Action::Send { message, .. } => {
                        proptest::prop_assert!(message.message_type() != MessageType::INVALID);
                    }
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(s.check_invariants(), Ok(()));
            proptest::prop_assert!(s.gpadl_count() <= 8 && s.channel_count() <= 8);
        }
        proptest::prop_assert!(actions < 100_000);
    }
}
