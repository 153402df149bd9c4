//! Asking the cluster where a group stands: committed offsets, end offsets and owners.
//!
//! A consumer configured with the group's id reads its committed offsets (an OffsetFetch; it
//! never subscribes, so it never joins the group and triggers no rebalance), the watermarks of
//! each partition, and the group's description (ListGroups and DescribeGroups) for the members
//! and their assignments. Blocking calls: use them off the async runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};

use super::assignment;
use crate::console::{ClusterArgs, QuietContext};

/// How long offset and group requests may take once the brokers answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one partition of the group stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next record it will read), if it committed one.
    pub committed: Option<i64>,
    /// The oldest offset the partition keeps (low watermark).
    pub low: i64,
    /// The offset the next record written gets (high watermark).
    pub end: i64,
    /// The member the partition is assigned to, if any.
    pub owner: Option<Owner>,
}

impl PartitionStatus {
    /// Records not yet committed: end − committed, or end − low when nothing is committed.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low)).max(0)
    }
}

/// A group member, as the group description names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
}

/// What the group description said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The group's state (`Stable`, `PreparingRebalance`, `Empty`...) and its member count;
    /// `None` when the brokers do not list the group (no members).
    Described(Option<(String, usize)>),
    /// The brokers could not describe the group: owners are unknown.
    Unknown(String),
}

/// Where the group stands on every partition looked at, sorted by topic and partition.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub group: String,
    pub membership: Membership,
    pub partitions: Vec<PartitionStatus>,
}

/// A client that looks at one group (and, optionally, one topic).
pub struct Lookup {
    cluster: ClusterArgs,
    group: String,
    topic: Option<String>,
    client: BaseConsumer<QuietContext>,
}

impl Lookup {
    /// A client for `group`; a refused configuration (`-X`) is a usage error.
    pub fn new(cluster: ClusterArgs, group: String, topic: Option<String>) -> anyhow::Result<Self> {
        let mut config = cluster.client_config();
        config
            .set("group.id", &group)
            .set("client.id", "sluice-status")
            .set("enable.auto.commit", "false");
        let client = cluster.create(&config)?;
        Ok(Self {
            cluster,
            group,
            topic,
            client,
        })
    }

    /// Looks once. Errors: the brokers do not answer, the topic does not exist, or the group
    /// has neither committed offsets nor members.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let metadata = self
            .client
            .fetch_metadata(None, self.cluster.connect_timeout)
            .map_err(|error| self.cluster.unreachable(self.client.context(), &error))?;
        let partitions = partitions_by_topic(&metadata);
        if let Some(topic) = &self.topic {
            if !partitions.contains_key(topic) {
                bail!("topic `{topic}` does not exist on {}", self.cluster.brokers);
            }
        }
        let committed = self.committed(&partitions)?;
        let (membership, owners) = self.members();
        if committed.is_empty() {
            match &membership {
                Membership::Described(Some((_, count))) if *count > 0 => {}
                // Its members are unknown: with --topic, show that topic all the same.
                Membership::Unknown(_) if self.topic.is_some() => {}
                Membership::Unknown(_) => bail!(
                    "group `{}` has no committed offsets on {} (and its members are unknown: the \
                     brokers could not describe it); pass --topic to look at one topic",
                    self.group,
                    self.cluster.brokers
                ),
                Membership::Described(_) => bail!(
                    "group `{}` has no committed offsets and no members on {}",
                    self.group,
                    self.cluster.brokers
                ),
            }
        }
        let topics: BTreeSet<&String> = match &self.topic {
            Some(topic) => BTreeSet::from([topic]),
            None => committed
                .keys()
                .chain(owners.keys())
                .map(|(topic, _)| topic)
                .filter(|topic| partitions.contains_key(*topic))
                .collect(),
        };
        let mut statuses = Vec::new();
        for topic in topics {
            for &partition in &partitions[topic] {
                let (low, end) = self
                    .client
                    .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                    .with_context(|| {
                        format!("could not read the offsets of {topic}/{partition}")
                    })?;
                let key = (topic.clone(), partition);
                statuses.push(PartitionStatus {
                    topic: topic.clone(),
                    partition,
                    committed: committed.get(&key).copied(),
                    low,
                    end,
                    owner: owners.get(&key).cloned(),
                });
            }
        }
        Ok(Snapshot {
            group: self.group.clone(),
            membership,
            partitions: statuses,
        })
    }

    /// The group's committed offsets on every partition of `partitions`.
    fn committed(
        &self,
        partitions: &BTreeMap<String, Vec<i32>>,
    ) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        let mut wanted = TopicPartitionList::new();
        for (topic, ids) in partitions {
            for &partition in ids {
                wanted.add_partition(topic, partition);
            }
        }
        if wanted.count() == 0 {
            return Ok(BTreeMap::new());
        }
        let committed = self
            .client
            .committed_offsets(wanted, REQUEST_TIMEOUT)
            .with_context(|| {
                format!(
                    "could not read the offsets group `{}` committed on {}",
                    self.group, self.cluster.brokers
                )
            })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => {
                    Some(((element.topic().to_owned(), element.partition()), offset))
                }
                _ => None,
            })
            .collect())
    }

    /// The group's description and who owns which partition; a failure is not an error, only
    /// owners unknown.
    fn members(&self) -> (Membership, BTreeMap<(String, i32), Owner>) {
        let mut owners = BTreeMap::new();
        let list = match self
            .client
            .fetch_group_list(Some(&self.group), REQUEST_TIMEOUT)
        {
            Ok(list) => list,
            Err(error) => return (Membership::Unknown(error.to_string()), owners),
        };
        let Some(group) = list
            .groups()
            .iter()
            .find(|group| group.name() == self.group)
        else {
            return (Membership::Described(None), owners);
        };
        let members = group.members();
        // Other protocol types (Kafka Connect, for one) encode assignments their own way.
        if group.protocol_type() == "consumer" {
            for member in members {
                tracing::debug!(member = member.id(), client = member.client_id(), assignment = ?member.assignment(), "group member");
                let parsed = match assignment::parse(member.assignment().unwrap_or_default()) {
                    Ok(parsed) => parsed,
                    Err(problem) => {
                        tracing::warn!(member = member.id(), %problem, "unreadable assignment");
                        continue;
                    }
                };
                let owner = Owner {
                    member_id: member.id().to_owned(),
                    client_id: member.client_id().to_owned(),
                    host: member.client_host().trim_start_matches('/').to_owned(),
                };
                for (topic, partitions) in parsed {
                    for partition in partitions {
                        owners.insert((topic.clone(), partition), owner.clone());
                    }
                }
            }
        }
        let state = group.state().to_owned();
        (Membership::Described(Some((state, members.len()))), owners)
    }
}

/// The partitions of every topic in the metadata that has any (internal `__` topics left
/// out), sorted.
fn partitions_by_topic(metadata: &Metadata) -> BTreeMap<String, Vec<i32>> {
    metadata
        .topics()
        .iter()
        .filter(|topic| !topic.name().starts_with("__"))
        .filter(|topic| {
            topic
                .error()
                .map(RDKafkaErrorCode::from)
                .is_none_or(|code| code != RDKafkaErrorCode::UnknownTopicOrPartition)
        })
        .filter(|topic| !topic.partitions().is_empty())
        .map(|topic| {
            let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            (topic.name().to_owned(), ids)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(committed: Option<i64>, low: i64, end: i64) -> PartitionStatus {
        PartitionStatus {
            topic: "t".to_owned(),
            partition: 0,
            committed,
            low,
            end,
            owner: None,
        }
    }

    #[test]
    fn lag_counts_from_the_commit_or_the_oldest_record() {
        assert_eq!(status(Some(7), 0, 10).lag(), 3);
        assert_eq!(status(Some(10), 0, 10).lag(), 0);
        assert_eq!(status(None, 4, 10).lag(), 6);
        assert_eq!(status(Some(12), 0, 10).lag(), 0);
    }
}
