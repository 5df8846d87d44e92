//! A real Linux kernel (6.1, Debian's source, hv_vmbus and hv_netvsc built in, no user
//! space) on 2 vCPUs and 4.5 GiB of RAM (its NIC buffers above 4 GiB) against our VMBus host and NetVSP on the kvm backend: VMBus
//! negotiated, hv_netvsc bound through NVSP and the RNDIS bring-up Linux runs, one
//! subchannel taken and RSS set, eth0 with the MAC we offered configured by the kernel, the host's pings of 56, 1000 and 1472 bytes
//! (full-MTU frames) answered with no loss, the guest's TCP reset to a SYN for a
//! closed port accepted by the host's kernel, Linux told its link is down (frames
//! still passing) answering no ping, and after the TAP's cable was pulled and plugged
//! back, answering every one again.
//!
//! Runs when /dev/kvm is usable and a TAP device in a network namespace can be created
//! (root); otherwise prints SKIPPED and why. The first run builds the kernel with
//! scripts/guest-kernel.sh (apt-get linux-source-6.1; ~7 minutes on 2 cores, then
//! cached in target/guest/tiny-smp). Console: target/guest/kernel-console.log.

use std::time::Duration;
use vmbus_examples::kernel_guest::{KernelGuestConfig, build_kernel, driver_complaints, run};
use vmbus_examples::linux_guest::{SharedLog, kvm_and_tap, oid_report};

#[test]
fn linux_kernel_drivers_use_our_vmbus_and_netvsp() {
    let (tap, netns) = match kvm_and_tap("hvq") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let kernel = build_kernel().unwrap_or_else(|e| panic!("guest kernel: {e}"));
    let console = SharedLog::default();
    let config = KernelGuestConfig {
        kernel,
        vcpus: 2,
        mac: [0x00, 0x15, 0x5d, 0x42, 0x00, 0x0b],
        mtu: 1500,
        extra_cmdline: String::new(),
        pings: 10,
        sizes: vec![56, 1000, 1472],
        link_flap: true,
        // 4.5 GiB: 3 GiB below the MMIO hole and 1.5 GiB above 4 GiB, where Linux
        // puts the NIC's buffers (its highest zone).
        memory_size: 4608 << 20,
    };
    let r = run(&config, tap, &netns, Box::new(console.clone()));
    let r = r.unwrap_or_else(|e| {
        let log = console.0.lock().unwrap_or_else(|p| p.into_inner());
        panic!("{e}\nconsole:\n{}", String::from_utf8_lossy(&log));
    });
    let nic = &r.guest.nic;
    println!("{}", r.vmbus.trim());
    println!("eth0 after {:.1} s: {}", r.booted_s, r.eth0.trim());
    for p in &r.pings {
        println!("ping -s {}: {}; {}", p.size, p.summary, p.rtt);
    }
    println!("{}", oid_report(nic));
    println!("{}", r.guest.counters());
    assert!(r.vmbus.contains("Vmbus version:5.3"), "{}", r.vmbus);
    assert_eq!(nic.snapshot().nvsp_version, 0x60001, "NVSP 6.1");
    for p in &r.pings {
        assert!(p.no_loss, "ping -s {}: {} {}", p.size, p.summary, p.rtt);
    }
    // TCP both ways: the host's SYN reached the guest and its reset came back intact.
    assert_eq!(r.tcp_reset, Ok(()));
    // The cable pulled and plugged back: Linux took the disconnect and connect
    // indications (the console check below catches a complaint) and answers again.
    let flap = r.after_flap.clone().expect("link flap run");
    let flap = flap.unwrap_or_else(|e| panic!("{e}\n{}", r.guest.counters()));
    let (down, back) = (&flap.while_down, &flap.after);
    println!(
        "told the link is down: {} ({} frames delivered to it meanwhile)",
        down.summary, flap.delivered_while_down
    );
    println!("after the cable came back: {}", back.summary);
    assert!(
        flap.delivered_while_down >= 3,
        "the echo requests reached the guest"
    );
    assert!(
        down.summary.contains(" 0 received"),
        "Linux answered with its link down: {}",
        down.summary
    );
    assert!(back.no_loss, "{} {}", back.summary, back.rtt);
    assert!(nic.snapshot().link_indications >= 2);
    assert_eq!(nic.snapshot().tx_offload_rejected, 0);
    // Linux's RNDIS bring-up, in its order (`rndis_filter_device_add`): maximum frame
    // size, permanent address, offload capabilities, offload parameters, media connect
    // status, link speed, RSS capabilities, packet filter; each answered with success.
    let oids: Vec<(bool, u32)> = nic.oids().iter().map(|o| (o.set, o.oid)).collect();
    let expected = [
        (false, 0x0001_0106),
        (false, 0x0101_0101),
        (false, 0xfc01_020d),
        (true, 0xfc01_020c),
        (false, 0x0001_0114),
        (false, 0x0001_0107),
        (false, 0x0001_0203),
        (true, 0x0001_0204), // RSS parameters, once the subchannel is open
        (true, 0x0001_010e),
    ];
    let mut at = 0;
    for e in expected {
        at += oids[at..]
            .iter()
            .position(|o| *o == e)
            .unwrap_or_else(|| panic!("{e:x?} missing or out of order in {oids:x?}"));
    }
    assert!(
        nic.oids().iter().all(|o| o.status == 0),
        "{}",
        oid_report(nic)
    );
    assert_eq!(nic.snapshot().bad_packets, 0);
    // The receive buffer's GPADL names guest pages above 4 GiB.
    let s = nic.snapshot();
    println!(
        "receive buffer: {} pages, {} above 4 GiB",
        s.recv_buffer_pages, s.recv_buffer_pages_above_4g
    );
    assert!(s.recv_buffer_pages > 0 && s.recv_buffer_pages_above_4g > 0);
    // Two vCPUs: Linux took a subchannel; every frame is counted on one of the queues.
    assert_eq!(nic.snapshot().subchannels, 1);
    assert_eq!(
        nic.snapshot().rx_queue_frames.iter().sum::<u64>(),
        nic.snapshot().rx_frames
    );
    // What Linux sent on queue 1 went through the TAP from queue 1's own thread.
    assert_eq!(
        nic.snapshot().tx_own_queue > 0,
        nic.snapshot().tx_queue_packets[1] > 0,
        "{}",
        r.guest.counters()
    );
    // The TAP has a receive queue per guest queue: queue 1's frames (RSS put any there)
    // were pulled by queue 1's own thread, not handed over by the primary's.
    assert_eq!(
        nic.snapshot().rx_steered,
        nic.snapshot().rx_queue_frames[1],
        "{}",
        r.guest.counters()
    );
    // And the drivers complained about nothing we sent (Linux logs malformed host
    // messages; "Invalid per_pkt_info_len: 0" was one, for every received frame).
    let log =
        String::from_utf8_lossy(&console.0.lock().unwrap_or_else(|p| p.into_inner())).to_string();
    let complaints = driver_complaints(&log);
    assert!(complaints.is_empty(), "{complaints:#?}");
    assert_eq!(nic.snapshot().rx_no_buffer, 0);
    assert!(nic.snapshot().rx_frames >= 30, "echo requests delivered");
    assert!(nic.snapshot().tx_frames >= 30, "echo replies sent");
    r.guest.vm.stop(Duration::from_secs(10));
}
