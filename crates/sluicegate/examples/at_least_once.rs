//! At-least-once consumption with per-partition streams, on the embedded broker.
//!
//! Every record is acknowledged after it is handled; the engine commits only offsets whose
//! every lower delivered record was acknowledged, so a crash re-delivers unfinished work and
//! never skips it.
//!
//! Run: `cargo run -p sluicegate --example at_least_once`

use std::time::Duration;

use futures_util::StreamExt;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, PARTITIONS)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()?;
    for n in 0..RECORDS {
        let key = format!("customer-{}", n % 100);
        let value = format!("order {n}");
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
            .map_err(|(error, _)| error)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10))?;

    let options = ConsumerOptions::new(broker.bootstrap_servers(), "order-audit", [TOPIC])
        .commit_interval(Duration::from_millis(200));
    let mut engine = ConsumerEngine::start(options).await?;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    engine.spawn_subscribers(done_tx, |mut partition, done| async move {
        let acks = partition.acknowledger();
        while let Some(record) = partition.next().await {
            // Handle the record, then acknowledge it.
            let _ = done.send(record.value.map_or(0, |value| value.len()));
            if let Err(error) = acks.ack(record.offset).await {
                eprintln!("{}: {error}", partition.partition());
            }
        }
    });
    let mut handled = 0;
    while handled < RECORDS {
        done_rx.recv().await;
        handled += 1;
    }
    let summary = engine.shutdown().await;
    println!("handled {handled} records");
    for (partition, offset) in &summary.committed {
        println!("committed {partition} up to offset {offset}");
    }
    Ok(())
}
