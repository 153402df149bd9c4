//! One group member: an rdkafka `BaseConsumer` owned by a dedicated poll thread.
//!
//! The poll thread moves records from librdkafka into each assigned partition's buffer while
//! the partition's demand window has room, pauses a partition whose window is full and resumes
//! it once the window drains below half. Rebalance callbacks run on this thread: a revoke stops
//! delivery, waits for in-flight records (bounded by the drain timeout), commits and only then
//! lets librdkafka release the partitions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

use crate::commit::{self, CommitContext, CommitCounters, CommitThread, Committer};
use crate::options::{AssignmentStrategy, ConsumerOptions, StartPosition};
use crate::record::{Header, Offset, Record, TopicPartition};
use crate::source::partition::{PartitionShared, PartitionStream};

/// Poll timeout while some partition is paused or holds records back, so they move promptly.
const POLL_WHILE_PAUSED: Duration = Duration::from_millis(5);
/// Poll timeout otherwise.
const POLL_IDLE: Duration = Duration::from_millis(100);
/// Most records taken from librdkafka in one burst before buffers are topped up.
const MAX_BURST: usize = 256;

/// Records a full partition may hold back beyond its window before it is paused: a quarter
/// window. Pausing discards what librdkafka prefetched for the partition, so pausing on every
/// brief stall of a fast handler would fetch the same data again and again.
pub(crate) fn overflow(window: usize) -> usize {
    window / 4
}

/// Counters shared by every member of an engine.
#[derive(Debug, Default)]
pub(crate) struct EngineCounters {
    pub fetched: AtomicU64,
    pub rebalances: AtomicU64,
    pub assigned: AtomicUsize,
    pub paused: AtomicUsize,
    /// Delivered and acknowledged counts of partitions no longer assigned.
    pub retired_delivered: AtomicU64,
    pub retired_acked: AtomicU64,
    pub commit: Arc<CommitCounters>,
}

/// A partition's outlet on the poll thread: where its records go.
struct Outlet {
    shared: Arc<PartitionShared>,
    batches: mpsc::Sender<Vec<Record>>,
    /// Records polled while the partition was pausing; sent first on resume.
    held_back: VecDeque<Record>,
    paused: bool,
}

/// State shared between a member's poll loop, its rebalance callbacks and its commit thread.
pub(crate) struct MemberShared {
    pub name: String,
    pub options: Arc<ConsumerOptions>,
    pub registry: Arc<Mutex<BTreeMap<TopicPartition, Arc<PartitionShared>>>>,
    pub commit_lock: Arc<Mutex<()>>,
    pub counters: Arc<EngineCounters>,
    outlets: Mutex<Vec<Outlet>>,
    streams: mpsc::UnboundedSender<PartitionStream>,
    committer: Mutex<Option<Committer>>,
}

/// The rdkafka context of a member: rebalance and commit callbacks.
pub(crate) struct MemberContext {
    member: Arc<MemberShared>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.member
            .counters
            .rebalances
            .fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(list) => self.member.assign(list),
            Rebalance::Revoke(list) => self.member.revoke(consumer, list),
            Rebalance::Error(error) => {
                tracing::warn!(member = %self.member.name, %error, "rebalance error")
            }
        }
    }
}

impl MemberShared {
    fn assign(&self, list: &TopicPartitionList) {
        let Some(committer) = commit::lock(&self.committer).clone() else {
            tracing::error!(member = %self.name, "assignment before the committer started");
            return;
        };
        let mut assigned = Vec::new();
        let mut outlets = commit::lock(&self.outlets);
        for element in list.elements() {
            let partition = TopicPartition::new(element.topic(), element.partition());
            if outlets
                .iter()
                .any(|outlet| outlet.shared.partition == partition)
            {
                continue;
            }
            let shared = Arc::new(PartitionShared::new(partition.clone()));
            let (sender, receiver) = mpsc::channel(self.options.partition_buffer);
            commit::lock(&self.registry).insert(partition.clone(), shared.clone());
            outlets.push(Outlet {
                shared: shared.clone(),
                batches: sender,
                held_back: VecDeque::new(),
                paused: false,
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
            .release(consumer, |partition| revoked.contains(partition))
            .into_iter()
            .map(|released| released.partition)
            .collect();
        tracing::info!(member = %self.name, partitions = ?released, "partitions revoked");
        if let Some(lifecycle) = &self.options.lifecycle {
            lifecycle.on_revoke(&released);
        }
    }

    /// Stops delivery for the selected partitions, waits for their in-flight records up to
    /// the drain timeout, commits their final offsets and forgets them.
    fn release(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        selected: impl Fn(&TopicPartition) -> bool,
    ) -> Vec<ReleasedPartition> {
        let mut closing = Vec::new();
        {
            let mut outlets = commit::lock(&self.outlets);
            let mut index = 0;
            while index < outlets.len() {
                if !selected(&outlets[index].shared.partition) {
                    index += 1;
                    continue;
                }
                let outlet = outlets.swap_remove(index);
                outlet.shared.close();
                outlet.shared.note_discarded(outlet.held_back.len());
                if outlet.paused {
                    self.counters.paused.fetch_sub(1, Ordering::Relaxed);
                }
                closing.push(outlet.shared);
                // Dropping the sender ends the stream once the application reads it.
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
        {
            let _commit_guard = commit::lock(&self.commit_lock);
            commit::commit_final(consumer, &closing, &self.counters.commit);
            let mut registry = commit::lock(&self.registry);
            for shared in &closing {
                registry.remove(&shared.partition);
            }
        }
        for shared in &closing {
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
        closing
            .iter()
            .map(|shared| {
                let state = shared.state();
                ReleasedPartition {
                    partition: shared.partition.clone(),
                    committed: state.committed,
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
    /// Records still unacknowledged when the drain timeout ran out.
    pub undrained: usize,
}

/// What a member reports when it stops.
#[derive(Debug, Default)]
pub(crate) struct MemberSummary {
    pub committed: BTreeMap<TopicPartition, Offset>,
    pub undrained: usize,
}

/// A started member: its poll thread and the flag that stops it.
pub(crate) struct Member {
    pub stop: Arc<AtomicBool>,
    pub thread: thread::JoinHandle<MemberSummary>,
    pub registry: Arc<Mutex<BTreeMap<TopicPartition, Arc<PartitionShared>>>>,
}

/// Builds the librdkafka configuration of a member.
pub(crate) fn client_config(options: &ConsumerOptions) -> ClientConfig {
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
            match options.start_position {
                StartPosition::Earliest => "earliest",
                StartPosition::Latest => "latest",
            },
        )
        .set(
            "partition.assignment.strategy",
            match options.assignment_strategy {
                AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
                AssignmentStrategy::Eager => "range,roundrobin",
            },
        )
        .set("session.timeout.ms", millis(options.session_timeout))
        .set("heartbeat.interval.ms", millis(options.heartbeat_interval))
        .set("max.poll.interval.ms", millis(options.max_poll_interval))
        // Prefetch is bounded by bytes; the demand window bounds what the application holds.
        // A small backoff keeps the fetcher busy without the one-second stalls of the default.
        .set(
            "queued.max.messages.kbytes",
            (options.prefetch_bytes / 1024).to_string(),
        )
        .set("queued.min.messages", "100000")
        // One fetch answer may not fill the shared prefetch queue with a single partition.
        .set(
            "fetch.max.bytes",
            options.prefetch_bytes.max(1 << 20).to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            (options.prefetch_bytes / 8).max(64 * 1024).to_string(),
        )
        .set("fetch.queue.backoff.ms", "5")
        // A resumed partition waits for the fetch in flight; the default 500 ms long poll made
        // every pause/resume cycle of a slow handler stall that long.
        .set("fetch.wait.max.ms", "50");
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
) -> Result<Member, super::EngineError> {
    let name = format!("{}#{index}", options.group_id);
    let member = Arc::new(MemberShared {
        name: name.clone(),
        options: options.clone(),
        registry: Arc::default(),
        commit_lock: Arc::default(),
        counters,
        outlets: Mutex::default(),
        streams,
        committer: Mutex::default(),
    });
    let consumer: BaseConsumer<MemberContext> = client_config(&options)
        .create_with_context(MemberContext {
            member: member.clone(),
        })
        .map_err(|error| super::EngineError::Client(error.to_string()))?;
    let consumer = Arc::new(consumer);
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
    .map_err(|error| super::EngineError::Client(error.to_string()))?;
    *commit::lock(&member.committer) = Some(commit_thread.committer());
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|error| super::EngineError::Client(error.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let registry = member.registry.clone();
    let thread = {
        let stop = stop.clone();
        thread::Builder::new()
            .name(format!("sluice-poll-{index}"))
            .spawn(move || PollLoop { consumer, member }.run(&stop, commit_thread))
            .map_err(|error| super::EngineError::Client(error.to_string()))?
    };
    Ok(Member {
        stop,
        thread,
        registry,
    })
}

struct PollLoop {
    consumer: Arc<BaseConsumer<MemberContext>>,
    member: Arc<MemberShared>,
}

/// Consecutive fetched records of one partition, handed to its buffer as one batch.
#[derive(Default)]
struct Run {
    partition: Option<Arc<PartitionShared>>,
    records: Vec<Record>,
    /// Records the partition's window had room for when the run started.
    room: usize,
}

impl PollLoop {
    fn run(self, stop: &AtomicBool, commit_thread: CommitThread) -> MemberSummary {
        let window = self.member.options.partition_buffer;
        let mut run = Run::default();
        while !stop.load(Ordering::Acquire) {
            let waiting = self.resume_drained(window);
            let timeout = if waiting {
                POLL_WHILE_PAUSED
            } else {
                POLL_IDLE
            };
            let mut next = self.consumer.poll(timeout);
            let mut polled = 0;
            while let Some(result) = next {
                match result {
                    Ok(message) => {
                        polled += 1;
                        self.take(&mut run, &message, window);
                    }
                    Err(error) => {
                        tracing::warn!(member = %self.member.name, %error, "consumer error")
                    }
                }
                if polled >= MAX_BURST {
                    break;
                }
                next = self.consumer.poll(Duration::ZERO);
            }
            self.flush(&mut run, window);
            self.member
                .counters
                .fetched
                .fetch_add(polled as u64, Ordering::Relaxed);
        }
        self.shut_down(commit_thread)
    }

    /// Adds a fetched record to the current run of records of one partition, flushing the
    /// run when the record belongs to another partition or the partition's window is full.
    fn take(&self, run: &mut Run, message: &BorrowedMessage<'_>, window: usize) {
        let same_partition = run.partition.as_ref().is_some_and(|shared| {
            shared.partition.partition == message.partition() && *shared.topic == *message.topic()
        });
        if !same_partition {
            self.flush(run, window);
            let outlets = commit::lock(&self.member.outlets);
            let Some(outlet) = outlets.iter().find(|outlet| {
                outlet.shared.partition.partition == message.partition()
                    && outlet.shared.partition.topic == message.topic()
            }) else {
                tracing::debug!(
                    topic = message.topic(),
                    partition = message.partition(),
                    "record for an unassigned partition dropped"
                );
                return;
            };
            run.room = if outlet.paused {
                0
            } else {
                outlet.shared.room(window + overflow(window))
            };
            run.partition = Some(outlet.shared.clone());
        }
        let Some(shared) = &run.partition else {
            return;
        };
        run.records.push(to_record(message, shared.topic.clone()));
        if run.records.len() >= run.room {
            // Window and overflow are full: hand the run over and pause before polling
            // again, so librdkafka returns no further record of this partition.
            self.flush(run, window);
        }
    }

    /// Hands the current run to its partition's buffer; pauses the partition when its demand
    /// window is full.
    fn flush(&self, run: &mut Run, window: usize) {
        let Some(shared) = run.partition.take() else {
            return;
        };
        if run.records.is_empty() {
            return;
        }
        let mut records = std::mem::take(&mut run.records);
        let mut outlets = commit::lock(&self.member.outlets);
        let Some(outlet) = outlets
            .iter_mut()
            .find(|outlet| Arc::ptr_eq(&outlet.shared, &shared))
        else {
            // Revoked while the run was collected; the records will be fetched again.
            return;
        };
        // What fits in the window goes to the application; the rest waits in the overflow.
        let fits = if outlet.held_back.is_empty() {
            outlet.shared.room(window).min(records.len())
        } else {
            0
        };
        outlet.shared.note_dispatched(records.len());
        outlet.held_back.extend(records.drain(fits..));
        if !records.is_empty() {
            if let Err(error) = outlet.batches.try_send(records) {
                match error {
                    mpsc::error::TrySendError::Full(records) => outlet.held_back.extend(records),
                    mpsc::error::TrySendError::Closed(records) => {
                        outlet.shared.note_discarded(records.len())
                    }
                }
            }
        }
        if !outlet.paused && outlet.shared.room(window + overflow(window)) == 0 {
            self.set_paused(outlet, true);
        }
    }

    /// Moves held-back records to partitions whose window drained below half and resumes
    /// paused ones; returns whether any partition still waits (paused or holding back).
    fn resume_drained(&self, window: usize) -> bool {
        let low_watermark = window / 2;
        let mut still_waiting = false;
        let mut outlets = commit::lock(&self.member.outlets);
        for outlet in outlets
            .iter_mut()
            .filter(|outlet| outlet.paused || !outlet.held_back.is_empty())
        {
            let with_application =
                outlet.shared.held.load(Ordering::Acquire) - outlet.held_back.len();
            if with_application > low_watermark {
                still_waiting = true;
                continue;
            }
            if !outlet.held_back.is_empty() {
                let records: Vec<Record> = outlet.held_back.drain(..).collect();
                if let Err(error) = outlet.batches.try_send(records) {
                    match error {
                        mpsc::error::TrySendError::Full(records) => {
                            outlet.held_back.extend(records);
                            still_waiting = true;
                            continue;
                        }
                        mpsc::error::TrySendError::Closed(records) => {
                            outlet.shared.note_discarded(records.len())
                        }
                    }
                }
            }
            if outlet.paused {
                self.set_paused(outlet, false);
            }
        }
        still_waiting
    }

    fn set_paused(&self, outlet: &mut Outlet, paused: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(
            &outlet.shared.partition.topic,
            outlet.shared.partition.partition,
        );
        let result = if paused {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        match result {
            Ok(()) => {
                outlet.paused = paused;
                if paused {
                    self.member.counters.paused.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.member.counters.paused.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(error) => {
                tracing::warn!(partition = %outlet.shared.partition, %error, paused, "pause/resume failed")
            }
        }
    }

    /// Stops delivery, drains, commits and leaves the group.
    fn shut_down(self, commit_thread: CommitThread) -> MemberSummary {
        let mut summary = MemberSummary::default();
        for released in self.member.release(&self.consumer, |_| true) {
            summary.undrained += released.undrained;
            if let Some(offset) = released.committed {
                summary.committed.insert(released.partition, offset);
            }
        }
        commit_thread.stop();
        self.consumer.unsubscribe();
        summary
    }
}

/// Copies a borrowed librdkafka message into an owned [`Record`].
fn to_record(message: &BorrowedMessage<'_>, topic: Arc<str>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| Header {
                    key: header.key.to_owned(),
                    value: header.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}
