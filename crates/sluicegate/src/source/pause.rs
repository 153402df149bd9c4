//! [`PauseSwitch`]: pausing and resuming delivery of a partition, of an engine, or of a
//! pipeline, without leaving the group.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::member::PartitionRegistry;
use super::partition::PartitionShared;
use crate::sync::lock;

/// Pauses and resumes delivery: of one partition ([`PartitionStream::pause_switch`]), of
/// every partition of an engine ([`ConsumerEngine::pause_switch`]), or of a whole pipeline
/// ([`Pipeline::pause_switch`]). Cheap to clone; use it from a handler, a health check or a
/// circuit breaker while a downstream is down.
///
/// While paused, a partition hands out no records: what was buffered stays buffered, the
/// engine moves nothing more out of librdkafka's queue, and librdkafka stops fetching once
/// that queue holds the partition's prefetch, so memory stays bounded by the partition
/// buffer and prefetch bytes as always. Records already handed out still finish and commit.
/// The member keeps polling, so the partition stays assigned: no rebalance, whatever the
/// pause's length, and a paused partition is not reported stalled. A revoke ends a paused
/// partition's stream as usual. Pausing twice is the same as once.
///
/// ```no_run
/// use sluicegate::{ConsumerEngine, ConsumerOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut engine = ConsumerEngine::start(ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"])).await?;
/// let switch = engine.pause_switch();
/// switch.pause(); // the payment service is down
/// assert!(switch.is_paused());
/// switch.resume(); // it is back
/// # Ok(()) }
/// ```
///
/// [`PartitionStream::pause_switch`]: crate::PartitionStream::pause_switch
/// [`ConsumerEngine::pause_switch`]: crate::ConsumerEngine::pause_switch
/// [`Pipeline::pause_switch`]: crate::pipeline::Pipeline::pause_switch
#[derive(Clone)]
pub struct PauseSwitch(Target);

#[derive(Clone)]
enum Target {
    Partition(Arc<PartitionShared>),
    Engine {
        paused: Arc<AtomicBool>,
        registries: Vec<PartitionRegistry>,
    },
    Several(Vec<PauseSwitch>),
}

impl PauseSwitch {
    pub(crate) fn partition(shared: Arc<PartitionShared>) -> Self {
        Self(Target::Partition(shared))
    }

    pub(crate) fn engine(paused: Arc<AtomicBool>, registries: Vec<PartitionRegistry>) -> Self {
        Self(Target::Engine { paused, registries })
    }

    /// Stops handing out records until [`resume`](Self::resume).
    pub fn pause(&self) {
        match &self.0 {
            Target::Partition(shared) => shared.paused.store(true, Ordering::Release),
            Target::Engine { paused, .. } => paused.store(true, Ordering::Release),
            Target::Several(switches) => switches.iter().for_each(Self::pause),
        }
    }

    /// Hands out records again (a partition paused on its own stays paused while its engine
    /// is, and the other way round).
    pub fn resume(&self) {
        match &self.0 {
            Target::Partition(shared) => {
                shared.paused.store(false, Ordering::Release);
                shared.wake();
            }
            Target::Engine { paused, registries } => {
                paused.store(false, Ordering::Release);
                for registry in registries {
                    for shared in lock(registry).values() {
                        shared.wake();
                    }
                }
            }
            Target::Several(switches) => switches.iter().for_each(Self::resume),
        }
    }

    /// Whether records of this switch's partition, already taken from its stream, must
    /// wait: it is paused and was not revoked (a revoked partition's records finish, so that
    /// it can be released).
    pub(crate) fn holds(&self) -> bool {
        match &self.0 {
            Target::Partition(shared) => shared.is_paused() && shared.state().open,
            Target::Engine { .. } | Target::Several(_) => self.is_paused(),
        }
    }

    /// Whether this switch is set to paused (for a partition: by itself or by its engine).
    pub fn is_paused(&self) -> bool {
        match &self.0 {
            Target::Partition(shared) => shared.is_paused(),
            Target::Engine { paused, .. } => paused.load(Ordering::Acquire),
            Target::Several(switches) => {
                !switches.is_empty() && switches.iter().all(Self::is_paused)
            }
        }
    }
}

/// Several switches as one: pausing pauses each, resuming resumes each.
impl FromIterator<PauseSwitch> for PauseSwitch {
    fn from_iter<I: IntoIterator<Item = PauseSwitch>>(switches: I) -> Self {
        Self(Target::Several(switches.into_iter().collect()))
    }
}

impl fmt::Debug for PauseSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.0 {
            Target::Partition(shared) => shared.partition.to_string(),
            Target::Engine { .. } => "engine".to_owned(),
            Target::Several(switches) => format!("{} switches", switches.len()),
        };
        f.debug_struct("PauseSwitch")
            .field("target", &target)
            .field("paused", &self.is_paused())
            .finish()
    }
}
