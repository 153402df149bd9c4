//! Looking at a cluster and changing its topics: topics and their partitions, watermarks,
//! offsets by time, a group's committed offsets and members, setting an inactive group's
//! offsets, creating topics.
//!
//! ```no_run
//! use sluicegate::admin::{Admin, NewTopic};
//! use sluicegate::{ClusterOptions, TopicPartition};
//!
//! # fn run() -> Result<(), sluicegate::admin::AdminError> {
//! let admin = Admin::new(ClusterOptions::new("127.0.0.1:9092"))?;
//! admin.create_topics(&[NewTopic::new("orders", 3)])?;
//! admin.wait_for_topics(["orders"], std::time::Duration::from_secs(10))?;
//! let partitions = admin.partitions("orders")?.unwrap_or_default();
//! let committed = admin.committed_offsets(
//!     "billing",
//!     partitions.iter().map(|&partition| TopicPartition::new("orders", partition)),
//! )?;
//! for &partition in &partitions {
//!     let ends = admin.watermarks("orders", partition)?;
//!     let at = TopicPartition::new("orders", partition);
//!     let lag = ends.high - committed.get(&at).copied().unwrap_or(ends.low);
//!     println!("orders/{partition}: {lag} records behind");
//! }
//! if let Some(group) = admin.describe_group("billing")? {
//!     println!("{} with {} members", group.state, group.members.len());
//! }
//! # Ok(()) }
//! ```
//!
//! # Blocking
//!
//! Every method waits for the brokers' answer, up to the
//! [connect timeout](ClusterOptions::connect_timeout) for the cluster's metadata and the
//! [request timeout](ClusterOptions::request_timeout) for anything else. Call them off the async
//! runtime (`tokio::task::spawn_blocking`), never on one of its workers.
//!
//! # Errors
//!
//! An [`AdminError`] says which request failed and keeps librdkafka's error as its
//! [`source`](std::error::Error::source). When the brokers do not answer, the error carries
//! librdkafka's last complaint (`Connect to ipv4#127.0.0.1:9092 failed: Connection refused`);
//! librdkafka's own log lines go to `tracing` at debug level only.

mod assignment;
mod ensure;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use crate::client_error::ClientError;
use crate::cluster::{block_on, ClusterOptions, QuietContext};
use crate::commit_stamp;
use crate::record::{Offset, TopicPartition};
use crate::sync::lock;

pub(crate) use ensure::{ensure_topics, TopicSetupError};

/// Why an [`Admin`] (or a [`TopicReader`](crate::reader::TopicReader)) could not do what it
/// was asked. A variant the Kafka client caused keeps its [`ClientError`] as
/// [`source`](std::error::Error::source); the message says what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// librdkafka refused a property ([`ClusterOptions::librdkafka`]); nothing was sent.
    #[error("invalid property {key}={value}")]
    InvalidProperty {
        /// The property.
        key: String,
        /// Its value.
        value: String,
        /// What librdkafka says is wrong.
        description: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// librdkafka would not create a client with these settings.
    #[error("invalid client configuration")]
    InvalidConfiguration {
        /// librdkafka's reason.
        reason: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// librdkafka could not create a client, for another reason.
    #[error("could not create a Kafka client")]
    Client {
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The brokers did not answer within the connect timeout.
    #[error(
        "could not reach the brokers at {brokers} within {timeout:?}{}",
        .detail.as_ref().map(|detail| format!(": {detail}")).unwrap_or_default()
    )]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// The connect timeout.
        timeout: Duration,
        /// librdkafka's last complaint (a refused connection, an unknown host), if it made one.
        detail: Option<String>,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The brokers refused the client's credentials or TLS handshake.
    #[error("the brokers at {brokers} refused the connection: {reason}")]
    Refused {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The brokers list the topic with an error.
    #[error("the brokers could not describe topic `{topic}`")]
    Topic {
        /// The topic.
        topic: String,
        /// The brokers' error.
        #[source]
        source: ClientError,
    },
    /// The watermarks of a partition could not be read.
    #[error("could not read the offsets of {topic}/{partition}")]
    Watermarks {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// A group's committed offsets could not be read.
    #[error("could not read the offsets group `{group}` committed on {brokers}")]
    CommittedOffsets {
        /// The group.
        group: String,
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The brokers could not describe a group.
    #[error("could not describe group `{group}`")]
    DescribeGroup {
        /// The group.
        group: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// A topic could not be created: the source says why (the brokers' error, or the request's).
    #[error("could not create topic `{topic}`")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The brokers' error.
        #[source]
        source: ClientError,
    },
    /// The offsets of a time could not be looked up.
    #[error("could not look up the offsets of `{topic}` at {time_ms} ms")]
    OffsetsForTime {
        /// The topic.
        topic: String,
        /// The time, in milliseconds since the Unix epoch.
        time_ms: i64,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The group has members: its offsets can be set only while it has none (the brokers
    /// refuse a commit from outside the group while it is active).
    #[error("group `{group}` has active members; stop them before setting its offsets")]
    GroupActive {
        /// The group.
        group: String,
    },
    /// Offsets could not be committed for a group.
    #[error("could not commit offsets for group `{group}`")]
    CommitOffsets {
        /// The group.
        group: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// A topic was created but the cluster's metadata did not list it, with a leader for each
    /// partition, in time.
    #[error("topic `{topic}` was created but the cluster does not list it")]
    NotVisible {
        /// The topic.
        topic: String,
    },
}

/// The oldest offset a partition keeps (`low`) and the offset its next record gets (`high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Watermarks {
    /// The low watermark: the oldest offset kept.
    pub low: Offset,
    /// The high watermark: the offset the next record written gets (the end).
    pub high: Offset,
}

impl Watermarks {
    /// The watermarks `low` and `high`.
    pub fn new(low: Offset, high: Offset) -> Self {
        Self { low, high }
    }

    /// Records kept between the two (a count of offsets: on a compacted topic, fewer records).
    pub fn records(&self) -> u64 {
        u64::try_from(self.high - self.low).unwrap_or(0)
    }
}

/// A group's committed offset on a partition, as [`Admin::commits`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// The committed offset: the next record the group reads.
    pub offset: Offset,
    /// When the commit was made (milliseconds since the Unix epoch), if a Sluicegate engine
    /// made it: the engine stamps each commit's metadata, and commits a partition only when
    /// its acknowledged offset moved, so this is the group's last progress there.
    pub committed_at_ms: Option<i64>,
}

/// A topic as the cluster's metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// Its partitions, by id.
    pub partitions: Vec<PartitionMetadata>,
    /// What the brokers said is wrong with it (a leader not yet elected, say), if anything.
    pub error: Option<String>,
}

impl TopicMetadata {
    /// The partition ids, in order.
    pub fn partition_ids(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .map(|partition| partition.id)
            .collect()
    }
}

/// One partition as the cluster's metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionMetadata {
    /// The partition id.
    pub id: i32,
    /// The broker that leads it, if one does.
    pub leader: Option<i32>,
    /// The brokers holding a replica.
    pub replicas: Vec<i32>,
    /// The replicas in sync with the leader.
    pub in_sync_replicas: Vec<i32>,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    name: String,
    partitions: i32,
    replication_factor: Option<i32>,
    config: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic `name` with `partitions` partitions and the broker's default replication
    /// factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: None,
            config: BTreeMap::new(),
        }
    }

    /// Each partition gets `replicas` replicas instead of the broker's default.
    pub fn replication_factor(mut self, replicas: i32) -> Self {
        self.replication_factor = Some(replicas);
        self
    }

    /// A topic configuration entry (`retention.ms`, `cleanup.policy`...).
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A consumer group as the brokers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// Its state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`.
    pub state: String,
    /// Its protocol type: `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignment protocol in use (`range`, `cooperative-sticky`...).
    pub protocol: String,
    /// Its members.
    pub members: Vec<GroupMember>,
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The client id it connected with.
    pub client_id: String,
    /// The host it connected from (without the `/` brokers put before it).
    pub host: String,
    /// The partitions it was assigned.
    pub assignment: MemberAssignment,
}

/// The partitions a group member was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberAssignment {
    /// Its partitions, in the order the assignment lists them (none while a rebalance is
    /// settling).
    Partitions(Vec<TopicPartition>),
    /// The group does not use Kafka's consumer protocol (Kafka Connect, for one), whose
    /// assignments are encoded another way.
    Other,
    /// The assignment's bytes could not be read: what is wrong with them.
    Unreadable(String),
}

/// A client that looks at a cluster and creates topics there. See the [module](self) docs.
pub struct Admin {
    options: ClusterOptions,
    /// Metadata, watermarks and group descriptions. A producer client, because its error
    /// events (with librdkafka's reason, such as "Connection refused") reach its context.
    client: BaseProducer<QuietContext>,
    /// A client per group whose committed offsets were asked for: committed offsets are read
    /// through a consumer configured with the group's id (it never joins the group).
    groups: Mutex<BTreeMap<String, Arc<BaseConsumer<QuietContext>>>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// A client for the cluster of `options`. Connects in the background: the first request
    /// says whether the brokers answer.
    ///
    /// # Errors
    ///
    /// [`AdminError::InvalidProperty`] or [`AdminError::InvalidConfiguration`] when librdkafka
    /// refuses the settings.
    pub fn new(options: ClusterOptions) -> Result<Self, AdminError> {
        let client = options.create(&options.client_config(&[]))?;
        Ok(Self {
            options,
            client,
            groups: Mutex::new(BTreeMap::new()),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// Every topic the cluster lists, by name, each with its partitions by id (topics the
    /// brokers say do not exist are left out).
    pub fn topics(&self) -> Result<Vec<TopicMetadata>, AdminError> {
        let metadata = self.metadata()?;
        let mut topics: Vec<TopicMetadata> = metadata
            .topics()
            .iter()
            .filter_map(|topic| {
                let error = topic.error().map(RDKafkaErrorCode::from);
                if error == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                    return None;
                }
                let mut partitions: Vec<PartitionMetadata> = topic
                    .partitions()
                    .iter()
                    .map(|partition| PartitionMetadata {
                        id: partition.id(),
                        leader: (partition.leader() >= 0).then_some(partition.leader()),
                        replicas: partition.replicas().to_vec(),
                        in_sync_replicas: partition.isr().to_vec(),
                    })
                    .collect();
                partitions.sort_by_key(|partition| partition.id);
                Some(TopicMetadata {
                    name: topic.name().to_owned(),
                    partitions,
                    error: error.map(|code| code.to_string()),
                })
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// `topic` as the cluster lists it, or `None` if the cluster does not have it. Asks for
    /// the metadata of every topic, which (unlike asking for one) never auto-creates it.
    pub fn topic(&self, topic: &str) -> Result<Option<TopicMetadata>, AdminError> {
        Ok(self.topics()?.into_iter().find(|found| found.name == topic))
    }

    /// The partitions of `topic`, in order, or `None` if the cluster does not have it (or
    /// lists it without partitions).
    ///
    /// # Errors
    ///
    /// [`AdminError::Topic`] when the brokers list the topic with an error.
    pub fn partitions(&self, topic: &str) -> Result<Option<Vec<i32>>, AdminError> {
        let metadata = self.metadata()?;
        let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
            return Ok(None);
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
            Some(code) => {
                return Err(AdminError::Topic {
                    topic: topic.to_owned(),
                    source: ClientError::from(code),
                })
            }
        }
        let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Ok(None);
        }
        partitions.sort_unstable();
        Ok(Some(partitions))
    }

    /// The low and high watermarks of `topic`/`partition`. While the partition's leadership
    /// is moving (a topic just created, a broker failing over), asks again until the request
    /// timeout.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<Watermarks, AdminError> {
        ask_again_while(
            self.options.request_timeout,
            &[
                RDKafkaErrorCode::NotLeaderForPartition,
                RDKafkaErrorCode::LeaderNotAvailable,
            ],
            |left| {
                self.client
                    .client()
                    .fetch_watermarks(topic, partition, left)
            },
        )
        .map(|(low, high)| Watermarks { low, high })
        .map_err(|error| AdminError::Watermarks {
            topic: topic.to_owned(),
            partition,
            source: ClientError::from(error),
        })
    }

    /// The offsets `group` committed on these partitions (the next record it will read):
    /// partitions without a committed offset are left out. Reads them without joining the
    /// group, so it triggers no rebalance. While the group's coordinator is moving or loading,
    /// asks again until the request timeout.
    pub fn committed_offsets(
        &self,
        group: &str,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Offset>, AdminError> {
        Ok(self
            .commits(group, partitions)?
            .into_iter()
            .map(|(partition, commit)| (partition, commit.offset))
            .collect())
    }

    /// Like [`committed_offsets`](Self::committed_offsets), with when each commit was made
    /// where a Sluicegate engine made it.
    pub fn commits(
        &self,
        group: &str,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Commit>, AdminError> {
        let mut wanted = TopicPartitionList::new();
        for at in partitions {
            wanted.add_partition(&at.topic, at.partition);
        }
        if wanted.count() == 0 {
            return Ok(BTreeMap::new());
        }
        let failed = |source: ClientError| AdminError::CommittedOffsets {
            group: group.to_owned(),
            brokers: self.options.bootstrap_servers.clone(),
            source,
        };
        let consumer = self.group_client(group)?;
        // The group's coordinator moved or is still loading (a new cluster creates its
        // offsets topic on the first request): ask again until the timeout.
        let committed = ask_again_while(
            self.options.request_timeout,
            &[
                RDKafkaErrorCode::NotCoordinator,
                RDKafkaErrorCode::CoordinatorNotAvailable,
                RDKafkaErrorCode::CoordinatorLoadInProgress,
            ],
            |left| consumer.committed_offsets(wanted.clone(), left),
        )
        .map_err(|error| failed(ClientError::from(error)))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                KafkaOffset::Offset(offset) => Some((
                    TopicPartition::new(element.topic(), element.partition()),
                    Commit {
                        offset,
                        committed_at_ms: commit_stamp::committed_at_ms(element.metadata()),
                    },
                )),
                _ => None,
            })
            .collect())
    }

    /// For each of these partitions of `topic`, the offset of the first record whose
    /// timestamp is at or after `time_ms` (milliseconds since the Unix epoch), or the end
    /// (high watermark) when the partition has none that late.
    pub fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[i32],
        time_ms: i64,
    ) -> Result<BTreeMap<i32, Offset>, AdminError> {
        let failed = |source: ClientError| AdminError::OffsetsForTime {
            topic: topic.to_owned(),
            time_ms,
            source,
        };
        let mut query = TopicPartitionList::new();
        for &partition in partitions {
            query
                .add_partition_offset(topic, partition, KafkaOffset::Offset(time_ms))
                .map_err(|error| failed(ClientError::from(error)))?;
        }
        // Any group's client can ask; the lookup does not involve the group.
        let consumer = self.group_client("sluice-offsets-for-time")?;
        let found = ask_again_while(
            self.options.request_timeout,
            &[
                RDKafkaErrorCode::NotLeaderForPartition,
                RDKafkaErrorCode::LeaderNotAvailable,
            ],
            |left| consumer.offsets_for_times(query.clone(), left),
        )
        .map_err(|error| failed(ClientError::from(error)))?;
        let mut offsets = BTreeMap::new();
        for element in found.elements() {
            let offset = match element.offset() {
                KafkaOffset::Offset(offset) if offset >= 0 => offset,
                // No record that late: librdkafka answers the end.
                _ => self.watermarks(topic, element.partition())?.high,
            };
            offsets.insert(element.partition(), offset);
        }
        Ok(offsets)
    }

    /// Commits `offsets` (the next record to read, per partition) for `group` from outside
    /// it, as `kafka-consumer-groups.sh --reset-offsets` does: the brokers accept it only
    /// while the group has no members.
    ///
    /// # Errors
    ///
    /// [`AdminError::GroupActive`] when the brokers refuse because the group has members;
    /// [`AdminError::CommitOffsets`] for any other refusal.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, Offset>,
    ) -> Result<(), AdminError> {
        let failed = |source: ClientError| AdminError::CommitOffsets {
            group: group.to_owned(),
            source,
        };
        let mut list = TopicPartitionList::new();
        for (at, &offset) in offsets {
            list.add_partition_offset(&at.topic, at.partition, KafkaOffset::Offset(offset))
                .map_err(|error| failed(ClientError::from(error)))?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        let consumer = self.group_client(group)?;
        match consumer.commit(&list, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(error)
                if matches!(
                    error.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownMemberId
                            | RDKafkaErrorCode::IllegalGeneration
                            | RDKafkaErrorCode::RebalanceInProgress
                            | RDKafkaErrorCode::StaleMemberEpoch
                    )
                ) =>
            {
                Err(AdminError::GroupActive {
                    group: group.to_owned(),
                })
            }
            Err(error) => Err(failed(ClientError::from(error))),
        }
    }

    /// `group` as the brokers describe it (ListGroups, DescribeGroups), or `None` when they
    /// do not list it (a group without members).
    pub fn describe_group(&self, group: &str) -> Result<Option<GroupDescription>, AdminError> {
        let list = self
            .client
            .client()
            .fetch_group_list(Some(group), self.options.request_timeout)
            .map_err(|error| AdminError::DescribeGroup {
                group: group.to_owned(),
                source: ClientError::from(error),
            })?;
        let Some(found) = list.groups().iter().find(|found| found.name() == group) else {
            return Ok(None);
        };
        let consumer_protocol = found.protocol_type() == "consumer";
        let members = found
            .members()
            .iter()
            .map(|member| GroupMember {
                member_id: member.id().to_owned(),
                client_id: member.client_id().to_owned(),
                host: member.client_host().trim_start_matches('/').to_owned(),
                assignment: if consumer_protocol {
                    match assignment::parse(member.assignment().unwrap_or_default()) {
                        Ok(partitions) => MemberAssignment::Partitions(partitions),
                        Err(problem) => MemberAssignment::Unreadable(problem),
                    }
                } else {
                    MemberAssignment::Other
                },
            })
            .collect();
        Ok(Some(GroupDescription {
            group: found.name().to_owned(),
            state: found.state().to_owned(),
            protocol_type: found.protocol_type().to_owned(),
            protocol: found.protocol().to_owned(),
            members,
        }))
    }

    /// Creates the topics that do not exist yet and returns the names of those it created (a
    /// topic that exists already is left as it is). The brokers may take a moment to list a
    /// new topic: see [`wait_for_topics`](Self::wait_for_topics).
    ///
    /// # Errors
    ///
    /// [`AdminError::CreateTopic`] for the first topic the brokers refused to create (or for
    /// the first topic, when the request itself failed: a broker without the CreateTopics
    /// API, such as librdkafka's mock cluster, for one).
    pub fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<String>, AdminError> {
        let Some(first) = topics.first() else {
            return Ok(Vec::new());
        };
        let admin: AdminClient<QuietContext> =
            self.options.create(&self.options.client_config(&[]))?;
        let new_topics: Vec<rdkafka::admin::NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                let replication = TopicReplication::Fixed(topic.replication_factor.unwrap_or(-1));
                topic.config.iter().fold(
                    rdkafka::admin::NewTopic::new(&topic.name, topic.partitions, replication),
                    |new_topic, (key, value)| new_topic.set(key, value),
                )
            })
            .collect();
        let timeout = Some(self.options.request_timeout);
        let options = AdminOptions::new()
            .request_timeout(timeout)
            .operation_timeout(timeout);
        let results = block_on(admin.create_topics(&new_topics, &options)).map_err(|error| {
            AdminError::CreateTopic {
                topic: first.name.clone(),
                source: ClientError::from(error),
            }
        })?;
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(topic) => created.push(topic),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(AdminError::CreateTopic {
                        topic,
                        source: ClientError::from(code),
                    })
                }
            }
        }
        Ok(created)
    }

    /// Waits up to `timeout` until the cluster lists every one of `topics` with a leader for
    /// each partition (consumers and producers that start before that find them missing).
    ///
    /// # Errors
    ///
    /// [`AdminError::NotVisible`] naming the first topic still missing at the timeout.
    pub fn wait_for_topics<I, S>(&self, topics: I, timeout: Duration) -> Result<(), AdminError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let topics: Vec<S> = topics.into_iter().collect();
        let started = Instant::now();
        loop {
            let metadata = self.metadata()?;
            let led = |topic: &str| {
                metadata.topics().iter().any(|known| {
                    known.name() == topic
                        && known.error().is_none()
                        && !known.partitions().is_empty()
                        && known
                            .partitions()
                            .iter()
                            .all(|partition| partition.leader() >= 0)
                })
            };
            let Some(absent) = topics.iter().find(|topic| !led(topic.as_ref())) else {
                return Ok(());
            };
            if started.elapsed() > timeout {
                return Err(AdminError::NotVisible {
                    topic: absent.as_ref().to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks for `topics`' metadata with auto-creation allowed; returns whether every one of
    /// them exists afterwards. Brokers that do not auto-create topics (Kafka with
    /// `auto.create.topics.enable=false`) leave them missing.
    pub(crate) fn auto_create(&self, topics: &[String]) -> bool {
        let config = self
            .options
            .client_config(&[("allow.auto.create.topics", "true")]);
        let Ok(client) = self.options.create::<BaseConsumer<QuietContext>>(&config) else {
            return false;
        };
        topics.iter().all(|topic| {
            client
                .fetch_metadata(Some(topic), self.options.request_timeout)
                .is_ok_and(|metadata| {
                    metadata.topics().iter().any(|known| {
                        known.name() == topic
                            && known.error().is_none()
                            && !known.partitions().is_empty()
                    })
                })
        })
    }

    /// The cluster's metadata, every topic.
    fn metadata(&self) -> Result<Metadata, AdminError> {
        self.client
            .client()
            .fetch_metadata(None, self.options.connect_timeout)
            .map_err(|error| {
                // librdkafka's log lines and errors arrive as events: serve those queued
                // meanwhile, which carry its reason. A quiet client serves one, the first
                // complaint (the cause; later ones tend to be consequences such as "all
                // brokers are down"); a forwarding one serves them all for a while, so each
                // is logged and a refused login is seen.
                let serve = if self.options.forward_logs {
                    Duration::from_millis(100)
                } else {
                    Duration::ZERO
                };
                self.client.poll(serve);
                let context = self.client.context();
                let brokers = self.options.bootstrap_servers.clone();
                if let Some(reason) = context.refusal.reason() {
                    return AdminError::Refused { brokers, reason };
                }
                AdminError::Unreachable {
                    brokers,
                    timeout: self.options.connect_timeout,
                    detail: context.last_problem(),
                    source: ClientError::from(error),
                }
            })
    }

    /// The client that reads `group`'s committed offsets, made on first use.
    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer<QuietContext>>, AdminError> {
        let mut groups = lock(&self.groups);
        if let Some(client) = groups.get(group) {
            return Ok(client.clone());
        }
        let config = self
            .options
            .client_config(&[("group.id", group), ("enable.auto.commit", "false")]);
        let client = Arc::new(self.options.create(&config)?);
        groups.insert(group.to_owned(), Arc::clone(&client));
        Ok(client)
    }
}

/// Calls `ask` with the time left of `timeout` until it answers, asking again (every 100 ms)
/// while it fails with one of the `passing` errors: a leader or coordinator that is moving.
fn ask_again_while<T>(
    timeout: Duration,
    passing: &[RDKafkaErrorCode],
    mut ask: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match ask(deadline.saturating_duration_since(Instant::now())) {
            Err(error)
                if Instant::now() < deadline
                    && error
                        .rdkafka_error_code()
                        .is_some_and(|code| passing.contains(&code)) =>
            {
                tracing::debug!(%error, "asking the cluster again");
                std::thread::sleep(Duration::from_millis(100));
            }
            answer => return answer,
        }
    }
}
