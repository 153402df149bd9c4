//! The group campaigns, short size, on a three-node Apache Kafka (replication factor 3,
//! `min.insync.replicas` 2; one cluster for this test binary): crash with and without static
//! membership, storm under both group protocols, and failover, which kills brokers of a
//! cluster of its own.
//!
//! The campaigns run one at a time: each wants the machine's two cores to itself.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::torture;
use serde_json::Value;
use sluicegate_testing::{kafka_three_nodes, KafkaCluster, KafkaSetup};

/// A short campaign runs in about 20-60 s; this leaves room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// One campaign at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `campaign` on `brokers` and asserts that it passed with every record handled once at
/// least and in order.
fn passes(campaign: &str, brokers: &str, args: &[&str]) -> Value {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut argv = vec!["--brokers", brokers];
    argv.extend_from_slice(args);
    let (_, report) = torture::campaign(campaign, &argv, DEADLINE);
    torture::assert_figures(&report);
    assert_eq!(report["pass"], true, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["order_violations"], 0, "{report}");
    let produced = report["produced"].as_u64().unwrap();
    let processed = report["processed"].as_u64().unwrap();
    let duplicated = report["duplicated"].as_u64().unwrap();
    assert_eq!(processed, produced + duplicated, "{report}");
    report
}

#[test]
fn crash_campaign_passes_on_kafka() {
    let brokers = kafka_three_nodes().bootstrap_servers();
    let report = passes("crash", &brokers, &["--seed", "31"]);
    let kills = report["notes"]["kills"].as_str().unwrap_or_default();
    assert!(kills.starts_with("3 SIGKILLs"), "{report}");
}

/// Killed members (SIGKILL) come back under their instance ids within a second and take
/// their partitions back without a rebalance: no partition waits for the 6 s session of a
/// killed member to end, as it does without static membership.
#[test]
fn crash_campaign_with_static_membership_passes_on_kafka() {
    let brokers = kafka_three_nodes().bootstrap_servers();
    let report = passes("crash", &brokers, &["--seed", "32", "--static-membership"]);
    let settings = report["notes"]["member settings"]
        .as_str()
        .unwrap_or_default();
    assert!(settings.contains("static membership"), "{report}");
    assert!(settings.contains("session timeout 6000 ms"), "{report}");
    let worst_pause_ms = report["worst_pause_ms"].as_u64().unwrap();
    assert!(worst_pause_ms < 6_000, "{report}");
}

#[test]
fn storm_campaign_passes_on_kafka() {
    let brokers = kafka_three_nodes().bootstrap_servers();
    passes("storm", &brokers, &["--seed", "33"]);
}

#[test]
fn storm_campaign_passes_on_kafka_under_the_consumer_protocol() {
    let brokers = kafka_three_nodes().bootstrap_servers();
    let report = passes(
        "storm",
        &brokers,
        &["--seed", "34", "--group-protocol", "consumer"],
    );
    let settings = report["notes"]["member settings"]
        .as_str()
        .unwrap_or_default();
    assert!(settings.contains("group protocol consumer"), "{report}");
}

/// Two brokers killed with SIGKILL, one at a time, while records flow: nothing lost, order
/// kept, and every partition moving again within the campaign's 10 s after each kill.
#[test]
fn failover_campaign_passes() {
    let cluster = KafkaCluster::start(
        &KafkaSetup::three_nodes()
            .property("auto.create.topics.enable", "false")
            .quick_groups()
            // A killed broker is fenced (its partitions led elsewhere) after this session, not
            // the default 9 s.
            .property("broker.session.timeout.ms", "3000")
            .property("broker.heartbeat.interval.ms", "500")
            .respawn(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let dir = cluster.cluster_dir();
    let report = passes(
        "failover",
        &cluster.bootstrap_servers(),
        &["--seed", "35", "--kafka-dir", dir.to_str().unwrap()],
    );
    let kills = report["notes"]["broker kills"].as_str().unwrap_or_default();
    assert!(kills.starts_with("2 SIGKILLs"), "{report}");
    torture::assert_checks_passed(&report, &["recovered after each disruption"]);
}
