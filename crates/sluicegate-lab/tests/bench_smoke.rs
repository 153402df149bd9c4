//! The benches that run peers in other languages, or under valgrind, and the backlog bench's
//! engine bounds, run end to end on tiny topics of the Apache Kafka they start: every side
//! builds, runs, reads every record and reports. What they measure is recorded in
//! BENCHMARKS.md, never asserted here.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

/// Building the peers (javac, go build, pip) and starting Kafka take most of a run.
const DEADLINE: Duration = Duration::from_secs(600);

/// One bench at a time: they build the peers into the same `target/peers/`.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `sluice-lab bench ARGS --json` and returns its report.
fn bench(args: &[&str]) -> Value {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = sluicegate_testing::process::run(common::sluice_lab().args(&all), b"", DEADLINE);
    run.assert_ok();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report: {stdout}"));
    serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
}

#[test]
fn every_peer_reads_the_whole_topic() {
    let report = bench(&[
        "peers",
        "--partitions",
        "2",
        "--records-per-partition",
        "3000",
        "--rounds",
        "1",
    ]);
    assert_eq!(report["records"], 6000, "{report}");
    let sides = report["sides"].as_array().expect("sides");
    let names: Vec<&str> = sides
        .iter()
        .filter_map(|side| side["side"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "rdkafka",
            "engine",
            "engine-per-record",
            "pipeline",
            "java",
            "franz-go",
            "aiokafka"
        ],
        "{report}"
    );
    for side in sides {
        assert_eq!(side["unavailable"], Value::Null, "{side}");
        assert!(side["median_rps"].as_f64() > Some(0.0), "{side}");
        assert!(side["peak_rss_bytes"].as_u64() > Some(0), "{side}");
    }
    for round in report["rounds"].as_array().expect("rounds") {
        assert!(round["records"].as_u64() >= Some(6000), "{round}");
    }
}

#[test]
fn the_backlog_bench_runs_the_engine_with_the_bounds_it_is_given() {
    // Each side runs for a fixed time that includes its group join; the engine side goes first
    // and its join on the fresh cluster waits for the offsets topic to be created (a 3 s run
    // ended before the engine had a partition), so give it time for a join and some work.
    let report = bench(&[
        "backlog",
        "--partitions",
        "2",
        "--records-per-partition",
        "2000",
        "--record-bytes",
        "100",
        "--seconds",
        "15",
        "--partition-buffer",
        "50",
        "--prefetch-bytes",
        "65536",
    ]);
    assert_eq!(
        report["engine_options"], "partition_buffer 50, prefetch_bytes 65536",
        "{report}"
    );
    assert_eq!(report["buffer_bound"], 100, "{report}");
    assert!(report["peak_buffered"].as_u64() <= Some(100), "{report}");
    assert_eq!(report["rss_goal_bytes"], 64 << 20, "{report}");
    assert!(report["processed"].as_u64() > Some(0), "{report}");
    assert!(report["plain_processed"].as_u64() > Some(0), "{report}");
}

#[test]
fn parallel_consumer_runs_each_mode_beside_the_pipeline() {
    let report = bench(&[
        "pipeline",
        "--only",
        "latency",
        "--records",
        "300",
        "--keys",
        "1,300",
        "--max-latency-us",
        "200",
    ]);
    let modes = report["modes"].as_array().expect("modes");
    assert_eq!(
        modes.len(),
        4,
        "partition, two key counts, unordered: {report}"
    );
    for mode in modes {
        let parallel_consumer = &mode["parallel_consumer"];
        assert!(
            parallel_consumer["elapsed_s"].as_f64() > Some(0.0),
            "{mode}"
        );
        assert!(
            parallel_consumer["ratio_to_ideal"].as_f64() > Some(0.0),
            "{mode}"
        );
    }
    assert!(
        report["latency"]["parallel_consumer"]
            .as_str()
            .is_some_and(|how| how.starts_with("ran")),
        "{report}"
    );
}

#[test]
fn the_java_producer_runs_beside_ours() {
    let report = bench(&["produce", "--records", "5000", "--rounds", "1"]);
    assert!(report["java_rps"].as_f64() > Some(0.0), "{report}");
    assert!(
        report["fire_and_forget_over_java"].as_f64() > Some(0.0),
        "{report}"
    );
}

#[test]
fn instructions_are_counted_for_every_side() {
    let report = bench(&[
        "instructions",
        "--partitions",
        "2",
        // Enough that the extra records outweigh the start-up's variation.
        "--records-per-partition",
        "20000",
        "--top",
        "5",
    ]);
    let sides = report["sides"].as_array().expect("sides");
    assert_eq!(sides.len(), 4, "{report}");
    for side in sides {
        assert!(side["per_record"].as_f64() > Some(0.0), "{side}");
        assert!(
            side["total_large"].as_u64() > side["total_small"].as_u64(),
            "{side}"
        );
    }
    let engine = sides
        .iter()
        .find(|side| side["side"] == "engine")
        .expect("the engine's count");
    assert_eq!(
        engine["by_function"].as_array().map(Vec::len),
        Some(5),
        "{engine}"
    );
}
