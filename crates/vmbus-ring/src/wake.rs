//! The [`Wake`] trait: what a ring's owner is woken through, whatever it runs on (a
//! thread's doorbell, an eventfd, an async waker, a bare-metal guest's flag).

/// Something to ring when there may be work: implemented (with feature `std`) by
/// [`Doorbell`](crate::Doorbell) (a thread sleeps on it),
/// [`EventFd`](crate::EventFd) (an event loop polls it) and by anything a VMM brings
/// (an async task's waker, a pipe).
///
/// `wake` is called from any thread, often (once per peer signal), and must not block.
/// Spurious wake-ups are allowed: whoever is woken re-checks its work.
pub trait Wake: Send + Sync {
    /// There may be work for the owner: wake it, or make its next wait return at once.
    fn wake(&self);
}

impl<T: Wake + ?Sized> Wake for alloc::sync::Arc<T> {
    fn wake(&self) {
        (**self).wake()
    }
}

/// A [`Wake`] that calls a closure (e.g. to wake an async task or post to an event
/// loop).
pub struct WakeFn<F>(pub F);

impl<F: Fn() + Send + Sync> Wake for WakeFn<F> {
    fn wake(&self) {
        (self.0)()
    }
}

impl<F> core::fmt::Debug for WakeFn<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WakeFn")
    }
}
