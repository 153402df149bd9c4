//! `sluice-lab torture faults`: the broker-fault campaign, short size, on its embedded cluster.

mod common;

use std::time::Duration;

use common::torture;

/// The short campaign runs in about 30 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// Every fault of the schedule (request errors of each API, a broker down, every broker
/// down, a 500 ms round trip) is recovered from: nothing lost, key order kept, everything
/// committed, and each fault's recovery time reported.
#[test]
fn faults_campaign_passes_and_reports_recovery_per_fault() {
    let (_, report) = torture::campaign("faults", &[], DEADLINE);
    torture::assert_figures(&report);
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
