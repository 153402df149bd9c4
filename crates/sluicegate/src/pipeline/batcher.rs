//! Named batchers: messages routed by the message handler are grouped by batch key and
//! handed to the batch handler when a batch is full, when its timeout passes, or when one of
//! its partitions stops.
//!
//! A batcher runs as one task that forms batches and `concurrency` batch workers that call
//! the batch handler. Batches with the same key always go to the same worker, one at a time,
//! so the default key (the partition) keeps a partition's batches in order.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use metrics::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::failures::FailedEntry;
use super::handlers::{guarded, BatchHandler};
use super::message::{Batch, BatchKey, BatchTrigger, Failed, Message};
use super::observer::{BatchSeen, MaybeObserver};
use super::source::AckSink;
use super::stats::PipelineCounters;
use crate::record::TopicPartition;

/// A batcher's settings: batch size, batch timeout and how many batches are handled at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatcherOptions {
    pub(crate) size: usize,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
}

impl Default for BatcherOptions {
    /// Broadway's defaults: 100 messages, 1 s, one batch at a time.
    fn default() -> Self {
        Self {
            size: Self::DEFAULT_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
            concurrency: 1,
        }
    }
}

impl BatcherOptions {
    /// A batch's size unless [`size`](Self::size) says otherwise: 100 messages.
    pub const DEFAULT_SIZE: usize = 100;
    /// A batch's timeout unless [`timeout`](Self::timeout) says otherwise: 1 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// The defaults: 100 messages, 1 s timeout, concurrency 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch is handed out as soon as it holds this many messages.
    pub fn size(mut self, messages: usize) -> Self {
        self.size = messages;
        self
    }

    /// A batch is handed out this long after its first message arrived, full or not.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many batches of this batcher are handled at once (batches with one key never run
    /// at the same time).
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.concurrency = workers;
        self
    }
}

/// What reaches a batcher task.
pub(crate) enum BatcherInput<D> {
    /// A message the handler routed here, with its partition's acknowledgements.
    Message(Message<D>, Arc<AckSink>),
    /// A partition stopped: hand out every batch holding its messages now.
    Flush(TopicPartition),
}

/// A message waiting in a batch.
pub(crate) struct Pending<D> {
    pub message: Message<D>,
    pub acks: Arc<AckSink>,
}

/// Batches being filled, as pure logic: keyed, sized and timed.
pub(crate) struct Accumulator<T> {
    size: usize,
    timeout: Duration,
    open: HashMap<BatchKey, (Instant, Vec<T>)>,
}

impl<T> Accumulator<T> {
    pub fn new(size: usize, timeout: Duration) -> Self {
        Self {
            size,
            timeout,
            open: HashMap::new(),
        }
    }

    /// Adds an item; returns its batch when that made it full.
    pub fn push(&mut self, key: BatchKey, item: T, now: Instant) -> Option<Vec<T>> {
        let (_, items) = self
            .open
            .entry(key.clone())
            .or_insert_with(|| (now + self.timeout, Vec::with_capacity(self.size)));
        items.push(item);
        if items.len() >= self.size {
            return self.open.remove(&key).map(|(_, items)| items);
        }
        None
    }

    /// When the next batch times out, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|(deadline, _)| *deadline).min()
    }

    /// Takes every batch whose timeout passed.
    pub fn take_due(&mut self, now: Instant) -> Vec<(BatchKey, Vec<T>)> {
        self.take_where(|deadline, _| deadline <= now)
    }

    /// Takes every batch holding an item that matches.
    pub fn take_holding(&mut self, matches: impl Fn(&T) -> bool) -> Vec<(BatchKey, Vec<T>)> {
        self.take_where(|_, items| items.iter().any(&matches))
    }

    /// Takes every open batch.
    pub fn take_all(&mut self) -> Vec<(BatchKey, Vec<T>)> {
        self.take_where(|_, _| true)
    }

    fn take_where(&mut self, take: impl Fn(Instant, &[T]) -> bool) -> Vec<(BatchKey, Vec<T>)> {
        let keys: Vec<BatchKey> = self
            .open
            .iter()
            .filter(|(_, (deadline, items))| take(*deadline, items))
            .map(|(key, _)| key.clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| self.open.remove_entry(&key))
            .map(|(key, (_, items))| (key, items))
            .collect()
    }
}

/// Everything a batcher's tasks need.
pub(crate) struct BatcherContext<S, D> {
    pub name: Arc<str>,
    pub options: BatcherOptions,
    pub state: Arc<S>,
    pub handler: BatchHandler<S, D>,
    pub handler_timeout: Option<Duration>,
    pub failures: mpsc::Sender<FailedEntry<D>>,
    pub counters: Arc<PipelineCounters>,
    pub observer: MaybeObserver,
    /// How long batch handler calls take.
    pub duration: Histogram,
}

/// Starts a batcher (its forming task and its workers) on `tasks`; returns where messages
/// go. The batcher ends once every sender is dropped, after handing out what it holds.
pub(crate) fn spawn<S, D>(
    context: BatcherContext<S, D>,
    tasks: &mut JoinSet<()>,
) -> mpsc::Sender<BatcherInput<D>>
where
    S: Send + Sync + 'static,
    D: Send + Sync + 'static,
{
    let context = Arc::new(context);
    let (input_tx, input) = mpsc::channel(context.options.size.max(64));
    let workers: Vec<_> = (0..context.options.concurrency)
        .map(|_| {
            let (batch_tx, batches) = mpsc::channel(1);
            tasks.spawn(run_worker(context.clone(), batches));
            batch_tx
        })
        .collect();
    tasks.spawn(form_batches(context, input, workers));
    input_tx
}

async fn form_batches<S, D>(
    context: Arc<BatcherContext<S, D>>,
    mut input: mpsc::Receiver<BatcherInput<D>>,
    workers: Vec<mpsc::Sender<WorkItem<D>>>,
) where
    S: Send + Sync + 'static,
    D: Send + Sync + 'static,
{
    let mut open = Accumulator::new(context.options.size, context.options.timeout);
    let hasher = RandomState::new();
    let mut closed = false;
    loop {
        let deadline = open.next_deadline();
        let (ready, trigger) = tokio::select! {
            received = input.recv() => match received {
                Some(BatcherInput::Message(message, acks)) => {
                    let key = message.batch_key();
                    let full = open.push(key.clone(), Pending { message, acks }, Instant::now());
                    (full.map(|items| (key, items)).into_iter().collect(), BatchTrigger::Size)
                }
                Some(BatcherInput::Flush(partition)) => (
                    open.take_holding(|pending| {
                        pending.message.partition() == partition.partition
                            && pending.message.topic() == partition.topic
                    }),
                    BatchTrigger::Flush,
                ),
                None => {
                    closed = true;
                    (open.take_all(), BatchTrigger::Flush)
                }
            },
            () = sleep_until(deadline) => (open.take_due(Instant::now()), BatchTrigger::Timeout),
        };
        for (key, items) in ready {
            let worker = &workers[(hasher.hash_one(&key) % workers.len() as u64) as usize];
            let batch = Batch {
                batcher: context.name.clone(),
                key,
                trigger,
                messages: Vec::with_capacity(items.len()),
            };
            send(worker, batch, items).await;
        }
        if closed {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a worker receives: the batch, with each message's acknowledgements alongside.
type WorkItem<D> = (Batch<D>, Vec<Arc<AckSink>>);

async fn send<D>(worker: &mpsc::Sender<WorkItem<D>>, mut batch: Batch<D>, items: Vec<Pending<D>>) {
    let mut sinks = Vec::with_capacity(items.len());
    for pending in items {
        batch.messages.push(pending.message);
        sinks.push(pending.acks);
    }
    if worker.send((batch, sinks)).await.is_err() {
        tracing::error!("a batch worker stopped early; its batch stays unacknowledged");
    }
}

async fn run_worker<S, D>(
    context: Arc<BatcherContext<S, D>>,
    mut batches: mpsc::Receiver<WorkItem<D>>,
) where
    S: Send + Sync + 'static,
    D: Send + Sync + 'static,
{
    while let Some((batch, sinks)) = batches.recv().await {
        let messages = batch.messages.clone();
        if let Some(observer) = &context.observer {
            observer.batched(BatchSeen::of(&batch));
        }
        let started = Instant::now();
        let call = (context.handler)(context.state.clone(), batch);
        #[cfg(feature = "otel")]
        let call = tracing::Instrument::instrument(call, batch_span(&context.name, &messages));
        let outcome = guarded(call, context.handler_timeout, Some(&context.name)).await;
        context.duration.record(started.elapsed().as_secs_f64());
        context.counters.note_batch();
        match outcome {
            Ok(()) => {
                context.counters.note_processed(messages.len());
                for acks in &sinks {
                    acks.meters.processed.increment(1);
                }
                ack_in_runs(&messages, &sinks).await;
            }
            Err(reason) => {
                for (message, acks) in messages.into_iter().zip(sinks) {
                    let failed = Failed {
                        message,
                        reason: reason.clone(),
                    };
                    if context
                        .failures
                        .send(FailedEntry { failed, acks })
                        .await
                        .is_err()
                    {
                        tracing::error!("the failure handler stopped early");
                    }
                }
            }
        }
    }
}

/// The span of a batch handler call: linked to each message's handler call.
#[cfg(feature = "otel")]
fn batch_span<D>(batcher: &str, messages: &[Message<D>]) -> tracing::Span {
    let topic = messages.first().map(Message::topic);
    let shared_topic =
        topic.filter(|topic| messages.iter().all(|message| message.topic() == *topic));
    crate::trace_context::batch_span(
        batcher,
        shared_topic,
        messages.len(),
        messages
            .iter()
            .filter_map(|message| message.handler_span().cloned()),
    )
}

/// Acknowledges a batch's messages, one call per run of messages from the same partition.
async fn ack_in_runs<D>(messages: &[Message<D>], sinks: &[Arc<AckSink>]) {
    let mut offsets = Vec::with_capacity(messages.len());
    for (index, (message, acks)) in messages.iter().zip(sinks).enumerate() {
        offsets.push(message.offset());
        let run_ends = sinks
            .get(index + 1)
            .is_none_or(|next| !Arc::ptr_eq(next, acks));
        if run_ends {
            acks.ack(&offsets).await;
            offsets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> BatchKey {
        BatchKey::Custom(name.into())
    }

    #[test]
    fn a_batch_is_handed_out_when_full() {
        let now = Instant::now();
        let mut open = Accumulator::new(3, Duration::from_secs(1));
        assert_eq!(open.push(key("a"), 1, now), None);
        assert_eq!(open.push(key("b"), 2, now), None);
        assert_eq!(open.push(key("a"), 3, now), None);
        assert_eq!(open.push(key("a"), 4, now), Some(vec![1, 3, 4]));
        assert_eq!(open.take_all(), vec![(key("b"), vec![2])]);
    }

    #[test]
    fn a_batch_times_out_from_its_first_item() {
        let start = Instant::now();
        let mut open = Accumulator::new(10, Duration::from_millis(100));
        open.push(key("a"), 1, start);
        open.push(key("b"), 2, start + Duration::from_millis(50));
        open.push(key("a"), 3, start + Duration::from_millis(90));
        assert_eq!(
            open.next_deadline(),
            Some(start + Duration::from_millis(100))
        );
        assert_eq!(
            open.take_due(start + Duration::from_millis(100)),
            vec![(key("a"), vec![1, 3])]
        );
        assert_eq!(
            open.next_deadline(),
            Some(start + Duration::from_millis(150))
        );
        assert!(open.take_due(start + Duration::from_millis(120)).is_empty());
    }

    #[test]
    fn a_flush_takes_only_batches_holding_the_partition() {
        let now = Instant::now();
        let mut open = Accumulator::new(10, Duration::from_secs(1));
        open.push(key("a"), (0, 1), now);
        open.push(key("a"), (1, 2), now);
        open.push(key("b"), (1, 3), now);
        open.push(key("c"), (2, 4), now);
        let mut flushed = open.take_holding(|(partition, _)| *partition == 0);
        flushed.sort_by_key(|(key, _)| key.to_string());
        assert_eq!(flushed, vec![(key("a"), vec![(0, 1), (1, 2)])]);
        assert_eq!(open.take_all().len(), 2);
    }
}
