//! `sluice demo`: the engine end to end on the embedded broker, checked by the demo itself.
//!
//! It produces numbered records, consumes them through a [`ConsumerEngine`] whose handler hashes
//! each value and marks its sequence number in a bitmap, shuts the engine down (which commits),
//! then reads the group's committed offsets back from the broker. It succeeds only if every
//! record was processed at least once and every offset was committed.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use futures_util::StreamExt as _;
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker, PartitionStream, StartPosition};

use crate::out;
use crate::produce;
use crate::tool::exit::usage;
use crate::tool::payload::ProducePlan;
use crate::tool::progress::{thousands, Progress};
use crate::tool::topic::{self, PartitionOffsets};
use crate::tool::{payload, rss};

const TOPIC: &str = "sluice-demo";
const GROUP: &str = "sluice-demo";
/// Give up when no new record was processed for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
#[command(
    after_help = "The embedded broker keeps at most 5 MiB and 100,000 record batches per partition and \
                        silently drops older data, so the demo refuses sizes that would not fit."
)]
pub struct DemoArgs {
    /// Records to produce and consume.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    records: u64,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Bytes per record value (the first 8 carry the sequence number).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
}

/// What the handlers saw, shared by every partition's subscriber.
struct Seen {
    /// One bit per sequence number.
    bitmap: Vec<AtomicU64>,
    records: u64,
    /// Handler calls (duplicates included).
    processed: AtomicU64,
    /// Distinct sequence numbers seen.
    distinct: AtomicU64,
    /// Records whose value carried no valid sequence number.
    foreign: AtomicU64,
    /// Acknowledgements the engine refused.
    ack_errors: AtomicU64,
    /// Folds the value hashes, so the work cannot be optimised away.
    checksum: AtomicU64,
}

impl Seen {
    fn new(records: u64) -> Self {
        Self {
            bitmap: (0..records.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            records,
            processed: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            checksum: AtomicU64::new(0),
        }
    }

    /// The handler's work: hash the value and mark its sequence number.
    fn handle(&self, value: Option<&[u8]>) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        let value = value.unwrap_or_default();
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        self.checksum.fetch_xor(hasher.finish(), Ordering::Relaxed);
        match payload::sequence_of(value).filter(|sequence| *sequence < self.records) {
            Some(sequence) => {
                let bit = 1u64 << (sequence % 64);
                let word = &self.bitmap[(sequence / 64) as usize];
                if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                    self.distinct.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts the set bits: the distinct records processed, recomputed from the bitmap.
    fn count_bitmap(&self) -> u64 {
        self.bitmap
            .iter()
            .map(|word| u64::from(word.load(Ordering::Relaxed).count_ones()))
            .sum()
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let record_bytes = args.record_bytes as usize;
    check_fits(args.records, args.partitions, record_bytes)?;
    crate::runtime()?.block_on(demo(args.records, args.partitions, record_bytes))
}

/// Refuses sizes the embedded broker would silently truncate.
fn check_fits(records: u64, partitions: i32, record_bytes: usize) -> anyhow::Result<()> {
    let per_partition = records.div_ceil(partitions as u64);
    let bytes = payload::stored_bytes(per_partition, record_bytes);
    if bytes > payload::MOCK_PARTITION_BYTES {
        let needed = records.div_ceil(payload::mock_partition_capacity(record_bytes).max(1));
        return Err(usage(format!(
            "{} records of {record_bytes} bytes over {partitions} partitions is about {} per partition, \
             above the embedded broker's limit of 5 MiB per partition (it silently drops older data); \
             use at least --partitions {needed}, or fewer --records or --record-bytes",
            thousands(records),
            rss::mib(bytes),
        )));
    }
    Ok(())
}

async fn demo(records: u64, partitions: i32, record_bytes: usize) -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(1).context("could not start the embedded broker")?;
    let bootstrap = broker.bootstrap_servers();
    broker
        .create_topic(TOPIC, partitions)
        .with_context(|| format!("could not create topic `{TOPIC}`"))?;
    eprintln!(
        "embedded broker at {bootstrap}; topic `{TOPIC}` with {partitions} partitions; {} records of {record_bytes} bytes",
        thousands(records)
    );

    // Produce.
    let plan = ProducePlan::even(&bootstrap, TOPIC, partitions, records, record_bytes);
    let mut progress = Progress::new("producing", plan.total());
    let produced = produce::fill(&plan, |done| progress.update(done)).await;
    progress.finish(produced.as_ref().map_or(0, |report| report.delivered));
    let produced = produced?;
    let offsets = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || topic::partition_offsets(&bootstrap, TOPIC))
            .await
            .context("the metadata thread failed")??
            .with_context(|| format!("topic `{TOPIC}` vanished after producing"))?
    };
    let kept = topic::total_records(&offsets);
    if kept != produced.delivered {
        bail!(
            "the broker keeps {} of the {} records produced (its per-partition limit dropped some)",
            thousands(kept),
            thousands(produced.delivered)
        );
    }

    // Consume.
    let seen = Arc::new(Seen::new(records));
    let options = ConsumerOptions::new(&bootstrap, GROUP, [TOPIC])
        .start_position(StartPosition::Earliest)
        .commit_interval(Duration::from_secs(1));
    let started = Instant::now();
    let mut engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    engine.spawn_subscribers(seen.clone(), subscriber);
    let mut progress = Progress::new("consuming", records);
    let mut last_distinct = 0;
    let mut last_change = Instant::now();
    let stalled = loop {
        let distinct = seen.distinct.load(Ordering::Relaxed);
        progress.update(distinct);
        if distinct >= records {
            break false;
        }
        if distinct != last_distinct {
            last_distinct = distinct;
            last_change = Instant::now();
        } else if last_change.elapsed() >= STALL_TIMEOUT {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let consumed_in = started.elapsed();
    progress.finish(seen.distinct.load(Ordering::Relaxed));
    let summary = engine.shutdown().await;

    // Check, from the bitmap and from the broker.
    let committed_by_broker = {
        let bootstrap = bootstrap.clone();
        let partitions: Vec<i32> = offsets.iter().map(|offsets| offsets.partition).collect();
        tokio::task::spawn_blocking(move || {
            topic::committed_offsets(&bootstrap, GROUP, TOPIC, partitions)
        })
        .await
        .context("the committed-offsets thread failed")??
    };
    let committed = committed_records(&offsets, |partition| {
        committed_by_broker.get(&partition).copied()
    });
    let committed_in_summary = committed_records(&offsets, |partition| {
        summary
            .committed
            .iter()
            .find(|(topic_partition, _)| {
                topic_partition.topic == TOPIC && topic_partition.partition == partition
            })
            .map(|(_, offset)| *offset)
    });
    let fully_committed = offsets
        .iter()
        .all(|offsets| committed_by_broker.get(&offsets.partition) == Some(&offsets.high));
    let distinct = seen.count_bitmap();
    let processed = seen.processed.load(Ordering::Relaxed);
    let all_processed = distinct == records;
    let seconds = consumed_in.as_secs_f64();

    out!(
        "produced:   {} records ({} records/s)",
        thousands(produced.delivered),
        rate(produced.delivered, produced.elapsed.as_secs_f64())
    )?;
    out!(
        "processed:  {} records, {} distinct ({} duplicates re-delivered)",
        thousands(processed),
        thousands(distinct),
        thousands(processed.saturating_sub(distinct))
    )?;
    out!(
        "committed:  {} records (offsets read back from the broker; the engine reported {})",
        thousands(committed),
        thousands(committed_in_summary)
    )?;
    out!(
        "throughput: {} records/s ({seconds:.2} s from engine start to the last record)",
        rate(distinct, seconds)
    )?;
    out!(
        "engine:     {} commits, {} commit errors, {} rebalances, {} acks refused; peak RSS {}",
        summary.stats.commits,
        summary.stats.commit_errors,
        summary.stats.rebalances,
        seen.ack_errors.load(Ordering::Relaxed),
        rss::peak_bytes().map_or_else(|| "unknown".to_owned(), rss::mib)
    )?;
    let verdict = if all_processed && fully_committed {
        "yes"
    } else {
        "NO"
    };
    out!("every record processed at least once and committed: {verdict}")?;

    let foreign = seen.foreign.load(Ordering::Relaxed);
    if foreign > 0 {
        bail!("{foreign} records carried no valid sequence number");
    }
    if !all_processed {
        let missing = records - distinct;
        if stalled {
            bail!(
                "{} of {} records were never processed: no progress for {} s",
                thousands(missing),
                thousands(records),
                STALL_TIMEOUT.as_secs()
            );
        }
        bail!(
            "{} of {} records were never processed",
            thousands(missing),
            thousands(records)
        );
    }
    if !fully_committed {
        bail!(
            "only {} of {} records were committed",
            thousands(committed),
            thousands(produced.delivered)
        );
    }
    Ok(())
}

/// One partition's subscriber: handle each record, then acknowledge it.
async fn subscriber(mut stream: PartitionStream, seen: Arc<Seen>) {
    let acks = stream.acknowledger();
    while let Some(record) = stream.next().await {
        seen.handle(record.value.as_deref());
        if let Err(error) = acks.ack(record.offset).await {
            seen.ack_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "acknowledgement refused");
        }
    }
}

/// Records covered by committed offsets: the sum over partitions of committed − low.
fn committed_records(offsets: &[PartitionOffsets], committed: impl Fn(i32) -> Option<i64>) -> u64 {
    offsets
        .iter()
        .filter_map(|offsets| {
            let committed = committed(offsets.partition)?;
            u64::try_from(committed - offsets.low).ok()
        })
        .sum()
}

fn rate(records: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".to_owned();
    }
    thousands((records as f64 / seconds) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_sizes_the_mock_cluster_would_drop() {
        assert!(check_fits(100_000, 8, 100).is_ok());
        let error = check_fits(1_000_000, 8, 100).unwrap_err();
        assert!(error.to_string().contains("--partitions"), "{error}");
    }

    #[test]
    fn the_bitmap_counts_distinct_records_once() {
        let seen = Seen::new(130);
        let mut value = Vec::new();
        for sequence in [0, 64, 129, 64] {
            payload::fill(&mut value, sequence, 16);
            seen.handle(Some(&value));
        }
        seen.handle(Some(b"no"));
        assert_eq!(seen.processed.load(Ordering::Relaxed), 5);
        assert_eq!(seen.distinct.load(Ordering::Relaxed), 3);
        assert_eq!(seen.count_bitmap(), 3);
        assert_eq!(seen.foreign.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn committed_records_subtract_start_offsets() {
        let offsets = [
            PartitionOffsets {
                partition: 0,
                low: 0,
                high: 10,
            },
            PartitionOffsets {
                partition: 1,
                low: 5,
                high: 9,
            },
        ];
        assert_eq!(
            committed_records(&offsets, |p| Some(if p == 0 { 10 } else { 9 })),
            14
        );
        assert_eq!(committed_records(&offsets, |p| (p == 0).then_some(3)), 3);
    }
}
