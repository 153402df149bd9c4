//! Where a failed record goes next, and writing it there: the next retry topic, or the
//! dead-letter topic, with its history in [`RetryHeaders`]. A stage's failure path; its
//! records are acknowledged only after this returns, that is after every write was delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::headers::{without_retry_headers, RetryHeaders};
use super::policy::RetryPolicy;
use super::topics::RetryTopics;
use crate::client_error::Chain;
use crate::pipeline::{now_ms, Failed, FailureKind};
use crate::producer::{ProduceError, ProduceRecord, Producer};
use crate::record::{Header, Record};

/// The next stop of a record that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Retry topic `retry` (1-based), due after `delay`.
    Retry { retry: usize, delay: Duration },
    /// The dead-letter topic.
    DeadLetter,
}

/// Where a record that failed in `stage` goes: the next retry while the policy has one (or
/// the last retry again, for a policy that retries forever) and the failure is retriable;
/// the dead-letter topic otherwise, and always when retries run in place (they were all
/// spent before the record failed).
pub(crate) fn destination(
    stage: usize,
    policy: &RetryPolicy,
    kind: FailureKind,
    in_place: bool,
) -> Destination {
    if in_place || !kind.is_retriable() {
        return Destination::DeadLetter;
    }
    // A policy that retries forever sends what fails in the last retry stage back to it.
    match policy.delay_after_failures(stage + 1) {
        Some(delay) => Destination::Retry {
            retry: (stage + 1).min(policy.retries()),
            delay,
        },
        None => Destination::DeadLetter,
    }
}

/// Counts of records written onward.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// The failure path of every stage of a task.
pub(crate) struct Router {
    pub producer: Producer,
    pub policy: RetryPolicy,
    /// The task's topics by every topic a stage consumes (input and retry topics).
    pub topics_by_consumed: HashMap<String, RetryTopics>,
    /// Whether retries run in place (so every failure reaching the route is a dead letter).
    pub in_place: bool,
    pub counters: Arc<RouteCounters>,
    /// Set once a record can be written nowhere: the task must stop (see
    /// [`RunningTask::failed`](super::RunningTask::failed)).
    pub unwritable: watch::Sender<Option<Unwritable>>,
}

/// A failed record that neither its next topic nor the dead-letter topic accepts, ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unwritable {
    pub record: String,
    pub error: ProduceError,
}

/// The longest wait between two attempts to write a failed record onward.
const MAX_WRITE_BACKOFF: Duration = Duration::from_secs(30);

impl Router {
    /// Writes every failed record of `stage` to its next topic and returns once all were
    /// delivered. A write that fails is tried again (with backoff) until it is delivered:
    /// the record is acknowledged only then, so a crash in between delivers it again. A
    /// record its retry topic refuses for good goes to the dead-letter topic instead; one
    /// the dead-letter topic refuses for good stops the task (it is never acknowledged).
    pub async fn route(&self, stage: usize, failed: Vec<Failed<Record>>) {
        futures_util::future::join_all(failed.iter().map(|failed| self.forward(stage, failed)))
            .await;
    }

    async fn forward(&self, stage: usize, failed: &Failed<Record>) {
        let record = failed.message.data();
        let reason = &failed.reason;
        let now = now_ms();
        let previous = RetryHeaders::from_headers(&record.headers).unwrap_or_else(|error| {
            tracing::warn!(topic = %record.topic, offset = record.offset, %error, "unreadable retry history; starting it afresh");
            None
        });
        // Handled as often as its history says before this stage (once per stage when it is
        // unreadable; a policy that retries forever passes the last stage many times), and
        // `attempts` times in this one.
        let handled_before = match (stage, &previous) {
            (1.., Some(previous)) => previous.attempt.saturating_sub(1),
            _ => stage as u32,
        };
        let handled = handled_before + reason.attempts;
        let first_failure_ms = previous
            .as_ref()
            .map_or(reason.first_failure_ms, |previous| {
                previous.first_failure_ms
            });
        let mut destination = destination(stage, &self.policy, reason.kind, self.in_place);
        // Every consumed topic is in the map: the stages subscribe to exactly these.
        let topics = &self.topics_by_consumed[&*record.topic];
        let (mut topic, due_ms) = match destination {
            Destination::Retry { retry, delay } => {
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                (topics.retry(retry), now.saturating_add(delay_ms))
            }
            Destination::DeadLetter => (topics.dead_letter(), now),
        };
        let mut history = match previous {
            Some(previous) => RetryHeaders {
                attempt: handled + 1,
                first_failure_ms,
                last_failure_ms: now,
                error: reason.to_string(),
                due_ms,
                ..previous
            },
            None => RetryHeaders {
                original_topic: record.topic.to_string(),
                original_partition: record.partition,
                original_offset: record.offset,
                attempt: handled + 1,
                first_failure_ms,
                last_failure_ms: now,
                error: reason.to_string(),
                due_ms,
            },
        };
        let mut refused = self.write(&topic, record, &history).await.err();
        if let (Some(error), Destination::Retry { .. }) = (&refused, destination) {
            tracing::error!(retry_topic = %topic, source_topic = %record.topic, partition = record.partition, offset = record.offset, error = %Chain(error), "the retry topic refuses this record for good; dead-lettering it");
            history.error = format!(
                "{reason}; then retry topic `{topic}` refused it for good: {}",
                Chain(error)
            );
            history.due_ms = now;
            destination = Destination::DeadLetter;
            topic = topics.dead_letter();
            refused = self.write(&topic, record, &history).await.err();
        }
        if let Some(error) = refused {
            self.stop_task(record, &topic, error).await;
        }
        let labels = [
            ("topic", topics.input().to_string()),
            ("stage", stage.to_string()),
        ];
        match destination {
            Destination::Retry { retry, .. } => {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::RECORDS_RETRIED, &labels).increment(1);
                tracing::debug!(topic = %record.topic, partition = record.partition, offset = record.offset, retry, reason = %reason, "record sent to retry");
            }
            Destination::DeadLetter => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::RECORDS_DEAD_LETTERED, &labels).increment(1);
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, dead_letter_topic = %topic, handled, reason = %reason, "record dead-lettered");
            }
        }
    }

    /// Writes `record` with `history` to `topic`, trying again with backoff until it is
    /// delivered; returns the error when the topic refuses it for good.
    async fn write(
        &self,
        topic: &str,
        record: &Record,
        history: &RetryHeaders,
    ) -> Result<(), ProduceError> {
        let mut headers: Vec<Header> = without_retry_headers(&record.headers);
        headers.extend(history.to_headers());
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut outgoing = match &record.value {
                Some(value) => ProduceRecord::new(value),
                None => ProduceRecord::tombstone(),
            };
            if let Some(key) = &record.key {
                outgoing = outgoing.key(key);
            }
            for header in &headers {
                outgoing = outgoing.header(&header.key, header.value.as_deref());
            }
            match self.producer.produce(topic, outgoing).await {
                Ok(_) => return Ok(()),
                Err(error) if error.is_permanent() => return Err(error),
                Err(error) => {
                    tracing::error!(%topic, source_topic = %record.topic, offset = record.offset, error = %Chain(&error), ?backoff, "could not write a failed record onward; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_WRITE_BACKOFF);
                }
            }
        }
    }

    /// The dead-letter topic refuses `record` for good: nothing can take it, so the task
    /// must stop. The record stays unacknowledged (this never returns), so it is neither
    /// lost nor committed past; the next run delivers it again.
    async fn stop_task(&self, record: &Record, topic: &str, error: ProduceError) -> ! {
        let position = format!("{}[{}]@{}", record.topic, record.partition, record.offset);
        tracing::error!(record = %position, dead_letter_topic = %topic, error = %Chain(&error), "the dead-letter topic refuses this record for good; the task stops");
        self.unwritable.send_if_modified(|unwritable| {
            let first = unwritable.is_none();
            if first {
                *unwritable = Some(Unwritable {
                    record: position,
                    error,
                });
            }
            first
        });
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(10)]).unwrap()
    }

    #[test]
    fn failures_move_one_retry_on_until_the_dead_letter_topic() {
        let retry = |retry, secs| Destination::Retry {
            retry,
            delay: Duration::from_secs(secs),
        };
        assert_eq!(
            destination(0, &policy(), FailureKind::Error, false),
            retry(1, 1)
        );
        assert_eq!(
            destination(1, &policy(), FailureKind::Panic, false),
            retry(2, 10)
        );
        assert_eq!(
            destination(2, &policy(), FailureKind::Timeout, false),
            Destination::DeadLetter
        );
        assert_eq!(
            destination(0, &RetryPolicy::none(), FailureKind::Error, false),
            Destination::DeadLetter
        );
    }

    #[test]
    fn retrying_forever_loops_the_last_retry_topic() {
        let forever = policy().forever().unwrap();
        let retry = |retry, secs| Destination::Retry {
            retry,
            delay: Duration::from_secs(secs),
        };
        assert_eq!(
            destination(0, &forever, FailureKind::Error, false),
            retry(1, 1)
        );
        assert_eq!(
            destination(1, &forever, FailureKind::Error, false),
            retry(2, 10)
        );
        assert_eq!(
            destination(2, &forever, FailureKind::Timeout, false),
            retry(2, 10)
        );
        assert_eq!(
            destination(2, &forever, FailureKind::Decode, false),
            Destination::DeadLetter
        );
    }

    #[test]
    fn permanent_failures_and_spent_in_place_retries_are_dead_letters() {
        assert_eq!(
            destination(0, &policy(), FailureKind::Permanent, false),
            Destination::DeadLetter
        );
        assert_eq!(
            destination(0, &policy(), FailureKind::Error, true),
            Destination::DeadLetter
        );
    }
}
