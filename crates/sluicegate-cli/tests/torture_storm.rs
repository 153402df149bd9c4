//! `sluice torture storm`: members joining and leaving while records flow, short size, on a
//! development broker in a child process.

mod common;

use std::time::Duration;

use serde_json::Value;

/// The short campaign runs in about 25-35 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// Graceful leaves and joins: nothing lost, order kept, duplicates bounded, and the worst
/// pause reported.
#[test]
fn storm_campaign_passes_and_reports_the_worst_pause() {
    let run = common::run_with_deadline(
        &["torture", "storm", "--short", "--json", "--seed", "21"],
        b"",
        DEADLINE,
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!("no report ({:?}): {}", run.status, run.stderr);
    });
    let report: Value = serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{}", run.stderr));
    run.assert_ok();
    assert_eq!(report["pass"], true, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["order_violations"], 0, "{report}");
    assert_eq!(report["produced"], 20_000, "{report}");
    assert!(report["worst_pause_ms"].is_u64(), "{report}");
    let changes = report["notes"]["membership changes"]
        .as_str()
        .unwrap_or_default();
    assert!(changes.contains("graceful leaves"), "{report}");
}
