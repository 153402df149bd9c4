//! The failure path: failed messages are handed to the failure handler in batches, then
//! acknowledged, so a failed record's offset still advances.

use std::sync::Arc;
use std::time::Duration;

use metrics::Histogram;
use tokio::sync::mpsc;

use super::handlers::{guarded, FailureHandler};
use super::message::{BoxError, Failed};
use super::observer::{FailureSeen, MaybeObserver};
use super::source::AckSink;
use super::stats::PipelineCounters;

/// How many failed messages one failure handler call receives at most.
pub(crate) const FAILURE_BATCH: usize = 100;

/// A failed message on its way to the failure handler.
pub(crate) struct FailedEntry<D> {
    pub failed: Failed<D>,
    pub acks: Arc<AckSink>,
}

/// Everything the failure task needs.
pub(crate) struct FailureContext<S, D> {
    pub state: Arc<S>,
    pub handler: FailureHandler<S, D>,
    pub handler_timeout: Option<Duration>,
    /// The handler is a route that must finish (see [`PipelineBuilder::route_failures`]):
    /// no timeout, and records stay unacknowledged if it panics.
    ///
    /// [`PipelineBuilder::route_failures`]: super::PipelineBuilder::route_failures
    pub must_finish: bool,
    pub counters: Arc<PipelineCounters>,
    pub observer: MaybeObserver,
    /// How long failure handler calls take.
    pub duration: Histogram,
}

/// Runs until every sender is dropped: takes what failed (one message, plus whatever else is
/// already waiting, up to [`FAILURE_BATCH`]), calls the failure handler, then acknowledges.
/// A failure handler that errs, panics or times out is logged; its messages are still
/// acknowledged, since there is nowhere further to send them. A failure route (`must_finish`)
/// that panics leaves its messages unacknowledged instead.
pub(crate) async fn run<S, D>(
    context: FailureContext<S, D>,
    mut entries: mpsc::Receiver<FailedEntry<D>>,
) where
    S: Send + Sync + 'static,
    D: Send + Sync + 'static,
{
    let mut batch = Vec::with_capacity(FAILURE_BATCH);
    while entries.recv_many(&mut batch, FAILURE_BATCH).await > 0 {
        let (failed, sinks): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|entry| (entry.failed, entry.acks))
            .unzip();
        context.counters.note_failed(failed.len());
        for acks in &sinks {
            acks.meters.failed.increment(1);
        }
        if let Some(observer) = &context.observer {
            observer.failed(FailureSeen::of(&failed));
        }
        let positions: Vec<_> = failed.iter().map(|f| f.message.offset()).collect();
        let call = (context.handler)(context.state.clone(), failed);
        let timeout = if context.must_finish {
            None
        } else {
            context.handler_timeout
        };
        let started = std::time::Instant::now();
        let outcome = guarded(
            async {
                call.await;
                Ok::<(), BoxError>(())
            },
            timeout,
            None,
        )
        .await;
        context.duration.record(started.elapsed().as_secs_f64());
        if let Err(reason) = &outcome {
            if context.must_finish {
                tracing::error!(
                    kind = ?reason.kind,
                    reason = %reason.description,
                    count = positions.len(),
                    "failure route failed; its records stay unacknowledged and will be delivered again"
                );
                continue;
            }
            tracing::error!(
                kind = ?reason.kind,
                reason = %reason.description,
                count = positions.len(),
                "failure handler failed; acknowledging its records anyway"
            );
        }
        for (offset, acks) in positions.into_iter().zip(sinks) {
            acks.ack(&[offset]).await;
        }
    }
}
