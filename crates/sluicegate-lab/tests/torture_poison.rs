//! `sluice-lab torture poison`: bad input among good records, short size, on an embedded broker.

mod common;

use std::time::Duration;

use common::torture;

/// The short campaign runs in about 15 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// Undecodable, oversized, panicking, hanging and rejected records each reach the failure
/// handler with their reason; good records are all handled, in key order, and none waits
/// longer than its key requires (beyond the documented bound).
#[test]
fn poison_campaign_passes() {
    let (run, report) = torture::campaign("poison", &[], DEADLINE);
    assert_eq!(report["pass"], true, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["order_violations"], 0, "{report}");
    torture::assert_checks_passed(
        &report,
        &[
            "bad records failed with their reason",
            "good records not held up",
        ],
    );
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
