//! One assigned partition as the application sees it: a [`PartitionStream`] of records and an
//! [`Acknowledger`] to finish them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use futures_core::Stream;
use futures_util::task::AtomicWaker;
use tokio::sync::{mpsc, oneshot};

use super::commit::{CommitError, CommitMode, CommitRequest, Committer};
use super::seek::{PendingSeek, Seek, SeekError};
use crate::offsets::{OffsetTracker, TrackerError};
use crate::options::CommitStrategy;
use crate::record::{Offset, Record, TopicPartition};
use crate::source::instruments::PartitionInstruments;
use crate::source::poll_loop::Doorbell;
use crate::source::stall::StallWatch;
use crate::sync::lock;

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The partition was revoked or the engine shut down: this member no longer owns it, so the
    /// record will be (or was) re-delivered to its new owner.
    #[error("partition {0} is no longer owned by this member")]
    Revoked(TopicPartition),
    /// The offset was never delivered on this stream, or was already acknowledged.
    #[error("partition {partition}: {source}")]
    Offset {
        /// The partition.
        partition: TopicPartition,
        /// What the tracker refused.
        source: TrackerError,
    },
    /// Sync commit strategy: the acknowledgement was recorded but committing it failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// Mutable state of one assigned partition, shared by the poll thread, the stream and its
/// acknowledgers.
#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    pub tracker: OffsetTracker,
    /// False once a revoke or shutdown began: no further record reaches the application.
    pub open: bool,
    /// True once the partition was released: acknowledgements are refused.
    pub released: bool,
    /// Highest offset the broker confirmed as committed for this assignment.
    pub committed: Option<Offset>,
    /// After a seek back: commits stay at or above this (what was acknowledged before it).
    pub commit_floor: Option<Offset>,
}

impl PartitionState {
    /// The offset to commit now: the tracker's, unless it is below the floor a seek left.
    pub fn committable(&self) -> Option<Offset> {
        let committable = self.tracker.committable()?;
        self.commit_floor
            .is_none_or(|floor| committable >= floor)
            .then_some(committable)
    }
}

/// What the poll thread, the stream, the acknowledgers and the committer share about one
/// assigned partition.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    pub partition: TopicPartition,
    /// The topic name shared by every record of this partition.
    pub topic: Arc<str>,
    state: Mutex<PartitionState>,
    drained: Condvar,
    /// Records buffered for the application plus records delivered and not yet acknowledged.
    pub held: AtomicUsize,
    /// Highest `held` seen.
    pub peak_held: AtomicUsize,
    /// Records the poll thread put in the buffer (written by the poll thread only).
    pub dispatched: AtomicU64,
    /// Records dropped from the buffer without reaching the application (revoke, shutdown).
    pub discarded: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    /// Set by the poll thread when it found the window full; the acknowledgement that makes
    /// room clears it and wakes the thread, so a full window refills at once.
    pub room_wanted: AtomicBool,
    /// The member's poll thread's doorbell.
    doorbell: Arc<Doorbell>,
    pub instruments: PartitionInstruments,
    /// Whether the partition has work and makes no progress.
    pub stall: StallWatch,
    /// Paused on its own (see [`PauseSwitch`](super::PauseSwitch)).
    pub paused: AtomicBool,
    /// Paused with the whole engine.
    pub engine_paused: Arc<AtomicBool>,
    /// The stream waiting for a resume (or a revoke) while paused.
    resumed: AtomicWaker,
    /// A seek waiting for the poll thread.
    pub pending_seek: Mutex<Option<PendingSeek>>,
    /// A seek was done and the empty batch that marks it in the buffer is still to be sent:
    /// nothing more is taken for the partition until it is.
    pub seek_barrier_pending: AtomicBool,
}

impl PartitionShared {
    pub fn new(
        partition: TopicPartition,
        doorbell: Arc<Doorbell>,
        instruments: PartitionInstruments,
        engine_paused: Arc<AtomicBool>,
    ) -> Self {
        Self {
            topic: Arc::from(partition.topic.as_str()),
            partition,
            state: Mutex::new(PartitionState {
                open: true,
                ..PartitionState::default()
            }),
            drained: Condvar::new(),
            held: AtomicUsize::new(0),
            peak_held: AtomicUsize::new(0),
            dispatched: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            room_wanted: AtomicBool::new(false),
            doorbell,
            stall: StallWatch::new(instruments.stalled.clone()),
            instruments,
            paused: AtomicBool::new(false),
            engine_paused,
            resumed: AtomicWaker::new(),
            pending_seek: Mutex::new(None),
            seek_barrier_pending: AtomicBool::new(false),
        }
    }

    /// Whether delivery is paused, on its own or with the engine.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire) || self.engine_paused.load(Ordering::Acquire)
    }

    /// Wakes the stream and the poll thread after a resume (each looks again).
    pub fn wake(&self) {
        self.resumed.wake();
        self.room_wanted.store(false, Ordering::Release);
        self.doorbell.ring();
    }

    /// Whether the partition was last seen stalled (see [`StallWatch`]).
    pub fn is_stalled(&self) -> bool {
        self.stall.is_stalled()
    }

    /// Locks the state. A poisoned lock only means another thread panicked mid-update of plain
    /// counters; the tracker stays consistent, so the state is used as it is.
    pub fn state(&self) -> MutexGuard<'_, PartitionState> {
        lock(&self.state)
    }

    /// Stops delivery: records still buffered are discarded when the stream sees them.
    pub fn close(&self) {
        self.state().open = false;
        // A paused stream must see the end too.
        self.resumed.wake();
    }

    /// Waits until every delivered record is acknowledged or `deadline` passes; returns
    /// whether the partition drained.
    pub fn wait_drained(&self, deadline: Instant) -> bool {
        let mut state = self.state();
        while !state.tracker.is_drained() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .drained
                .wait_timeout(state, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        true
    }

    /// Records the application has room for: the demand window less what is held, and none
    /// while paused (records stay in librdkafka's queue, which stops fetching when full).
    pub fn room(&self, window: usize) -> usize {
        if self.is_paused() {
            return 0;
        }
        window.saturating_sub(self.held.load(Ordering::Acquire))
    }

    /// Counts `count` records taken out of the poll loop for this partition.
    pub fn note_dispatched(&self, count: usize) {
        self.dispatched.fetch_add(count as u64, Ordering::Relaxed);
        let held = self.held.fetch_add(count, Ordering::AcqRel) + count;
        self.peak_held.fetch_max(held, Ordering::Relaxed);
    }

    /// Counts `count` buffered records dropped without reaching the application.
    pub fn note_discarded(&self, count: usize) {
        self.discarded.fetch_add(count as u64, Ordering::Relaxed);
        self.held.fetch_sub(count, Ordering::AcqRel);
    }

    /// Records waiting in the buffer for the application.
    pub fn buffered(&self) -> usize {
        let taken = self.delivered.load(Ordering::Relaxed) + self.discarded.load(Ordering::Relaxed);
        self.dispatched
            .load(Ordering::Relaxed)
            .saturating_sub(taken) as usize
    }
}

/// The records of one assigned partition, in offset order, for as long as this member owns it.
///
/// The stream ends when the partition is revoked or the engine shuts down. Every record taken
/// from it must be acknowledged through [`PartitionStream::acknowledger`] (or a clone of it);
/// until then it counts against the partition's demand window and holds back commits.
///
/// # Backpressure
///
/// The engine fetches for this partition only while the records buffered here plus the
/// records taken and not yet acknowledged stay below the partition buffer option. A stream
/// that is not read, or records that are never acknowledged, pause the partition.
#[derive(Debug)]
pub struct PartitionStream {
    shared: Arc<PartitionShared>,
    /// Batches from the poll thread (one wake-up per batch, not per record).
    batches: mpsc::Receiver<Vec<Record>>,
    /// The batch being handed out.
    current: std::vec::IntoIter<Record>,
    /// Batches received while [`next_batch_due`](Self::next_batch_due) waited, after `current`.
    queued: VecDeque<Vec<Record>>,
    acknowledger: Acknowledger,
}

impl PartitionStream {
    pub(crate) fn new(
        shared: Arc<PartitionShared>,
        batches: mpsc::Receiver<Vec<Record>>,
        committer: Committer,
        strategy: CommitStrategy,
    ) -> Self {
        let acknowledger = Acknowledger {
            shared: shared.clone(),
            committer,
            strategy,
        };
        Self {
            shared,
            batches,
            current: Vec::new().into_iter(),
            queued: VecDeque::new(),
            acknowledger,
        }
    }

    /// The partition this stream reads.
    pub fn partition(&self) -> &TopicPartition {
        &self.shared.partition
    }

    /// A handle that acknowledges records of this partition; clone it freely.
    pub fn acknowledger(&self) -> Acknowledger {
        self.acknowledger.clone()
    }
}

impl PartitionStream {
    /// Takes the records waiting for this partition, at most `max` and at least one, waiting
    /// for the first; `None` once the stream ended. Cheaper than taking records one at a time
    /// (one lock for the whole batch); acknowledge them with [`Acknowledger::ack_many`].
    pub async fn next_batch(&mut self, max: usize) -> Option<Vec<Record>> {
        std::future::poll_fn(|cx| self.poll_next_batch(cx, max.max(1))).await
    }

    fn poll_next_batch(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Vec<Record>>> {
        if self.poll_unpaused(cx).is_pending() {
            return Poll::Pending;
        }
        loop {
            if self.current.len() == 0 {
                match self.poll_refill(cx) {
                    Poll::Ready(true) => continue,
                    Poll::Ready(false) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let records: Vec<Record> = if self.current.len() <= max {
                // Reuses the batch's allocation.
                std::mem::replace(&mut self.current, Vec::new().into_iter()).collect()
            } else {
                self.current.by_ref().take(max).collect()
            };
            if let Some(delivered) = self.deliver(records) {
                return Poll::Ready(Some(delivered));
            }
        }
    }

    /// Ready unless the partition is paused; a paused stream wakes on resume, or on a revoke
    /// (so that it ends).
    fn poll_unpaused(&self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        if !shared.is_paused() {
            return Poll::Ready(());
        }
        shared.resumed.register(cx.waker());
        if !shared.is_paused() || !shared.state().open {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// A switch that pauses and resumes this partition (see [`PauseSwitch`]).
    ///
    /// [`PauseSwitch`]: super::PauseSwitch
    pub fn pause_switch(&self) -> super::PauseSwitch {
        super::PauseSwitch::partition(self.shared.clone())
    }

    /// Moves the partition's position as `seek` says and returns the offset it moved to.
    /// Records buffered here are dropped, the next records come from the new position, and
    /// the offset tracker restarts there: records delivered before the seek and not yet
    /// acknowledged no longer hold commits back, and acknowledging them is refused (unless
    /// they are delivered again). Commits never go below what was acknowledged before the
    /// seek unless it [rewinds commits](Seek::rewind_commits).
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use sluicegate::{ConsumerEngine, ConsumerOptions, Seek};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut engine = ConsumerEngine::start(ConsumerOptions::new("127.0.0.1:9092", "audit", ["orders"])).await?;
    /// let mut partition = engine.next_partition().await.ok_or("stopped")?;
    /// partition.seek(Seek::offset(0)).await?; // read the partition again from its start
    /// let first = partition.next().await;
    /// # let _ = first; Ok(()) }
    /// ```
    pub async fn seek(&mut self, seek: Seek) -> Result<Offset, SeekError> {
        let shared = self.shared.clone();
        let revoked = || SeekError::Revoked(shared.partition.clone());
        if !shared.state().open {
            return Err(revoked());
        }
        let (reply, done) = oneshot::channel();
        *lock(&shared.pending_seek) = Some(PendingSeek::new(seek, reply));
        shared.doorbell.ring();
        let offset = done.await.map_err(|_| revoked())??;
        // Everything buffered before the seek's mark came from the old position.
        loop {
            match self.batches.recv().await {
                Some(batch) if batch.is_empty() => break,
                Some(batch) => shared.note_discarded(batch.len()),
                None => return Err(revoked()),
            }
        }
        let queued: usize = self.queued.drain(..).map(|batch| batch.len()).sum();
        shared.note_discarded(self.current.len() + queued);
        self.current = Vec::new().into_iter();
        let in_flight = {
            let mut state = shared.state();
            let in_flight = state.tracker.in_flight();
            if seek.rewind_commits {
                state.commit_floor = None;
                state.committed = None;
            } else {
                let acknowledged = state.committable();
                state.commit_floor = acknowledged.max(state.committed).max(state.commit_floor);
            }
            state.tracker = OffsetTracker::new();
            in_flight
        };
        // The records delivered before the seek leave the window (their acknowledgements
        // are refused now); a drain waiting on them is over.
        shared.held.fetch_sub(in_flight, Ordering::AcqRel);
        shared.drained.notify_all();
        shared.wake();
        Ok(offset)
    }

    /// Makes `current` the next batch: one queued by [`next_batch_due`](Self::next_batch_due),
    /// or one from the poll thread. `Ready(false)` once the stream ended.
    fn poll_refill(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(batch) = self.queued.pop_front() {
            self.current = batch.into_iter();
            return Poll::Ready(true);
        }
        match self.batches.poll_recv(cx) {
            // An empty batch only marks a seek; `seek` reads past it.
            Poll::Ready(Some(batch)) => {
                self.current = batch.into_iter();
                Poll::Ready(true)
            }
            Poll::Ready(None) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hands records taken from the buffer to the application: marks them delivered, or
    /// discards them and everything buffered when delivery was stopped (revoke, shutdown).
    /// `None` when nothing is left to hand out.
    fn deliver(&mut self, records: Vec<Record>) -> Option<Vec<Record>> {
        let shared = &self.shared;
        let mut state = shared.state();
        if !state.open {
            drop(state);
            let queued: usize = self.queued.drain(..).map(|batch| batch.len()).sum();
            shared.note_discarded(records.len() + self.current.len() + queued);
            self.current = Vec::new().into_iter();
            return None;
        }
        let count = records.len();
        let mut delivered = Vec::with_capacity(count);
        for record in records {
            match state.tracker.deliver(record.offset) {
                Ok(()) => delivered.push(record),
                // librdkafka delivers in offset order; a violation is a bug, not input.
                Err(error) => {
                    tracing::error!(partition = %shared.partition, %error, "record skipped")
                }
            }
        }
        drop(state);
        shared.note_discarded(count - delivered.len());
        shared
            .delivered
            .fetch_add(delivered.len() as u64, Ordering::Relaxed);
        (!delivered.is_empty()).then_some(delivered)
    }

    /// Like [`next_batch`](Self::next_batch), but hands a record out only once it is due:
    /// `due_at(record)` says when (`None`: at once). Returns the due records at the head of
    /// the buffer, at most `max` and at least one. While the head is not due it waits
    /// without taking anything: the records stay buffered, so they hold the demand window
    /// full (fetching pauses) and a revoke releases the partition at once. Records must
    /// come due in offset order, as in a topic where every record waits the same delay.
    /// `None` once the stream ended. Cancel safe.
    pub async fn next_batch_due(
        &mut self,
        max: usize,
        due_at: impl Fn(&Record) -> Option<SystemTime>,
    ) -> Option<Vec<Record>> {
        let max = max.max(1);
        loop {
            if !std::future::poll_fn(|cx| self.poll_head(cx)).await {
                return None;
            }
            let head_wait = self
                .current
                .as_slice()
                .first()
                .and_then(&due_at)
                .and_then(|due| due.duration_since(SystemTime::now()).ok())
                .filter(|wait| !wait.is_zero());
            if let Some(wait) = head_wait {
                // Wake early when more records arrive or the stream ends (revoke).
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = std::future::poll_fn(|cx| self.poll_queue_more(cx)) => {}
                }
                continue;
            }
            let now = SystemTime::now();
            let is_due = |record: &Record| due_at(record).is_none_or(|due| due <= now);
            let mut records = Vec::new();
            while records.len() < max {
                if self.current.len() == 0 {
                    match self.queued.front() {
                        Some(batch) if batch.first().is_some_and(is_due) => {
                            self.current = self.queued.pop_front().unwrap_or_default().into_iter();
                        }
                        _ => break,
                    }
                }
                match self.current.as_slice().first() {
                    Some(record) if is_due(record) => records.extend(self.current.next()),
                    _ => break,
                }
            }
            if let Some(delivered) = self.deliver(records) {
                return Some(delivered);
            }
        }
    }

    /// Waits until a record is at the head of `current`; `Ready(false)` once the stream
    /// ended. Discards what is buffered when delivery was stopped.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.poll_unpaused(cx).is_pending() {
            return Poll::Pending;
        }
        loop {
            if self.current.len() == 0 {
                match self.poll_refill(cx) {
                    Poll::Ready(true) => continue,
                    Poll::Ready(false) => return Poll::Ready(false),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.shared.state().open {
                return Poll::Ready(true);
            }
            // Delivery stopped: drop the buffer and read on until the stream ends.
            let _ = self.deliver(Vec::new());
        }
    }

    /// Queues the next batch from the poll thread behind `current`; ready when one came or
    /// the stream ended.
    fn poll_queue_more(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.batches.poll_recv(cx) {
            Poll::Ready(Some(batch)) => {
                self.queued.push_back(batch);
                Poll::Ready(())
            }
            Poll::Ready(None) => {
                // Ended: nothing to queue; the caller's next look at the head finds out.
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Stream for PartitionStream {
    type Item = Record;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Record>> {
        let this = &mut *self;
        if this.poll_unpaused(cx).is_pending() {
            return Poll::Pending;
        }
        loop {
            let Some(record) = this.current.next() else {
                match this.poll_refill(cx) {
                    Poll::Ready(true) => continue,
                    Poll::Ready(false) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            };
            let shared = &this.shared;
            let mut state = shared.state();
            if !state.open {
                drop(state);
                let queued: usize = this.queued.drain(..).map(|batch| batch.len()).sum();
                shared.note_discarded(1 + this.current.len() + queued);
                this.current = Vec::new().into_iter();
                continue;
            }
            if let Err(error) = state.tracker.deliver(record.offset) {
                // librdkafka delivers in offset order; a violation means a bug, not bad input.
                tracing::error!(partition = %shared.partition, %error, "record skipped");
                drop(state);
                shared.note_discarded(1);
                continue;
            }
            drop(state);
            shared.delivered.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Some(record));
        }
    }
}

/// Acknowledges records of one partition. Cheap to clone; send clones to worker tasks.
///
/// # Delivery semantics
///
/// Acknowledge a record once it is fully handled, successfully or by handing it to a failure
/// path. Acknowledgements may come in any order: the committed offset only advances over a
/// contiguous run of acknowledged records, so a crash re-delivers everything not yet finished.
#[derive(Debug, Clone)]
pub struct Acknowledger {
    shared: Arc<PartitionShared>,
    committer: Committer,
    strategy: CommitStrategy,
}

impl Acknowledger {
    /// A switch that pauses and resumes this acknowledger's partition (see
    /// [`PauseSwitch`](super::PauseSwitch)).
    pub fn pause_switch(&self) -> super::PauseSwitch {
        super::PauseSwitch::partition(self.shared.clone())
    }

    /// The partition this acknowledger belongs to.
    pub fn partition(&self) -> &TopicPartition {
        &self.shared.partition
    }

    /// Marks `offset` as finished.
    ///
    /// With the [`Sync`](CommitStrategy::Sync) strategy, an acknowledgement that advances the
    /// committable offset returns only after that offset is committed, so a subscriber that
    /// awaits it before taking the next record never runs ahead of its commits. With the other
    /// strategies it returns at once.
    pub async fn ack(&self, offset: Offset) -> Result<(), AckError> {
        self.ack_many([offset]).await
    }

    /// Marks several offsets as finished under one lock: the cheap way to acknowledge a batch
    /// from [`PartitionStream::next_batch`]. Stops at the first offset refused and returns
    /// its error; the offsets before it stay acknowledged. Commits as [`ack`](Self::ack) does.
    pub async fn ack_many(
        &self,
        offsets: impl IntoIterator<Item = Offset>,
    ) -> Result<(), AckError> {
        let mut acked = 0;
        let (committable, refused) = {
            let mut state = self.shared.state();
            if state.released {
                return Err(AckError::Revoked(self.shared.partition.clone()));
            }
            let mut advanced = false;
            let mut refused = None;
            for offset in offsets {
                match state.tracker.ack(offset) {
                    Ok(moved) => {
                        advanced |= moved;
                        acked += 1;
                    }
                    Err(source) => {
                        refused = Some(AckError::Offset {
                            partition: self.shared.partition.clone(),
                            source,
                        });
                        break;
                    }
                }
            }
            if !state.open && state.tracker.is_drained() {
                // A revoke or shutdown is waiting for the drain.
                self.shared.drained.notify_all();
            }
            (advanced.then(|| state.committable()).flatten(), refused)
        };
        self.shared.held.fetch_sub(acked, Ordering::AcqRel);
        self.shared.acked.fetch_add(acked as u64, Ordering::Relaxed);
        if acked > 0
            && self.shared.room_wanted.load(Ordering::Relaxed)
            && self.shared.room_wanted.swap(false, Ordering::AcqRel)
        {
            self.shared.doorbell.ring();
        }
        if let (CommitStrategy::Sync, Some(offset)) = (self.strategy, committable) {
            self.request_commit(offset, CommitMode::Sync).await?;
        }
        refused.map_or(Ok(()), Err)
    }

    /// Commits up to `offset` (the next offset to read, as in Kafka), capped at the committable
    /// offset so nothing unacknowledged is ever committed. Returns the offset committed, or
    /// `None` when nothing new was committable. Meant for the
    /// [`Manual`](CommitStrategy::Manual) strategy; harmless with the others.
    ///
    /// With [`CommitMode::Async`] it returns once the commit is sent; its outcome is logged
    /// and counted.
    pub async fn commit(
        &self,
        offset: Offset,
        mode: CommitMode,
    ) -> Result<Option<Offset>, AckError> {
        let target = {
            let state = self.shared.state();
            if state.released {
                return Err(AckError::Revoked(self.shared.partition.clone()));
            }
            match state.committable() {
                Some(committable) => offset.min(committable),
                None => return Ok(None),
            }
        };
        if self.shared.state().committed >= Some(target) {
            return Ok(None);
        }
        self.request_commit(target, mode).await?;
        Ok(Some(target))
    }

    /// The highest offset the broker confirmed as committed during this assignment.
    pub fn committed(&self) -> Option<Offset> {
        self.shared.state().committed
    }

    async fn request_commit(&self, offset: Offset, mode: CommitMode) -> Result<(), CommitError> {
        let (reply, outcome) = oneshot::channel();
        self.committer.send(CommitRequest {
            partition: self.shared.clone(),
            offset,
            mode,
            reply,
        })?;
        outcome.await.map_err(|_| CommitError::Stopped)?
    }
}
