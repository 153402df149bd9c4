//! Filling a topic with sequence-numbered records, through the library's buffered
//! [`Producer`], as fast as it takes them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};

use crate::payload;

/// How long a record may take to be delivered, retries included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

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
    /// `records` records spread evenly over partitions `0..partitions` (record `n` goes to
    /// partition `n % partitions`), numbered from 0.
    pub fn even(
        bootstrap_servers: &str,
        topic: &str,
        partitions: i32,
        records: u64,
        record_bytes: usize,
    ) -> Self {
        let per_partition = |partition: i32| {
            let partition = partition as u64;
            let partitions = partitions as u64;
            records / partitions + u64::from(partition < records % partitions)
        };
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic: topic.to_owned(),
            partitions: (0..partitions).map(|p| (p, per_partition(p))).collect(),
            first_sequence: 0,
            record_bytes,
        }
    }

    pub fn total(&self) -> u64 {
        self.partitions.iter().map(|(_, count)| count).sum()
    }
}

/// How producing went.
#[derive(Debug, Clone, Copy)]
pub struct ProduceReport {
    pub delivered: u64,
    pub elapsed: Duration,
}

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
    let mut remaining: Vec<(i32, u64)> = plan.partitions.clone();
    remaining.retain(|(_, left)| *left > 0);
    let mut sequence = plan.first_sequence;
    while !remaining.is_empty() {
        for (partition, left) in remaining.iter_mut() {
            payload::fill(&mut value, sequence, plan.record_bytes);
            let record = ProduceRecord::new(&value).partition(*partition);
            if let Err(error) = producer.produce_and_forget(&plan.topic, record).await {
                producer.shutdown(Duration::ZERO).await;
                return Err(error)
                    .with_context(|| format!("could not produce to {}/{partition}", plan.topic));
            }
            sequence += 1;
            *left -= 1;
            if last_report.elapsed() >= PROGRESS_EVERY {
                on_progress(producer.stats().delivered);
                last_report = Instant::now();
            }
        }
        remaining.retain(|(_, left)| *left > 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_plans_spread_the_remainder() {
        let plan = ProducePlan::even("h:1", "t", 3, 10, 100);
        assert_eq!(plan.partitions, vec![(0, 4), (1, 3), (2, 3)]);
        assert_eq!(plan.total(), 10);
    }
}
