//! `sluice-lab bench`: benchmarks as commands that print figures, each measured against a baseline
//! in the same run (never timed assertions in tests).
//!
//! Every bench prints a human report, or with `--json` one JSON object on stdout. Each side of
//! a comparison runs in a child process of its own (a hidden `*-worker` subcommand of this
//! same binary), so the peak RSS reported for it is its own, not the other side's nor the
//! broker's.

mod backlog;
pub mod child_broker;
mod consume;
mod instructions;
mod peer_programs;
mod peers;
mod pipeline;
mod produce;
mod scale;

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluicegate::ConsumerOptions;

use crate::out;
use child_broker::BenchBroker;
use sluicegate_cli::tool::exit::usage;
use sluicegate_cli::tool::payload::ProducePlan;
use sluicegate_cli::tool::progress::{thousands, Progress};
use sluicegate_cli::tool::topic::{self, PartitionOffsets};
use sluicegate_cli::tool::{payload, rss};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Records/s of the engine (no-op handler, acks each record, interval commits) against the
    /// fastest plain rdkafka BaseConsumer loop, on a development broker by default.
    Consume(consume::ConsumeArgs),
    /// Memory under a large backlog and a slow handler: the engine with default options against
    /// a plain rdkafka consumer with librdkafka's defaults (on Apache Kafka: `scripts/kafka start`).
    Backlog(backlog::BacklogArgs),
    /// The pipeline API: Confluent Parallel Consumer's slow-handler scenario (1 partition,
    /// 0-5 ms handler, concurrency 100) in every processing order against the ideal, and a
    /// no-op pipeline against the plain rdkafka loop of `bench consume`.
    Pipeline(pipeline::PipelineArgs),
    /// Instructions per record (valgrind's callgrind), the engine and the pipeline against the
    /// plain rdkafka loop, with the engine's broken down by function.
    Instructions(instructions::InstructionsArgs),
    /// Sluicegate against the consumers users would pick instead, on the same topic of Apache
    /// Kafka in one run: the plain rdkafka loop, the engine, the pipeline, Java's
    /// KafkaConsumer, franz-go and aiokafka.
    Peers(peers::PeersArgs),
    /// How the engine's cost against the plain rdkafka loop grows with partitions (1, 8, 64)
    /// and record size (100 B, 1 KiB, 10 KiB), on Apache Kafka.
    Scale(scale::ScaleArgs),
    /// Records/s of the producer, awaited and fire-and-forget, against the fastest plain
    /// rdkafka BaseProducer loop with the same settings, on a development broker by default.
    Produce(produce::ProduceArgs),
    /// One side of `bench consume`, run as a child process.
    #[command(hide = true)]
    ConsumeWorker(consume::ConsumeWorkerArgs),
    /// One side of `bench backlog`, run as a child process.
    #[command(hide = true)]
    BacklogWorker(backlog::BacklogWorkerArgs),
    /// The pipeline side of `bench pipeline`'s no-op comparison, run as a child process.
    #[command(hide = true)]
    PipelineWorker(pipeline::PipelineWorkerArgs),
    /// One side of `bench produce`, run as a child process.
    #[command(hide = true)]
    ProduceWorker(produce::ProduceWorkerArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Consume(args) => consume::run(args),
        BenchCommand::Backlog(args) => backlog::run(args),
        BenchCommand::ConsumeWorker(args) => consume::run_worker(args),
        BenchCommand::BacklogWorker(args) => backlog::run_worker(args),
        BenchCommand::Pipeline(args) => pipeline::run(args),
        BenchCommand::PipelineWorker(args) => pipeline::run_worker(args),
        BenchCommand::Instructions(args) => instructions::run(args),
        BenchCommand::Peers(args) => peers::run(args),
        BenchCommand::Produce(args) => produce::run(args),
        BenchCommand::Scale(args) => scale::run(args),
        BenchCommand::ProduceWorker(args) => produce::run_worker(args),
    }
}

/// A side that makes no progress for this long has stalled.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a worker reads: the broker, the topic, and the consumer group to read it with (a fresh
/// one each round).
#[derive(Debug, Clone, Args)]
pub struct WorkerTarget {
    #[arg(long)]
    pub brokers: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub group: String,
}

impl WorkerTarget {
    /// The partitions and offsets of the topic; an error if it does not exist.
    pub fn partition_offsets(&self) -> anyhow::Result<Vec<PartitionOffsets>> {
        topic::partition_offsets(&self.brokers, &self.topic)?
            .with_context(|| format!("topic `{}` does not exist on {}", self.topic, self.brokers))
    }

    /// Records covered by the offsets the group committed on the topic.
    pub fn committed_records(&self, offsets: &[PartitionOffsets]) -> anyhow::Result<u64> {
        let committed = topic::committed_offsets(
            &self.brokers,
            &self.group,
            &self.topic,
            offsets.iter().map(|o| o.partition),
        )?;
        Ok(offsets
            .iter()
            .filter_map(|offsets| {
                let committed = committed.get(&offsets.partition)?;
                u64::try_from(committed - offsets.low).ok()
            })
            .sum())
    }
}

/// Group timeouts for both sides of a bench. Short, so that a group whose member left keeps
/// neither the next round's join nor its rebalance waiting (a rebalance waits up to
/// `max.poll.interval.ms` for members to rejoin).
#[derive(Debug, Clone, Args)]
pub struct GroupTimeouts {
    /// Group session timeout in milliseconds.
    #[arg(long, default_value_t = 6_000, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    session_timeout_ms: u64,
    /// Maximum poll interval in milliseconds (a rebalance waits this long for members).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1_000..=86_400_000))]
    max_poll_interval_ms: u64,
}

impl GroupTimeouts {
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }

    pub fn max_poll_interval(&self) -> Duration {
        Duration::from_millis(self.max_poll_interval_ms)
    }

    /// Timeouts for a process run under valgrind, tens of times slower than usual: a minute
    /// of session and five of poll interval.
    pub fn patient() -> Self {
        Self {
            session_timeout_ms: 60_000,
            max_poll_interval_ms: 300_000,
        }
    }

    /// The same settings as librdkafka properties, for plain clients.
    pub fn librdkafka(&self) -> [(&'static str, String); 2] {
        [
            ("session.timeout.ms", self.session_timeout_ms.to_string()),
            (
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            ),
        ]
    }

    /// The flags that pass these settings on to a worker.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--session-timeout-ms".into(),
            self.session_timeout_ms.to_string(),
            "--max-poll-interval-ms".into(),
            self.max_poll_interval_ms.to_string(),
        ]
    }
}

/// The engine's per-partition bounds a bench's engine side runs with, for experiments (default:
/// the engine's defaults). Hidden flags, passed on to the side's worker.
#[derive(Debug, Clone, Args)]
pub struct EngineBounds {
    /// Engine demand window per partition in records (`partition_buffer`).
    #[arg(long, hide = true)]
    partition_buffer: Option<usize>,
    /// Engine prefetch per partition in bytes (`prefetch_bytes`).
    #[arg(long, hide = true)]
    prefetch_bytes: Option<usize>,
}

impl EngineBounds {
    /// The flags that pass these bounds on to a worker.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(records) = self.partition_buffer {
            args.extend(["--partition-buffer".to_owned(), records.to_string()]);
        }
        if let Some(bytes) = self.prefetch_bytes {
            args.extend(["--prefetch-bytes".to_owned(), bytes.to_string()]);
        }
        args
    }

    /// How the report names the engine's options.
    pub fn describe(&self) -> String {
        let mut set = Vec::new();
        if let Some(records) = self.partition_buffer {
            set.push(format!("partition_buffer {records}"));
        }
        if let Some(bytes) = self.prefetch_bytes {
            set.push(format!("prefetch_bytes {bytes}"));
        }
        if set.is_empty() {
            "default options".to_owned()
        } else {
            set.join(", ")
        }
    }

    pub fn apply(&self, mut options: ConsumerOptions) -> ConsumerOptions {
        if let Some(records) = self.partition_buffer {
            options = options.partition_buffer(records);
        }
        if let Some(bytes) = self.prefetch_bytes {
            options = options.prefetch_bytes(bytes);
        }
        options
    }
}

/// A librdkafka property given as `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
}

impl FromStr for Property {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Self {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }),
            _ => Err(format!("`{text}` is not KEY=VALUE")),
        }
    }
}

impl std::fmt::Display for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// A group id no earlier run used: each round reads the topic from the start.
pub fn fresh_group(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("sluice-bench-{label}-{}-{nanos}", std::process::id())
}

/// The broker a bench runs on and its topic, filled to the bench's shape.
pub struct FilledTopic {
    /// Keeps a child broker running until it is dropped.
    pub broker: BenchBroker,
    pub bootstrap: String,
    /// How the report names the broker.
    pub broker_label: String,
    pub offsets: Vec<PartitionOffsets>,
    /// Records in the topic.
    pub records: u64,
}

/// The broker a bench starts for itself when no `--brokers` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultBroker {
    /// A single-node Apache Kafka (`scripts/kafka start`).
    Kafka,
    /// A development broker (librdkafka's mock cluster) in a child process.
    Development,
}

impl DefaultBroker {
    /// `Development` when `--dev-broker` was given, else Kafka.
    pub fn chosen(dev_broker: bool) -> Self {
        if dev_broker {
            Self::Development
        } else {
            Self::Kafka
        }
    }
}

/// The topic a throughput bench reads unless `--topic` names one: named after its shape, so a
/// topic kept on a `--brokers` broker is reused only by a run of the same shape.
pub fn shaped_topic_name(
    prefix: &str,
    partitions: i32,
    records_per_partition: u64,
    record_bytes: u64,
) -> String {
    format!("{prefix}-{partitions}x{records_per_partition}x{record_bytes}")
}

/// The `--brokers` broker (or else the default one, started for the run) with `topic`
/// prepared as [`prepare_topic`] does. A topic the development broker cannot hold whole (it
/// silently drops data beyond 5 MiB per partition) is refused as a usage error.
pub fn filled_topic(
    brokers: Option<&str>,
    default_broker: DefaultBroker,
    topic_name: &str,
    partitions: i32,
    records_per_partition: u64,
    record_bytes: usize,
) -> anyhow::Result<FilledTopic> {
    if brokers.is_none() && default_broker == DefaultBroker::Development {
        let stored = payload::stored_bytes(records_per_partition, record_bytes);
        if stored > payload::MOCK_PARTITION_BYTES {
            return Err(usage(format!(
                "{} records of {record_bytes} bytes per partition is about {} per partition, above the \
                 development broker's 5 MiB per partition limit (it silently drops older data); use at most \
                 --records-per-partition {} or pass --brokers",
                thousands(records_per_partition),
                rss::mib(stored),
                thousands(payload::mock_partition_capacity(record_bytes)),
            )));
        }
    }
    let broker = match default_broker {
        DefaultBroker::Kafka => BenchBroker::given_or_kafka(brokers)?,
        DefaultBroker::Development => {
            BenchBroker::given_or_child(brokers, &[(topic_name, partitions)])?
        }
    };
    let bootstrap = broker.bootstrap_servers().to_owned();
    let broker_label = broker.label().to_owned();
    let offsets = prepare_topic(
        &bootstrap,
        topic_name,
        partitions,
        records_per_partition,
        record_bytes,
    )?;
    let records = topic::total_records(&offsets);
    Ok(FilledTopic {
        broker,
        bootstrap,
        broker_label,
        offsets,
        records,
    })
}

/// Creates `topic` when the broker does not have it; refuses one with another partition
/// count. Returns its offsets.
pub fn ensure_topic(
    bootstrap_servers: &str,
    topic_name: &str,
    partitions: i32,
) -> anyhow::Result<Vec<PartitionOffsets>> {
    let offsets = match topic::partition_offsets(bootstrap_servers, topic_name)? {
        Some(offsets) => offsets,
        None => {
            eprintln!(
                "creating topic `{topic_name}` with {partitions} partitions on {bootstrap_servers}"
            );
            topic::create(bootstrap_servers, topic_name, partitions)?;
            wait_for_topic(bootstrap_servers, topic_name)?
        }
    };
    if offsets.len() != partitions as usize {
        return Err(usage(format!(
            "topic `{topic_name}` on {bootstrap_servers} has {} partitions, not {partitions}: pass --partitions {} \
             or another --topic",
            offsets.len(),
            offsets.len()
        )));
    }
    Ok(offsets)
}

/// Makes sure `topic` exists with `partitions` partitions holding at least
/// `records_per_partition` records each, producing what is missing; returns its offsets.
pub fn prepare_topic(
    bootstrap_servers: &str,
    topic_name: &str,
    partitions: i32,
    records_per_partition: u64,
    record_bytes: usize,
) -> anyhow::Result<Vec<PartitionOffsets>> {
    let offsets = ensure_topic(bootstrap_servers, topic_name, partitions)?;
    let missing: Vec<(i32, u64)> = offsets
        .iter()
        .map(|offsets| {
            (
                offsets.partition,
                records_per_partition.saturating_sub(offsets.records()),
            )
        })
        .filter(|(_, missing)| *missing > 0)
        .collect();
    if missing.is_empty() {
        eprintln!(
            "topic `{topic_name}` already holds {} records: not filling",
            thousands(topic::total_records(&offsets))
        );
        return Ok(offsets);
    }
    let plan = ProducePlan {
        bootstrap_servers: bootstrap_servers.to_owned(),
        topic: topic_name.to_owned(),
        partitions: missing,
        first_sequence: topic::total_records(&offsets),
        record_bytes,
    };
    let mut progress = Progress::new("filling", plan.total());
    let report = crate::produce::produce(&plan, |done| progress.update(done))?;
    progress.finish(report.delivered);
    let offsets = topic::partition_offsets(bootstrap_servers, topic_name)?
        .with_context(|| format!("topic `{topic_name}` vanished after filling it"))?;
    if let Some(short) = offsets
        .iter()
        .find(|offsets| offsets.records() < records_per_partition)
    {
        bail!(
            "{topic_name}/{} keeps {} records after filling, not {} (the embedded broker drops data beyond \
             5 MiB or 100,000 batches per partition)",
            short.partition,
            thousands(short.records()),
            thousands(records_per_partition)
        );
    }
    Ok(offsets)
}

/// Waits up to 10 s for a topic just created to show in the metadata; returns its offsets.
pub fn wait_for_topic(
    bootstrap_servers: &str,
    topic_name: &str,
) -> anyhow::Result<Vec<PartitionOffsets>> {
    for _ in 0..40 {
        if let Some(offsets) = topic::partition_offsets(bootstrap_servers, topic_name)? {
            return Ok(offsets);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "topic `{topic_name}` was created but does not show in the metadata of {bootstrap_servers}"
    )
}

/// Where each bench's peak RSS figures come from.
pub const RSS_SCOPE: &str =
    "each side runs in its own child process; the broker is a separate process";

/// Prints `report` as one line of JSON (a bench's `--json` output or a worker's report).
pub fn print_json(report: &impl Serialize) -> anyhow::Result<()> {
    out!(
        "{}",
        serde_json::to_string(report).context("could not encode the report")?
    )?;
    Ok(())
}

/// Runs this binary with `args` as a child process and parses the JSON object it prints last
/// on stdout. Its stderr goes to ours.
pub fn spawn_worker<T: DeserializeOwned>(args: &[String]) -> anyhow::Result<T> {
    let exe = std::env::current_exe().context("could not find the sluice-lab executable")?;
    let output = Command::new(&exe)
        .args(sluicegate_cli::tool::logging::global_flags())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {}", exe.display()))?;
    let name = args.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
    if !output.status.success() {
        bail!("worker `sluice-lab {name}` failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .with_context(|| format!("worker `sluice-lab {name}` printed no report"))?;
    serde_json::from_str(line)
        .with_context(|| format!("worker `sluice-lab {name}` printed a bad report: {line}"))
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Formats a rate as whole records per second with thousands separators.
pub fn per_second(rate: f64) -> String {
    thousands(rate.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn properties_parse() {
        let property: Property = "fetch.wait.max.ms=1".parse().unwrap();
        assert_eq!(
            (property.key.as_str(), property.value.as_str()),
            ("fetch.wait.max.ms", "1")
        );
        assert!("novalue".parse::<Property>().is_err());
        assert!("=1".parse::<Property>().is_err());
    }
}
