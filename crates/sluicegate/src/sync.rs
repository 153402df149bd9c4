//! Locking helpers shared by the engine's threads.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex whose data stays consistent even if a holder panicked: every mutex this
/// crate locks this way guards plain values (maps of partitions, counters, flags) that a
/// panic cannot leave half-updated, so the data is used as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
