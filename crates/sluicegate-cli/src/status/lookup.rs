//! Asking the cluster where a group stands: committed offsets, end offsets and owners.
//!
//! The library's [`Admin`] reads the group's committed offsets (an OffsetFetch that never
//! joins the group, so it triggers no rebalance), the watermarks of each partition, and the
//! group's description (ListGroups and DescribeGroups) for the members and their assignments.
//! Blocking calls: use them off the async runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use sluicegate::admin::{Admin, AdminError, Commit, MemberAssignment};
use sluicegate::TopicPartition;

use crate::console::ClusterArgs;

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
    /// When the committed offset was committed, if a Sluicegate engine committed it.
    pub committed_at_ms: Option<i64>,
    /// Lag, and no progress committed for the stall time: see [`PartitionStatus::is_stalled`].
    pub stalled: bool,
}

impl PartitionStatus {
    /// Records not yet committed: end − committed, or end − low when nothing is committed.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low)).max(0)
    }

    /// Whether the partition has lag and its last commit, stamped by a Sluicegate engine (which
    /// commits a partition only when it made progress), is at least `stall_after` old at
    /// `now_ms`. Without a stamp it cannot tell, and says no.
    pub fn is_stalled(&self, now_ms: i64, stall_after: Duration) -> bool {
        self.lag() > 0
            && self
                .committed_at_ms
                .is_some_and(|at| now_ms.saturating_sub(at) >= stall_after.as_millis() as i64)
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
    stall_after: Duration,
    admin: Admin,
}

impl Lookup {
    /// A client for `group`; a refused configuration (`-X`) is a usage error.
    pub fn new(
        cluster: ClusterArgs,
        group: String,
        topic: Option<String>,
        stall_after: Duration,
    ) -> anyhow::Result<Self> {
        let options = cluster
            .options()
            .client_id("sluice-status")
            .request_timeout(REQUEST_TIMEOUT);
        let admin = cluster.admin(options)?;
        Ok(Self {
            cluster,
            group,
            topic,
            stall_after,
            admin,
        })
    }

    /// Looks once. Errors: the brokers do not answer, the topic does not exist, or the group
    /// has neither committed offsets nor members.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let topics = self
            .admin
            .topics()
            .map_err(|error| self.cluster.error(error))?;
        // Internal `__` topics left out.
        let partitions: BTreeMap<String, Vec<i32>> = topics
            .into_iter()
            .filter(|topic| !topic.name.starts_with("__") && !topic.partitions.is_empty())
            .map(|topic| {
                let ids = topic.partition_ids();
                (topic.name, ids)
            })
            .collect();
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
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        for topic in topics {
            for &partition in &partitions[topic] {
                let ends = self.admin.watermarks(topic, partition)?;
                let key = (topic.clone(), partition);
                let commit = committed.get(&key);
                let mut status = PartitionStatus {
                    topic: topic.clone(),
                    partition,
                    committed: commit.map(|commit| commit.offset),
                    low: ends.low,
                    end: ends.high,
                    owner: owners.get(&key).cloned(),
                    committed_at_ms: commit.and_then(|commit| commit.committed_at_ms),
                    stalled: false,
                };
                status.stalled = status.is_stalled(now_ms, self.stall_after);
                statuses.push(status);
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
    ) -> anyhow::Result<BTreeMap<(String, i32), Commit>> {
        let wanted = partitions.iter().flat_map(|(topic, ids)| {
            ids.iter()
                .map(move |&partition| TopicPartition::new(topic, partition))
        });
        let committed = self.admin.commits(&self.group, wanted)?;
        Ok(committed
            .into_iter()
            .map(|(at, commit)| ((at.topic, at.partition), commit))
            .collect())
    }

    /// The group's description and who owns which partition; a failure is not an error, only
    /// owners unknown.
    fn members(&self) -> (Membership, BTreeMap<(String, i32), Owner>) {
        let mut owners = BTreeMap::new();
        let group = match self.admin.describe_group(&self.group) {
            Ok(Some(group)) => group,
            Ok(None) => return (Membership::Described(None), owners),
            Err(AdminError::DescribeGroup { source, .. }) => {
                return (Membership::Unknown(source.to_string()), owners)
            }
            Err(error) => return (Membership::Unknown(error.to_string()), owners),
        };
        for member in &group.members {
            tracing::debug!(member = member.member_id, client = member.client_id, assignment = ?member.assignment, "group member");
            // Other protocol types (Kafka Connect, for one) encode assignments their own way.
            let assigned = match &member.assignment {
                MemberAssignment::Partitions(assigned) => assigned,
                MemberAssignment::Unreadable(problem) => {
                    tracing::warn!(member = member.member_id, %problem, "unreadable assignment");
                    continue;
                }
                _ => continue,
            };
            let owner = Owner {
                member_id: member.member_id.clone(),
                client_id: member.client_id.clone(),
                host: member.host.clone(),
            };
            for at in assigned {
                owners.insert((at.topic.clone(), at.partition), owner.clone());
            }
        }
        (
            Membership::Described(Some((group.state, group.members.len()))),
            owners,
        )
    }
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
            committed_at_ms: None,
            stalled: false,
        }
    }

    #[test]
    fn lag_counts_from_the_commit_or_the_oldest_record() {
        assert_eq!(status(Some(7), 0, 10).lag(), 3);
        assert_eq!(status(Some(10), 0, 10).lag(), 0);
        assert_eq!(status(None, 4, 10).lag(), 6);
        assert_eq!(status(Some(12), 0, 10).lag(), 0);
    }

    #[test]
    fn stalled_means_lag_and_an_old_stamped_commit() {
        let minute = Duration::from_secs(60);
        let stamped = |committed: i64, at: i64| PartitionStatus {
            committed_at_ms: Some(at),
            ..status(Some(committed), 0, 10)
        };
        assert!(stamped(7, 1_000).is_stalled(61_000, minute));
        assert!(
            !stamped(7, 1_000).is_stalled(60_999, minute),
            "not old enough"
        );
        assert!(!stamped(10, 1_000).is_stalled(1_000_000, minute), "no lag");
        assert!(
            !status(Some(7), 0, 10).is_stalled(1_000_000, minute),
            "no stamp"
        );
        assert!(
            !status(None, 0, 10).is_stalled(1_000_000, minute),
            "nothing committed"
        );
    }
}
