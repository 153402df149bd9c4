//! The engine's instruments in the `metrics` facade (names in [`crate::metrics`]): handles
//! made once per group or per assigned partition, and the librdkafka statistics that feed
//! the lag, buffered and group-state figures. Commit figures are kept by the committer.

use std::sync::atomic::{AtomicBool, Ordering};

use metrics::{counter, gauge, Counter, Gauge};
use rdkafka::statistics::Statistics;

use crate::metrics as names;
use crate::record::{Offset, TopicPartition};
use crate::source::member::MemberShared;
use crate::source::stall::StallChange;
use crate::sync::lock;

/// A group's instruments, shared by its members.
#[derive(Debug)]
pub(crate) struct GroupInstruments {
    pub assigned: Gauge,
    pub assignments: Counter,
    pub revocations: Counter,
    pub rebalance_errors: Counter,
}

impl GroupInstruments {
    pub fn new(group: &str) -> Self {
        let rebalances = |kind: &'static str| counter!(names::REBALANCES, "group" => group.to_string(), "kind" => kind);
        Self {
            assigned: gauge!(names::ASSIGNED_PARTITIONS, "group" => group.to_string()),
            assignments: rebalances("assign"),
            revocations: rebalances("revoke"),
            rebalance_errors: rebalances("error"),
        }
    }
}

/// One assigned partition's instruments.
#[derive(Debug)]
pub(crate) struct PartitionInstruments {
    pub consumed: Counter,
    pub buffered: Gauge,
    pub in_flight: Gauge,
    pub lag: Gauge,
    pub committed: Gauge,
    pub stalled: Gauge,
}

impl PartitionInstruments {
    pub fn new(group: &str, partition: &TopicPartition) -> Self {
        let labels = [
            ("group", group.to_string()),
            ("topic", partition.topic.clone()),
            ("partition", partition.partition.to_string()),
        ];
        Self {
            consumed: counter!(
                names::RECORDS_CONSUMED,
                "group" => group.to_string(),
                "topic" => partition.topic.clone()
            ),
            buffered: gauge!(names::RECORDS_BUFFERED, &labels),
            in_flight: gauge!(names::RECORDS_IN_FLIGHT, &labels),
            lag: gauge!(names::CONSUMER_LAG, &labels),
            committed: gauge!(names::COMMITTED_OFFSET, &labels),
            stalled: gauge!(names::PARTITION_STALLED, &labels),
        }
    }

    /// The group committed `offset` for this partition.
    pub fn note_committed(&self, offset: Offset) {
        self.committed.set(offset as f64);
    }
}

/// Whether a member's group is joined and stable, as librdkafka last reported.
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    steady: AtomicBool,
}

impl GroupState {
    /// The group is up and no rebalance is under way.
    pub fn is_steady(&self) -> bool {
        self.steady.load(Ordering::Acquire)
    }

    /// The member is leaving the group: it is not steady any more.
    pub fn leave(&self) {
        self.steady.store(false, Ordering::Release);
    }
}

/// Feeds one round of librdkafka statistics into the member's instruments: lag per assigned
/// partition, what each holds, whether it stalled, and the group's state.
pub(crate) fn record_statistics(member: &MemberShared, statistics: &Statistics) {
    if let Some(group) = &statistics.cgrp {
        let steady = group.state == "up"
            && group.join_state == "steady"
            && !member.closing.load(Ordering::Acquire);
        member.group_state.steady.store(steady, Ordering::Release);
    }
    let registry = lock(&member.registry);
    for (partition, shared) in registry.iter() {
        let held = shared.held.load(Ordering::Relaxed);
        let buffered = shared.buffered();
        shared.instruments.buffered.set(buffered as f64);
        shared
            .instruments
            .in_flight
            .set(held.saturating_sub(buffered) as f64);
        let reported = statistics
            .topics
            .get(&partition.topic)
            .and_then(|topic| topic.partitions.get(&partition.partition));
        if let Some(reported) = reported {
            // librdkafka reports -1 while it does not know.
            if reported.consumer_lag >= 0 {
                shared.instruments.lag.set(reported.consumer_lag as f64);
            }
        }
        let timeout = member.options.stall_timeout;
        if timeout.is_zero() {
            continue;
        }
        // Below the end offset: librdkafka's fetch position (an invalid one is negative) is
        // behind the last record, or records wait in its partition queue.
        let unfetched = reported.is_some_and(|reported| {
            (reported.next_offset >= 0 && reported.hi_offset > reported.next_offset)
                || reported.fetchq_cnt > 0
        });
        let progress =
            shared.delivered.load(Ordering::Relaxed) + shared.acked.load(Ordering::Relaxed);
        let change = shared
            .stall
            // A paused partition waits on purpose: not stalled.
            .observe(
                progress,
                !shared.is_paused() && (held > 0 || unfetched),
                timeout,
            );
        match change {
            Some(StallChange::Stalled(quiet)) => tracing::warn!(
                member = %member.name,
                %partition,
                held,
                lag = ?reported.map(|reported| reported.consumer_lag),
                quiet_secs = quiet.as_secs(),
                "partition stalled: it has records to process and none was delivered or acknowledged for the stall timeout"
            ),
            Some(StallChange::Resumed) => {
                tracing::info!(member = %member.name, %partition, "stalled partition moves again")
            }
            None => {}
        }
    }
}
