//! `sluice-lab bench peers`: Sluicegate against the consumers users would pick instead, side
//! by side on the same pre-filled topic of Apache Kafka, in one run.
//!
//! Every side reads every record of the topic with a fresh group, does nothing with them, and
//! commits. Each runs in a child process of its own, once per round, in an order that rotates
//! every round so the machine's noise falls on every side alike; the report gives each side's
//! median records/s (first record to last, so the group join does not count), the spread
//! (lowest and highest round), the ratio to the plain rdkafka loop and peak RSS.
//!
//! Sides: the plain rdkafka `BaseConsumer` loop (`bench consume`'s baseline), the engine in
//! batch form and per record (`bench consume`'s), the no-op pipeline (`bench pipeline`'s), and
//! the peers in other languages of [`super::peer_programs`]: Java's `KafkaConsumer`, franz-go
//! and aiokafka.

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::child_broker::BenchBroker;
use super::consume::consume_topic;
use super::peer_programs::{self, PeerProgram};
use super::{
    fresh_group, median, per_second, prepare_topic, print_json, spawn_worker, DefaultBroker,
    GroupTimeouts,
};
use crate::out;
use sluicegate_cli::tool::progress::{thousands, Progress};
use sluicegate_cli::tool::rss;
use sluicegate_cli::tool::topic;

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Bootstrap servers of an Apache Kafka to use; default: a single-node Kafka started for
    /// the run (`scripts/kafka start`), stopped at its end.
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Topic to fill and read (reused if it already holds enough records); default: `bench
    /// consume`'s, `sluice-bench-consume-PxNxB`.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Records per partition.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    records_per_partition: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// Rounds per side (at least 3 for a median with a spread).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Sides to run (comma separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    sides: Vec<PeerSide>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    timeouts: GroupTimeouts,
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerSide {
    /// rdkafka's `BaseConsumer` poll loop storing each offset, auto commit (the baseline).
    Rdkafka,
    /// `ConsumerEngine`, `next_batch` + `ack_many`, interval commits.
    Engine,
    /// `ConsumerEngine`, `next` + `ack` per record, interval commits.
    EnginePerRecord,
    /// A pipeline whose handler returns its message: partition order, default concurrency.
    Pipeline,
    /// Apache Kafka's Java `KafkaConsumer` (kafka-clients 4.x), a tuned poll loop.
    Java,
    /// franz-go (Go), a poll loop.
    FranzGo,
    /// aiokafka (Python), a `getmany` loop.
    Aiokafka,
}

impl PeerSide {
    const ALL: [PeerSide; 7] = [
        PeerSide::Rdkafka,
        PeerSide::Engine,
        PeerSide::EnginePerRecord,
        PeerSide::Pipeline,
        PeerSide::Java,
        PeerSide::FranzGo,
        PeerSide::Aiokafka,
    ];

    fn label(self) -> &'static str {
        match self {
            PeerSide::Rdkafka => "rdkafka BaseConsumer loop",
            PeerSide::Engine => "sluicegate engine (batch)",
            PeerSide::EnginePerRecord => "sluicegate engine (per record)",
            PeerSide::Pipeline => "sluicegate pipeline (no-op)",
            PeerSide::Java => "Java KafkaConsumer 4.x",
            PeerSide::FranzGo => "franz-go",
            PeerSide::Aiokafka => "aiokafka",
        }
    }

    fn name(self) -> &'static str {
        match self {
            PeerSide::Rdkafka => "rdkafka",
            PeerSide::Engine => "engine",
            PeerSide::EnginePerRecord => "engine-per-record",
            PeerSide::Pipeline => "pipeline",
            PeerSide::Java => "java",
            PeerSide::FranzGo => "franz-go",
            PeerSide::Aiokafka => "aiokafka",
        }
    }
}

/// What every side prints at the end of a round (our workers print more; extra fields are
/// ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct PeerReport {
    records: u64,
    /// Seconds from the first record to the last.
    seconds: f64,
    /// Seconds from creating the client to the first record.
    startup_seconds: f64,
    peak_rss_bytes: u64,
}

/// One round of one side.
#[derive(Debug, Clone, Serialize)]
struct Round {
    side: PeerSide,
    round: u32,
    records: u64,
    rps: f64,
    seconds: f64,
    startup_seconds: f64,
    peak_rss_bytes: u64,
}

/// One side's figures over its rounds.
#[derive(Debug, Clone, Serialize)]
struct SideSummary {
    side: PeerSide,
    label: &'static str,
    /// Why the side did not run (its tool is missing or failed to build); the figures are 0.
    unavailable: Option<String>,
    median_rps: f64,
    min_rps: f64,
    max_rps: f64,
    /// Median records/s over the rdkafka loop's median in the same run.
    ratio_to_rdkafka: f64,
    median_startup_seconds: f64,
    peak_rss_bytes: u64,
}

/// The JSON report of `sluice-lab bench peers --json`.
#[derive(Debug, Serialize)]
struct PeersReport {
    broker: String,
    topic: String,
    partitions: i32,
    record_bytes: u64,
    records: u64,
    rounds_per_side: u32,
    sides: Vec<SideSummary>,
    rounds: Vec<Round>,
}

/// How a side is run.
enum Runner {
    /// A worker of this binary, with these leading arguments.
    Worker(Vec<String>),
    /// A peer program of another language.
    Program(PeerProgram),
}

pub fn run(args: PeersArgs) -> anyhow::Result<()> {
    let mut sides = if args.sides.is_empty() {
        PeerSide::ALL.to_vec()
    } else {
        args.sides.clone()
    };
    sides.sort();
    sides.dedup();
    let (topic_name, _) = consume_topic(
        args.topic.as_deref(),
        DefaultBroker::Kafka,
        args.partitions,
        Some(args.records_per_partition),
        args.record_bytes,
    );
    let broker = BenchBroker::given_or_kafka(args.brokers.as_deref())?;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let offsets = prepare_topic(
        &bootstrap,
        &topic_name,
        args.partitions,
        args.records_per_partition,
        args.record_bytes as usize,
    )?;
    let expected = topic::total_records(&offsets);

    let mut runners = Vec::new();
    let mut unavailable = Vec::new();
    for side in sides {
        match runner(side) {
            Ok(runner) => runners.push((side, runner)),
            Err(error) => {
                let reason = format!("{error:#}");
                eprintln!("peers: {} unavailable: {reason}", side.label());
                unavailable.push((side, reason));
            }
        }
    }
    if runners.is_empty() {
        bail!("no side can run");
    }
    eprintln!(
        "reading {} records ({} partitions x {} bytes) per round, {} rounds per side, on {}",
        thousands(expected),
        offsets.len(),
        args.record_bytes,
        args.rounds,
        broker.label()
    );
    let mut rounds = Vec::new();
    let mut progress =
        Progress::new("rounds", u64::from(args.rounds) * runners.len() as u64).unit("runs");
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..runners.len()).collect();
        order.rotate_left(round as usize % runners.len());
        for index in order {
            let (side, runner) = &runners[index];
            let group = fresh_group(&format!("peers-{}", side.name()));
            let report = run_side(runner, &args, &bootstrap, &topic_name, &group, expected)
                .with_context(|| format!("{} failed in round {}", side.label(), round + 1))?;
            if report.records < expected {
                bail!(
                    "{} read {} of {} records",
                    side.label(),
                    thousands(report.records),
                    thousands(expected)
                );
            }
            let rps = if report.seconds > 0.0 {
                report.records as f64 / report.seconds
            } else {
                0.0
            };
            progress.note(&format!(
                "round {}/{}: {} {} records/s ({:.3} s, +{:.3} s start-up, RSS {})",
                round + 1,
                args.rounds,
                side.label(),
                per_second(rps),
                report.seconds,
                report.startup_seconds,
                rss::mib(report.peak_rss_bytes)
            ));
            rounds.push(Round {
                side: *side,
                round: round + 1,
                records: report.records,
                rps,
                seconds: report.seconds,
                startup_seconds: report.startup_seconds,
                peak_rss_bytes: report.peak_rss_bytes,
            });
            progress.update(rounds.len() as u64);
        }
    }
    progress.finish(rounds.len() as u64);
    let report = PeersReport {
        broker: broker.label().to_owned(),
        topic: topic_name,
        partitions: args.partitions,
        record_bytes: args.record_bytes,
        records: expected,
        rounds_per_side: args.rounds,
        sides: summarize(&runners, &unavailable, &rounds),
        rounds,
    };
    drop(broker);
    if args.json {
        return print_json(&report);
    }
    print_table(&report)
}

/// How `side` runs: our workers need nothing built; a peer program is built first.
fn runner(side: PeerSide) -> anyhow::Result<Runner> {
    let worker = |worker: &str, side: Option<&str>| {
        let mut args = vec!["bench".to_owned(), worker.to_owned()];
        if let Some(side) = side {
            args.extend(["--side".to_owned(), side.to_owned()]);
        }
        Runner::Worker(args)
    };
    Ok(match side {
        PeerSide::Rdkafka => worker("consume-worker", Some("baseline")),
        PeerSide::Engine => worker("consume-worker", Some("sluice")),
        PeerSide::EnginePerRecord => worker("consume-worker", Some("sluice-per-record")),
        PeerSide::Pipeline => worker("pipeline-worker", None),
        PeerSide::Java => Runner::Program(peer_programs::java_consumer()?),
        PeerSide::FranzGo => Runner::Program(peer_programs::franz_go()?),
        PeerSide::Aiokafka => Runner::Program(peer_programs::aiokafka()?),
    })
}

/// Runs one round of one side in its child process and reads its report.
fn run_side(
    runner: &Runner,
    args: &PeersArgs,
    bootstrap: &str,
    topic_name: &str,
    group: &str,
    expected: u64,
) -> anyhow::Result<PeerReport> {
    match runner {
        Runner::Worker(leading) => {
            let mut worker = leading.clone();
            worker.extend([
                "--brokers".to_owned(),
                bootstrap.to_owned(),
                "--topic".to_owned(),
                topic_name.to_owned(),
                "--group".to_owned(),
                group.to_owned(),
                "--expected".to_owned(),
                expected.to_string(),
            ]);
            worker.extend(args.timeouts.to_args());
            spawn_worker(&worker)
        }
        Runner::Program(program) => program.report([
            bootstrap.to_owned(),
            topic_name.to_owned(),
            group.to_owned(),
            expected.to_string(),
        ]),
    }
}

/// Each side's median, spread and ratio; the unavailable sides after them.
fn summarize(
    runners: &[(PeerSide, Runner)],
    unavailable: &[(PeerSide, String)],
    rounds: &[Round],
) -> Vec<SideSummary> {
    let rps_of = |side: PeerSide| -> Vec<f64> {
        rounds
            .iter()
            .filter(|round| round.side == side)
            .map(|round| round.rps)
            .collect()
    };
    let baseline = median(&rps_of(PeerSide::Rdkafka));
    let mut summaries: Vec<SideSummary> = runners
        .iter()
        .map(|(side, _)| {
            let rps = rps_of(*side);
            let startup: Vec<f64> = rounds
                .iter()
                .filter(|round| round.side == *side)
                .map(|round| round.startup_seconds)
                .collect();
            let median_rps = median(&rps);
            SideSummary {
                side: *side,
                label: side.label(),
                unavailable: None,
                median_rps,
                min_rps: rps.iter().copied().fold(f64::INFINITY, f64::min),
                max_rps: rps.iter().copied().fold(0.0, f64::max),
                ratio_to_rdkafka: if baseline > 0.0 {
                    median_rps / baseline
                } else {
                    0.0
                },
                median_startup_seconds: median(&startup),
                peak_rss_bytes: rounds
                    .iter()
                    .filter(|round| round.side == *side)
                    .map(|round| round.peak_rss_bytes)
                    .max()
                    .unwrap_or(0),
            }
        })
        .collect();
    summaries.extend(unavailable.iter().map(|(side, reason)| SideSummary {
        side: *side,
        label: side.label(),
        unavailable: Some(reason.clone()),
        median_rps: 0.0,
        min_rps: 0.0,
        max_rps: 0.0,
        ratio_to_rdkafka: 0.0,
        median_startup_seconds: 0.0,
        peak_rss_bytes: 0,
    }));
    summaries
}

fn print_table(report: &PeersReport) -> anyhow::Result<()> {
    out!(
        "sluice-lab bench peers: {} records ({} partitions x {} bytes) per round, {} rounds per side, on {}",
        thousands(report.records),
        report.partitions,
        report.record_bytes,
        report.rounds_per_side,
        report.broker
    )?;
    out!(
        "| side | median records/s | spread (min – max) | ratio to rdkafka | start-up | peak RSS |"
    )?;
    out!("| --- | --- | --- | --- | --- | --- |")?;
    for side in &report.sides {
        match &side.unavailable {
            Some(reason) => out!("| {} | unavailable: {reason} | | | | |", side.label)?,
            None => out!(
                "| {} | {} | {} – {} | {:.3} | {:.2} s | {} |",
                side.label,
                per_second(side.median_rps),
                per_second(side.min_rps),
                per_second(side.max_rps),
                side.ratio_to_rdkafka,
                side.median_startup_seconds,
                rss::mib(side.peak_rss_bytes)
            )?,
        }
    }
    Ok(())
}
