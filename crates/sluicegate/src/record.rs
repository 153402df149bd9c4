//! Sluicegate's own record types: what the engine hands to the application.
//!
//! Nothing here names an rdkafka type, so layers above the source (pipelines, retries) and
//! their tests work on these values alone.

use std::fmt;
use std::sync::Arc;

/// A position in a partition. Kafka offsets are signed 64-bit integers.
pub type Offset = i64;

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number within the topic.
    pub partition: i32,
}

impl TopicPartition {
    /// Names a partition of a topic.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One record header: a key and an optional value (Kafka allows null header values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header key.
    pub key: String,
    /// The header value, `None` for a null value.
    pub value: Option<Vec<u8>>,
}

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimestampType {
    /// When the producer created the record.
    CreateTime,
    /// When the broker appended it to the log (topics with
    /// `message.timestamp.type=LogAppendTime`).
    LogAppendTime,
}

/// An owned Kafka record, detached from the client that fetched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic the record was read from (shared by all records of a partition).
    pub topic: Arc<str>,
    /// Partition the record was read from.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: Offset,
    /// The record key, if any.
    pub key: Option<Vec<u8>>,
    /// The record value (payload), `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in the order the producer wrote them.
    pub headers: Vec<Header>,
    /// Timestamp in milliseconds since the Unix epoch, when the broker reported one.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// The partition this record belongs to.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}
