//! The data-path run against a real Linux guest, driven through the control-port agent
//! ([`crate::kernel_agent`]): the guest kernel's hvtest on kvm_pvm
//! (`examples/tests/kernel_datapath.rs`), or `hv-guest-agent serve` in a guest with
//! user space (`examples/tests/linux_guest.rs` on hardware KVM). The steps, each with
//! traffic after it and every byte checked at the receiving end:
//!
//! 1. TCP host to guest and guest to host, `flows` flows at once, in rounds until both
//!    queues carried a real share of the data each way; Linux's checksum and LSO
//!    offloads in use (netvsp's offload counters must move);
//! 2. the offloads off through the driver's feature flags, the transfers again (no
//!    offload request may reach netvsp), then on again;
//! 3. MTU 9000, then 1400 (hv_netvsc tears its NVSP/RNDIS device down and builds it
//!    again each time);
//! 4. channels 1, then 2 (the subchannel closed, then offered and opened again);
//! 5. the link down and, 2 s later, up;
//! 6. hv_netvsc unbound from the VMBus device and bound again;
//! 7. the guest's counters, then poweroff.

use crate::kernel_agent::{Agent, Transfer};
use crate::linux_guest::{Console, GuestVm, LinuxGuest, Netns, VmStatus};
use netvsp::{NicCounters, NicEvent, NicStats};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One step of the run: what the agent answered, how long it took, and what it made
/// the guest do on the NIC's control path.
#[derive(Clone, Debug)]
pub struct Step {
    /// What the step did.
    pub name: String,
    /// The agent's answer (or the transfers' summary).
    pub answer: String,
    /// Seconds it took.
    pub secs: f64,
    /// The NVSP messages, OIDs and channel opens and closes it caused.
    pub events: Vec<NicEvent>,
}

/// What [`run`] saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The first transfer each way with offloads on.
    pub to_guest: Option<Transfer>,
    /// See `to_guest`.
    pub from_guest: Option<Transfer>,
    /// Data frames to the guest per queue (step 1).
    pub rx_data: [u64; 2],
    /// Data packets from the guest per queue (step 1).
    pub tx_data: [u64; 2],
    /// What each frame cost the VMM in exits during step 1 (kvm backend only).
    pub costs: Vec<String>,
    /// The guest's interface counters, and its driver's non-zero ethtool statistics.
    pub guest_counters: (String, String),
    /// Whether the VM powered off after the `poweroff` command.
    pub powered_off: bool,
}

/// The events as one line, repeats folded ("set 0x10204 x2").
pub fn describe(events: &[NicEvent]) -> String {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let s = match e {
            NicEvent::Nvsp(t) => format!("{t:?}"),
            NicEvent::Oid(o) => format!(
                "{} {:#x}{}",
                if o.set { "set" } else { "query" },
                o.oid,
                if o.status == 0 {
                    String::new()
                } else {
                    format!("={:#x}", o.status)
                }
            ),
            NicEvent::Channel { queue, open } => {
                format!("{} q{queue}", if *open { "open" } else { "close" })
            }
            other => format!("{other:?}"),
        };
        match out.last_mut() {
            Some(last) if last.split(" x").next() == Some(s.as_str()) => {
                let n: u32 = last
                    .rsplit_once(" x")
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(1);
                *last = format!("{s} x{}", n + 1);
            }
            _ => out.push(s),
        }
    }
    out.join(", ")
}

fn transfer_line(t: &Transfer) -> String {
    format!(
        "{} flows, {} bytes in {:.1} s = {:.1} Mbit/s; agent: {}",
        t.flows,
        t.bytes,
        t.secs,
        t.mbit_s(),
        t.answer
    )
}

struct Steps {
    nic: NicCounters,
    mark: u64,
    steps: Vec<Step>,
}

impl Steps {
    /// Runs `f` as step `name`, recording its answer and the NIC events it caused.
    fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T, String>,
        answer: impl Fn(&T) -> String,
    ) -> Result<T, String> {
        println!("== {name}");
        let t = Instant::now();
        let r = f();
        let (events, next) = self.nic.events_since(self.mark);
        self.mark = next;
        let r = r.map_err(|e| {
            format!(
                "step {name:?} failed: {e}\nevents: {}\n{:?}",
                describe(&events),
                self.nic.snapshot()
            )
        })?;
        let step = Step {
            name: name.to_string(),
            answer: answer(&r),
            secs: t.elapsed().as_secs_f64(),
            events,
        };
        println!(
            "   {} ({:.1} s)\n   events: {}",
            step.answer,
            step.secs,
            describe(&step.events)
        );
        self.steps.push(step);
        Ok(r)
    }
}

fn delta(after: &NicStats, before: &NicStats, f: impl Fn(&NicStats) -> u64) -> u64 {
    f(after) - f(before)
}

/// A control connection to the guest's agent, printing the guest's last console line
/// while it waits.
pub fn connect<V: GuestVm>(
    guest: &LinuxGuest<V>,
    console: &Console,
    netns: &Netns,
    timeout: Duration,
) -> Result<Agent, String> {
    let vm = Arc::clone(&guest.vm);
    let last_line = console.last_line_fn();
    let progress = Box::new(move || match vm.vm_outcome() {
        Some(o) => Err(format!("the VM ended: {o:?}")),
        None => Ok(format!("guest's last line: {}", last_line())),
    });
    Agent::connect(netns, timeout, progress)
}

/// Runs the steps of this module's docs against `guest`, whose agent listens on
/// [`crate::kernel_agent::AGENT_PORT`] (it printed `HVTEST ready`), moving `bytes` each way in the transfers
/// of steps 1 and 2 and 512 KiB after each later step. The NIC must offer MTU 9000
/// (the TAP too: `kvm_and_tap_mtu`) and 2 queues.
pub fn run<V: GuestVm>(
    guest: &LinuxGuest<V>,
    console: &Console,
    netns: &Netns,
    bytes: u64,
) -> Result<Report, String> {
    let long = Duration::from_secs(1800);
    let nic = guest.nic.clone();
    let mut agent = connect(guest, console, netns, Duration::from_secs(600))?;
    // Events from the bring-up belong to the first step.
    let mut run = Steps {
        nic: nic.clone(),
        mark: 0,
        steps: Vec::new(),
    };
    let mut report = Report::default();
    let flows = 4u32;
    let per_flow = bytes / u64::from(flows);
    let s0 = nic.snapshot();

    // 1. Offloads on, as Linux starts: rounds of 4 flows until each queue carried at
    // least an eighth of the data each way (a flow's queue is the guest's hash of its
    // ports, so a round may put every flow on one queue).
    let mut port = 7100u16;
    for round in 0..4 {
        let before = nic.snapshot();
        let exits_before = guest.vm.kvm_stats();
        let a = run.step(
            &format!("host to guest, offloads on (round {round})"),
            || agent.to_guest(netns, flows, port, per_flow, long),
            transfer_line,
        )?;
        let mid = nic.snapshot();
        let exits_mid = guest.vm.kvm_stats();
        let b = run.step(
            &format!("guest to host, offloads on (round {round})"),
            || agent.from_guest(netns, flows, port + 10, per_flow, long),
            transfer_line,
        )?;
        port += 20;
        let after = nic.snapshot();
        let exits_after = guest.vm.kvm_stats();
        report.to_guest.get_or_insert(a);
        report.from_guest.get_or_insert(b);
        // Data frames per queue: to the guest during the first transfer, from it
        // during the second (the other way only acknowledgements move).
        let add = |sum: &mut [u64; 2], a: &[u64], b: &[u64]| {
            for ((s, a), b) in sum.iter_mut().zip(a).zip(b) {
                *s += a - b;
            }
        };
        add(
            &mut report.rx_data,
            &mid.rx_queue_frames,
            &before.rx_queue_frames,
        );
        add(
            &mut report.tx_data,
            &after.tx_queue_packets,
            &mid.tx_queue_packets,
        );
        println!(
            "   data per queue so far: to guest {:?} frames, from guest {:?} packets",
            report.rx_data, report.tx_data
        );
        if round == 0
            && let (Some(e0), Some(e1), Some(e2)) = (exits_before, exits_mid, exits_after)
        {
            for (dir, a, b, frames) in [
                (
                    "to guest",
                    &e0,
                    &e1,
                    delta(&mid, &before, |s| s.rx_frames + s.tx_frames),
                ),
                (
                    "from guest",
                    &e1,
                    &e2,
                    delta(&after, &mid, |s| s.rx_frames + s.tx_frames),
                ),
            ] {
                let per = |x: u64| x as f64 / frames.max(1) as f64;
                let line = format!(
                    "{dir}: {frames} frames both ways; per frame {:.2} exits ({:.2} MSR, \
                     {:.2} I/O, {:.2} MMIO, {:.2} emulated), {:.2} hypercalls, {:.2} SINT \
                     interrupts",
                    per(b.exits - a.exits),
                    per(b.msr_exits - a.msr_exits),
                    per(b.io_exits - a.io_exits),
                    per(b.mmio_exits - a.mmio_exits),
                    per(b.emulated - a.emulated),
                    per(b.hypercalls - a.hypercalls),
                    per(b.interrupts - a.interrupts),
                );
                println!("   {line}");
                report.costs.push(line);
            }
        }
        let fair = |v: &[u64; 2]| v.iter().all(|&n| n * 8 >= v[0] + v[1]);
        if fair(&report.rx_data) && fair(&report.tx_data) {
            break;
        }
        if round == 3 {
            return Err(format!(
                "after 4 rounds of {flows} flows a queue still carried too little: to guest \
                 {:?}, from guest {:?}",
                report.rx_data, report.tx_data
            ));
        }
    }
    let s1 = nic.snapshot();
    if delta(&s1, &s0, |s| s.tx_lso_packets) == 0 || delta(&s1, &s0, |s| s.tx_offloaded) == 0 {
        return Err(format!(
            "Linux asked for no LSO or checksum offload: {s1:?}"
        ));
    }
    if delta(&s1, &s0, |s| s.rx_checksum_valid) == 0 {
        return Err(format!(
            "no frame to the guest carried checksum info: {s1:?}"
        ));
    }

    // 2. Offloads off through the driver's feature flags, and the transfers again.
    run.step(
        "offloads off",
        || agent.command("features tx-csum=off tso=off rx-csum=off", long),
        Clone::clone,
    )?;
    let s2 = nic.snapshot();
    run.step(
        "host to guest, offloads off",
        || agent.to_guest(netns, flows, port, per_flow, long),
        transfer_line,
    )?;
    run.step(
        "guest to host, offloads off",
        || agent.from_guest(netns, flows, port + 10, per_flow, long),
        transfer_line,
    )?;
    port += 20;
    let s3 = nic.snapshot();
    if delta(&s3, &s2, |s| s.tx_offloaded) != 0 || delta(&s3, &s2, |s| s.tx_frames) < 1000 {
        return Err(format!(
            "with its offloads off Linux still asked for offload work ({} packets) or sent \
             little ({} frames)",
            delta(&s3, &s2, |s| s.tx_offloaded),
            delta(&s3, &s2, |s| s.tx_frames)
        ));
    }
    run.step(
        "offloads on",
        || agent.command("features tx-csum=on tso=on rx-csum=on", long),
        Clone::clone,
    )?;

    let small = 256 << 10;
    let mut both_ways = |run: &mut Steps, agent: &mut Agent, name: &str, flows: u32| {
        let r = run.step(
            name,
            || {
                let a = agent.to_guest(netns, flows, port, small, long)?;
                let b = agent.from_guest(netns, flows, port + 10, small, long)?;
                Ok((a, b))
            },
            |(a, b)| format!("{} | {}", transfer_line(a), transfer_line(b)),
        );
        port += 20;
        r
    };

    // 3. MTU changes: each one tears the NVSP/RNDIS device down and builds it again.
    for mtu in [9000, 1400] {
        run.step(
            &format!("mtu {mtu}"),
            || agent.command(&format!("mtu {mtu}"), long),
            Clone::clone,
        )?;
        both_ways(&mut run, &mut agent, &format!("both ways at mtu {mtu}"), 2)?;
    }

    // 4. Channels 2 -> 1 -> 2: the subchannel closed, then offered and opened again.
    for n in [1u32, 2] {
        run.step(
            &format!("channels {n}"),
            || agent.command(&format!("channels {n}"), long),
            Clone::clone,
        )?;
        both_ways(
            &mut run,
            &mut agent,
            &format!("both ways with {n} channel(s)"),
            2,
        )?;
    }

    // 5. Down and up in one command: with the link down an answer could not come back.
    run.step(
        "down, 2 s, up",
        || agent.command("bounce 2000", long),
        Clone::clone,
    )?;
    both_ways(&mut run, &mut agent, "both ways after down and up", 2)?;

    // 6. Unbind hv_netvsc and bind it again. The agent answers on the console only
    // (the device goes away with the control connection's address).
    run.step(
        "unbind and bind hv_netvsc",
        || {
            agent.send("rebind")?;
            loop {
                let line = console.wait_for("HVTEST ", long, guest.vm.as_ref())?;
                if line.contains(" rebind") {
                    return if line.contains("HVTEST ok rebind") {
                        Ok(line)
                    } else {
                        Err(line)
                    };
                }
            }
        },
        Clone::clone,
    )?;
    agent = connect(guest, console, netns, Duration::from_secs(600))
        .map_err(|e| format!("after the rebind: {e}"))?;
    both_ways(&mut run, &mut agent, "both ways after the rebind", 4)?;

    // 7. What Linux counted, then the end.
    report.guest_counters = run.step(
        "guest's counters",
        || agent.stats(long),
        |(a, b)| format!("{a}; {b}"),
    )?;
    run.step("poweroff", || agent.command("poweroff", long), Clone::clone)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while guest.vm.vm_outcome().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    report.powered_off = guest.vm.vm_outcome() == Some(hv_partition::pc::VmOutcome::PowerOff);
    report.steps = run.steps;
    Ok(report)
}

impl Report {
    /// The summary the tests print: each step with its events, throughput, costs.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            out += &format!(
                "{} ({:.1} s): {}\n    {}\n",
                s.name,
                s.secs,
                s.answer,
                describe(&s.events)
            );
        }
        if let (Some(a), Some(b)) = (&self.to_guest, &self.from_guest) {
            out += &format!(
                "offloads on, {} flows: to guest {:.2} Mbit/s, from guest {:.2} Mbit/s\n",
                a.flows,
                a.mbit_s(),
                b.mbit_s()
            );
        }
        out += &format!(
            "data per queue: to guest {:?} frames, from guest {:?} packets\n",
            self.rx_data, self.tx_data
        );
        for c in &self.costs {
            out += &format!("VMM cost, {c}\n");
        }
        out += &format!(
            "guest counters: {}; {}\n",
            self.guest_counters.0, self.guest_counters.1
        );
        out
    }
}
