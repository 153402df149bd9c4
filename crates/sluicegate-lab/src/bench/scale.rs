//! `sluice-lab bench scale`: how the engine's cost grows with partitions and record size. For
//! each point of partitions (1, 8, 64) × record bytes (100 B, 1 KiB, 10 KiB), a topic holding
//! the same volume of values is read by `bench consume`'s plain rdkafka loop and by the engine
//! (batch form), each in its own child process, with rounds in alternating order; the table
//! gives the ratio of the medians at each point.

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use super::child_broker::BenchBroker;
use super::consume::{RoundReport, Side, Spread};
use super::{
    fresh_group, median, per_second, prepare_topic, print_json, shaped_topic_name, spawn_worker,
    GroupTimeouts,
};
use crate::out;
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::{rss, topic};

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Bootstrap servers of an Apache Kafka to use; default: a single-node Kafka started for
    /// the run (`scripts/kafka start`).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Partition counts (comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1i32, 8, 64])]
    partitions: Vec<i32>,
    /// Record value sizes in bytes (comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = [100u64, 1024, 10_240])]
    record_bytes: Vec<u64>,
    /// Bytes of values in each point's topic: records = this / record bytes, spread evenly
    /// over the partitions.
    #[arg(long, default_value_t = 2 << 30)]
    bytes_per_point: u64,
    /// Rounds per side and point.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    timeouts: GroupTimeouts,
}

/// One point of the table.
#[derive(Debug, Serialize)]
struct Point {
    partitions: i32,
    record_bytes: u64,
    records: u64,
    rdkafka_rps: f64,
    rdkafka_spread: Spread,
    engine_rps: f64,
    engine_spread: Spread,
    /// Engine median / rdkafka median.
    ratio: f64,
    rdkafka_peak_rss_bytes: u64,
    engine_peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
struct ScaleReport {
    broker: String,
    rounds: u32,
    points: Vec<Point>,
}

pub fn run(args: ScaleArgs) -> anyhow::Result<()> {
    if args.partitions.iter().any(|p| !(1..=1024).contains(p)) {
        bail!("--partitions takes counts from 1 to 1024");
    }
    if args
        .record_bytes
        .iter()
        .any(|b| !(8..=1_000_000).contains(b))
    {
        bail!("--record-bytes takes sizes from 8 to 1,000,000");
    }
    let broker = BenchBroker::given_or_kafka(args.brokers.as_deref())?;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let mut points = Vec::new();
    for &partitions in &args.partitions {
        for &record_bytes in &args.record_bytes {
            let per_partition = (args.bytes_per_point / record_bytes / partitions as u64).max(1);
            let name = shaped_topic_name(
                "sluice-bench-scale",
                partitions,
                per_partition,
                record_bytes,
            );
            let offsets = prepare_topic(
                &bootstrap,
                &name,
                partitions,
                per_partition,
                record_bytes as usize,
            )?;
            let records = topic::total_records(&offsets);
            let mut rounds: Vec<RoundReport> = Vec::new();
            for round in 0..args.rounds {
                let mut order = [Side::Baseline, Side::Sluice];
                order.rotate_left(round as usize % 2);
                for side in order {
                    let mut worker = vec![
                        "bench".to_owned(),
                        "consume-worker".to_owned(),
                        "--side".to_owned(),
                        side.label().to_owned(),
                        "--brokers".to_owned(),
                        bootstrap.clone(),
                        "--topic".to_owned(),
                        name.clone(),
                        "--group".to_owned(),
                        fresh_group(&format!("scale-{}", side.label())),
                        "--expected".to_owned(),
                        records.to_string(),
                    ];
                    worker.extend(args.timeouts.to_args());
                    let report: RoundReport = spawn_worker(&worker)?;
                    if report.records < records {
                        bail!(
                            "{} read {} of {} records of `{name}`",
                            side.label(),
                            thousands(report.records),
                            thousands(records)
                        );
                    }
                    rounds.push(report);
                }
            }
            let rps = |side: Side| -> Vec<f64> {
                rounds
                    .iter()
                    .filter(|report| report.side == side)
                    .map(|report| report.rps)
                    .collect()
            };
            let peak = |side: Side| {
                rounds
                    .iter()
                    .filter(|report| report.side == side)
                    .map(|report| report.peak_rss_bytes)
                    .max()
                    .unwrap_or(0)
            };
            let (rdkafka, engine) = (rps(Side::Baseline), rps(Side::Sluice));
            let (rdkafka_rps, engine_rps) = (median(&rdkafka), median(&engine));
            let point = Point {
                partitions,
                record_bytes,
                records,
                rdkafka_rps,
                rdkafka_spread: Spread::of(&rdkafka),
                engine_rps,
                engine_spread: Spread::of(&engine),
                ratio: if rdkafka_rps > 0.0 {
                    engine_rps / rdkafka_rps
                } else {
                    0.0
                },
                rdkafka_peak_rss_bytes: peak(Side::Baseline),
                engine_peak_rss_bytes: peak(Side::Sluice),
            };
            eprintln!(
                "{partitions} partitions x {record_bytes} B: rdkafka {} records/s, engine {} records/s, ratio {:.3}",
                per_second(point.rdkafka_rps),
                per_second(point.engine_rps),
                point.ratio
            );
            points.push(point);
        }
    }
    let report = ScaleReport {
        broker: broker.label().to_owned(),
        rounds: args.rounds,
        points,
    };
    drop(broker);
    if args.json {
        return print_json(&report);
    }
    out!(
        "sluice-lab bench scale: {} of values per point, {} rounds per side, on {}",
        rss::mib(args.bytes_per_point),
        report.rounds,
        report.broker
    )?;
    out!("| partitions | record | records | rdkafka records/s (spread) | engine records/s (spread) | ratio | peak RSS rdkafka / engine |")?;
    out!("| --- | --- | --- | --- | --- | --- | --- |")?;
    for point in &report.points {
        out!(
            "| {} | {} B | {} | {} ({}) | {} ({}) | {:.3} | {} / {} |",
            point.partitions,
            thousands(point.record_bytes),
            thousands(point.records),
            per_second(point.rdkafka_rps),
            point.rdkafka_spread,
            per_second(point.engine_rps),
            point.engine_spread,
            point.ratio,
            rss::mib(point.rdkafka_peak_rss_bytes),
            rss::mib(point.engine_peak_rss_bytes)
        )?;
    }
    Ok(())
}
