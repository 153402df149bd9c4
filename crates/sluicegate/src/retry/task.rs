//! A retry task: a pipeline declaration run as stages over the input, retry and dead-letter
//! topics, with failures written onward by the [`Router`](super::route::Router).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::dead_letter::{self, DeadLetter};
use super::in_place::InPlaceRetries;
use super::policy::RetryPolicy;
use super::route::{RouteCounters, Router, Unwritable};
use super::stage::{self, StageRole};
use super::stages::{Stages, StagesError};
use super::topics::RetryTopics;
use crate::admin::{self, TopicSetupError};
use crate::options::{is_pattern, ConsumerOptions, OptionsError};
use crate::pipeline::{
    BoxHandler, Handler, Pipeline, PipelineBuilder, PipelineStats, PipelineSummary,
};
use crate::producer::{ProduceError, Producer, ProducerOptions};
use crate::record::Record;
use crate::source::{ConsumerEngine, EngineError};

/// Why a task could not start, or had to stop.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    /// A setting is invalid; nothing was connected.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The stage selection names a stage the task does not have.
    #[error(transparent)]
    Stages(#[from] StagesError),
    /// A topic the task needs is missing and could not be created.
    #[error("topic `{topic}` is missing: {reason}")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// Why it is not there.
        reason: String,
    },
    /// The cluster did not answer a metadata or admin request.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A stage's consumer engine did not start.
    #[error("stage {stage}: {source}")]
    Engine {
        /// The stage.
        stage: usize,
        /// Why its engine did not start.
        source: EngineError,
    },
    /// The producer that writes retries and dead letters did not start.
    #[error("retry producer")]
    Producer(#[from] ProduceError),
    /// A failed record can be written nowhere: its retry topic and its dead-letter topic
    /// both refuse it for good (too large, say). The task must stop; the record stays
    /// uncommitted, so it is delivered again once the topics are fixed.
    #[error("record {record} can be written to no retry or dead-letter topic")]
    Unwritable {
        /// The record: `topic[partition]@offset`.
        record: String,
        /// Why the dead-letter topic refused it.
        source: Box<ProduceError>,
    },
}

impl From<TopicSetupError> for RetryError {
    fn from(error: TopicSetupError) -> Self {
        match error {
            TopicSetupError::Cluster(reason) => Self::Cluster(reason),
            TopicSetupError::Missing { topic, reason } => Self::MissingTopic { topic, reason },
        }
    }
}

/// How a task retries a failed record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryMode {
    /// Through the delayed retry topics, one stage per retry: the input stage never waits,
    /// and a retried record is handled after records that came after it.
    #[default]
    Topics,
    /// Within the handler call, after each delay: the partition (or, in key order, the key)
    /// waits until the record succeeds or its retries are spent, keeping strict order. Only
    /// stage 0 and the dead-letter stage exist.
    InPlace,
}

/// Declares a task: input topics, group, a pipeline, and how failed records are retried.
///
/// ```no_run
/// use std::time::Duration;
/// use sluicegate::pipeline::{Permanent, Pipeline};
/// use sluicegate::retry::{RetryPolicy, RetryTask, Stages};
/// use sluicegate::ConsumerOptions;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pipeline = Pipeline::builder(()).handle_message(|_, message| async move {
///     match message.data().value.as_deref() {
///         None => Err(Permanent::new("no payload").into()), // straight to the dead letters
///         Some(_) => Ok(message),                            // or Err(..) to retry later
///     }
/// });
/// let task = RetryTask::new(
///     ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"]),
///     RetryPolicy::exponential(3, Duration::from_secs(1), Duration::from_secs(60))?,
///     pipeline,
/// );
/// let running = task.start(&"all".parse::<Stages>()?).await?;
/// tokio::signal::ctrl_c().await?;
/// let summary = running.shutdown().await;
/// println!("{} retried, {} dead-lettered", summary.retried, summary.dead_lettered);
/// # Ok(()) }
/// ```
pub struct RetryTask<S> {
    consumer: ConsumerOptions,
    producer: Option<ProducerOptions>,
    policy: RetryPolicy,
    pipeline: PipelineBuilder<S, Record>,
    topics: Vec<RetryTopics>,
    mode: RetryMode,
    dead_letter_handler: Option<BoxHandler<DeadLetter>>,
    /// A name override for a topic that is not an input topic, reported by `validate`.
    misplaced_override: Option<OptionsError>,
}

impl<S: Send + Sync + 'static> RetryTask<S> {
    /// A task reading `consumer`'s topics with its group, running `pipeline` (handlers,
    /// order, concurrency; without a source or a failure handler: the task provides both)
    /// and retrying failures as `policy` says, through retry topics.
    pub fn new(
        consumer: ConsumerOptions,
        policy: RetryPolicy,
        pipeline: PipelineBuilder<S, Record>,
    ) -> Self {
        let topics = consumer
            .topics
            .iter()
            .map(|topic| RetryTopics::new(topic, &consumer.group_id))
            .collect();
        Self {
            consumer,
            producer: None,
            policy,
            pipeline,
            topics,
            mode: RetryMode::default(),
            dead_letter_handler: None,
            misplaced_override: None,
        }
    }

    /// Settings of the producer that writes retries and dead letters (default: the
    /// consumer's brokers; unset brokers are taken from them too).
    pub fn producer_options(mut self, options: ProducerOptions) -> Self {
        self.producer = Some(options);
        self
    }

    /// Names retry topic `retry` (1-based) of input topic `input` instead of
    /// `<input>.<group>.retry.<retry>`.
    pub fn retry_topic_named(mut self, input: &str, retry: usize, name: impl Into<String>) -> Self {
        let name = name.into();
        self.rename(input, |topics| topics.retry_topic_named(retry, name));
        self
    }

    /// Names the dead-letter topic of input topic `input` instead of `<input>.<group>.dlq`.
    pub fn dead_letter_named(mut self, input: &str, name: impl Into<String>) -> Self {
        let name = name.into();
        self.rename(input, |topics| topics.dead_letter_named(name));
        self
    }

    fn rename(&mut self, input: &str, rename: impl FnOnce(RetryTopics) -> RetryTopics) {
        match self
            .topics
            .iter()
            .position(|topics| topics.input() == input)
        {
            Some(index) => {
                let topics = self.topics.remove(index);
                self.topics.insert(index, rename(topics));
            }
            None => {
                self.misplaced_override = Some(OptionsError::new(
                    format!("retry_topics.{input}"),
                    "not an input topic of the task",
                ))
            }
        }
    }

    /// How failed records are retried (default [`RetryMode::Topics`]).
    pub fn mode(mut self, mode: RetryMode) -> Self {
        self.mode = mode;
        self
    }

    /// Calls `handler` once for each dead letter, in the dead-letter stage (stage
    /// `retries + 1`), after logging it: to alert, or to compensate. At least once: a dead
    /// letter whose stage stops before committing it is handed over again. A handler that
    /// fails (error, panic or the pipeline's handler timeout) is logged by the stage, and the
    /// dead letter stays in its topic; retry inside the handler if a call must not be
    /// missed.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sluicegate::pipeline::{BoxError, Handler, Pipeline};
    /// use sluicegate::retry::{DeadLetter, RetryPolicy, RetryTask, Stages};
    /// use sluicegate::ConsumerOptions;
    ///
    /// struct Alert;
    ///
    /// impl Handler<DeadLetter> for Alert {
    ///     async fn handle(&self, dead: &DeadLetter) -> Result<(), BoxError> {
    ///         if let Some(history) = &dead.history {
    ///             eprintln!("{}@{} gave up: {}", history.original_topic, history.original_offset, history.error);
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pipeline = Pipeline::builder(()).handle_message(|_, message| async move { Ok(message) });
    /// let task = RetryTask::new(
    ///     ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"]),
    ///     RetryPolicy::delays([Duration::from_secs(5)])?,
    ///     pipeline,
    /// )
    /// .dead_letter_handler(Alert);
    /// let running = task.start(&Stages::All).await?;
    /// # running.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn dead_letter_handler(mut self, handler: impl Handler<DeadLetter>) -> Self {
        self.dead_letter_handler = Some(BoxHandler::new(handler));
        self
    }

    fn in_place(&self) -> bool {
        self.mode == RetryMode::InPlace
    }

    /// The task's topic names, one [`RetryTopics`] per input topic.
    pub fn topics(&self) -> &[RetryTopics] {
        &self.topics
    }

    /// Checks every setting and the stage selection without connecting; returns the
    /// stages that would run.
    pub fn validate(&self, stages: &Stages) -> Result<BTreeSet<usize>, RetryError> {
        self.consumer.validate()?;
        if let Some(pattern) = self.consumer.topics.iter().find(|topic| is_pattern(topic)) {
            return Err(OptionsError::new(
                "topics",
                format!(
                    "`{pattern}` is a pattern; a retry task names its retry and dead-letter \
                     topics after each input topic, so it needs names"
                ),
            )
            .into());
        }
        if let Some(error) = &self.misplaced_override {
            return Err(error.clone().into());
        }
        let (has_sources, has_failure_handler) = self.pipeline.has_sources_or_failure_handler();
        if has_sources {
            return Err(OptionsError::new(
                "pipeline.source",
                "a retry task starts its own engines; declare none",
            )
            .into());
        }
        if has_failure_handler {
            return Err(OptionsError::new(
                "pipeline.handle_failed",
                "a retry task routes failures itself; declare no failure handler",
            )
            .into());
        }
        let retries = self.policy.retries();
        for topics in &self.topics {
            topics.validate(retries)?;
        }
        if let Some(producer) = &self.producer {
            producer.validate()?;
        }
        let selected = stages.resolve(retries)?;
        if self.in_place() {
            let named_retry_stage = match stages {
                Stages::All => None,
                Stages::Some(_) => selected.iter().find(|stage| (1..=retries).contains(*stage)),
            };
            if let Some(stage) = named_retry_stage {
                return Err(StagesError {
                    spec: stages.to_string(),
                    problem: format!(
                        "retries run in place in stage 0, so stage {stage} does not exist"
                    ),
                }
                .into());
            }
            return Ok(selected
                .into_iter()
                .filter(|stage| *stage == 0 || *stage == retries + 1)
                .collect());
        }
        Ok(selected)
    }

    /// Creates missing retry and dead-letter topics (with the input topic's partition
    /// count), then starts one pipeline per selected stage, each with its own consumer
    /// group, so processes running different stages share the work through their groups.
    pub async fn start(self, stages: &Stages) -> Result<RunningTask, RetryError> {
        let selected = self.validate(stages)?;
        let retries = self.policy.retries();
        let wanted: Vec<(String, Vec<String>)> = self
            .topics
            .iter()
            .map(|topics| {
                let retry_topics = (1..=retries)
                    .filter(|_| !self.in_place())
                    .map(|retry| topics.retry(retry));
                let derived = retry_topics.chain([topics.dead_letter()]).collect();
                (topics.input().to_string(), derived)
            })
            .collect();
        admin::ensure_topics(&self.consumer, &wanted).await?;
        let producer = Producer::new(
            self.producer
                .clone()
                .unwrap_or_default()
                .bootstrap_servers_or(&self.consumer.bootstrap_servers),
        );
        producer.start()?;
        let counters = Arc::new(RouteCounters::default());
        let (unwritable, failed) = watch::channel(None);
        let router = Arc::new(Router {
            producer: producer.clone(),
            policy: self.policy.clone(),
            topics_by_consumed: self.topics_by_consumed(),
            in_place: self.in_place(),
            counters: counters.clone(),
            unwritable,
        });
        let template = self
            .pipeline
            .copy_declaration()
            .attempt_of(Arc::new(super::attempt));
        let template = match self.mode {
            RetryMode::InPlace => template.layer(&InPlaceRetries {
                policy: self.policy.clone(),
            }),
            RetryMode::Topics => template,
        };
        let mut running = RunningTask {
            stages: Vec::new(),
            producer,
            counters,
            failed,
        };
        for stage in selected {
            match self.start_stage(stage, &template, &router).await {
                Ok(pipeline) => running.stages.push((stage, pipeline)),
                Err(error) => {
                    running.shutdown().await;
                    return Err(error);
                }
            }
        }
        Ok(running)
    }

    fn topics_by_consumed(&self) -> HashMap<String, RetryTopics> {
        let mut by_consumed = HashMap::new();
        for topics in &self.topics {
            by_consumed.insert(topics.input().to_string(), topics.clone());
            for retry in 1..=self.policy.retries() {
                by_consumed.insert(topics.retry(retry), topics.clone());
            }
        }
        by_consumed
    }

    async fn start_stage(
        &self,
        stage: usize,
        template: &PipelineBuilder<S, Record>,
        router: &Arc<Router>,
    ) -> Result<Pipeline, RetryError> {
        // `validate` only lets through stages the policy has.
        let Some(role) = StageRole::of(stage, &self.policy) else {
            return Err(StagesError {
                spec: stage.to_string(),
                problem: "not a stage of this task".to_string(),
            }
            .into());
        };
        let mut consumer = self.consumer.clone();
        consumer.group_id = role.group(&self.consumer.group_id);
        consumer.topics = role.topics(&self.topics);
        consumer.stage = stage;
        let engine = ConsumerEngine::start(consumer)
            .await
            .map_err(|source| RetryError::Engine { stage, source })?;
        let pipeline = match role {
            StageRole::DeadLetters => dead_letter::pipeline(self.dead_letter_handler.clone())
                .source(engine)
                .start()?,
            StageRole::Input | StageRole::Retry(..) => {
                let router = router.clone();
                let mut declaration = template.copy_declaration();
                if let StageRole::Retry(_, delay) = role {
                    declaration = declaration
                        .hold_until(Arc::new(move |record| stage::due_at(record, delay)));
                }
                declaration
                    .route_failures(move |_, failed| {
                        let router = router.clone();
                        async move { router.route(stage, failed).await }
                    })
                    .source(engine)
                    .start()?
            }
        };
        tracing::info!(stage, role = ?role, "stage started");
        Ok(pipeline)
    }
}

/// A started task: its stages run until [`RunningTask::shutdown`].
pub struct RunningTask {
    stages: Vec<(usize, Pipeline)>,
    producer: Producer,
    counters: Arc<RouteCounters>,
    failed: watch::Receiver<Option<Unwritable>>,
}

/// What a task did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskStats {
    /// Each running stage's pipeline counters, by stage number.
    pub stages: Vec<(usize, PipelineStats)>,
    /// Records written to a retry topic.
    pub retried: u64,
    /// Records written to a dead-letter topic.
    pub dead_lettered: u64,
}

/// What a task did, reported by [`RunningTask::shutdown`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TaskSummary {
    /// Each stage's pipeline summary, by stage number.
    pub stages: Vec<(usize, PipelineSummary)>,
    /// Records written to a retry topic.
    pub retried: u64,
    /// Records written to a dead-letter topic.
    pub dead_lettered: u64,
}

/// How long shutdown waits for the retry producer's last deliveries; every write is
/// awaited before its record is acknowledged, so normally nothing is left.
const PRODUCER_SHUTDOWN: Duration = Duration::from_secs(5);

impl RunningTask {
    /// A snapshot of every stage's counters and of what was written onward.
    pub fn stats(&self) -> TaskStats {
        TaskStats {
            stages: self
                .stages
                .iter()
                .map(|(stage, pipeline)| (*stage, pipeline.stats()))
                .collect(),
            retried: self.counters.retried.load(Ordering::Relaxed),
            dead_lettered: self.counters.dead_lettered.load(Ordering::Relaxed),
        }
    }

    /// Whether every stage can take work (see [`Readiness`](crate::Readiness)).
    pub fn is_ready(&self) -> bool {
        self.stages.iter().all(|(_, pipeline)| pipeline.is_ready())
    }

    /// A handle on the readiness of every stage (for a health endpoint).
    pub fn readiness(&self) -> crate::Readiness {
        self.stages
            .iter()
            .map(|(_, pipeline)| pipeline.readiness())
            .collect()
    }

    /// Resolves when the task hit an error it cannot get past and must be shut down
    /// ([`RetryError::Unwritable`]); pending while it runs well.
    ///
    /// ```no_run
    /// # async fn run(running: sluicegate::retry::RunningTask) {
    /// tokio::select! {
    ///     _ = tokio::signal::ctrl_c() => {}
    ///     error = running.failed() => eprintln!("task stopped: {error}"),
    /// }
    /// running.shutdown().await;
    /// # }
    /// ```
    pub async fn failed(&self) -> RetryError {
        let mut failed = self.failed.clone();
        let unwritable = match failed.wait_for(Option::is_some).await {
            Ok(unwritable) => unwritable.clone(),
            // The routes are gone only when the task is; nothing can fail any more.
            Err(_) => None,
        };
        match unwritable {
            Some(Unwritable { record, error }) => RetryError::Unwritable {
                record,
                source: Box::new(error),
            },
            None => std::future::pending().await,
        }
    }

    /// Shuts every stage down (each drains, commits and leaves its group), then the
    /// producer.
    pub async fn shutdown(self) -> TaskSummary {
        let stages = futures_util::future::join_all(
            self.stages
                .into_iter()
                .map(|(stage, pipeline)| async move { (stage, pipeline.shutdown().await) }),
        )
        .await;
        let report = self.producer.shutdown(PRODUCER_SHUTDOWN).await;
        if report.undelivered > 0 {
            tracing::error!(
                undelivered = report.undelivered,
                "retry producer shut down with writes in flight; their records were not acknowledged"
            );
        }
        TaskSummary {
            stages,
            retried: self.counters.retried.load(Ordering::Relaxed),
            dead_lettered: self.counters.dead_lettered.load(Ordering::Relaxed),
        }
    }
}
