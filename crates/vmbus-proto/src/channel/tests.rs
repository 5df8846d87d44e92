//! Golden vectors (built by hand from the Linux struct layouts) and property tests.

use super::*;
use crate::guid::{Guid, class};
use crate::version::{FeatureFlags, VmbusVersion};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden(m: Message, bytes: &[u8]) {
    let (buf, n) = m.to_payload();
    assert_eq!(&buf[..n], bytes, "emit {m:?}");
    assert_eq!(Message::parse(bytes).unwrap(), m, "parse");
}

#[test]
fn initiate_contact_linux_5_3() {
    // struct vmbus_channel_initiate_contact as Linux sends it for 5.3: msgtype 14,
    // version 0x00050003 @8, target_vcpu 0 @12, msg_sint 2 @16, msg_vtl 0 @17,
    // monitor_page1 @24, monitor_page2 @32.
    let bytes = hex("0e000000 00000000  03000500 00000000  02000000 00000000
         0010a000 00000000  0020a000 00000000");
    let ic = InitiateContact {
        version_requested: VmbusVersion::V5_3.0,
        target_vcpu: 0,
        interrupt_page_or_target_info: InitiateContact::target_info(2, 0, 0),
        monitor_page1: 0xA0_1000,
        monitor_page2: 0xA0_2000,
    };
    assert_eq!(ic.msg_sint(), 2);
    golden(Message::InitiateContact(ic, None), &bytes);
    // Before 5.3 negotiation nothing is needed: InitiateContact is allowed unconnected.
    assert!(Message::parse_for(&bytes, None, FeatureFlags::empty()).is_ok());
}

#[test]
fn version_response_forms() {
    // 5.x: {supported 1, state 0, pad, msg_conn_id 4}.
    let bytes = hex("0f000000 00000000 01000000 04000000");
    let r = VersionResponseMessage {
        response: VersionResponse {
            version_supported: 1,
            connection_state: 0,
            padding: 0,
            msg_conn_id: 4,
        },
        supported_features: None,
        monitor_pages: None,
    };
    golden(Message::VersionResponse(r), &bytes);
    // A pre-5.0 host's 9-byte form parses with the rest zero.
    let legacy = hex("0f000000 00000000 01");
    match Message::parse(&legacy).unwrap() {
        Message::VersionResponse(v) => {
            assert_eq!(v.response.version_supported, 1);
            assert_eq!(v.response.msg_conn_id, 0);
        }
        other => panic!("{other:?}"),
    }
    // VersionResponse2 at 6.0 keeps the features; at 5.3 they are dropped.
    let v2 = hex("0f000000 00000000 01000000 04000000 21000000");
    let at = |v| match Message::parse_for(&v2, Some(v), FeatureFlags::empty()).unwrap() {
        Message::VersionResponse(r) => r.supported_features,
        other => panic!("{other:?}"),
    };
    assert_eq!(at(VmbusVersion::V6_0), Some(0x21));
    assert_eq!(at(VmbusVersion::V5_3), None);
}

#[test]
fn offer_channel_netvsc() {
    // 196 bytes; if_type @8 (NIC GUID wire bytes), if_instance @24, chn_flags @56,
    // sub_channel_index @180, child_relid @184, monitorid @188, monitor_allocated @189,
    // is_dedicated_interrupt @190, connection_id @192.
    let mut bytes = vec![0u8; 196];
    bytes[0] = 1;
    bytes[8..24].copy_from_slice(&hex("635161f83edfc546913ff2d2f965ed0e"));
    bytes[24..40].copy_from_slice(&hex("00112233445566778899aabbccddeeff"));
    bytes[56] = 0x01; // ENUMERATE_DEVICE_INTERFACE
    bytes[180] = 0; // primary channel
    bytes[184] = 0x0E; // relid 14
    bytes[190] = 1; // dedicated interrupt
    bytes[192] = 0x2E; // connection id 0x2E
    let offer = OfferChannel {
        interface_type: class::NETWORK,
        interface_instance: Guid::from_bytes(
            hex("00112233445566778899aabbccddeeff").try_into().unwrap(),
        ),
        interrupt_latency: 0,
        reserved2: 0,
        flags: offer_flags::ENUMERATE_DEVICE_INTERFACE,
        mmio_megabytes: 0,
        user_defined: [0; 120],
        subchannel_index: 0,
        mmio_megabytes_optional: 0,
        child_relid: 14,
        monitor_id: 0,
        monitor_allocated: 0,
        is_dedicated_interrupt: 1,
        connection_id: 0x2E,
    };
    golden(Message::OfferChannel(offer), &bytes);
}

#[test]
fn open_channel_and_result() {
    // OPENCHANNEL 148 bytes: relid @8, openid @12, gpadl @16, target_vp @20,
    // downstream offset (pages) @24, userdata @28.
    let mut bytes = vec![0u8; 148];
    bytes[0] = 5;
    bytes[8] = 14;
    bytes[12] = 14;
    bytes[16..20].copy_from_slice(&0xE1E10u32.to_le_bytes());
    bytes[20] = 1;
    bytes[24] = 128;
    let open = OpenChannel {
        child_relid: 14,
        open_id: 14,
        ring_buffer_gpadl_handle: 0xE1E10,
        target_vp: 1,
        downstream_ring_buffer_page_offset: 128,
        user_data: [0; 120],
    };
    golden(Message::OpenChannel(open, None), &bytes);
    // OpenChannel2 extension is only honoured at 6.0 with the feature.
    let mut b2 = bytes.clone();
    b2.extend_from_slice(&hex("33000000 0500 0100"));
    let ext = OpenChannel2Ext {
        connection_id: 0x33,
        event_flag: 5,
        flags: 1,
    };
    golden(Message::OpenChannel(open, Some(ext)), &b2);
    let got = Message::parse_for(&b2, Some(VmbusVersion::V5_3), FeatureFlags::all()).unwrap();
    assert_eq!(got, Message::OpenChannel(open, None));
    let got = Message::parse_for(
        &b2,
        Some(VmbusVersion::V6_0),
        FeatureFlags::GUEST_SPECIFIED_SIGNAL_PARAMETERS,
    )
    .unwrap();
    assert_eq!(got, Message::OpenChannel(open, Some(ext)));

    golden(
        Message::OpenResult(OpenResult {
            child_relid: 14,
            open_id: 14,
            status: STATUS_UNSUCCESSFUL,
        }),
        &hex("06000000 00000000 0e000000 0e000000 010000c0"),
    );
}

#[test]
fn small_messages() {
    golden(Message::RequestOffers, &hex("03000000 00000000"));
    golden(Message::AllOffersDelivered, &hex("04000000 00000000"));
    golden(Message::Unload, &hex("10000000 00000000"));
    golden(Message::UnloadResponse, &hex("11000000 00000000"));
    golden(
        Message::RescindChannelOffer(ChildRelid { child_relid: 3 }),
        &hex("02000000 00000000 03000000"),
    );
    golden(
        Message::CloseChannel(ChildRelid { child_relid: 3 }),
        &hex("07000000 00000000 03000000"),
    );
    golden(
        Message::RelIdReleased(ChildRelid { child_relid: 3 }),
        &hex("0d000000 00000000 03000000"),
    );
    golden(
        Message::GpadlCreated(GpadlCreated {
            child_relid: 3,
            gpadl: 0x10,
            status: 0,
        }),
        &hex("0a000000 00000000 03000000 10000000 00000000"),
    );
    golden(
        Message::GpadlTeardown(GpadlTeardown {
            child_relid: 3,
            gpadl: 0x10,
        }),
        &hex("0b000000 00000000 03000000 10000000"),
    );
    golden(
        Message::GpadlTorndown(GpadlTorndown { gpadl: 0x10 }),
        &hex("0c000000 00000000 10000000"),
    );
    golden(
        Message::ModifyChannel(ModifyChannel {
            child_relid: 3,
            target_vp: 1,
        }),
        &hex("16000000 00000000 03000000 01000000"),
    );
    golden(
        Message::ModifyChannelResponse(ModifyChannelResponse {
            child_relid: 3,
            status: 0,
        }),
        &hex("18000000 00000000 03000000 00000000"),
    );
    golden(
        Message::ModifyConnectionResponse {
            connection_state: 1,
        },
        &hex("1a000000 00000000 01"),
    );
    golden(Message::Pause, &hex("1b000000 00000000"));
    golden(Message::PauseResponse, &hex("1c000000 00000000"));
    golden(Message::Resume, &hex("1d000000 00000000"));
}

#[test]
fn gpadl_header_golden() {
    // GPADL_HEADER: relid @8, gpadl @12, range_buflen @16, rangecount @18, then
    // gpa_range {byte_count, byte_offset} @20 and pfns.
    let bytes = hex("08000000 00000000 0e000000 101e0e00 1800 0100
         00200000 00000000 00100000 00000000 01100000 00000000");
    let m = GpadlHeaderMessage::new(
        GpadlHeader {
            child_relid: 14,
            gpadl: 0xE1E10,
            range_buflen: 24,
            range_count: 1,
        },
        &[0x2000, 0x1000, 0x1001],
    )
    .unwrap();
    golden(Message::GpadlHeader(m), &bytes);
    let body = hex("09000000 00000000 01000000 101e0e00 02100000 00000000");
    let b = GpadlBodyMessage::new(
        GpadlBody {
            msg_number: 1,
            gpadl: 0xE1E10,
        },
        &[0x1002],
    )
    .unwrap();
    golden(Message::GpadlBody(b), &body);
}

#[test]
fn gating() {
    let v = |x| Some(x);
    let none = FeatureFlags::empty();
    assert!(!MessageType::OPEN_CHANNEL.allowed(None, none));
    assert!(MessageType::OPEN_CHANNEL.allowed(v(VmbusVersion::V2_4), none));
    assert!(!MessageType::MODIFY_CHANNEL.allowed(v(VmbusVersion::V4_0), none));
    assert!(MessageType::MODIFY_CHANNEL.allowed(v(VmbusVersion::V4_1), none));
    assert!(!MessageType::MODIFY_CHANNEL_RESPONSE.allowed(v(VmbusVersion::V5_2), none));
    assert!(MessageType::MODIFY_CHANNEL_RESPONSE.allowed(v(VmbusVersion::V5_3), none));
    assert!(!MessageType::MODIFY_CONNECTION.allowed(v(VmbusVersion::V6_0), none));
    assert!(
        MessageType::MODIFY_CONNECTION
            .allowed(v(VmbusVersion::V6_0), FeatureFlags::MODIFY_CONNECTION)
    );
    assert!(!MessageType::PAUSE.allowed(v(VmbusVersion::V5_3), FeatureFlags::all()));
    assert!(!MessageType(30).allowed(v(VmbusVersion::V6_0), FeatureFlags::all()));
    assert!(!MessageType::INVALID.allowed(v(VmbusVersion::V6_0), FeatureFlags::all()));
    let err = Message::parse_for(
        &hex("16000000 00000000 03000000 01000000"),
        v(VmbusVersion::V4_0),
        none,
    );
    assert!(matches!(err, Err(crate::Error::NotAllowed { .. })));
}

#[test]
fn rejections() {
    assert!(Message::parse(&[]).is_err());
    assert!(Message::parse(&hex("0e000000 00000000 03000500")).is_err()); // short InitiateContact
    assert!(matches!(
        Message::parse(&hex("1e000000 00000000")),
        Err(crate::Error::UnknownType { value: 30, .. })
    ));
    assert!(Message::parse(&hex("00000000 00000000")).is_err());
    // Partial GPADL word.
    assert!(Message::parse(&hex("09000000 00000000 01000000 10000000 0102")).is_err());
    // Too many words for one body (29).
    let mut b = hex("09000000 00000000 01000000 10000000");
    b.extend(std::iter::repeat_n(0u8, 29 * 8));
    assert!(Message::parse(&b).is_err());
    assert!(Message::parse(&[0u8; 241]).is_err());
}

/// Canonical lengths per type, for the byte-level roundtrip property.
fn canonical_lengths(t: u32) -> &'static [usize] {
    match t {
        1 => &[196],
        2 | 7 | 12 | 13 | 20 => &[12],
        3 | 4 | 16 | 17 | 27 | 28 | 29 => &[8],
        5 => &[148, 156],
        6 | 10 => &[20],
        8 => &[20, 28, 36, 236],
        9 => &[16, 24, 240],
        11 | 22 | 24 => &[16],
        14 => &[40, 56],
        15 => &[16, 20, 40],
        18 => &[28],
        19 => &[20],
        21 => &[40, 56],
        23 => &[44],
        25 => &[24],
        26 => &[9],
        _ => &[],
    }
}

proptest::proptest! {
    #[test]
    fn parse_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = Message::parse(&bytes);
        for v in VmbusVersion::ALL {
            let _ = Message::parse_for(&bytes, Some(v), FeatureFlags::all());
        }
    }

    #[test]
    fn canonical_bytes_roundtrip(
        t in 1u32..=29,
        pick in 0usize..4,
        fill in proptest::collection::vec(proptest::prelude::any::<u8>(), 240),
    ) {
        let lens = canonical_lengths(t);
        let len = lens[pick % lens.len()];
        let mut bytes = fill[..len].to_vec();
        bytes[..4].copy_from_slice(&t.to_le_bytes());
        bytes[4..8].fill(0);
        if t == 8 {
            // Keep the GPADL header words a whole number (always true by construction).
            proptest::prop_assert_eq!((len - 20) % 8, 0);
        }
        let m = Message::parse(&bytes).unwrap();
        let (buf, n) = m.to_payload();
        proptest::prop_assert_eq!(&buf[..n], &bytes[..]);
        proptest::prop_assert_eq!(Message::parse(&buf[..n]).unwrap(), m);
    }
}
