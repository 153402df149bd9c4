//! `sluice torture faults`: the broker-fault campaign, short size, on its embedded cluster.

mod common;

use std::time::Duration;

use serde_json::Value;

/// The short campaign runs in about 30 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// The JSON report printed on the last line of stdout.
fn report(run: &common::Run) -> Value {
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout.lines().last().expect("a report line");
    serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
}

/// Every fault of the schedule (request errors of each API, a broker down, every broker
/// down, a 500 ms round trip) is recovered from: nothing lost, key order kept, everything
/// committed, and each fault's recovery time reported.
#[test]
fn faults_campaign_passes_and_reports_recovery_per_fault() {
    let run = common::run_with_deadline(&["torture", "faults", "--short", "--json"], b"", DEADLINE);
    run.assert_ok();
    let report = report(&run);
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
    assert!(report["produced"].as_u64() > Some(0), "{report}");
    for fault in [
        "fetch errors",
        "offset-commit errors",
        "heartbeat errors",
        "join/sync-group errors",
        "produce errors",
        "broker 2 down",
        "all brokers down",
        "round trip 500 ms",
    ] {
        let note = report["notes"][fault].as_str().unwrap_or_default();
        assert!(
            note.starts_with("recovery "),
            "{fault}: {note:?} in {report}"
        );
    }
}

/// The campaign owns its broker: pointing it at another is a usage error (exit status 2).
#[test]
fn faults_campaign_refuses_another_broker() {
    let run = common::run(&["torture", "faults", "--brokers", "127.0.0.1:9092"], b"");
    run.assert_one_line_error(2, "--brokers does not apply");
}
