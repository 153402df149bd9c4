//! Typed records, on the embedded broker: orders are written as JSON through an `Encode`,
//! the pipeline decodes each into an `Order` before its handler runs, and a record that is
//! not an order never reaches the handler: it fails as a decode error.
//!
//! Run: `cargo run -p sluicegate --features json --example typed_json`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluicegate::codec::{Encode, Json};
use sluicegate::pipeline::{FailureKind, Pipeline};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker};

const TOPIC: &str = "orders";

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    cents: u64,
}

/// What the handlers saw.
#[derive(Default)]
struct Books {
    revenue_cents: AtomicU64,
    refused: Mutex<Vec<(FailureKind, String)>>,
}

#[tokio::main]
async fn main() -> Result<(), sluicegate::pipeline::BoxError> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, 2)?;

    let producer =
        Producer::new(ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers()));
    let json = Json::<Order>::new();
    for id in 1..=3 {
        let bytes = json.encode(&Order { id, cents: 250 })?;
        producer.produce(TOPIC, ProduceRecord::new(&bytes)).await?;
    }
    // Not an order: `cents` is text.
    producer
        .produce(TOPIC, ProduceRecord::new(br#"{"id":4,"cents":"lots"}"#))
        .await?;
    producer.shutdown(Duration::from_secs(5)).await;

    let engine = ConsumerEngine::start(ConsumerOptions::new(
        broker.bootstrap_servers(),
        "books",
        [TOPIC],
    ))
    .await?;
    let books = Arc::new(Books::default());
    let pipeline = Pipeline::builder(books.clone())
        .handle_decoded(
            Json::<Order>::new(),
            |books, message, order: Order| async move {
                println!("order {} for {} cents", order.id, order.cents);
                books
                    .revenue_cents
                    .fetch_add(order.cents, Ordering::Relaxed);
                Ok(message)
            },
        )
        .handle_failed(|books, failed| async move {
            for failure in failed {
                println!("refused: {}", failure.reason);
                let refused = (failure.reason.kind, failure.reason.description);
                books.refused.lock().unwrap().push(refused);
            }
        })
        .source(engine)
        .start()?;

    let started = Instant::now();
    while pipeline.stats().processed + pipeline.stats().failed < 4
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = pipeline.shutdown().await;
    assert_eq!(books.revenue_cents.load(Ordering::Relaxed), 750);
    assert_eq!((summary.stats.processed, summary.stats.failed), (3, 1));
    let refused = books.refused.lock().unwrap();
    assert_eq!(refused[0].0, FailureKind::Decode);
    assert!(
        refused[0].1.contains("invalid type: string \"lots\""),
        "{refused:?}"
    );
    println!("3 orders booked, 1 record refused as not an order");
    Ok(())
}
