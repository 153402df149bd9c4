//! Looking at a topic on a broker: its partitions and offsets, a group's committed offsets,
//! creating it. Blocking calls: use them off the async runtime.
//!
//! Plain rdkafka clients, on purpose: the lab measures the library against them, so it does
//! not go through it to prepare a run. (`sluice demo` has helpers of its own in the CLI.)

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

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
fn probe(bootstrap_servers: &str, group_id: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()
        .context("could not create a metadata client")
}

/// The partitions and offsets of `topic`, or `None` if the cluster has no such topic. Asks for
/// the metadata of all topics, which (unlike asking for one) never auto-creates it.
pub fn partition_offsets(
    bootstrap_servers: &str,
    topic: &str,
) -> anyhow::Result<Option<Vec<PartitionOffsets>>> {
    let client = probe(bootstrap_servers, "sluice-probe")?;
    let metadata = client
        .fetch_metadata(None, TIMEOUT)
        .with_context(|| format!("could not read the metadata of {bootstrap_servers}"))?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Ok(None);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(None);
    }
    let mut partitions: Vec<i32> = found
        .partitions()
        .iter()
        .map(|partition| partition.id())
        .collect();
    partitions.sort_unstable();
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) = client
                .fetch_watermarks(topic, partition, TIMEOUT)
                .with_context(|| format!("could not read the offsets of {topic}/{partition}"))?;
            Ok(PartitionOffsets {
                partition,
                low,
                high,
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
    let client = probe(bootstrap_servers, group_id)?;
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition(topic, partition);
    }
    let committed = client
        .committed_offsets(list, TIMEOUT)
        .with_context(|| format!("could not read the offsets group `{group_id}` committed"))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// Creates `topic` with `partitions` partitions (replication factor 1) through the admin API.
/// The embedded broker has no such API: create its topics with `sluice dev-broker --topic`.
pub fn create(bootstrap_servers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .context("could not create an admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start a runtime for the admin client")?;
    let results = runtime
        .block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("could not create topic `{topic}` on {bootstrap_servers}"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!(
                "could not create topic `{name}` on {bootstrap_servers}: {code} (the embedded broker has no \
                 CreateTopics: start it with `sluice dev-broker --topic {topic}:{partitions}`)"
            );
        }
    }
    Ok(())
}
