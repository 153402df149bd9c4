//! Blocking retries in place: a failed handler call is tried again after the policy's delay,
//! within the same handler call, so nothing behind it in the partition (or key) runs until
//! the record succeeds or its retries are spent. Strict order, at the price of stalling.

use std::time::Duration;

use super::headers::{without_retry_headers, RetryHeaders};
use super::policy::RetryPolicy;
use crate::pipeline::{
    guarded, now_ms, Batch, BatchHandler, BoxError, FailureReason, GaveUp, HandlerLayer, Message,
    MessageHandler,
};
use crate::record::Record;

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
/// the last failure, carrying the attempt count and when the first attempt failed.
async fn retry_in_place<T, F, Fut>(
    policy: &RetryPolicy,
    timeout: Option<Duration>,
    mut attempt: F,
) -> Result<T, FailureReason>
where
    F: FnMut(Option<&Retrying>) -> Fut,
    Fut: std::future::Future<Output = Result<T, BoxError>>,
{
    let mut retrying: Option<Retrying> = None;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut reason = match guarded(attempt(retrying.as_ref()), timeout, None).await {
            Ok(value) => return Ok(value),
            Err(reason) => reason,
        };
        if let Some(earlier) = &retrying {
            reason.first_failure_ms = earlier.first_failure_ms;
        }
        reason.attempts = attempts;
        let next_delay = reason
            .kind
            .is_retriable()
            .then(|| policy.delay_after_failures(attempts as usize))
            .flatten();
        let Some(delay) = next_delay else {
            return Err(reason);
        };
        tracing::debug!(attempts, ?delay, %reason, "retrying in place");
        retrying = Some(Retrying {
            attempt: attempts + 1,
            first_failure_ms: reason.first_failure_ms,
            last_failure_ms: now_ms(),
            error: reason.to_string(),
        });
        tokio::time::sleep(delay).await;
    }
}

/// Retries in place as a layer around a pipeline's handlers: each handler call is tried
/// again after the policy's delays until it succeeds or gives up, within one call of the
/// pipeline, so nothing behind the record in its partition (or key) runs meanwhile. A record
/// that gives up fails with its attempt count and first failure (see [`GaveUp`]).
pub(crate) struct InPlaceRetries {
    pub policy: RetryPolicy,
}

impl<S: Send + Sync + 'static> HandlerLayer<S, Record> for InPlaceRetries {
    fn layer_message(
        &self,
        inner: MessageHandler<S, Record>,
        timeout: Option<Duration>,
    ) -> MessageHandler<S, Record> {
        let policy = self.policy.clone();
        std::sync::Arc::new(move |state, message| {
            let (inner, policy) = (inner.clone(), policy.clone());
            Box::pin(async move {
                retry_in_place(&policy, timeout, |retrying| {
                    let attempt = match retrying {
                        None => message.clone(),
                        Some(retrying) => {
                            Message::new(retrying.record(message.data())).with_controls_of(&message)
                        }
                    };
                    inner(state.clone(), attempt)
                })
                .await
                .map_err(|reason| GaveUp(reason).into())
            })
        })
    }

    fn layer_batch(
        &self,
        inner: BatchHandler<S, Record>,
        timeout: Option<Duration>,
    ) -> BatchHandler<S, Record> {
        let policy = self.policy.clone();
        std::sync::Arc::new(move |state, batch| {
            let (inner, policy) = (inner.clone(), policy.clone());
            Box::pin(async move {
                retry_in_place(&policy, timeout, |retrying| {
                    let messages = match retrying {
                        None => batch.messages.clone(),
                        Some(retrying) => batch
                            .messages
                            .iter()
                            .map(|message| {
                                Message::new(retrying.record(message.data()))
                                    .with_controls_of(message)
                            })
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
                .await
                .map_err(|reason| GaveUp(reason).into())
            })
        })
    }
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
        let before = now_ms();
        let spent = retry_in_place(&policy, None, |_| async {
            Err::<(), BoxError>("down".into())
        })
        .await
        .unwrap_err();
        assert_eq!((spent.attempts, spent.kind), (2, FailureKind::Error));
        assert!(
            (before..=now_ms()).contains(&spent.first_failure_ms),
            "the first failure's time, not the last's: {spent:?}"
        );

        let permanent = retry_in_place(&policy, None, |_| async {
            Err::<(), BoxError>(Permanent::new("bad payload").into())
        })
        .await
        .unwrap_err();
        assert_eq!(
            (permanent.attempts, permanent.kind),
            (1, FailureKind::Permanent)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_that_retries_forever_keeps_the_last_delay_until_success() {
        let policy = RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(3)])
            .unwrap()
            .forever()
            .unwrap();
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let outcome = retry_in_place(&policy, None, |_| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call < 5 {
                    Err::<u32, BoxError>("down".into())
                } else {
                    Ok(call)
                }
            }
        })
        .await;
        // Five failures: 1 s, then 3 s four times.
        assert_eq!(outcome, Ok(5));
        assert_eq!(started.elapsed(), Duration::from_secs(1 + 3 * 4));
    }
}
