//! Retries through delayed retry topics, on the embedded broker: a flaky handler succeeds on
//! its first retry, a broken payload goes straight to the dead-letter topic, and a record
//! that always fails ends there after two retries.
//!
//! Run: `cargo run -p sluicegate --example retry`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluicegate::pipeline::{Permanent, Pipeline};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use sluicegate::retry::{self, RetryPolicy, RetryTask, Stages};
use sluicegate::{ConsumerOptions, EmbeddedBroker};

const TOPIC: &str = "payments";
const GROUP: &str = "billing";

/// Counts successful handlings.
#[derive(Default)]
struct Ledger {
    booked: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, 2)?;

    let pipeline = Pipeline::builder(Ledger::default()).handle_message(
        |ledger: Arc<Ledger>, message| async move {
            let payload = message.data().value.clone().unwrap_or_default();
            let attempt = retry::attempt(message.data());
            match payload.as_slice() {
                b"garbage" => return Err(Permanent::new("not a payment").into()),
                b"flaky" if attempt == 1 => return Err("payment service busy".into()),
                b"doomed" => return Err("card declined".into()),
                _ => {}
            }
            ledger.booked.fetch_add(1, Ordering::Relaxed);
            Ok(message)
        },
    );
    let task = RetryTask::new(
        ConsumerOptions::new(broker.bootstrap_servers(), GROUP, [TOPIC]),
        RetryPolicy::delays([Duration::from_millis(500), Duration::from_secs(1)])?,
        pipeline,
    );
    // Kafka brokers get the retry and dead-letter topics created by the task; the embedded
    // broker cannot create topics through the admin API, so create them here.
    let topics = task.topics()[0].clone();
    for topic in [topics.retry(1), topics.retry(2), topics.dead_letter()] {
        broker.create_topic(&topic, 2)?;
    }
    let running = task.start(&Stages::All).await?;

    let producer =
        Producer::new(ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers()));
    for payload in ["ok", "flaky", "garbage", "doomed", "ok"] {
        producer
            .produce(TOPIC, ProduceRecord::new(payload.as_bytes()))
            .await?;
    }
    producer.shutdown(Duration::from_secs(5)).await;

    let started = Instant::now();
    while running.stats().dead_lettered < 2 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary = running.shutdown().await;
    println!(
        "{} retried, {} dead-lettered (to {})",
        summary.retried,
        summary.dead_lettered,
        topics.dead_letter()
    );
    for (stage, stage_summary) in &summary.stages {
        println!(
            "stage {stage}: {} processed, {} failed",
            stage_summary.stats.processed, stage_summary.stats.failed
        );
    }
    // flaky: retried once; doomed: retried twice, then dead-lettered; garbage: dead-lettered.
    assert_eq!((summary.retried, summary.dead_lettered), (3, 2));
    Ok(())
}
