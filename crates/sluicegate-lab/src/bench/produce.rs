//! `sluice-lab bench produce`: the producer's overhead against the fastest plain producer loop.
//!
//! Three sides produce the same records (an 8-byte key, the record's sequence number, and a
//! fixed value of `--record-bytes`) to the same topic, each in a child process of its own:
//!
//! - baseline: an rdkafka `BaseProducer` loop, `send` then `poll(0)` for each record; on a full
//!   queue it polls (serving delivery reports) for 1 ms and sends again; `flush` at the end. It
//!   is configured with the librdkafka properties Sluicegate's producer sets with its default
//!   options ([`BASELINE_CONFIG`]), so both sides batch, acknowledge and partition alike;
//! - awaited: Sluicegate's [`Producer::produce`], `--window` deliveries awaited at once, shared
//!   by `--tasks` tasks (a `buffer_unordered` each), then [`Producer::shutdown`];
//! - fire-and-forget: Sluicegate's [`Producer::produce_and_forget`] in one task, then
//!   [`Producer::shutdown`] to flush.
//!
//! Every side first produces one warm-up record and waits for its delivery (connection,
//! metadata, producer id). Records/s runs from the first send to the last delivery report;
//! the time until the flush (or shutdown) returned is reported beside it, since rdkafka's
//! `flush` polls in 100 ms slices and so returns up to 100 ms after the last delivery. Rounds
//! rotate the order of the sides so machine noise hits all of them; the report gives the
//! median of each.
//!
//! Nothing is read back: on the development broker, which keeps at most 5 MiB and 100,000
//! record batches per partition and drops older batches beyond that, the default run leaves
//! only the newest records of each partition, which costs the bench nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};

use super::child_broker::BenchBroker;
use super::peer_programs::{self, PeerProgram};
use super::{
    ensure_topic, median, per_second, print_json, spawn_worker, Property, RSS_SCOPE, STALL_TIMEOUT,
};
use crate::out;
use sluicegate_cli::tool::progress::{thousands, Progress};
use sluicegate_cli::tool::{payload, rss};

/// The librdkafka properties Sluicegate's producer sets with default options
/// (`ResolvedOptions::client_config` in `crates/sluicegate/src/producer/options.rs`), given to
/// the baseline so both sides batch, acknowledge and partition alike. Keep them in step.
const BASELINE_CONFIG: &[(&str, &str)] = &[
    ("client.id", "sluicegate"),
    ("compression.codec", "none"),
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
    ("queue.buffering.max.messages", "20000"),
    ("queue.buffering.max.kbytes", "65536"),
    ("message.timeout.ms", "30000"),
    ("partitioner", "murmur2_random"),
];

/// Bytes of each record's key: its sequence number, big-endian.
const KEY_BYTES: usize = 8;
/// Share of the baseline's records/s the fire-and-forget form must reach.
const GOAL: f64 = 0.95;
/// How long a side may take to flush once everything is sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Bootstrap servers of the broker to use; default: a single-node Apache Kafka started for
    /// the run (`scripts/kafka start`).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Without --brokers: run on a development broker (librdkafka's mock cluster) in a child
    /// process instead of Apache Kafka.
    #[arg(long, conflicts_with = "brokers")]
    dev_broker: bool,
    /// Do not run Apache Kafka's Java `KafkaProducer` (benchmarks/peers/java) beside us.
    #[arg(long)]
    without_java: bool,
    /// Topic to produce to (created when missing).
    #[arg(long, default_value = "sluice-bench-produce")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Records each side produces per round.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// Awaited form: deliveries awaited at once, in all.
    #[arg(long, default_value_t = 8_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    window: u64,
    /// Awaited form: tasks sharing the window.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    tasks: u64,
    /// Rounds per side; the report gives the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Buffer bound of every side in records (`buffer_records`, librdkafka's
    /// `queue.buffering.max.messages`), for experiments (default: Sluicegate's, 20,000).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    buffer_records: Option<u64>,
    /// Baseline: milliseconds to poll for deliveries when the queue is full, for experiments.
    #[arg(long, hide = true, default_value_t = 1)]
    baseline_full_poll_ms: u64,
    /// Baseline: when it polls for deliveries, for experiments.
    #[arg(long, hide = true, value_enum, default_value_t = BaselinePoll::EachSend)]
    baseline_poll: BaselinePoll,
    /// Extra librdkafka property for every side (KEY=VALUE, not one Sluicegate manages), for
    /// experiments.
    #[arg(long = "set", hide = true)]
    properties: Vec<Property>,
}

/// When the baseline loop polls for delivery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaselinePoll {
    /// `poll(0)` after every send, and on a full queue (the baseline).
    EachSend,
    /// Only on a full queue: the loop fills librdkafka's queue, as Sluicegate's
    /// fire-and-forget form does.
    WhenFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Baseline,
    /// [`Producer::produce`], awaited, a window of them at once.
    Awaited,
    /// [`Producer::produce_and_forget`].
    FireAndForget,
    /// Apache Kafka's Java `KafkaProducer`: a peer program (`benchmarks/peers/java`), not a
    /// worker of this binary.
    Java,
}

impl BaselinePoll {
    fn label(self) -> &'static str {
        match self {
            BaselinePoll::EachSend => "each-send",
            BaselinePoll::WhenFull => "when-full",
        }
    }

    /// How the report describes the baseline's loop.
    fn loop_description(self) -> &'static str {
        match self {
            BaselinePoll::EachSend => "send + poll(0)",
            BaselinePoll::WhenFull => "send, poll only on a full queue",
        }
    }
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Awaited => "awaited",
            Side::FireAndForget => "fire-and-forget",
            Side::Java => "java",
        }
    }
}

#[derive(Debug, Args)]
pub struct ProduceWorkerArgs {
    #[arg(long, value_enum)]
    side: Side,
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    records: u64,
    #[arg(long)]
    record_bytes: usize,
    #[arg(long)]
    window: usize,
    #[arg(long, default_value_t = 1)]
    tasks: usize,
    #[arg(long, default_value_t = 1)]
    baseline_full_poll_ms: u64,
    #[arg(long, value_enum, default_value_t = BaselinePoll::EachSend)]
    baseline_poll: BaselinePoll,
    #[arg(long)]
    buffer_records: Option<usize>,
    #[arg(long = "set")]
    properties: Vec<Property>,
}

/// What one round of one side measured, printed by the worker as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundReport {
    side: Side,
    /// Records delivered (the warm-up record not included).
    delivered: u64,
    /// Records whose delivery failed.
    failed: u64,
    /// Records per second from the first send to the last delivery.
    rps: f64,
    /// Value megabytes (10^6 bytes) per second over the same time.
    mb_per_s: f64,
    /// Seconds from the first send to the last delivery.
    seconds: f64,
    /// Seconds from the first send until the last record was handed over (buffered).
    send_seconds: f64,
    /// Seconds from the first send until the flush (or shutdown) returned.
    flush_seconds: f64,
    /// Seconds the warm-up record took (connection, metadata, producer id), not timed.
    warmup_seconds: f64,
    /// Baseline: sends refused with a full queue (each followed by a poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue_full: Option<u64>,
    /// Peak RSS of the worker process.
    peak_rss_bytes: u64,
}

/// The JSON report of `sluice-lab bench produce --json`.
#[derive(Debug, Serialize)]
struct ProduceReport<'a> {
    baseline_rps: f64,
    awaited_rps: f64,
    fire_and_forget_rps: f64,
    /// Fire-and-forget records/s over the baseline's.
    ratio: f64,
    /// The Java `KafkaProducer`'s median records/s; null when it did not run.
    java_rps: Option<f64>,
    /// Fire-and-forget records/s over the Java producer's.
    fire_and_forget_over_java: Option<f64>,
    /// How the Java producer ran, or why it did not.
    java: String,
    java_peak_rss_bytes: u64,
    /// Awaited records/s over the baseline's.
    awaited_ratio: f64,
    baseline_mb_per_s: f64,
    awaited_mb_per_s: f64,
    fire_and_forget_mb_per_s: f64,
    /// Median seconds from the first send to the last delivery, per side.
    baseline_seconds: f64,
    awaited_seconds: f64,
    fire_and_forget_seconds: f64,
    /// Median seconds from the first send until the flush (baseline) or the shutdown
    /// (Sluicegate) returned, per side.
    baseline_flush_seconds: f64,
    awaited_flush_seconds: f64,
    fire_and_forget_flush_seconds: f64,
    /// Peak RSS of each side's worker process (the highest over its rounds).
    baseline_peak_rss_bytes: u64,
    awaited_peak_rss_bytes: u64,
    fire_and_forget_peak_rss_bytes: u64,
    rss_scope: &'static str,
    /// Deliveries the awaited form awaits at once, in all, and the tasks sharing them.
    window: u64,
    tasks: u64,
    records: u64,
    partitions: i32,
    record_bytes: u64,
    key_bytes: usize,
    rounds: &'a [RoundReport],
    broker: String,
    /// librdkafka properties of the baseline (Sluicegate's producer sets the same).
    baseline_config: Vec<String>,
    /// When the baseline polls for deliveries: `each-send` (the baseline) or `when-full`.
    baseline_poll: &'static str,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if args.brokers.is_none() && args.dev_broker {
        let per_partition = args.records.div_ceil(args.partitions as u64);
        let stored = payload::stored_bytes(per_partition, args.record_bytes as usize + KEY_BYTES);
        if stored > payload::MOCK_PARTITION_BYTES {
            eprintln!(
                "note: about {} per partition per round, above the development broker's 5 MiB per partition: \
                 it drops the oldest batches (nothing is read back, so the bench is unaffected)",
                rss::mib(stored)
            );
        }
    }
    let broker = if args.dev_broker {
        BenchBroker::given_or_child(None, &[(&args.topic, args.partitions)])?
    } else {
        BenchBroker::given_or_kafka(args.brokers.as_deref())?
    };
    let java = if args.without_java {
        Err("skipped (--without-java)".to_owned())
    } else {
        peer_programs::java_producer().map_err(|error| format!("unavailable: {error:#}"))
    };
    let (bootstrap, broker_label) = (
        broker.bootstrap_servers().to_owned(),
        broker.label().to_owned(),
    );
    ensure_topic(&bootstrap, &args.topic, args.partitions)?;
    eprintln!(
        "producing {} records of {} bytes to `{}` ({} partitions) per side and round, {} rounds, on {broker_label}",
        thousands(args.records),
        args.record_bytes,
        args.topic,
        args.partitions,
        args.rounds
    );

    let mut rounds = Vec::new();
    let mut sides = vec![Side::Baseline, Side::Awaited, Side::FireAndForget];
    if java.is_ok() {
        sides.push(Side::Java);
    }
    let mut progress =
        Progress::new("rounds", u64::from(args.rounds) * sides.len() as u64).unit("runs");
    for round in 0..args.rounds {
        // Rotate the order so machine noise falls on every side alike.
        let mut order = sides.clone();
        order.rotate_left(round as usize % sides.len());
        let mut line = format!("round {}/{}:", round + 1, args.rounds);
        for side in order {
            let report: RoundReport = match (&java, side) {
                (Ok(program), Side::Java) => java_round(program, &args, &bootstrap)?,
                _ => spawn_worker(&worker_args(&args, side, &bootstrap))?,
            };
            if report.delivered != args.records || report.failed > 0 {
                bail!(
                    "{} delivered {} of {} records ({} failed)",
                    side.label(),
                    thousands(report.delivered),
                    thousands(args.records),
                    thousands(report.failed)
                );
            }
            line.push_str(&format!(
                " {} {} records/s ({:.3} s, RSS {});",
                side.label(),
                per_second(report.rps),
                report.seconds,
                rss::mib(report.peak_rss_bytes)
            ));
            rounds.push(report);
            progress.update(rounds.len() as u64);
        }
        progress.note(line.trim_end_matches(';'));
    }
    progress.finish(rounds.len() as u64);
    drop(broker);

    let of = |side: Side, figure: fn(&RoundReport) -> f64| -> f64 {
        median(
            &rounds
                .iter()
                .filter(|report| report.side == side)
                .map(figure)
                .collect::<Vec<_>>(),
        )
    };
    let peak_of = |side: Side| {
        rounds
            .iter()
            .filter(|report| report.side == side)
            .map(|report| report.peak_rss_bytes)
            .max()
            .unwrap_or(0)
    };
    let baseline_rps = of(Side::Baseline, |report| report.rps);
    let awaited_rps = of(Side::Awaited, |report| report.rps);
    let fire_and_forget_rps = of(Side::FireAndForget, |report| report.rps);
    let over_baseline = |rps: f64| {
        if baseline_rps > 0.0 {
            rps / baseline_rps
        } else {
            0.0
        }
    };
    let java_rps = java.is_ok().then(|| of(Side::Java, |report| report.rps));
    let report = ProduceReport {
        baseline_rps,
        awaited_rps,
        fire_and_forget_rps,
        ratio: over_baseline(fire_and_forget_rps),
        java_rps,
        fire_and_forget_over_java: java_rps
            .filter(|java| *java > 0.0)
            .map(|java| fire_and_forget_rps / java),
        java: match &java {
            Ok(_) => "ran (kafka-clients of the broker's version, its own JVM)".to_owned(),
            Err(reason) => reason.clone(),
        },
        java_peak_rss_bytes: peak_of(Side::Java),
        awaited_ratio: over_baseline(awaited_rps),
        baseline_mb_per_s: of(Side::Baseline, |report| report.mb_per_s),
        awaited_mb_per_s: of(Side::Awaited, |report| report.mb_per_s),
        fire_and_forget_mb_per_s: of(Side::FireAndForget, |report| report.mb_per_s),
        baseline_seconds: of(Side::Baseline, |report| report.seconds),
        awaited_seconds: of(Side::Awaited, |report| report.seconds),
        fire_and_forget_seconds: of(Side::FireAndForget, |report| report.seconds),
        baseline_flush_seconds: of(Side::Baseline, |report| report.flush_seconds),
        awaited_flush_seconds: of(Side::Awaited, |report| report.flush_seconds),
        fire_and_forget_flush_seconds: of(Side::FireAndForget, |report| report.flush_seconds),
        baseline_peak_rss_bytes: peak_of(Side::Baseline),
        awaited_peak_rss_bytes: peak_of(Side::Awaited),
        fire_and_forget_peak_rss_bytes: peak_of(Side::FireAndForget),
        rss_scope: RSS_SCOPE,
        window: args.window,
        tasks: args.tasks,
        records: args.records,
        partitions: args.partitions,
        record_bytes: args.record_bytes,
        key_bytes: KEY_BYTES,
        rounds: &rounds,
        broker: broker_label,
        baseline_config: baseline_config(args.buffer_records, &args.properties)
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect(),
        baseline_poll: args.baseline_poll.label(),
    };
    if args.json {
        return print_json(&report);
    }
    print_report(&report, args.rounds, args.baseline_poll)
}

fn print_report(
    report: &ProduceReport<'_>,
    rounds: u32,
    baseline_poll: BaselinePoll,
) -> anyhow::Result<()> {
    out!(
        "sluice-lab bench produce: {} records ({}-byte key, {}-byte value) to {} partitions per side and round, {} rounds, on {}",
        thousands(report.records),
        report.key_bytes,
        report.record_bytes,
        report.partitions,
        rounds,
        report.broker
    )?;
    out!(
        "librdkafka properties of every side: {}",
        report.baseline_config.join(", ")
    )?;
    out!(
        "baseline        (BaseProducer loop, {}, flush): median {} records/s, {:.1} MB/s",
        baseline_poll.loop_description(),
        per_second(report.baseline_rps),
        report.baseline_mb_per_s
    )?;
    out!(
        "awaited         (Producer::produce, {} awaited at once over {} tasks): median {} records/s, {:.1} MB/s, ratio {:.3}",
        thousands(report.window),
        report.tasks,
        per_second(report.awaited_rps),
        report.awaited_mb_per_s,
        report.awaited_ratio
    )?;
    out!(
        "fire-and-forget (Producer::produce_and_forget, shutdown): median {} records/s, {:.1} MB/s, ratio {:.3} (goal >= {GOAL:.2})",
        per_second(report.fire_and_forget_rps),
        report.fire_and_forget_mb_per_s,
        report.ratio
    )?;
    match report.java_rps {
        Some(java_rps) => out!(
            "java            (KafkaProducer, acks=all, idempotence, linger 5 ms, batch 1 MB, flush): median {} records/s; \
             fire-and-forget / java {:.3}",
            per_second(java_rps),
            report.fire_and_forget_over_java.unwrap_or(0.0)
        )?,
        None => out!("java            {}", report.java)?,
    }
    out!(
        "median seconds to the last delivery / until flush or shutdown returned: baseline {:.3} / {:.3}, \
         awaited {:.3} / {:.3}, fire-and-forget {:.3} / {:.3}",
        report.baseline_seconds,
        report.baseline_flush_seconds,
        report.awaited_seconds,
        report.awaited_flush_seconds,
        report.fire_and_forget_seconds,
        report.fire_and_forget_flush_seconds
    )?;
    out!(
        "peak RSS: baseline {}, awaited {}, fire-and-forget {} ({})",
        rss::mib(report.baseline_peak_rss_bytes),
        rss::mib(report.awaited_peak_rss_bytes),
        rss::mib(report.fire_and_forget_peak_rss_bytes),
        report.rss_scope
    )?;
    Ok(())
}

/// One round of the Java `KafkaProducer`, in its own JVM.
fn java_round(
    program: &PeerProgram,
    args: &ProduceArgs,
    bootstrap: &str,
) -> anyhow::Result<RoundReport> {
    program.report([
        bootstrap.to_owned(),
        args.topic.clone(),
        args.records.to_string(),
        args.record_bytes.to_string(),
    ])
}

fn worker_args(args: &ProduceArgs, side: Side, bootstrap: &str) -> Vec<String> {
    let mut worker = vec![
        "bench".to_owned(),
        "produce-worker".to_owned(),
        "--side".to_owned(),
        side.label().to_owned(),
        "--brokers".to_owned(),
        bootstrap.to_owned(),
        "--topic".to_owned(),
        args.topic.clone(),
        "--records".to_owned(),
        args.records.to_string(),
        "--record-bytes".to_owned(),
        args.record_bytes.to_string(),
        "--window".to_owned(),
        args.window.to_string(),
        "--tasks".to_owned(),
        args.tasks.to_string(),
        "--baseline-full-poll-ms".to_owned(),
        args.baseline_full_poll_ms.to_string(),
        "--baseline-poll".to_owned(),
        args.baseline_poll.label().to_owned(),
    ];
    if let Some(records) = args.buffer_records {
        worker.extend(["--buffer-records".to_owned(), records.to_string()]);
    }
    for property in &args.properties {
        worker.push("--set".to_owned());
        worker.push(property.to_string());
    }
    worker
}

/// The baseline's librdkafka properties beyond `bootstrap.servers`: Sluicegate's, then the
/// experiments' (which Sluicegate's side gets too).
fn baseline_config(buffer_records: Option<u64>, extra: &[Property]) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = BASELINE_CONFIG
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let buffer = buffer_records.map(|records| Property {
        key: "queue.buffering.max.messages".to_owned(),
        value: records.to_string(),
    });
    for property in buffer.iter().chain(extra) {
        properties.retain(|(key, _)| *key != property.key);
        properties.push((property.key.clone(), property.value.clone()));
    }
    properties
}

pub fn run_worker(args: ProduceWorkerArgs) -> anyhow::Result<()> {
    let mut value = Vec::new();
    payload::fill(&mut value, 0, args.record_bytes);
    let report = match args.side {
        Side::Baseline => baseline_round(&args, &value)?,
        Side::Awaited | Side::FireAndForget => {
            crate::runtime()?.block_on(sluice_round(&args, &value))?
        }
        Side::Java => bail!("the Java producer is a peer program, not a worker of this binary"),
    };
    print_json(&report)
}

/// Timestamps and counts of one round.
struct Timing {
    warmup: Duration,
    started: Instant,
    /// The last record was handed over.
    sent: Instant,
    /// The last delivery report arrived.
    delivered_at: Instant,
    /// The flush (or shutdown) returned.
    flushed: Instant,
    delivered: u64,
    failed: u64,
}

impl Timing {
    fn report(&self, side: Side, record_bytes: usize) -> RoundReport {
        let since_start = |at: Instant| at.duration_since(self.started).as_secs_f64();
        let seconds = since_start(self.delivered_at);
        let rps = if seconds > 0.0 {
            self.delivered as f64 / seconds
        } else {
            0.0
        };
        RoundReport {
            side,
            delivered: self.delivered,
            failed: self.failed,
            rps,
            mb_per_s: rps * record_bytes as f64 / 1e6,
            seconds,
            send_seconds: since_start(self.sent),
            flush_seconds: since_start(self.flushed),
            warmup_seconds: self.warmup.as_secs_f64(),
            queue_full: None,
            peak_rss_bytes: rss::peak_bytes().unwrap_or(0),
        }
    }
}

/// Counts the baseline's delivery reports and notes when the last one arrived.
struct Deliveries {
    /// Deliveries (warm-up included) after which the round is complete.
    expected: u64,
    delivered: AtomicU64,
    failed: AtomicU64,
    last: OnceLock<Instant>,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    fn reported(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
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
                self.first_error
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_or_insert_with(|| error.to_string());
            }
        }
        if self.reported() == self.expected {
            let _ = self.last.set(Instant::now());
        }
    }
}

/// The fastest plain loop: send, poll(0) to serve delivery reports; on a full queue, poll and
/// send again; flush at the end.
fn baseline_round(args: &ProduceWorkerArgs, value: &[u8]) -> anyhow::Result<RoundReport> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.brokers);
    for (key, value) in baseline_config(
        args.buffer_records.map(|records| records as u64),
        &args.properties,
    ) {
        config.set(key, value);
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries {
            expected: args.records + 1,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last: OnceLock::new(),
            first_error: Mutex::new(None),
        })
        .context("could not create the baseline producer")?;
    let topic = args.topic.as_str();
    let full_poll = Duration::from_millis(args.baseline_full_poll_ms);
    let mut queue_full = 0;

    let warmup_started = Instant::now();
    let warmup_record = BaseRecord::to(topic).key(&b"warm-up"[..]).payload(value);
    send(&producer, warmup_record, full_poll, &mut queue_full)?;
    flush(&producer, Duration::from_secs(30))?;
    let warmup = warmup_started.elapsed();
    if producer.context().delivered.load(Ordering::Relaxed) != 1 {
        bail!("the baseline's warm-up record was not delivered");
    }

    let poll_each_send = args.baseline_poll == BaselinePoll::EachSend;
    let started = Instant::now();
    for sequence in 0..args.records {
        let key = sequence.to_be_bytes();
        let record = BaseRecord::to(topic).key(&key[..]).payload(value);
        send(&producer, record, full_poll, &mut queue_full)?;
        if poll_each_send {
            producer.poll(Duration::ZERO);
        }
    }
    let sent = Instant::now();
    flush(&producer, FLUSH_TIMEOUT)?;
    let flushed = Instant::now();
    let deliveries = producer.context();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = deliveries
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_default();
        tracing::warn!(failed, first, "baseline deliveries failed");
    }
    let mut report = Timing {
        warmup,
        started,
        sent,
        delivered_at: deliveries.last.get().copied().unwrap_or(flushed),
        flushed,
        delivered: deliveries.delivered.load(Ordering::Relaxed) - 1,
        failed,
    }
    .report(Side::Baseline, args.record_bytes);
    report.queue_full = Some(queue_full);
    Ok(report)
}

/// Sends one record; while the queue is full, serves delivery reports and tries again.
fn send(
    producer: &BaseProducer<Deliveries>,
    mut record: BaseRecord<'_, [u8], [u8]>,
    full_poll: Duration,
    queue_full: &mut u64,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                *queue_full += 1;
                // rdkafka's `poll` serves events until its timeout ends (it does not return
                // after the first), so a short one.
                producer.poll(full_poll);
            }
            Err((error, _)) => return Err(error).context("the baseline could not send a record"),
        }
    }
}

/// Flushes, failing when no record is delivered for [`STALL_TIMEOUT`] or the whole flush
/// takes longer than `limit`.
fn flush(producer: &BaseProducer<Deliveries>, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_seen = (producer.context().reported(), Instant::now());
    loop {
        // rdkafka's `flush` polls in slices of up to 100 ms, each served to its end: it
        // returns up to 100 ms after the last delivery (the report times that separately).
        match producer.flush(Duration::from_millis(100)) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                let now = producer.context().reported();
                if now != last_seen.0 {
                    last_seen = (now, Instant::now());
                } else if last_seen.1.elapsed() >= STALL_TIMEOUT || started.elapsed() >= limit {
                    bail!(
                        "the baseline's flush stalled with {} records in flight",
                        producer.in_flight_count()
                    );
                }
            }
            Err(error) => return Err(error).context("the baseline could not flush"),
        }
    }
}

/// Sluicegate's producer with default options, in the awaited or the fire-and-forget form.
async fn sluice_round(args: &ProduceWorkerArgs, value: &[u8]) -> anyhow::Result<RoundReport> {
    let mut options = ProducerOptions::new().bootstrap_servers(&args.brokers);
    if let Some(records) = args.buffer_records {
        options = options.buffer_records(records);
    }
    for property in &args.properties {
        options = options.librdkafka(&property.key, &property.value);
    }
    let producer = Producer::new(options);
    producer.start().context("could not start the producer")?;

    let warmup_started = Instant::now();
    producer
        .produce(&args.topic, ProduceRecord::new(value).key(b"warm-up"))
        .await
        .context("the warm-up record was not delivered")?;
    let warmup = warmup_started.elapsed();

    let started = Instant::now();
    let (sent, delivered_at, failed) = match args.side {
        Side::Awaited => {
            let failed = produce_awaited(&producer, args, value).await?;
            // Every delivery has been awaited: the last one has just arrived.
            let now = Instant::now();
            (now, now, failed)
        }
        _ => {
            for sequence in 0..args.records {
                let key = sequence.to_be_bytes();
                producer
                    .produce_and_forget(&args.topic, ProduceRecord::new(value).key(&key))
                    .await
                    .context("could not produce a record")?;
            }
            let sent = Instant::now();
            let delivered_at = last_delivery(&producer, args.records + 1).await?;
            (sent, delivered_at, 0)
        }
    };
    let shutdown = producer.shutdown(FLUSH_TIMEOUT).await;
    let flushed = Instant::now();
    if shutdown.undelivered > 0 {
        bail!(
            "{} records were not delivered within {} s",
            thousands(shutdown.undelivered as u64),
            FLUSH_TIMEOUT.as_secs()
        );
    }
    Ok(Timing {
        warmup,
        started,
        sent,
        delivered_at,
        flushed,
        // The warm-up record counts among the producer's deliveries.
        delivered: shutdown.stats.delivered.saturating_sub(1),
        failed: failed.max(shutdown.stats.failed),
    }
    .report(args.side, args.record_bytes))
}

/// The awaited form: `--tasks` tasks, each awaiting its share of `--window` deliveries at once
/// (`buffer_unordered`), record `n` in task `n % tasks`; returns the failed deliveries.
async fn produce_awaited(
    producer: &Producer,
    args: &ProduceWorkerArgs,
    value: &[u8],
) -> anyhow::Result<u64> {
    let tasks = args.tasks.max(1);
    let per_task = args.window.div_ceil(tasks).max(1);
    let mut running = tokio::task::JoinSet::new();
    for first in 0..tasks as u64 {
        let (producer, topic, value) = (producer.clone(), args.topic.clone(), value.to_vec());
        let records = (first..args.records).step_by(tasks);
        running.spawn(async move {
            let (producer, topic, value) = (&producer, topic.as_str(), value.as_slice());
            let mut deliveries = futures_util::stream::iter(records)
                .map(|sequence| async move {
                    let key = sequence.to_be_bytes();
                    producer
                        .produce(topic, ProduceRecord::new(value).key(&key))
                        .await
                })
                .buffer_unordered(per_task);
            let mut failed = 0u64;
            while let Some(delivery) = deliveries.next().await {
                if let Err(error) = delivery {
                    if failed == 0 {
                        tracing::warn!(%error, "an awaited delivery failed");
                    }
                    failed += 1;
                }
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(task) = running.join_next().await {
        failed += task.context("an awaiting task failed")?;
    }
    Ok(failed)
}

/// Waits until the producer has `expected` delivery reports (successes and failures) and
/// returns when they were complete, to within 100 µs. Fails when they stop coming for
/// [`STALL_TIMEOUT`].
async fn last_delivery(producer: &Producer, expected: u64) -> anyhow::Result<Instant> {
    let producer = producer.clone();
    // A thread of its own: tokio's timer ticks in whole milliseconds.
    tokio::task::spawn_blocking(move || {
        let reported = || {
            let stats = producer.stats();
            stats.delivered + stats.failed
        };
        let mut last_seen = (reported(), Instant::now());
        loop {
            let now = reported();
            if now >= expected {
                return Ok(Instant::now());
            }
            if now != last_seen.0 {
                last_seen = (now, Instant::now());
            } else if last_seen.1.elapsed() >= STALL_TIMEOUT {
                bail!("deliveries stalled at {now} of {expected}");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    })
    .await
    .context("the delivery watch failed")?
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: ProduceArgs,
    }

    #[derive(Parser)]
    struct Worker {
        #[command(flatten)]
        args: ProduceWorkerArgs,
    }

    #[test]
    fn workers_get_every_setting() {
        let bench = Bench::parse_from([
            "produce",
            "--records",
            "10",
            "--record-bytes",
            "20",
            "--window",
            "7",
            "--tasks",
            "3",
            "--buffer-records",
            "500",
            "--baseline-poll",
            "when-full",
            "--set",
            "batch.size=1000",
        ])
        .args;
        let args = worker_args(&bench, Side::FireAndForget, "h:1");
        assert_eq!(args[..2], ["bench", "produce-worker"]);
        let worker = Worker::parse_from(
            std::iter::once("worker".to_owned()).chain(args.into_iter().skip(2)),
        )
        .args;
        assert_eq!(worker.side, Side::FireAndForget);
        assert_eq!(worker.brokers, "h:1");
        assert_eq!(worker.topic, "sluice-bench-produce");
        assert_eq!(
            (
                worker.records,
                worker.record_bytes,
                worker.window,
                worker.tasks
            ),
            (10, 20, 7, 3)
        );
        assert_eq!(worker.buffer_records, Some(500));
        assert_eq!(worker.baseline_poll, BaselinePoll::WhenFull);
        assert_eq!(worker.properties, vec!["batch.size=1000".parse().unwrap()]);
    }

    #[test]
    fn the_baseline_takes_the_library_defaults_and_the_experiments() {
        let config = baseline_config(None, &[]);
        assert_eq!(config.len(), BASELINE_CONFIG.len());
        let config = baseline_config(Some(500), &["linger.ms=1".parse().unwrap()]);
        let value = |key: &str| {
            let values: Vec<&str> = config
                .iter()
                .filter(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
                .collect();
            assert_eq!(values.len(), 1, "{key} set once");
            values[0]
        };
        assert_eq!(value("queue.buffering.max.messages"), "500");
        assert_eq!(value("linger.ms"), "1");
        assert_eq!(value("acks"), "all");
    }
}
