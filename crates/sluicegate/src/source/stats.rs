//! Counters of a running engine, read as a consistent-enough snapshot.

use std::sync::atomic::Ordering;

use super::member::{EngineCounters, Member};
use crate::sync::lock;

/// A snapshot of an engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Records taken from librdkafka by the poll threads.
    pub fetched: u64,
    /// Records handed to the application through partition streams.
    pub delivered: u64,
    /// Records acknowledged by the application.
    pub acked: u64,
    /// Records waiting in partition buffers for the application to take them.
    pub buffered: usize,
    /// Records held by the engine: buffered plus delivered and not yet acknowledged.
    pub held: usize,
    /// Sum over assigned partitions of the most records each held at once: an upper bound of
    /// the most records held at any moment. In a shutdown summary, as shutdown began.
    pub peak_held: usize,
    /// The configured bound on held records for the current assignment: partition buffer ×
    /// assigned partitions. In a shutdown summary, as shutdown began.
    pub held_bound: usize,
    /// Partitions currently assigned to this engine's members.
    pub assigned_partitions: usize,
    /// Partitions whose demand window is full, so the engine takes no records from them.
    pub full_partitions: usize,
    /// Rebalance callbacks run (assignments and revocations).
    pub rebalances: u64,
    /// Commits the broker confirmed.
    pub commits: u64,
    /// Commits that failed (each failed attempt counts).
    pub commit_errors: u64,
    /// Partitions whose final commit, on revoke or shutdown, the broker refused within the
    /// drain timeout (their records after the last commit are delivered again).
    pub final_commits_refused: u64,
    /// Assigned partitions reported stalled now: work to do and no progress for the stall
    /// timeout ([`ConsumerOptions::stall_timeout`](crate::ConsumerOptions::stall_timeout)).
    pub stalled_partitions: usize,
}

pub(super) fn snapshot(
    counters: &EngineCounters,
    members: &[Member],
    partition_buffer: usize,
) -> EngineStats {
    let mut stats = EngineStats {
        fetched: counters.fetched.load(Ordering::Relaxed),
        delivered: counters.retired_delivered.load(Ordering::Relaxed),
        acked: counters.retired_acked.load(Ordering::Relaxed),
        assigned_partitions: counters.assigned.load(Ordering::Relaxed),
        full_partitions: counters.full.load(Ordering::Relaxed),
        rebalances: counters.rebalances.load(Ordering::Relaxed),
        commits: counters.commit.commits.load(Ordering::Relaxed),
        commit_errors: counters.commit.errors.load(Ordering::Relaxed),
        final_commits_refused: counters.commit.final_refused.load(Ordering::Relaxed),
        ..EngineStats::default()
    };
    for member in members {
        for shared in lock(&member.registry).values() {
            stats.delivered += shared.delivered.load(Ordering::Relaxed);
            stats.acked += shared.acked.load(Ordering::Relaxed);
            stats.buffered += shared.buffered();
            stats.held += shared.held.load(Ordering::Relaxed);
            stats.peak_held += shared.peak_held.load(Ordering::Relaxed);
            stats.stalled_partitions += usize::from(shared.is_stalled());
        }
    }
    stats.held_bound = stats.assigned_partitions * partition_buffer;
    stats
}
