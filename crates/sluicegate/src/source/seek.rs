//! Seeking an assigned partition: [`Seek`] says where, the poll thread moves librdkafka's
//! position ([`perform`]), and the stream drops what it had buffered and restarts its offset
//! tracker there (see [`PartitionStream::seek`](super::PartitionStream::seek)).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::client_error::ClientError;
use crate::record::{Offset, TopicPartition};

/// How long a seek's lookups and librdkafka's seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where [`PartitionStream::seek`](super::PartitionStream::seek) moves a partition, and
/// whether its committed offset may move back with it.
///
/// ```
/// use sluicegate::Seek;
///
/// let replay = Seek::offset(1_000).rewind_commits(); // reprocess from 1,000, for good
/// let skip = Seek::timestamp(1_714_564_800_000); // on to the first record of 2024-05-01T12:00Z
/// # let _ = (replay, skip);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    pub(crate) to: SeekTo,
    pub(crate) rewind_commits: bool,
}

/// A seek's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeekTo {
    Offset(Offset),
    Timestamp(i64),
}

impl Seek {
    /// To `offset` (librdkafka's `auto.offset.reset` applies when the partition no longer
    /// keeps it).
    pub fn offset(offset: Offset) -> Self {
        Self {
            to: SeekTo::Offset(offset),
            rewind_commits: false,
        }
    }

    /// To the first record written at or after `time_ms` (milliseconds since the Unix
    /// epoch), or the end when none is that late.
    pub fn timestamp(time_ms: i64) -> Self {
        Self {
            to: SeekTo::Timestamp(time_ms),
            rewind_commits: false,
        }
    }

    /// Lets the committed offset move back to the new position. Without it, a seek back
    /// never commits below what was acknowledged before it: the records between are read
    /// again, but a crash resumes after them, as if the seek had not happened.
    pub fn rewind_commits(mut self) -> Self {
        self.rewind_commits = true;
        self
    }
}

/// Why a seek did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeekError {
    /// The partition was revoked (or the engine shut down) before the seek was done.
    #[error("partition {0} is no longer owned by this member")]
    Revoked(TopicPartition),
    /// librdkafka did not start fetching the partition within 10 s of the seek (it was
    /// still looking its committed offset up).
    #[error("partition {0} did not start fetching in time to seek")]
    NotFetching(TopicPartition),
    /// The client could not look the time up or move the position.
    #[error("could not seek {partition}")]
    Client {
        /// The partition.
        partition: TopicPartition,
        /// The client's error.
        #[source]
        source: ClientError,
    },
}

/// A seek the stream asked for, waiting for the poll thread.
#[derive(Debug)]
pub(crate) struct PendingSeek {
    pub seek: Seek,
    pub reply: oneshot::Sender<Result<Offset, SeekError>>,
    /// Until when a partition that is not fetching yet is waited for.
    pub deadline: Instant,
}

impl PendingSeek {
    pub fn new(seek: Seek, reply: oneshot::Sender<Result<Offset, SeekError>>) -> Self {
        Self {
            seek,
            reply,
            deadline: Instant::now() + SEEK_TIMEOUT,
        }
    }
}

/// What came of an attempt to seek.
pub(crate) enum Attempt {
    Done(Result<Offset, SeekError>),
    /// The partition is still starting, just after its assignment: librdkafka does not fetch
    /// it yet (it is still looking its committed offset up), or the fetch start at that
    /// offset outdated the seek (librdkafka's `_OUTDATED`: the seek was dropped). Try again
    /// shortly.
    NotFetchingYet,
}

/// Moves `partition`'s fetch position as `seek` says; returns the offset it moved to. Runs on
/// the poll thread, between two takes of the partition, so that every record taken after it
/// comes from the new position (librdkafka drops what it had fetched from the old one).
pub(crate) fn attempt<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partition: &TopicPartition,
    seek: Seek,
) -> Attempt {
    match perform(consumer, partition, seek) {
        Err(Failed {
            code: Some(RDKafkaErrorCode::State | RDKafkaErrorCode::Outdated),
            ..
        }) => Attempt::NotFetchingYet,
        Err(error) => Attempt::Done(Err(SeekError::Client {
            partition: partition.clone(),
            source: ClientError::from(error.error),
        })),
        Ok(offset) => Attempt::Done(Ok(offset)),
    }
}

/// A client error and its code.
struct Failed {
    error: KafkaError,
    code: Option<RDKafkaErrorCode>,
}

impl From<KafkaError> for Failed {
    fn from(error: KafkaError) -> Self {
        Self {
            code: error.rdkafka_error_code(),
            error,
        }
    }
}

fn perform<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partition: &TopicPartition,
    seek: Seek,
) -> Result<Offset, Failed> {
    let failed = Failed::from;
    let (topic, id) = (partition.topic.as_str(), partition.partition);
    let offset = match seek.to {
        SeekTo::Offset(offset) => offset,
        SeekTo::Timestamp(time_ms) => {
            let mut query = TopicPartitionList::new();
            query
                .add_partition_offset(topic, id, KafkaOffset::Offset(time_ms))
                .map_err(failed)?;
            let found = consumer
                .offsets_for_times(query, SEEK_TIMEOUT)
                .map_err(failed)?;
            match found
                .find_partition(topic, id)
                .map(|element| element.offset())
            {
                Some(KafkaOffset::Offset(offset)) if offset >= 0 => offset,
                // No record that late: the end.
                _ => {
                    consumer
                        .fetch_watermarks(topic, id, SEEK_TIMEOUT)
                        .map_err(failed)?
                        .1
                }
            }
        }
    };
    let mut target = TopicPartitionList::new();
    target
        .add_partition_offset(topic, id, KafkaOffset::Offset(offset))
        .map_err(failed)?;
    let done = consumer
        .seek_partitions(target, SEEK_TIMEOUT)
        .map_err(failed)?;
    if let Some(Err(error)) = done
        .find_partition(topic, id)
        .map(|element| element.error())
    {
        return Err(Failed::from(error));
    }
    Ok(offset)
}
