//! The software offload engine checked with an independent checksum verifier (and
//! smoltcp's for IPv4/TCP), plus hostile requests.

use super::*;
use vmbus_proto::rndis::ppi::{NdisPkt8021qInfo, NdisTcpIpChecksumInfo, NdisTcpLsoInfo};
use vmbus_proto::rndis::{OffloadParamChecksum, OffloadParamSimple};

const SRC4: [u8; 4] = [10, 0, 2, 15];
const DST4: [u8; 4] = [10, 0, 2, 1];
const SRC6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// RFC 1071 the slow way: the sum over a correct segment plus pseudo-header is 0xffff.
fn verify(pseudo: &[u8], seg: &[u8]) -> bool {
    let mut all = pseudo.to_vec();
    all.extend_from_slice(seg);
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut s: u64 = 0;
    for w in all.chunks(2) {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

fn pseudo4(proto: u8, len: usize) -> Vec<u8> {
    let mut p = SRC4.to_vec();
    p.extend_from_slice(&DST4);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

fn pseudo6(proto: u8, len: usize) -> Vec<u8> {
    let mut p = SRC6.to_vec();
    p.extend_from_slice(&DST6);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// Ethernet + IPv4/IPv6 + TCP (20 bytes + 12 of options) or UDP, with garbage in every
/// checksum field and, like Linux for LSO, IPv4 total length 0.
fn frame(v6: bool, tcp: bool, data: &[u8], lso: bool) -> (Vec<u8>, usize) {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&(if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 }).to_be_bytes());
    let l4_len = if tcp { 32 } else { 8 } + data.len();
    let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
    if v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(if lso { 0 } else { l4_len as u16 }).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&SRC6);
        f.extend_from_slice(&DST6);
    } else {
        let total = if lso { 0 } else { (20 + l4_len) as u16 };
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0xde, 0xad]);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
    }
    let l4 = f.len();
    if tcp {
        f.extend_from_slice(&[0x30, 0x39, 0x13, 0x89]); // ports 12345 -> 5001
        f.extend_from_slice(&0xfffff000u32.to_be_bytes()); // seq, wraps during LSO
        f.extend_from_slice(&1u32.to_be_bytes()); // ack
        f.extend_from_slice(&[0x80, TCP_FIN | TCP_PSH | TCP_CWR | 0x10]);
        f.extend_from_slice(&[0xff, 0xff, 0xbe, 0xef, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP TS
    } else {
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0xbe, 0xef]);
    }
    f.extend_from_slice(data);
    (f, l4)
}

fn all_on() -> OffloadConfig {
    OffloadConfig {
        ip4_header: true,
        tcp4: true,
        udp4: true,
        tcp6: true,
        udp6: true,
        lso4: true,
        lso6: true,
        ..Default::default()
    }
}

fn run(frame: &[u8], req: &TxRequest) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut out = Vec::new();
    let mut e = TxEngine::new();
    let r = e.process(frame, req, &mut |f| {
        out.push(f.to_vec());
        true
    })?;
    assert_eq!(r.sent as usize, out.len());
    Ok(out)
}

#[test]
fn capabilities_satisfy_what_linux_checks_before_enabling() {
    let c = OffloadConfig::capabilities(3, 156);
    let all_tcp4 = offload_caps::TCP4 | offload_caps::TCP4OPT;
    let all_tcp6 = offload_caps::TCP6 | offload_caps::TCP6OPT | offload_caps::IP6EXT;
    assert_eq!(c.csum.ip4_txcsum & all_tcp4, all_tcp4);
    assert_eq!(c.csum.ip6_txcsum & all_tcp6, all_tcp6);
    assert_ne!(c.csum.ip4_txcsum & offload_caps::UDP4, 0);
    assert_ne!(c.lsov2.ip4_encap & encap::IEEE_802_3, 0);
    assert_ne!(c.lsov2.ip6_encap & encap::IEEE_802_3, 0);
    assert_eq!(
        c.lsov2.ip6_opts,
        offload_caps::IP6EXT | offload_caps::TCP6OPT
    );
    assert_eq!(c.lsov2.ip4_maxsz, LSO_MAX_SIZE);
}

#[test]
fn offload_parameters_turn_transmit_offloads_on_and_off() {
    let mut c = OffloadConfig::default();
    let p = NdisOffloadParams {
        tcp_ip_v4_csum: OffloadParamChecksum::TX_RX_ENABLED,
        udp_ip_v6_csum: OffloadParamChecksum::TX_ENABLED_RX_DISABLED,
        ip_v4_csum: OffloadParamChecksum::TX_RX_DISABLED,
        lso_v2_ipv4: OffloadParamSimple::ENABLED,
        ..Default::default()
    };
    c.apply(&p);
    assert!(c.tcp4 && c.udp6 && c.lso4 && !c.ip4_header && !c.lso6 && !c.tcp6);
    // NO_CHANGE and unknown values leave things alone; RX-only turns TX off.
    let q = NdisOffloadParams {
        tcp_ip_v4_csum: OffloadParamChecksum(77),
        udp_ip_v6_csum: OffloadParamChecksum::RX_ENABLED_TX_DISABLED,
        lso_v2_ipv4: OffloadParamSimple::DISABLED,
        ..Default::default()
    };
    c.apply(&q);
    assert!(c.tcp4 && !c.udp6 && !c.lso4);
    // Receive follows the RX half of each value.
    assert!(c.rx_tcp4 && c.rx_udp6 && !c.rx_ip4_header && !c.rx_udp4);
}

#[test]
fn receive_checksum_info_says_only_what_is_known_and_asked_for() {
    let rx = OffloadConfig {
        rx_ip4_header: true,
        rx_tcp4: true,
        rx_udp4: true,
        rx_tcp6: true,
        rx_udp6: true,
        ..Default::default()
    };
    let known = FrameMeta {
        l4_checksum_valid: true,
        ip4_checksum_valid: true,
        rss_hash: None,
    };
    let l4_only = FrameMeta {
        l4_checksum_valid: true,
        ip4_checksum_valid: false,
        rss_hash: None,
    };
    let bits = |c: Option<NdisTcpIpChecksumInfo>| {
        c.map(|c| {
            (
                c.rx_ip_checksum_succeeded(),
                c.rx_tcp_checksum_succeeded(),
                c.rx_udp_checksum_succeeded(),
            )
        })
    };
    let (tcp4, _) = frame(false, true, &payload(100), false);
    let (udp4, _) = frame(false, false, &payload(100), false);
    let (tcp6, _) = frame(true, true, &payload(100), false);
    let (udp6, _) = frame(true, false, &payload(100), false);
    assert_eq!(
        bits(rx.rx_checksum_info(&tcp4, known)),
        Some((true, true, false))
    );
    assert_eq!(
        bits(rx.rx_checksum_info(&udp4, l4_only)),
        Some((false, false, true))
    );
    assert_eq!(
        bits(rx.rx_checksum_info(&tcp6, known)),
        Some((false, true, false))
    );
    assert_eq!(
        bits(rx.rx_checksum_info(&udp6, known)),
        Some((false, false, true))
    );
    // Nothing known, or nothing asked for: no info.
    assert_eq!(bits(rx.rx_checksum_info(&tcp4, FrameMeta::default())), None);
    assert_eq!(
        bits(OffloadConfig::default().rx_checksum_info(&tcp4, known)),
        None
    );
    // Behind a VLAN tag.
    let mut tagged = tcp4[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&tcp4[12..]);
    assert_eq!(
        bits(rx.rx_checksum_info(&tagged, known)),
        Some((true, true, false))
    );
    // An IPv4 fragment: the header, but no L4 result.
    let mut frag = tcp4.clone();
    frag[20] = 0x20; // more fragments
    assert_eq!(
        bits(rx.rx_checksum_info(&frag, known)),
        Some((true, false, false))
    );
    let mut later = tcp4.clone();
    later[21] = 0x10; // offset 16
    assert_eq!(bits(rx.rx_checksum_info(&later, l4_only)), None);
    // Not IP, or cut short: none, and no panic.
    let mut arp = tcp4.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(bits(rx.rx_checksum_info(&arp, known)), None);
    for n in 0..40 {
        let _ = rx.rx_checksum_info(&tcp4[..n], known);
    }
}

#[test]
fn software_offloads_mark_the_checksums_they_computed() {
    let l4 = TxRequest {
        l4_csum: Some((false, true, 34)),
        ..Default::default()
    };
    assert_eq!(
        l4.meta(),
        FrameMeta {
            l4_checksum_valid: true,
            ip4_checksum_valid: false,
            rss_hash: None,
        }
    );
    let lso4 = TxRequest {
        lso: Some((false, 1448, 34)),
        ..Default::default()
    };
    assert!(lso4.meta().l4_checksum_valid && lso4.meta().ip4_checksum_valid);
    let vlan_only = TxRequest {
        vlan_tci: Some(5),
        ..Default::default()
    };
    assert_eq!(vlan_only.meta(), FrameMeta::default());
}

fn csum_ppi(v6: bool, tcp: bool, ip: bool, l4: usize) -> Ppi<'static> {
    let mut c = NdisTcpIpChecksumInfo(0);
    c.set_tx_is_ipv4(!v6);
    c.set_tx_is_ipv6(v6);
    c.set_tx_tcp_checksum(tcp);
    c.set_tx_udp_checksum(!tcp);
    c.set_tx_ip_header_checksum(ip);
    c.set_tx_tcp_header_offset(l4 as u32);
    Ppi::Checksum(c)
}

fn lso_ppi(v6: bool, mss: u32, l4: usize) -> Ppi<'static> {
    let mut l = NdisTcpLsoInfo(0);
    l.set_lso_type(NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE);
    l.set_ip_version(u32::from(v6));
    l.set_mss(mss);
    l.set_tcp_header_offset(l4 as u32);
    Ppi::Lso(l)
}

fn parse(ppis: &[Ppi<'static>], c: &OffloadConfig) -> Result<TxRequest, OffloadError> {
    parse_request(ppis.iter().copied().map(Ok), c)
}

#[test]
fn requests_are_refused_unless_negotiated_and_consistent() {
    let none = OffloadConfig::default();
    assert_eq!(
        parse(&[csum_ppi(false, true, false, 34)], &none),
        Err(OffloadError::NotNegotiated("L4 checksum"))
    );
    assert_eq!(
        parse(&[lso_ppi(true, 1440, 54)], &none),
        Err(OffloadError::NotNegotiated("LSOv2"))
    );
    let mut both = NdisTcpIpChecksumInfo(0);
    both.set_tx_is_ipv4(true);
    both.set_tx_is_ipv6(true);
    both.set_tx_tcp_checksum(true);
    assert!(matches!(
        parse(&[Ppi::Checksum(both)], &all_on()),
        Err(OffloadError::BadPpi(_))
    ));
    let v1 = NdisTcpLsoInfo(0).with_mss(1000);
    assert_eq!(
        parse(&[Ppi::Lso(v1)], &all_on()),
        Err(OffloadError::NotNegotiated("LSOv1"))
    );
    assert!(matches!(
        parse(
            &[lso_ppi(false, 1000, 34), lso_ppi(false, 1000, 34)],
            &all_on()
        ),
        Err(OffloadError::BadPpi(_))
    ));
    let vlan = NdisPkt8021qInfo(0).with_vlan_id(100).with_pri(5);
    let r = parse(
        &[
            csum_ppi(false, true, true, 34),
            Ppi::Vlan(vlan),
            Ppi::HashValue(9),
        ],
        &all_on(),
    )
    .unwrap();
    assert_eq!(r.l4_csum, Some((false, true, 34)));
    assert!(r.ip_header_csum);
    assert_eq!(r.vlan_tci, Some((5 << 13) | 100));
}

#[test]
fn checksums_are_computed_from_scratch() {
    for (v6, tcp) in [(false, true), (false, false), (true, true), (true, false)] {
        let data = payload(301);
        let (f, l4) = frame(v6, tcp, &data, false);
        let req = parse(&[csum_ppi(v6, tcp, !v6, l4)], &all_on()).unwrap();
        let out = run(&f, &req).unwrap();
        assert_eq!(out.len(), 1);
        let g = &out[0];
        let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
        let seg = &g[l4..];
        let pseudo = if v6 {
            pseudo6(proto, seg.len())
        } else {
            pseudo4(proto, seg.len())
        };
        assert!(verify(&pseudo, seg), "v6 {v6} tcp {tcp}");
        if !v6 {
            assert!(verify(&[], &g[14..34]), "IPv4 header checksum");
        }
        // Only checksum fields changed.
        let diff: Vec<usize> = (0..f.len()).filter(|&i| f[i] != g[i]).collect();
        assert!(
            diff.iter().all(|&i| (24..26).contains(&i) || i >= l4),
            "{diff:?}"
        );
    }
}

#[test]
fn ipv4_tcp_checksum_agrees_with_smoltcp() {
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
    let (f, l4) = frame(false, true, &payload(999), false);
    let req = parse(&[csum_ppi(false, true, true, l4)], &all_on()).unwrap();
    let g = &run(&f, &req).unwrap()[0];
    let ip = Ipv4Packet::new_checked(&g[14..]).unwrap();
    assert!(ip.verify_checksum());
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(
        &IpAddress::from(ip.src_addr()),
        &IpAddress::from(ip.dst_addr())
    ));
}

fn check_segments(v6: bool, data_len: usize, mss: u32, vlan: Option<u16>) {
    let data = payload(data_len);
    let (f, l4) = frame(v6, true, &data, true);
    let mut ppis = vec![lso_ppi(v6, mss, l4)];
    if let Some(tci) = vlan {
        ppis.push(Ppi::Vlan(
            NdisPkt8021qInfo(0)
                .with_vlan_id(u32::from(tci) & 0xfff)
                .with_pri(u32::from(tci >> 13)),
        ));
    }
    let req = parse(&ppis, &all_on()).unwrap();
    let out = run(&f, &req).unwrap();
    let n = data_len.div_ceil(mss as usize).max(1);
    assert_eq!(out.len(), n);
    let mut joined = Vec::new();
    for (i, s) in out.iter().enumerate() {
        let s = match vlan {
            Some(tci) => {
                assert_eq!(&s[12..16], &[0x81, 0x00, (tci >> 8) as u8, tci as u8]);
                let mut u = s[..12].to_vec();
                u.extend_from_slice(&s[16..]);
                u
            }
            None => s.clone(),
        };
        assert!(s.len() <= MAX_FRAME);
        let tcp = &s[l4..];
        let pseudo = if v6 {
            assert_eq!(
                usize::from(u16::from_be_bytes([s[18], s[19]])),
                s.len() - 54
            );
            pseudo6(PROTO_TCP, tcp.len())
        } else {
            assert_eq!(
                usize::from(u16::from_be_bytes([s[16], s[17]])),
                s.len() - 14
            );
            assert_eq!(
                u16::from_be_bytes([s[18], s[19]]),
                0x1234u16.wrapping_add(i as u16)
            );
            assert!(verify(&[], &s[14..34]), "segment {i}: IPv4 header checksum");
            pseudo4(PROTO_TCP, tcp.len())
        };
        assert!(verify(&pseudo, tcp), "segment {i}: TCP checksum");
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        assert_eq!(seq, 0xfffff000u32.wrapping_add((i * mss as usize) as u32));
        let flags = tcp[13];
        let last = i + 1 == n;
        assert_eq!(
            flags & (TCP_FIN | TCP_PSH) != 0,
            last,
            "segment {i} flags {flags:#x}"
        );
        assert_eq!(flags & TCP_CWR != 0, i == 0);
        assert_eq!(flags & 0x10, 0x10, "ACK kept");
        joined.extend_from_slice(&tcp[32..]);
    }
    assert_eq!(joined, data);
}

#[test]
fn lso_cuts_ipv4_and_ipv6_into_checked_segments() {
    check_segments(false, 10_000, 1448, None);
    check_segments(true, 10_000, 1428, None);
    check_segments(false, 1448 * 3, 1448, None); // exact multiple
    check_segments(false, 100, 1448, None); // one segment
    check_segments(false, 0, 1448, None); // headers only
    check_segments(false, 60_000, 1444, Some((3 << 13) | 42));
    check_segments(true, LSO_MAX_SIZE as usize - 100, 1200, None);
}

#[test]
fn vlan_tag_is_inserted_after_the_source_mac() {
    let (f, _) = frame(false, false, &payload(40), false);
    let req = TxRequest {
        vlan_tci: Some(0x2064),
        ..Default::default()
    };
    let g = &run(&f, &req).unwrap()[0];
    assert_eq!(&g[..12], &f[..12]);
    assert_eq!(&g[12..16], &[0x81, 0x00, 0x20, 0x64]);
    assert_eq!(&g[16..], &f[12..]);
}

#[test]
fn hostile_requests_are_errors() {
    let (f, l4) = frame(false, true, &payload(5000), true);
    let req = |mss, off| parse(&[lso_ppi(false, mss, off)], &all_on()).unwrap();
    assert!(matches!(
        run(&f, &req(0, l4)),
        Err(OffloadError::LsoRange(_))
    ));
    assert!(matches!(
        run(&f, &req(63, l4)),
        Err(OffloadError::LsoRange(_))
    ));
    assert!(matches!(
        run(&f, &req(9000, l4)),
        Err(OffloadError::LsoRange(_))
    ));
    assert!(matches!(
        run(&f, &req(1448, 20)),
        Err(OffloadError::BadFrame(_))
    ));
    assert!(matches!(
        run(&f, &req(1448, 1023)),
        Err(OffloadError::BadFrame(_))
    ));
    // IPv6 request on an IPv4 frame; a frame cut inside its headers.
    let r6 = parse(&[lso_ppi(true, 1448, l4)], &all_on()).unwrap();
    assert!(matches!(run(&f, &r6), Err(OffloadError::BadFrame(_))));
    assert!(matches!(
        run(&f[..40], &req(1448, l4)),
        Err(OffloadError::BadFrame(_))
    ));
    let csum = parse(&[csum_ppi(false, false, false, l4)], &all_on()).unwrap();
    assert!(run(&f[..l4 + 4], &csum).is_err());
    // Random frames and requests: errors or frames, never a panic or an oversize frame.
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut e = TxEngine::new();
    for _ in 0..3000 {
        let len = (next() % 2000) as usize;
        let mut g: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len > 40 && next() % 2 == 0 {
            let (h, _) = frame(next() % 2 == 0, next() % 2 == 0, &[], false);
            g[..h.len().min(len)].copy_from_slice(&h[..h.len().min(len)]);
        }
        let req = TxRequest {
            l4_csum: (next() % 2 == 0)
                .then(|| (next() % 2 == 0, next() % 2 == 0, (next() % 80) as u16)),
            ip_header_csum: next() % 2 == 0,
            lso: (next() % 3 == 0).then(|| {
                (
                    next() % 2 == 0,
                    (next() % 3000) as u32,
                    (next() % 80) as u16,
                )
            }),
            vlan_tci: (next() % 4 == 0).then(|| next() as u16),
        };
        let _ = e.process(&g, &req, &mut |f| {
            assert!(f.len() <= MAX_FRAME.max(len + 4));
            true
        });
    }
}

/// Finishes a checksum the way a virtio-net device does for NEEDS_CSUM.
fn finish_csum(frame: &mut [u8], start: usize, offset: usize) {
    let mut s: u64 = 0;
    let data = &frame[start..];
    for w in data.chunks(2) {
        let hi = u64::from(w[0]) << 8;
        s += hi | u64::from(*w.get(1).unwrap_or(&0));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    let c = !(s as u16);
    frame[start + offset..start + offset + 2].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn native_offload_leaves_a_frame_a_virtio_device_can_finish() {
    let all = TxOffloadSupport {
        checksum: true,
        tso4: true,
        tso6: true,
    };
    let mut e = TxEngine::new();
    // TSO over IPv4 with a VLAN tag: lengths and IPv4 checksum final, offsets shifted.
    let (f, l4) = frame(false, true, &payload(20_000), true);
    let mut req = parse(&[lso_ppi(false, 1448, l4)], &all_on()).unwrap();
    req.vlan_tci = Some(5);
    let (g, off) = e.prepare_native(&f, &req, all).unwrap().unwrap();
    let mut g = g.to_vec();
    assert_eq!(&g[12..16], &[0x81, 0x00, 0x00, 0x05]);
    assert_eq!(
        off,
        TxOffload {
            csum: Some(((l4 + 4) as u16, 16)),
            gso: Some(Gso {
                ipv6: false,
                mss: 1448,
                hdr_len: (l4 + 4 + 32) as u16
            })
        }
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([g[20], g[21]])),
        g.len() - 18
    );
    assert!(verify(&[], &g[18..38]), "IPv4 header checksum");
    finish_csum(&mut g, l4 + 4, 16);
    assert!(verify(&pseudo4(PROTO_TCP, g.len() - l4 - 4), &g[l4 + 4..]));

    // UDP checksum over IPv6.
    let (f, l4) = frame(true, false, &payload(999), false);
    let req = parse(&[csum_ppi(true, false, false, l4)], &all_on()).unwrap();
    let (g, off) = e.prepare_native(&f, &req, all).unwrap().unwrap();
    let mut g = g.to_vec();
    assert_eq!(off.csum, Some((l4 as u16, 6)));
    assert_eq!(off.gso, None);
    finish_csum(&mut g, l4, 6);
    assert!(verify(&pseudo6(PROTO_UDP, g.len() - l4), &g[l4..]));

    // What the backend cannot do stays in software; bad requests are still refused.
    let none = TxOffloadSupport::default();
    assert!(e.prepare_native(&f, &req, none).unwrap().is_none());
    let (f, l4) = frame(true, true, &payload(5000), true);
    let req = parse(&[lso_ppi(true, 1448, l4)], &all_on()).unwrap();
    let v4_only = TxOffloadSupport {
        checksum: true,
        tso4: true,
        tso6: false,
    };
    assert!(e.prepare_native(&f, &req, v4_only).unwrap().is_none());
    let tiny = parse(&[lso_ppi(true, 10, l4)], &all_on()).unwrap();
    assert!(matches!(
        e.prepare_native(&f, &tiny, all),
        Err(OffloadError::LsoRange(_))
    ));
}

/// The word-at-a-time sum against the byte-pair definition, at every length and start
/// offset that moves the tail or the alignment, with sums near the folding edges.
#[test]
fn internet_sum_matches_rfc1071_at_every_length_and_alignment() {
    fn slow(d: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for (i, b) in d.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }
    let mut buf = vec![0u8; 4200];
    let mut x: u32 = 0x1234_5678;
    for b in buf.iter_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    let ones = vec![0xffu8; 70_000];
    for start in 0..8 {
        for len in (0..80).chain([1499, 1500, 4000, 4191]) {
            let d = &buf[start..start + len];
            assert_eq!(internet_sum(d), slow(d), "start {start} len {len}");
        }
    }
    for len in [0, 1, 2, 3, 65_535, 65_536, 69_999] {
        assert_eq!(
            internet_sum(&ones[..len]),
            slow(&ones[..len]),
            "0xff x {len}"
        );
    }
    assert_eq!(
        sum_bytes(0xffff_fff0, &[0xff, 0xff]),
        u32::from(fold(0xffff_fff0)) + 0xffff
    );
}
