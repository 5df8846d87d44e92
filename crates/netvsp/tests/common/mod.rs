//! What the NIC tests share: a VM (a simulated partition with a host bus offering one
//! netvsp NIC, and a guest bus that has seen the offer) and a smoltcp stack on a guest
//! NIC.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use hv_partition::SimPartition;
use netvsc::phy::NetvscPhy;
use netvsc::{Netvsc, NetvscConfig};
use netvsp::{NetEndpoint, Netvsp, NetvspConfig, NicCounters};
use smoltcp::iface::{Config, Interface};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::sync::Arc;
use vmbus::{GuestBus, GuestConfig, Guid, HostBus, HostConfig};
use vmbus_proto::channel::OfferChannel;

/// One VM: its host bus with the NIC offered, its guest bus, the offer as the guest
/// saw it, and the NIC's counters.
pub struct Vm {
    pub host: Arc<HostBus<SimPartition>>,
    pub bus: GuestBus,
    pub offer: OfferChannel,
    pub stats: NicCounters,
    pub relid: u32,
}

/// A VM whose NIC has MAC `mac` (its instance id is the MAC's last byte) and is
/// plugged into `endpoint`; the guest bus is connected and has the offer.
pub fn vm(mac: [u8; 6], endpoint: Box<dyn NetEndpoint>) -> Vm {
    let partition = SimPartition::new(128 << 20, 2).unwrap();
    let host = Arc::new(HostBus::new(partition.clone(), HostConfig::default()).unwrap());
    let mut config = NetvspConfig::default();
    config.mac = mac;
    let nic = Netvsp::new(config, endpoint);
    let stats = nic.stats();
    let instance = Guid {
        data1: u32::from(mac[5]),
        ..Guid::ZERO
    };
    let relid = host
        .offer(Netvsp::offer_params(instance), Box::new(nic))
        .unwrap();
    let bus = GuestBus::new(partition, GuestConfig::default()).unwrap();
    bus.connect().unwrap();
    let offers = bus.request_offers().unwrap();
    let offer = *offers.iter().find(|o| o.child_relid == relid).unwrap();
    Vm {
        host,
        bus,
        offer,
        stats,
        relid,
    }
}

/// smoltcp's clock.
pub fn now() -> SInstant {
    SInstant::from_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    )
}

/// A smoltcp interface on a guest NIC.
pub struct Stack {
    pub dev: NetvscPhy,
    pub iface: Interface,
}

/// A smoltcp stack at `ip`/24 on `nic`, whose MAC is `mac`.
pub fn stack_on(nic: Netvsc, mac: [u8; 6], ip: [u8; 4]) -> Stack {
    let mut dev = NetvscPhy::new(nic);
    let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let mut iface = Interface::new(config, &mut dev, now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24))
            .unwrap();
    });
    Stack { dev, iface }
}

/// [`stack_on`] the NIC of `vm`, opened with the default configuration.
pub fn stack(vm: &Vm, mac: [u8; 6], ip: [u8; 4]) -> Stack {
    let nic = Netvsc::open(&vm.bus, &vm.offer, &NetvscConfig::default()).unwrap();
    stack_on(nic, mac, ip)
}
