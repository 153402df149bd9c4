//! A topic on a broker at a glance: its partitions and offsets, a group's committed offsets,
//! creating it. Shorthands over the library's [`Admin`] with a 10 s timeout and `anyhow`
//! errors. Blocking calls: use them off the async runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use sluicegate::admin::{Admin, NewTopic};
use sluicegate::{ClusterOptions, TopicPartition};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The offsets of one partition: the oldest kept (`low`) and the next to be written (`high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionOffsets {
    /// The partition.
    pub partition: i32,
    /// The oldest offset kept.
    pub low: i64,
    /// The offset the next record gets.
    pub high: i64,
}

impl PartitionOffsets {
    /// Records kept: `high - low`.
    pub fn records(&self) -> u64 {
        u64::try_from(self.high - self.low).unwrap_or(0)
    }
}

/// Total records kept in these partitions.
pub fn total_records(offsets: &[PartitionOffsets]) -> u64 {
    offsets.iter().map(PartitionOffsets::records).sum()
}

/// A client that only reads metadata, offsets and committed offsets.
fn admin(bootstrap_servers: &str) -> anyhow::Result<Admin> {
    Admin::new(
        ClusterOptions::new(bootstrap_servers)
            .connect_timeout(TIMEOUT)
            .request_timeout(TIMEOUT),
    )
    .context("could not create a metadata client")
}

/// The partitions and offsets of `topic`, or `None` if the cluster has no such topic. Asks for
/// the metadata of all topics, which (unlike asking for one) never auto-creates it.
pub fn partition_offsets(
    bootstrap_servers: &str,
    topic: &str,
) -> anyhow::Result<Option<Vec<PartitionOffsets>>> {
    let admin = admin(bootstrap_servers)?;
    let found = admin
        .topic(topic)
        .with_context(|| format!("could not read the metadata of {bootstrap_servers}"))?;
    let Some(found) = found else {
        return Ok(None);
    };
    if found.error.is_some() || found.partitions.is_empty() {
        return Ok(None);
    }
    found
        .partition_ids()
        .into_iter()
        .map(|partition| {
            let ends = admin.watermarks(topic, partition)?;
            Ok(PartitionOffsets {
                partition,
                low: ends.low,
                high: ends.high,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

/// The offsets `group_id` committed for these partitions of `topic` (absent: none committed).
pub fn committed_offsets(
    bootstrap_servers: &str,
    group_id: &str,
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let wanted = partitions
        .into_iter()
        .map(|partition| TopicPartition::new(topic, partition));
    let committed = admin(bootstrap_servers)?.committed_offsets(group_id, wanted)?;
    Ok(committed
        .into_iter()
        .map(|(at, offset)| (at.partition, offset))
        .collect())
}

/// Creates `topic` with `partitions` partitions (the cluster's default replication factor, so
/// three replicas on the three-node `scripts/kafka start --nodes 3`) through the admin API;
/// a topic that exists already is left as it is. The embedded broker has no such API: create
/// its topics with `sluice dev-broker --topic`.
pub fn create(bootstrap_servers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    admin(bootstrap_servers)?
        .create_topics(&[NewTopic::new(topic, partitions)])
        .map_err(|error| {
            let cause = std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), ToString::to_string);
            anyhow::anyhow!(
                "could not create topic `{topic}` on {bootstrap_servers}: {cause} (the embedded broker has no \
                 CreateTopics: start it with `sluice dev-broker --topic {topic}:{partitions}`)"
            )
        })?;
    Ok(())
}
