//! A member's record of its successful commits: a `metrics` recorder that journals every
//! value the engine gives the committed-offset gauge
//! ([`sluicegate::metrics::COMMITTED_OFFSET`], set only once the broker accepted a commit)
//! as a `c PARTITION OFFSET AT` line. Every other metric is ignored.
//!
//! The audit needs it to tell what a member had handled but not committed when it was
//! killed or lost a partition: exactly what the next owner may repeat.

use std::sync::Arc;

use metrics::{
    Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

use super::journal::JournalWriter;

/// Installs the recorder for this process; fails if another one is installed.
pub fn journal_commits(journal: Arc<JournalWriter>) -> anyhow::Result<()> {
    metrics::set_global_recorder(CommitRecorder { journal })
        .map_err(|error| anyhow::anyhow!("could not install the commit recorder: {error}"))
}

struct CommitRecorder {
    journal: Arc<JournalWriter>,
}

impl Recorder for CommitRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if key.name() != sluicegate::metrics::COMMITTED_OFFSET {
            return Gauge::noop();
        }
        let partition = key
            .labels()
            .find(|label| label.key() == "partition")
            .and_then(|label| label.value().parse().ok());
        match partition {
            Some(partition) => Gauge::from_arc(Arc::new(CommittedOffset {
                partition,
                journal: self.journal.clone(),
            })),
            None => Gauge::noop(),
        }
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// One partition's committed-offset gauge.
struct CommittedOffset {
    partition: i32,
    journal: Arc<JournalWriter>,
}

impl GaugeFn for CommittedOffset {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}

    fn set(&self, offset: f64) {
        if let Err(error) = self.journal.committed(self.partition, offset as i64) {
            tracing::error!(%error, "could not journal a commit");
        }
    }
}
