//! How many times a failed record is retried, and how long each retry waits.

use std::time::Duration;

use crate::options::OptionsError;

/// The delay before each retry: retry `k` (1-based) waits `delays[k - 1]` after the failure
/// before it runs. The number of delays is the number of retries, unless the policy
/// [retries forever](RetryPolicy::forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
    forever: bool,
}

impl RetryPolicy {
    /// One retry per delay, in order: `[1 s, 10 s, 60 s]` retries three times.
    pub fn delays(delays: impl IntoIterator<Item = Duration>) -> Result<Self, OptionsError> {
        let delays: Vec<Duration> = delays.into_iter().collect();
        if delays.len() > MAX_RETRIES {
            return Err(OptionsError::new(
                "retry.delays",
                format!("at most {MAX_RETRIES} retries"),
            ));
        }
        Ok(Self {
            delays,
            forever: false,
        })
    }

    /// `retries` retries waiting `base`, `2 × base`, `4 × base`... each at most `cap`.
    pub fn exponential(
        retries: usize,
        base: Duration,
        cap: Duration,
    ) -> Result<Self, OptionsError> {
        if base.is_zero() {
            return Err(OptionsError::new("retry.base", "must be greater than zero"));
        }
        if cap < base {
            return Err(OptionsError::new(
                "retry.cap",
                "must be at least the base delay",
            ));
        }
        let delays = (0..retries).map(|retry| {
            let factor = 1u32.checked_shl(retry.min(31) as u32).unwrap_or(u32::MAX);
            base.checked_mul(factor).map_or(cap, |delay| delay.min(cap))
        });
        Self::delays(delays)
    }

    /// No retries: a failed record goes straight to the dead-letter topic.
    pub fn none() -> Self {
        Self {
            delays: Vec::new(),
            forever: false,
        }
    }

    /// Retries forever: after the last delay, a record that fails again waits that delay
    /// again, and again, and never reaches the dead-letter topic (only a
    /// [`Permanent`](super::Permanent) error or a record that does not decode does). Through
    /// retry topics, the last retry stage writes such records back to its own topic.
    ///
    /// Use it when no record may be given up on (a ledger, say) and alert on the retry
    /// topic's growth: one record that can never succeed is retried as long as the task runs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sluicegate::retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(30)])
    ///     .unwrap()
    ///     .forever()
    ///     .unwrap();
    /// assert_eq!(policy.retries(), 2); // two retry topics
    /// assert_eq!(policy.delay_after_failures(7), Some(Duration::from_secs(30)));
    /// ```
    pub fn forever(mut self) -> Result<Self, OptionsError> {
        if self.delays.is_empty() {
            return Err(OptionsError::new(
                "retry.forever",
                "needs at least one retry delay to repeat",
            ));
        }
        self.forever = true;
        Ok(self)
    }

    /// Whether the policy retries forever (see [`forever`](Self::forever)).
    pub fn is_forever(&self) -> bool {
        self.forever
    }

    /// How many retries the policy lists (one retry topic each); a record is retried that
    /// many times before the dead-letter topic, unless the policy retries forever.
    pub fn retries(&self) -> usize {
        self.delays.len()
    }

    /// The delay before retry `retry` (1-based), or `None` past the last retry.
    pub fn delay_before(&self, retry: usize) -> Option<Duration> {
        retry
            .checked_sub(1)
            .and_then(|index| self.delays.get(index))
            .copied()
    }

    /// How long a record that failed `failures` times (1 for the first failure) waits before
    /// its next try, or `None` when it goes to the dead-letter topic: the listed delays in
    /// order, then, for a policy that retries forever, the last one again.
    pub fn delay_after_failures(&self, failures: usize) -> Option<Duration> {
        match self.delay_before(failures) {
            Some(delay) => Some(delay),
            None if self.forever && failures > 0 => self.delays.last().copied(),
            None => None,
        }
    }
}

/// Retry topics are real topics, one per retry: keep their number sane.
const MAX_RETRIES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_delays_is_one_retry_each() {
        let policy = RetryPolicy::delays([
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(60),
        ])
        .unwrap();
        assert_eq!(policy.retries(), 3);
        assert_eq!(policy.delay_before(0), None);
        assert_eq!(policy.delay_before(1), Some(Duration::from_secs(1)));
        assert_eq!(policy.delay_before(3), Some(Duration::from_secs(60)));
        assert_eq!(policy.delay_before(4), None);
    }

    #[test]
    fn exponential_delays_double_up_to_the_cap() {
        let policy =
            RetryPolicy::exponential(6, Duration::from_secs(1), Duration::from_secs(10)).unwrap();
        let delays: Vec<u64> = (1..=6)
            .map(|retry| policy.delay_before(retry).unwrap().as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        // Far past any sane count, the doubling saturates at the cap instead of overflowing.
        let long = RetryPolicy::exponential(80, Duration::from_secs(1), Duration::from_secs(3600))
            .unwrap();
        assert_eq!(long.delay_before(80), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_policies_name_their_setting() {
        let key = |policy: Result<RetryPolicy, OptionsError>| policy.unwrap_err().key;
        assert_eq!(
            key(RetryPolicy::exponential(
                3,
                Duration::ZERO,
                Duration::from_secs(1)
            )),
            "retry.base"
        );
        assert_eq!(
            key(RetryPolicy::exponential(
                3,
                Duration::from_secs(2),
                Duration::from_secs(1)
            )),
            "retry.cap"
        );
        assert_eq!(
            key(RetryPolicy::delays(vec![Duration::from_secs(1); 101])),
            "retry.delays"
        );
        assert_eq!(RetryPolicy::none().retries(), 0);
        assert_eq!(key(RetryPolicy::none().forever()), "retry.forever");
    }

    #[test]
    fn a_policy_that_retries_forever_repeats_its_last_delay() {
        let limited =
            RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(5)]).unwrap();
        assert_eq!(limited.delay_after_failures(3), None);
        let forever = limited.clone().forever().unwrap();
        assert!(forever.is_forever() && !limited.is_forever());
        assert_eq!(forever.retries(), 2);
        let delays: Vec<_> = (1..=4)
            .map(|failures| forever.delay_after_failures(failures))
            .collect();
        let secs = |secs| Some(Duration::from_secs(secs));
        assert_eq!(delays, vec![secs(1), secs(5), secs(5), secs(5)]);
        assert_eq!(forever.delay_after_failures(0), None);
    }
}
