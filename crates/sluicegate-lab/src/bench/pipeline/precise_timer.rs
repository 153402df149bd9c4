//! A timer with sub-millisecond precision for the latency scenario's handler.
//!
//! One thread keeps the deadlines in a heap, sleeps (on a condition variable, so a new earlier
//! deadline wakes it) until the earliest, and completes the sleepers whose deadline passed. The
//! overshoot is the OS's wake-up latency (tens of microseconds), where tokio's timer rounds up
//! to the next millisecond.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::oneshot;

/// The timer and its thread, which stops when this is dropped; sleep through a
/// [`TimerHandle`].
pub(super) struct PreciseTimer {
    shared: Arc<TimerShared>,
    thread: Option<JoinHandle<()>>,
}

/// Sleeps on a [`PreciseTimer`]; once the timer stopped, sleeps complete at once.
#[derive(Clone)]
pub(super) struct TimerHandle(Arc<TimerShared>);

#[derive(Default)]
struct TimerShared {
    queue: Mutex<TimerQueue>,
    wake: Condvar,
    /// Sleepers completed, and the sum of how late the thread completed them.
    fired: AtomicU64,
    lateness_nanos: AtomicU64,
}

#[derive(Default)]
struct TimerQueue {
    sleepers: BinaryHeap<Reverse<Sleeper>>,
    next_id: u64,
    stopped: bool,
}

struct Sleeper {
    deadline: Instant,
    id: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.id) == (other.deadline, other.id)
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.id).cmp(&(other.deadline, other.id))
    }
}

fn lock(queue: &Mutex<TimerQueue>) -> MutexGuard<'_, TimerQueue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PreciseTimer {
    /// Starts the timer thread. Call it from the main thread: Linux lets a sleep end up to
    /// the thread's timer slack (50 us by default) late, and a new thread inherits its
    /// creator's slack, which only the main thread can set (through `/proc/self`). The slack
    /// is lowered to 1 us for the timer thread alone; where that is refused, sleeps are a
    /// little later, and measured as such.
    pub(super) fn start() -> anyhow::Result<Self> {
        const SLACK: &str = "/proc/self/timerslack_ns";
        let shared = Arc::new(TimerShared::default());
        let slack = std::fs::read_to_string(SLACK).ok();
        if let Err(error) = std::fs::write(SLACK, "1000") {
            tracing::debug!(%error, "could not lower the timer slack");
        }
        let thread = std::thread::Builder::new()
            .name("precise-timer".to_owned())
            .spawn({
                let shared = shared.clone();
                move || run_timer(&shared)
            });
        if let Some(slack) = slack {
            let _ = std::fs::write(SLACK, slack.trim());
        }
        let thread = thread.context("could not start the timer thread")?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub(super) fn handle(&self) -> TimerHandle {
        TimerHandle(self.shared.clone())
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        lock(&self.shared.queue).stopped = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_timer(shared: &TimerShared) {
    let mut due = Vec::new();
    let mut queue = lock(&shared.queue);
    loop {
        if queue.stopped {
            // Dropping the senders wakes any sleeper left.
            queue.sleepers.clear();
            return;
        }
        let now = Instant::now();
        while let Some(Reverse(first)) = queue.sleepers.peek() {
            if first.deadline > now {
                break;
            }
            if let Some(Reverse(sleeper)) = queue.sleepers.pop() {
                let late = now.duration_since(sleeper.deadline).as_nanos() as u64;
                shared.lateness_nanos.fetch_add(late, Ordering::Relaxed);
                shared.fired.fetch_add(1, Ordering::Relaxed);
                due.push(sleeper.wake);
            }
        }
        if !due.is_empty() {
            drop(queue);
            for wake in due.drain(..) {
                let _ = wake.send(());
            }
            queue = lock(&shared.queue);
            continue;
        }
        queue = match queue.sleepers.peek() {
            Some(Reverse(first)) => {
                let wait = first.deadline.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(queue, wait)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0)
            }
            None => shared
                .wake
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
    }
}

impl TimerHandle {
    /// Sleepers completed so far and their summed lateness.
    pub(super) fn lateness(&self) -> (u64, Duration) {
        (
            self.0.fired.load(Ordering::Relaxed),
            Duration::from_nanos(self.0.lateness_nanos.load(Ordering::Relaxed)),
        )
    }

    /// Completes after `delay` (at once for zero).
    pub(super) async fn sleep(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        let deadline = Instant::now() + delay;
        let earliest = {
            let mut queue = lock(&self.0.queue);
            if queue.stopped {
                return;
            }
            let id = queue.next_id;
            queue.next_id += 1;
            queue.sleepers.push(Reverse(Sleeper { deadline, id, wake }));
            queue
                .sleepers
                .peek()
                .is_some_and(|Reverse(first)| first.id == id)
        };
        if earliest {
            self.0.wake.notify_one();
        }
        let _ = woken.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_never_early_and_stops_cleanly() {
        let timer = PreciseTimer::start().unwrap();
        let handle = timer.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let lateness = runtime.block_on(async {
            let sleeps = (0..50u64).map(|step| {
                let handle = handle.clone();
                async move {
                    let delay = Duration::from_micros(200 + step * 97);
                    let started = Instant::now();
                    handle.sleep(delay).await;
                    started.elapsed().checked_sub(delay)
                }
            });
            futures_util::future::join_all(sleeps).await
        });
        assert!(lateness.iter().all(Option::is_some), "a sleep ended early");
        let (fired, late) = handle.lateness();
        assert_eq!(fired, 50);
        // Generous: a loaded CI machine may be slow to wake the thread.
        assert!(late / 50 < Duration::from_millis(5), "{late:?} late in all");
        drop(timer);
        // After the timer stopped, sleeps return at once instead of hanging.
        runtime.block_on(handle.sleep(Duration::from_secs(60)));
    }
}
