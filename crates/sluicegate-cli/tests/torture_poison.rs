//! `sluice torture poison`: bad input among good records, short size, on an embedded broker.

mod common;

use std::time::Duration;

use serde_json::Value;

/// The short campaign runs in about 15 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// The JSON report printed on the last line of stdout.
fn report(run: &common::Run) -> Value {
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout.lines().last().expect("a report line");
    serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
}

/// Undecodable, oversized, panicking, hanging and rejected records each reach the failure
/// handler with their reason; good records are all handled, in key order, and none waits
/// longer than its key requires (beyond the documented bound).
#[test]
fn poison_campaign_passes() {
    let run = common::run_with_deadline(&["torture", "poison", "--short", "--json"], b"", DEADLINE);
    run.assert_ok();
    let report = report(&run);
    assert_eq!(report["pass"], true, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["order_violations"], 0, "{report}");
    let checks = report["checks"].as_array().expect("checks");
    for name in [
        "bad records failed with their reason",
        "good records not held up",
    ] {
        let check = checks
            .iter()
            .find(|check| check["name"] == name)
            .unwrap_or_else(|| panic!("no check `{name}` in {report}"));
        assert_eq!(check["pass"], true, "{check}");
    }
    let mix = report["notes"]["mix"].as_str().unwrap_or_default();
    for fate in [
        "hang",
        "invalid utf-8",
        "not json",
        "oversized",
        "panic",
        "rejected",
    ] {
        assert!(mix.contains(fate), "{fate} missing from the mix: {mix}");
    }
    // The campaign's own panics are not reported on stderr.
    assert!(!run.stderr.contains("poison record"), "{}", run.stderr);
}
