//! Committing acknowledged offsets: the interval, sync and manual strategies.
//!
//! Each group member has one commit thread, the only place besides the poll thread that makes
//! blocking librdkafka calls. It commits on a timer (interval strategy) and on request (sync
//! acknowledgements, manual triggers), each time waiting for the broker's answer on that
//! thread, so the application is never blocked by an interval commit and every outcome is
//! known. Final commits on revoke and shutdown run on the poll thread through
//! [`commit_final`].
//!
//! # Delivery semantics
//!
//! Only offsets the [`OffsetTracker`](crate::OffsetTracker) reports as committable are ever
//! sent, so a commit never passes an unacknowledged record. A failed commit leaves the
//! committed offset where it was; the interval strategy retries at the next tick, sync
//! commits retry retriable errors a few times and then report the error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use tokio::sync::oneshot;

use super::member::PartitionRegistry;
use super::partition::PartitionShared;
use crate::client_error::ClientError;
use crate::commit_stamp;
use crate::options::CommitStrategy;
use crate::record::{Offset, TopicPartition};
use crate::sync::lock;

/// Whether a triggered commit waits for the broker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitMode {
    /// Hand the commit to the commit thread and return; the outcome is logged and counted.
    Async,
    /// Wait until the broker confirmed the commit.
    Sync,
}

/// A commit that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The broker or client refused the commit.
    #[error("committing {partitions} failed")]
    Refused {
        /// The partitions in the failed commit, as `topic/partition` separated by commas.
        partitions: String,
        /// The error reported by the client.
        source: ClientError,
    },
    /// The member stopped before the commit could be made.
    #[error("the consumer engine stopped before the commit was made")]
    Stopped,
}

/// A request to the commit thread.
pub(crate) struct CommitRequest {
    pub partition: Arc<PartitionShared>,
    pub offset: Offset,
    pub mode: CommitMode,
    pub reply: oneshot::Sender<Result<(), CommitError>>,
}

enum CommitCommand {
    Request(CommitRequest),
    Stop,
}

/// Sends requests to a member's commit thread.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    commands: mpsc::Sender<CommitCommand>,
}

impl std::fmt::Debug for CommitCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitCommand")
    }
}

impl Committer {
    pub fn send(&self, request: CommitRequest) -> Result<(), CommitError> {
        self.commands
            .send(CommitCommand::Request(request))
            .map_err(|_| CommitError::Stopped)
    }
}

/// Commit counters shared by every member of an engine, and their instruments.
#[derive(Debug)]
pub(crate) struct CommitCounters {
    pub commits: AtomicU64,
    pub errors: AtomicU64,
    /// Partitions whose final commit was refused.
    pub final_refused: AtomicU64,
    duration: metrics::Histogram,
    failures: metrics::Counter,
    final_refused_on_revoke: metrics::Counter,
    final_refused_on_shutdown: metrics::Counter,
}

impl CommitCounters {
    pub fn new(group: &str) -> Self {
        let final_refused = |reason: &'static str| {
            metrics::counter!(
                crate::metrics::FINAL_COMMITS_REFUSED,
                "group" => group.to_string(),
                "reason" => reason
            )
        };
        Self {
            commits: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            final_refused: AtomicU64::new(0),
            duration: metrics::histogram!(crate::metrics::COMMIT_DURATION, "group" => group.to_string()),
            failures: metrics::counter!(crate::metrics::COMMIT_ERRORS, "group" => group.to_string()),
            final_refused_on_revoke: final_refused("revoke"),
            final_refused_on_shutdown: final_refused("shutdown"),
        }
    }

    /// Counts `partitions` whose final commit for `reason` was refused.
    fn note_final_refused(&self, reason: FinalCommit, partitions: usize) {
        self.final_refused
            .fetch_add(partitions as u64, Ordering::Relaxed);
        match reason {
            FinalCommit::Revoke => &self.final_refused_on_revoke,
            FinalCommit::Shutdown => &self.final_refused_on_shutdown,
        }
        .increment(partitions as u64);
    }
}

/// What the commit thread needs from its member.
pub(crate) struct CommitContext<C: ConsumerContext + 'static> {
    pub consumer: Arc<BaseConsumer<C>>,
    /// The member's assigned partitions.
    pub registry: PartitionRegistry,
    /// Held while commits are built and sent, and while partitions are released, so that no
    /// commit for a released partition is sent after its final commit.
    pub commit_lock: Arc<Mutex<()>>,
    pub counters: Arc<CommitCounters>,
    pub strategy: CommitStrategy,
    pub interval: Duration,
}

/// A running commit thread; stop it before dropping the consumer.
pub(crate) struct CommitThread {
    committer: Committer,
    handle: thread::JoinHandle<()>,
}

impl CommitThread {
    pub fn spawn<C: ConsumerContext + 'static>(
        name: String,
        context: CommitContext<C>,
    ) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::channel();
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || run(context, receiver))?;
        Ok(Self {
            committer: Committer { commands },
            handle,
        })
    }

    pub fn committer(&self) -> Committer {
        self.committer.clone()
    }

    /// Stops the thread after it answered every request already sent.
    pub fn stop(self) {
        let _ = self.committer.commands.send(CommitCommand::Stop);
        if self.handle.join().is_err() {
            tracing::error!("commit thread panicked");
        }
    }
}

fn run<C: ConsumerContext + 'static>(
    context: CommitContext<C>,
    commands: mpsc::Receiver<CommitCommand>,
) {
    let mut next_tick = Instant::now() + context.interval;
    loop {
        let command = if context.strategy == CommitStrategy::Interval {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match commands.recv_timeout(wait) {
                Ok(command) => Some(command),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match commands.recv() {
                Ok(command) => Some(command),
                Err(_) => return,
            }
        };
        match command {
            Some(CommitCommand::Stop) => return,
            Some(CommitCommand::Request(first)) => {
                let mut requests = vec![first];
                let mut stop = false;
                while let Ok(command) = commands.try_recv() {
                    match command {
                        CommitCommand::Request(request) => requests.push(request),
                        CommitCommand::Stop => stop = true,
                    }
                }
                serve_requests(&context, requests);
                if stop {
                    return;
                }
            }
            None => {
                commit_interval_tick(&context);
                next_tick = Instant::now() + context.interval;
            }
        }
    }
}

/// Commits every partition whose committable offset moved since its last commit. A failure
/// is counted and logged, and the next tick tries again.
fn commit_interval_tick<C: ConsumerContext + 'static>(context: &CommitContext<C>) {
    let _commit_guard = lock(&context.commit_lock);
    let targets: Vec<_> = lock(&context.registry)
        .values()
        .filter_map(|shared| {
            let state = shared.state();
            let committable = state.committable()?;
            (!state.released && state.committed < Some(committable))
                .then(|| (shared.clone(), committable))
        })
        .collect();
    if !targets.is_empty() {
        let _ = commit_sync(&context.consumer, &targets, &context.counters, 1);
    }
}

/// Serves sync acknowledgements and manual triggers, highest offset per partition.
/// Async requests are answered before their commit is made.
fn serve_requests<C: ConsumerContext + 'static>(
    context: &CommitContext<C>,
    requests: Vec<CommitRequest>,
) {
    let mut targets: BTreeMap<TopicPartition, (Arc<PartitionShared>, Offset)> = BTreeMap::new();
    let mut waiting = Vec::new();
    for request in requests {
        let entry = targets
            .entry(request.partition.partition.clone())
            .or_insert_with(|| (request.partition.clone(), request.offset));
        entry.1 = entry.1.max(request.offset);
        match request.mode {
            CommitMode::Sync => waiting.push(request.reply),
            CommitMode::Async => {
                let _ = request.reply.send(Ok(()));
            }
        }
    }
    let _commit_guard = lock(&context.commit_lock);
    // A partition released meanwhile had its final commit, which covered everything acked.
    let live: Vec<_> = targets
        .into_values()
        .filter(|(shared, offset)| {
            let state = shared.state();
            !state.released && state.committed < Some(*offset)
        })
        .collect();
    let outcome = if live.is_empty() {
        Ok(())
    } else {
        commit_sync(&context.consumer, &live, &context.counters, SYNC_ATTEMPTS)
    };
    for reply in waiting {
        let _ = reply.send(outcome.clone());
    }
}

/// Attempts of a commit whose caller waits for it (sync acknowledgements, manual triggers).
pub(crate) const SYNC_ATTEMPTS: u32 = 5;

/// Commits `targets` and waits for the broker, trying retriable errors up to `attempts`
/// times; on success each partition's committed offset moves up.
pub(crate) fn commit_sync<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
    targets: &[(Arc<PartitionShared>, Offset)],
    counters: &CommitCounters,
    attempts: u32,
) -> Result<(), CommitError> {
    commit_retrying(consumer, targets, counters, |error, attempt, _| {
        attempt < attempts && is_retriable(error)
    })
    .inspect_err(|error| tracing::warn!(%error, "commit failed"))
}

/// Commits `targets`, retrying while `retry(error, attempt, pause)` says so, with a pause that
/// doubles from 200 ms to 1.6 s between attempts.
fn commit_retrying<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
    targets: &[(Arc<PartitionShared>, Offset)],
    counters: &CommitCounters,
    retry: impl Fn(&KafkaError, u32, Duration) -> bool,
) -> Result<(), CommitError> {
    let list = to_list(targets)?;
    let mut attempt = 1;
    loop {
        match commit_once(consumer, &list, targets, counters) {
            Ok(()) => return Ok(()),
            Err(error) => {
                let pause = Duration::from_millis(100 << attempt.min(4));
                if !retry(&error, attempt, pause) {
                    return Err(refused(targets, &error));
                }
                tracing::info!(%error, attempt, "commit refused; retrying");
                thread::sleep(pause);
                attempt += 1;
            }
        }
    }
}

/// Sends one commit of `list` (made from `targets`) and waits for the broker; on success each
/// partition's committed offset moves up. Counts the commit or the error.
fn commit_once<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
    list: &TopicPartitionList,
    targets: &[(Arc<PartitionShared>, Offset)],
    counters: &CommitCounters,
) -> Result<(), KafkaError> {
    let started = Instant::now();
    let outcome = consumer.commit(list, rdkafka::consumer::CommitMode::Sync);
    counters.duration.record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            for (shared, offset) in targets {
                let mut state = shared.state();
                state.committed = state.committed.max(Some(*offset));
                shared.instruments.note_committed(*offset);
            }
            Ok(())
        }
        Err(error) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            counters.failures.increment(1);
            Err(error)
        }
    }
}

/// Why a final commit is made: it decides which refusals are worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinalCommit {
    /// Inside librdkafka's rebalance callback. While it waits, the member cannot rejoin, so a
    /// commit refused because of that very rebalance (`RebalanceInProgress`) cannot succeed
    /// before the callback returns and is not retried; other retriable errors are.
    Revoke,
    /// On shutdown, before the member leaves the group. librdkafka rejoins a rebalance
    /// started by another member on its own threads meanwhile, so every retriable refusal,
    /// `RebalanceInProgress` included, is retried until the deadline.
    Shutdown,
}

/// Commits the committable offset of each partition and marks them released: from then on
/// their acknowledgements are refused. The caller holds the commit lock.
///
/// Retriable refusals are retried (see [`FinalCommit`]) until `deadline`, the end of the
/// drain timeout. Returns the acknowledged offsets that could not be committed, after saying
/// so in the log: the records after each partition's last commit are delivered again to the
/// next owner.
pub(crate) fn commit_final<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
    partitions: &[Arc<PartitionShared>],
    counters: &CommitCounters,
    reason: FinalCommit,
    deadline: Instant,
) -> Vec<(TopicPartition, Offset)> {
    if consumer.assignment_lost() {
        // The group already gave these partitions to others (the session expired): a commit
        // would be refused, and what this member acknowledged since its last commit is
        // delivered again to the new owners.
        for shared in partitions {
            shared.state().released = true;
        }
        tracing::info!("assignment lost; no final commit");
        return Vec::new();
    }
    let targets: Vec<_> = partitions
        .iter()
        .filter_map(|shared| {
            let mut state = shared.state();
            state.released = true;
            let committable = state.committable()?;
            (state.committed < Some(committable)).then(|| (shared.clone(), committable))
        })
        .collect();
    if targets.is_empty() {
        return Vec::new();
    }
    let retry = |error: &KafkaError, _, pause| {
        let retriable = match reason {
            FinalCommit::Revoke => {
                is_retriable(error)
                    && error.rdkafka_error_code() != Some(RDKafkaErrorCode::RebalanceInProgress)
            }
            FinalCommit::Shutdown => is_retriable(error),
        };
        retriable && Instant::now() + pause < deadline
    };
    match commit_retrying(consumer, &targets, counters, retry) {
        Ok(()) => Vec::new(),
        Err(error) => {
            counters.note_final_refused(reason, targets.len());
            refused_final(&targets, &error)
        }
    }
}

/// Logs a final commit that did not land and returns what it would have committed.
fn refused_final(
    targets: &[(Arc<PartitionShared>, Offset)],
    error: &CommitError,
) -> Vec<(TopicPartition, Offset)> {
    let uncommitted: Vec<_> = targets
        .iter()
        .map(|(shared, offset)| (shared.partition.clone(), *offset))
        .collect();
    tracing::warn!(%error, ?uncommitted, "final commit failed; records after the last commit will be re-delivered");
    uncommitted
}

fn is_retriable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            RequestTimedOut
                | NetworkException
                | CoordinatorLoadInProgress
                | CoordinatorNotAvailable
                | NotCoordinator
                | RebalanceInProgress
                // KIP-848: the member's epoch moved on (a rebalance); librdkafka learns the
                // new one with its next heartbeat.
                | StaleMemberEpoch
                | OperationTimedOut
                | BrokerTransportFailure
                | AllBrokersDown
                | TimedOutQueue
        )
    )
}

fn to_list(targets: &[(Arc<PartitionShared>, Offset)]) -> Result<TopicPartitionList, CommitError> {
    let mut list = TopicPartitionList::new();
    let stamp = commit_stamp::stamp(now_ms());
    for (shared, offset) in targets {
        add(&mut list, &shared.partition, *offset, &stamp)
            .map_err(|error| refused(targets, &error))?;
    }
    Ok(list)
}

/// Adds `offset` of `partition` to `list`, with `stamp` as the commit's metadata.
fn add(
    list: &mut TopicPartitionList,
    partition: &TopicPartition,
    offset: Offset,
    stamp: &str,
) -> Result<(), KafkaError> {
    let mut element = list.add_partition(&partition.topic, partition.partition);
    element.set_offset(KafkaOffset::Offset(offset))?;
    element.set_metadata(stamp);
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

fn refused(targets: &[(Arc<PartitionShared>, Offset)], error: &KafkaError) -> CommitError {
    let partitions = targets
        .iter()
        .map(|(shared, _)| shared.partition.to_string())
        .collect::<Vec<_>>()
        .join(",");
    CommitError::Refused {
        partitions,
        source: error.clone().into(),
    }
}
