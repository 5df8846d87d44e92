//! The mshv run loop and SynIC queueing driven by recorded intercept messages and a
//! scripted hypervisor (no /dev/mshv needed).

use super::message::{HVMSG_X64_HALT, build};
use super::*;
use hv_hypercall::control::{HypercallCode, HypercallControl};
use hv_hypercall::input::{PostMessage, SignalEvent};
use hv_hypercall::message::HvMessageType;
use hv_hypercall::{HvStatus, HypercallResult};
use zerocopy::IntoBytes;

/// What the scripted hypervisor was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Post { vp: u32, sint: u8, first: u8 },
    Signal { vp: u32, sint: u8, flag: u16 },
    Deliverability { vp: u32, sints: u16 },
}

/// A hypervisor with one SIMP slot per (VP, SINT): a post fills it, `eom` empties it.
#[derive(Default)]
struct FakeHv {
    calls: Mutex<Vec<Call>>,
    occupied: Mutex<Vec<(u32, u8)>>,
    fail_post: Mutex<Option<OpError>>,
    fail_register: Mutex<Option<OpError>>,
}

impl FakeHv {
    fn eom(&self, vp: u32, sint: u8) {
        lock(&self.occupied).retain(|s| *s != (vp, sint));
    }
    fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }
}

impl PartitionOps for Arc<FakeHv> {
    fn post_message_direct(&self, vp: u32, sint: u8, message: &HvMessage) -> Result<(), OpError> {
        if let Some(e) = *lock(&self.fail_post) {
            return Err(e);
        }
        let mut occ = lock(&self.occupied);
        if occ.contains(&(vp, sint)) {
            return Err(OpError::Hv(HvStatus::OBJECT_IN_USE));
        }
        occ.push((vp, sint));
        lock(&self.calls).push(Call::Post {
            vp,
            sint,
            first: message.payload[0],
        });
        Ok(())
    }
    fn signal_event_direct(&self, vp: u32, sint: u8, flag: u16) -> Result<bool, OpError> {
        lock(&self.calls).push(Call::Signal { vp, sint, flag });
        Ok(true)
    }
    fn register_deliverability(&self, vp: u32, sints: u16) -> Result<(), OpError> {
        if let Some(e) = *lock(&self.fail_register) {
            return Err(e);
        }
        lock(&self.calls).push(Call::Deliverability { vp, sints });
        Ok(())
    }
}

/// Register writes, one entry per completed intercept.
type RegLog = Arc<Mutex<Vec<Vec<(Reg, u64)>>>>;

/// A vCPU that returns recorded messages in order, then halts.
struct ScriptedVcpu {
    script: VecDeque<Result<HvMessage, OpError>>,
    vp: u32,
    regs: RegLog,
}

impl VcpuOps for ScriptedVcpu {
    fn run(&mut self) -> Result<HvMessage, OpError> {
        self.script
            .pop_front()
            .unwrap_or_else(|| Ok(build::raw(HVMSG_X64_HALT, self.vp, 0, 1)))
    }
    fn set_registers(&mut self, regs: &[(Reg, u64)]) -> Result<(), OpError> {
        lock(&self.regs).push(regs.to_vec());
        Ok(())
    }
}

#[derive(Default)]
struct Handler {
    posts: Mutex<Vec<(u32, PostMessage)>>,
    events: Mutex<Vec<(u32, SignalEvent)>>,
}

impl HypercallHandler for Handler {
    fn post_message(&self, vp: u32, message: &PostMessage) -> HvStatus {
        lock(&self.posts).push((vp, *message));
        HvStatus::SUCCESS
    }
    fn signal_event(&self, vp: u32, event: &SignalEvent) -> HvStatus {
        lock(&self.events).push((vp, *event));
        HvStatus::SUCCESS
    }
}

#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Rig {
    vm: Arc<MshvPartition>,
    hv: Arc<FakeHv>,
    handler: Arc<Handler>,
    console: Console,
}

fn rig(vps: u32) -> Rig {
    let hv = Arc::new(FakeHv::default());
    let console = Console::default();
    let memory = GuestMemory::new(1 << 20).unwrap();
    let vm = MshvPartition::with_ops(
        Box::new(hv.clone()),
        (0..vps)
            .map(|vp| {
                Box::new(ScriptedVcpu {
                    script: VecDeque::new(),
                    vp,
                    regs: Arc::default(),
                }) as Box<dyn VcpuOps>
            })
            .collect(),
        memory,
        Box::new(console.clone()),
    )
    .unwrap();
    let handler = Arc::new(Handler::default());
    vm.set_hypercall_handler(handler.clone());
    Rig {
        vm,
        hv,
        handler,
        console,
    }
}

/// Runs VP `vp` over `script` (then a HALT) on this thread; returns the outcome and
/// the register writes.
fn run(
    vm: &MshvPartition,
    vp: u32,
    script: Vec<Result<HvMessage, OpError>>,
) -> (VmOutcome, Vec<Vec<(Reg, u64)>>) {
    let regs = RegLog::default();
    vm.run_vcpu(
        vp,
        Box::new(ScriptedVcpu {
            script: script.into(),
            vp,
            regs: regs.clone(),
        }),
    );
    let r = lock(&regs).clone();
    (vm.outcome().unwrap(), r)
}

fn status(s: HvStatus) -> u64 {
    HypercallResult::new(s).to_u64()
}

fn msg(first: u8) -> HvMessage {
    HvMessage::new(HvMessageType(1), &[first, 0, 0, 0]).unwrap()
}

#[test]
fn slow_post_message_reaches_the_handler_and_completes_rax_and_rip() {
    let r = rig(1);
    let input = PostMessage {
        connection_id: 4,
        message_type: HvMessageType(1),
        payload_size: 3,
        payload: {
            let mut p = [0u8; 240];
            p[..3].copy_from_slice(b"abc");
            p
        },
    };
    r.vm.memory()
        .write(0x3000, input.to_raw().as_bytes())
        .unwrap();
    let control = HypercallControl::new(HypercallCode::POST_MESSAGE).to_u64();
    let (outcome, regs) = run(
        &r.vm,
        0,
        vec![Ok(build::hypercall(0, 0x10_0000, control, 0x3000, 0))],
    );
    assert_eq!(outcome, VmOutcome::Halted);
    assert_eq!(
        regs,
        vec![vec![
            (Reg::Rax, status(HvStatus::SUCCESS)),
            (Reg::Rip, 0x10_0003)
        ]]
    );
    let posts = lock(&r.handler.posts);
    assert_eq!(posts.len(), 1);
    assert_eq!((posts[0].0, posts[0].1.connection_id), (0, 4));
    assert_eq!(posts[0].1.payload(), b"abc");
    assert_eq!(r.vm.stats().hypercalls, 1);
}

#[test]
fn fast_signal_event_reaches_the_handler() {
    let r = rig(2);
    let control = HypercallControl::new(HypercallCode::SIGNAL_EVENT)
        .with_fast(true)
        .to_u64();
    let ev = SignalEvent {
        connection_id: 0x2_0001,
        flag_number: 7,
    };
    let (_, regs) = run(
        &r.vm,
        1,
        vec![Ok(build::hypercall(
            1,
            0x2000,
            control,
            ev.to_fast_value(),
            0,
        ))],
    );
    assert_eq!(regs[0][0], (Reg::Rax, status(HvStatus::SUCCESS)));
    assert_eq!(*lock(&r.handler.events), vec![(1, ev)]);
}

#[test]
fn refused_hypercalls_get_a_status_and_never_reach_the_handler() {
    let r = rig(1);
    // Fast HvPostMessage is not allowed; an unknown code; an unreadable input GPA.
    let fast_post = HypercallControl::new(HypercallCode::POST_MESSAGE)
        .with_fast(true)
        .to_u64();
    let unknown = HypercallControl::new(HypercallCode(0x99)).to_u64();
    let post = HypercallControl::new(HypercallCode::POST_MESSAGE).to_u64();
    let (_, regs) = run(
        &r.vm,
        0,
        vec![
            Ok(build::hypercall(0, 0x1000, fast_post, 0, 0)),
            Ok(build::hypercall(0, 0x2000, unknown, 0, 0)),
            Ok(build::hypercall(0, 0x3000, post, 0xfff_f000, 0)),
        ],
    );
    let rax: Vec<u64> = regs.iter().map(|r| r[0].1).collect();
    assert_eq!(
        rax,
        vec![
            status(HvStatus::INVALID_HYPERCALL_INPUT),
            status(HvStatus::INVALID_HYPERCALL_CODE),
            status(HvStatus::INVALID_ALIGNMENT),
        ]
    );
    // Every one still steps past its VMCALL.
    let rips: Vec<u64> = regs.iter().map(|r| r[1].1).collect();
    assert_eq!(rips, vec![0x1003, 0x2003, 0x3003]);
    assert!(lock(&r.handler.posts).is_empty());
}

#[test]
fn busy_slot_queues_in_order_until_deliverable_notifications() {
    let r = rig(1);
    r.vm.post_message(0, 2, &msg(b'A')).unwrap();
    r.vm.post_message(0, 2, &msg(b'B')).unwrap();
    r.vm.post_message(0, 2, &msg(b'C')).unwrap();
    assert_eq!(r.vm.queued(0, 2), 2);
    assert_eq!(
        r.hv.calls(),
        vec![
            Call::Post {
                vp: 0,
                sint: 2,
                first: b'A'
            },
            Call::Deliverability {
                vp: 0,
                sints: 1 << 2
            },
            Call::Deliverability {
                vp: 0,
                sints: 1 << 2
            },
        ]
    );
    // The guest EOMs; the hypervisor notifies; B goes out, C waits again.
    r.hv.eom(0, 2);
    let regs = Arc::new(Mutex::new(Vec::new()));
    let mut vcpu = ScriptedVcpu {
        script: VecDeque::new(),
        vp: 0,
        regs,
    };
    r.vm.handle_exit(0, &mut vcpu, &build::sint_deliverable(0, 1 << 2))
        .unwrap();
    assert_eq!(r.vm.queued(0, 2), 1);
    r.hv.eom(0, 2);
    r.vm.handle_exit(0, &mut vcpu, &build::sint_deliverable(0, 1 << 2))
        .unwrap();
    assert_eq!(r.vm.queued(0, 2), 0);
    let calls = r.hv.calls();
    assert_eq!(
        &calls[3..],
        &[
            Call::Post {
                vp: 0,
                sint: 2,
                first: b'B'
            },
            Call::Deliverability {
                vp: 0,
                sints: 1 << 2
            },
            Call::Post {
                vp: 0,
                sint: 2,
                first: b'C'
            },
        ]
    );
    let s = r.vm.stats();
    assert_eq!(s.posted, 1);
    assert_eq!(s.queued, 2);
    assert_eq!(s.flushed, 2);
    assert_eq!(s.deliverable_exits, 2);
    // A free slot on another SINT is not held up by SINT 2's queue.
    r.vm.post_message(0, 3, &msg(b'D')).unwrap();
    assert_eq!(r.vm.stats().posted, 2);
}

#[test]
fn queue_is_bounded_and_errors_are_reported() {
    let r = rig(1);
    r.vm.post_message(0, 2, &msg(0)).unwrap();
    for i in 0..DEFAULT_QUEUE_DEPTH {
        r.vm.post_message(0, 2, &msg(i as u8)).unwrap();
    }
    assert_eq!(
        r.vm.post_message(0, 2, &msg(0xff)),
        Err(PartitionError::Synic(SynicError::QueueFull(2)))
    );
    assert_eq!(r.vm.stats().queue_full, 1);
    assert_eq!(r.vm.queued(0, 2), DEFAULT_QUEUE_DEPTH);
    assert_eq!(
        r.vm.post_message(0, 16, &msg(0)),
        Err(PartitionError::Synic(SynicError::InvalidSint(16)))
    );
    assert_eq!(
        r.vm.post_message(5, 0, &msg(0)),
        Err(PartitionError::InvalidVp(5))
    );

    // A hard failure is an error, not a queued message.
    let r = rig(1);
    *lock(&r.hv.fail_post) = Some(OpError::Hv(HvStatus::INVALID_VP_INDEX));
    assert!(matches!(
        r.vm.post_message(0, 2, &msg(0)),
        Err(PartitionError::Hypervisor(_))
    ));
    assert_eq!(r.vm.queued(0, 2), 0);

    // Without a deliverability registration the message is taken back.
    let r = rig(1);
    r.vm.post_message(0, 2, &msg(0)).unwrap();
    *lock(&r.hv.fail_register) = Some(OpError::Os(libc::EIO));
    assert!(matches!(
        r.vm.post_message(0, 2, &msg(1)),
        Err(PartitionError::Hypervisor(_))
    ));
    assert_eq!(r.vm.queued(0, 2), 0);
    assert_eq!(r.vm.stats().hypervisor_errors, 1);
}

#[test]
fn flush_drops_a_message_the_hypervisor_rejects_and_goes_on() {
    let r = rig(1);
    r.vm.post_message(0, 2, &msg(b'A')).unwrap();
    r.vm.post_message(0, 2, &msg(b'B')).unwrap();
    r.hv.eom(0, 2);
    *lock(&r.hv.fail_post) = Some(OpError::Hv(HvStatus::INVALID_PARAMETER));
    let mut vcpu = ScriptedVcpu {
        script: VecDeque::new(),
        vp: 0,
        regs: Arc::default(),
    };
    r.vm.handle_exit(0, &mut vcpu, &build::sint_deliverable(0, 1 << 2))
        .unwrap();
    assert_eq!(r.vm.queued(0, 2), 0);
    assert_eq!(r.vm.stats().dropped, 1);
}

#[test]
fn signal_event_is_checked_then_direct() {
    let r = rig(2);
    r.vm.signal_event(1, 2, 5).unwrap();
    assert_eq!(
        r.vm.signal_event(1, 2, 2048),
        Err(PartitionError::Synic(SynicError::InvalidFlag(2048)))
    );
    assert_eq!(
        r.vm.signal_event(1, 16, 0),
        Err(PartitionError::Synic(SynicError::InvalidSint(16)))
    );
    assert_eq!(
        r.vm.signal_event(2, 0, 0),
        Err(PartitionError::InvalidVp(2))
    );
    assert_eq!(
        r.hv.calls(),
        vec![Call::Signal {
            vp: 1,
            sint: 2,
            flag: 5
        }]
    );
}

#[test]
fn port_io_drives_the_console_and_power_off() {
    use crate::pc::layout::{COM1_PORT, PM1A_CNT_PORT};
    let r = rig(1);
    let (outcome, regs) = run(
        &r.vm,
        0,
        vec![
            Ok(build::io(
                0,
                0x100,
                COM1_PORT,
                1,
                true,
                0x4141_4141_4141_4148,
            )),
            Err(OpError::Interrupted),
            Ok(build::io(0, 0x101, COM1_PORT, 1, true, b'i' as u64)),
            // IN AL keeps RAX's upper bytes; IN EAX zero-extends.
            Ok(build::io(
                0,
                0x102,
                PM1A_CNT_PORT,
                1,
                false,
                0xdead_beef_0000_0000,
            )),
            Ok(build::io(0, 0x103, 0x1234, 4, false, 0xdead_beef_0000_0000)),
            // SLP_TYPa = 5, SLP_EN.
            Ok(build::io(
                0,
                0x104,
                PM1A_CNT_PORT,
                2,
                true,
                (1 << 13) | (5 << 10),
            )),
            Ok(build::io(0, 0x105, COM1_PORT, 1, true, b'X' as u64)),
        ],
    );
    assert_eq!(outcome, VmOutcome::PowerOff);
    assert_eq!(&*lock(&r.console.0), b"Hi");
    assert_eq!(
        regs[2],
        vec![(Reg::Rax, 0xdead_beef_0000_0001), (Reg::Rip, 0x103)]
    );
    assert_eq!(regs[3], vec![(Reg::Rax, 0xffff_ffff), (Reg::Rip, 0x104)]);
    assert_eq!(regs.len(), 5, "the write after poweroff never ran");
    assert_eq!(r.vm.stats().io_exits, 5);
}

#[test]
fn malformed_and_unsupported_exits_stop_the_vm_with_a_reason() {
    let cases: Vec<(HvMessage, &str)> = vec![
        (build::io(0, 0, 0x3f8, 3, true, 0), "access size 3"),
        (
            {
                let mut m = build::hypercall(0, 0, 0x5c, 0, 0);
                m.payload[4] = 0;
                m
            },
            "instruction length 0",
        ),
        (build::hypercall(1, 0, 0x5c, 0, 0), "intercept for VP 1"),
        (build::mmio(0, 0x40, 0xfec0_0000), "GPA 0xfec00000"),
        (build::raw(0x8001_0001, 0, 0, 2), "message type 0x80010001"),
        (
            {
                let mut m = build::io(0, 0, 0x3f8, 1, true, 0);
                m.payload[42] |= 0x8;
                m
            },
            "string I/O",
        ),
        (build::raw(0x7fff_0000, 0, 0, 1), "message type 0x7fff0000"),
    ];
    for (m, want) in cases {
        let r = rig(1);
        let (outcome, regs) = run(&r.vm, 0, vec![Ok(m)]);
        match outcome {
            VmOutcome::Failed(why) => assert!(why.contains(want), "{why:?} lacks {want:?}"),
            other => panic!("{want}: {other:?}"),
        }
        assert!(regs.is_empty());
    }
    let r = rig(1);
    run(&r.vm, 0, vec![Ok(build::io(0, 0, 0x3f8, 5, true, 0))]);
    assert_eq!(r.vm.stats().bad_messages, 1);
    let r = rig(1);
    let (outcome, _) = run(
        &r.vm,
        0,
        vec![Ok(build::raw(
            message::HVMSG_UNRECOVERABLE_EXCEPTION,
            0,
            0,
            0,
        ))],
    );
    assert_eq!(outcome, VmOutcome::Reset);
    let r = rig(1);
    let (outcome, _) = run(&r.vm, 0, vec![Err(OpError::Os(libc::EFAULT))]);
    assert!(matches!(outcome, VmOutcome::Failed(w) if w.contains("run")));
}

#[test]
fn threads_run_every_vp_and_start_only_once() {
    let r = rig(2);
    r.vm.start().unwrap();
    assert_eq!(r.vm.wait(Some(Duration::from_secs(10))), VmOutcome::Halted);
    assert!(matches!(r.vm.start(), Err(MshvError::AlreadyStarted)));
    // The first HALT ends the VM; the other VP may have halted too before it saw that.
    assert!((1..=2).contains(&r.vm.stats().exits));
}

#[test]
fn synthetic_feature_bits_match_mshv_bindings() {
    let mut f = mshv_bindings::hv_partition_synthetic_processor_features__bindgen_ty_1::default();
    f.set_hypervisor_present(1);
    f.set_hv1(1);
    f.set_access_partition_reference_counter(1);
    f.set_access_synic_regs(1);
    f.set_access_synthetic_timer_regs(1);
    f.set_access_intr_ctrl_regs(1);
    f.set_access_hypercall_regs(1);
    f.set_access_vp_index(1);
    f.set_access_partition_reference_tsc(1);
    f.set_access_guest_idle_reg(1);
    f.set_access_frequency_regs(1);
    f.set_direct_synthetic_timers(1);
    f.set_tb_flush_hypercalls(1);
    f.set_synthetic_cluster_ipi(1);
    f.set_access_vp_regs(1);
    assert_eq!(f._bitfield_1.get(0, 64), SYNTHETIC_FEATURES);
}

#[test]
fn without_dev_mshv_creation_fails_with_a_clear_error() {
    if is_available() {
        eprintln!("SKIPPED: /dev/mshv exists here; this test checks the error without it");
        return;
    }
    let config = MshvConfig {
        memory_size: 128 << 20,
        vcpus: 1,
        kernel: "/nonexistent".into(),
        initrd: None,
        cmdline: String::new(),
    };
    let err = MshvPartition::new(&config, Box::new(std::io::sink()))
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, MshvError::Unavailable(_)), "{text}");
    assert!(
        text.contains("/dev/mshv") && text.contains("CONFIG_MSHV_ROOT"),
        "{text}"
    );
    // Configuration errors come first, without touching the device.
    let bad = MshvConfig { vcpus: 0, ..config };
    assert!(matches!(
        MshvPartition::new(&bad, Box::new(std::io::sink())),
        Err(MshvError::Config(_))
    ));
}

#[test]
fn random_intercept_messages_never_panic() {
    // Random headers and payloads, half of them with a type this backend handles, go
    // through the exit handler; each either completes or ends the VM with a reason.
    let types = [
        message::HVMSG_HYPERCALL_INTERCEPT,
        message::HVMSG_X64_IO_PORT_INTERCEPT,
        message::HVMSG_SYNIC_SINT_DELIVERABLE,
        message::HVMSG_UNMAPPED_GPA,
        HVMSG_X64_HALT,
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let r = rig(1);
    let mut vcpu = ScriptedVcpu {
        script: VecDeque::new(),
        vp: 0,
        regs: RegLog::default(),
    };
    let mut outcomes = [0usize; 2];
    for i in 0..20_000 {
        let mut m = HvMessage::EMPTY;
        for chunk in m.payload.chunks_mut(8) {
            let v = next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        m.header.message_type = HvMessageType(if i % 2 == 0 {
            types[(next() % types.len() as u64) as usize]
        } else {
            next() as u32
        });
        // Mostly our VP, so decoding goes past the VP check.
        if i % 8 != 0 {
            m.payload[..4].copy_from_slice(&0u32.to_le_bytes());
        }
        outcomes[usize::from(r.vm.handle_exit(0, &mut vcpu, &m).is_err())] += 1;
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
