//! Running `sluice-lab torture <campaign> --short --json` and checking the one-line JSON report it
//! prints last.

use std::time::Duration;

use serde_json::Value;
use sluicegate_testing::process::{self, Run};

/// Runs `sluice-lab torture <name> --short --json args...` within `deadline`; returns the run and
/// its report (the last line of stdout). Fails the test when there is no report or the run
/// failed.
pub fn campaign(name: &str, args: &[&str], deadline: Duration) -> (Run, Value) {
    let mut argv = vec!["torture", name, "--short", "--json"];
    argv.extend_from_slice(args);
    let run = process::run(super::sluice_lab().args(&argv), b"", deadline);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!("no report ({:?}): {}", run.status, run.stderr);
    });
    let report: Value = serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{}", run.stderr));
    run.assert_ok();
    (run, report)
}

/// Asserts that the report has every figure all campaigns report, each a whole number.
pub fn assert_figures(report: &Value) {
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
}

/// Asserts that the report has these checks and that each held.
pub fn assert_checks_passed(report: &Value, names: &[&str]) {
    let checks = report["checks"].as_array().expect("checks");
    for name in names {
        let check = checks
            .iter()
            .find(|check| check["name"] == *name)
            .unwrap_or_else(|| panic!("no check `{name}` in {report}"));
        assert_eq!(check["pass"], true, "{check}");
    }
}
