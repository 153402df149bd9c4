//! Start positions librdkafka's `auto.offset.reset` cannot express: a time, an offset, or a
//! topic whose position differs from the rest.
//!
//! When partitions are assigned, before librdkafka starts them, the engine asks which of them
//! the group never committed and commits, for each, the offset its start position names (the
//! watermarks, an offset looked up by time, or a given offset clamped to what the partition
//! keeps). librdkafka then starts them there as from any committed offset, so no record
//! before the position is fetched, and a member that takes the partition over later resumes
//! there too. The lookups block the poll thread inside the rebalance, as a Java consumer's
//! `seek` in `onPartitionsAssigned` does; if they fail, the partition starts where
//! `auto.offset.reset` says, and a warning says so.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use crate::client_error::Chain;
use crate::options::{ConsumerOptions, StartPosition};

/// How long each lookup (committed offsets, offsets of a time, watermarks, the commit) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Commits the start position of every partition of `assigned` that the group never
/// committed and whose position `auto.offset.reset` does not give.
pub(crate) fn place_new_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    options: &ConsumerOptions,
    assigned: &TopicPartitionList,
) {
    let mut candidates = TopicPartitionList::new();
    for element in assigned.elements() {
        let position = options.start_position_of(element.topic());
        if position.is_exact() || position != options.start_position {
            candidates.add_partition(element.topic(), element.partition());
        }
    }
    if candidates.count() == 0 {
        return;
    }
    let committed = match consumer.committed_offsets(candidates, LOOKUP_TIMEOUT) {
        Ok(committed) => committed,
        Err(error) => {
            tracing::warn!(group = %options.group_id, error = %Chain(&error), "could not read committed offsets; new partitions start where auto.offset.reset says");
            return;
        }
    };
    let mut placed = TopicPartitionList::new();
    let mut by_time: BTreeMap<(String, i64), Vec<i32>> = BTreeMap::new();
    for element in committed.elements() {
        if element.offset() != KafkaOffset::Invalid {
            continue; // committed: it resumes there
        }
        let (topic, partition) = (element.topic(), element.partition());
        let position = options.start_position_of(topic);
        if let StartPosition::Timestamp(at) = position {
            by_time
                .entry((topic.to_owned(), at))
                .or_default()
                .push(partition);
            continue;
        }
        let Some((low, high)) = watermarks(consumer, topic, partition) else {
            continue;
        };
        let offset = match position {
            StartPosition::Latest => high,
            StartPosition::Offset(offset) => offset.clamp(low, high),
            _ => low,
        };
        let _ = placed.add_partition_offset(topic, partition, KafkaOffset::Offset(offset));
    }
    for ((topic, at), partitions) in by_time {
        let mut query = TopicPartitionList::new();
        for &partition in &partitions {
            let _ = query.add_partition_offset(&topic, partition, KafkaOffset::Offset(at));
        }
        let found = match consumer.offsets_for_times(query, LOOKUP_TIMEOUT) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%topic, time_ms = at, error = %Chain(&error), "could not look up offsets by time; these partitions start where auto.offset.reset says");
                continue;
            }
        };
        for element in found.elements() {
            let offset = match element.offset() {
                KafkaOffset::Offset(offset) if offset >= 0 => offset,
                // No record that late: the end.
                _ => match watermarks(consumer, &topic, element.partition()) {
                    Some((_, high)) => high,
                    None => continue,
                },
            };
            let _ = placed.add_partition_offset(
                &topic,
                element.partition(),
                KafkaOffset::Offset(offset),
            );
        }
    }
    if placed.count() == 0 {
        return;
    }
    match consumer.commit(&placed, CommitMode::Sync) {
        Ok(()) => {
            let positions: Vec<String> = placed
                .elements()
                .iter()
                .map(|element| {
                    let offset = element.offset().to_raw().unwrap_or(-1);
                    format!("{}/{}@{offset}", element.topic(), element.partition())
                })
                .collect();
            tracing::info!(group = %options.group_id, ?positions, "new partitions placed at their start positions");
        }
        Err(error) => {
            tracing::warn!(group = %options.group_id, error = %Chain(&error), "could not commit start positions; new partitions start where auto.offset.reset says");
        }
    }
}

/// The low and high watermarks of a partition, or `None` (with a warning) if the brokers do
/// not say.
fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    match consumer.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT) {
        Ok(watermarks) => Some(watermarks),
        Err(error) => {
            tracing::warn!(%topic, partition, error = %Chain(&error), "could not read watermarks; the partition starts where auto.offset.reset says");
            None
        }
    }
}
