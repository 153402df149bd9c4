//! A whole pipeline on the embedded broker: key order, a batcher writing to a (pretend)
//! database, a failure handler, partition callbacks and shared state.
//!
//! Orders of one customer are handled one at a time and in order, while different customers
//! run concurrently. Each handled order is routed to the `ledger` batcher, which writes rows
//! in batches of up to 200, one partition per batch. Orders that cannot be parsed fail, reach
//! the failure handler with their reason, and are still committed past.
//!
//! Run: `cargo run -p sluicegate --example pipeline`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluicegate::pipeline::{BatcherOptions, Pipeline, ProcessingOrder};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 10_000;

/// What the handlers share: here, counters standing in for a database pool.
#[derive(Default)]
struct Ledger {
    rows_written: AtomicUsize,
    rejected: AtomicUsize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, PARTITIONS)?;
    produce_orders(&broker.bootstrap_servers())?;

    let options = ConsumerOptions::new(broker.bootstrap_servers(), "ledger", [TOPIC])
        .commit_interval(Duration::from_millis(200));
    let engine = ConsumerEngine::start(options).await?;
    let ledger = Arc::new(Ledger::default());

    let pipeline = Pipeline::builder(ledger.clone())
        .order(ProcessingOrder::Key)
        .concurrency(32)
        .handler_timeout(Duration::from_secs(5))
        .handle_message(|_ledger, message| async move {
            let value = message.data().value.as_deref().unwrap_or_default();
            let amount: u64 = std::str::from_utf8(value)?
                .strip_prefix("amount=")
                .ok_or("no amount")?
                .parse()?;
            tokio::time::sleep(Duration::from_micros(amount % 500)).await;
            Ok(message.put_batcher("ledger"))
        })
        .batcher(
            "ledger",
            BatcherOptions::new()
                .size(200)
                .timeout(Duration::from_millis(100))
                .concurrency(2),
        )
        .handle_batch(|ledger, batch| async move {
            // One INSERT of `batch.messages.len()` rows for partition `batch.key`.
            ledger
                .rows_written
                .fetch_add(batch.messages.len(), Ordering::Relaxed);
            Ok(())
        })
        .handle_failed(|ledger, failed| async move {
            for failure in &failed {
                eprintln!(
                    "{}/{} offset {}: {}",
                    failure.message.topic(),
                    failure.message.partition(),
                    failure.message.offset(),
                    failure.reason
                );
            }
            ledger.rejected.fetch_add(failed.len(), Ordering::Relaxed);
        })
        .on_partition_start(|partition| println!("started {partition}"))
        .on_partition_stop(|partition| println!("stopped {partition}"))
        .source(engine)
        .start()?;

    while pipeline.stats().processed + pipeline.stats().failed < RECORDS as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = pipeline.shutdown().await;
    println!(
        "{} rows written in {} batches, {} orders rejected",
        ledger.rows_written.load(Ordering::Relaxed),
        summary.stats.batches,
        ledger.rejected.load(Ordering::Relaxed),
    );
    for (partition, offset) in summary.sources.iter().flat_map(|source| &source.committed) {
        println!("committed {partition} up to offset {offset}");
    }
    Ok(())
}

/// Orders keyed by customer; every 1,000th one is malformed.
fn produce_orders(bootstrap_servers: &str) -> Result<(), Box<dyn std::error::Error>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()?;
    for n in 0..RECORDS {
        let key = format!("customer-{}", n % 100);
        let value = if n % 1_000 == 999 {
            "amount=?".to_string()
        } else {
            format!("amount={n}")
        };
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
            .map_err(|(error, _)| error)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}
