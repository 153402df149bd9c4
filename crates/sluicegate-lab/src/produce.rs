//! Filling a topic with sequence-numbered records (a [`ProducePlan`]), as fast as librdkafka's
//! producer goes: a plain rdkafka producer, so a bench's topic is filled the same way whatever
//! it measures. (`sluice demo` fills through the library's producer instead.)
//!
//! Blocking: run it on a thread of its own (or `spawn_blocking`), never on a runtime worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use sluicegate_cli::tool::payload::{self, ProducePlan, ProduceReport};

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .first_error
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Produces the plan and waits until every record is acknowledged by the broker;
/// `on_progress(delivered)` is called about every 100 ms.
pub fn produce(
    plan: &ProducePlan,
    mut on_progress: impl FnMut(u64),
) -> anyhow::Result<ProduceReport> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &plan.bootstrap_servers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "65536")
        .set("message.timeout.ms", "120000")
        .create_with_context(Deliveries::default())
        .context("could not create the producer")?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut value = Vec::with_capacity(plan.record_bytes);
    for (partition, sequence) in plan.records() {
        payload::fill(&mut value, sequence, plan.record_bytes);
        send(&producer, &plan.topic, partition, &value)?;
        if last_report.elapsed() >= Duration::from_millis(100) {
            producer.poll(Duration::ZERO);
            on_progress(producer.context().delivered.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
    }
    let total = plan.total();
    loop {
        match producer.flush(Duration::from_millis(100)) {
            Ok(()) => break,
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                on_progress(producer.context().delivered.load(Ordering::Relaxed));
            }
            Err(error) => return Err(error).context("flushing the producer"),
        }
    }
    let deliveries = producer.context();
    let delivered = deliveries.delivered.load(Ordering::Relaxed);
    on_progress(delivered);
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 || delivered != total {
        let first = deliveries
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_else(|| "no error reported".to_owned());
        bail!(
            "producing to `{}`: {delivered} of {total} records delivered, {failed} failed (first error: {first})",
            plan.topic
        );
    }
    Ok(ProduceReport {
        delivered,
        elapsed: started.elapsed(),
    })
}

/// Enqueues one record, serving delivery reports while the local queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    partition: i32,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<(), [u8]>::to(topic)
        .partition(partition)
        .payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => {
                return Err(error)
                    .with_context(|| format!("could not produce to {topic}/{partition}"));
            }
        }
    }
}
