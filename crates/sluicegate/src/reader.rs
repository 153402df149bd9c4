//! Reading a topic as it is: its records from a chosen start, up to its end or following new
//! ones, without the consumer engine's acknowledgements.
//!
//! A [`TopicReader`] is for looking at a topic (a console consumer, a dead-letter inspector, a
//! test): it reads every partition of a topic, or the chosen ones, from where
//! [`ReadFrom`] says, and yields the same owned [`Record`]s as the engine. By default it joins
//! no group and commits nothing; with [`ReaderOptions::group`] it joins one, resumes from the
//! group's committed offsets and commits the offsets the caller
//! [stores](TopicReader::store_offsets).
//!
//! ```no_run
//! use std::time::Duration;
//! use sluicegate::reader::{ReadEvent, ReadFrom, ReadUntil, ReaderOptions, TopicReader};
//! use sluicegate::ClusterOptions;
//!
//! # fn run() -> Result<(), sluicegate::reader::ReadError> {
//! let options = ReaderOptions::new(ClusterOptions::new("127.0.0.1:9092"), "orders")
//!     .from(ReadFrom::BeforeEnd(10))
//!     .until(ReadUntil::End);
//! let mut reader = TopicReader::open(options)?;
//! while !reader.is_finished() {
//!     if let Some(ReadEvent::Record { record, .. }) = reader.next(Duration::from_millis(100))? {
//!         println!("{}/{} @ {}", record.topic, record.partition, record.offset);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Blocking
//!
//! [`TopicReader::open`] asks the brokers for the topic's partitions and start offsets, and
//! [`TopicReader::next`] waits up to its timeout for a record: run a reader on a thread of its
//! own or in `tokio::task::spawn_blocking`, never on an async runtime's worker.
//!
//! # Delivery semantics
//!
//! Without a group nothing is committed: each reader starts where [`ReadFrom`] says. With a
//! group, what was [stored](TopicReader::store_offsets) is committed every 5 s (librdkafka's
//! auto-commit) and by [`TopicReader::commit`]; store an offset only once its record is done
//! with, and every record is read at least once across runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message as _, Timestamp};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use crate::admin::{Admin, AdminError};
use crate::client_error::ClientError;
use crate::cluster::{ClusterOptions, QuietContext};
use crate::options::OptionsError;
use crate::record::{Offset, Record, TimestampType};
use crate::source::copy_borrowed;

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadFrom {
    /// The oldest record kept.
    Earliest,
    /// Only records written from now on (the default).
    #[default]
    Latest,
    /// This offset, clamped to what the partition keeps.
    Offset(Offset),
    /// This many records before the end (fewer when the partition keeps fewer).
    BeforeEnd(u64),
    /// The first record whose timestamp is at or after this time, in milliseconds since the
    /// Unix epoch; partitions without one start at the end.
    Time(i64),
}

/// How far a reader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadUntil {
    /// On and on, records written after the reader opened included (the default).
    #[default]
    Following,
    /// Each partition up to the end it had when the reader opened (its high watermark): then
    /// the reader [is finished](TopicReader::is_finished).
    End,
}

/// What a [`TopicReader`] reads and how. See the [module](self) docs.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    cluster: ClusterOptions,
    topic: String,
    partitions: Option<Vec<i32>>,
    from: ReadFrom,
    until: ReadUntil,
    group: Option<String>,
}

impl ReaderOptions {
    /// Reads every partition of `topic` on the cluster of `cluster`, from the end on, without
    /// a group.
    pub fn new(cluster: ClusterOptions, topic: impl Into<String>) -> Self {
        Self {
            cluster,
            topic: topic.into(),
            partitions: None,
            from: ReadFrom::default(),
            until: ReadUntil::default(),
            group: None,
        }
    }

    /// Reads only these partitions (not with a group, which assigns them).
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = i32>) -> Self {
        self.partitions = Some(partitions.into_iter().collect());
        self
    }

    /// Where to start in each partition (default [`ReadFrom::Latest`]). With a group, only
    /// for partitions the group has no committed offset on, and only `Earliest` or `Latest`.
    pub fn from(mut self, from: ReadFrom) -> Self {
        self.from = from;
        self
    }

    /// How far to read (default [`ReadUntil::Following`]; `End` is not for a group, whose
    /// partitions come and go).
    pub fn until(mut self, until: ReadUntil) -> Self {
        self.until = until;
        self
    }

    /// Reads as a member of consumer group `group`: the group assigns the partitions, the
    /// reader resumes from the group's committed offsets and commits what the caller
    /// [stores](TopicReader::store_offsets).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Checks the combinations: a group takes neither chosen partitions, nor a start other
    /// than `Earliest` or `Latest`, nor [`ReadUntil::End`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        if group.trim().is_empty() {
            return Err(OptionsError::new("group", "must not be empty"));
        }
        if self.partitions.is_some() {
            return Err(OptionsError::new(
                "partitions",
                "cannot be chosen with a group: the group assigns them",
            ));
        }
        if !matches!(self.from, ReadFrom::Earliest | ReadFrom::Latest) {
            return Err(OptionsError::new(
                "from",
                "must be Earliest or Latest with a group, which resumes from its committed offsets",
            ));
        }
        if self.until == ReadUntil::End {
            return Err(OptionsError::new(
                "until",
                "cannot be End with a group, whose partitions come and go",
            ));
        }
        Ok(())
    }
}

/// What [`TopicReader::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadEvent {
    /// A record.
    #[non_exhaustive]
    Record {
        /// The record.
        record: Record,
        /// What its timestamp (`record.timestamp_ms`) says: `None` when it has none.
        timestamp_type: Option<TimestampType>,
    },
    /// The reader reached the end of this partition: it has read every record written so far.
    #[non_exhaustive]
    PartitionEnd {
        /// The partition.
        partition: i32,
    },
}

/// Why a reader could not open, read or commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The options do not fit together; nothing was connected.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The client could not be made, or the brokers did not answer.
    #[error(transparent)]
    Cluster(#[from] AdminError),
    /// The cluster has no such topic.
    #[error("topic `{topic}` does not exist on {brokers}")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
    },
    /// The topic has no such partition.
    #[error("topic `{topic}` has no partition {partition} (it has {partitions} partitions)")]
    NoPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        partitions: usize,
    },
    /// The offsets at a time could not be looked up.
    #[error("could not look up the offsets of `{topic}` at {time_ms} ms")]
    OffsetsForTime {
        /// The topic.
        topic: String,
        /// The time asked for.
        time_ms: i64,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The reader could not subscribe to the topic (with a group).
    #[error("could not subscribe to `{topic}`")]
    Subscribe {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The reader could not assign itself the partitions (without a group).
    #[error("could not assign the partitions of `{topic}`")]
    Assign {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// Fetching failed (the brokers went away, say). Reading goes on: librdkafka retries.
    #[error("fetching from `{topic}` failed")]
    Fetch {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// Offsets could not be stored for the next commit (a partition revoked meanwhile).
    #[error("could not store the offsets of `{topic}` for group `{group}`")]
    Store {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
    /// The group's commit failed.
    #[error("group `{group}` could not commit its offsets of `{topic}`")]
    Commit {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// librdkafka's error.
        #[source]
        source: ClientError,
    },
}

/// A reader of one topic. See the [module](self) docs.
pub struct TopicReader {
    consumer: BaseConsumer<QuietContext>,
    topic: Arc<str>,
    group: Option<String>,
    /// The topic's partitions this reader reads (with a group: all of them).
    partitions: Vec<i32>,
    /// With [`ReadUntil::End`]: the partitions not read to their end yet, and that end.
    until: Option<BTreeMap<i32, Offset>>,
    /// Partitions that reported their end since their last record.
    at_end: BTreeSet<i32>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("partitions", &self.partitions)
            .field("until_end", &self.until)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// Checks the cluster and the topic, then starts reading: without a group, each
    /// partition at the offset [`ReadFrom`] says; with one, it subscribes.
    ///
    /// # Errors
    ///
    /// [`ReadError::Options`] for options that do not fit together, [`ReadError::Cluster`]
    /// when librdkafka refuses the settings or the brokers do not answer,
    /// [`ReadError::NoTopic`] and [`ReadError::NoPartition`] for what the cluster does not
    /// have, and the errors of looking up the start offsets.
    pub fn open(options: ReaderOptions) -> Result<Self, ReadError> {
        options.validate()?;
        let ReaderOptions {
            cluster,
            topic,
            partitions: chosen,
            from,
            until,
            group,
        } = options;
        let reset = if from == ReadFrom::Earliest {
            "earliest"
        } else {
            "latest"
        };
        let client_id = cluster
            .client_id
            .clone()
            .unwrap_or_else(|| "sluicegate-reader".to_owned());
        let mut settings = vec![
            ("client.id", client_id.as_str()),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", reset),
        ];
        match &group {
            Some(group) => {
                settings.extend([("group.id", group.as_str()), ("enable.auto.commit", "true")])
            }
            // librdkafka assigns only with a group id; this one is never joined nor
            // committed to.
            None => settings.extend([
                ("group.id", client_id.as_str()),
                ("enable.auto.commit", "false"),
            ]),
        }
        let consumer: BaseConsumer<QuietContext> =
            cluster.create(&cluster.client_config(&settings))?;
        let admin = Admin::new(cluster.clone())?;
        let Some(mut partitions) = admin.partitions(&topic)? else {
            return Err(ReadError::NoTopic {
                topic,
                brokers: cluster.bootstrap_servers,
            });
        };
        if let Some(chosen) = chosen {
            if let Some(&absent) = chosen.iter().find(|p| !partitions.contains(p)) {
                return Err(ReadError::NoPartition {
                    topic,
                    partition: absent,
                    partitions: partitions.len(),
                });
            }
            partitions = chosen;
        }
        let mut reader = Self {
            consumer,
            topic: Arc::from(topic.as_str()),
            group,
            partitions,
            until: None,
            at_end: BTreeSet::new(),
        };
        if reader.group.is_some() {
            reader
                .consumer
                .subscribe(&[&topic])
                .map_err(|error| ReadError::Subscribe {
                    topic: topic.clone(),
                    source: ClientError::from(error),
                })?;
            return Ok(reader);
        }
        let starts = reader.start_offsets(&admin, from, until)?;
        let mut assignment = TopicPartitionList::new();
        for (&partition, &start) in &starts {
            // Only a partition name and an offset: adding cannot fail.
            let _ = assignment.add_partition_offset(&topic, partition, start);
        }
        reader
            .consumer
            .assign(&assignment)
            .map_err(|error| ReadError::Assign {
                topic,
                source: ClientError::from(error),
            })?;
        Ok(reader)
    }

    /// The offset each partition starts at; with [`ReadUntil::End`], also notes where each
    /// ends and leaves out those with nothing to read.
    fn start_offsets(
        &mut self,
        admin: &Admin,
        from: ReadFrom,
        until: ReadUntil,
    ) -> Result<BTreeMap<i32, KafkaOffset>, ReadError> {
        let topic = &*self.topic;
        let mut starts = BTreeMap::new();
        if let ReadFrom::Time(time_ms) = from {
            let mut query = TopicPartitionList::new();
            for &partition in &self.partitions {
                let _ = query.add_partition_offset(topic, partition, KafkaOffset::Offset(time_ms));
            }
            let found = self
                .consumer
                .offsets_for_times(query, admin.options().request_timeout)
                .map_err(|error| ReadError::OffsetsForTime {
                    topic: topic.to_owned(),
                    time_ms,
                    source: ClientError::from(error),
                })?;
            for element in found.elements() {
                // No record at or after the time: librdkafka answers the end.
                let offset = match element.offset() {
                    KafkaOffset::Offset(offset) if offset >= 0 => KafkaOffset::Offset(offset),
                    _ => KafkaOffset::End,
                };
                starts.insert(element.partition(), offset);
            }
        }
        let needs_watermarks =
            until == ReadUntil::End || matches!(from, ReadFrom::Offset(_) | ReadFrom::BeforeEnd(_));
        let mut ends = BTreeMap::new();
        for &partition in &self.partitions {
            let watermarks = if needs_watermarks {
                Some(admin.watermarks(topic, partition)?)
            } else {
                None
            };
            let start = match (from, watermarks) {
                (ReadFrom::Earliest, _) => KafkaOffset::Beginning,
                (ReadFrom::Latest, _) => KafkaOffset::End,
                (ReadFrom::Time(_), _) => {
                    starts.get(&partition).copied().unwrap_or(KafkaOffset::End)
                }
                (ReadFrom::Offset(offset), Some(ends)) => {
                    KafkaOffset::Offset(offset.clamp(ends.low, ends.high))
                }
                (ReadFrom::BeforeEnd(records), Some(ends)) => {
                    let records = i64::try_from(records).unwrap_or(i64::MAX);
                    KafkaOffset::Offset(
                        ends.high.saturating_sub(records).clamp(ends.low, ends.high),
                    )
                }
                (ReadFrom::Offset(_) | ReadFrom::BeforeEnd(_), None) => KafkaOffset::End,
            };
            if let (ReadUntil::End, Some(ends_now)) = (until, watermarks) {
                let first = match start {
                    KafkaOffset::Beginning => ends_now.low,
                    KafkaOffset::Offset(offset) => offset,
                    _ => ends_now.high,
                };
                if first >= ends_now.high {
                    // Nothing to read there: not even assigned.
                    starts.remove(&partition);
                    continue;
                }
                ends.insert(partition, ends_now.high);
            }
            starts.insert(partition, start);
        }
        if until == ReadUntil::End {
            self.until = Some(ends);
        }
        Ok(starts)
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partitions read (with a group: every partition of the topic, of which the group
    /// assigns some).
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// The next record, or the end of a partition, waiting up to `timeout`; `Ok(None)` when
    /// there was none (and at once once the reader [is finished](Self::is_finished)).
    ///
    /// # Errors
    ///
    /// [`ReadError::Fetch`] when fetching failed. Reading goes on: call again (librdkafka
    /// retries), and see [`last_problem`](Self::last_problem) for its complaint.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<ReadEvent>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_finished() {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.consumer.poll(left) {
                None => return Ok(None),
                Some(Ok(message)) => {
                    let topic = if *self.topic == *message.topic() {
                        self.topic.clone()
                    } else {
                        Arc::from(message.topic())
                    };
                    let timestamp_type = match message.timestamp() {
                        Timestamp::NotAvailable => None,
                        Timestamp::CreateTime(_) => Some(TimestampType::CreateTime),
                        Timestamp::LogAppendTime(_) => Some(TimestampType::LogAppendTime),
                    };
                    let record = copy_borrowed(&message, topic);
                    drop(message);
                    self.at_end.remove(&record.partition);
                    (!self.past_end(record.partition, record.offset)).then_some(ReadEvent::Record {
                        record,
                        timestamp_type,
                    })
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.at_end.insert(partition);
                    self.finish(partition);
                    Some(ReadEvent::PartitionEnd { partition })
                }
                Some(Err(error)) => {
                    return Err(ReadError::Fetch {
                        topic: self.topic.to_string(),
                        source: ClientError::from(error),
                    })
                }
            };
            if event.is_some() || Instant::now() >= deadline {
                return Ok(event);
            }
        }
    }

    /// With [`ReadUntil::End`]: whether `offset` of `partition` lies past the partition's end,
    /// and notes the partition finished once its last record is read.
    fn past_end(&mut self, partition: i32, offset: Offset) -> bool {
        let Some(end) = self
            .until
            .as_ref()
            .and_then(|ends| ends.get(&partition).copied())
        else {
            // Finished already, or reading on and on.
            return self.until.is_some();
        };
        if offset >= end {
            self.finish(partition);
            return true;
        }
        if offset + 1 >= end {
            self.finish(partition);
        }
        false
    }

    /// With [`ReadUntil::End`]: `partition` is read to its end; stop fetching it.
    fn finish(&mut self, partition: i32) {
        let Some(ends) = &mut self.until else { return };
        if ends.remove(&partition).is_some() {
            let mut done = TopicPartitionList::new();
            done.add_partition(&self.topic, partition);
            if let Err(error) = self.consumer.pause(&done) {
                tracing::debug!(%error, partition, "could not pause a partition read to its end");
            }
        }
    }

    /// With [`ReadUntil::End`], whether every partition was read to its end; always `false`
    /// with [`ReadUntil::Following`].
    pub fn is_finished(&self) -> bool {
        self.until.as_ref().is_some_and(BTreeMap::is_empty)
    }

    /// Whether every partition assigned to the reader reported its end since its last
    /// record: nothing is left to read for now. `false` while nothing is assigned (a group
    /// still joining).
    pub fn caught_up(&self) -> bool {
        match self.consumer.assignment() {
            Ok(assignment) => {
                let elements = assignment.elements();
                !elements.is_empty()
                    && elements
                        .iter()
                        .all(|element| self.at_end.contains(&element.partition()))
            }
            Err(_) => false,
        }
    }

    /// librdkafka's last warning or error, if any (kept, not logged): why fetching fails.
    pub fn last_problem(&self) -> Option<String> {
        self.consumer.context().last_problem()
    }

    /// With a group: marks the records before each `(partition, offset)` as done, so the
    /// group commits `offset` (the next record to read) in the background and on
    /// [`commit`](Self::commit). Without a group, does nothing.
    ///
    /// # Errors
    ///
    /// [`ReadError::Store`] when a partition is no longer assigned (revoked meanwhile: its
    /// next owner reads those records again).
    pub fn store_offsets(
        &self,
        offsets: impl IntoIterator<Item = (i32, Offset)>,
    ) -> Result<(), ReadError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let mut next = TopicPartitionList::new();
        for (partition, offset) in offsets {
            let _ = next.add_partition_offset(&self.topic, partition, KafkaOffset::Offset(offset));
        }
        if next.count() == 0 {
            return Ok(());
        }
        self.consumer
            .store_offsets(&next)
            .map_err(|error| ReadError::Store {
                topic: self.topic.to_string(),
                group: group.clone(),
                source: ClientError::from(error),
            })
    }

    /// With a group: commits the stored offsets now and waits for the answer (nothing stored
    /// since the last commit is not an error). Without a group, does nothing.
    pub fn commit(&self) -> Result<(), ReadError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(ReadError::Commit {
                topic: self.topic.to_string(),
                group: group.clone(),
                source: ClientError::from(error),
            }),
        }
    }
}
