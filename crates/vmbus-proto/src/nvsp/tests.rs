//! Every message against hand-written Linux bytes, round trips, and hostile input.

use super::*;
use crate::error::Error;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;
use zerocopy::FromZeros;

/// Pads a hand-written prefix with zeros to the 40 bytes Linux sends.
fn padded(prefix: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    assert!(v.len() <= NVSP_MESSAGE_SIZE);
    v.resize(NVSP_MESSAGE_SIZE, 0);
    v
}

/// Parses `bytes`, compares with `msg`, and re-emits byte for byte.
fn golden(bytes: &[u8], msg: &NvspMessage) {
    assert_eq!(&NvspMessage::parse(bytes).unwrap(), msg);
    assert_eq!(msg.to_vec().unwrap(), bytes);
    let mut buf = [0xAAu8; 64];
    let n = msg.emit(&mut buf).unwrap();
    assert_eq!(&buf[..n], bytes);
}

#[test]
fn enum_values_match_linux() {
    assert_eq!(NvspMessageType::SEND_NDIS_VER.0, 100);
    assert_eq!(NvspMessageType::SEND_RNDIS_PKT_COMPLETE.0, 108);
    assert_eq!(NvspMessageType::SEND_NDIS_CONFIG.0, 125);
    assert_eq!(NvspMessageType::ALLOC_CHIMNEY_HANDLE_COMP.0, 127);
    assert_eq!(NvspMessageType::UPLINK_CONNECT_STATE_DEPRECATED.0, 130);
    assert_eq!(NvspMessageType::SEND_INDIRECTION_TABLE.0, 134);
    assert_eq!(NvspMessageType::PD_POST_BATCH.0, 136);
    // Every value 100..=136 is named, consecutively (the C enum has no gaps).
    for v in 100..=136u32 {
        assert!(NvspMessageType(v).is_known(), "{v}");
    }
    assert_eq!(NvspMessageType::KNOWN.len(), 3 + 37);
    assert_eq!(NvspStatus::PROTOCOL_UNSUPPORTED.0, 7);
    assert_eq!(NvspVersion::V2.major(), 3);
    assert_eq!(NvspVersion::V2.minor(), 2);
    assert_eq!(NdisVersion::new(6, 30), NdisVersion::V6_30);
    assert_eq!(NdisVersion::from_parts(6, 20), Some(NdisVersion::V6_20));
    assert_eq!(NdisVersion::from_parts(0x1_0000, 0), None);
    assert_eq!(NvspPdApiOp::FREE_COM_BUF.0, 9);
    assert_eq!(NdisConfigCapabilities::RSC.bits(), 0x80);
    assert_eq!(NETVSC_DEFAULT_RX_SECTIONS, 9709);
}

/// netvsc's default receive-buffer section count (16 MiB / 1728), used in a golden
/// vector below.
const NETVSC_DEFAULT_RX_SECTIONS: u32 = NETVSC_RECEIVE_BUFFER_DEFAULT / NETVSC_RECV_SECTION_SIZE;

#[test]
fn versions_and_gating() {
    assert!(NvspVersion::ALL.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        NvspVersion::LINUX_GUEST_ORDER,
        [
            NvspVersion(0x60001),
            NvspVersion(0x60000),
            NvspVersion(0x50000),
            NvspVersion(0x40000),
            NvspVersion(0x30002),
            NvspVersion(0x2)
        ]
    );
    assert!(
        NvspVersion::LINUX_GUEST_ORDER
            .windows(2)
            .all(|w| w[0] > w[1])
    );
    assert_eq!(NvspMessageType::INIT.min_version(), Some(NvspVersion::V1));
    assert_eq!(
        NvspMessageType::SEND_RNDIS_PKT.min_version(),
        Some(NvspVersion::V1)
    );
    assert_eq!(
        NvspMessageType::SEND_NDIS_CONFIG.min_version(),
        Some(NvspVersion::V2)
    );
    assert_eq!(
        NvspMessageType::SWITCH_DATA_PATH.min_version(),
        Some(NvspVersion::V4)
    );
    assert_eq!(
        NvspMessageType::SUBCHANNEL.min_version(),
        Some(NvspVersion::V5)
    );
    assert_eq!(NvspMessageType::PD_API.min_version(), Some(NvspVersion::V6));
    assert_eq!(NvspMessageType::NONE.min_version(), None);
    assert_eq!(NvspMessageType(3).min_version(), None);
    assert_eq!(NvspMessageType(137).min_version(), None);
    assert!(!NvspVersion::V4.allows(NvspMessageType::SUBCHANNEL));
    assert!(NvspVersion::V5.allows(NvspMessageType::SUBCHANNEL));
    assert!(NvspVersion::V1.allows(NvspMessageType::INIT));
    let sub = NvspMessage::Subchannel {
        op: NvspSubchannelOp::ALLOCATE,
        num_subchannels: 3,
    };
    assert_eq!(
        sub.check_allowed(NvspVersion::V4),
        Err(Error::NotAllowed {
            what: "SUBCHANNEL",
            version: 0x40000
        })
    );
    assert_eq!(sub.check_allowed(NvspVersion::V6_1), Ok(()));
    assert_eq!(NvspVersion::V4.linux_ndis_version(), NdisVersion::V6_1);
    assert_eq!(NvspVersion::V5.linux_ndis_version(), NdisVersion::V6_30);
}

#[test]
fn golden_init() {
    let bytes = padded(&[
        0x01, 0x00, 0x00, 0x00, // msg_type INIT
        0x01, 0x00, 0x06, 0x00, // min 0x60001
        0x01, 0x00, 0x06, 0x00, // max 0x60001
    ]);
    golden(&bytes, &NvspMessage::init(NvspVersion::V6_1));
}

#[test]
fn golden_init_complete() {
    let bytes = padded(&[
        0x02, 0x00, 0x00, 0x00, // INIT_COMPLETE
        0x01, 0x00, 0x06, 0x00, // negotiated 0x60001
        0x00, 0x00, 0x00, 0x00, // max_mdl_chain_len
        0x01, 0x00, 0x00, 0x00, // status SUCCESS
    ]);
    golden(
        &bytes,
        &NvspMessage::InitComplete {
            negotiated_protocol_ver: NvspVersion::V6_1,
            max_mdl_chain_len: 0,
            status: NvspStatus::SUCCESS,
        },
    );
}

#[test]
fn golden_send_ndis_version() {
    let bytes = padded(&[
        0x64, 0x00, 0x00, 0x00, // SEND_NDIS_VER (100)
        0x06, 0x00, 0x00, 0x00, // major 6
        0x1E, 0x00, 0x00, 0x00, // minor 30
    ]);
    golden(&bytes, &NvspMessage::send_ndis_version(NdisVersion::V6_30));
}

#[test]
fn golden_send_ndis_config() {
    let bytes = padded(&[
        0x7D, 0x00, 0x00, 0x00, // SEND_NDIS_CONFIG (125)
        0xEA, 0x05, 0x00, 0x00, // mtu 1514
        0x00, 0x00, 0x00, 0x00, // reserved
        0x2C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sriov|ieee8021q|teaming
    ]);
    golden(
        &bytes,
        &NvspMessage::SendNdisConfig {
            mtu: 1514,
            capability: NdisConfigCapabilities::IEEE8021Q
                | NdisConfigCapabilities::SRIOV
                | NdisConfigCapabilities::TEAMING,
        },
    );
}

#[test]
fn golden_send_recv_buf() {
    let bytes = padded(&[
        0x65, 0x00, 0x00, 0x00, // SEND_RECV_BUF (101)
        0x78, 0x56, 0x34, 0x12, // gpadl 0x12345678
        0xFE, 0xCA, // id 0xCAFE (6-byte packed body)
    ]);
    golden(
        &bytes,
        &NvspMessage::SendReceiveBuffer {
            gpadl_handle: 0x1234_5678,
            id: NETVSC_RECEIVE_BUFFER_ID,
        },
    );
}

#[test]
fn golden_send_recv_buf_complete() {
    let bytes = padded(&[
        0x66, 0x00, 0x00, 0x00, // SEND_RECV_BUF_COMPLETE (102)
        0x01, 0x00, 0x00, 0x00, // status SUCCESS
        0x01, 0x00, 0x00, 0x00, // num_sections 1
        0x00, 0x00, 0x00, 0x00, // offset 0
        0xC0, 0x06, 0x00, 0x00, // sub_alloc_size 1728
        0xED, 0x25, 0x00, 0x00, // num_sub_allocs 9709
        0xC0, 0xFF, 0xFF, 0x00, // end_offset 9709 * 1728 = 0xFFFFC0
    ]);
    golden(
        &bytes,
        &NvspMessage::SendReceiveBufferComplete {
            status: NvspStatus::SUCCESS,
            sections: vec![Nvsp1ReceiveBufferSection {
                offset: 0,
                sub_alloc_size: NETVSC_RECV_SECTION_SIZE,
                num_sub_allocs: NETVSC_DEFAULT_RX_SECTIONS,
                end_offset: NETVSC_DEFAULT_RX_SECTIONS * NETVSC_RECV_SECTION_SIZE,
            }],
        },
    );
}

#[test]
fn golden_send_send_buf_and_complete() {
    let bytes = padded(&[
        0x68, 0x00, 0x00, 0x00, // SEND_SEND_BUF (104)
        0x02, 0x00, 0x00, 0x00, // gpadl 2
        0x00, 0x00, // id 0
    ]);
    golden(
        &bytes,
        &NvspMessage::SendSendBuffer {
            gpadl_handle: 2,
            id: 0,
        },
    );
    let bytes = padded(&[
        0x69, 0x00, 0x00, 0x00, // SEND_SEND_BUF_COMPLETE (105)
        0x01, 0x00, 0x00, 0x00, // SUCCESS
        0x00, 0x18, 0x00, 0x00, // section_size 6144
    ]);
    golden(
        &bytes,
        &NvspMessage::SendSendBufferComplete {
            status: NvspStatus::SUCCESS,
            section_size: NETVSC_SEND_SECTION_SIZE,
        },
    );
}

#[test]
fn golden_send_rndis_pkt() {
    let bytes = padded(&[
        0x6B, 0x00, 0x00, 0x00, // SEND_RNDIS_PKT (107)
        0x01, 0x00, 0x00, 0x00, // RMC_CONTROL
        0xFF, 0xFF, 0xFF, 0xFF, // no send-buffer section
        0x00, 0x00, 0x00, 0x00, // size 0
    ]);
    golden(
        &bytes,
        &NvspMessage::SendRndisPacket {
            channel_type: NvspChannelType::RMC_CONTROL,
            send_buf_section_index: NETVSC_INVALID_INDEX,
            send_buf_section_size: 0,
        },
    );
    let bytes = padded(&[
        0x6C, 0x00, 0x00, 0x00, // SEND_RNDIS_PKT_COMPLETE (108)
        0x01, 0x00, 0x00, 0x00, // SUCCESS
    ]);
    golden(
        &bytes,
        &NvspMessage::SendRndisPacketComplete {
            status: NvspStatus::SUCCESS,
        },
    );
}

#[test]
fn golden_subchannel() {
    let bytes = padded(&[
        0x85, 0x00, 0x00, 0x00, // SUBCHANNEL (133)
        0x01, 0x00, 0x00, 0x00, // ALLOCATE
        0x03, 0x00, 0x00, 0x00, // 3 subchannels
    ]);
    golden(
        &bytes,
        &NvspMessage::Subchannel {
            op: NvspSubchannelOp::ALLOCATE,
            num_subchannels: 3,
        },
    );
    // The same bytes in a completion packet: status SUCCESS, 3 allocated.
    assert_eq!(
        NvspMessage::parse_completion(&bytes).unwrap(),
        NvspMessage::SubchannelComplete {
            status: NvspStatus::SUCCESS,
            num_subchannels: 3
        }
    );
}

#[test]
fn golden_v4_messages() {
    let bytes = padded(&[
        0x80, 0x00, 0x00, 0x00, // SEND_VF_ASSOCIATION (128)
        0x01, 0x00, 0x00, 0x00, // allocated
        0x2A, 0x00, 0x00, 0x00, // serial 42
    ]);
    golden(
        &bytes,
        &NvspMessage::SendVfAssociation {
            allocated: 1,
            serial: 42,
        },
    );
    let bytes = padded(&[
        0x81, 0x00, 0x00, 0x00, // SWITCH_DATA_PATH (129)
        0x01, 0x00, 0x00, 0x00, // VF
    ]);
    golden(
        &bytes,
        &NvspMessage::SwitchDataPath {
            active_datapath: NvspDataPath::VF,
        },
    );
}

#[test]
fn golden_alloc_rxbuf_comp_is_packed() {
    let bytes = padded(&[
        0x79, 0x00, 0x00, 0x00, // ALLOC_RXBUF_COMP (121)
        0x00, 0x00, 0x00, 0x00, // status
        0x07, 0x00, 0x00, 0x00, // alloc_id
        0x09, 0x00, 0x00, 0x00, // gpadl
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // recv_buf_id at body offset 12
    ]);
    golden(
        &bytes,
        &NvspMessage::AllocRxbufComplete {
            status: 0,
            alloc_id: 7,
            gpadl_handle: 9,
            recv_buf_id: 0x0807_0605_0403_0201,
        },
    );
}

#[test]
fn golden_oid_query_ex() {
    let bytes = padded(&[
        0x83, 0x00, 0x00, 0x00, // OID_QUERY_EX (131)
        0x80, 0x01, 0x08, 0x00, // NDIS_OBJECT_HEADER {0x80, rev 1, size 8}
        0x06, 0x01, 0x01, 0x00, // OID 0x00010106
    ]);
    golden(
        &bytes,
        &NvspMessage::OidQueryEx(Nvsp5OidQueryEx {
            header_type: 0x80,
            header_revision: 1,
            header_size: 8,
            oid: 0x0001_0106,
        }),
    );
}

#[test]
fn golden_pd_api_completion_fills_40_bytes() {
    let mut bytes = vec![0x87, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]; // PD_API, CONFIG
    bytes.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // status
    bytes.extend_from_slice(&[0x04, 0x00, 0x02, 0x01, 0x01]); // config {4, 2, 1, 1}
    bytes.resize(NVSP_MESSAGE_SIZE, 0);
    let msg = NvspMessage::parse_completion(&bytes).unwrap();
    let NvspMessage::PdApiComplete(comp) = msg.clone() else {
        panic!("{msg:?}")
    };
    assert_eq!({ comp.op }, NvspPdApiOp::CONFIG);
    assert_eq!(
        comp.config(),
        Nvsp6PdApiCompConfig {
            num_pd_q: 4,
            num_rss_q: 2,
            is_supported: 1,
            is_enabled: 1
        }
    );
    assert_eq!(msg.to_vec().unwrap(), bytes);
    // The 36-byte body needs all 40 bytes: a 32-byte message is too short.
    assert!(matches!(
        NvspMessage::parse_completion(&bytes[..32]),
        Err(Error::Truncated {
            need: 36,
            have: 28,
            ..
        })
    ));
}

#[test]
fn pd_api_request_accessors() {
    let mut req = Nvsp6PdApiReq {
        op: NvspPdApiOp::CONFIG,
        params: [0; PD_API_REQ_PARAMS_SIZE],
    };
    req.params[..8].copy_from_slice(&0xFEE0_0000u64.to_le_bytes());
    req.params[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
    req.params[12..14].copy_from_slice(&8u16.to_le_bytes());
    assert_eq!(
        req.config(),
        Nvsp6PdApiReqConfig {
            mmio_pa: 0xFEE0_0000,
            mmio_len: 0x1000,
            num_subchn: 8
        }
    );
    let msg = NvspMessage::PdApi(req);
    assert_eq!(NvspMessage::parse(&msg.to_vec().unwrap()).unwrap(), msg);
}

#[test]
fn pre_v6_28_byte_messages_parse() {
    let bytes = padded(&[
        0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 0x00, 0x02, 0x00, 0x03, 0x00,
    ]);
    let expected = NvspMessage::init(NvspVersion::V2);
    assert_eq!(
        NvspMessage::parse(&bytes[..NVSP_MESSAGE_SIZE_PRE_V6]).unwrap(),
        expected
    );
    assert_eq!(NvspMessage::parse(&bytes[..32]).unwrap(), expected);
    // The largest pre-v6 body (SEND_RECV_BUF_COMPLETE with one section) fits 28 bytes.
    let complete = NvspMessage::SendReceiveBufferComplete {
        status: NvspStatus::SUCCESS,
        sections: vec![Nvsp1ReceiveBufferSection {
            offset: 0,
            sub_alloc_size: 1728,
            num_sub_allocs: 10,
            end_offset: 17280,
        }],
    };
    let v = complete.to_vec().unwrap();
    assert_eq!(
        NvspMessage::parse(&v[..NVSP_MESSAGE_SIZE_PRE_V6]).unwrap(),
        complete
    );
    // A body as short as its own struct is enough.
    assert_eq!(
        NvspMessage::parse(&[0x67, 0, 0, 0, 0xFE, 0xCA]).unwrap(),
        NvspMessage::RevokeReceiveBuffer { id: 0xCAFE }
    );
}

#[test]
fn emit_is_at_least_32_bytes() {
    let msg = NvspMessage::RevokeSendBuffer { id: 0 };
    assert_eq!(msg.emitted_len(), NVSP_MESSAGE_SIZE);
    assert!(msg.emitted_len() >= NVSP_MIN_SEND_SIZE);
    let mut small = [0u8; 39];
    assert_eq!(
        msg.emit(&mut small),
        Err(Error::BufferTooSmall {
            what: "nvsp_message",
            need: 40,
            have: 39
        })
    );
}

#[test]
fn unknown_types_are_not_errors() {
    for t in [0u32, 3, 99, 109, 123, 130, 137, 0xFFFF_FFFF] {
        let bytes = padded(&t.to_le_bytes());
        let msg = NvspMessage::parse(&bytes).unwrap();
        assert_eq!(
            msg,
            NvspMessage::Unknown {
                msg_type: NvspMessageType(t)
            }
        );
        assert_eq!(msg.to_vec().unwrap(), bytes);
    }
    // Even a header alone.
    assert_eq!(
        NvspMessage::parse(&[0x99, 0, 0, 0]).unwrap(),
        NvspMessage::Unknown {
            msg_type: NvspMessageType(0x99)
        }
    );
}

#[test]
fn truncated_bodies_are_rejected() {
    assert_eq!(
        NvspMessage::parse(&[1, 0, 0]),
        Err(Error::Truncated {
            what: "nvsp_message_header",
            need: 4,
            have: 3
        })
    );
    assert_eq!(
        NvspMessage::parse(&[1, 0, 0, 0, 1, 0, 6, 0]),
        Err(Error::Truncated {
            what: "nvsp_message_init",
            need: 8,
            have: 4
        })
    );
    assert!(matches!(
        NvspMessage::parse(&[0x65, 0, 0, 0, 1, 2, 3, 4, 0xFE]),
        Err(Error::Truncated {
            need: 6,
            have: 5,
            ..
        })
    ));
    assert!(matches!(
        NvspMessage::parse(&[0x7D, 0, 0, 0, 0xEA, 5, 0, 0, 0, 0, 0, 0]),
        Err(Error::Truncated {
            need: 16,
            have: 8,
            ..
        })
    ));
    // SEND_RECV_BUF_COMPLETE needs its 24-byte struct even with zero sections.
    assert!(matches!(
        NvspMessage::parse(&[0x66, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
        Err(Error::Truncated {
            need: 24,
            have: 8,
            ..
        })
    ));
}

#[test]
fn receive_buffer_sections_are_bounded() {
    // Two sections claimed, only one present in a 40-byte message.
    let mut bytes = padded(&[0x66, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(
        NvspMessage::parse(&bytes),
        Err(Error::Truncated {
            what: "nvsp_1_message_send_receive_buffer_complete sections",
            need: 40,
            have: 36,
        })
    );
    // Two sections present in a longer packet are fine.
    bytes.resize(4 + 8 + 32, 0);
    bytes[28..32].copy_from_slice(&0x40u32.to_le_bytes());
    let msg = NvspMessage::parse(&bytes).unwrap();
    let NvspMessage::SendReceiveBufferComplete { sections, .. } = &msg else {
        panic!()
    };
    assert_eq!(sections.len(), 2);
    assert_eq!({ sections[1].offset }, 0x40);
    assert_eq!(msg.to_vec().unwrap(), bytes);
    // More than the cap.
    let mut huge = vec![0u8; 4 + 8 + 16 * 17];
    huge[0] = 0x66;
    huge[8..12].copy_from_slice(&17u32.to_le_bytes());
    assert_eq!(
        NvspMessage::parse(&huge),
        Err(Error::TooMany {
            what: "receive buffer sections",
            count: 17,
            limit: 16
        })
    );
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        NvspMessage::parse(&huge),
        Err(Error::TooMany { .. })
    ));
    // Zero sections parse to an empty list.
    let zero = padded(&[0x66, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        NvspMessage::parse(&zero).unwrap(),
        NvspMessage::SendReceiveBufferComplete {
            status: NvspStatus::FAIL,
            sections: vec![]
        }
    );
    // Emitting more than the cap is refused.
    let too_many = NvspMessage::SendReceiveBufferComplete {
        status: NvspStatus::SUCCESS,
        sections: vec![Nvsp1ReceiveBufferSection::new_zeroed(); 17],
    };
    assert!(matches!(
        too_many.to_vec(),
        Err(Error::TooMany { count: 17, .. })
    ));
}

/// Hand-written SEND_INDIRECTION_TABLE as OpenVMM sends it: 16 entries at offset 12.
fn table_bytes_offset_12() -> Vec<u8> {
    let mut v = vec![
        0x86, 0x00, 0x00, 0x00, // SEND_INDIRECTION_TABLE (134)
        0x10, 0x00, 0x00, 0x00, // count 16
        0x0C, 0x00, 0x00, 0x00, // offset 12
    ];
    for i in 0..16u8 {
        v.extend_from_slice(&[i % 4, 0, 0, 0]); // round robin over 4 channels
    }
    v
}

#[test]
fn golden_send_indirection_table() {
    let bytes = table_bytes_offset_12();
    assert_eq!(bytes.len(), 76);
    let table = NvspSendIndirectionTable::parse(&bytes).unwrap();
    assert_eq!(table, NvspSendIndirectionTable::round_robin(4));
    assert_eq!(table.entries().len(), VRSS_SEND_TAB_SIZE);
    assert_eq!(table.entries()[5], 1);
    assert_eq!(table.to_vec(SEND_INDIRECTION_TABLE_OFFSET).unwrap(), bytes);
    // The fixed part through the generic parser.
    assert_eq!(
        NvspMessage::parse(&bytes).unwrap(),
        NvspMessage::SendIndirectionTable {
            count: 16,
            offset: 12
        }
    );
    // Linux's fix-up does not apply to a 76-byte message: same result at 6.0.
    assert_eq!(
        NvspSendIndirectionTable::parse_linux_compat(&bytes, NvspVersion::V6).unwrap(),
        table
    );
}

#[test]
fn send_indirection_table_after_message() {
    let table = NvspSendIndirectionTable::round_robin(3);
    let bytes = table
        .to_vec(SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE)
        .unwrap();
    assert_eq!(bytes.len(), 40 + 64);
    assert_eq!(&bytes[..12], &[0x86, 0, 0, 0, 16, 0, 0, 0, 40, 0, 0, 0]);
    assert!(bytes[12..40].iter().all(|&b| b == 0));
    assert_eq!(&bytes[40..48], &[0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(NvspSendIndirectionTable::parse(&bytes).unwrap(), table);
    // A buggy host that claims offset 12 but put the table at 40: the strict parser
    // believes the offset, Linux's compat rule (version <= 6.0) reads at 40.
    let mut buggy = bytes.clone();
    buggy[8] = 12;
    assert_ne!(NvspSendIndirectionTable::parse(&buggy).unwrap(), table);
    assert_eq!(
        NvspSendIndirectionTable::parse_linux_compat(&buggy, NvspVersion::V6).unwrap(),
        table
    );
    assert_ne!(
        NvspSendIndirectionTable::parse_linux_compat(&buggy, NvspVersion::V6_1).unwrap(),
        table
    );
}

#[test]
fn send_indirection_table_rejections() {
    let good = table_bytes_offset_12();
    // Entries past the end of the payload.
    assert_eq!(
        NvspSendIndirectionTable::parse(&good[..75]),
        Err(Error::OutOfBounds {
            what: "send indirection table",
            offset: 12,
            len: 64,
            bound: 75,
        })
    );
    // Offset past the payload, and an offset that would overflow.
    for offset in [64u32, 77, 0xFFFF_FFF0, u32::MAX] {
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&offset.to_le_bytes());
        assert!(
            matches!(
                NvspSendIndirectionTable::parse(&bad),
                Err(Error::OutOfBounds { .. })
            ),
            "{offset}"
        );
    }
    // Offset into the header / fixed part.
    let mut bad = good.clone();
    bad[8] = 4;
    assert_eq!(
        NvspSendIndirectionTable::parse(&bad),
        Err(Error::InvalidField {
            what: "send indirection table offset",
            value: 4
        })
    );
    // Too many entries.
    let mut bad = good.clone();
    bad[4] = 17;
    assert_eq!(
        NvspSendIndirectionTable::parse(&bad),
        Err(Error::TooMany {
            what: "send indirection table entries",
            count: 17,
            limit: 16
        })
    );
    // Wrong type, short fixed part.
    let mut bad = good.clone();
    bad[0] = 0x85;
    assert!(matches!(
        NvspSendIndirectionTable::parse(&bad),
        Err(Error::InvalidField { value: 0x85, .. })
    ));
    assert!(matches!(
        NvspSendIndirectionTable::parse(&good[..10]),
        Err(Error::Truncated {
            need: 8,
            have: 6,
            ..
        })
    ));
    // Fewer entries is accepted by the parser (Linux would refuse count != 16).
    let short = NvspSendIndirectionTable::new(&[1, 2]).unwrap();
    let v = short.to_vec(SEND_INDIRECTION_TABLE_OFFSET).unwrap();
    assert_eq!(v.len(), NVSP_MESSAGE_SIZE);
    assert_eq!(
        NvspSendIndirectionTable::parse(&v).unwrap().entries(),
        &[1, 2]
    );
    // Emitter limits.
    assert!(NvspSendIndirectionTable::new(&[0; 17]).is_err());
    assert!(short.to_vec(11).is_err());
    assert!(short.to_vec(MAX_SEND_INDIRECTION_TABLE_OFFSET + 1).is_err());
    let mut buf = [0u8; 75];
    assert!(matches!(
        NvspSendIndirectionTable::round_robin(2).emit(12, &mut buf),
        Err(Error::BufferTooSmall {
            need: 76,
            have: 75,
            ..
        })
    ));
}

fn arb_section() -> impl Strategy<Value = Nvsp1ReceiveBufferSection> {
    any::<[u32; 4]>().prop_map(|[offset, sub_alloc_size, num_sub_allocs, end_offset]| {
        Nvsp1ReceiveBufferSection {
            offset,
            sub_alloc_size,
            num_sub_allocs,
            end_offset,
        }
    })
}

fn arb_message() -> impl Strategy<Value = NvspMessage> {
    let v = || any::<u32>().prop_map(NvspVersion);
    let st = || any::<u32>().prop_map(NvspStatus);
    prop::strategy::Union::new(vec![
        (v(), v())
            .prop_map(|(a, b)| NvspMessage::Init {
                min_protocol_ver: a,
                max_protocol_ver: b,
            })
            .boxed(),
        (v(), any::<u32>(), st())
            .prop_map(|(a, b, c)| NvspMessage::InitComplete {
                negotiated_protocol_ver: a,
                max_mdl_chain_len: b,
                status: c,
            })
            .boxed(),
        any::<(u32, u32)>()
            .prop_map(|(a, b)| NvspMessage::SendNdisVersion {
                ndis_major_ver: a,
                ndis_minor_ver: b,
            })
            .boxed(),
        any::<(u32, u16)>()
            .prop_map(|(a, b)| NvspMessage::SendReceiveBuffer {
                gpadl_handle: a,
                id: b,
            })
            .boxed(),
        (
            st(),
            prop::collection::vec(arb_section(), 0..=MAX_RECEIVE_BUFFER_SECTIONS),
        )
            .prop_map(
                |(status, sections)| NvspMessage::SendReceiveBufferComplete { status, sections },
            )
            .boxed(),
        any::<u16>()
            .prop_map(|id| NvspMessage::RevokeReceiveBuffer { id })
            .boxed(),
        any::<(u32, u16)>()
            .prop_map(|(a, b)| NvspMessage::SendSendBuffer {
                gpadl_handle: a,
                id: b,
            })
            .boxed(),
        (st(), any::<u32>())
            .prop_map(
                |(status, section_size)| NvspMessage::SendSendBufferComplete {
                    status,
                    section_size,
                },
            )
            .boxed(),
        any::<u16>()
            .prop_map(|id| NvspMessage::RevokeSendBuffer { id })
            .boxed(),
        any::<(u32, u32, u32)>()
            .prop_map(|(a, b, c)| NvspMessage::SendRndisPacket {
                channel_type: NvspChannelType(a),
                send_buf_section_index: b,
                send_buf_section_size: c,
            })
            .boxed(),
        st().prop_map(|status| NvspMessage::SendRndisPacketComplete { status })
            .boxed(),
        any::<(u32, u32)>()
            .prop_map(|(alloc_id, len)| NvspMessage::AllocRxbuf { alloc_id, len })
            .boxed(),
        any::<(u32, u32, u32, u64)>()
            .prop_map(|(a, b, c, d)| NvspMessage::AllocRxbufComplete {
                status: a,
                alloc_id: b,
                gpadl_handle: c,
                recv_buf_id: d,
            })
            .boxed(),
        any::<u64>()
            .prop_map(|recv_buf_id| NvspMessage::FreeRxbuf { recv_buf_id })
            .boxed(),
        any::<(u32, u64)>()
            .prop_map(|(mtu, c)| NvspMessage::SendNdisConfig {
                mtu,
                capability: NdisConfigCapabilities::from_bits_retain(c),
            })
            .boxed(),
        any::<(u32, u32)>()
            .prop_map(|(allocated, serial)| NvspMessage::SendVfAssociation { allocated, serial })
            .boxed(),
        any::<u32>()
            .prop_map(|d| NvspMessage::SwitchDataPath {
                active_datapath: NvspDataPath(d),
            })
            .boxed(),
        any::<(u8, u8, u16, u32)>()
            .prop_map(|(a, b, c, d)| {
                NvspMessage::OidQueryEx(Nvsp5OidQueryEx {
                    header_type: a,
                    header_revision: b,
                    header_size: c,
                    oid: d,
                })
            })
            .boxed(),
        any::<(u32, u32)>()
            .prop_map(|(status, bytes)| {
                NvspMessage::OidQueryExComplete(Nvsp5OidQueryExComplete { status, bytes })
            })
            .boxed(),
        any::<(u32, u32)>()
            .prop_map(|(op, n)| NvspMessage::Subchannel {
                op: NvspSubchannelOp(op),
                num_subchannels: n,
            })
            .boxed(),
        (st(), any::<u32>())
            .prop_map(|(status, n)| NvspMessage::SubchannelComplete {
                status,
                num_subchannels: n,
            })
            .boxed(),
        any::<(u32, u32)>()
            .prop_map(|(count, offset)| NvspMessage::SendIndirectionTable { count, offset })
            .boxed(),
        (any::<u32>(), any::<[u8; PD_API_REQ_PARAMS_SIZE]>())
            .prop_map(|(op, params)| {
                NvspMessage::PdApi(Nvsp6PdApiReq {
                    op: NvspPdApiOp(op),
                    params,
                })
            })
            .boxed(),
        (any::<(u32, u32)>(), any::<[u8; PD_API_COMP_PARAMS_SIZE]>())
            .prop_map(|((op, status), params)| {
                NvspMessage::PdApiComplete(Nvsp6PdApiComp {
                    op: NvspPdApiOp(op),
                    status,
                    params,
                })
            })
            .boxed(),
        any::<(u16, u16)>()
            .prop_map(|(count, flags)| NvspMessage::PdPostBatch { count, flags })
            .boxed(),
        any::<u32>()
            .prop_filter("types with a body layout", |t| {
                !NvspMessageType(*t).has_body_layout()
            })
            .prop_map(|t| NvspMessage::Unknown {
                msg_type: NvspMessageType(t),
            })
            .boxed(),
    ])
}

/// A payload that starts with a type this module decodes, then arbitrary bytes.
fn arb_typed_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(
            NvspMessageType::KNOWN
                .iter()
                .map(|t| t.0)
                .collect::<Vec<_>>(),
        ),
        prop::collection::vec(any::<u8>(), 0..320),
    )
        .prop_map(|(t, body)| {
            let mut v = t.to_le_bytes().to_vec();
            v.extend(body);
            v
        })
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..320)) {
        let _ = NvspMessage::parse(&bytes);
        let _ = NvspMessage::parse_completion(&bytes);
        let _ = NvspSendIndirectionTable::parse(&bytes);
        let _ = NvspSendIndirectionTable::parse_linux_compat(&bytes, NvspVersion::V6);
    }

    #[test]
    fn parse_typed_never_panics(bytes in arb_typed_payload()) {
        let parsed = [NvspMessage::parse(&bytes), NvspMessage::parse_completion(&bytes)];
        for m in parsed.into_iter().flatten() {
            // Whatever parsed can be emitted again.
            prop_assert!(m.to_vec().is_ok());
        }
        let mut table = bytes.clone();
        if table.len() >= 4 {
            table[..4].copy_from_slice(&134u32.to_le_bytes());
        }
        if let Ok(t) = NvspSendIndirectionTable::parse(&table) {
            prop_assert!(t.entries().len() <= VRSS_SEND_TAB_SIZE);
        }
    }

    #[test]
    fn roundtrip(msg in arb_message()) {
        let bytes = msg.to_vec().unwrap();
        prop_assert!(bytes.len() >= NVSP_MESSAGE_SIZE);
        prop_assert_eq!(bytes.len(), msg.emitted_len());
        let completion = matches!(
            msg,
            NvspMessage::SubchannelComplete { .. } | NvspMessage::PdApiComplete(_)
        );
        let parsed = if completion {
            NvspMessage::parse_completion(&bytes)
        } else {
            NvspMessage::parse(&bytes)
        };
        prop_assert_eq!(parsed.unwrap(), msg);
    }

    #[test]
    fn table_roundtrip(
        entries in prop::collection::vec(any::<u32>(), 0..=VRSS_SEND_TAB_SIZE),
        offset in SEND_INDIRECTION_TABLE_OFFSET..=MAX_SEND_INDIRECTION_TABLE_OFFSET,
    ) {
        let table = NvspSendIndirectionTable::new(&entries).unwrap();
        let bytes = table.to_vec(offset).unwrap();
        let parsed = NvspSendIndirectionTable::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.entries(), &entries[..]);
    }
}

#[test]
fn to_inband_packet_is_a_ring_packet_carrying_the_message() {
    let m = NvspMessage::init(NvspVersion::V6_1);
    let p = m.to_inband_packet(0x1234).unwrap();
    // 16-byte descriptor, the 40-byte message: 56 bytes, already a multiple of 8.
    assert_eq!(p.len(), 56);
    let d = <crate::packet::PacketDescriptor as zerocopy::FromBytes>::read_from_bytes(&p[..16])
        .unwrap();
    assert_eq!(d.packet_type, crate::packet::PacketType::DATA_INBAND);
    assert_eq!(d.flags, crate::packet::FLAG_COMPLETION_REQUESTED);
    assert_eq!({ d.transaction_id }, 0x1234);
    assert_eq!((d.data_offset8, d.length8), (2, 7));
    assert_eq!(NvspMessage::parse(&p[16..]).unwrap(), m);
}
