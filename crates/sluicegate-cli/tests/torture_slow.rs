//! `sluice torture slow`: a slow consumer under a backlog of 50 partition buffers, short
//! size, on a development broker in a child process.

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

/// Held records never exceed partition buffer x partitions and memory stays within its
/// bound while the handler works through a small part of the backlog.
#[test]
fn slow_consumer_campaign_stays_within_bounds() {
    let run = common::run_with_deadline(&["torture", "slow", "--short", "--json"], b"", DEADLINE);
    run.assert_ok();
    let report = report(&run);
    assert_eq!(report["pass"], true, "{report}");
    let (produced, processed) = (report["produced"].as_u64(), report["processed"].as_u64());
    assert!(processed > Some(0) && processed < produced, "{report}");
    let checks = report["checks"].as_array().expect("checks");
    for name in ["buffered within bound", "memory within bound"] {
        let check = checks
            .iter()
            .find(|check| check["name"] == name)
            .unwrap_or_else(|| panic!("no check `{name}` in {report}"));
        assert_eq!(check["pass"], true, "{check}");
    }
}
