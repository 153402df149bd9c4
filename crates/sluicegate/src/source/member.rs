//! One group member: an rdkafka `BaseConsumer` owned by a dedicated poll thread (see
//! [`poll_loop`](super::poll_loop)), its rebalance callbacks and its client configuration.
//!
//! Each assigned partition gets its own librdkafka queue (split from the consumer queue when
//! it is assigned), so the poll thread can leave a partition's records in librdkafka while its
//! demand window is full. Rebalance callbacks run on the poll thread: a revoke stops delivery,
//! waits for in-flight records (bounded by the drain timeout), commits and only then lets
//! librdkafka release the partitions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

use super::commit::{self, CommitContext, CommitCounters, CommitThread, Committer, FinalCommit};
use crate::options::{
    is_pattern, AssignmentStrategy, ConsumerOptions, GroupProtocol, RemoteAssignor, StartPosition,
};
use crate::record::{Offset, Record, TopicPartition};
use crate::source::fetch_queue::FetchQueue;
use crate::source::instruments::{self, GroupInstruments, GroupState, PartitionInstruments};
use crate::source::partition::{PartitionShared, PartitionStream};
use crate::source::placement;
use crate::source::poll_loop::{Doorbell, LeaveGate, PollLoop};
use crate::sync::lock;

/// Counters shared by every member of an engine.
#[derive(Debug)]
pub(crate) struct EngineCounters {
    pub fetched: AtomicU64,
    pub rebalances: AtomicU64,
    pub assigned: AtomicUsize,
    /// Partitions whose demand window is full, so the poll thread leaves them alone.
    pub full: AtomicUsize,
    /// Delivered and acknowledged counts of partitions no longer assigned.
    pub retired_delivered: AtomicU64,
    pub retired_acked: AtomicU64,
    pub commit: Arc<CommitCounters>,
    pub instruments: GroupInstruments,
}

impl EngineCounters {
    pub fn new(group: &str) -> Self {
        Self {
            fetched: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
            assigned: AtomicUsize::new(0),
            full: AtomicUsize::new(0),
            retired_delivered: AtomicU64::new(0),
            retired_acked: AtomicU64::new(0),
            commit: Arc::new(CommitCounters::new(group)),
            instruments: GroupInstruments::new(group),
        }
    }
}

/// A member's assigned partitions, shared with its commit thread.
pub(crate) type PartitionRegistry = Arc<Mutex<BTreeMap<TopicPartition, Arc<PartitionShared>>>>;

/// A partition's outlet on the poll thread: where its records come from and go to.
pub(crate) struct Outlet {
    pub shared: Arc<PartitionShared>,
    /// The partition's own librdkafka queue, read in batches.
    pub fetch: FetchQueue,
    /// rust-rdkafka's handle on the same queue, kept for its non-empty callback (the doorbell).
    _doorbell_hook: PartitionQueue<MemberContext>,
    pub batches: mpsc::Sender<Vec<Record>>,
    /// Whether the window was full at the last look (counted in `EngineCounters::full`).
    pub full: bool,
}

/// State shared between a member's poll loop, its rebalance callbacks and its commit thread.
pub(crate) struct MemberShared {
    pub name: String,
    pub options: Arc<ConsumerOptions>,
    pub registry: PartitionRegistry,
    pub commit_lock: Arc<Mutex<()>>,
    pub counters: Arc<EngineCounters>,
    pub outlets: Mutex<Vec<Outlet>>,
    /// Rung by librdkafka when a queue of this member gets records or events.
    pub doorbell: Arc<Doorbell>,
    streams: mpsc::UnboundedSender<PartitionStream>,
    committer: Mutex<Option<Committer>>,
    /// The member's consumer, to split partition queues on assignment (weak: the consumer
    /// owns this through its context).
    consumer: OnceLock<Weak<BaseConsumer<MemberContext>>>,
    /// Set when the member shuts down: later assignments are not taken up, so no partition
    /// queue outlives the client.
    pub closing: AtomicBool,
    /// The group's state, from librdkafka's statistics.
    pub group_state: Arc<GroupState>,
    /// Set while the whole engine is paused; every partition reads it.
    pub engine_paused: Arc<AtomicBool>,
}

/// The rdkafka context of a member: rebalance and commit callbacks.
pub(crate) struct MemberContext {
    member: Arc<MemberShared>,
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        instruments::record_statistics(&self.member, &statistics);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.member
            .counters
            .rebalances
            .fetch_add(1, Ordering::Relaxed);
        let instruments = &self.member.counters.instruments;
        match rebalance {
            Rebalance::Assign(list) => {
                instruments.assignments.increment(1);
                if self.member.options.places_new_partitions() {
                    placement::place_new_partitions(consumer, &self.member.options, list);
                }
                self.member.assign(list)
            }
            Rebalance::Revoke(list) => {
                instruments.revocations.increment(1);
                self.member.revoke(consumer, list)
            }
            Rebalance::Error(error) => {
                instruments.rebalance_errors.increment(1);
                tracing::warn!(member = %self.member.name, %error, "rebalance error")
            }
        }
    }
}

impl MemberShared {
    fn assign(&self, list: &TopicPartitionList) {
        if self.closing.load(Ordering::Acquire) {
            tracing::debug!(member = %self.name, "assignment during shutdown ignored");
            return;
        }
        let (Some(committer), Some(consumer)) = (
            lock(&self.committer).clone(),
            self.consumer.get().and_then(Weak::upgrade),
        ) else {
            tracing::error!(member = %self.name, "assignment before the member started");
            return;
        };
        let mut assigned = Vec::new();
        let mut outlets = lock(&self.outlets);
        for element in list.elements() {
            let partition = TopicPartition::new(element.topic(), element.partition());
            if outlets
                .iter()
                .any(|outlet| outlet.shared.partition == partition)
            {
                continue;
            }
            // Split before librdkafka assigns, so no record reaches the consumer queue.
            let Some(mut queue) =
                consumer.split_partition_queue(&partition.topic, partition.partition)
            else {
                tracing::error!(member = %self.name, %partition, "cannot split the partition queue");
                continue;
            };
            let doorbell = self.doorbell.clone();
            queue.set_nonempty_callback(move || doorbell.ring());
            let shared = Arc::new(PartitionShared::new(
                partition.clone(),
                self.doorbell.clone(),
                PartitionInstruments::new(&self.options.group_id, &partition),
                self.engine_paused.clone(),
            ));
            let Some(fetch) =
                FetchQueue::open(consumer.client(), shared.topic.clone(), partition.partition)
            else {
                tracing::error!(member = %self.name, %partition, "cannot open the partition queue");
                continue;
            };
            let (sender, receiver) = mpsc::channel(self.options.partition_buffer);
            lock(&self.registry).insert(partition.clone(), shared.clone());
            outlets.push(Outlet {
                shared: shared.clone(),
                fetch,
                _doorbell_hook: queue,
                batches: sender,
                full: false,
            });
            let stream = PartitionStream::new(
                shared,
                receiver,
                committer.clone(),
                self.options.commit_strategy,
            );
            if self.streams.send(stream).is_err() {
                tracing::debug!(member = %self.name, %partition, "nobody takes partition streams");
            }
            assigned.push(partition);
        }
        drop(outlets);
        self.counters
            .assigned
            .fetch_add(assigned.len(), Ordering::Relaxed);
        self.counters
            .instruments
            .assigned
            .increment(assigned.len() as f64);
        tracing::info!(member = %self.name, partitions = ?assigned, "partitions assigned");
        if let Some(lifecycle) = &self.options.lifecycle {
            lifecycle.on_assign(&assigned);
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<MemberContext>, list: &TopicPartitionList) {
        let revoked: Vec<TopicPartition> = list
            .elements()
            .iter()
            .map(|element| TopicPartition::new(element.topic(), element.partition()))
            .collect();
        let released: Vec<TopicPartition> = self
            .release(
                consumer,
                |partition| revoked.contains(partition),
                FinalCommit::Revoke,
            )
            .into_iter()
            .map(|released| released.partition)
            .collect();
        tracing::info!(member = %self.name, partitions = ?released, "partitions revoked");
    }

    /// Stops delivery for the selected partitions, waits for their in-flight records up to
    /// the drain timeout, commits their final offsets (retrying within what is left of the
    /// drain timeout), forgets them and tells the lifecycle callbacks (on revoke and on
    /// shutdown alike).
    pub(crate) fn release(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        selected: impl Fn(&TopicPartition) -> bool,
        reason: FinalCommit,
    ) -> Vec<ReleasedPartition> {
        let mut closing = Vec::new();
        {
            let mut outlets = lock(&self.outlets);
            let mut index = 0;
            while index < outlets.len() {
                if !selected(&outlets[index].shared.partition) {
                    index += 1;
                    continue;
                }
                let outlet = outlets.swap_remove(index);
                outlet.shared.close();
                if outlet.full {
                    self.counters.full.fetch_sub(1, Ordering::Relaxed);
                }
                closing.push(outlet.shared);
                // Dropping the sender ends the stream once the application reads it; records
                // left in the partition queue are fetched again by the next owner.
            }
        }
        let deadline = Instant::now() + self.options.drain_timeout;
        for shared in &closing {
            if !shared.wait_drained(deadline) {
                tracing::warn!(
                    member = %self.name,
                    partition = %shared.partition,
                    in_flight = shared.state().tracker.in_flight(),
                    "drain timeout: releasing with records in flight; they will be re-delivered"
                );
            }
        }
        let uncommitted: BTreeMap<TopicPartition, Offset> = {
            let _commit_guard = lock(&self.commit_lock);
            let uncommitted =
                commit::commit_final(consumer, &closing, &self.counters.commit, reason, deadline);
            let mut registry = lock(&self.registry);
            for shared in &closing {
                registry.remove(&shared.partition);
            }
            uncommitted.into_iter().collect()
        };
        for shared in &closing {
            shared.stall.clear();
            self.counters
                .retired_delivered
                .fetch_add(shared.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
            self.counters
                .retired_acked
                .fetch_add(shared.acked.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.counters
            .assigned
            .fetch_sub(closing.len(), Ordering::Relaxed);
        self.counters
            .instruments
            .assigned
            .decrement(closing.len() as f64);
        if let (Some(lifecycle), false) = (&self.options.lifecycle, closing.is_empty()) {
            let partitions: Vec<TopicPartition> = closing
                .iter()
                .map(|shared| shared.partition.clone())
                .collect();
            lifecycle.on_revoke(&partitions);
        }
        closing
            .iter()
            .map(|shared| {
                let state = shared.state();
                ReleasedPartition {
                    partition: shared.partition.clone(),
                    committed: state.committed,
                    uncommitted: uncommitted.get(&shared.partition).copied(),
                    undrained: state.tracker.in_flight(),
                }
            })
            .collect()
    }
}

/// A partition this member let go of, and how it left it.
pub(crate) struct ReleasedPartition {
    pub partition: TopicPartition,
    /// The last offset committed while this member owned it.
    pub committed: Option<Offset>,
    /// The acknowledged offset whose final commit the broker refused, if it did.
    pub uncommitted: Option<Offset>,
    /// Records still unacknowledged when the drain timeout ran out.
    pub undrained: usize,
}

/// What a member reports when it stops.
#[derive(Debug, Default)]
pub(crate) struct MemberSummary {
    pub committed: BTreeMap<TopicPartition, Offset>,
    pub uncommitted: BTreeMap<TopicPartition, Offset>,
    pub undrained: usize,
}

/// A started member: its poll thread and the flag that stops it.
pub(crate) struct Member {
    pub stop: Arc<AtomicBool>,
    pub thread: thread::JoinHandle<MemberSummary>,
    pub registry: PartitionRegistry,
    pub group_state: Arc<GroupState>,
}

/// Builds the librdkafka configuration of member `index`.
pub(crate) fn client_config(options: &ConsumerOptions, index: usize) -> ClientConfig {
    let mut config = ClientConfig::new();
    let millis = |d: Duration| d.as_millis().to_string();
    config
        .set("bootstrap.servers", &options.bootstrap_servers)
        .set("group.id", &options.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            // Exact positions are placed by the engine; earliest is the fallback once a
            // placed offset falls out of what the partition keeps.
            match options.start_position {
                StartPosition::Latest => "latest",
                _ => "earliest",
            },
        )
        .set("max.poll.interval.ms", millis(options.max_poll_interval))
        .set(
            "statistics.interval.ms",
            millis(options.statistics_interval),
        )
        // With split partition queues this bounds each partition's prefetch; the demand
        // window bounds what the application holds. A small backoff keeps the fetcher busy
        // without the one-second stalls of the default once a queue is full.
        .set(
            "queued.max.messages.kbytes",
            (options.prefetch_bytes / 1024).max(1).to_string(),
        )
        .set("queued.min.messages", "100000")
        .set("fetch.queue.backoff.ms", "5")
        // Two partitions' prefetch per fetch answer: some brokers fill a whole answer
        // from one partition, so a larger answer overshoots that partition's prefetch and a
        // smaller one starves the others.
        .set(
            "fetch.max.bytes",
            (2 * options.prefetch_bytes).max(1 << 20).to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            options.prefetch_bytes.to_string(),
        )
        // A partition whose queue drained waits for the fetch in flight; keep long polls short.
        .set("fetch.wait.max.ms", "50");
    match options.group_protocol {
        // The classic protocol's own settings; librdkafka warns about each of them under the
        // consumer protocol, where the broker decides.
        GroupProtocol::Classic => {
            config
                .set("group.protocol", "classic")
                .set(
                    "partition.assignment.strategy",
                    match options.assignment_strategy {
                        AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
                        AssignmentStrategy::Eager => "range,roundrobin",
                    },
                )
                .set("session.timeout.ms", millis(options.session_timeout))
                .set("heartbeat.interval.ms", millis(options.heartbeat_interval));
        }
        GroupProtocol::Consumer => {
            config.set("group.protocol", "consumer");
            if let Some(assignor) = options.remote_assignor {
                config.set(
                    "group.remote.assignor",
                    match assignor {
                        RemoteAssignor::Uniform => "uniform",
                        RemoteAssignor::Range => "range",
                    },
                );
            }
        }
    }
    // librdkafka matches a pattern against the topics of its metadata, refreshed every 5 min
    // by default: pick up new topics sooner.
    if options.topics.iter().any(|topic| is_pattern(topic))
        && !options
            .librdkafka
            .contains_key("topic.metadata.refresh.interval.ms")
    {
        config.set("topic.metadata.refresh.interval.ms", "10000");
    }
    if let Some(id) = options.instance_id_of(index) {
        config.set("group.instance.id", id);
    }
    for (key, value) in &options.librdkafka {
        config.set(key, value);
    }
    config
}

/// Creates a member's consumer and subscribes it; blocking (call off the runtime).
pub(crate) fn start(
    index: usize,
    options: Arc<ConsumerOptions>,
    counters: Arc<EngineCounters>,
    streams: mpsc::UnboundedSender<PartitionStream>,
    leave_gate: Arc<LeaveGate>,
    engine_paused: Arc<AtomicBool>,
) -> Result<Member, super::EngineError> {
    let name = format!("{}#{index}", options.group_id);
    let member = Arc::new(MemberShared {
        name: name.clone(),
        options: options.clone(),
        registry: Arc::default(),
        commit_lock: Arc::default(),
        counters,
        outlets: Mutex::default(),
        doorbell: Arc::default(),
        streams,
        committer: Mutex::default(),
        consumer: OnceLock::new(),
        closing: AtomicBool::new(false),
        group_state: Arc::default(),
        engine_paused,
    });
    let mut consumer: BaseConsumer<MemberContext> = client_config(&options, index)
        .create_with_context(MemberContext {
            member: member.clone(),
        })
        .map_err(|error| super::EngineError::Client(error.into()))?;
    let doorbell = member.doorbell.clone();
    consumer.set_nonempty_callback(move || doorbell.ring());
    let consumer = Arc::new(consumer);
    let _ = member.consumer.set(Arc::downgrade(&consumer));
    let commit_thread = CommitThread::spawn(
        format!("sluice-commit-{index}"),
        CommitContext {
            consumer: consumer.clone(),
            registry: member.registry.clone(),
            commit_lock: member.commit_lock.clone(),
            counters: member.counters.commit.clone(),
            strategy: options.commit_strategy,
            interval: options.commit_interval,
        },
    )
    .map_err(super::EngineError::thread)?;
    *lock(&member.committer) = Some(commit_thread.committer());
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|error| super::EngineError::Client(error.into()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let registry = member.registry.clone();
    let group_state = member.group_state.clone();
    let thread = {
        let stop = stop.clone();
        thread::Builder::new()
            .name(format!("sluice-poll-{index}"))
            .spawn(move || {
                PollLoop {
                    consumer,
                    member,
                    leave_gate,
                }
                .run(&stop, commit_thread)
            })
            .map_err(super::EngineError::thread)?
    };
    Ok(Member {
        stop,
        thread,
        registry,
        group_state,
    })
}
