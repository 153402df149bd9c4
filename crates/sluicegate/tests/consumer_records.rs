//! Records reach the application whole: key, value, headers in order, timestamp, position.

mod common;

use std::time::Duration;

use common::{next_record, options};
use sluicegate::{ConsumerEngine, Header};
use sluicegate_testing::{init_tracing, produce_records, unique_name, TestBroker, TestRecord};

async fn records_arrive_with_every_field(broker: TestBroker) {
    let topic = unique_name("fields");
    broker.create_topic(&topic, 1).await;
    let sent = vec![
        TestRecord::keyed("customer-7", "first")
            .header("trace", "abc")
            .header("attempt", "1"),
        TestRecord::value("no key, no headers"),
        TestRecord::keyed("", vec![0u8, 159, 146, 150]),
    ];
    let positions = produce_records(&broker.bootstrap_servers(), &topic, sent.clone()).await;
    let mut engine = ConsumerEngine::start(options(&broker, &unique_name("fields"), &topic))
        .await
        .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    for (expected, (partition, offset)) in sent.iter().zip(positions) {
        let record = next_record(&mut stream, Duration::from_secs(30)).await;
        assert_eq!(&*record.topic, topic.as_str());
        assert_eq!((record.partition, record.offset), (partition, offset));
        assert_eq!(record.key, expected.key);
        assert_eq!(record.value.as_deref(), Some(expected.value.as_slice()));
        let headers: Vec<Header> = expected
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: key.clone(),
                value: Some(value.clone()),
            })
            .collect();
        assert_eq!(record.headers, headers);
        let timestamp = record.timestamp_ms.expect("the broker reports a timestamp");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (now_ms - 600_000..=now_ms).contains(&timestamp),
            "timestamp {timestamp}"
        );
        stream.acknowledger().ack(record.offset).await.unwrap();
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_with_every_field_on_the_embedded_broker() {
    init_tracing();
    records_arrive_with_every_field(TestBroker::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_with_every_field_on_kafka() {
    init_tracing();
    records_arrive_with_every_field(TestBroker::kafka()).await;
}
