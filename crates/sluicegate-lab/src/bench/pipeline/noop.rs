//! The no-op throughput comparison: the pipeline (partition order, default concurrency, a
//! handler that returns its message) against `bench consume`'s plain rdkafka loop and the
//! engine's own batch loop, on the same topic shape as `bench consume` (a development broker
//! child process by default). Each side runs in a child process of its own; rounds rotate the
//! order of the sides and the report gives medians.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::{Deserialize, Serialize};
use sluicegate::pipeline::Pipeline;
use sluicegate::ConsumerEngine;
use tokio::sync::Notify;

use super::{engine_options, wait_until_done, PipelineArgs};
use crate::bench::consume::{consume_topic, Side};
use crate::bench::{
    filled_topic, fresh_group, median, per_second, print_json, spawn_worker, DefaultBroker,
    FilledTopic, GroupTimeouts, WorkerTarget, RSS_SCOPE,
};
use crate::out;
use sluicegate_cli::tool::progress::{thousands, Progress};
use sluicegate_cli::tool::rss;
use sluicegate_cli::tool::topic::{self, PartitionOffsets};

/// Share of the plain loop's records/s the no-op pipeline must reach.
const NOOP_GOAL: f64 = 0.85;

/// One side of the no-op comparison run as a child process: the pipeline.
#[derive(Debug, Args)]
pub struct PipelineWorkerArgs {
    #[command(flatten)]
    target: WorkerTarget,
    /// Records to read before stopping.
    #[arg(long)]
    expected: u64,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    #[arg(long)]
    partition_buffer: Option<usize>,
}

/// What one round of the pipeline side measured, printed by the worker as JSON.
#[derive(Debug, Clone, Serialize)]
struct PipelineRound {
    records: u64,
    rps: f64,
    seconds: f64,
    startup_seconds: f64,
    committed_records: u64,
    peak_rss_bytes: u64,
}

/// One round of one side of the no-op comparison, as reported: the figures every worker's
/// report holds (`bench consume`'s [`RoundReport`](crate::bench::consume::RoundReport) and
/// [`PipelineRound`] alike), read from it, and the side.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NoopRound {
    /// "baseline", "engine" or "pipeline" (not in a worker's report: set after reading it).
    #[serde(skip_deserializing)]
    side: &'static str,
    records: u64,
    rps: f64,
    seconds: f64,
    startup_seconds: f64,
    peak_rss_bytes: u64,
}

/// What the no-op comparison measured.
#[derive(Debug, Serialize)]
pub(super) struct NoopReport {
    baseline_rps: f64,
    /// The engine's own batch loop (`bench consume`'s sluice side).
    engine_rps: f64,
    pipeline_rps: f64,
    pub(super) noop_ratio: f64,
    pipeline_to_engine_ratio: f64,
    meets_goal: bool,
    pipeline_peak_rss_bytes: u64,
    baseline_peak_rss_bytes: u64,
    records: u64,
    partitions: i32,
    record_bytes: u64,
    broker: String,
    rounds: Vec<NoopRound>,
}

/// Prints the medians of the sides and their ratios.
pub(super) fn print_report(noop: &NoopReport, rounds_per_side: u32) -> anyhow::Result<()> {
    out!(
        "sluice-lab bench pipeline: no-op handler, {} records ({} partitions x {} bytes) per round, {} rounds, \
         median, on {}",
        thousands(noop.records),
        noop.partitions,
        noop.record_bytes,
        rounds_per_side,
        noop.broker
    )?;
    out!(
        "baseline (bench consume's BaseConsumer loop): {} records/s; engine (next_batch + ack_many loop): {} \
         records/s; pipeline (partition order, default concurrency): {} records/s",
        per_second(noop.baseline_rps),
        per_second(noop.engine_rps),
        per_second(noop.pipeline_rps)
    )?;
    out!(
        "noop_ratio pipeline/baseline: {:.3} (goal >= {NOOP_GOAL:.2}: {}); pipeline/engine: {:.3}",
        noop.noop_ratio,
        if noop.meets_goal { "met" } else { "NOT met" },
        noop.pipeline_to_engine_ratio
    )?;
    out!(
        "peak RSS: pipeline {}, baseline {} ({})",
        rss::mib(noop.pipeline_peak_rss_bytes),
        rss::mib(noop.baseline_peak_rss_bytes),
        RSS_SCOPE
    )?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoopSide {
    Baseline,
    Engine,
    Pipeline,
}

impl NoopSide {
    fn label(self) -> &'static str {
        match self {
            NoopSide::Baseline => "baseline",
            NoopSide::Engine => "engine",
            NoopSide::Pipeline => "pipeline",
        }
    }
}

/// Runs the rounds of every side and takes the medians.
pub(super) fn run(args: &PipelineArgs) -> anyhow::Result<NoopReport> {
    let record_bytes = args.record_bytes as usize;
    // Without --dev-broker, `pipeline::run` started Kafka and passed it as --brokers.
    let default_broker = DefaultBroker::chosen(args.dev_broker);
    let (topic_name, records_per_partition) = consume_topic(
        args.topic.as_deref(),
        default_broker,
        args.partitions,
        args.records_per_partition,
        args.record_bytes,
    );
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
        "no-op comparison: {} records ({} partitions) per round, {} rounds per side, on {broker_label}",
        thousands(expected),
        offsets.len(),
        args.rounds
    );
    let mut rounds = Vec::new();
    // Three sides a round.
    let mut progress = Progress::new("rounds", u64::from(args.rounds) * 3).unit("runs");
    for round in 0..args.rounds {
        let mut order = [NoopSide::Baseline, NoopSide::Engine, NoopSide::Pipeline];
        order.rotate_left(round as usize % 3);
        let mut line = format!("round {}/{}:", round + 1, args.rounds);
        for side in order {
            let measured = noop_round(args, side, &bootstrap, &topic_name, expected)?;
            if measured.records < expected {
                bail!(
                    "{} read {} of {} records",
                    side.label(),
                    thousands(measured.records),
                    thousands(expected)
                );
            }
            line.push_str(&format!(
                " {} {} records/s ({:.3} s, +{:.3} s start-up);",
                side.label(),
                per_second(measured.rps),
                measured.seconds,
                measured.startup_seconds
            ));
            rounds.push(measured);
            progress.update(rounds.len() as u64);
        }
        progress.note(line.trim_end_matches(';'));
    }
    progress.finish(rounds.len() as u64);
    drop(broker);
    let rps_of = |side: NoopSide| {
        median(
            &rounds
                .iter()
                .filter(|round| round.side == side.label())
                .map(|round| round.rps)
                .collect::<Vec<_>>(),
        )
    };
    let peak_of = |side: NoopSide| {
        rounds
            .iter()
            .filter(|round| round.side == side.label())
            .map(|round| round.peak_rss_bytes)
            .max()
            .unwrap_or(0)
    };
    let ratio = |over: f64, under: f64| if under > 0.0 { over / under } else { 0.0 };
    let baseline_rps = rps_of(NoopSide::Baseline);
    let engine_rps = rps_of(NoopSide::Engine);
    let pipeline_rps = rps_of(NoopSide::Pipeline);
    let noop_ratio = ratio(pipeline_rps, baseline_rps);
    Ok(NoopReport {
        baseline_rps,
        engine_rps,
        pipeline_rps,
        noop_ratio,
        pipeline_to_engine_ratio: ratio(pipeline_rps, engine_rps),
        meets_goal: noop_ratio >= NOOP_GOAL,
        pipeline_peak_rss_bytes: peak_of(NoopSide::Pipeline),
        baseline_peak_rss_bytes: peak_of(NoopSide::Baseline),
        records: expected,
        partitions: args.partitions,
        record_bytes: args.record_bytes,
        broker: args.broker_label.clone().unwrap_or(broker_label),
        rounds,
    })
}

/// Runs one side once in a child process: the baseline and the engine loop are `bench
/// consume`'s own workers, the pipeline is `bench pipeline-worker`.
fn noop_round(
    args: &PipelineArgs,
    side: NoopSide,
    bootstrap: &str,
    topic_name: &str,
    expected: u64,
) -> anyhow::Result<NoopRound> {
    let (worker, consume_side) = match side {
        NoopSide::Baseline => ("consume-worker", Some(Side::Baseline)),
        NoopSide::Engine => ("consume-worker", Some(Side::Sluice)),
        NoopSide::Pipeline => ("pipeline-worker", None),
    };
    let mut command = vec!["bench".to_owned(), worker.to_owned()];
    if let Some(consume_side) = consume_side {
        command.extend(["--side".to_owned(), consume_side.label().to_owned()]);
    }
    command.extend([
        "--brokers".to_owned(),
        bootstrap.to_owned(),
        "--topic".to_owned(),
        topic_name.to_owned(),
        "--group".to_owned(),
        fresh_group(&format!("pipeline-noop-{}", side.label())),
        "--expected".to_owned(),
        expected.to_string(),
    ]);
    command.extend(args.timeouts.to_args());
    if side != NoopSide::Baseline {
        if let Some(records) = args.partition_buffer {
            command.extend(["--partition-buffer".to_owned(), records.to_string()]);
        }
    }
    let mut round: NoopRound = spawn_worker(&command)?;
    round.side = side.label();
    Ok(round)
}

/// What the no-op handler shares: the last offset of each partition (indexed by partition),
/// so the end is seen without a shared counter per record.
struct NoopState {
    last_offsets: Vec<Option<i64>>,
    partitions_left: AtomicUsize,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: Notify,
}

/// `bench pipeline-worker`: runs the pipeline side once and prints its [`PipelineRound`].
pub fn run_worker(args: PipelineWorkerArgs) -> anyhow::Result<()> {
    let offsets = args.target.partition_offsets()?;
    let report = crate::runtime()?.block_on(pipeline_round(&args, &offsets))?;
    let committed_records = args.target.committed_records(&offsets)?;
    if committed_records != topic::total_records(&offsets) {
        tracing::warn!(
            committed_records,
            "the pipeline's group did not commit every record it read"
        );
    }
    print_json(&PipelineRound {
        committed_records,
        ..report
    })
}

/// The pipeline with a handler that returns its message, in partition order with the
/// default concurrency.
async fn pipeline_round(
    args: &PipelineWorkerArgs,
    offsets: &[PartitionOffsets],
) -> anyhow::Result<PipelineRound> {
    let target = &args.target;
    let options = engine_options(
        &target.brokers,
        &target.group,
        &target.topic,
        &args.timeouts,
        args.partition_buffer,
    );
    let partitions = offsets
        .iter()
        .map(|offsets| offsets.partition as usize + 1)
        .max()
        .unwrap_or(0);
    let mut last_offsets = vec![None; partitions];
    for offsets in offsets.iter().filter(|offsets| offsets.records() > 0) {
        last_offsets[offsets.partition as usize] = Some(offsets.high - 1);
    }
    let state = Arc::new(NoopState {
        partitions_left: AtomicUsize::new(last_offsets.iter().flatten().count()),
        last_offsets,
        first: OnceLock::new(),
        last: OnceLock::new(),
        done: Notify::new(),
    });
    if state.partitions_left.load(Ordering::Relaxed) == 0 || args.expected == 0 {
        bail!("topic `{}` holds no records", target.topic);
    }
    let created = Instant::now();
    let engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    let pipeline = Pipeline::builder(state.clone())
        .handle_message(|state: Arc<Arc<NoopState>>, message| async move {
            state.first.get_or_init(Instant::now);
            let last = usize::try_from(message.partition())
                .ok()
                .and_then(|partition| state.last_offsets.get(partition).copied().flatten());
            if last == Some(message.offset())
                && state.partitions_left.fetch_sub(1, Ordering::AcqRel) == 1
            {
                let _ = state.last.set(Instant::now());
                state.done.notify_one();
            }
            Ok(message)
        })
        .source(engine)
        .start()
        .context("could not start the pipeline")?;
    // Progress for the stall check comes from the pipeline's own counters.
    let outcome = wait_until_done(&state.done, || pipeline.stats().processed).await;
    let summary = pipeline.shutdown().await;
    if let Err(stalled_at) = outcome {
        bail!(
            "the pipeline stalled at {stalled_at} of {} records (stats: {:?})",
            args.expected,
            summary.stats
        );
    }
    let last = state.last.get().copied().unwrap_or_else(Instant::now);
    let first = state.first.get().copied().unwrap_or(last);
    let seconds = last.duration_since(first).as_secs_f64();
    Ok(PipelineRound {
        records: summary.stats.processed,
        rps: if seconds > 0.0 {
            args.expected as f64 / seconds
        } else {
            0.0
        },
        seconds,
        startup_seconds: first.duration_since(created).as_secs_f64(),
        committed_records: 0,
        peak_rss_bytes: rss::peak_bytes().unwrap_or(0),
    })
}
