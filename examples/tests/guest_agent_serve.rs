//! The user-space guest agent (`hv-guest-agent serve`, for guests that can run user
//! space: hardware KVM, MSHV) speaks the same control protocol as the guest kernel's
//! hvtest, so the host drives both with one client (`vmbus_examples::kernel_agent`).
//! Checked here without a VM: the agent runs in a network namespace of its own behind
//! a veth pair whose far end is the host's namespace, and the host runs transfers both
//! ways (every byte checked), turns offloads off and on with the ethtool ioctl,
//! changes the MTU with `ip`, and bounces the link. (Channels and the hv_netvsc
//! rebind need a VMBus NIC; they run in `linux_guest` on hardware KVM.)
//!
//! Needs root and `ip`; otherwise prints SKIPPED and why.

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vmbus_examples::kernel_agent::{AGENT_PORT, Agent};
use vmbus_examples::linux_guest::{GUEST_IP, HOST_IP, Netns, build_guest_agent};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Kills the agent when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two namespaces joined by a veth pair: the host end at HOST_IP and `eth0` at GUEST_IP.
fn veth_pair() -> Result<(Netns, Netns), String> {
    let id = std::process::id() % 100_000;
    let (h, g) = (format!("hvah{id}"), format!("hvag{id}"));
    ip(&["netns", "add", &h])?;
    let host = Netns { name: h.clone() };
    ip(&["netns", "add", &g])?;
    let guest = Netns { name: g.clone() };
    let veth = format!("hvav{id}");
    ip(&[
        "link", "add", &veth, "netns", &h, "type", "veth", "peer", "name", "eth0", "netns", &g,
    ])?;
    for (ns, dev, cidr) in [(&h, veth.as_str(), HOST_IP), (&g, "eth0", GUEST_IP)] {
        ip(&["-n", ns, "addr", "add", &format!("{cidr}/24"), "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    Ok((host, guest))
}

#[test]
fn the_user_space_agent_answers_the_hvtest_protocol() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("SKIPPED: needs root for network namespaces");
        return;
    }
    let (host, guest) = match veth_pair() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: no veth pair in network namespaces ({why})");
            return;
        }
    };
    let agent_bin = build_guest_agent().unwrap_or_else(|e| panic!("{e}"));
    let cidr = format!("{GUEST_IP}/24");
    let child = Command::new("ip")
        .args(["netns", "exec", &guest.name])
        .arg(&agent_bin)
        .args(["serve", &AGENT_PORT.to_string(), &cidr])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("agent: {e}"));
    let _child = Killed(child);
    let t = Duration::from_secs(60);
    let mut agent =
        Agent::connect(&host, t, Box::new(|| Ok(String::new()))).unwrap_or_else(|e| panic!("{e}"));

    let a = agent.to_guest(&host, 2, 7100, 256 << 10, t).unwrap();
    assert_eq!(a.bytes, 512 << 10);
    assert!(
        a.answer.contains("bytes=524288 bad=0 err=0"),
        "{}",
        a.answer
    );
    let b = agent.from_guest(&host, 3, 7110, 100_003, t).unwrap();
    assert_eq!(b.bytes, 300_009);

    let off = agent
        .command("features tx-csum=off tso=off rx-csum=off", t)
        .unwrap();
    assert!(off.contains("tx-csum=0 tso=0"), "{off}");
    let on = agent.command("features tx-csum=on tso=on", t).unwrap();
    assert!(on.contains("tx-csum=1 tso=1"), "{on}");
    assert!(agent.command("features warp=on", t).is_err());

    assert_eq!(agent.command("mtu 9000", t).unwrap(), "ok mtu 9000 err=0");
    agent.to_guest(&host, 1, 7120, 100_000, t).unwrap();
    assert_eq!(agent.command("mtu 1400", t).unwrap(), "ok mtu 1400 err=0");

    assert_eq!(
        agent.command("bounce 200", t).unwrap(),
        "ok bounce 200 err=0"
    );
    agent.from_guest(&host, 2, 7130, 50_000, t).unwrap();

    let (netdev, _) = agent.stats(t).unwrap();
    // eth0 received at least what went to the guest: 512 KiB, then 100,000 bytes.
    let rx: u64 = netdev
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rx_bytes="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{netdev}"));
    assert!(rx >= (512 << 10) + 100_000, "{netdev}");
    assert!(agent.command("rx 0 7140 1", t).is_err());
    assert!(agent.command("no such command", t).is_err());
    drop(agent);
}
