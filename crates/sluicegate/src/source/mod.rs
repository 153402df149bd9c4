//! The consumer engine: group members that fetch on demand and deliver one stream per
//! assigned partition.
//!
//! # Backpressure
//!
//! Every assigned partition has a demand window ([`ConsumerOptions::partition_buffer`]): the
//! records buffered for the application plus those delivered and not yet acknowledged. The
//! poll thread takes records from a partition's own librdkafka queue only while its window has
//! room; a full partition's records wait in librdkafka, whose prefetch per partition is capped
//! by [`ConsumerOptions::prefetch_bytes`].
//! librdkafka's own prefetch is capped by [`ConsumerOptions::prefetch_bytes`]. Memory is
//! therefore bounded by the options, never by the backlog on the broker.
//!
//! # Delivery semantics
//!
//! At least once. An offset is committed only when it and every lower delivered offset of its
//! partition were acknowledged; records in flight at a crash are delivered again.
//!
//! # Shutdown
//!
//! [`ConsumerEngine::shutdown`] stops fetching, ends every partition stream, waits up to the
//! drain timeout for in-flight records to be acknowledged, commits, leaves the group and
//! returns a [`EngineSummary`]. The members of one engine leave the group only once all of
//! them committed, so no member's departure fails another's final commit. A revoke does the
//! same for the revoked partitions.

mod commit;
mod fetch_queue;
mod instruments;
mod member;
mod partition;
mod pause;
mod placement;
mod poll_loop;
mod seek;
mod stall;
mod stats;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use crate::client_error::ClientError;
use crate::options::{is_pattern, ConsumerOptions, OptionsError};
use crate::record::{Offset, TopicPartition};
use crate::refusal::RefusalContext;
use crate::sync::lock;
pub use commit::{CommitError, CommitMode};
pub(crate) use fetch_queue::copy_borrowed;
use instruments::GroupState;
use member::{EngineCounters, Member, PartitionRegistry};
pub use partition::{AckError, Acknowledger, PartitionStream};
pub use pause::PauseSwitch;
pub use seek::{Seek, SeekError};
pub use stats::EngineStats;

/// Why the engine could not start.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// An option is invalid; nothing was connected.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// No broker answered within the connect timeout.
    #[error("no broker reachable at {bootstrap_servers} after {waited:?}: {last_error}")]
    BrokerUnreachable {
        /// The bootstrap servers tried.
        bootstrap_servers: String,
        /// How long start-up kept trying.
        waited: Duration,
        /// The last error the client reported.
        last_error: String,
    },
    /// The brokers refused this client's credentials or its TLS handshake failed (wrong
    /// password, untrusted certificate...); start-up does not retry that.
    #[error("cannot connect to {bootstrap_servers}: {reason}")]
    Authentication {
        /// The bootstrap servers tried.
        bootstrap_servers: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// A subscribed topic does not exist on the cluster.
    #[error("topic `{topic}` does not exist on {bootstrap_servers}")]
    TopicNotFound {
        /// The missing topic.
        topic: String,
        /// The cluster asked.
        bootstrap_servers: String,
    },
    /// librdkafka refused to create or subscribe the client.
    #[error("consumer client")]
    Client(#[source] ClientError),
    /// A thread or blocking task of the engine could not be started or failed.
    #[error("consumer engine thread")]
    Thread(#[source] std::sync::Arc<std::io::Error>),
}

impl EngineError {
    /// A thread or blocking task that could not start or ended in a panic.
    pub(crate) fn thread(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Thread(std::sync::Arc::new(std::io::Error::other(error)))
    }
}

/// Whether an engine can take work: every member holds an assignment, or is joined to a
/// stable group that has nothing for it (more members than partitions). Not ready while a
/// member joins, or rebalances holding nothing. The group's state comes from librdkafka's
/// statistics (see [`ConsumerOptions::statistics_interval`]).
#[derive(Clone)]
pub struct Readiness {
    members: Vec<(PartitionRegistry, Arc<GroupState>)>,
}

impl Readiness {
    /// Whether every member is ready now.
    pub fn is_ready(&self) -> bool {
        self.members.iter().all(|(registry, group_state)| {
            let partitions = lock(registry);
            (!partitions.is_empty() || group_state.is_steady())
                && !partitions.values().any(|shared| shared.is_stalled())
        })
    }
}

/// Several engines' readiness as one: ready when every one of them is.
impl FromIterator<Readiness> for Readiness {
    fn from_iter<I: IntoIterator<Item = Readiness>>(parts: I) -> Self {
        Readiness {
            members: parts.into_iter().flat_map(|part| part.members).collect(),
        }
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// What the engine did, reported by [`ConsumerEngine::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineSummary {
    /// Counters at the moment the engine stopped.
    pub stats: EngineStats,
    /// For each partition owned at shutdown, the last offset this engine committed for it
    /// during that assignment; a partition with nothing committed in that time is absent.
    pub committed: BTreeMap<TopicPartition, Offset>,
    /// Records still unacknowledged when the drain timeout ran out (re-delivered later).
    pub undrained: usize,
    /// For each partition whose final commit the broker refused within the drain timeout,
    /// the acknowledged offset that could not be committed: the records from the last
    /// committed offset on are delivered again to the partition's next owner. Empty when every
    /// final commit landed.
    pub uncommitted: BTreeMap<TopicPartition, Offset>,
}

/// A running consumer engine: one or more members of one consumer group.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use sluicegate::{ConsumerEngine, ConsumerOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"]);
/// let mut engine = ConsumerEngine::start(options).await?;
/// while let Some(mut partition) = engine.next_partition().await {
///     let acks = partition.acknowledger();
///     tokio::spawn(async move {
///         while let Some(record) = partition.next().await {
///             // ... handle the record ...
///             let _ = acks.ack(record.offset).await;
///         }
///     });
/// }
/// # Ok(()) }
/// ```
pub struct ConsumerEngine {
    streams: mpsc::UnboundedReceiver<PartitionStream>,
    members: Vec<Member>,
    counters: Arc<EngineCounters>,
    partition_buffer: usize,
    /// Set while the whole engine is paused (see [`ConsumerEngine::pause_switch`]).
    paused: Arc<AtomicBool>,
}

impl ConsumerEngine {
    /// Validates the options, waits for the cluster (up to the connect timeout), checks the
    /// topics exist and starts the members. Blocking work runs off the async runtime.
    pub async fn start(options: ConsumerOptions) -> Result<Self, EngineError> {
        options.validate()?;
        let options = Arc::new(options);
        let probe_options = options.clone();
        tokio::task::spawn_blocking(move || check_cluster(&probe_options))
            .await
            .map_err(EngineError::thread)??;
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let counters = Arc::new(EngineCounters::new(&options.group_id));
        let start_options = options.clone();
        let start_counters = counters.clone();
        let leave_gate = Arc::new(poll_loop::LeaveGate::new(options.members));
        let paused = Arc::new(AtomicBool::new(false));
        let members_paused = paused.clone();
        let members = tokio::task::spawn_blocking(move || {
            (0..start_options.members)
                .map(|index| {
                    member::start(
                        index,
                        start_options.clone(),
                        start_counters.clone(),
                        streams_tx.clone(),
                        leave_gate.clone(),
                        members_paused.clone(),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(EngineError::thread)??;
        Ok(Self {
            streams,
            members,
            counters,
            partition_buffer: options.partition_buffer,
            paused,
        })
    }

    /// A switch that pauses and resumes every partition of the engine, those assigned later
    /// included (see [`PauseSwitch`]). Usable after the engine moved into a pipeline.
    pub fn pause_switch(&self) -> PauseSwitch {
        PauseSwitch::engine(
            self.paused.clone(),
            self.members
                .iter()
                .map(|member| member.registry.clone())
                .collect(),
        )
    }

    /// The next assigned partition, or `None` once the engine stopped. Partitions revoked and
    /// assigned again come back as new streams.
    pub async fn next_partition(&mut self) -> Option<PartitionStream> {
        self.streams.recv().await
    }

    /// Starts `subscriber(stream, args)` as a task for every partition assigned from now on
    /// (the factory form). A subscriber ends when its stream ends, on revoke or shutdown; it
    /// should acknowledge what it took before returning. After this call
    /// [`next_partition`](Self::next_partition) returns `None`.
    pub fn spawn_subscribers<A, F, Fut>(
        &mut self,
        args: A,
        subscriber: F,
    ) -> tokio::task::JoinHandle<()>
    where
        A: Clone + Send + 'static,
        F: Fn(PartitionStream, A) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (_, closed) = mpsc::unbounded_channel();
        let mut streams = std::mem::replace(&mut self.streams, closed);
        tokio::spawn(async move {
            while let Some(stream) = streams.recv().await {
                tokio::spawn(subscriber(stream, args.clone()));
            }
        })
    }

    /// A snapshot of the engine's counters.
    pub fn stats(&self) -> EngineStats {
        stats::snapshot(&self.counters, &self.members, self.partition_buffer)
    }

    /// Whether every member can take work; see [`Readiness`].
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ready()
    }

    /// A handle that tells whether the engine is ready, usable after the engine moved into
    /// a pipeline (for a health endpoint).
    pub fn readiness(&self) -> Readiness {
        Readiness {
            members: self
                .members
                .iter()
                .map(|member| (member.registry.clone(), member.group_state.clone()))
                .collect(),
        }
    }

    /// Stops fetching, drains in-flight records (up to the drain timeout), commits, leaves the
    /// group and reports what happened.
    pub async fn shutdown(self) -> EngineSummary {
        // Peaks and bounds belong to the assignment, which shutdown releases: read them first.
        let before = self.stats();
        for member in &self.members {
            member.stop.store(true, Ordering::Release);
        }
        let counters = self.counters.clone();
        let partition_buffer = self.partition_buffer;
        let members = self.members;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut summary = EngineSummary::default();
            for member in members {
                match member.thread.join() {
                    Ok(report) => {
                        summary.committed.extend(report.committed);
                        summary.uncommitted.extend(report.uncommitted);
                        summary.undrained += report.undrained;
                    }
                    Err(_) => tracing::error!("a poll thread panicked during shutdown"),
                }
            }
            summary.stats = EngineStats {
                peak_held: before.peak_held,
                held_bound: before.held_bound,
                ..stats::snapshot(&counters, &[], partition_buffer)
            };
            summary
        })
        .await;
        outcome.unwrap_or_else(|error| {
            tracing::error!(%error, "shutdown task failed");
            EngineSummary::default()
        })
    }
}

/// Retries a metadata request until a broker answers or the connect timeout passes, then
/// checks that every subscribed topic exists.
fn check_cluster(options: &ConsumerOptions) -> Result<(), EngineError> {
    let mut config = member::client_config(options, 0);
    config.set("group.id", format!("{}-probe", options.group_id));
    // The probe never joins; it must not take a static member's id either.
    config.remove("group.instance.id");
    let probe: BaseConsumer<RefusalContext> = config
        .create_with_context(RefusalContext::default())
        .map_err(|error| EngineError::Client(error.into()))?;
    let started = Instant::now();
    let metadata = loop {
        let remaining = options.connect_timeout.saturating_sub(started.elapsed());
        let outcome = probe.fetch_metadata(None, remaining.min(Duration::from_secs(5)));
        if outcome.is_err() {
            // Serves the client's queued log lines and errors, where a refused login shows
            // up (a zero timeout would serve one event only).
            let _ = probe.poll(Duration::from_millis(100));
        }
        if let Some(reason) = probe.context().refusal.reason() {
            return Err(EngineError::Authentication {
                bootstrap_servers: options.bootstrap_servers.clone(),
                reason,
            });
        }
        match outcome {
            Ok(metadata) => break metadata,
            Err(error) if remaining > Duration::from_secs(5) => {
                tracing::warn!(bootstrap_servers = %options.bootstrap_servers, %error, "broker unreachable; retrying");
            }
            Err(error) => {
                return Err(EngineError::BrokerUnreachable {
                    bootstrap_servers: options.bootstrap_servers.clone(),
                    waited: started.elapsed(),
                    last_error: error.to_string(),
                })
            }
        }
    };
    // A pattern may match no topic yet; topics created later are picked up.
    for topic in options.topics.iter().filter(|topic| !is_pattern(topic)) {
        let exists = metadata.topics().iter().any(|known| {
            known.name() == topic && known.error().is_none() && !known.partitions().is_empty()
        });
        if !exists {
            return Err(EngineError::TopicNotFound {
                topic: topic.clone(),
                bootstrap_servers: options.bootstrap_servers.clone(),
            });
        }
    }
    Ok(())
}
