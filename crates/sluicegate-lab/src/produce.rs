//! Filling a topic with sequence-numbered records, as fast as librdkafka's producer goes: a
//! plain rdkafka producer, so a bench's topic is filled the same way whatever it measures.
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

use crate::payload;

/// What to produce: `counts[i]` records to partition `partitions[i]`, numbered from
/// `first_sequence` on, interleaved over the partitions.
#[derive(Debug, Clone)]
pub struct ProducePlan {
    pub bootstrap_servers: String,
    pub topic: String,
    /// (partition, records to add to it).
    pub partitions: Vec<(i32, u64)>,
    pub first_sequence: u64,
    pub record_bytes: usize,
}

impl ProducePlan {
    /// Records the plan produces.
    pub fn total(&self) -> u64 {
        self.partitions.iter().map(|(_, count)| count).sum()
    }
}

/// How producing went.
#[derive(Debug, Clone, Copy)]
pub struct ProduceReport {
    pub delivered: u64,
}

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
    let mut last_report = Instant::now();
    let mut value = Vec::with_capacity(plan.record_bytes);
    let mut remaining: Vec<(i32, u64)> = plan.partitions.clone();
    remaining.retain(|(_, left)| *left > 0);
    let mut sequence = plan.first_sequence;
    while !remaining.is_empty() {
        for (partition, left) in remaining.iter_mut() {
            payload::fill(&mut value, sequence, plan.record_bytes);
            send(&producer, &plan.topic, *partition, &value)?;
            sequence += 1;
            *left -= 1;
            if last_report.elapsed() >= Duration::from_millis(100) {
                producer.poll(Duration::ZERO);
                on_progress(producer.context().delivered.load(Ordering::Relaxed));
                last_report = Instant::now();
            }
        }
        remaining.retain(|(_, left)| *left > 0);
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
    Ok(ProduceReport { delivered })
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
