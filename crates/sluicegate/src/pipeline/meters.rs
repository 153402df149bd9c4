//! A pipeline's instruments in the `metrics` facade (names in [`crate::metrics`]): made once
//! per partition or per batcher, so the hot path only bumps handles.

use metrics::{counter, histogram, Counter, Histogram};

use crate::metrics as names;

/// One assigned partition's pipeline figures.
#[derive(Debug)]
pub(crate) struct PartitionMeters {
    pub processed: Counter,
    pub failed: Counter,
    pub message_handler: Histogram,
}

impl PartitionMeters {
    pub fn new(topic: &str) -> Self {
        Self {
            processed: counter!(names::RECORDS_PROCESSED, "topic" => topic.to_string()),
            failed: counter!(names::RECORDS_FAILED, "topic" => topic.to_string()),
            message_handler: histogram!(
                names::HANDLER_DURATION,
                "handler" => "message",
                "topic" => topic.to_string()
            ),
        }
    }
}

/// How long a batcher's batch handler calls take.
pub(crate) fn batch_handler(batcher: &str) -> Histogram {
    histogram!(names::HANDLER_DURATION, "handler" => "batch", "batcher" => batcher.to_string())
}

/// How long failure handler calls take.
pub(crate) fn failure_handler() -> Histogram {
    histogram!(names::HANDLER_DURATION, "handler" => "failed")
}
