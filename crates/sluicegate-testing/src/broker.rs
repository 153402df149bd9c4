//! [`TestBroker`]: either broker behind one interface.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use sluicegate::EmbeddedBroker;

use crate::kafka::{kafka, KafkaCluster};

/// How long [`TestBroker::create_topic`] waits for a new topic to have leaders on Kafka.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker for an integration test: a fresh in-process mock cluster, or the Apache Kafka
/// shared by the test binary.
///
/// Tests that should hold on both brokers take a `TestBroker` and are called once with each:
///
/// ```no_run
/// use sluicegate_testing::{unique_name, TestBroker};
///
/// async fn round_trip(broker: TestBroker) {
///     let topic = unique_name("round-trip");
///     broker.create_topic(&topic, 4).await;
///     // ... produce to and consume from broker.bootstrap_servers()
/// }
///
/// # async fn run() {
/// round_trip(TestBroker::embedded()).await;
/// round_trip(TestBroker::kafka()).await;
/// # }
/// ```
#[derive(Debug)]
pub enum TestBroker {
    /// librdkafka's mock cluster, owned by this value (stopped when it is dropped).
    Embedded(EmbeddedBroker),
    /// The Apache Kafka of this test binary (see [`kafka()`]).
    Kafka(&'static KafkaCluster),
}

impl TestBroker {
    /// A fresh mock cluster with one broker.
    ///
    /// # Panics
    ///
    /// If librdkafka cannot start the mock cluster.
    pub fn embedded() -> TestBroker {
        TestBroker::embedded_with_brokers(1)
    }

    /// A fresh mock cluster with `brokers` brokers (ids `1..=brokers`).
    ///
    /// # Panics
    ///
    /// If `brokers < 1` or librdkafka cannot start the mock cluster.
    pub fn embedded_with_brokers(brokers: i32) -> TestBroker {
        match EmbeddedBroker::start(brokers) {
            Ok(broker) => TestBroker::Embedded(broker),
            Err(e) => panic!("cannot start the embedded test broker: {e}"),
        }
    }

    /// The Apache Kafka of this test binary, started on first use.
    ///
    /// # Panics
    ///
    /// As [`kafka()`]: if Kafka is not installed or does not start.
    pub fn kafka() -> TestBroker {
        TestBroker::Kafka(kafka())
    }

    /// `"embedded"` or `"kafka"`, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            TestBroker::Embedded(_) => "embedded",
            TestBroker::Kafka(_) => "kafka",
        }
    }

    /// The `bootstrap.servers` value that reaches the broker.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            TestBroker::Embedded(broker) => broker.bootstrap_servers(),
            TestBroker::Kafka(broker) => broker.bootstrap_servers(),
        }
    }

    /// The mock cluster, for fault injection; `None` on Kafka.
    pub fn as_embedded(&self) -> Option<&EmbeddedBroker> {
        match self {
            TestBroker::Embedded(broker) => Some(broker),
            TestBroker::Kafka(_) => None,
        }
    }

    /// Creates `topic` with `partitions` partitions and the broker's default replication factor
    /// (1 on the mock cluster and a single node, 3 on three Kafka nodes), and returns once
    /// every partition has a leader.
    ///
    /// The mock cluster has no CreateTopics API, so this goes through
    /// [`EmbeddedBroker::create_topic`] there, and through an admin client on Kafka.
    ///
    /// # Panics
    ///
    /// If the topic cannot be created (including when it already exists), or on Kafka if its
    /// partitions have no leaders within 30 s.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            TestBroker::Embedded(broker) => {
                if let Err(e) = broker.create_topic(topic, partitions) {
                    panic!("{e}");
                }
            }
            TestBroker::Kafka(broker) => {
                let bootstrap = broker.bootstrap_servers();
                create_topic_with_admin(&bootstrap, topic, partitions).await;
                let topic = topic.to_owned();
                let waited = tokio::task::spawn_blocking(move || {
                    wait_for_leaders(&bootstrap, &topic, partitions)
                })
                .await;
                match waited {
                    Ok(Ok(())) => {}
                    Ok(Err(message)) => panic!("kafka: {message}"),
                    Err(join) => panic!("kafka: waiting for topic leaders failed: {join}"),
                }
            }
        }
    }
}

async fn create_topic_with_admin(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
    {
        Ok(admin) => admin,
        Err(e) => panic!("cannot create an admin client for {bootstrap}: {e}"),
    };
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = match admin.create_topics([&new_topic], &options).await {
        Ok(results) => results,
        Err(e) => panic!("cannot create topic {topic:?} on {bootstrap}: {e}"),
    };
    for result in results {
        if let Err((name, code)) = result {
            panic!("cannot create topic {name:?} with {partitions} partition(s) on {bootstrap}: {code}");
        }
    }
}

/// Polls metadata (blocking) until `topic` has `partitions` partitions, each with a leader.
fn wait_for_leaders(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| format!("cannot create a metadata client for {bootstrap}: {e}"))?;
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    let mut last = String::from("no metadata yet");
    while Instant::now() < deadline {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => {
                let ready = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| {
                        t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none())
                    });
                if ready == Some(true) {
                    return Ok(());
                }
                last = format!("metadata not ready: {ready:?}");
            }
            Err(e) => last = format!("metadata request failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "topic {topic:?} on {bootstrap} did not get leaders for its {partitions} partition(s) \
         within {TOPIC_READY_TIMEOUT:?} ({last})"
    ))
}
