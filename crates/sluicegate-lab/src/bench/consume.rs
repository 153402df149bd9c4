//! `sluice-lab bench consume`: the engine's overhead against the fastest plain consumer loop.
//!
//! Both sides read every record of the same topic with a fresh group per round:
//!
//! - baseline: an rdkafka `BaseConsumer` poll loop that stores each offset
//!   (`store_offset_from_message`) with auto commit, tuned for throughput
//!   (`fetch.queue.backoff.ms=0`, `queued.min.messages=1000000`);
//! - sluice: a [`ConsumerEngine`] with default options and interval commits, whose subscribers
//!   acknowledge each record and do nothing else.
//!
//! Rounds alternate the order of the sides so machine noise hits both; the report gives the
//! median of each. Records/s is measured from the first record received to the last, so the
//! group join (a fixed cost) does not dilute the comparison; the time from client creation is
//! reported too. Each side runs in its own child process, so each peak RSS is that side's
//! alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use serde::{Deserialize, Serialize};
use sluicegate::{CommitStrategy, ConsumerEngine, ConsumerOptions, PartitionStream, StartPosition};
use tokio::sync::Notify;

use super::{
    filled_topic, fresh_group, median, per_second, print_json, shaped_topic_name, spawn_worker,
    DefaultBroker, EngineBounds, FilledTopic, GroupTimeouts, Property, WorkerTarget, RSS_SCOPE,
    STALL_TIMEOUT,
};
use crate::out;
use sluicegate_cli::tool::progress::{thousands, Progress};
use sluicegate_cli::tool::rss;
use sluicegate_cli::tool::topic::{self, PartitionOffsets};

/// The baseline's librdkafka tuning: no backoff between fetches and a prefetch queue deep
/// enough that the fetcher never waits for the application.
const BASELINE_TUNING: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "0"),
    ("queued.min.messages", "1000000"),
];

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Bootstrap servers of the broker to use; default: a single-node Apache Kafka started for
    /// the run (`scripts/kafka start`).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Without --brokers: run on a development broker (librdkafka's mock cluster) in a child
    /// process instead of Apache Kafka. It keeps at most 5 MiB per partition.
    #[arg(long, conflicts_with = "brokers")]
    dev_broker: bool,
    /// Topic to fill and read (reused if it already holds enough records); default:
    /// `sluice-bench-consume-PxNxB`, named after the shape.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Records per partition; default: 2,000,000 on Kafka, 40,000 on the development broker.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    records_per_partition: Option<u64>,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// Rounds per side; the report gives the median and the spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    /// Extra librdkafka property for the baseline (KEY=VALUE), for experiments.
    #[arg(long, hide = true)]
    baseline_set: Vec<Property>,
    /// Extra librdkafka property for the engine (KEY=VALUE), for experiments.
    #[arg(long, hide = true)]
    engine_set: Vec<Property>,
    #[command(flatten)]
    engine: EngineBounds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Baseline,
    /// The engine, taking and acknowledging records in batches (`next_batch`, `ack_many`).
    Sluice,
    /// The engine, taking and acknowledging one record at a time (`next`, `ack`).
    SluicePerRecord,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Sluice => "sluice",
            Side::SluicePerRecord => "sluice-per-record",
        }
    }
}

#[derive(Debug, Args)]
pub struct ConsumeWorkerArgs {
    #[arg(long, value_enum)]
    side: Side,
    #[command(flatten)]
    target: WorkerTarget,
    /// Records to read before stopping.
    #[arg(long)]
    expected: u64,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    #[arg(long = "set")]
    properties: Vec<Property>,
    #[command(flatten)]
    engine: EngineBounds,
}

/// What one round of one side measured, printed by the worker as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundReport {
    pub side: Side,
    /// Records read (more than expected means re-deliveries).
    pub records: u64,
    /// Records per second from the first record to the last.
    pub rps: f64,
    /// Seconds from the first record to the last.
    pub seconds: f64,
    /// Seconds from creating the client to the first record (group join, first fetch).
    pub startup_seconds: f64,
    /// Records per second from creating the client to the last record.
    pub rps_with_startup: f64,
    /// Records covered by the offsets the group committed at the end.
    pub committed_records: u64,
    /// Peak RSS of the worker process.
    pub peak_rss_bytes: u64,
}

/// The JSON report of `sluice-lab bench consume --json`.
#[derive(Debug, Serialize)]
struct ConsumeReport<'a> {
    baseline_rps: f64,
    /// The engine with the batch API.
    sluice_rps: f64,
    ratio: f64,
    /// The engine with the per-record API.
    sluice_per_record_rps: f64,
    per_record_ratio: f64,
    /// Peak RSS of the engine's worker process (the highest over its rounds).
    peak_rss_bytes: u64,
    baseline_peak_rss_bytes: u64,
    /// Peak RSS of the parent `sluice-lab bench consume` process (filling, orchestration).
    bench_process_peak_rss_bytes: u64,
    rss_scope: &'static str,
    baseline_rps_with_startup: f64,
    sluice_rps_with_startup: f64,
    /// Lowest and highest records/s of each side's rounds.
    baseline_spread: Spread,
    sluice_spread: Spread,
    sluice_per_record_spread: Spread,
    records: u64,
    partitions: i32,
    record_bytes: u64,
    rounds: &'a [RoundReport],
    broker: String,
    baseline_config: Vec<String>,
}

/// The topic the throughput benches read (`bench consume`, `bench pipeline`'s no-op
/// comparison, `bench peers`) and its records per partition: `--topic` or a name after the
/// shape (so one fill serves them all on a `--brokers` Kafka), and `--records-per-partition` or
/// else rounds of several seconds on Kafka (2,000,000), what the development broker holds
/// (40,000) on it.
pub fn consume_topic(
    topic: Option<&str>,
    default_broker: DefaultBroker,
    partitions: i32,
    records_per_partition: Option<u64>,
    record_bytes: u64,
) -> (String, u64) {
    let records_per_partition = records_per_partition.unwrap_or(match default_broker {
        DefaultBroker::Kafka => 2_000_000,
        DefaultBroker::Development => 40_000,
    });
    let name = topic.map(str::to_owned).unwrap_or_else(|| {
        shaped_topic_name(
            "sluice-bench-consume",
            partitions,
            records_per_partition,
            record_bytes,
        )
    });
    (name, records_per_partition)
}

/// The lowest and highest of some figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        Self {
            min: values.iter().copied().reduce(f64::min).unwrap_or(0.0),
            max: values.iter().copied().reduce(f64::max).unwrap_or(0.0),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} – {}", per_second(self.min), per_second(self.max))
    }
}

pub fn run(mut args: ConsumeArgs) -> anyhow::Result<()> {
    let record_bytes = args.record_bytes as usize;
    let default_broker = DefaultBroker::chosen(args.dev_broker);
    let (topic_name, records_per_partition) = consume_topic(
        args.topic.as_deref(),
        default_broker,
        args.partitions,
        args.records_per_partition,
        args.record_bytes,
    );
    args.topic = Some(topic_name.clone());
    let FilledTopic {
        broker,
        bootstrap,
        broker_label,
        offsets,
        records: expected,
    } = filled_topic(
        args.brokers.as_deref(),
        default_broker,
        &topic_name,
        args.partitions,
        records_per_partition,
        record_bytes,
    )?;
    eprintln!(
        "reading {} records ({} partitions) per round, {} rounds per side, on {broker_label}",
        thousands(expected),
        offsets.len(),
        args.rounds
    );

    let mut rounds = Vec::new();
    // Three sides a round.
    let mut progress = Progress::new("rounds", u64::from(args.rounds) * 3).unit("runs");
    for round in 0..args.rounds {
        // Rotate the order so machine noise falls on every side alike.
        let mut order = [Side::Baseline, Side::Sluice, Side::SluicePerRecord];
        order.rotate_left(round as usize % 3);
        let mut line = format!("round {}/{}:", round + 1, args.rounds);
        for side in order {
            let report: RoundReport =
                spawn_worker(&worker_args(&args, side, &bootstrap, expected))?;
            check_round(&report, expected, &offsets)?;
            line.push_str(&format!(
                " {} {} records/s ({:.3} s, +{:.3} s start-up, RSS {});",
                side.label(),
                per_second(report.rps),
                report.seconds,
                report.startup_seconds,
                rss::mib(report.peak_rss_bytes)
            ));
            rounds.push(report);
            progress.update(rounds.len() as u64);
        }
        progress.note(line.trim_end_matches(';'));
    }
    progress.finish(rounds.len() as u64);
    drop(broker);

    let of = |side: Side, figure: fn(&RoundReport) -> f64| -> Vec<f64> {
        rounds
            .iter()
            .filter(|report| report.side == side)
            .map(figure)
            .collect()
    };
    let peak_of = |side: Side| {
        rounds
            .iter()
            .filter(|report| report.side == side)
            .map(|report| report.peak_rss_bytes)
            .max()
            .unwrap_or(0)
    };
    let baseline_rps = median(&of(Side::Baseline, |report| report.rps));
    let sluice_rps = median(&of(Side::Sluice, |report| report.rps));
    let sluice_per_record_rps = median(&of(Side::SluicePerRecord, |report| report.rps));
    let ratio = if baseline_rps > 0.0 {
        sluice_rps / baseline_rps
    } else {
        0.0
    };
    let baseline_config: Vec<String> = baseline_properties(&args.baseline_set)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let report = ConsumeReport {
        baseline_rps,
        sluice_rps,
        ratio,
        sluice_per_record_rps,
        per_record_ratio: if baseline_rps > 0.0 {
            sluice_per_record_rps / baseline_rps
        } else {
            0.0
        },
        peak_rss_bytes: peak_of(Side::Sluice),
        baseline_peak_rss_bytes: peak_of(Side::Baseline),
        bench_process_peak_rss_bytes: rss::peak_bytes().unwrap_or(0),
        rss_scope: RSS_SCOPE,
        baseline_rps_with_startup: median(&of(Side::Baseline, |report| report.rps_with_startup)),
        sluice_rps_with_startup: median(&of(Side::Sluice, |report| report.rps_with_startup)),
        baseline_spread: Spread::of(&of(Side::Baseline, |report| report.rps)),
        sluice_spread: Spread::of(&of(Side::Sluice, |report| report.rps)),
        sluice_per_record_spread: Spread::of(&of(Side::SluicePerRecord, |report| report.rps)),
        records: expected,
        partitions: args.partitions,
        record_bytes: args.record_bytes,
        rounds: &rounds,
        broker: broker_label,
        baseline_config,
    };
    if args.json {
        return print_json(&report);
    }
    out!(
        "sluice-lab bench consume: {} records ({} partitions x {} bytes) per round, {} rounds, on {}",
        thousands(report.records),
        report.partitions,
        report.record_bytes,
        args.rounds,
        report.broker
    )?;
    out!(
        "baseline  (BaseConsumer loop, store_offset + auto commit; {}): median {} records/s (rounds {})",
        report.baseline_config.join(", "),
        per_second(report.baseline_rps),
        report.baseline_spread
    )?;
    out!(
        "sluice    (ConsumerEngine, default options, next_batch + ack_many, interval commits): median {} records/s (rounds {})",
        per_second(report.sluice_rps),
        report.sluice_spread
    )?;
    out!(
        "sluice-per-record (ConsumerEngine, default options, next + ack per record): median {} records/s (rounds {})",
        per_second(report.sluice_per_record_rps),
        report.sluice_per_record_spread
    )?;
    out!(
        "ratio sluice/baseline: {:.3} (goal >= 0.95); per record: {:.3}",
        report.ratio,
        report.per_record_ratio
    )?;
    out!(
        "with start-up (client creation to last record): baseline {} records/s, sluice {} records/s",
        per_second(report.baseline_rps_with_startup),
        per_second(report.sluice_rps_with_startup)
    )?;
    out!(
        "peak RSS: sluice {}, baseline {}, bench process {} ({})",
        rss::mib(report.peak_rss_bytes),
        rss::mib(report.baseline_peak_rss_bytes),
        rss::mib(report.bench_process_peak_rss_bytes),
        report.rss_scope
    )?;
    Ok(())
}

fn worker_args(args: &ConsumeArgs, side: Side, bootstrap: &str, expected: u64) -> Vec<String> {
    let mut worker = vec![
        "bench".to_owned(),
        "consume-worker".to_owned(),
        "--side".to_owned(),
        side.label().to_owned(),
        "--brokers".to_owned(),
        bootstrap.to_owned(),
        "--topic".to_owned(),
        args.topic.clone().unwrap_or_default(),
        "--group".to_owned(),
        fresh_group(side.label()),
        "--expected".to_owned(),
        expected.to_string(),
    ];
    worker.extend(args.timeouts.to_args());
    let properties = match side {
        Side::Baseline => &args.baseline_set,
        Side::Sluice | Side::SluicePerRecord => &args.engine_set,
    };
    for property in properties {
        worker.push("--set".to_owned());
        worker.push(property.to_string());
    }
    if side != Side::Baseline {
        worker.extend(args.engine.to_args());
    }
    worker
}

/// Fails the bench when a side lost records or did not commit what it read.
fn check_round(
    report: &RoundReport,
    expected: u64,
    offsets: &[PartitionOffsets],
) -> anyhow::Result<()> {
    if report.records < expected {
        bail!(
            "{} read {} of {} records",
            report.side.label(),
            thousands(report.records),
            thousands(expected)
        );
    }
    if report.committed_records != topic::total_records(offsets) {
        tracing::warn!(
            side = report.side.label(),
            committed = report.committed_records,
            expected,
            "the group did not commit every record it read"
        );
    }
    Ok(())
}

/// The baseline's librdkafka properties beyond connection and group settings.
fn baseline_properties(extra: &[Property]) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = BASELINE_TUNING
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    for property in extra {
        properties.retain(|(key, _)| *key != property.key);
        properties.push((property.key.clone(), property.value.clone()));
    }
    properties
}

pub fn run_worker(args: ConsumeWorkerArgs) -> anyhow::Result<()> {
    let offsets = args.target.partition_offsets()?;
    let report = match args.side {
        Side::Baseline => baseline_round(&args, &offsets)?,
        Side::Sluice | Side::SluicePerRecord => {
            crate::runtime()?.block_on(sluice_round(&args, &offsets))?
        }
    };
    print_json(&report)
}

/// Timestamps of one round.
struct Timing {
    created: Instant,
    first: Instant,
    last: Instant,
}

impl Timing {
    fn report(&self, side: Side, records: u64, committed_records: u64) -> RoundReport {
        let seconds = self.last.duration_since(self.first).as_secs_f64();
        let with_startup = self.last.duration_since(self.created).as_secs_f64();
        RoundReport {
            side,
            records,
            rps: if seconds > 0.0 {
                records as f64 / seconds
            } else {
                0.0
            },
            seconds,
            startup_seconds: self.first.duration_since(self.created).as_secs_f64(),
            rps_with_startup: if with_startup > 0.0 {
                records as f64 / with_startup
            } else {
                0.0
            },
            committed_records,
            peak_rss_bytes: rss::peak_bytes().unwrap_or(0),
        }
    }
}

/// The fastest plain loop: poll, store the offset, count.
fn baseline_round(
    args: &ConsumeWorkerArgs,
    offsets: &[PartitionOffsets],
) -> anyhow::Result<RoundReport> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.target.brokers)
        .set("group.id", &args.target.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in args.timeouts.librdkafka() {
        config.set(key, value);
    }
    for (key, value) in baseline_properties(&args.properties) {
        config.set(key, value);
    }
    let created = Instant::now();
    let consumer: BaseConsumer = config
        .create()
        .context("could not create the baseline consumer")?;
    consumer
        .subscribe(&[&args.target.topic])
        .with_context(|| format!("could not subscribe to `{}`", args.target.topic))?;
    let mut records = 0u64;
    let mut first = None;
    let mut last_seen = (0u64, Instant::now());
    while records < args.expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                consumer
                    .store_offset_from_message(&message)
                    .context("could not store an offset")?;
                records += 1;
            }
            Some(Err(error)) => tracing::warn!(%error, "baseline consumer error"),
            None => {
                if records != last_seen.0 {
                    last_seen = (records, Instant::now());
                } else if last_seen.1.elapsed() >= STALL_TIMEOUT {
                    bail!("baseline stalled at {records} of {} records", args.expected);
                }
            }
        }
    }
    let last = Instant::now();
    let first = first.unwrap_or(last);
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::warn!(%error, "baseline final commit failed");
    }
    let committed = args.target.committed_records(offsets)?;
    Ok(Timing {
        created,
        first,
        last,
    }
    .report(Side::Baseline, records, committed))
}

/// Counters shared by the engine's subscribers.
#[derive(Default)]
struct Counter {
    expected: u64,
    records: AtomicU64,
    ack_errors: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: Notify,
}

/// The engine with a no-op handler that acknowledges each record.
async fn sluice_round(
    args: &ConsumeWorkerArgs,
    offsets: &[PartitionOffsets],
) -> anyhow::Result<RoundReport> {
    let mut options = ConsumerOptions::new(
        &args.target.brokers,
        &args.target.group,
        [&args.target.topic],
    )
    .start_position(StartPosition::Earliest)
    .commit_strategy(CommitStrategy::Interval)
    .session_timeout(args.timeouts.session_timeout())
    .max_poll_interval(args.timeouts.max_poll_interval());
    options = args.engine.apply(options);
    for property in &args.properties {
        options = options.librdkafka(&property.key, &property.value);
    }
    let counter = Arc::new(Counter {
        expected: args.expected,
        ..Counter::default()
    });
    let created = Instant::now();
    let mut engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    let ends: Arc<BTreeMap<i32, i64>> = Arc::new(
        offsets
            .iter()
            .map(|offsets| (offsets.partition, offsets.high))
            .collect(),
    );
    if args.side == Side::SluicePerRecord {
        engine.spawn_subscribers((counter.clone(), ends), no_op_subscriber);
    } else {
        engine.spawn_subscribers((counter.clone(), ends), no_op_batch_subscriber);
    }
    let mut last_seen = (0u64, Instant::now());
    loop {
        tokio::select! {
            () = counter.done.notified() => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let records = counter.records.load(Ordering::Relaxed);
                tracing::debug!(records, stats = ?engine.stats(), "engine sample");
                if records != last_seen.0 {
                    last_seen = (records, Instant::now());
                } else if last_seen.1.elapsed() >= STALL_TIMEOUT {
                    let stats = engine.stats();
                    bail!(
                        "the engine stalled at {records} of {} records (stats: {stats:?})",
                        args.expected
                    );
                }
            }
        }
    }
    let last = counter.last.get().copied().unwrap_or_else(Instant::now);
    let first = counter.first.get().copied().unwrap_or(last);
    let summary = engine.shutdown().await;
    let ack_errors = counter.ack_errors.load(Ordering::Relaxed);
    if ack_errors > 0 {
        tracing::warn!(ack_errors, "the engine refused acknowledgements");
    }
    let committed_in_summary: i64 = summary.committed.values().sum();
    tracing::debug!(committed_in_summary, ?summary.stats, "engine shut down");
    let committed = args.target.committed_records(offsets)?;
    let records = counter.records.load(Ordering::Relaxed);
    Ok(Timing {
        created,
        first,
        last,
    }
    .report(args.side, records, committed))
}

async fn no_op_subscriber(
    mut stream: PartitionStream,
    (counter, ends): (Arc<Counter>, Arc<BTreeMap<i32, i64>>),
) {
    /// Records counted locally before they are added to the shared counter: one shared
    /// atomic per record, contended by every partition's task, would measure the bench.
    const PUBLISH_EVERY: u64 = 1024;
    let acks = stream.acknowledger();
    let last_offset = ends.get(&stream.partition().partition).map(|end| end - 1);
    let mut unpublished = 0;
    while let Some(record) = stream.next().await {
        counter.first.get_or_init(Instant::now);
        if acks.ack(record.offset).await.is_err() {
            counter.ack_errors.fetch_add(1, Ordering::Relaxed);
        }
        unpublished += 1;
        if unpublished == PUBLISH_EVERY || Some(record.offset) == last_offset {
            let records = counter.records.fetch_add(unpublished, Ordering::Relaxed) + unpublished;
            unpublished = 0;
            if records == counter.expected {
                let _ = counter.last.set(Instant::now());
                counter.done.notify_one();
            }
        }
    }
}

/// The no-op handler on the batch API: takes what is waiting, acknowledges it in one call.
async fn no_op_batch_subscriber(
    mut stream: PartitionStream,
    (counter, _): (Arc<Counter>, Arc<BTreeMap<i32, i64>>),
) {
    let acks = stream.acknowledger();
    while let Some(batch) = stream.next_batch(usize::MAX).await {
        counter.first.get_or_init(Instant::now);
        let taken = batch.len() as u64;
        if acks
            .ack_many(batch.iter().map(|record| record.offset))
            .await
            .is_err()
        {
            counter.ack_errors.fetch_add(1, Ordering::Relaxed);
        }
        let records = counter.records.fetch_add(taken, Ordering::Relaxed) + taken;
        if records == counter.expected {
            let _ = counter.last.set(Instant::now());
            counter.done.notify_one();
        }
    }
}
