//! Broadway-style pipelines: processors with an ordering mode, named batchers, and a failure
//! handler, over one or more consumer engines.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sluicegate::pipeline::{BatcherOptions, Pipeline, ProcessingOrder};
//! use sluicegate::{ConsumerEngine, ConsumerOptions};
//!
//! struct Store; // a database pool, an HTTP client...
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = ConsumerEngine::start(ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"])).await?;
//! let pipeline = Pipeline::builder(Store)
//!     .concurrency(32)
//!     .order(ProcessingOrder::Key)
//!     .handle_message(|_store: Arc<Store>, message| async move {
//!         if message.data().value.is_none() {
//!             return Err("tombstone".into());
//!         }
//!         Ok(message.put_batcher("db"))
//!     })
//!     .batcher("db", BatcherOptions::new().size(500).timeout(Duration::from_millis(200)))
//!     .handle_batch(|_store, batch| async move {
//!         println!("{} rows for {}", batch.messages.len(), batch.key);
//!         Ok(())
//!     })
//!     .handle_failed(|_store, failed| async move {
//!         for failure in failed {
//!             eprintln!("offset {} failed: {}", failure.message.offset(), failure.reason);
//!         }
//!     })
//!     .source(engine)
//!     .start()?;
//! tokio::signal::ctrl_c().await?;
//! let summary = pipeline.shutdown().await;
//! println!("{} processed, {} failed", summary.stats.processed, summary.stats.failed);
//! # Ok(()) }
//! ```
//!
//! # Ordering
//!
//! Each assigned partition has one processor task, which takes its records in offset order
//! and runs the message handler as [`ProcessingOrder`] allows: one record of the partition at
//! a time (`Partition`, the default), one record per (partition, key) at a time (`Key`), or
//! any number (`Unordered`). [`PipelineBuilder::concurrency`] caps the message handler calls
//! running at once across the whole pipeline. Routing is managed by the pipeline: there is no
//! partition router to set, so none can conflict with the order.
//!
//! # Batching
//!
//! The message handler routes a message to a batcher with [`Message::put_batcher`]. A
//! batcher groups messages by [`BatchKey`], by default the record's partition, so a batch
//! holds one partition's records in the order they finished the message handler (offset
//! order in `Partition` order). Batches with the same key are handled one at a time, in the
//! order they were formed.
//!
//! - A coarser key ([`Message::put_batch_key`] with, say, the topic name) packs several
//!   partitions into one batch: fuller batches, and each partition's records still appear in
//!   order within it; group by partition inside the batch handler if that matters.
//! - A finer key (a key per customer, say) splits a partition across batches that are
//!   handled independently, which gives up partition order between them; use it when key
//!   order is enough. Routing to several batchers does the same.
//!
//! # Failures
//!
//! A handler that returns an error, panics, or runs past
//! [`PipelineBuilder::handler_timeout`] fails its record (every record of the batch, for a
//! batch handler) with a [`FailureReason`]. Failed records go to the failure handler in
//! batches and are then acknowledged: their offsets advance like successful ones, so a bad
//! record never blocks its partition. Without a failure handler, failures are logged.
//!
//! # Delivery semantics
//!
//! At least once. A record is acknowledged only when it is finished: after the message
//! handler (when not routed to a batcher), after its batch handler succeeded, or after the
//! failure handler returned. The engine commits an offset only when every lower offset of
//! its partition was acknowledged, so records finishing out of order never commit past
//! unfinished work.
//!
//! # Backpressure
//!
//! The pipeline takes records from a partition only as its demand window
//! ([`ConsumerOptions::partition_buffer`](crate::ConsumerOptions::partition_buffer)) allows;
//! records waiting for a handler, a batcher or the failure handler all count against it, so a
//! slow handler pauses fetching instead of growing memory.
//!
//! # Shutdown
//!
//! [`Pipeline::shutdown`] stops the sources: every partition's processor finishes its
//! records, partial batches holding its records are handed out ([`BatchTrigger::Flush`]),
//! failures are handled, then the engine commits and leaves the group. A revoked partition
//! goes through the same steps before the engine releases it. Work still unfinished after
//! the engine's drain timeout is abandoned (and delivered again to the partition's next
//! owner).

mod backoff;
mod batcher;
mod decoded;
mod failures;
mod handler;
mod handlers;
mod lanes;
mod message;
mod meters;
mod observer;
mod processor;
mod rate_limit;
mod seek_request;
mod source;
mod stats;
mod test_pipeline;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

pub use backoff::PauseOnFailure;
pub use batcher::BatcherOptions;
pub use handler::{BoxHandler, Handler};
pub use message::{
    Batch, BatchKey, BatchTrigger, BoxError, Failed, FailureKind, FailureReason, Message,
    MessageFormat, Metadata, Permanent, RawValue,
};
pub use observer::{BatchSeen, FailureSeen};
pub use processor::ProcessingOrder;
pub use stats::{PipelineStats, PipelineSummary};
pub use test_pipeline::{TestPipeline, TestReport};

use crate::options::OptionsError;
use crate::record::{Record, TopicPartition};
use crate::source::{ConsumerEngine, PauseSwitch, Readiness, Seek};
use handlers::FailureHandler;
pub(crate) use handlers::{guarded, BatchHandler, HandlerLayer, MessageHandler};
pub(crate) use message::{now_ms, GaveUp};
use observer::MaybeObserver;
use processor::ProcessorContext;
use source::{DueAt, Source};
use stats::PipelineCounters;

/// Which attempt a record's first handler call in this pipeline is (set by a retry task).
pub(crate) type AttemptOf = Arc<dyn Fn(&Record) -> u32 + Send + Sync>;

/// Where a partition starting in the pipeline moves first, if anywhere.
pub(crate) type SeekOnStart = Arc<dyn Fn(&TopicPartition) -> Option<Seek> + Send + Sync>;

/// A callback run when a partition starts or stops in the pipeline.
pub(crate) type PartitionCallback = Arc<dyn Fn(&TopicPartition) + Send + Sync>;

/// How long, after its sources stopped, a pipeline waits for handlers still running.
const ABANDON_AFTER: Duration = Duration::from_secs(5);

/// Entry point: [`Pipeline::builder`] declares a pipeline, [`PipelineBuilder::start`] runs
/// it, and the running [`Pipeline`] reports and shuts down.
pub struct Pipeline {
    readiness: Vec<Readiness>,
    pause: PauseSwitch,
    stop: watch::Sender<bool>,
    acceptors: Vec<JoinHandle<(Source, JoinSet<()>)>>,
    background: JoinSet<()>,
    counters: Arc<PipelineCounters>,
}

impl Pipeline {
    /// Declares a pipeline whose handlers receive full [`Record`]s and share `state`.
    pub fn builder<S: Send + Sync + 'static>(state: S) -> PipelineBuilder<S, Record> {
        PipelineBuilder::new(state)
    }

    /// Declares a pipeline whose handlers receive [`RawValue`]s: the raw value plus
    /// broadway_kafka-style metadata.
    pub fn raw_value_builder<S: Send + Sync + 'static>(state: S) -> PipelineBuilder<S, RawValue> {
        PipelineBuilder::new(state)
    }

    /// A snapshot of the pipeline's counters.
    pub fn stats(&self) -> PipelineStats {
        self.counters.snapshot()
    }

    /// Whether every engine of the pipeline can take work (see [`Readiness`]).
    pub fn is_ready(&self) -> bool {
        self.readiness.iter().all(Readiness::is_ready)
    }

    /// A handle on the readiness of every engine of the pipeline (for a health endpoint).
    pub fn readiness(&self) -> Readiness {
        self.readiness.iter().cloned().collect()
    }

    /// A switch that pauses and resumes the whole pipeline: every partition of every engine,
    /// without leaving the groups (see [`PauseSwitch`]). Records already in handlers, batches
    /// and the failure path finish and commit.
    pub fn pause_switch(&self) -> PauseSwitch {
        self.pause.clone()
    }

    /// Pauses the whole pipeline (see [`pause_switch`](Self::pause_switch)).
    pub fn pause(&self) {
        self.pause.pause();
    }

    /// Resumes the whole pipeline.
    pub fn resume(&self) {
        self.pause.resume();
    }

    /// Stops taking partitions, drains every processor, batcher and the failure handler,
    /// lets each engine commit and leave its group, and reports what happened.
    pub async fn shutdown(mut self) -> PipelineSummary {
        let _ = self.stop.send(true);
        let mut stopping = Vec::new();
        for acceptor in self.acceptors {
            match acceptor.await {
                Ok(stopped) => stopping.push(stopped),
                Err(error) => tracing::error!(%error, "a pipeline source task failed"),
            }
        }
        let summaries = futures_util::future::join_all(stopping.into_iter().map(
            |(source, mut partitions)| async move {
                let drains_fully = source.drains_fully();
                let summary = source.shutdown().await;
                let all_finished = async { while partitions.join_next().await.is_some() {} };
                if drains_fully {
                    all_finished.await;
                } else if tokio::time::timeout(ABANDON_AFTER, all_finished)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "handlers still running after the drain timeout; abandoning them"
                    );
                    partitions.abort_all();
                }
                summary
            },
        ))
        .await;
        if tokio::time::timeout(ABANDON_AFTER, async {
            while self.background.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("batch or failure handlers still running; abandoning them");
            self.background.abort_all();
        }
        PipelineSummary {
            stats: self.counters.snapshot(),
            sources: summaries.into_iter().flatten().collect(),
        }
    }
}

/// Declares a pipeline: handlers, order, concurrency, batchers and sources. Handlers receive
/// the shared state (as `Arc<S>`) and messages whose data is `D`: [`Record`] or [`RawValue`].
pub struct PipelineBuilder<S, D = Record> {
    state: Arc<S>,
    sources: Vec<ConsumerEngine>,
    concurrency: usize,
    order: ProcessingOrder,
    handler_timeout: Option<Duration>,
    rate_limit: Option<(u64, Duration)>,
    batchers: Vec<(String, BatcherOptions)>,
    handle_message: Option<MessageHandler<S, D>>,
    handle_batch: Option<BatchHandler<S, D>>,
    handle_failed: Option<FailureHandler<S, D>>,
    on_partition_start: Option<PartitionCallback>,
    on_partition_stop: Option<PartitionCallback>,
    /// Set by the retry module: see [`PipelineBuilder::hold_until`].
    hold_until: Option<DueAt>,
    /// Set by the retry module: `handle_failed` is a route that must finish.
    failures_must_finish: bool,
    pause_on_failure: Option<PauseOnFailure>,
    /// Set by the retry module: see [`PipelineBuilder::attempt_of`].
    attempt_of: Option<AttemptOf>,
    seek_on_start: Option<SeekOnStart>,
}

impl<S, D> PipelineBuilder<S, D>
where
    S: Send + Sync + 'static,
    D: MessageFormat,
{
    fn new(state: S) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            state: Arc::new(state),
            sources: Vec::new(),
            concurrency: cores * 2,
            order: ProcessingOrder::default(),
            handler_timeout: None,
            rate_limit: None,
            batchers: Vec::new(),
            handle_message: None,
            handle_batch: None,
            handle_failed: None,
            on_partition_start: None,
            on_partition_stop: None,
            hold_until: None,
            failures_must_finish: false,
            pause_on_failure: None,
            attempt_of: None,
            seek_on_start: None,
        }
    }

    /// A copy of the declaration (handlers, settings, callbacks; not the sources), so one
    /// declaration can run over several sources as separate pipelines.
    pub(crate) fn copy_declaration(&self) -> Self {
        Self {
            state: self.state.clone(),
            sources: Vec::new(),
            concurrency: self.concurrency,
            order: self.order,
            handler_timeout: self.handler_timeout,
            rate_limit: self.rate_limit,
            batchers: self.batchers.clone(),
            handle_message: self.handle_message.clone(),
            handle_batch: self.handle_batch.clone(),
            handle_failed: self.handle_failed.clone(),
            on_partition_start: self.on_partition_start.clone(),
            on_partition_stop: self.on_partition_stop.clone(),
            hold_until: self.hold_until.clone(),
            failures_must_finish: self.failures_must_finish,
            pause_on_failure: self.pause_on_failure.clone(),
            attempt_of: self.attempt_of.clone(),
            seek_on_start: self.seek_on_start.clone(),
        }
    }

    /// Whether sources or a failure handler were declared: a retry task provides both.
    pub(crate) fn has_sources_or_failure_handler(&self) -> (bool, bool) {
        (!self.sources.is_empty(), self.handle_failed.is_some())
    }

    /// Holds each engine record back until `due_at` says it is due (see
    /// [`PartitionStream::next_batch_due`](crate::PartitionStream::next_batch_due)).
    pub(crate) fn hold_until(mut self, due_at: DueAt) -> Self {
        self.hold_until = Some(due_at);
        self
    }

    /// Tells the pipeline which attempt a record's first handler call is (for its span).
    pub(crate) fn attempt_of(mut self, attempt_of: AttemptOf) -> Self {
        self.attempt_of = Some(attempt_of);
        self
    }

    /// Makes `handler` the failure path as a route that must finish: it runs without the
    /// handler timeout, and records it panics on stay unacknowledged (so they are delivered
    /// again) instead of being acknowledged as failure handler records are.
    pub(crate) fn route_failures<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<S>, Vec<Failed<D>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self = self.handle_failed(handler);
        self.failures_must_finish = true;
        self
    }

    /// Wraps the message and batch handlers in `layer`, which takes the handler timeout out
    /// of the pipeline's hands (the layer applies it to each call it makes).
    pub(crate) fn layer(mut self, layer: &impl HandlerLayer<S, D>) -> Self {
        let timeout = self.handler_timeout.take();
        self.handle_message = self
            .handle_message
            .map(|inner| layer.layer_message(inner, timeout));
        self.handle_batch = self
            .handle_batch
            .map(|inner| layer.layer_batch(inner, timeout));
        self
    }

    /// Adds a consumer engine as a source. Several engines (or one engine with several
    /// members) share the work: each partition is owned by exactly one of them at a time.
    pub fn source(mut self, engine: ConsumerEngine) -> Self {
        self.sources.push(engine);
        self
    }

    /// How many message handler calls run at once across the pipeline. Default: twice the
    /// number of CPU cores, as Broadway's processors.
    pub fn concurrency(mut self, calls: usize) -> Self {
        self.concurrency = calls;
        self
    }

    /// In what order a partition's records reach the message handler. Default:
    /// [`ProcessingOrder::Partition`].
    pub fn order(mut self, order: ProcessingOrder) -> Self {
        self.order = order;
        self
    }

    /// Fails a handler call (message, batch or failure handler) that runs longer than this.
    /// Default: no limit, so a handler that hangs holds its partition (or key) until it
    /// returns.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = Some(timeout);
        self
    }

    /// Backs off and tries a record again, its partition (or key) waiting, when its message
    /// handler fails as `pause` says, instead of failing it at once (Karafka's
    /// pause-with-backoff; see [`PauseOnFailure`]).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use sluicegate::pipeline::{PauseOnFailure, Pipeline, TestPipeline};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let calls = AtomicU32::new(0);
    /// let builder = Pipeline::builder(calls)
    ///     .pause_on_failure(PauseOnFailure::new(Duration::from_millis(10), Duration::from_millis(40)))
    ///     .handle_message(|calls, message| async move {
    ///         match calls.fetch_add(1, Ordering::SeqCst) {
    ///             0 | 1 => Err("the ledger is down".into()), // backs off 10 ms, then 20 ms
    ///             _ => Ok(message),
    ///         }
    ///     });
    /// let mut test = TestPipeline::start(builder).unwrap();
    /// test.push([TestPipeline::record("orders", 0, 0, None, b"paid")]);
    /// let report = test.finish().await;
    /// assert_eq!((report.stats.processed, report.stats.failed), (1, 0));
    /// # }
    /// ```
    pub fn pause_on_failure(mut self, pause: PauseOnFailure) -> Self {
        self.pause_on_failure = Some(pause);
        self
    }

    /// Caps message handler calls at `records` per `interval` for the whole pipeline.
    pub fn rate_limit(mut self, records: u64, interval: Duration) -> Self {
        self.rate_limit = Some((records, interval));
        self
    }

    /// Declares a batcher the message handler can route messages to by `name`.
    pub fn batcher(mut self, name: &str, options: BatcherOptions) -> Self {
        self.batchers.push((name.to_string(), options));
        self
    }

    /// The message handler (required): called once per record, it returns the message
    /// (optionally routed to a batcher) or an error that fails the record.
    pub fn handle_message<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<S>, Message<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Message<D>, BoxError>> + Send + 'static,
    {
        self.handle_message = Some(Arc::new(move |state, message| {
            Box::pin(handler(state, message))
        }));
        self
    }

    /// Runs `handler` on each record as the message handler: `Ok` finishes the record, an
    /// error fails it. (To share the pipeline's state or route to batchers, use
    /// [`handle_message`](Self::handle_message).)
    pub fn handler(self, handler: impl Handler<D>) -> Self {
        let handler = Arc::new(handler);
        self.handle_message(move |_, message| {
            let handler = handler.clone();
            async move {
                handler.handle(message.data()).await?;
                Ok(message)
            }
        })
    }

    /// Runs `handler` on batches: every record goes to one batcher, named `handler`, with
    /// `options`, and [`Handler::handle_batch`] handles each of its batches.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sluicegate::pipeline::{BatcherOptions, BoxError, Handler, Pipeline, TestPipeline};
    /// use sluicegate::Record;
    ///
    /// struct Insert;
    ///
    /// impl Handler for Insert {
    ///     async fn handle(&self, record: &Record) -> Result<(), BoxError> {
    ///         self.handle_batch(&[record]).await
    ///     }
    ///
    ///     async fn handle_batch(&self, records: &[&Record]) -> Result<(), BoxError> {
    ///         println!("INSERT {} rows", records.len()); // one statement per batch
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let options = BatcherOptions::new().size(100).timeout(Duration::from_millis(50));
    /// let builder = Pipeline::builder(()).batched_handler(Insert, options);
    /// let mut test = TestPipeline::start(builder).unwrap();
    /// test.push((0..3).map(|offset| TestPipeline::record("orders", 0, offset, None, b"row")));
    /// let report = test.finish().await;
    /// assert_eq!(report.batches.len(), 1);
    /// assert_eq!(report.acked_offsets("orders", 0), vec![0, 1, 2]);
    /// # }
    /// ```
    pub fn batched_handler(self, handler: impl Handler<D>, options: BatcherOptions) -> Self {
        /// The one batcher of a batched handler.
        const BATCHER: &str = "handler";
        let handler = Arc::new(handler);
        self.handle_message(|_, message| async move { Ok(message.put_batcher(BATCHER)) })
            .batcher(BATCHER, options)
            .handle_batch(move |_, batch| {
                let handler = handler.clone();
                async move {
                    let records: Vec<&D> = batch.messages.iter().map(Message::data).collect();
                    handler.handle_batch(&records).await
                }
            })
    }

    /// The batch handler (required when batchers are declared): called with each batch; an
    /// error fails every message of the batch.
    pub fn handle_batch<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<S>, Batch<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.handle_batch = Some(Arc::new(move |state, batch| {
            Box::pin(handler(state, batch))
        }));
        self
    }

    /// The failure handler: called with failed messages in batches (up to 100); they are
    /// acknowledged when it returns. Default: log each failure.
    pub fn handle_failed<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<S>, Vec<Failed<D>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handle_failed = Some(Arc::new(move |state, failed| {
            Box::pin(handler(state, failed))
        }));
        self
    }

    /// Called when a partition starts in the pipeline, before its first record.
    pub fn on_partition_start(
        mut self,
        callback: impl Fn(&TopicPartition) + Send + Sync + 'static,
    ) -> Self {
        self.on_partition_start = Some(Arc::new(callback));
        self
    }

    /// Called when a partition starts in the pipeline, before its first record is taken: a
    /// [`Seek`] it returns moves the partition there first (replay from an offset or a time,
    /// skip ahead), as [`PartitionStream::seek`](crate::PartitionStream::seek) does; `None`
    /// leaves it where the group's committed offset (or start position) put it.
    ///
    /// ```no_run
    /// use sluicegate::pipeline::Pipeline;
    /// use sluicegate::Seek;
    ///
    /// let replay_since = 1_714_564_800_000; // 2024-05-01T12:00:00Z, in ms
    /// let builder = Pipeline::builder(())
    ///     .seek_on_partition_start(move |_partition| Some(Seek::timestamp(replay_since)))
    ///     .handle_message(|_, message| async move { Ok(message) });
    /// # drop(builder);
    /// ```
    pub fn seek_on_partition_start(
        mut self,
        seek: impl Fn(&TopicPartition) -> Option<Seek> + Send + Sync + 'static,
    ) -> Self {
        self.seek_on_start = Some(Arc::new(seek));
        self
    }

    /// Called when a partition stops (revoke or shutdown), once all its records were
    /// handled, batched, flushed and acknowledged.
    pub fn on_partition_stop(
        mut self,
        callback: impl Fn(&TopicPartition) + Send + Sync + 'static,
    ) -> Self {
        self.on_partition_stop = Some(Arc::new(callback));
        self
    }

    /// Checks the declaration and starts the pipeline on the current tokio runtime. An
    /// invalid declaration fails here, naming the setting, before any record is taken.
    pub fn start(mut self) -> Result<Pipeline, OptionsError> {
        if self.sources.is_empty() {
            return Err(OptionsError::new(
                "source",
                "a pipeline needs at least one consumer engine",
            ));
        }
        let readiness = self.sources.iter().map(ConsumerEngine::readiness).collect();
        let pause = self
            .sources
            .iter()
            .map(ConsumerEngine::pause_switch)
            .collect();
        let sources = std::mem::take(&mut self.sources)
            .into_iter()
            .map(Source::Engine)
            .collect();
        let mut pipeline = self.launch(sources, None)?;
        pipeline.readiness = readiness;
        pipeline.pause = pause;
        Ok(pipeline)
    }

    fn validate(&self) -> Result<(), OptionsError> {
        if self.concurrency == 0 {
            return Err(OptionsError::new("concurrency", "must be at least 1"));
        }
        if let Some((key, problem)) = self
            .pause_on_failure
            .as_ref()
            .and_then(PauseOnFailure::problem)
        {
            return Err(OptionsError::new(key, problem));
        }
        if self.handler_timeout == Some(Duration::ZERO) {
            return Err(OptionsError::new(
                "handler_timeout",
                "must be greater than zero",
            ));
        }
        if let Some((records, interval)) = self.rate_limit {
            if records == 0 || interval.is_zero() {
                return Err(OptionsError::new(
                    "rate_limit",
                    "needs at least 1 record per non-zero interval",
                ));
            }
        }
        match (self.batchers.is_empty(), self.handle_batch.is_some()) {
            (false, false) => {
                return Err(OptionsError::new(
                    "handle_batch",
                    "batchers are declared but no batch handler",
                ))
            }
            (true, true) => {
                return Err(OptionsError::new(
                    "batcher",
                    "a batch handler is set but no batcher is declared",
                ))
            }
            _ => {}
        }
        for (index, (name, options)) in self.batchers.iter().enumerate() {
            let key = |setting: &str| format!("batcher.{name}.{setting}");
            if name.is_empty() {
                return Err(OptionsError::new(
                    "batcher",
                    "a batcher name must not be empty",
                ));
            }
            if self.batchers[..index]
                .iter()
                .any(|(earlier, _)| earlier == name)
            {
                return Err(OptionsError::new(
                    format!("batcher.{name}"),
                    "declared twice",
                ));
            }
            if options.size == 0 {
                return Err(OptionsError::new(key("size"), "must be at least 1"));
            }
            if options.timeout.is_zero() {
                return Err(OptionsError::new(
                    key("timeout"),
                    "must be greater than zero",
                ));
            }
            if options.concurrency == 0 {
                return Err(OptionsError::new(key("concurrency"), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Starts the batchers, the failure task and one acceptor per source.
    fn launch(
        self,
        sources: Vec<Source>,
        observer: MaybeObserver,
    ) -> Result<Pipeline, OptionsError> {
        self.validate()?;
        let Self {
            state,
            concurrency,
            order,
            handler_timeout,
            rate_limit,
            batchers,
            handle_message,
            handle_batch,
            handle_failed,
            on_partition_start,
            on_partition_stop,
            hold_until,
            failures_must_finish,
            pause_on_failure,
            attempt_of,
            seek_on_start,
            ..
        } = self;
        let Some(handle_message) = handle_message else {
            return Err(OptionsError::new(
                "handle_message",
                "a pipeline needs a message handler",
            ));
        };
        let counters = Arc::new(PipelineCounters::default());
        let mut background = JoinSet::new();
        let (failures, failed) = mpsc::channel(failures::FAILURE_BATCH);
        background.spawn(failures::run(
            failures::FailureContext {
                state: state.clone(),
                handler: handle_failed
                    .unwrap_or_else(|| Arc::new(|_, failed| Box::pin(log_failures(failed)))),
                handler_timeout,
                must_finish: failures_must_finish,
                counters: counters.clone(),
                observer: observer.clone(),
                duration: meters::failure_handler(),
            },
            failed,
        ));
        let mut batcher_inputs = HashMap::new();
        if let Some(handle_batch) = handle_batch {
            for (name, options) in batchers {
                let name: Arc<str> = name.into();
                let context = batcher::BatcherContext {
                    name: name.clone(),
                    options,
                    state: state.clone(),
                    handler: handle_batch.clone(),
                    handler_timeout,
                    failures: failures.clone(),
                    counters: counters.clone(),
                    observer: observer.clone(),
                    duration: meters::batch_handler(&name),
                };
                batcher_inputs.insert(name, batcher::spawn(context, &mut background));
            }
        }
        let context = Arc::new(ProcessorContext {
            state,
            handler: handle_message,
            order,
            permits: Semaphore::new(concurrency),
            handler_timeout,
            rate_limit: rate_limit
                .map(|(records, interval)| rate_limit::RateLimiter::new(records, interval)),
            batchers: batcher_inputs,
            failures,
            counters: counters.clone(),
            on_start: on_partition_start,
            on_stop: on_partition_stop,
            lane_hasher: RandomState::new(),
            hold_until,
            pause_on_failure,
            attempt_of,
            seek_on_start,
        });
        let (stop, stopped) = watch::channel(false);
        let acceptors = sources
            .into_iter()
            .map(|source| tokio::spawn(accept(context.clone(), source, stopped.clone())))
            .collect();
        Ok(Pipeline {
            readiness: Vec::new(),
            pause: PauseSwitch::from_iter([]),
            stop,
            acceptors,
            background,
            counters,
        })
    }
}

async fn log_failures<D>(failed: Vec<Failed<D>>) {
    for failure in failed {
        let message = &failure.message;
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason = %failure.reason,
            "record failed"
        );
    }
}

/// Starts a processor for every partition the source assigns, until the pipeline stops.
/// Returns the source and its still-running processors so shutdown can drain them.
async fn accept<S, D>(
    context: Arc<ProcessorContext<S, D>>,
    mut source: Source,
    mut stopped: watch::Receiver<bool>,
) -> (Source, JoinSet<()>)
where
    S: Send + Sync + 'static,
    D: MessageFormat,
{
    let mut partitions = JoinSet::new();
    let stops_on_signal = !source.drains_fully();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stopped| *stopped), if stops_on_signal => break,
            input = source.next_partition() => match input {
                Some(input) => {
                    partitions.spawn(processor::run_partition(context.clone(), input));
                }
                None => break,
            },
            Some(finished) = partitions.join_next(), if !partitions.is_empty() => {
                if let Err(error) = finished {
                    tracing::error!(%error, "a partition processor failed");
                }
            }
        }
    }
    (source, partitions)
}
