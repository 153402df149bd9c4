//! Producing with backpressure, on the embedded broker: a small buffer against a slow broker
//! makes producing wait instead of growing memory, and shutdown flushes what is buffered.
//!
//! Run: `cargo run -p sluicegate --example producer`

use std::time::{Duration, Instant};

use sluicegate::producer::{java_partition, ProduceRecord, Producer, ProducerOptions};
use sluicegate::EmbeddedBroker;

const TOPIC: &str = "payments";
const PARTITIONS: i32 = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, PARTITIONS)?;
    let producer = Producer::new(
        ProducerOptions::new()
            .bootstrap_servers(broker.bootstrap_servers())
            .buffer_records(1_000),
    );

    // The awaited form: the broker's answer, where the Java client would put the key too.
    let delivery = producer
        .produce(TOPIC, ProduceRecord::new(b"first").key(b"customer-7"))
        .await?;
    assert_eq!(
        delivery.partition,
        java_partition(b"customer-7", PARTITIONS)
    );
    println!("first record at {}:{}", delivery.partition, delivery.offset);

    // A slow broker: every answer takes 200 ms. The buffer of 1,000 records fills and
    // producing waits for room; memory stays bounded.
    broker.set_round_trip_time(EmbeddedBroker::ALL_BROKERS, Duration::from_millis(200))?;
    let started = Instant::now();
    let mut most_in_flight = 0;
    for n in 0..20_000 {
        let key = format!("customer-{}", n % 100);
        producer
            .produce_and_forget(TOPIC, ProduceRecord::new(b"payment").key(key.as_bytes()))
            .await?;
        most_in_flight = most_in_flight.max(producer.in_flight());
    }
    println!(
        "20,000 records buffered in {:?}, never more than {most_in_flight} waiting or in flight",
        started.elapsed()
    );

    let report = producer.shutdown(Duration::from_secs(30)).await;
    println!(
        "shutdown: {} delivered, {} failed, {} undelivered",
        report.stats.delivered, report.stats.failed, report.undelivered
    );
    Ok(())
}
