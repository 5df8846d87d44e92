//! A whole NIC per frame, both sides, on one thread, for `scripts/icount.sh vm`: a
//! polled `HostBus` and a polled `Netvsp` on a switch port, and the guest (a polled
//! `GuestBus` on `SimPlatform::on_one_thread`, netvsc) of the same simulated partition,
//! brought up as Linux does it (NVSP 6.1, RNDIS, 1 or 2 queues). Every instruction a
//! frame costs is counted: netvsc, both rings, the signals (hypercall and SynIC
//! emulation included), netvsp, the switch. What is not there is what two threads
//! add: cache-line transfers and wake-ups, which callgrind cannot count anyway.
//!
//! - guest to host: `BATCH` frames sent by netvsc (one SEND_RNDIS_PKT each, as Linux
//!   without `xmit_more`), then the host runs, the frames are taken off the wire and
//!   the guest takes the completions;
//! - host to guest: `BATCH` frames put on the wire, the host runs, the guest receives
//!   them all (the transfer pages completed).

use netvsc::{Netvsc, NetvscConfig};
use netvsp::{NetEndpoint, Netvsp, NetvspConfig, Switch, SwitchPort};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use vmbus::partition::gpadl::RingMapping;
use vmbus::{
    Doorbell, GuestBus, GuestConfig, Guid, HostBus, HostConfig, PollStatus, SimPartition,
    SimPlatform,
};

const MAC: [u8; 6] = [0x00, 0x15, 0x5D, 0x00, 0x00, 0x01];
const PEER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x77];

struct Vm {
    /// Dropped last (the NIC's buffers are in its memory).
    _bus: GuestBus,
    nic: Netvsc,
    wire: SwitchPort,
    run_host: Arc<dyn Fn() -> PollStatus + Send + Sync>,
}

fn vm(queues: u16) -> Vm {
    let switch = Switch::new(4096);
    let (port, _) = switch.port_with_mac(MAC);
    let (wire, _) = switch.port_with_mac(PEER);
    let partition = SimPartition::new(64 << 20, u32::from(queues)).unwrap();
    let wake = Arc::new(Doorbell::new());
    let host = HostBus::polled(partition.clone(), HostConfig::default(), wake.clone());
    let (dev, poller) = Netvsp::polled(
        {
            let mut c = NetvspConfig::default();
            c.mac = MAC;
            c.max_queues = queues;
            c
        },
        Box::new(port),
        wake,
    );
    host.offer(Netvsp::offer_params(Guid::ZERO), Box::new(dev))
        .unwrap();
    let run_host: Arc<dyn Fn() -> PollStatus + Send + Sync> =
        Arc::new(move || host.poll().merge(poller.poll()));
    let run = run_host.clone();
    let platform = SimPlatform::on_one_thread(
        partition,
        RingMapping::DoubleMapped,
        Box::new(move || run()),
    );
    let bus = GuestBus::polled(Arc::new(platform), GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = offers[0];
    let nic = Netvsc::open(&bus, &offer, &{
        let mut c = NetvscConfig::default();
        c.queues = queues;
        c
    })
    .unwrap();
    assert_eq!(nic.queues(), usize::from(queues));
    Vm {
        _bus: bus,
        nic,
        wire,
        run_host,
    }
}

fn frame(size: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x5Au8; size];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f
}

/// Guest to host, `batch` frames per turn.
pub fn g2h(size: usize, queues: u16, batch: u64, frames: u64) {
    let Vm {
        _bus,
        mut nic,
        mut wire,
        run_host,
    } = vm(queues);
    let f = frame(size, PEER, MAC);
    let mut buf = vec![0u8; 2048];
    let (mut sent, mut got) = (0u64, 0u64);
    while got < frames {
        let n = batch.min(frames - sent);
        for _ in 0..n {
            nic.send(black_box(&f)).unwrap();
        }
        sent += n;
        while (run_host)() == PollStatus::Busy {}
        while wire.receive(&mut buf).is_some() {
            got += 1;
        }
        nic.poll(Duration::ZERO).unwrap();
        assert!(got <= sent);
        if n == 0 {
            break;
        }
    }
    assert_eq!(got, frames, "every frame reached the wire");
}

/// Host to guest, `batch` frames per turn.
pub fn h2g(size: usize, queues: u16, batch: u64, frames: u64) {
    let Vm {
        _bus,
        mut nic,
        mut wire,
        run_host: _,
    } = vm(queues);
    let f = frame(size, MAC, PEER);
    let mut buf = vec![0u8; 2048];
    let mut got = 0u64;
    while got < frames {
        let n = batch.min(frames - got);
        for _ in 0..n {
            assert!(wire.transmit(black_box(&f)));
        }
        for _ in 0..n {
            let len = nic
                .recv(&mut buf, Duration::from_secs(10))
                .unwrap()
                .expect("the frame reached the guest");
            assert_eq!(len, size);
        }
        got += n;
    }
}
