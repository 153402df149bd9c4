//! Filling a topic with sequence-numbered records (a [`ProducePlan`]), through the library's
//! buffered [`Producer`], as fast as it takes them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};

use crate::tool::payload::{self, ProducePlan, ProduceReport};

/// How long a record may take to be delivered, retries included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Produces the plan and waits until every record is acknowledged by the broker;
/// `on_progress(delivered)` is called about every 100 ms.
pub async fn fill(
    plan: &ProducePlan,
    mut on_progress: impl FnMut(u64),
) -> anyhow::Result<ProduceReport> {
    let producer = Producer::new(
        ProducerOptions::new()
            .bootstrap_servers(&plan.bootstrap_servers)
            .delivery_timeout(DELIVERY_TIMEOUT)
            // Plain acks-all writes, as librdkafka's default producer makes them: idempotence
            // costs the mock cluster two thirds of its speed.
            .idempotence(false),
    );
    producer.start().context("could not create the producer")?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut value = Vec::with_capacity(plan.record_bytes);
    for (partition, sequence) in plan.records() {
        payload::fill(&mut value, sequence, plan.record_bytes);
        let record = ProduceRecord::new(&value).partition(partition);
        if let Err(error) = producer.produce_and_forget(&plan.topic, record).await {
            producer.shutdown(Duration::ZERO).await;
            return Err(error)
                .with_context(|| format!("could not produce to {}/{partition}", plan.topic));
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            on_progress(producer.stats().delivered);
            last_report = Instant::now();
        }
    }
    on_progress(producer.stats().delivered);
    // Flushes what is buffered (at most the buffer's 20,000 records): every record is
    // delivered or failed within the delivery timeout.
    let report = producer
        .shutdown(DELIVERY_TIMEOUT + Duration::from_secs(5))
        .await;
    let total = plan.total();
    let delivered = report.stats.delivered;
    on_progress(delivered);
    let failed = report.stats.failed + report.undelivered as u64;
    if failed > 0 || delivered != total {
        // The producer logged each failure's reason as a warning.
        bail!(
            "producing to `{}`: {delivered} of {total} records delivered, {failed} failed (first error: see the warnings above)",
            plan.topic
        );
    }
    Ok(ProduceReport {
        delivered,
        elapsed: started.elapsed(),
    })
}
