//! Manual commits: the application decides when acknowledged work is committed, like
//! KafkaEx's `trigger_commit`. Commits never pass an unacknowledged record.
//!
//! Run: `cargo run -p sluicegate --example manual_commit`

use std::time::Duration;

use futures_util::StreamExt;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluicegate::{CommitMode, CommitStrategy, ConsumerEngine, ConsumerOptions, EmbeddedBroker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic("payments", 1)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()?;
    for n in 0..100 {
        let value = format!("payment {n}");
        producer
            .send(BaseRecord::<(), _>::to("payments").payload(&value))
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(10))?;

    let options = ConsumerOptions::new(broker.bootstrap_servers(), "ledger", ["payments"])
        .commit_strategy(CommitStrategy::Manual);
    let mut engine = ConsumerEngine::start(options).await?;
    let mut partition = engine
        .next_partition()
        .await
        .ok_or("no partition assigned")?;
    let acks = partition.acknowledger();
    let mut batch = Vec::new();
    while let Some(record) = partition.next().await {
        batch.push(record.offset);
        if batch.len() == 25 {
            // Write the batch somewhere durable, then acknowledge and commit it.
            for offset in batch.drain(..) {
                acks.ack(offset).await?;
            }
            let committed = acks.commit(i64::MAX, CommitMode::Sync).await?;
            println!("committed up to {committed:?}");
            if committed == Some(100) {
                break;
            }
        }
    }
    drop(partition);
    engine.shutdown().await;
    Ok(())
}
