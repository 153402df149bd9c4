//! Dead letters in code, on the embedded broker: a retry task hands each dead letter to its
//! dead-letter handler (here, an alert that records where the record came from and why it
//! failed), once the record's retries are spent or its failure is permanent.
//!
//! Run: `cargo run -p sluicegate --example dead_letter_hook`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluicegate::pipeline::{BoxError, Handler, Permanent, Pipeline};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use sluicegate::retry::{DeadLetter, RetryPolicy, RetryTask, Stages};
use sluicegate::{ConsumerOptions, EmbeddedBroker};

const TOPIC: &str = "payments";

/// An alert per dead letter: where it was first read, how often it was handled, and why it
/// failed last.
#[derive(Clone, Default)]
struct Alert {
    sent: Arc<Mutex<Vec<String>>>,
}

impl Handler<DeadLetter> for Alert {
    async fn handle(&self, dead: &DeadLetter) -> Result<(), BoxError> {
        let history = dead
            .history
            .as_ref()
            .ok_or("a dead letter without its history")?;
        let alert = format!(
            "{}/{}@{} gave up after {} handling(s): {}",
            history.original_topic,
            history.original_partition,
            history.original_offset,
            history.attempt - 1,
            history.error
        );
        println!("ALERT {alert}");
        self.sent.lock().unwrap().push(alert);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, 1)?;

    let pipeline = Pipeline::builder(()).handle_message(|_, message| async move {
        match message.data().value.as_deref() {
            Some(b"garbage") => Err(Permanent::new("not a payment").into()),
            Some(b"declined") => Err("card declined".into()),
            _ => Ok(message),
        }
    });
    let alert = Alert::default();
    let task = RetryTask::new(
        ConsumerOptions::new(broker.bootstrap_servers(), "billing", [TOPIC]),
        RetryPolicy::delays([Duration::from_millis(300)])?,
        pipeline,
    )
    .dead_letter_handler(alert.clone());
    // The embedded broker cannot create topics through the admin API; on Kafka the task creates them.
    let topics = task.topics()[0].clone();
    for topic in [topics.retry(1), topics.dead_letter()] {
        broker.create_topic(&topic, 1)?;
    }
    let running = task.start(&Stages::All).await?;

    let producer =
        Producer::new(ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers()));
    for payload in ["ok", "garbage", "declined", "ok"] {
        producer
            .produce(TOPIC, ProduceRecord::new(payload.as_bytes()))
            .await?;
    }
    producer.shutdown(Duration::from_secs(5)).await;

    let started = Instant::now();
    while alert.sent.lock().unwrap().len() < 2 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = running.shutdown().await;
    let sent = alert.sent.lock().unwrap();
    assert_eq!(summary.dead_lettered, 2);
    assert_eq!(
        *sent,
        [
            "payments/0@1 gave up after 1 handling(s): message handler permanent error: not a payment",
            "payments/0@2 gave up after 2 handling(s): message handler error: card declined",
        ]
    );
    println!("2 dead letters, 2 alerts");
    Ok(())
}
