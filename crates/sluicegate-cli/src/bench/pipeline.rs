//! `sluice bench pipeline`: the pipeline API under a slow handler, and its overhead with a
//! no-op handler.
//!
//! Two parts, in one run:
//!
//! - **Latency scenario**, Confluent Parallel Consumer's illustration: 10,000 records on one
//!   partition, a message handler whose latency is uniformly random in 0–5 ms (mean 2.5 ms),
//!   pipeline concurrency 100, in partition order, key order with 1, 10, 100 and 10,000
//!   distinct keys (record `i` has key `i % K`: one topic per K), and unordered. The ideal is
//!   concurrency / mean latency = 40,000 records/s; each mode reports its ratio to it. A
//!   fresh consumer group per mode; elapsed time runs from the first handler call to the end
//!   of the last handler call, so the group join does not count. The handler's delays come
//!   from a seeded generator (the same delays for every mode) and are timed by one thread
//!   with a precise sleep, not by tokio's timer, whose 1 ms resolution rounds every sleep up
//!   (a 0–5 ms uniform sleep would average about 3 ms). The actual mean latency seen by the
//!   handler is measured and reported. Runs in this process, on an in-process embedded
//!   broker by default.
//! - **No-op throughput**: the pipeline (partition order, default concurrency, a handler that
//!   returns its message) against `bench consume`'s plain rdkafka loop and the engine's own
//!   batch loop, on the same topic shape as `bench consume` (a development broker child
//!   process by default). Each side runs in a child process of its own; rounds rotate the
//!   order of the sides and the report gives medians.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use sluicegate::pipeline::{Pipeline, ProcessingOrder};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker, StartPosition};
use tokio::sync::{oneshot, Notify};

use super::child_broker::ChildBroker;
use super::consume::{RoundReport, Side};
use super::{
    fresh_group, median, per_second, prepare_topic, print_json, spawn_worker, GroupTimeouts,
    RSS_SCOPE,
};
use crate::exit::usage;
use crate::progress::thousands;
use crate::topic::{self, PartitionOffsets};
use crate::{out, payload, rss};

/// A run that finishes no new record for this long has stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Share of the ideal that key order with every record's own key, and unordered, must reach.
const LATENCY_GOAL: f64 = 0.90;
/// Share of the plain loop's records/s the no-op pipeline must reach.
const NOOP_GOAL: f64 = 0.85;
/// Confluent Parallel Consumer's published elapsed seconds for the same scenario (its README,
/// "illustrative" figures): partition, key order by key count, unordered.
const PC_PARTITION_S: f64 = 22.2;
const PC_KEY_S: &[(u64, f64)] = &[(1, 26.7), (10, 3.31), (100, 2.18), (10_000, 2.13)];
const PC_UNORDERED_S: f64 = 2.83;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The latency scenario only.
    Latency,
    /// The no-op throughput comparison only.
    Noop,
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Bootstrap servers of the broker to use for both parts; default: an embedded broker in
    /// this process for the latency scenario and a `sluice dev-broker` child process for the
    /// no-op comparison.
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
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
    /// No-op comparison: topic to fill and read (reused if it already holds enough records).
    #[arg(long, default_value = "sluice-bench-consume")]
    topic: String,
    /// No-op comparison: partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// No-op comparison: records per partition.
    #[arg(long, default_value_t = 40_000, value_parser = clap::value_parser!(u64).range(1..))]
    records_per_partition: u64,
    /// Bytes per record value (both parts).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// No-op comparison: rounds per side; the report gives the median.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
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

/// One side of the no-op comparison run as a child process: the pipeline.
#[derive(Debug, Args)]
pub struct PipelineWorkerArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// Records to read before stopping.
    #[arg(long)]
    expected: u64,
    #[command(flatten)]
    timeouts: GroupTimeouts,
    #[arg(long)]
    partition_buffer: Option<usize>,
}

/// What one mode of the latency scenario measured.
#[derive(Debug, Clone, Serialize)]
struct ModeReport {
    /// "partition", "key" or "unordered".
    mode: &'static str,
    /// Distinct keys in key order; null otherwise.
    keys: Option<u64>,
    /// Seconds from the first handler call to the end of the last.
    elapsed_s: f64,
    rps: f64,
    /// `rps` / (concurrency / nominal mean latency).
    ratio_to_ideal: f64,
    /// Whether `ratio_to_ideal` reaches the goal; null for the modes without one.
    meets_goal: Option<bool>,
    /// The shortest elapsed time the order and the concurrency allow with the drawn delays:
    /// the longer of the busiest lane's total delay (the whole partition in partition order,
    /// one key's records in key order, one record when unordered) and the total delay divided
    /// by the concurrency.
    bound_elapsed_s: f64,
    /// `bound_elapsed_s` / `elapsed_s`.
    ratio_to_bound: f64,
    /// Mean handler latency as the handler saw it (timer overshoot and wake-up included).
    mean_latency_ms: f64,
    /// `rps` / (concurrency / `mean_latency_ms`): the pipeline's share of what the handler's
    /// measured latency allows, leaving the timer's overshoot out.
    ratio_to_measured_ideal: f64,
    /// Mean time the timer thread completed a sleep after its deadline (part of
    /// `mean_latency_ms`; the rest of the overshoot is waking the handler's task).
    timer_lateness_ms: f64,
    /// Handler calls running at once on average: total handler time / elapsed.
    mean_in_flight: f64,
    /// Most handler calls seen running at once.
    peak_in_flight: u64,
    /// Seconds from starting the engine to the first handler call (group join, first fetch).
    startup_s: f64,
    /// Confluent Parallel Consumer's published elapsed seconds for this mode, if any.
    parallel_consumer_elapsed_s: Option<f64>,
    topic: String,
}

/// What one round of the pipeline side measured, printed by the worker as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRound {
    records: u64,
    rps: f64,
    seconds: f64,
    startup_seconds: f64,
    committed_records: u64,
    peak_rss_bytes: u64,
}

/// One round of one side of the no-op comparison, as reported.
#[derive(Debug, Clone, Serialize)]
struct NoopRound {
    /// "baseline", "engine" or "pipeline".
    side: &'static str,
    records: u64,
    rps: f64,
    seconds: f64,
    startup_seconds: f64,
    peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
struct NoopReport {
    baseline_rps: f64,
    /// The engine's own batch loop (`bench consume`'s sluice side).
    engine_rps: f64,
    pipeline_rps: f64,
    noop_ratio: f64,
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

/// The JSON report of `sluice bench pipeline --json`.
#[derive(Debug, Serialize)]
struct Report {
    modes: Vec<ModeReport>,
    /// No-op pipeline records/s / plain loop records/s; null when not measured.
    noop_ratio: Option<f64>,
    latency: Option<LatencyFacts>,
    noop: Option<NoopReport>,
    rss_scope: &'static str,
}

#[derive(Debug, Serialize)]
struct LatencyFacts {
    records: u64,
    concurrency: u64,
    max_latency_ms: f64,
    /// Mean of the uniform latency distribution: max / 2.
    nominal_mean_latency_ms: f64,
    /// Mean of the delays drawn for this run (the same for every mode).
    drawn_mean_latency_ms: f64,
    ideal_rps: f64,
    goal: f64,
    seed: u64,
    broker: String,
}

pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    if args.keys.is_empty() || args.keys.contains(&0) {
        return Err(usage("--keys needs key counts of at least 1"));
    }
    let latency = match args.only {
        Some(Part::Noop) => None,
        _ => Some(run_latency(&args)?),
    };
    let noop = match args.only {
        Some(Part::Latency) => None,
        _ => Some(run_noop(&args)?),
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
        out!(
            "sluice bench pipeline: Parallel Consumer's scenario: {} records on 1 partition, handler latency uniform \
             0-{} ms (seeded {}, drawn mean {:.3} ms), concurrency {}, on {}",
            thousands(facts.records),
            facts.max_latency_ms,
            facts.seed,
            facts.drawn_mean_latency_ms,
            facts.concurrency,
            facts.broker
        )?;
        out!(
            "ideal = concurrency / mean latency = {} / {} ms = {} records/s; goal: key order with one key per \
             record and unordered >= {:.0} % of ideal",
            facts.concurrency,
            facts.nominal_mean_latency_ms,
            per_second(facts.ideal_rps),
            facts.goal * 100.0
        )?;
        out!(
            "{:<10} {:>6} {:>9} {:>10} {:>6} {:>8} {:>9} {:>6} {:>10} {:>9} {:>5} {:>9}",
            "mode",
            "keys",
            "elapsed",
            "records/s",
            "ratio",
            "goal",
            "bound",
            "/bound",
            "latency",
            "in flight",
            "peak",
            "PC"
        )?;
        for mode in &report.modes {
            out!(
                "{:<10} {:>6} {:>7.3} s {:>10} {:>6.3} {:>8} {:>7.3} s {:>6.3} {:>7.3} ms {:>9.1} {:>5} {:>9}",
                mode.mode,
                mode.keys.map_or_else(|| "-".to_owned(), thousands),
                mode.elapsed_s,
                per_second(mode.rps),
                mode.ratio_to_ideal,
                match mode.meets_goal {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "-",
                },
                mode.bound_elapsed_s,
                mode.ratio_to_bound,
                mode.mean_latency_ms,
                mode.mean_in_flight,
                mode.peak_in_flight,
                mode.parallel_consumer_elapsed_s
                    .map_or_else(|| "-".to_owned(), |seconds| format!("{seconds} s")),
            )?;
        }
        out!(
            "ratio = records/s / ideal; bound = the shortest elapsed the order and the concurrency allow with \
             the drawn delays, /bound = bound / elapsed; latency = mean handler latency measured (the timer's \
             overshoot and the task's wake-up included); in flight = handler time / elapsed; PC = Confluent \
             Parallel Consumer's published elapsed for the same scenario"
        )?;
    }
    if let Some(noop) = &report.noop {
        out!(
            "sluice bench pipeline: no-op handler, {} records ({} partitions x {} bytes) per round, {} rounds, \
             median, on {}",
            thousands(noop.records),
            noop.partitions,
            noop.record_bytes,
            args.rounds,
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
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Latency scenario

/// One mode of the latency scenario.
#[derive(Debug, Clone, Copy)]
struct Mode {
    order: ProcessingOrder,
    /// Distinct keys of the topic it reads.
    keys: u64,
}

impl Mode {
    fn name(self) -> &'static str {
        match self.order {
            ProcessingOrder::Partition => "partition",
            ProcessingOrder::Key => "key",
            ProcessingOrder::Unordered => "unordered",
        }
    }

    fn label(self) -> String {
        match self.order {
            ProcessingOrder::Key if self.keys == 1 => "key order, 1 key".to_owned(),
            ProcessingOrder::Key => format!("key order, {} keys", thousands(self.keys)),
            ProcessingOrder::Partition => "partition order".to_owned(),
            ProcessingOrder::Unordered => "unordered".to_owned(),
        }
    }

    /// The shortest elapsed time this order allows with these delays and this concurrency
    /// (timer overshoot left out): record `i` is in lane `i % lanes`, a lane runs one record
    /// at a time, and at most `concurrency` run at once.
    fn bound(self, delays: &[Duration], concurrency: u64) -> Duration {
        let lanes = match self.order {
            ProcessingOrder::Partition => 1,
            ProcessingOrder::Key => self.keys.max(1) as usize,
            ProcessingOrder::Unordered => delays.len().max(1),
        };
        let mut lane_totals = vec![Duration::ZERO; lanes.min(delays.len()).max(1)];
        for (index, delay) in delays.iter().enumerate() {
            lane_totals[index % lanes] += *delay;
        }
        let busiest = lane_totals.iter().max().copied().unwrap_or_default();
        let total: Duration = delays.iter().sum();
        busiest.max(total / u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX))
    }

    fn parallel_consumer_s(self) -> Option<f64> {
        match self.order {
            ProcessingOrder::Partition => Some(PC_PARTITION_S),
            ProcessingOrder::Unordered => Some(PC_UNORDERED_S),
            ProcessingOrder::Key => PC_KEY_S
                .iter()
                .find(|(keys, _)| *keys == self.keys)
                .map(|(_, seconds)| *seconds),
        }
    }
}

fn run_latency(args: &PipelineArgs) -> anyhow::Result<(Vec<ModeReport>, LatencyFacts)> {
    let embedded = match &args.brokers {
        Some(_) => None,
        None => {
            let stored = payload::stored_bytes(args.records, args.record_bytes as usize);
            if stored > payload::MOCK_PARTITION_BYTES {
                return Err(usage(format!(
                    "{} records of {} bytes is about {} on one partition, above the embedded broker's 5 MiB per \
                     partition limit; use fewer --records, smaller --record-bytes, or pass --brokers",
                    thousands(args.records),
                    args.record_bytes,
                    rss::mib(stored)
                )));
            }
            Some(EmbeddedBroker::start(1).context("could not start the embedded broker")?)
        }
    };
    let (bootstrap, broker_label) = match (&args.brokers, &embedded) {
        (Some(brokers), _) => (brokers.clone(), brokers.clone()),
        (None, Some(broker)) => {
            let address = broker.bootstrap_servers();
            (
                address.clone(),
                format!("an embedded broker (in process) at {address}"),
            )
        }
        (None, None) => unreachable!("an embedded broker is started when --brokers is absent"),
    };
    let mut key_counts = args.keys.clone();
    key_counts.sort_unstable();
    key_counts.dedup();
    // Partition and unordered order read the topic with the most keys (keys do not matter to
    // them).
    let widest = key_counts.iter().copied().max().unwrap_or(1);
    let mut topics = Vec::new();
    for &keys in &key_counts {
        let name = format!("{}-{}r-{}k", args.topic_prefix, args.records, keys);
        let low = prepare_keyed_topic(
            &bootstrap,
            embedded.as_ref(),
            &name,
            args.records,
            keys,
            args.record_bytes as usize,
        )?;
        topics.push((keys, name, low));
    }
    let topic_of = |keys: u64| {
        topics
            .iter()
            .find(|(k, _, _)| *k == keys)
            .map(|(_, name, low)| (name.clone(), *low))
            .expect("a topic was prepared for every key count")
    };
    let mut modes = vec![Mode {
        order: ProcessingOrder::Partition,
        keys: widest,
    }];
    modes.extend(key_counts.iter().map(|&keys| Mode {
        order: ProcessingOrder::Key,
        keys,
    }));
    modes.push(Mode {
        order: ProcessingOrder::Unordered,
        keys: widest,
    });

    let delays: Arc<[Duration]> = draw_delays(args.records, args.max_latency_us, args.seed).into();
    let drawn_mean_ms =
        delays.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / delays.len().max(1) as f64;
    let nominal_mean_ms = args.max_latency_us as f64 / 2e3;
    let ideal_rps = args.concurrency as f64 / (nominal_mean_ms / 1e3);
    let timer = PreciseTimer::start()?;
    let runtime = crate::runtime()?;
    let mut reports = Vec::new();
    for mode in modes {
        let (topic_name, low) = topic_of(mode.keys);
        eprintln!(
            "{}: {} records of `{topic_name}`, concurrency {}",
            mode.label(),
            thousands(args.records),
            args.concurrency
        );
        let run = LatencyRun {
            bootstrap: &bootstrap,
            topic: &topic_name,
            low,
            mode,
            delays: delays.clone(),
            timer: timer.handle(),
            args,
        };
        let measured = runtime.block_on(run.run())?;
        let rps = if measured.elapsed_s > 0.0 {
            args.records as f64 / measured.elapsed_s
        } else {
            0.0
        };
        let ratio_to_ideal = rps / ideal_rps;
        let bound_s = mode.bound(&delays, args.concurrency).as_secs_f64();
        let goal_mode = mode.order == ProcessingOrder::Unordered
            || (mode.order == ProcessingOrder::Key && mode.keys >= args.records);
        let report = ModeReport {
            mode: mode.name(),
            keys: (mode.order == ProcessingOrder::Key).then_some(mode.keys),
            elapsed_s: measured.elapsed_s,
            rps,
            ratio_to_ideal,
            meets_goal: goal_mode.then_some(ratio_to_ideal >= LATENCY_GOAL),
            bound_elapsed_s: bound_s,
            ratio_to_bound: if measured.elapsed_s > 0.0 {
                bound_s / measured.elapsed_s
            } else {
                0.0
            },
            mean_latency_ms: measured.mean_latency_ms,
            ratio_to_measured_ideal: if measured.mean_latency_ms > 0.0 {
                rps / (args.concurrency as f64 / (measured.mean_latency_ms / 1e3))
            } else {
                0.0
            },
            timer_lateness_ms: measured.timer_lateness_ms,
            mean_in_flight: measured.mean_in_flight,
            peak_in_flight: measured.peak_in_flight,
            startup_s: measured.startup_s,
            parallel_consumer_elapsed_s: mode.parallel_consumer_s(),
            topic: topic_name,
        };
        eprintln!(
            "{}: {:.3} s, {} records/s, {:.3} of ideal, mean latency {:.3} ms (timer {:.3} ms late), {:.3} of \
             the measured latency's ideal, {:.1} in flight (peak {})",
            mode.label(),
            report.elapsed_s,
            per_second(report.rps),
            report.ratio_to_ideal,
            report.mean_latency_ms,
            report.timer_lateness_ms,
            report.ratio_to_measured_ideal,
            report.mean_in_flight,
            report.peak_in_flight
        );
        reports.push(report);
    }
    drop(runtime);
    drop(timer);
    drop(embedded);
    Ok((
        reports,
        LatencyFacts {
            records: args.records,
            concurrency: args.concurrency,
            max_latency_ms: args.max_latency_us as f64 / 1e3,
            nominal_mean_latency_ms: nominal_mean_ms,
            drawn_mean_latency_ms: drawn_mean_ms,
            ideal_rps,
            goal: LATENCY_GOAL,
            seed: args.seed,
            broker: broker_label,
        },
    ))
}

/// Makes sure `name` exists with one partition holding exactly `records` records, record `i`
/// keyed `i % keys`; returns the offset of record 0.
fn prepare_keyed_topic(
    bootstrap_servers: &str,
    embedded: Option<&EmbeddedBroker>,
    name: &str,
    records: u64,
    keys: u64,
    record_bytes: usize,
) -> anyhow::Result<i64> {
    let offsets = match topic::partition_offsets(bootstrap_servers, name)? {
        Some(offsets) => offsets,
        None => {
            match embedded {
                Some(broker) => broker
                    .create_topic(name, 1)
                    .with_context(|| format!("could not create topic `{name}`"))?,
                None => topic::create(bootstrap_servers, name, 1)?,
            }
            wait_for_partitions(bootstrap_servers, name)?
        }
    };
    let [partition] = offsets[..] else {
        return Err(usage(format!(
            "topic `{name}` on {bootstrap_servers} has {} partitions, not 1: pass another --topic-prefix",
            offsets.len()
        )));
    };
    match partition.records() {
        held if held == records => {
            eprintln!(
                "topic `{name}` already holds {} records: reusing it",
                thousands(held)
            );
            return Ok(partition.low);
        }
        0 => {}
        held => {
            return Err(usage(format!(
                "topic `{name}` on {bootstrap_servers} holds {} records, not {}: pass another --topic-prefix",
                thousands(held),
                thousands(records)
            )))
        }
    }
    produce_keyed(bootstrap_servers, name, records, keys, record_bytes)?;
    let offsets = wait_for_partitions(bootstrap_servers, name)?;
    match offsets[..] {
        [filled] if filled.records() == records => Ok(filled.low),
        _ => bail!(
            "topic `{name}` holds {} records after filling, not {}",
            thousands(topic::total_records(&offsets)),
            thousands(records)
        ),
    }
}

fn wait_for_partitions(
    bootstrap_servers: &str,
    name: &str,
) -> anyhow::Result<Vec<PartitionOffsets>> {
    for _ in 0..40 {
        if let Some(offsets) = topic::partition_offsets(bootstrap_servers, name)? {
            return Ok(offsets);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("topic `{name}` was created but does not show in the metadata of {bootstrap_servers}")
}

/// Produces `records` records to partition 0 of `name`, record `i` keyed `i % keys` (in
/// decimal), in order (one request in flight).
fn produce_keyed(
    bootstrap_servers: &str,
    name: &str,
    records: u64,
    keys: u64,
    record_bytes: usize,
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .context("could not create the producer")?;
    let mut value = Vec::with_capacity(record_bytes);
    for sequence in 0..records {
        payload::fill(&mut value, sequence, record_bytes);
        let key = (sequence % keys).to_string();
        let mut record = BaseRecord::<str, [u8]>::to(name)
            .partition(0)
            .key(key.as_str())
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    return Err(error).with_context(|| format!("could not produce to {name}/0"))
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("could not flush the records of `{name}`"))?;
    Ok(())
}

/// The handler delay of each record: uniform in 0..=`max_us` microseconds (nanosecond steps),
/// from a seeded xorshift64* generator.
fn draw_delays(records: u64, max_us: u64, seed: u64) -> Vec<Duration> {
    let mut random = XorShift::new(seed);
    let span = max_us * 1_000 + 1;
    (0..records)
        .map(|_| Duration::from_nanos(random.next_u64() % span))
        .collect()
}

/// xorshift64*: small, fast and good enough for drawing delays.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that small seeds give well-mixed, non-zero states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)).max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What one mode measured.
struct Measured {
    elapsed_s: f64,
    startup_s: f64,
    mean_latency_ms: f64,
    timer_lateness_ms: f64,
    mean_in_flight: f64,
    peak_in_flight: u64,
}

struct LatencyRun<'a> {
    bootstrap: &'a str,
    topic: &'a str,
    low: i64,
    mode: Mode,
    delays: Arc<[Duration]>,
    timer: TimerHandle,
    args: &'a PipelineArgs,
}

/// What the latency handler shares.
struct LatencyState {
    delays: Arc<[Duration]>,
    low: i64,
    timer: TimerHandle,
    expected: u64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    finished: AtomicU64,
    latency_nanos: AtomicU64,
    running: AtomicU64,
    peak_running: AtomicU64,
    done: Notify,
}

impl LatencyRun<'_> {
    async fn run(self) -> anyhow::Result<Measured> {
        let args = self.args;
        let mut options = ConsumerOptions::new(
            self.bootstrap,
            fresh_group(&format!("pipeline-{}-{}", self.mode.name(), self.mode.keys)),
            [self.topic],
        )
        .start_position(StartPosition::Earliest)
        .session_timeout(args.timeouts.session_timeout())
        .max_poll_interval(args.timeouts.max_poll_interval());
        if let Some(records) = args.partition_buffer {
            options = options.partition_buffer(records);
        }
        let state = Arc::new(LatencyState {
            delays: self.delays,
            low: self.low,
            timer: self.timer,
            expected: args.records,
            first: OnceLock::new(),
            last: OnceLock::new(),
            finished: AtomicU64::new(0),
            latency_nanos: AtomicU64::new(0),
            running: AtomicU64::new(0),
            peak_running: AtomicU64::new(0),
            done: Notify::new(),
        });
        let lateness_before = state.timer.lateness();
        let started = Instant::now();
        let engine = ConsumerEngine::start(options)
            .await
            .context("could not start the consumer engine")?;
        let pipeline = Pipeline::builder(state.clone())
            .concurrency(args.concurrency as usize)
            .order(self.mode.order)
            .handle_message(|state: Arc<Arc<LatencyState>>, message| async move {
                let called = Instant::now();
                state.first.get_or_init(|| called);
                let running = state.running.fetch_add(1, Ordering::Relaxed) + 1;
                state.peak_running.fetch_max(running, Ordering::Relaxed);
                let index = usize::try_from(message.offset() - state.low).unwrap_or(usize::MAX);
                let delay = state.delays.get(index).copied().unwrap_or_default();
                state.timer.sleep(delay).await;
                let took = called.elapsed();
                state.running.fetch_sub(1, Ordering::Relaxed);
                state
                    .latency_nanos
                    .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                let finished = state.finished.fetch_add(1, Ordering::AcqRel) + 1;
                if finished == state.expected {
                    let _ = state.last.set(Instant::now());
                    state.done.notify_one();
                }
                Ok(message)
            })
            .source(engine)
            .start()
            .context("could not start the pipeline")?;
        let outcome = wait_until_done(&state.done, || state.finished.load(Ordering::Relaxed)).await;
        let summary = pipeline.shutdown().await;
        if let Err(stalled_at) = outcome {
            bail!(
                "{} stalled at {stalled_at} of {} records (pipeline stats: {:?})",
                self.mode.label(),
                args.records,
                summary.stats
            );
        }
        if summary.stats.failed > 0 || summary.stats.processed < args.records {
            bail!(
                "{}: {} of {} records processed, {} failed",
                self.mode.label(),
                summary.stats.processed,
                args.records,
                summary.stats.failed
            );
        }
        let last = state.last.get().copied().unwrap_or_else(Instant::now);
        let first = state.first.get().copied().unwrap_or(last);
        let elapsed = last.duration_since(first).as_secs_f64();
        let latency_s = state.latency_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let finished = state.finished.load(Ordering::Relaxed).max(1);
        let lateness_after = state.timer.lateness();
        let fired = lateness_after.0 - lateness_before.0;
        let timer_lateness_ms = if fired > 0 {
            (lateness_after.1 - lateness_before.1).as_secs_f64() * 1e3 / fired as f64
        } else {
            0.0
        };
        Ok(Measured {
            timer_lateness_ms,
            elapsed_s: elapsed,
            startup_s: first.duration_since(started).as_secs_f64(),
            mean_latency_ms: latency_s * 1e3 / finished as f64,
            mean_in_flight: if elapsed > 0.0 {
                latency_s / elapsed
            } else {
                0.0
            },
            peak_in_flight: state.peak_running.load(Ordering::Relaxed),
        })
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

// ---------------------------------------------------------------------------------------------
// A precise timer

/// Sleeps with sub-millisecond precision: one thread keeps the deadlines in a heap, sleeps
/// (on a condition variable, so a new earlier deadline wakes it) until the earliest, and
/// completes the sleepers whose deadline passed. The overshoot is the OS's wake-up latency
/// (tens of microseconds), where tokio's timer rounds up to the next millisecond.
struct PreciseTimer {
    shared: Arc<TimerShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct TimerHandle(Arc<TimerShared>);

#[derive(Default)]
struct TimerShared {
    queue: Mutex<TimerQueue>,
    wake: Condvar,
    /// Sleepers completed, and the sum of how late the thread completed them.
    fired: AtomicU64,
    lateness_nanos: AtomicU64,
}

#[derive(Default)]
struct TimerQueue {
    sleepers: BinaryHeap<Reverse<Sleeper>>,
    next_id: u64,
    stopped: bool,
}

struct Sleeper {
    deadline: Instant,
    id: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.id) == (other.deadline, other.id)
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.id).cmp(&(other.deadline, other.id))
    }
}

fn lock(queue: &Mutex<TimerQueue>) -> MutexGuard<'_, TimerQueue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PreciseTimer {
    /// Starts the timer thread. Call it from the main thread: Linux lets a sleep end up to
    /// the thread's timer slack (50 us by default) late, and a new thread inherits its
    /// creator's slack, which only the main thread can set (through `/proc/self`). The slack
    /// is lowered to 1 us for the timer thread alone; where that is refused, sleeps are a
    /// little later, and measured as such.
    fn start() -> anyhow::Result<Self> {
        const SLACK: &str = "/proc/self/timerslack_ns";
        let shared = Arc::new(TimerShared::default());
        let slack = std::fs::read_to_string(SLACK).ok();
        if let Err(error) = std::fs::write(SLACK, "1000") {
            tracing::debug!(%error, "could not lower the timer slack");
        }
        let thread = std::thread::Builder::new()
            .name("precise-timer".to_owned())
            .spawn({
                let shared = shared.clone();
                move || run_timer(&shared)
            });
        if let Some(slack) = slack {
            let _ = std::fs::write(SLACK, slack.trim());
        }
        let thread = thread.context("could not start the timer thread")?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn handle(&self) -> TimerHandle {
        TimerHandle(self.shared.clone())
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        lock(&self.shared.queue).stopped = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_timer(shared: &TimerShared) {
    let mut due = Vec::new();
    let mut queue = lock(&shared.queue);
    loop {
        if queue.stopped {
            // Dropping the senders wakes any sleeper left.
            queue.sleepers.clear();
            return;
        }
        let now = Instant::now();
        while let Some(Reverse(first)) = queue.sleepers.peek() {
            if first.deadline > now {
                break;
            }
            if let Some(Reverse(sleeper)) = queue.sleepers.pop() {
                let late = now.duration_since(sleeper.deadline).as_nanos() as u64;
                shared.lateness_nanos.fetch_add(late, Ordering::Relaxed);
                shared.fired.fetch_add(1, Ordering::Relaxed);
                due.push(sleeper.wake);
            }
        }
        if !due.is_empty() {
            drop(queue);
            for wake in due.drain(..) {
                let _ = wake.send(());
            }
            queue = lock(&shared.queue);
            continue;
        }
        queue = match queue.sleepers.peek() {
            Some(Reverse(first)) => {
                let wait = first.deadline.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(queue, wait)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0)
            }
            None => shared
                .wake
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
    }
}

impl TimerHandle {
    /// Sleepers completed so far and their summed lateness.
    fn lateness(&self) -> (u64, Duration) {
        (
            self.0.fired.load(Ordering::Relaxed),
            Duration::from_nanos(self.0.lateness_nanos.load(Ordering::Relaxed)),
        )
    }

    /// Completes after `delay` (at once for zero).
    async fn sleep(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        let deadline = Instant::now() + delay;
        let earliest = {
            let mut queue = lock(&self.0.queue);
            if queue.stopped {
                return;
            }
            let id = queue.next_id;
            queue.next_id += 1;
            queue.sleepers.push(Reverse(Sleeper { deadline, id, wake }));
            queue
                .sleepers
                .peek()
                .is_some_and(|Reverse(first)| first.id == id)
        };
        if earliest {
            self.0.wake.notify_one();
        }
        let _ = woken.await;
    }
}

// ---------------------------------------------------------------------------------------------
// No-op throughput

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

fn run_noop(args: &PipelineArgs) -> anyhow::Result<NoopReport> {
    let record_bytes = args.record_bytes as usize;
    let child = match &args.brokers {
        Some(_) => None,
        None => {
            let stored = payload::stored_bytes(args.records_per_partition, record_bytes);
            if stored > payload::MOCK_PARTITION_BYTES {
                return Err(usage(format!(
                    "{} records of {record_bytes} bytes per partition is above the development broker's 5 MiB per \
                     partition limit; use at most --records-per-partition {} or pass --brokers",
                    thousands(args.records_per_partition),
                    thousands(payload::mock_partition_capacity(record_bytes)),
                )));
            }
            Some(ChildBroker::start(&[(&args.topic, args.partitions)])?)
        }
    };
    let (bootstrap, broker_label) = match (&args.brokers, &child) {
        (Some(brokers), _) => (brokers.clone(), brokers.clone()),
        (None, Some(child)) => {
            let address = child.bootstrap_servers().to_owned();
            (
                address.clone(),
                format!("development broker (child process) at {address}"),
            )
        }
        (None, None) => unreachable!("a child broker is started when --brokers is absent"),
    };
    let offsets = prepare_topic(
        &bootstrap,
        &args.topic,
        args.partitions,
        args.records_per_partition,
        record_bytes,
    )?;
    let expected = topic::total_records(&offsets);
    eprintln!(
        "no-op comparison: {} records ({} partitions) per round, {} rounds per side, on {broker_label}",
        thousands(expected),
        offsets.len(),
        args.rounds
    );
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let mut order = [NoopSide::Baseline, NoopSide::Engine, NoopSide::Pipeline];
        order.rotate_left(round as usize % 3);
        let mut line = format!("round {}/{}:", round + 1, args.rounds);
        for side in order {
            let measured = noop_round(args, side, &bootstrap, expected)?;
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
        }
        eprintln!("{}", line.trim_end_matches(';'));
    }
    drop(child);
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
        broker: broker_label,
        rounds,
    })
}

/// Runs one side once in a child process: the baseline and the engine loop are `bench
/// consume`'s own workers, the pipeline is `bench pipeline-worker`.
fn noop_round(
    args: &PipelineArgs,
    side: NoopSide,
    bootstrap: &str,
    expected: u64,
) -> anyhow::Result<NoopRound> {
    let (worker, consume_side) = match side {
        NoopSide::Baseline => ("consume-worker", Some(Side::Baseline)),
        NoopSide::Engine => ("consume-worker", Some(Side::Sluice)),
        NoopSide::Pipeline => ("pipeline-worker", None),
    };
    let mut command = vec!["bench".to_owned(), worker.to_owned()];
    if let Some(consume_side) = consume_side {
        let label = match consume_side {
            Side::Baseline => "baseline",
            _ => "sluice",
        };
        command.extend(["--side".to_owned(), label.to_owned()]);
    }
    command.extend([
        "--brokers".to_owned(),
        bootstrap.to_owned(),
        "--topic".to_owned(),
        args.topic.clone(),
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
    Ok(match consume_side {
        Some(_) => {
            let report: RoundReport = spawn_worker(&command)?;
            NoopRound {
                side: side.label(),
                records: report.records,
                rps: report.rps,
                seconds: report.seconds,
                startup_seconds: report.startup_seconds,
                peak_rss_bytes: report.peak_rss_bytes,
            }
        }
        None => {
            let report: PipelineRound = spawn_worker(&command)?;
            NoopRound {
                side: side.label(),
                records: report.records,
                rps: report.rps,
                seconds: report.seconds,
                startup_seconds: report.startup_seconds,
                peak_rss_bytes: report.peak_rss_bytes,
            }
        }
    })
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

pub fn run_worker(args: PipelineWorkerArgs) -> anyhow::Result<()> {
    let offsets = topic::partition_offsets(&args.brokers, &args.topic)?
        .with_context(|| format!("topic `{}` does not exist on {}", args.topic, args.brokers))?;
    let report = crate::runtime()?.block_on(pipeline_round(&args, &offsets))?;
    let committed = topic::committed_offsets(
        &args.brokers,
        &args.group,
        &args.topic,
        offsets.iter().map(|offsets| offsets.partition),
    )?;
    let committed_records = offsets
        .iter()
        .filter_map(|offsets| {
            let committed = committed.get(&offsets.partition)?;
            u64::try_from(committed - offsets.low).ok()
        })
        .sum();
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
    let mut options = ConsumerOptions::new(&args.brokers, &args.group, [&args.topic])
        .start_position(StartPosition::Earliest)
        .session_timeout(args.timeouts.session_timeout())
        .max_poll_interval(args.timeouts.max_poll_interval());
    if let Some(records) = args.partition_buffer {
        options = options.partition_buffer(records);
    }
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
        bail!("topic `{}` holds no records", args.topic);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_seeded_uniform_and_in_range() {
        let delays = draw_delays(20_000, 5_000, 42);
        assert_eq!(delays, draw_delays(20_000, 5_000, 42));
        assert_ne!(delays, draw_delays(20_000, 5_000, 43));
        assert!(delays
            .iter()
            .all(|delay| *delay <= Duration::from_millis(5)));
        let mean_ms = delays.iter().sum::<Duration>().as_secs_f64() * 1e3 / delays.len() as f64;
        assert!((mean_ms - 2.5).abs() < 0.05, "mean {mean_ms} ms");
        let below_one_ms = delays
            .iter()
            .filter(|delay| **delay < Duration::from_millis(1))
            .count();
        assert!((3_600..4_400).contains(&below_one_ms), "{below_one_ms}");
    }

    #[test]
    fn bounds_follow_the_order() {
        let delays = vec![Duration::from_millis(1); 1_000];
        let mode = |order, keys| Mode { order, keys };
        let bound = |order, keys| mode(order, keys).bound(&delays, 100);
        assert_eq!(bound(ProcessingOrder::Partition, 1), Duration::from_secs(1));
        assert_eq!(bound(ProcessingOrder::Key, 1), Duration::from_secs(1));
        assert_eq!(bound(ProcessingOrder::Key, 10), Duration::from_millis(100));
        assert_eq!(
            bound(ProcessingOrder::Key, 1_000),
            Duration::from_millis(10)
        );
        assert_eq!(
            bound(ProcessingOrder::Unordered, 1),
            Duration::from_millis(10)
        );
        assert_eq!(
            mode(ProcessingOrder::Unordered, 1).bound(&delays, 10_000),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn the_timer_is_never_early_and_stops_cleanly() {
        let timer = PreciseTimer::start().unwrap();
        let handle = timer.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let lateness = runtime.block_on(async {
            let sleeps = (0..50u64).map(|step| {
                let handle = handle.clone();
                async move {
                    let delay = Duration::from_micros(200 + step * 97);
                    let started = Instant::now();
                    handle.sleep(delay).await;
                    started.elapsed().checked_sub(delay)
                }
            });
            futures_util::future::join_all(sleeps).await
        });
        assert!(lateness.iter().all(Option::is_some), "a sleep ended early");
        let (fired, late) = handle.lateness();
        assert_eq!(fired, 50);
        // Generous: a loaded CI machine may be slow to wake the thread.
        assert!(late / 50 < Duration::from_millis(5), "{late:?} late in all");
        drop(timer);
        // After the timer stopped, sleeps return at once instead of hanging.
        runtime.block_on(handle.sleep(Duration::from_secs(60)));
    }
}
