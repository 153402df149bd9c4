//! `sluice-lab torture slow`: a slow consumer under a backlog many times its buffer.
//!
//! A topic is filled with `--backlog-multiple` times the partition buffer in every partition
//! (on a development broker in a child process unless `--brokers` names another, so the
//! broker's copy of the backlog does not count in this process's memory). A partition-ordered
//! pipeline whose handler sleeps `--handler-ms` per record then consumes it for at most
//! `--seconds` (or until the backlog is done), while the campaign samples this process's
//! resident memory and the records the pipeline holds every 50 ms.
//!
//! # Checks
//!
//! - bounded buffering: the engine's peak of held records (buffered plus delivered and not
//!   acknowledged, the sum of each partition's high-water mark) never exceeded its bound
//!   (partition buffer × assigned partitions), nor did any sample of the records the pipeline
//!   held;
//! - bounded memory: the peak of the sampled resident set size stays within
//!   `--rss-limit-mib` (peak RSS in the report is that sampled peak, taken while consuming:
//!   the process's own high-water mark would include filling the topic);
//! - nothing lost below the committed offsets: every offset below what the group committed
//!   was handled; partition order kept.
//!
//! `lost` counts records below the committed offsets that were never handled (records past
//! them were simply not reached in the time); `worst_pause_ms` is the longest gap between
//! handler calls while backlog remained.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use sluicegate::pipeline::{Message, Pipeline, ProcessingOrder};
use sluicegate::{ConsumerEngine, ConsumerOptions, Offset};

use super::{CampaignArgs, CampaignReport};
use crate::bench;
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::{rss, topic};

/// Interval between samples of RSS and held records.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const TOPIC: &str = "torture-slow";

#[derive(Debug, Args)]
pub struct SlowArgs {
    #[command(flatten)]
    campaign: CampaignArgs,
    /// Partitions of the topic [default: 8, short: 4].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=256))]
    partitions: Option<i32>,
    /// The pipeline's partition buffer (records per partition).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    partition_buffer: u64,
    /// Backlog per partition, in partition buffers.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(2..=100_000))]
    backlog_multiple: u64,
    /// Bytes per record value (the development broker keeps at most 5 MiB per partition).
    #[arg(long, default_value_t = 768, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// Bytes librdkafka may prefetch per partition, in KiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=2_097_152))]
    prefetch_kib: u64,
    /// Milliseconds the handler sleeps per record.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    handler_ms: u64,
    /// Longest the consumer runs [default: 40, short: 12].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: Option<u64>,
    /// Most resident memory the consuming process may reach, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rss_limit_mib: u64,
}

/// What the handler saw: each partition's offsets in the order they were handled, and when
/// each call started.
#[derive(Default)]
struct Handled {
    offsets: Mutex<BTreeMap<i32, Vec<Offset>>>,
    calls: Mutex<Vec<Instant>>,
}

pub fn run(args: SlowArgs) -> anyhow::Result<()> {
    let short = args.campaign.short;
    let partitions = args.partitions.unwrap_or(if short { 4 } else { 8 });
    let per_partition = args.partition_buffer * args.backlog_multiple;
    let filled = bench::filled_topic(
        args.campaign.brokers.as_deref(),
        bench::DefaultBroker::Development,
        TOPIC,
        partitions,
        per_partition,
        usize::try_from(args.record_bytes)?,
    )?;
    let seconds = Duration::from_secs(args.seconds.unwrap_or(if short { 12 } else { 40 }));
    let report = crate::runtime()?.block_on(campaign(&args, &filled, seconds))?;
    args.campaign.finish(&report)
}

async fn campaign(
    args: &SlowArgs,
    filled: &bench::FilledTopic,
    seconds: Duration,
) -> anyhow::Result<CampaignReport> {
    let group = bench::fresh_group("torture-slow");
    let partition_buffer = usize::try_from(args.partition_buffer)?;
    let options = ConsumerOptions::new(&filled.bootstrap, &group, [TOPIC])
        .session_timeout(Duration::from_secs(6))
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(500))
        .partition_buffer(partition_buffer)
        .prefetch_bytes(usize::try_from(args.prefetch_kib * 1024)?);
    let rss_at_start = rss::current_bytes().unwrap_or(0);
    let engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    let handled = Arc::new(Handled::default());
    let work = Duration::from_millis(args.handler_ms);
    let pipeline = Pipeline::builder(handled.clone())
        .order(ProcessingOrder::Partition)
        .handle_message(
            move |handled: Arc<Arc<Handled>>, message: Message| async move {
                lock(&handled.calls).push(Instant::now());
                tokio::time::sleep(work).await;
                lock(&handled.offsets)
                    .entry(message.partition())
                    .or_default()
                    .push(message.offset());
                Ok(message)
            },
        )
        .source(engine)
        .start()?;

    let held_bound = filled.offsets.len() as u64 * args.partition_buffer;
    let started = Instant::now();
    let (mut peak_rss, mut peak_in_pipeline, mut samples) = (rss_at_start, 0u64, 0u64);
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    while started.elapsed() < seconds {
        ticks.tick().await;
        let stats = pipeline.stats();
        peak_in_pipeline = peak_in_pipeline.max(stats.received - stats.processed - stats.failed);
        peak_rss = peak_rss.max(rss::current_bytes().unwrap_or(0));
        samples += 1;
        if stats.processed + stats.failed >= filled.records {
            break;
        }
    }
    let end = Instant::now();
    let summary = pipeline.shutdown().await;
    let engine = summary
        .sources
        .first()
        .map(|s| s.stats.clone())
        .unwrap_or_default();

    let bootstrap = filled.bootstrap.clone();
    let offsets = filled.offsets.clone();
    let committed = tokio::task::spawn_blocking(move || {
        topic::committed_offsets(
            &bootstrap,
            &group,
            TOPIC,
            offsets.iter().map(|o| o.partition),
        )
    })
    .await??;
    let handled_offsets = lock(&handled.offsets).clone();
    let calls = lock(&handled.calls).clone();

    let mut report = CampaignReport::new("slow");
    report.produced = filled.records;
    report.processed = calls.len() as u64;
    report.peak_rss_bytes = peak_rss;
    let mut distinct = 0;
    for partition in &filled.offsets {
        let seen = handled_offsets
            .get(&partition.partition)
            .map_or(&[][..], Vec::as_slice);
        let set: BTreeSet<Offset> = seen.iter().copied().collect();
        distinct += set.len() as u64;
        let committed = committed
            .get(&partition.partition)
            .copied()
            .unwrap_or(partition.low);
        report.lost += (partition.low..committed)
            .filter(|o| !set.contains(o))
            .count() as u64;
        report.order_violations += seen.windows(2).filter(|pair| pair[1] <= pair[0]).count() as u64;
    }
    report.duplicated = report.processed - distinct;
    let backlog_left = distinct < filled.records;
    report.worst_pause_ms = calls
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .chain(
            calls
                .last()
                .filter(|_| backlog_left)
                .map(|last| end - *last),
        )
        .max()
        .unwrap_or_default()
        .as_millis() as u64;

    report.note("broker", &filled.broker_label);
    report.note(
        "backlog",
        format!(
            "{} records ({} partitions x {} = {} x buffer of {}), {} bytes each",
            thousands(filled.records),
            filled.offsets.len(),
            thousands(filled.records / filled.offsets.len().max(1) as u64),
            args.backlog_multiple,
            args.partition_buffer,
            args.record_bytes
        ),
    );
    report.note(
        "handler",
        format!(
            "{} ms per record, {} s at most",
            args.handler_ms,
            seconds.as_secs()
        ),
    );
    report.note(
        "held records",
        format!(
            "engine peak {} (bound {}), pipeline peak sampled {}",
            thousands(engine.peak_held as u64),
            thousands(engine.held_bound as u64),
            thousands(peak_in_pipeline)
        ),
    );
    report.note(
        "RSS",
        format!(
            "{} at start, {} peak (sampled {} times)",
            rss::mib(rss_at_start),
            rss::mib(peak_rss),
            samples
        ),
    );
    report.note(
        "committed",
        thousands(committed.values().map(|c| *c as u64).sum()),
    );
    report.note("run time", format!("{} s", started.elapsed().as_secs()));

    report.check(
        "nothing lost below the commit",
        report.lost == 0,
        format!(
            "{} offsets below the committed ones never handled",
            thousands(report.lost)
        ),
    );
    report.check(
        "order kept",
        report.order_violations == 0,
        format!(
            "{} partition order violations",
            thousands(report.order_violations)
        ),
    );
    report.check(
        "buffered within bound",
        engine.held_bound as u64 == held_bound
            && engine.peak_held as u64 <= held_bound
            && peak_in_pipeline <= held_bound,
        format!(
            "engine peak {} and pipeline peak {} <= {} (partition buffer x partitions)",
            thousands(engine.peak_held as u64),
            thousands(peak_in_pipeline),
            thousands(held_bound)
        ),
    );
    let limit = args.rss_limit_mib * 1024 * 1024;
    report.check(
        "memory within bound",
        peak_rss <= limit,
        format!("peak RSS {} <= {}", rss::mib(peak_rss), rss::mib(limit)),
    );
    report.check(
        "made progress",
        !calls.is_empty(),
        format!("{} records handled", thousands(calls.len() as u64)),
    );
    Ok(report)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
