//! [`counters!`](crate::counters): one list of counters gives the atomics a runtime
//! updates from its threads and the plain snapshot struct its users read, so no
//! public API hands out atomics.

/// Declares a snapshot struct of `u64` counters (and `[u64; N]` arrays) and the atomic
/// struct behind it, with `fn snapshot(&self) -> Snapshot` on the atomic one:
///
/// ```
/// vmbus_ring::counters! {
///     /// What users read.
///     pub struct Stats;
///     /// What threads update.
///     pub(crate) struct Counters;
///     {
///         /// Frames.
///         frames: one,
///         /// Frames per queue.
///         per_queue: [4],
///     }
/// }
/// let c = Counters::default();
/// c.frames.fetch_add(2, core::sync::atomic::Ordering::Relaxed);
/// assert_eq!(c.snapshot().frames, 2);
/// assert_eq!(c.snapshot().per_queue, [0; 4]);
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[$smeta:meta])* pub struct $snap:ident;
        $(#[$cmeta:meta])* $cvis:vis struct $atomic:ident;
        { $($(#[$doc:meta])* $name:ident: $kind:tt,)* }
    ) => {
        $(#[$smeta])*
        #[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $snap {
            $($(#[$doc])* pub $name: $crate::counters!(@snap $kind),)*
        }

        $(#[$cmeta])*
        #[derive(Debug, Default)]
        $cvis struct $atomic {
            $($(#[$doc])* pub(crate) $name: $crate::counters!(@atomic $kind),)*
        }

        impl $atomic {
            /// Reads every counter (each atomically; not all at one instant).
            #[allow(dead_code)]
            $cvis fn snapshot(&self) -> $snap {
                $snap {
                    $($name: $crate::counters!(@load $kind, self.$name),)*
                }
            }
        }
    };
    (@snap one) => { u64 };
    (@snap [$n:expr]) => { [u64; $n] };
    (@atomic one) => { ::core::sync::atomic::AtomicU64 };
    (@atomic [$n:expr]) => { [::core::sync::atomic::AtomicU64; $n] };
    (@load one, $e:expr) => { $e.load(::core::sync::atomic::Ordering::Relaxed) };
    (@load [$n:expr], $e:expr) => {
        $e.each_ref().map(|c| c.load(::core::sync::atomic::Ordering::Relaxed))
    };
}
