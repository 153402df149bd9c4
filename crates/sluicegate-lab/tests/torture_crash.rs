//! `sluice-lab torture crash`: the SIGKILL campaign, short size, on a development broker in a
//! child process.

mod common;

use std::time::Duration;

use common::torture;
use serde_json::Value;

/// The short campaign runs in about 20-30 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// Asserts that the campaign passed with every record handled.
fn assert_passed(report: &Value) {
    torture::assert_figures(report);
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
    let (_, report) = torture::campaign("crash", &["--seed", "11"], DEADLINE);
    assert_passed(&report);
    let kills = report["notes"]["kills"].as_str().unwrap_or_default();
    assert!(kills.starts_with("3 SIGKILLs"), "{report}");
}

/// The same in partition order.
#[test]
fn crash_campaign_in_partition_order_passes() {
    let (_, report) =
        torture::campaign("crash", &["--seed", "12", "--order", "partition"], DEADLINE);
    assert_passed(&report);
}
