//! Testing a pipeline without a broker, as Broadway's test messages do: push records in,
//! then read what was acknowledged, failed and batched.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

use super::message::MessageFormat;
use super::observer::{BatchSeen, FailureSeen, Observer};
use super::source::{AckSink, PartitionFeed, PartitionInput, Source};
use super::{Pipeline, PipelineBuilder, PipelineStats};
use crate::options::OptionsError;
use crate::record::{Offset, Record, TopicPartition};
use crate::sync::lock;

/// A pipeline fed from memory, for tests of handlers, ordering, batching and failures.
///
/// Each partition pushed becomes a partition of the pipeline, exactly as an assignment from
/// a consumer engine would; [`stop_partition`](Self::stop_partition) ends one as a revoke
/// does.
///
/// ```
/// use sluicegate::pipeline::{Pipeline, TestPipeline};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let builder = Pipeline::builder(()).handle_message(|_, message| async move {
///     match message.data().value.as_deref() {
///         Some(b"bad") => Err("cannot parse".into()),
///         _ => Ok(message),
///     }
/// });
/// let mut test = TestPipeline::start(builder).unwrap();
/// test.push([
///     TestPipeline::record("orders", 0, 0, None, b"good"),
///     TestPipeline::record("orders", 0, 1, None, b"bad"),
/// ]);
/// let report = test.finish().await;
/// assert_eq!(report.acked_offsets("orders", 0), vec![0, 1]);
/// assert_eq!(report.failed[0].offset, 1);
/// assert!(report.failed[0].reason.description.contains("cannot parse"));
/// # }
/// ```
pub struct TestPipeline {
    pipeline: Pipeline,
    inputs: mpsc::UnboundedSender<PartitionInput>,
    feeds: HashMap<TopicPartition, mpsc::UnboundedSender<Vec<Record>>>,
    log: Arc<TestLog>,
}

impl TestPipeline {
    /// Starts the declared pipeline on memory instead of a broker. The builder must have no
    /// consumer engine as a source.
    pub fn start<S, D>(builder: PipelineBuilder<S, D>) -> Result<Self, OptionsError>
    where
        S: Send + Sync + 'static,
        D: MessageFormat,
    {
        if !builder.sources.is_empty() {
            return Err(OptionsError::new(
                "source",
                "a test pipeline is fed from memory; add no consumer engine",
            ));
        }
        let log = Arc::new(TestLog::default());
        let (inputs, assigned) = mpsc::unbounded_channel();
        let pipeline = builder.launch(vec![Source::Channel(assigned)], Some(log.clone()))?;
        Ok(Self {
            pipeline,
            inputs,
            feeds: HashMap::new(),
            log,
        })
    }

    /// A record with the given position, key and value, no headers and no timestamp.
    pub fn record(
        topic: &str,
        partition: i32,
        offset: Offset,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Record {
        Record {
            topic: topic.into(),
            partition,
            offset,
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// Feeds records to the pipeline. A partition seen for the first time (or again after
    /// [`stop_partition`](Self::stop_partition)) starts as a new assignment. Offsets of a
    /// partition must increase, as they do in Kafka.
    pub fn push(&mut self, records: impl IntoIterator<Item = Record>) {
        let mut by_partition: BTreeMap<TopicPartition, Vec<Record>> = BTreeMap::new();
        for record in records {
            by_partition
                .entry(record.topic_partition())
                .or_default()
                .push(record);
        }
        for (partition, records) in by_partition {
            let feed = self.feeds.entry(partition.clone()).or_insert_with(|| {
                let (feed, receiver) = mpsc::unbounded_channel();
                let input = PartitionInput {
                    acks: Arc::new(AckSink::observed(partition.clone(), self.log.clone())),
                    partition,
                    feed: PartitionFeed::Channel(receiver),
                };
                // The pipeline outlives this handle until finish, so the send succeeds.
                let _ = self.inputs.send(input);
                feed
            });
            let _ = feed.send(records);
        }
    }

    /// Ends a partition as a revoke would: its processor finishes, partial batches holding
    /// its records are flushed, and its records are acknowledged.
    pub fn stop_partition(&mut self, topic: &str, partition: i32) {
        self.feeds.remove(&TopicPartition::new(topic, partition));
    }

    /// Waits until at least `count` records were acknowledged in total.
    pub async fn wait_for_acks(&self, count: usize) {
        loop {
            let changed = self.log.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self
                .log
                .report()
                .acked
                .values()
                .map(Vec::len)
                .sum::<usize>()
                >= count
            {
                return;
            }
            changed.await;
        }
    }

    /// What happened so far.
    pub fn report(&self) -> TestReport {
        let mut report = self.log.report().clone();
        report.stats = self.pipeline.stats();
        report
    }

    /// Ends every partition, drains the pipeline and returns the full report.
    pub async fn finish(mut self) -> TestReport {
        self.feeds.clear();
        drop(self.inputs);
        let summary = self.pipeline.shutdown().await;
        let mut report = self.log.report().clone();
        report.stats = summary.stats;
        report
    }
}

/// What a [`TestPipeline`] observed.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TestReport {
    /// Acknowledged offsets of each partition, in the order they were acknowledged.
    pub acked: BTreeMap<TopicPartition, Vec<Offset>>,
    /// Records handed to the failure handler, in the order they reached it.
    pub failed: Vec<FailureSeen>,
    /// Batches handed to the batch handler, in the order they reached it.
    pub batches: Vec<BatchSeen>,
    /// The pipeline's counters.
    pub stats: PipelineStats,
}

impl TestReport {
    /// The acknowledged offsets of one partition, sorted.
    pub fn acked_offsets(&self, topic: &str, partition: i32) -> Vec<Offset> {
        let mut offsets = self
            .acked
            .get(&TopicPartition::new(topic, partition))
            .cloned()
            .unwrap_or_default();
        offsets.sort_unstable();
        offsets
    }
}

/// What a [`TestPipeline`] observes, as the pipeline's [`Observer`].
#[derive(Debug, Default)]
struct TestLog {
    report: Mutex<TestReport>,
    changed: Notify,
}

impl TestLog {
    fn report(&self) -> MutexGuard<'_, TestReport> {
        lock(&self.report)
    }
}

impl Observer for TestLog {
    fn acked(&self, partition: &TopicPartition, offsets: &[Offset]) {
        self.report()
            .acked
            .entry(partition.clone())
            .or_default()
            .extend_from_slice(offsets);
        self.changed.notify_waiters();
    }

    fn failed(&self, failures: Vec<FailureSeen>) {
        self.report().failed.extend(failures);
    }

    fn batched(&self, batch: BatchSeen) {
        self.report().batches.push(batch);
    }
}
