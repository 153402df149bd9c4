//! `sluice-lab torture slow`: a slow consumer under a backlog of 50 partition buffers, short
//! size, on a development broker in a child process.

mod common;

use std::time::Duration;

use common::torture;

/// The short campaign runs in about 15 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// Held records never exceed partition buffer x partitions and memory stays within its
/// bound while the handler works through a small part of the backlog.
#[test]
fn slow_consumer_campaign_stays_within_bounds() {
    let (_, report) = torture::campaign("slow", &[], DEADLINE);
    assert_eq!(report["pass"], true, "{report}");
    let (produced, processed) = (report["produced"].as_u64(), report["processed"].as_u64());
    assert!(processed > Some(0) && processed < produced, "{report}");
    torture::assert_checks_passed(&report, &["buffered within bound", "memory within bound"]);
}
