//! `sluice-lab torture storm`: members joining and leaving while records flow, short size, on a
//! development broker in a child process.

mod common;

use std::time::Duration;

use common::torture;

/// The short campaign runs in about 25-35 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(240);

/// Graceful leaves and joins: nothing lost, order kept, duplicates bounded, and the worst
/// pause reported.
#[test]
fn storm_campaign_passes_and_reports_the_worst_pause() {
    let (_, report) = torture::campaign("storm", &["--seed", "21"], DEADLINE);
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
