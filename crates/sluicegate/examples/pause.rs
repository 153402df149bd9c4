//! Pausing, on the embedded broker: a handler trips a circuit breaker when its downstream
//! goes down (the partition pauses, without leaving the group) and a watcher resumes it once
//! the downstream is back; a flaky call backs off and runs again instead of failing
//! (pause-with-backoff). Every record is handled once, in order.
//!
//! Run: `cargo run -p sluicegate --example pause`

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluicegate::pipeline::{Message, PauseOnFailure, Pipeline};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker};

const TOPIC: &str = "payments";

/// The downstream: whether it is up, how often it timed out, what it booked.
#[derive(Default)]
struct Ledger {
    down: AtomicBool,
    timeouts: AtomicU32,
    booked: Mutex<Vec<String>>,
    /// Records handled while the breaker was open (there must be none).
    while_down: AtomicU32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, 1)?;
    let producer =
        Producer::new(ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers()));
    for payment in ["p1", "p2", "outage", "p3", "flaky", "p4"] {
        producer
            .produce(TOPIC, ProduceRecord::new(payment.as_bytes()))
            .await?;
    }
    producer.shutdown(Duration::from_secs(5)).await;

    let ledger = Arc::new(Ledger::default());
    let engine = ConsumerEngine::start(ConsumerOptions::new(
        broker.bootstrap_servers(),
        "billing",
        [TOPIC],
    ))
    .await?;
    let pipeline = Pipeline::builder(ledger.clone())
        // A timeout is worth waiting for: back off 50 ms, 100 ms... and try again.
        .pause_on_failure(PauseOnFailure::new(
            Duration::from_millis(50),
            Duration::from_secs(1),
        ))
        .handle_message(|ledger, message: Message| async move {
            let payment = String::from_utf8(message.data().value.clone().unwrap_or_default())?;
            if payment == "outage" && !ledger.down.swap(true, Ordering::SeqCst) {
                // The downstream just went down: trip the breaker for this partition, and
                // let a watcher resume it once the downstream answers again.
                let breaker = message.pause_switch().ok_or("no engine")?.clone();
                breaker.pause();
                println!("breaker open at offset {}", message.offset());
                let watched = ledger.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    watched.down.store(false, Ordering::SeqCst);
                    println!("downstream back: breaker closed");
                    breaker.resume();
                });
            }
            if payment != "outage" && ledger.down.load(Ordering::SeqCst) {
                ledger.while_down.fetch_add(1, Ordering::SeqCst);
            }
            if payment == "flaky" && ledger.timeouts.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err("the ledger timed out".into());
            }
            ledger.booked.lock().unwrap().push(payment);
            Ok(message)
        })
        .source(engine)
        .start()?;

    let started = Instant::now();
    while pipeline.stats().processed < 6 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = pipeline.shutdown().await;
    let booked = ledger.booked.lock().unwrap().clone();
    println!("booked {booked:?}");
    assert_eq!(booked, ["p1", "p2", "outage", "p3", "flaky", "p4"]);
    assert_eq!((summary.stats.processed, summary.stats.failed), (6, 0));
    assert_eq!(
        ledger.timeouts.load(Ordering::SeqCst),
        3,
        "two backoffs, then success"
    );
    assert_eq!(
        ledger.while_down.load(Ordering::SeqCst),
        0,
        "nothing ran while open"
    );
    Ok(())
}
