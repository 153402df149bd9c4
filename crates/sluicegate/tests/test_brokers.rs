//! The test brokers themselves: topics, producing, reading back, faults, commits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluicegate_testing::{
    committed_offset, consumer_config, init_tracing, produce_records, unique_name, TestBroker,
    TestRecord,
};

/// What a consumer read: (partition, offset) -> (key, value, headers).
type Read = BTreeMap<(i32, i64), (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)>;

/// Reads `count` records from the given partitions from the beginning (assign, no group join).
async fn read_back(bootstrap: &str, topic: &str, partitions: &[i32], count: usize) -> Read {
    let config = consumer_config(bootstrap, &unique_name("reader"));
    let topic = topic.to_owned();
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("reader consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment
                .add_partition_offset(&topic, *partition, Offset::Beginning)
                .expect("assignment");
        }
        consumer.assign(&assignment).expect("assign");
        let mut read = Read::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while read.len() < count && Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.expect("consume");
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            read.insert(
                (message.partition(), message.offset()),
                (
                    message.key().map(<[u8]>::to_vec),
                    message.payload().unwrap_or_default().to_vec(),
                    headers,
                ),
            );
        }
        read
    })
    .await
    .expect("reader thread")
}

async fn produce_and_read_back(broker: TestBroker) {
    init_tracing();
    let name = broker.name();
    let topic = unique_name("brokers");
    broker.create_topic(&topic, 4).await;
    let bootstrap = broker.bootstrap_servers();

    let records = vec![
        TestRecord::to_partition(0, "zero-a").key("k0"),
        TestRecord::to_partition(0, "zero-b").header("trace", "t-1"),
        TestRecord::to_partition(2, "two-a"),
        TestRecord::to_partition(3, "three-a")
            .key("k3")
            .header("h1", "v1")
            .header("h2", ""),
        TestRecord::to_partition(2, "two-b"),
    ];
    let positions = produce_records(&bootstrap, &topic, records.clone()).await;
    assert_eq!(
        positions,
        vec![(0, 0), (0, 1), (2, 0), (3, 0), (2, 1)],
        "{name}: delivered positions"
    );

    let read = read_back(&bootstrap, &topic, &[0, 1, 2, 3], records.len()).await;
    let expected: Read = positions
        .iter()
        .zip(&records)
        .map(|(position, record)| {
            (
                *position,
                (
                    record.key.clone(),
                    record.value.clone(),
                    record.headers.clone(),
                ),
            )
        })
        .collect();
    assert_eq!(read, expected, "{name}: records read back");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_produces_and_reads_back() {
    produce_and_read_back(TestBroker::embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_produces_and_reads_back() {
    produce_and_read_back(TestBroker::kafka()).await;
}

async fn committed_offsets_are_read(broker: TestBroker) {
    init_tracing();
    let name = broker.name();
    let topic = unique_name("commits");
    let group = unique_name("group");
    broker.create_topic(&topic, 2).await;
    let bootstrap = broker.bootstrap_servers();

    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 1).await,
        None,
        "{name}: nothing committed yet"
    );

    sluicegate_testing::commit_offset(&bootstrap, &group, &topic, 1, 7).await;

    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 1).await,
        Some(7),
        "{name}: committed offset of partition 1"
    );
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        None,
        "{name}: partition 0 has no commit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_reads_committed_offsets() {
    committed_offsets_are_read(TestBroker::embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_reads_committed_offsets() {
    committed_offsets_are_read(TestBroker::kafka()).await;
}

/// Produces one record with a short delivery timeout; `Ok(offset)` or the error's text.
async fn produce_one(bootstrap: &str, topic: &str, timeout_ms: u32) -> Result<i64, String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", timeout_ms.to_string())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<(), _>::to(topic).partition(0).payload("x"),
            Duration::from_secs(1),
        )
        .await
        .map(|delivered| delivered.offset)
        .map_err(|(e, _)| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_broker_down_fails_produce_and_up_recovers() {
    init_tracing();
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    let topic = unique_name("faults");
    broker.create_topic(&topic, 4).await;
    let bootstrap = broker.bootstrap_servers();

    assert_eq!(produce_one(&bootstrap, &topic, 5_000).await, Ok(0));

    embedded.broker_down(1).expect("broker 1 down");
    let failed = produce_one(&bootstrap, &topic, 1_000).await;
    let error = failed.expect_err("produce must fail while the only broker is down");
    assert!(
        error.contains("timed out") || error.contains("MessageTimedOut"),
        "unexpected error: {error}"
    );

    embedded.broker_up(1).expect("broker 1 up");
    assert_eq!(
        produce_one(&bootstrap, &topic, 10_000).await,
        Ok(1),
        "produce after broker_up"
    );

    assert!(
        embedded.broker_down(42).is_err(),
        "an unknown broker id is an error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_request_errors_fail_produce_until_cleared() {
    use sluicegate::embedded::{ApiKey, BrokerError};

    init_tracing();
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    let topic = unique_name("request-errors");
    broker.create_topic(&topic, 1).await;
    let bootstrap = broker.bootstrap_servers();

    // A non-retriable error on Produce fails the delivery at once.
    embedded.push_request_errors(ApiKey::Produce, &[BrokerError::InvalidRecord; 3]);
    let error = produce_one(&bootstrap, &topic, 5_000)
        .await
        .expect_err("produce must fail with the injected error");
    assert!(error.contains("InvalidRecord"), "unexpected error: {error}");

    embedded.clear_request_errors(ApiKey::Produce);
    assert_eq!(produce_one(&bootstrap, &topic, 5_000).await, Ok(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_round_trip_time_delays_responses() {
    init_tracing();
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    let topic = unique_name("rtt");
    broker.create_topic(&topic, 1).await;
    let bootstrap = broker.bootstrap_servers();
    assert_eq!(produce_one(&bootstrap, &topic, 5_000).await, Ok(0));

    embedded
        .set_round_trip_time(1, Duration::from_millis(1500))
        .expect("set rtt");
    let started = Instant::now();
    assert_eq!(produce_one(&bootstrap, &topic, 10_000).await, Ok(1));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "a produce took {:?} with a 1.5 s round-trip time",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_create_topic_twice_is_an_error() {
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    embedded.create_topic("twice", 2).expect("first create");
    let error = embedded
        .create_topic("twice", 2)
        .expect_err("second create");
    assert!(error.to_string().contains("\"twice\""), "{error}");
}

/// The three-node Kafka: every partition of a new topic has three replicas, all in sync, its
/// leaders spread over the nodes, and records written with `acks=all` read back.
#[tokio::test(flavor = "multi_thread")]
async fn three_kafka_nodes_replicate_every_partition() {
    init_tracing();
    let cluster = sluicegate_testing::kafka_three_nodes();
    assert_eq!(cluster.nodes(), 3);
    assert_eq!(cluster.bootstrap_servers().split(',').count(), 3);
    let broker = TestBroker::Kafka(cluster);
    let topic = unique_name("replicated");
    broker.create_topic(&topic, 3).await;
    let bootstrap = broker.bootstrap_servers();
    let metadata_topic = topic.clone();
    let replicas = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = consumer_config(&bootstrap, &unique_name("metadata"))
            .create()
            .expect("metadata consumer");
        let metadata = consumer
            .fetch_metadata(Some(&metadata_topic), Duration::from_secs(10))
            .expect("metadata");
        let found = &metadata.topics()[0];
        found
            .partitions()
            .iter()
            .map(|partition| {
                (
                    partition.leader(),
                    partition.replicas().len(),
                    partition.isr().len(),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert!(
        replicas
            .iter()
            .all(|&(_, all, in_sync)| all == 3 && in_sync == 3),
        "three replicas in sync: {replicas:?}"
    );
    let leaders: std::collections::BTreeSet<i32> =
        replicas.iter().map(|&(leader, _, _)| leader).collect();
    assert_eq!(leaders.len(), 3, "one leader per node: {replicas:?}");

    let records: Vec<TestRecord> = (0..30)
        .map(|n| TestRecord::to_partition(n % 3, format!("r{n}")))
        .collect();
    let mut config = sluicegate_testing::producer_config(&broker.bootstrap_servers());
    config.set("acks", "all");
    let producer: FutureProducer = config.create().expect("producer");
    for record in &records {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(record.partition.unwrap_or(0))
                    .payload(&record.value),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged by all in-sync replicas");
    }
    let read = read_back(&broker.bootstrap_servers(), &topic, &[0, 1, 2], 30).await;
    assert_eq!(read.len(), 30);
}
