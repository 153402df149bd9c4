//! A cap on message handler calls per interval for the whole pipeline (Broadway's
//! `rate_limiting`): a fixed window that refills every interval.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;

/// Allows at most `allowed` calls in each window of `interval`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    allowed: u64,
    interval: Duration,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    used: u64,
}

impl RateLimiter {
    pub fn new(allowed: u64, interval: Duration) -> Self {
        Self {
            allowed,
            interval,
            window: Mutex::new(Window {
                started: Instant::now(),
                used: 0,
            }),
        }
    }

    /// Waits until the current window has room for one more call, and takes it.
    pub async fn acquire(&self) {
        loop {
            let next_window = {
                let mut window = lock(&self.window);
                let now = Instant::now();
                if now.duration_since(window.started) >= self.interval {
                    window.started = now;
                    window.used = 0;
                }
                if window.used < self.allowed {
                    window.used += 1;
                    return;
                }
                window.started + self.interval
            };
            tokio::time::sleep_until(next_window).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_window_wait_for_the_next_one() {
        let limiter = RateLimiter::new(3, Duration::from_secs(1));
        let started = Instant::now();
        for _ in 0..7 {
            limiter.acquire().await;
        }
        // 3 in the first window, 3 in the second, the 7th opens the third.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
