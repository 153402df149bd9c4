//! `sluice-lab bench instructions`: instructions per record, the engine against the plain
//! rdkafka loop, counted by valgrind's callgrind. Counts, unlike timings, barely move with the
//! machine's load, so this is the overhead figure to trust on a shared two-core machine.
//!
//! Each side (`bench consume`'s and `bench pipeline`'s workers) runs under callgrind twice:
//! on a topic of N records per partition and on one of 2N. The difference of the two totals,
//! divided by the extra records, is the cost of a record with start-up, group join and shutdown
//! taken out (every thread of the process counts: librdkafka's fetching and parsing too, for
//! every side alike). The engine's figure is broken down by function the same way (the
//! difference of each function's own instructions between the two runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{
    filled_topic, fresh_group, print_json, shaped_topic_name, DefaultBroker, FilledTopic,
    GroupTimeouts,
};
use crate::out;
use sluicegate_cli::tool::progress::thousands;

#[derive(Debug, Args)]
pub struct InstructionsArgs {
    /// Bootstrap servers of the broker to use; default: a single-node Apache Kafka started for
    /// the run (`scripts/kafka start`).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Without --brokers: run on a development broker (librdkafka's mock cluster) instead.
    #[arg(long, conflicts_with = "brokers")]
    dev_broker: bool,
    /// Partitions of the two topics.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Records per partition of the smaller topic (the larger holds twice as many).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    records_per_partition: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    record_bytes: u64,
    /// Sides to count (comma separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    sides: Vec<CountedSide>,
    /// Functions to list in the engine's breakdown.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Where callgrind's output files go; default: a directory under target/.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

/// A side whose instructions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountedSide {
    /// rdkafka's `BaseConsumer` loop (`bench consume`'s baseline).
    Rdkafka,
    /// The engine, `next_batch` + `ack_many`.
    Engine,
    /// The engine, `next` + `ack` per record.
    EnginePerRecord,
    /// The no-op pipeline.
    Pipeline,
}

impl CountedSide {
    const ALL: [CountedSide; 4] = [
        CountedSide::Rdkafka,
        CountedSide::Engine,
        CountedSide::EnginePerRecord,
        CountedSide::Pipeline,
    ];

    fn name(self) -> &'static str {
        match self {
            CountedSide::Rdkafka => "rdkafka",
            CountedSide::Engine => "engine",
            CountedSide::EnginePerRecord => "engine-per-record",
            CountedSide::Pipeline => "pipeline",
        }
    }

    /// The worker subcommand and side.
    fn worker(self) -> Vec<String> {
        let consume = |side: &str| {
            vec![
                "bench".to_owned(),
                "consume-worker".to_owned(),
                "--side".to_owned(),
                side.to_owned(),
            ]
        };
        match self {
            CountedSide::Rdkafka => consume("baseline"),
            CountedSide::Engine => consume("sluice"),
            CountedSide::EnginePerRecord => consume("sluice-per-record"),
            CountedSide::Pipeline => vec!["bench".to_owned(), "pipeline-worker".to_owned()],
        }
    }
}

/// One side's counts.
#[derive(Debug, Serialize)]
struct SideCount {
    side: CountedSide,
    /// Instructions of the whole process on the smaller and on the larger topic.
    total_small: u64,
    total_large: u64,
    /// (large - small) / extra records.
    per_record: f64,
    /// `per_record` / the rdkafka loop's.
    ratio_to_rdkafka: Option<f64>,
    /// Where the time goes, per record: the functions whose own instructions grew most
    /// between the two runs (the engine and the pipeline only).
    by_function: Vec<FunctionCost>,
}

#[derive(Debug, Serialize)]
struct FunctionCost {
    function: String,
    per_record: f64,
}

#[derive(Debug, Serialize)]
struct InstructionsReport {
    broker: String,
    partitions: i32,
    record_bytes: u64,
    records_small: u64,
    records_large: u64,
    sides: Vec<SideCount>,
    out_dir: String,
}

pub fn run(args: InstructionsArgs) -> anyhow::Result<()> {
    let mut sides = if args.sides.is_empty() {
        CountedSide::ALL.to_vec()
    } else {
        args.sides.clone()
    };
    sides.sort();
    sides.dedup();
    which("valgrind")?;
    which("callgrind_annotate")?;
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/callgrind")
            .join(fresh_group("instructions"))
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let default_broker = DefaultBroker::chosen(args.dev_broker);
    let small_name = shaped_topic_name(
        "sluice-bench-instructions",
        args.partitions,
        args.records_per_partition,
        args.record_bytes,
    );
    let small = filled_topic(
        args.brokers.as_deref(),
        default_broker,
        &small_name,
        args.partitions,
        args.records_per_partition,
        args.record_bytes as usize,
    )?;
    let large_name = shaped_topic_name(
        "sluice-bench-instructions",
        args.partitions,
        args.records_per_partition * 2,
        args.record_bytes,
    );
    // On the same broker as the smaller topic.
    let large = filled_topic(
        Some(&small.bootstrap),
        default_broker,
        &large_name,
        args.partitions,
        args.records_per_partition * 2,
        args.record_bytes as usize,
    )?;
    let extra = large.records.saturating_sub(small.records);
    if extra == 0 {
        bail!("the larger topic holds no more records than the smaller");
    }
    let mut counts = Vec::new();
    for side in sides {
        let small_out = out_dir.join(format!("{}-small.out", side.name()));
        let large_out = out_dir.join(format!("{}-large.out", side.name()));
        eprintln!(
            "counting {} on {} records",
            side.name(),
            thousands(small.records)
        );
        count(side, &small, &small_name, &small_out)?;
        eprintln!(
            "counting {} on {} records",
            side.name(),
            thousands(large.records)
        );
        count(side, &large, &large_name, &large_out)?;
        let small_functions = functions(&small_out)?;
        let large_functions = functions(&large_out)?;
        let total_small = small_functions.total;
        let total_large = large_functions.total;
        let per_record = total_large.saturating_sub(total_small) as f64 / extra as f64;
        let by_function = if side == CountedSide::Rdkafka {
            Vec::new()
        } else {
            growth_by_function(&small_functions.own, &large_functions.own, extra, args.top)
        };
        counts.push(SideCount {
            side,
            total_small,
            total_large,
            per_record,
            ratio_to_rdkafka: None,
            by_function,
        });
    }
    let baseline = counts
        .iter()
        .find(|count| count.side == CountedSide::Rdkafka)
        .map(|count| count.per_record);
    for count in &mut counts {
        count.ratio_to_rdkafka = baseline.filter(|b| *b > 0.0).map(|b| count.per_record / b);
    }
    let report = InstructionsReport {
        broker: small.broker_label.clone(),
        partitions: args.partitions,
        record_bytes: args.record_bytes,
        records_small: small.records,
        records_large: large.records,
        sides: counts,
        out_dir: out_dir.display().to_string(),
    };
    drop(large);
    drop(small);
    if args.json {
        return print_json(&report);
    }
    print_report(&report)
}

fn which(tool: &str) -> anyhow::Result<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        bail!("{tool} not found: install valgrind (Debian package `valgrind`)");
    }
    Ok(())
}

/// Runs `side`'s worker on `topic` under callgrind, its output in `out`.
fn count(side: CountedSide, filled: &FilledTopic, topic: &str, out: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("could not find the sluice-lab executable")?;
    // Under callgrind the process runs tens of times slower: group timeouts long enough that
    // the member is never taken for dead.
    let timeouts = GroupTimeouts::patient();
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(sluicegate_cli::tool::logging::global_flags())
        .args(side.worker())
        .args(["--brokers", &filled.bootstrap, "--topic", topic, "--group"])
        .arg(fresh_group(&format!("instructions-{}", side.name())))
        .args(["--expected", &filled.records.to_string()])
        .args(timeouts.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("could not run valgrind")?;
    if !status.success() {
        bail!("{} under callgrind failed ({status})", side.name());
    }
    Ok(())
}

/// A callgrind profile: the total and each function's own instructions.
struct Functions {
    total: u64,
    own: BTreeMap<String, u64>,
}

/// Reads a callgrind output file through `callgrind_annotate`.
fn functions(out: &Path) -> anyhow::Result<Functions> {
    let output = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--inclusive=no", "--auto=no"])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .context("could not run callgrind_annotate")?;
    if !output.status.success() {
        bail!("callgrind_annotate {} failed", out.display());
    }
    parse_annotate(&String::from_utf8_lossy(&output.stdout)).with_context(|| {
        format!(
            "could not read callgrind_annotate's output for {}",
            out.display()
        )
    })
}

/// Parses `callgrind_annotate --inclusive=no` output: the `PROGRAM TOTALS` line, then one line
/// per function, `1,234 (12.3%)  file:function [object]` (older versions put the percentage
/// after the count, or none). The function table ends at its first blank line: what follows
/// (annotated source, where a version annotates it anyway) lists calls with inclusive counts,
/// which are no function's own instructions.
fn parse_annotate(text: &str) -> anyhow::Result<Functions> {
    let count_of = |field: &str| -> Option<u64> { field.replace(',', "").parse().ok() };
    let mut total = None;
    let mut own = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() && !own.is_empty() {
            break;
        }
        let Some((count, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Some(count) = count_of(count) else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(after) => after
                .split_once(')')
                .map_or(after, |(_, name)| name)
                .trim_start(),
            None => rest,
        };
        if rest.starts_with("PROGRAM TOTALS") {
            total = Some(count);
        } else if !rest.is_empty() {
            *own.entry(function_name(rest)).or_insert(0) += count;
        }
    }
    let total = total.context("no PROGRAM TOTALS line")?;
    Ok(Functions { total, own })
}

/// `file:function [object]` → `function` (the file and object do not tell functions apart
/// for this purpose, and make the report wide).
fn function_name(field: &str) -> String {
    let without_object = field.rsplit_once(" [").map_or(field, |(name, _)| name);
    let function = without_object
        .split_once(':')
        .map_or(without_object, |(_, function)| function);
    function.trim().to_owned()
}

/// The `top` functions whose own instructions grew most from `small` to `large`, per extra
/// record.
fn growth_by_function(
    small: &BTreeMap<String, u64>,
    large: &BTreeMap<String, u64>,
    extra: u64,
    top: usize,
) -> Vec<FunctionCost> {
    let mut grown: Vec<FunctionCost> = large
        .iter()
        .map(|(function, count)| FunctionCost {
            function: function.clone(),
            per_record: count.saturating_sub(small.get(function).copied().unwrap_or(0)) as f64
                / extra as f64,
        })
        .filter(|cost| cost.per_record > 0.0)
        .collect();
    grown.sort_by(|a, b| b.per_record.total_cmp(&a.per_record));
    grown.truncate(top);
    grown
}

fn print_report(report: &InstructionsReport) -> anyhow::Result<()> {
    out!(
        "sluice-lab bench instructions: {} and {} records ({} partitions x {} bytes) under callgrind, on {}",
        thousands(report.records_small),
        thousands(report.records_large),
        report.partitions,
        report.record_bytes,
        report.broker
    )?;
    out!("| side | instructions per record | ratio to rdkafka | total (small / large) |")?;
    out!("| --- | --- | --- | --- |")?;
    for side in &report.sides {
        out!(
            "| {} | {:.0} | {} | {} / {} |",
            side.side.name(),
            side.per_record,
            side.ratio_to_rdkafka
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.3}")),
            thousands(side.total_small),
            thousands(side.total_large)
        )?;
    }
    for side in report
        .sides
        .iter()
        .filter(|side| !side.by_function.is_empty())
    {
        out!(
            "{}: instructions per record by function (own, top {})",
            side.side.name(),
            side.by_function.len()
        )?;
        for cost in &side.by_function {
            out!("  {:>9.1}  {}", cost.per_record, cost.function)?;
        }
    }
    out!("callgrind output files: {}", report.out_dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotate_output_is_read() {
        let text = "\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
12,345,678 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                 file:function
--------------------------------------------------------------------------------
 3,000,000 (24.30%)  ./malloc/malloc.c:_int_free [/usr/lib/x86_64-linux-gnu/libc.so.6]
 2,000,000 (16.20%)  src/rdkafka_msg.c:rd_kafka_message_headers [/x/sluice-lab]
 1,000 ( 0.01%)  ???:0x0000000000123456 [/usr/lib/libc.so.6]

--------------------------------------------------------------------------------
-- Auto-annotated source: src/rdkafka_msg.c
--------------------------------------------------------------------------------
 9,000,000 ( 72.90%)  => src/rdkafka_queue.c:rd_kafka_q_serve_rkmessages (16,054x)
";
        let functions = parse_annotate(text).unwrap();
        assert_eq!(functions.total, 12_345_678);
        assert_eq!(functions.own["_int_free"], 3_000_000);
        assert_eq!(functions.own["rd_kafka_message_headers"], 2_000_000);
        assert_eq!(
            functions.own.len(),
            3,
            "annotated source is not a function's own count"
        );
        let small = BTreeMap::from([("_int_free".to_owned(), 1_000_000)]);
        let grown = growth_by_function(&small, &functions.own, 1_000, 1);
        assert_eq!(grown.len(), 1);
        assert_eq!(grown[0].function, "_int_free");
        assert_eq!(grown[0].per_record, 2_000.0);
    }

    #[test]
    fn a_profile_without_totals_is_an_error() {
        assert!(parse_annotate("nothing here").is_err());
    }
}
