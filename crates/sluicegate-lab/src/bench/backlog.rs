//! `sluice-lab bench backlog`: memory under a large backlog and a slow handler.
//!
//! A topic holds far more than a consumer can process in the run; a handler takes
//! `--handler-ms` per record, each partition concurrently. Two sides run for `--seconds` each, one
//! after the other, each in its own child process so each peak RSS is its own:
//!
//! - sluice: a [`ConsumerEngine`] with default options (only the group timeouts set, see
//!   [`GroupTimeouts`]); the report gives its peak RSS and its peak held records beside the
//!   configured bound;
//! - plain: an rdkafka `BaseConsumer` with librdkafka's defaults, one thread per partition
//!   (split partition queues) doing the same sleeping work; the report gives its peak RSS and
//!   the most records librdkafka had prefetched (from its statistics).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use sluicegate::{ConsumerEngine, ConsumerOptions, EngineStats, PartitionStream, StartPosition};

use super::child_broker::BenchBroker;
use super::{
    fresh_group, prepare_topic, print_json, shaped_topic_name, spawn_worker, EngineBounds,
    GroupTimeouts, Property, WorkerTarget, RSS_SCOPE,
};
use crate::out;
use sluicegate_cli::tool::progress::{thousands, Timed};
use sluicegate_cli::tool::{rss, topic};

/// Interval between samples of RSS and engine counters.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// Bootstrap servers of the broker; default: a single-node Apache Kafka started for the
    /// run (`scripts/kafka start`). The development broker cannot hold the backlog.
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Topic holding the backlog (reused, and not refilled, if it already holds enough);
    /// default: `sluice-bench-backlog-PxNxB`, named after the shape.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Records per partition in the backlog.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    records_per_partition: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// Seconds each side runs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Milliseconds the handler sleeps per record.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    handler_ms: u64,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    #[command(flatten)]
    engine: EngineBounds,
}

/// Issue 16's goal for the engine's peak RSS: 64 MiB up to 8 partitions, 128 MiB up to 64;
/// none set beyond.
fn rss_goal_bytes(partitions: usize) -> Option<u64> {
    match partitions {
        0..=8 => Some(64 << 20),
        9..=64 => Some(128 << 20),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Engine,
    Plain,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Engine => "engine",
            Mode::Plain => "plain",
        }
    }
}

#[derive(Debug, Args)]
pub struct BacklogWorkerArgs {
    #[arg(long, value_enum)]
    mode: Mode,
    #[command(flatten)]
    target: WorkerTarget,
    #[arg(long)]
    seconds: u64,
    #[arg(long)]
    handler_ms: u64,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    /// Extra librdkafka property (KEY=VALUE), for diagnosis (e.g. `debug=fetch`).
    #[arg(long = "set", hide = true)]
    properties: Vec<Property>,
    #[command(flatten)]
    engine: EngineBounds,
}

/// What one side measured, printed by the worker as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideReport {
    /// Peak RSS of the worker process (VmHWM).
    pub peak_rss_bytes: u64,
    /// Records the handler finished.
    pub processed: u64,
    /// Engine: `peak_held` (sum over partitions of the most records each held). Plain: the
    /// most records librdkafka held prefetched, from its statistics.
    pub peak_buffered: u64,
    /// Engine: the configured bound on held records (partition buffer × assigned partitions).
    pub buffer_bound: Option<u64>,
    /// Engine: the most records held at one sample.
    pub peak_held_sampled: Option<u64>,
    /// Plain: the most prefetched bytes librdkafka reported.
    pub peak_prefetched_bytes: Option<u64>,
    /// Records taken from librdkafka (engine) during the run.
    pub fetched: Option<u64>,
    /// Most partitions with a full window at one sample (engine).
    pub peak_full_partitions: Option<u64>,
    pub samples: u64,
}

/// The JSON report of `sluice-lab bench backlog --json`.
#[derive(Debug, Serialize)]
struct BacklogReport {
    peak_rss_bytes: u64,
    peak_buffered: u64,
    buffer_bound: u64,
    plain_peak_rss_bytes: u64,
    plain_peak_buffered: u64,
    plain_peak_prefetched_bytes: u64,
    processed: u64,
    plain_processed: u64,
    peak_held_sampled: u64,
    fetched: u64,
    backlog_records: u64,
    partitions: usize,
    record_bytes: u64,
    seconds: u64,
    handler_ms: u64,
    /// "default options", or the engine bounds given for an experiment.
    engine_options: String,
    /// The goal for `peak_rss_bytes` at this many partitions, if one is set.
    rss_goal_bytes: Option<u64>,
    meets_rss_goal: Option<bool>,
    rss_scope: &'static str,
    broker: String,
}

pub fn run(args: BacklogArgs) -> anyhow::Result<()> {
    let broker = BenchBroker::given_or_kafka(args.brokers.as_deref())?;
    let brokers = broker.bootstrap_servers().to_owned();
    let topic_name = args.topic.clone().unwrap_or_else(|| {
        shaped_topic_name(
            "sluice-bench-backlog",
            args.partitions,
            args.records_per_partition,
            args.record_bytes,
        )
    });
    let offsets = prepare_topic(
        &brokers,
        &topic_name,
        args.partitions,
        args.records_per_partition,
        args.record_bytes as usize,
    )?;
    let backlog = topic::total_records(&offsets);
    eprintln!(
        "backlog: {} records in {} partitions of `{}` on {}; handler {} ms per record; {} s per side",
        thousands(backlog),
        offsets.len(),
        topic_name,
        broker.label(),
        args.handler_ms,
        args.seconds
    );
    let side = |mode: Mode| -> anyhow::Result<SideReport> {
        eprintln!("running the {} side ...", mode.label());
        // The clock, drawn by this process: the worker's own figures stay undisturbed.
        let _shown = Timed::start(mode.label(), Duration::from_secs(args.seconds));
        let mut worker = vec![
            "bench".to_owned(),
            "backlog-worker".to_owned(),
            "--mode".to_owned(),
            mode.label().to_owned(),
            "--brokers".to_owned(),
            brokers.clone(),
            "--topic".to_owned(),
            topic_name.clone(),
            "--group".to_owned(),
            fresh_group(&format!("backlog-{}", mode.label())),
            "--seconds".to_owned(),
            args.seconds.to_string(),
            "--handler-ms".to_owned(),
            args.handler_ms.to_string(),
        ];
        worker.extend(args.timeouts.to_args());
        if mode == Mode::Engine {
            worker.extend(args.engine.to_args());
        }
        spawn_worker(&worker)
    };
    let engine = side(Mode::Engine)?;
    let plain = side(Mode::Plain)?;
    let rss_goal = rss_goal_bytes(offsets.len());
    let report = BacklogReport {
        peak_rss_bytes: engine.peak_rss_bytes,
        peak_buffered: engine.peak_buffered,
        buffer_bound: engine.buffer_bound.unwrap_or(0),
        plain_peak_rss_bytes: plain.peak_rss_bytes,
        plain_peak_buffered: plain.peak_buffered,
        plain_peak_prefetched_bytes: plain.peak_prefetched_bytes.unwrap_or(0),
        processed: engine.processed,
        plain_processed: plain.processed,
        peak_held_sampled: engine.peak_held_sampled.unwrap_or(0),
        fetched: engine.fetched.unwrap_or(0),
        backlog_records: backlog,
        partitions: offsets.len(),
        record_bytes: args.record_bytes,
        seconds: args.seconds,
        handler_ms: args.handler_ms,
        engine_options: args.engine.describe(),
        rss_goal_bytes: rss_goal,
        meets_rss_goal: rss_goal.map(|goal| engine.peak_rss_bytes <= goal),
        rss_scope: RSS_SCOPE,
        broker: broker.label().to_owned(),
    };
    if args.json {
        return print_json(&report);
    }
    out!(
        "sluice-lab bench backlog: {} records ({} partitions x {} bytes) on {}, handler {} ms per record, {} s per side",
        thousands(report.backlog_records),
        report.partitions,
        report.record_bytes,
        report.broker,
        report.handler_ms,
        report.seconds
    )?;
    out!(
        "sluice engine ({}): peak RSS {}, peak buffered {} records (bound {}; most held at one sample {}), \
         fetched {}, processed {}",
        report.engine_options,
        rss::mib(report.peak_rss_bytes),
        thousands(report.peak_buffered),
        thousands(report.buffer_bound),
        thousands(report.peak_held_sampled),
        thousands(report.fetched),
        thousands(report.processed)
    )?;
    out!(
        "plain consumer (librdkafka defaults): peak RSS {}, peak prefetched {} records ({}), processed {}",
        rss::mib(report.plain_peak_rss_bytes),
        thousands(report.plain_peak_buffered),
        rss::mib(report.plain_peak_prefetched_bytes),
        thousands(report.plain_processed)
    )?;
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let rss_goal = match (report.rss_goal_bytes, report.meets_rss_goal) {
        (Some(goal), Some(met)) => {
            format!("engine peak RSS <= {}: {}", rss::mib(goal), verdict(met))
        }
        _ => format!("no RSS goal at {} partitions", report.partitions),
    };
    out!(
        "goals: {rss_goal}; peak buffered <= bound: {} ({})",
        verdict(report.peak_buffered <= report.buffer_bound),
        report.rss_scope
    )?;
    Ok(())
}

pub fn run_worker(args: BacklogWorkerArgs) -> anyhow::Result<()> {
    let report = match args.mode {
        Mode::Engine => crate::runtime()?.block_on(engine_side(&args))?,
        Mode::Plain => plain_side(&args)?,
    };
    print_json(&report)
}

/// The engine with default options and a sleeping handler per partition.
async fn engine_side(args: &BacklogWorkerArgs) -> anyhow::Result<SideReport> {
    let mut options = ConsumerOptions::new(
        &args.target.brokers,
        &args.target.group,
        [&args.target.topic],
    )
    .start_position(StartPosition::Earliest)
    .session_timeout(args.timeouts.session_timeout())
    .max_poll_interval(args.timeouts.max_poll_interval());
    options = args.engine.apply(options);
    for property in &args.properties {
        options = options.librdkafka(&property.key, &property.value);
    }
    let processed = Arc::new(AtomicU64::new(0));
    let handler = Duration::from_millis(args.handler_ms);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    engine.spawn_subscribers((processed.clone(), handler), sleeping_subscriber);
    let mut report = SideReport::default();
    let mut last = EngineStats::default();
    let mut peak_held = 0;
    let mut peak_full = 0;
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    while Instant::now() < deadline {
        ticker.tick().await;
        last = engine.stats();
        peak_held = peak_held.max(last.held);
        peak_full = peak_full.max(last.full_partitions);
        report.samples += 1;
        tracing::debug!(processed = processed.load(Ordering::Relaxed), ?last, rss = ?rss::current_bytes(), "engine sample");
    }
    report.peak_buffered = last.peak_held as u64;
    report.buffer_bound = Some(last.held_bound as u64);
    report.peak_held_sampled = Some(peak_held as u64);
    report.peak_full_partitions = Some(peak_full as u64);
    report.fetched = Some(last.fetched);
    let summary = engine.shutdown().await;
    report.processed = processed.load(Ordering::Relaxed);
    report.peak_rss_bytes = rss::peak_bytes().unwrap_or(0);
    tracing::info!(?summary.stats, undrained = summary.undrained, "engine shut down");
    Ok(report)
}

async fn sleeping_subscriber(
    mut stream: PartitionStream,
    (processed, handler): (Arc<AtomicU64>, Duration),
) {
    let acks = stream.acknowledger();
    while let Some(record) = stream.next().await {
        if !handler.is_zero() {
            // The same blocking sleep as the plain side's threads: tokio's timer rounds a
            // 1 ms sleep up to the next millisecond tick, which would halve the handler's rate.
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(handler)).await;
        }
        if let Err(error) = acks.ack(record.offset).await {
            tracing::debug!(%error, "acknowledgement refused");
        }
        processed.fetch_add(1, Ordering::Relaxed);
    }
}

/// librdkafka's statistics, reduced to what the plain side reports.
#[derive(Default)]
struct PrefetchWatch {
    peak_records: AtomicU64,
    peak_bytes: AtomicU64,
}

impl ClientContext for PrefetchWatch {
    fn stats(&self, statistics: Statistics) {
        let (records, bytes) = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter())
            .filter(|(partition, _)| **partition >= 0)
            .fold((0u64, 0u64), |(records, bytes), (_, partition)| {
                (
                    records + partition.fetchq_cnt.max(0) as u64,
                    bytes + partition.fetchq_size,
                )
            });
        self.peak_records.fetch_max(records, Ordering::Relaxed);
        self.peak_bytes.fetch_max(bytes, Ordering::Relaxed);
    }
}

impl ConsumerContext for PrefetchWatch {}

/// A plain consumer with librdkafka's defaults; one thread per partition does the work.
fn plain_side(args: &BacklogWorkerArgs) -> anyhow::Result<SideReport> {
    let offsets = args.target.partition_offsets()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.target.brokers)
        .set("group.id", &args.target.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        // Statistics only observe the prefetch queue; they change nothing about fetching.
        .set("statistics.interval.ms", "1000");
    for (key, value) in args.timeouts.librdkafka() {
        config.set(key, value);
    }
    for property in &args.properties {
        config.set(&property.key, &property.value);
    }
    let consumer: Arc<BaseConsumer<PrefetchWatch>> = Arc::new(
        config
            .create_with_context(PrefetchWatch::default())
            .context("could not create the plain consumer")?,
    );
    consumer
        .subscribe(&[&args.target.topic])
        .with_context(|| format!("could not subscribe to `{}`", args.target.topic))?;
    let handler = Duration::from_millis(args.handler_ms);
    let processed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for partition in offsets.iter().map(|offsets| offsets.partition) {
        let queue = consumer
            .split_partition_queue(&args.target.topic, partition)
            .with_context(|| {
                format!(
                    "could not split the queue of {}/{partition}",
                    args.target.topic
                )
            })?;
        let (consumer, processed, stop) = (consumer.clone(), processed.clone(), stop.clone());
        let worker = std::thread::Builder::new()
            .name(format!("plain-{partition}"))
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match queue.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => {
                            if !handler.is_zero() {
                                std::thread::sleep(handler);
                            }
                            if let Err(error) = consumer.store_offset_from_message(&message) {
                                tracing::debug!(%error, "could not store an offset");
                            }
                            processed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(error)) => tracing::warn!(%error, "plain consumer error"),
                        None => {}
                    }
                }
            })
            .context("could not start a worker thread")?;
        workers.push(worker);
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut report = SideReport::default();
    let mut next_sample = Instant::now();
    while Instant::now() < deadline {
        // Serves rebalances, statistics and anything not split off.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(20)) {
            tracing::debug!(partition = message.partition(), "record on the main queue");
            if !handler.is_zero() {
                std::thread::sleep(handler);
            }
            let _ = consumer.store_offset_from_message(&message);
            processed.fetch_add(1, Ordering::Relaxed);
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            report.samples += 1;
            tracing::debug!(processed = processed.load(Ordering::Relaxed), rss = ?rss::current_bytes(), "plain sample");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        if worker.join().is_err() {
            tracing::error!("a plain worker thread panicked");
        }
    }
    report.processed = processed.load(Ordering::Relaxed);
    report.peak_buffered = consumer.context().peak_records.load(Ordering::Relaxed);
    report.peak_prefetched_bytes = Some(consumer.context().peak_bytes.load(Ordering::Relaxed));
    report.peak_rss_bytes = rss::peak_bytes().unwrap_or(0);
    Ok(report)
}
