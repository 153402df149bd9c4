//! [`PauseOnFailure`]: Karafka's pause-with-backoff. A record whose handler call fails with a
//! chosen kind of failure is tried again after a backoff, while its partition (in key order:
//! its key) waits, instead of going to the failure path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::message::{FailureKind, FailureReason};

/// Pauses a record's partition for a backoff after its message handler fails, then tries
/// the same record again: the cheap cousin of a retry task's in-place mode, for a downstream
/// that is briefly down. Set it with
/// [`PipelineBuilder::pause_on_failure`](super::PipelineBuilder::pause_on_failure).
///
/// While a record backs off, nothing after it in its partition runs (in key order: nothing
/// after it with its key), the record gives its concurrency slot back, and the partition's
/// demand window fills up, so the engine stops fetching it: memory stays bounded, and the
/// partition stays assigned (no rebalance). The backoff doubles from `initial` up to `max`.
/// Once `max_attempts` calls failed (if set), or for a failure it does not apply to, the
/// record fails as usual, to the failure handler, with its attempt count.
///
/// ```
/// use std::time::Duration;
/// use sluicegate::pipeline::{FailureKind, PauseOnFailure};
///
/// let pause = PauseOnFailure::new(Duration::from_millis(100), Duration::from_secs(30))
///     .when(|reason| reason.kind == FailureKind::Timeout)
///     .max_attempts(20);
/// assert_eq!(pause.delay_after(1), Some(Duration::from_millis(100)));
/// assert_eq!(pause.delay_after(3), Some(Duration::from_millis(400)));
/// assert_eq!(pause.delay_after(20), None);
/// ```
#[derive(Clone)]
pub struct PauseOnFailure {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    applies: Arc<dyn Fn(&FailureReason) -> bool + Send + Sync>,
}

impl PauseOnFailure {
    /// Backs off from `initial`, doubling up to `max`, after every retriable failure
    /// (errors, panics and timeouts; not [`Permanent`](super::Permanent) errors or records
    /// that do not decode), without a limit on attempts.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            max_attempts: None,
            applies: Arc::new(|reason: &FailureReason| reason.kind.is_retriable()),
        }
    }

    /// Backs off only after failures for which `applies` holds (say, timeouts of a
    /// downstream); the others fail the record at once.
    pub fn when(
        mut self,
        applies: impl Fn(&FailureReason) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.applies = Arc::new(applies);
        self
    }

    /// Gives up after this many failed calls of one record: it then fails as usual.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// How long to back off after the `failures`-th failed call of a record, or `None`
    /// once the attempts are spent.
    pub fn delay_after(&self, failures: u32) -> Option<Duration> {
        if failures == 0 || self.max_attempts.is_some_and(|most| failures >= most) {
            return None;
        }
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        Some(
            self.initial
                .checked_mul(factor)
                .map_or(self.max, |delay| delay.min(self.max)),
        )
    }

    /// The backoff after `failures` failed calls ending in `reason`, or `None` when the
    /// record fails now.
    pub(crate) fn backoff(&self, failures: u32, reason: &FailureReason) -> Option<Duration> {
        if reason.kind == FailureKind::Decode || !(self.applies)(reason) {
            return None;
        }
        self.delay_after(failures)
    }

    /// Checks the settings; the key names the setting.
    pub(crate) fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.initial.is_zero() {
            Some(("pause_on_failure.initial", "must be greater than zero"))
        } else if self.max < self.initial {
            Some((
                "pause_on_failure.max",
                "must be at least the initial backoff",
            ))
        } else if self.max_attempts == Some(0) {
            Some(("pause_on_failure.max_attempts", "must be at least 1"))
        } else {
            None
        }
    }
}

impl fmt::Debug for PauseOnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PauseOnFailure")
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}
