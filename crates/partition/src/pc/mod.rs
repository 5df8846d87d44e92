//! The minimal PC the hardware backends (kvm, mshv) present to a Linux guest: the
//! guest-physical layout, the kernel loader (64-bit boot protocol), ACPI tables with
//! the VMBus device, and the port-I/O devices (COM1, ACPI PM1, i8042 reset).
//!
//! Everything here is backend-neutral: it writes guest memory and answers port
//! accesses; the backend decides how exits reach it.

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod devices;
pub mod emulate;
pub mod layout;

/// How a VM ended (kvm and mshv backends).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VmOutcome {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest reset itself (i8042 pulse, triple fault or a reset event).
    Reset,
    /// The VMM asked the VM to stop.
    Stopped,
    /// A vCPU halted with interrupts disabled and the hypervisor handed the HLT to the
    /// VMM (mshv): the guest stopped itself without powering off.
    Halted,
    /// A vCPU failed; the reason.
    Failed(String),
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The real-time signal that interrupts a vCPU thread blocked in the hypervisor's run
/// ioctl (which then returns EINTR).
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

/// Installs the (empty) handler of [`kick_signal`], so the signal interrupts the run
/// ioctl instead of killing the process.
/// Registers it once per process; later calls return the first result.
pub(crate) fn install_kick_handler() -> std::io::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
                .map_err(|e| e.errno())
        })
        .map_err(std::io::Error::from_raw_os_error)
}

/// The vCPU threads of a VM and how it ended: what the kvm and mshv backends share
/// (spawn, stop by kicking threads out of the run ioctl, wait with a timeout).
pub(crate) struct VcpuThreads {
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop: std::sync::atomic::AtomicBool,
    outcome: std::sync::Mutex<Option<VmOutcome>>,
    /// For log lines ("kvm", "mshv").
    backend: &'static str,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VcpuThreads {
    pub(crate) fn new(backend: &'static str) -> Self {
        Self {
            threads: std::sync::Mutex::new(Vec::new()),
            stop: std::sync::atomic::AtomicBool::new(false),
            outcome: std::sync::Mutex::new(None),
            backend,
        }
    }

    /// Starts `run(i, vcpu)` on thread `<backend>-vcpu<i>` for each of `vcpus`.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        vcpus: Vec<T>,
        run: impl Fn(usize, T) + Clone + Send + 'static,
    ) -> std::io::Result<()> {
        // Whoever made the vCPUs (a backend, or a test's fake ones), the kick that
        // stops them must find its handler, or it kills the process.
        install_kick_handler()?;
        let mut threads = lock(&self.threads);
        for (i, vcpu) in vcpus.into_iter().enumerate() {
            let run = run.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{}-vcpu{i}", self.backend))
                    .spawn(move || run(i, vcpu))?,
            );
        }
        Ok(())
    }

    /// Whether the VM is stopping (vCPU loops check this between exits).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records how the VM ended (the first outcome wins) and asks every vCPU to stop.
    pub(crate) fn finish(&self, outcome: VmOutcome) {
        let mut o = lock(&self.outcome);
        if o.is_none() {
            match &outcome {
                VmOutcome::Failed(why) => tracing::error!("{}: VM failed: {why}", self.backend),
                other => tracing::info!("{}: VM ended: {other:?}", self.backend),
            }
            *o = Some(outcome);
        }
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Asks the VM to stop (the outcome is [`VmOutcome::Stopped`] unless it already
    /// ended) and waits up to `timeout` for the vCPU threads.
    pub(crate) fn stop(&self, timeout: std::time::Duration) -> VmOutcome {
        self.finish(VmOutcome::Stopped);
        self.wait(Some(timeout))
    }

    /// Marks the VM stopping without an outcome (the owner is going away).
    pub(crate) fn stop_quietly(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The outcome, once decided.
    pub(crate) fn outcome(&self) -> Option<VmOutcome> {
        lock(&self.outcome).clone()
    }

    /// Interrupts every running vCPU thread's run ioctl.
    pub(crate) fn kick(&self) {
        use vmm_sys_util::signal::Killable;
        for t in lock(&self.threads).iter().filter(|t| !t.is_finished()) {
            let _ = t.kill(kick_signal());
        }
    }

    /// Waits until every vCPU thread returned or `timeout` passes (kicking them while
    /// the VM is stopping); returns the outcome, or [`VmOutcome::Stopped`] if none was
    /// decided yet.
    pub(crate) fn wait(&self, timeout: Option<std::time::Duration>) -> VmOutcome {
        let start = std::time::Instant::now();
        loop {
            if self.stopping() {
                self.kick();
            }
            let done = lock(&self.threads).iter().all(|t| t.is_finished());
            if done || timeout.is_some_and(|t| start.elapsed() >= t) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for t in std::mem::take(&mut *lock(&self.threads)) {
            if t.is_finished() {
                let _ = t.join();
            } else {
                lock(&self.threads).push(t);
            }
        }
        self.outcome().unwrap_or(VmOutcome::Stopped)
    }
}
