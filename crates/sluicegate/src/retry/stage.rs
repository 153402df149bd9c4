//! What each stage of a task is: which topics it consumes, with which consumer group, and
//! when its records are due.
//!
//! With `retries` retries, stage 0 consumes the input topics (group `<group>`), stage `k`
//! (1 to `retries`) consumes retry topic `k` of each input topic (group `<group>.retry.<k>`),
//! and stage `retries + 1` watches the dead-letter topics (group `<group>.dlq`): it logs each
//! dead letter and calls the dead-letter handler once per group (see
//! [`dead_letter`](super::dead_letter)), so several processes report each once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::headers::RetryHeaders;
use super::policy::RetryPolicy;
use super::topics::RetryTopics;
use crate::record::Record;

/// The role of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageRole {
    /// Stage 0: the input topics.
    Input,
    /// Stage `k`: retry topic `k`, whose records wait this delay.
    Retry(usize, Duration),
    /// Stage `retries + 1`: the dead-letter topics.
    DeadLetters,
}

impl StageRole {
    /// The role of `stage`; `None` for a stage the policy does not have.
    pub fn of(stage: usize, policy: &RetryPolicy) -> Option<Self> {
        if stage == 0 {
            Some(Self::Input)
        } else if stage == policy.retries() + 1 {
            Some(Self::DeadLetters)
        } else {
            policy
                .delay_before(stage)
                .map(|delay| Self::Retry(stage, delay))
        }
    }

    /// The consumer group of this stage.
    pub fn group(self, group: &str) -> String {
        match self {
            Self::Input => group.to_string(),
            Self::Retry(retry, _) => format!("{group}.retry.{retry}"),
            Self::DeadLetters => format!("{group}.dlq"),
        }
    }

    /// The topics this stage consumes.
    pub fn topics(self, topics: &[RetryTopics]) -> Vec<String> {
        topics
            .iter()
            .map(|topics| match self {
                Self::Input => topics.input().to_string(),
                Self::Retry(retry, _) => topics.retry(retry),
                Self::DeadLetters => topics.dead_letter(),
            })
            .collect()
    }
}

/// When a record of a retry topic whose records wait `delay` is due: as its retry headers
/// say, or `delay` after it was written when they are unreadable.
pub(crate) fn due_at(record: &Record, delay: Duration) -> Option<SystemTime> {
    let since_epoch = |ms: i64| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    match RetryHeaders::from_headers(&record.headers) {
        Ok(Some(history)) => Some(since_epoch(history.due_ms)),
        _ => record
            .timestamp_ms
            .map(|written| since_epoch(written) + delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_input_retries_then_dead_letters() {
        let policy = RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(5)]).unwrap();
        let topics = [RetryTopics::new("orders", "billing")];
        let role = |stage| StageRole::of(stage, &policy);
        assert_eq!(role(0), Some(StageRole::Input));
        assert_eq!(role(2), Some(StageRole::Retry(2, Duration::from_secs(5))));
        assert_eq!(role(3), Some(StageRole::DeadLetters));
        assert_eq!(role(4), None);
        let described = |stage| {
            let role = role(stage).unwrap();
            (role.group("billing"), role.topics(&topics))
        };
        assert_eq!(described(0), ("billing".into(), vec!["orders".into()]));
        assert_eq!(
            described(1),
            (
                "billing.retry.1".into(),
                vec!["orders.billing.retry.1".into()]
            )
        );
        assert_eq!(
            described(3),
            ("billing.dlq".into(), vec!["orders.billing.dlq".into()])
        );
    }

    #[test]
    fn a_record_is_due_when_its_headers_say() {
        let history = RetryHeaders {
            original_topic: "orders".into(),
            original_partition: 0,
            original_offset: 1,
            attempt: 2,
            first_failure_ms: 1_000,
            last_failure_ms: 1_000,
            error: "down".into(),
            due_ms: 6_000,
        };
        let mut record = Record {
            topic: "orders.billing.retry.1".into(),
            partition: 0,
            offset: 0,
            key: None,
            value: None,
            headers: history.to_headers(),
            timestamp_ms: Some(2_000),
        };
        let delay = Duration::from_secs(5);
        assert_eq!(
            due_at(&record, delay),
            Some(UNIX_EPOCH + Duration::from_secs(6))
        );
        record.headers.clear();
        assert_eq!(
            due_at(&record, delay),
            Some(UNIX_EPOCH + Duration::from_secs(7))
        );
    }
}
