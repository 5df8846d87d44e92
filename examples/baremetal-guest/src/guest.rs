//! What the guest does, from the entry point on.

#![allow(unsafe_code)]

use crate::platform::BareMetal;
use crate::println;
use crate::x86::{cpuid, rdmsr, reset, wrmsr};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;
use core::time::Duration;
use hv_hypercall::msr::{HV_X64_MSR_GUEST_OS_ID, HV_X64_MSR_HYPERCALL, HV_X64_MSR_TSC_FREQUENCY};
use linked_list_allocator::LockedHeap;
use netvsc::phy::NetvscPhy;
use netvsc::{Netvsc, NetvscConfig};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use vmbus::{GuestBus, GuestConfig, GuestPlatform};

/// The guest's address (the host's TAP network is 10.0.2.0/24, the host 10.0.2.1).
pub const IP: [u8; 4] = [10, 0, 2, 15];
/// The TCP echo service's port.
pub const ECHO_PORT: u16 = 7;
/// Where the bus may allocate pages: above this program (loaded at 2 MiB; its image,
/// stack and heap end well below).
const ALLOC_BASE: u64 = 64 << 20;
/// Heap bytes (smoltcp's socket buffers, netvsc's receive queue, the bus's tables).
const HEAP_BYTES: usize = 16 << 20;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[repr(C, align(4096))]
struct Heap([u8; HEAP_BYTES]);

static mut HEAP_MEMORY: Heap = Heap([0; HEAP_BYTES]);

/// The hypercall page: the hypervisor writes its code here once enabled.
static mut HYPERCALL_PAGE: Page = Page([0; 4096]);

/// RAM runs (first page, pages) from the e820 map in `boot_params`.
fn e820(boot_params: u64) -> Vec<(u64, u64)> {
    // boot_params: e820_entries (u8) at 0x1e8, e820_table (20-byte entries: address,
    // size, type) at 0x2d0, at most 128 entries.
    // SAFETY: the loader put boot_params (a 4 KiB page) at this identity-mapped address.
    let params = unsafe { core::slice::from_raw_parts(boot_params as *const u8, 4096) };
    let n = usize::from(params.get(0x1e8).copied().unwrap_or(0)).min(128);
    let mut ram = Vec::new();
    let table = params.get(0x2d0..).unwrap_or(&[]);
    for e in table.chunks_exact(20).take(n) {
        let word = |i: usize| {
            e.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let kind = e
            .get(16..20)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        if kind == 1 {
            let (start, end) = (
                word(0).div_ceil(4096),
                word(0).saturating_add(word(8)) / 4096,
            );
            if end > start {
                ram.push((start, end - start));
            }
        }
    }
    ram
}

/// Fails the boot: says why and resets the VM.
fn fail(what: &str, why: impl core::fmt::Debug) -> ! {
    println!("baremetal-guest: FAILED: {what}: {why:?}");
    reset()
}

/// The entry point's target (see `x86.rs`).
pub extern "C" fn main(boot_params: u64) -> ! {
    println!("baremetal-guest: started");
    // SAFETY: the heap memory is this static's, handed to the allocator once, before
    // any allocation.
    unsafe {
        HEAP.lock().init(
            core::ptr::addr_of_mut!(HEAP_MEMORY).cast::<u8>(),
            HEAP_BYTES,
        );
    }
    let ram = e820(boot_params);

    // Hyper-V, as a guest kernel finds and enables it (TLFS: CPUID 0x40000000, the
    // guest OS id, then the hypercall page).
    let (_, b, c, d) = cpuid(0x4000_0000);
    let vendor: Vec<u8> = [b, c, d].iter().flat_map(|r| r.to_le_bytes()).collect();
    if vendor != b"Microsoft Hv" {
        fail("hypervisor", core::str::from_utf8(&vendor));
    }
    // Open source (bit 63), vendor 0x01 as Linux's id uses, version 1.
    wrmsr(HV_X64_MSR_GUEST_OS_ID, 0x8100 << 48 | 1);
    let hypercall_page = core::ptr::addr_of!(HYPERCALL_PAGE) as u64;
    wrmsr(HV_X64_MSR_HYPERCALL, hypercall_page | 1);
    let tsc_hz = rdmsr(HV_X64_MSR_TSC_FREQUENCY);
    let platform = Arc::new(BareMetal {
        hypercall_page,
        ram,
        tsc_hz,
        tsc_start: crate::x86::rdtsc(),
        hypercalls: AtomicU64::new(0),
    });
    println!("baremetal-guest: Hyper-V ready, TSC {} kHz", tsc_hz / 1000);

    let mut config = GuestConfig::default();
    config.alloc_base = ALLOC_BASE;
    config.timeout = Duration::from_secs(300);
    let bus = GuestBus::polled(platform.clone(), config).unwrap_or_else(|e| fail("SynIC setup", e));
    let version = bus.connect().unwrap_or_else(|e| fail("VMBus connect", e));
    println!("baremetal-guest: VMBus {version:?}");
    let offers = bus
        .request_offers()
        .unwrap_or_else(|e| fail("VMBus offers", e));
    let Some(offer) = offers
        .iter()
        .find(|o| {
            let t = o.interface_type;
            t == vmbus::class::NETWORK
        })
        .copied()
    else {
        fail("no NIC offered", offers.len())
    };
    let mut nic_config = NetvscConfig::default();
    nic_config.timeout = Duration::from_secs(300);
    nic_config.rx_queue = 256;
    let nic = Netvsc::open(&bus, &offer, &nic_config).unwrap_or_else(|e| fail("netvsc", e));
    let mac = nic.mac();
    println!(
        "baremetal-guest: netvsc up: NVSP {:?}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, MTU {}",
        nic.nvsp_version(),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        nic.mtu()
    );

    let now = || Instant::from_micros(platform.now().as_micros() as i64);
    let mut dev = NetvscPhy::new(nic);
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut dev,
        now(),
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(IP[0], IP[1], IP[2], IP[3]), 24));
    });
    let mut sockets = SocketSet::new(vec![]);
    let echo = sockets.add({
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 128 * 1024]),
            tcp::SocketBuffer::new(vec![0; 128 * 1024]),
        );
        // An echo answers at once: no delayed ACKs, no Nagle.
        s.set_ack_delay(None);
        s.set_nagle_enabled(false);
        s
    });
    println!(
        "baremetal-guest: ready in {} ms: ping {}.{}.{}.{}, TCP echo on port {ECHO_PORT}",
        platform.now().as_millis(),
        IP[0],
        IP[1],
        IP[2],
        IP[3]
    );

    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed = 0u64;
    loop {
        iface.poll(now(), &mut dev, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(echo);
        if !s.is_open() {
            if echoed > 0 {
                println!("baremetal-guest: echo connection done, {echoed} bytes");
                echoed = 0;
            }
            let _ = s.listen(ECHO_PORT);
        }
        let room = s.send_capacity() - s.send_queue();
        if s.can_recv() && room > 0 {
            let take = room.min(buf.len());
            let n = buf
                .get_mut(..take)
                .map_or(0, |b| s.recv_slice(b).unwrap_or(0));
            let sent = buf.get(..n).map_or(0, |b| s.send_slice(b).unwrap_or(0));
            echoed += sent as u64;
        }
        if s.state() == tcp::State::CloseWait && s.send_queue() == 0 {
            s.close();
        }
        let delay = iface
            .poll_delay(now(), &sockets)
            .map_or(Duration::from_millis(1), |d| {
                Duration::from_micros(d.total_micros()).min(Duration::from_millis(1))
            });
        dev.wait(delay);
    }
}
