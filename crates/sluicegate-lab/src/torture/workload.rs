//! What a campaign produces: record `i` has key `k{i % keys}` and, within its key, sequence
//! number `i / keys`; its value is `SEQ PRODUCED_US` (text). A key always lands in the same
//! partition (the producer partitions by key), so per-key order in the topic is the order of
//! the sequence numbers.
//!
//! # Backpressure
//!
//! Records are produced at an even rate over the campaign's production window, in order, by
//! one task (the idempotent producer keeps that order per partition); when the producer's
//! buffer is full, producing waits.

use std::time::Duration;

use anyhow::{bail, Context as _};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use tokio::time::Instant;

use super::journal::now_us;

/// How many records, over how many keys, produced over how long.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub records: u64,
    pub keys: u32,
    pub window: Duration,
}

impl Workload {
    /// The index of a record from its key and sequence number, if it is one of ours.
    pub fn index(&self, key: u32, seq: u64) -> Option<u64> {
        let index = seq
            .checked_mul(u64::from(self.keys))?
            .checked_add(u64::from(key))?;
        (key < self.keys && index < self.records).then_some(index)
    }
}

/// The key and value of record `index`, produced now.
fn record_of(index: u64, keys: u32) -> (String, String) {
    let key = index % u64::from(keys);
    let seq = index / u64::from(keys);
    (format!("k{key}"), format!("{seq} {}", now_us()))
}

/// Reads a key and value written by [`record_of`]: (key, sequence number, produced at).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(u32, u64, u64)> {
    let key = std::str::from_utf8(key?)
        .ok()?
        .strip_prefix('k')?
        .parse()
        .ok()?;
    let (seq, produced) = std::str::from_utf8(value?).ok()?.split_once(' ')?;
    Some((key, seq.parse().ok()?, produced.parse().ok()?))
}

/// Produces the workload to `topic`; returns the records delivered, failing if any delivery
/// failed.
pub async fn produce(
    bootstrap_servers: &str,
    topic: &str,
    workload: Workload,
) -> anyhow::Result<u64> {
    let producer = Producer::new(
        ProducerOptions::new()
            .bootstrap_servers(bootstrap_servers)
            .client_id("sluice-torture")
            .flush_interval(Duration::from_millis(5)),
    );
    producer.start().context("could not start the producer")?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next = 0u64;
    while next < workload.records {
        tick.tick().await;
        let share = started.elapsed().as_secs_f64() / workload.window.as_secs_f64().max(1e-3);
        let due = ((share * workload.records as f64) as u64).min(workload.records);
        while next < due {
            let (key, value) = record_of(next, workload.keys);
            producer
                .produce_and_forget(
                    topic,
                    ProduceRecord::new(value.as_bytes()).key(key.as_bytes()),
                )
                .await
                .with_context(|| format!("could not produce record {next} to `{topic}`"))?;
            next += 1;
        }
    }
    let report = producer.shutdown(Duration::from_secs(30)).await;
    if report.undelivered > 0 || report.stats.failed > 0 {
        bail!(
            "the campaign's producer did not deliver {} of {} records ({} failed): the campaign \
             cannot judge what the group should have processed",
            report.undelivered as u64 + report.stats.failed,
            workload.records,
            report.stats.failed
        );
    }
    Ok(report.stats.delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_back_to_their_index() {
        let workload = Workload {
            records: 1_000,
            keys: 16,
            window: Duration::from_secs(1),
        };
        let (key, value) = record_of(517, 16);
        let (k, seq, _) = decode(Some(key.as_bytes()), Some(value.as_bytes())).unwrap();
        assert_eq!((k, seq), (5, 32));
        assert_eq!(workload.index(k, seq), Some(517));
        assert_eq!(workload.index(16, 0), None);
        assert_eq!(workload.index(0, 63), None);
        assert_eq!(decode(Some(b"x1"), Some(b"1 2")), None);
        assert_eq!(decode(Some(b"k1"), None), None);
    }
}
