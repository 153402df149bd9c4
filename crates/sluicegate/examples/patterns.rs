//! Topic patterns, on the embedded broker: one engine reads every topic matching
//! `^orders-.*`, a topic created after it started included, and a start position keyed by a
//! pattern skips the records written before the start on the `orders-eu-*` topics.
//!
//! Run: `cargo run -p sluicegate --example patterns`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluicegate::pipeline::Pipeline;
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker, StartPosition};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    for topic in ["orders-us", "orders-eu-west", "refunds"] {
        broker.create_topic(topic, 1)?;
    }
    let producer =
        Producer::new(ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers()));
    for topic in ["orders-us", "orders-eu-west", "refunds"] {
        producer
            .produce(topic, ProduceRecord::new(b"before the start"))
            .await?;
    }

    let options = ConsumerOptions::new(broker.bootstrap_servers(), "audit", ["^orders-.*"])
        .topic_start_position("^orders-eu-.*", StartPosition::Latest)
        // Look for new topics every second (the default with a pattern is 10 s).
        .librdkafka("topic.metadata.refresh.interval.ms", "1000");
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let pipeline = Pipeline::builder(seen.clone())
        .handle_message(|seen, message| async move {
            let value = String::from_utf8(message.data().value.clone().unwrap_or_default())?;
            let mut seen = seen.lock().unwrap();
            seen.entry(message.topic().to_owned())
                .or_default()
                .push(value);
            Ok(message)
        })
        .source(ConsumerEngine::start(options).await?)
        .start()?;

    // Once the first topics are assigned, a new matching topic appears.
    let started = Instant::now();
    while !seen.lock().unwrap().contains_key("orders-us")
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.create_topic("orders-apac", 1)?;
    for topic in ["orders-eu-west", "orders-apac", "refunds"] {
        producer
            .produce(topic, ProduceRecord::new(b"after"))
            .await?;
    }
    producer.shutdown(Duration::from_secs(5)).await;
    while seen.lock().unwrap().len() < 3 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pipeline.shutdown().await;

    let seen = seen.lock().unwrap().clone();
    println!("{seen:?}");
    let expected: BTreeMap<String, Vec<String>> = [
        ("orders-us", vec!["before the start"]),
        ("orders-eu-west", vec!["after"]), // Latest, keyed by its pattern
        ("orders-apac", vec!["after"]),    // created after the start
    ]
    .into_iter()
    .map(|(topic, values)| {
        (
            topic.to_owned(),
            values.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(seen, expected, "refunds does not match the pattern");
    Ok(())
}
