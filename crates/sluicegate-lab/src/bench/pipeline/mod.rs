//! `sluice-lab bench pipeline`: the pipeline API under a slow handler, and its overhead with a
//! no-op handler.
//!
//! Two parts, in one run (or one with `--only`):
//!
//! - [`latency`]: Confluent Parallel Consumer's slow-handler scenario in every processing
//!   order, against the ideal, in this process;
//! - [`noop`]: a pipeline with a no-op handler against `bench consume`'s plain rdkafka loop and
//!   the engine's own batch loop, each side in a child process.
//!
//! This module holds the flags and what both parts share, runs the parts and joins their
//! reports; each part prints its own section of the text report.

mod keyed_topic;
mod latency;
mod noop;
mod precise_timer;

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;
use sluicegate::{ConsumerOptions, StartPosition};
use tokio::sync::Notify;

use super::child_broker::BenchBroker;
use super::{print_json, GroupTimeouts, RSS_SCOPE, STALL_TIMEOUT};
use sluicegate_cli::tool::exit::usage;

pub use noop::{run_worker, PipelineWorkerArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The latency scenario only.
    Latency,
    /// The no-op throughput comparison only.
    Noop,
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Bootstrap servers of the broker to use for both parts; default: a single-node Apache
    /// Kafka started for the run (`scripts/kafka start`) for both.
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Without --brokers: run on librdkafka's mock cluster instead of Apache Kafka (an
    /// embedded broker in this process for the latency scenario, a development broker child
    /// process for the no-op comparison). They keep at most 5 MiB per partition.
    #[arg(long, conflicts_with = "brokers")]
    dev_broker: bool,
    /// Latency scenario: do not run Confluent Parallel Consumer after each mode.
    #[arg(long)]
    without_parallel_consumer: bool,
    /// How the report names the broker started for the run.
    #[arg(skip)]
    broker_label: Option<String>,
    /// Run only one part.
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Latency scenario: records on the one partition.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    records: u64,
    /// Latency scenario: message handler calls running at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// Latency scenario: distinct key counts to run key order with (comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 10, 100, 10_000])]
    keys: Vec<u64>,
    /// Latency scenario: the handler's latency is uniform from 0 to this many microseconds.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=60_000_000))]
    max_latency_us: u64,
    /// Latency scenario: seed of the handler latencies.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Latency scenario: prefix of its topics (one per key count; reused when they hold
    /// exactly the records asked for).
    #[arg(long, default_value = "sluice-bench-pipeline")]
    topic_prefix: String,
    /// No-op comparison: topic to fill and read (reused if it already holds enough records);
    /// default: `bench consume`'s, `sluice-bench-consume-PxNxB`.
    #[arg(long)]
    topic: Option<String>,
    /// No-op comparison: partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// No-op comparison: records per partition; default: 2,000,000 on Kafka, 40,000 on the
    /// development broker.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    records_per_partition: Option<u64>,
    /// Bytes per record value (both parts).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// No-op comparison: rounds per side; the report gives the median and the spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    /// Engine demand window per partition, for experiments (default: the engine's).
    #[arg(long, hide = true)]
    partition_buffer: Option<usize>,
}

/// The JSON report of `sluice-lab bench pipeline --json`.
#[derive(Debug, Serialize)]
struct Report {
    modes: Vec<latency::ModeReport>,
    /// No-op pipeline records/s / plain loop records/s; null when not measured.
    noop_ratio: Option<f64>,
    latency: Option<latency::LatencyFacts>,
    noop: Option<noop::NoopReport>,
    rss_scope: &'static str,
}

pub fn run(mut args: PipelineArgs) -> anyhow::Result<()> {
    if args.keys.is_empty() || args.keys.contains(&0) {
        return Err(usage("--keys needs key counts of at least 1"));
    }
    // One Kafka for both parts, stopped when the run ends.
    let _kafka = if args.brokers.is_none() && !args.dev_broker {
        let kafka = BenchBroker::given_or_kafka(None)?;
        args.brokers = Some(kafka.bootstrap_servers().to_owned());
        args.broker_label = Some(kafka.label().to_owned());
        Some(kafka)
    } else {
        None
    };
    let latency = match args.only {
        Some(Part::Noop) => None,
        _ => Some(latency::run(&args)?),
    };
    let noop = match args.only {
        Some(Part::Latency) => None,
        _ => Some(noop::run(&args)?),
    };
    let (modes, latency) = latency.unzip();
    let report = Report {
        modes: modes.unwrap_or_default(),
        noop_ratio: noop.as_ref().map(|noop| noop.noop_ratio),
        latency,
        noop,
        rss_scope: RSS_SCOPE,
    };
    if args.json {
        return print_json(&report);
    }
    print_report(&args, &report)
}

fn print_report(args: &PipelineArgs, report: &Report) -> anyhow::Result<()> {
    if let Some(facts) = &report.latency {
        latency::print_report(facts, &report.modes)?;
    }
    if let Some(noop) = &report.noop {
        noop::print_report(noop, args.rounds)?;
    }
    Ok(())
}

/// The engine options of both parts: `group` reads `topic` from the earliest offset, with the
/// bench's group timeouts and, if given, the `--partition-buffer` experiment.
fn engine_options(
    bootstrap_servers: &str,
    group: &str,
    topic: &str,
    timeouts: &GroupTimeouts,
    partition_buffer: Option<usize>,
) -> ConsumerOptions {
    let options = ConsumerOptions::new(bootstrap_servers, group, [topic])
        .start_position(StartPosition::Earliest)
        .session_timeout(timeouts.session_timeout())
        .max_poll_interval(timeouts.max_poll_interval());
    match partition_buffer {
        Some(records) => options.partition_buffer(records),
        None => options,
    }
}

/// Waits for `done`, failing with the progress reached once `progress()` stays the same for
/// [`STALL_TIMEOUT`].
async fn wait_until_done(done: &Notify, progress: impl Fn() -> u64) -> Result<(), u64> {
    let mut last_seen = (progress(), Instant::now());
    loop {
        tokio::select! {
            () = done.notified() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let now = progress();
                if now != last_seen.0 {
                    last_seen = (now, Instant::now());
                } else if last_seen.1.elapsed() >= STALL_TIMEOUT {
                    return Err(now);
                }
            }
        }
    }
}
