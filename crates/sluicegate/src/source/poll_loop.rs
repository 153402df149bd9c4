//! The poll thread of a group member: moves records from librdkafka to the application.
//!
//! # Backpressure
//!
//! Each assigned partition has its own librdkafka queue. The poll thread takes records from a
//! partition's queue only while the partition's demand window has room (buffered records plus
//! records delivered and not yet acknowledged, at most the partition buffer option), and hands
//! them over in batches. A partition whose window is full is left alone: its records wait in
//! librdkafka, whose fetcher stops once the partition's prefetch (the prefetch bytes option)
//! is full. Nothing is paused, so nothing librdkafka fetched is thrown away and fetched again.
//!
//! The thread sleeps on a [`Doorbell`] that librdkafka rings when a queue receives records or
//! events, and that an acknowledgement rings when it makes room in a full window; while some
//! window is full the thread also wakes every few milliseconds, as a safety net.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use tokio::sync::mpsc;

use super::commit::{CommitThread, FinalCommit};
use super::seek::{self, Attempt, SeekError};
use crate::record::Record;
use crate::source::fetch_queue::copy_borrowed;
use crate::source::member::{MemberContext, MemberShared, MemberSummary, Outlet};
use crate::sync::lock;

/// How long the thread sleeps while some window is full, before looking for room again even
/// without a ring.
const WAIT_WHILE_FULL: Duration = Duration::from_millis(5);
/// How long the thread sleeps when nothing happens (the doorbell usually wakes it sooner).
const WAIT_IDLE: Duration = Duration::from_millis(100);
/// How much longer than the drain timeout a member waits for the others' final commits.
const LEAVE_GATE_SLACK: Duration = Duration::from_secs(30);
/// Most records taken from one partition queue before the next partition gets its turn.
const MAX_BATCH: usize = 64;

/// Wakes the poll thread: rung by librdkafka's threads when a queue becomes non-empty.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Doorbell {
    /// Wakes the waiting poll thread, or makes its next wait return at once.
    pub fn ring(&self) {
        *lock(&self.rung) = true;
        self.bell.notify_one();
    }

    /// Waits until rung or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut rung = lock(&self.rung);
        if !*rung {
            rung = self
                .bell
                .wait_timeout(rung, timeout)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        *rung = false;
    }
}

/// Holds every member of an engine in the group until all of them made their final commits:
/// a member that left early would start a rebalance that fails the others' commits.
#[derive(Debug)]
pub(crate) struct LeaveGate {
    committing: Mutex<usize>,
    all_committed: Condvar,
}

impl LeaveGate {
    pub fn new(members: usize) -> Self {
        Self {
            committing: Mutex::new(members),
            all_committed: Condvar::new(),
        }
    }

    /// Records that one member committed, then waits (at most `timeout`) for the others.
    fn committed_and_wait(&self, timeout: Duration) {
        let mut committing = lock(&self.committing);
        *committing = committing.saturating_sub(1);
        self.all_committed.notify_all();
        let deadline = std::time::Instant::now() + timeout;
        while *committing > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    members = *committing,
                    "leaving before every member committed"
                );
                return;
            }
            committing = self
                .all_committed
                .wait_timeout(committing, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }
}

pub(crate) struct PollLoop {
    pub consumer: Arc<BaseConsumer<MemberContext>>,
    pub member: Arc<MemberShared>,
    pub leave_gate: Arc<LeaveGate>,
}

impl PollLoop {
    pub fn run(self, stop: &AtomicBool, commit_thread: CommitThread) -> MemberSummary {
        let window = self.member.options.partition_buffer;
        while !stop.load(Ordering::Acquire) {
            self.serve_events();
            let (moved, any_full) = self.move_records(window);
            self.member
                .counters
                .fetched
                .fetch_add(moved as u64, Ordering::Relaxed);
            if moved == 0 {
                self.member
                    .doorbell
                    .wait(if any_full { WAIT_WHILE_FULL } else { WAIT_IDLE });
            }
        }
        self.shut_down(commit_thread)
    }

    /// Serves the consumer queue: rebalances (run as callbacks inside `poll`), errors, and
    /// records of partitions whose queue was not split (none are expected).
    fn serve_events(&self) {
        while let Some(result) = self.consumer.poll(Duration::ZERO) {
            match result {
                Ok(message) => self.deliver_stray(&message),
                Err(error) => match refused_option(&error) {
                    Some((option, broker_settings)) => tracing::error!(
                        member = %self.member.name,
                        %error,
                        "the broker refuses the option `{option}`: it must lie within its {broker_settings}; the member cannot join the group"
                    ),
                    None => tracing::warn!(member = %self.member.name, %error, "consumer error"),
                },
            }
        }
    }

    /// Moves records from each partition queue whose window has room; returns how many moved
    /// and whether some window is full.
    fn move_records(&self, window: usize) -> (usize, bool) {
        let mut moved = 0;
        let mut any_full = false;
        let mut outlets = lock(&self.member.outlets);
        for outlet in outlets.iter_mut() {
            if !self.serve_seek(outlet) {
                continue;
            }
            if outlet.shared.is_paused() {
                // Not full, only waiting: a resume rings the doorbell.
                continue;
            }
            let mut room = outlet.shared.room(window);
            if room == 0 {
                // Ask for a wake-up first, then look again: an acknowledgement in between
                // either shows up as room or rings the doorbell.
                outlet.shared.room_wanted.store(true, Ordering::Release);
                room = outlet.shared.room(window);
            }
            self.note_full(outlet, room == 0);
            if room == 0 {
                any_full = true;
                continue;
            }
            let limit = room.min(MAX_BATCH);
            let mut batch = Vec::with_capacity(limit);
            outlet.fetch.take_into(limit, &mut batch);
            if batch.is_empty() {
                continue;
            }
            moved += batch.len();
            hand_over(outlet, batch);
            if outlet.shared.room(window) == 0 {
                any_full = true;
            }
        }
        (moved, any_full)
    }

    /// Does the seek the partition's stream asked for, then marks it in the buffer with an
    /// empty batch; whether records may be taken for the partition now (not while the mark
    /// waits for room in a full buffer: the stream empties it while it seeks).
    fn serve_seek(&self, outlet: &mut Outlet) -> bool {
        let pending = lock(&outlet.shared.pending_seek).take();
        if let Some(pending) = pending {
            match seek::attempt(&self.consumer, &outlet.shared.partition, pending.seek) {
                // Just assigned: wait (taking nothing) until librdkafka fetches it.
                Attempt::NotFetchingYet if Instant::now() < pending.deadline => {
                    *lock(&outlet.shared.pending_seek) = Some(pending);
                    return false;
                }
                Attempt::NotFetchingYet => {
                    let _ = pending
                        .reply
                        .send(Err(SeekError::NotFetching(outlet.shared.partition.clone())));
                }
                Attempt::Done(outcome) => {
                    if outcome.is_ok() {
                        outlet
                            .shared
                            .seek_barrier_pending
                            .store(true, Ordering::Release);
                    }
                    let _ = pending.reply.send(outcome);
                }
            }
        }
        if !outlet.shared.seek_barrier_pending.load(Ordering::Acquire) {
            return true;
        }
        match outlet.batches.try_send(Vec::new()) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {
                outlet
                    .shared
                    .seek_barrier_pending
                    .store(false, Ordering::Release);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => false,
        }
    }

    fn note_full(&self, outlet: &mut Outlet, full: bool) {
        if outlet.full != full {
            outlet.full = full;
            if full {
                self.member.counters.full.fetch_add(1, Ordering::Relaxed);
            } else {
                self.member.counters.full.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// A record that arrived on the consumer queue: delivered to its partition regardless of
    /// room (it cannot be put back).
    fn deliver_stray(&self, message: &BorrowedMessage<'_>) {
        let mut outlets = lock(&self.member.outlets);
        let Some(outlet) = outlets.iter_mut().find(|outlet| {
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
        let record = copy_borrowed(message, outlet.shared.topic.clone());
        self.member.counters.fetched.fetch_add(1, Ordering::Relaxed);
        hand_over(outlet, vec![record]);
    }

    /// Stops delivery, drains, commits and leaves the group.
    fn shut_down(self, commit_thread: CommitThread) -> MemberSummary {
        self.member.closing.store(true, Ordering::Release);
        self.member.group_state.leave();
        let mut summary = MemberSummary::default();
        for released in self
            .member
            .release(&self.consumer, |_| true, FinalCommit::Shutdown)
        {
            summary.undrained += released.undrained;
            if let Some(offset) = released.uncommitted {
                summary
                    .uncommitted
                    .insert(released.partition.clone(), offset);
            }
            if let Some(offset) = released.committed {
                summary.committed.insert(released.partition, offset);
            }
        }
        commit_thread.stop();
        // The others may still be draining: wait their drain timeout plus time to commit. Only
        // a member that died without committing makes this wait run out.
        self.leave_gate
            .committed_and_wait(self.member.options.drain_timeout + LEAVE_GATE_SLACK);
        // A dynamic member leaves the group now, so the others take its partitions at once. A
        // static member must not: librdkafka leaves it in the group when the client closes
        // (KIP-345), so that its partitions wait for it to come back within the session
        // timeout, whereas an unsubscribe would leave for good and rebalance the others.
        if self.member.options.group_instance_id.is_none() {
            self.consumer.unsubscribe();
        }
        summary
    }
}

/// Sends a batch to a partition's buffer, counting it against the window.
fn hand_over(outlet: &mut Outlet, batch: Vec<Record>) {
    outlet.shared.note_dispatched(batch.len());
    outlet
        .shared
        .instruments
        .consumed
        .increment(batch.len() as u64);
    // The buffer holds at most `window` batches of at least one record each and the window
    // is never exceeded, so it is never full; a closed buffer means the stream was dropped.
    if let Err(error) = outlet.batches.try_send(batch) {
        let (mpsc::error::TrySendError::Full(batch) | mpsc::error::TrySendError::Closed(batch)) =
            error;
        outlet.shared.note_discarded(batch.len());
    }
}

/// The engine option behind a group error the broker keeps answering until the option changes,
/// and the broker settings that bound it.
fn refused_option(error: &KafkaError) -> Option<(&'static str, &'static str)> {
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::InvalidSessionTimeout => Some((
            "session_timeout",
            "group.min.session.timeout.ms and group.max.session.timeout.ms",
        )),
        _ => None,
    }
}
