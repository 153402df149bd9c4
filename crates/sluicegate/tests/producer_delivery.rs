//! The producer against real brokers: every codec round-trips bytes and headers, keys land
//! where the Java client puts them, awaited deliveries carry the real offsets, and failed
//! deliveries reach the caller (awaited) or the counters (fire and forget).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, options};
use sluicegate::embedded::{ApiKey, BrokerError};
use sluicegate::producer::{
    java_partition, Compression, ProduceError, ProduceRecord, Producer, ProducerOptions,
};
use sluicegate::{ConsumerEngine, Header, Record};
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(30);

fn producer(broker: &TestBroker) -> ProducerOptions {
    ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers())
}

/// Reads `count` records of `topic` from the beginning through the consumer engine.
async fn read_back(broker: &TestBroker, topic: &str, count: usize) -> Vec<Record> {
    let group = unique_name("read-back");
    let mut engine = ConsumerEngine::start(options(broker, &group, topic))
        .await
        .unwrap();
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = records.clone();
    engine.spawn_subscribers(sink, |mut stream, sink| async move {
        let acks = stream.acknowledger();
        while let Some(batch) = stream.next_batch(500).await {
            let offsets: Vec<_> = batch.iter().map(|record| record.offset).collect();
            sink.lock().unwrap().extend(batch);
            let _ = acks.ack_many(offsets).await;
        }
    });
    eventually(
        &format!("{count} records of {topic} read back"),
        WAIT,
        || async { records.lock().unwrap().len() >= count },
    )
    .await;
    engine.shutdown().await;
    let mut records = std::mem::take(&mut *records.lock().unwrap());
    records.sort_by_key(|record| (record.partition, record.offset));
    records
}

async fn every_codec_round_trips_bytes_and_headers(broker: TestBroker) {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for codec in codecs {
        let topic = unique_name(&format!("codec-{}", codec.name()));
        broker.create_topic(&topic, 1).await;
        let producer = Producer::new(producer(&broker).compression(codec));
        // Compressible and incompressible values, an empty one, and every byte value.
        let values: Vec<Vec<u8>> = vec![
            b"hello".repeat(200),
            (0..=255u8).collect(),
            Vec::new(),
            (0..5_000u32)
                .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ];
        for (n, value) in values.iter().enumerate() {
            let number = n.to_string();
            let record = ProduceRecord::new(value)
                .key(b"k")
                .header("n", Some(number.as_bytes()))
                .header("null", None)
                .header("binary", Some(&[0, 255, 7]));
            producer.produce(&topic, record).await.unwrap();
        }
        let read = read_back(&broker, &topic, values.len()).await;
        let name = broker.name();
        assert_eq!(read.len(), values.len(), "{name} {codec:?}");
        for (n, (record, value)) in read.iter().zip(&values).enumerate() {
            assert_eq!(
                record.value.as_deref(),
                Some(&value[..]),
                "{name} {codec:?} record {n}"
            );
            assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
            assert_eq!(
                record.headers,
                vec![
                    Header {
                        key: "n".into(),
                        value: Some(n.to_string().into_bytes())
                    },
                    Header {
                        key: "null".into(),
                        value: None
                    },
                    Header {
                        key: "binary".into(),
                        value: Some(vec![0, 255, 7])
                    },
                ],
                "{name} {codec:?} record {n}"
            );
        }
        assert_eq!(producer.shutdown(WAIT).await.undelivered, 0);
    }
}

async fn keys_land_where_the_java_client_puts_them(broker: TestBroker) {
    const PARTITIONS: i32 = 7;
    let topic = unique_name("murmur2");
    broker.create_topic(&topic, PARTITIONS).await;
    let producer = Producer::new(producer(&broker));
    let keys: Vec<String> = (0..200).map(|n| format!("customer-{n}")).collect();
    let mut delivered = BTreeMap::new();
    for key in &keys {
        let delivery = producer
            .produce(&topic, ProduceRecord::new(b"x").key(key.as_bytes()))
            .await
            .unwrap();
        assert_eq!(
            delivery.partition,
            java_partition(key.as_bytes(), PARTITIONS),
            "{}: key {key}",
            broker.name()
        );
        delivered.insert(key.clone(), delivery);
    }
    let spread: std::collections::BTreeSet<_> = delivered.values().map(|d| d.partition).collect();
    assert_eq!(
        spread.len(),
        PARTITIONS as usize,
        "keys reach every partition"
    );
    // The delivery results are the real positions: reading back finds each key there.
    for record in read_back(&broker, &topic, keys.len()).await {
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        let delivery = delivered[&key];
        assert_eq!(
            (record.partition, record.offset),
            (delivery.partition, delivery.offset),
            "{}: key {key}",
            broker.name()
        );
    }
    producer.shutdown(WAIT).await;
}

async fn acks_all_deliveries_carry_consecutive_offsets(broker: TestBroker) {
    let topic = unique_name("acks-all");
    broker.create_topic(&topic, 1).await;
    let producer = Producer::new(producer(&broker));
    let mut offsets = Vec::new();
    for n in 0..50 {
        let value = format!("{n}");
        let delivery = producer
            .produce(&topic, ProduceRecord::new(value.as_bytes()).partition(0))
            .await
            .unwrap();
        offsets.push(delivery.offset);
    }
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>(), "{}", broker.name());
    let stats = producer.shutdown(WAIT).await.stats;
    assert_eq!((stats.sent, stats.delivered, stats.failed), (50, 50, 0));
}

on_both_brokers!(
    every_codec_round_trips_bytes_and_headers,
    keys_land_where_the_java_client_puts_them,
    acks_all_deliveries_carry_consecutive_offsets,
);

/// The mock cluster refuses produce requests until the delivery timeout passes: the awaited
/// form gets the error, the fire-and-forget form counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_reach_the_caller_or_the_counters() {
    init_tracing();
    let broker = TestBroker::embedded();
    let topic = unique_name("refused");
    broker.create_topic(&topic, 1).await;
    let embedded = broker.as_embedded().unwrap();
    let producer = Producer::new(
        producer(&broker)
            .delivery_timeout(Duration::from_millis(1_500))
            .idempotence(false)
            .librdkafka("retry.backoff.ms", "50"),
    );
    // Warm up: metadata and a connection, so the failures below are the produce requests'.
    producer
        .produce(&topic, ProduceRecord::new(b"warm"))
        .await
        .unwrap();
    embedded.push_request_errors(ApiKey::Produce, &[BrokerError::NotEnoughReplicas; 500]);

    let awaited = producer
        .produce(&topic, ProduceRecord::new(b"awaited"))
        .await;
    match awaited {
        Err(ProduceError::Delivery {
            topic: failed,
            source,
        }) => {
            assert_eq!(failed, topic);
            // librdkafka retries the refusal until the delivery timeout; it reports either the
            // broker's last refusal or the timeout, depending on which comes first. Neither
            // is permanent: the record could be delivered later.
            let code = source.code();
            assert!(
                matches!(
                    code.as_deref(),
                    Some("NotEnoughReplicas" | "MessageTimedOut")
                ),
                "{code:?}: {source}"
            );
            assert!(!source.is_permanent(), "{source}");
        }
        other => panic!("expected a delivery failure, got {other:?}"),
    }
    let before = producer.stats().failed;
    for n in 0..5 {
        producer
            .produce_and_forget(&topic, ProduceRecord::new(format!("{n}").as_bytes()))
            .await
            .expect("buffered");
    }
    eventually("fire-and-forget failures counted", WAIT, || async {
        producer.stats().failed == before + 5
    })
    .await;

    embedded.clear_request_errors(ApiKey::Produce);
    producer
        .produce(&topic, ProduceRecord::new(b"after"))
        .await
        .unwrap();
    assert_eq!(producer.shutdown(WAIT).await.undelivered, 0);
}
