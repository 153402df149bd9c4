//! Looking at a topic on a broker: its partitions and offsets, a group's committed offsets,
//! through the library's [`Admin`]. Blocking calls: use them off the async runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use sluicegate::admin::Admin;
use sluicegate::{ClusterOptions, TopicPartition};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The offsets of one partition: the oldest kept (`low`) and the next to be written (`high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

impl PartitionOffsets {
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
