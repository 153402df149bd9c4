//! Stall detection: a partition that has work and makes no progress for the stall timeout
//! ([`ConsumerOptions::stall_timeout`](crate::ConsumerOptions::stall_timeout)).
//!
//! A partition has work while records are unacknowledged or buffered, or while librdkafka's
//! fetch position is below the partition's end offset. Progress is a record delivered or
//! acknowledged. The watch looks at each round of librdkafka statistics, on the poll thread;
//! the verdict is read by readiness and the engine's stats from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Gauge;

use crate::sync::lock;

/// What a look changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StallChange {
    /// No progress with work to do for this long: now stalled.
    Stalled(Duration),
    /// Progress again (or nothing left to do) after being stalled.
    Resumed,
}

/// The pure part: when progress was last seen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StallClock {
    progress: u64,
    since: Instant,
    stalled: bool,
}

impl StallClock {
    pub fn new(now: Instant) -> Self {
        Self {
            progress: 0,
            since: now,
            stalled: false,
        }
    }

    /// One look: `progress` counts records delivered and acknowledged so far, `has_work` says
    /// whether anything waits for the application or the fetcher.
    pub fn observe(
        &mut self,
        now: Instant,
        progress: u64,
        has_work: bool,
        timeout: Duration,
    ) -> Option<StallChange> {
        if progress != self.progress || !has_work {
            self.progress = progress;
            self.since = now;
            return std::mem::take(&mut self.stalled).then_some(StallChange::Resumed);
        }
        let quiet = now.saturating_duration_since(self.since);
        if !self.stalled && quiet >= timeout {
            self.stalled = true;
            return Some(StallChange::Stalled(quiet));
        }
        None
    }
}

/// One partition's stall watch: the clock, the verdict and its gauge.
#[derive(Debug)]
pub(crate) struct StallWatch {
    clock: Mutex<StallClock>,
    stalled: AtomicBool,
    gauge: Gauge,
}

impl StallWatch {
    pub fn new(gauge: Gauge) -> Self {
        gauge.set(0.0);
        Self {
            clock: Mutex::new(StallClock::new(Instant::now())),
            stalled: AtomicBool::new(false),
            gauge,
        }
    }

    /// Whether the partition is stalled now.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// One look (see [`StallClock::observe`]); keeps the verdict and the gauge in step.
    pub fn observe(&self, progress: u64, has_work: bool, timeout: Duration) -> Option<StallChange> {
        let change = lock(&self.clock).observe(Instant::now(), progress, has_work, timeout);
        match change {
            Some(StallChange::Stalled(_)) => self.set(true),
            Some(StallChange::Resumed) => self.set(false),
            None => {}
        }
        change
    }

    /// The partition left this member: it is not stalled here any more.
    pub fn clear(&self) {
        self.set(false);
    }

    fn set(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Release);
        self.gauge.set(if stalled { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn work_without_progress_stalls_once_and_progress_resumes() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut clock = StallClock::new(start);
        assert_eq!(clock.observe(at(5), 0, true, TIMEOUT), None);
        assert_eq!(
            clock.observe(at(10), 0, true, TIMEOUT),
            Some(StallChange::Stalled(TIMEOUT))
        );
        assert_eq!(clock.observe(at(20), 0, true, TIMEOUT), None, "said once");
        assert_eq!(
            clock.observe(at(21), 3, true, TIMEOUT),
            Some(StallChange::Resumed)
        );
        // The clock restarts at the progress.
        assert_eq!(clock.observe(at(30), 3, true, TIMEOUT), None);
        assert!(matches!(
            clock.observe(at(31), 3, true, TIMEOUT),
            Some(StallChange::Stalled(_))
        ));
    }

    #[test]
    fn nothing_to_do_is_never_a_stall() {
        let start = Instant::now();
        let mut clock = StallClock::new(start);
        for secs in [5, 50, 500] {
            assert_eq!(
                clock.observe(start + Duration::from_secs(secs), 0, false, TIMEOUT),
                None
            );
        }
        // Work arriving is timed from the last look without work, not from the last progress.
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(clock.observe(at(505), 0, true, TIMEOUT), None);
        assert_eq!(clock.observe(at(509), 0, true, TIMEOUT), None);
        assert!(matches!(
            clock.observe(at(510), 0, true, TIMEOUT),
            Some(StallChange::Stalled(_))
        ));
    }
}
