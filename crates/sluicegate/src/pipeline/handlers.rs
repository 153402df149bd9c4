//! The three handlers behind type erasure, and the one place that calls a handler: with its
//! panics caught and its time limited.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::codec::DecodeError;

use super::message::{
    Batch, BoxError, Failed, FailureKind, FailureReason, GaveUp, Message, Permanent,
};

pub(crate) type MessageHandler<S, D> = Arc<
    dyn Fn(Arc<S>, Message<D>) -> BoxFuture<'static, Result<Message<D>, BoxError>> + Send + Sync,
>;
pub(crate) type BatchHandler<S, D> =
    Arc<dyn Fn(Arc<S>, Batch<D>) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;
pub(crate) type FailureHandler<S, D> =
    Arc<dyn Fn(Arc<S>, Vec<Failed<D>>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Something that wraps a pipeline's handlers, as a tower layer wraps a service: the
/// in-place retries of a retry task. The handler timeout is the layer's to apply, per call
/// it makes.
pub(crate) trait HandlerLayer<S, D> {
    /// Wraps the message handler.
    fn layer_message(
        &self,
        inner: MessageHandler<S, D>,
        timeout: Option<Duration>,
    ) -> MessageHandler<S, D>;

    /// Wraps the batch handler.
    fn layer_batch(
        &self,
        inner: BatchHandler<S, D>,
        timeout: Option<Duration>,
    ) -> BatchHandler<S, D>;
}

/// Runs one handler call. A returned error, a panic and running past `timeout` all come back
/// as a [`FailureReason`]; nothing a handler does unwinds into the pipeline.
pub(crate) async fn guarded<T>(
    call: impl Future<Output = Result<T, BoxError>>,
    timeout: Option<Duration>,
    batcher: Option<&Arc<str>>,
) -> Result<T, FailureReason> {
    let caught = AssertUnwindSafe(call).catch_unwind();
    let outcome = match timeout {
        Some(limit) => match tokio::time::timeout(limit, caught).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(reason(
                    FailureKind::Timeout,
                    batcher,
                    format!("still running after {limit:?}"),
                ))
            }
        },
        None => caught.await,
    };
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => match error.downcast::<GaveUp>() {
            Ok(gave_up) => Err(FailureReason {
                batcher: batcher.cloned(),
                ..gave_up.0
            }),
            Err(error) => {
                let kind = if error.is::<Permanent>() {
                    FailureKind::Permanent
                } else if error.is::<DecodeError>() {
                    FailureKind::Decode
                } else {
                    FailureKind::Error
                };
                Err(reason(kind, batcher, error.to_string()))
            }
        },
        Err(panic) => Err(reason(FailureKind::Panic, batcher, panic_message(&*panic))),
    }
}

fn reason(kind: FailureKind, batcher: Option<&Arc<str>>, description: String) -> FailureReason {
    FailureReason::new(kind, batcher.cloned(), description)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_panics_and_timeouts_become_reasons() {
        let ok = guarded(async { Ok::<_, BoxError>(1) }, None, None).await;
        assert_eq!(ok, Ok(1));

        let error = guarded(async { Err::<(), _>("bad input".into()) }, None, None)
            .await
            .unwrap_err();
        assert_eq!(
            (error.kind, error.description.as_str()),
            (FailureKind::Error, "bad input")
        );

        let permanent = guarded(
            async { Err::<(), BoxError>(Permanent::new("not JSON").into()) },
            None,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(
            (permanent.kind, permanent.description.as_str()),
            (FailureKind::Permanent, "not JSON")
        );
        assert!(!permanent.kind.is_retriable());
        assert_eq!(
            permanent.to_string(),
            "message handler permanent error: not JSON"
        );

        let undecodable = guarded(
            async {
                let record = crate::pipeline::TestPipeline::record("orders", 1, 4, None, b"{");
                Err::<(), BoxError>(DecodeError::new(&record, "EOF while parsing").into())
            },
            None,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(undecodable.kind, FailureKind::Decode);
        assert!(!undecodable.kind.is_retriable());
        assert_eq!(
            undecodable.to_string(),
            "message handler decode error: orders/1@4 does not decode: EOF while parsing"
        );

        let batcher: Arc<str> = "db".into();
        let panic = guarded(
            async {
                if true {
                    panic!("boom {}", 7);
                }
                Ok::<(), BoxError>(())
            },
            None,
            Some(&batcher),
        )
        .await
        .unwrap_err();
        assert_eq!(panic.kind, FailureKind::Panic);
        assert_eq!(panic.description, "boom 7");
        assert_eq!(panic.to_string(), "batch handler `db` panic: boom 7");

        let slow = guarded(
            async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<(), BoxError>(())
            },
            Some(Duration::from_millis(10)),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(slow.kind, FailureKind::Timeout);
    }
}
