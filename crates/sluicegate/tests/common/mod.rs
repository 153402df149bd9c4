//! Helpers shared by the consumer engine's integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use sluicegate::{ConsumerOptions, GroupProtocol, Offset, PartitionStream, Record};
use sluicegate_testing::{TestBroker, TestRecord};

/// Runs each scenario once on the embedded broker and once on Apache Kafka, optionally with an extra
/// attribute (an `ignore` with its reason) on one of the two.
#[macro_export]
macro_rules! on_both_brokers {
    ($($scenario:ident $({ embedded: #[$embedded:meta] })? $({ kafka: #[$kafka:meta] })?),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$embedded])?
                async fn $scenario() {
                    super::init_tracing();
                    super::$scenario(super::TestBroker::embedded()).await;
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$kafka])?
                async fn $scenario() {
                    super::init_tracing();
                    super::$scenario(super::TestBroker::kafka()).await;
                }
            )*
        }
    };
}

/// Runs each scenario under each group protocol: the classic one on the embedded broker and on
/// Apache Kafka, the consumer protocol (KIP-848) on Apache Kafka. A scenario takes the broker
/// and the protocol; [`group_options`] gives it options that suit the protocol.
#[macro_export]
macro_rules! on_each_group_protocol {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::init_tracing();
                    super::$scenario(super::TestBroker::embedded(), sluicegate::GroupProtocol::Classic).await;
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::init_tracing();
                    super::$scenario(super::TestBroker::kafka(), sluicegate::GroupProtocol::Classic).await;
                }
            )*
        }
        mod kafka_consumer_protocol {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::init_tracing();
                    super::$scenario(super::TestBroker::kafka(), sluicegate::GroupProtocol::Consumer).await;
                }
            )*
        }
    };
}

/// Engine options for tests: short group timeouts (a rebalance waits on them), fast
/// interval commits and a short drain timeout.
pub fn options(broker: &TestBroker, group: &str, topic: &str) -> ConsumerOptions {
    group_options(broker, group, topic, GroupProtocol::Classic)
}

/// [`options`] under `protocol`. The consumer protocol takes its session timeout and heartbeat
/// interval from the broker (the test Kafka sets 6 s and 500 ms, like the classic options).
pub fn group_options(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    protocol: GroupProtocol,
) -> ConsumerOptions {
    topics_options(broker, group, &[topic], protocol)
}

/// [`group_options`] for a group reading several topics.
pub fn topics_options(
    broker: &TestBroker,
    group: &str,
    topics: &[&str],
    protocol: GroupProtocol,
) -> ConsumerOptions {
    let options = ConsumerOptions::new(broker.bootstrap_servers(), group, topics.iter().copied())
        .group_protocol(protocol)
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(200))
        .drain_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10));
    match protocol {
        GroupProtocol::Classic => options
            .session_timeout(Duration::from_secs(6))
            .heartbeat_interval(Duration::from_millis(500)),
        _ => options,
    }
}

/// A fresh topic with `partitions` partitions and `per_partition` records in each (values
/// `"{partition}-{n}"`), produced together so they share producer batches.
pub async fn topic_with_records(
    broker: &TestBroker,
    partitions: i32,
    per_partition: usize,
) -> String {
    let topic = sluicegate_testing::unique_name("engine");
    broker.create_topic(&topic, partitions).await;
    produce(broker, &topic, partitions, 0..per_partition).await;
    topic
}

/// Produces records `numbers` to each of `partitions` (values `"{partition}-{n}"`) and returns
/// their positions.
pub async fn produce(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
    numbers: std::ops::Range<usize>,
) -> BTreeSet<(i32, Offset)> {
    let records: Vec<_> = numbers
        .flat_map(|n| (0..partitions).map(move |p| TestRecord::to_partition(p, format!("{p}-{n}"))))
        .collect();
    let count = records.len();
    let positions: BTreeSet<_> =
        sluicegate_testing::produce_records(&broker.bootstrap_servers(), topic, records)
            .await
            .into_iter()
            .collect();
    assert_eq!(
        positions.len(),
        count,
        "{}: distinct positions of the produced records",
        broker.name()
    );
    positions
}

/// The offset after the last produced record of each partition.
pub fn end_offsets(produced: &BTreeSet<(i32, Offset)>) -> BTreeMap<i32, Offset> {
    let mut ends = BTreeMap::new();
    for (partition, offset) in produced {
        let end = ends.entry(*partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    ends
}

/// The offsets `group` committed on the first `partitions` partitions of `topic`.
pub async fn committed_offsets(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Offset> {
    let mut committed = BTreeMap::new();
    for partition in 0..partitions {
        if let Some(offset) = sluicegate_testing::committed_offset(
            &broker.bootstrap_servers(),
            group,
            topic,
            partition,
        )
        .await
        {
            committed.insert(partition, offset);
        }
    }
    committed
}

/// Takes the next record of a stream, failing the test after `timeout`.
pub async fn next_record(stream: &mut PartitionStream, timeout: Duration) -> Record {
    match tokio::time::timeout(timeout, stream.next()).await {
        Ok(Some(record)) => record,
        Ok(None) => panic!("stream of {} ended", stream.partition()),
        Err(_) => panic!("no record from {} within {timeout:?}", stream.partition()),
    }
}

/// Polls `condition` every 50 ms until it holds, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of `topic`, all partitions from the beginning to the end they have now, in
/// partition then offset order. Reads without a consumer group.
pub async fn read_topic(broker: &TestBroker, topic: &str) -> Vec<Record> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::TopicPartitionList;

    let bootstrap = broker.bootstrap_servers();
    let topic = topic.to_owned();
    let read = move || -> Vec<Record> {
        let consumer: BaseConsumer = sluicegate_testing::consumer_config(&bootstrap, "read-topic")
            .create()
            .expect("a reading consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("topic metadata");
        let partitions = metadata.topics()[0].partitions().len() as i32;
        let mut assignment = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            if high > low {
                ends.insert(partition, high);
                assignment
                    .add_partition_offset(&topic, partition, rdkafka::Offset::Offset(low))
                    .expect("assignment");
            }
        }
        consumer.assign(&assignment).expect("assign");
        let mut records = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
        while ends
            .iter()
            .any(|(p, end)| reached.get(p).copied().unwrap_or(-1) + 1 < *end)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "reading {topic} timed out"
            );
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.expect("a record");
            reached.insert(message.partition(), message.offset());
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|header| sluicegate::Header {
                            key: header.key.to_string(),
                            value: header.value.map(<[u8]>::to_vec),
                        })
                        .collect()
                })
                .unwrap_or_default();
            records.push(Record {
                topic: topic.as_str().into(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers,
                timestamp_ms: message.timestamp().to_millis(),
            });
        }
        records.sort_by_key(|record| (record.partition, record.offset));
        records
    };
    tokio::task::spawn_blocking(read)
        .await
        .expect("reading a topic")
}

/// How many partitions `topic` has, or `None` when the cluster does not list it.
pub async fn partition_count(broker: &TestBroker, topic: &str) -> Option<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let bootstrap = broker.bootstrap_servers();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            sluicegate_testing::consumer_config(&bootstrap, "partition-count")
                .create()
                .expect("a metadata consumer");
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("cluster metadata");
        metadata
            .topics()
            .iter()
            .find(|known| known.name() == topic && known.error().is_none())
            .map(|known| known.partitions().len())
    })
    .await
    .expect("asking for metadata")
}

/// A time between what was written before the call and what is written after it, in
/// milliseconds since the Unix epoch (50 ms from each, so record timestamps fall on either side).
pub async fn moment_between_writes() -> i64 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let moment = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(50)).await;
    moment
}
