//! Processors: one task per assigned partition takes its records and runs the message
//! handler on them in the pipeline's [`ProcessingOrder`], within the pipeline-wide
//! concurrency.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore, SemaphorePermit};
use tokio::task::JoinSet;

use super::backoff::PauseOnFailure;
use super::batcher::BatcherInput;
use super::failures::FailedEntry;
use super::handlers::{guarded, MessageHandler};
use super::lanes::{KeyLanes, Lane};
use super::message::{Failed, FailureKind, FailureReason, Message, MessageFormat};
use super::rate_limit::RateLimiter;
use super::seek_request::SeekRequest;
use super::source::{AckSink, DueAt, PartitionFeed, PartitionInput};
use super::stats::PipelineCounters;
use super::{AttemptOf, PartitionCallback, SeekOnStart};
use crate::record::{Offset, Record, TopicPartition};

/// In what order a partition's records reach the message handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessingOrder {
    /// One record of a partition at a time, in offset order; partitions run concurrently.
    #[default]
    Partition,
    /// One record per (partition, key) at a time, in offset order; different keys of a
    /// partition run concurrently. Records without a key are ordered among themselves.
    Key,
    /// Any record may run concurrently with any other, up to the concurrency.
    Unordered,
}

/// Records taken from a partition at a time in partition order; their acknowledgements are
/// sent together, once per take (or sooner, see [`ACK_DELAY`]).
const TAKE_IN_ORDER: usize = 64;
/// In partition order, the longest a finished record waits for the end of its take before it
/// is acknowledged.
const ACK_DELAY: Duration = Duration::from_millis(50);
/// How often a record taken before its partition was paused looks whether it resumed.
const PAUSED_LOOK: Duration = Duration::from_millis(20);
/// Records taken from a partition at a time in key and unordered order.
const TAKE_CONCURRENT: usize = 256;

/// What every processor task shares.
pub(crate) struct ProcessorContext<S, D> {
    pub state: Arc<S>,
    pub handler: MessageHandler<S, D>,
    pub order: ProcessingOrder,
    pub permits: Semaphore,
    pub handler_timeout: Option<Duration>,
    pub rate_limit: Option<RateLimiter>,
    pub batchers: HashMap<Arc<str>, mpsc::Sender<BatcherInput<D>>>,
    pub failures: mpsc::Sender<FailedEntry<D>>,
    pub counters: Arc<PipelineCounters>,
    pub on_start: Option<PartitionCallback>,
    pub on_stop: Option<PartitionCallback>,
    pub lane_hasher: RandomState,
    pub hold_until: Option<DueAt>,
    pub pause_on_failure: Option<PauseOnFailure>,
    pub seek_on_start: Option<SeekOnStart>,
    /// Which attempt a record's first call here is (a retry stage reads its headers).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub attempt_of: Option<AttemptOf>,
}

/// Runs one assigned partition until its feed ends (revoke or shutdown), then flushes the
/// batches holding its records and waits until every record taken was acknowledged.
pub(crate) async fn run_partition<S, D>(context: Arc<ProcessorContext<S, D>>, input: PartitionInput)
where
    S: Send + Sync + 'static,
    D: MessageFormat,
{
    let PartitionInput {
        partition,
        mut feed,
        acks,
    } = input;
    if let Some(on_start) = &context.on_start {
        on_start(&partition);
    }
    if let Some(seek) = context
        .seek_on_start
        .as_ref()
        .and_then(|seek_on_start| seek_on_start(&partition))
    {
        feed.seek(&partition, seek, "on start").await;
    }
    match context.order {
        ProcessingOrder::Partition => {
            let mut finished = Vec::with_capacity(TAKE_IN_ORDER);
            let mut first_finished = Instant::now();
            while let Some(records) = feed
                .next_batch(TAKE_IN_ORDER, context.hold_until.as_ref())
                .await
            {
                context.note_taken(&acks, records.len());
                let mut records = records.into_iter();
                loop {
                    // One handler call at a time here, so one permit covers the whole take.
                    // The semaphore is never closed.
                    let mut permit = context.permits.acquire().await.ok();
                    for (index, record) in records.by_ref().enumerate() {
                        if let Some(offset) = context
                            .process_holding_permit(record, &acks, &mut permit)
                            .await
                        {
                            if finished.is_empty() {
                                first_finished = Instant::now();
                            }
                            finished.push(offset);
                        }
                        if seek_asked(&acks) {
                            break;
                        }
                        // Slow handlers: do not hold finished records back for the whole take.
                        if index % 8 == 7
                            && !finished.is_empty()
                            && first_finished.elapsed() >= ACK_DELAY
                        {
                            context.finish(&acks, &mut finished).await;
                        }
                    }
                    drop(permit);
                    context.finish(&acks, &mut finished).await;
                    if seek_as_asked(&mut feed, &partition, &acks).await {
                        // The rest of the take came from the old position.
                        acks.forget(records.len());
                        break;
                    }
                    if records.len() == 0 {
                        break;
                    }
                    // A seek was asked but did not move the partition: the rest of the take
                    // is handled as if none was.
                }
            }
        }
        ProcessingOrder::Key | ProcessingOrder::Unordered => {
            run_concurrently(&context, &partition, &mut feed, &acks).await
        }
    }
    for batcher in context.batchers.values() {
        let _ = batcher.send(BatcherInput::Flush(partition.clone())).await;
    }
    acks.settled().await;
    if let Some(on_stop) = &context.on_stop {
        on_stop(&partition);
    }
}

/// What a concurrent processor does next.
enum Step {
    /// A record's task finished.
    Joined(Result<(Lane, Option<Offset>), tokio::task::JoinError>),
    /// The feed handed out records, or ended.
    Taken(Option<Vec<Record>>),
}

/// Whether a handler asked the partition to seek.
fn seek_asked(acks: &AckSink) -> bool {
    acks.seek_request().is_some_and(SeekRequest::is_asked)
}

/// Carries out the seek a handler asked for, if any; true when the partition moved.
async fn seek_as_asked(
    feed: &mut PartitionFeed,
    partition: &TopicPartition,
    acks: &AckSink,
) -> bool {
    match acks.seek_request().and_then(SeekRequest::take) {
        Some(seek) => feed.seek(partition, seek, "asked by a handler").await,
        None => false,
    }
}

/// Key and unordered order: each record runs as its own task once its lane is free. A seek a
/// handler asks for drops the records waiting in lanes; those already running finish.
async fn run_concurrently<S, D>(
    context: &Arc<ProcessorContext<S, D>>,
    partition: &TopicPartition,
    feed: &mut PartitionFeed,
    acks: &Arc<AckSink>,
) where
    S: Send + Sync + 'static,
    D: MessageFormat,
{
    let keyed = context.order == ProcessingOrder::Key;
    let mut lanes: KeyLanes<Record> = KeyLanes::default();
    let mut running: JoinSet<(Lane, Option<Offset>)> = JoinSet::new();
    let start = |running: &mut JoinSet<_>, lane: Lane, record: Record| {
        let context = context.clone();
        let acks = acks.clone();
        running.spawn(async move { (lane, context.process(record, &acks).await) });
    };
    let mut feed_open = true;
    let mut finished = Vec::new();
    while feed_open || !running.is_empty() {
        let step = tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => Step::Joined(joined),
            records = feed.next_batch(TAKE_CONCURRENT, context.hold_until.as_ref()), if feed_open => Step::Taken(records),
        };
        match step {
            Step::Joined(joined) => {
                let mut freed = Vec::new();
                let mut next = Some(joined);
                while let Some(joined) = next {
                    match joined {
                        Ok((lane, offset)) => {
                            finished.extend(offset);
                            freed.push(lane);
                        }
                        Err(error) => tracing::error!(%error, "a processor task was cancelled"),
                    }
                    next = running.try_join_next();
                }
                context.finish(acks, &mut finished).await;
                // Before the lanes start their next records, which a seek drops.
                if seek_as_asked(feed, partition, acks).await {
                    acks.forget(lanes.drop_waiting());
                }
                for lane in freed.into_iter().filter(|_| keyed) {
                    if let Some(record) = lanes.finish(lane) {
                        start(&mut running, lane, record);
                    }
                }
            }
            Step::Taken(None) => feed_open = false,
            Step::Taken(Some(records)) => {
                context.note_taken(acks, records.len());
                if seek_as_asked(feed, partition, acks).await {
                    // Taken from the old position.
                    acks.forget(records.len() + lanes.drop_waiting());
                    continue;
                }
                for record in records {
                    if !keyed {
                        start(&mut running, Lane::Unkeyed, record);
                        continue;
                    }
                    let lane = Lane::of(record.key.as_deref(), &context.lane_hasher);
                    if let Some(record) = lanes.admit(lane, record) {
                        start(&mut running, lane, record);
                    }
                }
            }
        }
    }
    debug_assert!(lanes.is_idle(), "every lane drained once nothing runs");
}

impl<S, D> ProcessorContext<S, D>
where
    S: Send + Sync + 'static,
    D: MessageFormat,
{
    fn note_taken(&self, acks: &AckSink, count: usize) {
        acks.note_taken(count);
        self.counters.note_received(count);
    }

    /// Counts and acknowledges records the message handler finished.
    async fn finish(&self, acks: &AckSink, finished: &mut Vec<Offset>) {
        self.counters.note_processed(finished.len());
        acks.meters.processed.increment(finished.len() as u64);
        acks.ack(finished).await;
        finished.clear();
    }

    /// Runs the message handler on one record within the concurrency; see
    /// [`process_holding_permit`](Self::process_holding_permit).
    async fn process(&self, record: Record, acks: &Arc<AckSink>) -> Option<Offset> {
        // The semaphore is never closed.
        let mut permit = self.permits.acquire().await.ok();
        self.process_holding_permit(record, acks, &mut permit).await
    }

    /// Runs the message handler on one record; the caller holds a concurrency permit, which
    /// is given back while the record backs off ([`PauseOnFailure`]). Returns its offset
    /// when the record is finished and should be acknowledged now; a record routed to a
    /// batcher or failed is acknowledged further on.
    async fn process_holding_permit<'a>(
        &'a self,
        record: Record,
        acks: &Arc<AckSink>,
        permit: &mut Option<SemaphorePermit<'a>>,
    ) -> Option<Offset> {
        let pause = acks.pause_switch();
        if let Some(switch) = pause.as_ref().filter(|switch| switch.holds()) {
            // Paused after this record was taken (a handler's circuit breaker): wait without
            // a concurrency slot until it resumes or the partition is revoked.
            *permit = None;
            while switch.holds() {
                tokio::time::sleep(PAUSED_LOOK).await;
            }
            *permit = self.permits.acquire().await.ok();
        }
        #[cfg(feature = "otel")]
        let trace = crate::trace_context::HandlerTrace::of(
            &record,
            self.attempt_of
                .as_ref()
                .map_or(1, |attempt_of| attempt_of(&record)),
        );
        let message =
            Message::<D>::new(record).with_partition_controls(pause, acks.seek_request().cloned());
        let offset = message.offset();
        let kept = message.clone();
        let mut failures = 0;
        let mut first_failure_ms = None;
        #[cfg(feature = "otel")]
        let mut handler_span: opentelemetry::trace::SpanContext;
        let outcome = loop {
            if let Some(rate_limit) = &self.rate_limit {
                rate_limit.acquire().await;
            }
            let started = Instant::now();
            let call = (self.handler)(self.state.clone(), message.clone());
            #[cfg(feature = "otel")]
            let call = {
                let span = trace.span(failures);
                handler_span = crate::trace_context::span_context(&span);
                tracing::Instrument::instrument(call, span)
            };
            let outcome = guarded(call, self.handler_timeout, None).await;
            acks.meters
                .message_handler
                .record(started.elapsed().as_secs_f64());
            let (Err(reason), Some(pause)) = (&outcome, &self.pause_on_failure) else {
                break outcome;
            };
            failures += 1;
            let first = *first_failure_ms.get_or_insert(reason.first_failure_ms);
            let Some(delay) = pause.backoff(failures, reason) else {
                break Err(FailureReason {
                    attempts: failures,
                    first_failure_ms: first,
                    ..reason.clone()
                });
            };
            tracing::debug!(topic = message.topic(), partition = message.partition(), offset, failures, ?delay, %reason, "backing off before trying the record again");
            *permit = None;
            tokio::time::sleep(delay).await;
            *permit = self.permits.acquire().await.ok();
        };
        let message = match outcome {
            #[cfg(feature = "otel")]
            Ok(message) => message.with_handler_span(handler_span),
            #[cfg(not(feature = "otel"))]
            Ok(message) => message,
            Err(reason) => {
                self.fail(kept, reason, acks).await;
                return None;
            }
        };
        let Some(name) = message.batcher_name().cloned() else {
            return Some(offset);
        };
        match self.batchers.get(&name) {
            Some(batcher) => {
                if batcher
                    .send(BatcherInput::Message(message, acks.clone()))
                    .await
                    .is_err()
                {
                    tracing::error!(batcher = %name, "batcher stopped early; record unacknowledged");
                }
            }
            None => {
                let reason = FailureReason::new(
                    FailureKind::Error,
                    None,
                    format!("routed to the undeclared batcher `{name}`"),
                );
                self.fail(kept, reason, acks).await;
            }
        }
        None
    }

    async fn fail(&self, message: Message<D>, reason: FailureReason, acks: &Arc<AckSink>) {
        let entry = FailedEntry {
            failed: Failed { message, reason },
            acks: acks.clone(),
        };
        if self.failures.send(entry).await.is_err() {
            tracing::error!("the failure handler stopped early; record unacknowledged");
        }
    }
}
