//! Plain rdkafka clients for tests: configuration, producing records, reading commits.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A record for [`produce_records`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestRecord {
    /// The partition to write to; `None` lets the producer's partitioner choose (by key).
    pub partition: Option<i32>,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value (payload).
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TestRecord {
    /// A record with only a value; the partitioner chooses its partition.
    pub fn value(value: impl Into<Vec<u8>>) -> TestRecord {
        TestRecord {
            value: value.into(),
            ..TestRecord::default()
        }
    }

    /// A record with a value for an explicit partition.
    pub fn to_partition(partition: i32, value: impl Into<Vec<u8>>) -> TestRecord {
        TestRecord::value(value).partition(partition)
    }

    /// A record with a key and a value; the partitioner chooses its partition by key.
    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> TestRecord {
        TestRecord::value(value).key(key)
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> TestRecord {
        self.partition = Some(partition);
        self
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> TestRecord {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> TestRecord {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Producer settings for tests: `bootstrap.servers`, `linger.ms` 50 (records sent together
/// share batches) and `message.timeout.ms` 30 s (a failed delivery is reported instead of
/// retried for 5 minutes).
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "50")
        .set("message.timeout.ms", "30000");
    config
}

/// Consumer settings for tests: `bootstrap.servers`, `group.id`, `auto.offset.reset`
/// `earliest`, no auto commit, and short `session.timeout.ms` (6 s) and
/// `max.poll.interval.ms` (10 s): a rebalance of a classic group waits up to the rebalance
/// timeout (the max poll interval) for members that have not rejoined, and a member that died
/// is noticed after the session timeout (6 s is Kafka's smallest by default).
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "10000");
    config
}

/// Produces `records` to `topic` and returns the `(partition, offset)` of each, in order.
///
/// All records are handed to one producer (see [`producer_config`]) before any delivery is
/// awaited, so consecutive records for the same partition share producer batches (record
/// batches on the broker), as they do in production.
///
/// # Panics
///
/// If the producer cannot be created or any record is not delivered within 30 s.
pub async fn produce_records(
    bootstrap: &str,
    topic: &str,
    records: Vec<TestRecord>,
) -> Vec<(i32, i64)> {
    let producer: FutureProducer = match producer_config(bootstrap).create() {
        Ok(producer) => producer,
        Err(e) => panic!("cannot create a producer for {bootstrap}: {e}"),
    };
    let mut deliveries = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(Header {
                    key: name.as_str(),
                    value: Some(value.as_slice()),
                })
            });
        let mut future_record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(record.value.as_slice())
            .headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        if let Some(partition) = record.partition {
            future_record = future_record.partition(partition);
        }
        loop {
            match producer.send_result(future_record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    future_record = returned;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => panic!("cannot produce record {index} to {topic:?}: {e}"),
            }
        }
    }
    let mut positions = Vec::with_capacity(deliveries.len());
    for (index, delivery) in deliveries.into_iter().enumerate() {
        match delivery.await {
            Ok(Ok(delivered)) => positions.push((delivered.partition, delivered.offset)),
            Ok(Err((e, _))) => panic!("record {index} to {topic:?} was not delivered: {e}"),
            Err(_) => panic!("record {index} to {topic:?}: the producer dropped its delivery"),
        }
    }
    positions
}

/// The offset committed by consumer group `group` for `topic`/`partition`, or `None` if the
/// group has committed none there.
///
/// Asks the broker with a throwaway consumer in the group (it does not join the group), again
/// while the group's coordinator is not ready.
///
/// # Panics
///
/// If the broker does not answer within 10 s, or its coordinator is not ready within 20 s.
pub async fn committed_offset(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let describe = format!("group {group:?} on {topic:?}/{partition}");
    let config = consumer_config(bootstrap, group);
    let topic = topic.to_owned();
    let query = move || -> Result<Option<i64>, KafkaError> {
        let consumer: BaseConsumer = config.create()?;
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&topic, partition);
        let committed = while_the_coordinator_settles(|| {
            consumer.committed_offsets(wanted.clone(), Duration::from_secs(10))
        })?;
        let offset = committed
            .find_partition(&topic, partition)
            .map(|element| element.offset());
        Ok(match offset {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        })
    };
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(offset)) => offset,
        Ok(Err(e)) => panic!("cannot read the committed offset of {describe}: {e}"),
        Err(e) => panic!("reading the committed offset of {describe} failed: {e}"),
    }
}

/// Runs a group request again, for up to 20 s, while the group's coordinator is not ready: a
/// fresh cluster creates its offsets topic on the first group request and answers
/// "coordinator not available", "loading" or "not coordinator" until the topic's partition
/// has its leader and the coordinator has loaded it.
fn while_the_coordinator_settles<T>(
    mut request: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match request() {
            Err(error)
                if std::time::Instant::now() < deadline
                    && matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::CoordinatorNotAvailable
                                | RDKafkaErrorCode::NotCoordinator
                                | RDKafkaErrorCode::CoordinatorLoadInProgress
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            outcome => return outcome,
        }
    }
}

/// Commits `offset` for consumer group `group` on `topic`/`partition`, from outside the group
/// (it must have no members).
///
/// # Panics
///
/// If the broker does not accept the commit within 10 s.
pub async fn commit_offset(bootstrap: &str, group: &str, topic: &str, partition: i32, offset: i64) {
    let describe = format!("group {group:?} on {topic:?}/{partition}");
    let config = consumer_config(bootstrap, group);
    let topic = topic.to_owned();
    let commit = move || -> Result<(), KafkaError> {
        let consumer: BaseConsumer = config.create()?;
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        while_the_coordinator_settles(|| {
            consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        })
    };
    match tokio::task::spawn_blocking(commit).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("cannot commit for {describe}: {e}"),
        Err(e) => panic!("committing for {describe} failed: {e}"),
    }
}
