//! What a pipeline shows an [`Observer`] besides its counters: each acknowledgement, failure
//! and batch, as it happens. [`TestPipeline`](super::TestPipeline) observes this way; a
//! pipeline started on consumer engines has no observer.

use std::sync::Arc;

use super::message::{Batch, BatchKey, BatchTrigger, Failed, FailureReason};
use crate::record::{Offset, TopicPartition};

/// Sees what a pipeline does, as it does it.
pub(crate) trait Observer: Send + Sync {
    /// Offsets of a partition were acknowledged.
    fn acked(&self, partition: &TopicPartition, offsets: &[Offset]);
    /// Records reached the failure handler.
    fn failed(&self, failures: Vec<FailureSeen>);
    /// A batch reached the batch handler.
    fn batched(&self, batch: BatchSeen);
}

/// The pipeline's observer, if it has one.
pub(crate) type MaybeObserver = Option<Arc<dyn Observer>>;

/// A failed record as the failure handler received it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureSeen {
    /// The record's partition.
    pub partition: TopicPartition,
    /// The record's offset.
    pub offset: Offset,
    /// Why it failed.
    pub reason: FailureReason,
}

impl FailureSeen {
    /// What the failure handler sees of `failed`.
    pub(crate) fn of<D>(failed: &[Failed<D>]) -> Vec<Self> {
        failed
            .iter()
            .map(|failure| Self {
                partition: failure.message.topic_partition(),
                offset: failure.message.offset(),
                reason: failure.reason.clone(),
            })
            .collect()
    }
}

/// A batch as the batch handler received it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSeen {
    /// The batcher's name.
    pub batcher: String,
    /// The batch key.
    pub key: BatchKey,
    /// Why it was handed out.
    pub trigger: BatchTrigger,
    /// The position of each message, in batch order.
    pub records: Vec<(TopicPartition, Offset)>,
}

impl BatchSeen {
    /// What the batch handler sees of `batch`.
    pub(crate) fn of<D>(batch: &Batch<D>) -> Self {
        Self {
            batcher: batch.batcher.to_string(),
            key: batch.key.clone(),
            trigger: batch.trigger,
            records: batch
                .messages
                .iter()
                .map(|message| (message.topic_partition(), message.offset()))
                .collect(),
        }
    }
}
