//! Blocking retries in place: a failed handler call is tried again after the policy's delay,
//! within the same handler call, so nothing behind it in the partition (or key) runs until
//! the record succeeds or its retries are spent. Strict order, at the price of stalling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::headers::{without_retry_headers, RetryHeaders};
use super::policy::RetryPolicy;
use super::route::{now_ms, SpentRetries};
use crate::pipeline::{
    guarded, Batch, BatchHandler, BoxError, FailureReason, Message, MessageHandler,
};
use crate::record::{Offset, Record};
use crate::sync::lock;

/// What the in-place retries of each record that failed for good did, until the failure
/// route takes it (the pipeline's failure path only carries the last reason).
#[derive(Debug, Default)]
pub(crate) struct InPlaceLog {
    spent: Mutex<HashMap<RecordId, SpentRetries>>,
}

/// A record's topic, partition and offset.
type RecordId = (Arc<str>, i32, Offset);

impl InPlaceLog {
    fn put(&self, record: &Record, spent: SpentRetries) {
        self.lock().insert(
            (record.topic.clone(), record.partition, record.offset),
            spent,
        );
    }

    /// Takes what the retries of `record` did, if it failed in place.
    pub fn take(&self, record: &Record) -> Option<SpentRetries> {
        self.lock()
            .remove(&(record.topic.clone(), record.partition, record.offset))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RecordId, SpentRetries>> {
        lock(&self.spent)
    }
}

/// The history an attempt after the first is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Retrying {
    /// This attempt: 2 for the first retry.
    attempt: u32,
    first_failure_ms: i64,
    last_failure_ms: i64,
    /// Why the previous attempt failed.
    error: String,
}

impl Retrying {
    /// `record` as this attempt hands it to the handler: with retry headers, so
    /// [`attempt`](super::attempt) reads the same as in a retry stage.
    fn record(&self, record: &Record) -> Record {
        let history = RetryHeaders {
            original_topic: record.topic.to_string(),
            original_partition: record.partition,
            original_offset: record.offset,
            attempt: self.attempt,
            first_failure_ms: self.first_failure_ms,
            last_failure_ms: self.last_failure_ms,
            error: self.error.clone(),
            due_ms: now_ms(),
        };
        let mut headers = without_retry_headers(&record.headers);
        headers.extend(history.to_headers());
        Record {
            headers,
            ..record.clone()
        }
    }
}

/// Runs `attempt` until it succeeds, fails with a permanent error, or the policy's retries
/// are spent; `timeout` limits each attempt, and each retry is told its history. Returns
/// the last failure with the count.
async fn retry_in_place<T, F, Fut>(
    policy: &RetryPolicy,
    timeout: Option<Duration>,
    mut attempt: F,
) -> Result<T, SpentRetries>
where
    F: FnMut(Option<&Retrying>) -> Fut,
    Fut: std::future::Future<Output = Result<T, BoxError>>,
{
    let mut retrying: Option<Retrying> = None;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let reason: FailureReason = match guarded(attempt(retrying.as_ref()), timeout, None).await {
            Ok(value) => return Ok(value),
            Err(reason) => reason,
        };
        let now = now_ms();
        let first_failure_ms = retrying.as_ref().map_or(now, |r| r.first_failure_ms);
        retrying = Some(Retrying {
            attempt: attempts + 1,
            first_failure_ms,
            last_failure_ms: now,
            error: reason.to_string(),
        });
        let next_delay = reason
            .kind
            .is_retriable()
            .then(|| policy.delay_before(attempts as usize))
            .flatten();
        match next_delay {
            Some(delay) => {
                tracing::debug!(attempts, ?delay, %reason, "retrying in place");
                tokio::time::sleep(delay).await;
            }
            None => {
                return Err(SpentRetries {
                    attempts,
                    first_failure_ms,
                    reason,
                })
            }
        }
    }
}

/// The message handler, retried in place; a record that fails for good is recorded in `log`.
pub(crate) fn message_handler<S: Send + Sync + 'static>(
    inner: MessageHandler<S, Record>,
    timeout: Option<Duration>,
    policy: RetryPolicy,
    log: Arc<InPlaceLog>,
) -> MessageHandler<S, Record> {
    Arc::new(move |state, message| {
        let (inner, policy, log) = (inner.clone(), policy.clone(), log.clone());
        Box::pin(async move {
            let outcome = retry_in_place(&policy, timeout, |retrying| {
                let attempt = match retrying {
                    None => message.clone(),
                    Some(retrying) => Message::new(retrying.record(message.data())),
                };
                inner(state.clone(), attempt)
            })
            .await;
            outcome.map_err(|spent| {
                let error = spent_error(&spent);
                log.put(message.data(), spent);
                error
            })
        })
    })
}

/// The batch handler, retried in place; when the batch fails for good, each of its records
/// is recorded in `log`.
pub(crate) fn batch_handler<S: Send + Sync + 'static>(
    inner: BatchHandler<S, Record>,
    timeout: Option<Duration>,
    policy: RetryPolicy,
    log: Arc<InPlaceLog>,
) -> BatchHandler<S, Record> {
    Arc::new(move |state, batch| {
        let (inner, policy, log) = (inner.clone(), policy.clone(), log.clone());
        Box::pin(async move {
            let outcome = retry_in_place(&policy, timeout, |retrying| {
                let messages = match retrying {
                    None => batch.messages.clone(),
                    Some(retrying) => batch
                        .messages
                        .iter()
                        .map(|message| Message::new(retrying.record(message.data())))
                        .collect(),
                };
                inner(
                    state.clone(),
                    Batch {
                        batcher: batch.batcher.clone(),
                        key: batch.key.clone(),
                        trigger: batch.trigger,
                        messages,
                    },
                )
            })
            .await;
            outcome.map_err(|mut spent| {
                spent.reason.batcher = Some(batch.batcher.clone());
                let error = spent_error(&spent);
                for message in &batch.messages {
                    log.put(message.data(), spent.clone());
                }
                error
            })
        })
    })
}

/// The error the pipeline sees once retries are spent; the failure route reads the full
/// story from the log.
fn spent_error(spent: &SpentRetries) -> BoxError {
    format!(
        "{} (after {} attempts in place)",
        spent.reason, spent.attempts
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{FailureKind, Permanent};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_after_each_delay_until_success() {
        let policy = RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(4)]).unwrap();
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let outcome = retry_in_place(&policy, None, |retrying| {
            let told = retrying.map(|r| r.attempt);
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(
                    told,
                    (call > 0).then_some(call + 1),
                    "each retry knows its attempt"
                );
                match call {
                    0 | 1 => Err::<u32, BoxError>("not yet".into()),
                    n => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(outcome, Ok(2));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn spent_retries_and_permanent_errors_stop_with_the_count() {
        let policy = RetryPolicy::delays([Duration::from_secs(1)]).unwrap();
        let spent = retry_in_place(&policy, None, |_| async {
            Err::<(), BoxError>("down".into())
        })
        .await
        .unwrap_err();
        assert_eq!((spent.attempts, spent.reason.kind), (2, FailureKind::Error));

        let permanent = retry_in_place(&policy, None, |_| async {
            Err::<(), BoxError>(Permanent::new("bad payload").into())
        })
        .await
        .unwrap_err();
        assert_eq!(
            (permanent.attempts, permanent.reason.kind),
            (1, FailureKind::Permanent)
        );
    }
}
