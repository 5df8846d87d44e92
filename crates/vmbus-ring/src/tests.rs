//! Unit tests of the ring protocol over every memory kind.

use crate::control::FEATURE_PENDING_SEND_SIZE;
use crate::*;
use std::collections::VecDeque;
use std::sync::Arc;

const PAGE: usize = 4096;

/// The same ring of `pages` data pages in each of the three memory kinds.
fn all_mems(pages: usize) -> Vec<(&'static str, Arc<dyn RingMem>)> {
    let region = Arc::new(SharedMemory::new((2 * pages + 3) * PAGE).unwrap());
    // Scatter the paged ring's pages (reverse order, control page last) to exercise the
    // page list; the double-mapped ring uses a scattered list too.
    let data: Vec<u64> = (0..pages as u64).rev().map(|p| p * 2 + 1).collect();
    let ctl = (2 * pages + 2) as u64;
    vec![
        ("flat", Arc::new(FlatRingMem::new(pages * PAGE).unwrap())),
        (
            "paged",
            Arc::new(PagedRingMem::new(region.clone(), ctl, &data).unwrap()),
        ),
        (
            "double",
            Arc::new(
                DoubleMappedRingMem::from_pages(
                    region.clone(),
                    ctl - 1,
                    &data.iter().map(|p| p + 1).collect::<Vec<_>>(),
                )
                .unwrap(),
            ),
        ),
        (
            "double-fresh",
            Arc::new(DoubleMappedRingMem::new(pages * PAGE).unwrap()),
        ),
    ]
}

type Mem = Arc<dyn RingMem>;

fn pair(mem: Mem) -> (OutgoingRing<Mem>, IncomingRing<Mem>) {
    (
        OutgoingRing::new(mem.clone()).unwrap(),
        IncomingRing::new(mem).unwrap(),
    )
}

fn payload_of(p: &IncomingPacket<'_, Arc<dyn RingMem>>, scratch: &mut Vec<u8>) -> Vec<u8> {
    let off = usize::from(p.descriptor.data_offset8) * 8;
    p.with_bytes(scratch, |b| b[off..].to_vec())
}

#[test]
fn wrap_exact_fit_full_empty() {
    for (name, mem) in all_mems(1) {
        let (mut tx, mut rx) = pair(mem.clone());
        let mut scratch = Vec::new();
        assert_eq!(rx.try_read().err(), Some(ReadError::Empty), "{name}");
        // 4096-byte ring: a packet of 16 + 1000 + 8 trailer = 1024 bytes.
        let body = [0x5Au8; 1000];
        for i in 0..3 {
            tx.try_write(&OutgoingPacket::inband(i, 0), &[&body])
                .unwrap();
        }
        // 3 * 1024 = 3072 used, 1024 free minus 8 reserved: the 4th does not fit.
        assert_eq!(
            tx.try_write(&OutgoingPacket::inband(3, 0), &[&body]),
            Err(WriteError::Full { needed: 1024 }),
            "{name}"
        );
        assert!(tx.commit());
        for i in 0..3 {
            let p = rx.try_read().unwrap();
            assert_eq!(p.descriptor.transaction_id, i);
            assert_eq!(payload_of(&p, &mut scratch), body.to_vec(), "{name}");
        }
        assert_eq!(rx.try_read().err(), Some(ReadError::Empty));
        rx.commit();
        // Now wrap: the writer is at 3072; these packets cross 4096.
        for i in 10..13 {
            tx.try_write(
                &OutgoingPacket::inband(i, 0),
                &[&body[..(i as usize * 7)], &[i as u8; 3]],
            )
            .unwrap();
            tx.commit();
            let p = rx.try_read().unwrap();
            let mut want = body[..(i as usize * 7)].to_vec();
            want.extend([i as u8; 3]);
            let got = payload_of(&p, &mut scratch);
            assert_eq!(&got[..want.len()], &want[..], "{name} wrap {i}");
            // The payload copied straight out, wrapped or not; nothing past the end.
            let mut direct = vec![0u8; want.len()];
            assert_eq!(p.copy_from(16, &mut direct), want.len());
            assert_eq!(direct, want, "{name} wrap {i}, copy_from");
            assert_eq!(p.copy_from(p.len(), &mut direct), 0);
            assert_eq!(p.copy_from(usize::MAX, &mut direct), 0);
            assert!(got[want.len()..].iter().all(|&b| b == 0), "padding is zero");
            rx.commit();
        }
        // Exact fit: fill the ring to exactly 8 bytes free.
        let mut used = 0;
        let mut n = 0;
        while used + 64 <= 4096 - 8 {
            tx.try_write(&OutgoingPacket::inband(n, 0), &[&[1u8; 40]])
                .unwrap();
            used += 64;
            n += 1;
        }
        assert_eq!(used, 4096 - 64, "{name}: 63 packets of 64 bytes");
        assert!(matches!(
            tx.try_write(&OutgoingPacket::inband(0, 0), &[&[1u8; 40]]),
            Err(WriteError::Full { .. })
        ));
        // A 56-byte ring slot (16 + 32 + 8) fits exactly in the 56 usable bytes left.
        tx.try_write(&OutgoingPacket::inband(99, 0), &[&[2u8; 32]])
            .unwrap();
        assert!(matches!(
            tx.try_write(&OutgoingPacket::inband(0, 0), &[]),
            Err(WriteError::Full { needed: 24 })
        ));
        tx.commit();
        let ctl = mem.control();
        assert_eq!(
            (ctl.write_index() + 8) % 4096,
            ctl.read_index(),
            "{name}: exactly 8 bytes free"
        );
        let mut count = 0;
        while let Ok(p) = rx.try_read() {
            let _ = p.len();
            count += 1;
        }
        assert_eq!(count, n + 1);
        rx.commit();
        assert!(tx.is_drained().unwrap());
    }
}

#[test]
fn too_large_and_bad_header() {
    let mem: Arc<dyn RingMem> = Arc::new(FlatRingMem::new(PAGE).unwrap());
    let (mut tx, _rx) = pair(mem);
    assert!(matches!(
        tx.try_write(&OutgoingPacket::inband(0, 0), &[&[0u8; 4096]]),
        Err(WriteError::TooLarge(_))
    ));
    let bad = OutgoingPacket {
        header: &[0u8; 5],
        ..OutgoingPacket::inband(0, 0)
    };
    assert!(matches!(
        tx.try_write(&bad, &[]),
        Err(WriteError::TooLarge(5))
    ));
    assert_eq!(tx.max_packet_len(), 4096 - 16);
}

#[test]
fn batches_commit_once() {
    for (name, mem) in all_mems(4) {
        let (mut tx, mut rx) = pair(mem.clone());
        for i in 0..50u64 {
            tx.try_write(&OutgoingPacket::inband(i, 0), &[&i.to_le_bytes()])
                .unwrap();
        }
        // Nothing is visible before the commit.
        assert_eq!(mem.control().write_index(), 0);
        assert_eq!(rx.try_read().err(), Some(ReadError::Empty), "{name}");
        assert!(tx.commit());
        assert!(!tx.commit(), "nothing new: no signal");
        let mut scratch = Vec::new();
        for i in 0..50u64 {
            let p = rx.try_read().unwrap();
            assert_eq!(payload_of(&p, &mut scratch), i.to_le_bytes().to_vec());
        }
        // The read index is published only by commit.
        assert_eq!(mem.control().read_index(), 0);
        rx.commit();
        assert_eq!(mem.control().read_index(), 50 * 32);
    }
}

#[test]
fn writer_signals_only_on_empty_to_non_empty_unmasked() {
    let mem: Arc<dyn RingMem> = Arc::new(FlatRingMem::new(PAGE).unwrap());
    let (mut tx, mut rx) = pair(mem.clone());
    let pkt = OutgoingPacket::inband(0, 0);
    tx.try_write(&pkt, &[]).unwrap();
    assert!(tx.commit(), "empty -> non-empty");
    tx.try_write(&pkt, &[]).unwrap();
    assert!(!tx.commit(), "reader has not caught up: no signal");
    // Reader drains everything, commits: ring empty again.
    while rx.try_read().is_ok() {}
    rx.commit();
    rx.mask_interrupts();
    tx.try_write(&pkt, &[]).unwrap();
    assert!(!tx.commit(), "masked: no signal");
    // Unmask-and-recheck finds the packet the writer did not signal for.
    assert!(rx.unmask_and_recheck().unwrap());
    while rx.try_read().is_ok() {}
    rx.commit();
    assert!(!rx.unmask_and_recheck().unwrap());
    tx.try_write(&pkt, &[]).unwrap();
    assert!(tx.commit());
    assert_eq!(tx.stats().signals, 2);
}

#[test]
fn reader_signals_when_free_space_crosses_pending_send_size() {
    let mem: Arc<dyn RingMem> = Arc::new(FlatRingMem::new(PAGE).unwrap());
    let (mut tx, mut rx) = pair(mem.clone());
    assert_eq!(
        mem.control().feature_bits() & FEATURE_PENDING_SEND_SIZE,
        1,
        "writer advertises the feature"
    );
    let body = [0u8; 1000];
    while tx
        .try_write(&OutgoingPacket::inband(0, 0), &[&body])
        .is_ok()
    {}
    tx.commit();
    // Ring has 3 * 1024 used; the writer needs 1024 more but only 1016 are usable.
    assert!(!tx.prepare_wait(1024).unwrap());
    assert_eq!(mem.control().pending_send_size(), 1024);
    // Reading one packet frees 1024: free goes from 1024 to 2048, crossing 1024.
    rx.try_read().unwrap();
    assert!(rx.commit(), "crossed pending_send_sz: signal");
    rx.try_read().unwrap();
    assert!(
        !rx.commit(),
        "already above the threshold: no second signal"
    );
    // A write clears pending_send_sz.
    tx.try_write(&OutgoingPacket::inband(0, 0), &[&body])
        .unwrap();
    tx.commit();
    assert_eq!(mem.control().pending_send_size(), 0);
    rx.try_read().unwrap();
    assert!(!rx.commit(), "writer not waiting: no signal");
    // A peer that sets a size that is not a multiple of 8 (1031, read as 1024 with the
    // low bits masked) is still woken when free space goes from 1024 to 2048.
    while tx
        .try_write(&OutgoingPacket::inband(0, 0), &[&body])
        .is_ok()
    {}
    tx.commit();
    mem.control().set_pending_send_size(1031);
    rx.try_read().unwrap();
    assert!(rx.commit(), "masked threshold crossed");
    while rx.try_read().is_ok() {}
    rx.commit();
    // Without the feature bit the reader never signals.
    mem.control().set_feature_bits(0);
    mem.control().set_pending_send_size(4000);
    tx.try_write(&OutgoingPacket::inband(0, 0), &[&body])
        .unwrap();
    tx.commit();
    rx.try_read().unwrap();
    assert!(!rx.commit());
    assert_eq!(rx.stats().signals, 2);
}

/// A ring image built by hand from the published layout (include/linux/hyperv.h):
/// two in-band packets, the second wrapping, as Linux's hv_ringbuffer_write lays them.
#[test]
fn golden_ring_image() {
    const SIZE: usize = 4096;
    let mut image = vec![0u8; SIZE];
    // Packet 1 at 0: descriptor {type 6, offset8 2, len8 3, flags 1, trans_id 0x11},
    // 5 payload bytes + 3 pad, trailer = 0 << 32.
    image[0..16].copy_from_slice(&[6, 0, 2, 0, 3, 0, 1, 0, 0x11, 0, 0, 0, 0, 0, 0, 0]);
    image[16..21].copy_from_slice(b"hello");
    image[24..32].copy_from_slice(&0u64.to_le_bytes());
    // Packet 2 written at 4064 (the writer was moved there): 16-byte descriptor at
    // 4064..4080, 24 payload bytes at 4080..4096 and 0..8, trailer (4064 << 32) at 8..16.
    // It overwrites packet 1's first 16 bytes, as a real ring would after packet 1 was
    // consumed; so packet 1 is checked separately below.
    let mut wrapped = image.clone();
    wrapped[4064..4080].copy_from_slice(&[6, 0, 2, 0, 5, 0, 0, 0, 0x22, 0, 0, 0, 0, 0, 0, 0]);
    let body: Vec<u8> = (0..24).collect();
    wrapped[4080..4096].copy_from_slice(&body[..16]);
    wrapped[0..8].copy_from_slice(&body[16..]);
    wrapped[8..16].copy_from_slice(&((4064u64) << 32).to_le_bytes());

    for (name, mem) in all_mems(1) {
        // Our writer produces exactly packet 1's bytes.
        let (mut tx, mut rx) = pair(mem.clone());
        tx.try_write(&OutgoingPacket::inband(0x11, 1), &[b"hel", b"lo"])
            .unwrap();
        tx.commit();
        let mut got = vec![0u8; 32];
        mem.read_data(0, &mut got);
        assert_eq!(got, image[..32].to_vec(), "{name}: writer bytes");
        assert_eq!(mem.control().write_index(), 32);
        let p = rx.try_read().unwrap();
        assert_eq!(p.descriptor.transaction_id, 0x11);
        rx.commit();

        // A hand-written wrapped packet reads back correctly.
        mem.write_data(0, &wrapped);
        mem.control().set_read_index(4064);
        mem.control().set_write_index(16);
        let mut rx = IncomingRing::new(mem.clone()).unwrap();
        let p = rx.try_read().unwrap();
        assert_eq!(p.descriptor.transaction_id, 0x22);
        let mut scratch = Vec::new();
        assert_eq!(payload_of(&p, &mut scratch), body, "{name}: wrapped read");
        if name.starts_with("double") {
            assert!(
                p.view().is_some(),
                "double mapping reads a wrapped packet in place"
            );
        } else {
            assert!(p.view().is_none());
        }
        assert!(rx.commit() || !rx.commit());
        assert_eq!(mem.control().read_index(), 16);

        // And our writer, started at 4064, writes the same wrapped bytes.
        mem.write_data(0, &vec![0u8; SIZE]);
        mem.control().set_read_index(4064);
        mem.control().set_write_index(4064);
        let mut tx = OutgoingRing::new(mem.clone()).unwrap();
        tx.try_write(&OutgoingPacket::inband(0x22, 0), &[&body])
            .unwrap();
        tx.commit();
        let mut all = vec![0u8; SIZE];
        mem.read_data(0, &mut all);
        assert_eq!(
            &all[4064..],
            &wrapped[4064..],
            "{name}: wrapped write, tail"
        );
        assert_eq!(&all[..16], &wrapped[..16], "{name}: wrapped write, head");
    }
}

#[test]
fn hostile_indices_and_descriptors() {
    let mem: Arc<dyn RingMem> = Arc::new(FlatRingMem::new(PAGE).unwrap());
    let ctl = mem.control();
    ctl.set_write_index(4096);
    assert!(
        IncomingRing::new(mem.clone()).is_err(),
        "index beyond the ring"
    );
    ctl.set_write_index(12);
    assert!(OutgoingRing::new(mem.clone()).is_err(), "unaligned index");
    ctl.set_write_index(0);
    let (_tx, mut rx) = pair(mem.clone());
    // The peer moves write_index to garbage after setup.
    ctl.set_write_index(0xFFFF_FFF8);
    assert!(matches!(
        rx.try_read(),
        Err(ReadError::Corrupt(RingError::InvalidIndex { .. }))
    ));
    // A descriptor with length8 = 1, and one longer than what was written.
    for (desc, why) in [
        ([6u8, 0, 2, 0, 1, 0, 0, 0], "short length8"),
        ([6u8, 0, 9, 0, 3, 0, 0, 0], "data offset beyond packet"),
        ([6u8, 0, 2, 0, 200, 0, 0, 0], "longer than written"),
        ([6u8, 0, 1, 0, 3, 0, 0, 0], "data offset inside descriptor"),
    ] {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&desc);
        mem.write_data(0, &bytes);
        ctl.set_read_index(0);
        ctl.set_write_index(32);
        let mut rx2 = IncomingRing::new(mem.clone()).unwrap();
        assert!(
            matches!(
                rx2.try_read(),
                Err(ReadError::Corrupt(RingError::InvalidPacket { .. }))
            ),
            "{why}"
        );
        assert_eq!(rx2.stats().corrupt, 1);
    }
    // Fewer than 24 bytes written.
    ctl.set_read_index(0);
    ctl.set_write_index(16);
    let mut rx3 = IncomingRing::new(mem.clone()).unwrap();
    assert!(matches!(rx3.try_read(), Err(ReadError::Corrupt(_))));
    // The reader claims a position inside our unpublished packets.
    ctl.set_read_index(0);
    ctl.set_write_index(0);
    let mut tx = OutgoingRing::new(mem.clone()).unwrap();
    tx.try_write(&OutgoingPacket::inband(0, 0), &[&[0u8; 3000]])
        .unwrap();
    ctl.set_read_index(1024);
    // The next write needs a fresh read index, which is inside unpublished data.
    assert!(matches!(
        tx.try_write(&OutgoingPacket::inband(0, 0), &[&[0u8; 1500]]),
        Err(WriteError::Corrupt(_))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Random writes, commits and reads against a VecDeque model.
    #[test]
    fn model(ops in proptest::collection::vec((0u8..4, 0usize..1200), 1..300), kind in 0usize..4) {
        let (_, mem) = all_mems(1).swap_remove(kind);
        let (mut tx, mut rx) = pair(mem.clone());
        let mut written: VecDeque<Vec<u8>> = VecDeque::new(); // committed, unread
        let mut uncommitted: Vec<Vec<u8>> = Vec::new();
        let mut used = 0usize; // ring bytes of committed-unread + uncommitted
        let mut seq = 0u8;
        let mut scratch = Vec::new();
        for (op, size) in ops {
            match op {
                0 | 1 => {
                    seq = seq.wrapping_add(1);
                    let data: Vec<u8> = (0..size).map(|i| seq.wrapping_add(i as u8)).collect();
                    let need = 16 + size.next_multiple_of(8) + 8;
                    let r = tx.try_write(&OutgoingPacket::inband(u64::from(seq), 0), &[&data]);
                    if need + used <= 4096 - 8 {
                        proptest::prop_assert!(r.is_ok(), "fits: {need} + {used}");
                        used += need;
                        uncommitted.push(data);
                    } else {
                        proptest::prop_assert!(r.is_err());
                    }
                }
                2 => {
                    tx.commit();
                    written.extend(uncommitted.drain(..));
                }
                _ => {
                    match rx.try_read() {
                        Ok(p) => {
                            let want = written.pop_front();
                            proptest::prop_assert!(want.is_some());
                            let want = want.unwrap_or_default();
                            let got = payload_of(&p, &mut scratch);
                            proptest::prop_assert_eq!(&got[..want.len()], &want[..]);
                            let mut direct = vec![0u8; want.len()];
                            let off = usize::from(p.descriptor.data_offset8) * 8;
                            proptest::prop_assert_eq!(p.copy_from(off, &mut direct), want.len());
                            proptest::prop_assert_eq!(&direct, &want);
                            used -= 16 + want.len().next_multiple_of(8) + 8;
                            rx.commit();
                        }
                        Err(ReadError::Empty) => proptest::prop_assert!(written.is_empty()),
                        Err(e) => proptest::prop_assert!(false, "{e}"),
                    }
                }
            }
        }
    }
}
