//! Where a pipeline's partitions come from: consumer engines, or a channel of partitions
//! (what [`TestPipeline`](super::TestPipeline) pushes). Everything above this module sees one
//! [`PartitionInput`] per assigned partition and never names the engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, Notify};

use super::meters::PartitionMeters;
use super::observer::Observer;
use super::seek_request::SeekRequest;
use crate::client_error::Chain;
use crate::record::{Offset, Record, TopicPartition};
use crate::source::{
    AckError, Acknowledger, ConsumerEngine, EngineSummary, PartitionStream, PauseSwitch, Seek,
};

/// When a record may be handed to the handler (`None`: at once).
pub(crate) type DueAt = Arc<dyn Fn(&Record) -> Option<SystemTime> + Send + Sync>;

/// One assigned partition: its records and where their acknowledgements go.
pub(crate) struct PartitionInput {
    pub partition: TopicPartition,
    pub feed: PartitionFeed,
    pub acks: Arc<AckSink>,
}

/// A partition's records, in offset order.
pub(crate) enum PartitionFeed {
    Engine(PartitionStream),
    /// Records pushed in order by whoever holds the sender.
    Channel(mpsc::UnboundedReceiver<Vec<Record>>),
}

impl PartitionFeed {
    /// The next records (at least one, at most `max` from an engine); `None` once the
    /// partition was revoked or the source stopped. With `hold_until`, an engine's records
    /// are handed out only once due (see [`PartitionStream::next_batch_due`]); pushed
    /// records are handed out as pushed. Cancel safe.
    pub async fn next_batch(
        &mut self,
        max: usize,
        hold_until: Option<&DueAt>,
    ) -> Option<Vec<Record>> {
        match (self, hold_until) {
            (Self::Engine(stream), None) => stream.next_batch(max).await,
            (Self::Engine(stream), Some(due_at)) => stream.next_batch_due(max, &**due_at).await,
            (Self::Channel(records), _) => records.recv().await,
        }
    }
}

impl PartitionFeed {
    /// Moves an engine's partition as `seek` says (see [`PartitionStream::seek`]), `why`
    /// naming who asked, in the log; true when it moved. Records pushed by hand cannot be
    /// sought, so a channel's feed stays as it is.
    pub async fn seek(&mut self, partition: &TopicPartition, seek: Seek, why: &str) -> bool {
        match self {
            Self::Engine(stream) => match stream.seek(seek).await {
                Ok(offset) => {
                    tracing::info!(%partition, offset, why, "partition moved");
                    true
                }
                Err(error) => {
                    tracing::warn!(%partition, error = %Chain(&error), why, "could not move the partition");
                    false
                }
            },
            Self::Channel(_) => {
                tracing::debug!(%partition, why, "a pushed partition cannot seek");
                false
            }
        }
    }
}

/// Acknowledges a partition's records and knows how many are still unacknowledged.
pub(crate) struct AckSink {
    partition: TopicPartition,
    pub meters: PartitionMeters,
    target: AckTarget,
    outstanding: AtomicUsize,
    settled: Notify,
    /// Where handlers ask for a seek; `None` when the feed cannot seek (records pushed).
    seek_request: Option<SeekRequest>,
}

enum AckTarget {
    Engine(Acknowledger),
    /// No engine to commit: the acknowledgements are shown to an observer.
    Observer(Arc<dyn Observer>),
}

impl AckSink {
    pub fn engine(acknowledger: Acknowledger) -> Self {
        Self::new(
            acknowledger.partition().clone(),
            AckTarget::Engine(acknowledger),
        )
    }

    pub fn observed(partition: TopicPartition, observer: Arc<dyn Observer>) -> Self {
        Self::new(partition, AckTarget::Observer(observer))
    }

    fn new(partition: TopicPartition, target: AckTarget) -> Self {
        Self {
            seek_request: matches!(target, AckTarget::Engine(_)).then(SeekRequest::default),
            meters: PartitionMeters::new(&partition.topic),
            partition,
            target,
            outstanding: AtomicUsize::new(0),
            settled: Notify::new(),
        }
    }

    /// The switch that pauses the partition, when an engine feeds it.
    pub fn pause_switch(&self) -> Option<PauseSwitch> {
        match &self.target {
            AckTarget::Engine(acknowledger) => Some(acknowledger.pause_switch()),
            AckTarget::Observer(_) => None,
        }
    }

    /// Where handlers ask for a seek, when the feed can seek.
    pub fn seek_request(&self) -> Option<&SeekRequest> {
        self.seek_request.as_ref()
    }

    /// Records were taken from the feed; each must be acknowledged once.
    pub fn note_taken(&self, count: usize) {
        self.outstanding.fetch_add(count, Ordering::AcqRel);
    }

    /// Records taken from the feed were dropped unhandled (a seek moved past them): they
    /// will not be acknowledged.
    pub fn forget(&self, count: usize) {
        self.settle(count);
    }

    fn settle(&self, count: usize) {
        if count > 0 && self.outstanding.fetch_sub(count, Ordering::AcqRel) == count {
            self.settled.notify_waiters();
        }
    }

    /// Acknowledges finished offsets (succeeded, or handed to the failure handler).
    pub async fn ack(&self, offsets: &[Offset]) {
        if offsets.is_empty() {
            return;
        }
        match &self.target {
            AckTarget::Engine(acknowledger) => {
                match acknowledger.ack_many(offsets.iter().copied()).await {
                    Ok(()) => {}
                    // The drain timeout ran out; the new owner gets these records again.
                    Err(AckError::Revoked(partition)) => {
                        tracing::debug!(%partition, count = offsets.len(), "acknowledged after revoke")
                    }
                    Err(error) => tracing::warn!(%error, "acknowledgement failed"),
                }
            }
            AckTarget::Observer(observer) => observer.acked(&self.partition, offsets),
        }
        self.settle(offsets.len());
    }

    /// Waits until every record taken from the feed was acknowledged.
    pub async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.outstanding.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A source of partitions.
pub(crate) enum Source {
    Engine(ConsumerEngine),
    /// Partitions pushed by whoever holds the sender; ends when it is dropped.
    Channel(mpsc::UnboundedReceiver<PartitionInput>),
}

impl Source {
    /// Whether every partition of the source is processed to its end before the pipeline
    /// stops: a channel's, since its sender decides when it ends. An engine's partitions
    /// end when the pipeline stops, and handlers still running after the engine's drain
    /// are abandoned.
    pub fn drains_fully(&self) -> bool {
        matches!(self, Self::Channel(_))
    }

    /// The next assigned partition; `None` once the source stopped. Cancel safe.
    pub async fn next_partition(&mut self) -> Option<PartitionInput> {
        match self {
            Self::Engine(engine) => {
                let stream = engine.next_partition().await?;
                Some(PartitionInput {
                    partition: stream.partition().clone(),
                    acks: Arc::new(AckSink::engine(stream.acknowledger())),
                    feed: PartitionFeed::Engine(stream),
                })
            }
            Self::Channel(inputs) => inputs.recv().await,
        }
    }

    /// Stops the source: an engine drains, commits and leaves its group.
    pub async fn shutdown(self) -> Option<EngineSummary> {
        match self {
            Self::Engine(engine) => Some(engine.shutdown().await),
            Self::Channel(_) => None,
        }
    }
}
