//! `sluice torture crash`: the SIGKILL campaign, short size, on a development broker in a
//! child process.

mod common;

use std::time::Duration;

use serde_json::Value;

/// The short campaign runs in about 20-30 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// Runs the campaign with `args` and returns its JSON report (the last line of stdout).
fn campaign(args: &[&str]) -> Value {
    let mut argv = vec!["torture", "crash", "--short", "--json"];
    argv.extend_from_slice(args);
    let run = common::run_with_deadline(&argv, b"", DEADLINE);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!("no report ({:?}): {}", run.status, run.stderr);
    });
    let report: Value = serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{}", run.stderr));
    run.assert_ok();
    report
}

fn assert_passed(report: &Value) {
    for field in [
        "produced",
        "processed",
        "lost",
        "duplicated",
        "order_violations",
        "worst_pause_ms",
        "peak_rss_bytes",
    ] {
        assert!(report[field].is_u64(), "{field} in {report}");
    }
    assert_eq!(report["pass"], true, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["order_violations"], 0, "{report}");
    assert_eq!(report["produced"], 20_000, "{report}");
    let processed = report["processed"].as_u64().unwrap();
    let duplicated = report["duplicated"].as_u64().unwrap();
    assert_eq!(processed, 20_000 + duplicated, "{report}");
    assert!(report["peak_rss_bytes"].as_u64() > Some(0), "{report}");
}

/// Three SIGKILLs of members consuming in key order: nothing lost, key order kept within
/// each assignment, duplicates within what was handled and not yet committed.
#[test]
fn crash_campaign_in_key_order_passes() {
    let report = campaign(&["--seed", "11"]);
    assert_passed(&report);
    let kills = report["notes"]["kills"].as_str().unwrap_or_default();
    assert!(kills.starts_with("3 SIGKILLs"), "{report}");
}

/// The same in partition order.
#[test]
fn crash_campaign_in_partition_order_passes() {
    let report = campaign(&["--seed", "12", "--order", "partition"]);
    assert_passed(&report);
}
