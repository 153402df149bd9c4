//! What a pipeline counts.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::source::EngineSummary;

/// A snapshot of a pipeline's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Records taken from the sources.
    pub received: u64,
    /// Records fully handled: by the message handler, and by a batch handler when routed to
    /// a batcher.
    pub processed: u64,
    /// Records handed to the failure handler.
    pub failed: u64,
    /// Batch handler calls.
    pub batches: u64,
}

/// What a pipeline did, reported by [`Pipeline::shutdown`](super::Pipeline::shutdown).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PipelineSummary {
    /// Counters once everything drained.
    pub stats: PipelineStats,
    /// Each consumer engine's own summary (commits, undrained records), in source order.
    pub sources: Vec<EngineSummary>,
}

#[derive(Debug, Default)]
pub(crate) struct PipelineCounters {
    received: AtomicU64,
    processed: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

impl PipelineCounters {
    pub fn note_received(&self, count: usize) {
        self.received.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn note_processed(&self, count: usize) {
        self.processed.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn note_failed(&self, count: usize) {
        self.failed.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn note_batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PipelineStats {
        PipelineStats {
            received: self.received.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}
